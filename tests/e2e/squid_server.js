'use strict'
// A flying-squid server (offline mode, superflat world kept in memory) for the mineflayer test.
//
//   node squid_server.js --version V [--lifetime 300]
//
// JSON lines on stdout: {"event":"listening","port":N}, {"event":"chat","username":U,"message":M}
const net = require('net')
const mcServer = require('flying-squid')

const args = { version: '1.20.4', lifetime: '300' }
const argv = process.argv.slice(2)
for (let i = 0; i + 1 < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1]

function emit (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

// flying-squid takes a fixed port: ask the kernel for a free one first.
const probe = net.createServer()
probe.listen(0, '127.0.0.1', () => {
  const port = probe.address().port
  probe.close(() => start(port))
})

function start (port) {
  const server = mcServer.createMCServer({
    motd: 'infrarust squid e2e',
    port,
    host: '127.0.0.1',
    'max-players': 10,
    'online-mode': false,
    logging: false,
    gameMode: 1,
    difficulty: 1,
    worldFolder: undefined,
    generation: { name: 'superflat', options: { worldHeight: 80 } },
    kickTimeout: 10000,
    plugins: {},
    modpe: false,
    'view-distance': 2,
    'player-list-text': { header: 'infrarust', footer: 'e2e' },
    'everybody-op': false,
    'max-entities': 10,
    version: args.version
  })
  server.on('listening', () => emit('listening', { port }))
  server.on('newPlayer', (player) => {
    player.on('chat', ({ message }) => emit('chat', { username: player.username, message }))
  })
  server.on('error', (err) => emit('error', { message: String(err) }))
}
process.on('SIGTERM', () => process.exit(0))
setTimeout(() => process.exit(2), Number(args.lifetime) * 1000).unref()
