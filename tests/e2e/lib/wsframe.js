// wsframe.js: the few RFC 6455 frames the raw-socket tests need (a masked client text frame; parsing server frames).
'use strict';

const crypto = require('node:crypto');
const { slack } = require('./slack');

/** A masked client frame (FIN set) carrying `payload` with `opcode` (1 text, 2 binary, 8 close). */
function clientFrame(payload, opcode = 1) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  const mask = crypto.randomBytes(4);
  let head;
  if (data.length < 126) head = Buffer.from([0x80 | opcode, 0x80 | data.length]);
  else if (data.length < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 126;
    head.writeUInt16BE(data.length, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(data.length), 2);
  }
  const masked = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) masked[i] = data[i] ^ mask[i % 4];
  return Buffer.concat([head, mask, masked]);
}

/** Splits unmasked server frames off the front of `buf`: { frames: [{opcode, payload}], rest }. */
function serverFrames(buf) {
  const frames = [];
  let i = 0;
  for (;;) {
    if (buf.length - i < 2) break;
    const opcode = buf[i] & 0x0f;
    let len = buf[i + 1] & 0x7f;
    let off = i + 2;
    if (len === 126) {
      if (buf.length - i < 4) break;
      len = buf.readUInt16BE(i + 2);
      off = i + 4;
    } else if (len === 127) {
      if (buf.length - i < 10) break;
      len = Number(buf.readBigUInt64BE(i + 2));
      off = i + 10;
    }
    if (buf.length < off + len) break;
    frames.push({ opcode, payload: buf.subarray(off, off + len) });
    i = off + len;
  }
  return { frames, rest: buf.subarray(i) };
}

/**
 * Reads server frames from an upgraded socket (starting with `initial` bytes) until `pred(frame)` holds.
 * Resolves with every frame read so far; rejects after timeoutMs (times SOCKPROXY_TEST_SLACK) or when the socket closes first.
 */
function readFramesUntil(socket, initial, pred, timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.from(initial || []);
    const all = [];
    const deadlineMs = slack(timeoutMs);
    const timer = setTimeout(() => done(new Error(`no matching websocket frame within ${deadlineMs} ms; got ${JSON.stringify(all.map((f) => f.payload.toString('latin1').slice(0, 80)))}`)), deadlineMs);
    const onData = (c) => {
      buf = Buffer.concat([buf, c]);
      check();
    };
    const onClose = () => done(new Error(`socket closed before a matching frame; got ${JSON.stringify(all.map((f) => f.payload.toString('latin1').slice(0, 80)))}`));
    const done = (err) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve(all);
    };
    const check = () => {
      const { frames, rest } = serverFrames(buf);
      buf = rest;
      for (const f of frames) {
        all.push(f);
        if (pred(f)) return done();
      }
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    check();
  });
}

module.exports = { clientFrame, serverFrames, readFramesUntil };
