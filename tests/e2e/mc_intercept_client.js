'use strict'
// A minecraft-protocol client driven on stdin, for the intercepted-mode tests.
//
//   node mc_intercept_client.js --library 1.54|1.68 --version V --port P --username N
//        [--host H] [--token T --uuid HEX --session-server URL] [--timeout 60]
//
// stdin lines: "chat <text>" sends a chat line, "command <text>" a command (without its slash),
// "signed <count> <text>" a command in the signed layout acknowledging <count> chat messages (1.19.3+:
// chat_command, chat_command_signed from 1.20.5), "quit" ends the connection. stdout JSON lines:
//   {"event":"success","uuid":U,"username":N}   {"event":"play"}
//   {"event":"packet","name":NAME,"params":{...}}   chat, titles, action bar, disconnect
//   {"event":"commands","names":[...]}              the root's children in Declare Commands
//   {"event":"payload","channel":C,"length":N,"sha256":S}
//   {"event":"end","reason":R}   {"event":"error","message":M}

const path = require('path')
const crypto = require('crypto')
const readline = require('readline')

const { parseFlags, loginOptions, chatParams } = require('./client_common')

const args = parseFlags(process.argv.slice(2), { library: '1.68', timeout: '60' })

const protocolDir = path.dirname(require.resolve(
  (args.library === '1.68' ? 'minecraft-protocol-1.68' : 'minecraft-protocol') + '/package.json'))
const mc = require(protocolDir)
const mcData = require(require.resolve('minecraft-data', { paths: [protocolDir] }))(args.version)

function emit (event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }, (key, value) =>
    typeof value === 'bigint' ? value.toString() : value) + '\n')
}
setTimeout(() => { emit('error', { message: 'timed out' }); process.exit(3) }, Number(args.timeout) * 1000).unref()

const options = { host: '127.0.0.1', port: Number(args.port), username: args.username, version: args.version, hideErrors: true }
if (args.host) options.fakeHost = args.host
const client = mc.createClient(loginOptions(options, args))

const reported = ['chat', 'system_chat', 'action_bar', 'title', 'set_title_text', 'set_title_subtitle',
  'set_title_time', 'kick_disconnect', 'disconnect']
client.on('packet', (data, meta) => {
  if (reported.includes(meta.name)) emit('packet', { name: meta.name, state: meta.state, params: data })
  if (meta.name === 'declare_commands') {
    const root = data.nodes[data.rootIndex]
    emit('commands', { names: root.children.map((i) => data.nodes[i].extraNodeData && data.nodes[i].extraNodeData.name) })
  }
  if (meta.name === 'custom_payload' && data.channel === 'infrarust:big') {
    emit('payload', { channel: data.channel, length: data.data.length, sha256: crypto.createHash('sha256').update(data.data).digest('hex') })
  }
})
client.on('success', (packet) => emit('success', { uuid: packet.uuid, username: packet.username }))

function say (kind, text) {
  if (mcData.version.version < 759) client.write('chat', { message: kind === 'command' ? '/' + text : text })
  else client.write(kind === 'command' ? 'chat_command' : 'chat_message', chatParams(mcData, text))
}
function saySigned (count, text) {
  const name = mcData.version.version >= 766 ? 'chat_command_signed' : 'chat_command'
  client.write(name, { ...chatParams(mcData, text), messageCount: count })
}
client.on('state', (state) => { if (state === 'play') emit('play', {}) })
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const space = line.indexOf(' ')
  const verb = space < 0 ? line : line.slice(0, space)
  const rest = space < 0 ? '' : line.slice(space + 1)
  if (verb === 'quit') client.end('quit')
  else if (verb === 'chat' || verb === 'command') say(verb, rest)
  else if (verb === 'signed') saySigned(Number(rest.split(' ')[0]), rest.slice(rest.indexOf(' ') + 1))
})
client.on('error', (err) => emit('error', { message: String(err && err.message ? err.message : err) }))
client.on('end', (reason) => { emit('end', { reason: String(reason) }); process.exit(0) })
