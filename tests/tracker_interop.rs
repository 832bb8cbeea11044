//! Interop with real BitTorrent clients from Debian, on 127.0.0.1 only: `transmission-cli`
//! seeds a generated 5 MiB file and `aria2c` downloads it, finding the seeder only through
//! our tracker — once over HTTP, once over UDP. The torrent is made by `mktorrent`.
//!
//! Why this pairing: Transmission 3 refuses to *dial* loopback peers (it treats 127/8 as a
//! martian address), but it accepts inbound connections and announces correctly, so it
//! seeds; aria2c dials loopback peers, so it downloads.
//!
//! Peer discovery other than the tracker is off: Transmission gets `dht-enabled`,
//! `pex-enabled` and `lpd-enabled` false; aria2c gets `--enable-dht=false
//! --enable-peer-exchange=false --bt-enable-lpd=false`. aria2c only speaks to UDP trackers
//! when its DHT is enabled, so for the UDP run the torrent is marked private (BEP 27: no DHT
//! and no PEX for it) and aria2c's DHT starts with an empty routing table and no bootstrap
//! node; the test also checks that every announce came over UDP.
//!
//! The binaries are required: a missing one fails the test (`scripts/test` installs them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use megatorrent::proto::bencode::Value;
use megatorrent::proto::tracker::{
    AnnounceEvent, AnnounceReply, AnnounceRequest, PeerAddr, PeerHost, PeerId,
};
use megatorrent::proto::InfoHash;
use megatorrent::server::tracker::{Outcome, Protocol};
use rand::{RngCore, SeedableRng};
use sha1::Digest as _;
use tokio::process::{Child, Command};

use common::server::{start_sqlite, TestServer};

/// Every wait is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(120);
const FILE_NAME: &str = "payload.bin";
const FILE_SIZE: usize = 5 * 1024 * 1024;

/// Fail (never skip) when a client is not installed.
fn require(bin: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{bin}` is not installed; run scripts/test as root (it installs aria2, transmission-cli and mktorrent)")
        })
}

/// Prints the clients' logs if the test fails.
struct Logs(Vec<PathBuf>);

impl Drop for Logs {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for path in &self.0 {
            let text = std::fs::read(path).unwrap_or_default();
            let text = String::from_utf8_lossy(&text).replace('\r', "\n");
            let tail: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("Seeding,") && !l.trim().is_empty())
                .rev()
                .take(80)
                .collect();
            eprintln!("===== {} (last 80 lines) =====", path.display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
}

/// Write the payload and a torrent for it announcing to `announce`; returns the payload's
/// SHA-256 and the info-hash.
async fn make_torrent(dir: &Path, announce: &str, private: bool) -> ([u8; 32], InfoHash) {
    let seed_dir = dir.join("seed");
    std::fs::create_dir_all(&seed_dir).unwrap();
    let mut data = vec![0u8; FILE_SIZE];
    rand::rngs::StdRng::seed_from_u64(0x6d74).fill_bytes(&mut data);
    std::fs::write(seed_dir.join(FILE_NAME), &data).unwrap();
    let torrent = dir.join("t.torrent");
    let mut cmd = Command::new(require("mktorrent"));
    cmd.arg("-a").arg(announce).arg("-o").arg(&torrent);
    if private {
        cmd.arg("-p");
    }
    cmd.arg(seed_dir.join(FILE_NAME)).kill_on_drop(true);
    let out = tokio::time::timeout(TIMEOUT, cmd.output())
        .await
        .expect("mktorrent timed out")
        .unwrap();
    assert!(out.status.success(), "mktorrent: {out:?}");
    let bytes = std::fs::read(&torrent).unwrap();
    let meta = Value::parse(&bytes).expect("torrent is canonical bencode");
    let mut info = Vec::new();
    meta.get(b"info").expect("info dictionary").write(&mut info);
    let ih: [u8; 20] = sha1::Sha1::digest(&info).into();
    (sha256(&data), InfoHash::from(ih))
}

/// Start `transmission-cli` seeding `dir/seed`, with DHT, PEX and LPD off. Returns the
/// child and the port it listens on (read from its log).
async fn start_seeder(dir: &Path, log: &Path) -> (Child, u16) {
    let config = dir.join("transmission");
    std::fs::create_dir_all(&config).unwrap();
    // Listening ports: each client picks a free one itself within a range kept outside
    // Linux's ephemeral range (32768–60999), so they never meet other tests' port-0
    // sockets. The port actually bound is read back from the client's log.
    let settings = serde_json::json!({
        "dht-enabled": false,
        "pex-enabled": false,
        "lpd-enabled": false,
        "utp-enabled": false,
        "port-forwarding-enabled": false,
        "peer-port-random-on-start": true,
        "peer-port-random-low": 61000,
        "peer-port-random-high": 65000,
        "speed-limit-up-enabled": false,
        "message-level": 3,
    });
    std::fs::write(config.join("settings.json"), settings.to_string()).unwrap();
    let child = spawn(
        Command::new(require("transmission-cli"))
            .arg("-g")
            .arg(&config)
            .arg("-w")
            .arg(dir.join("seed"))
            .arg("-U")
            .arg(dir.join("t.torrent")),
        log,
    );
    let port = poll(|| {
        let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
        text.split("Bound socket ")
            .filter_map(|rest| rest.split(" to port ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .find_map(|p| p.parse::<u16>().ok())
    })
    .await;
    (child, port)
}

fn aria2c(dir: &Path, dht: bool, source: Ipv4Addr) -> Command {
    let mut cmd = Command::new(require("aria2c"));
    cmd.arg(format!("--dir={}", dir.join("leech").display()))
        // Every socket (peers, tracker, DHT) from this loopback address.
        .arg(format!("--interface={source}"))
        .arg("--seed-time=0")
        .arg(format!("--enable-dht={dht}"))
        .arg("--enable-dht6=false")
        .arg(format!("--dht-file-path={}", dir.join("dht.dat").display()))
        .arg("--dht-listen-port=30000-31999")
        .arg("--bt-enable-lpd=false")
        .arg("--enable-peer-exchange=false")
        .arg("--listen-port=20000-29999")
        .arg("--file-allocation=none")
        .arg("--console-log-level=notice")
        .arg("--summary-interval=0")
        .arg(format!("--log={}", dir.join("aria2.debug.log").display()))
        .arg("--log-level=info")
        .arg(dir.join("t.torrent"));
    cmd
}

/// Poll `f` every 100 ms until it yields a value ([`TIMEOUT`] at most).
async fn poll<T>(mut f: impl FnMut() -> Option<T>) -> T {
    tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(v) = f() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("condition not met within the timeout")
}

/// Ask the tracker over HTTP (as a throw-away peer, removed again) who is in the swarm.
async fn swarm_peers(server: &TestServer, ih: InfoHash) -> Vec<PeerAddr> {
    let mut req = AnnounceRequest {
        info_hash: ih,
        peer_id: PeerId::from(*b"-probe-0000000000000"),
        port: 9,
        uploaded: 0,
        downloaded: 0,
        left: Some(1),
        event: AnnounceEvent::Started,
        compact: false,
        no_peer_id: false,
        numwant: Some(50),
        key: None,
        tracker_id: None,
        ip: None,
    };
    let mut q = Vec::new();
    req.write_query(&mut q);
    let path = format!("/announce?{}", String::from_utf8(q).unwrap());
    let resp = common::http::request(server.addr, "GET", &path, &[], b"")
        .await
        .unwrap();
    let AnnounceReply::Success(s) = AnnounceReply::parse(&resp.body).unwrap() else {
        panic!("probe announce failed");
    };
    req.event = AnnounceEvent::Stopped;
    let mut q = Vec::new();
    req.write_query(&mut q);
    let path = format!("/announce?{}", String::from_utf8(q).unwrap());
    common::http::request(server.addr, "GET", &path, &[], b"")
        .await
        .unwrap();
    s.peers.into_iter().map(|p| p.addr).collect()
}

/// The HTTP and UDP transfers run one after the other. Run at the same time, the
/// Transmission/aria2c pair sometimes never connects (aria2c's encrypted handshake is
/// dropped at once and its plain retry never answered; seen in CI and here in about one
/// concurrent run in four, never in a run of one transfer alone).
fn one_at_a_time() -> &'static tokio::sync::Mutex<()> {
    static TURN: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    TURN.get_or_init(|| tokio::sync::Mutex::new(()))
}

async fn transfer(udp: bool) {
    let _turn = one_at_a_time().lock().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = start_sqlite().await;
    let announce = if udp {
        format!("udp://{}/announce", server.udp_addr.unwrap())
    } else {
        format!("{}/announce", server.url)
    };
    let (digest, ih) = make_torrent(d, &announce, udp).await;
    let (seeder_log, leecher_log) = (d.join("transmission.log"), d.join("aria2.log"));
    let _logs = Logs(vec![
        seeder_log.clone(),
        leecher_log.clone(),
        d.join("aria2.debug.log"),
    ]);

    let (_seeder, seeder_port) = start_seeder(d, &seeder_log).await;
    let stats = server.state.tracker().stats().clone();
    poll(|| (stats.gauges().seeders >= 1).then_some(())).await;
    let peers = swarm_peers(&server, ih).await;
    let seeder = PeerAddr::new(PeerHost::V4(Ipv4Addr::LOCALHOST), seeder_port);
    assert!(
        peers.contains(&seeder),
        "tracker lists {peers:?}, seeder is {seeder}"
    );
    // (No TCP probe of the seeder here: Transmission refuses a second incoming connection
    // from an address while a handshake from it is pending, which would stall the
    // leecher. The download below proves the address is real.)

    // aria2c first tries an encrypted (MSE) handshake and, when that fails, a plain one on
    // a new connection; Transmission 3 can leave that second connection unanswered (seen in
    // CI: "Retry using legacy BitTorrent handshake", then no connection for 120 s), and it
    // keeps refusing that source address while the stale handshake is pending. That is
    // between the two clients, after our tracker did its part, so a stalled aria2c is
    // restarted from a new loopback address (127.0.0.2, .3, .4): 3 attempts of 40 s.
    let mut status = None;
    for attempt in 1..=3u8 {
        let source = Ipv4Addr::new(127, 0, 0, 1 + attempt);
        let mut leecher = spawn(&mut aria2c(d, udp, source), &leecher_log);
        match tokio::time::timeout(TIMEOUT / 3, leecher.wait()).await {
            Ok(done) => {
                status = Some(done.unwrap());
                break;
            }
            Err(_) => {
                eprintln!("aria2c attempt {attempt} (from {source}) did not finish in 40 s; restarting it");
                leecher.kill().await.unwrap();
            }
        }
    }
    let status = status.expect("aria2c did not finish the download in 3 attempts of 40 s");
    assert!(status.success(), "aria2c failed: {status:?}");
    let got = std::fs::read(d.join("leech").join(FILE_NAME)).unwrap();
    assert_eq!(got.len(), FILE_SIZE);
    assert_eq!(sha256(&got), digest, "downloaded file differs");

    // Both clients announced through the protocol under test, and only through it (the
    // two HTTP announces of the probe aside).
    let http = stats.announces_total(Protocol::Http, Outcome::Ok);
    let udp_ok = stats.announces_total(Protocol::Udp, Outcome::Ok);
    if udp {
        assert!(udp_ok >= 2, "{udp_ok} UDP announces");
        assert_eq!(http, 2, "only the probe used HTTP");
    } else {
        assert!(http >= 4, "{http} HTTP announces");
        assert_eq!(udp_ok, 0);
    }
    assert_eq!(stats.announces_total(Protocol::Udp, Outcome::Error), 0);
    assert_eq!(stats.announces_total(Protocol::Http, Outcome::Error), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_transfer_through_the_http_tracker() {
    transfer(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_transfer_through_the_udp_tracker() {
    transfer(true).await;
}
