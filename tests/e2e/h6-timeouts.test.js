// h6-timeouts.test.js: hypothesis 6 — a busy websocket survives ≥ 20 s through an honest front; a front with a short fixed timeout cuts quiet websockets and pending long-polls at that value.
'use strict';

const { describe, it, before, after } = require('node:test');
const { Scenario } = require('./lib/stack');
const { Expect } = require('./lib/expect');
const { slack } = require('./lib/slack');
const { connect, upgraded, echo, disconnect } = require('./lib/client');
const { sidInBody } = require('./lib/backend');
const { rawRequest, requestHead } = require('./lib/rawhttp');
const R = require('./lib/records');
const { traceOf, waitForLbEntries } = require('./lib/lblog');

const HOLD_MS = Number(process.env.E2E_HOLD_MS || 20000);
const TIMEOUT_S = 3; // stands for the backend service's timeoutSec (GKE default 30 s)
const QUIET = 3;

/** A websocket that echoes once a second for HOLD_MS through an honest front. */
async function holdBusy(sc, pod, front) {
  const s = await connect(front.url, { path: '/theia/socket.io/' });
  sc.onTeardown(() => s.close());
  await upgraded(s);
  const run = { sid: s.io.engine.id, upgradedAt: Date.now(), acks: 0, sent: 0 };
  while (Date.now() - run.upgradedAt < HOLD_MS) {
    run.sent++;
    const i = run.sent;
    const ack = await echo(s, { i }, 3000);
    if (ack && ack.i === i) run.acks++;
    // Paced by the backend's answer plus one second of quiet (times the slack: any pace will do), i.e. "periodic echoes".
    await s.engineEvents.waitFor((e) => e.type === 'close', { timeoutMs: 1000 }).then(
      () => {
        throw new Error('socket closed during the hold');
      },
      () => {}
    );
  }
  run.closedEarly = s.engineEvents.where((e) => e.type === 'close').length > 0;
  run.heldMs = Date.now() - run.upgradedAt;
  await disconnect(s);
  run.closedAt = Date.now();
  return run;
}

/** QUIET websocket-only clients that say nothing; the short-timeout front cuts them. */
async function quietSockets(sc, front) {
  return Promise.all(
    Array.from({ length: QUIET }, async () => {
      // Measured (monotonic) from before the connect: the front's timer starts at the last byte of the handshake, later.
      const openedAt = performance.now();
      const s = await connect(front.url, { path: '/theia/socket.io/', transports: ['websocket'] });
      sc.onTeardown(() => s.close());
      const sid = s.io.engine.id;
      const close = await s.engineEvents.waitFor((e) => e.type === 'close', { timeoutMs: TIMEOUT_S * 1000 + 5000, description: 'the front cutting the quiet websocket' });
      return { sid, lifetimeMs: performance.now() - openedAt, reason: close.reason };
    })
  );
}

/** A polling session whose pending long-poll the short-timeout front cuts; the next poll finds the session gone. */
async function cutLongPoll(front) {
  const host = ['Host', `127.0.0.1:${front.port}`];
  const t = (s) => `${Date.now().toString(36)}${s}`;
  const hs = await rawRequest(front.port, requestHead('GET', `/theia/socket.io/?EIO=4&transport=polling&t=${t('a')}`, [host]));
  const sid = sidInBody(hs.body.toString('latin1'));
  const q = `EIO=4&transport=polling&sid=${sid}`;
  await rawRequest(front.port, requestHead('POST', `/theia/socket.io/?${q}&t=${t('b')}`, [host, ['Content-Type', 'text/plain;charset=UTF-8'], ['Content-Length', '2']]), { body: Buffer.from('40') });
  const first = await rawRequest(front.port, requestHead('GET', `/theia/socket.io/?${q}&t=${t('c')}`, [host]));
  // Monotonic, and before the request is sent: the front's timer starts once it has passed the request on.
  const started = performance.now();
  const pending = await rawRequest(front.port, requestHead('GET', `/theia/socket.io/?${q}&t=cut`, [host]), { timeoutMs: TIMEOUT_S * 1000 + 5000 });
  const cutAfterMs = performance.now() - started;
  const next = await rawRequest(front.port, requestHead('GET', `/theia/socket.io/?${q}&t=after`, [host]));
  return { sid, first, pending, cutAfterMs, next };
}

describe('H6 timeouts', { timeout: HOLD_MS + slack(60000) }, () => {
  const sc = new Scenario('h6-timeouts');
  const x = new Expect('H6 timeouts', sc.dir);
  let honestPod;
  let shortPod;
  let hold;
  let quiet;
  let poll;
  let fronts;

  before(async () => {
    honestPod = await sc.pod({ podName: 'pod-a' });
    shortPod = await sc.pod({ podName: 'pod-b' });
    const honest = await sc.front([honestPod], {}, 'front-honest');
    const short = await sc.front([shortPod], { timeoutSec: TIMEOUT_S }, 'front-short-timeout');
    fronts = { honest, short };
    [hold, quiet, poll] = await Promise.all([holdBusy(sc, honestPod, honest), quietSockets(sc, short), cutLongPoll(short)]);
  });
  after(() => sc.teardown());

  it(`traffic: a busy websocket lives ${HOLD_MS / 1000} s through the honest front; the short front cuts quiet websockets and the pending poll at ${TIMEOUT_S} s`, async () => {
    x.ok(hold.heldMs >= HOLD_MS && !hold.closedEarly, 'the busy websocket stayed open for the whole hold', hold);
    x.equal(hold.acks, hold.sent, 'every periodic echo was answered');
    // Cut at the timeout: never before it (the clocks started before the front's); how much later is the machine's load.
    for (const q of quiet) x.between(q.lifetimeMs, TIMEOUT_S * 1000, TIMEOUT_S * 1000 + slack(1500), `quiet websocket ${q.sid} was cut at the front's timeout (ms)`);
    x.equal(poll.first.status, 200, 'the first poll was answered');
    x.equal(poll.pending.status, 504, 'the front answered the held long-poll with 504 at its timeout');
    x.between(poll.cutAfterMs, TIMEOUT_S * 1000, TIMEOUT_S * 1000 + slack(1500), 'the long-poll was cut at the timeout (ms)');
    x.equal([poll.next.status, poll.next.body.toString()], [400, '{"code":1,"message":"Session ID unknown"}'], 'the next poll finds the session gone');
    const closes = shortPod.backend.closes.where((c) => c.sid === poll.sid);
    x.equal(closes.map((c) => [c.reason, c.description]), [['transport error', 'poll connection closed prematurely']], 'engine.io closed the session because the poll connection went away');
    x.ok(shortPod.backend.sids.where((s) => s.sid === poll.sid).length === 1, 'the same pod issued the sid that it then refused', poll.sid);
  });

  it('records: tunnel lifetimes match (≥ hold, and at the timeout) with who closed; the cut poll is poll_aborted, the next sid_unknown but issued here', async () => {
    for (const p of [honestPod, shortPod]) x.equal(p.sockproxy.nonJson, [], `${p.podName}: stdout carries only JSON records`);
    // A polling session's upgrade carries the sid in its query; a websocket-only session's sid is learned from
    // the first frame and shows on tunnel_closed only (CONTRACT.md, sio.sid).
    const tunnelOf = async (pod, sid, wsOnly) => {
      let up;
      let tc;
      if (wsOnly) {
        tc = await x.step(`${pod.podName}: tunnel_closed for ${sid}`, () =>
          pod.sockproxy.records.waitFor((r) => r.event === 'tunnel_closed' && r.sio && r.sio.sid === sid, { timeoutMs: 3000, description: `tunnel_closed with sio.sid ${sid}` })
        );
        up = pod.sockproxy.records.where((r) => r.event === 'upgrade' && r.id === tc.id)[0];
        x.ok(up, `${pod.podName}: an upgrade record with the tunnel's id ${tc.id}`, up);
      } else {
        up = await x.step(`${pod.podName}: upgrade record for ${sid}`, () =>
          pod.sockproxy.records.waitFor((r) => r.event === 'upgrade' && r.sio && r.sio.sid === sid, { timeoutMs: 3000, description: `upgrade record of ${sid}` })
        );
        tc = await x.step(`${pod.podName}: tunnel_closed for ${sid}`, () =>
          pod.sockproxy.records.waitFor((r) => r.event === 'tunnel_closed' && r.id === up.id, { timeoutMs: 3000, description: `tunnel_closed ${up.id}` })
        );
      }
      const seq = R.backendEntryFor(x, pod.backend, up).seq;
      const truth = await pod.backend.tunnels.waitFor((t) => t.seq === seq, { timeoutMs: 3000, description: 'backend tunnel end' });
      return { up, tc, truth };
    };
    const busy = await tunnelOf(honestPod, hold.sid);
    x.ok(busy.tc.duration_ms >= HOLD_MS, `busy tunnel: duration_ms ≥ ${HOLD_MS}`, busy.tc.duration_ms);
    x.between(busy.tc.duration_ms, busy.truth.closedAt - busy.truth.openedAt - slack(2000), busy.truth.closedAt - busy.truth.openedAt + 200, "busy tunnel: duration_ms within the backend's socket lifetime");
    R.checkClosedBy(x, busy.tc, busy.truth, 'busy tunnel');
    const latency = busy.tc.httpRequest && busy.tc.httpRequest.latency;
    x.ok(typeof latency === 'string' && /^\d+(\.\d+)?s$/.test(latency), 'busy tunnel: httpRequest.latency like "20.5s"', latency);
    x.near(parseFloat(latency) * 1000, busy.tc.duration_ms, 1, 'busy tunnel: httpRequest.latency is the tunnel lifetime');
    x.equal(busy.tc.httpRequest.protocol, 'websocket', 'busy tunnel: httpRequest.protocol');

    const closedTunnels = await x.step('pod-b: the quiet websockets', () =>
      shortPod.sockproxy.records.waitFor((r) => r.event === 'tunnel_closed', { timeoutMs: 3000, count: QUIET, description: `${QUIET} tunnel_closed records` })
    );
    x.equal(closedTunnels.length, QUIET, 'one tunnel_closed per quiet websocket');
    for (const q of quiet) {
      const { tc, truth } = await tunnelOf(shortPod, q.sid, true);
      // sockproxy's tunnel starts after the front has armed its timer on the upgrade request, so it may be a little short of the timeout.
      x.between(tc.duration_ms, TIMEOUT_S * 1000 - 1000, TIMEOUT_S * 1000 + slack(1000), `quiet ${q.sid}: duration_ms at the front's timeout`);
      x.between(tc.duration_ms, 0, truth.closedAt - truth.openedAt + 200, `quiet ${q.sid}: duration_ms within the backend's socket lifetime`);
      x.equal(truth.endedFirstBy, 'client', `quiet ${q.sid}: the backend saw the client side end first`);
      x.equal(tc.closed_by, 'client', `quiet ${q.sid}: closed_by client (the front's timeout, through nginx)`);
    }

    const cut = await x.step('pod-b: the cut long-poll', () =>
      shortPod.sockproxy.records.waitFor((r) => r.event === 'request' && r.query && r.query.endsWith('t=cut'), { timeoutMs: 3000, description: 'record of the cut poll' })
    );
    R.checkShape(x, cut, 'pod-b');
    x.includes(cut.flags, 'poll_aborted', 'cut poll: poll_aborted');
    x.equal(cut.outcome, 'client_aborted', 'cut poll: outcome client_aborted');
    x.near(cut.duration_ms, poll.cutAfterMs, slack(500), 'cut poll: duration_ms is how long the client waited');
    const next = await x.step('pod-b: the poll after the cut', () =>
      shortPod.sockproxy.records.waitFor((r) => r.event === 'request' && r.query && r.query.endsWith('t=after'), { timeoutMs: 3000, description: 'record of the next poll' })
    );
    const e = R.backendEntryFor(x, shortPod.backend, next);
    x.equal(next.sio_error, R.engineErrorOf(e), 'next poll: sio_error equals what the backend wrote');
    x.includes(next.flags, 'sid_unknown', 'next poll: sid_unknown');
    x.excludes(next.flags, 'sid_not_issued_here', 'next poll: the sid was issued on this pod');
  });

  it('records: the front\'s LB log and sockproxy\'s tunnels share trace ids; the LB ends the quiet websockets with backend_timeout, the busy one with websocket_closed', async () => {
    const tunnels = (pod) => pod.sockproxy.records.where((r) => r.event === 'tunnel_closed');
    const byTrace = (pod) => new Map(tunnels(pod).filter((r) => r.trace).map((r) => [r.trace, r]));
    const short = await x.step('the short front logged the cut websockets', () =>
      waitForLbEntries(fronts.short, (e) => e.httpRequest.status === 101, { count: QUIET, description: 'websocket entries of the short front' })
    );
    const shortTunnels = byTrace(shortPod);
    x.equal(shortTunnels.size, QUIET, 'pod-b: every tunnel_closed carries a trace id');
    for (const e of short) {
      const tc = shortTunnels.get(traceOf(e));
      x.ok(tc, `LB entry ${e.trace}: sockproxy's tunnel with the same trace id`, [...shortTunnels.keys()]);
      x.equal(e.jsonPayload.statusDetails, 'backend_timeout', 'the LB says its backend timeout ended it');
      const lbMs = parseFloat(e.httpRequest.latency) * 1000;
      x.between(lbMs, TIMEOUT_S * 1000, TIMEOUT_S * 1000 + slack(1500), 'LB latency: the whole websocket, cut at the timeout (ms)');
      x.between(tc.duration_ms, 0, lbMs + 5, "sockproxy's tunnel fits inside the LB's websocket (ms)");
      x.equal(tc.closed_by, 'client', 'sockproxy saw the LB side close');
    }
    const cutEntry = await x.step('the short front logged the cut poll', () =>
      waitForLbEntries(fronts.short, (e) => /t=cut$/.test(e.httpRequest.requestUrl), { description: 'LB entry of the cut poll' })
    );
    x.equal([cutEntry[0].httpRequest.status, cutEntry[0].jsonPayload.statusDetails], [504, 'backend_timeout'], 'cut poll: the browser got 504, backend_timeout');
    const cutRec = shortPod.sockproxy.records.where((r) => r.event === 'request' && r.query && r.query.endsWith('t=cut'))[0];
    x.equal(cutRec && cutRec.trace, traceOf(cutEntry[0]), 'cut poll: sockproxy recorded the trace id the LB logged');
    const busy = await x.step('the honest front logged the busy websocket', () =>
      waitForLbEntries(fronts.honest, (e) => e.httpRequest.status === 101, { description: 'the busy websocket entry' })
    );
    const busyTc = byTrace(honestPod).get(traceOf(busy[0]));
    x.ok(busyTc, 'busy websocket: sockproxy tunnel with the LB entry\'s trace id', busy[0].trace);
    x.equal(busy[0].jsonPayload.statusDetails, 'websocket_closed', 'busy websocket: websocket_closed');
    x.ok(parseFloat(busy[0].httpRequest.latency) * 1000 >= busyTc.duration_ms, 'busy websocket: the LB lifetime covers the tunnel', [busy[0].httpRequest.latency, busyTc.duration_ms]);
  });
});
