'use strict'
// A minecraft-protocol (1.68) client for tests/test_protocol_live.py: logs in, offline or online
// against a given session server, and reports what it receives; once in the play state it sends one
// chat line and one command. JSON lines on stdout:
//   {"event":"success","uuid":U,"username":N}            login success arrived
//   {"event":"play"}                                      the client is in the play state
//   {"event":"packet","name":NAME,"params":{...}}         a message packet (chat, title, kick...)
//   {"event":"end","reason":R}                            the connection closed
//   {"event":"error","message":M}
//
//   node mc_session_client.js --version V --port P --username N [--token T --uuid HEX
//        --session-server URL] [--chat TEXT] [--command TEXT] [--timeout 20]

const path = require('path')
const protocolDir = path.dirname(require.resolve('minecraft-protocol-1.68/package.json'))
const mc = require(protocolDir)

const { parseFlags, loginOptions, chatParams } = require('./client_common')

const args = parseFlags(process.argv.slice(2), { timeout: '20', chat: 'hello', command: 'ir list' })

function emit (event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }, (key, value) =>
    typeof value === 'bigint' ? value.toString() : Buffer.isBuffer(value) ? value.toString('hex') : value) + '\n')
}
setTimeout(() => { emit('error', { message: 'timed out' }); process.exit(3) }, Number(args.timeout) * 1000).unref()

const options = {
  host: '127.0.0.1',
  port: Number(args.port),
  username: args.username,
  version: args.version,
  hideErrors: true
}
const client = mc.createClient(loginOptions(options, args))

const reported = ['chat', 'system_chat', 'action_bar', 'title', 'set_title_text', 'set_title_subtitle',
  'set_title_time', 'kick_disconnect', 'disconnect', 'declare_commands']
client.on('packet', (data, meta) => {
  if (reported.includes(meta.name)) emit('packet', { name: meta.name, state: meta.state, params: data })
})
client.on('success', (packet) => emit('success', { uuid: packet.uuid, username: packet.username }))

const mcData = require(require.resolve('minecraft-data', { paths: [protocolDir] }))(args.version)
client.on('state', (state) => {
  if (state !== 'play') return
  emit('play', {})
  if (mcData.version.version < 759) {
    client.write('chat', { message: args.chat })
    client.write('chat', { message: '/' + args.command })
  } else {
    client.write('chat_message', chatParams(mcData, args.chat))
    client.write('chat_command', chatParams(mcData, args.command))
  }
})
client.on('error', (err) => emit('error', { message: String(err && err.message ? err.message : err) }))
client.on('end', (reason) => { emit('end', { reason: String(reason) }); process.exit(0) })
