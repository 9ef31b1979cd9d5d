#!/usr/bin/env node
// swap-check.js: reads the TAP of a run against tools/tcp-forwarder.js (`run.sh --swap`) and passes only when every `records:` test failed and every `traffic:` test passed (one listed exception), so each record assertion is shown able to fail.
//
//   node tools/swap-check.js RESULTS.tap FILE.test.js…
//
// The test files are read too: the number of `traffic:` and `records:` tests declared in them must equal the number
// that ran, so a file that crashed before its tests, or a test renamed out of the two kinds, fails the check.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

// Traffic tests that must fail against a plain forwarder, and why: what they check is sockproxy's own behaviour,
// not something it passes through.
const EXCEPTIONS = [
  {
    suite: /^H5 draining/,
    test: /^traffic:/,
    why: 'draining is sockproxy behaviour: a plain forwarder never cuts the tunnel at --drain-timeout',
  },
];

const [tapFile, ...files] = process.argv.slice(2);
if (!tapFile || files.length === 0) {
  console.error('usage: swap-check.js RESULTS.tap FILE.test.js…');
  process.exit(2);
}

/** Leaf results of a node:test TAP file: { suites: [names], name, ok, directive }. */
function leaves(tap) {
  const out = [];
  const stack = []; // the open "# Subtest:" blocks: { indent, name, parent (has a subtest inside) }
  for (const line of tap.split('\n')) {
    const sub = /^( *)# Subtest: (.*)$/.exec(line);
    if (sub) {
      if (stack.length) stack[stack.length - 1].parent = true;
      stack.push({ indent: sub[1].length, name: sub[2], parent: false });
      continue;
    }
    const res = /^( *)(not ok|ok) \d+ - (.*?)(?: # (TODO|SKIP)\b.*)?$/.exec(line);
    if (!res) continue;
    // A result line closes the innermost open block at its indent.
    while (stack.length && stack[stack.length - 1].indent > res[1].length) stack.pop();
    const block = stack.pop();
    if (!block || block.parent) continue;
    out.push({ suites: stack.map((s) => s.name), name: res[3], ok: res[2] === 'ok', directive: res[4] || null });
  }
  return out;
}

const declared = { traffic: 0, records: 0 };
for (const f of files) {
  const src = fs.readFileSync(path.resolve(f), 'utf8');
  for (const m of src.matchAll(/\bit\(\s*[`'"](traffic|records):/g)) declared[m[1]] += 1;
}

const results = leaves(fs.readFileSync(tapFile, 'utf8'));
const seen = { traffic: 0, records: 0 };
const problems = [];
let excepted = 0;
for (const r of results) {
  const where = [...r.suites, r.name].join(' > ');
  const kind = /^(traffic|records):/.exec(r.name);
  if (!kind) {
    problems.push(`neither traffic: nor records: (the swap run holds only those): ${where}`);
    continue;
  }
  seen[kind[1]] += 1;
  if (r.directive) {
    problems.push(`${r.directive} does not count, the swap needs a result: ${where}`);
    continue;
  }
  const exception = EXCEPTIONS.find((e) => r.suites.some((s) => e.suite.test(s)) && e.test.test(r.name));
  const mustPass = kind[1] === 'traffic' && !exception;
  if (exception) excepted += 1;
  const good = r.ok === mustPass;
  console.log(`swap-check: ${good ? 'ok  ' : 'FAIL'} ${r.ok ? 'passed' : 'failed'} (${mustPass ? 'must pass' : 'must fail'}${exception ? `: ${exception.why}` : ''}) ${where}`);
  if (!good) problems.push(`${mustPass ? 'a traffic test failed through a plain forwarder' : 'a records test passed without sockproxy'}: ${where}`);
}
for (const k of ['traffic', 'records']) {
  if (seen[k] !== declared[k]) problems.push(`${declared[k]} ${k}: tests declared in ${files.length} file(s), ${seen[k]} ran`);
}
if (seen.records === 0) problems.push('no records: test ran');

if (problems.length) {
  for (const p of problems) console.log(`swap-check: FAIL ${p}`);
  console.log(`swap-check: FAIL (${problems.length} problem(s))`);
  process.exit(1);
}
console.log(
  `swap-check: PASS: all ${seen.records} records: tests failed without sockproxy; ${seen.traffic - excepted} of ${seen.traffic} traffic: tests passed, ${excepted} failed as listed (${EXCEPTIONS.map((e) => e.why).join('; ')})`
);
