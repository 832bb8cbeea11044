//! `megatorrent-bench`: a load generator that drives a running server over loopback and
//! prints a markdown table (and JSON with `--json FILE`). See BENCHMARKS.md.
//!
//! The server's rate limits must be raised first, e.g.
//! `MEGATORRENT_LIMITS__READ_QUOTA=1000000r/s MEGATORRENT_LIMITS__WRITE_QUOTA=1000000r/s
//! MEGATORRENT_LIMITS__GLOBAL_WRITE_QUOTA=1000000r/s MEGATORRENT_LIMITS__KEY_WRITE_QUOTA=1000000r/s`.

mod common;
mod fanout;
mod kv;
mod mixed;
mod report;
mod tracker;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::{json, Map, Value};

use crate::common::Target;
use crate::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Sign `--identities` manifests, load them, report rate, DB bytes and RSS.
    Populate,
    /// `GET /v1/manifests/{key}` for random stored keys.
    Lookup,
    /// `PUT /v1/manifests/{key}` with new sequences for random keys.
    Publish,
    /// The proof of concept's `GET /lookup/{key}`.
    PointerLookup,
    /// The proof of concept's `POST /announce`.
    PointerAnnounce,
    /// BitTorrent announces over HTTP.
    AnnounceHttp,
    /// BitTorrent announces over UDP (BEP 15).
    AnnounceUdp,
    /// One publish to `--subscribers` WebSocket subscribers.
    Fanout,
    /// A soak blend of lookups, publishes and announces (`--mix`) while `--subscribers`
    /// WebSocket subscribers watch stored keys.
    Mixed,
}

/// Drive a running megatorrent server (or another tracker) and report throughput and
/// latency.
#[derive(Debug, Clone, Parser)]
#[command(name = "megatorrent-bench", version)]
pub struct Opts {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// The server, `http://HOST:PORT`.
    #[arg(long, default_value = "http://127.0.0.1:6969")]
    target: String,
    /// The UDP tracker address (default: the target's host and port).
    #[arg(long)]
    udp_target: Option<SocketAddr>,
    /// Requests in flight (connections, or UDP sockets); for `fanout`, handshakes in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Measured runs (the table shows each and their median, min and max).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Identities stored by `populate` and used by `lookup`/`publish`/`pointer-*`.
    #[arg(long, default_value_t = 10_000)]
    identities: u64,
    /// Requests signed before each `publish`/`pointer-announce` run (the run stops early
    /// when they are all sent).
    #[arg(long, default_value_t = 50_000)]
    count: u64,
    /// Seed of the deterministic identities (use the same for `populate` and `lookup`).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Torrents in the announce mix.
    #[arg(long, default_value_t = 1_000)]
    torrents: u64,
    /// Peers per torrent in the announce mix.
    #[arg(long, default_value_t = 100)]
    peers: u64,
    /// Percentage of HTTP announces asking for a compact answer.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    compact_percent: u8,
    /// `numwant` of each announce.
    #[arg(long, default_value_t = 50)]
    numwant: u32,
    /// WebSocket subscribers for `fanout` and `mixed`.
    #[arg(long, default_value_t = 1_000)]
    subscribers: u64,
    /// `mixed`: relative weights of the request kinds (`lookup`, `publish`,
    /// `announce-http`, `announce-udp`; a kind left out weighs 0).
    #[arg(
        long,
        default_value = "lookup=70,publish=5,announce-http=15,announce-udp=10"
    )]
    mix: mixed::Weights,
    /// Source addresses 127.0.0.2… that `fanout` spreads its sockets over.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=250))]
    sources: u8,
    /// The server's process id: its RSS is read from /proc before and after.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's SQLite file, to report database bytes (`populate`).
    #[arg(long)]
    sqlite_file: Option<PathBuf>,
    /// The server's PostgreSQL URL, to report database bytes with `psql` (`populate`).
    #[arg(long)]
    pg_url: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A label stored in the JSON (e.g. `sqlite`, `postgres`, `opentracker`).
    #[arg(long, default_value = "")]
    label: String,
}

impl Opts {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.duration)
    }

    fn params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("label".into(), json!(self.label));
        m.insert("concurrency".into(), json!(self.concurrency));
        match self.scenario {
            Scenario::Populate => {
                m.insert("identities".into(), json!(self.identities));
            }
            Scenario::Lookup | Scenario::PointerLookup => {
                m.insert("identities".into(), json!(self.identities));
                m.insert("duration_s".into(), json!(self.duration));
            }
            Scenario::Publish | Scenario::PointerAnnounce => {
                m.insert("identities".into(), json!(self.identities));
                m.insert("duration_s".into(), json!(self.duration));
                m.insert("count".into(), json!(self.count));
            }
            Scenario::AnnounceHttp | Scenario::AnnounceUdp => {
                m.insert("torrents".into(), json!(self.torrents));
                m.insert("peers".into(), json!(self.peers));
                m.insert("numwant".into(), json!(self.numwant));
                m.insert("duration_s".into(), json!(self.duration));
                if self.scenario == Scenario::AnnounceHttp {
                    m.insert("compact_percent".into(), json!(self.compact_percent));
                }
            }
            Scenario::Fanout => {
                m.insert("subscribers".into(), json!(self.subscribers));
                m.insert("sources".into(), json!(self.sources));
            }
            Scenario::Mixed => {
                m.insert("mix".into(), json!(self.mix.to_string()));
                m.insert("identities".into(), json!(self.identities));
                m.insert("subscribers".into(), json!(self.subscribers));
                m.insert("torrents".into(), json!(self.torrents));
                m.insert("peers".into(), json!(self.peers));
                m.insert("duration_s".into(), json!(self.duration));
            }
        }
        m
    }
}

async fn run(opts: Opts) -> anyhow::Result<Report> {
    anyhow::ensure!(opts.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(opts.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(opts.identities > 0, "--identities must be at least 1");
    anyhow::ensure!(
        opts.torrents > 0 && opts.peers > 0,
        "--torrents and --peers must be at least 1"
    );
    // Many sockets: take the hard open-files limit.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let target = Target::parse(&opts.target).await?;
    let name = opts
        .scenario
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let mut report = Report::new(&name, &target.url, opts.params());
    match opts.scenario {
        Scenario::Populate => kv::populate(&opts, &target, &mut report).await?,
        Scenario::Lookup => kv::lookup(&opts, &target, &mut report, false).await?,
        Scenario::PointerLookup => kv::lookup(&opts, &target, &mut report, true).await?,
        Scenario::Publish => kv::publish(&opts, &target, &mut report, false).await?,
        Scenario::PointerAnnounce => kv::publish(&opts, &target, &mut report, true).await?,
        Scenario::AnnounceHttp => tracker::announce_http(&opts, &target, &mut report).await?,
        Scenario::AnnounceUdp => {
            let udp = opts.udp_target.unwrap_or(target.addr);
            report.target = format!("udp://{udp}");
            tracker::announce_udp(&opts, udp, &mut report).await?;
        }
        Scenario::Fanout => fanout::fanout(&opts, &target, &mut report).await?,
        Scenario::Mixed => mixed::mixed(&opts, &target, &mut report).await?,
    }
    report.summarise();
    Ok(report)
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    let json = opts.json.clone();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(run(opts)))
        .and_then(|report| {
            print!("{}", report.markdown());
            if let Some(path) = json {
                report.write_json(&path)?;
            }
            Ok(())
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
