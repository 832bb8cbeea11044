//! `share` and `find` between two homes over the private Tor network: the seeder reachable
//! only as its own onion service, the leecher through Tor (C tor's SOCKS port, or embedded
//! arti), and a tracker that ends up knowing only onion-name peers.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use megatorrent::client::announce::parse_reply;
use megatorrent::client::torrent::magnet_info_hash;
use megatorrent::net::{Connector, ProxyUrl, TargetAddr};
use megatorrent::proto::bencode::Value;
use megatorrent::proto::tracker::OnionName;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::common::netns;
use super::common::server::TestServer;
use super::common::tor::TorNet;
use super::{isolate, megatorrent, run};

const FIRST: &str = "first message over tor";
const SECOND: &str = "second message over tor";

/// How the seeder's peer listener becomes an onion service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SeederOnion {
    /// `ADD_ONION` on the test network's control port (virtual port 80, forwarded by the
    /// test to the listener, as a Tor daemon's `HiddenServicePort` would), given to the
    /// seeder with `--onion-address`.
    AddOnion,
    /// `--tor --onion-service`: the seeder's embedded arti hosts it.
    Embedded,
}

/// A shares two messages, its peer listener reachable only as an onion service (`onion`);
/// B runs `find A` and prints both, verified. Both use `net_flags` (`--proxy <SOCKS port>`
/// or `--tor --tor-config …`, and `--server <onion>`). The tracker's dictionary reply then
/// lists A's onion and nothing else. Returns A's running seeder (for a later `find`).
pub(super) async fn share_find(
    net: &TorNet,
    server: &TestServer,
    net_flags: &[&str],
    onion: SeederOnion,
    label: &str,
) -> Seeder {
    let a = tempfile::tempdir().unwrap();
    let socks = net.socks_url();
    let key = run(megatorrent(), a.path(), &["keygen"])
        .await
        .ok()
        .to_owned();
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let added = match onion {
        SeederOnion::AddOnion => Some(net.add_onion(front.local_addr().unwrap().port()).await),
        SeederOnion::Embedded => None,
    };
    let peer_flags: Vec<&str> = match &added {
        Some(name) => vec!["--onion-address", name, "--onion-port", "80"],
        None => vec!["--onion-service", "--onion-port", "80"],
    };
    let seed_args = [net_flags, &["seed"][..], &peer_flags[..]].concat();

    // With ADD_ONION, A's seeder runs first (its line names the listener's port), then the
    // relay a HiddenServicePort would be (detached; it ends with the test). Otherwise
    // `share --detach` starts A's background seeder, which hosts its onion itself.
    let mut foreground = None;
    if let Some(name) = &added {
        let (child, port, announced) = spawn_seeder(a.path(), &seed_args).await;
        assert_eq!(&announced, name);
        drop(netns::forward(front, port));
        foreground = Some(child);
    }
    let mut magnets = Vec::new();
    for text in [FIRST, SECOND] {
        let args = [
            net_flags,
            &["share", "--detach"][..],
            &peer_flags[..],
            &[text][..],
        ]
        .concat();
        let shared = run(megatorrent(), a.path(), &args).await;
        magnets.push(shared.ok().to_owned());
    }
    // The tracker names the seeder's onion (and nothing else).
    let seeder_onion = tracker_peer(server, &magnets[0]).await;
    if let Some(name) = &added {
        assert_eq!(&seeder_onion, name);
    }
    // Reachable through C tor's SOCKS port (whatever the mode under test).
    let took = wait_onion_tcp(&socks, &seeder_onion).await;
    eprintln!(
        "timing ({label}): the seeder's onion reachable {:.1}s after the shares",
        took.as_secs_f32()
    );

    let b = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let find_args = [net_flags, &["find", "--fetch-timeout", "100", &key][..]].concat();
    let found = run(megatorrent(), b.path(), &find_args).await;
    eprintln!(
        "timing ({label}): find of 2 messages from an onion seeder: {:.1}s",
        started.elapsed().as_secs_f32()
    );
    assert_found_both(found.ok());
    for magnet in &magnets {
        assert_eq!(tracker_peer(server, magnet).await, seeder_onion);
    }

    let child = match foreground {
        Some(child) => child,
        None => {
            // The onion key stays in A's home: a new seeder has the same address.
            stop_background_seeder(a.path()).await;
            let (child, _, again) = spawn_seeder(a.path(), &seed_args).await;
            assert_eq!(
                again, seeder_onion,
                "the onion address changed across restarts"
            );
            child
        }
    };
    Seeder {
        child,
        key,
        _home: a,
    }
}

/// A running seeder of two messages.
pub(super) struct Seeder {
    /// The `megatorrent seed` process.
    pub child: tokio::process::Child,
    /// The feed's key.
    pub key: String,
    /// Its home, removed after the seeder stops.
    _home: tempfile::TempDir,
}

impl Seeder {
    /// SIGTERM, wait, then remove its home.
    pub async fn stop(self) {
        super::terminate(self.child).await;
    }
}

/// SIGTERM the background seeder named in `home/seed.pid` and wait until it is gone.
async fn stop_background_seeder(home: &Path) {
    let pid = std::fs::read_to_string(home.join("seed.pid")).unwrap();
    let pid = pid.trim();
    let status = std::process::Command::new("kill")
        .args(["-TERM", pid])
        .status()
        .unwrap();
    assert!(status.success());
    let stat = format!("/proc/{pid}/stat");
    let gone = || {
        std::fs::read_to_string(&stat).map_or(true, |s| {
            // `pid (comm) state …`: a zombie has exited too.
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                == Some("Z")
        })
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        while !gone() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the background seeder did not exit within 30 s");
}

/// `find`'s output: the two messages, oldest first.
pub(super) fn assert_found_both(out: &str) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].ends_with(&format!("  {FIRST}")), "{out}");
    assert!(lines[1].ends_with(&format!("  {SECOND}")), "{out}");
}

/// Start `megatorrent ARGS` (a foreground `seed`) in `home`; returns it, the port of its
/// peer listener and its onion, from its `seeding N torrents on port P as ONION:80` line.
async fn spawn_seeder(home: &Path, args: &[&str]) -> (tokio::process::Child, u16, String) {
    let mut cmd = megatorrent();
    let mut child = isolate(cmd.args(args), home)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The line comes after the first round of announces, and through Tor each may wait out
    // the 30 s request timeout while a fresh onion descriptor spreads (one CI run took over
    // 120 s): allow several such rounds, still bounded.
    let line = tokio::time::timeout(Duration::from_secs(400), lines.next_line())
        .await
        .expect("the seeder printed nothing within 400 s")
        .unwrap()
        .expect("the seeder exited before it was seeding");
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |w: &str| {
        words
            .iter()
            .position(|x| *x == w)
            .and_then(|i| words.get(i + 1))
            .unwrap_or_else(|| panic!("unexpected seeder line: {line}"))
    };
    let port = after("port").parse().unwrap();
    let onion = after("as").strip_suffix(":80").unwrap().to_owned();
    (child, port, onion)
}

/// Wait until a SOCKS CONNECT to `onion:80` succeeds (Tor answers success only once the
/// service has connected to its local port); 600 s at most, as for the server's onion.
async fn wait_onion_tcp(socks: &str, onion: &str) -> Duration {
    let started = Instant::now();
    let connector = Connector::socks5(ProxyUrl::parse(socks).unwrap())
        .with_connect_timeout(Duration::from_secs(30));
    let target = TargetAddr::new(onion, 80).unwrap();
    loop {
        match connector.connect(&target).await {
            Ok(_) => return started.elapsed(),
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(600),
                "the seeder's onion is not reachable: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Announce to the server directly (`compact=0`, as a probe with an onion name of its own,
/// then `stopped`): there must be exactly one other peer, a seeder named `<onion>:80`, and
/// no IP peer; returns the onion.
async fn tracker_peer(server: &TestServer, magnet: &str) -> String {
    let ih = magnet_info_hash(magnet).unwrap();
    let probe = OnionName::from_public_key(&[7; 32]).to_string();
    let enc = |b: &[u8]| b.iter().map(|b| format!("%{b:02X}")).collect::<String>();
    let path = |event: &str| {
        format!(
            "/announce?info_hash={}&peer_id={}&port=1&uploaded=0&downloaded=0&left=1\
             &compact=0&numwant=200&event={event}&ip={probe}",
            enc(&ih),
            enc(b"-PROBE-0000000000000"),
        )
    };
    let resp = super::common::http::request(server.addr, "GET", &path("started"), &[], b"")
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let reply = parse_reply(&resp.body).unwrap();
    assert!(
        reply.peers.is_empty(),
        "IP peers in the swarm: {:?}",
        reply.peers
    );
    assert_eq!(reply.named.len(), 1, "{:?}", reply.named);
    let seeder = &reply.named[0];
    assert!(
        seeder.host().ends_with(".onion") && seeder.port() == 80,
        "{seeder:?}"
    );
    let v = Value::parse(&resp.body).unwrap();
    let count = |k: &[u8]| v.get(k).and_then(Value::as_int).unwrap();
    assert_eq!(
        (count(b"complete"), count(b"incomplete")),
        (1, 1),
        "A seeds, the probe leeches, the finder left no entry"
    );
    let resp = super::common::http::request(server.addr, "GET", &path("stopped"), &[], b"")
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    seeder.host().to_owned()
}
