//! `megatorrent seed`: seed our own messages and every fetched feed, announcing each to our
//! tracker; and the background seeder `share --detach` starts.
//!
//! It seeds archives (`archive-*.jsonl`) like messages, and the messages of this home's
//! channels (`channels/*/messages/`, sealed ones included). The seeder rescans `messages/`,
//! the channels and `feeds/` every [`RESCAN`], so a running seeder picks
//! up what `share` and `find` add. Its PID is in `seed.pid`, the info-hashes it seeds in
//! `seed.state` (one hex hash a line), its log in `seed.log`.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use librqbit::spawn_utils::BlockingSpawner;
use librqbit::CreateTorrentOptions;

use super::announce::{Announce, Event, TrackerClient};
use super::cli::{self, Cli, CliError};
use super::feed::{self, io_err, FeedError};
use super::identity::Home;
use super::peer_net::{PeerArgs, PeerNet};
use super::torrent::{strip_udp_trackers, Engine, TorrentError};
use crate::proto::Archive;

/// How often the seeder looks for new message files.
pub const RESCAN: Duration = Duration::from_secs(2);
/// Bounds on the re-announce interval (the tracker's `interval`, clamped).
pub const MIN_REANNOUNCE: Duration = Duration::from_secs(15);
/// See [`MIN_REANNOUNCE`].
pub const MAX_REANNOUNCE: Duration = Duration::from_secs(1800);
/// `share --detach` waits this many `--timeout`s (plus `--tor-bootstrap-timeout` with
/// `--tor`) for the background seeder's first successful announce: one for starting (the
/// onion service), one for an announce that times out, one for the retry
/// [`MIN_REANNOUNCE`] later.
pub const STARTUP_TIMEOUTS: u32 = 3;

/// `megatorrent seed` arguments.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The peer listener and, behind Tor, its onion service.
    #[command(flatten)]
    pub peer: PeerArgs,
    /// Seed only this identity's own messages, not the feeds fetched with `find`
    #[arg(long)]
    pub own_only: bool,
}

/// The magnet of the single-file torrent of `file` (same info-hash the seeder produces).
pub async fn magnet_of(file: &Path, tracker: &str) -> Result<String, FeedError> {
    let created = librqbit::create_torrent(
        file,
        CreateTorrentOptions {
            name: None,
            trackers: vec![tracker.to_owned()],
            piece_length: None,
        },
        &BlockingSpawner::new(1),
    )
    .await
    .map_err(|e| TorrentError::Engine(format!("{e:#}")))?;
    Ok(strip_udp_trackers(&created.as_magnet().to_string())?)
}

fn pid_path(home: &Home) -> PathBuf {
    home.dir().join("seed.pid")
}

fn state_path(home: &Home) -> PathBuf {
    home.dir().join("seed.state")
}

fn mode_path(home: &Home) -> PathBuf {
    home.dir().join("seed.mode")
}

/// What `seed.mode` holds: how the running seeder reaches the tracker and peers.
fn mode_name(proxied: bool) -> &'static str {
    if proxied {
        "proxied"
    } else {
        "direct"
    }
}

/// A running seeder (whose `seed.mode` is `running`; none means an older, direct one) may
/// take new torrents only in the same mode: a direct seeder would announce a message shared
/// behind Tor from our address.
fn check_mode(running: Option<&str>, proxied: bool) -> Result<(), FeedError> {
    let have = running.map_or("direct", str::trim);
    let want = mode_name(proxied);
    if have == want {
        return Ok(());
    }
    Err(FeedError::Input(format!(
        "a background seeder already runs for this home in {have} mode (its PID is in \
         seed.pid); stop it before sharing in {want} mode"
    )))
}

/// If a background seeder runs for `home`, it must be in this command's mode (see
/// [`check_mode`]); `share --detach` checks before it publishes anything.
pub(crate) fn check_running_mode(cli: &Cli, home: &Home) -> Result<(), FeedError> {
    if !running_seeder(home) {
        return Ok(());
    }
    let mode = std::fs::read_to_string(mode_path(home)).ok();
    check_mode(mode.as_deref(), cli.net.is_proxied())
}

/// Is the seeder named in `seed.pid` alive? (Linux: looks in /proc.)
fn running_seeder(home: &Home) -> bool {
    let Ok(pid) = std::fs::read_to_string(pid_path(home)) else {
        return false;
    };
    let cmdline = format!("/proc/{}/cmdline", pid.trim());
    std::fs::read(cmdline)
        .map(|c| String::from_utf8_lossy(&c).contains("megatorrent"))
        .unwrap_or(false)
}

fn is_seeding(home: &Home, hashes: &[String]) -> bool {
    std::fs::read_to_string(state_path(home))
        .map(|s| {
            let seeded: HashSet<&str> = s.lines().collect();
            hashes.iter().all(|h| seeded.contains(h.as_str()))
        })
        .unwrap_or(false)
}

/// Make sure a background seeder runs for `home` and has announced every one of
/// `magnets`, starting one if needed.
pub async fn ensure_background(
    cli: &Cli,
    home: &Home,
    peer: &PeerArgs,
    magnets: &[String],
) -> Result<(), CliError> {
    let hashes = magnets
        .iter()
        .map(|m| super::torrent::magnet_info_hash(m).map(hex::encode))
        .collect::<Result<Vec<_>, _>>()
        .map_err(FeedError::from)?;
    let mut child = None;
    if running_seeder(home) {
        check_running_mode(cli, home)?;
    } else {
        let exe = std::env::current_exe().map_err(|e| FeedError::Seeder(e.to_string()))?;
        let log_path = home.dir().join("seed.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err("open", &log_path))?;
        let spawned = std::process::Command::new(exe)
            .arg("--home")
            .arg(home.dir())
            .arg("--server")
            .arg(&cli.server)
            .arg("--timeout")
            .arg(cli.timeout.to_string())
            .args(cli.net.to_args())
            .arg("seed")
            .args(peer.to_args())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| FeedError::Seeder(e.to_string()))?;
        child = Some(spawned);
    }
    let mut limit = Duration::from_secs(cli.timeout).saturating_mul(STARTUP_TIMEOUTS);
    if cli.net.tor {
        limit = limit.saturating_add(Duration::from_secs(cli.net.tor_bootstrap_timeout));
    }
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if is_seeding(home, &hashes) {
            return Ok(());
        }
        if let Some(c) = child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(
                    FeedError::Seeder(format!("it exited ({status}); see seed.log")).into(),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut why = format!(
        "it did not announce the new torrents within {}s",
        limit.as_secs()
    );
    if let Some(last) = last_warning(&home.dir().join("seed.log")) {
        why.push_str(&format!(" (its last warning: {last})"));
    }
    Err(FeedError::Seeder(why).into())
}

/// The last `warning:` line of a seeder's log, without the prefix (only the log's last
/// 64 KiB are read).
fn last_warning(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 64 * 1024;
    let mut file = std::fs::File::open(log).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut tail = Vec::new();
    file.take(TAIL).read_to_end(&mut tail).ok()?;
    String::from_utf8_lossy(&tail)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("warning: ").map(str::to_owned))
}

struct Seeding {
    info_hash: [u8; 20],
    next_announce: Instant,
    announced: bool,
}

/// `megatorrent seed` (and `share` without `--detach`): seed until interrupted.
pub async fn run(
    cli: &Cli,
    home: &Home,
    peer: &PeerArgs,
    include_feeds: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let mut net = peer.resolve(&cli.net)?;
    net.require_onion_to_seed()?;
    home.ensure_dir()?;
    let pid = pid_path(home);
    std::fs::write(&pid, std::process::id().to_string()).map_err(io_err("write", &pid))?;
    let mode = mode_path(home);
    std::fs::write(&mode, mode_name(net.proxied)).map_err(io_err("write", &mode))?;
    let (engine, tracker) = net.start(cli, home, home.dir().to_owned()).await?;
    let tracker_url = feed::tracker_url(cli)?;
    let mut seeding: HashMap<PathBuf, Seeding> = HashMap::new();
    let mut bad: HashSet<PathBuf> = HashSet::new();
    let mut first = true;
    let result = loop {
        for file in candidates(home, include_feeds) {
            if seeding.contains_key(&file) || bad.contains(&file) {
                continue;
            }
            match engine
                .seed_file(&file, std::slice::from_ref(&tracker_url))
                .await
            {
                Ok(s) => {
                    seeding.insert(
                        file,
                        Seeding {
                            info_hash: s.info_hash,
                            next_announce: Instant::now(),
                            announced: false,
                        },
                    );
                }
                Err(e) => {
                    cli::note(&format!("warning: cannot seed {}: {e}", file.display()));
                    bad.insert(file);
                }
            }
        }
        announce_due(&engine, &tracker, &net, &mut seeding).await;
        write_state(home, &seeding);
        if first {
            first = false;
            let mut line = format!(
                "seeding {} torrents on port {}",
                seeding.len(),
                engine.port()
            );
            if let Some(onion) = &net.onion {
                line.push_str(&format!(" as {onion}:{}", net.announce_port(engine.port())));
            }
            line.push('\n');
            if let Err(e) = cli::emit(out, line.as_bytes()) {
                break Err(e);
            }
        }
        tokio::select! {
            () = shutdown_signal() => break Ok(()),
            () = tokio::time::sleep(RESCAN) => {}
        }
    };
    // Through Tor a request takes a few round trips more.
    let stop_limit = Duration::from_secs(if net.proxied { 10 } else { 2 });
    for s in seeding.values() {
        let a = announce(&engine, &net, &s.info_hash, Event::Stopped);
        let _ = tokio::time::timeout(stop_limit, tracker.announce(&a)).await;
    }
    engine.stop().await;
    let _ = std::fs::remove_file(&pid);
    let _ = std::fs::remove_file(&mode);
    let _ = std::fs::remove_file(state_path(home));
    result
}

/// A seeder's announce: in proxied mode `ip=<our onion>` and its port, never an address.
fn announce<'a>(
    engine: &'a Engine,
    net: &'a PeerNet,
    info_hash: &'a [u8; 20],
    event: Event,
) -> Announce<'a> {
    Announce {
        info_hash,
        peer_id: engine.peer_id(),
        port: net.announce_port(engine.port()),
        left: 0,
        event,
        ip: net.onion.as_deref(),
        compact: !net.proxied,
    }
}

async fn announce_due(
    engine: &Engine,
    tracker: &TrackerClient,
    net: &PeerNet,
    seeding: &mut HashMap<PathBuf, Seeding>,
) {
    let now = Instant::now();
    for s in seeding.values_mut().filter(|s| s.next_announce <= now) {
        match tracker
            .announce(&announce(engine, net, &s.info_hash, Event::Started))
            .await
        {
            Ok(reply) => {
                let every =
                    Duration::from_secs(reply.interval).clamp(MIN_REANNOUNCE, MAX_REANNOUNCE);
                s.next_announce = now + every;
                s.announced = true;
            }
            Err(e) => {
                cli::note(&format!("warning: announce failed: {e:#}"));
                s.next_announce = now + MIN_REANNOUNCE;
            }
        }
    }
}

fn write_state(home: &Home, seeding: &HashMap<PathBuf, Seeding>) {
    let mut text = String::new();
    for s in seeding.values().filter(|s| s.announced) {
        text.push_str(&hex::encode(s.info_hash));
        text.push('\n');
    }
    let tmp = home.dir().join("seed.state.tmp");
    if std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, state_path(home)))
        .is_err()
    {
        cli::note("warning: cannot write seed.state");
    }
}

/// Every file to seed: own `messages/msg-*.json` and `messages/archive-*.jsonl`, the same
/// and `sealed-*.bin` of each channel under `channels/`, and the verified fetched
/// messages and archives.
fn candidates(home: &Home, include_feeds: bool) -> Vec<PathBuf> {
    let mut dirs = vec![feed::own_dir(home)];
    dirs.extend(
        list(&home.dir().join(crate::client::channel::store::CHANNELS_DIR))
            .into_iter()
            .map(|ch| feed::own_dir(&Home::new(ch))),
    );
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| list(d))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                (n.starts_with("msg-") && n.ends_with(".json"))
                    || (n.starts_with("archive-") && n.ends_with(".jsonl"))
                    || (n.starts_with(feed::SEALED_PREFIX) && n.ends_with(feed::SEALED_SUFFIX))
            })
        })
        .collect();
    if include_feeds {
        for feed in list(&home.dir().join("feeds")) {
            for marker in list(&feed) {
                let name = marker.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if let Some(hash) = name.strip_suffix(".ok") {
                    if let Ok(file) = feed::single_file(&feed.join(hash), Archive::MAX_BYTES) {
                        files.push(file);
                    }
                }
            }
        }
    }
    files.sort();
    files
}

fn list(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_warning_of_a_seeders_log_is_found_even_in_a_long_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("seed.log");
        assert_eq!(last_warning(&log), None, "no log yet");
        let mut text = "warning: announce failed: old\n".to_owned();
        text.push_str(&"tor: bootstrap 100%\n".repeat(10_000));
        text.push_str("warning: announce failed: connection refused\nseeding 2 torrents\n");
        std::fs::write(&log, text).unwrap();
        assert_eq!(
            last_warning(&log).as_deref(),
            Some("announce failed: connection refused")
        );
        std::fs::write(&log, "tor: bootstrap 100%\n").unwrap();
        assert_eq!(last_warning(&log), None);
    }

    #[test]
    fn a_running_seeder_takes_torrents_only_in_its_own_mode() {
        check_mode(Some("direct"), false).unwrap();
        check_mode(None, false).unwrap();
        check_mode(Some("proxied\n"), true).unwrap();
        for (running, proxied) in [
            (None, true),
            (Some("direct"), true),
            (Some("proxied"), false),
        ] {
            let err = check_mode(running, proxied).unwrap_err();
            assert!(err.to_string().contains("stop it"), "{err}");
        }
    }
}
