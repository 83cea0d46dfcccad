'use strict'
// What the stdin-driven test clients (mc_intercept_client.js, mc_session_client.js) share: their flags,
// an online login against a given session server, and the fields of a chat or command packet in any
// layout from 1.19 on. Nothing here loads minecraft-protocol: each client picks its own copy.

// `--name value` pairs over `defaults`.
function parseFlags (argv, defaults) {
  const args = { ...defaults }
  for (let i = 0; i + 1 < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1]
  return args
}

// Client options for an online login (`--token`, `--uuid`, `--session-server`): the session a launcher
// would hold, then connect; the library's encryption step calls the session server's join with it.
// Offline without a token.
function loginOptions (options, args) {
  if (!args.token) {
    options.auth = 'offline'
    return options
  }
  options.sessionServer = args['session-server']
  options.auth = (client, opts) => {
    client.username = args.username
    client.session = { accessToken: args.token, selectedProfile: { id: args.uuid, name: args.username } }
    opts.accessToken = args.token
    opts.haveCredentials = true
    opts.connect(client)
  }
  return options
}

// The fields of chat_message / chat_command (and their signed forms) for `text`, unsigned.
function chatParams (mcData, text) {
  return {
    message: text,
    command: text,
    timestamp: BigInt(Date.now()),
    salt: 0n,
    signature: mcData.version.version >= 761 ? undefined : Buffer.alloc(0),
    signedPreview: false,
    argumentSignatures: [],
    previousMessages: [],
    offset: 0,
    messageCount: 0,
    acknowledged: Buffer.alloc(3),
    checksum: 0
  }
}

module.exports = { parseFlags, loginOptions, chatParams }
