// backend.js: the real socket.io 4.8 server standing in for Theia; it journals every request head exactly as received (the ground truth).
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const path = require('node:path');
const { Server } = require('socket.io');
const { Journal } = require('./journal');

/** rawHeaders ([n1, v1, n2, v2, …]) as [[name, value], …], names and values exactly as received. */
function pairs(raw) {
  const out = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
  return out;
}

/**
 * Theia ≥ 1.73 (ws-origin-validator.ts, THEIA_HOSTS unset): no/empty Origin → allow; otherwise
 * `new URL(origin).host` must equal the Host header (port included), anything unparsable is refused.
 */
function theiaExact(req) {
  const origin = req.headers.origin;
  if (!origin) return true;
  let host;
  try {
    host = new URL(origin).host;
  } catch {
    return false;
  }
  return req.headers.host !== undefined && host === req.headers.host;
}

/**
 * The same check as Theia sees it in production behind a TLS load balancer on port 443: there the browser's
 * Origin carries no port and nginx's `$host` none either. On loopback the front has a random port, which
 * the pod nginx's `Host $host` drops, so ports are compared only when Host carries one.
 */
function theiaOnDefaultPort(req) {
  const origin = req.headers.origin;
  if (!origin) return true;
  let url;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  const host = req.headers.host;
  if (host === undefined) return false;
  if (/:\d+$/.test(host) && !host.startsWith('[')) return url.host.toLowerCase() === host.toLowerCase();
  return url.hostname.toLowerCase() === host.toLowerCase();
}

const ORIGIN_CHECKS = { 'theia-exact': theiaExact, 'theia-on-default-port': theiaOnDefaultPort };

function pageHtml() {
  // Served under /theia/…: the browser then reaches socket.io at /theia/socket.io/, rewritten by the pod nginx.
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>sockproxy e2e</title></head>
<body>
<script src="/theia/socket.io/socket.io.js"></script>
<script>
  window.e2e = { events: [] };
  const socket = io({ path: '/theia/socket.io/', reconnection: false, timeout: 10000 });
  window.e2e.socket = socket;
  socket.on('connect', () => window.e2e.events.push('connect'));
  socket.on('connect_error', (e) => window.e2e.events.push('connect_error:' + e.message));
  socket.on('disconnect', (r) => window.e2e.events.push('disconnect:' + r));
  socket.io.on('open', () => {
    socket.io.engine.on('upgrade', (t) => window.e2e.events.push('upgrade:' + t.name));
    socket.io.engine.on('upgradeError', (e) => window.e2e.events.push('upgradeError:' + e.message));
  });
</script>
</body></html>
`;
}

/**
 * Starts the backend on 127.0.0.1:0.
 * options: originCheck ('theia-exact' | 'theia-on-default-port' | undefined), pingInterval/pingTimeout
 * (Theia's 30000/60000 by default), dir (where requests.jsonl goes), name.
 * Returns { port, requests, sids, engineErrors, tunnels, messages, closes (Journals), io, close() }.
 */
async function startBackend({ name = 'backend', dir, originCheck, pingInterval = 30000, pingTimeout = 60000 } = {}) {
  const requests = new Journal(`${name} requests`, dir && path.join(dir, `${name}-requests.jsonl`));
  const sids = new Journal(`${name} issued sids`, dir && path.join(dir, `${name}-sids.jsonl`));
  const engineErrors = new Journal(`${name} engine.io errors`, dir && path.join(dir, `${name}-engine-errors.jsonl`));
  const tunnels = new Journal(`${name} upgraded sockets`, dir && path.join(dir, `${name}-tunnels.jsonl`));
  const messages = new Journal(`${name} socket.io events`);
  const closes = new Journal(`${name} closed sessions`, dir && path.join(dir, `${name}-session-closes.jsonl`));
  let seq = 0;

  const server = http.createServer();
  // Registered before socket.io attaches, so engine.io wraps it and calls it only for non-socket.io paths.
  server.on('request', (req, res) => {
    const { pathname } = new URL(req.url, 'http://backend.invalid');
    if (req.method === 'GET' && /\/index\.html$/.test(pathname)) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(pageHtml());
    } else if (req.method === 'POST' && pathname === '/upload') {
      const h = crypto.createHash('sha256');
      let n = 0;
      req.on('data', (c) => {
        h.update(c);
        n += c.length;
      });
      req.on('end', () => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ sha256: h.digest('hex'), length: n }));
      });
    } else {
      // Theia has no /health: the GoogleHC probe of the seed's H3 gets this 404.
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('Not Found');
    }
  });

  const check = originCheck ? ORIGIN_CHECKS[originCheck] : null;
  if (originCheck && !check) throw new Error(`unknown originCheck ${originCheck}`);
  const io = new Server(server, {
    pingInterval,
    pingTimeout,
    maxHttpBufferSize: 1e8, // Theia's value
    allowRequest: check ? (req, cb) => cb(null, check(req)) : undefined,
  });

  io.engine.on('connection', (socket) => {
    sids.push({ sid: socket.id, transport: socket.transport.name, url: socket.request.url, at: Date.now() });
    socket.on('close', (reason, description) => {
      closes.push({ sid: socket.id, reason, description: description ? String(description.message || description) : null, at: Date.now() });
    });
  });
  io.engine.on('connection_error', (err) => {
    engineErrors.push({ code: err.code, message: err.message, url: err.req && err.req.url, context: err.context, at: Date.now() });
  });
  io.on('connection', (socket) => {
    socket.on('echo', (payload, ack) => {
      messages.push({ event: 'echo', sid: socket.conn.id, transport: socket.conn.transport.name });
      if (typeof ack === 'function') ack(payload);
    });
    // Drops the TCP connection under a websocket session without any closing handshake (closed_by upstream).
    socket.on('drop-connection', () => {
      const ws = socket.conn.transport && socket.conn.transport.socket;
      if (ws && ws._socket) ws._socket.destroy();
    });
    socket.on('digest', (buf, ack) => {
      const sha256 = crypto.createHash('sha256').update(buf).digest('hex');
      messages.push({ event: 'digest', sid: socket.conn.id, length: buf.length, sha256 });
      if (typeof ack === 'function') ack({ sha256, length: buf.length });
    });
  });

  // Ground truth. Prepended after socket.io attached, so it sees every request and upgrade first.
  server.prependListener('request', (req, res) => {
    const entry = {
      seq: ++seq,
      kind: 'request',
      at: Date.now(),
      method: req.method,
      url: req.url,
      httpVersion: req.httpVersion,
      rawHeaders: pairs(req.rawHeaders),
      remotePort: req.socket.remotePort,
      body: { length: 0, sha256: null },
      response: null,
    };
    // Only requests that carry a body are read here. Reading a bodiless GET would end it, and Node then emits
    // 'close' on it, which engine.io takes for "poll connection closed prematurely" and kills the session.
    // With a body, engine.io attaches its own 'data' listener synchronously in this same 'request' emit.
    if (Number(req.headers['content-length']) > 0 || req.headers['transfer-encoding']) {
      const h = crypto.createHash('sha256');
      req.on('data', (c) => {
        h.update(c);
        entry.body.length += c.length;
      });
      req.on('end', () => (entry.body.sha256 = h.digest('hex')));
    }
    const chunks = [];
    let bodyLength = 0;
    const note = (chunk, enc) => {
      if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, typeof enc === 'string' ? enc : 'utf8');
      bodyLength += b.length;
      if (Buffer.concat(chunks).length < 4096) chunks.push(b);
    };
    const write = res.write;
    const end = res.end;
    res.write = function (chunk, enc, cb) {
      note(chunk, enc);
      return write.apply(this, arguments);
    };
    res.end = function (chunk, enc, cb) {
      note(chunk, enc);
      return end.apply(this, arguments);
    };
    const done = (how) => {
      if (entry.response) return;
      entry.response = {
        how,
        status: res.statusCode,
        // The exact head Node wrote (internal but long-stable field; read only).
        head: res._header || null,
        bodyLength,
        body: Buffer.concat(chunks).subarray(0, 4096).toString('latin1'),
      };
      requests.push(entry);
    };
    res.on('finish', () => done('finish'));
    res.on('close', () => done(res.writableFinished ? 'finish' : 'closed-before-finish'));
  });

  server.prependListener('upgrade', (req, socket, head) => {
    const entry = {
      seq: ++seq,
      kind: 'upgrade',
      at: Date.now(),
      method: req.method,
      url: req.url,
      httpVersion: req.httpVersion,
      rawHeaders: pairs(req.rawHeaders),
      remotePort: socket.remotePort,
      response: null,
    };
    // The connection may have carried earlier exchanges (sockproxy keeps upstream connections alive), so
    // both counters are taken relative to this moment.
    const headBytes = socket.bytesRead - head.length;
    const writtenBefore = socket.bytesWritten;
    const write = socket.write;
    let first = true;
    let responseHeadBytes = 0;
    socket.write = function (data, enc) {
      if (first) {
        first = false;
        const b = Buffer.isBuffer(data) ? data : Buffer.from(data, typeof enc === 'string' ? enc : 'utf8');
        const text = b.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        const status = Number((/^HTTP\/1\.[01] (\d{3})/.exec(text) || [])[1]);
        responseHeadBytes = end >= 0 ? end + 4 : b.length;
        entry.response = {
          status,
          head: end >= 0 ? text.slice(0, end + 4) : text,
          body: end >= 0 ? text.slice(end + 4, end + 4 + 4096) : '',
        };
        requests.push(entry);
      }
      return write.apply(this, arguments);
    };
    const openedAt = Date.now();
    // Who ended the connection first, as this socket saw it: our own end()/destroy() or the peer's FIN.
    let order = 0;
    let localEndAt = null;
    let peerEndAt = null;
    for (const m of ['end', 'destroy']) {
      const orig = socket[m];
      socket[m] = function () {
        if (localEndAt === null) localEndAt = ++order;
        return orig.apply(this, arguments);
      };
    }
    socket.on('end', () => {
      if (peerEndAt === null) peerEndAt = ++order;
    });
    socket.on('close', () => {
      if (first) {
        // Closed without any answer (e.g. an upgrade outside /socket.io/ ended after destroyUpgradeTimeout).
        entry.response = { status: null, head: null, body: '' };
        requests.push(entry);
      }
      tunnels.push({
        seq: entry.seq,
        url: entry.url,
        status: entry.response && entry.response.status,
        rawHeaders: entry.rawHeaders,
        openedAt,
        closedAt: Date.now(),
        // Bytes after the request head / after the response head, as this socket saw them.
        bytesFromClient: socket.bytesRead - headBytes,
        bytesToClient: socket.bytesWritten - writtenBefore - responseHeadBytes,
        // 'upstream' when the backend closed first, 'client' when the peer's FIN came first.
        endedFirstBy: peerEndAt !== null && (localEndAt === null || peerEndAt < localEndAt) ? 'client' : 'upstream',
      });
    });
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();

  return {
    name,
    port,
    requests,
    sids,
    engineErrors,
    tunnels,
    messages,
    closes,
    io,
    server,
    async close() {
      io.disconnectSockets(true);
      await new Promise((resolve) => {
        io.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** The value(s) of header `name` (case-insensitive) in a ground-truth entry: null, a string, or an array when repeated. */
function headerOf(entry, name) {
  const vals = entry.rawHeaders.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
  if (vals.length === 0) return null;
  return vals.length === 1 ? vals[0] : vals;
}

/** The sid announced by an engine.io open packet in a polling handshake body, or null. */
function sidInBody(body) {
  const m = /(?:^|\x1e)0(\{[^\x1e]*\})/.exec(body || '');
  if (!m) return null;
  try {
    return JSON.parse(m[1]).sid || null;
  } catch {
    return null;
  }
}

module.exports = { startBackend, headerOf, sidInBody, theiaExact, theiaOnDefaultPort };
