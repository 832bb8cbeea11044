//! Shared pieces: the target address, a keep-alive HTTP/1.1 connection, deterministic
//! identities and manifests, the worker pool, and the server-side probes (RSS, DB size).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use megatorrent::proto::{Collection, PublicKey, UnsignedManifest};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::report::Recorder;

/// Where the load goes: `http://HOST:PORT` (no path).
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub host: String,
    pub addr: SocketAddr,
}

impl Target {
    pub async fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("--target {url:?}: only http://HOST:PORT is supported"))?;
        let host = rest.trim_end_matches('/').to_owned();
        if host.is_empty() || host.contains('/') {
            bail!("--target {url:?}: expected http://HOST:PORT with no path");
        }
        let addr = tokio::net::lookup_host(&host)
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        Ok(Self {
            url: format!("http://{host}"),
            host,
            addr,
        })
    }
}

/// One keep-alive HTTP/1.1 connection, reopened after an error.
pub struct Conn {
    target: Target,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(target: &Target) -> Self {
        Self {
            target: target.clone(),
            sender: None,
        }
    }

    async fn open(&mut self) -> anyhow::Result<()> {
        let stream = TcpStream::connect(self.target.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Send one request; the body is read whole. Errors drop the connection.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let res = self.try_send(method, path, body).await;
        if res.is_err() {
            self.sender = None;
        }
        res
    }

    async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.open().await?;
        }
        let Some(sender) = self.sender.as_mut() else {
            bail!("no connection");
        };
        sender.ready().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.target.host);
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

/// The outcome label of an HTTP exchange: `ok` for `ok_statuses`, else the status or `io`.
pub fn outcome(res: &anyhow::Result<(StatusCode, Bytes)>, ok: &[u16]) -> String {
    match res {
        Ok((s, _)) if ok.contains(&s.as_u16()) => "ok".to_owned(),
        Ok((s, _)) => s.as_u16().to_string(),
        Err(_) => "io".to_owned(),
    }
}

/// The `i`-th identity of a namespace: the same seed always gives the same keys, so
/// `lookup` finds what `populate` stored without a key file.
pub fn identity(namespace: &str, seed: u64, i: u64) -> SigningKey {
    let mut h = Sha256::new();
    h.update(b"megatorrent-bench\0");
    h.update(namespace.as_bytes());
    h.update(seed.to_be_bytes());
    h.update(i.to_be_bytes());
    SigningKey::from_bytes(&h.finalize().into())
}

/// Public keys (hex) of identities `0..n`, derived on every core.
pub fn public_keys(namespace: &str, seed: u64, n: u64) -> Vec<String> {
    par_map(n, |i| {
        PublicKey::from(&identity(namespace, seed, i)).to_hex()
    })
}

/// `f(0..n)` computed on all cores, in order.
pub fn par_map<T: Send>(n: u64, f: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                s.spawn(move || {
                    let end = ((t + 1) * chunk).min(n);
                    (t * chunk..end).map(f).collect::<Vec<T>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A sequence base above everything an earlier run (at an earlier millisecond) used, with
/// room for 1000 sequences per millisecond below 2^53.
pub fn sequence_base() -> u64 {
    now_ms() * 1000
}

/// The sized manifest of the targets: one collection of five magnets. Returns the key hex
/// and the JSON body.
pub fn signed_manifest(key: &SigningKey, sequence: u64) -> anyhow::Result<(String, Bytes)> {
    let hex = PublicKey::from(key).to_hex();
    let items = (0..5u64)
        .map(|n| {
            let mut h = Sha256::new();
            h.update(hex.as_bytes());
            h.update(sequence.to_be_bytes());
            h.update(n.to_be_bytes());
            let ih = hex::encode(&h.finalize()[..20]);
            format!("magnet:?xt=urn:btih:{ih}&dn=Episode%20{}", n + 1)
        })
        .collect();
    let m = UnsignedManifest {
        sequence,
        timestamp: now_ms(),
        collections: vec![Collection {
            title: "Season 1".to_owned(),
            items,
        }],
    }
    .sign(key)?;
    Ok((hex, Bytes::from(m.into_canonical_bytes())))
}

/// Run `concurrency` workers until `duration` has passed (each worker checks the clock
/// between requests) and merge what they recorded. Returns the merged recorder and the
/// wall time.
pub async fn drive<F, Fut>(
    concurrency: usize,
    duration: Duration,
    worker: F,
) -> anyhow::Result<(Recorder, Duration)>
where
    F: Fn(usize, Instant) -> Fut,
    Fut: Future<Output = anyhow::Result<Recorder>> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = JoinSet::new();
    for w in 0..concurrency {
        set.spawn(worker(w, deadline));
    }
    let mut total = Recorder::new();
    while let Some(res) = set.join_next().await {
        total.merge(&res??);
    }
    Ok((total, start.elapsed()))
}

/// A shared counter handing out work items `0..limit`.
#[derive(Clone)]
pub struct Cursor(Arc<AtomicU64>, u64);

impl Cursor {
    pub fn new(limit: u64) -> Self {
        Self(Arc::new(AtomicU64::new(0)), limit)
    }

    pub fn next(&self) -> Option<u64> {
        let i = self.0.fetch_add(1, Ordering::Relaxed);
        (i < self.1).then_some(i)
    }
}

/// A small deterministic generator for the request mix (no shared state, no locks).
pub struct Mix(u64);

impl Mix {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Resident and peak memory of a process, from `/proc/PID/status`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is --server-pid right?)"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Bytes the database takes: a SQLite file with its `-wal` and `-shm`, or a PostgreSQL
/// database measured with `psql` (`pg_database_size`).
pub fn db_bytes(sqlite: Option<&std::path::Path>, pg: Option<&str>) -> anyhow::Result<Option<u64>> {
    if let Some(path) = sqlite {
        let mut total = 0;
        for suffix in ["", "-wal", "-shm"] {
            let p = format!("{}{suffix}", path.display());
            if let Ok(meta) = std::fs::metadata(&p) {
                total += meta.len();
            }
        }
        return Ok(Some(total));
    }
    if let Some(url) = pg {
        let out = std::process::Command::new("psql")
            .args([url, "-Atc", "SELECT pg_database_size(current_database())"])
            .output()
            .context("running psql (needed for --pg-url)")?;
        if !out.status.success() {
            bail!(
                "psql failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let n = String::from_utf8_lossy(&out.stdout).trim().parse::<u64>()?;
        return Ok(Some(n));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use megatorrent::proto::{Manifest, ManifestLimits};

    #[test]
    fn identities_are_deterministic_and_distinct() {
        let a = identity("m", 1, 0).to_bytes();
        assert_eq!(a, identity("m", 1, 0).to_bytes());
        assert_ne!(a, identity("m", 1, 1).to_bytes());
        assert_ne!(a, identity("p", 1, 0).to_bytes());
        assert_eq!(public_keys("m", 1, 5).len(), 5);
    }

    #[test]
    fn the_sized_manifest_verifies_and_is_small() {
        let (hex, body) = signed_manifest(&identity("m", 1, 0), 7).unwrap();
        let m = Manifest::verify(&body, &ManifestLimits::default()).unwrap();
        assert_eq!(m.public_key().to_hex(), hex);
        assert_eq!(m.items("Season 1").len(), 5);
        assert!(body.len() < 1024, "{}", body.len());
    }

    #[test]
    fn mix_stays_in_range() {
        let mut m = Mix::new(3);
        assert!((0..1000).all(|_| m.below(7) < 7));
    }
}
