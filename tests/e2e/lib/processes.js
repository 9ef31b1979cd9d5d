// processes.js: starts child processes in their own process group, records each PID, and stops them by that PID (also on failure or Ctrl-C).
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { pidFile } = require('./run-dir');
const { slack } = require('./slack');

/** pid -> name of every started process whose group may still be alive. */
const live = new Map();

function killGroup(pid, signal) {
  try {
    // Negative pid: the process group we created with `detached: true` (nginx workers, Chromium helpers).
    process.kill(-pid, signal);
    return true;
  } catch {
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

function killAllNow() {
  for (const pid of live.keys()) killGroup(pid, 'SIGKILL');
  live.clear();
}

process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAllNow();
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
  });
}

/**
 * Starts `cmd args` with stdout/stderr written to `<dir>/<name>.stdout|.stderr` (stdout also stays readable
 * through `child.stdout` when `keepStdout` is set). Returns a handle with `pid`, `exited` (a promise of
 * `{code, signal}`), `exitInfo` (null while running) and `stop()`.
 */
function start(name, cmd, args, { dir, env = {}, cwd, keepStdout = false } = {}) {
  const child = spawn(cmd, args, {
    cwd,
    env: { ...process.env, ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const handle = { name, child, pid: child.pid, exitInfo: null, stderrText: '' };
  const outFile = fs.createWriteStream(path.join(dir, `${name}.stdout`));
  const errFile = fs.createWriteStream(path.join(dir, `${name}.stderr`));
  if (!keepStdout) child.stdout.pipe(outFile);
  else handle.stdoutFile = outFile;
  child.stderr.on('data', (c) => {
    errFile.write(c);
    if (handle.stderrText.length < 64 * 1024) handle.stderrText += c.toString('utf8');
  });
  handle.exited = new Promise((resolve) => {
    child.on('error', (err) => {
      handle.exitInfo = { code: null, signal: null, error: err.message };
      live.delete(child.pid);
      resolve(handle.exitInfo);
    });
    child.on('exit', (code, signal) => {
      handle.exitInfo = { code, signal };
      // The leader is gone; reap stragglers of its group (nginx workers, renderer processes) by the same id.
      killGroup(child.pid, 'SIGKILL');
      live.delete(child.pid);
      resolve(handle.exitInfo);
    });
  });
  if (child.pid) {
    live.set(child.pid, name);
    fs.appendFileSync(pidFile(), `${child.pid} ${name} ${dir}\n`);
  }

  /** Sends `signal` to the process group, waits up to `graceMs` (times SOCKPROXY_TEST_SLACK) for the exit, then SIGKILLs the group. */
  handle.signal = (signal) => (handle.exitInfo ? false : killGroup(child.pid, signal));
  handle.stop = async (signal = 'SIGTERM', graceMs = 3000) => {
    if (handle.exitInfo) return handle.exitInfo;
    killGroup(child.pid, signal);
    let timer;
    const info = await Promise.race([
      handle.exited,
      new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), slack(graceMs));
      }),
    ]);
    clearTimeout(timer);
    if (info) return info;
    killGroup(child.pid, 'SIGKILL');
    return handle.exited;
  };
  return handle;
}

/** Describes how a process ended, for error messages. */
function describeExit(handle) {
  const i = handle.exitInfo;
  if (!i) return `${handle.name} (pid ${handle.pid}) still running`;
  const how = i.error ? `failed to start: ${i.error}` : `exited code=${i.code} signal=${i.signal}`;
  const err = handle.stderrText.trim().split('\n').slice(-5).join('\n    ');
  return `${handle.name} (pid ${handle.pid}) ${how}${err ? `\n    stderr: ${err}` : ''}`;
}

module.exports = { start, describeExit };
