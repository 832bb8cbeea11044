//! A private Tor network for one test binary (`scripts/tor-testnet`), owned by the single
//! test that runs every Tor scenario in turn; dropping it stops every tor process.
//!
//! No `ctor`/`atexit` tricks: the one `#[tokio::test]` that needs Tor owns the [`TorNet`]
//! value, so its `Drop` (which also runs when an assertion unwinds) stops the network.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use megatorrent::client::http::{BaseUrl, HttpClient};
use megatorrent::net::{Connector, ProxyUrl};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// `true` when running under CI (`CI=true`), where a missing prerequisite is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Fail under CI, or say why and return `false` (the caller then returns early) elsewhere.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    assert!(
        !in_ci(),
        "{what} (required when CI=true; scripts/test installs it)"
    );
    eprintln!("SKIPPED outside CI: {what}");
    false
}

/// Whether `tor` and `tor-gencert` are installed.
pub fn tor_installed() -> bool {
    ["tor", "tor-gencert"].iter().all(|bin| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A running private Tor network on 127.0.0.1.
pub struct TorNet {
    dir: tempfile::TempDir,
    /// The client's SOCKS port (IsolateSOCKSAuth).
    pub socks_port: u16,
    /// The client's control port (for ADD_ONION).
    pub control_port: u16,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tor-testnet")
}

impl TorNet {
    /// Build and start the network; waits for the client to bootstrap (the script's own
    /// timeout applies).
    pub async fn start() -> TorNet {
        let dir = tempfile::Builder::new()
            .prefix("mt-tornet-")
            .tempdir()
            .unwrap();
        let started = Instant::now();
        let out = tokio::process::Command::new(script())
            .arg("start")
            .arg(dir.path())
            .output()
            .await
            .expect("run scripts/tor-testnet");
        let mut net = TorNet {
            socks_port: 0,
            control_port: 0,
            dir,
        };
        assert!(
            out.status.success(),
            "tor-testnet failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(net.dir.path().join("net.env")).unwrap();
        let var = |name: &str| -> u16 {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} missing from net.env"))
                .parse()
                .unwrap()
        };
        net.socks_port = var("TOR_TESTNET_SOCKS_PORT");
        net.control_port = var("TOR_TESTNET_CONTROL_PORT");
        eprintln!(
            "timing: private Tor network bootstrapped in {:.1}s",
            started.elapsed().as_secs_f32()
        );
        net
    }

    /// `socks5h://127.0.0.1:<socks port>`.
    pub fn socks_url(&self) -> String {
        format!("socks5h://127.0.0.1:{}", self.socks_port)
    }

    /// The arti configuration for this network.
    pub fn arti_toml(&self) -> PathBuf {
        self.dir.path().join("arti.toml")
    }

    /// Publish `127.0.0.1:local_port` as an onion service on virtual port 80 (ADD_ONION,
    /// detached, key discarded); returns `<id>.onion`.
    pub async fn add_onion(&self, local_port: u16) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.control_port))
            .await
            .unwrap();
        let cmd = format!(
            "AUTHENTICATE \"\"\r\nADD_ONION NEW:ED25519-V3 Flags=DiscardPK,Detach \
             Port=80,127.0.0.1:{local_port}\r\nQUIT\r\n"
        );
        s.write_all(cmd.as_bytes()).await.unwrap();
        let mut lines = BufReader::new(s).lines();
        let mut id = None;
        while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("control port did not answer")
            .unwrap()
        {
            assert!(!line.starts_with('5'), "control port error: {line}");
            if let Some(v) = line.strip_prefix("250-ServiceID=") {
                id = Some(v.trim().to_owned());
            }
        }
        format!("{}.onion", id.expect("no ServiceID in the ADD_ONION reply"))
    }

    /// Wait until `http://<onion>/readyz` answers 200 through the SOCKS port (600 s max: a
    /// loaded machine publishes descriptors slowly);
    /// returns how long it took.
    pub async fn wait_onion(&self, onion: &str) -> Duration {
        wait_http_through(&self.socks_url(), &format!("http://{onion}"), "/readyz").await
    }
}

/// Poll `base` + `path` through the SOCKS5 proxy `proxy` until it answers 200 (600 s max;
/// seen in CI: a network that took 155 s to bootstrap still had no reachable onion at 300 s).
pub async fn wait_http_through(proxy: &str, base: &str, path: &str) -> Duration {
    let started = Instant::now();
    let connector = Connector::socks5(ProxyUrl::parse(proxy).unwrap())
        .with_connect_timeout(Duration::from_secs(30));
    let client = HttpClient::new(connector, BaseUrl::parse(base).unwrap())
        .with_request_timeout(Duration::from_secs(30));
    loop {
        match client.request(hyper::Method::GET, path, &[], None).await {
            Ok(r) if r.status == 200 => return started.elapsed(),
            other => assert!(
                started.elapsed() < Duration::from_secs(600),
                "{base}{path} not reachable through {proxy}: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Drop for TorNet {
    fn drop(&mut self) {
        let _ = std::process::Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// Seconds between shared-random rotations of the private network: 24 voting rounds of
/// `V3AuthVotingInterval 75` (scripts/tor-testnet), aligned to the Unix epoch, so at :00
/// and :30 UTC.
const SRV_PERIOD_SECS: u64 = 24 * 75;
/// How close to a rotation an onion-service step may start, before and after it.
const SRV_GUARD_BEFORE_SECS: u64 = 240;
const SRV_GUARD_AFTER_SECS: u64 = 180;

/// How long to wait so that a step starting now is clear of a shared-random rotation: 0
/// when `now_secs` is at least [`SRV_GUARD_BEFORE_SECS`] before the next rotation and
/// [`SRV_GUARD_AFTER_SECS`] after the last one, else until that much after the next one.
pub fn srv_guard_wait(now_secs: u64) -> u64 {
    let into = now_secs % SRV_PERIOD_SECS;
    if into < SRV_GUARD_AFTER_SECS {
        SRV_GUARD_AFTER_SECS - into
    } else if SRV_PERIOD_SECS - into < SRV_GUARD_BEFORE_SECS {
        SRV_PERIOD_SECS - into + SRV_GUARD_AFTER_SECS
    } else {
        0
    }
}

/// Wait, if needed, until an onion-service step cannot overlap a shared-random rotation of
/// the private network. The HSDir ring an onion service uploads to and the one a client asks
/// are derived from the shared-random value; for a minute or two around each rotation the
/// two sides can disagree, and a client finds no descriptor within its 90 s (both CI
/// failures of `tor_scenarios` came within two minutes of :00 or :30 UTC). Real Tor rotates
/// once a day and clients retry; this network rotates every 30 minutes, so the test steps
/// around it instead.
pub async fn clear_of_srv_rotation(step: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let wait = srv_guard_wait(now);
    if wait > 0 {
        eprintln!(
            "timing: waiting {wait}s before {step}: the test network's shared-random value \
             rotates at :00 and :30 UTC"
        );
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
}
