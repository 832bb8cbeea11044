//! Pure wire formats: no tokio, axum, sqlx or tracing in here.
//!
//! Every type that crosses the network is defined here with a symmetric parse/write pair.

pub mod archive;
pub mod bencode;
pub mod json;
pub mod keys;
pub mod mailbox;
pub mod manifest;
pub mod message;
pub mod poc;
pub mod pointer;
pub mod pow;
pub mod profile;
pub mod tracker;
pub mod udp;
pub mod webtorrent;

pub use archive::{Archive, ArchiveError};
pub use keys::{HexError, InfoHash, MailboxKey, PublicKey, Signature};
pub use manifest::{Collection, Manifest, ManifestError, ManifestLimits, UnsignedManifest};
pub use message::{Message, MessageError, UnsignedMessage};
pub use poc::{PocError, PocManifest, PocMessage};
pub use pointer::{PointerAnnounce, PointerError};
pub use profile::{Profile, ProfileError, ProfileLimits, UnsignedProfile};

/// The largest integer JSON number accepted anywhere (2^53 − 1, JavaScript's safe range).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
