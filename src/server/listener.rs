//! Serving: the accept loops of the public and onion listeners, the metrics listener, the
//! housekeeping timer, and the shutdown sequence ([`serve_all`]).
//!
//! Each accepted connection takes a permit from a semaphore of `http.max_connections`; when
//! none is left the connection is closed at once (and counted) instead of queueing. hyper's
//! HTTP/1.1 server reads the request head under `http.header_read_timeout_secs` — counted
//! from when the connection opens or goes idle, so a slowloris client or an idle keep-alive
//! connection is cut off — and refuses heads over `http.max_header_bytes` with `431`.
//! Upgrades (WebSocket) are supported. On the onion listener every connection must first
//! send a PROXY v1 header (within the same timeout); its Tor circuit id is attached to each
//! request as a [`CircuitId`] extension (a non-Tor `TCP4`/`TCP6` header's source address
//! becomes the connection's address instead; `UNKNOWN` keeps the real peer).

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::metrics::{ListenerKind, Metrics, RejectReason};
use super::proxy_protocol::{self, ProxyHeader};
use super::rate_limit::CircuitId;
use super::{AppState, Listeners, ServerError};

impl Listeners {
    /// Bind every listener `config` asks for: `http.listen`, `udp.listen` (if enabled),
    /// `metrics.listen` (if enabled) and `onion_proxy.listen` (if set).
    pub async fn bind(config: &super::Config) -> Result<Self, ServerError> {
        async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })
        }
        let http = bind(config.http.listen).await?;
        let udp = match config.udp.enabled {
            true => Some(
                tokio::net::UdpSocket::bind(config.udp.listen)
                    .await
                    .map_err(|source| ServerError::Bind {
                        addr: config.udp.listen,
                        source,
                    })?,
            ),
            false => None,
        };
        let metrics = match config.metrics.enabled {
            true => Some(bind(config.metrics.listen).await?),
            false => None,
        };
        let onion = match config.onion_proxy.listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self {
            http,
            udp,
            metrics,
            onion,
        })
    }
}

/// The body of [`super::serve`]: run every listener, then shut down in order.
pub(super) async fn serve_all(
    state: AppState,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let cfg = state.config().http.clone();
    let addr = listeners.http.local_addr()?;
    let settings = ConnSettings {
        header_read_timeout: Duration::from_secs(cfg.header_read_timeout_secs),
        max_header_bytes: cfg.max_header_bytes,
        max_connections: cfg.max_connections,
        metrics: Arc::clone(state.metrics()),
    };
    let life = Lifecycle {
        stop_accepting: CancellationToken::new(),
        drain: CancellationToken::new(),
        kill: CancellationToken::new(),
        tracker: tokio_util::task::TaskTracker::new(),
    };
    let stop_accepting = life.stop_accepting.clone();
    let listed = state.reload()?;
    // The tracker's sweeper and UDP socket, stopped after the HTTP drain.
    let tracker_stop = CancellationToken::new();
    let mut tasks = super::spawn_tracker(&state, listeners.udp, &tracker_stop, listed)?;
    let replication_stop = CancellationToken::new();
    tasks.spawn({
        let (pubsub, store) = (state.pubsub().clone(), state.store_arc());
        let stop = replication_stop.clone();
        async move { pubsub.run_replication(store, stop).await }
    });
    let router = super::app(state.clone());
    let accept = |l, kind| accept_loop(l, kind, router.clone(), settings.clone(), life.clone());
    tasks.spawn(accept(listeners.http, ListenerKind::Http));
    if let Some(onion) = listeners.onion {
        tracing::info!("onion listener (PROXY protocol) on {}", onion.local_addr()?);
        tasks.spawn(accept(onion, ListenerKind::Onion));
    }
    if let Some(m) = listeners.metrics {
        tracing::info!("metrics on http://{}/metrics", m.local_addr()?);
        let stop = stop_accepting.clone();
        let server = axum::serve(m, super::metrics::metrics_app(state.clone()))
            .with_graceful_shutdown(async move { stop.cancelled().await });
        tasks.spawn(async move {
            if let Err(e) = server.into_future().await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    tasks.spawn(housekeeping(state.clone(), stop_accepting.clone()));
    let mail_cfg = &state.config().mailbox;
    if mail_cfg.enabled {
        tasks.spawn(super::mailbox::run_purger(
            state.store_arc(),
            *state.mail_clock(),
            Duration::from_secs(mail_cfg.purge_interval_secs),
            Arc::clone(state.mail_gauges()),
            stop_accepting.clone(),
        ));
    }
    tasks.spawn(super::profile::run_purger(
        state.store_arc(),
        *state.mail_clock(),
        Duration::from_secs(state.config().profiles.purge_interval_secs),
        stop_accepting.clone(),
    ));
    tracing::info!(
        backend = state.store().backend(),
        "listening on http://{addr}"
    );
    // The embedded onion service (bootstraps Tor first; bounded by its own timeout). Its
    // connections drain with the others.
    #[cfg(feature = "onion-server")]
    let onion = match state.config().onion.enabled {
        true => Some(super::onion::start(state.clone(), life.drain.clone()).await?),
        false => None,
    };

    shutdown.cancelled().await;
    state.set_not_ready();
    let delay = Duration::from_secs(cfg.shutdown_delay_secs);
    if !delay.is_zero() {
        tracing::info!(
            delay_secs = delay.as_secs(),
            "shutting down: not ready, still serving"
        );
        tokio::time::sleep(delay).await;
    }
    tracing::info!(
        grace_secs = cfg.shutdown_grace_secs,
        "shutting down: draining requests"
    );
    stop_accepting.cancel();
    life.drain.cancel();
    life.tracker.close();
    let grace = Duration::from_secs(cfg.shutdown_grace_secs);
    // HTTP connections drain while WebSockets are closed with a reason, both within `grace`.
    let sockets = super::ws::shut_down(&state, grace);
    if tokio::time::timeout(grace, async { tokio::join!(life.tracker.wait(), sockets) })
        .await
        .is_err()
    {
        tracing::warn!("grace period over; dropping remaining connections");
        life.kill.cancel();
        life.tracker.wait().await;
    }
    #[cfg(feature = "onion-server")]
    if let Some(onion) = onion {
        onion.abort();
    }
    tracker_stop.cancel();
    replication_stop.cancel();
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res {
            tracing::error!(error = %e, "background task failed");
        }
    }
    state.store().close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Periodic upkeep until `stop`: prune idle rate-limiter entries, recount identities.
async fn housekeeping(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(super::rate_limit::PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        state.rate_limiter().prune();
        if let Err(e) = super::admission::refresh_identities(&state).await {
            tracing::warn!(error = %e, "cannot count identities");
        }
    }
}

/// How connections are told to stop: `drain` asks each to finish its current request and
/// close; `kill` (after the grace period) drops them. `tracker` lets shutdown wait for them.
#[derive(Clone)]
pub(super) struct Lifecycle {
    pub(super) stop_accepting: CancellationToken,
    pub(super) drain: CancellationToken,
    pub(super) kill: CancellationToken,
    pub(super) tracker: TaskTracker,
}

/// Per-connection settings shared by the accept loops.
#[derive(Clone)]
pub(super) struct ConnSettings {
    pub(super) header_read_timeout: Duration,
    pub(super) max_header_bytes: usize,
    pub(super) max_connections: usize,
    pub(super) metrics: Arc<Metrics>,
}

/// Accept on `listener` until `life.stop_accepting` is cancelled; connections run on
/// `life.tracker` and obey its drain and kill tokens.
pub(super) async fn accept_loop(
    listener: TcpListener,
    kind: ListenerKind,
    router: Router,
    settings: ConnSettings,
    life: Lifecycle,
) {
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            () = life.stop_accepting.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, listener = kind.as_str(), "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            settings
                .metrics
                .connection_rejected(kind, RejectReason::MaxConnections);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let guard = settings.metrics.connection_opened(kind);
        let (router, settings, conn_life) = (router.clone(), settings.clone(), life.clone());
        life.tracker.spawn(async move {
            let _permit = permit;
            let _guard = guard;
            serve_connection(stream, peer, kind, router, &settings, &conn_life).await;
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    router: Router,
    settings: &ConnSettings,
    life: &Lifecycle,
) {
    let mut circuit = None;
    let mut peer = peer;
    if kind == ListenerKind::Onion {
        let header = tokio::time::timeout(
            settings.header_read_timeout,
            proxy_protocol::read_header(&mut stream),
        )
        .await;
        match header {
            Ok(Ok(h)) => {
                circuit = h.tor_circuit_id().map(CircuitId);
                // Another PROXY sender (e.g. HAProxy) tells us the real client address.
                if let (None, ProxyHeader::Tcp { source, .. }) = (circuit, h) {
                    peer = source;
                }
            }
            Ok(Err(_)) | Err(_) => {
                settings
                    .metrics
                    .connection_rejected(kind, RejectReason::ProxyHeader);
                return;
            }
        }
    }
    let svc = router.map_request(move |mut req: axum::http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(c) = circuit {
            req.extensions_mut().insert(c);
        }
        req
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        // hyper refuses buffers under 8 KiB; the config enforces that too.
        .max_buf_size(settings.max_header_bytes.max(8192))
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let finished = tokio::select! {
        res = conn.as_mut() => Some(res),
        () = life.drain.cancelled() => None,
        () = life.kill.cancelled() => return,
    };
    let res = match finished {
        Some(res) => res,
        None => {
            // Finish the request in flight (if any), then close.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                res = conn.as_mut() => res,
                () = life.kill.cancelled() => return,
            }
        }
    };
    if let Err(e) = res {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
