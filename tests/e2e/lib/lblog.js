// lblog.js: reads the front's LB-format request log (lib/nginx.js lbLogMaps; the format shared/LB-LOGS.md describes), and waits for entries in it.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { slack } = require('./slack');
const { LB_LOG } = require('./nginx');

/** Every entry the front has written so far (one JSON LogEntry per line). */
function lbEntries(front) {
  const file = path.join(front.dir, LB_LOG);
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l));
}

/** The 32-hex trace id of an entry's `trace` (`projects/P/traces/ID`), or null. */
function traceOf(entry) {
  const m = /\/traces\/([0-9a-f]{32})$/i.exec(entry.trace || '');
  return m ? m[1].toLowerCase() : null;
}

/**
 * Resolves with the entries matching `pred` once there are `count` of them. nginx writes an entry when it
 * finalises the request, which may be just after the client has its answer, so this re-reads the file every
 * 20 ms up to `timeoutMs` (times SOCKPROXY_TEST_SLACK).
 */
async function waitForLbEntries(front, pred, { count = 1, timeoutMs = 3000, description = 'LB entries' } = {}) {
  const deadline = Date.now() + slack(timeoutMs);
  for (;;) {
    const got = lbEntries(front).filter(pred);
    if (got.length >= count) return got;
    if (Date.now() > deadline) throw new Error(`${description}: ${got.length} of ${count} in ${path.join(front.dir, LB_LOG)} after ${slack(timeoutMs)} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

module.exports = { lbEntries, traceOf, waitForLbEntries };
