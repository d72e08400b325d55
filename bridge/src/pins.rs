//! Pinned tool definitions: a SHA-256 of each tool's name, description, input and output schema
//! and annotations, kept in `tool-pins.json` in the config directory. A tool that appears after
//! an upstream's first listing, or whose definition changed since it was approved, is held back
//! (`pending`: neither listed nor callable, with `pin = "strict"`) until the user approves it
//! with `mcp-bridge tools approve`; a "rug pull" (a server silently changing what a tool claims
//! to do) never reaches a client unseen.
//!
//! The bridge and the CLI both change the file, each under an exclusive lock on
//! `tool-pins.lock`, re-reading it first, so neither loses the other's changes. A file that
//! cannot be read is refused and left untouched (pinning is then suspended, and `status` says
//! why); a missing one starts empty.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

fn empty_definition() -> Box<RawValue> {
    // A literal `{}` is valid JSON, so this cannot fail.
    #[allow(clippy::expect_used)]
    RawValue::from_string("{}".to_owned()).expect("{} is JSON")
}
use sha2::{Digest, Sha256};

pub const FILE_NAME: &str = "tool-pins.json";
const LOCK_NAME: &str = "tool-pins.lock";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinFile {
    pub version: u32,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamPins>,
}

impl Default for PinFile {
    fn default() -> Self {
        Self {
            version: VERSION,
            upstreams: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPins {
    /// Tool name → the approved definition.
    #[serde(default)]
    pub approved: BTreeMap<String, Pinned>,
    /// Tool name → a definition not approved yet (new, or changed since its approval).
    #[serde(default)]
    pub pending: BTreeMap<String, Pinned>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pinned {
    pub hash: String,
    /// What the hash covers, kept so a change can be shown as a diff. Kept as the JSON text:
    /// the bridge re-reads the file whenever it records a pin and never looks inside.
    pub definition: Box<RawValue>,
    /// Unix seconds when the bridge first saw this definition.
    pub seen_at: u64,
}

/// The parts of a tool definition that say what it does (as JSON text), and their SHA-256
/// (hex). Object keys serialise sorted, so the same definition always hashes the same.
pub fn definition(tool: &Value) -> (String, Box<RawValue>) {
    let mut d = serde_json::Map::new();
    for key in [
        "name",
        "description",
        "inputSchema",
        "outputSchema",
        "annotations",
    ] {
        if let Some(v) = tool.get(key) {
            d.insert(key.to_owned(), v.clone());
        }
    }
    let text = Value::Object(d).to_string();
    let hash = Sha256::digest(text.as_bytes());
    let hex = hash.iter().map(|b| format!("{b:02x}")).collect();
    // Serialised by serde_json just above, so it is valid JSON.
    let raw = RawValue::from_string(text).unwrap_or_else(|_| empty_definition());
    (hex, raw)
}

use crate::jsonfile::now;

impl crate::jsonfile::Versioned for PinFile {
    const VERSION: u32 = VERSION;
    fn version(&self) -> u32 {
        self.version
    }
}

/// Reads the pin file: `Ok(None)` if there is none, `Err` (with the reason) if it cannot be
/// trusted; such a file is never overwritten.
fn read(path: &Path) -> Result<Option<PinFile>, String> {
    crate::jsonfile::read(path, "a pin file")
}

/// Runs `change` on the file's current content under the lock and writes the result
/// atomically (0600) if it changed anything.
fn update<T>(dir: &Path, change: impl FnOnce(&mut PinFile) -> (bool, T)) -> Result<T, String> {
    crate::jsonfile::update(
        &dir.join(FILE_NAME),
        &dir.join(LOCK_NAME),
        "a pin file",
        change,
    )
}

/// The hashes of one upstream's pins: all the bridge keeps in memory (the definitions stay in
/// the file, for the CLI's diff; with 50 upstreams of 100 tools they were ~10 MiB).
#[derive(Default)]
struct Hashes {
    approved: HashMap<String, String>,
    pending: HashMap<String, String>,
}

impl Hashes {
    fn of(pins: &UpstreamPins) -> Self {
        let hashes = |m: &BTreeMap<String, Pinned>| {
            m.iter()
                .map(|(name, p)| (name.clone(), p.hash.clone()))
                .collect()
        };
        Self {
            approved: hashes(&pins.approved),
            pending: hashes(&pins.pending),
        }
    }
}

/// What the bridge knows of the pins.
enum State {
    Loaded(HashMap<String, Hashes>),
    /// The file cannot be trusted: pinning is suspended (and said so) until it is fixed.
    Refused(String),
}

pub struct Pins {
    dir: PathBuf,
    state: Mutex<(State, Option<SystemTime>)>,
}

/// How an upstream's tools are judged (`pin = …`).
pub use proto::config::PinMode;

impl Pins {
    pub fn load(dir: &Path) -> Self {
        let pins = Self {
            dir: dir.to_path_buf(),
            state: Mutex::new((State::Loaded(HashMap::new()), None)),
        };
        pins.reload();
        pins
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The config directory the pin file lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn mtime(&self) -> Option<SystemTime> {
        std::fs::metadata(self.path())
            .and_then(|m| m.modified())
            .ok()
    }

    fn reload(&self) {
        let mtime = self.mtime();
        let state = match read(&self.path()) {
            Ok(f) => State::Loaded(
                f.unwrap_or_default()
                    .upstreams
                    .iter()
                    .map(|(name, pins)| (name.clone(), Hashes::of(pins)))
                    .collect(),
            ),
            Err(e) => {
                tracing::error!(error = %e, "tool pins refused; pinning is suspended until the file is fixed or removed");
                State::Refused(e)
            }
        };
        *self.state.lock() = (state, mtime);
    }

    /// Re-reads the file if it changed on disk (an approval by the CLI); true if it did.
    pub fn reload_if_changed(&self) -> bool {
        let mtime = self.mtime();
        if self.state.lock().1 == mtime {
            return false;
        }
        self.reload();
        true
    }

    /// Why pinning is suspended, if it is.
    pub fn refused(&self) -> Option<String> {
        match &self.state.lock().0 {
            State::Refused(e) => Some(e.clone()),
            State::Loaded(_) => None,
        }
    }

    /// Judges an upstream's tools: the names to hold back. Records what is new: the first
    /// live listing of an upstream is approved as it is (trust on first use); after that a new
    /// or changed definition is pending. `live` is false for lists from the warm cache, which
    /// record nothing.
    pub fn judge(
        &self,
        upstream: &str,
        mode: PinMode,
        tools: &[Value],
        live: bool,
    ) -> HashSet<String> {
        let mut held = HashSet::new();
        if mode == PinMode::Off {
            return held;
        }
        let seen: Vec<(String, String, Box<RawValue>)> = tools
            .iter()
            .filter_map(|t| {
                let name = t.get("name")?.as_str()?.to_owned();
                let (hash, d) = definition(t);
                Some((name, hash, d))
            })
            .collect();
        let mut record = Vec::new();
        {
            let guard = self.state.lock();
            let State::Loaded(known) = &guard.0 else {
                return held;
            };
            match known.get(upstream) {
                None if live => record.push(None),
                None => return held,
                Some(pins) => {
                    for (name, hash, d) in &seen {
                        if pins.approved.get(name) == Some(hash) {
                            continue;
                        }
                        if mode == PinMode::Strict {
                            held.insert(name.clone());
                        }
                        if pins.pending.get(name) != Some(hash) {
                            record.push(Some((name.clone(), hash.clone(), d.clone())));
                        }
                    }
                }
            }
        }
        if record.is_empty() || !live {
            return held;
        }
        let first = record.iter().any(Option::is_none);
        let result = update(&self.dir, |file| {
            let pins = file.upstreams.entry(upstream.to_owned()).or_default();
            let t = now();
            if first && pins.approved.is_empty() && pins.pending.is_empty() {
                for (name, hash, d) in &seen {
                    pins.approved.insert(
                        name.clone(),
                        Pinned {
                            hash: hash.clone(),
                            definition: d.clone(),
                            seen_at: t,
                        },
                    );
                }
                tracing::info!(
                    upstream,
                    tools = seen.len(),
                    "pinned the tools of a new upstream as first listed (trust on first use)"
                );
                return (true, ());
            }
            let mut changed = false;
            for (name, hash, d) in record.iter().flatten() {
                if pins.approved.get(name).is_some_and(|p| &p.hash == hash) {
                    continue;
                }
                tracing::warn!(upstream, tool = %name, "a tool is new or changed since it was approved; held back until `mcp-bridge tools approve {upstream} {name}`");
                pins.pending.insert(
                    name.clone(),
                    Pinned {
                        hash: hash.clone(),
                        definition: d.clone(),
                        seen_at: t,
                    },
                );
                changed = true;
            }
            (changed, ())
        });
        match result {
            Ok(()) => self.reload(),
            Err(e) => tracing::error!(error = %e, "cannot record tool pins"),
        }
        held
    }

    /// Pending tools of an upstream (as recorded).
    pub fn pending(&self, upstream: &str) -> Vec<String> {
        match &self.state.lock().0 {
            State::Loaded(known) => {
                let mut names: Vec<String> = known
                    .get(upstream)
                    .map(|p| p.pending.keys().cloned().collect())
                    .unwrap_or_default();
                names.sort_unstable();
                names
            }
            State::Refused(_) => Vec::new(),
        }
    }
}

/// `mcp-bridge tools approve`: moves `tool` (or every pending tool, with `None`) of
/// `upstream` from pending to approved. The number approved.
pub fn approve(dir: &Path, upstream: &str, tool: Option<&str>) -> Result<usize, String> {
    update(dir, |file| {
        let Some(pins) = file.upstreams.get_mut(upstream) else {
            return (false, 0);
        };
        let names: Vec<String> = match tool {
            Some(t) => pins.pending.keys().filter(|k| *k == t).cloned().collect(),
            None => pins.pending.keys().cloned().collect(),
        };
        for n in &names {
            if let Some(p) = pins.pending.remove(n) {
                pins.approved.insert(n.clone(), p);
            }
        }
        (!names.is_empty(), names.len())
    })
}

/// `mcp-bridge tools list [--pending]`: the pinned tools, and for pending ones what changed.
pub fn describe(dir: &Path, pending_only: bool) -> Result<String, String> {
    let file = read(&dir.join(FILE_NAME))?.unwrap_or_default();
    let mut out = String::new();
    for (up, pins) in &file.upstreams {
        if !pending_only {
            for name in pins.approved.keys() {
                out.push_str(&format!("{up} {name}: approved\n"));
            }
        }
        for (name, p) in &pins.pending {
            match pins.approved.get(name) {
                Some(old) => {
                    out.push_str(&format!(
                        "{up} {name}: PENDING, changed since its approval:\n"
                    ));
                    out.push_str(&diff(&old.definition, &p.definition));
                }
                None => {
                    out.push_str(&format!("{up} {name}: PENDING, new:\n"));
                    out.push_str(&diff(&empty_definition(), &p.definition));
                }
            }
            out.push_str(&format!(
                "  approve with: mcp-bridge tools approve {up} {name}\n"
            ));
        }
    }
    if out.is_empty() {
        out.push_str(if pending_only {
            "no pending tools\n"
        } else {
            "no pinned tools yet\n"
        });
    }
    Ok(out)
}

/// A line diff of two definitions' pretty JSON: `-` lines only in `old`, `+` only in `new`.
fn diff(old: &RawValue, new: &RawValue) -> String {
    let pretty = |v: &RawValue| {
        serde_json::from_str::<Value>(v.get())
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_default()
    };
    let (a, b) = (pretty(old), pretty(new));
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = String::new();
    for l in &a {
        if !b.contains(l) {
            out.push_str(&format!("  - {l}\n"));
        }
    }
    for l in &b {
        if !a.contains(l) {
            out.push_str(&format!("  + {l}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mcpb-pins-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn tool(name: &str, description: &str) -> Value {
        json!({"name": name, "description": description, "inputSchema": {"type": "object"}})
    }

    #[test]
    fn first_use_is_trusted_then_changes_are_held_until_approved() {
        let d = dir("flow");
        let pins = Pins::load(&d);
        let v1 = [tool("a", "reads"), tool("b", "lists")];
        assert!(pins.judge("up", PinMode::Strict, &v1, true).is_empty());
        // A changed description and a new tool are held back.
        let v2 = [
            tool("a", "reads, and mails your keys away"),
            tool("b", "lists"),
            tool("c", "new"),
        ];
        let held = pins.judge("up", PinMode::Strict, &v2, true);
        assert_eq!(held, HashSet::from(["a".to_owned(), "c".to_owned()]));
        assert_eq!(pins.pending("up").len(), 2);
        let shown = describe(&d, true).unwrap();
        assert!(
            shown.contains("+   \"description\": \"reads, and mails your keys away\""),
            "{shown}"
        );
        // Warn mode serves them; off does not even look.
        assert!(pins.judge("up", PinMode::Warn, &v2, true).is_empty());
        assert!(pins.judge("up", PinMode::Off, &v2, true).is_empty());
        assert_eq!(approve(&d, "up", Some("a")).unwrap(), 1);
        pins.reload();
        assert_eq!(
            pins.judge("up", PinMode::Strict, &v2, true),
            HashSet::from(["c".to_owned()])
        );
        assert_eq!(approve(&d, "up", None).unwrap(), 1);
        pins.reload();
        assert!(pins.judge("up", PinMode::Strict, &v2, true).is_empty());
    }

    #[test]
    fn a_corrupt_file_is_refused_and_left_untouched() {
        let d = dir("corrupt");
        std::fs::write(d.join(FILE_NAME), b"{ not json").unwrap();
        let pins = Pins::load(&d);
        assert!(pins.refused().is_some_and(|e| e.contains("not a pin file")));
        assert!(
            pins.judge("up", PinMode::Strict, &[tool("a", "x")], true)
                .is_empty()
        );
        assert_eq!(std::fs::read(d.join(FILE_NAME)).unwrap(), b"{ not json");
        assert!(approve(&d, "up", None).is_err());
    }

    #[test]
    fn the_hash_covers_what_a_tool_claims() {
        let (h1, _) = definition(&tool("a", "x"));
        let (h2, _) = definition(
            &json!({"description": "x", "name": "a", "inputSchema": {"type": "object"}}),
        );
        assert_eq!(h1, h2, "key order does not matter");
        let mut t = tool("a", "x");
        t["annotations"] = json!({"destructiveHint": true});
        assert_ne!(definition(&t).0, h1);
        t = tool("a", "x");
        t["x-other"] = json!(1);
        assert_eq!(
            definition(&t).0,
            h1,
            "fields that say nothing of what it does are not pinned"
        );
    }
}
