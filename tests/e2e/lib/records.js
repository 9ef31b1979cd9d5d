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

/** Cookie values are redacted except engine.io's `io`; names stay (CONTRACT.md §2). */
function redactCookie(value) {
  return value
    .split(';')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => {
      const i = p.indexOf('=');
      const name = i < 0 ? p : p.slice(0, i);
      return name === 'io' ? p : `${name}=<redacted>`;
    })
    .join('; ');
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
  if (podName) x.equal(rec.pod, podName, `${tag}: pod is POD_NAME`);
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
function checkHttpRequest(x, rec, entry) {
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

module.exports = { ALWAYS, WHEN_SENT, redactCookie, checkShape, backendEntryFor, checkHeadersAsReceived, checkHttpRequest, engineErrorOf, expectedLogged };
