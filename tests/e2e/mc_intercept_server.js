'use strict'
// An offline-mode Minecraft server on minecraft-protocol for the intercepted-mode tests
// (tests/e2e/test_e2e_intercepted.py): one per version, shared by the module's tests.
//
//   node mc_intercept_server.js --library 1.54|1.68 --version V [--compression on|off] [--lifetime 900]
//
// JSON lines on stdout:
//   {"event":"listening","port":N}
//   {"event":"login","username":U,"uuid":ID,"host":H}      H = the handshake host as received
//   {"event":"chat","username":U,"message":M}              echoed back as a system message "<U> M"
//   {"event":"command","username":U,"command":C}          any command that reached the server
//   {"event":"ack","username":U,"count":N}                a Message Acknowledgement (1.19.3+)
//   {"event":"big","username":U,"sha256":S,"length":N}    after chat "big": a 2 MB plugin message sent
// After the join game packet it sends a command tree holding only its root, so the proxy has a
// Declare Commands to add /infrarust to. With --compression off it never enables compression.

const path = require('path')
const crypto = require('crypto')

const args = { library: '1.54', version: '1.20.4', compression: 'on', lifetime: '900' }
const argv = process.argv.slice(2)
for (let i = 0; i + 1 < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1]

const protocolDir = path.dirname(require.resolve(
  (args.library === '1.68' ? 'minecraft-protocol-1.68' : 'minecraft-protocol') + '/package.json'))
const mc = require(protocolDir)
const mcData = require(require.resolve('minecraft-data', { paths: [protocolDir] }))(args.version)

function emit (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}
if (!mcData) { emit('error', { message: `unknown version ${args.version}` }); process.exit(1) }

const BIG_SIZE = 2000000 // a chunk-sized packet: just under the 2 MiB frame limit when sent uncompressed
const big = Buffer.alloc(BIG_SIZE)
for (let i = 0; i < BIG_SIZE; i++) big[i] = (i * 7 + (i >> 11)) & 0xff

const server = mc.createServer({
  'online-mode': false,
  host: '127.0.0.1',
  port: 0,
  version: args.version,
  motd: 'infrarust intercepted e2e',
  hideErrors: true,
  beforeLogin: (client) => {
    if (args.compression !== 'off') return
    // The library always sends Set Compression 256; this server can run without it.
    const write = client.write.bind(client)
    client.write = (name, params) => { if (name !== 'compress') write(name, params) }
    Object.defineProperty(client, 'compressionThreshold', { get: () => -1, set: () => {}, configurable: true })
  }
})

function joinGamePacket (client) {
  if (mcData.loginPacket) {
    return { ...mcData.loginPacket, entityId: client.id, maxPlayers: server.maxPlayers, enforcesSecureChat: false }
  }
  return { entityId: client.id, gameMode: 1, dimension: 0, difficulty: 2, maxPlayers: server.maxPlayers, levelType: 'default', reducedDebugInfo: false }
}

function chatComponent (text) {
  if (mcData.supportFeature('chatPacketsUseNbtComponents')) {
    return { type: 'compound', name: '', value: { text: { type: 'string', value: text } } }
  }
  return JSON.stringify({ text })
}

function sendSystemMessage (client, text) {
  if (mcData.supportFeature('signedChat')) {
    client.write('system_chat', { content: chatComponent(text), isActionBar: false, type: 1 })
  } else {
    client.write('chat', { message: chatComponent(text), position: 1, sender: '00000000-0000-0000-0000-000000000000' })
  }
}

function packetId (name) {
  const mappings = mcData.protocol.play.toClient.types.packet[1][0].type[1].mappings
  const id = Object.keys(mappings).find((key) => mappings[key] === name)
  return id === undefined ? undefined : Number(id)
}

server.on('listening', () => emit('listening', { port: server.socketServer.address().port }))

server.on('login', (client) => {
  emit('login', { username: client.username, uuid: client.uuid, host: client.serverHost })
  const onChat = (packet) => {
    if (packet.message.startsWith('/')) {
      emit('command', { username: client.username, command: packet.message.slice(1) })
      return
    }
    emit('chat', { username: client.username, message: packet.message })
    if (packet.message === 'big') {
      client.write('custom_payload', { channel: 'infrarust:big', data: big })
      emit('big', { username: client.username, length: big.length, sha256: crypto.createHash('sha256').update(big).digest('hex') })
    } else {
      sendSystemMessage(client, `<${client.username}> ${packet.message}`)
    }
  }
  const onCommand = (packet) => emit('command', { username: client.username, command: packet.command })
  client.on('chat', onChat)
  client.on('chat_message', onChat)
  client.on('chat_command', onCommand)
  client.on('chat_command_signed', onCommand)
  // The library's own handler reads the acknowledgement window its client side keeps (undefined on a
  // server: the connection would die on the TypeError); this server reports acknowledgements instead.
  client.removeAllListeners('message_acknowledgement')
  client.on('message_acknowledgement', (packet) => emit('ack', { username: client.username, count: packet.count }))
  client.on('error', () => {})
})

server.on('playerJoin', (client) => {
  client.write('login', joinGamePacket(client))
  const id = packetId('declare_commands')
  if (id !== undefined) {
    // varint id, one node (the root: flags 0, no children), root index 0
    const varint = []
    let value = id
    do { let byte = value & 0x7f; value >>>= 7; if (value) byte |= 0x80; varint.push(byte) } while (value)
    client.writeRaw(Buffer.from([...varint, 1, 0, 0, 0]))
  }
  emit('joined', { username: client.username })
})

server.on('error', (err) => { emit('error', { message: String(err) }); process.exit(1) })
process.on('SIGTERM', () => { server.close(); process.exit(0) })
setTimeout(() => process.exit(2), Number(args.lifetime) * 1000).unref()
