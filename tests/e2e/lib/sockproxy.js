// sockproxy.js: runs the binary under test (SOCKPROXY_BIN) and turns its stdout into a journal of records.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const processes = require('./processes');
const { Journal } = require('./journal');

const DEFAULT_BIN = path.resolve(__dirname, '..', '..', '..', 'target', 'debug', 'sockproxy');

/** The binary under test: $SOCKPROXY_BIN, else target/debug/sockproxy of this repository. */
function sockproxyBin() {
  return process.env.SOCKPROXY_BIN ? path.resolve(process.env.SOCKPROXY_BIN) : DEFAULT_BIN;
}

/**
 * Starts `sockproxy --listen 127.0.0.1:0 --upstream 127.0.0.1:<upstreamPort> --admin off [extraArgs]` with
 * POD_NAME/POD_IP set, and waits (bounded) for its `listening` record to learn the bound port.
 * Returns { proc, port, records: Journal, nonJson: string[], stop() }.
 */
async function startSockproxy({ name = 'sockproxy', dir, upstreamPort, podName = 'pod-a', podIp = '127.0.0.1', extraArgs = [], env = {}, startTimeoutMs = 10000 }) {
  const bin = sockproxyBin();
  if (!fs.existsSync(bin)) throw new Error(`sockproxy binary not found at ${bin} (build it, or set SOCKPROXY_BIN)`);
  const args = ['--listen', '127.0.0.1:0', '--upstream', `127.0.0.1:${upstreamPort}`, '--admin', 'off', ...extraArgs];
  const proc = processes.start(name, bin, args, { dir, env: { POD_NAME: podName, POD_IP: podIp, ...env }, keepStdout: true });
  const records = new Journal(`${name} (${podName}) records`, path.join(dir, `${name}-records.jsonl`));
  const nonJson = [];
  const rl = readline.createInterface({ input: proc.child.stdout, crlfDelay: Infinity });
  rl.on('line', (line) => {
    proc.stdoutFile.write(line + '\n');
    let rec;
    try {
      rec = JSON.parse(line);
    } catch {
      nonJson.push(line);
      return;
    }
    if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) nonJson.push(line);
    else records.push(rec);
  });
  const stdoutClosed = new Promise((resolve) => rl.on('close', resolve));
  proc.exited.then(async (info) => {
    await stdoutClosed;
    records.close(`${name} exited (${JSON.stringify(info)})`);
  });

  let listening;
  try {
    listening = await records.waitFor((r) => r.event === 'listening', { timeoutMs: startTimeoutMs, description: 'the `listening` record' });
  } catch (err) {
    await proc.stop('SIGKILL');
    throw new Error(`${err.message}\n  ${processes.describeExit(proc)}\n  command: ${bin} ${args.join(' ')}`);
  }
  const m = /:(\d+)$/.exec(String(listening.listen || ''));
  if (!m) throw new Error(`${name}: listening record has no usable "listen" address: ${JSON.stringify(listening)}`);
  return {
    name,
    podName,
    proc,
    port: Number(m[1]),
    listening,
    records,
    nonJson,
    args,
    /** SIGTERM, then SIGKILL after graceMs; resolves with the exit info once stdout is fully read. */
    async stop(signal = 'SIGTERM', graceMs = 5000) {
      const info = await proc.stop(signal, graceMs);
      await stdoutClosed;
      return info;
    },
  };
}

module.exports = { startSockproxy, sockproxyBin };
