'use strict'
// A server-list ping with minecraft-protocol's own `ping()`, the way a Node bot or status page asks.
//
//   node mc_ping.js --port P --host DOMAIN [--connect-host 127.0.0.1] [--version 1.20.4] [--timeout 10]
//
// DOMAIN goes in the handshake (ping() writes its `host` option there) while the socket goes to
// --connect-host:--port through the `connect` hook, as a client that resolved DOMAIN to the proxy would.
// JSON lines on stdout:
//   {"event":"status","status":{...},"pong":true|false}   the server's status; pong = the ping was echoed
// Any failure (error, a close before the answer, --timeout) prints {"event":"error","message":...} and
// exits non-zero.

const net = require('net')
const mc = require('minecraft-protocol')
const { parseArgs, emit, fail } = require('./common')

const args = parseArgs(process.argv.slice(2), {
  host: 'localhost',
  'connect-host': '127.0.0.1',
  version: '1.20.4',
  timeout: '10'
})
if (!args.port) fail('--port is required')
const timeoutMs = Number(args.timeout) * 1000

setTimeout(() => fail(`timed out after ${args.timeout}s`, 3), timeoutMs).unref()

mc.ping({
  host: args.host, // written in the handshake
  port: Number(args.port),
  version: args.version,
  connect: (client) => {
    // ping() itself never notices a server that hangs up without answering (it would wait for
    // closeTimeout): report that at once. After a full answer ping() has already resolved and exited.
    client.on('end', () => setTimeout(() => fail('the server closed the connection without answering'), 200))
    client.setSocket(net.connect(Number(args.port), args['connect-host']))
  },
  // ping() resolves without `latency` when no pong comes within noPongTimeout.
  noPongTimeout: timeoutMs / 2,
  closeTimeout: timeoutMs
})
  .then((status) => {
    const pong = typeof status.latency === 'number'
    delete status.latency // ping() adds it; it is not part of what the server sent
    emit('status', { status, pong })
    process.exit(0)
  })
  .catch((err) => fail(`ping failed: ${err && err.message ? err.message : err}`))
