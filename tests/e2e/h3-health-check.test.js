// h3-health-check.test.js: hypothesis 3 — GoogleHC and kubelet probes get the backend's 404; with --log-all their records carry health_check.
'use strict';

const { describe, it, before, after } = require('node:test');
const { Scenario } = require('./lib/stack');
const { Expect } = require('./lib/expect');
const { slack } = require('./lib/slack');
const { rawRequest, requestHead } = require('./lib/rawhttp');
const R = require('./lib/records');
const { traceOf, waitForLbEntries } = require('./lib/lblog');

const BROWSERS = 3;

describe('H3 health checks', { timeout: slack(60000) }, () => {
  const sc = new Scenario('h3-health-check');
  const x = new Expect('H3 health check', sc.dir);
  let logAll;
  let plain;
  let unhealthy;
  const run = {};

  before(async () => {
    logAll = await sc.pod({ podName: 'pod-a', sockproxyArgs: ['--log-all'] });
    plain = await sc.pod({ podName: 'pod-b' });
    // The GFE prober hits the serving port (the pod nginx) directly, as captured on GKE.
    const googleHc = (port) =>
      rawRequest(port, requestHead('GET', '/health', [['Host', '10.96.1.207'], ['User-Agent', 'GoogleHC/1.0'], ['Connection', 'Keep-alive']]));
    run.hc = await googleHc(logAll.port);
    // kubelet's probe, sent straight to the sidecar's port as a probe on that container would be.
    run.kube = await rawRequest(logAll.sockproxy.port, requestHead('GET', '/health', [['Host', '127.0.0.1:80'], ['User-Agent', 'kube-probe/1.32'], ['Accept', '*/*'], ['Connection', 'close']]));
    // A browser asking for the same path is not a health check.
    run.browser = await rawRequest(logAll.port, requestHead('GET', '/health', [['Host', 'ide.example.com'], ['User-Agent', 'Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0']]));
    // Without --log-all: the probe passes through but is not recorded; a socket.io request afterwards is.
    run.plainHc = await googleHc(plain.port);
    run.sentinel = await rawRequest(plain.port, requestHead('GET', `/theia/socket.io/?EIO=4&transport=polling&t=${Date.now().toString(36)}`, [['Host', 'ide.example.com']]));
    // The load balancer once its checks have failed on both pods: browsers' handshakes get its 502, and its own
    // log says why (failed_to_pick_backend) while no pod sees them.
    unhealthy = await sc.front([logAll, plain], { unhealthy: true }, 'front-unhealthy');
    run.browsers = [];
    for (let i = 0; i < BROWSERS; i++) {
      run.browsers.push(await rawRequest(unhealthy.port, requestHead('GET', `/theia/socket.io/?EIO=4&transport=polling&t=${Date.now().toString(36)}${i}`, [['Host', `127.0.0.1:${unhealthy.port}`], ['User-Agent', 'Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0']])));
    }
  });
  after(() => sc.teardown());

  it('traffic: /health is answered 404 by the backend', () => {
    for (const [name, res, pod] of [['GoogleHC', run.hc, logAll], ['kube-probe', run.kube, logAll], ['browser', run.browser, logAll], ['GoogleHC without --log-all', run.plainHc, plain]]) {
      x.equal(res.status, 404, `${name}: client got 404`);
    }
    const seen = logAll.backend.requests.where((e) => e.url === '/health');
    x.equal(seen.map((e) => e.response.status), [404, 404, 404], 'the backend answered all three /health requests itself with 404');
    x.equal(plain.backend.requests.where((e) => e.url === '/health').map((e) => e.response.status), [404], 'pod-b backend answered 404 too');
    x.equal(run.sentinel.status, 200, 'the socket.io handshake on pod-b works');
  });

  it('traffic: with every pod unhealthy the load balancer answers the browsers 502 itself and logs failed_to_pick_backend with a trace', async () => {
    x.equal(run.browsers.map((r) => r.status), Array(BROWSERS).fill(502), 'each browser handshake got the front\'s 502');
    const entries = await x.step('the front logged each browser request', () =>
      waitForLbEntries(unhealthy, (e) => /Mozilla/.test(e.httpRequest.userAgent), { count: BROWSERS, description: 'LB entries of the browser handshakes' })
    );
    for (const e of entries) {
      x.equal([e.resource.type, e.jsonPayload['@type']], ['http_load_balancer', 'type.googleapis.com/google.cloud.loadbalancing.type.LoadBalancerLogEntry'], 'an http_load_balancer LogEntry');
      x.equal([e.httpRequest.status, e.jsonPayload.statusDetails], [502, 'failed_to_pick_backend'], 'browser got 502 because no backend was healthy');
      x.ok(traceOf(e), 'the entry has a trace id', e.trace);
    }
    const seen = [...logAll.backend.requests.where(() => true), ...plain.backend.requests.where(() => true)];
    x.equal(seen.filter((r) => /Chrome\/156/.test(JSON.stringify(r)) && !/\/health/.test(r.url)), [], 'no backend saw a browser handshake');
  });

  it('records: with --log-all the probes carry health_check, the browser request does not; without --log-all /health is not recorded', async () => {
    const sp = logAll.sockproxy;
    x.equal(sp.nonJson, [], 'stdout carries only JSON records');
    const recs = await x.step('three /health records on pod-a', () =>
      sp.records.waitFor((r) => r.event === 'request' && r.path === '/health', { timeoutMs: 3000, count: 3, description: '/health request records' })
    );
    const byUa = (ua) => recs.find((r) => r.headers && r.headers['user-agent'] === ua);
    for (const ua of ['GoogleHC/1.0', 'kube-probe/1.32']) {
      const r = byUa(ua);
      x.ok(r, `a record with headers.user-agent ${ua}`, recs.map((q) => q.headers && q.headers['user-agent']));
      R.checkShape(x, r, 'pod-a');
      const e = R.backendEntryFor(x, logAll.backend, r);
      x.equal(r.status, e.response.status, `${ua}: status equals the backend's`);
      x.includes(r.flags, 'health_check', `${ua}: flags has health_check`);
      x.ok(!r.sio, `${ua}: no sio object on a non-socket.io path`, r.sio);
      R.checkHeadersAsReceived(x, r, e);
      R.checkHttpRequest(x, r, e);
    }
    const b = recs.find((r) => r.headers && /Mozilla/.test(r.headers['user-agent'] || ''));
    x.ok(b, 'a record for the browser request', recs);
    x.excludes(b.flags, 'health_check', 'browser request: no health_check');
    const psp = plain.sockproxy;
    await x.step('pod-b records the later socket.io handshake', () =>
      psp.records.waitFor((r) => r.event === 'request' && r.sio && r.sio.handshake === true, { timeoutMs: 3000, description: 'the handshake record' })
    );
    x.equal(psp.records.where((r) => r.path === '/health'), [], 'pod-b (no --log-all): no record for /health');
  });
});
