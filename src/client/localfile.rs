//! Small versioned JSON files under the home directory (`mailbox-keys.json`,
//! `inbox-seen.json`): read under a size cap, replaced atomically (a 0600 temporary file
//! renamed over the old one), and reported as corrupt with the file's name and the place of
//! the problem — never its content, which may be secret.

use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::identity::{read_capped, replace_atomically, wipe, Home};

/// Why a local file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LocalFileError {
    /// The file could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file does not hold what it should.
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the content).
        reason: String,
    },
}

impl LocalFileError {
    /// A corrupt-file error for `path`.
    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Load `path` as JSON of at most `max` bytes; `None` if there is no such file.
pub(crate) fn load<T: DeserializeOwned>(
    path: &Path,
    max: u64,
) -> Result<Option<T>, LocalFileError> {
    let mut bytes = match read_capped(path, max) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(LocalFileError::corrupt(path, format!("over {max} bytes")))
        }
        Err(source) => {
            return Err(LocalFileError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            })
        }
    };
    let parsed = serde_json::from_slice(&bytes);
    wipe(&mut bytes);
    // serde's messages may quote the offending value (perhaps a secret): say only where.
    parsed.map(Some).map_err(|e| {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Syntax | Category::Io => "not valid JSON",
            Category::Eof => "truncated JSON",
            Category::Data => "unexpected content",
        };
        LocalFileError::corrupt(
            path,
            format!("{what} at line {} column {}", e.line(), e.column()),
        )
    })
}

/// Store `value` as pretty JSON at `path` (in `home`'s directory), replacing it atomically.
pub(crate) fn save<T: Serialize>(
    home: &Home,
    path: &Path,
    value: &T,
) -> Result<(), LocalFileError> {
    let io_err = |source| LocalFileError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    home.ensure_dir().map_err(|e| io_err(io::Error::other(e)))?;
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| io_err(e.into()))?;
    bytes.push(b'\n');
    let result = replace_atomically(home.dir(), path, &bytes).map_err(io_err);
    wipe(&mut bytes);
    result
}
