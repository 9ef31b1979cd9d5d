#!/usr/bin/env node
// summarize.js: per scenario and pod, what sockproxy recorded in a run (events, statuses, flags, sio_error codes, closed_by), for the closing note.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const dir = process.argv[2] || process.env.E2E_RUN_DIR;
if (!dir) {
  console.error('usage: summarize.js RUN_DIR');
  process.exit(2);
}

function* recordFiles(d) {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) yield* recordFiles(p);
    else if (e.name.endsWith('-records.jsonl')) yield p;
  }
}

const lines = [];
for (const file of [...recordFiles(dir)].sort()) {
  const where = path.relative(dir, path.dirname(file));
  const counts = new Map();
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let r;
    try {
      r = JSON.parse(line);
    } catch {
      continue;
    }
    let key;
    if (r.event === 'request' || r.event === 'upgrade') {
      const t = r.sio ? r.sio.transport || 'sio' : 'plain';
      const err = r.sio_error ? ` sio_error=${r.sio_error.code}` : '';
      key = `${r.event} ${t} ${r.status}${err} flags=[${(r.flags || []).join(',')}]${r.outcome && r.outcome !== 'complete' ? ` outcome=${r.outcome}` : ''}`;
    } else if (r.event === 'tunnel_closed') key = `tunnel_closed closed_by=${r.closed_by} (${Math.round(r.duration_ms / 100) / 10} s)`;
    else key = r.event;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  lines.push(`${where}`);
  for (const [k, n] of counts) lines.push(`  ${String(n).padStart(3)} × ${k}`);
}
console.log(lines.join('\n'));
