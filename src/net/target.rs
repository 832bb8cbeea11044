//! Dial targets: a host name (or IP literal) and a port, never a pre-resolved socket address.

use std::fmt;
use std::net::IpAddr;

use super::NetError;

/// The longest host accepted, in bytes (the DNS limit, also SOCKS5's one-byte length).
pub const MAX_HOST_LEN: usize = 255;

/// Where to connect: a host name or IP literal, and a TCP port.
///
/// Names are kept as names so that a proxied connector can hand them to the proxy unresolved;
/// the direct connector is the only one that resolves them locally. Construct with
/// [`TargetAddr::new`], which validates the host.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TargetAddr {
    host: String,
    port: u16,
}

/// What kind of host a [`TargetAddr`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostKind {
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// A Tor onion service name (`….onion`).
    Onion,
    /// An I2P name (`….i2p`).
    I2p,
    /// Any other DNS name.
    Name,
}

impl TargetAddr {
    /// Validate and build a target.
    ///
    /// The host must be non-empty, at most [`MAX_HOST_LEN`] bytes, and free of whitespace and
    /// control characters. An IPv6 literal may be given with or without brackets; it is stored
    /// without them. A `:` is allowed only inside an IPv6 literal. Port 0 is refused.
    pub fn new(host: &str, port: u16) -> Result<Self, NetError> {
        let invalid = |reason: &'static str| NetError::InvalidTarget { reason };
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(inner) if inner.parse::<std::net::Ipv6Addr>().is_ok() => inner,
            Some(_) => return Err(invalid("bracketed host is not an IPv6 address")),
            None => host,
        };
        if host.is_empty() {
            return Err(invalid("empty host"));
        }
        if host.len() > MAX_HOST_LEN {
            return Err(invalid("host longer than 255 bytes"));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("host contains whitespace or control characters"));
        }
        if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid("host contains ':' but is not an IPv6 address"));
        }
        if port == 0 {
            return Err(invalid("port 0"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The host, exactly as given (IPv6 literals without brackets).
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Classify the host.
    #[must_use]
    pub fn kind(&self) -> HostKind {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return HostKind::Ip(ip);
        }
        let lower = self.host.trim_end_matches('.').to_ascii_lowercase();
        if lower.ends_with(".onion") {
            HostKind::Onion
        } else if lower.ends_with(".i2p") {
            HostKind::I2p
        } else {
            HostKind::Name
        }
    }
}

impl fmt::Display for TargetAddr {
    /// `host:port`, with IPv6 literals in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TargetAddr({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::NetErrorKind;

    fn reject(host: &str, port: u16) {
        let err = TargetAddr::new(host, port).unwrap_err();
        assert_eq!(err.kind(), NetErrorKind::InvalidTarget, "{host:?}");
    }

    #[test]
    fn accepts_names_and_ip_literals() {
        let t = TargetAddr::new("example.org", 80).unwrap();
        assert_eq!((t.host(), t.port()), ("example.org", 80));
        assert_eq!(t.kind(), HostKind::Name);
        assert_eq!(t.to_string(), "example.org:80");

        let t = TargetAddr::new("127.0.0.1", 6969).unwrap();
        assert_eq!(t.kind(), HostKind::Ip("127.0.0.1".parse().unwrap()));

        let t = TargetAddr::new("[::1]", 443).unwrap();
        assert_eq!(t.host(), "::1");
        assert_eq!(t.to_string(), "[::1]:443");
        assert_eq!(TargetAddr::new("::1", 443).unwrap(), t);

        let onion = format!("{}.onion", "a".repeat(56));
        assert_eq!(TargetAddr::new(&onion, 80).unwrap().kind(), HostKind::Onion);
        assert_eq!(
            TargetAddr::new("Peer.I2P.", 80).unwrap().kind(),
            HostKind::I2p
        );
        assert!(TargetAddr::new(&"a".repeat(255), 1).is_ok());
    }

    #[test]
    fn rejects_bad_hosts_and_port_zero() {
        reject("", 80);
        reject(&"a".repeat(256), 80);
        reject("exa mple.org", 80);
        reject("example.org\n", 80);
        reject("tab\there", 80);
        reject("nul\0", 80);
        reject("a:b", 80);
        reject("[example.org]", 80);
        reject("example.org", 0);
    }
}
