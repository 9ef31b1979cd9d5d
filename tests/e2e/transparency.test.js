// transparency.test.js: the backend receives identical request heads with and without sockproxy in the chain, bodies and frames arrive intact, response heads are identical.
'use strict';

const crypto = require('node:crypto');
const { describe, it, before, after } = require('node:test');
const { Scenario } = require('./lib/stack');
const { Expect } = require('./lib/expect');
const { slack } = require('./lib/slack');
const { connect, disconnect } = require('./lib/client');
const { sidInBody } = require('./lib/backend');
const { rawRequest, requestHead } = require('./lib/rawhttp');
const { clientFrame, readFramesUntil } = require('./lib/wsframe');
const R = require('./lib/records');

const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ODD = [
  ['Host', 'IDE.Example.com'],
  ['User-Agent', 'e2e-transparency/1.0'],
  ['Accept', '*/*'],
  ['X-MiXeD-CaSe', 'Keep-My-Case'],
  ['x-lower', 'lower'],
  ['X-Repeat', 'one'],
  ['X-Repeat', 'two'],
  ['X-Obs-Text', 'caf\xe9 na\xefve \xff'],
  ['X-Empty', ''],
  ['X-Spaces', 'a  b\tc'],
  ['Origin', 'http://ide.example.com'],
  ['Cookie', 'session=abc; io=zzz'],
  ['Cookie', 'theia-connection-token=t0k3n'],
  ['Via', '1.1 google'],
  ['X-Forwarded-For', '203.0.113.7, 34.1.2.3'],
  ['Forwarded', 'for=203.0.113.7;proto=https'],
  ['X-Cloud-Trace-Context', '105445aa7843bc8bf206b12000100000/1;o=1'],
  ['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
  ['X-Request-Id', 'req-42'],
  ['fix-origin', 'http://ide.example.com'],
  ['X-Long', 'L'.repeat(4000)],
];
const INTERLEAVED = [['Host', 'ide.example.com'], ['X-A', '1'], ['X-B', '2'], ['X-A', '3'], ['x-b', '4']];
// Extra headers to record (--capture-header, given in mixed case; records use lower case).
const CAPTURE = ['X-MiXeD-CaSe', 'x-repeat', 'X-Obs-Text', 'X-Empty'];
const FRAME_SIZES = [1, 125, 126, 65535, 65536, 200000, 256 * 1024];

const normSid = (s) => s.replace(/sid=[^&\s]+/g, 'sid=<sid>');
/** A response head without the values that legitimately differ between two runs (Date). */
const normHead = (head) => head.split('\r\n').map((l) => (/^date:/i.test(l) ? 'Date: <date>' : l)).join('\r\n');

/** Sends one request and returns the client's view and the one backend entry it produced. */
async function exchange(pod, port, head, opts = {}) {
  const before = pod.backend.requests.entries.length;
  const res = await rawRequest(port, head, opts);
  const entry = await pod.backend.requests.waitFor((e) => pod.backend.requests.entries.indexOf(e) >= before, { timeoutMs: 3000, description: 'the backend entry of this request' });
  return { res, entry };
}

describe('transparency: sockproxy in the chain changes nothing', { timeout: slack(90000) }, () => {
  const sc = new Scenario('transparency');
  const x = new Expect('transparency', sc.dir);
  let pod;
  const runs = { sp: {}, direct: {} };
  let frames;

  before(async () => {
    pod = await sc.pod({ podName: 'pod-a', direct: true, sockproxyArgs: CAPTURE.flatMap((h) => ['--capture-header', h]) });
    const body = () => {
      const prefix = '42["digest","';
      const suffix = '"]';
      const text = crypto.randomBytes(800 * 1024).toString('base64').slice(0, 1024 * 1024 - prefix.length - suffix.length);
      return Buffer.from(prefix + text + suffix, 'latin1');
    };
    for (const [name, port] of [['sp', pod.port], ['direct', pod.directPort]]) {
      const r = runs[name];
      r.odd = await exchange(pod, port, requestHead('GET', '/theia/socket.io/?EIO=4&transport=polling&t=odd', ODD));
      r.interleaved = await exchange(pod, port, requestHead('GET', '/theia/socket.io/?EIO=4&transport=polling&t=interleaved', INTERLEAVED));
      r.unknownSid = await exchange(pod, port, requestHead('GET', '/theia/socket.io/?EIO=4&transport=polling&sid=nosuchsid0000000000A&t=u', [['Host', 'ide.example.com']]));
      const sid = sidInBody(r.odd.res.body.toString('latin1'));
      // Join the default namespace and collect its answer, so that the big event below is dispatched.
      const host = ['Host', 'ide.example.com'];
      await rawRequest(port, requestHead('POST', `/theia/socket.io/?EIO=4&transport=polling&sid=${sid}&t=c`, [host, ['Content-Length', '2']]), { body: Buffer.from('40') });
      r.joined = await rawRequest(port, requestHead('GET', `/theia/socket.io/?EIO=4&transport=polling&sid=${sid}&t=j`, [host]));
      r.body = body();
      r.post = await exchange(
        pod,
        port,
        requestHead('POST', `/theia/socket.io/?EIO=4&transport=polling&sid=${sid}&t=post`, [['Host', 'ide.example.com'], ['Content-Type', 'text/plain;charset=UTF-8'], ['Content-Length', String(r.body.length)]]),
        { body: r.body, timeoutMs: 10000 }
      );
      r.digest = await pod.backend.messages.waitFor((m) => m.event === 'digest' && m.sid === sid, { timeoutMs: 5000, description: 'the digest of the 1 MiB event' });
      // Upgrade, with a socket.io CONNECT frame sent in the same write as the request head.
      const up = await exchange(
        pod,
        port,
        requestHead('GET', '/theia/socket.io/?EIO=4&transport=websocket&t=ws', [
          ['Host', 'ide.example.com'],
          ['Upgrade', 'websocket'],
          ['Connection', 'Upgrade'],
          ['Sec-WebSocket-Key', WS_KEY],
          ['Sec-WebSocket-Version', '13'],
          ['Sec-WebSocket-Extensions', 'permessage-deflate; client_max_window_bits'],
          ['Origin', 'http://ide.example.com'],
        ]),
        { keepOpen: true, body: clientFrame('40') }
      );
      r.upgrade = up;
      r.wsFrames = up.res.socket
        ? await readFramesUntil(up.res.socket, up.res.body, (f) => f.payload.toString().startsWith('40{'), 3000).then(
            (fs) => fs.map((f) => f.payload.toString().replace(/"sid":"[^"]+"/g, '"sid":"<sid>"')),
            (err) => [`error: ${err.message}`]
          )
        : ['no socket'];
      if (up.res.socket) up.res.socket.destroy();
    }
    // Binary frames up to 256 KiB through sockproxy with the real client.
    const s = await connect(`http://127.0.0.1:${pod.port}`, { path: '/theia/socket.io/', transports: ['websocket'] });
    sc.onTeardown(() => s.close());
    frames = { sid: s.io.engine.id, results: [] };
    for (const n of FRAME_SIZES) {
      const buf = crypto.randomBytes(n);
      const sent = crypto.createHash('sha256').update(buf).digest('hex');
      const echoed = await s.timeout(slack(10000)).emitWithAck('echo', buf);
      const digest = await s.timeout(slack(10000)).emitWithAck('digest', buf);
      frames.results.push({ n, sent, echoed: crypto.createHash('sha256').update(Buffer.from(echoed)).digest('hex'), backend: digest.sha256 });
    }
    await disconnect(s);
    // A session whose backend drops the TCP connection: the tunnel is closed by the upstream.
    const d = await connect(`http://127.0.0.1:${pod.port}`, { path: '/theia/socket.io/', transports: ['websocket'] });
    sc.onTeardown(() => d.close());
    frames.droppedSid = d.io.engine.id;
    d.emit('drop-connection');
    await d.engineEvents.waitFor((e) => e.type === 'close', { timeoutMs: 5000, description: 'the client noticing the dropped connection' });
  });
  after(() => sc.teardown());

  it('traffic: request heads at the backend are identical with and without sockproxy', () => {
    for (const k of ['odd', 'unknownSid', 'post', 'upgrade']) {
      const a = runs.sp[k].entry;
      const b = runs.direct[k].entry;
      x.equal([a.kind, a.method, normSid(a.url), a.httpVersion], [b.kind, b.method, normSid(b.url), b.httpVersion], `${k}: request line at the backend`);
      x.equal(a.rawHeaders, b.rawHeaders, `${k}: raw header names, values and order at the backend`);
    }
    const h = runs.sp.odd.entry.rawHeaders;
    x.ok(h.some(([n, v]) => n === 'X-MiXeD-CaSe' && v === 'Keep-My-Case'), 'a mixed-case header name reached the backend as sent', h);
    x.ok(h.some(([n, v]) => n === 'X-Obs-Text' && v === 'caf\xe9 na\xefve \xff'), 'obs-text bytes reached the backend as sent', h);
  });

  // proxy.rs documents that http::HeaderMap groups a repeated header's values, so A, B, A leaves as A, A, B.
  // Pinned here: each name keeps its values in order (required); the interleaving is either kept or
  // regrouped exactly as documented (at the first occurrence), nothing else.
  it('traffic: repeated headers keep their values in order; interleaving kept or regrouped as documented in proxy.rs', (t) => {
    const pick = (r) => r.interleaved.entry.rawHeaders.filter(([n]) => /^x-[ab]$/i.test(n));
    const a = pick(runs.sp);
    const b = pick(runs.direct);
    const perName = (list) => ['x-a', 'x-b'].map((n) => list.filter(([m]) => m.toLowerCase() === n));
    x.equal(perName(a), perName(b), 'each repeated header keeps its values (and their case) in order');
    const grouped = [...perName(b)[0], ...perName(b)[1]];
    const kept = JSON.stringify(a) === JSON.stringify(b);
    x.ok(kept || JSON.stringify(a) === JSON.stringify(grouped), 'interleaving kept, or regrouped at the first occurrence as proxy.rs documents', { got: a, sent: b });
    t.diagnostic(kept ? 'interleaved repeats: order kept' : 'interleaved repeats: regrouped (A, A, B), the documented limitation');
  });

  it('traffic: bodies and frames intact, response heads identical', () => {
    for (const k of ['sp', 'direct']) {
      const r = runs[k];
      const sha = crypto.createHash('sha256').update(r.body).digest('hex');
      x.equal([r.post.entry.body.length, r.post.entry.body.sha256], [r.body.length, sha], `${k}: the 1 MiB POST body arrived intact (SHA-256)`);
      x.equal([r.post.res.status, r.post.res.body.toString()], [200, 'ok'], `${k}: POST answered ok`);
      x.ok(r.joined.body.toString().startsWith('40{'), `${k}: the namespace was joined before the big event`, r.joined.body.toString());
      x.equal(r.digest.sha256, crypto.createHash('sha256').update(r.body.toString('latin1').slice('42["digest","'.length, -2)).digest('hex'), `${k}: the event payload inside it is intact`);
    }
    for (const k of ['odd', 'unknownSid', 'post', 'upgrade']) {
      x.equal(normHead(runs.sp[k].res.head), normHead(runs.direct[k].res.head), `${k}: response head identical (Date aside)`);
    }
    x.equal(runs.sp.unknownSid.res.body.toString(), runs.direct.unknownSid.res.body.toString(), 'unknown sid: error body identical');
    x.equal(runs.sp.odd.res.body.length, runs.direct.odd.res.body.length, 'handshake body length identical');
    x.equal(runs.sp.wsFrames, runs.direct.wsFrames, 'frames after the 101, with the CONNECT sent along with the upgrade request');
    x.ok(runs.direct.wsFrames.some((f) => f.startsWith('40{')), 'the CONNECT sent with the request head was answered', runs.direct.wsFrames);
    for (const f of frames.results) x.equal([f.echoed, f.backend], [f.sent, f.sent], `binary frame of ${f.n} bytes: echoed and received intact (SHA-256)`);
  });

  it('records: headers as the backend received them, body and tunnel byte counts', async () => {
    const sp = pod.sockproxy;
    x.equal(sp.nonJson, [], 'stdout carries only JSON records');
    const rec = (q, ev = 'request') =>
      x.step(`record for ${q}`, () => sp.records.waitFor((r) => r.event === ev && (r.query || '').endsWith(q), { timeoutMs: 3000, description: `${ev} record with query ending ${q}` }));
    const odd = await rec('t=odd');
    R.checkShape(x, odd, 'pod-a');
    R.checkHeadersAsReceived(x, odd, runs.sp.odd.entry, CAPTURE.map((h) => h.toLowerCase()));
    x.equal(odd.headers.cookie, ['session=<redacted>; io=zzz', 'theia-connection-token=<redacted>'], 'cookie values redacted except io, each Cookie header kept');
    R.checkHttpRequest(x, odd, runs.sp.odd.entry);
    x.equal(odd.bytes_out, runs.sp.odd.entry.response.bodyLength, 'handshake: bytes_out equals the body the backend sent');
    const post = await rec('t=post');
    x.equal(post.bytes_in, runs.sp.post.entry.body.length, 'POST: bytes_in equals the body the backend received');
    x.equal(post.httpRequest && post.httpRequest.requestSize, String(runs.sp.post.entry.body.length), 'POST: httpRequest.requestSize (string)');
    x.equal(post.flags, [], 'POST: no flags');
    const unknown = await rec('t=u');
    x.equal(unknown.sio_error, R.engineErrorOf(runs.sp.unknownSid.entry), 'unknown sid: sio_error from the chunked JSON body');
    const up = await rec('t=ws', 'upgrade');
    R.checkHeadersAsReceived(x, up, runs.sp.upgrade.entry);
    const tcUp = await x.step('tunnel_closed of the raw upgrade', () => sp.records.waitFor((r) => r.event === 'tunnel_closed' && r.id === up.id, { timeoutMs: 3000, description: 'tunnel_closed' }));
    const truthUp = await pod.backend.tunnels.waitFor((t) => t.seq === runs.sp.upgrade.entry.seq, { timeoutMs: 3000, description: 'backend tunnel end' });
    x.equal([tcUp.bytes_client_to_upstream, tcUp.bytes_upstream_to_client], [truthUp.bytesFromClient, truthUp.bytesToClient], 'raw upgrade: tunnel byte counts equal what the backend read and wrote (incl. the frame sent with the head)');
    const tc = await x.step('tunnel_closed of the binary-frame session', () =>
      sp.records.waitFor((r) => r.event === 'tunnel_closed' && r.sio && r.sio.sid === frames.sid, { timeoutMs: 3000, description: `tunnel_closed with sio.sid ${frames.sid}` })
    );
    const upRec = sp.records.where((r) => r.event === 'upgrade' && r.id === tc.id)[0];
    x.ok(upRec, 'the binary session has an upgrade record with the same id', tc.id);
    const truth = await pod.backend.tunnels.waitFor((t) => t.seq === R.backendEntryFor(x, pod.backend, upRec).seq, { timeoutMs: 3000, description: 'backend tunnel end' });
    const total = FRAME_SIZES.reduce((a, b) => a + b, 0);
    x.ok(tc.bytes_client_to_upstream > 2 * total && tc.bytes_upstream_to_client > total, 'tunnel byte counts cover the frames', [tc.bytes_client_to_upstream, tc.bytes_upstream_to_client, total]);
    x.equal([tc.bytes_client_to_upstream, tc.bytes_upstream_to_client], [truth.bytesFromClient, truth.bytesToClient], 'tunnel byte counts equal what the backend read and wrote');
    R.checkClosedBy(x, tcUp, truthUp, 'raw upgrade closed by the client');
    x.equal(tcUp.closed_by, 'client', 'raw upgrade: the client destroyed its socket: closed_by client');
    const dropped = await x.step('tunnel_closed of the dropped session', () =>
      sp.records.waitFor((r) => r.event === 'tunnel_closed' && r.sio && r.sio.sid === frames.droppedSid, { timeoutMs: 3000, description: `tunnel_closed with sio.sid ${frames.droppedSid}` })
    );
    x.equal(dropped.closed_by, 'upstream', 'the backend dropped the connection: closed_by upstream');
  });
});
