//! The configuration contract both daemons read: the seed's environment variables plus
//! `config.toml` in the config directory. Environment overrides the file.
//!
//! [`load`] only parses: callers pass the file and the environment in, so the rules are
//! testable without touching the process environment. [`load_process`] is the one function
//! that reads them (both daemons and the shim use it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const CONFIG_FILE_NAME: &str = "config.toml";
pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 8769;
pub const DEFAULT_MCP_PATH: &str = "/mcp";

/// Name of the stdio upstream defined by `MCP_BRIDGE_SENTINEL_COMMAND`.
pub const SENTINEL: &str = "sentinel";
/// Name of the OAuth upstream defined by `MCP_BRIDGE_OVERSEER_URL`.
pub const OVERSEER: &str = "overseer";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub mcp_path: String,
    pub config_dir: PathBuf,
    /// The file the upstreams came from, when one existed.
    pub config_file: Option<PathBuf>,
    pub server: ServerSettings,
    pub logging: LoggingSettings,
    pub agent: AgentSettings,
    /// `MCP_BRIDGE_LOG_PATH`, if set.
    pub log_path: Option<PathBuf>,
    /// `MCP_CRED_AGENT_SOCKET`, if set.
    pub agent_socket_override: Option<PathBuf>,
    pub upstreams: Vec<UpstreamConfig>,
    /// `[[profile]]` entries: named views of the upstreams (the built-in ones are not listed).
    pub profiles: Vec<ProfileConfig>,
}

impl Config {
    /// The agent's socket: `$MCP_CRED_AGENT_SOCKET`, else `<config dir>/agent.sock`.
    pub fn agent_socket(&self) -> Result<PathBuf, crate::SocketPathError> {
        crate::socket_path(&self.config_dir, self.agent_socket_override.as_deref())
    }
}

/// The configuration of this process: its environment and the `config.toml` it names. The one
/// function here that reads the process environment and the file system; [`load`] takes both
/// as arguments.
pub fn load_process() -> Result<Config, ConfigError> {
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    load(&env, |path: &Path| match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    })
}

/// `[agent]`: what only mcp-cred-agent reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// Where the logins live: `oauth-state.json` (0600), or the OS keychain.
    pub store: StoreKind,
}

/// `[agent] store`: where mcp-cred-agent keeps its logins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// `oauth-state.json` in the config directory, 0600 in a 0700 directory.
    #[default]
    File,
    /// The OS keychain: the Secret Service (GNOME Keyring, KWallet) on Linux, the login
    /// keychain on macOS.
    Keychain,
}

/// `[logging]`: size rotation of the daemons' log files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSettings {
    /// A log file is rotated when it would grow past this.
    pub max_bytes: u64,
    /// Rotated files kept (`.1` … `.N`).
    pub keep: usize,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            keep: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Extra `Host` names accepted besides the loopback names (for example a tunnel's host).
    pub allowed_hosts: Vec<String>,
    /// Extra origins accepted besides the built-in allowlist; `https://*.example.com` matches
    /// whole labels only.
    pub allowed_origins: Vec<String>,
    /// Accept `http://localhost:*`, `http://127.0.0.1:*` and `http://[::1]:*` origins (local
    /// tools such as the MCP Inspector). A page on a loopback origin is already on this machine,
    /// so this does not open the DNS-rebinding hole the Origin check exists to close.
    pub allow_loopback_origins: bool,
    /// Largest accepted request body; bigger bodies get 413.
    pub max_body_bytes: usize,
    /// How long a client request may wait for an upstream before it fails and the upstream
    /// request is cancelled.
    pub request_timeout_secs: u64,
    /// Sessions idle longer than this are forgotten (their id then answers 404).
    pub session_idle_secs: u64,
    /// Most client sessions kept; past it the longest-idle session without an open stream is
    /// forgotten, so abandoned sessions cannot grow memory without bound.
    pub max_sessions: usize,
    /// A client that has not sent a request's headers within this many seconds is cut off.
    pub header_timeout_secs: u64,
    /// A request whose body has not fully arrived this many seconds after its headers gets 408
    /// and its connection is closed.
    pub body_timeout_secs: u64,
    /// On a first start (no warm cache), how long a client's `tools/list` (and the other lists)
    /// waits for upstreams still in their first handshake before answering with what is ready.
    pub first_list_wait_secs: f64,
    /// The profile served to browser origins that no `[[profile]]` names in its `origins`.
    pub browser_profile: String,
    /// The public URL a tunnel gives this bridge (`https://x.example`, no path): requests for
    /// its host need an OAuth token the bridge issued, and the bridge serves the OAuth
    /// authorization server claude.ai and ChatGPT connectors need.
    pub public_url: Option<String>,
    /// Let a connector's client metadata document URL point at a local or private address
    /// (tests, a self-hosted client on the LAN); also allows `http://` for such URLs.
    pub allow_local_client_metadata: bool,
    /// How long a connector's just-superseded refresh token still answers with the pair that
    /// replaced it (a retried refresh); its use after that revokes the connector's grant.
    pub connector_refresh_grace_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            allow_loopback_origins: true,
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout_secs: 120,
            session_idle_secs: 3600,
            max_sessions: 10_000,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            first_list_wait_secs: 5.0,
            browser_profile: PROFILE_READ_ONLY.to_owned(),
            public_url: None,
            allow_local_client_metadata: false,
            connector_refresh_grace_secs: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    /// Tool-name prefix; defaults to the name, `""` exposes names unprefixed.
    pub prefix: String,
    pub transport: Transport,
    pub timing: Timing,
    /// What the bridge answers when this upstream asks its client for `roots/list`.
    pub roots: Roots,
    /// Which protocol era the bridge speaks to this upstream (`era = "…"`).
    pub era: Era,
    /// What of this upstream clients see (`tools`, `prompts`, `resources`, `rename`,
    /// `read_only`).
    pub policy: Policy,
    /// How its tool definitions are pinned (`pin = …`).
    pub pin: PinMode,
}

/// `pin = …` of an upstream: what happens when a tool is new or its definition changed since
/// it was approved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinMode {
    /// Held back (neither listed nor callable) until approved.
    #[default]
    Strict,
    /// Served, logged and shown as pending.
    Warn,
    /// Not pinned.
    Off,
}

/// Which names (or URIs) of one kind are shown: all by default; with `allow`, only those
/// matching one of its globs; never those matching a `deny` glob. Globs: `*` any run of
/// characters, `?` one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Vec<String>,
}

impl Filter {
    pub fn admits(&self, name: &str) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|a| a.iter().any(|g| glob(g, name)))
            && !self.deny.iter().any(|g| glob(g, name))
    }

    pub fn is_open(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }
}

/// What of an upstream clients see. Hidden items are neither listed nor callable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub tools: Filter,
    pub prompts: Filter,
    /// Matched against resource URIs and template URI templates, as the upstream names them.
    pub resources: Filter,
    /// Tool and prompt names (the upstream's) → the names to expose instead (before the prefix).
    pub rename: BTreeMap<String, String>,
    /// Only tools annotated `readOnlyHint: true`.
    pub read_only: bool,
}

impl Policy {
    /// Whether the policy hides or renames anything.
    pub fn is_open(&self) -> bool {
        self.tools.is_open()
            && self.prompts.is_open()
            && self.resources.is_open()
            && self.rename.is_empty()
            && !self.read_only
    }
}

/// The built-in profile that shows everything (what `/mcp` serves to programs).
pub const PROFILE_ALL: &str = "all";
/// The built-in profile that shows only tools annotated `readOnlyHint: true` (what browser
/// origins get unless configured otherwise).
pub const PROFILE_READ_ONLY: &str = "read-only";

/// `[[profile]]`: a named view of the upstreams, served at `/mcp/<name>`, to the browser
/// origins it lists, and to `mcp-bridge-shim --profile <name>`. It narrows what the upstreams'
/// own policies already show; it never shows more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileConfig {
    pub name: String,
    /// The upstreams it includes; `None` = every upstream.
    pub upstreams: Option<Vec<String>>,
    /// Matched against exposed tool names (`github__search_*`).
    pub tools: Filter,
    /// Matched against exposed prompt names.
    pub prompts: Filter,
    /// Matched against exposed resource URIs and URI templates.
    pub resources: Filter,
    /// Only tools annotated `readOnlyHint: true`.
    pub read_only: bool,
    /// Browser origins (`https://app.example.com`, `https://*.example.com`) served this profile
    /// on every endpoint; they join the allowed origins.
    pub origins: Vec<String>,
}

impl ProfileConfig {
    /// The two profiles every bridge has: `all` and `read-only`.
    pub fn builtin() -> [ProfileConfig; 2] {
        [
            ProfileConfig {
                name: PROFILE_ALL.into(),
                ..Default::default()
            },
            ProfileConfig {
                name: PROFILE_READ_ONLY.into(),
                read_only: true,
                ..Default::default()
            },
        ]
    }

    /// Whether it shows everything (as `all` does).
    pub fn is_open(&self) -> bool {
        self.upstreams.is_none()
            && self.tools.is_open()
            && self.prompts.is_open()
            && self.resources.is_open()
            && !self.read_only
    }

    /// Whether it includes the upstream named `name`.
    pub fn includes(&self, upstream: &str) -> bool {
        self.upstreams
            .as_ref()
            .is_none_or(|u| u.iter().any(|n| n == upstream))
    }
}

/// Whether `s` is an origin pattern the bridge understands: `http(s)://host[:port]` or
/// `https://*.domain[:port]`, with no path.
pub fn valid_origin_pattern(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let rest = rest.strip_prefix("*.").unwrap_or(rest);
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', '*'])
}

/// Whether `name` matches `pattern` (`*` any run of characters, `?` exactly one).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `era = …` of an upstream: the MCP protocol generation the bridge speaks to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Era {
    /// Over HTTP: try a 2026-07-28 `server/discover` and fall back to `initialize`. Over stdio:
    /// `initialize`, and 2026-07-28 only if the server refuses it naming that version (a probe
    /// before `initialize` can make a 2025 child exit).
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// The 2025 era only (`initialize`, sessions).
    #[serde(rename = "2025")]
    Legacy,
    /// MCP 2026-07-28 only (stateless).
    #[serde(rename = "2026-07-28")]
    Modern,
}

/// `roots = …` of an upstream: the filesystem roots it is told about. Roots are a per-client
/// view and an upstream is shared by every client, so no client's roots reach a shared upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Roots {
    /// The bridge does not declare the roots capability upstream: the server keeps what its own
    /// arguments say.
    #[default]
    None,
    /// These `file://` URIs, whoever the client is.
    Fixed(Vec<String>),
    /// The roots of the one client session the upstream serves at a time (`roots = "client"`);
    /// another session's arrival restarts the upstream for it.
    Client,
}

/// Per-upstream timing, in seconds (fractions allowed).
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Bound on a client request to this upstream; `None` = the server's `request_timeout_secs`.
    pub request_timeout_secs: Option<f64>,
    /// Bound on `initialize` plus the first full `tools/list`.
    pub startup_timeout_secs: f64,
    /// Ping an upstream that has been silent this long; `0` turns keepalive off.
    pub ping_interval_secs: f64,
    /// A ping unanswered this long marks the upstream hung and reconnects it.
    pub ping_timeout_secs: f64,
    /// How long a call to an upstream that is not Ready waits for it to come back.
    pub reconnect_wait_secs: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            request_timeout_secs: None,
            startup_timeout_secs: 30.0,
            ping_interval_secs: 30.0,
            ping_timeout_secs: 10.0,
            reconnect_wait_secs: 5.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
        /// Variables of the bridge's own environment passed to the child by name
        /// (`inherit_env = ["VAR", ...]`); `MCP_BRIDGE_*` and `MCP_CRED_*` never are.
        inherit_env: Vec<String>,
    },
    Http {
        url: String,
        auth: Auth,
        headers: BTreeMap<String, String>,
        scopes: Vec<String>,
        /// Send the RFC 8707 `resource` parameter (off for servers such as Entra that refuse it).
        resource: bool,
        client_id: Option<String>,
        /// The URL of this client's metadata document (CIMD): used as the client id where the
        /// authorization server supports it, instead of registering.
        client_metadata_url: Option<String>,
        /// Which HTTP transport to speak.
        transport: HttpTransport,
        /// Accept OAuth endpoints (metadata, registration, token, authorization) on loopback,
        /// private or link-local addresses (`allow_local_oauth = true`); refused by default so
        /// a hostile server cannot point the agent at the machine's own network.
        allow_local_oauth: bool,
    },
}

/// The HTTP transport of a `url` upstream (`transport = "…"` in config.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HttpTransport {
    /// Streamable HTTP, falling back to the legacy HTTP+SSE transport when the server refuses
    /// the `initialize` POST with 400, 404 or 405 (what the MCP spec asks of clients).
    #[default]
    Auto,
    /// Streamable HTTP only.
    StreamableHttp,
    /// The legacy HTTP+SSE transport (MCP 2024-11-05) only.
    Sse,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Auth {
    Named(AuthKind),
    Bearer { bearer_env: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    None,
    Oauth,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}, line {line}: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{var}: {message}")]
    Env { var: &'static str, message: String },
    #[error("cannot read {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    server: ServerSettings,
    #[serde(default)]
    logging: LoggingSettings,
    #[serde(default)]
    agent: AgentSettings,
    #[serde(default)]
    upstream: Vec<toml::Spanned<RawUpstream>>,
    #[serde(default)]
    profile: Vec<toml::Spanned<RawProfile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    upstreams: Option<Vec<String>>,
    tools: Option<Filter>,
    prompts: Option<Filter>,
    resources: Option<Filter>,
    read_only: Option<bool>,
    #[serde(default)]
    origins: Vec<String>,
}

/// What one `config.toml` says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileConfig {
    pub server: ServerSettings,
    pub logging: LoggingSettings,
    pub agent: AgentSettings,
    pub upstreams: Vec<UpstreamConfig>,
    pub profiles: Vec<ProfileConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: toml::Spanned<String>,
    prefix: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    inherit_env: Option<Vec<String>>,
    cwd: Option<PathBuf>,
    roots: Option<RawRoots>,
    era: Option<Era>,
    tools: Option<Filter>,
    prompts: Option<Filter>,
    resources: Option<Filter>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
    read_only: Option<bool>,
    pin: Option<PinMode>,
    allow_local_oauth: Option<bool>,
    url: Option<String>,
    transport: Option<HttpTransport>,
    auth: Option<Auth>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    scopes: Vec<String>,
    resource: Option<bool>,
    client_id: Option<String>,
    client_metadata_url: Option<String>,
    request_timeout_secs: Option<f64>,
    startup_timeout_secs: Option<f64>,
    ping_interval_secs: Option<f64>,
    ping_timeout_secs: Option<f64>,
    reconnect_wait_secs: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoots {
    List(Vec<String>),
    Word(String),
}

/// Says what to write where the TOML parser's own words would not.
fn explain(message: &str) -> String {
    if message.contains("untagged enum Auth") {
        return "`auth` must be \"none\", \"oauth\" or { bearer_env = \"VAR_NAME\" }".into();
    }
    if message.contains("`strict`, `warn`") {
        return "`pin` must be \"strict\", \"warn\" or \"off\"".into();
    }
    if message.contains("`auto`, `2025`") {
        return "`era` must be \"auto\", \"2025\" or \"2026-07-28\" (the MCP generation the bridge speaks to this upstream)".into();
    }
    if message.contains("untagged enum RawRoots") {
        return "`roots` must be a list of file:// URIs, \"none\" or \"client\"".into();
    }
    if message.contains("expected a sequence") && message.contains("map") {
        return format!(
            "{message}: each upstream is an entry of a list, so write [[upstream]] (two brackets), once per upstream"
        );
    }
    message.to_owned()
}

/// Variables no child process is ever given: the daemons' own settings and secrets.
pub fn is_daemon_var(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("MCP_BRIDGE_") || upper.starts_with("MCP_CRED_")
}

/// `[a-zA-Z0-9_-]+`: upstream names become tool-name prefixes and CLI arguments.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn line_of(src: &str, offset: usize) -> usize {
    src.get(..offset).map_or(1, |s| s.matches('\n').count() + 1)
}

/// Parses the text of a `config.toml`. `file` is only used in messages.
pub fn parse_file(file: &Path, src: &str) -> Result<FileConfig, ConfigError> {
    let raw: RawFile = toml::from_str(src).map_err(|e| {
        let what = explain(e.message().trim_end());
        let message = match e.span() {
            Some(span) => format!("line {}: {what}", line_of(src, span.start)),
            None => what,
        };
        ConfigError::Parse {
            file: file.to_path_buf(),
            message,
        }
    })?;
    let mut upstreams: Vec<UpstreamConfig> = Vec::new();
    for entry in raw.upstream {
        let entry_line = line_of(src, entry.span().start);
        let raw = entry.into_inner();
        let name_line = line_of(src, raw.name.span().start);
        let invalid = |line: usize, message: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            line,
            message,
        };
        let name = raw.name.into_inner();
        if !valid_name(&name) {
            return Err(invalid(
                name_line,
                format!("upstream name {name:?} must be 1-64 characters of [a-zA-Z0-9_-]"),
            ));
        }
        if upstreams.iter().any(|u| u.name == name) {
            return Err(invalid(
                name_line,
                format!("upstream name {name:?} is used twice"),
            ));
        }
        let prefix = raw.prefix.unwrap_or_else(|| name.clone());
        if !prefix.is_empty() && !valid_name(&prefix) {
            return Err(invalid(
                name_line,
                format!(
                    "prefix {prefix:?} of upstream {name:?} must be empty or 1-64 characters of [a-zA-Z0-9_-]"
                ),
            ));
        }
        let transport = match (raw.command, raw.url) {
            (Some(command), None) => {
                if command.trim().is_empty() {
                    return Err(invalid(
                        entry_line,
                        format!("upstream {name:?} has an empty command"),
                    ));
                }
                if raw.auth.is_some()
                    || !raw.headers.is_empty()
                    || raw.transport.is_some()
                    || raw.allow_local_oauth.is_some()
                    || raw.client_metadata_url.is_some()
                {
                    return Err(invalid(
                        entry_line,
                        format!(
                            "upstream {name:?} is a stdio upstream; `auth`, `headers`, `allow_local_oauth`, `client_metadata_url` and `transport` apply to `url` upstreams only"
                        ),
                    ));
                }
                let inherit_env = raw.inherit_env.unwrap_or_default();
                for var in inherit_env.iter().chain(raw.env.keys()) {
                    if is_daemon_var(var) {
                        return Err(invalid(
                            entry_line,
                            format!(
                                "upstream {name:?}: {var} is one of the bridge's own variables and is never given to an upstream; remove it from `env`/`inherit_env`"
                            ),
                        ));
                    }
                }
                Transport::Stdio {
                    command,
                    args: raw.args,
                    env: raw.env,
                    cwd: raw.cwd,
                    inherit_env,
                }
            }
            (None, Some(url)) => {
                if raw.inherit_env.is_some() || raw.cwd.is_some() || !raw.env.is_empty() {
                    return Err(invalid(
                        entry_line,
                        format!(
                            "upstream {name:?} is a `url` upstream; `env`, `inherit_env` and `cwd` apply to stdio (`command`) upstreams only"
                        ),
                    ));
                }
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(
                        entry_line,
                        format!(
                            "upstream {name:?}: url {url:?} must start with http:// or https://"
                        ),
                    ));
                }
                if let Some(m) = &raw.client_metadata_url
                    && !m
                        .strip_prefix("https://")
                        .and_then(|r| r.split_once('/'))
                        .is_some_and(|(host, path)| !host.is_empty() && !path.is_empty())
                {
                    return Err(invalid(
                        entry_line,
                        format!(
                            "upstream {name:?}: client_metadata_url {m:?} must be an https URL with a path, such as \"https://example.com/mcp-bridge/client.json\" (the URL of your client metadata document)"
                        ),
                    ));
                }
                Transport::Http {
                    url,
                    auth: raw.auth.unwrap_or(Auth::Named(AuthKind::None)),
                    headers: raw.headers,
                    scopes: raw.scopes,
                    resource: raw.resource.unwrap_or(true),
                    client_id: raw.client_id,
                    client_metadata_url: raw.client_metadata_url,
                    transport: raw.transport.unwrap_or_default(),
                    allow_local_oauth: raw.allow_local_oauth.unwrap_or(false),
                }
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    entry_line,
                    format!("upstream {name:?} has both `command` and `url`; choose one"),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    entry_line,
                    format!("upstream {name:?} needs `command` (stdio) or `url` (HTTP)"),
                ));
            }
        };
        let d = Timing::default();
        let secs = |v: Option<f64>, default: f64, key: &str| match v {
            Some(x) if (0.0..=86_400.0).contains(&x) => Ok(x),
            Some(x) => Err(invalid(
                entry_line,
                format!("upstream {name:?}: {key} = {x} must be between 0 and 86400"),
            )),
            None => Ok(default),
        };
        let timing = Timing {
            request_timeout_secs: raw
                .request_timeout_secs
                .map(|v| secs(Some(v), 0.0, "request_timeout_secs"))
                .transpose()?,
            startup_timeout_secs: secs(
                raw.startup_timeout_secs,
                d.startup_timeout_secs,
                "startup_timeout_secs",
            )?,
            ping_interval_secs: secs(
                raw.ping_interval_secs,
                d.ping_interval_secs,
                "ping_interval_secs",
            )?,
            ping_timeout_secs: secs(
                raw.ping_timeout_secs,
                d.ping_timeout_secs,
                "ping_timeout_secs",
            )?,
            reconnect_wait_secs: secs(
                raw.reconnect_wait_secs,
                d.reconnect_wait_secs,
                "reconnect_wait_secs",
            )?,
        };
        let roots = match raw.roots {
            None => Roots::None,
            Some(RawRoots::Word(w)) if w == "client" => Roots::Client,
            Some(RawRoots::Word(w)) if w == "none" => Roots::None,
            Some(RawRoots::Word(w)) => {
                return Err(invalid(
                    entry_line,
                    format!(
                        "upstream {name:?}: roots = {w:?} is not allowed; write roots = [\"file:///path\", ...], roots = \"none\" or roots = \"client\""
                    ),
                ));
            }
            Some(RawRoots::List(list)) => {
                if let Some(bad) = list.iter().find(|r| !r.starts_with("file://")) {
                    return Err(invalid(
                        entry_line,
                        format!(
                            "upstream {name:?}: root {bad:?} must be a file:// URI such as \"file:///home/me/project\""
                        ),
                    ));
                }
                Roots::Fixed(list)
            }
        };
        upstreams.push(UpstreamConfig {
            name,
            prefix,
            transport,
            timing,
            roots,
            era: raw.era.unwrap_or_default(),
            policy: Policy {
                tools: raw.tools.unwrap_or_default(),
                prompts: raw.prompts.unwrap_or_default(),
                resources: raw.resources.unwrap_or_default(),
                rename: raw.rename,
                read_only: raw.read_only.unwrap_or(false),
            },
            pin: raw.pin.unwrap_or_default(),
        });
    }
    let profiles = parse_profiles(file, src, raw.profile, &upstreams, &raw.server)?;
    let mut server = raw.server;
    if let Some(u) = &server.public_url {
        let trimmed = u.trim_end_matches('/');
        let ok = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#', '@', ' ']));
        if !ok {
            return Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                line: src
                    .lines()
                    .position(|l| l.trim_start().starts_with("public_url"))
                    .map_or(1, |i| i + 1),
                message: format!(
                    "public_url = {u:?} must be the tunnel's URL without a path, such as \"https://mcp.example.com\""
                ),
            });
        }
        server.public_url = Some(trimmed.to_owned());
    }
    Ok(FileConfig {
        server,
        logging: raw.logging,
        agent: raw.agent,
        upstreams,
        profiles,
    })
}

/// Checks the `[[profile]]` entries against the upstreams and each other.
fn parse_profiles(
    file: &Path,
    src: &str,
    raw: Vec<toml::Spanned<RawProfile>>,
    upstreams: &[UpstreamConfig],
    server: &ServerSettings,
) -> Result<Vec<ProfileConfig>, ConfigError> {
    let mut profiles: Vec<ProfileConfig> = Vec::new();
    for entry in raw {
        let line = line_of(src, entry.span().start);
        let invalid = |message: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            line,
            message,
        };
        let raw = entry.into_inner();
        let name = raw.name;
        if !valid_name(&name) {
            return Err(invalid(format!(
                "profile name {name:?} must be 1-64 characters of [a-zA-Z0-9_-] (it becomes the path /mcp/{name})"
            )));
        }
        if name == PROFILE_ALL || name == PROFILE_READ_ONLY {
            return Err(invalid(format!(
                "profile name {name:?} is built in ({PROFILE_ALL:?} shows everything, {PROFILE_READ_ONLY:?} only read-only tools); choose another name"
            )));
        }
        if profiles.iter().any(|p| p.name == name) {
            return Err(invalid(format!("profile name {name:?} is used twice")));
        }
        for u in raw.upstreams.iter().flatten() {
            let known = upstreams.iter().any(|x| &x.name == u) || u == SENTINEL || u == OVERSEER;
            if !known {
                let names: Vec<&str> = upstreams.iter().map(|x| x.name.as_str()).collect();
                return Err(invalid(format!(
                    "profile {name:?} names upstream {u:?}, which no [[upstream]] defines (defined: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )));
            }
        }
        for o in &raw.origins {
            if !valid_origin_pattern(o) {
                return Err(invalid(format!(
                    "profile {name:?}: origin {o:?} must be of the form \"https://host[:port]\" or \"https://*.domain\", without a path"
                )));
            }
            if let Some(other) = profiles.iter().find(|p| p.origins.contains(o)) {
                return Err(invalid(format!(
                    "origin {o:?} is bound to both profile {:?} and profile {name:?}; an origin gets one profile",
                    other.name
                )));
            }
        }
        profiles.push(ProfileConfig {
            name,
            upstreams: raw.upstreams,
            tools: raw.tools.unwrap_or_default(),
            prompts: raw.prompts.unwrap_or_default(),
            resources: raw.resources.unwrap_or_default(),
            read_only: raw.read_only.unwrap_or(false),
            origins: raw.origins,
        });
    }
    let browser = &server.browser_profile;
    if browser != PROFILE_ALL
        && browser != PROFILE_READ_ONLY
        && !profiles.iter().any(|p| &p.name == browser)
    {
        return Err(ConfigError::Invalid {
            file: file.to_path_buf(),
            line: src
                .lines()
                .position(|l| l.trim_start().starts_with("browser_profile"))
                .map_or(1, |i| i + 1),
            message: format!(
                "browser_profile = {browser:?} names no profile; write \"{PROFILE_READ_ONLY}\", \"{PROFILE_ALL}\" or the name of a [[profile]]"
            ),
        });
    }
    Ok(profiles)
}

/// The default config directory: `~/.config/mcp-bridge` (the seed's contract, on every OS).
pub fn default_config_dir(home: Option<&str>) -> PathBuf {
    match home {
        Some(h) if !h.is_empty() => Path::new(h).join(".config").join("mcp-bridge"),
        _ => PathBuf::from(".config/mcp-bridge"),
    }
}

/// Builds the configuration from an environment snapshot and a file reader.
///
/// `read_file` returns `Ok(None)` when the file does not exist.
pub fn load(
    env: &BTreeMap<String, String>,
    read_file: impl Fn(&Path) -> std::io::Result<Option<String>>,
) -> Result<Config, ConfigError> {
    let var = |k: &str| env.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let config_dir = var("MCP_BRIDGE_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_config_dir(var("HOME")));
    let file = config_dir.join(CONFIG_FILE_NAME);
    let (parsed, config_file) = match read_file(&file) {
        Ok(Some(src)) => (parse_file(&file, &src)?, Some(file)),
        Ok(None) => (FileConfig::default(), None),
        Err(source) => return Err(ConfigError::Read { file, source }),
    };
    let FileConfig {
        server,
        logging,
        agent,
        mut upstreams,
        profiles,
    } = parsed;
    let port = match var("MCP_BRIDGE_PORT") {
        Some(p) => p.parse::<u16>().map_err(|_| ConfigError::Env {
            var: "MCP_BRIDGE_PORT",
            message: format!("{p:?} is not a port number"),
        })?,
        None => DEFAULT_PORT,
    };
    let mcp_path = var("MCP_BRIDGE_MCP_PATH").unwrap_or(DEFAULT_MCP_PATH);
    if !mcp_path.starts_with('/') || mcp_path.len() < 2 {
        return Err(ConfigError::Env {
            var: "MCP_BRIDGE_MCP_PATH",
            message: format!("{mcp_path:?} must be a path such as /mcp"),
        });
    }
    if let Some(command) = var("MCP_BRIDGE_SENTINEL_COMMAND") {
        let args = var("MCP_BRIDGE_SENTINEL_ARGS")
            .map(|a| a.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let sentinel = UpstreamConfig {
            name: SENTINEL.into(),
            prefix: SENTINEL.into(),
            transport: Transport::Stdio {
                command: command.to_owned(),
                args,
                env: BTreeMap::new(),
                cwd: None,
                inherit_env: Vec::new(),
            },
            timing: Timing::default(),
            roots: Roots::None,
            era: Era::Auto,
            policy: Policy::default(),
            pin: PinMode::default(),
        };
        override_upstream(&mut upstreams, sentinel);
    }
    if let Some(url) = var("MCP_BRIDGE_OVERSEER_URL") {
        let overseer = UpstreamConfig {
            name: OVERSEER.into(),
            prefix: OVERSEER.into(),
            transport: Transport::Http {
                url: url.to_owned(),
                auth: Auth::Named(AuthKind::Oauth),
                headers: BTreeMap::new(),
                scopes: Vec::new(),
                resource: true,
                client_id: None,
                client_metadata_url: None,
                transport: HttpTransport::Auto,
                allow_local_oauth: false,
            },
            timing: Timing::default(),
            roots: Roots::None,
            era: Era::Auto,
            policy: Policy::default(),
            pin: PinMode::default(),
        };
        override_upstream(&mut upstreams, overseer);
    }
    Ok(Config {
        host: var("MCP_BRIDGE_HOST").unwrap_or(DEFAULT_HOST).to_owned(),
        port,
        mcp_path: mcp_path.to_owned(),
        config_dir,
        config_file,
        server,
        logging,
        agent,
        log_path: var("MCP_BRIDGE_LOG_PATH").map(PathBuf::from),
        agent_socket_override: var(crate::SOCKET_ENV).map(PathBuf::from),
        upstreams,
        profiles,
    })
}

/// Environment overrides the file: an env-defined upstream replaces a file entry of the same
/// name but keeps that entry's prefix and timing.
fn override_upstream(upstreams: &mut Vec<UpstreamConfig>, mut new: UpstreamConfig) {
    if let Some(existing) = upstreams.iter_mut().find(|u| u.name == new.name) {
        new.prefix = std::mem::take(&mut existing.prefix);
        new.timing = existing.timing.clone();
        *existing = new;
    } else {
        upstreams.push(new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn with_file(src: &'static str) -> impl Fn(&Path) -> std::io::Result<Option<String>> {
        move |_| Ok(Some(src.to_owned()))
    }

    fn no_file(_: &Path) -> std::io::Result<Option<String>> {
        Ok(None)
    }

    #[test]
    fn defaults_follow_the_seed() {
        let c = load(&env(&[("HOME", "/home/u")]), no_file).unwrap();
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, 8769);
        assert_eq!(c.mcp_path, "/mcp");
        assert_eq!(c.config_dir, Path::new("/home/u/.config/mcp-bridge"));
        assert!(c.upstreams.is_empty());
    }

    #[test]
    fn seed_env_vars_define_sentinel_and_overseer() {
        let c = load(
            &env(&[
                ("MCP_BRIDGE_CONFIG_DIR", "/c"),
                ("MCP_BRIDGE_PORT", "9000"),
                ("MCP_BRIDGE_HOST", "127.0.0.2"),
                ("MCP_BRIDGE_MCP_PATH", "/x"),
                ("MCP_BRIDGE_SENTINEL_COMMAND", "python3"),
                ("MCP_BRIDGE_SENTINEL_ARGS", "-u  server.py --flag"),
                ("MCP_BRIDGE_OVERSEER_URL", "https://mcp.example.com/mcp"),
            ]),
            no_file,
        )
        .unwrap();
        assert_eq!(
            (c.port, c.host.as_str(), c.mcp_path.as_str()),
            (9000, "127.0.0.2", "/x")
        );
        assert_eq!(c.upstreams.len(), 2);
        assert_eq!(c.upstreams[0].name, "sentinel");
        match &c.upstreams[0].transport {
            Transport::Stdio { command, args, .. } => {
                assert_eq!(command, "python3");
                assert_eq!(args, &["-u", "server.py", "--flag"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &c.upstreams[1].transport,
            Transport::Http { auth: Auth::Named(AuthKind::Oauth), url, .. } if url == "https://mcp.example.com/mcp"
        ));
    }

    #[test]
    fn file_upstreams_and_env_override() {
        let src = r#"
[server]
allowed_hosts = ["bridge.example.com"]

[[upstream]]
name = "files"
command = "npx"
args = ["-y", "server-filesystem", "/home/me/docs"]
env = { LOG_LEVEL = "warn" }

[[upstream]]
name = "sentinel"
command = "old"
prefix = "s"

[[upstream]]
name = "remote"
url = "https://mcp.example.com/mcp"
auth = { bearer_env = "TOKEN_VAR" }
prefix = ""
"#;
        let c = load(
            &env(&[
                ("MCP_BRIDGE_CONFIG_DIR", "/c"),
                ("MCP_BRIDGE_SENTINEL_COMMAND", "new"),
            ]),
            with_file(src),
        )
        .unwrap();
        assert_eq!(c.server.allowed_hosts, ["bridge.example.com"]);
        let names: Vec<_> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["files", "sentinel", "remote"]);
        assert_eq!(c.upstreams[1].prefix, "s");
        assert!(
            matches!(&c.upstreams[1].transport, Transport::Stdio { command, .. } if command == "new")
        );
        assert_eq!(c.upstreams[2].prefix, "");
        assert!(matches!(
            &c.upstreams[2].transport,
            Transport::Http { auth: Auth::Bearer { bearer_env }, .. } if bearer_env == "TOKEN_VAR"
        ));
    }

    fn err_of(src: &'static str) -> String {
        load(&env(&[("MCP_BRIDGE_CONFIG_DIR", "/c")]), with_file(src))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn globs_match_as_written() {
        for (p, n) in [
            ("*", "x"),
            ("get_*", "get_issue"),
            ("a?c", "abc"),
            ("*_file", "read_file"),
            ("a*b*c", "aXbYc"),
            ("exact", "exact"),
        ] {
            assert!(glob(p, n), "{p} {n}");
        }
        for (p, n) in [
            ("get_*", "set_x"),
            ("a?c", "ac"),
            ("exact", "exactly"),
            ("a*b", "ab_"),
            ("", "x"),
        ] {
            assert!(!glob(p, n), "{p} {n}");
        }
    }

    #[test]
    fn a_policy_is_read_and_a_wrong_key_named() {
        let c = load(
            &env(&[("MCP_BRIDGE_CONFIG_DIR", "/c")]),
            with_file("[[upstream]]\nname = \"a\"\ncommand = \"x\"\ntools = { allow = [\"get_*\"], deny = [\"get_secret\"] }\nrename = { search = \"find\" }\nread_only = true\n"),
        )
        .unwrap();
        let p = &c.upstreams[0].policy;
        assert!(
            p.tools.admits("get_issue")
                && !p.tools.admits("get_secret")
                && !p.tools.admits("delete")
        );
        assert!(p.prompts.admits("anything"));
        assert_eq!(p.rename.get("search").map(String::as_str), Some("find"));
        assert!(p.read_only && !p.is_open());
        let e =
            err_of("[[upstream]]\nname = \"a\"\ncommand = \"x\"\ntools = { allows = [\"x\"] }\n");
        assert!(e.contains("line 4") && e.contains("allows"), "{e}");
    }

    #[test]
    fn profiles_are_read_and_checked() {
        let c = load(
            &env(&[("MCP_BRIDGE_CONFIG_DIR", "/c")]),
            with_file("[server]\nbrowser_profile = \"web\"\n\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\n\n[[profile]]\nname = \"web\"\nupstreams = [\"a\"]\ntools = { deny = [\"a__write*\"] }\norigins = [\"https://app.example.com\", \"https://*.example.org\"]\n"),
        )
        .unwrap();
        let p = &c.profiles[0];
        assert_eq!(p.name, "web");
        assert!(p.includes("a") && !p.includes("b"));
        assert!(p.tools.admits("a__read") && !p.tools.admits("a__write_file"));
        assert_eq!(p.origins.len(), 2);
        assert_eq!(c.server.browser_profile, "web");
        let up = "[[upstream]]\nname = \"a\"\ncommand = \"x\"\n\n";
        for (profile, want) in [
            ("[[profile]]\nname = \"all\"\n", "built in"),
            (
                "[[profile]]\nname = \"w\"\nupstreams = [\"nope\"]\n",
                "names upstream \"nope\", which no [[upstream]] defines (defined: a)",
            ),
            (
                "[[profile]]\nname = \"w\"\norigins = [\"https://x.example/path\"]\n",
                "without a path",
            ),
            (
                "[[profile]]\nname = \"w\"\n\n[[profile]]\nname = \"w\"\n",
                "used twice",
            ),
            (
                "[[profile]]\nname = \"w\"\norigins = [\"https://x.example\"]\n\n[[profile]]\nname = \"v\"\norigins = [\"https://x.example\"]\n",
                "bound to both",
            ),
            ("[[profile]]\nname = \"w/x\"\n", "[a-zA-Z0-9_-]"),
            (
                "[[profile]]\nname = \"w\"\ntool = {}\n",
                "unknown field `tool`",
            ),
        ] {
            let e = err_of(Box::leak(format!("{up}{profile}").into_boxed_str()));
            assert!(e.contains(want) && e.contains("line "), "{profile}: {e}");
        }
        let e = err_of("[server]\nbrowser_profile = \"ghost\"\n");
        assert!(
            e.contains("line 2") && e.contains("names no profile"),
            "{e}"
        );
    }

    #[test]
    fn era_and_client_metadata_url_are_read_and_checked() {
        let c = load(
            &env(&[("MCP_BRIDGE_CONFIG_DIR", "/c")]),
            with_file("[[upstream]]\nname = \"a\"\nurl = \"https://x/mcp\"\nera = \"2026-07-28\"\nclient_metadata_url = \"https://me.example/client.json\"\n\n[[upstream]]\nname = \"b\"\ncommand = \"y\"\nera = \"2025\"\n\n[[upstream]]\nname = \"c\"\ncommand = \"z\"\n"),
        )
        .unwrap();
        assert_eq!(
            [c.upstreams[0].era, c.upstreams[1].era, c.upstreams[2].era],
            [Era::Modern, Era::Legacy, Era::Auto]
        );
        assert!(matches!(
            &c.upstreams[0].transport,
            Transport::Http { client_metadata_url: Some(u), .. } if u == "https://me.example/client.json"
        ));
        let e = err_of("[[upstream]]\nname = \"a\"\nurl = \"https://x\"\nera = \"2027\"\n");
        assert!(
            e.contains("line 4") && e.contains("`era` must be \"auto\""),
            "{e}"
        );
        let e = err_of(
            "[[upstream]]\nname = \"a\"\nurl = \"https://x\"\nclient_metadata_url = \"http://me/c.json\"\n",
        );
        assert!(e.contains("must be an https URL with a path"), "{e}");
        let e = err_of(
            "[[upstream]]\nname = \"a\"\ncommand = \"x\"\nclient_metadata_url = \"https://me/c.json\"\n",
        );
        assert!(e.contains("apply to `url` upstreams"), "{e}");
    }

    #[test]
    fn http_transport_is_chosen_per_upstream() {
        let c = load(
            &env(&[("MCP_BRIDGE_CONFIG_DIR", "/c")]),
            with_file(
                "[[upstream]]\nname = \"a\"\nurl = \"http://x/sse\"\ntransport = \"sse\"\n\n[[upstream]]\nname = \"b\"\nurl = \"http://x/mcp\"\n",
            ),
        )
        .unwrap();
        let t = |i: usize| match &c.upstreams[i].transport {
            Transport::Http { transport, .. } => *transport,
            Transport::Stdio { .. } => panic!("not http"),
        };
        assert_eq!((t(0), t(1)), (HttpTransport::Sse, HttpTransport::Auto));
        let e = err_of("[[upstream]]\nname = \"a\"\nurl = \"http://x\"\ntransport = \"pigeon\"\n");
        assert!(e.contains("line 4") && e.contains("pigeon"), "{e}");
        let e = err_of("[[upstream]]\nname = \"a\"\ncommand = \"x\"\ntransport = \"sse\"\n");
        assert!(e.contains("`transport` apply to `url` upstreams"), "{e}");
    }

    #[test]
    fn common_mistakes_say_what_to_write() {
        let e = err_of("[[upstream]]\nname = \"a\"\nurl = \"http://x\"\nauth = \"oauth2\"\n");
        assert!(
            e.contains("line 4") && e.contains("\"none\", \"oauth\" or { bearer_env"),
            "{e}"
        );
        let e = err_of("[upstream]\nname = \"a\"\ncommand = \"x\"\n");
        assert!(e.contains("[[upstream]]") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn roots_and_inherited_variables_are_parsed_and_checked() {
        let c = load(
            &env(&[("MCP_BRIDGE_CONFIG_DIR", "/c")]),
            with_file(
                "[[upstream]]\nname = \"a\"\ncommand = \"x\"\ninherit_env = [\"GITHUB_TOKEN\"]\nroots = [\"file:///srv/a\"]\n\n[[upstream]]\nname = \"b\"\nurl = \"http://x/mcp\"\nroots = \"client\"\nallow_local_oauth = true\n\n[[upstream]]\nname = \"c\"\ncommand = \"y\"\n",
            ),
        )
        .unwrap();
        assert!(
            matches!(&c.upstreams[0].transport, Transport::Stdio { inherit_env, .. } if inherit_env == &["GITHUB_TOKEN"])
        );
        assert_eq!(
            c.upstreams[0].roots,
            Roots::Fixed(vec!["file:///srv/a".into()])
        );
        assert_eq!(c.upstreams[1].roots, Roots::Client);
        assert!(matches!(
            &c.upstreams[1].transport,
            Transport::Http {
                allow_local_oauth: true,
                ..
            }
        ));
        assert_eq!(
            c.upstreams[2].roots,
            Roots::None,
            "no client's roots by default"
        );
        let e = err_of(
            "[[upstream]]\nname = \"a\"\ncommand = \"x\"\ninherit_env = [\"MCP_BRIDGE_INBOUND_TOKEN\"]\n",
        );
        assert!(
            e.contains("line 1") && e.contains("never given to an upstream"),
            "{e}"
        );
        let e = err_of(
            "[[upstream]]\nname = \"a\"\ncommand = \"x\"\nenv = { MCP_CRED_AGENT_SOCKET = \"/s\" }\n",
        );
        assert!(e.contains("MCP_CRED_AGENT_SOCKET"), "{e}");
        let e = err_of("[[upstream]]\nname = \"a\"\ncommand = \"x\"\nroots = \"clients\"\n");
        assert!(e.contains("roots = \"client\""), "{e}");
        let e = err_of("[[upstream]]\nname = \"a\"\ncommand = \"x\"\nroots = [\"/tmp\"]\n");
        assert!(e.contains("file:// URI"), "{e}");
        let e = err_of("[[upstream]]\nname = \"a\"\nurl = \"http://x\"\ninherit_env = [\"A\"]\n");
        assert!(e.contains("apply to stdio"), "{e}");
    }

    #[test]
    fn bad_files_name_the_file_and_line() {
        let e = err_of("[[upstream]]\nname = \"a\"\ncommand = \n");
        assert!(e.starts_with("/c/config.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");

        let e = err_of("[[upstream]]\nname = \"a\"\ncomand = \"x\"\n");
        assert!(e.contains("line 3") && e.contains("comand"), "{e}");

        let e = err_of("\n\n[[upstream]]\nname = \"a b\"\ncommand = \"x\"\n");
        assert!(e.contains("line 4") && e.contains("a b"), "{e}");

        let e = err_of(
            "[[upstream]]\nname = \"a\"\ncommand = \"x\"\n[[upstream]]\nname = \"a\"\ncommand = \"y\"\n",
        );
        assert!(e.contains("line 5") && e.contains("twice"), "{e}");

        let e = err_of("[[upstream]]\nname = \"a\"\n");
        assert!(e.contains("line 1") && e.contains("needs `command`"), "{e}");

        let e = err_of("[[upstream]]\nname = \"a\"\nurl = \"ftp://x\"\n");
        assert!(e.contains("http://"), "{e}");

        let e = err_of("[[upstream]]\nname = \"a\"\ncommand = \"x\"\nping_interval_secs = -1\n");
        assert!(
            e.contains("line 1") && e.contains("ping_interval_secs"),
            "{e}"
        );

        let e = err_of("[server]\nmax_body_bytes = \"big\"\n");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_env_is_named() {
        let e = load(&env(&[("MCP_BRIDGE_PORT", "http")]), no_file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("MCP_BRIDGE_PORT"), "{e}");
    }
}
