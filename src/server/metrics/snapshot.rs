//! [`SnapshotCollector`]: export values that live elsewhere (atomics, pool sizes) without
//! copying them into prometheus metric objects on every change.
//!
//! Each family is a closure that reads the current values when Prometheus scrapes. This is
//! the intended way for subsystems that keep their own counters — the tracker's
//! `TrackerStats`, the WebSocket hub's `HubStats` — to appear on `/metrics`:
//!
//! ```
//! # use std::sync::Arc;
//! # use std::sync::atomic::{AtomicU64, Ordering};
//! use megatorrent::server::metrics::{Metrics, SnapshotCollector, SnapshotKind};
//!
//! let torrents = Arc::new(AtomicU64::new(3));
//! let metrics = Metrics::new();
//! let t = Arc::clone(&torrents);
//! let collector = SnapshotCollector::new().family(
//!     "megatorrent_tracker_torrents",
//!     "Torrents the tracker currently holds peers for.",
//!     SnapshotKind::Gauge,
//!     &[],
//!     move || vec![(vec![], t.load(Ordering::Relaxed) as f64)],
//! );
//! metrics.register_collector(Box::new(collector)).unwrap();
//! assert!(metrics.encode().unwrap().contains("megatorrent_tracker_torrents 3"));
//! ```
//!
//! Label values returned by a closure must come from small fixed sets (protocol, event,
//! result, reason), never from keys, addresses or info-hashes.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// Whether a family is a monotonically increasing counter or a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// Only goes up (name it `…_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One family's samples: `(label values in `label_names` order, value)`.
pub type Samples = Vec<(Vec<&'static str>, f64)>;

type Reader = Box<dyn Fn() -> Samples + Send + Sync>;

struct Family {
    desc: Desc,
    kind: SnapshotKind,
    label_names: Vec<&'static str>,
    read: Reader,
}

/// A [`Collector`] made of closures read at scrape time. Register it with
/// [`Metrics::register_collector`](super::Metrics::register_collector).
#[derive(Default)]
pub struct SnapshotCollector {
    families: Vec<Family>,
    /// Families whose name or help did not form a valid descriptor (reported at register).
    invalid: Vec<String>,
}

impl SnapshotCollector {
    /// An empty collector.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a family named `name` with `help`, labelled by `label_names`, whose samples
    /// `read` returns at each scrape.
    #[must_use]
    pub fn family(
        mut self,
        name: &str,
        help: &str,
        kind: SnapshotKind,
        label_names: &[&'static str],
        read: impl Fn() -> Samples + Send + Sync + 'static,
    ) -> Self {
        let names = label_names.iter().map(|s| (*s).to_owned()).collect();
        match Desc::new(name.to_owned(), help.to_owned(), names, Default::default()) {
            Ok(desc) => self.families.push(Family {
                desc,
                kind,
                label_names: label_names.to_vec(),
                read: Box::new(read),
            }),
            Err(e) => self.invalid.push(format!("{name}: {e}")),
        }
        self
    }

    /// Descriptor problems found while building, if any.
    pub(super) fn invalid(&self) -> &[String] {
        &self.invalid
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.families.iter().map(|f| &f.desc).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.families
            .iter()
            .map(|f| {
                let mut mf = MetricFamily::default();
                mf.set_name(f.desc.fq_name.clone());
                mf.set_help(f.desc.help.clone());
                mf.set_field_type(match f.kind {
                    SnapshotKind::Counter => MetricType::COUNTER,
                    SnapshotKind::Gauge => MetricType::GAUGE,
                });
                let metrics = (f.read)()
                    .into_iter()
                    .filter(|(values, _)| values.len() == f.label_names.len())
                    .map(|(values, v)| sample(f, &values, v))
                    .collect();
                mf.set_metric(metrics);
                mf
            })
            .collect()
    }
}

fn sample(f: &Family, values: &[&'static str], v: f64) -> Metric {
    let labels = f
        .label_names
        .iter()
        .zip(values)
        .map(|(n, v)| {
            let mut lp = LabelPair::default();
            lp.set_name((*n).to_owned());
            lp.set_value((*v).to_owned());
            lp
        })
        .collect();
    let mut m = Metric::from_label(labels);
    match f.kind {
        SnapshotKind::Counter => {
            let mut c = Counter::default();
            c.set_value(v);
            m.set_counter(c);
        }
        SnapshotKind::Gauge => {
            let mut g = Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
        }
    }
    m
}
