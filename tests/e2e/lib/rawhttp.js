// rawhttp.js: HTTP/1.1 over a plain TCP socket, for requests whose exact bytes matter (odd headers, upgrades, health probes).
'use strict';

const net = require('node:net');
const { slack } = require('./slack');

/** Builds a request head from [[name, value], …] exactly as given (latin1: obs-text bytes survive). */
function requestHead(method, target, headers, version = 'HTTP/1.1') {
  return `${method} ${target} ${version}\r\n${headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
}

function parseHead(text) {
  const lines = text.split('\r\n');
  const statusLine = lines.shift();
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(statusLine)}`);
  const rawHeaders = lines.filter(Boolean).map((l) => {
    const i = l.indexOf(':');
    return [l.slice(0, i), l.slice(i + 1).trim()];
  });
  return { statusLine, httpVersion: m[1], status: Number(m[2]), reason: m[3] || '', rawHeaders };
}

function header(rawHeaders, name) {
  const v = rawHeaders.filter(([n]) => n.toLowerCase() === name).map(([, x]) => x);
  return v.length ? v[v.length - 1] : null;
}

/**
 * Sends `head` (+ `body`) on a new connection to 127.0.0.1:port and reads one response.
 * Resolves { status, statusLine, rawHeaders, head, body (Buffer), closed, socket? }. On a 101 the socket is
 * returned open (with any bytes that followed the head in `body`) when `keepOpen` is set, else destroyed.
 * `method` tells a HEAD response apart. Everything is bounded by `timeoutMs` (times SOCKPROXY_TEST_SLACK).
 */
function rawRequest(port, head, { body, timeoutMs = 5000, keepOpen = false, method } = {}) {
  method = method || head.slice(0, head.indexOf(' '));
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let parsed = null;
    let bodyStart = 0;
    let settled = false;
    const deadlineMs = slack(timeoutMs);
    const timer = setTimeout(() => fail(new Error(`no complete response from 127.0.0.1:${port} within ${deadlineMs} ms; got ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`)), deadlineMs);
    const finish = (bodyBuf, closed) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const out = { ...parsed, head: buf.subarray(0, bodyStart).toString('latin1'), body: bodyBuf, closed };
      if (parsed.status === 101 && keepOpen) {
        socket.removeAllListeners('data');
        out.socket = socket;
      } else socket.destroy();
      resolve(out);
    };
    const fail = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const tryComplete = (closed) => {
      if (!parsed) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (closed) fail(new Error(`connection closed before a response head; got ${JSON.stringify(buf.toString('latin1'))}`));
          return;
        }
        parsed = parseHead(buf.subarray(0, end).toString('latin1'));
        bodyStart = end + 4;
      }
      const rest = buf.subarray(bodyStart);
      const st = parsed.status;
      if (st === 101 || st === 204 || st === 304 || (st >= 100 && st < 200) || method === 'HEAD') return finish(rest, closed);
      const te = header(parsed.rawHeaders, 'transfer-encoding');
      const cl = header(parsed.rawHeaders, 'content-length');
      if (te && /chunked/i.test(te)) {
        const decoded = dechunk(rest);
        if (decoded) return finish(decoded, closed);
      } else if (cl !== null) {
        if (rest.length >= Number(cl)) return finish(rest.subarray(0, Number(cl)), closed);
      } else if (closed) return finish(rest, closed);
      if (closed) fail(new Error(`connection closed mid-body: ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`));
    };
    socket.on('data', (c) => {
      buf = Buffer.concat([buf, c]);
      tryComplete(false);
    });
    socket.on('end', () => tryComplete(true));
    socket.on('close', () => tryComplete(true));
    socket.on('error', (err) => {
      if (!parsed) fail(err);
      else tryComplete(true);
    });
    socket.write(Buffer.from(head, 'latin1'));
    if (body) socket.write(body);
  });
}

/** Decodes a complete chunked body, or returns null if more bytes are needed. */
function dechunk(b) {
  const parts = [];
  let i = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', i);
    if (eol < 0) return null;
    const size = parseInt(b.subarray(i, eol).toString('latin1').split(';')[0], 16);
    if (Number.isNaN(size)) throw new Error(`bad chunk size at ${i}`);
    if (size === 0) {
      // Trailers end with an empty line.
      const end = b.indexOf('\r\n\r\n', eol);
      if (end < 0) return null;
      return Buffer.concat(parts);
    }
    if (b.length < eol + 2 + size + 2) return null;
    parts.push(b.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
}

/** A client WebSocket key (random 16 bytes, base64), as browsers send. */
function wsKey() {
  return require('node:crypto').randomBytes(16).toString('base64');
}

module.exports = { rawRequest, requestHead, parseHead, header, wsKey };
