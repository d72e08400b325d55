//! JSON state files that the running bridge and its CLI both change (`tool-pins.json`,
//! `connectors.json`): read with a version check (missing → `None`; unreadable, not JSON of the
//! right shape, or another version → refused with the reason, and never overwritten), and
//! changed under an exclusive lock on a sibling lock file, re-reading first so neither side
//! loses the other's changes, written atomically (0600).

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A state file's format version, checked on every read.
pub trait Versioned {
    const VERSION: u32;
    fn version(&self) -> u32;
}

/// Reads `path`: `Ok(None)` if there is none, `Err` (saying why) if it cannot be trusted.
pub fn read<T: DeserializeOwned + Versioned>(path: &Path, what: &str) -> Result<Option<T>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    match serde_json::from_slice::<T>(&bytes) {
        Ok(f) if f.version() == T::VERSION => Ok(Some(f)),
        Ok(f) => Err(format!(
            "{} has version {}, this mcp-bridge writes {}",
            path.display(),
            f.version(),
            T::VERSION
        )),
        Err(e) => Err(format!(
            "{} is not {what} ({e}); fix or remove it (mcp-bridge leaves it untouched)",
            path.display()
        )),
    }
}

/// Runs `change` on the file's current content (`T::default()` when there is none) under an
/// exclusive lock on `lock`, and writes the result atomically (0600) if it changed anything.
pub fn update<T, R>(
    path: &Path,
    lock: &Path,
    what: &str,
    change: impl FnOnce(&mut T) -> (bool, R),
) -> Result<R, String>
where
    T: DeserializeOwned + Serialize + Versioned + Default,
{
    let _guard = exclusive(lock)?;
    let mut file = read::<T>(path, what)?.unwrap_or_default();
    let (changed, out) = change(&mut file);
    if changed {
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
        logfile::write_atomic(path, &bytes, 0o600)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(out)
}

/// An exclusive lock on the file `lock` (created if missing), held until the result drops.
pub fn exclusive(lock: &Path) -> Result<std::fs::File, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock)
        .map_err(|e| format!("cannot open {}: {e}", lock.display()))?;
    file.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock.display()))?;
    Ok(file)
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A file's modification time and length.
pub type Stamp = (std::time::SystemTime, u64);

/// The modification time and length of `path`, to notice another process's change.
pub fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}
