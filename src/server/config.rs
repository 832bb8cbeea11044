//! Server configuration: one typed tree, layered defaults → TOML file → environment.
//!
//! Environment variables are `MEGATORRENT_<SECTION>__<KEY>` (double underscore between
//! levels), e.g. `MEGATORRENT_DATABASE__URL`. Only variables with a `__` are read, so the
//! client's own variables (`MEGATORRENT_SERVER`, `MEGATORRENT_HOME`) and Kubernetes service
//! links (`MEGATORRENT_PORT`) never reach the server's config. Unknown keys are errors.
//! Every key is documented in `docs/configuration.md`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::proto::ManifestLimits;
use crate::server::quota::{Per, Quota};

mod hardening;
mod mailbox;
mod profiles;
mod tracker;
pub use hardening::{MetricsConfig, OnionProxyConfig, PowConfig};
pub use mailbox::MailboxConfig;
pub use profiles::ProfilesConfig;
pub use tracker::{AccessMode, TrackerConfig, UdpConfig};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The public HTTP + WebSocket listener.
    pub http: HttpConfig,
    /// The database.
    pub database: DatabaseConfig,
    /// Protocol limits.
    pub limits: LimitsConfig,
    /// Logging.
    pub log: LogConfig,
    /// The WebSocket (WebTorrent tracker and manifest pub/sub).
    pub websocket: WebsocketConfig,
    /// The BitTorrent tracker (HTTP and UDP).
    pub tracker: TrackerConfig,
    /// The UDP tracker listener.
    pub udp: UdpConfig,
    /// The private metrics listener.
    pub metrics: MetricsConfig,
    /// The optional onion-service listener (PROXY protocol).
    pub onion_proxy: OnionProxyConfig,
    /// Proof-of-work admission for writes.
    pub pow: PowConfig,
    /// The end-to-end encrypted mailbox.
    pub mailbox: MailboxConfig,
    /// Signed profiles.
    pub profiles: ProfilesConfig,
    /// The embedded onion service (feature `onion-server`).
    pub onion: OnionConfig,
}

/// `[onion]`: host the server as a Tor onion service through embedded arti (no Tor daemon).
/// Needs a `megatorrentd` built with the `onion-server` feature (the default build has it;
/// the server-only build does not). See docs/tor.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnionConfig {
    /// Serve the app as an onion service too. Default false.
    pub enabled: bool,
    /// Directory for arti's state (including the service's identity key, which keeps the
    /// `.onion` address stable) and cache. Relative to the working directory, like the
    /// default SQLite file. Default `onion`.
    pub key_dir: PathBuf,
    /// The onion service's virtual port (`http://<addr>.onion:<port>`). Default 80.
    pub port: u16,
    /// arti configuration file (TOML, arti's format) to join another Tor network, e.g. a
    /// private test network. Default: unset (the public Tor network).
    pub tor_config: Option<PathBuf>,
    /// How long Tor may take to bootstrap at start-up, in seconds. Default 120.
    pub bootstrap_timeout_secs: u64,
}

impl Default for OnionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            key_dir: PathBuf::from("onion"),
            port: 80,
            tor_config: None,
            bootstrap_timeout_secs: 120,
        }
    }
}

/// `[http]`: the public listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on. Default `0.0.0.0:6969`.
    pub listen: SocketAddr,
    /// Whole-request timeout in seconds (reading the body and handling). Default 30.
    pub request_timeout_secs: u64,
    /// On SIGTERM, how long in-flight requests may take to finish, in seconds. Default 10.
    pub shutdown_grace_secs: u64,
    /// On SIGTERM, how long to keep serving with `/readyz` failing before closing the
    /// listener, so load balancers stop sending traffic first. Default 0.
    pub shutdown_delay_secs: u64,
    /// Time allowed to receive a request head, counted from when the connection opens or
    /// goes idle; also the keep-alive idle timeout (slowloris protection). Default 10.
    pub header_read_timeout_secs: u64,
    /// Largest request head (request line plus headers) in bytes (8192..=1048576). Default
    /// 32768 (room for a scrape of `tracker.max_scrape_hashes` fully escaped hashes); larger
    /// heads get `431`.
    pub max_header_bytes: usize,
    /// Open client connections at most (public and onion listeners each); more are closed
    /// at once. Default 10000.
    pub max_connections: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed. Default: none.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 6969)),
            request_timeout_secs: 30,
            shutdown_grace_secs: 10,
            shutdown_delay_secs: 0,
            header_read_timeout_secs: 10,
            max_header_bytes: 32_768,
            max_connections: 10_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[database]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created if missing) or `postgres://USER@HOST:PORT/DB`.
    /// Default `sqlite://megatorrent.db`. May contain a password: never logged.
    pub url: String,
    /// Read the URL from this file instead (e.g. a mounted Kubernetes Secret). Trailing
    /// whitespace is trimmed. Default: unset.
    pub url_file: Option<PathBuf>,
    /// Maximum pooled connections. Default 16.
    pub max_connections: u32,
    /// Seconds to wait for a pooled connection before failing a request. Default 10.
    pub acquire_timeout_secs: u64,
    /// SQLite only: `full` fsyncs every commit (survives power loss); `normal` survives
    /// process crashes (`kill -9`) but may lose the last commits on power loss. Default `full`.
    pub sqlite_synchronous: SqliteSynchronous,
    /// SQLite only: read manifests for `GET /v1/manifests/{key}` on the serving thread
    /// (fast; a cold-cache disk read holds that thread) rather than through the pool's
    /// worker threads. Default true.
    pub sqlite_inline_lookups: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://megatorrent.db".into(),
            url_file: None,
            max_connections: 16,
            acquire_timeout_secs: 10,
            sqlite_synchronous: SqliteSynchronous::Full,
            sqlite_inline_lookups: true,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("url_file", &self.url_file)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_secs", &self.acquire_timeout_secs)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .field("sqlite_inline_lookups", &self.sqlite_inline_lookups)
            .finish()
    }
}

/// SQLite `synchronous` pragma choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// fsync on every commit.
    Full,
    /// fsync at WAL checkpoints only.
    Normal,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest manifest accepted, in bytes (1 KiB ..= 1 MiB). Default 65536.
    pub max_manifest_bytes: usize,
    /// How far in the future a manifest timestamp may be, in seconds. Default 600.
    pub max_clock_skew_secs: u64,
    /// Reads (GET/HEAD) per client. Default `"100r/s"`.
    pub read_quota: Quota,
    /// Writes per client. Default `"60r/m"`.
    pub write_quota: Quota,
    /// Writes of all clients together. Default `"500r/s"`.
    pub global_write_quota: Quota,
    /// Writes per publishing public key. Default `"30r/m"`.
    pub key_write_quota: Quota,
    /// Clients tracked per limiter before idle ones are pruned early. Default 100000.
    pub max_tracked_clients: usize,
    /// Stored identities (live manifests plus pointer records) at most; when reached, new
    /// keys get `507 store-full` while known keys keep publishing. 0 = no cap. Default 0.
    pub max_identities: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_manifest_bytes: ManifestLimits::DEFAULT_MAX_BYTES,
            max_clock_skew_secs: 600,
            read_quota: Quota::new(hardening::nonzero(100), Per::Second),
            write_quota: Quota::new(hardening::nonzero(60), Per::Minute),
            global_write_quota: Quota::new(hardening::nonzero(500), Per::Second),
            key_write_quota: Quota::new(hardening::nonzero(30), Per::Minute),
            max_tracked_clients: 100_000,
            max_identities: 0,
        }
    }
}

/// `[websocket]`: bounds of the WebSocket endpoint (`GET /` and `GET /announce` upgrades).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebsocketConfig {
    /// Open sockets allowed at once; further ones are closed with a reason. Default 10000.
    pub max_connections: u64,
    /// Largest message (and frame) accepted, in bytes; must leave room for a manifest of
    /// `limits.max_manifest_bytes`. Default 131072.
    pub max_message_bytes: usize,
    /// Manifest subscriptions per socket. Default 256.
    pub max_subscriptions: usize,
    /// Torrents one socket may announce in (WebTorrent). Default 256.
    pub max_torrents: usize,
    /// Frames queued to one socket before it counts as a slow reader and is closed.
    /// Default 256.
    pub outbound_queue: usize,
    /// Seconds between server pings. Default 30.
    pub ping_interval_secs: u64,
    /// Close a socket that sent nothing (not even a pong) for this many seconds. Default 120.
    pub idle_timeout_secs: u64,
    /// WebTorrent re-announce interval told to peers, in seconds. Default 120.
    pub announce_interval_secs: u32,
    /// Messages one socket may send, on top of its client's HTTP quotas. Default `"50r/s"`
    /// (a burst of 50, then 50 per second).
    pub message_quota: Quota,
    /// `subscribe` messages one socket may send. Default `"60r/m"` (a burst of 60, then
    /// one a second).
    pub subscribe_quota: Quota,
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_message_bytes: 128 * 1024,
            max_subscriptions: 256,
            max_torrents: 256,
            outbound_queue: 256,
            ping_interval_secs: 30,
            idle_timeout_secs: 120,
            announce_interval_secs: 120,
            message_quota: Quota::new(hardening::nonzero(50), Per::Second),
            subscribe_quota: Quota::new(hardening::nonzero(60), Per::Minute),
        }
    }
}

impl WebsocketConfig {
    fn validate(&self, max_manifest_bytes: usize, errs: &mut Vec<String>) {
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                errs.push(format!("websocket.{msg}"));
            }
        };
        check(
            (1..=1_000_000).contains(&self.max_connections),
            "max_connections must be in 1..=1000000",
        );
        check(
            self.max_message_bytes >= max_manifest_bytes.saturating_add(1024)
                && self.max_message_bytes <= 16 * 1024 * 1024,
            "max_message_bytes must be at least limits.max_manifest_bytes + 1024 and at most 16 MiB",
        );
        check(
            (1..=100_000).contains(&self.max_subscriptions),
            "max_subscriptions must be in 1..=100000",
        );
        check(
            (1..=100_000).contains(&self.max_torrents),
            "max_torrents must be in 1..=100000",
        );
        check(
            (1..=65_536).contains(&self.outbound_queue),
            "outbound_queue must be in 1..=65536",
        );
        check(
            (1..=3600).contains(&self.ping_interval_secs),
            "ping_interval_secs must be in 1..=3600",
        );
        check(
            self.idle_timeout_secs > self.ping_interval_secs && self.idle_timeout_secs <= 86_400,
            "idle_timeout_secs must be above ping_interval_secs and at most 86400",
        );
        check(
            (10..=86_400).contains(&self.announce_interval_secs),
            "announce_interval_secs must be in 10..=86400",
        );
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `megatorrent=debug,info`. `RUST_LOG` overrides.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration that could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` named a file that does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// Parsing or merging failed (unknown key, wrong type, bad TOML).
    #[error("{0}")]
    Figment(#[from] Box<figment::Error>),
    /// `database.url_file` could not be read.
    #[error("cannot read database.url_file {path}")]
    UrlFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Values parsed but break a rule.
    #[error("invalid configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Load defaults, then `file` (which must exist if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, Env::prefixed("MEGATORRENT_"))
    }

    /// As [`Config::load`], with an explicit environment provider (for tests).
    pub fn load_from(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        let env = env.filter(|k| k.as_str().contains("__")).split("__");
        let mut cfg: Config = fig.merge(env).extract().map_err(Box::new)?;
        if let Some(path) = cfg.database.url_file.clone() {
            let url = std::fs::read_to_string(&path)
                .map_err(|source| ConfigError::UrlFile { path, source })?;
            cfg.database.url = url.trim().to_owned();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check every rule; report all violations at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        let l = &self.limits;
        if !(1024..=ManifestLimits::HARD_MAX_BYTES).contains(&l.max_manifest_bytes) {
            errs.push(format!(
                "limits.max_manifest_bytes must be in 1024..={}",
                ManifestLimits::HARD_MAX_BYTES
            ));
        }
        if l.max_clock_skew_secs > 86_400 {
            errs.push("limits.max_clock_skew_secs must be at most 86400".into());
        }
        let h = &self.http;
        if !(1..=3600).contains(&h.request_timeout_secs) {
            errs.push("http.request_timeout_secs must be in 1..=3600".into());
        }
        if h.shutdown_grace_secs > 3600 {
            errs.push("http.shutdown_grace_secs must be at most 3600".into());
        }
        let d = &self.database;
        if !(1..=1024).contains(&d.max_connections) {
            errs.push("database.max_connections must be in 1..=1024".into());
        }
        if !(1..=600).contains(&d.acquire_timeout_secs) {
            errs.push("database.acquire_timeout_secs must be in 1..=600".into());
        }
        let scheme_ok = ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| d.url.starts_with(p));
        if !scheme_ok {
            errs.push("database.url must start with sqlite:, postgres:// or postgresql://".into());
        }
        self.websocket.validate(l.max_manifest_bytes, &mut errs);
        hardening::validate(self, &mut errs);
        let o = &self.onion;
        if o.enabled && !cfg!(feature = "onion-server") {
            errs.push(
                "onion.enabled needs megatorrentd built with the onion-server feature".into(),
            );
        }
        if o.port == 0 {
            errs.push("onion.port must not be 0".into());
        }
        if !(1..=3600).contains(&o.bootstrap_timeout_secs) {
            errs.push("onion.bootstrap_timeout_secs must be in 1..=3600".into());
        }
        if self.log.level.trim().is_empty() {
            errs.push("log.level must not be empty".into());
        }
        self.tracker.validate(&mut errs);
        self.udp.validate(&mut errs);
        self.mailbox.validate(&mut errs);
        self.profiles.validate(&mut errs);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errs))
        }
    }

    /// The defaults as commented TOML (what `megatorrentd --print-config` prints).
    pub fn defaults_toml() -> String {
        let body = toml::to_string_pretty(&Config::default()).unwrap_or_default();
        format!(
            "# megatorrentd configuration: the defaults. Every key is optional.\n\
             # Environment overrides: MEGATORRENT_<SECTION>__<KEY>, e.g. MEGATORRENT_DATABASE__URL.\n\
             # Reference: docs/configuration.md\n\n{body}"
        )
    }

    /// The manifest limits derived from this config.
    #[must_use]
    pub fn manifest_limits(&self) -> ManifestLimits {
        ManifestLimits {
            max_bytes: self.limits.max_manifest_bytes,
        }
    }
}

/// A database URL with any password replaced by `***`, safe to log.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
