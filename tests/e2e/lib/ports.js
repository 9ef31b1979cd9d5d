// ports.js: free loopback ports from the OS, and bounded waits until a port accepts connections.
'use strict';

const net = require('node:net');
const { slack } = require('./slack');

/** A port the OS just handed out for 127.0.0.1 (for nginx, which cannot be told to use port 0). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function tryConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Resolves once 127.0.0.1:port accepts a TCP connection. Retries a refused connect every 20 ms up to
 * `timeoutMs` (times SOCKPROXY_TEST_SLACK); fails at once if `exited` (a process's exit promise) settles first.
 */
async function waitForPort(port, { timeoutMs = 5000, exited, what = `port ${port}` } = {}) {
  const waitMs = slack(timeoutMs);
  const deadline = Date.now() + waitMs;
  let gone = null;
  if (exited) exited.then((info) => (gone = info));
  for (;;) {
    if (gone) throw new Error(`${what}: process exited before listening (${JSON.stringify(gone)})`);
    if (await tryConnect(port)) return;
    if (Date.now() > deadline) throw new Error(`${what}: nothing listening on 127.0.0.1:${port} after ${waitMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

module.exports = { freePort, waitForPort };
