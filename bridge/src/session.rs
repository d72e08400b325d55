//! Client sessions of the Streamable HTTP endpoint: ids, negotiated version, the GET stream for
//! server-initiated messages with a small replay buffer for `Last-Event-ID` resumption, and
//! expiry of idle sessions.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::downstream::{ClientSession, Downstream, RequestContext};
use crate::jsonrpc::{self, RpcError};

/// Messages kept for resumption of the GET stream.
const REPLAY: usize = 128;
/// Messages queued for a slow GET stream before new ones are only kept for replay.
const STREAM_QUEUE: usize = 256;

pub type StreamItem = (u64, Arc<str>);

pub struct Session {
    pub id: String,
    pub protocol_version: String,
    pub client_name: String,
    /// The `capabilities` the client declared in `initialize`.
    pub capabilities: Value,
    /// The `Origin` of the `initialize` request (browser clients); `None` for programs. The
    /// bridge never guesses a server→client message across two origins.
    pub origin: Option<String>,
    /// The profile it is served (`all`, `read-only` or a `[[profile]]`), fixed at `initialize`.
    pub view: Arc<str>,
    /// The level this client asked for with `logging/setLevel` (syslog rank, 0 = debug).
    log_level: Mutex<Option<u8>>,
    /// Whether any session asked for a level (shared by all sessions): until one does, log
    /// messages pass as the upstream sends them.
    levels_in_use: Arc<std::sync::atomic::AtomicBool>,
    /// When the session was created (the most recent session wins ties for server→client
    /// requests outside any call).
    created: Instant,
    /// Requests we sent to the client (for upstreams), waiting for its answer.
    client_pending: Mutex<HashMap<String, oneshot::Sender<Result<Value, RpcError>>>>,
    /// The client's requests in flight, by JSON-serialised id, for `notifications/cancelled`.
    in_flight: Mutex<HashMap<String, CancellationToken>>,
    /// Exposed URIs this session subscribed to.
    subscriptions: Mutex<HashSet<String>>,
    last_seen: Mutex<Instant>,
    stream: Mutex<Option<mpsc::Sender<StreamItem>>>,
    next_event: AtomicU64,
    replay: Mutex<VecDeque<StreamItem>>,
}

/// The MCP log levels (RFC 5424 severities), least severe first.
pub const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The rank of a log level name, `None` for a name MCP does not have.
pub fn log_rank(level: &str) -> Option<u8> {
    LOG_LEVELS.iter().position(|l| *l == level).map(|i| i as u8)
}

/// What a client that never set a level receives once another client has set one: what a
/// server sends by default in most SDKs, so another client can neither flood nor silence it.
pub const DEFAULT_LOG_RANK: u8 = 1;

impl Session {
    /// Records the client's `logging/setLevel`.
    pub fn set_log_level(&self, rank: u8) {
        *self.log_level.lock() = Some(rank);
        self.levels_in_use.store(true, Ordering::Relaxed);
    }

    /// The level this client receives: its own, or the default.
    pub fn log_rank(&self) -> u8 {
        self.log_level.lock().unwrap_or(DEFAULT_LOG_RANK)
    }

    /// Whether a log message at `level` goes to this client.
    pub fn wants_log(&self, level: &str) -> bool {
        if !self.levels_in_use.load(Ordering::Relaxed) {
            return true;
        }
        log_rank(level).unwrap_or(u8::MAX) >= self.log_rank()
    }

    /// Whether this client subscribed to the exposed resource `uri`.
    pub fn subscribed_to(&self, uri: &str) -> bool {
        self.subscriptions.lock().contains(uri)
    }

    pub fn has_capability(&self, capability: &str) -> bool {
        self.capabilities
            .get(capability)
            .is_some_and(|c| !c.is_null())
    }

    /// Registers a client request so a later `notifications/cancelled` can stop it.
    pub fn track(&self, id: &Value) -> CancellationToken {
        let token = CancellationToken::new();
        self.in_flight.lock().insert(id.to_string(), token.clone());
        token
    }

    pub fn untrack(&self, id: &Value) {
        self.in_flight.lock().remove(&id.to_string());
    }

    /// The client cancelled its request `id`.
    pub fn cancel(&self, id: &Value) -> bool {
        match self.in_flight.lock().remove(&id.to_string()) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    pub fn subscribe(&self, uri: &str) {
        self.subscriptions.lock().insert(uri.to_owned());
    }

    pub fn unsubscribe(&self, uri: &str) {
        self.subscriptions.lock().remove(uri);
    }

    /// An answer from the client to a request we sent it. False if nobody waits for `id`.
    pub fn deliver(&self, id: &Value, msg: &Value) -> bool {
        let Some(key) = id.as_str() else { return false };
        let Some(tx) = self.client_pending.lock().remove(key) else {
            return false;
        };
        let answer = match msg.get("error") {
            Some(e) => Err(RpcError(e.clone())),
            None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
        };
        let _ = tx.send(answer);
        true
    }

    /// Sends a request to the client (on the related stream if given, else the GET stream) and
    /// waits for its answer.
    pub async fn request(
        self: Arc<Self>,
        related: Option<&RequestContext>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        let id = format!("mcpb-s{}", self.next_event.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.client_pending.lock().insert(id.clone(), tx);
        let msg = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        match related {
            Some(ctx) => ctx.send(msg),
            None => {
                if !self.has_open_stream() {
                    self.client_pending.lock().remove(&id);
                    return Err(RpcError::new(
                        jsonrpc::INTERNAL_ERROR,
                        format!("the client session has no open stream to receive {method}"),
                    ));
                }
                self.push(&msg);
            }
        }
        let answer = tokio::time::timeout(timeout, rx).await;
        self.client_pending.lock().remove(&id);
        match answer {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => Err(RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                "the client session ended",
            )),
            Err(_) => Err(RpcError::new(
                jsonrpc::REQUEST_TIMEOUT,
                format!(
                    "the client did not answer {method} within {} s",
                    timeout.as_secs()
                ),
            )),
        }
    }

    pub fn touch(&self) {
        *self.last_seen.lock() = Instant::now();
    }

    /// Seconds since the client last sent anything.
    pub fn idle_secs(&self) -> u64 {
        self.idle_for().as_secs()
    }

    fn idle_for(&self) -> Duration {
        self.last_seen.lock().elapsed()
    }

    pub fn has_open_stream(&self) -> bool {
        self.stream.lock().as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Queues a server-initiated message for the GET stream (and the replay buffer).
    pub fn push(&self, msg: &Value) {
        let n = self.next_event.fetch_add(1, Ordering::Relaxed);
        let text: Arc<str> = msg.to_string().into();
        {
            let mut replay = self.replay.lock();
            if replay.len() == REPLAY {
                replay.pop_front();
            }
            replay.push_back((n, text.clone()));
        }
        let mut stream = self.stream.lock();
        if let Some(tx) = stream.as_ref() {
            match tx.try_send((n, text)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => *stream = None,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(session = %self.id, "GET stream is not being read; message kept for replay only");
                }
            }
        }
    }

    /// Opens the GET stream. Returns `None` if one is already open (one per session). Events
    /// after `last_event` are replayed first.
    pub fn open_stream(
        &self,
        last_event: Option<u64>,
    ) -> Option<(u64, mpsc::Receiver<StreamItem>)> {
        let mut stream = self.stream.lock();
        if stream.as_ref().is_some_and(|s| !s.is_closed()) {
            return None;
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        if let Some(after) = last_event {
            for item in self.replay.lock().iter().filter(|(n, _)| *n > after) {
                let _ = tx.try_send(item.clone());
            }
        }
        *stream = Some(tx);
        let priming = self.next_event.fetch_add(1, Ordering::Relaxed);
        Some((priming, rx))
    }
}

impl ClientSession for Session {
    fn id(&self) -> &str {
        &self.id
    }

    fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    fn has_capability(&self, capability: &str) -> bool {
        Session::has_capability(self, capability)
    }

    fn wants_log(&self, level: &str) -> bool {
        Session::wants_log(self, level)
    }

    fn push(&self, msg: &Value) {
        Session::push(self, msg)
    }

    fn request<'a>(
        self: Arc<Self>,
        related: Option<&'a RequestContext>,
        method: &'a str,
        params: Value,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Value, RpcError>> {
        Box::pin(Session::request(self, related, method, params, timeout))
    }
}

/// Formats an SSE event id of this session's GET stream.
pub fn event_id(n: u64) -> String {
    format!("g-{n}")
}

pub fn parse_event_id(s: &str) -> Option<u64> {
    s.strip_prefix("g-")?.parse().ok()
}

/// A 2026-07-28 listen stream's resource subscriptions: the exposed URIs, and where their
/// updates go.
type Listener = (HashSet<String>, mpsc::Sender<Value>);

/// Resource updates queued for a listen stream that is not being read before new ones are
/// dropped.
const LISTEN_QUEUE: usize = 256;

pub struct Sessions {
    map: RwLock<HashMap<String, Arc<Session>>>,
    max: usize,
    levels_in_use: Arc<std::sync::atomic::AtomicBool>,
    /// Open 2026-07-28 `subscriptions/listen` streams with resource subscriptions: id → the
    /// exposed URIs and where their updates go.
    listeners: Mutex<HashMap<u64, Listener>>,
    next_listener: AtomicU64,
    /// Which upstreams each session's profile includes: nothing from outside it reaches it.
    views: crate::views::SharedViews,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::with_limit(10_000, Default::default())
    }
}

/// 256 bits from the OS CSPRNG, hex: visible ASCII as the spec requires, unguessable.
fn new_session_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Sessions {
    pub fn with_limit(max: usize, views: crate::views::SharedViews) -> Self {
        Self {
            views,
            map: RwLock::new(HashMap::new()),
            max: max.max(1),
            levels_in_use: Default::default(),
            listeners: Mutex::new(HashMap::new()),
            next_listener: AtomicU64::new(1),
        }
    }

    pub fn create(
        &self,
        protocol_version: String,
        client_name: String,
        capabilities: Value,
        origin: Option<String>,
        view: Arc<str>,
    ) -> Result<Arc<Session>, getrandom::Error> {
        let session = Arc::new(Session {
            id: new_session_id()?,
            protocol_version,
            client_name,
            capabilities,
            origin,
            view,
            log_level: Mutex::new(None),
            levels_in_use: self.levels_in_use.clone(),
            created: Instant::now(),
            client_pending: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(HashSet::new()),
            last_seen: Mutex::new(Instant::now()),
            stream: Mutex::new(None),
            next_event: AtomicU64::new(0),
            replay: Mutex::new(VecDeque::new()),
        });
        let mut map = self.map.write();
        if map.len() >= self.max {
            // Forget the longest-idle session that has no open stream (or the longest idle).
            let victim = map
                .values()
                .filter(|s| !s.has_open_stream())
                .max_by_key(|s| s.idle_for())
                .or_else(|| map.values().max_by_key(|s| s.idle_for()))
                .map(|s| s.id.clone());
            if let Some(v) = victim {
                map.remove(&v);
                tracing::debug!("session limit reached; forgot the longest-idle session");
            }
        }
        map.insert(session.id.clone(), session.clone());
        drop(map);
        Ok(session)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.map.read().get(id).cloned();
        if let Some(s) = &s {
            s.touch();
        }
        s
    }

    pub fn remove(&self, id: &str) -> bool {
        self.map.write().remove(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.map.read().values().cloned().collect()
    }

    /// The most verbose level any client needs of the upstreams: the lowest rank asked for,
    /// and the default for clients that asked for none. `None` while no client set a level.
    pub fn upstream_log_rank(&self) -> Option<u8> {
        if !self.levels_in_use.load(Ordering::Relaxed) {
            return None;
        }
        self.all().iter().map(|s| s.log_rank()).min()
    }

    /// Whether a session other than `except`, or a listen stream, subscribed to the exposed
    /// resource `uri`.
    pub fn others_subscribed(&self, uri: &str, except: &str) -> bool {
        self.all()
            .iter()
            .any(|s| s.id != except && s.subscribed_to(uri))
            || self
                .listeners
                .lock()
                .values()
                .any(|(uris, _)| uris.contains(uri))
    }

    /// Whether anyone (a session, a listen stream) subscribed to `uri`.
    pub fn anyone_subscribed(&self, uri: &str) -> bool {
        self.others_subscribed(uri, "")
    }

    /// Whether a session or a listen stream other than `except` subscribed to `uri`.
    pub fn others_than_listener(&self, uri: &str, except: u64) -> bool {
        self.all().iter().any(|s| s.subscribed_to(uri))
            || self
                .listeners
                .lock()
                .iter()
                .any(|(id, (uris, _))| *id != except && uris.contains(uri))
    }

    /// A listen stream, subscribed to nothing yet: its id and where its updates arrive.
    pub fn add_listener(&self) -> (u64, mpsc::Receiver<Value>) {
        let id = self.next_listener.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(LISTEN_QUEUE);
        self.listeners.lock().insert(id, (HashSet::new(), tx));
        (id, rx)
    }

    /// Adds (`true`) or removes a URI of a listen stream's subscriptions.
    pub fn listener_uri(&self, id: u64, uri: &str, add: bool) {
        if let Some((uris, _)) = self.listeners.lock().get_mut(&id) {
            if add {
                uris.insert(uri.to_owned());
            } else {
                uris.remove(uri);
            }
        }
    }

    /// A listen stream ended; the URIs it had subscribed to.
    pub fn remove_listener(&self, id: u64) -> HashSet<String> {
        self.listeners
            .lock()
            .remove(&id)
            .map(|(uris, _)| uris)
            .unwrap_or_default()
    }

    /// Forgets sessions idle longer than `idle` that have no open GET stream.
    pub fn expire(&self, idle: Duration) -> usize {
        let mut map = self.map.write();
        let before = map.len();
        map.retain(|_, s| s.has_open_stream() || s.idle_for() < idle);
        before - map.len()
    }
}

impl Sessions {
    /// The sessions whose profile includes the upstream named `upstream`.
    fn seeing(&self, upstream: &str) -> Vec<Arc<Session>> {
        let views = self.views.read().clone();
        let mut all = self.all();
        all.retain(|s| views.sees_upstream(&s.view, upstream));
        all
    }
}

impl Downstream for Sessions {
    fn request(
        &self,
        upstream: &str,
        ctx: Option<Arc<RequestContext>>,
        capability: &'static str,
        method: String,
        params: Value,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Value, RpcError>> {
        // The session whose call caused this, if it can take it; else, outside any call, the
        // most recent session that declared the capability and has a stream open to receive
        // it, but only while all such sessions share one origin: a guess never hands one
        // site's request to another site's client.
        let mut ambiguous = false;
        let target =
            match ctx.filter(|c| c.session.has_capability(capability) || c.session.stateless()) {
                Some(ctx) => Some((ctx.session.clone(), Some(ctx))),
                None => {
                    let able: Vec<Arc<Session>> = self
                        .seeing(upstream)
                        .into_iter()
                        .filter(|s| s.has_capability(capability) && s.has_open_stream())
                        .collect();
                    ambiguous = able.iter().any(|s| s.origin != able[0].origin);
                    able.into_iter()
                        .max_by_key(|s| s.created)
                        .filter(|_| !ambiguous)
                        .map(|s| (s as Arc<dyn ClientSession>, None))
                }
            };
        Box::pin(async move {
            if ambiguous {
                return Err(RpcError::new(
                    jsonrpc::INTERNAL_ERROR,
                    format!(
                        "{method} outside any client request, and clients of different origins could take it: mcp-bridge does not guess"
                    ),
                ));
            }
            let Some((session, ctx)) = target else {
                return Err(RpcError::new(
                    jsonrpc::METHOD_NOT_FOUND,
                    format!(
                        "no connected client supports {capability}, so mcp-bridge cannot relay {method}"
                    ),
                ));
            };
            if let Some(c) = &ctx {
                c.outstanding.fetch_add(1, Ordering::Relaxed);
            }
            let answer = session
                .request(ctx.as_deref(), &method, params, timeout)
                .await;
            if let Some(c) = &ctx {
                c.outstanding.fetch_sub(1, Ordering::Relaxed);
            }
            answer
        })
    }

    fn broadcast(&self, upstream: &str, msg: &Value) {
        for s in self.seeing(upstream) {
            s.push(msg);
        }
    }

    fn log(&self, upstream: &str, level: &str, msg: &Value) {
        for s in self.seeing(upstream) {
            if s.wants_log(level) {
                s.push(msg);
            }
        }
    }

    fn resource_updated(&self, uri: &str, msg: &Value) {
        for s in self.all() {
            if s.subscriptions.lock().contains(uri) {
                s.push(msg);
            }
        }
        for (uris, tx) in self.listeners.lock().values() {
            if uris.contains(uri) && tx.try_send(msg.clone()).is_err() {
                tracing::debug!(
                    uri,
                    "a listen stream is not being read; a resource update was dropped"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_unique_visible_ascii() {
        let s = Sessions::default();
        let a = s
            .create(
                "2025-11-25".into(),
                "t".into(),
                Value::Null,
                None,
                "all".into(),
            )
            .unwrap();
        let b = s
            .create(
                "2025-11-25".into(),
                "t".into(),
                Value::Null,
                None,
                "all".into(),
            )
            .unwrap();
        assert_ne!(a.id, b.id);
        assert!(a.id.bytes().all(|c| (0x21..=0x7e).contains(&c)));
        assert_eq!(a.id.len(), 64);
    }

    #[tokio::test]
    async fn stream_replays_after_last_event_id() {
        let s = Sessions::default()
            .create("v".into(), "t".into(), Value::Null, None, "all".into())
            .unwrap();
        s.push(&json!({"n": 0}));
        s.push(&json!({"n": 1}));
        let (_, mut rx) = s.open_stream(Some(0)).unwrap();
        assert!(s.open_stream(None).is_none(), "second stream refused");
        let (n, text) = rx.recv().await.unwrap();
        assert_eq!((n, &*text), (1, "{\"n\":1}"));
        s.push(&json!({"n": 2}));
        assert_eq!(&*rx.recv().await.unwrap().1, "{\"n\":2}");
        drop(rx);
        assert!(
            s.open_stream(None).is_some(),
            "reopen after the client left"
        );
        assert_eq!(parse_event_id(&event_id(7)), Some(7));
    }
}
