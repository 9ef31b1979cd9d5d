// healthy.test.js: the seed's chain working as intended (node client and Chromium: polling handshake → websocket → messages) and sockproxy's records of it.
'use strict';

const { describe, it, before, after } = require('node:test');
const { Scenario } = require('./lib/stack');
const { Expect } = require('./lib/expect');
const { slack, within } = require('./lib/slack');
const { connect, upgraded, echo, disconnect } = require('./lib/client');
const { launchChromium } = require('./lib/browser');
const { sidInBody } = require('./lib/backend');
const R = require('./lib/records');

const PAYLOADS = [{ n: 0, text: 'hello' }, { n: 1, text: 'é€😀'.repeat(40) }, { n: 2, text: 'x'.repeat(5000) }, { n: 3, blob: 'y'.repeat(70000) }];

/** Ground truth of one socket.io session as the backend saw it. */
async function groundTruth(x, backend, sid) {
  const issued = backend.sids.where((s) => s.sid === sid);
  const handshake = backend.requests.where((e) => e.kind === 'request' && sidInBody(e.response.body) === sid);
  const upgrade = backend.requests.where((e) => e.kind === 'upgrade' && new URL(e.url, 'http://x').searchParams.get('sid') === sid);
  const tunnel = await x.step('backend sees the upgraded socket close', () =>
    backend.tunnels.waitFor((t) => new URL(t.url, 'http://x').searchParams.get('sid') === sid, { timeoutMs: 5000, description: `the tunnel of ${sid}` })
  );
  return { issued, handshake, upgrade, tunnel };
}

function checkTraffic(x, label, run, truth) {
  x.equal(truth.issued.map((s) => s.transport), ['polling'], `${label}: the backend issued the client's sid once, on a polling handshake`);
  x.equal(truth.handshake.length, 1, `${label}: exactly one polling handshake response carried the sid`);
  x.equal(truth.handshake[0].response.status, 200, `${label}: handshake status`);
  x.equal(truth.upgrade.map((e) => e.response.status), [101], `${label}: the websocket upgrade got 101 from the backend`);
  x.equal(run.transportAfter, 'websocket', `${label}: the client runs on websocket after the upgrade`);
  x.equal(run.acks, run.sent, `${label}: every message came back intact over the websocket`);
}

/** Records of one session: handshake request, upgrade, tunnel_closed, all compared with the ground truth. */
async function checkRecords(x, label, pod, sid, truth) {
  const sp = pod.sockproxy;
  x.equal(sp.nonJson, [], `${label}: stdout carries only JSON records`);
  const l = sp.listening;
  R.checkShape(x, l, pod.podName);
  x.equal([l.listen, l.upstream], [`127.0.0.1:${sp.port}`, `127.0.0.1:${pod.backend.port}`], `${label}: listening record has the real bound address and the upstream`);
  x.ok(typeof l.version === 'string' && l.version.length > 0, `${label}: listening.version`, l.version);
  const ids = sp.records.where((r) => r.event === 'request' || r.event === 'upgrade').map((r) => r.id);
  x.equal(new Set(ids).size, ids.length, `${label}: exchange ids are unique`);
  const hs = await x.step(`${label}: waiting for the handshake record`, () =>
    sp.records.waitFor((r) => r.event === 'request' && r.sio && r.sio.handshake === true && r.sio.sid === sid, { timeoutMs: 3000, description: `handshake request record with sio.sid ${sid}` })
  );
  const up = await x.step(`${label}: waiting for the upgrade record`, () =>
    sp.records.waitFor((r) => r.event === 'upgrade' && r.sio && r.sio.sid === sid, { timeoutMs: 3000, description: `upgrade record with sio.sid ${sid}` })
  );
  const tc = await x.step(`${label}: waiting for tunnel_closed`, () =>
    sp.records.waitFor((r) => r.event === 'tunnel_closed' && r.id === up.id, { timeoutMs: 5000, description: `tunnel_closed with id ${up.id}` })
  );
  for (const r of [hs, up, tc]) R.checkShape(x, r, pod.podName);

  const hsEntry = R.backendEntryFor(x, pod.backend, hs);
  x.equal(hsEntry, truth.handshake[0], `${label}: the handshake record is the request that issued the sid`);
  x.equal(hs.status, 200, `${label}: handshake record status`);
  x.equal([hs.sio.eio, hs.sio.transport], ['4', 'polling'], `${label}: handshake record sio.eio / sio.transport`);
  R.checkHeadersAsReceived(x, hs, hsEntry);
  R.checkHttpRequest(x, hs, hsEntry);
  x.equal(hs.bytes_out, hsEntry.response.bodyLength, `${label}: handshake bytes_out equals the body the backend sent`);

  const upEntry = R.backendEntryFor(x, pod.backend, up);
  x.equal(upEntry, truth.upgrade[0], `${label}: the upgrade record is the backend's upgrade`);
  x.equal(up.status, 101, `${label}: upgrade record status`);
  x.equal(up.sio.transport, 'websocket', `${label}: upgrade record sio.transport`);
  x.equal(up.bytes_out, 0, `${label}: upgrade record bytes_out`);
  R.checkHeadersAsReceived(x, up, upEntry);
  R.checkHttpRequest(x, up, upEntry);

  x.equal(tc.sio && tc.sio.sid, sid, `${label}: tunnel_closed sio.sid`);
  x.ok(tc.bytes_client_to_upstream > 0 && tc.bytes_upstream_to_client > 0, `${label}: tunnel_closed has bytes both ways`, [tc.bytes_client_to_upstream, tc.bytes_upstream_to_client]);
  x.equal(tc.bytes_client_to_upstream, truth.tunnel.bytesFromClient, `${label}: tunnel_closed bytes_client_to_upstream equals what the backend read after the request head`);
  x.equal(tc.bytes_upstream_to_client, truth.tunnel.bytesToClient, `${label}: tunnel_closed bytes_upstream_to_client equals what the backend wrote after the 101 head`);
  R.checkClosedBy(x, tc, truth.tunnel, `${label}: tunnel_closed`);
  // The backend's socket 'close' can come well after the last FIN crossed sockproxy (ws and
  // Node finish their own close first), so its lifetime bounds the tunnel's from above only.
  x.between(tc.duration_ms, 0, truth.tunnel.closedAt - truth.tunnel.openedAt + 200, `${label}: tunnel_closed duration_ms within the backend's socket lifetime`);
  x.equal(tc.httpRequest && tc.httpRequest.protocol, 'websocket', `${label}: tunnel_closed httpRequest.protocol`);

  const session = sp.records.where((r) => (r.event === 'request' || r.event === 'upgrade') && r.sio && r.sio.sid === sid);
  x.ok(session.length >= 2, `${label}: the session's records share its sid`, session.length);
  for (const r of session) x.equal(r.flags, [], `${label}: no flags on ${r.event} ${r.method} ${r.path}?${r.query}`);
}

describe('healthy chain: polling → websocket → messages', { timeout: slack(90000) }, () => {
  const sc = new Scenario('healthy');
  let pod;
  let front;
  before(async () => {
    pod = await sc.pod({ podName: 'pod-a', backend: { originCheck: 'theia-on-default-port' } });
    front = await sc.front([pod]);
  });
  after(() => sc.teardown());

  describe('node socket.io-client', () => {
    const x = new Expect('healthy/node', sc.dir);
    const run = {};
    let truth;
    before(async () => {
      const socket = await connect(front.url, {
        path: '/theia/socket.io/',
        extraHeaders: { Origin: front.url, Cookie: 'session=s3cr3t; theia-connection-token=t0k3n' },
      });
      sc.onTeardown(() => socket.close());
      run.sid = socket.io.engine.id;
      await upgraded(socket);
      run.transportAfter = socket.io.engine.transport.name;
      run.sent = PAYLOADS;
      run.acks = [];
      for (const p of PAYLOADS) run.acks.push(await echo(socket, p));
      await disconnect(socket);
      truth = await groundTruth(x, pod.backend, run.sid);
    });
    it('traffic: handshake, 101, echoes', () => checkTraffic(x, 'node', run, truth));
    it('records: handshake sid, upgrade 101, tunnel_closed, headers as received, no flags', () => checkRecords(x, 'node', pod, run.sid, truth));
  });

  describe('headless Chromium', () => {
    const x = new Expect('healthy/chromium', sc.dir);
    const run = {};
    let truth;
    before(async () => {
      const chrome = await launchChromium(sc.dir);
      sc.onTeardown(() => chrome.close());
      const page = await within(chrome.browser.newPage(), 15000, 'a new Chromium page');
      page.on('console', (m) => require('node:fs').appendFileSync(sc.file('chromium-console.log'), `${m.type()}: ${m.text()}\n`));
      await page.goto(`${front.url}/theia/index.html`, { timeout: slack(15000) });
      await page.waitForFunction(() => window.e2e && window.e2e.socket.connected && window.e2e.socket.io.engine.transport.name === 'websocket', null, { timeout: slack(15000) });
      run.sid = await within(page.evaluate(() => window.e2e.socket.io.engine.id), 5000, 'the page: engine id');
      run.transportAfter = await within(page.evaluate(() => window.e2e.socket.io.engine.transport.name), 5000, 'the page: transport');
      run.sent = PAYLOADS;
      run.acks = await page.evaluate(
        async ({ payloads, ackMs }) => {
          const out = [];
          for (const p of payloads) out.push(await window.e2e.socket.timeout(ackMs).emitWithAck('echo', p));
          return out;
        },
        { payloads: PAYLOADS, ackMs: slack(5000) }
      );
      await within(
        page.evaluate(
          () =>
            new Promise((resolve) => {
              window.e2e.socket.io.engine.on('close', () => resolve());
              window.e2e.socket.disconnect();
            })
        ),
        5000,
        'the page: engine.io close after disconnect'
      );
      truth = await groundTruth(x, pod.backend, run.sid);
    });
    it('traffic: handshake, 101, echoes', () => checkTraffic(x, 'chromium', run, truth));
    it('records: handshake sid, upgrade 101, tunnel_closed, headers as received, no flags', () => checkRecords(x, 'chromium', pod, run.sid, truth));
  });
});
