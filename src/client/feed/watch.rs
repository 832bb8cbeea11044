//! `find --watch`: after the current feed, follow newer manifests — pushed over the
//! server's WebSocket subscription (with its reconnection logic), or polled over HTTP with
//! `--interval` — and print each new message once.

use std::io::Write;
use std::time::Duration;

use tokio::sync::watch;

use super::read::Reader;
use super::{FeedError, FindArgs};
use crate::client::cli::{self, Cli, CliError};
use crate::client::identity::Home;
use crate::client::seeder;
use crate::client::subscribe as live;
use crate::proto::Manifest;

/// How long a watch waits before retrying torrents that could not be downloaded (unless a
/// newer manifest comes first).
pub const RETRY_FAILED: Duration = Duration::from_secs(30);

/// What the watch has seen.
struct State {
    last: Manifest,
    printed: u64,
    pending: bool,
}

impl State {
    fn newer(&self, m: &Manifest) -> bool {
        m.sequence() > self.last.sequence()
    }

    /// Read `m` (newer than the last one) and print what is new.
    async fn apply(
        &mut self,
        reader: &mut Reader<'_>,
        m: Manifest,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CliError> {
        self.last = m;
        self.retry(reader, out).await
    }

    /// Read the last manifest again (downloading what failed before).
    async fn retry(
        &mut self,
        reader: &mut Reader<'_>,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CliError> {
        let pass = reader.pass(&self.last, out).await?;
        self.printed += pass.printed;
        self.pending = pass.failed > 0;
        if self.pending {
            cli::note(&format!(
                "could not download {} of {} torrents; retrying in {}s or at the next update",
                pass.failed,
                pass.total,
                RETRY_FAILED.as_secs()
            ));
        }
        Ok(())
    }

    fn done(&self, args: &FindArgs) -> bool {
        args.count.is_some_and(|n| self.printed >= n)
    }
}

/// Follow the feed after `first` was printed, until interrupted (SIGINT/SIGTERM, exit 0),
/// `--count` new messages were printed, or `--max-time` passed (an error if `--count`
/// was given and not reached).
pub(super) async fn watch(
    cli: &Cli,
    home: &Home,
    args: &FindArgs,
    reader: &mut Reader<'_>,
    first: Manifest,
    pending: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let mut state = State {
        last: first,
        printed: 0,
        pending,
    };
    if state.done(args) {
        return Ok(());
    }
    let limit = args.max_time.map(Duration::from_secs);
    let outcome = {
        let run = follow(cli, home, args, reader, &mut state, out);
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => Some(r),
            () = time_limit(limit) => None,
            () = seeder::shutdown_signal() => Some(Ok(())),
        }
    };
    match (outcome, args.count) {
        (Some(r), _) => r,
        (None, Some(wanted)) if state.printed < wanted => Err(FeedError::WatchTimedOut {
            got: state.printed,
            wanted,
            secs: args.max_time.unwrap_or(0),
        }
        .into()),
        (None, _) => Ok(()),
    }
}

async fn time_limit(limit: Option<Duration>) {
    match limit {
        Some(l) => tokio::time::sleep(l).await,
        None => std::future::pending().await,
    }
}

async fn follow(
    cli: &Cli,
    home: &Home,
    args: &FindArgs,
    reader: &mut Reader<'_>,
    state: &mut State,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    match args.interval {
        Some(secs) => poll(cli, home, args, reader, state, secs, out).await,
        None => subscribe(cli, home, args, reader, state, out).await,
    }
}

/// `--interval`: fetch the manifest over HTTP every `secs` seconds (a failed poll is
/// reported and retried at the next interval).
async fn poll(
    cli: &Cli,
    home: &Home,
    args: &FindArgs,
    reader: &mut Reader<'_>,
    state: &mut State,
    secs: u64,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let client = cli::signaling(cli, home).await?;
    let key = *reader.key();
    loop {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        match client.get_manifest(&key).await {
            Ok(Some(m)) if state.newer(&m) => state.apply(reader, m, out).await?,
            Ok(_) if state.pending => state.retry(reader, out).await?,
            Ok(_) => {}
            Err(e) => cli::note(&format!(
                "warning: cannot poll the feed ({e:#}); retrying in {secs}s"
            )),
        }
        if state.done(args) {
            return Ok(());
        }
    }
}

/// Aborts the subscription task when the watch ends.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Follow the key over the WebSocket (a task that reconnects on its own) and read each
/// newer manifest it hands over.
async fn subscribe(
    cli: &Cli,
    home: &Home,
    args: &FindArgs,
    reader: &mut Reader<'_>,
    state: &mut State,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let (connector, base) = cli::connector_and_base(cli, home).await?;
    let (tx, mut rx) = watch::channel(None::<Manifest>);
    let key = *reader.key();
    let timeout = Duration::from_secs(cli.timeout);
    let mut task =
        tokio::spawn(async move { live::follow_latest(&connector, &base, key, timeout, tx).await });
    let _abort = AbortOnDrop(task.abort_handle());
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    // The follower ended: only a refused subscription does that.
                    return match (&mut task).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.into()),
                        Err(e) => Err(FeedError::Input(format!("the subscription failed: {e}")).into()),
                    };
                }
                let pushed = rx.borrow_and_update().clone();
                if let Some(m) = pushed.filter(|m| state.newer(m)) {
                    state.apply(reader, m, out).await?;
                }
            }
            () = tokio::time::sleep(RETRY_FAILED), if state.pending => {
                state.retry(reader, out).await?;
            }
        }
        if state.done(args) {
            return Ok(());
        }
    }
}
