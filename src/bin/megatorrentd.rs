//! `megatorrentd`: the signaling and tracker server.

use std::path::PathBuf;

use clap::Parser;
use megatorrent::server::{self, admin, process, Config, Listeners};
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
    /// An administrative command instead of serving.
    #[command(subcommand)]
    command: Option<admin::Command>,
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
    if let Some(cmd) = args.command {
        print!("{}", admin::run(&config, cmd).await?);
        return Ok(());
    }
    process::init_tracing(&config);
    tracing::info!(database = %server::config::redact_url(&config.database.url), "starting");
    // Each client connection is a file descriptor: use the whole hard limit.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-files limit");
    }
    let listeners = Listeners::bind(&config).await?;
    let state = server::open_state(config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(process::cancel_on_shutdown_signal(shutdown.clone()));
    tokio::spawn(process::reload_on_sighup(state.clone(), shutdown.clone()));
    server::serve(state, listeners, shutdown).await?;
    Ok(())
}
