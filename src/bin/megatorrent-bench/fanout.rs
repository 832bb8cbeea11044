//! `fanout`: `--subscribers` WebSocket subscribers of one fresh key, opened from source
//! addresses 127.0.0.2… (`--sources` of them, so ports do not run out), then `--runs`
//! publishes, each timed until every subscriber has it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use hyper::Method;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{identity, now_ms, outcome, rss_kib, signed_manifest, Conn, Target};
use crate::report::{Recorder, Report};
use crate::Opts;

/// How long one publish may take to reach everyone before the stragglers count as lost.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a subscriber task reports (also used by `mixed`).
pub enum Event {
    Ready,
    Failed(String),
    /// Received the manifest with this sequence at this instant.
    Got(u64, Instant),
}

/// One WebSocket subscriber of `key`, connected from `source`; reports on `events` until
/// `done` changes. `permit` is released once the subscription is confirmed.
pub async fn subscriber(
    target: SocketAddr,
    host: String,
    source: Ipv4Addr,
    key: String,
    events: mpsc::UnboundedSender<Event>,
    mut done: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    let mut permit = Some(permit);
    let res: anyhow::Result<()> = async {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::from((source, 0)))
            .with_context(|| format!("binding {source}"))?;
        let stream = sock.connect(target).await.context("connect")?;
        stream.set_nodelay(true)?;
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{host}/"), stream)
            .await
            .context("handshake")?;
        let sub = json!({"action": "subscribe", "key": key}).to_string();
        ws.send(Message::text(sub)).await?;
        loop {
            tokio::select! {
                msg = ws.next() => {
                    let at = Instant::now();
                    let Some(msg) = msg else { bail!("closed by the server") };
                    let Message::Text(text) = msg? else { continue };
                    let v: Value = serde_json::from_str(text.as_str())?;
                    if let Some(reason) = v.get("failure reason") {
                        bail!("failure: {reason}");
                    }
                    if v.get("status").and_then(Value::as_str) == Some("ok") {
                        permit.take();
                        let _ = events.send(Event::Ready);
                    } else if let Some(seq) = v.pointer("/manifest/sequence").and_then(Value::as_u64) {
                        let _ = events.send(Event::Got(seq, at));
                    }
                }
                _ = done.changed() => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
            }
        }
    }
    .await;
    if let Err(e) = res {
        let _ = events.send(Event::Failed(format!("{e:#}")));
    }
}

/// Open WebSocket subscribers, each of its own key.
pub struct Subscribers {
    /// What the subscriber tasks report.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// Subscriptions confirmed.
    pub ready: u64,
    /// Why the others failed.
    pub failures: Vec<String>,
    /// Seconds until every subscriber was ready or had failed.
    pub open_secs: f64,
    done: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Subscribers {
    /// Open `n` subscribers, the `i`-th of `key(i)`, from source addresses 127.0.0.2…
    /// (`--sources` of them) with at most `--concurrency` handshakes in flight, and wait
    /// until each is ready or has failed (or nothing happens for [`DELIVERY_TIMEOUT`]).
    pub async fn open(
        opts: &Opts,
        target: &Target,
        n: u64,
        key: impl Fn(u64) -> String,
    ) -> anyhow::Result<Self> {
        let (tx, mut events) = mpsc::unbounded_channel();
        let (done, done_rx) = watch::channel(false);
        // Bound the handshakes in flight so the listen backlog does not overflow.
        let gate = Arc::new(Semaphore::new(opts.concurrency.max(1)));
        let open_start = Instant::now();
        let mut tasks = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        for i in 0..n {
            let source = Ipv4Addr::new(127, 0, 0, 2 + (i % u64::from(opts.sources)) as u8);
            let permit = Arc::clone(&gate).acquire_owned().await?;
            tasks.push(tokio::spawn(subscriber(
                target.addr,
                target.host.clone(),
                source,
                key(i),
                tx.clone(),
                done_rx.clone(),
                permit,
            )));
        }
        drop(tx);
        let mut ready = 0u64;
        let mut failures: Vec<String> = Vec::new();
        while ready + (failures.len() as u64) < n {
            match tokio::time::timeout(DELIVERY_TIMEOUT, events.recv()).await {
                Ok(Some(Event::Ready)) => ready += 1,
                Ok(Some(Event::Failed(e))) => failures.push(e),
                Ok(Some(Event::Got(..))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let open_secs = open_start.elapsed().as_secs_f64();
        eprintln!(
            "{ready} of {n} subscribers ready in {open_secs:.1}s ({} failed)",
            failures.len()
        );
        if let Some(first) = failures.first() {
            eprintln!("first failure: {first}");
        }
        Ok(Self {
            events,
            ready,
            failures,
            open_secs,
            done,
            tasks,
        })
    }

    /// Record the opening figures in `report`.
    pub fn report(&self, report: &mut Report) {
        report
            .extra
            .insert("subscribers_ready".into(), json!(self.ready));
        report
            .extra
            .insert("subscribers_failed".into(), json!(self.failures.len()));
        report
            .extra
            .insert("open_secs".into(), json!(self.open_secs));
    }

    /// Close every subscriber and wait for the tasks.
    pub async fn close(self) {
        let _ = self.done.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

pub async fn fanout(opts: &Opts, target: &Target, report: &mut Report) -> anyhow::Result<()> {
    let n = opts.subscribers;
    let key = identity("fanout", opts.seed, now_ms());
    let (key_hex, _) = signed_manifest(&key, 1)?;
    let rss_before = opts.server_pid.map(rss_kib).transpose()?;
    let mut subs = Subscribers::open(opts, target, n, |_| key_hex.clone()).await?;
    subs.report(report);
    let ready = subs.ready;
    let rx = &mut subs.events;
    // Let the server settle (allocator, buffers) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let (Some(pid), Some((before, _))) = (opts.server_pid, rss_before) {
        let (after, hwm) = rss_kib(pid)?;
        report
            .extra
            .insert("server_rss_kib_before".into(), json!(before));
        report
            .extra
            .insert("server_rss_kib_subscribed".into(), json!(after));
        report.extra.insert("server_rss_hwm_kib".into(), json!(hwm));
        report.extra.insert(
            "server_rss_bytes_per_subscriber".into(),
            json!(after.saturating_sub(before) as f64 * 1024.0 / ready.max(1) as f64),
        );
    }
    if ready == 0 {
        bail!("no subscriber could subscribe");
    }

    let mut conn = Conn::new(target);
    let mut acks = Vec::new();
    for run in 0..opts.runs {
        let seq = run as u64 + 1;
        let (_, body) = signed_manifest(&key, seq)?;
        let t0 = Instant::now();
        let res = conn
            .send(Method::PUT, &format!("/v1/manifests/{key_hex}"), Some(body))
            .await;
        let ack = t0.elapsed();
        if outcome(&res, &[200, 201]) != "ok" {
            bail!("publishing sequence {seq} failed: {:?}", res.map(|r| r.0));
        }
        let mut rec = Recorder::new();
        let mut got = 0u64;
        let end = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
        while got < ready {
            match tokio::time::timeout_at(end, rx.recv()).await {
                Ok(Some(Event::Got(s, at))) if s == seq => {
                    got += 1;
                    rec.record_latency(at.saturating_duration_since(t0));
                }
                Ok(Some(Event::Failed(_))) => rec.record_error("closed"),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        for _ in got..ready {
            rec.record_error("not-delivered");
        }
        acks.push(json!(u64::try_from(ack.as_micros()).unwrap_or(u64::MAX)));
        // The run's rate is deliveries per second over the whole fan-out.
        report.runs.push(rec.finish(t0.elapsed()));
    }
    report
        .extra
        .insert("publish_ack_us".into(), Value::Array(acks));
    subs.close().await;
    Ok(())
}
