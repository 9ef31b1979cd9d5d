// h2-no-affinity.test.js: hypothesis 2 — two pods behind a round-robin front; the handshake lands on one pod, the next request on the other, which answers "Session ID unknown".
'use strict';

const { describe, it, before, after } = require('node:test');
const { Scenario } = require('./lib/stack');
const { Expect } = require('./lib/expect');
const { slack } = require('./lib/slack');
const { connect } = require('./lib/client');
const { sidInBody } = require('./lib/backend');
const { rawRequest, requestHead, wsKey } = require('./lib/rawhttp');
const R = require('./lib/records');

describe('H2 no affinity: round-robin over two pods', { timeout: slack(60000) }, () => {
  const sc = new Scenario('h2-no-affinity');
  const x = new Expect('H2 no affinity', sc.dir);
  let pods;
  let front;
  const run = {};

  before(async () => {
    // --pod-header: the seed's Q3 affinity test (X-Pod-Name on every response).
    pods = [await sc.pod({ podName: 'pod-a', sockproxyArgs: ['--pod-header'] }), await sc.pod({ podName: 'pod-b', sockproxyArgs: ['--pod-header'] })];
    front = await sc.front(pods);
    const host = ['Host', `127.0.0.1:${front.port}`];
    const t = () => Date.now().toString(36);
    // One nginx worker balances strictly in turn: handshake -> X, poll -> Y, POST -> X, upgrade -> Y.
    run.handshake = await rawRequest(front.port, requestHead('GET', `/theia/socket.io/?EIO=4&transport=polling&t=${t()}a`, [host]));
    run.sid = sidInBody(run.handshake.body.toString('latin1'));
    const q = `EIO=4&transport=polling&sid=${run.sid}`;
    run.poll = await rawRequest(front.port, requestHead('GET', `/theia/socket.io/?${q}&t=${t()}b`, [host]));
    run.post = await rawRequest(front.port, requestHead('POST', `/theia/socket.io/?${q}&t=${t()}c`, [host, ['Content-Type', 'text/plain;charset=UTF-8'], ['Content-Length', '2']]), { body: Buffer.from('40') });
    run.upgrade = await rawRequest(
      front.port,
      requestHead('GET', `/theia/socket.io/?EIO=4&transport=websocket&sid=${run.sid}`, [host, ['Upgrade', 'websocket'], ['Connection', 'Upgrade'], ['Sec-WebSocket-Key', wsKey()], ['Sec-WebSocket-Version', '13']])
    );
    // And what the real client makes of it.
    run.clientError = await connect(front.url, { path: '/theia/socket.io/', transports: ['polling'] }).then(
      (s) => {
        s.close();
        return null;
      },
      (err) => err.message
    );
    const issuers = pods.filter((p) => p.backend.sids.where((s) => s.sid === run.sid).length === 1);
    run.issuer = issuers.length === 1 ? issuers[0] : null;
    run.other = run.issuer ? pods.find((p) => p !== run.issuer) : null;
  });
  after(() => sc.teardown());

  it('traffic: handshake on one pod, the other refuses the sid with 400 code 1 (JSON on polling, raw text on upgrade)', () => {
    x.equal(run.handshake.status, 200, 'handshake status');
    x.ok(run.issuer, 'exactly one backend issued the sid', pods.map((p) => p.backend.sids.entries.map((s) => s.sid)));
    const refused = run.other.backend.requests.where((e) => e.url.includes(`sid=${run.sid}`));
    x.equal(refused.map((e) => [e.method, e.response.status, R.engineErrorOf(e)]), [
      ['GET', 400, { code: 1, message: 'Session ID unknown' }],
      ['GET', 400, { code: 1, message: 'Session ID unknown' }],
    ], `the other pod (${run.other.podName}) refused the poll and the upgrade`);
    x.equal([run.poll.status, run.poll.body.toString()], [400, '{"code":1,"message":"Session ID unknown"}'], 'the client got the JSON 400 for its poll');
    x.equal([run.upgrade.status, run.upgrade.body.toString()], [400, 'Session ID unknown'], 'the client got the raw 400 for its upgrade');
    x.equal(run.issuer.backend.requests.where((e) => e.method === 'POST' && e.url.includes(run.sid)).map((e) => e.response.status), [200], 'the POST landed on the issuing pod and was accepted');
    x.ok(run.clientError !== null, 'socket.io-client cannot connect through this front', run.clientError);

  });

  it('records: the refusing pod flags sid_unknown + sid_not_issued_here; the issuing pod logged the handshake with that sid; X-Pod-Name', async () => {
    const { issuer, other, sid } = run;
    // sockproxy's own output on the wire (the seed's Q3), so it belongs with the record assertions.
    const podOf = (res) => (res.rawHeaders.find(([n]) => n.toLowerCase() === 'x-pod-name') || [])[1];
    x.equal([podOf(run.handshake), podOf(run.poll), podOf(run.post), podOf(run.upgrade)], [issuer.podName, other.podName, issuer.podName, other.podName], 'X-Pod-Name (--pod-header) shows the alternation the backends saw');
    for (const p of pods) x.equal(p.sockproxy.nonJson, [], `${p.podName}: stdout carries only JSON records`);
    const hs = await x.step(`${issuer.podName}: handshake record`, () =>
      issuer.sockproxy.records.waitFor((r) => r.event === 'request' && r.sio && r.sio.handshake === true && r.sio.sid === sid, { timeoutMs: 3000, description: `handshake record with sio.sid ${sid}` })
    );
    R.checkShape(x, hs, issuer.podName);
    R.checkHeadersAsReceived(x, hs, R.backendEntryFor(x, issuer.backend, hs));
    R.checkHttpRequest(x, hs, R.backendEntryFor(x, issuer.backend, hs), { podHeader: issuer.podName });
    x.equal(hs.flags, [], `${issuer.podName}: handshake record has no flags`);
    const post = await x.step(`${issuer.podName}: POST record`, () =>
      issuer.sockproxy.records.waitFor((r) => r.event === 'request' && r.method === 'POST' && r.sio && r.sio.sid === sid, { timeoutMs: 3000, description: 'the POST record' })
    );
    x.equal([post.status, post.flags], [200, []], `${issuer.podName}: the POST with its own sid is clean`);

    const refused = await x.step(`${other.podName}: records of the refused requests`, () =>
      other.sockproxy.records.waitFor((r) => r.event === 'request' && r.sio && r.sio.sid === sid, { timeoutMs: 3000, count: 2, description: `request records with sio.sid ${sid}` })
    );
    for (const r of refused) {
      const tag = `${other.podName} ${r.method} ${r.path}?${r.query}`;
      R.checkShape(x, r, other.podName);
      const e = R.backendEntryFor(x, other.backend, r);
      x.equal(r.status, e.response.status, `${tag}: status equals the backend's`);
      x.equal(r.sio_error, R.engineErrorOf(e), `${tag}: sio_error equals what the backend wrote`);
      x.includes(r.flags, 'sid_unknown', `${tag}: flags has sid_unknown`);
      x.includes(r.flags, 'sid_not_issued_here', `${tag}: flags has sid_not_issued_here`);
      R.checkHeadersAsReceived(x, r, e);
      R.checkHttpRequest(x, r, e, { podHeader: other.podName });
    }
    x.equal(refused.map((r) => r.sio.transport), ['polling', 'websocket'], `${other.podName}: the refused poll and the refused upgrade`);
    x.equal(other.sockproxy.records.where((r) => r.event === 'upgrade'), [], `${other.podName}: a refused upgrade is a request record, not an upgrade record`);
    x.equal(issuer.sockproxy.records.where((r) => r.flags && r.flags.includes('sid_not_issued_here') && r.sio && r.sio.sid === sid), [], `${issuer.podName}: never flags its own sid as foreign`);
  });
});
