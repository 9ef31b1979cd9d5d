#!/usr/bin/env node
// tcp-forwarder.js: a plain TCP forwarder that accepts sockproxy's command line and prints only the `listening` record; used as SOCKPROXY_BIN to prove every record assertion can fail while traffic still passes.
'use strict';

const net = require('node:net');

const argv = process.argv.slice(2);
// Only the sidecar is stood in for: `report`, `probe` and `demo` are sockproxy's own, so they fail at once
// (a forwarder listening on the default port instead would hang whoever ran them).
if (argv.length && !argv[0].startsWith('-') && argv[0] !== 'run') {
  console.error(`tcp-forwarder: no \`${argv[0]}\` subcommand here (a plain forwarder only stands in for \`sockproxy run\`)`);
  process.exit(2);
}
if (argv[0] === 'run') argv.shift();
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const [listenHost, listenPort] = splitAddr(opt('--listen', '127.0.0.1:3000'));
const [upHost, upPort] = splitAddr(opt('--upstream', '127.0.0.1:3001').replace(/^http:\/\//, ''));

function splitAddr(a) {
  const i = a.lastIndexOf(':');
  return [a.slice(0, i), Number(a.slice(i + 1))];
}

const server = net.createServer((client) => {
  const up = net.connect({ host: upHost, port: upPort });
  client.pipe(up);
  up.pipe(client);
  const end = () => {
    client.destroy();
    up.destroy();
  };
  client.on('error', end);
  up.on('error', end);
  client.on('close', end);
  up.on('close', end);
});
server.listen(listenPort, listenHost, () => {
  const a = server.address();
  process.stdout.write(JSON.stringify({ event: 'listening', listen: `${a.address}:${a.port}`, upstream: `${upHost}:${upPort}` }) + '\n');
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
