// Two real WebTorrent peers in headless Chromium exchange a file through our WebSocket
// tracker: the npm `webtorrent` browser bundle (dist/webtorrent.min.js) runs in two pages
// (separate browser contexts) served from 127.0.0.1 by a tiny static server below. Page A
// seeds 256 KiB of random bytes announcing ONLY to the tracker given on the command line;
// page B downloads it by magnet link. The script checks that
//   * every WebSocket either page opened went to that tracker, page A received a relayed
//     WebRTC offer or answer and page B the matching other half (the offer/answer exchange
//     went through our server),
//   * the downloader's only wire is a WebRTC one, and its RTCPeerConnection's selected ICE
//     candidate pair is 127.0.0.1 <-> 127.0.0.1 and carried at least the file's size,
//   * the downloaded bytes have the SHA-256 of the seeded ones (hashed here, in Node).
// No STUN/TURN servers, no DHT/LSD/PEX, no web seeds; ICE candidates other than 127.0.0.1
// are filtered out in the pages so that nothing but loopback is used.
//
// Usage: node tests/node/webtorrent-browser.mjs ws://127.0.0.1:PORT/announce
// Environment: CHROMIUM (default /usr/bin/chromium), WT_TIMEOUT_MS (default 40000),
// WT_DEBUG (a `debug` namespace list for the pages, e.g. 'bittorrent-tracker*,simple-peer*')
// and WT_LOG_LINES (page console lines printed on failure, default 40).
// Prints one JSON line {"ok": true, ...} on success; exits non-zero with a reason otherwise.
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const tracker = process.argv[2];
assert.match(tracker ?? '', /^ws:\/\/127\.0\.0\.1:\d+\/announce$/, 'usage: webtorrent-browser.mjs ws://127.0.0.1:PORT/announce');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.WT_TIMEOUT_MS || 40000);
const here = path.dirname(fileURLToPath(import.meta.url));
const bundle = path.join(here, 'node_modules/webtorrent/dist/webtorrent.min.js');
if (!fs.existsSync(executablePath)) {
  throw new Error(`Chromium not found at ${executablePath} (scripts/test installs the Debian package \`chromium\`)`);
}
if (!fs.existsSync(bundle)) {
  throw new Error(`${bundle} missing: run \`npm ci\` in tests/node`);
}

const payload = crypto.randomBytes(256 * 1024);
const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

// --- static server ------------------------------------------------------------------
const page = `<!doctype html><meta charset="utf-8"><title>webtorrent peer</title>
<script type="module">
import WebTorrent from '/webtorrent.min.js';
window.WebTorrent = WebTorrent;
</script>`;
const routes = {
  '/': ['text/html', () => Buffer.from(page)],
  '/webtorrent.min.js': ['text/javascript', () => fs.readFileSync(bundle)],
  '/payload.bin': ['application/octet-stream', () => payload],
};
const server = http.createServer((req, res) => {
  const route = routes[req.url];
  if (!route) {
    res.writeHead(404).end();
    return;
  }
  const body = route[1]();
  res.writeHead(200, { 'content-type': route[0], 'content-length': body.length, 'cache-control': 'no-store' });
  res.end(body);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

// --- in-page instrumentation (runs before the page's own scripts) --------------------
function instrument(debug) {
  if (debug) localStorage.debug = debug;
  // Record every WebSocket and the relayed offers/answers it receives.
  const NativeWebSocket = window.WebSocket;
  window.__ws = { urls: [], offers: 0, answers: 0 };
  window.WebSocket = class extends NativeWebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      window.__ws.urls.push(String(url));
      this.addEventListener('message', (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch { return; }
        if (msg && msg.offer) window.__ws.offers += 1;
        if (msg && msg.answer) window.__ws.answers += 1;
      });
    }
  };
  // Keep every RTCPeerConnection for getStats(), and hand out only loopback ICE candidates
  // (the SDP is read from localDescription once gathering is complete: no trickle).
  const NativePC = window.RTCPeerConnection;
  const loopbackOnly = (sdp) => sdp.split('\r\n')
    .filter((line) => !line.startsWith('a=candidate:') || line.split(' ')[4] === '127.0.0.1')
    .join('\r\n');
  window.__pcs = [];
  window.RTCPeerConnection = class extends NativePC {
    constructor(config) {
      super({ ...config, iceServers: [] });
      window.__pcs.push(this);
    }
    get localDescription() {
      const d = super.localDescription;
      if (d) {
        // Kept for the failure report: every candidate gathered, before filtering.
        const seen = new Set(window.__candidates);
        for (const l of d.sdp.split('\r\n')) if (l.startsWith('a=candidate:')) seen.add(l.split(' ').slice(2, 8).join(' '));
        window.__candidates = [...seen];
      }
      return d && new RTCSessionDescription({ type: d.type, sdp: loopbackOnly(d.sdp) });
    }
  };
  // Every ICE candidate pair of every RTCPeerConnection, with the bytes it carried.
  window.__rtcPairs = async () => {
    const out = [];
    for (const pc of window.__pcs) {
      const stats = await pc.getStats();
      stats.forEach((st) => {
        if (st.type !== 'candidate-pair') return;
        const local = stats.get(st.localCandidateId);
        const remote = stats.get(st.remoteCandidateId);
        out.push({
          local: `${local.address}:${local.port} ${local.protocol} ${local.candidateType}`,
          remote: `${remote.address}:${remote.port} ${remote.protocol} ${remote.candidateType}`,
          localAddress: local.address,
          localType: local.candidateType,
          remoteAddress: remote.address,
          remoteType: remote.candidateType,
          state: st.state,
          bytesSent: st.bytesSent ?? 0,
          bytesReceived: st.bytesReceived ?? 0,
        });
      });
    }
    return out;
  };
}

const clientOpts = { dht: false, lsd: false, utPex: false, webSeeds: false, natUpnp: false, natPmp: false };

async function seed({ tracker, clientOpts }) {
  const client = new window.WebTorrent({ ...clientOpts, tracker: { rtcConfig: { iceServers: [] } } });
  window.__client = client;
  const bytes = new Uint8Array(await (await fetch('/payload.bin')).arrayBuffer());
  const file = new File([bytes], 'payload.bin');
  return new Promise((resolve, reject) => {
    client.on('error', (e) => reject(new Error(`seeder: ${e.message || e}`)));
    client.seed(file, { announce: [tracker], announceList: [[tracker]], name: 'payload.bin' }, (t) => {
      t.on('warning', (w) => console.warn('seeder warning:', w.message || w));
      resolve({ magnetURI: t.magnetURI, infoHash: t.infoHash, announce: t.announce });
    });
  });
}

async function download({ magnetURI, tracker, clientOpts }) {
  const client = new window.WebTorrent({ ...clientOpts, tracker: { rtcConfig: { iceServers: [] } } });
  window.__client = client;
  const wires = [];
  let torrent;
  return new Promise((resolve, reject) => {
    client.on('error', (e) => reject(new Error(`downloader: ${e.message || e}`)));
    // Wires connect before the metadata is known (before the `add` callback): listen now.
    torrent = client.add(magnetURI, { announce: [tracker] }, (t) => {
      t.on('warning', (w) => console.warn('downloader warning:', w.message || w));
      const finish = async () => {
        const buf = new Uint8Array(await t.files[0].arrayBuffer());
        let bin = '';
        for (let i = 0; i < buf.length; i += 0x8000) bin += String.fromCharCode(...buf.subarray(i, i + 0x8000));
        resolve({ base64: btoa(bin), wires, announce: t.announce, numPeers: t.numPeers });
      };
      if (t.done) finish(); else t.on('done', finish);
    });
    torrent.on('wire', (wire) => wires.push({ type: wire.type, remoteAddress: wire.remoteAddress }));
  });
}

const withTimeout = (p, what) => Promise.race([
  p,
  new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no result within ${TIMEOUT_MS} ms`)), TIMEOUT_MS)),
]);

const args = [
  '--no-sandbox', // the tests run as root in CI
  '--allow-loopback-in-peer-connection', // gather 127.0.0.1 host candidates
  '--disable-features=WebRtcHideLocalIpsWithMdns', // real addresses, not .local mDNS names
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const browser = await chromium.launch({ executablePath, headless: true, args, timeout: 20000 });
const logs = [];
let exitCode = 0;
try {
  const pages = [];
  for (const name of ['seeder', 'downloader']) {
    const ctx = await browser.newContext();
    // Without camera/microphone permission Chromium exposes only the default route's
    // address to WebRTC (never loopback, whatever the flags): grant it to our origin.
    await ctx.grantPermissions(['camera', 'microphone'], { origin });
    const p = await ctx.newPage();
    p.on('console', (m) => logs.push(`${name} console.${m.type()}: ${m.text()}`));
    p.on('pageerror', (e) => logs.push(`${name} page error: ${e.message}`));
    await p.addInitScript(instrument, process.env.WT_DEBUG || '');
    await p.goto(origin + '/');
    await p.waitForFunction(() => typeof window.WebTorrent === 'function', null, { timeout: 10000 });
    pages.push(p);
  }
  const [seeder, downloader] = pages;

  const seeded = await withTimeout(seeder.evaluate(seed, { tracker, clientOpts }), 'seeding');
  assert.deepEqual(seeded.announce, [tracker], 'the seeder announces only to our tracker');
  const got = await withTimeout(downloader.evaluate(download, { magnetURI: seeded.magnetURI, tracker, clientOpts }), 'download');
  assert.deepEqual(got.announce, [tracker], 'the downloader announces only to our tracker');

  const data = Buffer.from(got.base64, 'base64');
  assert.equal(data.length, payload.length, 'downloaded size');
  assert.equal(sha256(data), sha256(payload), 'SHA-256 of the downloaded file');

  // The transfer went over WebRTC, on loopback.
  assert.ok(got.wires.length >= 1 && got.wires.every((w) => w.type === 'webrtc'), `wires: ${JSON.stringify(got.wires)}`);
  // The file came over WebRTC, and on this machine only. The pages advertise only their
  // 127.0.0.1 candidates and use no STUN/TURN server, so every pair joins a `host` socket
  // of this machine to the peer's 127.0.0.1 candidate or to a peer-reflexive one (the
  // source address of the other page's checks). Chromium binds its sockets on every
  // address of the host, so which local socket carries the data varies from run to run;
  // usually it is 127.0.0.1 <-> 127.0.0.1.
  const pairs = {};
  for (const [name, p] of [['seeder', seeder], ['downloader', downloader]]) {
    pairs[name] = await p.evaluate(() => window.__rtcPairs());
  }
  const ownAddresses = new Set(Object.values(os.networkInterfaces()).flat().map((i) => i.address));
  for (const [name, list] of Object.entries(pairs)) {
    for (const pr of list) {
      const ok = pr.localType === 'host' && ownAddresses.has(pr.localAddress)
        && ((pr.remoteType === 'host' && pr.remoteAddress === '127.0.0.1') || pr.remoteType === 'prflx');
      assert.ok(ok, `${name}: an unexpected ICE candidate pair: ${JSON.stringify(pr)}`);
    }
  }
  const received = pairs.downloader.reduce((n, pr) => n + pr.bytesReceived, 0);
  assert.ok(received >= payload.length,
    `the downloader received ${received} bytes over WebRTC, less than the file: ${JSON.stringify(pairs.downloader)}`);
  const used = [...pairs.seeder, ...pairs.downloader].filter((pr) => pr.bytesReceived > 0)
    .map(({ local, remote, bytesSent, bytesReceived }) => ({ local, remote, bytesSent, bytesReceived }));

  // The offer/answer exchange came over our tracker's sockets.
  const ws = {};
  for (const [name, p] of [['seeder', seeder], ['downloader', downloader]]) {
    ws[name] = await p.evaluate(() => window.__ws);
    assert.ok(ws[name].urls.length >= 1, `${name} opened no WebSocket`);
    for (const u of ws[name].urls) assert.equal(u, tracker, `${name} opened a WebSocket elsewhere`);
  }
  // One side received an offer and the other the answer to it (which side offers
  // depends on who announced with offers while the other was already in the swarm).
  const relayed = (a, b) => ws[a].offers >= 1 && ws[b].answers >= 1;
  assert.ok(relayed('seeder', 'downloader') || relayed('downloader', 'seeder'),
    `no offer/answer pair relayed: ${JSON.stringify(ws)}`);

  console.log(JSON.stringify({
    ok: true,
    infoHash: seeded.infoHash,
    sha256: sha256(data),
    bytes: data.length,
    wires: got.wires,
    rtc: used,
    ws: { seeder: { offers: ws.seeder.offers, answers: ws.seeder.answers }, downloader: { offers: ws.downloader.offers, answers: ws.downloader.answers } },
  }));
} catch (e) {
  exitCode = 1;
  console.error(`webtorrent-browser: ${e.stack || e}`);
  for (const [i, p] of browser.contexts().map((c) => c.pages()[0]).entries()) {
    const state = await p.evaluate(async () => ({
      ws: window.__ws,
      candidates: window.__candidates,
      pcs: window.__pcs.map((pc) => `${pc.connectionState}/${pc.iceConnectionState}/${pc.iceGatheringState}`),
      pairs: (await window.__rtcPairs()).map((pr) => `${pr.local} -> ${pr.remote} ${pr.state} sent=${pr.bytesSent} recv=${pr.bytesReceived}`),
      torrents: (window.__client?.torrents ?? []).map((t) => ({ progress: t.progress, numPeers: t.numPeers, ready: t.ready })),
    })).catch((err) => `unavailable: ${err.message}`);
    console.error(`${i ? 'downloader' : 'seeder'} state: ${JSON.stringify(state)}`);
  }
  console.error(logs.slice(-Number(process.env.WT_LOG_LINES || 40)).join('\n'));
} finally {
  await browser.close().catch(() => {});
  server.close();
}
process.exit(exitCode);
