// engine-bytes.js: what a real socket.io 4.8 server (default options) answers, byte for byte, to the requests the Rust tests send its stand-in (src/demo.rs serve_engine); the fixture tests/fixtures/engine-io-bytes.json is this, captured once.
//
// The same cases and the same normalisation are implemented in tests/claims.rs, which sends them to
// the stand-in and compares with the fixture. Normalised on both sides, because they differ from run to run:
// the value of `Date` (`<date>`), and each sid (`"sid":"…"` in an open packet or a namespace answer) by
// order of first appearance (`{sid1}`, `{sid2}`, …; requests name them the same way). Everything else is
// compared as captured, except the case of header names (hyper writes them in lower case; HTTP/1.1 names are
// case-insensitive, and sockproxy's own tests of case are made with raw upstreams).
'use strict';

const http = require('node:http');
const net = require('node:net');
const { Server } = require('socket.io');

// A fixed key, so Sec-WebSocket-Accept is fixed too (RFC 6455's example key).
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const HOST = 'Host: 127.0.0.1\r\n';
const UPGRADE = `Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${KEY}\r\n`;

/**
 * Each case: one request on a new connection (`{sidN}` replaced by the sid of that name), one response read to
 * its end (Content-Length, chunked, or the server closing; after `Connection: close`, the end of the stream
 * too, as `<end>` in `frames`), then on a 101 the frames: `send` (text frames, masked, or `close` for an empty
 * close frame), `read` frames read back, `thenSend`, and with `end` every frame up to the end of the stream.
 */
const CASES = [
  { name: 'polling handshake', request: `GET /socket.io/?EIO=4&transport=polling&t=a HTTP/1.1\r\n${HOST}\r\n` },
  {
    name: 'POST 40 (namespace connect)',
    request: `POST /socket.io/?EIO=4&transport=polling&sid={sid1} HTTP/1.1\r\n${HOST}Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 2\r\n\r\n40`,
  },
  { name: 'poll: the namespace answer', request: `GET /socket.io/?EIO=4&transport=polling&sid={sid1} HTTP/1.1\r\n${HOST}\r\n` },
  {
    name: 'upgrade with the sid, then probe',
    request: `GET /socket.io/?EIO=4&transport=websocket&sid={sid1} HTTP/1.1\r\n${HOST}${UPGRADE}\r\n`,
    send: ['2probe'],
    read: 1,
  },
  {
    name: 'websocket-only handshake, then close',
    request: `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n${HOST}${UPGRADE}\r\n`,
    read: 1,
    thenSend: ['close'],
    end: true,
  },
  { name: 'unknown sid (polling)', request: `GET /socket.io/?EIO=4&transport=polling&sid=unknownSid0000000000 HTTP/1.1\r\n${HOST}\r\n` },
  { name: 'websocket without Upgrade', request: `GET /socket.io/?EIO=4&transport=websocket&sid={sid1} HTTP/1.1\r\n${HOST}\r\n` },
  { name: 'handshake by POST', request: `POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n${HOST}Content-Length: 0\r\n\r\n` },
  { name: 'unknown transport', request: `GET /socket.io/?EIO=4&transport=carrier-pigeon HTTP/1.1\r\n${HOST}\r\n` },
  { name: 'unsupported protocol version', request: `GET /socket.io/?EIO=3&transport=polling HTTP/1.1\r\n${HOST}\r\n` },
  {
    name: 'upgrade with an unknown sid',
    request: `GET /socket.io/?EIO=4&transport=websocket&sid=unknownSid0000000000 HTTP/1.1\r\n${HOST}${UPGRADE}\r\n`,
  },
  {
    name: 'upgrade without Sec-WebSocket-Key',
    request: `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n${HOST}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  },
];

/** Replaces the Date value and every sid, learning sids in order of first appearance. */
function normalise(text, sids) {
  return text
    .replace(/^(date:) [^\r\n]*$/gim, '$1 <date>')
    .replace(/"sid":"([^"]*)"/g, (_, sid) => {
      if (!sids.has(sid)) sids.set(sid, `{sid${sids.size + 1}}`);
      return `"sid":"${sids.get(sid)}"`;
    });
}

/** A client frame: FIN, text (or close when `text` is null), masked with a fixed key. */
function clientFrame(text) {
  const payload = Buffer.from(text === null ? '' : text, 'latin1');
  if (payload.length > 125) throw new Error('short frames only');
  const mask = Buffer.from([1, 2, 3, 4]);
  const head = Buffer.from([text === null ? 0x88 : 0x81, 0x80 | payload.length]);
  return Buffer.concat([head, mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))]);
}

/** Length of the first complete server frame in `b` (unmasked, short), or 0 when incomplete. */
function frameLength(b) {
  if (b.length < 2) return 0;
  const len = b[1] & 0x7f;
  if (len > 125) throw new Error('short frames only');
  return b.length >= 2 + len ? 2 + len : 0;
}

/** Runs one case against 127.0.0.1:port; resolves with { response, frames } as latin1 text. */
function runCase(port, c, sids, deadlineMs) {
  const byName = new Map([...sids].map(([sid, name]) => [name, sid]));
  const request = c.request.replace(/\{sid\d+\}/g, (name) => {
    if (!byName.has(name)) throw new Error(`${c.name}: ${name} not issued yet`);
    return byName.get(name);
  });
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let head = null;
    let response = null;
    const frames = [];
    let ended = false;
    let sentFrames = false;
    const timer = setTimeout(() => done(new Error(`${c.name}: no complete answer within ${deadlineMs} ms; got ${JSON.stringify(buf.toString('latin1'))}`)), deadlineMs);
    const done = (err) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve({ response, frames });
    };
    const step = () => {
      if (!head) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return ended && done(new Error(`${c.name}: closed before a head`));
        head = buf.subarray(0, end + 4).toString('latin1');
      }
      if (response === null) {
        const rest = buf.subarray(head.length);
        const status = Number(head.slice(9, 12));
        const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
        let bodyLen = null;
        if (status === 101) bodyLen = 0;
        else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
          const last = rest.indexOf('0\r\n\r\n');
          if (last >= 0) bodyLen = last + 5;
        } else if (cl) {
          if (rest.length >= Number(cl[1])) bodyLen = Number(cl[1]);
        } else if (ended) bodyLen = rest.length;
        if (bodyLen === null) return ended && done(new Error(`${c.name}: closed mid-body`));
        response = head + rest.subarray(0, bodyLen).toString('latin1');
        buf = rest.subarray(bodyLen);
      }
      if (Number(head.slice(9, 12)) !== 101) {
        // An answer that says `Connection: close` must be followed by the end of the stream, and nothing else.
        if (!/\r\nconnection: *close\r\n/i.test(head)) return done();
        if (!ended) return;
        if (buf.length) frames.push(buf.toString('latin1'));
        frames.push('<end>');
        return done();
      }
      if (!sentFrames) {
        sentFrames = true;
        for (const t of c.send || []) socket.write(clientFrame(t === 'close' ? null : t));
      }
      while (frames.length < (c.read || 0)) {
        const n = frameLength(buf);
        if (!n) return ended && done(new Error(`${c.name}: closed before frame ${frames.length + 1}`));
        frames.push(buf.subarray(0, n).toString('latin1'));
        buf = buf.subarray(n);
        if (frames.length === (c.read || 0)) for (const t of c.thenSend || []) socket.write(clientFrame(t === 'close' ? null : t));
      }
      if (!c.end) return done();
      // Read to the end of the stream: every frame the server still sends.
      for (let n = frameLength(buf); n; n = frameLength(buf)) {
        frames.push(buf.subarray(0, n).toString('latin1'));
        buf = buf.subarray(n);
      }
      if (ended) {
        if (buf.length) frames.push(buf.toString('latin1'));
        frames.push('<end>');
        done();
      }
    };
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      step();
    });
    socket.on('end', () => {
      ended = true;
      step();
    });
    socket.on('error', (err) => done(err));
    socket.write(Buffer.from(request, 'latin1'));
  });
}

/** The installed version of npm package `name` (read from its package.json, which not every package exports). */
function version(name) {
  const fs = require('node:fs');
  const path = require('node:path');
  return JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'node_modules', name, 'package.json'), 'utf8')).version;
}

/** Starts socket.io with its defaults, runs every case, stops it; resolves with the normalised cases. */
async function capture({ deadlineMs = 5000 } = {}) {
  const server = http.createServer();
  const io = new Server(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const sids = new Map();
  const out = [];
  try {
    for (const c of CASES) {
      const { response, frames } = await runCase(server.address().port, c, sids, deadlineMs);
      const entry = { name: c.name, request: c.request, response: normalise(response, sids) };
      for (const k of ['send', 'read', 'thenSend', 'end']) if (c[k] !== undefined) entry[k] = c[k];
      if (frames.length) entry.frames = frames.map((f) => normalise(f, sids));
      out.push(entry);
    }
  } finally {
    io.close();
    server.close();
  }
  return {
    about:
      'Answers of a real socket.io server (new Server(httpServer), default options) to the requests below, captured by tests/e2e/tools/capture-engine-bytes.js; Date values and sids normalised (tests/e2e/lib/engine-bytes.js). tests/claims.rs compares src/demo.rs serve_engine with it; tests/e2e/engine-bytes.test.js re-captures and compares.',
    versions: Object.fromEntries(['socket.io', 'engine.io', 'ws'].map((p) => [p, version(p)])),
    cases: out,
  };
}

const FIXTURE = require('node:path').resolve(__dirname, '..', '..', 'fixtures', 'engine-io-bytes.json');

/** The fixture's text: JSON, control and C1 characters (frame headers) escaped so they show. */
function serialise(fixture) {
  return `${JSON.stringify(fixture, null, 2).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}\n`;
}

module.exports = { CASES, capture, normalise, serialise, FIXTURE };
