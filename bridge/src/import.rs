//! `mcp-bridge config import PATH`: turns a `claude_desktop_config.json` (or any `mcpServers`
//! JSON) into `config.toml` upstream entries.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

#[derive(Serialize)]
struct Entry {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cwd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// `"sse"` for entries that say `"type": "sse"` (the legacy transport); else auto.
    #[serde(skip_serializing_if = "Option::is_none")]
    transport: Option<&'static str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    /// `"oauth"` where the source entry logged in by itself (an `mcp-remote` wrapper).
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<&'static str>,
}

#[derive(Serialize)]
struct File {
    upstream: Vec<Entry>,
}

fn name_of(raw: &str, taken: &[String]) -> String {
    let mut n: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    if n.is_empty() {
        n = "server".into();
    }
    let base = n.clone();
    let mut i = 2;
    while taken.contains(&n) {
        n = format!("{base}-{i}");
        i += 1;
    }
    n
}

fn strings(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The URL of an `npx [-y] mcp-remote[@version] URL ...` entry.
fn mcp_remote_url(s: &Value) -> Option<String> {
    let args: Vec<&str> = s
        .get("args")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let at = args
        .iter()
        .position(|a| *a == "mcp-remote" || a.starts_with("mcp-remote@"))?;
    let url = args.get(at + 1)?;
    (url.starts_with("https://") || url.starts_with("http://")).then(|| (*url).to_owned())
}

/// Whether an `mcpServers` entry is this bridge: the shim (which our README tells users to add
/// to claude_desktop_config.json), the bridge binary, or a URL on the bridge's port on loopback
/// (directly or through a wrapper such as mcp-remote).
fn points_at_the_bridge(s: &Value) -> Option<String> {
    let cmd = s.get("command").and_then(Value::as_str).unwrap_or("");
    let base = Path::new(cmd)
        .file_name()
        .and_then(|b| b.to_str())
        .unwrap_or("")
        .trim_end_matches(".exe");
    if base == "mcp-bridge-shim" || base == "mcp-bridge" {
        return Some(format!("command {cmd}"));
    }
    let args = s.get("args").and_then(Value::as_array);
    let urls = s
        .get("url")
        .and_then(Value::as_str)
        .into_iter()
        .chain(args.into_iter().flatten().filter_map(Value::as_str));
    for u in urls {
        let Ok(url) = url::Url::parse(u) else {
            continue;
        };
        let loopback = matches!(
            url.host_str(),
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
        );
        if loopback && url.port() == Some(proto::config::DEFAULT_PORT) {
            return Some(format!("URL {u}"));
        }
    }
    None
}

/// The TOML for every server in an `mcpServers` document, and notes on what was skipped.
pub fn convert(json: &str) -> anyhow::Result<(String, Vec<String>)> {
    let doc: Value = serde_json::from_str(json).context("not valid JSON")?;
    let servers = doc
        .get("mcpServers")
        .and_then(Value::as_object)
        .context("no \"mcpServers\" object")?;
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let mut taken = Vec::new();
    for (raw, s) in servers {
        if let Some(why) = points_at_the_bridge(s) {
            notes.push(format!(
                "{raw:?} is mcp-bridge itself ({why}); skipped, or the bridge would proxy itself"
            ));
            continue;
        }
        let name = name_of(raw, &taken);
        if &name != raw {
            notes.push(format!(
                "{raw:?} is named {name:?} (names are [a-zA-Z0-9_-])"
            ));
        }
        let entry = if let Some(url) = s.get("url").and_then(Value::as_str) {
            Entry {
                name: name.clone(),
                command: None,
                args: vec![],
                env: BTreeMap::new(),
                cwd: None,
                url: Some(url.to_owned()),
                transport: (s["type"] == "sse").then_some("sse"),
                headers: strings(&s["headers"]),
                auth: None,
            }
        } else if let Some(url) = mcp_remote_url(s) {
            // `npx mcp-remote URL` logs in with OAuth for a stdio host: the bridge speaks to the
            // URL itself, with the credential agent doing the OAuth.
            notes.push(format!(
                "{raw:?} wrapped {url} in mcp-remote; imported as a remote upstream with auth = \"oauth\" (run `mcp-cred-agent login {name}` once)"
            ));
            Entry {
                name: name.clone(),
                command: None,
                args: vec![],
                env: BTreeMap::new(),
                cwd: None,
                url: Some(url),
                transport: None,
                headers: BTreeMap::new(),
                auth: Some("oauth"),
            }
        } else if let Some(cmd) = s.get("command").and_then(Value::as_str) {
            let args = s
                .get("args")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Entry {
                name: name.clone(),
                command: Some(cmd.to_owned()),
                args,
                env: strings(&s["env"]),
                cwd: s.get("cwd").and_then(Value::as_str).map(str::to_owned),
                url: None,
                transport: None,
                headers: BTreeMap::new(),
                auth: None,
            }
        } else {
            notes.push(format!(
                "{raw:?} has neither \"command\" nor \"url\"; skipped"
            ));
            continue;
        };
        if s.get("disabled") == Some(&Value::Bool(true)) {
            notes.push(format!("{raw:?} is disabled in the source; skipped"));
            continue;
        }
        taken.push(name);
        out.push(entry);
    }
    let text = toml::to_string(&File { upstream: out }).context("cannot write TOML")?;
    Ok((text, notes))
}

/// Writes the converted entries to `<config dir>/config.toml`, refusing to overwrite without
/// `force`.
pub fn run(source: &Path, config_dir: &Path, force: bool) -> anyhow::Result<()> {
    let json = std::fs::read_to_string(source)
        .with_context(|| format!("cannot read {}", source.display()))?;
    let (text, notes) = convert(&json).with_context(|| format!("{}", source.display()))?;
    let target = config_dir.join(proto::config::CONFIG_FILE_NAME);
    if target.exists() && !force {
        anyhow::bail!(
            "{} exists; pass --force to replace it (or merge the entries below by hand):\n\n{text}",
            target.display()
        );
    }
    // The result must be a valid configuration before it replaces anything.
    proto::config::parse_file(&target, &text)
        .map_err(|e| anyhow::anyhow!("the converted configuration is invalid: {e}"))?;
    std::fs::create_dir_all(config_dir)
        .with_context(|| format!("cannot create {}", config_dir.display()))?;
    logfile::write_atomic(&target, text.as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", target.display()))?;
    for n in notes {
        println!("note: {n}");
    }
    println!(
        "wrote {} (reload a running bridge with `kill -HUP <pid>`)",
        target.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mcp_remote_wrapper_becomes_an_oauth_upstream() {
        let json = r#"{"mcpServers": {"linear": {"command": "npx", "args": ["-y", "mcp-remote@0.1.29", "https://mcp.linear.app/sse"]}}}"#;
        let (toml, notes) = convert(json).unwrap();
        assert!(
            toml.contains("url = \"https://mcp.linear.app/sse\""),
            "{toml}"
        );
        assert!(toml.contains("auth = \"oauth\""), "{toml}");
        assert!(!toml.contains("command"), "{toml}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("mcp-cred-agent login linear")),
            "{notes:?}"
        );
        proto::config::parse_file(Path::new("config.toml"), &toml).unwrap();
    }

    #[test]
    fn entries_that_are_the_bridge_itself_are_skipped() {
        let json = r#"{"mcpServers": {
            "mcp-bridge": {"command": "/opt/mcp-bridge/target/release/mcp-bridge-shim", "args": ["--url", "http://127.0.0.1:8769/mcp"]},
            "remote-me": {"command": "npx", "args": ["-y", "mcp-remote", "http://localhost:8769/mcp"]},
            "direct-me": {"url": "http://127.0.0.1:8769/mcp"},
            "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]}
        }}"#;
        let (toml, notes) = convert(json).unwrap();
        assert!(toml.contains("name = \"files\""), "{toml}");
        for skipped in ["mcp-bridge", "remote-me", "direct-me"] {
            assert!(!toml.contains(&format!("name = \"{skipped}\"")), "{toml}");
            assert!(
                notes
                    .iter()
                    .any(|n| n.contains(skipped) && n.contains("proxy itself")),
                "{notes:?}"
            );
        }
    }

    #[test]
    fn converts_a_claude_desktop_config() {
        let json = r#"{"mcpServers": {
            "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"]},
            "my server": {"command": "python3", "args": ["srv.py"], "env": {"API_KEY": "k"}},
            "remote": {"url": "https://mcp.example.com/mcp", "headers": {"X-Team": "a"}},
            "old": {"type": "sse", "url": "https://old.example.com/sse"},
            "off": {"command": "x", "disabled": true},
            "broken": {"foo": 1}
        }}"#;
        let (text, notes) = convert(json).unwrap();
        let ups = proto::config::parse_file(Path::new("config.toml"), &text)
            .unwrap()
            .upstreams;
        let names: Vec<_> = ups.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["filesystem", "my_server", "old", "remote"]);
        assert!(matches!(
            ups[2].transport,
            proto::config::Transport::Http {
                transport: proto::config::HttpTransport::Sse,
                ..
            }
        ));
        assert!(text.contains("server-filesystem"));
        assert!(notes.iter().any(|n| n.contains("my_server")));
        assert!(notes.iter().any(|n| n.contains("broken")));
        assert!(notes.iter().any(|n| n.contains("disabled")));
        assert!(convert("{}").is_err());
    }
}
