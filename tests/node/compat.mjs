// Compatibility check against a running megatorrentd, using only Node's standard library:
// Ed25519 from `crypto`, sorted-key JSON.stringify for manifests (the reference JavaScript
// client's signing), and the phone-book proof of concept's exact announce.
// Usage: node tests/node/compat.mjs http://127.0.0.1:PORT
// Prints one JSON line {"publicKey": "..."} on success; exits non-zero on any failure.
import crypto from 'node:crypto';
import assert from 'node:assert/strict';

const base = process.argv[2];
assert.ok(base, 'usage: compat.mjs BASE_URL');

const sorted = (v) => Array.isArray(v) ? v.map(sorted)
  : (v && typeof v === 'object') ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])]))
  : v;
const { privateKey, publicKey: pub } = crypto.generateKeyPairSync('ed25519');
const publicKey = pub.export({ format: 'der', type: 'spki' }).subarray(12).toString('hex');
const sign = (text) => crypto.sign(null, Buffer.from(text, 'utf8'), privateKey).toString('hex');
const verify = (text, sigHex) => crypto.verify(null, Buffer.from(text, 'utf8'), pub, Buffer.from(sigHex, 'hex'));

// 1. A manifest signed the reference way is accepted.
const manifest = {
  publicKey, sequence: 1, timestamp: Date.now(),
  collections: [{ title: 'news — ünïcode "quoted"', items: ['magnet:?xt=urn:btih:' + crypto.randomBytes(20).toString('hex')] }],
};
manifest.signature = sign(JSON.stringify(sorted(manifest)));
let res = await fetch(`${base}/v1/manifests/${publicKey}`, {
  method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(manifest),
});
assert.equal(res.status, 201, await res.clone().text());
assert.deepEqual(await res.json(), { sequence: 1 });

// 2. What the server serves verifies with the reference verifier (rebuilds the 4 members).
res = await fetch(`${base}/v1/manifests/${publicKey}`);
assert.equal(res.status, 200);
assert.equal(res.headers.get('etag'), '"1"');
const served = await res.json();
const { publicKey: pk, sequence, timestamp, collections } = served;
assert.ok(verify(JSON.stringify(sorted({ publicKey: pk, sequence, timestamp, collections })), served.signature));
assert.deepEqual(served.collections, manifest.collections);

// 3. An older sequence is refused with the current one.
const old = { ...manifest, sequence: 0 };
delete old.signature;
old.signature = sign(JSON.stringify(sorted(old)));
res = await fetch(`${base}/v1/manifests/${publicKey}`, { method: 'PUT', body: JSON.stringify(old) });
assert.equal(res.status, 409);
assert.equal((await res.json()).currentSequence, 1);

// 4. The proof of concept's pointer announce, exactly as it makes it.
const manifestInfohash = crypto.randomBytes(20).toString('hex');
const seq = 1;
const signature = sign(JSON.stringify({ publicKey, manifestInfohash, seq }));
const announce = JSON.stringify({ publicKey, manifestInfohash, seq, signature });
res = await fetch(`${base}/announce`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: announce });
assert.equal(res.status, 200, await res.clone().text());
assert.deepEqual(await res.json(), { success: true, seq: 1 });

res = await fetch(`${base}/lookup/${publicKey}`);
assert.equal(res.status, 200);
const rec = await res.json();
assert.equal(rec.publicKey, publicKey);
assert.equal(rec.manifestInfohash, manifestInfohash);
assert.equal(rec.seq, 1);
assert.equal(typeof rec.updatedAt, 'number');

// 5. A replay of the same announce gets 409 with the current seq.
res = await fetch(`${base}/announce`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: announce });
assert.equal(res.status, 409);
assert.equal((await res.json()).currentSeq, 1);

res = await fetch(`${base}/stats`);
assert.ok((await res.json()).entries >= 1);

console.log(JSON.stringify({ publicKey }));
