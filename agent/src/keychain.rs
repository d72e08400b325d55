//! The OS keychain as the token store (`[agent] store = "keychain"`): the whole store (the same
//! JSON as `oauth-state.json`) is one keychain item, service `mcp-cred-agent`, account the
//! config directory, through the `mcp-bridge-keychain` crate (keyring-core and the platform's
//! store, each call with a deadline).

use std::path::Path;
use std::sync::Arc;

use mcp_bridge_keychain::keyring_core::CredentialStore;
use mcp_bridge_keychain::{Item, KeychainError};

use crate::store::{State, StoreError};

pub const SERVICE: &str = "mcp-cred-agent";

pub struct Keychain {
    item: Item,
}

impl std::fmt::Debug for Keychain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// This platform's keychain store.
pub fn platform_store() -> Result<Arc<CredentialStore>, String> {
    mcp_bridge_keychain::platform_store().map_err(|e| e.to_string())
}

impl Keychain {
    /// The item of the config directory `config_dir` in `store`.
    pub fn open(store: &Arc<CredentialStore>, config_dir: &Path) -> Result<Self, StoreError> {
        // The same directory is the same account however it was named (a trailing slash, a
        // symlink, a relative MCP_BRIDGE_CONFIG_DIR).
        let dir = std::fs::canonicalize(config_dir).unwrap_or_else(|_| config_dir.to_path_buf());
        let item = Item::open(store, SERVICE, &dir.display().to_string()).map_err(|e| {
            StoreError::Keychain {
                reason: e.to_string(),
            }
        })?;
        Ok(Self { item })
    }

    /// Where the logins are, for status and log lines.
    pub fn describe(&self) -> String {
        self.item.describe()
    }

    fn error(&self, e: KeychainError) -> StoreError {
        match e {
            KeychainError::Locked(reason) => StoreError::KeychainLocked {
                item: self.describe(),
                reason,
            },
            KeychainError::Garbled => StoreError::KeychainCorrupt {
                item: self.describe(),
                reason: e.to_string(),
            },
            KeychainError::Failed(reason) => StoreError::Keychain { reason },
        }
    }

    /// The stored state; `None` when the item does not exist.
    pub fn read(&self) -> Result<Option<State>, StoreError> {
        let Some(bytes) = self.item.get().map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        let state: State =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::KeychainCorrupt {
                item: self.describe(),
                // Position and kind only: serde_json's message can quote the item's strings.
                reason: format!(
                    "not a token store ({:?} error at line {}, column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            })?;
        if state.version != crate::store::VERSION {
            return Err(StoreError::KeychainCorrupt {
                item: self.describe(),
                reason: format!("unknown version {}", state.version),
            });
        }
        Ok(Some(state))
    }

    /// Replaces the item with `state`.
    pub fn write(&self, state: &State) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(state).map_err(|e| StoreError::Keychain {
            reason: e.to_string(),
        })?;
        self.item.set(bytes).map_err(|e| self.error(e))
    }

    /// Removes the item (absent is fine).
    pub fn delete(&self) -> Result<(), StoreError> {
        self.item.delete().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_bridge_keychain::keyring_core::{Error, mock};

    #[test]
    fn a_locked_keychain_is_a_clear_error_and_a_garbled_item_is_refused() {
        let store: Arc<CredentialStore> = mock::Store::new().unwrap();
        let dir = Path::new("/tmp/mcpb-kc-test");
        let kc = Keychain::open(&store, dir).unwrap();
        assert_eq!(kc.read().unwrap(), None, "absent is empty, not an error");
        let mut st = State {
            version: crate::store::VERSION,
            ..Default::default()
        };
        st.upstreams.insert(
            "o".into(),
            crate::store::Login {
                refresh_token: Some(crate::store::Secret::new("rt-secret".into())),
                ..Default::default()
            },
        );
        kc.write(&st).unwrap();
        assert_eq!(kc.read().unwrap(), Some(st.clone()));
        assert!(!format!("{kc:?}").contains("rt-secret"));

        let cred = |kc: &Keychain| {
            kc.item
                .entry()
                .as_any()
                .downcast_ref::<mock::Cred>()
                .unwrap()
                .set_error(Error::NoStorageAccess("collection is locked".into()))
        };
        cred(&kc);
        let e = kc.read().unwrap_err();
        assert!(matches!(e, StoreError::KeychainLocked { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("locked") && text.contains("unlock"),
            "says what to do: {text}"
        );
        cred(&kc);
        assert!(matches!(
            kc.write(&State::default()).unwrap_err(),
            StoreError::KeychainLocked { .. }
        ));
        assert_eq!(
            kc.read().unwrap(),
            Some(st),
            "a refused write changed nothing"
        );

        kc.item.entry().set_secret(b"{ not a store").unwrap();
        let e = kc.read().unwrap_err();
        assert!(matches!(e, StoreError::KeychainCorrupt { .. }), "{e}");
        kc.delete().unwrap();
        kc.delete().unwrap();
        assert_eq!(kc.read().unwrap(), None);
    }
}
