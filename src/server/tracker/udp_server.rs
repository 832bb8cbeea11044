//! The BEP 15 UDP tracker: a few receive loops sharing one socket.
//!
//! Each loop owns its receive buffers, reply buffer and peer selection, and takes the
//! datagrams waiting on the socket in one system call and answers them in one
//! ([`super::udp_batch`]), so the steady state allocates nothing per packet (only the
//! small per-call header arrays). Datagrams longer than [`udp::MAX_REQUEST_LEN`] are refused
//! by the parser (the receive buffer is a little larger so they are seen as too long, not
//! silently truncated into something valid).
//!
//! Requests whose connection id does not verify are dropped without an answer (an answer
//! would let a spoofed source aim our packets at a third party). Malformed packets get an
//! error reply only when their connection id verifies; otherwise they are dropped.
//!
//! Private mode: an announce must carry the passkey as BEP 41 URL data, i.e. the client was
//! given `udp://host:port/announce/<passkey>`. A passkey not yet in the cache is looked up
//! on a separate task (at most [`MAX_PENDING_LOOKUPS`] at once) so the loop never waits for
//! the database. Scrapes are refused in private mode (BEP 41 data only exists on announces).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::stats::{Outcome, Protocol};
use super::udp_batch::Batch;
use super::{Passkey, Refusal, Selection};
use crate::proto::udp::{
    self, write_announce_header, write_error, write_peer_v4, write_peer_v6, ConnectResponse,
    Request, Response, ScrapeResponse, TransactionId,
};
use crate::server::AppState;

/// Receive buffer size: above [`udp::MAX_REQUEST_LEN`] so oversized datagrams are detected.
const RECV_BUF: usize = 2048;

/// Passkey lookups allowed in flight; beyond it announces are answered "unavailable".
pub const MAX_PENDING_LOOKUPS: usize = 64;

/// The number of receive loops for a configured `workers` value (0 = one per CPU, ≤ 16).
#[must_use]
pub fn worker_count(configured: u32) -> usize {
    if configured > 0 {
        return usize::try_from(configured).unwrap_or(1);
    }
    std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
        .min(16)
}

/// Serve `socket` with `workers` loops until `shutdown` is cancelled.
pub async fn serve(
    state: AppState,
    socket: UdpSocket,
    workers: usize,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    let lookups = Arc::new(Semaphore::new(MAX_PENDING_LOOKUPS));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let ctx = Ctx {
            state: state.clone(),
            socket: socket.clone(),
            lookups: lookups.clone(),
        };
        tasks.spawn(ctx.run(shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

/// What one loop shares with the others.
#[derive(Clone)]
struct Ctx {
    state: AppState,
    socket: Arc<UdpSocket>,
    lookups: Arc<Semaphore>,
}

/// What to do after handling a datagram.
enum Step {
    /// Send the reply buffer.
    Reply,
    /// Send nothing.
    Drop,
    /// Look the passkey up off the loop, then answer the announce.
    Lookup(Box<udp::AnnounceRequest>, String),
}

impl Ctx {
    async fn run(self, shutdown: CancellationToken) {
        let mut batch = Batch::new(RECV_BUF);
        let mut out = Vec::with_capacity(1500);
        let mut sel = Selection::default();
        loop {
            let n = tokio::select! {
                () = shutdown.cancelled() => return,
                r = batch.recv(&self.socket) => match r {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!(error = %e, "udp receive failed");
                        // Never spin on a persistent error.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                },
            };
            for i in 0..n {
                let Some((packet, from)) = batch.datagram(i) else {
                    continue;
                };
                out.clear();
                match self.handle(packet, from, &mut out, &mut sel) {
                    Step::Reply => batch.push_reply(&out, from),
                    Step::Drop => {}
                    Step::Lookup(req, passkey) => self.spawn_lookup(*req, passkey, from),
                }
            }
            batch.flush(&self.socket).await;
        }
    }

    async fn send(&self, out: &[u8], to: SocketAddr) {
        if let Err(e) = self.socket.send_to(out, to).await {
            tracing::debug!(error = %e, "udp send failed");
        }
    }

    fn handle(
        &self,
        packet: &[u8],
        from: SocketAddr,
        out: &mut Vec<u8>,
        sel: &mut Selection,
    ) -> Step {
        let tracker = self.state.tracker();
        let stats = tracker.stats();
        let ids = tracker.connection_ids();
        let req = match Request::parse(packet) {
            Ok(req) => req,
            Err(e) => {
                stats.record_invalid(Protocol::Udp);
                return match e.reply_to() {
                    Some((cid, tid)) if ids.verify(cid, from.ip()) => {
                        write_error(out, tid, &e.error.to_string());
                        Step::Reply
                    }
                    _ => Step::Drop,
                };
            }
        };
        if let Some(cid) = req.connection_id() {
            if !ids.verify(cid, from.ip()) {
                stats.record_udp_bad_connection_id();
                return Step::Drop;
            }
        }
        match req {
            Request::Connect(c) => {
                stats.record_udp_connect();
                Response::Connect(ConnectResponse {
                    transaction_id: c.transaction_id,
                    connection_id: ids.mint(from.ip()),
                })
                .write(out);
                Step::Reply
            }
            Request::Announce(a) => {
                if tracker.config().private {
                    let verdict = match passkey_from_url(&a.url_data) {
                        None => Some(Err(Refusal::PasskeyRequired)),
                        Some(pk) if Passkey::parse(pk).is_err() => {
                            Some(Err(Refusal::UnknownPasskey))
                        }
                        Some(pk) => match tracker.passkeys().cached(pk) {
                            Some(true) => Some(Ok(())),
                            Some(false) => Some(Err(Refusal::UnknownPasskey)),
                            None => None,
                        },
                    };
                    match verdict {
                        Some(Ok(())) => {}
                        Some(Err(r)) => {
                            stats.record_announce(Protocol::Udp, a.event, Outcome::Error);
                            write_error(out, a.transaction_id, &r.to_string());
                            return Step::Reply;
                        }
                        None => {
                            let pk = passkey_from_url(&a.url_data).unwrap_or_default().to_owned();
                            return Step::Lookup(Box::new(a), pk);
                        }
                    }
                }
                self.announce(&a, from, out, sel);
                Step::Reply
            }
            Request::Scrape(s) => {
                if tracker.config().private {
                    stats.record_scrape(Protocol::Udp, Outcome::Error);
                    write_error(out, s.transaction_id, &Refusal::PasskeyRequired.to_string());
                    return Step::Reply;
                }
                stats.record_scrape(Protocol::Udp, Outcome::Ok);
                let swarm = tracker.swarm();
                Response::Scrape(ScrapeResponse {
                    transaction_id: s.transaction_id,
                    stats: s.info_hashes.iter().map(|ih| swarm.scrape(ih)).collect(),
                })
                .write(out);
                Step::Reply
            }
        }
    }

    fn announce(
        &self,
        a: &udp::AnnounceRequest,
        from: SocketAddr,
        out: &mut Vec<u8>,
        sel: &mut Selection,
    ) {
        let tracker = self.state.tracker();
        let res = tracker
            .udp_input(a, from)
            .and_then(|input| tracker.announce(input, sel));
        let outcome = if res.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Error
        };
        tracker
            .stats()
            .record_announce(Protocol::Udp, a.event, outcome);
        write_announce(
            out,
            a.transaction_id,
            tracker.config().interval_secs,
            res,
            sel,
        );
    }

    fn spawn_lookup(&self, req: udp::AnnounceRequest, passkey: String, from: SocketAddr) {
        let ctx = self.clone();
        let Ok(permit) = self.lookups.clone().try_acquire_owned() else {
            let mut out = Vec::new();
            let tracker = self.state.tracker();
            tracker
                .stats()
                .record_announce(Protocol::Udp, req.event, Outcome::Error);
            write_error(
                &mut out,
                req.transaction_id,
                &Refusal::Unavailable.to_string(),
            );
            tokio::spawn(async move { ctx.send(&out, from).await });
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let tracker = ctx.state.tracker();
            let mut out = Vec::new();
            match tracker.authorize(ctx.state.store(), Some(&passkey)).await {
                Ok(()) => ctx.announce(&req, from, &mut out, &mut Selection::default()),
                Err(r) => {
                    tracker
                        .stats()
                        .record_announce(Protocol::Udp, req.event, Outcome::Error);
                    write_error(&mut out, req.transaction_id, &r.to_string());
                }
            }
            ctx.send(&out, from).await;
        });
    }
}

fn write_announce(
    out: &mut Vec<u8>,
    tid: TransactionId,
    interval: u32,
    res: Result<super::Counts, Refusal>,
    sel: &Selection,
) {
    match res {
        Ok(c) => {
            write_announce_header(out, tid, interval, c.incomplete, c.complete);
            sel.v4.iter().for_each(|p| write_peer_v4(out, *p));
            sel.v6.iter().for_each(|p| write_peer_v6(out, *p));
        }
        Err(r) => write_error(out, tid, &r.to_string()),
    }
}

/// The passkey in BEP 41 URL data `/announce/<passkey>[?…]`, if any.
fn passkey_from_url(url: &[u8]) -> Option<&str> {
    let path = url.split(|&b| b == b'?').next()?;
    let rest = path.strip_prefix(b"/announce/")?;
    let pk = rest.split(|&b| b == b'/').next()?;
    std::str::from_utf8(pk).ok().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passkeys_come_from_the_announce_path() {
        assert_eq!(passkey_from_url(b"/announce/abc"), Some("abc"));
        assert_eq!(passkey_from_url(b"/announce/abc?x=1"), Some("abc"));
        assert_eq!(passkey_from_url(b"/announce/abc/"), Some("abc"));
        assert_eq!(passkey_from_url(b"/announce/"), None);
        assert_eq!(passkey_from_url(b"/announce"), None);
        assert_eq!(passkey_from_url(b""), None);
        assert_eq!(passkey_from_url(b"/scrape/abc"), None);
        assert_eq!(passkey_from_url(b"/announce/\xff"), None);
        assert_eq!(worker_count(3), 3);
        assert!((1..=16).contains(&worker_count(0)));
    }
}
