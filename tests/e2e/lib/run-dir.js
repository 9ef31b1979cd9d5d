// run-dir.js: where this run keeps its evidence (process output, nginx logs, records, ground truth), one folder per scenario.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

let base = process.env.E2E_RUN_DIR;
if (!base) base = fs.mkdtempSync(path.join(os.tmpdir(), 'sockproxy-e2e-'));
fs.mkdirSync(base, { recursive: true });

/** The run's folder (run.sh passes E2E_RUN_DIR so every test file writes below the same one). */
function runDir() {
  return base;
}

/** A fresh folder for one scenario or one part of it, e.g. scenarioDir('h2-no-affinity', 'pod-a'). */
function scenarioDir(...parts) {
  const dir = path.join(base, ...parts.map((p) => String(p).replace(/[^A-Za-z0-9._-]+/g, '-')));
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** The file where every started process is listed as "<pid> <name>", for run.sh's final sweep. */
function pidFile() {
  return path.join(base, 'pids');
}

module.exports = { runDir, scenarioDir, pidFile };
