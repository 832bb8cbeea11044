//! The embedded Tor mode of the [`Connector`](super::Connector): arti, no Tor daemon.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arti_client::config::BoolOrAuto;
use arti_client::{ErrorKind, HasKind, IsolationToken, StreamPrefs, TorClient};
use tor_rtcompat::PreferredRuntime;

use super::{BoxStream, NetError, NetErrorKind, Sensitive, TargetAddr};
use crate::tor_embed::{self, ArtiError, ArtiSetup, CleanStream};

/// How to start the embedded Tor client.
#[derive(Debug, Clone)]
pub struct ArtiOptions {
    /// Where arti keeps its state and cache (`DIR/state`, `DIR/cache`); the client uses
    /// `HOME/arti`.
    pub dir: PathBuf,
    /// Optional arti TOML configuration (e.g. a private network's `arti.toml`).
    pub config_file: Option<PathBuf>,
    /// How long bootstrapping may take.
    pub bootstrap_timeout: Duration,
}

/// (isolation key, lowercased host, port): what one isolation token stands for.
type IsolationKey = (Option<String>, String, u16);

/// A bootstrapped Tor client plus one isolation token per (isolation key, destination).
pub(crate) struct ArtiConn {
    client: Arc<TorClient<PreferredRuntime>>,
    /// Held only to look up or insert a token; never across an `.await`.
    tokens: Mutex<HashMap<IsolationKey, IsolationToken>>,
}

impl ArtiConn {
    /// Bootstrap (with progress reported to `progress`).
    pub(crate) async fn start(
        opts: &ArtiOptions,
        progress: impl FnMut(&str) + Send + 'static,
    ) -> Result<Self, NetError> {
        let setup = ArtiSetup::under(&opts.dir, opts.config_file.clone());
        let client = tor_embed::bootstrap(&setup, opts.bootstrap_timeout, progress)
            .await
            .map_err(|e| match e {
                ArtiError::Timeout(after) => NetError::TorBootstrapTimeout { after },
                ArtiError::ConfigFile { .. } | ArtiError::InvalidConfig(_) => {
                    NetError::TorBootstrap {
                        what: "bad configuration",
                        source: Box::new(e),
                    }
                }
                ArtiError::Dir { .. } => NetError::TorBootstrap {
                    what: "cannot create its directories",
                    source: Box::new(e),
                },
                ArtiError::Arti(_) => NetError::TorBootstrap {
                    what: "bootstrap failed",
                    source: Box::new(e),
                },
            })?;
        Ok(Self {
            client,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The bootstrapped client (e.g. to host an onion service on it).
    pub(crate) fn client(&self) -> &Arc<TorClient<PreferredRuntime>> {
        &self.client
    }

    fn token(&self, key: Option<&str>, target: &TargetAddr) -> IsolationToken {
        let k = (
            key.map(str::to_owned),
            target.host().to_ascii_lowercase(),
            target.port(),
        );
        let mut map = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(k).or_insert_with(IsolationToken::new)
    }

    /// Open a stream; the caller has already checked that an IP literal is allowed.
    pub(crate) async fn connect(
        &self,
        target: &TargetAddr,
        key: Option<&str>,
    ) -> Result<BoxStream, NetError> {
        let mut prefs = StreamPrefs::new();
        prefs.connect_to_onion_services(BoolOrAuto::Explicit(true));
        prefs.set_isolation(self.token(key, target));
        let addr = target.to_string();
        match self.client.connect_with_prefs(addr.as_str(), &prefs).await {
            Ok(stream) => Ok(Box::new(CleanStream::new(stream))),
            Err(e) => {
                let kind = match e.kind() {
                    ErrorKind::RemoteNetworkTimeout
                    | ErrorKind::TorNetworkTimeout
                    | ErrorKind::ExitTimeout => NetErrorKind::Timeout,
                    ErrorKind::ForbiddenStreamTarget | ErrorKind::InvalidStreamTarget => {
                        NetErrorKind::ForbiddenTarget
                    }
                    _ => NetErrorKind::ConnectFailed,
                };
                Err(NetError::Tor {
                    target: Sensitive::new(addr),
                    kind,
                    source: Box::new(e),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Connector;

    fn opts(dir: &std::path::Path, config: Option<PathBuf>, secs: u64) -> ArtiOptions {
        ArtiOptions {
            dir: dir.join("arti"),
            config_file: config,
            bootstrap_timeout: Duration::from_secs(secs),
        }
    }

    #[tokio::test]
    async fn bad_config_file_is_a_bootstrap_error() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope.toml");
        let err = Connector::tor(&opts(tmp.path(), Some(missing), 5), |_| {})
            .await
            .unwrap_err();
        assert_eq!(err.kind(), NetErrorKind::TorBootstrap);

        let bad = tmp.path().join("bad.toml");
        std::fs::write(&bad, "[tor_network\nnot toml").unwrap();
        let err = Connector::tor(&opts(tmp.path(), Some(bad), 5), |_| {})
            .await
            .unwrap_err();
        assert_eq!(err.kind(), NetErrorKind::TorBootstrap);
    }

    /// A network whose only directory cache is a closed port never bootstraps: the attempt
    /// ends with `Timeout` (and progress was reported meanwhile), nothing else is dialled.
    #[tokio::test]
    async fn unreachable_network_times_out() {
        let tmp = tempfile::tempdir().unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let config = tmp.path().join("arti.toml");
        std::fs::write(
            &config,
            format!(
                "[tor_network.authorities]\nv3idents = [\"{a}\"]\n\
                 [[tor_network.fallback_caches]]\nrsa_identity = \"{a}\"\n\
                 ed_identity = \"uYW16EtTEc/CEQ3a7JN+RR74IPOsTDContyqegn96is\"\n\
                 orports = [\"127.0.0.1:{closed}\"]\n",
                a = "B9CEBB538C313AB2E7688D00D07DF927CD39237C"
            ),
        )
        .unwrap();
        let lines = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = lines.clone();
        let err = Connector::tor(&opts(tmp.path(), Some(config), 2), move |l| {
            seen.lock().unwrap().push(l.to_owned());
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), NetErrorKind::Timeout, "{err:?}");
        assert!(matches!(err, NetError::TorBootstrapTimeout { .. }));
        assert!(tmp.path().join("arti/state").is_dir());
        assert!(tmp.path().join("arti/cache").is_dir());
        assert!(lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("tor: bootstrap")));
    }
}
