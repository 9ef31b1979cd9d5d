#!/usr/bin/env node
// report-check.js: runs `sockproxy report --json` on each single-cause scenario's pod records of a finished run, alone and joined with the fronts' LB-format logs, and checks that both confirm exactly that scenario's hypothesis (healthy and transparency: none) and that the join finds the cause from the load balancer's end (H1, H3, H6). Exit 1 on any difference, 0 when all match.
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

// With the fronts' LB-format logs joined in (lib/nginx.js lbLogMaps): what the join must find, from both ends.
const count = (h, key) => (h && h.counts && h.counts[key]) || 0;
const hyp = (v, id) => v.hypotheses.find((h) => h.id === id);
const JOINED = {
  'h1-upgrade-stripped': (v) => [
    ['H1: the LB passed stripped upgrades to the pod', count(hyp(v, 'H1'), 'lb_stripped_passed_to_pod') >= 1],
  ],
  'h3-health-check': (v) => [
    ['never reached a pod: failed_to_pick_backend', v.load_balancer.never_reached_a_pod.some((d) => d.status_details === 'failed_to_pick_backend' && d.status === 502 && d.count >= 3)],
    ['H3: no healthy backend while theia answered', count(hyp(v, 'H3'), 'lb_no_healthy_backend_while_theia_up') >= 3],
  ],
  'h6-timeouts': (v) => [
    ['H6: the LB cut websockets at its timeout', count(hyp(v, 'H6'), 'lb_websockets_cut') >= 3],
    ['websockets joined to tunnels', v.load_balancer.websockets.joined_to_tunnel >= 4],
    ['the cut poll: sockproxy had no answer, the browser got 504', v.load_balancer.status_differs.some((d) => d.browser_status === 504 && d.status_details === 'backend_timeout')],
  ],
};

function report(files) {
  try {
    return JSON.parse(execFileSync(bin, ['report', '--json', ...files], { encoding: 'utf8', timeout: 60000 }));
  } catch (e) {
    // Exit 1 means "something confirmed": the JSON is still on stdout.
    return JSON.parse(e.stdout);
  }
}

function filesOf(sdir, prefix, name) {
  return fs
    .readdirSync(sdir)
    .filter((d) => d.startsWith(prefix))
    .map((d) => path.join(sdir, d, name))
    .filter((f) => fs.existsSync(f));
}

let failed = 0;
let checked = 0;
for (const [scenario, want] of Object.entries(EXPECTED)) {
  const sdir = path.join(dir, scenario);
  if (!fs.existsSync(sdir)) continue; // a run of some test files only
  const files = filesOf(sdir, 'pod-', 'sockproxy.stdout');
  if (files.length === 0) continue;
  const lbFiles = filesOf(sdir, 'front', 'lb-requests.jsonl');
  const runs = [['records', files]];
  if (lbFiles.length) runs.push(['records + LB log', [...files, ...lbFiles]]);
  for (const [what, input] of runs) {
    const v = report(input);
    const got = v.confirmed;
    checked += 1;
    const checks = [['confirmed ' + JSON.stringify(got) + ', want ' + JSON.stringify(want), JSON.stringify(got) === JSON.stringify(want)]];
    if (what !== 'records') {
      const lb = v.load_balancer;
      checks.push([`${lb.entries} LB entries, all with a trace id`, lb.entries > 0 && lb.join.no_trace === 0]);
      if (JOINED[scenario]) checks.push(...JOINED[scenario](v));
    }
    const bad = checks.filter(([, ok]) => !ok);
    if (bad.length) failed += 1;
    console.log(`report-check: ${bad.length ? 'FAIL' : 'ok  '} ${scenario} (${what}): ${checks.map(([t, ok]) => (ok ? t : `NOT ${t}`)).join('; ')}`);
  }
}
console.log(`report-check: ${checked - failed} of ${checked} reports as expected`);
process.exit(failed ? 1 : 0);
