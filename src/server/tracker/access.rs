//! Allow- and deny-lists of info-hashes, read from a file and reloaded on demand (SIGHUP).
//!
//! File format: one info-hash per line as 40 hex characters (either case); blank lines and
//! everything after a `#` are ignored. Any other line makes the whole file invalid, and an
//! invalid file never replaces a good list.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use crate::proto::InfoHash;
use crate::server::config::AccessMode;

/// Why an access list could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AccessListError {
    /// The file could not be read.
    #[error("cannot read access list {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not an info-hash.
    #[error("access list {path}, line {line}: not a 40-hex info-hash")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        #[source]
        source: crate::proto::HexError,
    },
}

/// The tracker's access policy.
#[derive(Debug)]
pub struct AccessList {
    mode: AccessMode,
    path: Option<PathBuf>,
    hashes: RwLock<Arc<HashSet<InfoHash>>>,
}

impl AccessList {
    /// A policy with an empty list; call [`AccessList::reload`] to read the file.
    #[must_use]
    pub fn new(mode: AccessMode, path: Option<PathBuf>) -> Self {
        Self {
            mode,
            path,
            hashes: RwLock::default(),
        }
    }

    /// The mode.
    #[must_use]
    pub fn mode(&self) -> AccessMode {
        self.mode
    }

    /// Whether announces for `ih` are served.
    #[must_use]
    pub fn permits(&self, ih: &InfoHash) -> bool {
        let listed = || {
            self.hashes
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(ih)
        };
        match self.mode {
            AccessMode::Open => true,
            AccessMode::Allowlist => listed(),
            AccessMode::Denylist => !listed(),
        }
    }

    /// Re-read the file (a no-op returning 0 in `open` mode). On error the old list stays.
    /// Returns the number of info-hashes now listed.
    pub fn reload(&self) -> Result<usize, AccessListError> {
        let Some(path) = self
            .path
            .as_deref()
            .filter(|_| self.mode != AccessMode::Open)
        else {
            return Ok(0);
        };
        let set = read_list(path)?;
        let n = set.len();
        *self.hashes.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
        Ok(n)
    }
}

/// Parse an access-list file.
pub fn read_list(path: &Path) -> Result<HashSet<InfoHash>, AccessListError> {
    let text = std::fs::read_to_string(path).map_err(|source| AccessListError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_list(&text).map_err(|(line, source)| AccessListError::BadLine {
        path: path.to_owned(),
        line,
        source,
    })
}

fn parse_list(text: &str) -> Result<HashSet<InfoHash>, (usize, crate::proto::HexError)> {
    let mut set = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default().trim();
        if content.is_empty() {
            continue;
        }
        let ih = InfoHash::from_hex_any_case(content).map_err(|e| (i + 1, e))?;
        set.insert(ih);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "0123456789abcdef0123456789abcdef01234567";
    const H2: &str = "89ABCDEF0123456789ABCDEF0123456789ABCDEF";

    #[test]
    fn parses_comments_blank_lines_and_either_case() {
        let text = format!("# header\n\n{H1}  # first\n  {H2}\n");
        let set = parse_list(&text).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&InfoHash::from_hex(H1).unwrap()));
        assert!(set.contains(&InfoHash::from_hex(&H2.to_lowercase()).unwrap()));
        assert_eq!(parse_list(&format!("{H1}\nnope\n")).unwrap_err().0, 2);
    }

    #[test]
    fn modes_and_reload_keep_the_old_list_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list");
        std::fs::write(&path, format!("{H1}\n")).unwrap();
        let h1 = InfoHash::from_hex(H1).unwrap();
        let h2 = InfoHash::from_hex(&H2.to_lowercase()).unwrap();

        let allow = AccessList::new(AccessMode::Allowlist, Some(path.clone()));
        assert!(!allow.permits(&h1), "empty until loaded");
        assert_eq!(allow.reload().unwrap(), 1);
        assert!(allow.permits(&h1) && !allow.permits(&h2));

        let deny = AccessList::new(AccessMode::Denylist, Some(path.clone()));
        deny.reload().unwrap();
        assert!(!deny.permits(&h1) && deny.permits(&h2));

        std::fs::write(&path, "garbage\n").unwrap();
        assert!(matches!(
            allow.reload(),
            Err(AccessListError::BadLine { line: 1, .. })
        ));
        assert!(allow.permits(&h1), "a bad file keeps the old list");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(allow.reload(), Err(AccessListError::Read { .. })));

        let open = AccessList::new(AccessMode::Open, None);
        assert_eq!(open.reload().unwrap(), 0);
        assert!(open.permits(&h2));
    }
}
