'use strict'
// A tiny offline-mode Minecraft server built on minecraft-protocol, for the end-to-end tests.
//
//   node mc_server.js --version 1.20.4 [--port 0] [--lifetime 600]
//
// It prints JSON lines on stdout:
//   {"event":"listening","port":N,"version":"1.20.4","protocol":765,"compressionThreshold":256}
//   {"event":"login","username":U,"host":H,"port":P,"protocol":N}   H = handshake host as received
//   {"event":"joined","username":U}                                 the "join game" packet was sent
//   {"event":"chat","username":U,"message":M,"compressedIn":N,"compressedOut":N}
//   {"event":"end","username":U,"reason":R}                         the client hung up
//   {"event":"closed","username":U,"bytesRead":N,"bytesWritten":N}  socket closed; totals on the wire
// Every chat message is echoed back to its sender as a system message "<U> M".
// The server enables compression at login: minecraft-protocol 1.54.0 always uses threshold 256
// (src/server/login.js), so a chat message longer than that is compressed in both directions.
// It exits 0 on SIGTERM/SIGINT, and by itself after --lifetime seconds so it can never linger.

const mc = require('minecraft-protocol')
const { minecraftData, parseArgs, emit, fail, countCompressedPackets, chatComponent } = require('./common')

const args = parseArgs(process.argv.slice(2), { version: '1.20.4', port: '0', lifetime: '600' })
const mcData = minecraftData(args.version)
if (!mcData) fail(`unknown Minecraft version ${args.version}`)

const server = mc.createServer({
  'online-mode': false,
  host: '127.0.0.1',
  port: Number(args.port),
  version: args.version,
  motd: 'infrarust e2e',
  hideErrors: true
})

// The "join game" (play state `login`) packet. minecraft-data ships a ready-made one for 1.16+;
// the old versions need their few fields spelled out.
function joinGamePacket (client) {
  if (mcData.loginPacket) {
    return {
      ...mcData.loginPacket,
      entityId: client.id,
      maxPlayers: server.maxPlayers,
      enforcesSecureChat: false // 1.20.5+: we cannot verify signed chat in offline mode
    }
  }
  return {
    entityId: client.id,
    gameMode: 1,
    dimension: 0,
    difficulty: 2,
    maxPlayers: server.maxPlayers,
    levelType: 'default',
    reducedDebugInfo: false
  }
}

// Send `text` to one client as a system (not player) chat message.
function sendSystemMessage (client, text) {
  if (mcData.supportFeature('signedChat')) {
    // 1.19+: `system_chat`; in 1.19 .. 1.19.1 its second field was a type id.
    client.write('system_chat', { content: chatComponent(mcData, text), isActionBar: false, type: 1 })
  } else {
    // Up to 1.18: the one `chat` packet; position 1 = system message.
    client.write('chat', { message: chatComponent(mcData, text), position: 1, sender: '00000000-0000-0000-0000-000000000000' })
  }
}

server.on('listening', () => {
  emit('listening', {
    port: server.socketServer.address().port,
    version: mcData.version.minecraftVersion,
    protocol: mcData.version.version,
    compressionThreshold: 256
  })
})

// Emitted once the client finished the login phase (compression is already on at this point).
server.on('login', (client) => {
  const compressed = countCompressedPackets(client)
  compressed.hookCompressor()
  emit('login', {
    username: client.username,
    host: client.serverHost,
    port: client.serverPort,
    protocol: client.protocolVersion
  })

  const onChat = (packet) => {
    emit('chat', {
      username: client.username,
      message: packet.message,
      compressedIn: compressed.counts.in,
      compressedOut: compressed.counts.out
    })
    sendSystemMessage(client, `<${client.username}> ${packet.message}`)
  }
  client.on('chat', onChat) // up to 1.18
  client.on('chat_message', onChat) // 1.19+

  client.on('end', (reason) => emit('end', { username: client.username, reason: String(reason) }))
  // Byte totals of the whole TCP connection (handshake included), final once the socket closed.
  client.socket.once('close', () => {
    emit('closed', {
      username: client.username,
      bytesRead: client.socket.bytesRead,
      bytesWritten: client.socket.bytesWritten
    })
  })
})

// Emitted when the client may enter the play state (after the configuration phase on 1.20.2+).
server.on('playerJoin', (client) => {
  client.write('login', joinGamePacket(client))
  emit('joined', { username: client.username })
})

server.on('error', (err) => fail(`server error: ${err && err.stack ? err.stack : err}`))

function shutdown () {
  server.close()
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
setTimeout(() => fail(`lifetime of ${args.lifetime}s is over`, 2), Number(args.lifetime) * 1000).unref()
