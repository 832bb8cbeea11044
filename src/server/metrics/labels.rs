//! The fixed label sets of the server's metrics: every label value is one of these.

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $var),+ }
        impl $name {
            /// Every value, used to initialise label sets to zero.
            pub const ALL: &'static [Self] = &[$(Self::$var),+];
            /// The label value.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$var => $s),+ }
            }
        }
    };
}

label_enum!(
    /// What was published.
    PublishKind {
        /// `PUT /v1/manifests/{key}`.
        Manifest => "manifest",
        /// `POST /announce` (proof-of-concept pointer).
        Pointer => "pointer",
        /// `PUT /v1/profiles/{key}`.
        Profile => "profile",
    }
);

label_enum!(
    /// How a publish ended.
    PublishResult {
        /// First record for the key.
        Created => "created",
        /// Replaced an older record.
        Updated => "updated",
        /// Identical record re-sent.
        Unchanged => "unchanged",
        /// Sequence not above the high-water mark.
        Conflict => "conflict",
        /// Malformed, badly signed or mismatched.
        Invalid => "invalid",
        /// Over the size cap.
        TooLarge => "too_large",
        /// Refused by a rate limiter.
        RateLimited => "rate_limited",
        /// Missing or insufficient proof-of-work stamp.
        PowRequired => "pow_required",
        /// The identity cap is reached and the key is new.
        StoreFull => "store_full",
        /// Storage or other server failure.
        Error => "error",
    }
);

label_enum!(
    /// Which rate limiter refused a request.
    Limiter {
        /// Per-client reads.
        Read => "read",
        /// Per-client writes.
        Write => "write",
        /// The server-wide write ceiling.
        GlobalWrite => "global_write",
        /// Per publishing public key.
        Key => "key",
        /// Per WebSocket message (used by the WebSocket hub).
        Websocket => "websocket",
    }
);

label_enum!(
    /// Outcome of a proof-of-work admission check.
    PowResult {
        /// A valid stamp was presented.
        Valid => "valid",
        /// No stamp while one was required.
        Missing => "missing",
        /// A stamp that does not meet the difficulty or is malformed.
        Invalid => "invalid",
        /// The current difficulty is zero: no stamp needed.
        NotRequired => "not_required",
    }
);

label_enum!(
    /// A store operation, for database latency.
    DbOp {
        /// `put_manifest`.
        PutManifest => "put_manifest",
        /// `get_manifest`.
        GetManifest => "get_manifest",
        /// `delete_manifest`.
        DeleteManifest => "delete_manifest",
        /// `manifest_high_water`.
        ManifestHighWater => "manifest_high_water",
        /// `put_pointer`.
        PutPointer => "put_pointer",
        /// `get_pointer`.
        GetPointer => "get_pointer",
        /// `stats`.
        Stats => "stats",
        /// Passkey writes: `add_passkey`, `remove_passkey`.
        PasskeyWrite => "passkey_write",
        /// Passkey reads: `passkey_exists`, `list_passkeys`.
        PasskeyRead => "passkey_read",
        /// `put_mail`.
        PutMail => "put_mail",
        /// Mailbox reads: `list_mail`, `get_mail`.
        ReadMail => "read_mail",
        /// `ack_mail`.
        AckMail => "ack_mail",
        /// `use_mail_nonce`.
        MailNonce => "mail_nonce",
        /// `purge_mail`.
        PurgeMail => "purge_mail",
        /// `put_profile`.
        PutProfile => "put_profile",
        /// `get_profile`.
        GetProfile => "get_profile",
        /// `profile_high_water`.
        ProfileHighWater => "profile_high_water",
        /// `purge_profiles`.
        PurgeProfiles => "purge_profiles",
        /// `ping`.
        Ping => "ping",
    }
);

label_enum!(
    /// A listening socket.
    ListenerKind {
        /// The public HTTP + WebSocket listener.
        Http => "http",
        /// The onion-service listener (PROXY protocol).
        Onion => "onion",
    }
);

label_enum!(
    /// Why a connection was closed before serving it.
    RejectReason {
        /// `http.max_connections` reached.
        MaxConnections => "max_connections",
        /// Missing, malformed or slow PROXY header on the onion listener.
        ProxyHeader => "proxy_header",
    }
);
