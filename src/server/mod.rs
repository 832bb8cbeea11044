//! The `megatorrentd` server: build the app with [`app`], serve it with [`run`].
//!
//! Shared state is one cheap-to-clone [`AppState`] handle. No lock is held across an
//! `.await`; shutdown is a [`CancellationToken`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::Router;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::proto::ManifestLimits;
use crate::store::{self, Store, StoreError, StoreOptions};

pub mod admin;
pub mod admission;
mod api;
pub mod config;
pub mod error;
pub mod extract;
mod listener;
mod longpoll;
pub mod mailbox;
pub mod metered_store;
pub mod metrics;
#[cfg(feature = "onion-server")]
pub mod onion;
mod pointer;
pub mod pow;
pub mod process;
pub mod profile;
pub mod proxy_protocol;
pub mod pubsub;
pub mod quota;
pub mod rate_limit;
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
    metrics: Arc<metrics::Metrics>,
    rate_limiter: rate_limit::RateLimiter,
    pow: pow::Pow,
    /// Time for mailbox expiry.
    mail_clock: mailbox::MailClock,
    mail_gauges: Arc<mailbox::MailGauges>,
    /// Approximate stored identities ([`admission::UNKNOWN_COUNT`] until first loaded).
    identities: AtomicU64,
    /// `<56 chars>.onion` once the embedded onion service is up.
    onion: OnceLock<String>,
}

impl AppState {
    /// Build state around an opened store (wrapped in a [`metered_store::MeteredStore`]).
    #[must_use]
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        let manifest_limits = config.manifest_limits();
        let pubsub = pubsub::PubSub::new(store.as_ref());
        let metrics = Arc::new(metrics::Metrics::new());
        let store: Arc<dyn Store> = Arc::new(metered_store::MeteredStore::new(
            store,
            Arc::clone(&metrics),
        ));
        let rate_limiter =
            rate_limit::RateLimiter::new(&config.rate_limits(), Arc::clone(&metrics));
        let pow = pow::Pow::new(config.pow.clone());
        let state = Self {
            inner: Arc::new(Inner {
                store,
                tracker: tracker::Tracker::new(&config.tracker),
                config,
                manifest_limits,
                ready: AtomicBool::new(true),
                pubsub,
                ws: ws::WsShared::default(),
                metrics,
                rate_limiter,
                pow,
                identities: AtomicU64::new(admission::UNKNOWN_COUNT),
                mail_clock: mailbox::MailClock::new(),
                mail_gauges: Arc::default(),
                onion: OnceLock::new(),
            }),
        };
        metrics::register_state_gauges(&state);
        state
    }

    /// The metrics registry and counters.
    #[must_use]
    pub fn metrics(&self) -> &Arc<metrics::Metrics> {
        &self.inner.metrics
    }

    /// The rate limiters (the WebSocket hub calls [`rate_limit::RateLimiter::check_message`]
    /// per message with the request's [`rate_limit::ClientKey`] extension).
    #[must_use]
    pub fn rate_limiter(&self) -> &rate_limit::RateLimiter {
        &self.inner.rate_limiter
    }

    /// The proof-of-work controller.
    #[must_use]
    pub fn pow(&self) -> &pow::Pow {
        &self.inner.pow
    }

    /// The clock mailbox expiry runs on.
    #[must_use]
    pub fn mail_clock(&self) -> &mailbox::MailClock {
        &self.inner.mail_clock
    }

    /// What all mailboxes held at the last purge.
    #[must_use]
    pub fn mail_gauges(&self) -> &Arc<mailbox::MailGauges> {
        &self.inner.mail_gauges
    }

    fn identities(&self) -> &AtomicU64 {
        &self.inner.identities
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

    /// The embedded onion service's address (`….onion`), once it is running.
    #[must_use]
    pub fn onion_address(&self) -> Option<&str> {
        self.inner.onion.get().map(String::as_str)
    }

    /// Record the onion service's address (first call wins).
    pub fn set_onion_address(&self, addr: String) {
        let _ = self.inner.onion.set(addr);
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
        .route("/v1/profiles/{key}", get(profile::get).put(profile::put))
        .route("/v1/info", get(api::info))
        .route("/v1/mailbox/{key}", get(mailbox::list).post(mailbox::post))
        .route(
            "/v1/mailbox/{key}/{id}",
            get(mailbox::fetch).delete(mailbox::ack),
        )
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
        .layer(from_fn_with_state(
            state.clone(),
            rate_limit::limit_requests,
        ))
        .layer(from_fn_with_state(state.clone(), metrics::track_http))
        .with_state(state)
}

/// The sockets the server serves on (bound by the caller, so tests can use port 0).
pub struct Listeners {
    /// Public HTTP + WebSocket listener.
    pub http: TcpListener,
    /// The UDP tracker socket, if the UDP tracker is enabled.
    pub udp: Option<UdpSocket>,
    /// The private metrics listener (`/metrics`), if enabled.
    pub metrics: Option<TcpListener>,
    /// The onion-service listener (PROXY v1 headers required), if configured.
    pub onion: Option<TcpListener>,
}

impl Listeners {
    /// Only the public HTTP listener (no UDP tracker, metrics or onion listener).
    #[must_use]
    pub fn http_only(http: TcpListener) -> Self {
        Self {
            http,
            udp: None,
            metrics: None,
            onion: None,
        }
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
    /// A configured address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The embedded onion service could not start (`onion.enabled = true`).
    #[error("cannot start the onion service")]
    Onion(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Open the store named in `config`.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let db = &config.database;
    let opts = StoreOptions {
        max_connections: db.max_connections,
        sqlite_sync_full: db.sqlite_synchronous == config::SqliteSynchronous::Full,
        acquire_timeout_secs: db.acquire_timeout_secs,
        sqlite_inline_lookups: db.sqlite_inline_lookups,
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
///
/// On `shutdown`: readiness turns false, the listeners keep accepting for
/// `http.shutdown_delay_secs`, then they close and in-flight requests get up to
/// `http.shutdown_grace_secs` to finish before the remaining connections are dropped.
pub async fn serve(
    state: AppState,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    listener::serve_all(state, listeners, shutdown).await
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
