//! The store scenarios: `populate`, `lookup`, `publish`, and the proof of concept's
//! `pointer-announce` / `pointer-lookup`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::Signer;
use hyper::body::Bytes;
use hyper::Method;
use megatorrent::proto::{PointerAnnounce, PublicKey};
use serde_json::json;

use crate::common::{
    db_bytes, drive, identity, outcome, par_map, public_keys, rss_kib, sequence_base,
    signed_manifest, Conn, Cursor, Mix, Target,
};
use crate::report::{Recorder, Report};
use crate::Opts;

/// Namespaces of the deterministic identities.
pub const MANIFESTS: &str = "manifest";
const POINTERS: &str = "pointer";

/// Sign `n` manifests (keys `0..n`) on every core, then PUT them with `concurrency`
/// connections. One run; records the load rate, DB bytes and server RSS around it.
pub async fn populate(opts: &Opts, target: &Target, report: &mut Report) -> anyhow::Result<()> {
    let n = opts.identities;
    let seq = sequence_base();
    let seed = opts.seed;
    let sign_start = Instant::now();
    let bodies = Arc::new(par_map(n, |i| {
        signed_manifest(&identity(MANIFESTS, seed, i), seq)
    }));
    let sign_secs = sign_start.elapsed().as_secs_f64();
    if let Some(Err(e)) = bodies.iter().find(|b| b.is_err()) {
        anyhow::bail!("signing a manifest failed: {e:#}");
    }
    let mean_body = bodies
        .iter()
        .filter_map(|b| b.as_ref().ok())
        .map(|(_, b)| b.len() as f64)
        .sum::<f64>()
        / n.max(1) as f64;
    eprintln!("signed {n} manifests in {sign_secs:.1}s; loading");
    report
        .extra
        .insert("sign_rate".into(), json!(n as f64 / sign_secs));
    report
        .extra
        .insert("manifest_bytes_mean".into(), json!(mean_body));

    let db_before = db_bytes(opts.sqlite_file.as_deref(), opts.pg_url.as_deref())?;
    let rss_before = opts.server_pid.map(rss_kib).transpose()?;

    let cursor = Cursor::new(n);
    let (rec, elapsed) = drive(
        opts.concurrency,
        Duration::from_secs(u64::MAX / 4),
        |_, _| {
            let cursor = cursor.clone();
            let bodies = Arc::clone(&bodies);
            let mut conn = Conn::new(target);
            async move {
                let mut rec = Recorder::new();
                while let Some(i) = cursor.next() {
                    let Some(Ok((key, body))) = usize::try_from(i).ok().and_then(|i| bodies.get(i))
                    else {
                        continue;
                    };
                    let path = format!("/v1/manifests/{key}");
                    let t = Instant::now();
                    let res = conn.send(Method::PUT, &path, Some(body.clone())).await;
                    rec.record(t, &outcome(&res, &[200, 201]));
                }
                Ok(rec)
            }
        },
    )
    .await?;
    report.runs.push(rec.finish(elapsed));

    // Let a background checkpoint or autovacuum settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let db_after = db_bytes(opts.sqlite_file.as_deref(), opts.pg_url.as_deref())?;
    if let (Some(b), Some(a)) = (db_before, db_after) {
        report.extra.insert("db_bytes_before".into(), json!(b));
        report.extra.insert("db_bytes_after".into(), json!(a));
        report.extra.insert(
            "db_bytes_per_identity".into(),
            json!(a.saturating_sub(b) as f64 / n.max(1) as f64),
        );
    }
    if let Some(pid) = opts.server_pid {
        let (rss_after, hwm) = rss_kib(pid)?;
        if let Some((before, _)) = rss_before {
            report
                .extra
                .insert("server_rss_kib_before".into(), json!(before));
        }
        report
            .extra
            .insert("server_rss_kib_after".into(), json!(rss_after));
        report.extra.insert("server_rss_hwm_kib".into(), json!(hwm));
    }
    Ok(())
}

/// `GET /v1/manifests/{key}` (or the pointer `GET /lookup/{key}`) for random keys among
/// the first `--identities`, for `--duration` per run.
pub async fn lookup(
    opts: &Opts,
    target: &Target,
    report: &mut Report,
    pointer: bool,
) -> anyhow::Result<()> {
    let (ns, prefix) = if pointer {
        (POINTERS, "/lookup/")
    } else {
        (MANIFESTS, "/v1/manifests/")
    };
    let paths: Arc<Vec<String>> = Arc::new(
        public_keys(ns, opts.seed, opts.identities)
            .into_iter()
            .map(|k| format!("{prefix}{k}"))
            .collect(),
    );
    for run in 0..opts.runs {
        let (rec, elapsed) = drive(opts.concurrency, opts.duration(), |w, deadline| {
            let paths = Arc::clone(&paths);
            let mut conn = Conn::new(target);
            let mut mix = Mix::new(opts.seed ^ ((run as u64) << 32) ^ w as u64);
            async move {
                let mut rec = Recorder::new();
                while Instant::now() < deadline {
                    let i = mix.below(paths.len() as u64) as usize;
                    let t = Instant::now();
                    let res = conn.send(Method::GET, &paths[i], None).await;
                    rec.record(t, &outcome(&res, &[200]));
                }
                Ok(rec)
            }
        })
        .await?;
        report.runs.push(rec.finish(elapsed));
    }
    Ok(())
}

/// New sequences for random keys among the first `--identities`: `--count` requests are
/// signed before each run (so signing is not timed), then sent for at most `--duration`.
pub async fn publish(
    opts: &Opts,
    target: &Target,
    report: &mut Report,
    pointer: bool,
) -> anyhow::Result<()> {
    for run in 0..opts.runs {
        let base = sequence_base();
        let mut mix = Mix::new(opts.seed ^ (run as u64 + 1) << 40);
        let picks: Vec<u64> = (0..opts.count)
            .map(|_| mix.below(opts.identities))
            .collect();
        let seed = opts.seed;
        let bodies: Vec<anyhow::Result<(String, Bytes)>> = par_map(opts.count, |j| {
            let i = picks[j as usize];
            if pointer {
                pointer_body(&identity(POINTERS, seed, i), base + j)
            } else {
                signed_manifest(&identity(MANIFESTS, seed, i), base + j)
            }
        });
        let bodies = Arc::new(bodies.into_iter().collect::<anyhow::Result<Vec<_>>>()?);
        let cursor = Cursor::new(opts.count);
        let (rec, elapsed) = drive(opts.concurrency, opts.duration(), |_, deadline| {
            let cursor = cursor.clone();
            let bodies = Arc::clone(&bodies);
            let mut conn = Conn::new(target);
            async move {
                let mut rec = Recorder::new();
                while Instant::now() < deadline {
                    let Some(j) = cursor.next() else { break };
                    let (key, body) = &bodies[j as usize];
                    let (method, path) = if pointer {
                        (Method::POST, "/announce".to_owned())
                    } else {
                        (Method::PUT, format!("/v1/manifests/{key}"))
                    };
                    let t = Instant::now();
                    let res = conn.send(method, &path, Some(body.clone())).await;
                    rec.record(t, &outcome(&res, &[200, 201]));
                }
                Ok(rec)
            }
        })
        .await?;
        let finished = rec.finish(elapsed);
        if finished.ok + finished.errors >= opts.count {
            eprintln!(
                "run {}: all {} pre-signed requests were sent before --duration ended; \
                 raise --count for a full-length run",
                run + 1,
                opts.count
            );
        }
        report.runs.push(finished);
    }
    Ok(())
}

/// A proof-of-concept pointer announce body for `key` with sequence `seq`.
fn pointer_body(key: &ed25519_dalek::SigningKey, seq: u64) -> anyhow::Result<(String, Bytes)> {
    let pk = PublicKey::from(key).to_hex();
    let ih = pointer_infohash(&pk, seq);
    let sig = key.sign(&PointerAnnounce::signed_bytes(&pk, &ih, seq));
    let body = json!({
        "publicKey": pk,
        "manifestInfohash": ih,
        "seq": seq,
        "signature": hex::encode(sig.to_bytes()),
    });
    Ok((pk, Bytes::from(serde_json::to_vec(&body)?)))
}

/// A pointer's infohash: distinct per key and sequence.
fn pointer_infohash(pk: &str, seq: u64) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(pk.as_bytes());
    h.update(seq.to_be_bytes());
    hex::encode(&h.finalize()[..20])
}
