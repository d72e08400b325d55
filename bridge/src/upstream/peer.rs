//! One JSON-RPC conversation with an upstream over any message transport: ids, pending requests,
//! timeouts with `notifications/cancelled`, and failing every waiter when the transport dies.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{CallError, RequestContext};
use crate::jsonrpc::RpcError;

type Reply = oneshot::Sender<Result<Answer, RpcError>>;

/// An upstream's result: parsed, or (a response delivered by [`RpcPeer::deliver_text`]) the
/// JSON text the upstream wrote, which a call forwarded unchanged never needs to parse.
#[derive(Debug)]
pub enum Answer {
    Parsed(Value),
    Text(Box<RawValue>),
}

impl Answer {
    pub fn into_value(self) -> Value {
        match self {
            Self::Parsed(v) => v,
            // The text came out of a JSON parser, so it parses; `Null` only if that broke.
            Self::Text(raw) => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
        }
    }

    /// Whether the result may carry a field the bridge acts on (`resultType`, MCP 2026-07-28):
    /// a text answer that does not even contain the word needs no parsing.
    pub fn may_say(&self, field: &str) -> bool {
        match self {
            Self::Parsed(v) => v.get(field).is_some(),
            Self::Text(raw) => raw.get().contains(field),
        }
    }
}

struct Pending {
    reply: Reply,
    /// The client request this serves, if any.
    ctx: Option<Arc<RequestContext>>,
}

pub struct RpcPeer {
    upstream: Arc<str>,
    created: tokio::time::Instant,
    /// Milliseconds after `created` when the upstream last sent anything.
    last_heard_ms: AtomicU64,
    /// Serialised messages, one per line, drained by the transport's writer.
    out: mpsc::UnboundedSender<Bytes>,
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    /// Set when the upstream speaks MCP 2026-07-28: the `_meta` every request carries
    /// (protocol version, the bridge's client capabilities and info).
    stateless: Mutex<Option<serde_json::Map<String, Value>>>,
    /// Client capabilities the bridge answers itself (fixed `roots`), declared whoever the
    /// client is.
    own_capabilities: Mutex<Vec<String>>,
}

#[derive(Default)]
struct Inner {
    pending: HashMap<u64, Pending>,
    /// Bridge progress token → the client request that asked for progress.
    progress: HashMap<String, Arc<RequestContext>>,
    /// Set once the transport is gone; every later call fails at once with this reason.
    closed: Option<String>,
}

/// Removes a pending request that was abandoned (timeout or the client went away) and tells
/// the upstream to stop working on it.
struct PendingGuard<'a> {
    peer: &'a RpcPeer,
    id: u64,
    armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let removed = {
            let mut inner = self.peer.inner.lock();
            inner.progress.remove(&progress_token(self.id));
            inner.pending.remove(&self.id).is_some()
        };
        if self.armed && removed {
            self.peer.notify(
                "notifications/cancelled",
                Some(json!({ "requestId": self.id, "reason": "request abandoned by mcp-bridge" })),
            );
        }
    }
}

impl RpcPeer {
    pub fn new(upstream: Arc<str>, out: mpsc::UnboundedSender<Bytes>) -> Self {
        Self {
            upstream,
            created: tokio::time::Instant::now(),
            last_heard_ms: AtomicU64::new(0),
            out,
            inner: Mutex::new(Inner::default()),
            next_id: AtomicU64::new(1),
            stateless: Mutex::new(None),
            own_capabilities: Mutex::new(Vec::new()),
        }
    }

    /// Capabilities declared upstream whatever the client: those the bridge answers itself.
    pub fn set_own_capabilities(&self, caps: Vec<String>) {
        *self.own_capabilities.lock() = caps;
    }

    /// From now on every request carries `meta` in its `_meta` (MCP 2026-07-28).
    pub fn set_stateless(&self, meta: serde_json::Map<String, Value>) {
        *self.stateless.lock() = Some(meta);
    }

    /// Whether the transport is gone (every call fails now).
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed.is_some()
    }

    /// Whether the upstream speaks MCP 2026-07-28 on this connection.
    pub fn is_stateless(&self) -> bool {
        self.stateless.lock().is_some()
    }

    /// Sends a request whose answer nobody waits for as a call: a `subscriptions/listen` whose
    /// notifications are dispatched as they come. `id` is a string, so it never meets ours.
    pub fn send_open_request(&self, id: &str, method: &str, mut params: Value) {
        if let (Some(meta), Some(p)) = (self.stateless.lock().clone(), params.as_object_mut()) {
            let m = p.entry("_meta").or_insert_with(|| json!({}));
            if let Some(m) = m.as_object_mut() {
                for (k, v) in meta {
                    m.entry(k).or_insert(v);
                }
            }
        }
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Records that the upstream sent something (it is alive).
    pub fn heard(&self) {
        let ms = self.created.elapsed().as_millis() as u64;
        self.last_heard_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the upstream has been silent.
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_heard_ms.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    fn unavailable(&self, reason: &str) -> CallError {
        CallError::Unavailable {
            upstream: self.upstream.to_string(),
            reason: reason.to_owned(),
        }
    }

    fn send(&self, msg: &Value) -> bool {
        let mut line = serde_json::to_vec(msg).unwrap_or_default();
        line.push(b'\n');
        self.out.send(Bytes::from(line)).is_ok()
    }

    /// Sends a request and waits for its answer for at most `timeout`.
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        self.call_with(method, params, timeout, None).await
    }

    /// Sends a request on behalf of a client request. A client progress token is replaced by
    /// one of ours (tokens must be unique per upstream, and clients pick theirs freely) and
    /// mapped back when progress arrives.
    pub async fn call_with(
        &self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
        ctx: Option<Arc<RequestContext>>,
    ) -> Result<Value, CallError> {
        self.call_answer(method, params, timeout, ctx)
            .await
            .map(Answer::into_value)
    }

    /// [`call_with`](Self::call_with), answering the result as the upstream's text when it
    /// came that way (a stdio response), for a caller that forwards it as it is.
    pub async fn call_answer(
        &self,
        method: &str,
        mut params: Option<Value>,
        timeout: Duration,
        ctx: Option<Arc<RequestContext>>,
    ) -> Result<Answer, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Some(mut meta) = self.stateless.lock().clone() {
            // On behalf of a client: what that client can answer, not all the bridge can relay.
            if let Some(ctx) = &ctx
                && let Some(Value::Object(bridge_caps)) =
                    meta.get(crate::modern::META_CAPABILITIES).cloned()
            {
                let own = self.own_capabilities.lock().clone();
                let caps: serde_json::Map<String, Value> = bridge_caps
                    .into_iter()
                    .filter(|(k, _)| ctx.session.has_capability(k) || own.contains(k))
                    .collect();
                meta.insert(crate::modern::META_CAPABILITIES.into(), Value::Object(caps));
            }
            let p = params.get_or_insert_with(|| json!({}));
            if let Some(p) = p.as_object_mut() {
                let m = p.entry("_meta").or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    for (k, v) in meta {
                        m.entry(k).or_insert(v);
                    }
                }
            }
        }
        {
            let mut inner = self.inner.lock();
            if let Some(reason) = &inner.closed {
                return Err(self.unavailable(reason));
            }
            if let Some(ctx) = ctx.as_ref().filter(|c| c.progress_token.is_some())
                && let Some(meta) = params
                    .as_mut()
                    .and_then(|p| p.get_mut("_meta"))
                    .and_then(Value::as_object_mut)
            {
                let token = progress_token(id);
                meta.insert("progressToken".into(), Value::String(token.clone()));
                inner.progress.insert(token, ctx.clone());
            }
            inner.pending.insert(id, Pending { reply: tx, ctx });
        }
        let mut guard = PendingGuard {
            peer: self,
            id,
            armed: true,
        };
        let mut msg = json!({ "jsonrpc": "2.0", "id": id, "method": method });
        if let Some(p) = params {
            msg["params"] = p;
        }
        if !self.send(&msg) {
            guard.armed = false;
            self.inner.lock().pending.remove(&id);
            return Err(self.unavailable("its connection is closed"));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => {
                guard.armed = false;
                answer.map_err(CallError::Rpc)
            }
            Ok(Err(_dropped)) => {
                guard.armed = false;
                let reason = self
                    .inner
                    .lock()
                    .closed
                    .clone()
                    .unwrap_or_else(|| "its connection closed".into());
                Err(self.unavailable(&reason))
            }
            // The guard cancels the upstream request.
            Err(_elapsed) => Err(CallError::Timeout {
                upstream: self.upstream.to_string(),
                method: method.to_owned(),
                after: timeout,
            }),
        }
    }

    pub fn notify(&self, method: &str, params: Option<Value>) {
        self.send(&crate::jsonrpc::notification(method, params));
    }

    /// Answers a request the upstream sent us.
    pub fn respond(&self, id: &Value, result: Result<Value, RpcError>) {
        self.send(&crate::jsonrpc::response(id, result));
    }

    /// Delivers a response from the upstream to whoever waits for it. Unknown ids (answers to
    /// requests that timed out) are dropped.
    pub fn deliver(&self, id: &Value, mut msg: Value) {
        let Some(id) = id.as_u64() else { return };
        let Some(Pending { reply, .. }) = self.inner.lock().pending.remove(&id) else {
            return;
        };
        let answer = match msg.get_mut("error") {
            Some(err) => Err(RpcError(err.take())),
            None => Ok(Answer::Parsed(
                msg.get_mut("result")
                    .map(Value::take)
                    .unwrap_or(Value::Null),
            )),
        };
        let _ = reply.send(answer);
    }

    /// Delivers a successful response as the upstream wrote its result. False (nothing
    /// delivered) for an id nobody waits for.
    pub fn deliver_text(&self, id: u64, result: Box<RawValue>) -> bool {
        let Some(Pending { reply, .. }) = self.inner.lock().pending.remove(&id) else {
            return false;
        };
        let _ = reply.send(Ok(Answer::Text(result)));
        true
    }

    /// Marks the transport dead; every waiter fails now with `reason`.
    pub fn close(&self, reason: &str) {
        let pending = {
            let mut inner = self.inner.lock();
            inner.closed.get_or_insert_with(|| reason.to_owned());
            inner.progress.clear();
            std::mem::take(&mut inner.pending)
        };
        // Dropping the senders wakes the waiters, which then read `closed`.
        drop(pending);
    }

    /// Delivers `notifications/progress` to the client that asked for it, with its own token.
    /// Returns false for a token we did not hand out.
    pub fn route_progress(&self, mut msg: Value) -> bool {
        let Some(token) = msg.pointer("/params/progressToken").and_then(Value::as_str) else {
            return false;
        };
        let Some(ctx) = self.inner.lock().progress.get(token).cloned() else {
            return false;
        };
        if let (Some(params), Some(client_token)) =
            (msg.get_mut("params"), ctx.progress_token.clone())
        {
            params["progressToken"] = client_token;
        }
        ctx.send(msg);
        true
    }

    /// The client request that most likely caused a message the upstream sends without saying
    /// (stdio has no way to say). For a server→client request needing `capability`: the oldest
    /// in-flight request whose client declared it and that is not already waiting on one
    /// (upstreams tend to serve requests in order and ask one thing at a time), else the most
    /// recent such request. For a log message (`None`): the most recent request. Exact whenever
    /// one request is in flight at the upstream.
    ///
    /// A guess never crosses origins: when the candidates belong to clients of different
    /// origins (a browser page and a local program, or two sites), this answers
    /// [`Guess::Ambiguous`] and the caller refuses rather than hand one client's prompt or
    /// answer to another.
    pub fn latest_context(&self, capability: Option<&str>) -> Guess {
        let inner = self.inner.lock();
        let in_flight = || {
            inner
                .pending
                .iter()
                .filter_map(|(id, p)| Some((*id, p.ctx.as_ref()?)))
        };
        // Those whose client declared the capability; else a 2026-07-28 client's, which answers
        // a missing capability itself (-32021) rather than have it go elsewhere.
        let mut all: Vec<(u64, &Arc<RequestContext>)> = in_flight()
            .filter(|(_, c)| capability.is_none_or(|cap| c.session.has_capability(cap)))
            .collect();
        if all.is_empty() && capability.is_some() {
            all = in_flight().filter(|(_, c)| c.session.stateless()).collect();
        }
        let Some((_, first)) = all.first() else {
            return Guess::None;
        };
        if all
            .iter()
            .any(|(_, c)| c.session.origin() != first.session.origin())
        {
            return Guess::Ambiguous;
        }
        let pick = match capability {
            None => all.iter().max_by_key(|(id, _)| *id),
            Some(_) => all
                .iter()
                .filter(|(_, c)| c.outstanding.load(Ordering::Relaxed) == 0)
                .min_by_key(|(id, _)| *id)
                .or_else(|| all.iter().max_by_key(|(id, _)| *id)),
        };
        match pick {
            Some((_, c)) => Guess::One((*c).clone()),
            None => Guess::None,
        }
    }

    /// The client request behind our request `id` (an upstream request id we sent), exactly:
    /// used when the transport says which request a message belongs to (a POST's SSE answer).
    pub fn context_of(&self, id: &Value) -> Option<Arc<RequestContext>> {
        let id = id.as_u64()?;
        self.inner.lock().pending.get(&id)?.ctx.clone()
    }

    /// Whether requests of client session `session` are waiting on this upstream.
    pub fn serves_session(&self, session: &str) -> bool {
        self.inner
            .lock()
            .pending
            .values()
            .any(|p| p.ctx.as_ref().is_some_and(|c| c.session.id() == session))
    }
}

/// Which client request a message without an explicit link belongs to.
pub enum Guess {
    /// No client request is in flight that could have caused it.
    None,
    /// This one.
    One(Arc<RequestContext>),
    /// Requests of clients of different origins are in flight: refuse rather than guess.
    Ambiguous,
}

impl Guess {
    pub fn one(self) -> Option<Arc<RequestContext>> {
        match self {
            Self::One(c) => Some(c),
            _ => None,
        }
    }
}

fn progress_token(id: u64) -> String {
    format!("mcpb-{id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::downstream::ClientSession;
    use futures_util::future::BoxFuture;

    /// A client session that declared sampling, from `origin`; or (`stateless`) a 2026-07-28
    /// client's request that declared nothing.
    struct FakeClient {
        id: String,
        origin: Option<String>,
        stateless: bool,
    }

    impl ClientSession for FakeClient {
        fn id(&self) -> &str {
            &self.id
        }
        fn origin(&self) -> Option<&str> {
            self.origin.as_deref()
        }
        fn has_capability(&self, capability: &str) -> bool {
            capability == "sampling" && !self.stateless
        }
        fn stateless(&self) -> bool {
            self.stateless
        }
        fn wants_log(&self, _: &str) -> bool {
            true
        }
        fn push(&self, _: &Value) {}
        fn request<'a>(
            self: Arc<Self>,
            _: Option<&'a RequestContext>,
            _: &'a str,
            _: Value,
            _: Duration,
        ) -> BoxFuture<'a, Result<Value, RpcError>> {
            Box::pin(async { Ok(json!({})) })
        }
    }

    fn ctx(sessions: &mut u32, origin: Option<&str>) -> Arc<RequestContext> {
        ctx_of(sessions, origin, false)
    }

    fn ctx_of(sessions: &mut u32, origin: Option<&str>, stateless: bool) -> Arc<RequestContext> {
        *sessions += 1;
        Arc::new(RequestContext {
            session: Arc::new(FakeClient {
                id: format!("session-{sessions}"),
                origin: origin.map(str::to_owned),
                stateless,
            }),
            related: None,
            progress_token: None,
            outstanding: Default::default(),
        })
    }

    /// Starts a call that is never answered, so it stays in flight.
    async fn in_flight(peer: &Arc<RpcPeer>, ctx: Arc<RequestContext>) {
        let p = peer.clone();
        tokio::spawn(async move {
            let _ = p
                .call_with("tools/call", None, Duration::from_secs(60), Some(ctx))
                .await;
        });
        tokio::task::yield_now().await;
    }

    #[tokio::test]
    async fn a_guess_never_crosses_origins_and_is_exact_with_one_request() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let peer = Arc::new(RpcPeer::new("u".into(), tx));
        let mut sessions = 0;
        assert!(matches!(peer.latest_context(Some("sampling")), Guess::None));
        let local = ctx(&mut sessions, None);
        in_flight(&peer, local.clone()).await;
        match peer.latest_context(Some("sampling")) {
            Guess::One(c) => assert_eq!(c.session.id(), local.session.id()),
            _ => panic!("one request in flight: exact"),
        }
        // A second program (no origin) keeps the guess possible: same origin.
        in_flight(&peer, ctx(&mut sessions, None)).await;
        assert!(matches!(
            peer.latest_context(Some("sampling")),
            Guess::One(_)
        ));
        // A browser page calling at the same time: refuse rather than guess.
        in_flight(&peer, ctx(&mut sessions, Some("https://claude.ai"))).await;
        assert!(matches!(
            peer.latest_context(Some("sampling")),
            Guess::Ambiguous
        ));
        assert!(matches!(peer.latest_context(None), Guess::Ambiguous));
        // The exact link wins whatever else is in flight.
        assert_eq!(
            peer.context_of(&json!(1))
                .map(|c| c.session.id().to_owned()),
            Some(local.session.id().to_owned())
        );
        assert!(peer.serves_session(local.session.id()));
        assert!(!peer.serves_session("nobody"));
    }

    #[tokio::test]
    async fn a_guess_prefers_a_client_that_declared_the_capability() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let peer = Arc::new(RpcPeer::new("u".into(), tx));
        let mut sessions = 0;
        // A 2026-07-28 call without sampling, alone: it gets the request (and answers -32021).
        let modern = ctx_of(&mut sessions, None, true);
        in_flight(&peer, modern.clone()).await;
        match peer.latest_context(Some("sampling")) {
            Guess::One(c) => assert_eq!(c.session.id(), modern.session.id()),
            _ => panic!("the only call in flight"),
        }
        // A later call whose client declared sampling: it wins, though the other is older.
        let declared = ctx(&mut sessions, None);
        in_flight(&peer, declared.clone()).await;
        match peer.latest_context(Some("sampling")) {
            Guess::One(c) => assert_eq!(c.session.id(), declared.session.id()),
            _ => panic!("a call whose client declared the capability"),
        }
    }

    /// A peer whose transport is a channel the test reads.
    fn peer() -> (Arc<RpcPeer>, mpsc::UnboundedReceiver<Bytes>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(RpcPeer::new("u".into(), tx)), rx)
    }

    async fn sent(rx: &mut mpsc::UnboundedReceiver<Bytes>) -> Value {
        let line = rx.recv().await.expect("a message on the transport");
        assert_eq!(line.last(), Some(&b'\n'), "one message per line");
        serde_json::from_slice(&line).unwrap()
    }

    #[tokio::test]
    async fn answers_reach_their_caller_by_our_own_ids() {
        let (p, mut rx) = peer();
        let (a, b) = (p.clone(), p.clone());
        let first =
            tokio::spawn(async move { a.call("tools/list", None, Duration::from_secs(5)).await });
        let m1 = sent(&mut rx).await;
        let second = tokio::spawn(async move {
            b.call(
                "tools/call",
                Some(json!({"name": "x"})),
                Duration::from_secs(5),
            )
            .await
        });
        let m2 = sent(&mut rx).await;
        assert_ne!(m1["id"], m2["id"], "ids are the peer's own and unique");
        assert_eq!(m2["params"]["name"], "x");
        // Out of order, and one an error: each goes to its own caller.
        p.deliver(
            &m2["id"],
            json!({"jsonrpc": "2.0", "id": m2["id"], "error": {"code": -32602, "message": "bad"}}),
        );
        p.deliver(
            &m1["id"],
            json!({"jsonrpc": "2.0", "id": m1["id"], "result": {"tools": []}}),
        );
        assert_eq!(first.await.unwrap().unwrap(), json!({"tools": []}));
        match second.await.unwrap() {
            Err(CallError::Rpc(e)) => assert_eq!(e.message(), "bad"),
            other => panic!("{other:?}"),
        }
        // An answer nobody waits for (late, or forged) is dropped.
        p.deliver(
            &json!(999),
            json!({"jsonrpc": "2.0", "id": 999, "result": {}}),
        );
        assert!(p.inner.lock().pending.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_out_request_is_cancelled_upstream() {
        let (p, mut rx) = peer();
        let call = {
            let p = p.clone();
            tokio::spawn(async move { p.call("tools/call", None, Duration::from_secs(2)).await })
        };
        let m = sent(&mut rx).await;
        match call.await.unwrap() {
            Err(CallError::Timeout { after, .. }) => assert_eq!(after, Duration::from_secs(2)),
            other => panic!("{other:?}"),
        }
        let cancel = sent(&mut rx).await;
        assert_eq!(cancel["method"], "notifications/cancelled");
        assert_eq!(cancel["params"]["requestId"], m["id"]);
        assert!(p.inner.lock().pending.is_empty(), "nothing left pending");
    }

    #[tokio::test]
    async fn a_closed_transport_fails_every_waiter_and_later_calls_at_once() {
        let (p, mut rx) = peer();
        let call = {
            let p = p.clone();
            tokio::spawn(async move { p.call("ping", None, Duration::from_secs(60)).await })
        };
        sent(&mut rx).await;
        p.close("process exited (exit status: 1)");
        match call.await.unwrap() {
            Err(CallError::Unavailable { reason, .. }) => {
                assert!(reason.contains("exited"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match p.call("ping", None, Duration::from_secs(60)).await {
            Err(CallError::Unavailable { reason, .. }) => assert!(reason.contains("exited")),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn progress_tokens_are_ours_upstream_and_the_clients_own_downstream() {
        let (p, mut rx) = peer();
        let (tx, mut client) = mpsc::unbounded_channel();
        let ctx = Arc::new(RequestContext {
            session: Arc::new(FakeClient {
                id: "s".into(),
                origin: None,
                stateless: false,
            }),
            related: Some(tx),
            progress_token: Some(json!(42)),
            outstanding: Default::default(),
        });
        let call = {
            let p = p.clone();
            tokio::spawn(async move {
                p.call_with(
                    "tools/call",
                    Some(json!({"name": "x", "_meta": {"progressToken": 42}})),
                    Duration::from_secs(5),
                    Some(ctx),
                )
                .await
            })
        };
        let m = sent(&mut rx).await;
        let ours = m["params"]["_meta"]["progressToken"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(ours.starts_with("mcpb-"), "{m}");
        assert!(p.route_progress(json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": ours, "progress": 1}})));
        let got = client.recv().await.unwrap();
        assert_eq!(got["params"]["progressToken"], 42, "the client's own token");
        assert!(!p.route_progress(
            json!({"method": "notifications/progress", "params": {"progressToken": "mcpb-nope"}})
        ));
        p.deliver(
            &m["id"],
            json!({"jsonrpc": "2.0", "id": m["id"], "result": {}}),
        );
        call.await.unwrap().unwrap();
        assert!(
            p.inner.lock().progress.is_empty(),
            "the mapping goes with the request"
        );
    }
}
