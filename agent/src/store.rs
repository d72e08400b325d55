//! The token store: `oauth-state.json` in the config directory, 0600 in a 0700 directory,
//! written atomically (temp file, fsync, rename, fsync of the directory), or (`[agent] store =
//! "keychain"`) one item of the OS keychain ([`crate::keychain`]). A file with the wrong mode or
//! owner, or one that does not parse, is refused with a clear error and left untouched.
//!
//! Switching `store` moves the logins at the next start: into the keychain (the file keeps
//! only a note saying where they went, so a later `store = "file"` knows to fetch them back),
//! or back into the file (then the keychain item is removed). Each move is read back before the
//! old copy goes; a keychain that is locked or unreachable stops the start with a clear error
//! and changes nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "oauth-state.json";
pub const VERSION: u32 = 1;

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
    /// In the file only, when the logins are in the OS keychain: which item holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keychain: Option<String>,
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
    #[error(
        "{item} is locked ({reason}); unlock it (log in to the desktop session, or unlock the keyring) and start mcp-cred-agent again. Nothing was changed: no login is lost"
    )]
    KeychainLocked { item: String, reason: String },
    #[error(
        "{item} does not hold a token store ({reason}); refusing to use or overwrite it: remove the item to start over"
    )]
    KeychainCorrupt { item: String, reason: String },
    #[error(
        "{path} says the logins are in {item}, but the keychain has no such item; refusing to start without them. Nothing was changed. If the item was removed on purpose, remove {path} too"
    )]
    KeychainItemMissing { path: PathBuf, item: String },
    #[error("the OS keychain failed: {reason}")]
    Keychain { reason: String },
    #[error(
        "config.toml sets [agent] store = \"keychain\", but the OS keychain is not reachable: {reason}. Start it (on Linux: a Secret Service such as GNOME Keyring on the session D-Bus; mcp-cred-agent needs DBUS_SESSION_BUS_ADDRESS), or set store = \"file\". Nothing was changed"
    )]
    KeychainUnavailable { reason: String },
    #[error(
        "{path} says the logins are in {item}, but config.toml sets [agent] store = \"file\" and the keychain is not reachable to move them back: {reason}. Make it reachable for one start (or set store = \"keychain\"). Nothing was changed"
    )]
    KeychainUnreachableForMove {
        path: PathBuf,
        item: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct FileStore {
    path: PathBuf,
}

/// Where the logins are kept (`[agent] store`), loaded and moved as that setting says.
pub enum TokenStore {
    File(FileStore),
    Keychain {
        keychain: crate::keychain::Keychain,
        /// `oauth-state.json`, which holds only the note saying where the logins are.
        file: FileStore,
        /// Whether the note is written.
        noted: std::sync::atomic::AtomicBool,
    },
}

impl TokenStore {
    /// Opens the store `kind` names in `config_dir` and loads it, moving the logins from the
    /// other store first if they are there. `platform` opens the OS keychain (a parameter, so
    /// tests can give a mock one).
    pub fn open(
        config_dir: &Path,
        kind: proto::config::StoreKind,
        platform: impl FnOnce() -> Result<
            std::sync::Arc<mcp_bridge_keychain::keyring_core::CredentialStore>,
            String,
        >,
    ) -> Result<(Self, State), StoreError> {
        use crate::keychain::Keychain;
        use proto::config::StoreKind;
        let file = FileStore::new(config_dir);
        let on_disk = file.load()?;
        match kind {
            StoreKind::File => {
                let Some(item) = on_disk.keychain.clone() else {
                    return Ok((Self::File(file), on_disk));
                };
                let unreachable = |reason: String| StoreError::KeychainUnreachableForMove {
                    path: file.path.clone(),
                    item: item.clone(),
                    reason,
                };
                let store = platform().map_err(unreachable)?;
                let keychain = Keychain::open(&store, config_dir)?;
                let Some(mut state) = keychain.read()? else {
                    return Err(StoreError::KeychainItemMissing {
                        path: file.path.clone(),
                        item,
                    });
                };
                state.keychain = None;
                file.save(&state)?;
                if file.load()? != state {
                    return Err(StoreError::Keychain {
                        reason: format!(
                            "{} did not read back as written; the logins stay in the keychain",
                            file.path.display()
                        ),
                    });
                }
                if let Err(e) = keychain.delete() {
                    tracing::warn!(error = %e, "the logins are in the file now; removing the keychain item failed (remove it by hand)");
                }
                tracing::info!(
                    from = %keychain.describe(),
                    to = %file.path.display(),
                    upstreams = state.upstreams.len(),
                    "moved the logins out of the OS keychain"
                );
                Ok((Self::File(file), state))
            }
            StoreKind::Keychain => {
                let store =
                    platform().map_err(|reason| StoreError::KeychainUnavailable { reason })?;
                let keychain = Keychain::open(&store, config_dir)?;
                let held = keychain.read()?;
                if let (Some(item), None) = (&on_disk.keychain, &held) {
                    return Err(StoreError::KeychainItemMissing {
                        path: file.path.clone(),
                        item: item.clone(),
                    });
                }
                let in_file = on_disk.keychain.is_none()
                    && !(on_disk.upstreams.is_empty() && on_disk.clients.is_empty());
                // The file holds the note already, or will once the logins moved.
                let noted = in_file || on_disk.keychain.is_some();
                let state = if in_file {
                    // The file was the store in use, so its logins win; an item left from an
                    // earlier time in the keychain only fills the gaps.
                    let mut merged = on_disk;
                    if let Some(older) = held {
                        for (k, v) in older.upstreams {
                            merged.upstreams.entry(k).or_insert(v);
                        }
                        for (k, v) in older.clients {
                            merged.clients.entry(k).or_insert(v);
                        }
                    }
                    keychain.write(&merged)?;
                    if keychain.read()?.as_ref() != Some(&merged) {
                        return Err(StoreError::Keychain {
                            reason: "the keychain item did not read back as written; the logins stay in the file".into(),
                        });
                    }
                    file.save(&State::note(&keychain))?;
                    tracing::info!(
                        from = %file.path.display(),
                        to = %keychain.describe(),
                        upstreams = merged.upstreams.len(),
                        "moved the logins into the OS keychain"
                    );
                    merged
                } else {
                    held.unwrap_or_else(State::empty)
                };
                Ok((
                    Self::Keychain {
                        keychain,
                        file,
                        noted: std::sync::atomic::AtomicBool::new(noted),
                    },
                    state,
                ))
            }
        }
    }

    /// Writes the whole state; returns once it is stored.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        match self {
            Self::File(f) => f.save(state),
            Self::Keychain {
                keychain,
                file,
                noted,
            } => {
                keychain.write(state)?;
                if !noted.load(std::sync::atomic::Ordering::Relaxed) {
                    file.save(&State::note(keychain))?;
                    noted.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(())
            }
        }
    }

    /// Where the logins are, for status and log lines.
    pub fn describe(&self) -> String {
        match self {
            Self::File(f) => f.path.display().to_string(),
            Self::Keychain { keychain, .. } => keychain.describe(),
        }
    }
}

impl State {
    pub fn empty() -> Self {
        Self {
            version: VERSION,
            ..Default::default()
        }
    }

    /// What the file holds while the logins are in the keychain.
    fn note(keychain: &crate::keychain::Keychain) -> Self {
        Self {
            keychain: Some(keychain.describe()),
            ..Self::empty()
        }
    }
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
                return Ok(State::empty());
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

    #[test]
    fn switching_stores_moves_the_logins_and_a_locked_keychain_changes_nothing() {
        use proto::config::StoreKind;
        let d = dir("move");
        let kc: std::sync::Arc<mcp_bridge_keychain::keyring_core::CredentialStore> =
            mcp_bridge_keychain::keyring_core::mock::Store::new().unwrap();
        let platform = || Ok(kc.clone());
        let file = FileStore::new(&d);
        let mut st = State::empty();
        st.upstreams.insert(
            "o".into(),
            Login {
                refresh_token: Some(Secret::new("rt-secret".into())),
                ..Default::default()
            },
        );
        file.save(&st).unwrap();

        // A locked keychain: refused, the file as it was.
        let entry = mcp_bridge_keychain::keyring_core::Entry::new_in_store(
            &kc,
            crate::keychain::SERVICE,
            &d.display().to_string(),
        )
        .unwrap();
        let lock = || {
            entry
                .as_any()
                .downcast_ref::<mcp_bridge_keychain::keyring_core::mock::Cred>()
                .unwrap()
                .set_error(mcp_bridge_keychain::keyring_core::Error::NoStorageAccess(
                    "locked".into(),
                ))
        };
        lock();
        let before = std::fs::read(file.path()).unwrap();
        let Err(e) = TokenStore::open(&d, StoreKind::Keychain, platform) else {
            panic!("a locked keychain must refuse")
        };
        assert!(matches!(e, StoreError::KeychainLocked { .. }), "{e}");
        assert_eq!(std::fs::read(file.path()).unwrap(), before);

        // Into the keychain: the file keeps a note without secrets.
        let (store, loaded) = TokenStore::open(&d, StoreKind::Keychain, platform).unwrap();
        assert_eq!(loaded, st);
        let note = std::fs::read_to_string(file.path()).unwrap();
        assert!(
            !note.contains("rt-secret") && note.contains("keychain"),
            "{note}"
        );
        // A write goes to the keychain, not the file.
        let mut next = loaded.clone();
        next.upstreams.get_mut("o").unwrap().refresh_token = Some(Secret::new("rt-2".into()));
        store.save(&next).unwrap();
        assert!(
            !std::fs::read_to_string(file.path())
                .unwrap()
                .contains("rt-2")
        );

        // An unreachable keychain when moving back: refused, the note stays.
        let Err(e) = TokenStore::open(&d, StoreKind::File, || Err("no bus".into())) else {
            panic!("cannot move back without the keychain")
        };
        assert!(
            matches!(e, StoreError::KeychainUnreachableForMove { .. }),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(file.path()).unwrap(), note);

        // Back to the file: the latest logins, and the item is gone.
        let (_, back) = TokenStore::open(&d, StoreKind::File, platform).unwrap();
        assert_eq!(back, next);
        assert_eq!(file.load().unwrap(), next);
        assert!(matches!(
            entry.get_secret(),
            Err(mcp_bridge_keychain::keyring_core::Error::NoEntry)
        ));

        // A note whose item is gone: refused either way, the note kept (no empty start).
        let mut note_only = State::empty();
        note_only.keychain = Some("the OS keychain (mock)".into());
        file.save(&note_only).unwrap();
        for kind in [StoreKind::File, StoreKind::Keychain] {
            let Err(e) = TokenStore::open(&d, kind, platform) else {
                panic!("{kind:?}: a missing item must refuse")
            };
            assert!(matches!(e, StoreError::KeychainItemMissing { .. }), "{e}");
            assert_eq!(file.load().unwrap(), note_only);
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
