// h1-upgrade-stripped.test.js: hypothesis 1 — a front that speaks HTTP/1.0 to the pod and drops Upgrade; engine.io answers 400 code 3 and the client stays on polling.
'use strict';

const { describe, it, before, after } = require('node:test');
const { Scenario } = require('./lib/stack');
const { Expect } = require('./lib/expect');
const { slack } = require('./lib/slack');
const { connect, upgradeFailed, echo, disconnect } = require('./lib/client');
const { headerOf } = require('./lib/backend');
const R = require('./lib/records');
const { rawRequest, requestHead, wsKey } = require('./lib/rawhttp');

describe('H1 Upgrade stripped by the front', { timeout: slack(60000) }, () => {
  const sc = new Scenario('h1-upgrade-stripped');
  const x = new Expect('H1 upgrade stripped', sc.dir);
  let pod;
  const run = {};
  let wsEntry;

  before(async () => {
    pod = await sc.pod({ podName: 'pod-a' });
    const front = await sc.front([pod], { http10DropUpgrade: true });
    const s = await connect(front.url, { path: '/theia/socket.io/' });
    sc.onTeardown(() => s.close());
    run.sid = s.io.engine.id;
    // The client probes websocket right after the handshake; the probe fails and it keeps polling.
    const err = await x.step('the websocket probe fails', () => upgradeFailed(s));
    run.upgradeError = `${err.message} ${err.description}`;
    run.transportAfter = s.io.engine.transport.name;
    run.sent = [{ n: 1 }, { n: 2, text: 'still polling' }];
    run.acks = [];
    for (const p of run.sent) run.acks.push(await echo(s, p));
    run.transportAtEnd = s.io.engine.transport.name;
    await disconnect(s);
    // What a websocket-only client gets through this front, byte for byte.
    const key = wsKey();
    run.raw = await rawRequest(
      front.port,
      requestHead('GET', '/theia/socket.io/?EIO=4&transport=websocket', [
        ['Host', `127.0.0.1:${front.port}`],
        ['Upgrade', 'websocket'],
        ['Connection', 'Upgrade'],
        ['Sec-WebSocket-Key', key],
        ['Sec-WebSocket-Version', '13'],
      ])
    );
    wsEntry = pod.backend.requests.where((e) => new URL(e.url, 'http://x').searchParams.get('transport') === 'websocket');
  });
  after(() => sc.teardown());

  it('traffic: the websocket request reaches the backend without Upgrade and gets 400 code 3; the client keeps polling', () => {
    const e = wsEntry[0];
    x.equal(e.kind, 'request', 'Node saw it as a plain request, not an upgrade');
    x.equal(headerOf(e, 'upgrade'), null, 'the backend got no Upgrade header');
    x.equal(e.response.status, 400, 'backend status');
    x.equal(R.engineErrorOf(e), { code: 3, message: 'Bad request' }, "backend answered engine.io's Bad request");
    x.ok(/probe error/.test(run.upgradeError), 'the client reported a failed probe', run.upgradeError);
    x.equal(wsEntry.length, 2, 'the probe and the websocket-only attempt reached the backend');
    for (const w of wsEntry) x.equal([w.kind, headerOf(w, 'upgrade'), w.response.status], ['request', null, 400], `${w.url}: plain request without Upgrade, 400`);
    x.equal([run.raw.status, JSON.parse(run.raw.body.toString())], [400, { code: 3, message: 'Bad request' }], 'a websocket-only client gets the JSON 400 code 3 through this front');
    x.equal([run.transportAfter, run.transportAtEnd], ['polling', 'polling'], 'the client stayed on polling');
    x.equal(run.acks, run.sent, 'messages still flow over polling');
  });

  it('records: transport websocket, upgrade null, 400, sio_error code 3, upgrade_header_missing; polling lines not flagged', async () => {
    const sp = pod.sockproxy;
    x.equal(sp.nonJson, [], 'stdout carries only JSON records');
    const recs = await x.step('waiting for the two websocket attempt records', () =>
      sp.records.waitFor((r) => r.event === 'request' && r.sio && r.sio.transport === 'websocket', { timeoutMs: 3000, count: 2, description: 'request records with sio.transport websocket' })
    );
    x.equal(recs.map((r) => r.sio.sid), [run.sid, null], "sio.sid: the probe's session, then none (websocket-only handshake)");
    for (const rec of recs) {
      const tag = `${rec.method} ${rec.path}?${rec.query}`;
      R.checkShape(x, rec, 'pod-a');
      const e = R.backendEntryFor(x, pod.backend, rec);
      x.equal(rec.headers.upgrade, null, `${tag}: headers.upgrade is null`);
      x.equal(rec.status, e.response.status, `${tag}: status equals the backend status`);
      x.equal(rec.sio_error, R.engineErrorOf(e), `${tag}: sio_error equals the error the backend wrote`);
      x.includes(rec.flags, 'upgrade_header_missing', `${tag}: flags has upgrade_header_missing`);
      x.excludes(rec.flags, 'connection_upgrade_missing', `${tag}: no connection_upgrade_missing (there is no Upgrade at all)`);
      R.checkHeadersAsReceived(x, rec, e);
      R.checkHttpRequest(x, rec, e);
    }
    x.equal(sp.records.where((r) => r.event === 'upgrade'), [], 'no upgrade record');
    const polling = sp.records.where((r) => r.event === 'request' && r.sio && r.sio.transport === 'polling');
    x.ok(polling.length >= 3, 'handshake, POSTs and GETs of the session were recorded', polling.length);
    for (const r of polling) {
      x.equal(r.flags, [], `polling line ${r.method} ${r.query} has no flags`);
      R.checkHeadersAsReceived(x, r, R.backendEntryFor(x, pod.backend, r));
    }
  });
});
