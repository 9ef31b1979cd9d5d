// stack.js: assembles the chain for one scenario (pods = backend + sockproxy + pod nginx; a front) and tears all of it down.
'use strict';

const path = require('node:path');
const { startBackend } = require('./backend');
const { startSockproxy } = require('./sockproxy');
const { startPodNginx, startFrontNginx } = require('./nginx');
const { scenarioDir } = require('./run-dir');

/** Everything one scenario started, stopped in reverse order by `teardown()`. */
class Scenario {
  constructor(name) {
    this.name = name;
    this.dir = scenarioDir(name);
    this.stops = [];
  }

  /**
   * A pod: the backend (options `backend`), sockproxy in front of it (unless `sockproxy: false`, which points
   * the pod nginx straight at the backend), and the pod nginx (with `direct: true` a second server block
   * that skips sockproxy). Returns { podName, backend, sockproxy, nginx, port, directPort }.
   */
  async pod({ podName = 'pod-a', backend = {}, sockproxy = true, sockproxyArgs = [], direct = false } = {}) {
    const dir = scenarioDir(this.name, podName);
    const be = await startBackend({ name: 'backend', dir, ...backend });
    this.stops.push(() => be.close());
    let sp = null;
    if (sockproxy) {
      sp = await startSockproxy({ dir, upstreamPort: be.port, podName, extraArgs: sockproxyArgs });
      this.stops.push(() => sp.stop());
    }
    const nginx = await startPodNginx({ dir, upstreamPort: sp ? sp.port : be.port, backendPort: be.port, direct });
    this.stops.push(() => nginx.stop());
    return { podName, dir, backend: be, sockproxy: sp, nginx, port: nginx.ports.port, directPort: nginx.ports.directPort };
  }

  /** A front (GKE LB emulation, see nginx.js frontConf) over the given pods. Returns { nginx, port, url }. */
  async front(pods, opts = {}, name = 'front') {
    const dir = scenarioDir(this.name, name);
    const nginx = await startFrontNginx({ name: `${name}-nginx`, dir, podPorts: pods.map((p) => p.port), ...opts });
    this.stops.push(() => nginx.stop());
    return { nginx, port: nginx.ports.port, url: `http://127.0.0.1:${nginx.ports.port}`, dir };
  }

  /** Registers an extra cleanup (a browser, a client socket). */
  onTeardown(fn) {
    this.stops.push(fn);
  }

  async teardown() {
    const errors = [];
    while (this.stops.length) {
      const stop = this.stops.pop();
      try {
        await stop();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length) throw errors[0];
  }

  file(name) {
    return path.join(this.dir, name);
  }
}

module.exports = { Scenario };
