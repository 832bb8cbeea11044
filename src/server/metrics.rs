//! Prometheus metrics: one [`Metrics`] value on its own (non-global) [`Registry`], served on
//! the private metrics listener (`metrics.listen`, path `/metrics`), never on the public one.
//!
//! Every label value comes from a small fixed set: route *templates* (axum's
//! [`MatchedPath`], never the raw path), methods, status classes, and the enums below. Keys,
//! addresses, info-hashes and onion names never become labels. Known label sets are
//! initialised to zero so dashboards and `rate()` see series before the first event.
//!
//! # Adding metrics from other subsystems
//!
//! Subsystems that keep their own atomics (the tracker's `TrackerStats`, the WebSocket hub's
//! `HubStats`) export them through [`Metrics::register_collector`], usually with a
//! [`SnapshotCollector`] whose closures read the atomics at scrape time. Reserved names (see
//! `docs/operations.md`): `megatorrent_tracker_announces_total{protocol,event,result}`,
//! `megatorrent_tracker_scrapes_total{protocol,result}`, `megatorrent_tracker_torrents`,
//! `megatorrent_tracker_peers{kind}`, `megatorrent_ws_connections`,
//! `megatorrent_ws_disconnects_total{reason}`, `megatorrent_ws_subscriptions`,
//! `megatorrent_ws_pushes_total`, `megatorrent_ws_slow_client_drops_total`,
//! `megatorrent_ws_mailbox_size`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::{admission, AppState};

mod labels;
mod snapshot;
mod subsystems;

pub use labels::{
    DbOp, Limiter, ListenerKind, PowResult, PublishKind, PublishResult, RejectReason,
};
pub use snapshot::{Samples, SnapshotCollector, SnapshotKind};

/// Latency buckets (seconds), fine below a millisecond where most requests land.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// A metrics registration or encoding failure.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The registry refused a collector (duplicate or invalid name).
    #[error("cannot register metrics")]
    Register(#[from] prometheus::Error),
    /// A [`SnapshotCollector`] family had an invalid name or label.
    #[error("invalid metric family: {0}")]
    Invalid(String),
}

/// The metric families owned by the server (built once; see [`Metrics::new`]).
struct Families {
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    http_in_flight: IntGauge,
    publishes: IntCounterVec,
    rate_limited: IntCounterVec,
    pow_checks: IntCounterVec,
    db_duration: HistogramVec,
    db_errors: IntCounterVec,
    conns_open: IntGaugeVec,
    conns_accepted: IntCounterVec,
    conns_rejected: IntCounterVec,
}

/// The server's metrics. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    /// `None` only if building the fixed families failed, which a unit test rules out; the
    /// server then runs without its own metrics rather than refusing to start.
    families: Option<Families>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn histogram(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let h = HistogramVec::new(opts, labels)?;
    reg.register(Box::new(h.clone()))?;
    Ok(h)
}

fn gauge_vec(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

impl Families {
    fn build(reg: &Registry) -> prometheus::Result<Self> {
        let build_info = gauge_vec(
            reg,
            "megatorrent_build_info",
            "Always 1; the version label says which build is running.",
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let http_in_flight = IntGauge::new(
            "megatorrent_http_requests_in_flight",
            "Requests being handled on the public listener.",
        )?;
        reg.register(Box::new(http_in_flight.clone()))?;
        let f = Self {
            http_requests: counter(
                reg,
                "megatorrent_http_requests_total",
                "Requests answered, by route template, method and status class.",
                &["route", "method", "status"],
            )?,
            http_duration: histogram(
                reg,
                "megatorrent_http_request_duration_seconds",
                "Time from request head to response head, by route template and method.",
                &["route", "method"],
            )?,
            http_in_flight,
            publishes: counter(
                reg,
                "megatorrent_publishes_total",
                "Publish attempts by kind and result.",
                &["kind", "result"],
            )?,
            rate_limited: counter(
                reg,
                "megatorrent_rate_limited_total",
                "Requests refused by a rate limiter, by limiter.",
                &["limiter"],
            )?,
            pow_checks: counter(
                reg,
                "megatorrent_pow_checks_total",
                "Proof-of-work admission checks of writes, by result.",
                &["result"],
            )?,
            db_duration: histogram(
                reg,
                "megatorrent_db_query_duration_seconds",
                "Store call latency by operation (including waiting for a pooled connection).",
                &["operation"],
            )?,
            db_errors: counter(
                reg,
                "megatorrent_db_errors_total",
                "Store calls that failed, by operation.",
                &["operation"],
            )?,
            conns_open: gauge_vec(
                reg,
                "megatorrent_connections_open",
                "Client connections currently open, by listener.",
                &["listener"],
            )?,
            conns_accepted: counter(
                reg,
                "megatorrent_connections_accepted_total",
                "Client connections accepted, by listener.",
                &["listener"],
            )?,
            conns_rejected: counter(
                reg,
                "megatorrent_connections_rejected_total",
                "Client connections closed before serving, by listener and reason.",
                &["listener", "reason"],
            )?,
        };
        f.zero();
        Ok(f)
    }

    /// Create every known label combination at zero.
    fn zero(&self) {
        for k in PublishKind::ALL {
            for r in PublishResult::ALL {
                self.publishes.with_label_values(&[k.as_str(), r.as_str()]);
            }
        }
        for l in Limiter::ALL {
            self.rate_limited.with_label_values(&[l.as_str()]);
        }
        for r in PowResult::ALL {
            self.pow_checks.with_label_values(&[r.as_str()]);
        }
        for op in DbOp::ALL {
            self.db_duration.with_label_values(&[op.as_str()]);
            self.db_errors.with_label_values(&[op.as_str()]);
        }
        for l in ListenerKind::ALL {
            self.conns_open.with_label_values(&[l.as_str()]);
            self.conns_accepted.with_label_values(&[l.as_str()]);
            for r in RejectReason::ALL {
                self.conns_rejected
                    .with_label_values(&[l.as_str(), r.as_str()]);
            }
        }
    }
}

impl Metrics {
    /// A fresh registry with every server metric and the process collector registered.
    #[must_use]
    pub fn new() -> Self {
        let registry = Registry::new();
        let families = match Families::build(&registry) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(error = %e, "metrics disabled: cannot build the metric families");
                None
            }
        };
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = registry.register(Box::new(process)) {
                tracing::warn!(error = %e, "process metrics unavailable");
            }
        }
        Self { registry, families }
    }

    /// Register another collector on this registry: the integration point for the tracker's
    /// and the WebSocket hub's statistics (see the module docs and [`SnapshotCollector`]).
    pub fn register_collector(&self, c: Box<dyn Collector>) -> Result<(), MetricsError> {
        Ok(self.registry.register(c)?)
    }

    /// Register a [`SnapshotCollector`], reporting families it could not describe.
    pub fn register_snapshot(&self, c: SnapshotCollector) -> Result<(), MetricsError> {
        if let Some(bad) = c.invalid().first() {
            return Err(MetricsError::Invalid(bad.clone()));
        }
        self.register_collector(Box::new(c))
    }

    /// The registry, for subsystems that prefer to register their own metric vectors.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of everything registered.
    pub fn encode(&self) -> Result<String, MetricsError> {
        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }

    /// Count a publish.
    pub fn publish(&self, kind: PublishKind, result: PublishResult) {
        if let Some(f) = &self.families {
            f.publishes
                .with_label_values(&[kind.as_str(), result.as_str()])
                .inc();
        }
    }

    /// Count a request refused by `limiter`.
    pub fn rate_limited(&self, limiter: Limiter) {
        if let Some(f) = &self.families {
            f.rate_limited.with_label_values(&[limiter.as_str()]).inc();
        }
    }

    /// Count a proof-of-work check.
    pub fn pow_check(&self, result: PowResult) {
        if let Some(f) = &self.families {
            f.pow_checks.with_label_values(&[result.as_str()]).inc();
        }
    }

    /// Record one store call.
    pub fn db_call(&self, op: DbOp, started: Instant, ok: bool) {
        if let Some(f) = &self.families {
            f.db_duration
                .with_label_values(&[op.as_str()])
                .observe(started.elapsed().as_secs_f64());
            if !ok {
                f.db_errors.with_label_values(&[op.as_str()]).inc();
            }
        }
    }

    /// A connection was accepted on `listener`; the gauge drops when the guard does.
    #[must_use]
    pub fn connection_opened(self: &std::sync::Arc<Self>, listener: ListenerKind) -> ConnGuard {
        if let Some(f) = &self.families {
            f.conns_accepted
                .with_label_values(&[listener.as_str()])
                .inc();
            f.conns_open.with_label_values(&[listener.as_str()]).inc();
        }
        ConnGuard {
            metrics: std::sync::Arc::clone(self),
            listener,
        }
    }

    /// A connection on `listener` was closed before being served.
    pub fn connection_rejected(&self, listener: ListenerKind, reason: RejectReason) {
        if let Some(f) = &self.families {
            f.conns_rejected
                .with_label_values(&[listener.as_str(), reason.as_str()])
                .inc();
        }
    }

    fn request_done(&self, route: &str, method: &str, status: StatusCode, started: Instant) {
        if let Some(f) = &self.families {
            f.http_requests
                .with_label_values(&[route, method, status_class(status)])
                .inc();
            f.http_duration
                .with_label_values(&[route, method])
                .observe(started.elapsed().as_secs_f64());
        }
    }
}

/// Decrements the open-connections gauge when dropped.
pub struct ConnGuard {
    metrics: std::sync::Arc<Metrics>,
    listener: ListenerKind,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(f) = &self.metrics.families {
            f.conns_open
                .with_label_values(&[self.listener.as_str()])
                .dec();
        }
    }
}

fn status_class(s: StatusCode) -> &'static str {
    match s.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: count and time every request by route template. Installed with
/// `Router::layer`, so axum has already matched the route ([`MatchedPath`] is set);
/// requests no route matched are labelled `unmatched`.
pub async fn track_http(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let metrics = state.metrics();
    if let Some(f) = &metrics.families {
        f.http_in_flight.inc();
    }
    let publish = publish_kind(&route, req.method());
    let resp = next.run(req).await;
    if let Some(f) = &metrics.families {
        f.http_in_flight.dec();
    }
    metrics.request_done(&route, method, resp.status(), started);
    if let Some(kind) = publish {
        let result = resp
            .extensions()
            .get::<PublishResult>()
            .copied()
            .unwrap_or_else(|| publish_result_of(resp.status()));
        metrics.publish(kind, result);
    }
    resp
}

/// Which publish a route template and method are, if any.
fn publish_kind(route: &str, method: &Method) -> Option<PublishKind> {
    match (route, method) {
        ("/v1/manifests/{key}", &Method::PUT) => Some(PublishKind::Manifest),
        ("/announce", &Method::POST) => Some(PublishKind::Pointer),
        ("/v1/profiles/{key}", &Method::PUT) => Some(PublishKind::Profile),
        _ => None,
    }
}

/// The result of a publish the handler did not classify (refused before or by it).
fn publish_result_of(status: StatusCode) -> PublishResult {
    match status {
        StatusCode::CONFLICT => PublishResult::Conflict,
        StatusCode::PAYLOAD_TOO_LARGE => PublishResult::TooLarge,
        StatusCode::TOO_MANY_REQUESTS => PublishResult::RateLimited,
        StatusCode::PRECONDITION_REQUIRED => PublishResult::PowRequired,
        StatusCode::INSUFFICIENT_STORAGE => PublishResult::StoreFull,
        s if s.is_success() => PublishResult::Updated,
        s if s.is_client_error() => PublishResult::Invalid,
        _ => PublishResult::Error,
    }
}

/// Scrape-time gauges: pool usage, limiter sizes, PoW difficulty, identities. The
/// closures hold a weak reference so the registry never keeps the state alive.
pub(super) fn register_state_gauges(state: &AppState) {
    use SnapshotKind::Gauge;
    let weak = std::sync::Arc::downgrade(&state.inner);
    let read = move |f: fn(&super::Inner) -> Samples| {
        let weak = weak.clone();
        move || weak.upgrade().map(|i| f(&i)).unwrap_or_default()
    };
    let c = SnapshotCollector::new()
        .family(
            "megatorrent_db_pool_connections",
            "Database pool connections by state.",
            Gauge,
            &["state"],
            read(|i| {
                let Some(u) = i.store.pool_usage() else {
                    return vec![];
                };
                vec![
                    (vec!["idle"], f64::from(u.idle)),
                    (vec!["in_use"], f64::from(u.open.saturating_sub(u.idle))),
                    (vec!["max"], f64::from(u.max)),
                ]
            }),
        )
        .family(
            "megatorrent_db_manifest_batches_total",
            "Manifest group-commit transactions, by result (failed ones are retried singly).",
            SnapshotKind::Counter,
            &["result"],
            read(|i| match i.store.group_commit_stats() {
                Some(g) => vec![
                    (vec!["committed"], g.batches as f64),
                    (vec!["failed"], g.failed_batches as f64),
                ],
                None => vec![],
            }),
        )
        .family(
            "megatorrent_db_manifest_batch_writes_total",
            "Manifest writes committed by group-commit transactions.",
            SnapshotKind::Counter,
            &[],
            read(|i| match i.store.group_commit_stats() {
                Some(g) => vec![(vec![], g.writes as f64)],
                None => vec![],
            }),
        )
        .family(
            "megatorrent_rate_limit_tracked_keys",
            "Client and publisher keys held by the rate limiters.",
            Gauge,
            &[],
            read(|i| vec![(vec![], i.rate_limiter.tracked() as f64)]),
        )
        .family(
            "megatorrent_pow_difficulty",
            "Proof-of-work difficulty (leading zero bits) demanded of writes now; 0 = none.",
            Gauge,
            &[],
            read(|i| vec![(vec![], f64::from(i.pow.difficulty()))]),
        )
        .family(
            "megatorrent_webtorrent_relays_total",
            "WebTorrent signalling relayed between peers, by kind.",
            SnapshotKind::Counter,
            &["kind"],
            read(|i| {
                let r = i.ws.swarms().relay_counts();
                vec![
                    (vec!["offer"], r.offers as f64),
                    (vec!["answer"], r.answers as f64),
                ]
            }),
        )
        .family(
            "megatorrent_mailbox_messages",
            "Unexpired mailbox messages over all recipients, as of the last purge.",
            Gauge,
            &[],
            read(|i| match i.mail_gauges.known.load(Ordering::Relaxed) {
                true => vec![(
                    vec![],
                    i.mail_gauges.messages.load(Ordering::Relaxed) as f64,
                )],
                false => vec![],
            }),
        )
        .family(
            "megatorrent_mailbox_bytes",
            "Envelope bytes of the unexpired mailbox messages, as of the last purge.",
            Gauge,
            &[],
            read(|i| match i.mail_gauges.known.load(Ordering::Relaxed) {
                true => vec![(vec![], i.mail_gauges.bytes.load(Ordering::Relaxed) as f64)],
                false => vec![],
            }),
        )
        .family(
            "megatorrent_identities",
            "Stored identities (manifests plus pointer records), as last counted.",
            Gauge,
            &[],
            read(|i| match i.identities.load(Ordering::Relaxed) {
                admission::UNKNOWN_COUNT => vec![],
                n => vec![(vec![], n as f64)],
            }),
        );
    if let Err(e) = state.inner.metrics.register_snapshot(c) {
        tracing::error!(error = %e, "cannot register the server gauges");
    }
    let tracker = subsystems::tracker(state.inner.tracker.stats());
    let hub = subsystems::hub(state.inner.pubsub.hub().stats());
    for c in [tracker, hub] {
        if let Err(e) = state.inner.metrics.register_snapshot(c) {
            tracing::error!(error = %e, "cannot register the tracker and WebSocket metrics");
        }
    }
}

/// `GET /metrics` on the metrics listener.
pub async fn serve_metrics(State(state): State<AppState>) -> Response {
    match state.metrics().encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The router of the metrics listener: `/metrics` only.
pub fn metrics_app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(serve_metrics))
        .with_state(state)
}

#[cfg(test)]
mod tests;
