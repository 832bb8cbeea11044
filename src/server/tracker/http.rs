//! HTTP tracker handlers: `GET /announce`, `GET /scrape` and their `/{passkey}` forms.
//!
//! The query is taken as raw bytes from the URI (still percent-encoded) and parsed by
//! [`crate::proto::tracker`]; a generic form decoder would corrupt binary info-hashes.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;

use super::stats::{Outcome, Protocol};
use super::{Refusal, Selection, TrackerStats};
use crate::proto::tracker::{write_scrape, AnnounceRequest, AnnounceResponse, ScrapeRequest};
use crate::server::error::{bencode_response, TrackerError};
use crate::server::AppState;

fn query(uri: &Uri) -> &[u8] {
    uri.query().unwrap_or_default().as_bytes()
}

/// `GET /announce`.
pub async fn announce(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    uri: Uri,
) -> Result<Response, TrackerError> {
    handle_announce(&state, remote, &uri, None).await
}

/// `GET /announce/{passkey}` (private mode; the passkey is ignored otherwise).
pub async fn announce_with_passkey(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(passkey): Path<String>,
    uri: Uri,
) -> Result<Response, TrackerError> {
    handle_announce(&state, remote, &uri, Some(&passkey)).await
}

/// `GET /scrape`.
pub async fn scrape(State(state): State<AppState>, uri: Uri) -> Result<Response, TrackerError> {
    handle_scrape(&state, &uri, None).await
}

/// `GET /scrape/{passkey}`.
pub async fn scrape_with_passkey(
    State(state): State<AppState>,
    Path(passkey): Path<String>,
    uri: Uri,
) -> Result<Response, TrackerError> {
    handle_scrape(&state, &uri, Some(&passkey)).await
}

fn count<T, E>(
    stats: &TrackerStats,
    res: Result<T, E>,
    record: impl FnOnce(&TrackerStats, Outcome),
) -> Result<T, E> {
    record(
        stats,
        if res.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Error
        },
    );
    res
}

async fn handle_announce(
    state: &AppState,
    remote: SocketAddr,
    uri: &Uri,
    passkey: Option<&str>,
) -> Result<Response, TrackerError> {
    let tracker = state.tracker();
    let stats = tracker.stats();
    let req = AnnounceRequest::parse_query(query(uri)).inspect_err(|_| {
        stats.record_invalid(Protocol::Http);
    })?;
    let event = req.event;
    let res = announce_parsed(state, remote, &req, passkey).await;
    count(stats, res, |s, o| {
        s.record_announce(Protocol::Http, event, o)
    })
    .map_err(TrackerError::from)
}

async fn announce_parsed(
    state: &AppState,
    remote: SocketAddr,
    req: &AnnounceRequest,
    passkey: Option<&str>,
) -> Result<Response, Refusal> {
    let tracker = state.tracker();
    tracker.authorize(state.store(), passkey).await?;
    let (input, warning) = tracker.http_input(req, remote)?;
    let want_dict = !req.compact;
    let mut sel = Selection::default();
    let counts = tracker.announce(input, &mut sel)?;
    let cfg = tracker.config();
    let head = AnnounceResponse {
        interval: cfg.interval_secs,
        min_interval: (cfg.min_interval_secs > 0).then_some(cfg.min_interval_secs),
        complete: counts.complete,
        incomplete: counts.incomplete,
        tracker_id: None,
        warning_message: warning,
    };
    // Compact entries take 6 or 18 bytes; dictionary entries about 50, or 120 for a name.
    let mut body =
        Vec::with_capacity(160 + sel.v4.len() * 6 + sel.v6.len() * 18 + sel.dict.len() * 120);
    if !want_dict {
        head.write_compact(&mut body, sel.v4.iter().copied(), sel.v6.iter().copied());
    } else {
        head.write_dict(
            &mut body,
            sel.dict.iter().map(|(a, id)| (a, id)),
            req.no_peer_id,
        );
    }
    Ok(bencode_response(StatusCode::OK, body))
}

async fn handle_scrape(
    state: &AppState,
    uri: &Uri,
    passkey: Option<&str>,
) -> Result<Response, TrackerError> {
    let tracker = state.tracker();
    let stats = tracker.stats();
    let max = usize::try_from(tracker.config().max_scrape_hashes).unwrap_or(0);
    let req = ScrapeRequest::parse_query_capped(query(uri), max).inspect_err(|e| {
        // Too many hashes is a parsed, refused scrape; the rest is unparseable input.
        match e {
            crate::proto::tracker::RequestError::TooManyInfoHashes { .. } => {
                stats.record_scrape(Protocol::Http, Outcome::Error);
            }
            _ => stats.record_invalid(Protocol::Http),
        }
    })?;
    let res = async {
        if req.info_hashes.is_empty() {
            return Err(Refusal::FullScrape);
        }
        tracker.authorize(state.store(), passkey).await?;
        let swarm = tracker.swarm();
        let files: Vec<_> = req
            .info_hashes
            .iter()
            .map(|ih| (*ih, swarm.scrape(ih)))
            .collect();
        let mut body = Vec::with_capacity(16 + files.len() * 80);
        write_scrape(&mut body, &files);
        Ok(bencode_response(StatusCode::OK, body))
    }
    .await;
    count(stats, res, |s, o| s.record_scrape(Protocol::Http, o)).map_err(TrackerError::from)
}
