'use strict'
// Helpers shared by mc_server.js and mc_client.js: command-line flags, JSON-lines output, the
// minecraft-data instance that minecraft-protocol itself uses, and counting compressed packets.

const path = require('path')

// Load a dependency of minecraft-protocol from minecraft-protocol's own point of view, so we get
// exactly the copy (and version) the library uses, whatever npm decided to hoist.
const protocolDir = path.dirname(require.resolve('minecraft-protocol/package.json'))
function requireFromProtocol (name) {
  return require(require.resolve(name, { paths: [protocolDir] }))
}
const minecraftData = requireFromProtocol('minecraft-data')
const { varint } = requireFromProtocol('protodef').types
const readVarInt = varint[0]

// Parse `--name value` pairs into an object; every flag takes exactly one value.
function parseArgs (argv, defaults) {
  const args = { ...defaults }
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]
    if (!flag.startsWith('--') || i + 1 >= argv.length) {
      fail(`bad arguments: ${argv.join(' ')}`)
    }
    args[flag.slice(2)] = argv[i + 1]
  }
  return args
}

// One JSON object per line on stdout: this is what the Python test reads.
function emit (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

// Report an error as a JSON line and exit non-zero.
function fail (message, code = 1) {
  emit('error', { message: String(message) })
  process.exitCode = code
  // Let stdout flush before exiting.
  setImmediate(() => process.exit(code))
}

// Count the compressed packets on a connection (both directions), to prove that compression was
// really used. Once compression is on, every frame starts with a VarInt "data length": 0 means sent
// uncompressed, anything else means zlib-compressed. We look at the frames just below the
// (de)compressor: outgoing ones leave `client.compressor`, incoming ones leave `client.splitter`.
function countCompressedPackets (client) {
  const counts = { in: 0, out: 0 }
  const isCompressed = (frame) => {
    const { value, error } = readVarInt(frame, 0)
    return !error && value !== 0
  }
  client.splitter.on('data', (frame) => {
    if (client.compressor != null && isCompressed(frame)) counts.in += 1
  })
  // The compressor only exists once the server sent "set compression": hook it when it appears.
  let hooked = false
  const hookCompressor = () => {
    if (hooked || client.compressor == null) return
    hooked = true
    client.compressor.on('data', (frame) => {
      if (isCompressed(frame)) counts.out += 1
    })
  }
  client.on('packet', hookCompressor)
  client.on('state', hookCompressor)
  return { counts, hookCompressor }
}

// A JSON chat component (the format of 1.8 .. 1.20.2) or its NBT form (1.20.3+) holding `text`.
function chatComponent (mcData, text) {
  if (mcData.supportFeature('chatPacketsUseNbtComponents')) {
    return { type: 'compound', name: '', value: { text: { type: 'string', value: text } } }
  }
  return JSON.stringify({ text })
}

module.exports = { minecraftData, parseArgs, emit, fail, countCompressedPackets, chatComponent }
