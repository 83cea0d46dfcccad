'use strict'
// Decode and encode single packet bodies with minecraft-protocol's own codec (the 1.68 copy, which
// knows every version infrarust supports), for tests/test_protocol_layouts.py. Reads one JSON request
// per line on stdin and answers one JSON line each on stdout:
//   {"op": "decode", "version": "1.20.4", "state": "play", "direction": "toClient", "hex": "..."}
//     -> {"name": "system_chat", "params": {...}}      (the hex is packet id + body)
//   {"op": "encode", "version": ..., "state": ..., "direction": ..., "name": ..., "params": {...}}
//     -> {"hex": "..."}
//   {"op": "offline_uuid", "name": "Notch"} -> {"uuid": "..."}    (the library's offline-mode UUID)
// Any failure is {"error": "..."} for that line; the process keeps going.

const path = require('path')
const readline = require('readline')

const protocolDir = path.dirname(require.resolve('minecraft-protocol-1.68/package.json'))
const { createSerializer, createDeserializer } = require(path.join(protocolDir, 'src', 'transforms', 'serializer'))
const { nameToMcOfflineUUID } = require(path.join(protocolDir, 'src', 'datatypes', 'uuid'))

function plain (value) {
  if (typeof value === 'bigint') return value.toString()
  if (Buffer.isBuffer(value)) return { hex: value.toString('hex') }
  if (Array.isArray(value)) return value.map(plain)
  if (value !== null && typeof value === 'object') {
    const out = {}
    for (const [key, item] of Object.entries(value)) out[key] = plain(item)
    return out
  }
  return value
}

function revive (value) {
  if (Array.isArray(value)) return value.map(revive)
  if (value !== null && typeof value === 'object') {
    if (typeof value.hex === 'string' && Object.keys(value).length === 1) return Buffer.from(value.hex, 'hex')
    if (typeof value.bigint === 'string' && Object.keys(value).length === 1) return BigInt(value.bigint)
    const out = {}
    for (const [key, item] of Object.entries(value)) out[key] = revive(item)
    return out
  }
  return value
}

function handle (request) {
  if (request.op === 'offline_uuid') return { uuid: nameToMcOfflineUUID(request.name) }
  // isServer decides the direction: a server deserializes toServer and serializes toClient.
  const options = { state: request.state, version: request.version, compiled: true }
  if (request.op === 'decode') {
    const parser = createDeserializer({ ...options, isServer: request.direction === 'toServer', noErrorLogging: true })
    const result = parser.parsePacketBuffer(Buffer.from(request.hex, 'hex'))
    const read = result.metadata.size
    const total = request.hex.length / 2
    if (read !== total) return { error: `read ${read} of ${total} bytes` }
    return { name: result.data.name, params: plain(result.data.params) }
  }
  const serializer = createSerializer({ ...options, isServer: request.direction === 'toClient' })
  const buffer = serializer.createPacketBuffer({ name: request.name, params: revive(request.params) })
  return { hex: buffer.toString('hex') }
}

const lines = readline.createInterface({ input: process.stdin })
lines.on('line', (line) => {
  let answer
  try {
    answer = handle(JSON.parse(line))
  } catch (err) {
    answer = { error: String(err && err.message ? err.message : err) }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
})
