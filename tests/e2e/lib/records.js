// records.js: checks sockproxy records against CONTRACT.md and against what the backend really received (never against copied values).
'use strict';

const { headerOf } = require('./backend');

/** Request headers a record always carries (null when absent), per CONTRACT.md §2 `headers`. */
const ALWAYS = ['upgrade', 'connection', 'host', 'origin', 'x-forwarded-for', 'x-forwarded-proto'];
/** Request headers a record carries when they were sent. */
const WHEN_SENT = [
  'x-forwarded-host', 'x-forwarded-port', 'x-real-ip', 'forwarded', 'via', 'user-agent', 'sec-websocket-key',
  'sec-websocket-version', 'sec-websocket-protocol', 'sec-websocket-extensions', 'cookie', 'x-cloud-trace-context',
  'traceparent', 'x-request-id', 'fix-origin',
];
const FLAGS = new Set([
  'upgrade_header_missing', 'connection_upgrade_missing', 'sid_unknown', 'sid_not_issued_here', 'origin_host_mismatch',
  'forbidden', 'health_check', 'poll_aborted', 'upstream_unreachable',
]);
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

/**
 * Cookie values are redacted except engine.io's `io`; names stay (CONTRACT.md §2). Separators and spacing
 * are kept as sent (the contract shows only the usual "; ").
 */
function redactCookie(value) {
  return value
    .split(';')
    .map((part) => {
      const m = /^(\s*)([^=]*)=(.*)$/.exec(part);
      if (!m) return part;
      return m[2].trim() === 'io' ? part : `${m[1]}${m[2]}=<redacted>`;
    })
    .join(';');
}

/** What the record's headers[name] must be, given the ground-truth entry. */
function expectedLogged(entry, name) {
  const v = headerOf(entry, name);
  if (v === null || name !== 'cookie') return v;
  return Array.isArray(v) ? v.map(redactCookie) : redactCookie(v);
}

/** Common fields of every record (time, severity, message, event, pod). */
function checkShape(x, rec, podName) {
  const tag = `${rec.event} record ${rec.id || ''}`;
  x.ok(typeof rec.time === 'string' && TIME.test(rec.time), `${tag}: time is RFC 3339 UTC with 6 fractional digits`, rec.time);
  x.ok(['INFO', 'WARNING', 'ERROR'].includes(rec.severity), `${tag}: severity is INFO|WARNING|ERROR`, rec.severity);
  x.ok(typeof rec.message === 'string' && rec.message.length > 0, `${tag}: message is a non-empty string`, rec.message);
  if (podName) x.equal([rec.pod, rec.pod_ip], [podName, '127.0.0.1'], `${tag}: pod / pod_ip are POD_NAME / POD_IP (lib/sockproxy.js sets them)`);
  if (rec.event === 'request' || rec.event === 'upgrade') {
    x.ok(Array.isArray(rec.flags), `${tag}: flags is an array`, rec.flags);
    for (const f of rec.flags) x.ok(FLAGS.has(f), `${tag}: flag ${f} is one of the contract's`, rec.flags);
    x.ok(rec.headers && typeof rec.headers === 'object', `${tag}: headers object present`, rec.headers);
    for (const h of ALWAYS) x.ok(h in rec.headers, `${tag}: headers.${h} always present (null when absent)`, Object.keys(rec.headers));
  }
}

/** The ground-truth entry of the backend for a request/upgrade record (same target; disambiguated by trace / ws key). */
function backendEntryFor(x, backend, rec) {
  const target = rec.path + (rec.query === null || rec.query === undefined ? '' : `?${rec.query}`);
  let cands = backend.requests.where((e) => e.url === target && e.method === rec.method);
  for (const h of ['x-cloud-trace-context', 'sec-websocket-key', 'user-agent']) {
    if (cands.length <= 1) break;
    const v = rec.headers && rec.headers[h];
    if (v !== undefined && v !== null) cands = cands.filter((e) => JSON.stringify(headerOf(e, h)) === JSON.stringify(v));
  }
  if (cands.length !== 1) x.fail(`${rec.event} record ${rec.id}: exactly one backend request for ${rec.method} ${target}`, 1, cands.length);
  return cands[0];
}

/**
 * The record's logged request headers equal what the backend received: the six always-present ones, every
 * when-sent one that the backend got (and none it did not get), plus `extra` names (--capture-header).
 */
function checkHeadersAsReceived(x, rec, entry, extra = []) {
  const tag = `${rec.event} record ${rec.id} (${rec.method} ${rec.path})`;
  for (const h of [...ALWAYS, ...extra]) x.equal(rec.headers[h], expectedLogged(entry, h), `${tag}: headers.${h} equals what the backend received`);
  for (const h of WHEN_SENT) {
    const want = expectedLogged(entry, h);
    if (want === null) x.ok(rec.headers[h] === undefined || rec.headers[h] === null, `${tag}: headers.${h} absent (the backend got none)`, rec.headers[h]);
    else x.equal(rec.headers[h], want, `${tag}: headers.${h} equals what the backend received`);
  }
}

/** httpRequest, trace and status agree with the ground truth. */
function checkHttpRequest(x, rec, entry, opts = {}) {
  const tag = `${rec.event} record ${rec.id}`;
  const hr = rec.httpRequest || {};
  x.equal(hr.requestMethod, entry.method, `${tag}: httpRequest.requestMethod`);
  x.equal(hr.status, entry.response.status, `${tag}: httpRequest.status equals the backend's status`);
  x.equal(rec.status, entry.response.status, `${tag}: status equals the backend's status`);
  x.equal(hr.protocol, 'HTTP/1.1', `${tag}: httpRequest.protocol`);
  const xff = headerOf(entry, 'x-forwarded-for');
  if (typeof xff === 'string') x.equal(hr.remoteIp, xff.split(',')[0].trim(), `${tag}: httpRequest.remoteIp is the first X-Forwarded-For entry`);
  const ua = headerOf(entry, 'user-agent');
  if (typeof ua === 'string') x.equal(hr.userAgent, ua, `${tag}: httpRequest.userAgent`);
  x.ok(typeof hr.latency === 'string' && /^\d+(\.\d+)?s$/.test(hr.latency), `${tag}: httpRequest.latency like "0.0012s"`, hr.latency);
  const xctc = headerOf(entry, 'x-cloud-trace-context');
  if (typeof xctc === 'string') x.equal(rec.trace, xctc.split('/')[0], `${tag}: trace is the X-Cloud-Trace-Context trace id`);
  const host = headerOf(entry, 'host');
  if (typeof host === 'string') x.ok(typeof hr.requestUrl === 'string' && hr.requestUrl.endsWith(`//${host}${entry.url}`), `${tag}: httpRequest.requestUrl is scheme://Host + target`, hr.requestUrl);
  x.equal([hr.requestSize, hr.responseSize], [String(rec.bytes_in), String(rec.bytes_out)], `${tag}: httpRequest.requestSize/responseSize are bytes_in/bytes_out as strings`);
  if (entry.kind === 'request' && entry.body.sha256 !== null) x.equal(rec.bytes_in, entry.body.length, `${tag}: bytes_in equals the body the backend received`);
  if (entry.kind === 'request' && entry.response.how === 'finish') {
    x.equal(rec.outcome, 'complete', `${tag}: outcome`);
    x.equal(rec.bytes_out, entry.response.bodyLength, `${tag}: bytes_out equals the body the backend sent`);
  }
  checkRespHeaders(x, rec, entry, opts);
}

/** [[name, value], …] of a raw response head as the backend wrote it. */
function headPairs(head) {
  if (!head) return [];
  return head
    .split('\r\n')
    .slice(1)
    .filter(Boolean)
    .map((l) => {
      const i = l.indexOf(':');
      return [l.slice(0, i), l.slice(i + 1).trim()];
    });
}

/** Response headers a record carries when present (CONTRACT.md §2 `resp_headers`), set-cookie aside (redacted). */
const RESP = ['upgrade', 'connection', 'sec-websocket-accept', 'content-type', 'x-pod-name'];

/** resp_headers equal the response head the backend wrote (sockproxy adds nothing on these paths). */
function checkRespHeaders(x, rec, entry, { podHeader } = {}) {
  const tag = `${rec.event} record ${rec.id} (${rec.method} ${rec.path})`;
  const pairs = headPairs(entry.response && entry.response.head);
  // --pod-header: the one header sockproxy itself adds to responses.
  if (podHeader) pairs.push(['X-Pod-Name', podHeader]);
  const rh = rec.resp_headers || {};
  for (const name of RESP) {
    const vals = pairs.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
    const want = vals.length === 0 ? null : vals.length === 1 ? vals[0] : vals;
    if (want === null) x.ok(rh[name] === undefined || rh[name] === null, `${tag}: resp_headers.${name} absent (the backend sent none)`, rh[name]);
    else x.equal(rh[name], want, `${tag}: resp_headers.${name} equals what the backend sent`);
  }
  const sent = pairs.some(([n]) => n.toLowerCase() === 'set-cookie');
  x.equal(rh['set-cookie'] !== undefined && rh['set-cookie'] !== null, sent, `${tag}: resp_headers.set-cookie present exactly when the backend set a cookie`);
}

/**
 * closed_by against the backend's view. When the backend saw the peer's end-of-stream before it ended the
 * connection itself, sockproxy necessarily saw the client end first. When the backend ended first, a
 * client end may have crossed it in flight (a websocket closing handshake ends both sides at once), so
 * either side is a correct answer; `passivePeer` says the client could not have ended on its own.
 */
function checkClosedBy(x, tc, truth, tag, { passivePeer = false } = {}) {
  if (truth.endedFirstBy === 'client') x.equal(tc.closed_by, 'client', `${tag}: closed_by (the backend saw the client end first)`);
  else if (passivePeer) x.equal(tc.closed_by, 'upstream', `${tag}: closed_by (the backend dropped the connection)`);
  else x.ok(['upstream', 'client'].includes(tc.closed_by), `${tag}: closed_by is upstream or client (both ends closed at once)`, tc.closed_by);
}

/** engine.io's error as the backend wrote it: {code, message} from the JSON body or the raw upgrade 400 text. */
const PLAIN_CODES = { 'Transport unknown': 0, 'Session ID unknown': 1, 'Bad handshake method': 2, 'Bad request': 3, Forbidden: 4, 'Unsupported protocol version': 5 };
function engineErrorOf(entry) {
  const body = entry.response && entry.response.body;
  if (!body) return null;
  try {
    const j = JSON.parse(body);
    if (typeof j.code === 'number') return { code: j.code, message: j.message };
  } catch {
    /* plain text */
  }
  if (body in PLAIN_CODES) return { code: PLAIN_CODES[body], message: body };
  return null;
}

module.exports = { checkClosedBy, checkRespHeaders, ALWAYS, WHEN_SENT, redactCookie, checkShape, backendEntryFor, checkHeadersAsReceived, checkHttpRequest, engineErrorOf, expectedLogged };
