// expect.js: assertions whose failure names the scenario, the assertion, expected and actual, and the run's log folder.
'use strict';

const assert = require('node:assert');
const util = require('node:util');

function show(v) {
  return util.inspect(v, { depth: 6, breakLength: 120, maxStringLength: 600, maxArrayLength: 40 });
}

class Expect {
  /** @param {string} scenario e.g. "H1 upgrade stripped"; @param {string} dir the scenario's log folder */
  constructor(scenario, dir) {
    this.scenario = scenario;
    this.dir = dir;
  }

  fail(what, expected, actual, operator = 'deepStrictEqual') {
    const message = `[${this.scenario}] ${what}\n    expected: ${show(expected)}\n    actual:   ${show(actual)}\n    logs: ${this.dir}`;
    throw new assert.AssertionError({ message, expected, actual, operator });
  }

  equal(actual, expected, what) {
    if (!util.isDeepStrictEqual(actual, expected)) this.fail(what, expected, actual);
  }

  ok(cond, what, actual) {
    if (!cond) this.fail(what, 'truthy', actual, '==');
  }

  includes(list, item, what) {
    if (!Array.isArray(list) || !list.includes(item)) this.fail(what, `an array containing ${show(item)}`, list, 'includes');
  }

  excludes(list, item, what) {
    if (!Array.isArray(list) || list.includes(item)) this.fail(what, `an array without ${show(item)}`, list, 'excludes');
  }

  near(actual, expected, tolerance, what) {
    if (typeof actual !== 'number' || Math.abs(actual - expected) > tolerance) this.fail(what, `${expected} ± ${tolerance}`, actual, 'near');
  }

  between(actual, lo, hi, what) {
    if (typeof actual !== 'number' || actual < lo || actual > hi) this.fail(what, `a number in [${lo}, ${hi}]`, actual, 'between');
  }

  /** Runs an async step and re-throws its error with the scenario and `what` attached (for waits that time out). */
  async step(what, fn) {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      const message = `[${this.scenario}] ${what}: ${err.message}\n    logs: ${this.dir}`;
      throw new assert.AssertionError({ message, expected: what, actual: err.message, operator: 'step' });
    }
  }
}

module.exports = { Expect };
