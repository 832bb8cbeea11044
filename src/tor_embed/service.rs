//! Onion services hosted by embedded arti, shared by `megatorrentd`'s `[onion]` service and
//! the client's seeder (`--tor --onion-service`): launch one under a nickname (its key kept
//! in the Tor client's state directory, so the address survives restarts) and accept the
//! streams that ask for one virtual port.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arti_client::{DataStream, TorClient};
use futures::StreamExt;
use safelog::DisplayRedacted;
use tokio_util::sync::CancellationToken;
use tor_cell::relaycell::msg::{Connected, End, EndReason};
use tor_hsservice::config::OnionServiceConfigBuilder;
use tor_hsservice::{HsNickname, RendRequest, RunningOnionService, StreamRequest};
use tor_proto::stream::IncomingStreamRequest;
use tor_rtcompat::PreferredRuntime;

/// Why an onion service could not be launched.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
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

/// A launched service: keep `service` alive while serving `requests`.
pub struct Launched<S> {
    /// The running service (dropping it stops the service).
    pub service: Arc<RunningOnionService>,
    /// Its address, `<56 chars>.onion`.
    pub address: String,
    /// Incoming rendezvous requests, for [`accept_streams`].
    pub requests: S,
}

/// Launch the onion service `nickname` on `client`.
pub fn launch(
    client: &TorClient<PreferredRuntime>,
    nickname: &str,
) -> Result<Launched<impl futures::Stream<Item = RendRequest> + Send + 'static>, ServiceError> {
    let nickname: HsNickname = nickname
        .parse()
        .map_err(|e| ServiceError::Config(Box::new(e)))?;
    let config = OnionServiceConfigBuilder::default()
        .nickname(nickname)
        .build()
        .map_err(|e| ServiceError::Config(Box::new(e)))?;
    let (service, requests) = client
        .launch_onion_service(config)
        .map_err(ServiceError::Launch)?
        .ok_or(ServiceError::NoAddress)?;
    let hsid = service.onion_address().ok_or(ServiceError::NoAddress)?;
    let address = hsid.display_unredacted().to_string();
    Ok(Launched {
        address,
        service,
        requests,
    })
}

/// Serves one accepted stream, given its circuit's number.
type Handler =
    Arc<dyn Fn(DataStream, u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Accept rendezvous requests until `shutdown` (or the stream ends). Each is one circuit,
/// numbered from 1 in this process; every stream on it that asks for `port` is accepted and
/// handed to `serve` with its circuit's number, any other is refused with `DONE` (what other
/// onion service implementations answer).
pub async fn accept_streams<F, Fut>(
    requests: impl futures::Stream<Item = RendRequest>,
    port: u16,
    shutdown: CancellationToken,
    serve: F,
) where
    F: Fn(DataStream, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler: Handler = Arc::new(move |stream, circuit| Box::pin(serve(stream, circuit)));
    let mut requests = std::pin::pin!(requests);
    let mut circuit = 0u64;
    while let Some(rend) = next_unless_shutdown(&mut requests, &shutdown).await {
        circuit = circuit.wrapping_add(1);
        tokio::spawn(serve_circuit(
            rend,
            circuit,
            port,
            shutdown.clone(),
            handler.clone(),
        ));
    }
}

/// Accept one rendezvous request and serve every stream opened on its circuit.
async fn serve_circuit(
    rend: RendRequest,
    circuit: u64,
    port: u16,
    shutdown: CancellationToken,
    handler: Handler,
) {
    let streams = match rend.accept().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "onion service: rendezvous failed");
            return;
        }
    };
    let mut streams = std::pin::pin!(streams);
    while let Some(req) = next_unless_shutdown(&mut streams, &shutdown).await {
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Some(stream) = accept_stream(req, port).await {
                handler(stream, circuit).await;
            }
        });
    }
}

/// The next item of `items`, or `None` once it ends or `shutdown` is cancelled.
async fn next_unless_shutdown<S: futures::Stream + Unpin>(
    items: &mut S,
    shutdown: &CancellationToken,
) -> Option<S::Item> {
    tokio::select! {
        () = shutdown.cancelled() => None,
        next = items.next() => next,
    }
}

/// Accept a `BEGIN` to `port`; refuse anything else.
async fn accept_stream(req: StreamRequest, port: u16) -> Option<DataStream> {
    let wanted = matches!(req.request(), IncomingStreamRequest::Begin(b) if b.port() == port);
    if !wanted {
        let _ = req.reject(End::new_with_reason(EndReason::DONE)).await;
        return None;
    }
    match req.accept(Connected::new_empty()).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(error = %e, "onion service: stream accept failed");
            None
        }
    }
}
