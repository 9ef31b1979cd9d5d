// probe.test.js: `sockproxy probe` (issue 6) against the chain's healthy front and each misbehaving front; it must name the failing step and the hypothesis.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const { Server } = require('socket.io');
const { describe, it, before, after } = require('node:test');
const { Scenario } = require('./lib/stack');
const { Expect } = require('./lib/expect');
const { slack, within } = require('./lib/slack');
const { headerOf } = require('./lib/backend');
const { freePort } = require('./lib/ports');
const { runProbe } = require('./lib/probe');
const R = require('./lib/records');

const STEPS = ['handshake', 'post', 'poll', 'upgrade', 'probe', 'message', 'close'];
const sidOf = (url) => new URL(url, 'http://x').searchParams.get('sid');
const transportOf = (url) => new URL(url, 'http://x').searchParams.get('transport');

describe('sockproxy probe through the chain', { timeout: slack(90000) }, () => {
  const sc = new Scenario('probe');
  const x = new Expect('probe', sc.dir);
  let pod;
  let pair;
  const fronts = {};
  // --timeout bounds each probe step: a deadline, so it takes the slack.
  const probe = (front, ...args) => runProbe(['--timeout', String(slack(5000) / 1000), ...args, `${front.url}/theia/socket.io/`], { dir: sc.dir });

  before(async () => {
    // Theia >= 1.73's origin check as it behaves behind a TLS LB on 443 (backend.js theiaOnDefaultPort).
    pod = await sc.pod({ podName: 'pod-a', sockproxyArgs: ['--pod-header'], backend: { originCheck: 'theia-on-default-port' } });
    pair = [await sc.pod({ podName: 'pod-b', sockproxyArgs: ['--pod-header'] }), await sc.pod({ podName: 'pod-c', sockproxyArgs: ['--pod-header'] })];
    fronts.healthy = await sc.front([pod], {}, 'front-healthy');
    fronts.h1 = await sc.front([pod], { http10DropUpgrade: true }, 'front-h1-drops-upgrade');
    fronts.h2 = await sc.front(pair, {}, 'front-h2-round-robin');
    fronts.h3 = await sc.front([{ port: await freePort() }], {}, 'front-h3-no-healthy-backend');
    fronts.h4origin = await sc.front([pod], { rewriteOrigin: 'http://k8s-ingress.internal' }, 'front-h4-rewrites-origin');
    fronts.h4host = await sc.front([pod], { rewriteHost: 'coditect-combined-service' }, 'front-h4-rewrites-host');
    fronts.h6 = await sc.front([pod], { timeoutSec: 2 }, 'front-h6-timeout-2s');
    // A socket.io 4 server that also speaks engine.io 3 (socket.io 2 clients), for --eio 3.
    const server3 = http.createServer();
    const io3 = new Server(server3, { allowEIO3: true, path: '/theia/socket.io/' });
    await new Promise((resolve) => server3.listen(0, '127.0.0.1', resolve));
    sc.onTeardown(() => within(new Promise((resolve) => io3.close(() => resolve())), 5000, 'closing the engine.io 3 server'));
    fronts.eio3 = await sc.front([{ port: server3.address().port }], {}, 'front-eio3');
  });
  after(() => sc.teardown());

  it('healthy front: exit 0, every step passes on the pod that issued the sid, and the backend saw the same session', async () => {
    const r = await probe(fronts.healthy, '--json');
    x.equal(r.code, 0, 'exit code', r.stdout);
    const s = r.json.sessions[0];
    x.equal([r.json.ok, r.json.failure], [true, null], 'ok, no failure');
    x.equal(s.steps.map((st) => [st.step, st.ok]), STEPS.map((n) => [n, true]), 'every step, in order, passed');
    x.equal(s.steps.filter((st) => st.status !== null).map((st) => st.pod), ['pod-a', 'pod-a', 'pod-a', 'pod-a'], 'X-Pod-Name on every HTTP step');
    x.equal(s.steps[3].status, 101, 'the upgrade got 101');
    x.equal(pod.backend.sids.where((e) => e.sid === s.sid).map((e) => e.transport), ['polling'], 'the backend issued the sid the probe reports, on polling');
    const up = await x.step('the backend upgraded the same sid', () =>
      pod.backend.requests.waitFor((e) => e.kind === 'upgrade' && sidOf(e.url) === s.sid, { timeoutMs: 3000, description: `the upgrade of ${s.sid}` })
    );
    x.equal(up.response.status, 101, 'backend answered the upgrade with 101');
    x.ok(/4\d\/sockproxy-probe,/.test(s.steps[5].detail), 'the message step got the namespace answer', s.steps[5].detail);
    const rec = await x.step('sockproxy recorded the upgrade', () =>
      pod.sockproxy.records.waitFor((r2) => r2.event === 'upgrade' && r2.sio && r2.sio.sid === s.sid, { timeoutMs: 3000, description: `upgrade record of ${s.sid}` })
    );
    x.equal(rec.flags, [], 'the probe looks like a clean browser session to sockproxy');

    const human = await probe(fronts.healthy);
    fs.writeFileSync(sc.file('healthy-human.txt'), human.stdout);
    x.equal(human.code, 0, 'human report: exit 0', human.stdout);
    x.ok(/^PASS: every step passed/m.test(human.stdout), 'human report ends with PASS', human.stdout);
  });

  it('H1 front (HTTP/1.0, Upgrade dropped): exit 1 at the upgrade step, H1; the backend got a plain request and answered 400 code 3', async () => {
    const r = await probe(fronts.h1, '--json');
    x.equal(r.code, 1, 'exit code', r.stdout);
    x.equal([r.json.failure.step, r.json.failure.hypothesis], ['upgrade', 'H1'], 'failing step and hypothesis');
    const s = r.json.sessions[0];
    const up = s.steps[3];
    x.equal([up.status, up.sio_error], [400, { code: 3, message: 'Bad request' }], 'the upgrade step shows the 400 and the decoded engine.io error');
    x.equal(s.skipped, ['probe', 'message', 'close'], 'the websocket steps were skipped');
    const seen = pod.backend.requests.where((e) => sidOf(e.url) === s.sid && transportOf(e.url) === 'websocket');
    x.equal(seen.map((e) => [e.kind, headerOf(e, 'upgrade'), e.response.status]), [['request', null, 400]], 'ground truth: no Upgrade reached the backend');
    x.equal(R.engineErrorOf(seen[0]), up.sio_error, 'the error the probe decoded is the one the backend wrote');
    const human = await probe(fronts.h1);
    fs.writeFileSync(sc.file('h1-human.txt'), human.stdout);
    x.ok(/^FAIL at step upgrade: H1 /m.test(human.stdout), 'human report names the step and H1', human.stdout);
  });

  it('H2 front (round-robin over two pods): exit 1 at the first request on the sid, H2, on a pod other than the issuer', async () => {
    const r = await probe(fronts.h2, '--json');
    x.equal(r.code, 1, 'exit code', r.stdout);
    const f = r.json.failure;
    x.equal(f.hypothesis, 'H2', 'hypothesis', f);
    x.ok(['post', 'poll', 'upgrade'].includes(f.step), 'a request on the sid failed', f.step);
    const s = r.json.sessions[0];
    const failed = s.steps[s.steps.length - 1];
    const issuer = pair.find((p) => p.backend.sids.where((e) => e.sid === s.sid).length === 1);
    x.ok(issuer, 'one backend issued the sid', s.sid);
    const other = pair.find((p) => p !== issuer);
    x.equal([s.steps[0].pod, failed.pod], [issuer.podName, other.podName], 'X-Pod-Name: handshake on the issuer, the failing request on the other pod');
    x.equal(failed.sio_error.code, 1, 'Session ID unknown');
    const refused = other.backend.requests.where((e) => sidOf(e.url) === s.sid);
    x.equal(refused.map((e) => R.engineErrorOf(e)), [{ code: 1, message: 'Session ID unknown' }], 'ground truth: the other backend refused the sid');

    const many = await probe(fronts.h2, '--json', '--count', '4');
    x.equal(many.code, 1, '--count 4: exit code');
    x.equal([many.json.affinity.sessions, many.json.affinity.stayed, many.json.affinity.by], [4, 0, 'x-pod-name'], '--count 4: no session stayed on one pod');
    const human = await probe(fronts.h2, '--count', '3');
    fs.writeFileSync(sc.file('h2-human.txt'), human.stdout);
    x.ok(/^affinity: 0\/3 sessions stayed on one pod \(by X-Pod-Name\)/m.test(human.stdout), 'human report: affinity line', human.stdout);
  });

  it('H3 front (no healthy backend): exit 1 at the handshake, 502, H3 (or H5)', async () => {
    const r = await probe(fronts.h3, '--json');
    x.equal(r.code, 1, 'exit code', r.stdout);
    x.equal([r.json.failure.step, r.json.failure.hypotheses], ['handshake', ['H3', 'H5']], 'failing step and hypotheses');
    x.equal(r.json.sessions[0].steps[0].status, 502, 'the front answered 502');
  });

  it('H4 fronts (Origin or Host rewritten): exit 1 at the handshake, 403 code 4, then the same request without Origin; H4 only when that one is accepted', async () => {
    const runs = {};
    for (const [name, header, value] of [['h4origin', 'origin', 'http://k8s-ingress.internal'], ['h4host', 'host', 'coditect-combined-service']]) {
      const r = await probe(fronts[name], '--json');
      runs[name] = r.json;
      x.equal(r.code, 1, `${name}: exit code`, r.stdout);
      const steps = r.json.sessions[0].steps;
      x.equal(steps.map((s) => s.step), ['handshake', 'no-origin'], `${name}: the refused handshake, then the same request without Origin`);
      x.equal([steps[0].status, steps[0].sio_error], [403, { code: 4, message: 'Forbidden' }], `${name}: 403 and the decoded engine.io error`);
      const seen = pod.backend.requests.where((e) => e.response && e.response.status === 403 && headerOf(e, header) === value);
      x.ok(seen.length >= 1, `${name}: ground truth: the backend got ${header}: ${value} and answered 403`, seen.length);
    }
    // Host rewritten: without Origin the request passes, so it was the Origin check.
    const byHost = runs.h4host;
    x.equal([byHost.failure.step, byHost.failure.hypothesis, byHost.sessions[0].steps[1].status], ['handshake', 'H4', 200], 'h4host: accepted without Origin: H4');
    const passed = pod.backend.requests.where((e) => e.response && e.response.status === 200 && headerOf(e, 'host') === 'coditect-combined-service' && headerOf(e, 'origin') === null);
    x.ok(passed.length >= 1, 'h4host: ground truth: the backend got the request without Origin and answered 200', passed.length);
    // Origin set by the front on every request, the probe's request without Origin included: from outside
    // that is a refusal whatever the Origin, so no H4, and the why names a hop that sets Origin as the exception.
    const byOrigin = runs.h4origin;
    x.equal([byOrigin.failure.step, byOrigin.failure.hypothesis, byOrigin.sessions[0].steps[1].status], ['handshake', null, 403], 'h4origin: refused without Origin too: not named H4');
    x.ok(/refused whatever the Origin/.test(byOrigin.failure.why) && /a hop that sets Origin on every request/.test(byOrigin.failure.why), 'h4origin: the why says so and names the exception', byOrigin.failure.why);
    const injected = pod.backend.requests.where((e) => e.response && e.response.status === 403 && headerOf(e, 'origin') === 'http://k8s-ingress.internal');
    x.ok(injected.length >= 2, 'h4origin: ground truth: both requests reached the backend with the front\'s Origin', injected.length);
    const human = await probe(fronts.h4host);
    fs.writeFileSync(sc.file('h4-human.txt'), human.stdout);
    x.ok(/^FAIL at step handshake: H4 /m.test(human.stdout) && /^ {2}ok {4}no-origin 200 /m.test(human.stdout), 'human report names the step, the request without Origin and H4', human.stdout);
  });

  it('H6 front (2 s timeout): --hold 6 is cut about 2 s after the upgrade, exit 1 at the hold step, H6', async () => {
    const r = await probe(fronts.h6, '--json', '--hold', '6');
    x.equal(r.code, 1, 'exit code', r.stdout);
    x.equal([r.json.failure.step, r.json.failure.hypothesis], ['hold', 'H6'], 'failing step and hypothesis');
    const m = /without a close frame ([\d.]+) s after the upgrade/.exec(r.json.failure.why);
    x.ok(m, 'the verdict says when the cut came', r.json.failure.why);
    // The probe's clock starts after the 101 and nginx's may start before it, so the lower bound has some room.
    x.between(Number(m[1]), 1.5, 2 + slack(3000) / 1000, 'the cut came at the front timeout');
    const s = r.json.sessions[0];
    x.equal(s.steps.map((st) => [st.step, st.ok]), [...STEPS.slice(0, 6).map((n) => [n, true]), ['hold', false]], 'every step before the hold passed');
  });

  it('--eio 3 against a socket.io 4 backend: exit 1 at the handshake, code 5, not a hypothesis', async () => {
    const r = await probe(fronts.healthy, '--json', '--eio', '3');
    x.equal(r.code, 1, 'exit code', r.stdout);
    x.equal([r.json.failure.step, r.json.failure.hypothesis], ['handshake', null], 'failing step, no hypothesis');
    x.equal(r.json.sessions[0].steps[0].sio_error, { code: 5, message: 'Unsupported protocol version' }, 'decoded engine.io error');
    x.ok(r.json.failure.why.includes('--eio 4'), 'the verdict suggests --eio 4', r.json.failure.why);
  });

  it('--eio 3 against a server that allows it (allowEIO3): exit 0; length-prefixed POST, ping/pong round trips', async () => {
    const r = await probe(fronts.eio3, '--json', '--eio', '3');
    x.equal(r.code, 0, 'exit code', r.stdout);
    const s = r.json.sessions[0];
    x.equal(s.steps.map((st) => [st.step, st.ok]), STEPS.map((n) => [n, true]), 'every step passed');
    x.ok(s.steps[1].request.endsWith('body "1:2"'), 'the POST is a length-prefixed v3 ping', s.steps[1].request);
    x.equal([s.steps[2].detail.startsWith('pong'), s.steps[5].detail], [true, 'pong 3'], 'pongs over polling and over the websocket');
  });
});
