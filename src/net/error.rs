//! Errors of the connection layer, with coarse and stable kinds.

use std::io;
use std::time::Duration;

use super::Sensitive;

/// A boxed error cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A coarse, stable classification of [`NetError`]s.
///
/// Callers (and tests) match on kinds, never on messages. New kinds may be added as new
/// connector modes arrive; existing ones keep their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetErrorKind {
    /// The target address itself is malformed.
    InvalidTarget,
    /// The target is well-formed but this connector must not dial it (e.g. an onion name
    /// without Tor, which would leak the name to the local resolver).
    ForbiddenTarget,
    /// The host name could not be resolved.
    ResolveFailed,
    /// The TCP connection was refused, reset or unreachable.
    ConnectFailed,
    /// The connection attempt took longer than the connect timeout.
    Timeout,
    /// The configured proxy could not be reached.
    ProxyUnreachable,
    /// The proxy was reached but refused or failed the request.
    ProxyFailed,
    /// The embedded Tor client could not be configured or did not bootstrap.
    TorBootstrap,
}

impl NetErrorKind {
    /// Every kind, in a fixed order (for counters and exhaustive tests).
    pub const ALL: [NetErrorKind; 8] = [
        NetErrorKind::InvalidTarget,
        NetErrorKind::ForbiddenTarget,
        NetErrorKind::ResolveFailed,
        NetErrorKind::ConnectFailed,
        NetErrorKind::Timeout,
        NetErrorKind::ProxyUnreachable,
        NetErrorKind::ProxyFailed,
        NetErrorKind::TorBootstrap,
    ];

    /// A short, stable, lowercase name (suitable as a metric label).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            NetErrorKind::InvalidTarget => "invalid-target",
            NetErrorKind::ForbiddenTarget => "forbidden-target",
            NetErrorKind::ResolveFailed => "resolve-failed",
            NetErrorKind::ConnectFailed => "connect-failed",
            NetErrorKind::Timeout => "timeout",
            NetErrorKind::ProxyUnreachable => "proxy-unreachable",
            NetErrorKind::ProxyFailed => "proxy-failed",
            NetErrorKind::TorBootstrap => "tor-bootstrap",
        }
    }

    /// Position in [`Self::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            NetErrorKind::InvalidTarget => 0,
            NetErrorKind::ForbiddenTarget => 1,
            NetErrorKind::ResolveFailed => 2,
            NetErrorKind::ConnectFailed => 3,
            NetErrorKind::Timeout => 4,
            NetErrorKind::ProxyUnreachable => 5,
            NetErrorKind::ProxyFailed => 6,
            NetErrorKind::TorBootstrap => 7,
        }
    }
}

/// Why an outgoing connection could not be made.
///
/// Dial targets are [`Sensitive`]: messages show `[scrubbed]` in their place (the same error
/// may end up in a log). A cause's text is never part of the message; the cause is kept as
/// the error's `source`.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The target address is malformed.
    #[error("invalid target address: {reason}")]
    InvalidTarget {
        /// What was wrong.
        reason: &'static str,
    },
    /// This connector refuses to dial the target.
    #[error("refusing to connect to {target}: {reason}")]
    ForbiddenTarget {
        /// The target, as `host:port`.
        target: Sensitive<String>,
        /// Why.
        reason: &'static str,
    },
    /// Name resolution failed (or returned no addresses).
    #[error("could not resolve {host}")]
    Resolve {
        /// The host name.
        host: Sensitive<String>,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// Every resolved address refused or failed the TCP connection.
    #[error("could not connect to {target}")]
    Connect {
        /// The target, as `host:port`.
        target: Sensitive<String>,
        /// The last socket error.
        #[source]
        source: io::Error,
    },
    /// The connection attempt did not finish in time.
    #[error("timed out after {}s connecting to {target}", after.as_secs_f32())]
    Timeout {
        /// The target, as `host:port`.
        target: Sensitive<String>,
        /// The timeout that expired.
        after: Duration,
    },
    /// The proxy could not be reached.
    #[error("proxy unreachable: {proxy}")]
    ProxyUnreachable {
        /// The proxy's address.
        proxy: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The proxy refused or failed the request.
    #[error("proxy failed to connect to {target}")]
    ProxyFailed {
        /// The target, as `host:port`.
        target: Sensitive<String>,
        /// The proxy's error.
        #[source]
        source: BoxError,
    },
    /// The embedded Tor client could not open the stream.
    #[error("Tor could not connect to {target}")]
    Tor {
        /// The target, as `host:port`.
        target: Sensitive<String>,
        /// The coarse kind (`ConnectFailed`, `Timeout` or `ForbiddenTarget`).
        kind: NetErrorKind,
        /// arti's error.
        #[source]
        source: BoxError,
    },
    /// The embedded Tor client could not be configured or started.
    #[error("embedded Tor client: {what}")]
    TorBootstrap {
        /// What failed.
        what: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The embedded Tor client did not finish bootstrapping in time.
    #[error("embedded Tor client did not bootstrap within {}s", after.as_secs())]
    TorBootstrapTimeout {
        /// The timeout that expired.
        after: Duration,
    },
}

impl NetError {
    /// The coarse kind of this error.
    #[must_use]
    pub fn kind(&self) -> NetErrorKind {
        match self {
            NetError::InvalidTarget { .. } => NetErrorKind::InvalidTarget,
            NetError::ForbiddenTarget { .. } => NetErrorKind::ForbiddenTarget,
            NetError::Resolve { .. } => NetErrorKind::ResolveFailed,
            NetError::Connect { .. } => NetErrorKind::ConnectFailed,
            NetError::Timeout { .. } => NetErrorKind::Timeout,
            NetError::ProxyUnreachable { .. } => NetErrorKind::ProxyUnreachable,
            NetError::ProxyFailed { .. } => NetErrorKind::ProxyFailed,
            NetError::Tor { kind, .. } => *kind,
            NetError::TorBootstrap { .. } => NetErrorKind::TorBootstrap,
            NetError::TorBootstrapTimeout { .. } => NetErrorKind::Timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_indexed_consistently() {
        for (i, k) in NetErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert!(!k.as_str().is_empty());
        }
    }

    #[test]
    fn targets_are_scrubbed_in_messages() {
        let e = NetError::Connect {
            target: Sensitive::new("secret.example:80".into()),
            source: io::Error::other("x"),
        };
        assert_eq!(e.to_string(), "could not connect to [scrubbed]");
        assert!(!format!("{e:?}").contains("secret"));
    }
}
