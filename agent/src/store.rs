//! The token store: `oauth-state.json` in the config directory, 0600 in a 0700 directory,
//! written atomically (temp file, fsync, rename, fsync of the directory). A file with the wrong
//! mode or owner, or one that does not parse, is refused with a clear error and left untouched.
//!
//! The OS keychain (keyring-core) is not used yet: this file is the only store.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "oauth-state.json";
const VERSION: u32 = 1;

/// A secret string: serialised as itself (it lives in the 0600 store), never shown by `Debug`,
/// wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Self(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        use secrecy::zeroize::Zeroize;
        self.0.zeroize();
    }
}

/// A client registration, kept per authorization server (issuer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Client {
    pub client_id: String,
    pub redirect_uri: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Token endpoint auth method (`none`, `client_secret_basic`, `client_secret_post`).
    #[serde(default)]
    pub auth_method: Option<String>,
}

/// Everything the agent knows about one upstream's login.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Login {
    pub issuer: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// The RFC 8707 resource indicator sent with token requests (absent when turned off).
    #[serde(default)]
    pub resource: Option<String>,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default)]
    pub auth_method: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub access_token: Option<Secret>,
    /// Unix seconds.
    #[serde(default)]
    pub expires_at: u64,
    /// Unix seconds when the access token was issued (the refresh point is 80% of its life).
    #[serde(default)]
    pub issued_at: u64,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    #[serde(default)]
    pub last_refresh: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// The refresh token was refused (`invalid_grant`): a new login is needed.
    #[serde(default)]
    pub needs_login: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub clients: BTreeMap<String, Client>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Login>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{path} has mode {mode:o}; it holds OAuth tokens and must be 0600 (refusing to use it; fix with `chmod 600 {path}`)"
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error("{path} belongs to uid {owner}, not to this user (uid {me}); refusing to use it")]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{path} is not a valid token store ({reason}); refusing to use or overwrite it — move it away to start over"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(config_dir: &Path) -> Self {
        Self {
            path: config_dir.join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the store; a missing file is an empty store.
    pub fn load(&self) -> Result<State, StoreError> {
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    version: VERSION,
                    ..Default::default()
                });
            }
            Err(e) => return Err(io(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::Mode {
                path: self.path.clone(),
                mode,
            });
        }
        let me = crate::sys::effective_uid();
        if meta.uid() != me {
            return Err(StoreError::Owner {
                path: self.path.clone(),
                owner: meta.uid(),
                me,
            });
        }
        let bytes = std::fs::read(&self.path).map_err(io)?;
        let state: State = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        if state.version != VERSION {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                reason: format!("unknown version {}", state.version),
            });
        }
        Ok(state)
    }

    /// Writes the store atomically; returns once it is on disk.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| io(std::io::Error::other(e)))?;
        logfile::write_atomic(&self.path, &bytes, 0o600).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mcpb-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn roundtrip_is_0600_and_secrets_stay_out_of_debug() {
        let d = dir("rt");
        let s = FileStore::new(&d);
        let mut st = s.load().unwrap();
        st.upstreams.insert(
            "o".into(),
            Login {
                refresh_token: Some(Secret::new("rt-secret".into())),
                ..Default::default()
            },
        );
        s.save(&st).unwrap();
        assert_eq!(
            std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(s.load().unwrap(), st);
        assert!(!format!("{st:?}").contains("rt-secret"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn wrong_mode_and_corrupt_files_are_refused_and_left_alone() {
        let d = dir("bad");
        let s = FileStore::new(&d);
        std::fs::write(s.path(), b"{}").unwrap();
        std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = s.load().unwrap_err().to_string();
        assert!(e.contains("0600") && e.contains("644"), "{e}");
        std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(s.path(), b"{ nope").unwrap();
        let e = s.load().unwrap_err().to_string();
        assert!(e.contains("not a valid token store"), "{e}");
        assert_eq!(std::fs::read(s.path()).unwrap(), b"{ nope");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
