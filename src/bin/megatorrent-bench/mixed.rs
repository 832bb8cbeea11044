//! `mixed`: a blend of everything a deployed server does at once, for soak runs. Each of
//! `--concurrency` workers draws every request from `--mix` (lookups of stored manifests,
//! publishes of new sequences, HTTP and UDP announces of the `announce-*` torrent mix) for
//! `--duration` per run, while `--subscribers` WebSocket subscribers watch stored keys and
//! count the pushes the publishes cause. With `--server-pid` the server's RSS is read after
//! every run, so a long soak (`--runs 60 --duration 60`) shows whether memory creeps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};

use crate::common::{
    drive, identity, outcome, public_keys, rss_kib, sequence_base, signed_manifest, Conn, Mix,
    Target,
};
use crate::fanout::{Event, Subscribers};
use crate::kv::MANIFESTS;
use crate::report::{Recorder, Report};
use crate::tracker::{http_outcome, http_path, pick, UdpClient};
use crate::Opts;

/// The kinds of request in the blend, in `--mix` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Lookup,
    Publish,
    AnnounceHttp,
    AnnounceUdp,
}

const KINDS: [Kind; 4] = [
    Kind::Lookup,
    Kind::Publish,
    Kind::AnnounceHttp,
    Kind::AnnounceUdp,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Lookup => "lookup",
            Kind::Publish => "publish",
            Kind::AnnounceHttp => "announce-http",
            Kind::AnnounceUdp => "announce-udp",
        }
    }
}

/// Largest weight of one kind in `--mix`.
const MAX_WEIGHT: u32 = 1_000_000;
/// How long the pushes a run caused may trail its end and still count for it.
const PUSH_GRACE: Duration = Duration::from_secs(5);

/// Relative weights of the kinds, from `--mix` (`lookup=70,publish=5,…`; a kind left out
/// weighs 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weights([u32; 4]);

impl std::str::FromStr for Weights {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut w = [0u32; 4];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected KIND=WEIGHT"))?;
            let i = KINDS
                .iter()
                .position(|k| k.name() == name.trim())
                .ok_or_else(|| {
                    format!(
                        "{name:?}: unknown kind (one of {})",
                        KINDS.map(Kind::name).join(", ")
                    )
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            if weight > MAX_WEIGHT {
                return Err(format!("{part:?}: the weight is at most {MAX_WEIGHT}"));
            }
            w[i] = weight;
        }
        if w.iter().all(|&x| x == 0) {
            return Err("--mix gives every kind a weight of 0".to_owned());
        }
        Ok(Self(w))
    }
}

impl std::fmt::Display for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = KINDS
            .iter()
            .zip(self.0)
            .map(|(k, w)| format!("{}={w}", k.name()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl Weights {
    fn of(&self, kind: Kind) -> u32 {
        self.0[kind as usize]
    }

    fn draw(&self, mix: &mut Mix) -> Kind {
        let total: u64 = self.0.iter().map(|&w| u64::from(w)).sum();
        let mut roll = mix.below(total);
        for (k, &w) in KINDS.iter().zip(&self.0) {
            if roll < u64::from(w) {
                return *k;
            }
            roll -= u64::from(w);
        }
        // Unreachable: `roll < total`, the sum of the weights.
        Kind::Lookup
    }
}

/// What the workers of one run share.
struct Ctx {
    opts: Opts,
    target: Target,
    udp: std::net::SocketAddr,
    /// `GET` paths of the stored manifests.
    paths: Vec<String>,
    /// Per-kind recorders of the current run, merged into by each worker when it ends.
    kinds: Mutex<[Recorder; 4]>,
    /// Pushes the run's successful publishes should cause (subscribers of their keys).
    expected_pushes: AtomicU64,
}

impl Ctx {
    /// Subscribers of store key `i` (subscriber `s` watches key `s % identities`).
    fn watchers(&self, i: u64) -> u64 {
        let (s, n) = (self.opts.subscribers, self.opts.identities);
        s / n + u64::from(i < s % n)
    }
}

/// One worker: requests drawn from the mix until `deadline`.
async fn worker(
    ctx: Arc<Ctx>,
    w: usize,
    run: usize,
    deadline: Instant,
) -> anyhow::Result<Recorder> {
    let opts = &ctx.opts;
    let weights = &opts.mix;
    let mut conn = Conn::new(&ctx.target);
    let mut udp = None;
    let mut mix = Mix::new(opts.seed ^ ((run as u64) << 32) ^ (w as u64) ^ 0x6d69_7865_6400);
    let mut kinds: [Recorder; 4] = std::array::from_fn(|_| Recorder::new());
    let mut expected = 0u64;
    // Worker `w` publishes only keys `w`, `w + concurrency`, … so the sequences of a key
    // grow in one task and never conflict.
    let stride = opts.concurrency as u64;
    let own_keys = opts.identities.saturating_sub(w as u64).div_ceil(stride);
    let mut sequence = sequence_base();
    while Instant::now() < deadline {
        let kind = weights.draw(&mut mix);
        let (started, label) = match kind {
            Kind::Lookup => {
                let i = mix.below(ctx.paths.len() as u64) as usize;
                let t = Instant::now();
                let res = conn.send(Method::GET, &ctx.paths[i], None).await;
                (t, outcome(&res, &[200]))
            }
            Kind::Publish => {
                let i = w as u64 + stride * mix.below(own_keys);
                sequence += 1;
                let (key, body) = signed_manifest(&identity(MANIFESTS, opts.seed, i), sequence)?;
                let path = format!("/v1/manifests/{key}");
                let t = Instant::now();
                let res = conn.send(Method::PUT, &path, Some(body)).await;
                let label = outcome(&res, &[200, 201]);
                if label == "ok" {
                    expected += ctx.watchers(i);
                }
                (t, label)
            }
            Kind::AnnounceHttp => {
                let path = http_path(&pick(&mut mix, opts), opts.numwant);
                let t = Instant::now();
                let res = conn.send(Method::GET, &path, None).await;
                (t, http_outcome(&res))
            }
            Kind::AnnounceUdp => {
                if udp.is_none() {
                    udp = Some(UdpClient::new(ctx.udp, (w as u32) << 20).await?);
                }
                let Some(client) = udp.as_mut() else {
                    continue;
                };
                let p = pick(&mut mix, opts);
                let t = Instant::now();
                (t, client.announce(&p, opts.numwant).await.to_owned())
            }
        };
        kinds[kind as usize].record(started, &label);
    }
    let mut total = Recorder::new();
    for k in &kinds {
        total.merge(k);
    }
    if let Ok(mut shared) = ctx.kinds.lock() {
        for (s, k) in shared.iter_mut().zip(&kinds) {
            s.merge(k);
        }
    }
    ctx.expected_pushes.fetch_add(expected, Ordering::Relaxed);
    Ok(total)
}

/// Take the subscribers' events until `expected` manifests have arrived or `until` has
/// passed (and whatever else is already waiting); returns the manifests and the closed
/// subscribers.
async fn drain(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    expected: u64,
    until: tokio::time::Instant,
) -> (u64, u64) {
    let (mut pushes, mut closed) = (0, 0);
    loop {
        let next = if pushes < expected {
            tokio::time::timeout_at(until, events.recv())
                .await
                .ok()
                .flatten()
        } else {
            events.try_recv().ok()
        };
        match next {
            Some(Event::Got(..)) => pushes += 1,
            Some(Event::Failed(_)) => closed += 1,
            Some(Event::Ready) => {}
            None => return (pushes, closed),
        }
    }
}

pub async fn mixed(opts: &Opts, target: &Target, report: &mut Report) -> anyhow::Result<()> {
    anyhow::ensure!(
        opts.mix.of(Kind::Publish) == 0 || opts.identities >= opts.concurrency as u64,
        "--identities must be at least --concurrency when the mix publishes (each worker \
         publishes its own keys)"
    );
    let paths = public_keys(MANIFESTS, opts.seed, opts.identities)
        .into_iter()
        .map(|k| format!("/v1/manifests/{k}"))
        .collect::<Vec<_>>();
    let mut subs = if opts.subscribers > 0 {
        let keys = &paths;
        let n = opts.identities as usize;
        let subs = Subscribers::open(opts, target, opts.subscribers, |s| {
            keys[s as usize % n]
                .trim_start_matches("/v1/manifests/")
                .to_owned()
        })
        .await?;
        subs.report(report);
        anyhow::ensure!(subs.ready > 0, "no subscriber could subscribe");
        Some(subs)
    } else {
        None
    };
    let ctx = Arc::new(Ctx {
        opts: opts.clone(),
        target: target.clone(),
        udp: opts.udp_target.unwrap_or(target.addr),
        paths,
        kinds: Mutex::new(std::array::from_fn(|_| Recorder::new())),
        expected_pushes: AtomicU64::new(0),
    });
    let mut rss = Vec::new();
    let mut pushes = Vec::new();
    for run in 0..opts.runs {
        if let Some(s) = subs.as_mut() {
            // Catch-up manifests and anything late from the run before.
            drain(&mut s.events, 0, tokio::time::Instant::now()).await;
        }
        let (rec, elapsed) = drive(opts.concurrency, opts.duration(), |w, deadline| {
            worker(Arc::clone(&ctx), w, run, deadline)
        })
        .await?;
        report.runs.push(rec.finish(elapsed));
        let kinds = ctx
            .kinds
            .lock()
            .map(|mut k| std::mem::replace(&mut *k, std::array::from_fn(|_| Recorder::new())))
            .map_err(|_| anyhow::anyhow!("a worker panicked"))?;
        for (kind, k) in KINDS.iter().zip(&kinds) {
            if opts.mix.of(*kind) > 0 {
                report
                    .by_kind
                    .entry(kind.name().to_owned())
                    .or_default()
                    .push(k.finish(elapsed));
            }
        }
        let expected = ctx.expected_pushes.swap(0, Ordering::Relaxed);
        if let Some(s) = subs.as_mut() {
            let until = tokio::time::Instant::now() + PUSH_GRACE;
            let (got, closed) = drain(&mut s.events, expected, until).await;
            pushes
                .push(json!({"expected": expected, "received": got, "subscribers_closed": closed}));
        }
        if let Some(pid) = opts.server_pid {
            rss.push(json!(rss_kib(pid)?.0));
        }
    }
    if !pushes.is_empty() {
        report.extra.insert("pushes".into(), Value::Array(pushes));
    }
    if !rss.is_empty() {
        report
            .extra
            .insert("server_rss_kib_after_each_run".into(), Value::Array(rss));
    }
    if let Some(s) = subs {
        s.close().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_mix_parses_and_rejects_what_it_cannot_use() {
        let w: Weights = "lookup=70, publish=5,announce-http=15,announce-udp=10"
            .parse()
            .unwrap();
        assert_eq!(w.0, [70, 5, 15, 10]);
        assert_eq!(
            w.to_string(),
            "lookup=70,publish=5,announce-http=15,announce-udp=10"
        );
        assert_eq!("publish=1".parse::<Weights>().unwrap().0, [0, 1, 0, 0]);
        for bad in [
            "",
            "lookup=0",
            "lookup",
            "fetch=3",
            "lookup=-1",
            "lookup=x",
            "lookup=1000001",
        ] {
            assert!(bad.parse::<Weights>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn draws_follow_the_weights() {
        let w: Weights = "lookup=3,announce-udp=1".parse().unwrap();
        let mut mix = Mix::new(9);
        let mut n = [0u32; 4];
        for _ in 0..40_000 {
            n[w.draw(&mut mix) as usize] += 1;
        }
        assert_eq!((n[1], n[2]), (0, 0));
        assert!((29_000..31_000).contains(&n[0]), "{n:?}");
    }
}
