#!/usr/bin/env node
// capture-engine-bytes.js: captures what a real socket.io server answers to the cases of lib/engine-bytes.js and writes the fixture that pins src/demo.rs serve_engine to it (tests/claims.rs).
//
//   node tools/capture-engine-bytes.js [OUT]     (default: ../fixtures/engine-io-bytes.json from the repository root,
//                                                 i.e. tests/fixtures/engine-io-bytes.json)
//
// Run it after changing the cases or socket.io's version in package.json, then make the demo match
// (`cargo test --test claims engine`). engine-bytes.test.js re-captures in every e2e run and fails on a difference.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { capture, FIXTURE, serialise } = require('../lib/engine-bytes');

const out = process.argv[2] || FIXTURE;
capture().then(
  (fixture) => {
    fs.writeFileSync(out, serialise(fixture));
    console.log(`capture-engine-bytes: ${fixture.cases.length} cases from socket.io ${fixture.versions['socket.io']} written to ${out}`);
  },
  (err) => {
    console.error(`capture-engine-bytes: ${err.stack || err}`);
    process.exit(1);
  }
);
