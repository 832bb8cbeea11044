//! `megatorrentd`: the signaling and tracker server.

use std::path::PathBuf;

use clap::Parser;
use megatorrent::server::{self, config::LogFormat, Config, Listeners};
use tokio_util::sync::CancellationToken;

/// Signed torrent feeds: the signaling and BitTorrent tracker server.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file (layered over the defaults; env MEGATORRENT_<SECTION>__<KEY> wins).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Print the default configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Validate this config file (plus the environment) and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_config {
        print!("{}", Config::defaults_toml());
        return Ok(());
    }
    if let Some(path) = args.check_config {
        Config::load(Some(&path))?;
        println!("{}: ok", path.display());
        return Ok(());
    }
    let config = Config::load(args.config.as_deref())?;
    init_tracing(&config);
    tracing::info!(database = %server::config::redact_url(&config.database.url), "starting");
    // Each client connection is a file descriptor: use the whole hard limit.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-files limit");
    }
    let listeners = Listeners::bind(&config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    server::run(config, listeners, shutdown).await?;
    Ok(())
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Cancel `token` on SIGTERM or Ctrl-C.
async fn wait_for_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            },
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    token.cancel();
}
