#!/usr/bin/env node
// report-check.js: runs `sockproxy report --json` on each single-cause scenario's pod records of a finished run and checks that it confirms exactly that scenario's hypothesis (healthy and transparency: none). Exit 1 on any difference, 0 when all match.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const dir = process.argv[2] || process.env.E2E_RUN_DIR;
const bin = process.env.SOCKPROXY_BIN;
if (!dir || !bin) {
  console.error('usage: SOCKPROXY_BIN=… report-check.js RUN_DIR');
  process.exit(2);
}

// scenario folder -> the hypotheses its run must confirm (and nothing else).
const EXPECTED = {
  healthy: [],
  transparency: [],
  'h1-upgrade-stripped': ['H1'],
  'h2-no-affinity': ['H2'],
  'h3-health-check': ['H3'],
  'h4-origin-host': ['H4'],
  'h5-draining': ['H5'],
  'h6-timeouts': ['H6'],
};

let failed = 0;
let checked = 0;
for (const [scenario, want] of Object.entries(EXPECTED)) {
  const sdir = path.join(dir, scenario);
  if (!fs.existsSync(sdir)) continue; // a run of some test files only
  const files = fs
    .readdirSync(sdir)
    .filter((d) => d.startsWith('pod-'))
    .map((d) => path.join(sdir, d, 'sockproxy.stdout'))
    .filter((f) => fs.existsSync(f));
  if (files.length === 0) continue;
  let out;
  try {
    out = execFileSync(bin, ['report', '--json', ...files], { encoding: 'utf8', timeout: 60000 });
  } catch (e) {
    // Exit 1 means "something confirmed": the JSON is still on stdout.
    out = e.stdout;
  }
  const got = JSON.parse(out).confirmed;
  checked += 1;
  const ok = JSON.stringify(got) === JSON.stringify(want);
  if (!ok) failed += 1;
  console.log(`report-check: ${ok ? 'ok  ' : 'FAIL'} ${scenario}: confirmed ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}
console.log(`report-check: ${checked - failed} of ${checked} scenarios get their hypothesis`);
process.exit(failed ? 1 : 0);
