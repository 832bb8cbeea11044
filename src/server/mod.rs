//! The `megatorrentd` server: build the app with [`app`], serve it with [`run`].
//!
//! Shared state is one cheap-to-clone [`AppState`] handle. No lock is held across an
//! `.await`; shutdown is a [`CancellationToken`].

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::proto::ManifestLimits;
use crate::store::{self, Store, StoreError, StoreOptions};

pub mod admin;
mod api;
pub mod config;
pub mod error;
pub mod extract;
mod longpoll;
mod pointer;
pub mod process;
pub mod pubsub;
pub mod tracker;
pub mod ws;

pub use config::Config;

/// Shared state handed to every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: Config,
    manifest_limits: ManifestLimits,
    /// False once shutdown has begun, so readiness probes drain traffic first.
    ready: AtomicBool,
    pubsub: pubsub::PubSub,
    ws: ws::WsShared,
    tracker: tracker::Tracker,
}

impl AppState {
    /// Build state around an opened store.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        let manifest_limits = config.manifest_limits();
        let pubsub = pubsub::PubSub::new(store.as_ref());
        Self {
            inner: Arc::new(Inner {
                store,
                tracker: tracker::Tracker::new(&config.tracker),
                config,
                manifest_limits,
                ready: AtomicBool::new(true),
                pubsub,
                ws: ws::WsShared::default(),
            }),
        }
    }

    /// Manifest pub/sub (the fan-out hub and its counters).
    #[must_use]
    pub fn pubsub(&self) -> &pubsub::PubSub {
        &self.inner.pubsub
    }

    /// State shared by the WebSockets.
    #[must_use]
    pub fn ws(&self) -> &ws::WsShared {
        &self.inner.ws
    }

    /// A handle on the store (for background tasks).
    #[must_use]
    pub fn store_arc(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The configuration the server runs with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Manifest verification limits.
    #[must_use]
    pub fn manifest_limits(&self) -> &ManifestLimits {
        &self.inner.manifest_limits
    }

    /// The largest request body read (the manifest cap; JSON whitespace beyond it is refused).
    #[must_use]
    pub fn max_body_bytes(&self) -> usize {
        self.inner.manifest_limits.max_bytes
    }

    /// Whether the server accepts new work (false while shutting down).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    /// The BitTorrent tracker.
    #[must_use]
    pub fn tracker(&self) -> &tracker::Tracker {
        &self.inner.tracker
    }

    /// Re-read what can change without a restart (the tracker's access list; cached
    /// passkeys are forgotten). Called on SIGHUP. On error the old state stays.
    pub fn reload(&self) -> Result<usize, tracker::AccessListError> {
        self.inner.tracker.reload()
    }

    fn set_not_ready(&self) {
        self.inner.ready.store(false, Ordering::Relaxed);
    }
}

/// Build the router. Pure: no sockets are opened.
pub fn app(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.config().http.request_timeout_secs);
    Router::new()
        .route(
            "/v1/manifests/{key}",
            get(api::get_manifest).put(api::put_manifest),
        )
        .route("/v1/info", get(api::info))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/", get(ws::root))
        .route("/announce", get(ws::announce).post(pointer::announce))
        .route(
            "/announce/{passkey}",
            get(tracker::http::announce_with_passkey),
        )
        .route("/scrape", get(tracker::http::scrape))
        .route("/scrape/{passkey}", get(tracker::http::scrape_with_passkey))
        .route("/lookup/{key}", get(pointer::lookup))
        .route("/stats", get(pointer::stats))
        .fallback(api::not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

/// The sockets the server serves on (bound by the caller, so tests can use port 0).
pub struct Listeners {
    /// Public HTTP + WebSocket listener.
    pub http: TcpListener,
    /// The UDP tracker socket, if the UDP tracker is enabled.
    pub udp: Option<UdpSocket>,
}

impl Listeners {
    /// Only the HTTP listener (no UDP tracker).
    #[must_use]
    pub fn http_only(http: TcpListener) -> Self {
        Self { http, udp: None }
    }
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Opening the store or applying migrations failed.
    #[error("cannot open the database")]
    Store(#[from] StoreError),
    /// Serving failed.
    #[error("server I/O error")]
    Io(#[from] std::io::Error),
    /// The tracker's access list could not be loaded at start-up.
    #[error("cannot load the tracker access list")]
    AccessList(#[from] tracker::AccessListError),
}

/// Open the store named in `config`.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let db = &config.database;
    let opts = StoreOptions {
        max_connections: db.max_connections,
        sqlite_sync_full: db.sqlite_synchronous == config::SqliteSynchronous::Full,
        acquire_timeout_secs: db.acquire_timeout_secs,
    };
    store::open(&db.url, &opts).await
}

/// Serve until `shutdown` is cancelled, then drain in-flight requests for up to
/// `http.shutdown_grace_secs` and close the store.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    serve(open_state(config).await?, listeners, shutdown).await
}

/// Open the store and build the state (for callers that need the state before serving,
/// e.g. to reload it on SIGHUP).
pub async fn open_state(config: Config) -> Result<AppState, ServerError> {
    let store = open_store(&config).await?;
    Ok(AppState::new(store, config))
}

/// Serve an already-built state (lets tests share a store between restarts).
pub async fn serve(
    state: AppState,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let grace = Duration::from_secs(state.config().http.shutdown_grace_secs);
    let addr = listeners.http.local_addr()?;
    let listed = state.reload()?;
    let mut background = spawn_tracker(&state, listeners.udp, &shutdown, listed)?;
    tracing::info!(
        backend = state.store().backend(),
        "listening on http://{addr}"
    );
    let router = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let drain = CancellationToken::new();
    let drain_signal = drain.clone();
    let server = axum::serve(listeners.http, router)
        .with_graceful_shutdown(async move { drain_signal.cancelled().await });
    let mut server = std::pin::pin!(server.into_future());
    let replication_stop = CancellationToken::new();
    let replication = tokio::spawn({
        let (pubsub, store) = (state.pubsub().clone(), state.store_arc());
        let stop = replication_stop.clone();
        async move { pubsub.run_replication(store, stop).await }
    });

    let served = tokio::select! {
        res = &mut server => res,
        () = shutdown.cancelled() => {
            tracing::info!(grace_secs = grace.as_secs(), "shutting down: draining requests");
            state.set_not_ready();
            drain.cancel();
            let sockets = ws::shut_down(&state, grace);
            match tokio::time::timeout(grace, async { tokio::join!(&mut server, sockets).0 }).await {
                Ok(res) => res,
                Err(_) => {
                    tracing::warn!("grace period over; dropping remaining connections");
                    Ok(())
                }
            }
        }
    };
    replication_stop.cancel();
    if let Err(e) = replication.await {
        tracing::error!(error = %e, "replication task failed");
    }
    background.abort_all();
    while background.join_next().await.is_some() {}
    state.store().close().await;
    tracing::info!("stopped");
    served?;
    Ok(())
}

/// Start the tracker's sweeper and, if given a socket, the UDP tracker; both stop when
/// `shutdown` is cancelled.
fn spawn_tracker(
    state: &AppState,
    udp: Option<UdpSocket>,
    shutdown: &CancellationToken,
    listed: usize,
) -> Result<tokio::task::JoinSet<()>, ServerError> {
    let mut tasks = tokio::task::JoinSet::new();
    let cfg = state.config();
    tracing::info!(access = ?cfg.tracker.access, listed, private = cfg.tracker.private, "tracker ready");
    let (st, token) = (state.clone(), shutdown.clone());
    tasks.spawn(async move { st.tracker().run_sweeper(token).await });
    if let Some(socket) = udp {
        let addr = socket.local_addr()?;
        let workers = tracker::udp_server::worker_count(cfg.udp.workers);
        tracing::info!(workers, "udp tracker listening on udp://{addr}");
        tasks.spawn(tracker::udp_server::serve(
            state.clone(),
            socket,
            workers,
            shutdown.clone(),
        ));
    }
    Ok(tasks)
}
