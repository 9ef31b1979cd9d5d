// h5-draining.test.js: hypothesis 5 — SIGTERM to sockproxy while a websocket echoes: traffic continues until the drain deadline, then the tunnel is closed by shutdown.
'use strict';

const { describe, it, before, after } = require('node:test');
const { Scenario } = require('./lib/stack');
const { Expect } = require('./lib/expect');
const { slack } = require('./lib/slack');
const { connect, upgraded, echo } = require('./lib/client');

const DRAIN_S = 2;

describe('H5 draining: SIGTERM while a websocket is busy', { timeout: slack(60000) }, () => {
  const sc = new Scenario('h5-draining');
  const x = new Expect('H5 draining', sc.dir);
  let pod;
  const run = { acks: [], errors: 0 };

  before(async () => {
    pod = await sc.pod({ podName: 'pod-a', sockproxyArgs: ['--drain-timeout', String(DRAIN_S)] });
    const front = await sc.front([pod]);
    const s = await connect(front.url, { path: '/theia/socket.io/' });
    sc.onTeardown(() => s.close());
    await upgraded(s);
    run.sid = s.io.engine.id;
    // Echo continuously, one message in flight at a time, until the socket closes.
    let open = true;
    const loop = (async () => {
      for (let i = 0; open && s.connected; i++) {
        try {
          await echo(s, { i }, 1000);
          run.acks.push(performance.now());
        } catch {
          run.errors++;
        }
      }
    })();
    await x.step('the first echoes before SIGTERM', async () => {
      const start = run.acks.length;
      await pod.backend.messages.waitFor((m) => m.event === 'echo' && m.transport === 'websocket', { count: start + 3, timeoutMs: 3000, description: 'three echoes over websocket' });
    });
    // Monotonic, and taken before the signal is sent: sockproxy's deadline starts later.
    run.sigtermAt = performance.now();
    pod.sockproxy.proc.signal('SIGTERM');
    const closed = await s.engineEvents
      .waitFor((e) => e.type === 'close', { timeoutMs: DRAIN_S * 1000 + 4000, description: 'the client socket closing' })
      .catch(() => null);
    run.closedAt = closed ? performance.now() : null;
    run.closeReason = closed && closed.reason;
    open = false;
    s.close();
    await loop;
    run.exit = await Promise.race([pod.sockproxy.proc.exited, new Promise((r) => setTimeout(() => r(null), slack(3000)))]);
  });
  after(() => sc.teardown());

  it('traffic: echoes continue after SIGTERM until the deadline, then the socket closes', () => {
    const after = run.acks.filter((t) => t > run.sigtermAt);
    x.ok(after.length > 0, 'echoes were answered after SIGTERM', after.length);
    x.ok(run.closedAt !== null, 'the client socket was closed', run.closeReason);
    // Not before the deadline (that is the drain); how late it may come is the machine's load.
    x.between(run.closedAt - run.sigtermAt, DRAIN_S * 1000, DRAIN_S * 1000 + slack(2500), 'the socket closed at the drain deadline, not before (ms after SIGTERM)');
    // One echo in flight at a time: the last answer comes one round trip (load) before the cut, at most half the drain.
    const lastAckBefore = Math.min(slack(700), (DRAIN_S * 1000) / 2);
    x.ok(after[after.length - 1] >= run.sigtermAt + DRAIN_S * 1000 - lastAckBefore, `echoes kept working until ${lastAckBefore} ms before the deadline`, after.length ? after[after.length - 1] - run.sigtermAt : null);
    x.equal(run.exit && run.exit.code, 0, 'sockproxy exited 0');
  });

  it('records: draining, tunnel_closed closed_by shutdown, stopped', async () => {
    const sp = pod.sockproxy;
    x.equal(sp.nonJson, [], 'stdout carries only JSON records');
    const up = await x.step('upgrade record', () => sp.records.waitFor((r) => r.event === 'upgrade' && r.sio && r.sio.sid === run.sid, { timeoutMs: 3000, description: 'the upgrade record' }));
    const draining = await x.step('draining record', () => sp.records.waitFor((r) => r.event === 'draining', { timeoutMs: 3000, description: 'the draining record' }));
    x.equal(draining.open_tunnels, 1, 'draining.open_tunnels counts our websocket');
    x.equal(draining.deadline_s, DRAIN_S, 'draining.deadline_s is --drain-timeout');
    const tc = await x.step('tunnel_closed', () => sp.records.waitFor((r) => r.event === 'tunnel_closed' && r.id === up.id, { timeoutMs: 3000, description: `tunnel_closed ${up.id}` }));
    x.equal(tc.closed_by, 'shutdown', 'tunnel_closed.closed_by');
    const t = await pod.backend.tunnels.waitFor((e) => e.url.includes(run.sid), { timeoutMs: 3000, description: 'the backend tunnel end' });
    x.between(tc.duration_ms, 0, t.closedAt - t.openedAt + 200, "tunnel_closed.duration_ms within the backend's socket lifetime");
    const stopped = await x.step('stopped record', () => sp.records.waitFor((r) => r.event === 'stopped', { timeoutMs: 3000, description: 'the stopped record' }));
    x.equal([stopped.drained, stopped.tunnels_closed_by_shutdown], [false, 1], 'stopped: not drained, one tunnel closed by shutdown');
    const order = sp.records.entries.map((r) => r.event).filter((e) => ['draining', 'tunnel_closed', 'stopped'].includes(e));
    x.equal(order, ['draining', 'tunnel_closed', 'stopped'], 'order of the shutdown records');
  });
});
