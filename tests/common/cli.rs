//! Running the real `megatorrent` binary from a test: one process per command, each home
//! its own directory, and a guard that stops the background seeders of those homes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

/// What one command did.
#[derive(Debug)]
pub struct Run {
    /// The exit status.
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output (trimmed at the end) of a command that must have succeeded.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:?}");
        self.stdout.trim_end()
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
}

/// The command `megatorrent ARGS` with `home` and `server` (killed when dropped).
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
pub async fn output(mut cmd: Command) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("megatorrent did not finish within 120 s")
        .expect("run megatorrent");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
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

/// Start `megatorrent seed` in the foreground for `home` (killed when dropped); returns
/// it and its first output line (`seeding N torrents on port P`), read within 60 s.
pub async fn start_seed(home: &Path, server: &str) -> (tokio::process::Child, String) {
    let mut child = mt_cmd(home, server, &["seed", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    let mut reader = tokio::io::BufReader::new(child.stdout.take().unwrap());
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut ready),
    )
    .await
    .expect("seed did not start within 60 s")
    .unwrap();
    (child, ready)
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
