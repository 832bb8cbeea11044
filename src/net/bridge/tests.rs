//! Unit tests of the bridge, against the recording SOCKS5 upstream of `socks.rs`.
use super::*;
use crate::net::socks::recording;
use crate::net::ProxyUrl;
use tokio_socks::tcp::Socks5Stream;

const ONION: &str = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";

async fn bridge_to_recorder() -> (SocksBridge, Arc<std::sync::Mutex<Vec<recording::Seen>>>) {
    let (port, seen) = recording::start().await;
    let proxy = ProxyUrl::parse(&format!("socks5h://127.0.0.1:{port}")).unwrap();
    let bridge = SocksBridge::start(Connector::socks5(proxy)).await.unwrap();
    (bridge, seen)
}

fn creds(b: &SocksBridge) -> (String, String) {
    (b.shared.username.clone(), b.shared.password.clone())
}

/// A raw exchange: send `bytes`, read until EOF (bounded), return what came back.
async fn raw(b: &SocksBridge, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(b.local_addr()).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap(); // a short request then ends instead of waiting for more
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the bridge neither answered nor closed");
    out
}

/// The greeting and authentication bytes with the bridge's credentials.
fn auth(b: &SocksBridge) -> Vec<u8> {
    let (u, p) = creds(b);
    let mut v = vec![5, 1, 2, 1, u.len() as u8];
    v.extend_from_slice(u.as_bytes());
    v.push(p.len() as u8);
    v.extend_from_slice(p.as_bytes());
    v
}

#[tokio::test]
async fn a_placeholder_connect_reaches_the_upstream_as_the_name() {
    let (bridge, seen) = bridge_to_recorder().await;
    let target = TargetAddr::new(ONION, 6881).unwrap();
    let ph = bridge.placeholder(&target).unwrap();
    let SocketAddr::V4(v4) = ph else {
        panic!("not IPv4: {ph}")
    };
    assert!(is_placeholder(*v4.ip()), "{ph}");
    assert_eq!(ph.port(), 6881);
    assert_eq!(bridge.placeholder(&target), Some(ph), "stable per peer");

    // Exactly what librqbit does: tokio-socks with the URL's user and password, an IP dest.
    let (u, p) = creds(&bridge);
    let mut s = Socks5Stream::connect_with_password(bridge.local_addr(), ph, &u, &p)
        .await
        .unwrap();
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ok");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].atyp, 3, "the name goes upstream unresolved");
    assert_eq!((seen[0].host.as_str(), seen[0].port), (ONION, 6881));
    assert!(
        seen[0].user.is_some(),
        "the connector's isolation credentials"
    );
    assert!(bridge
        .proxy_url()
        .starts_with(&format!("socks5://{u}:{p}@127.0.0.1:")));
}

#[tokio::test]
async fn everything_but_a_known_placeholder_is_refused() {
    let (bridge, seen) = bridge_to_recorder().await;
    let (u, p) = creds(&bridge);
    let ph = bridge
        .placeholder(&TargetAddr::new(ONION, 6881).unwrap())
        .unwrap();
    let unknown: SocketAddr = "100.64.9.9:6881".parse().unwrap();
    let wrong_port = SocketAddr::new(ph.ip(), 6882);
    for dest in [
        "127.0.0.1:6881".parse().unwrap(),
        "10.0.0.1:80".parse().unwrap(),
        "[::1]:6881".parse().unwrap(),
        unknown,
        wrong_port,
    ] {
        let err = Socks5Stream::connect_with_password(bridge.local_addr(), dest, &u, &p)
            .await
            .err()
            .unwrap_or_else(|| panic!("{dest} was bridged"));
        assert!(
            matches!(err, tokio_socks::Error::ConnectionNotAllowedByRuleset),
            "{dest}: {err:?}"
        );
    }
    // A name is refused too (librqbit never sends one; nothing else may use the bridge).
    let err = Socks5Stream::connect_with_password(bridge.local_addr(), (ONION, 6881), &u, &p)
        .await
        .err()
        .unwrap();
    assert!(matches!(
        err,
        tokio_socks::Error::ConnectionNotAllowedByRuleset
    ));
    assert!(seen.lock().unwrap().is_empty(), "nothing went upstream");
    // An IP literal never gets a placeholder.
    assert_eq!(
        bridge.placeholder(&TargetAddr::new("192.0.2.1", 1).unwrap()),
        None
    );
}

#[tokio::test]
async fn bad_credentials_methods_and_commands_are_refused() {
    let (bridge, seen) = bridge_to_recorder().await;
    let ph = bridge
        .placeholder(&TargetAddr::new(ONION, 80).unwrap())
        .unwrap();
    // Wrong password.
    let (u, _) = creds(&bridge);
    let err = Socks5Stream::connect_with_password(bridge.local_addr(), ph, &u, "nope")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, tokio_socks::Error::PasswordAuthFailure(_)),
        "{err:?}"
    );
    // No authentication offered: no acceptable method.
    assert_eq!(raw(&bridge, &[5, 1, 0]).await, [5, 0xFF]);
    // BIND (cmd 2) after a good login.
    let mut bind = auth(&bridge);
    bind.extend_from_slice(&[5, 2, 0, 1, 100, 64, 0, 1, 0, 80]);
    let out = raw(&bridge, &bind).await;
    assert_eq!(&out[..4], [5, 2, 1, 0], "method, auth ok");
    assert_eq!(out[4..6], [5, REP_CMD_UNSUPPORTED]);
    // Unknown address type.
    let mut atyp = auth(&bridge);
    atyp.extend_from_slice(&[5, 1, 0, 9]);
    let out = raw(&bridge, &atyp).await;
    assert_eq!(out[4..6], [5, REP_ATYP_UNSUPPORTED]);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn garbage_and_silence_end_the_connection_not_the_bridge() {
    let (bridge, _) = bridge_to_recorder().await;
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[4, 1, 0, 80, 127, 0, 0, 1, 0][..],
        &[5, 0][..],
        &[5, 255, 1, 2][..],
    ] {
        let out = raw(&bridge, junk).await;
        assert!(out.len() <= 2, "{junk:?} -> {out:?}");
    }
    // A client that says nothing holds one slot until the handshake timeout; the bridge
    // still serves others meanwhile.
    let s = TcpStream::connect(bridge.local_addr()).await.unwrap();
    let (u, p) = creds(&bridge);
    let ph = bridge
        .placeholder(&TargetAddr::new("peer.i2p", 7000).unwrap())
        .unwrap();
    let mut ok = Socks5Stream::connect_with_password(bridge.local_addr(), ph, &u, &p)
        .await
        .unwrap();
    let mut buf = [0u8; 2];
    ok.read_exact(&mut buf).await.unwrap();
    drop(s);
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_socks_failure() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = ProxyUrl::parse(&format!("socks5h://127.0.0.1:{closed}")).unwrap();
    let bridge = SocksBridge::start(Connector::socks5(proxy)).await.unwrap();
    let (u, p) = creds(&bridge);
    let ph = bridge
        .placeholder(&TargetAddr::new(ONION, 80).unwrap())
        .unwrap();
    let err = Socks5Stream::connect_with_password(bridge.local_addr(), ph, &u, &p)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, tokio_socks::Error::GeneralSocksServerFailure),
        "{err:?}"
    );
}

#[test]
fn the_placeholder_map_is_bounded_and_reuses_the_oldest() {
    let mut m = Placeholders::default();
    let t = |i: u32| TargetAddr::new(&format!("p{i}.i2p"), 1).unwrap();
    let first = m.get_or_insert(&t(0));
    assert_eq!(first, Ipv4Addr::new(100, 64, 0, 1));
    for i in 1..MAX_PLACEHOLDERS {
        let ip = m.get_or_insert(&t(i));
        assert!(is_placeholder(ip), "{ip}");
    }
    assert_eq!(m.by_ip.len(), MAX_PLACEHOLDERS as usize);
    assert_eq!(m.get_or_insert(&t(5)), Ipv4Addr::new(100, 64, 0, 6));
    // One more: the oldest slot is reused and its old name forgotten.
    let again = m.get_or_insert(&t(MAX_PLACEHOLDERS));
    assert_eq!(again, first);
    assert_eq!(m.by_ip.len(), MAX_PLACEHOLDERS as usize);
    assert_eq!(m.by_target.len(), MAX_PLACEHOLDERS as usize);
    assert!(!m.by_target.contains_key(&t(0)));
    assert_eq!(m.by_ip[&first], t(MAX_PLACEHOLDERS));
    assert!(is_placeholder(Ipv4Addr::new(100, 127, 255, 255)));
    assert!(!is_placeholder(Ipv4Addr::new(100, 128, 0, 0)));
    assert!(!is_placeholder(Ipv4Addr::new(100, 63, 255, 255)));
}
