//! Reload on save: a debounced watch of `config.toml` for both daemons (beside SIGHUP). The
//! directory is watched, not the file, because editors save by writing a new file and renaming
//! it over the old one; only events naming `config.toml` count, so the daemons' own files in
//! the same directory (caches, pins, logs) trigger nothing.

use std::path::Path;
use std::time::Duration;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

/// How long a burst of writes (an editor's save) must be quiet before it counts as one change.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// A running watch: `changes` yields once per debounced change of `config.toml`. Dropping it
/// stops watching.
pub struct ConfigWatch {
    _debouncer: Debouncer<RecommendedWatcher>,
    pub changes: tokio::sync::mpsc::UnboundedReceiver<()>,
}

/// Watches `config_dir` for changes to its `config.toml`.
pub fn config_changes(config_dir: &Path) -> Result<ConfigWatch, String> {
    let (tx, changes) = tokio::sync::mpsc::unbounded_channel();
    let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| {
        if let Ok(events) = result
            && events.iter().any(|e| {
                e.path
                    .file_name()
                    .is_some_and(|n| n == crate::config::CONFIG_FILE_NAME)
            })
        {
            // The daemon stopped listening: nothing to tell.
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", config_dir.display()))?;
    debouncer
        .watcher()
        .watch(config_dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}", config_dir.display()))?;
    Ok(ConfigWatch {
        _debouncer: debouncer,
        changes,
    })
}
