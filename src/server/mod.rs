//! The `megatorrentd` server: build the app with [`app`], serve it with [`run`].
//!
//! Shared state is one cheap-to-clone [`AppState`] handle. No lock is held across an
//! `.await`; shutdown is a [`CancellationToken`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::proto::ManifestLimits;
use crate::store::{self, Store, StoreError, StoreOptions};

pub mod admission;
mod api;
pub mod config;
pub mod error;
pub mod extract;
mod listener;
pub mod metered_store;
pub mod metrics;
mod pointer;
pub mod pow;
pub mod proxy_protocol;
pub mod quota;
pub mod rate_limit;

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
    metrics: Arc<metrics::Metrics>,
    rate_limiter: rate_limit::RateLimiter,
    pow: pow::Pow,
    /// Approximate stored identities ([`admission::UNKNOWN_COUNT`] until first loaded).
    identities: AtomicU64,
}

impl AppState {
    /// Build state around an opened store (wrapped in a [`metered_store::MeteredStore`]).
    #[must_use]
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        let manifest_limits = config.manifest_limits();
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
                config,
                manifest_limits,
                ready: AtomicBool::new(true),
                metrics,
                rate_limiter,
                pow,
                identities: AtomicU64::new(admission::UNKNOWN_COUNT),
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

    fn identities(&self) -> &AtomicU64 {
        &self.inner.identities
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
        .route("/announce", post(pointer::announce))
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
    /// The private metrics listener (`/metrics`), if enabled.
    pub metrics: Option<TcpListener>,
    /// The onion-service listener (PROXY v1 headers required), if configured.
    pub onion: Option<TcpListener>,
}

impl Listeners {
    /// Only the public listener.
    #[must_use]
    pub fn http(http: TcpListener) -> Self {
        Self {
            http,
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
    /// A configured address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
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
    let store = open_store(&config).await?;
    serve(AppState::new(store, config), listeners, shutdown).await
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
