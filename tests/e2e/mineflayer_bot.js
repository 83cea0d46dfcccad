'use strict'
// A mineflayer bot: joins, waits to spawn, says one chat line, reports what it hears, then quits.
//
//   node mineflayer_bot.js --version V --port P --host H --username N --say TEXT [--timeout 60]
//
// JSON lines: {"event":"spawn","position":{...}}, {"event":"message","text":T}, {"event":"end","reason":R}
const mineflayer = require('mineflayer')

const args = { timeout: '60', say: 'hello' }
const argv = process.argv.slice(2)
for (let i = 0; i + 1 < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1]

function emit (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}
setTimeout(() => { emit('error', { message: 'timed out' }); process.exit(3) }, Number(args.timeout) * 1000).unref()

const bot = mineflayer.createBot({
  host: '127.0.0.1',
  port: Number(args.port),
  fakeHost: args.host,
  username: args.username,
  version: args.version,
  auth: 'offline'
})
bot.once('spawn', () => {
  const { x, y, z } = bot.entity.position
  emit('spawn', { position: { x, y, z } })
  bot.chat(args.say)
})
bot.on('messagestr', (text) => {
  emit('message', { text })
  if (text.includes(args.say)) bot.quit('done')
})
bot.on('kicked', (reason) => emit('kicked', { reason: String(reason) }))
bot.on('error', (err) => emit('error', { message: String(err) }))
bot.on('end', (reason) => { emit('end', { reason: String(reason) }); process.exit(0) })
