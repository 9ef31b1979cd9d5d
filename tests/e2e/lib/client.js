// client.js: the socket.io-client 4.8 side in Node, with every wait bounded and tied to an event.
'use strict';

const { io } = require('socket.io-client');

/** Resolves with the event's arguments the first time `event` fires; rejects after timeoutMs or on `failOn` events. */
function once(emitter, event, { timeoutMs = 5000, failOn = [], what } = {}) {
  return new Promise((resolve, reject) => {
    const cleanups = [];
    const timer = setTimeout(() => done(reject, new Error(`${what || event}: not within ${timeoutMs} ms`)), timeoutMs);
    const done = (fn, v) => {
      clearTimeout(timer);
      for (const c of cleanups) c();
      fn(v);
    };
    const on = (ev, fn) => {
      emitter.on(ev, fn);
      cleanups.push(() => emitter.off(ev, fn));
    };
    on(event, (...args) => done(resolve, args));
    for (const ev of failOn) on(ev, (e) => done(reject, new Error(`${what || event}: got '${ev}' first: ${e && e.message ? e.message : e}`)));
  });
}

/**
 * Connects socket.io-client to `url` (no reconnection, forceNew) with the given options and waits for
 * 'connect'. Rejects on 'connect_error' or after timeoutMs.
 */
async function connect(url, opts = {}, timeoutMs = 8000) {
  const socket = io(url, { reconnection: false, forceNew: true, timeout: timeoutMs, ...opts });
  await once(socket, 'connect', { timeoutMs, failOn: ['connect_error'], what: `socket.io connect to ${url}${opts.path || ''}` }).catch((err) => {
    socket.close();
    throw err;
  });
  return socket;
}

/** Waits until the engine runs on websocket (resolves at once if it already does); rejects on upgradeError. */
async function upgraded(socket, timeoutMs = 8000) {
  const engine = socket.io.engine;
  if (engine.transport.name === 'websocket') return;
  await once(engine, 'upgrade', { timeoutMs, failOn: ['upgradeError'], what: 'engine.io upgrade to websocket' });
}

/** Sends `echo` with payload and resolves with the backend's acknowledgement (bounded). */
function echo(socket, payload, timeoutMs = 5000) {
  return socket.timeout(timeoutMs).emitWithAck('echo', payload);
}

/** Closes the socket and waits until the engine reports the close (so the tunnel end is on the wire). */
async function disconnect(socket, timeoutMs = 5000) {
  const engine = socket.io.engine;
  if (!engine || engine.readyState === 'closed') return;
  const closed = once(engine, 'close', { timeoutMs, what: 'engine.io close' });
  socket.disconnect();
  await closed;
}

module.exports = { connect, upgraded, echo, disconnect, once };
