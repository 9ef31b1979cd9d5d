// browser.js: Debian's headless Chromium, started and stopped by PID here, driven over CDP by playwright-core (no browser download).
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const processes = require('./processes');
const { slack, within } = require('./slack');

const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/**
 * Starts Chromium with --remote-debugging-port=0, reads the DevTools address from its stderr (bounded),
 * and connects playwright-core to it (`timeoutMs` times SOCKPROXY_TEST_SLACK). Returns { browser, proc, close() }.
 */
async function launchChromium(dir, timeoutMs = 30000) {
  timeoutMs = slack(timeoutMs);
  const profile = path.join(dir, 'chromium-profile');
  const args = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
    '--remote-debugging-address=127.0.0.1',
    '--remote-debugging-port=0',
    `--user-data-dir=${profile}`,
    'about:blank',
  ];
  const proc = processes.start('chromium', CHROMIUM_BIN, args, { dir });
  const wsEndpoint = await new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`chromium: no DevTools address within ${timeoutMs} ms; stderr: ${text.slice(-800)}`)), timeoutMs);
    proc.child.stderr.on('data', (c) => {
      text += c.toString('utf8');
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.exited.then((info) => {
      clearTimeout(timer);
      reject(new Error(`chromium exited before listening (${JSON.stringify(info)}); stderr: ${text.slice(-800)}`));
    });
  }).catch(async (err) => {
    await proc.stop('SIGKILL');
    throw err;
  });
  const browser = await chromium.connectOverCDP(wsEndpoint, { timeout: timeoutMs });
  return {
    browser,
    proc,
    async close() {
      await within(browser.close(), 5000, 'closing the browser').catch(() => {});
      await proc.stop('SIGTERM', 3000);
      // The profile is tens of MB and no evidence; the browser's stderr stays in the log folder.
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

module.exports = { launchChromium };
