//! Tor end to end, on ONE private Tor network (scripts/tor-testnet) started by the single
//! test `tor_scenarios`, which runs every scenario in turn and stops the network when it
//! ends (see tests/common/tor.rs):
//!
//! 1. the CLI through C tor's SOCKS port to a server reachable only as an onion service
//!    (added with ADD_ONION);
//! 2. the CLI through embedded arti (`--tor --tor-config DIR/arti.toml`) to the same;
//! 3. `megatorrentd` hosting itself as an onion service (`onion.enabled`), reached through
//!    the SOCKS port and through arti, with a stable address across restarts;
//! 4. leak proof: the SOCKS workflow again (`find` of an onion seeder included), from
//!    inside a network namespace that can reach only the SOCKS port; its LOG/REJECT
//!    counters must stay at zero;
//! 5. `share` and `find` through the SOCKS port, and again through embedded arti, the
//!    seeder reachable only as its own onion service (ADD_ONION, then arti's own with
//!    `--onion-service`; tests/tor/share_find.rs); the tracker sees only onion-name peers.
//!
//! `netns_harness_catches_leaks` (tests/tor/leak.rs) shows the namespace harness does count
//! leaks.
//!
//! Under `CI=true` a missing `tor`, root or iptables is a failure, never a skip.
#![cfg(all(
    feature = "client",
    feature = "server",
    feature = "sqlite",
    feature = "tor",
    feature = "torrent",
    feature = "onion-server"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "tor/leak.rs"]
mod leak;
#[path = "tor/share_find.rs"]
mod share_find;

use share_find::SeederOnion;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cli::Run;
use common::netns;
use common::tor::{
    clear_of_srv_rotation, require, srv_guard_wait, tor_installed, wait_http_through, TorNet,
};
use megatorrent::client::http::{BaseUrl, HttpClient};
use megatorrent::net::{ArtiOptions, Connector, ProxyUrl, TargetAddr};
use megatorrent::proto::{Manifest, ManifestLimits};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const M1: &str = "magnet:?xt=urn:btih:1111111111111111111111111111111111111111&dn=one";
const M2: &str = "magnet:?xt=urn:btih:2222222222222222222222222222222222222222&dn=two";
const M3: &str = "magnet:?xt=urn:btih:3333333333333333333333333333333333333333&dn=three";

fn megatorrent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_megatorrent"))
}

/// Give `cmd` the home `home` and none of the environment's server and network settings;
/// no stdin, killed when dropped.
fn isolate<'c>(cmd: &'c mut Command, home: &Path) -> &'c mut Command {
    cmd.env("MEGATORRENT_HOME", home)
        .env_remove("MEGATORRENT_SERVER")
        .env_remove("MEGATORRENT_PROXY")
        .env_remove("MEGATORRENT_TOR")
        .env_remove("MEGATORRENT_TOR_CONFIG")
        .env_remove("MEGATORRENT_I2P_PROXY")
        .stdin(Stdio::null())
        .kill_on_drop(true)
}

/// Run a prepared `megatorrent` command with `home` and `args` (120 s at most each try).
///
/// A command that could not reach the server is run once more: on this small private
/// network an onion connection sometimes hangs until the client's timeout (arti and C tor
/// alike, at any time of day), and a new process usually gets through. Such a failure
/// leaves nothing behind (`share` removes the message it could not publish).
async fn run(mut cmd: Command, home: &Path, args: &[&str]) -> Run {
    isolate(cmd.args(args), home);
    let again = copy_command(&cmd);
    let first = common::cli::output(cmd).await;
    if first.code == Some(0) || !first.stderr.contains("cannot reach the server") {
        return first;
    }
    eprintln!(
        "timing: retrying {args:?} once after: {}",
        first.stderr.trim_end()
    );
    common::cli::output(again).await
}

/// A new command with the same program, arguments, environment and directory as `cmd`.
fn copy_command(cmd: &Command) -> Command {
    let std = cmd.as_std();
    let mut copy = Command::new(std.get_program());
    copy.args(std.get_args());
    for (key, value) in std.get_envs() {
        match value {
            Some(v) => copy.env(key, v),
            None => copy.env_remove(key),
        };
    }
    if let Some(dir) = std.get_current_dir() {
        copy.current_dir(dir);
    }
    copy.stdin(Stdio::null()).kill_on_drop(true);
    copy
}

/// The stored manifest of `key`, fetched from the server directly (not through Tor).
async fn stored(server: &common::server::TestServer, key: &str) -> (Manifest, Vec<u8>) {
    let resp = common::http::request(
        server.addr,
        "GET",
        &format!("/v1/manifests/{key}"),
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    let m = Manifest::verify(&resp.body, &ManifestLimits::default()).unwrap();
    (m, resp.body)
}

fn items(m: &Manifest) -> Vec<String> {
    m.collections()
        .iter()
        .flat_map(|c| c.items.clone())
        .collect()
}

#[test]
fn onion_steps_keep_clear_of_the_test_networks_shared_random_rotations() {
    let rotation: u64 = 980_000 * 1800; // a multiple of 30 minutes (2025-11-24 16:00 UTC)
    assert_eq!(srv_guard_wait(rotation), 180, "at a rotation");
    assert_eq!(srv_guard_wait(rotation + 179), 1);
    assert_eq!(srv_guard_wait(rotation + 180), 0);
    assert_eq!(srv_guard_wait(rotation + 1800 - 240), 0);
    assert_eq!(srv_guard_wait(rotation + 1800 - 239), 239 + 180);
    assert_eq!(srv_guard_wait(rotation + 1800 - 1), 1 + 180);
    // Never more than the guard on both sides.
    assert!((0..1800).all(|t| srv_guard_wait(rotation + t) < 240 + 180));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tor_scenarios() {
    if !require(tor_installed(), "tor and tor-gencert are not installed") {
        return;
    }
    let net = TorNet::start().await;
    let server = common::server::start_sqlite().await;
    let onion = net.add_onion(server.addr.port()).await;
    let took = net.wait_onion(&onion).await;
    eprintln!(
        "timing: ADD_ONION service reachable through SOCKS after {:.1}s",
        took.as_secs_f32()
    );
    let url = format!("http://{onion}");

    clear_of_srv_rotation("the C tor client steps").await;
    let key = cli_through_socks(&net, &server, &url).await;
    let socks = net.socks_url();
    let socks_flags = ["--proxy", socks.as_str(), "--server", url.as_str()];
    // Kept seeding for the leak proof's `find`.
    clear_of_srv_rotation("share and find through C tor").await;
    let socks_seeder =
        share_find::share_find(&net, &server, &socks_flags, SeederOnion::AddOnion, "C tor").await;
    clear_of_srv_rotation("the arti client steps").await;
    cli_through_arti(&net, &server, &url, &key).await;
    let arti = net.arti_toml();
    // A fresh arti client's first onion connection has been seen to need more than the
    // default 30 s on this small network (descriptor fetch near a consensus change).
    let arti_flags = [
        "--tor",
        "--tor-config",
        arti.to_str().unwrap(),
        "--timeout",
        "90",
        "--server",
        url.as_str(),
    ];
    clear_of_srv_rotation("share and find through arti").await;
    share_find::share_find(&net, &server, &arti_flags, SeederOnion::AddOnion, "arti")
        .await
        .stop()
        .await;
    clear_of_srv_rotation("share and find with an embedded onion service").await;
    share_find::share_find(
        &net,
        &server,
        &arti_flags,
        SeederOnion::Embedded,
        "arti, embedded onion service",
    )
    .await
    .stop()
    .await;
    clear_of_srv_rotation("the embedded onion server").await;
    embedded_onion_server(&net).await;
    match netns::available() {
        Ok(()) => {
            clear_of_srv_rotation("the leak proof").await;
            leak::leak_proof(&net, &server, &url, &socks_seeder.key).await
        }
        Err(why) => {
            require(false, &why);
        }
    }
    socks_seeder.stop().await;
    server.stop().await;
}

/// keygen, publish, lookup with `--proxy socks5h://127.0.0.1:$SOCKS --server http://<onion>`.
/// Returns the publisher's key.
async fn cli_through_socks(net: &TorNet, server: &common::server::TestServer, url: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    let socks = net.socks_url();
    let with = |args: &[&'static str]| {
        let mut v: Vec<String> = vec![
            "--proxy".into(),
            socks.clone(),
            "--server".into(),
            url.into(),
        ];
        v.extend(args.iter().map(|s| (*s).to_owned()));
        v
    };
    let go = |args: Vec<String>| {
        let home = home.path().to_owned();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run(megatorrent(), &home, &refs).await
        }
    };
    let key = go(with(&["keygen"])).await.ok().to_owned();
    let started = Instant::now();
    assert_eq!(go(with(&["publish", "--title", "s1", M1])).await.ok(), "1");
    eprintln!(
        "timing: publish through C tor to an onion: {:.1}s",
        started.elapsed().as_secs_f32()
    );
    let (m, body) = stored(server, &key).await;
    assert_eq!((m.sequence(), items(&m)), (1, vec![M1.to_owned()]));

    let mut args = with(&["lookup", "--json"]);
    args.push(key.clone());
    let looked = go(args).await;
    assert_eq!(looked.ok().as_bytes(), &body[..]);
    let mut args = with(&["lookup"]);
    args.push(key.clone());
    assert!(go(args).await.ok().contains(M1));

    // subscribe through the SOCKS port (WebSocket to the onion): the catch-up push, then the
    // next publish.
    let sub_home = tempfile::tempdir().unwrap();
    let net_args = vec![
        "--proxy".to_owned(),
        socks.clone(),
        "--server".into(),
        url.into(),
    ];
    let publish = go(with(&["publish", "--title", "s2", M3]));
    let started = Instant::now();
    subscribe_across(&net_args, sub_home.path(), &key, 1, async {
        assert_eq!(publish.await.ok(), "2");
    })
    .await;
    eprintln!(
        "timing: subscribe through C tor, catch-up and one push: {:.1}s",
        started.elapsed().as_secs_f32()
    );
    key
}

/// Run `megatorrent NET_ARGS subscribe --json --count 2 KEY` in `home`; check its first
/// line is the catch-up push of sequence `first`, then run `publish` and check the next
/// line is sequence `first + 1`, pushed over the WebSocket, after which it exits cleanly.
async fn subscribe_across(
    net_args: &[String],
    home: &Path,
    key: &str,
    first: u64,
    publish: impl std::future::Future<Output = ()>,
) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut cmd = megatorrent();
    cmd.args(net_args).args([
        "subscribe",
        "--json",
        "--count",
        "2",
        "--max-time",
        "110",
        key,
    ]);
    isolate(&mut cmd, home)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("spawn megatorrent subscribe");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    async fn next_sequence(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    ) -> u64 {
        let line = tokio::time::timeout(Duration::from_secs(110), lines.next_line())
            .await
            .expect("no manifest from the subscriber within 110 s")
            .unwrap()
            .expect("the subscriber ended early");
        Manifest::verify(line.as_bytes(), &ManifestLimits::default())
            .unwrap()
            .sequence()
    }
    assert_eq!(next_sequence(&mut lines).await, first, "catch-up push");
    publish.await;
    assert_eq!(next_sequence(&mut lines).await, first + 1, "pushed publish");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("subscriber did not exit after --count")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// lookup and publish with the embedded Tor client (`--tor --tor-config DIR/arti.toml`).
async fn cli_through_arti(net: &TorNet, server: &common::server::TestServer, url: &str, key: &str) {
    let home = tempfile::tempdir().unwrap();
    let arti = net.arti_toml();
    let tor = [
        "--tor",
        "--tor-config",
        arti.to_str().unwrap(),
        "--server",
        url,
    ];
    let started = Instant::now();
    let looked = run(
        megatorrent(),
        home.path(),
        &[&tor[..], &["lookup", key]].concat(),
    )
    .await;
    eprintln!(
        "timing: arti bootstrap + lookup: {:.1}s",
        started.elapsed().as_secs_f32()
    );
    assert!(looked.ok().contains(M1), "{looked:?}");
    assert!(looked.stderr.contains("tor: bootstrap"), "{looked:?}");
    assert!(home.path().join("arti/state").is_dir());
    assert!(home.path().join("arti/cache").is_dir());

    let mine = run(megatorrent(), home.path(), &["keygen"])
        .await
        .ok()
        .to_owned();
    let published = run(
        megatorrent(),
        home.path(),
        &[&tor[..], &["publish", "--title", "a", M2]].concat(),
    )
    .await;
    assert_eq!(published.ok(), "1");
    let (m, _) = stored(server, &mine).await;
    assert_eq!(items(&m), vec![M2.to_owned()]);

    // subscribe with its own embedded Tor client (a second home), while this home publishes.
    let sub_home = tempfile::tempdir().unwrap();
    let net_args: Vec<String> = tor.iter().map(|s| (*s).to_owned()).collect();
    let publish_args = [&tor[..], &["publish", "--title", "a2", M3]].concat();
    let publish = run(megatorrent(), home.path(), &publish_args);
    subscribe_across(&net_args, sub_home.path(), &mine, 1, async {
        assert_eq!(publish.await.ok(), "2");
    })
    .await;
}

/// A `megatorrentd` child process with `onion.enabled = true`; returns it and its address.
async fn spawn_onion_daemon(dir: &Path, arti: &Path) -> (tokio::process::Child, String) {
    let config = dir.join("megatorrentd.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{}\"\n\
             [onion]\nenabled = true\nkey_dir = {:?}\ntor_config = {:?}\n",
            dir.join("db.sqlite").display(),
            dir.join("onion").display().to_string(),
            arti.display().to_string(),
        ),
    )
    .unwrap();
    let mut child = Command::new(common::server::daemon_bin())
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("onion service: http://").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("megatorrentd exited before its onion service started");
    })
    .await
    .expect("no onion address logged within 120 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// Stop a daemon with SIGTERM and wait for it.
async fn terminate(mut child: tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
}

/// `megatorrentd` as its own onion service: C tor (SOCKS) and arti clients reach it; the
/// address is in `/v1/info` and survives a restart.
async fn embedded_onion_server(net: &TorNet) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (daemon, onion) = spawn_onion_daemon(dir.path(), &net.arti_toml()).await;
    assert!(onion.ends_with(".onion") && onion.len() == 62, "{onion}");
    let url = format!("http://{onion}");
    let took = wait_http_through(&net.socks_url(), &url, "/readyz").await;
    eprintln!(
        "timing: embedded onion service launched in {:.1}s, reachable through C tor {:.1}s later",
        (started.elapsed() - took).as_secs_f32(),
        took.as_secs_f32()
    );

    // /v1/info names the address (fetched through C tor).
    let http = HttpClient::new(
        Connector::socks5(ProxyUrl::parse(&net.socks_url()).unwrap())
            .with_connect_timeout(Duration::from_secs(30)),
        BaseUrl::parse(&url).unwrap(),
    );
    let info = http
        .request(hyper::Method::GET, "/v1/info", &[], None)
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert_eq!(info["onion"], onion.as_str());

    // Through arti: a framed response arrives whole, and the service leaves the closing to
    // us (arti can only end a stream with reason MISC, which an arti client reads as an
    // error, so the service must not hang up first).
    let arti_dir = tempfile::tempdir().unwrap();
    let opts = ArtiOptions {
        dir: arti_dir.path().join("arti"),
        config_file: Some(net.arti_toml()),
        bootstrap_timeout: Duration::from_secs(120),
    };
    let tor = Connector::tor(&opts, |_| {})
        .await
        .unwrap()
        .with_connect_timeout(Duration::from_secs(60));
    // C tor reaching the service does not mean every HSDir has its descriptor yet, and this
    // fresh arti client may ask other ones (one CI run got 404 from all six it asked): retry,
    // each attempt a new descriptor fetch, for up to a minute.
    let target = TargetAddr::new(&onion, 80).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stream = loop {
        match tor.connect(&target).await {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("arti: the embedded onion service is not reachable yet ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => panic!("arti never reached the embedded onion service: {e:?}"),
        }
    };
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    stream.flush().await.unwrap(); // a Tor stream sends a partly filled cell only on flush
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while !(raw.ends_with(b"\r\n\r\nok") || raw.ends_with(b"ok")) {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("no response")
            .expect("the stream failed before the response was complete");
        assert!(n > 0, "EOF before the response was complete");
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // The service keeps the stream open for us to close: a read now waits (it neither ends
    // nor fails while we watch).
    let after = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
    assert!(
        after.is_err(),
        "the service ended the stream first: {after:?}"
    );
    stream.shutdown().await.unwrap();
    drop(stream);
    assert_eq!((tor.stats().tor, tor.stats().direct), (1, 0));

    // C tor client: publish; arti client: lookup.
    let home = tempfile::tempdir().unwrap();
    let socks = net.socks_url();
    let key = run(megatorrent(), home.path(), &["keygen"])
        .await
        .ok()
        .to_owned();
    let published = run(
        megatorrent(),
        home.path(),
        &[
            "--proxy", &socks, "--server", &url, "publish", "--title", "e", M3,
        ],
    )
    .await;
    assert_eq!(published.ok(), "1");
    let arti = net.arti_toml();
    let looked = run(
        megatorrent(),
        home.path(),
        &[
            "--tor",
            "--tor-config",
            arti.to_str().unwrap(),
            "--server",
            &url,
            "lookup",
            &key,
        ],
    )
    .await;
    assert!(looked.ok().contains(M3), "{looked:?}");

    // The key persists in onion.key_dir: same address after a restart.
    terminate(daemon).await;
    let (daemon, again) = spawn_onion_daemon(dir.path(), &net.arti_toml()).await;
    assert_eq!(again, onion);
    terminate(daemon).await;
}
