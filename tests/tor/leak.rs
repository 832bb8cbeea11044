//! The leak proof: the SOCKS workflow (keygen, publish, lookup, subscribe, find) from
//! inside a network namespace that can reach only the SOCKS port, and the negative control
//! showing the namespace does count leaks.

use super::common::netns::{self, Netns};
use super::common::server::TestServer;
use super::common::tor::{require, TorNet};
use super::{run, share_find, stored, M1};
use megatorrent::proto::{Manifest, ManifestLimits};

/// The SOCKS workflow from inside a namespace that can reach only the SOCKS port, and a
/// `find` of `feed` (two messages seeded behind an onion service): the torrent engine's
/// peer connections go through the bridge and the SOCKS port too.
pub(super) async fn leak_proof(net: &TorNet, server: &TestServer, url: &str, feed: &str) {
    let (ns, listener) = Netns::create(1).await;
    let _fwd = netns::forward(listener, net.socks_port);
    let proxy = format!("socks5h://{}:{}", ns.host_ip, ns.allowed_port);
    let home = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_megatorrent");
    let p = ["--proxy", proxy.as_str(), "--server", url];
    let key = run(
        ns.command(bin),
        home.path(),
        &[&p[..], &["keygen"]].concat(),
    )
    .await;
    let key = key.ok().to_owned();
    let published = run(
        ns.command(bin),
        home.path(),
        &[&p[..], &["publish", "--title", "ns", M1]].concat(),
    )
    .await;
    assert_eq!(published.ok(), "1");
    let looked = run(
        ns.command(bin),
        home.path(),
        &[&p[..], &["lookup", &key]].concat(),
    )
    .await;
    assert!(looked.ok().contains(M1));
    let (m, _) = stored(server, &key).await;
    assert_eq!(m.sequence(), 1);
    // subscribe over the WebSocket: the catch-up push of sequence 1, then exit (--count 1).
    let pushed = run(
        ns.command(bin),
        home.path(),
        &[
            &p[..],
            &[
                "subscribe",
                "--json",
                "--count",
                "1",
                "--max-time",
                "100",
                &key,
            ],
        ]
        .concat(),
    )
    .await;
    let pushed = Manifest::verify(pushed.ok().as_bytes(), &ManifestLimits::default()).unwrap();
    assert_eq!(pushed.sequence(), 1, "catch-up push through the namespace");
    let found = run(
        ns.command(bin),
        home.path(),
        &[&p[..], &["find", "--fetch-timeout", "100", feed]].concat(),
    )
    .await;
    share_find::assert_found_both(found.ok());
    assert!(
        ns.accepted() > 0,
        "the workflow did go through the allowed port"
    );
    assert_eq!(
        ns.leak_counters(),
        (0, 0),
        "packets left the namespace other than to the SOCKS port"
    );
}

/// Negative control: direct connections and DNS queries from the namespace are counted, so
/// a zero in `leak_proof` means something.
#[tokio::test]
async fn netns_harness_catches_leaks() {
    if let Err(why) = netns::available() {
        require(false, &why);
        return;
    }
    let (ns, listener) = Netns::create(2).await;
    let _accept = tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    assert_eq!(ns.leak_counters(), (0, 0));

    // A plain TCP connection to an off-link address (through the default route).
    let tcp = ns
        .command("bash")
        .args(["-c", "exec 3<>/dev/tcp/192.0.2.1/80"])
        .output()
        .await
        .unwrap();
    assert!(!tcp.status.success());
    let (log1, rej1) = ns.leak_counters();
    assert!(log1 >= 1 && rej1 >= 1, "{:?}", (log1, rej1));

    // A DNS query (the namespace's resolver is 192.0.2.53).
    let dns = ns
        .command("getent")
        .args(["ahosts", "leak-check.example"])
        .output()
        .await
        .unwrap();
    assert!(!dns.status.success());
    let (log2, _) = ns.leak_counters();
    assert!(log2 > log1, "the DNS query was not counted");

    // Our own client in direct mode, to a name (DNS) and to the host end's other port.
    let home = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_megatorrent");
    let key = "a".repeat(64);
    let r = run(
        ns.command(bin),
        home.path(),
        &["--server", "http://leak-check.example", "lookup", &key],
    )
    .await;
    assert_eq!(r.code, Some(1), "{r:?}");
    let (log3, _) = ns.leak_counters();
    assert!(log3 > log2, "the client's DNS lookup was not counted");
    let other = format!(
        "http://{}:{}",
        ns.host_ip,
        ns.allowed_port.wrapping_add(1).max(1)
    );
    let r = run(
        ns.command(bin),
        home.path(),
        &["--server", &other, "lookup", &key],
    )
    .await;
    assert_eq!(r.code, Some(1), "{r:?}");
    let (log4, rej4) = ns.leak_counters();
    assert!(
        log4 > log3,
        "the client's direct connection was not counted"
    );
    assert_eq!(log4, rej4);
}
