//! One item of the OS keychain, through keyring-core: the Secret Service (GNOME Keyring,
//! KWallet) on the session D-Bus on Linux, the login keychain on macOS. Bytes in, bytes out;
//! what they mean is the agent's business (`agent/src/keychain.rs`).
//!
//! Every call runs on its own thread with a deadline: a desktop keychain may show an unlock
//! prompt and wait for the user, which must not hang the caller for ever.

use std::sync::Arc;
use std::time::Duration;

pub use keyring_core;
use keyring_core::{CredentialStore, Entry, Error};

/// How long one keychain call may take (an unlock prompt waits for the user).
const DEADLINE: Duration = Duration::from_secs(20);

/// What went wrong, as sentences without secrets (a store's "bad encoding" errors carry the
/// bytes they read, so those are never shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeychainError {
    /// The keychain is there but locked (or the unlock prompt was dismissed).
    Locked(String),
    /// The item holds something that is not text of ours.
    Garbled,
    /// Anything else: no keychain, no D-Bus, a timeout.
    Failed(String),
}

impl std::fmt::Display for KeychainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Locked(r) => write!(f, "locked: {r}"),
            Self::Garbled => f.write_str("the item holds data of an unknown format"),
            Self::Failed(r) => f.write_str(r),
        }
    }
}

impl std::error::Error for KeychainError {}

/// This platform's keychain store.
pub fn platform_store() -> Result<Arc<CredentialStore>, KeychainError> {
    #[cfg(target_os = "linux")]
    {
        let store = bounded(dbus_secret_service_keyring_store::Store::new)?;
        Ok(store as Arc<CredentialStore>)
    }
    #[cfg(target_os = "macos")]
    {
        let store = bounded(apple_native_keyring_store::keychain::Store::new)?;
        Ok(store as Arc<CredentialStore>)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        Err(KeychainError::Failed(
            "this platform has no keychain store in mcp-cred-agent".into(),
        ))
    }
}

/// Runs one keychain call on its own thread, for at most [`DEADLINE`]; `NoEntry` is `None`.
fn bounded_opt<T: Send + 'static>(
    call: impl FnOnce() -> keyring_core::Result<T> + Send + 'static,
) -> Result<Option<T>, KeychainError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("keychain".into())
        .spawn(move || {
            let _ = tx.send(call());
        })
        .map_err(|e| {
            KeychainError::Failed(format!("cannot start a thread for the keychain: {e}"))
        })?;
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(v)) => Ok(Some(v)),
        Ok(Err(Error::NoEntry)) => Ok(None),
        Ok(Err(Error::NoStorageAccess(inner))) => Err(KeychainError::Locked(inner.to_string())),
        Ok(Err(Error::BadEncoding(_) | Error::BadDataFormat(..))) => Err(KeychainError::Garbled),
        Ok(Err(other)) => Err(KeychainError::Failed(other.to_string())),
        Err(_) => Err(KeychainError::Failed(format!(
            "the keychain did not answer within {} s (is it waiting for an unlock prompt?)",
            DEADLINE.as_secs()
        ))),
    }
}

fn bounded<T: Send + 'static>(
    call: impl FnOnce() -> keyring_core::Result<T> + Send + 'static,
) -> Result<T, KeychainError> {
    bounded_opt(call)?.ok_or_else(|| KeychainError::Failed("no such item".into()))
}

/// One keychain item: `service` and `account` in `store`.
pub struct Item {
    entry: Arc<Entry>,
    service: String,
    account: String,
    vendor: String,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Item {
    pub fn open(
        store: &Arc<CredentialStore>,
        service: &str,
        account: &str,
    ) -> Result<Self, KeychainError> {
        let entry = Entry::new_in_store(store, service, account)
            .map_err(|e| KeychainError::Failed(e.to_string()))?;
        Ok(Self {
            entry: Arc::new(entry),
            service: service.to_owned(),
            account: account.to_owned(),
            vendor: store.vendor(),
        })
    }

    /// Which item this is, for status and log lines.
    pub fn describe(&self) -> String {
        format!(
            "the OS keychain ({}), service {:?}, account {:?}",
            self.vendor, self.service, self.account
        )
    }

    /// The item's bytes; `None` when it does not exist.
    pub fn get(&self) -> Result<Option<Vec<u8>>, KeychainError> {
        let entry = self.entry.clone();
        bounded_opt(move || entry.get_secret())
    }

    /// Creates or replaces the item.
    pub fn set(&self, bytes: Vec<u8>) -> Result<(), KeychainError> {
        let entry = self.entry.clone();
        bounded(move || entry.set_secret(&bytes))
    }

    /// Removes the item (absent is fine).
    pub fn delete(&self) -> Result<(), KeychainError> {
        let entry = self.entry.clone();
        bounded_opt(move || entry.delete_credential()).map(|_| ())
    }

    /// The underlying entry (tests downcast it to a mock credential to inject errors).
    pub fn entry(&self) -> &Entry {
        &self.entry
    }
}
