//! Upstreams: one supervisor task per configured MCP server, behind an [`Upstream`] handle.
//!
//! The supervisor owns the transport and walks the states Connecting → Initializing → Ready,
//! and Backoff after a failure; callers only ever see the handle: the current state, the last
//! good tool list, and `call`, which fails promptly with a typed error when the upstream is not
//! Ready or its transport dies mid-request.

pub mod connection;
pub mod http;
pub mod peer;
pub mod protocol;
pub mod stdio;
pub mod supervisor;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, watch};

pub use crate::downstream::{ClientSession, Downstream, NoClients, RequestContext};
use crate::jsonrpc::{self, RpcError};
pub use peer::Answer;
use peer::RpcPeer;
use proto::config::Roots;

/// This bridge process's instance id, sent in its `initialize` result (`_meta`), so an upstream
/// that turns out to be this very bridge (directly, through the shim or a wrapper) is
/// recognised instead of proxying itself in a loop.
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        random_bytes::<16>()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    })
}

/// `N` bytes from the OS random source. Should it ever fail (it does not on the systems the
/// bridge runs on), the clock and pid fill the first bytes instead: still unique per process,
/// and an error is logged, since they are then guessable by whoever can read this machine's
/// clock.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::fill(&mut b).is_err() {
        tracing::error!("the OS random source failed; falling back to the clock and pid");
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes();
        let pid = std::process::id().to_le_bytes();
        for (i, x) in t.iter().chain(pid.iter()).take(N).enumerate() {
            b[i] = *x;
        }
    }
    b
}

/// Rounds of `input_required` the bridge answers for one request to a 2026-07-28 upstream.
pub const INPUT_ROUNDS: usize = 8;
/// How long one such round may wait for the client (a person may be answering).
pub const INPUT_ROUND_WAIT: Duration = Duration::from_secs(600);

/// The `_meta` key of [`instance_id`].
pub const INSTANCE_META: &str = "io.github.mcp-bridge/instance";

/// Protocol versions the bridge speaks, newest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
pub const LATEST_VERSION: &str = SUPPORTED_VERSIONS[0];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Connecting,
    Initializing,
    Ready,
    Backoff,
    /// The credential agent has no usable login for this upstream.
    NeedsLogin,
    /// The configuration cannot work (for example a transport this build does not have).
    Disabled,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Initializing => "initializing",
            Self::Ready => "ready",
            Self::Backoff => "backoff",
            Self::NeedsLogin => "needs_login",
            Self::Disabled => "disabled",
            Self::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: State,
    pub last_error: Option<String>,
    #[serde(with = "unix_secs_opt")]
    pub next_retry_at: Option<SystemTime>,
    /// Successful connections since the bridge started.
    pub connects: u64,
    /// Failed connections (or connections that ended) since the bridge started.
    pub failures: u64,
    /// The backoff ceiling of the current wait, in milliseconds.
    pub backoff_ceiling_ms: u64,
    /// The upstream's `serverInfo` from its last `initialize`.
    pub server_info: Option<Value>,
    pub protocol_version: Option<String>,
}

mod unix_secs_opt {
    use std::time::{SystemTime, UNIX_EPOCH};
    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The upstream is not connected (starting, crashed, backing off). Distinct from an error the
    /// upstream itself returned, so clients never blame their request for a backend condition.
    #[error("upstream '{upstream}' is not available: {reason}")]
    Unavailable { upstream: String, reason: String },
    #[error("upstream '{upstream}' did not answer {method} within {} s; the request was cancelled", after.as_secs_f64())]
    Timeout {
        upstream: String,
        method: String,
        after: Duration,
    },
    /// The upstream answered with a JSON-RPC error; passed through unchanged.
    #[error("upstream error: {}", .0.message())]
    Rpc(RpcError),
    /// The upstream cannot be used as configured and is not retried (it is this bridge).
    #[error("upstream '{upstream}' is disabled: {reason}")]
    Disabled { upstream: String, reason: String },
}

impl CallError {
    pub fn into_rpc(self) -> RpcError {
        match self {
            Self::Rpc(e) => e,
            Self::Unavailable { ref upstream, .. } | Self::Disabled { ref upstream, .. } => {
                RpcError::with_data(
                    jsonrpc::UPSTREAM_UNAVAILABLE,
                    self.to_string(),
                    serde_json::json!({ "upstream": upstream }),
                )
            }
            Self::Timeout { ref upstream, .. } => RpcError::with_data(
                jsonrpc::REQUEST_TIMEOUT,
                self.to_string(),
                serde_json::json!({ "upstream": upstream }),
            ),
        }
    }
}

/// Per-upstream timing (see `proto::config::Timing`).
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub request: Duration,
    pub startup: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub reconnect_wait: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::from_config(&proto::config::Timing::default(), Duration::from_secs(120))
    }
}

impl Timeouts {
    pub fn from_config(t: &proto::config::Timing, default_request: Duration) -> Self {
        let d = |s: f64| Duration::from_secs_f64(s.clamp(0.0, 86_400.0));
        Self {
            request: t
                .request_timeout_secs
                .map(d)
                .unwrap_or(default_request)
                .max(Duration::from_millis(1)),
            startup: d(t.startup_timeout_secs).max(Duration::from_millis(1)),
            ping_interval: d(t.ping_interval_secs),
            ping_timeout: d(t.ping_timeout_secs).max(Duration::from_millis(1)),
            reconnect_wait: d(t.reconnect_wait_secs),
        }
    }
}

/// What an upstream serves besides calls: its lists and its server capabilities. Kept from the
/// last live connection, or seeded from the warm cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lists {
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub resources: Vec<Value>,
    #[serde(default, rename = "resourceTemplates")]
    pub templates: Vec<Value>,
    #[serde(default)]
    pub prompts: Vec<Value>,
    /// The `capabilities` of the upstream's `initialize` result.
    #[serde(default)]
    pub capabilities: Value,
}

/// The kinds of list an upstream can serve, with their method and result key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Resources,
    Templates,
    Prompts,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [Self::Tools, Self::Resources, Self::Templates, Self::Prompts];

    pub fn method(self) -> &'static str {
        match self {
            Self::Tools => "tools/list",
            Self::Resources => "resources/list",
            Self::Templates => "resources/templates/list",
            Self::Prompts => "prompts/list",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Resources => "resources",
            Self::Templates => "resourceTemplates",
            Self::Prompts => "prompts",
        }
    }

    /// The server capability that announces this list.
    pub fn capability(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Resources | Self::Templates => "resources",
            Self::Prompts => "prompts",
        }
    }

    /// The field that identifies an item.
    pub fn id_field(self) -> &'static str {
        match self {
            Self::Tools | Self::Prompts => "name",
            Self::Resources => "uri",
            Self::Templates => "uriTemplate",
        }
    }

    pub fn get(self, l: &Lists) -> &Vec<Value> {
        match self {
            Self::Tools => &l.tools,
            Self::Resources => &l.resources,
            Self::Templates => &l.templates,
            Self::Prompts => &l.prompts,
        }
    }

    pub fn get_mut(self, l: &mut Lists) -> &mut Vec<Value> {
        match self {
            Self::Tools => &mut l.tools,
            Self::Resources => &mut l.resources,
            Self::Templates => &mut l.templates,
            Self::Prompts => &mut l.prompts,
        }
    }
}

/// The handle through which the rest of the bridge sees one upstream.
pub struct Upstream {
    pub name: Arc<str>,
    pub prefix: String,
    pub transport: &'static str,
    pub timeouts: Timeouts,
    /// Where server→client traffic goes.
    pub downstream: Arc<dyn Downstream>,
    /// Whether the lists came from a live connection (not only from the cache).
    live: AtomicBool,
    status: watch::Sender<Status>,
    lists: watch::Sender<Arc<Lists>>,
    /// The live connection while Ready.
    conn: Mutex<Option<Arc<RpcPeer>>>,
    /// Signalled when this upstream's lists changed; shared by all upstreams.
    lists_changed: Arc<Notify>,
    /// Cuts a backoff short (a client wants this upstream now).
    pub(crate) wake: Notify,
    /// What the upstream's `roots/list` is answered with.
    pub roots: Roots,
    /// The protocol era the config asks for (`era`); the connection decides within it.
    pub era: proto::config::Era,
    /// What of this upstream clients see (`tools`, `prompts`, `resources`, `rename`,
    /// `read_only`).
    pub policy: proto::config::Policy,
    /// How its tool definitions are pinned (`pin`).
    pub pin: proto::config::PinMode,
    /// With `roots = "client"`: the one client session this upstream serves now.
    lease: Mutex<Option<std::sync::Weak<dyn ClientSession>>>,
    /// Ends the current connection and starts a new one at once (no backoff).
    pub(crate) restart: Notify,
    /// The `logging/setLevel` params the clients need of this upstream, re-sent on reconnect.
    log_level: Mutex<Option<Value>>,
    /// Its last distinct errors (Unix seconds, message), newest last, for the status page.
    recent_errors: Mutex<std::collections::VecDeque<(u64, String)>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(
        name: &str,
        prefix: &str,
        transport: &'static str,
        timeouts: Timeouts,
        lists_changed: Arc<Notify>,
        downstream: Arc<dyn Downstream>,
    ) -> Self {
        Self {
            name: name.into(),
            prefix: prefix.to_owned(),
            transport,
            timeouts,
            downstream,
            live: AtomicBool::new(false),
            status: watch::Sender::new(Status {
                state: State::Connecting,
                last_error: None,
                next_retry_at: None,
                connects: 0,
                failures: 0,
                backoff_ceiling_ms: 0,
                server_info: None,
                protocol_version: None,
            }),
            lists: watch::Sender::new(Arc::new(Lists::default())),
            conn: Mutex::new(None),
            lists_changed,
            wake: Notify::new(),
            roots: Roots::None,
            era: Default::default(),
            policy: Default::default(),
            pin: Default::default(),
            lease: Mutex::new(None),
            restart: Notify::new(),
            log_level: Mutex::new(None),
            recent_errors: Mutex::new(Default::default()),
        }
    }

    /// Sets what the upstream's `roots/list` is answered with (before it starts).
    /// Whether the upstream was last spoken to in MCP 2026-07-28.
    pub fn speaks_stateless(&self) -> bool {
        self.status.borrow().protocol_version.as_deref() == Some(crate::modern::VERSION)
    }

    pub fn with_pin(mut self, pin: proto::config::PinMode) -> Self {
        self.pin = pin;
        self
    }

    pub fn with_policy(mut self, policy: proto::config::Policy) -> Self {
        self.policy = policy;
        self
    }

    pub fn with_era(mut self, era: proto::config::Era) -> Self {
        self.era = era;
        self
    }

    pub fn with_roots(mut self, roots: Roots) -> Self {
        self.roots = roots;
        self
    }

    /// Records the log level the clients need (see `Registry::set_log_level`).
    pub fn remember_log_level(&self, params: Value) {
        *self.log_level.lock() = Some(params);
    }

    /// The log level to tell a freshly connected upstream, if clients asked for one.
    pub fn log_level(&self) -> Option<Value> {
        self.log_level.lock().clone()
    }

    /// The client session this upstream serves (`roots = "client"`), if it still exists.
    pub fn lease_holder(&self) -> Option<Arc<dyn ClientSession>> {
        self.lease
            .lock()
            .as_ref()
            .and_then(std::sync::Weak::upgrade)
    }

    /// With `roots = "client"`, makes `session` the one client this upstream serves. The first
    /// client takes it as it is (no client's roots were given yet) and the upstream is told its
    /// roots changed; a later, different client gets a freshly started upstream, so nothing the
    /// previous client's roots opened stays open for it. While the previous client still has
    /// requests in flight here, the new one is refused.
    async fn lease_for(&self, session: &Arc<dyn ClientSession>) -> Result<(), CallError> {
        // Whether nobody held the lease before (so no client's roots were ever given).
        let first = {
            let mut lease = self.lease.lock();
            if let Some(h) = lease.as_ref().and_then(std::sync::Weak::upgrade) {
                if h.id() == session.id() {
                    return Ok(());
                }
                if self.conn().is_some_and(|c| c.serves_session(h.id())) {
                    return Err(CallError::Unavailable {
                        upstream: self.name.to_string(),
                        reason: "it serves one client session at a time (roots = \"client\") and another session's request is in flight; try again when it is answered".into(),
                    });
                }
            }
            lease.replace(Arc::downgrade(session)).is_none()
        };
        if first {
            if let Some(c) = self.conn() {
                c.notify("notifications/roots/list_changed", None);
            }
        } else {
            tracing::info!(upstream = %self.name, session = %&session.id()[..8], "another client session takes this roots = \"client\" upstream; restarting it");
            self.reconnect_now();
        }
        Ok(())
    }

    /// Ends the current connection and starts a new one at once (no backoff).
    pub fn reconnect_now(&self) {
        self.set_conn(None);
        self.restart.notify_one();
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub fn state(&self) -> State {
        self.status.borrow().state
    }

    pub fn subscribe_status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    pub(crate) fn update_status(&self, f: impl FnOnce(&mut Status)) {
        let before = self.status.borrow().last_error.clone();
        self.status.send_modify(f);
        let after = self.status.borrow().last_error.clone();
        if let Some(e) = after.filter(|a| Some(a) != before.as_ref()) {
            let mut recent = self.recent_errors.lock();
            if recent.len() >= 10 {
                recent.pop_front();
            }
            recent.push_back((crate::jsonfile::now(), e));
        }
    }

    /// Its last distinct errors (Unix seconds, message), oldest first.
    pub fn recent_errors(&self) -> Vec<(u64, String)> {
        self.recent_errors.lock().iter().cloned().collect()
    }

    pub fn lists(&self) -> Arc<Lists> {
        self.lists.borrow().clone()
    }

    /// How many tools it lists (without copying them).
    pub fn tool_count(&self) -> usize {
        self.lists.borrow().tools.len()
    }

    /// Whether the upstream announced `capability` (from its last `initialize`, or the cache).
    pub fn has_capability(&self, capability: &str) -> bool {
        self.lists
            .borrow()
            .capabilities
            .get(capability)
            .is_some_and(|c| !c.is_null())
    }

    /// In its first handshake with nothing to show yet (no cached list, never connected or
    /// failed). Cheap: every list request asks (no clone of the status).
    pub fn in_first_start(&self) -> bool {
        {
            let s = self.status.borrow();
            if s.connects != 0
                || s.failures != 0
                || !matches!(s.state, State::Connecting | State::Initializing)
            {
                return false;
            }
        }
        !self.has_live_lists() && self.lists.borrow().tools.is_empty()
    }

    pub fn has_live_lists(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// Seeds the lists from the warm cache (before any connection).
    pub fn seed_lists(&self, lists: Arc<Lists>) {
        if !self.has_live_lists() {
            // Shared with the cache: no copy of the tools.
            self.lists.send_replace(lists);
            self.lists_changed.notify_one();
        }
    }

    /// Records what a live connection just reported.
    pub(crate) fn publish(&self, f: impl FnOnce(&mut Lists)) {
        self.live.store(true, Ordering::Relaxed);
        self.modify_lists(f);
        // The cache writer wants to know even when the content is unchanged but now live.
        self.lists_changed.notify_one();
    }

    fn modify_lists(&self, f: impl FnOnce(&mut Lists)) {
        let changed = self.lists.send_if_modified(|current| {
            let mut next = (**current).clone();
            f(&mut next);
            if next == **current {
                false
            } else {
                *current = Arc::new(next);
                true
            }
        });
        if changed {
            self.lists_changed.notify_one();
        }
    }

    /// The handshake succeeded: calls go to `peer` from now on, and the state shows Ready.
    pub(crate) fn became_ready(&self, peer: &Arc<RpcPeer>) {
        self.set_conn(Some(peer.clone()));
        self.update_status(|s| {
            s.state = State::Ready;
            s.connects += 1;
            s.next_retry_at = None;
            // Ready: whatever went wrong before is over (it stays in the log).
            s.last_error = None;
        });
        tracing::info!(upstream = %self.name, tools = self.tool_count(), "upstream ready");
    }

    pub(crate) fn set_conn(&self, conn: Option<Arc<RpcPeer>>) {
        *self.conn.lock() = conn;
    }

    fn conn(&self) -> Option<Arc<RpcPeer>> {
        self.conn.lock().clone()
    }

    /// The live connection, if Ready (for notifications such as `logging/setLevel`).
    pub fn ready_conn(&self) -> Option<Arc<RpcPeer>> {
        self.conn()
    }

    /// Sends a request to the upstream. If it is not Ready, asks the supervisor to reconnect
    /// now and waits up to `reconnect_wait` for it.
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        self.call_for(method, params, timeout, None)
            .await
            .map(Answer::into_value)
    }

    /// Like [`Upstream::call`], on behalf of a client request: progress and server→client
    /// requests the upstream sends meanwhile find their way back to that client.
    pub async fn call_for(
        &self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
        ctx: Option<Arc<RequestContext>>,
    ) -> Result<Answer, CallError> {
        let mut conn = match self.conn() {
            Some(c) => c,
            None => self.wait_ready().await?,
        };
        // `roots = "client"` over the 2025 era: the upstream holds one session's roots, so it
        // serves one session at a time. A 2026-07-28 upstream asks for roots per request, so
        // it needs no lease.
        if self.roots == Roots::Client
            && !conn.is_stateless()
            && let Some(c) = &ctx
        {
            if c.session.stateless() {
                return Err(CallError::Unavailable {
                    upstream: self.name.to_string(),
                    reason: "it serves one client session's roots at a time (roots = \"client\") and an MCP 2026-07-28 client has no session; call it from a 2025 client, or give it fixed roots in config.toml".into(),
                });
            }
            self.lease_for(&c.session).await?;
            conn = match self.conn() {
                Some(c) => c,
                None => self.wait_ready().await?,
            };
        }
        // A 2026-07-28 client's call may wait for that client's input (parked, for up to
        // `INPUT_ROUND_WAIT`) while the upstream's request stays open: its bound allows for that.
        let timeout = if ctx.as_ref().is_some_and(|c| c.session.stateless()) && !conn.is_stateless()
        {
            timeout + INPUT_ROUND_WAIT
        } else {
            timeout
        };
        let first = conn
            .call_answer(method, params.clone(), timeout, ctx.clone())
            .await?;
        if !first.may_say("resultType") {
            return Ok(first);
        }
        let first = first.into_value();
        if first.get("resultType").and_then(Value::as_str) != Some("input_required") {
            return Ok(Answer::Parsed(first));
        }
        self.resolve_input(&conn, method, params, timeout, ctx, first)
            .await
            .map(Answer::Parsed)
    }

    /// A 2026-07-28 upstream answered `input_required`: its input requests go to the client
    /// whose request this is (as real requests on its stream for a 2025 client, as an
    /// `input_required` round of the bridge's own for a 2026-07-28 one), and the request is
    /// retried with the answers and the upstream's `requestState`, for at most
    /// [`INPUT_ROUNDS`] rounds of at most [`INPUT_ROUND_WAIT`] each.
    async fn resolve_input(
        &self,
        conn: &Arc<RpcPeer>,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
        ctx: Option<Arc<RequestContext>>,
        mut answer: Value,
    ) -> Result<Value, CallError> {
        for _ in 0..INPUT_ROUNDS {
            if answer.get("resultType").and_then(Value::as_str) != Some("input_required") {
                return Ok(answer);
            }
            let requests = answer
                .get("inputRequests")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let asks = requests.iter().map(|(key, request)| {
                let ctx = ctx.clone();
                async move { (key.clone(), self.ask_client(ctx, key, request).await) }
            });
            let responses: serde_json::Map<String, Value> = futures_util::future::join_all(asks)
                .await
                .into_iter()
                .collect();
            let mut retry = params.clone().unwrap_or_else(|| serde_json::json!({}));
            if let Some(p) = retry.as_object_mut() {
                p.insert("inputResponses".into(), Value::Object(responses));
                match answer.get("requestState") {
                    Some(state) => p.insert("requestState".into(), state.clone()),
                    None => p.remove("requestState"),
                };
            }
            answer = conn
                .call_with(method, Some(retry), timeout, ctx.clone())
                .await?;
        }
        if answer.get("resultType").and_then(Value::as_str) != Some("input_required") {
            return Ok(answer);
        }
        Err(CallError::Unavailable {
            upstream: self.name.to_string(),
            reason: format!("it asked for input more than {INPUT_ROUNDS} times for one {method}"),
        })
    }

    /// One input request of a 2026-07-28 upstream, answered by the calling client (or, for
    /// `roots/list`, from this upstream's config, as for every client). An error is answered as
    /// the error object, which the upstream sees in `inputResponses`.
    async fn ask_client(
        &self,
        ctx: Option<Arc<RequestContext>>,
        key: &str,
        request: &Value,
    ) -> Value {
        let method = request.get("method").and_then(Value::as_str).unwrap_or("");
        let params = request
            .get("params")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        let refuse =
            |code: i64, message: String| serde_json::json!({ "code": code, "message": message });
        let capability = match method {
            // The config decides, as for 2025 upstreams; `roots = "client"` asks the caller, whose
            // answer serves this one request.
            "roots/list" => match &self.roots {
                Roots::Fixed(list) => {
                    return serde_json::json!({ "roots": list.iter().map(|uri| serde_json::json!({ "uri": uri })).collect::<Vec<_>>() });
                }
                Roots::None => {
                    return refuse(
                        jsonrpc::METHOD_NOT_FOUND,
                        "mcp-bridge gives this upstream no roots (set `roots` in its config)"
                            .into(),
                    );
                }
                Roots::Client => "roots",
            },
            "sampling/createMessage" => "sampling",
            "elicitation/create" => "elicitation",
            other => {
                return refuse(
                    jsonrpc::METHOD_NOT_FOUND,
                    format!("mcp-bridge cannot relay {other}"),
                );
            }
        };
        let Some(ctx) = ctx else {
            return refuse(
                jsonrpc::METHOD_NOT_FOUND,
                format!("no client request to relay {method} to"),
            );
        };
        if !ctx.session.has_capability(capability) && !ctx.session.stateless() {
            return refuse(
                jsonrpc::METHOD_NOT_FOUND,
                format!("the client did not declare the {capability} capability"),
            );
        }
        match ctx
            .session
            .clone()
            .request_keyed(Some(&ctx), Some(key), method, params, INPUT_ROUND_WAIT)
            .await
        {
            Ok(v) => v,
            Err(e) => e.0,
        }
    }

    async fn wait_ready(&self) -> Result<Arc<RpcPeer>, CallError> {
        let mut rx = self.status.subscribe();
        let terminal = |s: State| matches!(s, State::Disabled | State::Stopped);
        if !terminal(rx.borrow().state) {
            // Someone wants this upstream: retry now rather than at the end of the backoff.
            self.wake.notify_one();
            let waited = tokio::time::timeout(self.timeouts.reconnect_wait, async {
                loop {
                    if let Some(c) = self.conn() {
                        return Some(c);
                    }
                    if terminal(rx.borrow_and_update().state) || rx.changed().await.is_err() {
                        return None;
                    }
                }
            })
            .await;
            if let Ok(Some(c)) = waited {
                return Ok(c);
            }
        }
        let status = self.status();
        let mut reason = format!("it is {}", status.state.as_str());
        if let Some(e) = status.last_error {
            reason.push_str(&format!(" (last error: {e})"));
        }
        if !terminal(status.state) {
            reason.push_str(&format!(
                "; still reconnecting after waiting {} s",
                self.timeouts.reconnect_wait.as_secs_f64()
            ));
        }
        Err(CallError::Unavailable {
            upstream: self.name.to_string(),
            reason,
        })
    }
}
