//! SOCKS5 (RFC 1928) through Tor's `SocksPort` or i2pd: names always go to the proxy.
//!
//! Every host name — `.onion` and `.i2p` included — is sent as a domain (ATYP 3) and
//! resolved by the proxy, never locally. Stream isolation uses RFC 1929 username/password
//! credentials derived from a per-process random secret, the isolation key and the
//! destination, so Tor (`IsolateSOCKSAuth`, its default) puts different destinations and
//! different isolation keys on different circuits, while repeated connections to the same
//! destination under the same key share one.

use std::fmt;
use std::io;
use std::time::Duration;

use sha3::{Digest, Sha3_256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;

use super::{BoxStream, NetError, Sensitive, TargetAddr};

/// A SOCKS5 proxy endpoint: `socks5h://HOST:PORT` (or `socks5://`, treated the same way:
/// names are always resolved by the proxy).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyUrl {
    host: String,
    port: u16,
}

impl ProxyUrl {
    /// Parse `socks5h://HOST:PORT`. IPv6 hosts go in brackets. No user info, no path.
    pub fn parse(url: &str) -> Result<Self, NetError> {
        let invalid = |reason| NetError::InvalidTarget { reason };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or(invalid("proxy URL must look like socks5h://HOST:PORT"))?;
        if !["socks5h", "socks5"].contains(&scheme.to_ascii_lowercase().as_str()) {
            return Err(invalid("proxy URL scheme must be socks5h://"));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['@', '/', '?', '#']) {
            return Err(invalid("proxy URL must be just socks5h://HOST:PORT"));
        }
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or(invalid("proxy URL needs a port"))?;
        let port: u16 = port.parse().map_err(|_| invalid("bad proxy port"))?;
        let target = TargetAddr::new(host, port)?;
        Ok(Self {
            host: target.host().to_owned(),
            port,
        })
    }

    /// The proxy's host (name or IP literal; IPv6 without brackets).
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Open a TCP connection to the proxy itself (its own name, if any, is resolved locally:
    /// it is the proxy's address, not a destination's).
    async fn dial(&self) -> Result<TcpStream, NetError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| NetError::ProxyUnreachable {
                proxy: self.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Check once that the proxy answers a SOCKS5 greeting (`ProxyUnreachable` if it cannot
    /// be reached, `ProxyFailed` if something else answers).
    pub async fn probe(&self, timeout: Duration) -> Result<(), NetError> {
        let attempt = async {
            let mut s = self.dial().await?;
            let failed = |source: io::Error| NetError::ProxyFailed {
                target: Sensitive::new(self.to_string()),
                source: Box::new(source),
            };
            // Version 5, two methods offered: no auth, username/password.
            s.write_all(&[5, 2, 0, 2]).await.map_err(failed)?;
            let mut reply = [0u8; 2];
            s.read_exact(&mut reply).await.map_err(failed)?;
            if reply[0] != 5 || !(reply[1] == 0 || reply[1] == 2) {
                return Err(failed(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a SOCKS5 proxy",
                )));
            }
            let _ = s.shutdown().await;
            Ok(())
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(NetError::ProxyUnreachable {
                proxy: self.to_string(),
                source: io::Error::new(io::ErrorKind::TimedOut, "no SOCKS5 answer in time"),
            }),
        }
    }

    /// CONNECT to `target` through this proxy, with `credentials` if given.
    pub(crate) async fn connect(
        &self,
        target: &TargetAddr,
        credentials: Option<&Credentials>,
    ) -> Result<BoxStream, NetError> {
        let socket = self.dial().await?;
        // `(&str, u16)` becomes ATYP 3 for names; IP literals only reach here through the
        // connector's explicitly named IP path.
        let dest = (target.host(), target.port());
        let result = match credentials {
            Some(c) => {
                Socks5Stream::connect_with_password_and_socket(
                    socket,
                    dest,
                    &c.username,
                    &c.password,
                )
                .await
            }
            None => Socks5Stream::connect_with_socket(socket, dest).await,
        };
        match result {
            Ok(stream) => Ok(Box::new(stream)),
            Err(e) => Err(NetError::ProxyFailed {
                target: Sensitive::new(target.to_string()),
                source: Box::new(e),
            }),
        }
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "socks5h://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "socks5h://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// SOCKS5 username/password used only to select a Tor circuit (stream isolation).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl Credentials {
    /// Credentials for `(isolation key, destination)`: a keyed hash, stable for the life of
    /// `secret`, unlinkable across keys and destinations.
    pub(crate) fn derive(secret: &[u8; 32], key: Option<&str>, target: &TargetAddr) -> Self {
        let mut h = Sha3_256::new();
        h.update(b"megatorrent socks isolation v1\0");
        h.update(secret);
        let key = key.unwrap_or("");
        h.update((key.len() as u64).to_be_bytes());
        h.update(key.as_bytes());
        let host = target.host().to_ascii_lowercase();
        h.update((host.len() as u64).to_be_bytes());
        h.update(host.as_bytes());
        h.update(target.port().to_be_bytes());
        let digest = h.finalize();
        Self {
            username: format!("mt-{}", hex::encode(&digest[..12])),
            password: hex::encode(&digest[12..24]),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials([scrubbed])")
    }
}

/// A SOCKS5 server for tests that records every CONNECT, then relays nothing: it answers
/// success and writes `ok` on the stream.
#[cfg(test)]
pub(crate) mod recording {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// One CONNECT request as the proxy saw it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Seen {
        pub atyp: u8,
        pub host: String,
        pub port: u16,
        pub user: Option<String>,
        pub pass: Option<String>,
    }

    /// Start the server; returns its port and the shared record.
    pub async fn start() -> (u16, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let record = record.clone();
                tokio::spawn(async move {
                    let _ = serve(&mut s, &record).await;
                });
            }
        });
        (port, seen)
    }

    async fn serve(
        s: &mut tokio::net::TcpStream,
        record: &Mutex<Vec<Seen>>,
    ) -> std::io::Result<()> {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await?;
        let mut methods = vec![0u8; head[1] as usize];
        s.read_exact(&mut methods).await?;
        let (mut user, mut pass) = (None, None);
        if methods.contains(&2) {
            s.write_all(&[5, 2]).await?;
            let mut ver_len = [0u8; 2];
            s.read_exact(&mut ver_len).await?;
            let mut u = vec![0u8; ver_len[1] as usize];
            s.read_exact(&mut u).await?;
            let mut plen = [0u8; 1];
            s.read_exact(&mut plen).await?;
            let mut p = vec![0u8; plen[0] as usize];
            s.read_exact(&mut p).await?;
            user = Some(String::from_utf8_lossy(&u).into_owned());
            pass = Some(String::from_utf8_lossy(&p).into_owned());
            s.write_all(&[1, 0]).await?;
        } else {
            s.write_all(&[5, 0]).await?;
        }
        let mut req = [0u8; 4];
        s.read_exact(&mut req).await?;
        let host = match req[3] {
            1 => {
                let mut a = [0u8; 4];
                s.read_exact(&mut a).await?;
                std::net::Ipv4Addr::from(a).to_string()
            }
            4 => {
                let mut a = [0u8; 16];
                s.read_exact(&mut a).await?;
                std::net::Ipv6Addr::from(a).to_string()
            }
            _ => {
                let mut len = [0u8; 1];
                s.read_exact(&mut len).await?;
                let mut name = vec![0u8; len[0] as usize];
                s.read_exact(&mut name).await?;
                String::from_utf8_lossy(&name).into_owned()
            }
        };
        let mut port = [0u8; 2];
        s.read_exact(&mut port).await?;
        record.lock().unwrap().push(Seen {
            atyp: req[3],
            host,
            port: u16::from_be_bytes(port),
            user,
            pass,
        });
        s.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        s.write_all(b"ok").await?;
        s.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::NetErrorKind;

    #[test]
    fn parses_proxy_urls() {
        let p = ProxyUrl::parse("socks5h://127.0.0.1:9050").unwrap();
        assert_eq!((p.host(), p.port()), ("127.0.0.1", 9050));
        assert_eq!(p.to_string(), "socks5h://127.0.0.1:9050");
        let p = ProxyUrl::parse("SOCKS5://[::1]:4447/").unwrap();
        assert_eq!((p.host(), p.port()), ("::1", 4447));
        assert_eq!(p.to_string(), "socks5h://[::1]:4447");
        assert_eq!(ProxyUrl::parse("socks5h://tor:9050").unwrap().host(), "tor");
        for bad in [
            "127.0.0.1:9050",
            "http://127.0.0.1:9050",
            "socks4://127.0.0.1:9050",
            "socks5h://127.0.0.1",
            "socks5h://127.0.0.1:0",
            "socks5h://127.0.0.1:99999",
            "socks5h://u:p@127.0.0.1:9050",
            "socks5h://127.0.0.1:9050/x",
            "socks5h://:9050",
        ] {
            let err = ProxyUrl::parse(bad).unwrap_err();
            assert_eq!(err.kind(), NetErrorKind::InvalidTarget, "{bad}");
        }
    }

    #[test]
    fn credentials_depend_on_secret_key_and_destination() {
        let t1 = TargetAddr::new("a.onion", 80).unwrap();
        let t2 = TargetAddr::new("b.onion", 80).unwrap();
        let t1p = TargetAddr::new("a.onion", 81).unwrap();
        let s = [7u8; 32];
        let base = Credentials::derive(&s, None, &t1);
        assert_eq!(base, Credentials::derive(&s, None, &t1));
        assert_eq!(
            base,
            Credentials::derive(&s, None, &TargetAddr::new("A.onion", 80).unwrap())
        );
        for other in [
            Credentials::derive(&s, None, &t2),
            Credentials::derive(&s, None, &t1p),
            Credentials::derive(&s, Some("feed-1"), &t1),
            Credentials::derive(&[8u8; 32], None, &t1),
        ] {
            assert_ne!(base.username, other.username);
            assert_ne!(base.password, other.password);
        }
        assert!(base.username.len() < 64 && !base.password.is_empty());
        assert!(!format!("{base:?}").contains(&base.username));
    }

    #[tokio::test]
    async fn probe_tells_unreachable_from_not_socks() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let p = ProxyUrl::parse(&format!("socks5h://127.0.0.1:{closed}")).unwrap();
        let err = p.probe(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.kind(), NetErrorKind::ProxyUnreachable);
        assert!(err.to_string().contains("unreachable"), "{err}");

        // An HTTP server is not a SOCKS5 proxy.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let p = ProxyUrl::parse(&format!("socks5h://127.0.0.1:{port}")).unwrap();
        let err = p.probe(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.kind(), NetErrorKind::ProxyFailed);

        let (port, _) = recording::start().await;
        let p = ProxyUrl::parse(&format!("socks5h://127.0.0.1:{port}")).unwrap();
        p.probe(Duration::from_secs(5)).await.unwrap();
    }
}
