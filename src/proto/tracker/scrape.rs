//! `GET /scrape` query (BEP 48): any number of `info_hash` parameters, capped.

use super::query::{decode_fixed, pairs, percent_encode};
use super::RequestError;
use crate::proto::InfoHash;

/// A parsed scrape: the info-hashes asked about, sorted and without duplicates.
///
/// An empty list is a "full scrape" request; the handler decides whether to serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeRequest {
    /// The torrents, sorted, no duplicates.
    pub info_hashes: Vec<InfoHash>,
}

impl ScrapeRequest {
    /// Default cap on `info_hash` values per request.
    pub const DEFAULT_MAX_INFO_HASHES: usize = 256;
    /// Bytes allowed per `info_hash` parameter when sizing the query cap
    /// (`info_hash=` + 60 fully-escaped characters + `&`).
    const BYTES_PER_HASH: usize = 71;
    /// Slack for other parameters (passkeys and the like).
    const QUERY_SLACK: usize = 1024;

    /// The longest query accepted for a given cap on info-hashes.
    #[must_use]
    pub fn max_query_len(max_info_hashes: usize) -> usize {
        max_info_hashes
            .saturating_mul(Self::BYTES_PER_HASH)
            .saturating_add(Self::QUERY_SLACK)
    }

    /// Parse with the default cap ([`Self::DEFAULT_MAX_INFO_HASHES`]).
    pub fn parse_query(query: &[u8]) -> Result<Self, RequestError> {
        Self::parse_query_capped(query, Self::DEFAULT_MAX_INFO_HASHES)
    }

    /// Parse the raw query, allowing at most `max_info_hashes` `info_hash` values
    /// (duplicates count). Over the cap is [`RequestError::TooManyInfoHashes`]; a query
    /// longer than [`Self::max_query_len`] is dropped unread.
    pub fn parse_query_capped(query: &[u8], max_info_hashes: usize) -> Result<Self, RequestError> {
        let max = Self::max_query_len(max_info_hashes);
        if query.len() > max {
            return Err(RequestError::QueryTooLong {
                len: query.len(),
                max,
            });
        }
        let mut info_hashes = Vec::new();
        for (name, value) in pairs(query) {
            if name == b"info_hash" {
                if info_hashes.len() >= max_info_hashes {
                    return Err(RequestError::TooManyInfoHashes {
                        max: max_info_hashes,
                    });
                }
                info_hashes.push(InfoHash::from(decode_fixed::<20>(value, "info_hash")?));
            }
        }
        info_hashes.sort_unstable();
        info_hashes.dedup();
        Ok(Self { info_hashes })
    }

    /// Append this request as a query string (without `?`).
    pub fn write_query(&self, out: &mut Vec<u8>) {
        for (i, ih) in self.info_hashes.iter().enumerate() {
            if i > 0 {
                out.push(b'&');
            }
            out.extend_from_slice(b"info_hash=");
            percent_encode(out, ih.as_bytes());
        }
    }
}
