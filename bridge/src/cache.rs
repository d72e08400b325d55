//! The warm tool cache: the last good lists of every upstream in `tools-cache.json`, so a restart
//! (or an upstream that is down) never shows clients an empty tool surface.
//!
//! The file is rewritten atomically (temp file, fsync, rename, fsync of the directory), only once
//! an upstream has produced a live list; a corrupt or unreadable file is logged and ignored,
//! and stays untouched until then.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::upstream::Lists;

pub const FILE_NAME: &str = "tools-cache.json";
const VERSION: u32 = 1;

#[derive(Debug, Default, Deserialize)]
struct CacheFile {
    version: u32,
    #[serde(default)]
    upstreams: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Deserialize)]
struct Entry {
    #[serde(flatten)]
    lists: Lists,
}

/// What is written: the same layout, borrowing the lists (no copy of every tool per write).
#[derive(Serialize)]
struct CacheFileRef<'a> {
    version: u32,
    upstreams: BTreeMap<&'a str, EntryRef<'a>>,
}

#[derive(Serialize)]
struct EntryRef<'a> {
    #[serde(flatten)]
    lists: &'a Lists,
    /// Unix seconds of the last write.
    updated_at: u64,
}

pub struct ToolCache {
    path: PathBuf,
}

impl ToolCache {
    pub fn new(config_dir: &Path) -> Self {
        Self {
            path: config_dir.join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the cached tool lists by upstream name. Never fails: problems are logged and give
    /// an empty cache.
    pub fn load(&self) -> BTreeMap<String, Lists> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot read the tool cache; starting without it");
                return BTreeMap::new();
            }
        };
        match serde_json::from_slice::<CacheFile>(&bytes) {
            Ok(f) if f.version == VERSION => {
                f.upstreams.into_iter().map(|(k, v)| (k, v.lists)).collect()
            }
            Ok(f) => {
                tracing::warn!(file = %self.path.display(), version = f.version, "tool cache has an unknown version; ignoring it");
                BTreeMap::new()
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "tool cache is corrupt; ignoring it until a good list replaces it");
                BTreeMap::new()
            }
        }
    }

    /// Serialises the lists of every upstream.
    pub fn render<L: std::ops::Deref<Target = Lists>>(lists: &BTreeMap<String, L>) -> Vec<u8> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let file = CacheFileRef {
            version: VERSION,
            upstreams: lists
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str(),
                        EntryRef {
                            lists: v,
                            updated_at: now,
                        },
                    )
                })
                .collect(),
        };
        serde_json::to_vec_pretty(&file).unwrap_or_default()
    }

    pub fn store(&self, bytes: &[u8]) -> std::io::Result<()> {
        logfile::write_atomic(&self.path, bytes, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mcpb-cache-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn roundtrip_and_mode() {
        let d = dir("rt");
        let c = ToolCache::new(&d);
        assert!(c.load().is_empty());
        let mut lists = BTreeMap::new();
        let l = Lists {
            tools: vec![json!({"name": "t", "x": 1})],
            capabilities: json!({"tools": {}}),
            ..Default::default()
        };
        lists.insert("a".to_owned(), l);
        let boxed: BTreeMap<String, Box<Lists>> = lists
            .iter()
            .map(|(k, v)| (k.clone(), Box::new(v.clone())))
            .collect();
        c.store(&ToolCache::render(&boxed)).unwrap();
        assert_eq!(c.load(), lists);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(c.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_file_is_ignored_and_left_alone() {
        let d = dir("corrupt");
        let c = ToolCache::new(&d);
        std::fs::write(c.path(), b"{ not json").unwrap();
        assert!(c.load().is_empty());
        assert_eq!(std::fs::read(c.path()).unwrap(), b"{ not json");
        std::fs::write(c.path(), br#"{"version": 99, "upstreams": {}}"#).unwrap();
        assert!(c.load().is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
