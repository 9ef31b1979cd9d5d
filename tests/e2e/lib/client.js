// client.js: the socket.io-client 4.8 side in Node, with every wait bounded and tied to an event.
'use strict';

const { io } = require('socket.io-client');
const { Journal } = require('./journal');
const { slack } = require('./slack');

// Every timeoutMs here is a deadline for an event and is multiplied by SOCKPROXY_TEST_SLACK (lib/slack.js).

/** Resolves with the event's arguments the first time `event` fires; rejects after timeoutMs or on `failOn` events. */
function once(emitter, event, { timeoutMs = 5000, failOn = [], what } = {}) {
  return new Promise((resolve, reject) => {
    const cleanups = [];
    const deadlineMs = slack(timeoutMs);
    const timer = setTimeout(() => done(reject, new Error(`${what || event}: not within ${deadlineMs} ms`)), deadlineMs);
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
  const socket = io(url, { reconnection: false, forceNew: true, timeout: slack(timeoutMs), ...opts });
  // The probe starts right after the engine opens, possibly before 'connect': journal its outcome from the start.
  socket.engineEvents = new Journal('engine.io client events');
  socket.io.on('open', () => {
    const engine = socket.io.engine;
    engine.on('upgrade', (t) => socket.engineEvents.push({ type: 'upgrade', transport: t.name }));
    engine.on('upgradeError', (err) => {
      const d = err && err.description;
      socket.engineEvents.push({ type: 'upgradeError', message: String(err && err.message), description: String((d && (d.message || d.type)) || d || '') });
    });
    engine.on('close', (reason, desc) => socket.engineEvents.push({ type: 'close', reason, description: String((desc && desc.message) || desc || '') }));
  });
  await once(socket, 'connect', { timeoutMs, failOn: ['connect_error'], what: `socket.io connect to ${url}${opts.path || ''}` }).catch((err) => {
    socket.close();
    throw err;
  });
  return socket;
}

/** Waits until the engine has upgraded to websocket (at once if it did already); rejects on upgradeError. */
async function upgraded(socket, timeoutMs = 8000) {
  if (socket.io.engine.transport.name === 'websocket') return;
  const ev = await socket.engineEvents.waitFor((e) => e.type === 'upgrade' || e.type === 'upgradeError', { timeoutMs, description: 'the websocket upgrade' });
  if (ev.type === 'upgradeError') throw new Error(`websocket upgrade failed: ${ev.message} ${ev.description}`);
}

/** Waits until the engine's websocket probe has failed and resolves with that upgradeError; rejects if it upgraded. */
async function upgradeFailed(socket, timeoutMs = 8000) {
  const ev = await socket.engineEvents.waitFor((e) => e.type === 'upgrade' || e.type === 'upgradeError', { timeoutMs, description: 'the outcome of the websocket probe' });
  if (ev.type === 'upgrade') throw new Error('the client upgraded to websocket');
  return ev;
}

/** Sends `echo` with payload and resolves with the backend's acknowledgement (bounded). */
function echo(socket, payload, timeoutMs = 5000) {
  return socket.timeout(slack(timeoutMs)).emitWithAck('echo', payload);
}

/** Closes the socket and waits until the engine reports the close (so the tunnel end is on the wire). */
async function disconnect(socket, timeoutMs = 5000) {
  const engine = socket.io.engine;
  if (!engine || engine.readyState === 'closed') return;
  const closed = once(engine, 'close', { timeoutMs, what: 'engine.io close' });
  socket.disconnect();
  await closed;
}

module.exports = { connect, upgraded, upgradeFailed, echo, disconnect, once };
