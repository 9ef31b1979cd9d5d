// slack.js: SOCKPROXY_TEST_SLACK, the one knob for a slow or busy machine (the Rust tests read the same variable in tests/support/mod.rs).
'use strict';

/**
 * A number >= 1 (default 1). Every deadline of the wait helpers in lib/ is multiplied by it, and so is the late
 * side of each timing window in the tests (how late an event may come). The side that proves a behaviour (that a
 * timeout did not fire before its configured time) is never widened.
 */
function readSlack(env = process.env) {
  const raw = env.SOCKPROXY_TEST_SLACK;
  if (raw === undefined || raw.trim() === '') return 1;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 1) throw new Error(`SOCKPROXY_TEST_SLACK=${JSON.stringify(raw)}: expected a number >= 1`);
  return n;
}

const SLACK = readSlack();

/** `ms` widened by the slack: for deadlines and for the late side of timing windows only. */
function slack(ms) {
  return Math.round(ms * SLACK);
}

/** Resolves or rejects as `promise` does, or rejects after `ms` (times the slack) naming `what`. */
function within(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${slack(ms)} ms`)), slack(ms));
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

module.exports = { SLACK, slack, within };
