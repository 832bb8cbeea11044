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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use futures::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use safelog::DisplayRedacted;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tor_cell::relaycell::msg::{Connected, End, EndReason};
use tor_hsservice::config::OnionServiceConfigBuilder;
use tor_hsservice::{HsNickname, RendRequest, StreamRequest};
use tor_proto::stream::IncomingStreamRequest;

use super::{app, AppState, ServerError};
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
    /// The onion service configuration was rejected.
    #[error("invalid onion service configuration")]
    Config(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// arti failed to launch the service.
    #[error("arti could not launch the onion service")]
    Launch(#[source] arti_client::Error),
    /// The service was launched but has no identity key.
    #[error("the onion service has no address")]
    NoAddress,
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
    let nickname: HsNickname = NICKNAME
        .parse()
        .map_err(|e| OnionError::Config(Box::new(e)))?;
    let svc_config = OnionServiceConfigBuilder::default()
        .nickname(nickname)
        .build()
        .map_err(|e| OnionError::Config(Box::new(e)))?;
    let (service, rend_requests) = client
        .launch_onion_service(svc_config)
        .map_err(OnionError::Launch)?
        .ok_or(OnionError::NoAddress)?;
    let hsid = service.onion_address().ok_or(OnionError::NoAddress)?;
    let addr = hsid.display_unredacted().to_string();
    match cfg.port {
        80 => tracing::info!("onion service: http://{addr}"),
        port => tracing::info!("onion service: http://{addr}:{port}"),
    }
    state.set_onion_address(addr);

    let router = app(state.clone());
    Ok(tokio::spawn(async move {
        // Keep the client and the service alive for as long as we serve.
        let _keep = (client, service);
        accept_loop(rend_requests, router, cfg.port, shutdown).await;
        tracing::info!("onion service: stopped");
    }))
}

async fn accept_loop(
    rend_requests: impl futures::Stream<Item = RendRequest>,
    router: Router,
    port: u16,
    shutdown: CancellationToken,
) {
    let next_id = Arc::new(AtomicU64::new(1));
    let mut rend_requests = std::pin::pin!(rend_requests);
    loop {
        let rend = tokio::select! {
            () = shutdown.cancelled() => return,
            next = rend_requests.next() => match next {
                Some(r) => r,
                None => return,
            },
        };
        let circuit = OnionCircuit(next_id.fetch_add(1, Ordering::Relaxed));
        tokio::spawn(serve_circuit(
            rend,
            circuit,
            router.clone(),
            port,
            shutdown.clone(),
        ));
    }
}

/// Accept one rendezvous request and serve every stream opened on its circuit.
async fn serve_circuit(
    rend: RendRequest,
    circuit: OnionCircuit,
    router: Router,
    port: u16,
    shutdown: CancellationToken,
) {
    let mut streams = match rend.accept().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "onion service: rendezvous failed");
            return;
        }
    };
    loop {
        let req = tokio::select! {
            () = shutdown.cancelled() => return,
            next = streams.next() => match next {
                Some(r) => r,
                None => return,
            },
        };
        tokio::spawn(serve_stream(
            req,
            circuit,
            router.clone(),
            port,
            shutdown.clone(),
        ));
    }
}

/// Accept a `BEGIN` to our port and serve HTTP/1.1 on it; refuse anything else with `DONE`
/// (what other onion service implementations answer).
async fn serve_stream(
    req: StreamRequest,
    circuit: OnionCircuit,
    router: Router,
    port: u16,
    shutdown: CancellationToken,
) {
    let wanted = matches!(req.request(), IncomingStreamRequest::Begin(b) if b.port() == port);
    if !wanted {
        let _ = req.reject(End::new_with_reason(EndReason::DONE)).await;
        return;
    }
    let stream = match req.accept(Connected::new_empty()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "onion service: stream accept failed");
            return;
        }
    };
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
