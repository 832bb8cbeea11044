//! Running the real `megatorrent` binary from a test: one process per command, each home
//! its own directory, against one server.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Assert success; the output without its trailing newline.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:?}");
        self.stdout.trim_end()
    }

    /// A failure with one clear `error:` line containing `needle`, and no panic.
    pub fn fails_with(&self, needle: &str) {
        assert_eq!(self.code, Some(1), "{self:?}");
        assert!(self.stderr.contains("error: "), "{self:?}");
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?}: {self:?}"
        );
        assert!(!self.stderr.contains("panicked"), "{self:?}");
    }

    /// Assert a failure reported as exactly one `error: …` line; returns that line.
    pub fn failed(&self) -> &str {
        assert_eq!(self.code, Some(1), "{self:?}");
        assert!(self.stdout.is_empty(), "{self:?}");
        let line = self.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{self:?}");
        assert!(line.starts_with("error: "), "{self:?}");
        line
    }

    /// Assert that `find` rejected exactly two messages: one whose signature does not
    /// verify, and one signed by `foreign` (hex key) instead of the feed's key.
    pub fn assert_rejected_forged_and_foreign(&self, foreign: &str) {
        let rejected: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("rejected message "))
            .collect();
        assert_eq!(rejected.len(), 2, "{self:?}");
        assert!(
            rejected
                .iter()
                .any(|l| l.contains("signature does not verify")),
            "{self:?}"
        );
        assert!(
            rejected
                .iter()
                .any(|l| l.contains(foreign) && l.contains("not by the feed's key")),
            "{self:?}"
        );
    }
}

/// `megatorrent ARGS` with `home` and `server` (no `MEGATORRENT_TIMEOUT` from outside), not
/// started yet; killed when dropped.
pub fn mt_cmd(home: &Path, server: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_megatorrent"));
    cmd.args(args)
        .env("MEGATORRENT_HOME", home)
        .env("MEGATORRENT_SERVER", server)
        .env_remove("MEGATORRENT_TIMEOUT")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Run `megatorrent ARGS` with `home` and `server` (120 s at most).
pub async fn mt(home: &Path, server: &str, args: &[&str]) -> Run {
    output(mt_cmd(home, server, args)).await
}

/// Run a prepared `megatorrent` command to its end (120 s at most) and collect its output.
pub async fn output(cmd: Command) -> Run {
    output_within(cmd, 120).await
}

/// Run a prepared `megatorrent` command to its end (`secs` at most; a guard against a hang,
/// not a performance check) and collect its output.
pub async fn output_within(mut cmd: Command, secs: u64) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(secs), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("megatorrent did not finish within {secs} s"))
        .expect("run megatorrent");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A new identity in `home`; returns its public key.
pub async fn keygen(home: &Path, server: &str) -> String {
    let key = mt(home, server, &["keygen"]).await.ok().to_owned();
    assert_eq!(key.len(), 64, "{key}");
    key
}

/// Start `megatorrent seed` for `home` on a loopback listener and wait (60 s at most) for
/// its first line, `seeding N torrents on port P`, which it prints once its first
/// announces are done. Returns the running process (killed on drop) and that line.
pub async fn start_seed(home: &Path, server: &str) -> (Child, String) {
    let mut child = mt_cmd(home, server, &["seed", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    tokio::time::timeout(Duration::from_secs(60), out.read_line(&mut ready))
        .await
        .expect("seed did not start within 60 s")
        .unwrap();
    (child, ready)
}

/// Read `lines` until one contains `needle` (at most `secs` seconds); returns the lines
/// before it. Panics if the stream ends first.
pub async fn wait_for_line<R: AsyncBufRead + Unpin>(
    lines: &mut Lines<R>,
    needle: &str,
    secs: u64,
) -> Vec<String> {
    tokio::time::timeout(Duration::from_secs(secs), async {
        let mut before = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return before;
            }
            before.push(line);
        }
        panic!("the output ended without {needle:?}: {before:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no line with {needle:?} within {secs} s"))
}

/// A running `megatorrent` and its stdout and stderr, line by line.
pub struct Running {
    /// The process (killed when dropped).
    pub child: Child,
    /// Its standard output.
    pub stdout: Lines<BufReader<ChildStdout>>,
    /// Its standard error.
    pub stderr: Lines<BufReader<ChildStderr>>,
}

/// Start `megatorrent ARGS` with `home` and `server`, its output piped.
pub fn spawn(home: &Path, server: &str, args: &[&str]) -> Running {
    let mut child = mt_cmd(home, server, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Running {
        stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
        stderr: BufReader::new(child.stderr.take().unwrap()).lines(),
        child,
    }
}

/// The peer listener of the torrent commands: loopback, an ephemeral port.
pub const LISTEN: &[&str] = &["--listen", "127.0.0.1:0"];

/// `megatorrent find KEY` (30 s per torrent, listening on loopback).
pub async fn find(home: &Path, server: &str, key: &str) -> Run {
    let mut args = vec!["find", key, "--fetch-timeout", "30"];
    args.extend_from_slice(LISTEN);
    mt(home, server, &args).await
}

/// Stop a home's background seeder (SIGTERM to the PID in `seed.pid`) and wait for it.
pub async fn stop_seeder(home: &Path) {
    let Ok(pid) = std::fs::read_to_string(home.join("seed.pid")) else {
        return;
    };
    let pid = pid.trim().to_owned();
    let _ = std::process::Command::new("kill").arg(&pid).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the background seeder of every home even when an assertion fails.
pub struct Seeders(pub Vec<PathBuf>);

impl Drop for Seeders {
    fn drop(&mut self) {
        for home in &self.0 {
            if let Ok(pid) = std::fs::read_to_string(home.join("seed.pid")) {
                let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}
