// The WebSocket anchor of scripts/bench-compare: webtorrent's `bittorrent-tracker` server
// (the locked copy of tests/node, installed with `npm ci`), WebSocket only, on 127.0.0.1.
// server.js, not the package's index: the client side needs a native module that
// tests/node does not build (install scripts are off).
//
//   node scripts/bench_bittorrent_tracker.mjs NODE_MODULES_DIR PORT
//
// Prints "listening" once it accepts connections; exits 1 on a server error. Warnings (the
// tracker's complaints about requests it refuses) are counted by message and printed on
// exit, one line.
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const [dir, portArg] = process.argv.slice(2)
const port = Number(portArg)
if (!dir || !Number.isInteger(port) || port < 1 || port > 65535) {
  console.error('usage: node scripts/bench_bittorrent_tracker.mjs NODE_MODULES_DIR PORT')
  process.exit(2)
}

const { default: Server } = await import(pathToFileURL(join(dir, 'bittorrent-tracker', 'server.js')).href)
// No HTTP tracker, no UDP, no /stats page: the ws option alone makes its own HTTP server
// that only upgrades.
const server = new Server({ http: false, udp: false, ws: true, stats: false })
const warnings = new Map()
server.on('warning', err => {
  const key = String(err?.message ?? err)
  warnings.set(key, (warnings.get(key) ?? 0) + 1)
})
server.on('error', err => {
  console.error(`bittorrent-tracker: ${err.message}`)
  process.exit(1)
})
const stop = () => {
  const counts = [...warnings].map(([message, n]) => `${n} × ${message}`)
  console.log(`warnings: ${counts.length ? counts.join('; ') : 'none'}`)
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
server.listen(port, '127.0.0.1', () => console.log('listening'))
