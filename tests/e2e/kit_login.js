'use strict'
// Log in with minecraft-protocol and report the server's Login Success, then hang up: how the testing
// kit's tests check that infrarust.testing's fake backend answers a login the way real clients read it.
//
//   node kit_login.js --version 1.20.4 --port P --host DOMAIN --username U [--timeout 10]
//
// JSON lines on stdout:
//   {"event":"success","username":U,"uuid":UUID}   the Login Success packet, as the library decoded it
// Any failure (kick, error, early close, --timeout) prints {"event":"error","message":...} and exits
// non-zero.

const mc = require('minecraft-protocol')
const { minecraftData, parseArgs, emit, fail } = require('./common')

const args = parseArgs(process.argv.slice(2), {
  version: '1.20.4',
  host: 'localhost',
  'connect-host': '127.0.0.1',
  username: 'kit_player',
  timeout: '10'
})
if (!args.port) fail('--port is required')
if (!minecraftData(args.version)) fail(`unknown Minecraft version ${args.version}`)

setTimeout(() => fail(`timed out after ${args.timeout}s`, 3), Number(args.timeout) * 1000).unref()

const client = mc.createClient({
  host: args['connect-host'],
  port: Number(args.port),
  fakeHost: args.host,
  username: args.username,
  version: args.version,
  auth: 'offline',
  hideErrors: true
})
let done = false

client.on('success', (packet) => {
  done = true
  emit('success', { username: packet.username, uuid: packet.uuid })
  client.end('done')
  setImmediate(() => process.exit(0))
})
client.on('disconnect', (packet) => fail(`kicked during login: ${JSON.stringify(packet.reason)}`))
client.on('error', (err) => fail(`client error: ${err && err.message ? err.message : err}`))
client.on('end', (reason) => {
  if (!done) fail(`connection closed before Login Success: ${reason}`)
})
