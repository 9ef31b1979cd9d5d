// probe.js: runs `sockproxy probe` (the binary under test, issue 6) to completion with a deadline and keeps its output.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const processes = require('./processes');
const { sockproxyBin } = require('./sockproxy');
const { slack } = require('./slack');

let runs = 0;

/**
 * Runs `sockproxy probe <args>`; resolves with { code, stdout, stderr, json (parsed when --json) } once it
 * exits, or rejects after `deadlineMs` (times SOCKPROXY_TEST_SLACK; the process is then killed). Output is also kept in `dir`.
 */
async function runProbe(args, { dir, name = `probe-${++runs}`, deadlineMs = 30000 } = {}) {
  const proc = processes.start(name, sockproxyBin(), ['probe', ...args], { dir, keepStdout: true, env: { RUST_LOG: '' } });
  const chunks = [];
  proc.child.stdout.on('data', (c) => {
    chunks.push(c);
    proc.stdoutFile.write(c);
  });
  const stdoutEnded = new Promise((resolve) => proc.child.stdout.on('close', resolve));
  let timer;
  deadlineMs = slack(deadlineMs);
  const info = await Promise.race([
    proc.exited,
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), deadlineMs);
    }),
  ]);
  clearTimeout(timer);
  if (!info) {
    await proc.stop('SIGKILL');
    throw new Error(`sockproxy probe ${args.join(' ')}: no exit within ${deadlineMs} ms`);
  }
  await stdoutEnded;
  const stdout = Buffer.concat(chunks).toString('utf8');
  fs.writeFileSync(path.join(dir, `${name}.args`), `${args.join(' ')}\nexit ${info.code}\n`);
  let json = null;
  if (args.includes('--json')) {
    try {
      json = JSON.parse(stdout);
    } catch (err) {
      throw new Error(`sockproxy probe ${args.join(' ')}: stdout is not one JSON document (${err.message}): ${stdout.slice(0, 400)}`);
    }
  }
  return { code: info.code, signal: info.signal, stdout, stderr: proc.stderrText, json };
}

module.exports = { runProbe };
