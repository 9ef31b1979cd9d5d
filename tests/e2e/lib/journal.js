// journal.js: an append-only list of observations that tests can wait on (by predicate, with a deadline) instead of sleeping.
'use strict';

const fs = require('node:fs');
const { slack } = require('./slack');

class Journal {
  /**
   * @param {string} what   human name used in timeout messages ("sockproxy pod-a records")
   * @param {string} [file] when given, every entry is also appended to this file as one JSON line
   */
  constructor(what, file) {
    this.what = what;
    this.file = file;
    this.entries = [];
    this.waiters = new Set();
    this.closedReason = null;
  }

  push(entry) {
    this.entries.push(entry);
    if (this.file) fs.appendFileSync(this.file, JSON.stringify(entry) + '\n');
    for (const w of [...this.waiters]) w.check();
    return entry;
  }

  /** Entries matching the predicate, in arrival order. */
  where(pred) {
    return this.entries.filter(pred);
  }

  /**
   * Marks the journal as finished (e.g. the process that feeds it exited): pending waits fail at once
   * instead of running into their deadline.
   */
  close(reason) {
    this.closedReason = reason;
    for (const w of [...this.waiters]) w.check();
  }

  /**
   * Resolves with the first `count` entries matching `pred` (one entry when count is 1) as soon as they exist.
   * Rejects after `timeoutMs` (times SOCKPROXY_TEST_SLACK, lib/slack.js) with a message naming `description`, or at
   * once when the journal is closed.
   */
  waitFor(pred, { timeoutMs = 5000, count = 1, description = 'a matching entry' } = {}) {
    const deadlineMs = slack(timeoutMs);
    return new Promise((resolve, reject) => {
      const waiter = {
        check: () => {
          const found = this.entries.filter(pred);
          if (found.length >= count) {
            finish();
            resolve(count === 1 ? found[0] : found.slice(0, count));
          } else if (this.closedReason) {
            finish();
            reject(new Error(`${this.what}: ${this.closedReason} while waiting for ${description} (have ${found.length}/${count}; ${this.tail()})`));
          }
        },
      };
      const timer = setTimeout(() => {
        finish();
        const found = this.entries.filter(pred).length;
        reject(new Error(`${this.what}: no ${description} within ${deadlineMs} ms (have ${found}/${count}; ${this.tail()})`));
      }, deadlineMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      this.waiters.add(waiter);
      waiter.check();
    });
  }

  tail(n = 3) {
    const last = this.entries.slice(-n).map((e) => JSON.stringify(e).slice(0, 400));
    return `${this.entries.length} entries, last: ${last.length ? last.join(' | ') : '(none)'}`;
  }
}

module.exports = { Journal };
