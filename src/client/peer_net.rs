//! Where the torrent engine listens and what it tells the tracker about itself: the
//! `--listen`, `--onion-address`, `--onion-hostname-file` and `--onion-port` flags of
//! `share`, `find` and `seed`, and the engine start-up that follows the network mode.
//!
//! * Direct mode: the listener binds `--listen` (default `0.0.0.0:0`) and announces carry
//!   no `ip=` (the tracker records the connection's address), as before.
//! * Proxied mode (`--proxy`/`--tor`): the listener binds loopback only (default
//!   `127.0.0.1:0`; any other `--listen` is an error), the engine dials peers only through
//!   the [`SocksBridge`](crate::net::SocksBridge), announces ask for `compact=0` (the only
//!   reply form with `.onion` peers), and IP peers are never used. A seeder (`share`,
//!   `seed`) must name the onion service that forwards to its listener, and announces
//!   `ip=<onion>` with `--onion-port` (default: the listener's port); it never announces
//!   a plain address. With `--tor --onion-service` the embedded Tor client hosts that
//!   onion service itself (its key in `HOME/arti/state`, so the address is stable).
//!   A leech-only `find` without an onion address announces `started` and, as soon as it
//!   has the peer list, `stopped` (a "query announce"; see docs/messages.md).

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::announce::TrackerClient;
use super::cli::{self, Cli, CliError};
use super::feed::{io_err, FeedError};
use super::http::HttpClient;
use super::identity::Home;
use super::network::NetArgs;
use super::torrent::{Engine, EngineConfig};
use crate::net::Connector;
use crate::proto::tracker::OnionName;
#[cfg(feature = "tor")]
use tokio_util::sync::CancellationToken;

/// The largest onion hostname file read (a `HiddenServiceDir/hostname` is 63 bytes).
pub const MAX_HOSTNAME_FILE_BYTES: u64 = 1024;

/// The peer-network flags of `share`, `find` and `seed`.
#[derive(Debug, Clone, Default, Args)]
pub struct PeerArgs {
    /// Address the peer listener binds to [default: 0.0.0.0:0, or 127.0.0.1:0 with
    /// --proxy/--tor, where only a loopback address is allowed]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// With --proxy/--tor: the onion service (v3 `<56 chars>.onion`) that forwards to the
    /// peer listener; announced to the tracker as `ip=`
    #[arg(long, value_name = "NAME", conflicts_with = "onion_hostname_file")]
    pub onion_address: Option<String>,
    /// With --proxy/--tor: read the onion address from this file (a Tor daemon's
    /// `HiddenServiceDir/hostname`)
    #[arg(long, value_name = "FILE")]
    pub onion_hostname_file: Option<PathBuf>,
    /// With --tor: publish the peer listener as an onion service of the embedded Tor
    /// client (key kept in HOME/arti/state, so the address stays the same)
    #[arg(long, conflicts_with_all = ["onion_address", "onion_hostname_file"])]
    pub onion_service: bool,
    /// The onion service's virtual port (`HiddenServicePort PORT 127.0.0.1:<listener>`)
    /// [default: the listener's port]
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub onion_port: Option<u16>,
}

/// The checked peer-network settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNet {
    /// Where the listener binds.
    pub listen: SocketAddr,
    /// Our onion address (proxied mode only; with `--onion-service`, known once started).
    pub onion: Option<String>,
    /// Host the onion service in the embedded Tor client (`--tor --onion-service`).
    pub embedded_onion: bool,
    /// The onion's virtual port, if not the listener's.
    pub onion_port: Option<u16>,
    /// Whether the engine goes through the bridge.
    pub proxied: bool,
}

impl PeerArgs {
    /// Check the flags against the network mode.
    pub fn resolve(&self, net: &NetArgs) -> Result<PeerNet, FeedError> {
        let bad = |m: &str| Err(FeedError::Input(m.to_owned()));
        let proxied = net.is_proxied();
        if self.onion_service && !net.tor {
            return bad(
                "--onion-service needs --tor (with --proxy, publish the listener with the Tor \
                 daemon and give --onion-address)",
            );
        }
        let onion = match (&self.onion_address, &self.onion_hostname_file) {
            (Some(a), _) => Some(parse_onion_address(a)?),
            (None, Some(f)) => Some(read_hostname_file(f)?),
            (None, None) => None,
        };
        if !proxied && (onion.is_some() || self.onion_port.is_some()) {
            return bad(
                "--onion-address, --onion-hostname-file and --onion-port need --proxy or --tor",
            );
        }
        if self.onion_port.is_some() && onion.is_none() && !self.onion_service {
            return bad(
                "--onion-port needs --onion-address, --onion-hostname-file or --onion-service",
            );
        }
        let listen = match self.listen {
            Some(l) if proxied && !l.ip().is_loopback() => {
                return bad(
                    "with --proxy/--tor the peer listener must bind a loopback address \
                     (e.g. --listen 127.0.0.1:0): peers reach it only through the onion service",
                );
            }
            Some(l) => l,
            None if proxied => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            None => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        };
        Ok(PeerNet {
            listen,
            onion,
            embedded_onion: self.onion_service,
            onion_port: self.onion_port,
            proxied,
        })
    }

    /// The same flags as command-line arguments (for the background seeder).
    #[must_use]
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        if let Some(l) = self.listen {
            v.extend(["--listen".into(), l.to_string().into()]);
        }
        if let Some(a) = &self.onion_address {
            v.extend(["--onion-address".into(), a.into()]);
        }
        if let Some(f) = &self.onion_hostname_file {
            v.extend(["--onion-hostname-file".into(), f.into()]);
        }
        if self.onion_service {
            v.push("--onion-service".into());
        }
        if let Some(p) = self.onion_port {
            v.extend(["--onion-port".into(), p.to_string().into()]);
        }
        v
    }
}

impl PeerNet {
    /// A seeder in proxied mode must be reachable as an onion service.
    pub fn require_onion_to_seed(&self) -> Result<(), FeedError> {
        if self.proxied && self.onion.is_none() && !self.embedded_onion {
            return Err(FeedError::Input(
                "with --proxy/--tor, seeding needs an onion service that reaches the peer \
                 listener: --onion-address NAME or --onion-hostname-file FILE (a Tor \
                 daemon's HiddenServicePort), or --tor --onion-service"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The port to announce: the onion's virtual port, else the engine's listener port.
    #[must_use]
    pub fn announce_port(&self, engine_port: u16) -> u16 {
        self.onion_port
            .filter(|_| self.onion.is_some())
            .unwrap_or(engine_port)
    }

    /// Start the engine and our tracker client over one connector (one Tor client in
    /// `--tor` mode): in proxied mode the engine dials peers only through the SOCKS bridge.
    ///
    /// With `--onion-service`, the embedded Tor client then hosts the listener's onion
    /// service, and [`PeerNet::onion`] is set to its address.
    pub async fn start(
        &mut self,
        cli: &Cli,
        home: &Home,
        output: PathBuf,
    ) -> Result<(Engine, TrackerClient), CliError> {
        let (connector, base) = cli::connector_and_base(cli, home).await?;
        let cfg = EngineConfig::new(self.listen);
        let mut engine = if self.proxied {
            Engine::start_bridged(cfg, output, connector.clone()).await
        } else {
            Engine::start(&cfg, output).await
        }
        .map_err(FeedError::from)?;
        if self.embedded_onion {
            self.host_onion(&connector, &mut engine)?;
        }
        let http =
            HttpClient::new(connector, base).with_request_timeout(Duration::from_secs(cli.timeout));
        Ok((engine, TrackerClient::new(http)))
    }
}

/// The nickname of the peer listener's onion service in the embedded Tor client's keystore.
#[cfg(feature = "tor")]
const PEER_SERVICE: &str = "megatorrent-peer";

impl PeerNet {
    /// Launch the peer listener's onion service on the connector's Tor client; it lives as
    /// long as `engine`.
    #[cfg(feature = "tor")]
    fn host_onion(&mut self, connector: &Connector, engine: &mut Engine) -> Result<(), FeedError> {
        use crate::tor_embed::service;
        let client = connector
            .tor_client()
            .ok_or_else(|| FeedError::OnionService("--onion-service needs --tor".into()))?;
        let launched = service::launch(&client, PEER_SERVICE)
            .map_err(|e| FeedError::OnionService(format!("{e:#}")))?;
        let local = engine.port();
        let vport = self.onion_port.unwrap_or(local);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(service::accept_streams(
            launched.requests,
            vport,
            shutdown.clone(),
            move |stream, _circuit| relay_to_listener(stream, local),
        ));
        engine.hold(OnionHost {
            _client: client,
            _service: launched.service,
            task,
            shutdown,
        });
        self.onion = Some(launched.address);
        Ok(())
    }

    #[cfg(not(feature = "tor"))]
    fn host_onion(&mut self, _: &Connector, _: &mut Engine) -> Result<(), FeedError> {
        Err(FeedError::OnionService(
            "this build has no embedded Tor client (feature `tor`)".into(),
        ))
    }
}

/// The peer listener's onion service; dropping it stops the service.
#[cfg(feature = "tor")]
struct OnionHost {
    _client: std::sync::Arc<arti_client::TorClient<tor_rtcompat::PreferredRuntime>>,
    _service: std::sync::Arc<tor_hsservice::RunningOnionService>,
    task: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
}

#[cfg(feature = "tor")]
impl Drop for OnionHost {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}

/// Relay one onion stream to the peer listener on `127.0.0.1:port`.
#[cfg(feature = "tor")]
async fn relay_to_listener(stream: arti_client::DataStream, port: u16) {
    use tokio::io::AsyncWriteExt;
    let Ok(mut local) = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await else {
        return;
    };
    let mut stream = crate::tor_embed::CleanStream::new(stream);
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut local).await;
    let _ = stream.shutdown().await;
}

/// Check a v3 onion address (`<56 base32>.onion`, any case; returned in lowercase).
pub fn parse_onion_address(input: &str) -> Result<String, FeedError> {
    let lower = input.trim().to_ascii_lowercase();
    OnionName::parse(&lower)
        .map(|n| n.to_string())
        .map_err(|e| {
            FeedError::Input(format!(
                "{} is not a v3 onion address: {e}",
                cli::shorten(input)
            ))
        })
}

/// Read a `HiddenServiceDir/hostname` file (at most [`MAX_HOSTNAME_FILE_BYTES`]).
pub fn read_hostname_file(path: &Path) -> Result<String, FeedError> {
    let meta = std::fs::metadata(path).map_err(io_err("read", path))?;
    if meta.len() > MAX_HOSTNAME_FILE_BYTES {
        return Err(FeedError::Input(format!(
            "{} is over {MAX_HOSTNAME_FILE_BYTES} bytes: not an onion hostname file",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(io_err("read", path))?;
    parse_onion_address(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONION: &str = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion";

    fn args(listen: Option<&str>, onion: Option<&str>, port: Option<u16>) -> PeerArgs {
        PeerArgs {
            listen: listen.map(|l| l.parse().unwrap()),
            onion_address: onion.map(str::to_owned),
            onion_hostname_file: None,
            onion_service: false,
            onion_port: port,
        }
    }

    fn mode(proxied: bool) -> NetArgs {
        NetArgs {
            proxy: proxied.then(|| "socks5h://127.0.0.1:9050".to_owned()),
            ..NetArgs::default()
        }
    }

    fn tor() -> NetArgs {
        NetArgs {
            tor: true,
            ..NetArgs::default()
        }
    }

    #[test]
    fn defaults_follow_the_network_mode() {
        let direct = args(None, None, None).resolve(&mode(false)).unwrap();
        assert_eq!(direct.listen, "0.0.0.0:0".parse().unwrap());
        assert!(!direct.proxied && direct.onion.is_none());
        let proxied = args(None, None, None).resolve(&mode(true)).unwrap();
        assert_eq!(proxied.listen, "127.0.0.1:0".parse().unwrap());
        assert!(proxied.require_onion_to_seed().is_err());
        assert_eq!(proxied.announce_port(7000), 7000);

        let seeder = args(
            Some("127.0.0.1:6881"),
            Some(ONION.to_uppercase().as_str()),
            Some(80),
        )
        .resolve(&mode(true))
        .unwrap();
        assert_eq!(seeder.onion.as_deref(), Some(ONION));
        assert_eq!(seeder.announce_port(6881), 80);
        seeder.require_onion_to_seed().unwrap();
        let no_vport = args(None, Some(ONION), None).resolve(&mode(true)).unwrap();
        assert_eq!(no_vport.announce_port(6881), 6881);
    }

    #[test]
    fn inconsistent_flags_are_errors() {
        for (a, proxied) in [
            (args(Some("0.0.0.0:0"), None, None), true),
            (args(Some("192.0.2.1:6881"), Some(ONION), None), true),
            (args(None, Some(ONION), None), false),
            (args(None, None, Some(80)), true),
            (args(None, Some("example.onion"), None), true),
            (args(None, Some("example.org"), None), true),
        ] {
            let err = a.resolve(&mode(proxied)).unwrap_err();
            assert!(matches!(err, FeedError::Input(_)), "{a:?}: {err:?}");
        }
        // --onion-service: only with --tor, and then it satisfies a seeder.
        let mut a = args(None, None, Some(80));
        a.onion_service = true;
        assert!(a.resolve(&mode(true)).is_err(), "not with --proxy");
        let n = a.resolve(&tor()).unwrap();
        assert!(n.embedded_onion && n.onion.is_none());
        n.require_onion_to_seed().unwrap();
        assert_eq!(a.to_args(), ["--onion-service", "--onion-port", "80"]);
        // A bad checksum (last character changed).
        let bad = format!("{}e.onion", &ONION[..55]);
        assert!(parse_onion_address(&bad).is_err());
    }

    #[test]
    fn hostname_files_are_read_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hostname");
        std::fs::write(&f, format!("{ONION}\n")).unwrap();
        assert_eq!(read_hostname_file(&f).unwrap(), ONION);
        let mut a = args(None, None, None);
        a.onion_hostname_file = Some(f.clone());
        assert_eq!(
            a.resolve(&mode(true)).unwrap().onion.as_deref(),
            Some(ONION)
        );
        let argv = a.to_args();
        assert_eq!(argv[0], "--onion-hostname-file");
        std::fs::write(&f, "x".repeat(2000)).unwrap();
        assert!(read_hostname_file(&f).is_err());
        assert!(read_hostname_file(&dir.path().join("missing")).is_err());
    }
}
