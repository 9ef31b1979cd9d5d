// h4-origin-host.test.js: hypothesis 4 — a front that rewrites Origin (or Host) meets Theia ≥ 1.73's same-origin check: 403 code 4 on polling, raw 400 Forbidden on websocket.
'use strict';

const { describe, it, before, after } = require('node:test');
const { Scenario } = require('./lib/stack');
const { Expect } = require('./lib/expect');
const { slack } = require('./lib/slack');
const { headerOf } = require('./lib/backend');
const { rawRequest, requestHead, wsKey } = require('./lib/rawhttp');
const R = require('./lib/records');

/** A browser's polling handshake and websocket-only handshake through `front` (Origin = the page's origin). */
async function browserLike(front, tag) {
  const origin = `http://127.0.0.1:${front.port}`;
  const base = [['Host', `127.0.0.1:${front.port}`], ['Origin', origin], ['User-Agent', `e2e-${tag}`]];
  const polling = await rawRequest(front.port, requestHead('GET', `/theia/socket.io/?EIO=4&transport=polling&t=${tag}`, base));
  const ws = await rawRequest(
    front.port,
    requestHead('GET', `/theia/socket.io/?EIO=4&transport=websocket&tag=${tag}`, [...base, ['Upgrade', 'websocket'], ['Connection', 'Upgrade'], ['Sec-WebSocket-Key', wsKey()], ['Sec-WebSocket-Version', '13']])
  );
  return { origin, polling, ws };
}

describe('H4 Origin/Host changed on the way', { timeout: slack(60000) }, () => {
  const sc = new Scenario('h4-origin-host');
  const x = new Expect('H4 origin/host', sc.dir);
  let pod;
  let exact;
  const run = {};
  const REWRITTEN_ORIGIN = 'http://k8s-ingress.internal';
  const REWRITTEN_HOST = 'coditect-combined-service';

  before(async () => {
    // Theia's check as it behaves behind a TLS LB on 443 (see backend.js theiaOnDefaultPort).
    pod = await sc.pod({ podName: 'pod-a', backend: { originCheck: 'theia-on-default-port' } });
    // Theia's check verbatim; on loopback the front's port makes even honest traffic fail it.
    exact = await sc.pod({ podName: 'pod-b', backend: { originCheck: 'theia-exact' } });
    const honest = await sc.front([pod], {}, 'front-honest');
    const badOrigin = await sc.front([pod], { rewriteOrigin: REWRITTEN_ORIGIN }, 'front-rewrites-origin');
    const badHost = await sc.front([pod], { rewriteHost: REWRITTEN_HOST }, 'front-rewrites-host');
    const honestExact = await sc.front([exact], {}, 'front-honest-exact');
    run.honest = await browserLike(honest, 'honest');
    run.badOrigin = await browserLike(badOrigin, 'origin');
    run.badHost = await browserLike(badHost, 'host');
    run.exact = await browserLike(honestExact, 'exact');
  });
  after(() => sc.teardown());

  const polling403 = [403, '{"code":4,"message":"Forbidden"}'];
  const ws400 = [400, 'Forbidden'];
  const got = (r) => [r.status, r.body.toString()];

  it('traffic: honest front 200/101; rewriting fronts 403 code 4 (polling) and raw 400 Forbidden (websocket)', () => {
    x.equal(run.honest.polling.status, 200, 'honest front: polling handshake 200');
    x.equal(run.honest.ws.status, 101, 'honest front: websocket handshake 101');
    x.equal(got(run.badOrigin.polling), polling403, 'Origin-rewriting front: polling');
    x.equal(got(run.badOrigin.ws), ws400, 'Origin-rewriting front: websocket-only');
    x.equal(got(run.badHost.polling), polling403, 'Host-rewriting front: polling');
    x.equal(got(run.badHost.ws), ws400, 'Host-rewriting front: websocket-only');
    const seen = (tag) => pod.backend.requests.where((e) => e.url.endsWith(`=${tag}`));
    for (const e of [...seen('origin'), ...seen('host')]) x.ok(headerOf(e, 'origin') !== null, `${e.url}: the backend got an Origin`, e.rawHeaders);
    x.equal(seen('origin').map((e) => headerOf(e, 'origin')), [REWRITTEN_ORIGIN, REWRITTEN_ORIGIN], 'the backend received the rewritten Origin');
    x.equal(seen('host').map((e) => headerOf(e, 'host')), [REWRITTEN_HOST, REWRITTEN_HOST], 'the backend received the rewritten Host');
    x.equal(got(run.exact.polling), polling403, "Theia's exact check behind a non-default public port: polling refused");
    x.equal(got(run.exact.ws), ws400, "Theia's exact check behind a non-default public port: websocket refused");
  });

  it('records: rewritten Origin/Host logged as received, sio_error code 4, origin_host_mismatch + forbidden; the honest control is clean', async () => {
    const sp = pod.sockproxy;
    x.equal(sp.nonJson, [], 'stdout carries only JSON records');
    const recsFor = (p, tag, n) =>
      x.step(`${p.podName}: records of the ${tag} requests`, () =>
        p.sockproxy.records.waitFor((r) => (r.event === 'request' || r.event === 'upgrade') && (r.query || '').endsWith(`=${tag}`), { timeoutMs: 3000, count: n, description: `${n} records of the ${tag} pair` })
      );
    const honest = await recsFor(pod, 'honest', 2);
    for (const r of honest) {
      R.checkShape(x, r, 'pod-a');
      const e = R.backendEntryFor(x, pod.backend, r);
      R.checkHeadersAsReceived(x, r, e);
      x.equal(r.flags, [], `honest ${r.event} ${r.query}: no flags`);
      x.equal(r.status, e.response.status, `honest ${r.query}: status equals the backend's`);
    }
    x.equal(honest.map((r) => r.event).sort(), ['request', 'upgrade'], 'honest: a request record and an upgrade record');
    for (const [tag, field, value] of [['origin', 'origin', REWRITTEN_ORIGIN], ['host', 'host', REWRITTEN_HOST]]) {
      const recs = await recsFor(pod, tag, 2);
      for (const r of recs) {
        const t = `${tag}-rewriting front, ${r.sio && r.sio.transport}`;
        R.checkShape(x, r, 'pod-a');
        const e = R.backendEntryFor(x, pod.backend, r);
        x.equal(r.event, 'request', `${t}: a refused handshake is a request record`);
        x.equal(r.headers[field], value, `${t}: headers.${field} is the rewritten value the backend received`);
        R.checkHeadersAsReceived(x, r, e);
        x.equal(r.status, e.response.status, `${t}: status equals the backend's`);
        x.equal(r.sio_error, R.engineErrorOf(e), `${t}: sio_error equals what the backend wrote (code 4)`);
        x.includes(r.flags, 'origin_host_mismatch', `${t}: origin_host_mismatch`);
        x.includes(r.flags, 'forbidden', `${t}: forbidden`);
      }
    }
    // Contract: ports compare only when Host carries one; nginx's $host has none, so this refusal is
    // "forbidden" without origin_host_mismatch even though Theia compared the port.
    const ex = await recsFor(exact, 'exact', 2);
    for (const r of ex) {
      const t = `exact check, ${r.sio && r.sio.transport}`;
      const e = R.backendEntryFor(x, exact.backend, r);
      R.checkHeadersAsReceived(x, r, e);
      x.equal(r.sio_error, R.engineErrorOf(e), `${t}: sio_error code 4`);
      x.includes(r.flags, 'forbidden', `${t}: forbidden`);
      x.excludes(r.flags, 'origin_host_mismatch', `${t}: no origin_host_mismatch (Host carries no port)`);
    }
  });
});
