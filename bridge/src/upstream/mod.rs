//! Upstreams: one supervisor task per configured MCP server, behind an [`Upstream`] handle.
//!
//! The supervisor owns the transport and walks the states Connecting → Initializing → Ready,
//! and Backoff after a failure; callers only ever see the handle: the current state, the last
//! good tool list, and `call`, which fails promptly with a typed error when the upstream is not
//! Ready or its transport dies mid-request.

pub mod rpc;
pub mod stdio;

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

/// The handle through which the rest of the bridge sees one upstream.
pub struct Upstream {
    pub name: Arc<str>,
    pub prefix: String,
    pub transport: &'static str,
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
        tools_changed: Arc<Notify>,
    ) -> Self {
        Self {
            name: name.into(),
            prefix: prefix.to_owned(),
            transport,
            status: watch::Sender::new(Status {
                state: State::Connecting,
                last_error: None,
                next_retry_at: None,
                connects: 0,
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

    /// Replaces the tool list; wakes the catalog only if the content differs.
    pub(crate) fn publish_tools(&self, tools: Vec<Value>) {
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

    /// Sends a request to the upstream if it is Ready.
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let Some(conn) = self.conn() else {
            let status = self.status();
            // Someone wants this upstream: retry now rather than at the end of the backoff.
            self.wake.notify_one();
            let mut reason = format!("it is {}", status.state.as_str());
            if let Some(e) = status.last_error {
                reason.push_str(&format!(" (last error: {e})"));
            }
            if status.state == State::Backoff {
                reason.push_str("; reconnecting");
            }
            return Err(CallError::Unavailable {
                upstream: self.name.to_string(),
                reason,
            });
        };
        conn.call(method, params, timeout).await
    }
}

/// The bridge's own backoff schedule: exponential from 250 ms, full jitter, capped at 60 s.
pub fn backoff() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(60))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// A connection must stay up this long before the backoff starts again from the minimum, so a
/// crash loop does not restart at the minimum delay forever.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
