#!/usr/bin/env node
// html-check.js: runs `sockproxy report --html` on the H2, H5 and H6 scenarios' records of a finished run, opens each page in Debian's headless Chromium and checks it against the records: no console errors, the --json verdicts, a bar per session with the right outcome, a mark per refusal, the lifecycle markers, H6's cut-off at the front's configured timeout, hover and sorting; then that record values stay inert. Saves report.html and report.png in each scenario's folder. Exit 1 on any difference.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { launchChromium } = require('../lib/browser');
const { slack, within } = require('../lib/slack');

const dir = process.argv[2] || process.env.E2E_RUN_DIR;
const bin = process.env.SOCKPROXY_BIN;
if (!dir || !bin) {
  console.error('usage: SOCKPROXY_BIN=… html-check.js RUN_DIR');
  process.exit(2);
}

const SCENARIOS = ['h2-no-affinity', 'h5-draining', 'h6-timeouts'];

/** `sockproxy report ARGS`: stdout, stderr and the wall time; exit 1 (something confirmed) is not a failure. */
function report(args) {
  const started = performance.now();
  try {
    const stdout = execFileSync(bin, ['report', ...args], { encoding: 'utf8', timeout: slack(60000), stdio: ['ignore', 'pipe', 'pipe'] });
    return { stdout, ms: performance.now() - started };
  } catch (e) {
    if (e.status !== 1) throw new Error(`sockproxy report ${args.join(' ')}: exit ${e.status}: ${e.stderr}`);
    return { stdout: e.stdout, ms: performance.now() - started };
  }
}

function readRecords(files) {
  const out = [];
  for (const f of files) {
    for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        out.push(JSON.parse(line));
      } catch {
        // not a record line: the report skips it too
      }
    }
  }
  return out;
}

const isSio = (r) => r.sio && typeof r.sio === 'object';
const refusedSid = (r) => (r.flags || []).includes('sid_unknown') || (r.sio_error && r.sio_error.code === 1);
const refusal = (r) => r.event === 'request' && isSio(r) && r.status >= 400 && r.status < 500;
const pollCut = (r) =>
  (r.flags || []).includes('poll_aborted') ||
  (isSio(r) && r.sio.transport === 'polling' && r.method === 'GET' && r.sio.sid && !r.sio.handshake && r.outcome === 'client_aborted');

/** What the records say about each sid: the outcome its bar must show (the page's legend, in its order of precedence). */
function expectedFates(records) {
  const by = new Map();
  for (const r of records) {
    const sid = isSio(r) && r.sio.sid;
    if (!sid) continue;
    if (!by.has(sid)) by.set(sid, { shutdown: false, refused: false, cut: false, upgraded: false });
    const s = by.get(sid);
    if (r.event === 'tunnel_closed') {
      s.upgraded = true;
      if (r.closed_by === 'shutdown') s.shutdown = true;
      if (r.closed_by === 'client' || r.closed_by === 'error') s.cut = true;
    }
    if (r.event === 'upgrade') s.upgraded = true;
    if (refusal(r) && refusedSid(r)) s.refused = true;
    if (r.event === 'request' && pollCut(r)) s.cut = true;
  }
  const fates = {};
  for (const [sid, s] of by) {
    fates[sid] = s.shutdown ? 'shutdown' : s.refused ? 'refused' : s.cut ? 'cut' : s.upgraded ? 'upgraded' : 'polling';
  }
  return fates;
}

/** The shortest `proxy_read_timeout` of the scenario's fronts (the LB's timeoutSec), in ms. */
function frontTimeoutMs(sdir) {
  let least = Infinity;
  for (const d of fs.readdirSync(sdir).filter((d) => d.startsWith('front'))) {
    const conf = path.join(sdir, d, 'nginx.conf');
    if (!fs.existsSync(conf)) continue;
    for (const m of fs.readFileSync(conf, 'utf8').matchAll(/proxy_read_timeout\s+(\d+)s;/g)) least = Math.min(least, Number(m[1]) * 1000);
  }
  return least;
}

/** JSON with object keys sorted, so two maps compare by content. */
function canonical(v) {
  return JSON.stringify(v, (_, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x));
}

class Check {
  constructor(name) {
    this.name = name;
    this.failures = [];
  }
  equal(got, want, what) {
    if (canonical(got) !== canonical(want)) this.failures.push(`${what}: got ${canonical(got)}, want ${canonical(want)}`);
  }
  ok(cond, what, detail) {
    if (!cond) this.failures.push(`${what}${detail === undefined ? '' : `: ${JSON.stringify(detail)}`}`);
  }
  /** Runs `fn`; an exception is a failure of this check, not the end of the run. */
  async step(what, fn) {
    try {
      await fn();
    } catch (e) {
      this.failures.push(`${what}: ${String(e.message || e).split('\n')[0]}`);
    }
  }
}

/** Opens `file` in a fresh page; collects console errors, page errors, dialogs and requests other than the page itself. */
async function open(browser, file) {
  const context = await browser.newContext({ viewport: { width: 1320, height: 900 } });
  const page = await context.newPage();
  const trouble = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') trouble.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => trouble.push(`page error: ${e.message}`));
  page.on('dialog', (d) => {
    trouble.push(`dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  const url = 'file://' + file;
  page.on('request', (r) => {
    if (r.url() !== url) trouble.push(`request: ${r.url()}`);
  });
  await page.goto(url, { waitUntil: 'load', timeout: slack(15000) });
  return { page, context, trouble };
}

/** What the page drew, read in the browser. */
function drawn(page) {
  return page.evaluate(() => {
    const all = (sel) => Array.from(document.querySelectorAll(sel));
    const sum = (els) => els.reduce((n, e) => n + Number(e.getAttribute('data-n')), 0);
    const cut = document.querySelector('[data-k="cutoff"]');
    return {
      verdicts: all('table.verdicts tr').map((tr) => [tr.dataset.id, tr.dataset.verdict]),
      fates: Object.fromEntries(all('#timeline [data-k="bar"]').map((b) => [b.dataset.sid, b.dataset.fate])),
      bars: all('#timeline [data-k="bar"]').length,
      refusals: sum(all('#timeline [data-k="refusal"]')),
      elsewhere: sum(all('#timeline [data-k="refusal"][data-kind="elsewhere"]')),
      starts: all('#timeline [data-k="start"]').length,
      drains: all('#timeline [data-k="drain"]').length,
      stops: all('#timeline [data-k="stop"]').length,
      cutoffs: all('[data-k="cutoff"]').length,
      cutoffMs: cut ? Number(cut.getAttribute('data-ms')) : null,
      cutoffBox: cut ? (({ width, height }) => ({ width, height }))(cut.getBoundingClientRect()) : null,
      cutoffText: cut ? cut.querySelector('text').textContent : null,
    };
  });
}

async function checkHoverAndSort(page, c) {
  const bar = page.locator('#timeline [data-k="bar"]').first();
  const sid = await bar.getAttribute('data-sid');
  await bar.hover({ timeout: slack(5000) });
  const panel = page.locator('#hover');
  c.ok(await panel.isVisible(), 'hovering a bar shows the panel');
  c.ok((await panel.textContent()).includes(`sid ${sid}`), 'the panel shows the bar\'s sid', sid);
  const header = page.locator('#pods th', { hasText: /^records$/ });
  const values = () => page.$$eval('#pods tbody tr', (rows) => rows.map((r) => Number(r.cells[1].getAttribute('data-v'))));
  await header.click({ timeout: slack(5000) });
  const down = await values();
  c.equal(down, [...down].sort((a, b) => b - a), 'pods sorted by records, descending');
  await header.click({ timeout: slack(5000) });
  const up = await values();
  c.equal(up, [...up].sort((a, b) => a - b), 'pods sorted by records, ascending');
}

async function checkScenario(browser, scenario) {
  const sdir = path.join(dir, scenario);
  const files = fs
    .readdirSync(sdir)
    .filter((d) => d.startsWith('pod-'))
    .map((d) => path.join(sdir, d, 'sockproxy.stdout'))
    .filter((f) => fs.existsSync(f));
  if (files.length === 0) return null;
  const c = new Check(scenario);
  const html = path.join(sdir, 'report.html');
  const text = report(files);
  const json = JSON.parse(report(['--json', ...files]).stdout);
  const written = report(['--html', html, ...files]);
  const records = readRecords(files);
  const { page, context, trouble } = await open(browser, html);
  try {
    const d = await drawn(page);
    c.equal(d.verdicts, json.hypotheses.map((h) => [h.id, h.verdict]), 'verdicts, as --json gives them');
    c.equal(d.fates, expectedFates(records), 'a bar per session, coloured by how it ended');
    c.equal(d.refusals, records.filter(refusal).length, 'refusal marks (sio 4xx records)');
    c.equal(d.elsewhere, records.filter((r) => refusal(r) && refusedSid(r) && (r.flags || []).includes('sid_not_issued_here')).length, 'marks of sids refused on another pod');
    for (const [k, event] of [['starts', 'listening'], ['drains', 'draining'], ['stops', 'stopped']]) {
      c.equal(d[k], records.filter((r) => r.event === event).length, `${k} (${event} records)`);
    }
    const cluster = json.hypotheses[5].counts.cluster;
    c.equal(d.cutoffs, cluster > 0 ? 1 : 0, 'a cut-off line exactly where H6 found a cluster');
    if (cluster > 0) {
      const t = frontTimeoutMs(sdir);
      // Lifetimes end just under the front's timeout: by up to one band (0.5 s), later by the machine's load.
      c.ok(d.cutoffMs >= t - 500 && d.cutoffMs <= t + slack(1500), `the cut-off line at the front's ${t} ms`, d.cutoffMs);
      c.ok(d.cutoffBox && d.cutoffBox.height > 50, 'the cut-off line is drawn tall enough to see', d.cutoffBox);
      c.ok(/^cut-off ≈ /.test(d.cutoffText), 'the cut-off is labelled', d.cutoffText);
    }
    // As it opens: before hover and sorting change it.
    await page.screenshot({ path: path.join(sdir, 'report.png'), fullPage: true });
    if (d.bars > 0) await c.step('hover and sort', () => checkHoverAndSort(page, c));
    c.equal(trouble, [], 'no console errors, page errors, dialogs or requests');
  } finally {
    await context.close();
  }
  const size = fs.statSync(html).size;
  return { c, note: `${html} (${Math.ceil(size / 1024)} KB; report ${text.ms.toFixed(0)} ms, with --html ${written.ms.toFixed(0)} ms)` };
}

/** A page from records whose values carry markup: nothing of it may run or render as markup. */
async function checkInert(browser, wdir) {
  const c = new Check('inert');
  const file = path.join(wdir, 'inert.jsonl');
  const payload = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">';
  const base = { time: '2026-11-25T12:00:01.000000Z', pod: `pod-${payload}`, method: 'GET', path: '/socket.io/' };
  const lines = [
    { ...base, event: 'listening' },
    { ...base, event: 'request', id: payload, sio: { transport: 'polling', sid: `"'>${payload}`, handshake: true }, status: 200, headers: { 'user-agent': payload, origin: payload, host: 'h' }, httpRequest: { remoteIp: `</td>${payload}` } },
    { ...base, time: '2026-11-25T12:00:02.000000Z', pod: 'pod-b', event: 'request', id: '2', sio: { transport: 'polling', sid: `"'>${payload}`, handshake: false }, status: 400, sio_error: { code: null, message: payload }, flags: ['sid_unknown', 'sid_not_issued_here'], httpRequest: { remoteIp: `</td>${payload}` } },
  ];
  fs.writeFileSync(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  const html = path.join(wdir, 'inert.html');
  report(['--html', html, file]);
  const { page, context, trouble } = await open(browser, html);
  try {
    c.equal(await page.evaluate(() => window.__pwned), undefined, 'no script or handler from a record ran');
    const elements = await page.evaluate(() => ({ img: document.querySelectorAll('img').length, script: document.querySelectorAll('script').length }));
    c.equal(elements, { img: 0, script: 1 }, 'no element from a record (the one script is the page\'s)');
    c.ok((await page.textContent('#clients')).includes(`</td>${payload}`), 'the client address shows as text');
    c.ok((await page.textContent('#pods')).includes(`pod-${payload}`), 'the pod name shows as text');
    await c.step('hovering the bar', async () => {
      await page.locator('#timeline [data-k="bar"]').first().hover({ timeout: slack(5000) });
      c.ok((await page.textContent('#hover')).includes(payload), 'the hover panel shows the sid as text');
    });
    c.equal(trouble, [], 'no console errors, page errors, dialogs or requests');
  } finally {
    await context.close();
  }
  return { c, note: html };
}

async function main() {
  const present = SCENARIOS.filter((s) => fs.existsSync(path.join(dir, s)));
  if (present.length === 0) {
    console.log('html-check: no H2, H5 or H6 run here; nothing to check');
    return 0;
  }
  const wdir = path.join(dir, 'html-check');
  fs.mkdirSync(wdir, { recursive: true });
  const chromium = await launchChromium(wdir);
  let failed = 0;
  let checked = 0;
  try {
    const results = [];
    for (const s of present) results.push(await within(checkScenario(chromium.browser, s), 60000, `html-check ${s}`));
    results.push(await within(checkInert(chromium.browser, wdir), 30000, 'html-check inert'));
    for (const r of results.filter(Boolean)) {
      checked += 1;
      const ok = r.c.failures.length === 0;
      if (!ok) failed += 1;
      console.log(`html-check: ${ok ? 'ok  ' : 'FAIL'} ${r.c.name}: ${r.note}`);
      for (const f of r.c.failures) console.log(`html-check:      ${f}`);
    }
  } finally {
    await chromium.close();
  }
  console.log(`html-check: ${checked - failed} of ${checked} pages match their records`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`html-check: ${err.stack || err}`);
    process.exit(1);
  }
);
