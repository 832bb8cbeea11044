//! Servers for integration tests: in-process on port 0, or the real `megatorrentd` binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use megatorrent::server::{self, AppState, Config, Listeners};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::pg::PgTestDb;

/// An in-process server on 127.0.0.1:0. Call [`TestServer::stop`] to shut it down cleanly
/// (and drop its PostgreSQL database); dropping it only cancels the server.
pub struct TestServer {
    pub url: String,
    pub addr: SocketAddr,
    /// The UDP tracker's address (when `udp.enabled`, the default).
    pub udp_addr: Option<SocketAddr>,
    /// The server's shared state (hub and tracker counters, swarms).
    pub state: AppState,
    /// The metrics listener (always bound, on port 0).
    pub metrics_addr: SocketAddr,
    /// The onion (PROXY protocol) listener, when `onion_proxy.listen` was set.
    pub onion_addr: Option<SocketAddr>,
    token: CancellationToken,
    handle: Option<tokio::task::JoinHandle<Result<(), server::ServerError>>>,
    dir: tempfile::TempDir,
    pg: Option<PgTestDb>,
}

impl TestServer {
    /// The temporary directory the server's files live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Shut down gracefully and clean up.
    pub async fn stop(mut self) {
        self.token.cancel();
        let handle = self.handle.take().unwrap();
        let res = tokio::time::timeout(Duration::from_secs(15), handle)
            .await
            .expect("server did not stop within 15 s")
            .expect("server task panicked");
        res.expect("server returned an error");
        if let Some(pg) = self.pg.take() {
            pg.drop_db().await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Rate limits high enough that functional tests never meet them (tests of the limits
/// set their own), as `MEGATORRENT_*` variables for the daemon.
pub const RELAXED_LIMITS_ENV: &[(&str, &str)] = &[
    ("MEGATORRENT_LIMITS__READ_QUOTA", "1000000r/s"),
    ("MEGATORRENT_LIMITS__WRITE_QUOTA", "1000000r/s"),
    ("MEGATORRENT_LIMITS__GLOBAL_WRITE_QUOTA", "1000000r/s"),
    ("MEGATORRENT_LIMITS__KEY_WRITE_QUOTA", "1000000r/s"),
    ("MEGATORRENT_WEBSOCKET__MESSAGE_QUOTA", "1000000r/s"),
    ("MEGATORRENT_WEBSOCKET__SUBSCRIBE_QUOTA", "1000000r/s"),
];

/// The default config with [`RELAXED_LIMITS_ENV`]'s quotas.
pub fn test_config() -> Config {
    let mut cfg = Config::default();
    let q = "1000000r/s".parse().unwrap();
    cfg.limits.read_quota = q;
    cfg.limits.write_quota = q;
    cfg.limits.global_write_quota = q;
    cfg.limits.key_write_quota = q;
    cfg.websocket.message_quota = q;
    cfg.websocket.subscribe_quota = q;
    cfg
}

/// A server on a fresh SQLite file.
pub async fn start_sqlite() -> TestServer {
    start_with(test_config(), None).await
}

/// A server on a fresh PostgreSQL database.
pub async fn start_pg() -> TestServer {
    let pg = PgTestDb::create().await;
    let mut cfg = test_config();
    cfg.database.url = pg.url.clone();
    start_with(cfg, Some(pg)).await
}

/// A server with `config` (its `http.listen` is ignored; a SQLite URL left at the default is
/// pointed into a temp dir).
pub async fn start_with(mut config: Config, pg: Option<PgTestDb>) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    if config.database.url == Config::default().database.url {
        config.database.url = format!("sqlite://{}", dir.path().join("test.db").display());
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let udp = if config.udp.enabled {
        Some(UdpSocket::bind("127.0.0.1:0").await.unwrap())
    } else {
        None
    };
    let udp_addr = udp.as_ref().map(|u| u.local_addr().unwrap());
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    let onion = match config.onion_proxy.listen {
        Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        None => None,
    };
    let onion_addr = onion.as_ref().map(|l| l.local_addr().unwrap());
    let token = CancellationToken::new();
    let state = server::open_state(config).await.unwrap();
    let listeners = Listeners {
        http: listener,
        udp,
        metrics: Some(metrics),
        onion,
    };
    let handle = tokio::spawn(server::serve(state.clone(), listeners, token.clone()));
    let server = TestServer {
        url: format!("http://{addr}"),
        addr,
        udp_addr,
        state,
        metrics_addr,
        onion_addr,
        token,
        handle: Some(handle),
        dir,
        pg,
    };
    wait_ready(addr).await;
    server
}

/// Poll `/readyz` until it answers 200 (20 s at most).
pub async fn wait_ready(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = super::http::request(addr, "GET", "/readyz", &[], b"").await {
            if r.status == 200 {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server at {addr} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The real `megatorrentd` binary as a child process, listening on 127.0.0.1:0.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub url: String,
    /// The UDP tracker's address, if enabled.
    pub udp_addr: Option<SocketAddr>,
    /// The metrics listener (also on port 0).
    pub metrics_addr: Option<SocketAddr>,
}

/// Path of the built server binary.
pub fn daemon_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_megatorrentd"))
}

/// Start `megatorrentd` with `database_url`, in `cwd`, and wait until it serves.
pub async fn spawn_daemon(database_url: &str, cwd: &Path) -> Daemon {
    spawn_daemon_with(database_url, cwd, &[]).await
}

/// Like [`spawn_daemon`] with extra environment variables (applied last, after
/// [`RELAXED_LIMITS_ENV`]).
pub async fn spawn_daemon_with(database_url: &str, cwd: &Path, env: &[(&str, &str)]) -> Daemon {
    let mut cmd = Command::new(daemon_bin());
    cmd.current_dir(cwd)
        .envs(RELAXED_LIMITS_ENV.iter().copied())
        .env("MEGATORRENT_HTTP__LISTEN", "127.0.0.1:0")
        .env("MEGATORRENT_UDP__LISTEN", "127.0.0.1:0")
        .env("MEGATORRENT_METRICS__LISTEN", "127.0.0.1:0")
        .env("MEGATORRENT_DATABASE__URL", database_url)
        .env("MEGATORRENT_LOG__LEVEL", "info")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn megatorrentd");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut metrics_addr = None;
    let (addr, udp_addr) = tokio::time::timeout(Duration::from_secs(30), async {
        let mut udp_addr = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on udp://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                udp_addr = Some(addr.parse::<SocketAddr>().unwrap());
            }
            if let Some(rest) = line.split("metrics on http://").nth(1) {
                let addr = rest.split('/').next().unwrap();
                metrics_addr = Some(addr.parse::<SocketAddr>().unwrap());
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                return (addr.parse::<SocketAddr>().unwrap(), udp_addr);
            }
        }
        panic!("megatorrentd exited before listening");
    })
    .await
    .expect("megatorrentd did not start within 30 s");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    wait_ready(addr).await;
    Daemon {
        child,
        addr,
        url: format!("http://{addr}"),
        udp_addr,
        metrics_addr,
    }
}
