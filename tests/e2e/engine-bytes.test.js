// engine-bytes.test.js: the installed socket.io still answers byte for byte as tests/fixtures/engine-io-bytes.json says, the fixture that pins the Rust tests' engine.io stand-in (src/demo.rs) to the real server.
'use strict';

const fs = require('node:fs');
const { describe, it } = require('node:test');
const { Expect } = require('./lib/expect');
const { slack } = require('./lib/slack');
const { capture, serialise, FIXTURE } = require('./lib/engine-bytes');
const { scenarioDir } = require('./lib/run-dir');

describe("socket.io's own bytes", { timeout: slack(30000) }, () => {
  it('a fresh capture equals the committed fixture (else: node tools/capture-engine-bytes.js, then make src/demo.rs match)', async () => {
    const dir = scenarioDir('engine-bytes');
    const x = new Expect('engine bytes', dir);
    const fresh = await capture({ deadlineMs: slack(5000) });
    fs.writeFileSync(`${dir}/engine-io-bytes.json`, serialise(fresh));
    const committed = JSON.parse(fs.readFileSync(FIXTURE, 'utf8'));
    x.equal(fresh.versions, committed.versions, 'socket.io, engine.io and ws versions');
    x.equal(
      fresh.cases.map((c) => c.name),
      committed.cases.map((c) => c.name),
      'the cases'
    );
    for (let i = 0; i < fresh.cases.length; i++) x.equal(fresh.cases[i], committed.cases[i], `case "${fresh.cases[i].name}"`);
  });
});
