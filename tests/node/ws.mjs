// WebSocket compatibility check against a running megatorrentd, with the npm `ws` package
// and Node's `crypto`: the reference JavaScript client's exact message shapes for manifest
// publish/subscribe (signing with sorted-key JSON.stringify), and the WebTorrent tracker
// offer/answer exchange as the `bittorrent-tracker` client sends it (two plain sockets
// pin the exact shapes; webtorrent-browser.mjs runs real WebTorrent peers in Chromium).
// Usage: node tests/node/ws.mjs http://127.0.0.1:PORT
// Prints one JSON line {"ok": true, ...} on success; exits non-zero on any failure.
import crypto from 'node:crypto';
import assert from 'node:assert/strict';
import WebSocket from 'ws';

const base = process.argv[2];
assert.ok(base, 'usage: ws.mjs BASE_URL');
const wsBase = base.replace(/^http:/, 'ws:');
const TIMEOUT_MS = 15000;

const sorted = (v) => Array.isArray(v) ? v.map(sorted)
  : (v && typeof v === 'object') ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])]))
  : v;
const { privateKey, publicKey: pub } = crypto.generateKeyPairSync('ed25519');
const publicKey = pub.export({ format: 'der', type: 'spki' }).subarray(12).toString('hex');
const sign = (text) => crypto.sign(null, Buffer.from(text, 'utf8'), privateKey).toString('hex');
const verify = (text, sigHex) => crypto.verify(null, Buffer.from(text, 'utf8'), pub, Buffer.from(sigHex, 'hex'));

const makeManifest = (sequence, title) => {
  const m = {
    publicKey, sequence, timestamp: Date.now(),
    collections: [{ title, items: ['magnet:?xt=urn:btih:' + crypto.randomBytes(20).toString('hex')] }],
  };
  m.signature = sign(JSON.stringify(sorted(m)));
  return m;
};

// A socket with a queue of parsed incoming messages.
const open = (path) => new Promise((resolve, reject) => {
  const ws = new WebSocket(wsBase + path);
  const queue = [];
  const waiters = [];
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    const w = waiters.shift();
    if (w) w(msg); else queue.push(msg);
  });
  ws.next = () => new Promise((res, rej) => {
    if (queue.length) return res(queue.shift());
    const t = setTimeout(() => rej(new Error(`no message on ${path} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    waiters.push((m) => { clearTimeout(t); res(m); });
  });
  ws.sendJson = (v) => ws.send(JSON.stringify(v));
  ws.on('open', () => resolve(ws));
  ws.on('error', reject);
});

// --- manifest pub/sub ---------------------------------------------------------------
const sub = await open('/');
sub.sendJson({ action: 'subscribe', key: publicKey });
assert.deepEqual(await sub.next(), { action: 'subscribe', status: 'ok' });

const publisher = await open('/announce');
const m1 = makeManifest(1, 'news — ünïcode "quoted"');
publisher.sendJson({ action: 'publish', manifest: m1 });
assert.deepEqual(await publisher.next(), { action: 'publish', status: 'ok', sequence: 1 });

let push = await sub.next();
assert.equal(push.action, 'publish');
const { publicKey: pk, sequence, timestamp, collections } = push.manifest;
assert.equal(pk, publicKey);
assert.equal(sequence, 1);
assert.ok(verify(JSON.stringify(sorted({ publicKey: pk, sequence, timestamp, collections })), push.manifest.signature));
assert.deepEqual(push.manifest, m1);

// Stale sequence, bad signature, bad key: failure reasons with their prefixes.
publisher.sendJson({ action: 'publish', manifest: makeManifest(1, 'other') });
let reply = await publisher.next();
assert.equal(reply.action, 'publish');
assert.match(reply['failure reason'], /^conflict:/);
publisher.sendJson({ action: 'publish', manifest: { ...makeManifest(2, 'x'), sequence: 3 } });
assert.match((await publisher.next())['failure reason'], /^invalid:/);
publisher.sendJson({ action: 'subscribe', key: 'not-a-key' });
assert.match((await publisher.next())['failure reason'], /^invalid:/);

// A second publish reaches the subscriber; a late subscriber gets the latest, then the ack.
const m2 = makeManifest(2, 'second');
publisher.sendJson({ action: 'publish', manifest: m2 });
assert.deepEqual(await publisher.next(), { action: 'publish', status: 'ok', sequence: 2 });
push = await sub.next();
assert.deepEqual(push, { action: 'publish', manifest: m2 });
const late = await open('/');
late.sendJson({ action: 'subscribe', keys: [publicKey] });
assert.deepEqual(await late.next(), { action: 'publish', manifest: m2 });
assert.deepEqual(await late.next(), { action: 'subscribe', status: 'ok' });
late.sendJson({ action: 'unsubscribe', key: publicKey });
assert.deepEqual(await late.next(), { action: 'unsubscribe', status: 'ok' });

// --- WebTorrent tracker: offer/answer between two peers --------------------------------
const bin = (buf) => buf.toString('binary');
const infoHash = bin(crypto.randomBytes(20));
const peerA = bin(crypto.randomBytes(20));
const peerB = bin(crypto.randomBytes(20));
const a = await open('/announce');
const b = await open('/announce');

b.sendJson({ action: 'announce', info_hash: infoHash, peer_id: peerB, numwant: 50, uploaded: 0, downloaded: 0, left: 0, event: 'started', offers: [] });
reply = await b.next();
assert.equal(reply.action, 'announce');
assert.equal(reply.info_hash, infoHash);
assert.equal(reply.complete, 1);
assert.equal(reply.incomplete, 0);
assert.ok(reply.interval > 0);

const offerId = bin(crypto.randomBytes(20));
const offer = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' };
a.sendJson({ action: 'announce', info_hash: infoHash, peer_id: peerA, numwant: 1, uploaded: 0, downloaded: 0, left: null, event: 'started', offers: [{ offer, offer_id: offerId }] });
reply = await a.next();
assert.equal(reply.action, 'announce');
assert.equal(reply.complete, 1);
assert.equal(reply.incomplete, 1);

const gotOffer = await b.next();
assert.deepEqual(gotOffer, { action: 'announce', info_hash: infoHash, peer_id: peerA, offer, offer_id: offerId });

const answer = { type: 'answer', sdp: 'v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n' };
b.sendJson({ action: 'announce', info_hash: infoHash, peer_id: peerB, to_peer_id: peerA, answer, offer_id: offerId });
const gotAnswer = await a.next();
assert.deepEqual(gotAnswer, { action: 'announce', info_hash: infoHash, peer_id: peerB, answer, offer_id: offerId });

a.sendJson({ action: 'scrape', info_hash: infoHash });
reply = await a.next();
assert.equal(reply.action, 'scrape');
assert.deepEqual(reply.files[infoHash], { complete: 1, incomplete: 1, downloaded: 0 });

for (const s of [sub, publisher, late, a, b]) s.close();
console.log(JSON.stringify({ ok: true, publicKey }));
