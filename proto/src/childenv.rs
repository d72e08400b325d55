//! The environment of every process the daemons start (stdio upstreams, `op`, the browser
//! opener): built from scratch, never inherited whole, so no secret of the daemons' own
//! environment (`MCP_BRIDGE_INBOUND_TOKEN`, `MCP_BRIDGE_OWNER_PASSWORD`, a bearer token variable,
//! anything a user exported in the shell that started the service) reaches a third-party program.
//!
//! A child gets what a program needs to run, plus what its configuration names. Pure function
//! over an environment snapshot, so the rule is testable without touching the process.

use std::collections::BTreeMap;

/// Variables a program needs to run and that carry no secret of ours.
const BASICS: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TMP",
    "TEMP",
    "TERM",
    // Graphical sessions: browser openers and browser-driving servers need them.
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "DBUS_SESSION_BUS_ADDRESS",
    // Networks behind a proxy or with a private CA (`npx` must reach its registry).
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    // Windows basics.
    "SystemRoot",
    "SYSTEMROOT",
    "SystemDrive",
    "SYSTEMDRIVE",
    "WINDIR",
    "COMSPEC",
    "PATHEXT",
    "USERPROFILE",
    "APPDATA",
    "LOCALAPPDATA",
    "PROGRAMDATA",
    "ProgramFiles",
    "PROGRAMFILES",
    "ProgramFiles(x86)",
    "USERNAME",
    "USERDOMAIN",
];

/// Prefixes of variables that are locale or directory conventions.
const BASIC_PREFIXES: &[&str] = &["LC_", "XDG_"];

/// Whether `name` is one of the basics every child gets.
pub fn is_basic(name: &str) -> bool {
    BASICS.contains(&name) || BASIC_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The environment of a child: the basics of `parent`, then the variables `inherit` names (when
/// `parent` has them), then `explicit` (the config's `env`, which wins). Variables of the
/// daemons themselves (`MCP_BRIDGE_*`, `MCP_CRED_*`) are never included, whatever asks.
pub fn child_env<'a>(
    parent: impl IntoIterator<Item = (String, String)>,
    inherit: impl IntoIterator<Item = &'a String>,
    explicit: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let inherit: Vec<&String> = inherit.into_iter().collect();
    let mut out: BTreeMap<String, String> = parent
        .into_iter()
        .filter(|(k, _)| is_basic(k) || inherit.contains(&k))
        .collect();
    out.extend(explicit.iter().map(|(k, v)| (k.clone(), v.clone())));
    out.retain(|k, _| !crate::config::is_daemon_var(k));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> Vec<(String, String)> {
        [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/me"),
            ("LC_ALL", "C.UTF-8"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("MCP_BRIDGE_INBOUND_TOKEN", "tok"),
            ("MCP_BRIDGE_OWNER_PASSWORD", "pw"),
            ("MCP_CRED_AGENT_SOCKET", "/s"),
            ("GITHUB_TOKEN", "ghp"),
            ("AWS_SECRET_ACCESS_KEY", "aws"),
            ("WANTED", "yes"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn only_basics_named_and_explicit_variables_reach_a_child() {
        let explicit = BTreeMap::from([("LOG_LEVEL".to_owned(), "warn".to_owned())]);
        let inherit = ["WANTED".to_owned(), "ABSENT".to_owned()];
        let env = child_env(parent(), &inherit, &explicit);
        let keys: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "HOME",
                "LC_ALL",
                "LOG_LEVEL",
                "PATH",
                "WANTED",
                "XDG_RUNTIME_DIR"
            ]
        );
    }

    #[test]
    fn daemon_variables_never_pass_even_when_asked_for() {
        let explicit = BTreeMap::from([("mcp_bridge_x".to_owned(), "1".to_owned())]);
        let inherit = [
            "MCP_BRIDGE_INBOUND_TOKEN".to_owned(),
            "MCP_CRED_AGENT_SOCKET".to_owned(),
        ];
        let env = child_env(parent(), &inherit, &explicit);
        assert!(
            env.keys()
                .all(|k| !k.to_ascii_uppercase().starts_with("MCP_"))
        );
    }

    #[test]
    fn explicit_values_win_over_inherited_ones() {
        let explicit = BTreeMap::from([("PATH".to_owned(), "/opt/bin".to_owned())]);
        let env = child_env(parent(), &[], &explicit);
        assert_eq!(env["PATH"], "/opt/bin");
    }
}
