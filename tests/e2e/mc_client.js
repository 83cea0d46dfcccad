'use strict'
// A Minecraft client built on minecraft-protocol that logs in (offline mode), waits for the
// "join game" packet, sends one chat message and waits until the server echoes it back.
//
//   node mc_client.js --version 1.20.4 --port P --host DOMAIN --username U --message M
//                     [--connect-host 127.0.0.1] [--timeout 30]
//
// It connects to --connect-host:--port but puts DOMAIN in its handshake (the library's `fakeHost`
// option), the way a player's client would after resolving DOMAIN to the proxy.
// JSON lines on stdout:
//   {"event":"login","username":U,"protocol":N}    the server accepted the login
//   {"event":"joined","entityId":N}                the "join game" packet arrived
//   {"event":"done","username":U,"echo":TEXT,"compressedIn":N,"compressedOut":N}
// then it disconnects, waits for the server to close too, and exits 0 after
//   {"event":"closed","bytesRead":N,"bytesWritten":N}   totals on the wire, handshake included Any failure (kick, error, early close, --timeout) prints
// {"event":"error","message":...} and exits non-zero.

const mc = require('minecraft-protocol')
const { minecraftData, parseArgs, emit, fail, countCompressedPackets } = require('./common')

const args = parseArgs(process.argv.slice(2), {
  version: '1.20.4',
  host: 'localhost',
  'connect-host': '127.0.0.1',
  username: 'e2e_player',
  message: 'hello through infrarust',
  timeout: '30'
})
if (!args.port) fail('--port is required')
const mcData = minecraftData(args.version)
if (!mcData) fail(`unknown Minecraft version ${args.version}`)

setTimeout(() => fail(`timed out after ${args.timeout}s`, 3), Number(args.timeout) * 1000).unref()

const client = mc.createClient({
  host: args['connect-host'], // an IP address: no SRV lookup, connect straight there
  port: Number(args.port),
  fakeHost: args.host, // the server address written in the handshake
  username: args.username,
  version: args.version,
  auth: 'offline',
  hideErrors: true
})
const compressed = countCompressedPackets(client)
let finished = false

// Chat components arrive as JSON strings (the library turns 1.20.3+ NBT into JSON too).
function plainText (component) {
  try {
    const parsed = JSON.parse(component)
    if (typeof parsed === 'string') return parsed
    return [parsed.text ?? '', ...(parsed.extra ?? []).map((e) => (typeof e === 'string' ? e : e.text ?? ''))].join('')
  } catch {
    return String(component)
  }
}

client.on('success', (packet) => {
  emit('login', { username: packet.username, protocol: mcData.version.version })
})

// The play-state `login` packet is "join game": we are in the world and may chat.
client.once('login', (packet) => {
  emit('joined', { entityId: packet.entityId })
  client.chat(args.message)
})

client.on('systemChat', ({ formattedMessage }) => {
  const text = plainText(formattedMessage)
  if (finished || !text.includes(args.message)) return
  finished = true
  emit('done', {
    username: client.username,
    echo: text,
    compressedIn: compressed.counts.in,
    compressedOut: compressed.counts.out
  })
  client.end('done') // closes our side; the process exits on 'end'
})

// Kicks: `disconnect` during login, `kick_disconnect` in play.
client.on('disconnect', (packet) => fail(`kicked during login: ${JSON.stringify(packet.reason)}`))
client.on('kick_disconnect', (packet) => fail(`kicked: ${JSON.stringify(packet.reason)}`))
client.on('error', (err) => fail(`client error: ${err && err.message ? err.message : err}`))
client.on('end', (reason) => {
  if (!finished) {
    fail(`connection closed before the echo arrived: ${reason}`)
    return
  }
  // The socket's counters are final once it is fully closed (the library destroys it after a
  // grace period if the server never closes its side).
  const report = () => {
    emit('closed', { bytesRead: client.socket.bytesRead, bytesWritten: client.socket.bytesWritten })
    process.exit(0)
  }
  if (client.socket.destroyed) report()
  else client.socket.once('close', report)
})
