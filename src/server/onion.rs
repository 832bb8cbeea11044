//! `megatorrentd` as a Tor onion service through embedded arti (`[onion]`, feature
//! `onion-server`): no Tor daemon.
//!
//! At start-up the server bootstraps arti (state, cache and the service's identity key in
//! `onion.key_dir`, so the `.onion` address survives restarts), launches the service, logs
//! its address and reports it in `/v1/info` as `"onion"`. Each rendezvous request that
//! arrives is accepted as one rendezvous circuit; every stream on it that asks for
//! `onion.port` is served with the same axum app as the TCP listener, over HTTP/1.1.
//!
//! ## Request extensions
//!
//! Requests that arrive through the onion service carry:
//! * [`OnionCircuit`] — a process-unique id of the rendezvous circuit the request came on.
//!   Behind an onion service every client is anonymous, so this is the finest key a rate
//!   limiter has: one client keeps one circuit for its streams (Tor rotates circuits about
//!   every ten minutes, and a client may open more, so it is a key, not an identity).
//! * `axum::extract::ConnectInfo<SocketAddr>` = `127.0.0.1:0`, so extractors written for
//!   the TCP listener keep working (the same address a `HiddenServicePort` set-up shows).

use std::net::SocketAddr;
use std::time::Duration;

use arti_client::DataStream;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{app, AppState, ServerError};
use crate::tor_embed::service::{self, ServiceError};
use crate::tor_embed::{self, ArtiError, ArtiSetup, CleanStream};

/// The rendezvous circuit a request arrived on (a request extension; see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OnionCircuit(pub u64);

/// The nickname arti files the service's keys and state under.
const NICKNAME: &str = "megatorrentd";

/// How long reading one request's headers may take on an onion stream.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a finished stream waits for the client to hang up before we close it.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Why the onion service could not start.
#[derive(Debug, thiserror::Error)]
pub enum OnionError {
    /// Tor could not be configured or bootstrapped.
    #[error(transparent)]
    Tor(#[from] ArtiError),
    /// The service could not be launched.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<OnionError> for ServerError {
    fn from(e: OnionError) -> Self {
        ServerError::Onion(Box::new(e))
    }
}

/// Bootstrap Tor, launch the service, record its address in `state`, and serve it until
/// `shutdown`. Returns once the service is launched; the handle ends after shutdown.
pub async fn start(
    state: AppState,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, OnionError> {
    let cfg = state.config().onion.clone();
    let setup = ArtiSetup::under(&cfg.key_dir, cfg.tor_config.clone());
    tracing::info!(key_dir = %cfg.key_dir.display(), "onion service: starting Tor");
    let client = tor_embed::bootstrap(
        &setup,
        Duration::from_secs(cfg.bootstrap_timeout_secs),
        |line| tracing::info!("{line}"),
    )
    .await?;
    let launched = service::launch(&client, NICKNAME)?;
    let addr = launched.address.clone();
    match cfg.port {
        80 => tracing::info!("onion service: http://{addr}"),
        port => tracing::info!("onion service: http://{addr}:{port}"),
    }
    state.set_onion_address(addr);

    let router = app(state.clone());
    Ok(tokio::spawn(async move {
        // Keep the client and the service alive for as long as we serve.
        let _keep = (client, launched.service);
        let serve_shutdown = shutdown.clone();
        service::accept_streams(launched.requests, cfg.port, shutdown, move |stream, id| {
            serve_http(
                stream,
                OnionCircuit(id),
                router.clone(),
                serve_shutdown.clone(),
            )
        })
        .await;
        tracing::info!("onion service: stopped");
    }))
}

/// Serve HTTP/1.1 on one accepted onion stream.
async fn serve_http(
    stream: DataStream,
    circuit: OnionCircuit,
    router: Router,
    shutdown: CancellationToken,
) {
    let mut stream = CleanStream::lingering(stream);
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let svc = tower::service_fn(move |mut req: axum::http::Request<Incoming>| {
        req.extensions_mut().insert(circuit);
        // The rate limiter keys onion clients by circuit (ids wrap at 2^32).
        let id = u32::try_from(circuit.0 & u64::from(u32::MAX)).unwrap_or(0);
        req.extensions_mut()
            .insert(super::rate_limit::CircuitId(id));
        req.extensions_mut().insert(ConnectInfo(loopback));
        tower::ServiceExt::oneshot(router.clone(), req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(&mut stream), TowerToHyperService::new(svc));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "onion service: connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await;
        }
    }
    // Leave the closing to the client (arti can only end a stream with reason MISC, which
    // an arti client would report as an error); close ourselves after a grace period.
    stream.close_after_peer(CLOSE_GRACE).await;
}
