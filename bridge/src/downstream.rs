//! What upstreams need of the client side, as traits the client sessions implement: the client
//! request an upstream request serves ([`RequestContext`]), one client session as upstreams see
//! it ([`ClientSession`]), and where server→client traffic goes ([`Downstream`]). Upstreams
//! depend on this module, never on the concrete sessions.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::jsonrpc::{self, RpcError};

/// One client session, as upstreams see it.
pub trait ClientSession: Send + Sync {
    /// The session id (visible ASCII).
    fn id(&self) -> &str;
    /// The `Origin` of the client's `initialize` (browser clients); `None` for programs.
    fn origin(&self) -> Option<&str>;
    /// Whether the client declared `capability` in `initialize`.
    fn has_capability(&self, capability: &str) -> bool;
    /// A 2026-07-28 client of one request: a server→client request during its call goes to it
    /// whatever it declared (it answers a missing capability itself), never to another client.
    fn stateless(&self) -> bool {
        false
    }
    /// Whether a log message at `level` goes to this client.
    fn wants_log(&self, level: &str) -> bool;
    /// Queues a message for the session's GET stream.
    fn push(&self, msg: &Value);
    /// Sends a request to the client (on `related`'s stream if given, else the GET stream) and
    /// waits for its answer.
    fn request<'a>(
        self: Arc<Self>,
        related: Option<&'a RequestContext>,
        method: &'a str,
        params: Value,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Value, RpcError>>;
    /// [`request`](Self::request) for an input request a 2026-07-28 upstream named `key`: a
    /// 2026-07-28 client is asked under that key (its own `input_required` round).
    fn request_keyed<'a>(
        self: Arc<Self>,
        related: Option<&'a RequestContext>,
        _key: Option<&'a str>,
        method: &'a str,
        params: Value,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Value, RpcError>> {
        self.request(related, method, params, timeout)
    }
}

/// The client request an upstream request serves: where related messages (progress,
/// server→client requests, logs) go.
pub struct RequestContext {
    pub session: Arc<dyn ClientSession>,
    /// The POST's own SSE stream, when the client accepts one.
    pub related: Option<mpsc::UnboundedSender<Value>>,
    /// The client's progress token, if it asked for progress.
    pub progress_token: Option<Value>,
    /// Server→client requests relayed for this request and not answered yet.
    pub outstanding: std::sync::atomic::AtomicU32,
}

impl RequestContext {
    /// Sends a message related to this request: on the request's stream, else on the session's
    /// GET stream.
    pub fn send(&self, msg: Value) {
        match &self.related {
            Some(tx) if !tx.is_closed() => {
                let _ = tx.send(msg);
            }
            _ => self.session.push(&msg),
        }
    }
}

/// The client side as upstreams see it: where server→client requests and unrelated
/// notifications go.
pub trait Downstream: Send + Sync {
    /// Sends `method` to a client that declared `capability`: the one behind `ctx` if it did,
    /// else the most recent session that did and whose profile includes `upstream` (the
    /// upstream asking). Resolves to the client's answer.
    fn request(
        &self,
        upstream: &str,
        ctx: Option<Arc<RequestContext>>,
        capability: &'static str,
        method: String,
        params: Value,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Value, RpcError>>;
    /// Sends a notification of `upstream` to the GET stream of every session whose profile
    /// includes it.
    fn broadcast(&self, upstream: &str, msg: &Value);
    /// Sends a log message of `upstream` (`notifications/message` at `level`) to every session
    /// that asked for that level and whose profile includes it.
    fn log(&self, upstream: &str, level: &str, msg: &Value);
    /// A resource changed: tells the sessions that subscribed to `uri` (the exposed URI).
    fn resource_updated(&self, uri: &str, msg: &Value);
}

/// A `Downstream` with no clients (tests, and upstreams before any client connects).
pub struct NoClients;

impl Downstream for NoClients {
    fn request(
        &self,
        _: &str,
        _: Option<Arc<RequestContext>>,
        capability: &'static str,
        method: String,
        _: Value,
        _: Duration,
    ) -> BoxFuture<'static, Result<Value, RpcError>> {
        Box::pin(async move {
            Err(RpcError::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!("no connected client supports {capability} ({method})"),
            ))
        })
    }
    fn broadcast(&self, _: &str, _: &Value) {}
    fn log(&self, _: &str, _: &str, _: &Value) {}
    fn resource_updated(&self, _: &str, _: &Value) {}
}
