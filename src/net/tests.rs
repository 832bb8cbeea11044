//! Unit tests of the connector modes (the recording SOCKS5 server is in `socks.rs`).
use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn direct_connects_and_counts() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"hi").await.unwrap();
    });
    let c = Connector::direct();
    let mut stream = c
        .connect(&TargetAddr::new("127.0.0.1", port).unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 2];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hi");
    server.await.unwrap();
    let stats = c.clone().stats();
    assert_eq!((stats.attempts, stats.succeeded), (1, 1));
    assert_eq!(stats.failed_total(), 0);
}

#[tokio::test]
async fn closed_port_is_connect_failed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let c = Connector::direct();
    let err = c
        .connect(&TargetAddr::new("127.0.0.1", port).unwrap())
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), NetErrorKind::ConnectFailed);
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(c.stats().failed(NetErrorKind::ConnectFailed), 1);
}

#[tokio::test]
async fn direct_refuses_onion_and_i2p() {
    let c = Connector::direct();
    for host in [format!("{}.onion", "a".repeat(56)), "x.i2p".to_owned()] {
        let err = c
            .connect(&TargetAddr::new(&host, 80).unwrap())
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), NetErrorKind::ForbiddenTarget);
    }
    assert_eq!(c.stats().failed(NetErrorKind::ForbiddenTarget), 2);
}

#[tokio::test]
async fn unresolvable_name_is_resolve_failed() {
    // `.invalid` is reserved (RFC 6761) and never resolves.
    let c = Connector::direct().with_connect_timeout(Duration::from_secs(20));
    let err = c
        .connect(&TargetAddr::new("no-such-host.invalid", 80).unwrap())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err.kind(),
            NetErrorKind::ResolveFailed | NetErrorKind::Timeout
        ),
        "{err:?}"
    );
}

async fn read_ok(mut s: BoxStream) {
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ok");
}

fn t(host: &str, port: u16) -> TargetAddr {
    TargetAddr::new(host, port).unwrap()
}

#[tokio::test]
async fn socks5_sends_every_name_unresolved_with_isolation() {
    let (port, seen) = socks::recording::start().await;
    let proxy = ProxyUrl::parse(&format!("socks5h://127.0.0.1:{port}")).unwrap();
    let c = Connector::socks5(proxy);
    c.probe().await.unwrap();
    let onion = format!("{}.onion", "b".repeat(56));
    let targets = [
        t("example.org", 80),
        t(&onion, 80),
        t("peer.i2p", 6881),
        t("localhost", 6969),
    ];
    for target in &targets {
        read_ok(c.connect(target).await.unwrap()).await;
    }
    // Two isolation keys (two feeds) to the same destination.
    read_ok(c.isolated("feed-a").connect(&targets[1]).await.unwrap()).await;
    read_ok(c.isolated("feed-b").connect(&targets[1]).await.unwrap()).await;
    read_ok(c.isolated("feed-a").connect(&targets[1]).await.unwrap()).await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 7);
    for (s, target) in seen.iter().zip(targets.iter()) {
        assert_eq!(s.atyp, 3, "{s:?}");
        assert_eq!((s.host.as_str(), s.port), (target.host(), target.port()));
        assert!(s.user.is_some() && s.pass.is_some());
    }
    assert!(seen.iter().all(|s| s.atyp == 3));
    let users: std::collections::HashSet<_> = seen[..4].iter().map(|s| &s.user).collect();
    assert_eq!(users.len(), 4, "each destination gets its own credentials");
    let (a, b, a2) = (&seen[4], &seen[5], &seen[6]);
    assert_ne!(a.user, b.user);
    assert_ne!(a.pass, b.pass);
    assert_eq!((&a.user, &a.pass), (&a2.user, &a2.pass));
    assert_ne!(a.user, seen[1].user, "a key differs from no key");
    let stats = c.stats();
    assert_eq!((stats.socks, stats.direct, stats.tor), (7, 0, 0));
    assert_eq!(stats.succeeded, 7);
}

#[tokio::test]
async fn proxied_ip_literals_need_the_named_path() {
    let (port, seen) = socks::recording::start().await;
    let proxy = ProxyUrl::parse(&format!("socks5h://127.0.0.1:{port}")).unwrap();
    let c = Connector::socks5(proxy);
    for ip in ["127.0.0.1", "::1", "10.1.2.3"] {
        let err = c.connect(&t(ip, 80)).await.err().unwrap();
        assert_eq!(err.kind(), NetErrorKind::ForbiddenTarget);
        assert!(!err.to_string().contains(ip), "{err}");
    }
    assert!(seen.lock().unwrap().is_empty());
    read_ok(
        c.connect_ip_literal_through_proxy(&t("10.1.2.3", 80))
            .await
            .unwrap(),
    )
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!((seen[0].atyp, seen[0].host.as_str()), (1, "10.1.2.3"));
    let stats = c.stats();
    assert_eq!(stats.failed(NetErrorKind::ForbiddenTarget), 3);
    assert_eq!((stats.socks, stats.direct), (1, 0));
}

#[tokio::test]
async fn i2p_names_go_to_the_i2p_proxy() {
    let (tor_port, tor_seen) = socks::recording::start().await;
    let (i2p_port, i2p_seen) = socks::recording::start().await;
    let url = |p| ProxyUrl::parse(&format!("socks5h://127.0.0.1:{p}")).unwrap();
    let c = Connector::socks5(url(tor_port)).with_i2p_proxy(url(i2p_port));
    c.probe().await.unwrap();
    read_ok(c.connect(&t("peer.i2p", 80)).await.unwrap()).await;
    read_ok(c.connect(&t("example.org", 80)).await.unwrap()).await;
    let i2p = i2p_seen.lock().unwrap().clone();
    let tor = tor_seen.lock().unwrap().clone();
    assert_eq!(i2p.len(), 1);
    assert_eq!((i2p[0].atyp, i2p[0].host.as_str()), (3, "peer.i2p"));
    assert_eq!(tor.len(), 1);
    assert_eq!(tor[0].host, "example.org");

    // A direct connector with an I2P proxy still refuses onion names.
    let d = Connector::direct().with_i2p_proxy(url(i2p_port));
    read_ok(d.connect(&t("other.i2p", 80)).await.unwrap()).await;
    let onion = format!("{}.onion", "c".repeat(56));
    let err = d.connect(&t(&onion, 80)).await.err().unwrap();
    assert_eq!(err.kind(), NetErrorKind::ForbiddenTarget);
    assert_eq!(d.stats().direct, 0);
}

#[tokio::test]
async fn unreachable_proxy_fails_fast_and_never_goes_direct() {
    // A real server on the target port: a fallback to direct would reach it.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tport = target.local_addr().unwrap().port();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = ProxyUrl::parse(&format!("socks5h://127.0.0.1:{closed}")).unwrap();
    let c = Connector::socks5(proxy);
    assert_eq!(
        c.probe().await.unwrap_err().kind(),
        NetErrorKind::ProxyUnreachable
    );
    let err = c.connect(&t("localhost", tport)).await.err().unwrap();
    assert_eq!(err.kind(), NetErrorKind::ProxyUnreachable);
    let err = c
        .connect_ip_literal_through_proxy(&t("127.0.0.1", tport))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), NetErrorKind::ProxyUnreachable);
    let stats = c.stats();
    assert_eq!((stats.direct, stats.socks), (0, 2));
    assert_eq!(stats.failed(NetErrorKind::ProxyUnreachable), 2);
    let accepted = tokio::time::timeout(Duration::from_millis(200), target.accept()).await;
    assert!(accepted.is_err(), "nothing may reach the target directly");
}

/// A listener whose accept queue is full drops further SYNs (Linux), so a connect to it
/// hangs until the connect timeout.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn connect_times_out() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let attempt = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), attempt).await {
            fillers.push(s);
        }
    }
    let c = Connector::direct().with_connect_timeout(Duration::from_millis(300));
    let err = c
        .connect(&TargetAddr::new("127.0.0.1", addr.port()).unwrap())
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), NetErrorKind::Timeout);
    assert_eq!(c.stats().failed(NetErrorKind::Timeout), 1);
    drop((fillers, listener));
}
