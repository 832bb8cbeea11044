// Makes tests/vectors/*.json the way the reference JavaScript clients sign: Ed25519 from
// Node's `crypto`, over sorted-key JSON.stringify (manifest) or the proof of concept's exact
// member order (pointer announce). Run: node tests/vectors/make-vectors.js
const crypto = require('crypto'); const fs = require('fs'); const path = require('path');
const sorted = (v) => Array.isArray(v) ? v.map(sorted) : (v && typeof v === 'object') ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])])) : v;
const seed = Buffer.alloc(32, 7); // fixed test seed: 32 bytes of 0x07
const priv = crypto.createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
const publicKey = crypto.createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(12).toString('hex');
const sign = (s) => crypto.sign(null, Buffer.from(s, 'utf8'), priv).toString('hex');
const manifest = { publicKey, sequence: 7, timestamp: 1678886400000, collections: [{ title: 'Season 1 — "déjà vu" \\ ✓', items: ['magnet:?xt=urn:btih:' + 'c'.repeat(40) + '&dn=x'] }] };
manifest.signature = sign(JSON.stringify(sorted(manifest)));
const pointer = { publicKey, manifestInfohash: 'AB'.repeat(20), seq: 3 };
pointer.signature = sign(JSON.stringify(pointer));
fs.writeFileSync(path.join(__dirname, 'node-manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
fs.writeFileSync(path.join(__dirname, 'node-pointer.json'), JSON.stringify(pointer, null, 2) + '\n');
fs.writeFileSync(path.join(__dirname, 'node-seed.hex'), seed.toString('hex') + '\n');
// The proof of concept's feed documents (its crypto-utils: member orders as below, hex
// signatures, files written with JSON.stringify(v, null, 2)). Tricky text on purpose.
const content = 'tab\there "q" \\ \u0001 \u2028 déjà 😀 \u007f';
const message = { content, timestamp: 1700000000123, publicKey };
message.signature = sign(JSON.stringify({ content: message.content, timestamp: message.timestamp, publicKey }));
const pocMessages = [{ infohash: 'd'.repeat(40), timestamp: 1700000000123 }, { z: 1, 10: 'ten', 2: 'two', infohash: 'E'.repeat(40) }];
const pocManifest = { publicKey, messages: pocMessages };
pocManifest.signature = sign(JSON.stringify({ publicKey, messages: pocMessages }));
fs.writeFileSync(path.join(__dirname, 'node-poc-message.json'), JSON.stringify(message, null, 2));
fs.writeFileSync(path.join(__dirname, 'node-poc-manifest.json'), JSON.stringify(pocManifest, null, 2));
