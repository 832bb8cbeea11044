//! Latency recording (hdrhistogram), per-run figures, the summary over runs, and the two
//! outputs: a markdown table on stdout and a JSON document (`--json FILE`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Map, Value};

/// Highest latency recorded, in microseconds (60 s); slower answers count as 60 s.
const MAX_MICROS: u64 = 60_000_000;

/// What one worker saw: a latency histogram and outcome counts.
pub struct Recorder {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    outcomes: BTreeMap<String, u64>,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            // Bounds 1 µs – 60 s with 3 significant digits are valid by construction.
            #[allow(clippy::expect_used)]
            hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"),
            ok: 0,
            errors: 0,
            outcomes: BTreeMap::new(),
        }
    }

    /// Record one request that started at `start`. `outcome` is `"ok"` for a success and a
    /// short label (`"404"`, `"io"`, …) otherwise; only successes enter the histogram.
    pub fn record(&mut self, start: Instant, outcome: &str) {
        if outcome == "ok" {
            self.ok += 1;
            self.hist.saturating_record(micros(start.elapsed()).max(1));
        } else {
            self.errors += 1;
        }
        *self.outcomes.entry(outcome.to_owned()).or_default() += 1;
    }

    /// Record a latency measured elsewhere (fan-out delivery).
    pub fn record_latency(&mut self, d: Duration) {
        self.ok += 1;
        self.hist.saturating_record(micros(d).max(1));
        *self.outcomes.entry("ok".to_owned()).or_default() += 1;
    }

    pub fn record_error(&mut self, outcome: &str) {
        self.errors += 1;
        *self.outcomes.entry(outcome.to_owned()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Both histograms share the same bounds, so `add` cannot fail; saturate anyway.
        let _ = self.hist.add(&other.hist);
        self.ok += other.ok;
        self.errors += other.errors;
        for (k, v) in &other.outcomes {
            *self.outcomes.entry(k.clone()).or_default() += v;
        }
    }

    /// The figures of one run that took `elapsed`.
    pub fn finish(&self, elapsed: Duration) -> Run {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let q = |p: f64| {
            if self.hist.is_empty() {
                0
            } else {
                self.hist.value_at_quantile(p)
            }
        };
        Run {
            ok: self.ok,
            errors: self.errors,
            elapsed_s: secs,
            rate: self.ok as f64 / secs,
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            max_us: if self.hist.is_empty() {
                0
            } else {
                self.hist.max()
            },
            outcomes: self.outcomes.clone(),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub ok: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    /// Successful requests (or deliveries) per second.
    pub rate: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Count per outcome label (`ok`, HTTP status, `io`, `timeout`, …).
    pub outcomes: BTreeMap<String, u64>,
}

/// Reads one figure of a run.
type Field = fn(&Run) -> f64;

/// Median, minimum and maximum of one figure over the runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// Everything one invocation measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    /// The scenario's parameters (concurrency, duration, identities, …).
    pub params: Map<String, Value>,
    pub runs: Vec<Run>,
    pub summary: BTreeMap<String, Spread>,
    /// `mixed`: the runs of each request kind (`runs` holds their sum).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_kind: BTreeMap<String, Vec<Run>>,
    /// Scenario-specific figures (RSS, database bytes, rates of phases, …).
    pub extra: Map<String, Value>,
    pub host: Value,
    /// Seconds since the Unix epoch when the report was written.
    pub finished_unix: u64,
}

impl Report {
    pub fn new(scenario: &str, target: &str, params: Map<String, Value>) -> Self {
        Self {
            scenario: scenario.to_owned(),
            target: target.to_owned(),
            params,
            runs: Vec::new(),
            summary: BTreeMap::new(),
            by_kind: BTreeMap::new(),
            extra: Map::new(),
            host: host_info(),
            finished_unix: 0,
        }
    }

    /// Fill `summary` from `runs` and stamp the time.
    pub fn summarise(&mut self) {
        let fields: [(&str, Field); 6] = [
            ("rate", |r| r.rate),
            ("p50_us", |r| r.p50_us as f64),
            ("p90_us", |r| r.p90_us as f64),
            ("p99_us", |r| r.p99_us as f64),
            ("max_us", |r| r.max_us as f64),
            ("errors", |r| r.errors as f64),
        ];
        for (name, f) in fields {
            if let Some(s) = Spread::of(self.runs.iter().map(f)) {
                self.summary.insert(name.to_owned(), s);
            }
        }
        self.finished_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
    }

    /// The markdown table printed on stdout.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let params = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect::<Vec<_>>()
            .join(" ");
        out.push_str(&format!(
            "### {} against {}\n\n{params}\n\n",
            self.scenario, self.target
        ));
        out.push_str("| run | ok | errors | rate/s | p50 ms | p90 ms | p99 ms | max ms |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for (i, r) in self.runs.iter().enumerate() {
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} |\n",
                i + 1,
                r.ok,
                r.errors,
                r.rate,
                ms(r.p50_us as f64),
                ms(r.p90_us as f64),
                ms(r.p99_us as f64),
                ms(r.max_us as f64),
            ));
        }
        if self.runs.len() > 1 {
            let cell = |name: &str, f: fn(f64) -> String| {
                self.summary
                    .get(name)
                    .map(|s| format!("{} ({}–{})", f(s.median), f(s.min), f(s.max)))
                    .unwrap_or_default()
            };
            let count = |v: f64| format!("{v:.0}");
            out.push_str(&format!(
                "| median (min–max) | | {} | {} | {} | {} | {} | {} |\n",
                cell("errors", count),
                cell("rate", count),
                cell("p50_us", ms),
                cell("p90_us", ms),
                cell("p99_us", ms),
                cell("max_us", ms),
            ));
        }
        if !self.by_kind.is_empty() {
            out.push_str(&self.kinds_table());
        }
        let errors: BTreeMap<&String, u64> = self
            .runs
            .iter()
            .flat_map(|r| r.outcomes.iter())
            .filter(|(k, _)| k.as_str() != "ok")
            .fold(BTreeMap::new(), |mut m, (k, v)| {
                *m.entry(k).or_default() += v;
                m
            });
        if !errors.is_empty() {
            out.push_str(&format!("\nnon-ok outcomes: {errors:?}\n"));
        }
        if !self.extra.is_empty() {
            out.push_str("\n| figure | value |\n| --- | ---: |\n");
            for (k, v) in &self.extra {
                out.push_str(&format!("| {k} | {} |\n", plain(v)));
            }
        }
        out.push('\n');
        out
    }

    /// Each kind of request as median (min–max) over the runs.
    fn kinds_table(&self) -> String {
        let mut out = String::from(
            "\n| kind | ok/run | errors/run | rate/s | p50 ms | p99 ms | max ms |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for (kind, runs) in &self.by_kind {
            let cell = |f: Field, fmt: fn(f64) -> String| {
                Spread::of(runs.iter().map(f))
                    .map(|s| format!("{} ({}–{})", fmt(s.median), fmt(s.min), fmt(s.max)))
                    .unwrap_or_default()
            };
            let count = |v: f64| format!("{v:.0}");
            out.push_str(&format!(
                "| {kind} | {} | {} | {} | {} | {} | {} |\n",
                cell(|r| r.ok as f64, count),
                cell(|r| r.errors as f64, count),
                cell(|r| r.rate, count),
                cell(|r| r.p50_us as f64, ms),
                cell(|r| r.p99_us as f64, ms),
                cell(|r| r.max_us as f64, ms),
            ));
        }
        out
    }

    pub fn write_json(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// CPU count, memory and kernel of the machine running the load generator.
fn host_info() -> Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    serde_json::json!({ "cpus": cpus, "mem_total_kib": mem_kib, "kernel": kernel })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn spread_takes_the_middle_value() {
        let s = Spread::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of([4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Spread::of([]).is_none());
    }

    #[test]
    fn recorder_counts_outcomes_and_merges() {
        let mut a = Recorder::new();
        a.record(Instant::now(), "ok");
        a.record(Instant::now(), "404");
        let mut b = Recorder::new();
        b.record_latency(Duration::from_millis(3));
        a.merge(&b);
        let run = a.finish(Duration::from_secs(1));
        assert_eq!((run.ok, run.errors), (2, 1));
        assert_eq!(run.outcomes["404"], 1);
        assert!(run.max_us >= 2990, "{run:?}");
    }
}
