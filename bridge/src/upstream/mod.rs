//! Upstreams: one supervisor task per configured MCP server, behind an [`Upstream`] handle.
//!
//! The supervisor owns the transport and walks the states Connecting → Initializing → Ready,
//! and Backoff after a failure; callers only ever see the handle: the current state, the last
//! good tool list, and `call`, which fails promptly with a typed error when the upstream is not
//! Ready or its transport dies mid-request.

pub mod rpc;
pub mod stdio;
pub mod supervisor;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::jsonrpc::{self, RpcError};
use rpc::RpcPeer;

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
}

impl CallError {
    pub fn into_rpc(self) -> RpcError {
        match self {
            Self::Rpc(e) => e,
            Self::Unavailable { ref upstream, .. } => RpcError::with_data(
                jsonrpc::UPSTREAM_UNAVAILABLE,
                self.to_string(),
                serde_json::json!({ "upstream": upstream }),
            ),
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

/// The handle through which the rest of the bridge sees one upstream.
pub struct Upstream {
    pub name: Arc<str>,
    pub prefix: String,
    pub transport: &'static str,
    pub timeouts: Timeouts,
    /// Whether the tool list came from a live connection (not only from the cache).
    live_tools: AtomicBool,
    status: watch::Sender<Status>,
    /// The last good `tools/list` (tool objects as the upstream sent them).
    tools: watch::Sender<Arc<Vec<Value>>>,
    /// The live connection while Ready.
    conn: Mutex<Option<Arc<RpcPeer>>>,
    /// Signalled when this upstream's tool list changed; shared by all upstreams.
    tools_changed: Arc<Notify>,
    /// Cuts a backoff short (a client wants this upstream now).
    pub(crate) wake: Notify,
}

impl Upstream {
    pub fn new(
        name: &str,
        prefix: &str,
        transport: &'static str,
        timeouts: Timeouts,
        tools_changed: Arc<Notify>,
    ) -> Self {
        Self {
            name: name.into(),
            prefix: prefix.to_owned(),
            transport,
            timeouts,
            live_tools: AtomicBool::new(false),
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
            tools: watch::Sender::new(Arc::new(Vec::new())),
            conn: Mutex::new(None),
            tools_changed,
            wake: Notify::new(),
        }
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
        self.status.send_modify(f);
    }

    pub fn tools(&self) -> Arc<Vec<Value>> {
        self.tools.borrow().clone()
    }

    pub fn has_live_tools(&self) -> bool {
        self.live_tools.load(Ordering::Relaxed)
    }

    /// Seeds the tool list from the warm cache (before any connection).
    pub(crate) fn seed_tools(&self, tools: Vec<Value>) {
        if !self.has_live_tools() {
            self.set_tools(tools);
        }
    }

    /// Replaces the tool list with one the live upstream just sent.
    pub(crate) fn publish_tools(&self, tools: Vec<Value>) {
        self.live_tools.store(true, Ordering::Relaxed);
        // The cache writer wants to know even when the content is unchanged but now live.
        self.set_tools(tools);
        self.tools_changed.notify_one();
    }

    fn set_tools(&self, tools: Vec<Value>) {
        let changed = self.tools.send_if_modified(|current| {
            if **current == tools {
                false
            } else {
                *current = Arc::new(tools);
                true
            }
        });
        if changed {
            self.tools_changed.notify_one();
        }
    }

    pub(crate) fn set_conn(&self, conn: Option<Arc<RpcPeer>>) {
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = conn;
    }

    fn conn(&self) -> Option<Arc<RpcPeer>> {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends a request to the upstream. If it is not Ready, asks the supervisor to reconnect
    /// now and waits up to `reconnect_wait` for it.
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let conn = match self.conn() {
            Some(c) => c,
            None => self.wait_ready().await?,
        };
        conn.call(method, params, timeout).await
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
