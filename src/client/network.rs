//! The client's network flags (`--proxy`, `--tor`, `--i2p-proxy`) and the [`Connector`]
//! they select.
//!
//! A proxied mode never falls back to a direct connection: the SOCKS proxies are probed
//! once before any command runs ([`NetArgs::preflight`]), and an unreachable proxy stops the
//! program with `proxy unreachable`. The embedded Tor client bootstraps only for commands
//! that use the network, with its files in `HOME/arti/{state,cache}`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::net::{Connector, NetError, ProxyUrl};

/// How the client reaches the network.
#[derive(Debug, Clone, Default, Args)]
pub struct NetArgs {
    /// Send every connection through this SOCKS5 proxy, e.g. socks5h://127.0.0.1:9050 (Tor)
    /// or :9150 (Tor Browser). Names are resolved by the proxy, never locally.
    #[arg(
        long,
        global = true,
        env = "MEGATORRENT_PROXY",
        value_name = "URL",
        conflicts_with = "tor"
    )]
    pub proxy: Option<String>,

    /// Send every connection through an embedded Tor client (arti); no Tor daemon needed
    #[arg(long, global = true, env = "MEGATORRENT_TOR")]
    pub tor: bool,

    /// arti configuration file (TOML, arti's format) for --tor, e.g. a private network
    #[arg(
        long,
        global = true,
        env = "MEGATORRENT_TOR_CONFIG",
        value_name = "FILE"
    )]
    pub tor_config: Option<PathBuf>,

    /// Give up if the embedded Tor client has not bootstrapped after this many seconds
    #[arg(
        long,
        global = true,
        env = "MEGATORRENT_TOR_BOOTSTRAP_TIMEOUT",
        default_value_t = 120,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub tor_bootstrap_timeout: u64,

    /// SOCKS5 proxy for .i2p names, e.g. socks5h://127.0.0.1:4447 (i2pd)
    #[arg(long, global = true, env = "MEGATORRENT_I2P_PROXY", value_name = "URL")]
    pub i2p_proxy: Option<String>,
}

impl NetArgs {
    /// Check the flags and probe the SOCKS proxies once, before any command runs.
    pub async fn preflight(&self, timeout: Duration) -> Result<(), NetError> {
        if self.tor_config.is_some() && !self.tor {
            return Err(NetError::TorBootstrap {
                what: "--tor-config needs --tor",
                source: "no embedded Tor client requested".into(),
            });
        }
        if let Some(p) = &self.proxy {
            ProxyUrl::parse(p)?.probe(timeout).await?;
        }
        if let Some(p) = &self.i2p_proxy {
            ProxyUrl::parse(p)?.probe(timeout).await?;
        }
        Ok(())
    }

    /// The same flags as command-line arguments (for a child process such as the
    /// background seeder, which must use the same network mode).
    #[must_use]
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = Vec::new();
        if let Some(p) = &self.proxy {
            v.extend(["--proxy".into(), p.into()]);
        }
        if self.tor {
            v.push("--tor".into());
            v.extend([
                "--tor-bootstrap-timeout".into(),
                self.tor_bootstrap_timeout.to_string().into(),
            ]);
        }
        if let Some(c) = &self.tor_config {
            v.extend(["--tor-config".into(), c.into()]);
        }
        if let Some(p) = &self.i2p_proxy {
            v.extend(["--i2p-proxy".into(), p.into()]);
        }
        v
    }

    /// Whether streams go through a proxy or Tor.
    #[must_use]
    pub fn is_proxied(&self) -> bool {
        self.proxy.is_some() || self.tor
    }

    /// Build the connector for a command that uses the network. `timeout` bounds each
    /// connection attempt (the direct mode caps it at
    /// [`Connector::DEFAULT_CONNECT_TIMEOUT`]).
    pub async fn connector(&self, home: &Path, timeout: Duration) -> Result<Connector, NetError> {
        let connector = if let Some(p) = &self.proxy {
            Connector::socks5(ProxyUrl::parse(p)?).with_connect_timeout(timeout)
        } else if self.tor {
            self.tor_connector(home)
                .await?
                .with_connect_timeout(timeout)
        } else {
            Connector::direct()
                .with_connect_timeout(timeout.min(Connector::DEFAULT_CONNECT_TIMEOUT))
        };
        Ok(match &self.i2p_proxy {
            Some(p) => connector.with_i2p_proxy(ProxyUrl::parse(p)?),
            None => connector,
        })
    }

    #[cfg(feature = "tor")]
    async fn tor_connector(&self, home: &Path) -> Result<Connector, NetError> {
        let opts = crate::net::ArtiOptions {
            dir: home.join("arti"),
            config_file: self.tor_config.clone(),
            bootstrap_timeout: Duration::from_secs(self.tor_bootstrap_timeout),
        };
        Connector::tor(&opts, |line| {
            let _ = writeln!(std::io::stderr(), "{line}");
        })
        .await
    }

    #[cfg(not(feature = "tor"))]
    async fn tor_connector(&self, _home: &Path) -> Result<Connector, NetError> {
        let _ = writeln!(std::io::stderr(), "--tor is not available in this build");
        Err(NetError::TorBootstrap {
            what: "this build has no embedded Tor client (feature `tor`)",
            source: "feature disabled".into(),
        })
    }
}
