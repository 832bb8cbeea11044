//! `announce-http` and `announce-udp`: `--torrents` × `--peers`, a realistic event mix
//! (10 % started, 5 % completed, the rest periodic re-announces; a third of the peers are
//! seeders), compact and non-compact HTTP answers (`--compact-percent`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::Method;
use tokio::net::UdpSocket;

use crate::common::{drive, outcome, Conn, Mix, Target};
use crate::report::{Recorder, Report};
use crate::Opts;

/// BEP 15 magic for a connect request.
const UDP_MAGIC: u64 = 0x0417_2710_1980;
/// How long to wait for a UDP answer before counting it lost.
const UDP_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnect before the tracker's connection id expires (BEP 15: two minutes at least).
const UDP_CONN_ID_AGE: Duration = Duration::from_secs(50);

/// One announce of the mix.
pub struct Pick {
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    port: u16,
    /// 0 none, 1 completed, 2 started (the BEP 15 numbering).
    event: u32,
    left: u64,
    compact: bool,
}

pub fn pick(mix: &mut Mix, opts: &Opts) -> Pick {
    let t = mix.below(opts.torrents);
    let p = mix.below(opts.peers);
    let mut info_hash = [0u8; 20];
    info_hash[..8].copy_from_slice(&t.to_be_bytes());
    info_hash[8..16].copy_from_slice(&t.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    let mut peer_id = *b"-MB0001-000000000000";
    peer_id[12..20].copy_from_slice(&p.to_be_bytes());
    let roll = mix.below(100);
    let event = match roll {
        0..10 => 2,
        10..15 => 1,
        _ => 0,
    };
    let seeder = event == 1 || p % 3 == 0;
    Pick {
        info_hash,
        peer_id,
        port: 1024 + (p % 60_000) as u16,
        event,
        left: if seeder { 0 } else { 1 << 20 },
        compact: mix.below(100) < u64::from(opts.compact_percent),
    }
}

fn percent_encode(bytes: &[u8], out: &mut String) {
    for b in bytes {
        out.push_str(&format!("%{b:02x}"));
    }
}

pub fn http_path(p: &Pick, numwant: u32) -> String {
    let mut s = String::with_capacity(200);
    s.push_str("/announce?info_hash=");
    percent_encode(&p.info_hash, &mut s);
    s.push_str("&peer_id=");
    percent_encode(&p.peer_id, &mut s);
    let event = match p.event {
        1 => "&event=completed",
        2 => "&event=started",
        _ => "",
    };
    s.push_str(&format!(
        "&port={}&uploaded=0&downloaded=0&left={}{event}&compact={}&numwant={numwant}",
        p.port,
        p.left,
        u8::from(p.compact)
    ));
    s
}

/// The outcome label of an HTTP announce: a `failure reason` body is `failure`.
pub fn http_outcome(res: &anyhow::Result<(hyper::StatusCode, hyper::body::Bytes)>) -> String {
    let label = outcome(res, &[200]);
    match res {
        Ok((_, body)) if label == "ok" && body.windows(14).any(|w| w == b"failure reason") => {
            "failure".to_owned()
        }
        _ => label,
    }
}

/// HTTP announces over keep-alive connections. A `failure reason` body counts as an error.
pub async fn announce_http(
    opts: &Opts,
    target: &Target,
    report: &mut Report,
) -> anyhow::Result<()> {
    for run in 0..opts.runs {
        let (rec, elapsed) = drive(opts.concurrency, opts.duration(), |w, deadline| {
            let mut conn = Conn::new(target);
            let mut mix = Mix::new(opts.seed ^ ((run as u64) << 32) ^ w as u64);
            let opts = opts.clone();
            async move {
                let mut rec = Recorder::new();
                while Instant::now() < deadline {
                    let path = http_path(&pick(&mut mix, &opts), opts.numwant);
                    let t = Instant::now();
                    let res = conn.send(Method::GET, &path, None).await;
                    rec.record(t, &http_outcome(&res));
                }
                Ok(rec)
            }
        })
        .await?;
        report.runs.push(rec.finish(elapsed));
    }
    Ok(())
}

/// One UDP client socket with its connection id.
pub struct UdpClient {
    sock: UdpSocket,
    conn_id: u64,
    since: Instant,
    tx: u32,
    buf: Vec<u8>,
}

impl UdpClient {
    pub async fn new(addr: SocketAddr, tx: u32) -> anyhow::Result<Self> {
        let sock = UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        sock.connect(addr).await?;
        Ok(Self {
            sock,
            conn_id: 0,
            since: Instant::now() - UDP_CONN_ID_AGE * 2,
            tx,
            buf: vec![0; 2048],
        })
    }

    /// Send `packet` and wait for the answer with the same transaction id.
    async fn exchange(&mut self, packet: &[u8]) -> anyhow::Result<(u32, usize)> {
        self.sock.send(packet).await?;
        let end = Instant::now() + UDP_TIMEOUT;
        loop {
            let n = tokio::time::timeout_at(end.into(), self.sock.recv(&mut self.buf))
                .await
                .context("timeout")??;
            if n >= 8 && self.buf[4..8] == self.tx.to_be_bytes() {
                let action =
                    u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                return Ok((action, n));
            }
        }
    }

    async fn ensure_connected(&mut self) -> anyhow::Result<()> {
        if self.since.elapsed() < UDP_CONN_ID_AGE {
            return Ok(());
        }
        self.tx = self.tx.wrapping_add(1);
        let mut p = Vec::with_capacity(16);
        p.extend_from_slice(&UDP_MAGIC.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&self.tx.to_be_bytes());
        let (action, n) = self.exchange(&p).await?;
        anyhow::ensure!(action == 0 && n >= 16, "bad connect answer");
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.buf[8..16]);
        self.conn_id = u64::from_be_bytes(id);
        self.since = Instant::now();
        Ok(())
    }

    /// One announce; returns the outcome label.
    pub async fn announce(&mut self, p: &Pick, numwant: u32) -> &'static str {
        if self.ensure_connected().await.is_err() {
            return "connect";
        }
        self.tx = self.tx.wrapping_add(1);
        let mut pkt = Vec::with_capacity(98);
        pkt.extend_from_slice(&self.conn_id.to_be_bytes());
        pkt.extend_from_slice(&1u32.to_be_bytes());
        pkt.extend_from_slice(&self.tx.to_be_bytes());
        pkt.extend_from_slice(&p.info_hash);
        pkt.extend_from_slice(&p.peer_id);
        pkt.extend_from_slice(&0u64.to_be_bytes()); // downloaded
        pkt.extend_from_slice(&p.left.to_be_bytes());
        pkt.extend_from_slice(&0u64.to_be_bytes()); // uploaded
        pkt.extend_from_slice(&p.event.to_be_bytes());
        pkt.extend_from_slice(&0u32.to_be_bytes()); // ip
        pkt.extend_from_slice(&self.tx.to_be_bytes()); // key
        pkt.extend_from_slice(&numwant.to_be_bytes());
        pkt.extend_from_slice(&p.port.to_be_bytes());
        match self.exchange(&pkt).await {
            Ok((1, n)) if n >= 20 => "ok",
            Ok((3, _)) => {
                // An error answer (an expired id, for one): connect again next time.
                self.since = Instant::now() - UDP_CONN_ID_AGE * 2;
                "error"
            }
            Ok(_) => "malformed",
            Err(_) => "timeout",
        }
    }
}

/// UDP announces, one in flight per socket, `--concurrency` sockets.
pub async fn announce_udp(opts: &Opts, udp: SocketAddr, report: &mut Report) -> anyhow::Result<()> {
    for run in 0..opts.runs {
        let (rec, elapsed) = drive(opts.concurrency, opts.duration(), |w, deadline| {
            let mut mix = Mix::new(opts.seed ^ ((run as u64) << 32) ^ w as u64);
            let opts = opts.clone();
            async move {
                let mut client = UdpClient::new(udp, (w as u32) << 20).await?;
                let mut rec = Recorder::new();
                while Instant::now() < deadline {
                    let p = pick(&mut mix, &opts);
                    let t = Instant::now();
                    let label = client.announce(&p, opts.numwant).await;
                    rec.record(t, label);
                }
                Ok(rec)
            }
        })
        .await?;
        report.runs.push(rec.finish(elapsed));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn http_path_encodes_binary_fields() {
        let p = Pick {
            info_hash: [0xab; 20],
            peer_id: [0x01; 20],
            port: 6881,
            event: 2,
            left: 0,
            compact: true,
        };
        let s = http_path(&p, 50);
        assert!(s.starts_with("/announce?info_hash=%ab%ab"), "{s}");
        assert!(s.contains("&event=started&compact=1&numwant=50"), "{s}");
    }
}
