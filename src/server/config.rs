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
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 6969)),
            request_timeout_secs: 30,
            shutdown_grace_secs: 10,
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
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://megatorrent.db".into(),
            url_file: None,
            max_connections: 16,
            acquire_timeout_secs: 10,
            sqlite_synchronous: SqliteSynchronous::Full,
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
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_manifest_bytes: ManifestLimits::DEFAULT_MAX_BYTES,
            max_clock_skew_secs: 600,
        }
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
mod tests {
    use super::*;

    /// An environment provider that matches no variable.
    fn env(_: &[(&str, &str)]) -> Env {
        Env::prefixed("MEGATORRENT_TEST_NOTHING_MATCHES_")
    }

    #[test]
    fn printed_defaults_parse_back() {
        let text = Config::defaults_toml();
        let cfg: Config = toml::from_str(&text).unwrap();
        assert_eq!(cfg, Config::default());
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn file_layers_over_defaults_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[http]\nlisten = \"127.0.0.1:7000\"\n").unwrap();
        let cfg = Config::load_from(Some(&path), env(&[])).unwrap();
        assert_eq!(cfg.http.listen.port(), 7000);
        assert_eq!(cfg.database, DatabaseConfig::default());

        std::fs::write(&path, "[http]\nlisten = \"127.0.0.1:7000\"\nbogus = 1\n").unwrap();
        let err = Config::load_from(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");

        let missing = dir.path().join("nope.toml");
        assert!(matches!(
            Config::load_from(Some(&missing), env(&[])),
            Err(ConfigError::MissingFile(_))
        ));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
    fn environment_overrides_and_ignores_flat_names() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("MEGATORRENT_DATABASE__URL", "postgres://u:pw@db:5432/x");
            jail.set_env("MEGATORRENT_LIMITS__MAX_MANIFEST_BYTES", "2048");
            // Client variables and Kubernetes service links must not break the server.
            jail.set_env("MEGATORRENT_SERVER", "http://x");
            jail.set_env("MEGATORRENT_PORT", "tcp://10.0.0.1:6969");
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(cfg.database.url, "postgres://u:pw@db:5432/x");
            assert_eq!(cfg.limits.max_manifest_bytes, 2048);
            assert!(!format!("{cfg:?}").contains("pw"));
            jail.set_env("MEGATORRENT_HTTP__NOPE", "1");
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }

    #[test]
    fn validation_reports_every_problem() {
        let mut cfg = Config::default();
        cfg.limits.max_manifest_bytes = 10;
        cfg.database.url = "mysql://x".into();
        let Err(ConfigError::Invalid(errs)) = cfg.validate() else {
            panic!("expected invalid");
        };
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn onion_section_is_checked() {
        let mut cfg = Config::default();
        assert!(!cfg.onion.enabled);
        assert_eq!(
            (cfg.onion.port, cfg.onion.key_dir.as_path()),
            (80, Path::new("onion"))
        );
        cfg.onion.enabled = true;
        // Only a build with the embedded onion service accepts `enabled = true`.
        assert_eq!(cfg.validate().is_ok(), cfg!(feature = "onion-server"));
        cfg.onion.enabled = false;
        cfg.onion.port = 0;
        cfg.onion.bootstrap_timeout_secs = 0;
        let Err(ConfigError::Invalid(errs)) = cfg.validate() else {
            panic!("expected invalid");
        };
        assert_eq!(errs.len(), 2, "{errs:?}");
        let toml = "[onion]\nenabled = false\nport = 8080\ntor_config = \"/x/arti.toml\"\n";
        let parsed: Config = toml::from_str(toml).unwrap();
        assert_eq!(parsed.onion.port, 8080);
        assert_eq!(
            parsed.onion.tor_config.as_deref(),
            Some(Path::new("/x/arti.toml"))
        );
        assert!(toml::from_str::<Config>("[onion]\nbogus = 1\n").is_err());
    }

    #[test]
    fn url_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("url");
        std::fs::write(&secret, "postgres://a:b@h/db\n").unwrap();
        let path = dir.path().join("c.toml");
        let toml = format!(
            "[database]\nurl_file = {:?}\n",
            secret.display().to_string()
        );
        std::fs::write(&path, toml).unwrap();
        let cfg = Config::load_from(Some(&path), env(&[])).unwrap();
        assert_eq!(cfg.database.url, "postgres://a:b@h/db");
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://u:p@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
