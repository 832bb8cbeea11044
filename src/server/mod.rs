//! The `megatorrentd` server: build the app with [`app`], serve it with [`run`].
//!
//! Shared state is one cheap-to-clone [`AppState`] handle. No lock is held across an
//! `.await`; shutdown is a [`CancellationToken`].

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::proto::ManifestLimits;
use crate::store::{self, Store, StoreError, StoreOptions};

mod api;
pub mod config;
pub mod error;
pub mod extract;
#[cfg(feature = "onion-server")]
pub mod onion;
mod pointer;

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
    /// `<56 chars>.onion` once the embedded onion service is up.
    onion: OnceLock<String>,
}

impl AppState {
    /// Build state around an opened store.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        let manifest_limits = config.manifest_limits();
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                manifest_limits,
                ready: AtomicBool::new(true),
                onion: OnceLock::new(),
            }),
        }
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
        .with_state(state)
}

/// The sockets the server serves on (bound by the caller, so tests can use port 0).
pub struct Listeners {
    /// Public HTTP + WebSocket listener.
    pub http: TcpListener,
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
pub async fn serve(
    state: AppState,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let grace = Duration::from_secs(state.config().http.shutdown_grace_secs);
    let addr = listeners.http.local_addr()?;
    tracing::info!(
        backend = state.store().backend(),
        "listening on http://{addr}"
    );
    #[cfg(feature = "onion-server")]
    let _onion = match state.config().onion.enabled {
        true => Some(onion::start(state.clone(), shutdown.clone()).await?),
        false => None,
    };
    let router = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let drain = CancellationToken::new();
    let drain_signal = drain.clone();
    let server = axum::serve(listeners.http, router)
        .with_graceful_shutdown(async move { drain_signal.cancelled().await });
    let mut server = std::pin::pin!(server.into_future());

    tokio::select! {
        res = &mut server => {
            res?;
        }
        () = shutdown.cancelled() => {
            tracing::info!(grace_secs = grace.as_secs(), "shutting down: draining requests");
            state.set_not_ready();
            drain.cancel();
            match tokio::time::timeout(grace, &mut server).await {
                Ok(res) => res?,
                Err(_) => tracing::warn!("grace period over; dropping remaining connections"),
            }
        }
    }
    state.store().close().await;
    tracing::info!("stopped");
    Ok(())
}
