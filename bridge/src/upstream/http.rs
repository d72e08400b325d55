//! Remote upstreams over Streamable HTTP (MCP 2025-11-25 down to 2025-03-26): one POST per
//! message with JSON or SSE answers, `Mcp-Session-Id` and `MCP-Protocol-Version` kept and sent,
//! SSE resumption with `Last-Event-ID`, a 404 session re-initialized transparently, the GET
//! stream for server-initiated messages, DELETE on shutdown. Bearer tokens come from the
//! credential agent (or an environment variable); a 401 reports the token to the agent and
//! retries once with a new one.
//!
//! The legacy HTTP+SSE transport (2024-11-05): when the server refuses the `initialize` POST with
//! 400, 404 or 405 (or the config says `transport = "sse"`), the URL is opened with GET as an
//! event stream whose first `endpoint` event names where messages are POSTed (same origin only,
//! so the bearer token never goes elsewhere); every answer then arrives on that stream.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Upstream;
use super::peer::RpcPeer;
use super::supervisor::{self, Outcome};
use crate::agent_client::{AgentClient, TokenError};
use crate::sse::SseParser;
use futures_util::future::BoxFuture;
use proto::config::HttpTransport;

/// Where the bearer token comes from.
pub enum Auth {
    None,
    /// A fixed token (from an environment variable named in the config).
    Static(String),
    Agent(Arc<AgentClient>),
}

pub struct HttpSpec {
    pub url: String,
    pub auth: Auth,
    pub headers: BTreeMap<String, String>,
    pub transport: HttpTransport,
}

/// Largest answer read from an upstream: the bound on a stdio message.
const MAX_ANSWER: usize = super::stdio::MAX_MESSAGE;

/// Reads a body of at most `max` bytes; more (declared or sent) is an error, so a hostile or
/// broken server cannot make the bridge buffer without bound.
async fn read_capped(resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("an answer over {max} bytes"));
    }
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("a broken answer ({e})"))?;
        if out.len() + chunk.len() > max {
            return Err(format!("an answer over {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Tokens are renewed when they have less than this left.
const TOKEN_MARGIN: u64 = 30;

/// Why the connection cannot go on (sent on `Conn::fail` by whichever task finds out).
use super::connection::Ending as Failure;

struct Conn {
    up: Arc<Upstream>,
    spec: Arc<HttpSpec>,
    http: reqwest::Client,
    session: crate::mcp_session::McpSession,
    token: Mutex<Option<(String, u64)>>,
    /// The bridge's own `initialize` params, replayed when the upstream forgets the session.
    init: Mutex<Option<Value>>,
    /// The last event id of an answer stream that broke, for `Last-Event-ID`.
    resume_from: Mutex<Option<String>>,
    /// The server's SSE `retry` (ms): how long to wait before resuming.
    retry_ms: Mutex<Option<u64>>,
    /// Legacy HTTP+SSE: the endpoint messages are POSTed to (`None` = Streamable HTTP) and the
    /// task reading the event stream.
    legacy: Mutex<Option<(String, tokio::task::JoinHandle<()>)>>,
    /// Whether the GET stream was started, and its task (stopped with the connection).
    stream_open: std::sync::atomic::AtomicBool,
    stream_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    fail: mpsc::UnboundedSender<Failure>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stop_legacy();
    }
}

pub async fn supervise(up: Arc<Upstream>, spec: HttpSpec, shutdown: CancellationToken) {
    let spec = Arc::new(spec);
    let (u, stop) = (up.clone(), shutdown.clone());
    supervisor::supervise(up, shutdown, move || {
        run_once(u.clone(), spec.clone(), stop.clone())
    })
    .await;
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

async fn run_once(up: Arc<Upstream>, spec: Arc<HttpSpec>, shutdown: CancellationToken) -> Outcome {
    let (fail_tx, fail_rx) = mpsc::unbounded_channel();
    let conn = Arc::new(Conn {
        up: up.clone(),
        spec,
        http: http_client(),
        session: Default::default(),
        token: Mutex::new(None),
        init: Mutex::new(None),
        resume_from: Mutex::new(None),
        retry_ms: Mutex::new(None),
        legacy: Mutex::new(None),
        stream_open: Default::default(),
        stream_task: Mutex::new(None),
        fail: fail_tx,
    });
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    let peer = Arc::new(RpcPeer::new(up.name.clone(), out_tx));
    let sender = {
        let (conn, peer) = (conn.clone(), peer.clone());
        tokio::spawn(async move {
            while let Some(line) = out_rx.recv().await {
                let (conn, peer) = (conn.clone(), peer.clone());
                // The handshake's order is the spec's: nothing more is sent until the server
                // has accepted `notifications/initialized` (servers register some tools only
                // then), and the GET stream is open before the lists are fetched, so a
                // `list_changed` sent meanwhile is not lost.
                if is_initialized_note(&line) {
                    conn.post(&peer, line).await;
                    if conn.legacy_endpoint().is_none()
                        && !conn
                            .stream_open
                            .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        let task = tokio::spawn(conn.clone().server_stream(peer.clone()));
                        *conn.stream_task.lock() = Some(task);
                    }
                    continue;
                }
                tokio::spawn(async move { conn.post(&peer, line).await });
            }
        })
    };
    let mut transport = Session {
        conn,
        fail: fail_rx,
        sender,
    };
    super::connection::run(&up, peer, &mut transport, &shutdown).await
}

/// A Streamable HTTP (or legacy SSE) session as a connection's transport: failures arrive on
/// `fail` from whichever task finds them (a POST, the GET stream, the token source).
struct Session {
    conn: Arc<Conn>,
    fail: mpsc::UnboundedReceiver<Failure>,
    sender: tokio::task::JoinHandle<()>,
}

impl super::connection::Transport for Session {
    fn ended(&mut self) -> BoxFuture<'_, Failure> {
        Box::pin(async move {
            self.fail
                .recv()
                .await
                .unwrap_or_else(|| Failure::Broken("the connection's tasks ended".into()))
        })
    }

    fn reported(&mut self) -> Option<Failure> {
        self.fail.try_recv().ok()
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.conn.delete_session().await;
            self.conn.stop_legacy();
            self.sender.abort();
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.conn.stop_legacy();
            self.sender.abort();
        })
    }
}

/// The start of an error answer's body, for messages (bounded: read 4 KiB, keep 300 chars).
async fn error_body(resp: reqwest::Response) -> String {
    let body = read_capped(resp, 4096).await.unwrap_or_default();
    String::from_utf8_lossy(&body).chars().take(300).collect()
}

fn is_initialized_note(line: &[u8]) -> bool {
    serde_json::from_slice::<Value>(line)
        .is_ok_and(|v| v.get("method").and_then(Value::as_str) == Some("notifications/initialized"))
}

/// Whether an HTTP 400/404 answer to a request that carried a session id says the session is
/// gone. The spec says 404; the TypeScript SDK's servers answer 400 "Bad Request: No valid
/// session ID provided", others "Session not found", "Invalid session", "unknown session".
pub fn session_lost(status: u16, body: &str) -> bool {
    if status == 404 {
        return true;
    }
    let b = body.to_ascii_lowercase();
    status == 400
        && b.contains("session")
        && [
            "no valid",
            "invalid",
            "unknown",
            "not found",
            "expired",
            "missing",
        ]
        .iter()
        .any(|w| b.contains(w))
}

/// Resolves a legacy stream's `endpoint` event against the upstream URL; only the same origin
/// is accepted, so messages (and the bearer token) never go to another server.
fn legacy_endpoint(base: &url::Url, data: &str) -> Result<url::Url, String> {
    let endpoint = base
        .join(data.trim())
        .map_err(|e| format!("the legacy SSE endpoint {data:?} is not a URL: {e}"))?;
    if endpoint.origin() != base.origin() {
        return Err(format!(
            "the legacy SSE endpoint {endpoint} is on another origin than {base}; refusing to send messages (and the token) there"
        ));
    }
    Ok(endpoint)
}

/// The `WWW-Authenticate` of a 403 that asks for more scope (RFC 6750 `insufficient_scope`).
fn insufficient_scope(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("insufficient_scope"))
        .map(str::to_owned)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Conn {
    async fn bearer(&self) -> Result<Option<String>, Failure> {
        match &self.spec.auth {
            Auth::None => Ok(None),
            Auth::Static(t) => Ok(Some(t.clone())),
            Auth::Agent(agent) => {
                if let Some((t, exp)) = self.token.lock().clone()
                    && exp > unix_now() + TOKEN_MARGIN
                {
                    return Ok(Some(t));
                }
                match agent.get_token(&self.up.name, TOKEN_MARGIN * 2).await {
                    Ok((t, exp)) => {
                        *self.token.lock() = Some((t.clone(), exp));
                        Ok(Some(t))
                    }
                    Err(TokenError::Agent(e @ proto::AgentError::NeedsLogin { .. })) => {
                        Err(Failure::NeedsLogin(e.to_string()))
                    }
                    Err(e) => Err(Failure::Broken(e.to_string())),
                }
            }
        }
    }

    fn request(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        with_session: bool,
    ) -> reqwest::RequestBuilder {
        self.request_to(&self.spec.url, method, token, with_session)
    }

    fn request_to(
        &self,
        url: &str,
        method: reqwest::Method,
        token: Option<&str>,
        with_session: bool,
    ) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, url);
        for (k, v) in &self.spec.headers {
            req = req.header(k, v);
        }
        if with_session {
            req = self.session.headers(req);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    }

    /// POSTs one message from the peer and dispatches whatever comes back.
    async fn post(&self, peer: &Arc<RpcPeer>, line: Bytes) {
        let Ok(msg) = serde_json::from_slice::<Value>(&line) else {
            return;
        };
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let is_init = method == "initialize";
        if is_init {
            *self.init.lock() = msg.get("params").cloned();
        }
        let id = msg
            .get("id")
            .filter(|_| msg.get("method").is_some())
            .cloned();
        if is_init
            && self.spec.transport == HttpTransport::Sse
            && self.legacy_endpoint().is_none()
            && let Err(f) = self.open_legacy(peer, None).await
        {
            let _ = self.fail.send(f);
            return;
        }
        if self.legacy_endpoint().is_some() {
            return self.post_legacy(peer, line, id.as_ref()).await;
        }
        let (mut rejected, mut stepped_up, mut reinitialized) = (false, false, false);
        for _ in 0..3 {
            let Some(token) = self.bearer_or_report().await else {
                return;
            };
            let resp = self
                .request(reqwest::Method::POST, token.as_deref(), !is_init)
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .body(line.clone())
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    let _ = self.fail.send(Failure::Broken(format!(
                        "cannot reach {}: {e}",
                        self.spec.url
                    )));
                    return;
                }
            };
            match resp.status().as_u16() {
                401 if matches!(self.spec.auth, Auth::None) => {
                    let _ = self.fail.send(Failure::Broken(format!(
                        "the upstream answered 401: it wants authorization; set auth = \"oauth\" on upstream {:?} in config.toml (then run `mcp-cred-agent login {}`), or auth = {{ bearer_env = \"VAR\" }} for a fixed token",
                        self.up.name, self.up.name
                    )));
                    return;
                }
                401 => {
                    if rejected {
                        let _ = self.fail.send(Failure::Broken(
                            "the upstream refused a freshly issued token (401)".into(),
                        ));
                        return;
                    }
                    rejected = true;
                    if let Err(f) = self.reject(token).await {
                        let _ = self.fail.send(f);
                        return;
                    }
                    continue;
                }
                s @ (400 | 404) if !is_init && !reinitialized && self.session.id().is_some() => {
                    let body = error_body(resp).await;
                    if !session_lost(s, &body) {
                        if let Some(id) = &id {
                            peer.deliver(id, json!({"jsonrpc": "2.0", "id": id, "error": {"code": crate::jsonrpc::INTERNAL_ERROR, "message": format!("upstream answered HTTP {s}: {body}")}}));
                        }
                        return;
                    }
                    reinitialized = true;
                    tracing::info!(upstream = %self.up.name, status = s, "upstream forgot the session; initializing a new one");
                    if let Err(e) = self.reinitialize().await {
                        let _ = self.fail.send(Failure::Broken(format!(
                            "re-initializing after the upstream lost the session (HTTP {s}: {body}) failed: {e}"
                        )));
                        return;
                    }
                    continue;
                }
                403 if !stepped_up
                    && let (Auth::Agent(agent), Some(challenge)) =
                        (&self.spec.auth, insufficient_scope(&resp)) =>
                {
                    // Step-up: the agent logs in again with the scopes the server named.
                    stepped_up = true;
                    tracing::info!(upstream = %self.up.name, "upstream answered 403 insufficient_scope; asking the agent for a step-up login");
                    match agent.scope_required(&self.up.name, &challenge).await {
                        Ok(()) => {
                            self.token.lock().take();
                            continue;
                        }
                        Err(e) => {
                            if let Some(id) = &id {
                                peer.deliver(id, json!({"jsonrpc": "2.0", "id": id, "error": {"code": crate::jsonrpc::INTERNAL_ERROR, "message": format!("upstream '{}' needs more scope: {e}", self.up.name)}}));
                            }
                            return;
                        }
                    }
                }
                s @ (400 | 404 | 405) if is_init && self.spec.transport == HttpTransport::Auto => {
                    tracing::info!(upstream = %self.up.name, status = s, "the initialize POST was refused; trying the legacy HTTP+SSE transport");
                    if let Err(f) = self.open_legacy(peer, Some(s)).await {
                        let _ = self.fail.send(f);
                        return;
                    }
                    return self.post_legacy(peer, line, id.as_ref()).await;
                }
                s if !(200..300).contains(&s) => {
                    let body = error_body(resp).await;
                    if method == "ping" {
                        // An error answer to a keepalive is no sign of life.
                        let _ = self.fail.send(Failure::Broken(format!(
                            "the keepalive ping was answered HTTP {s}: {body}"
                        )));
                        return;
                    }
                    if let Some(id) = &id {
                        peer.deliver(id, json!({"jsonrpc": "2.0", "id": id, "error": {"code": crate::jsonrpc::INTERNAL_ERROR, "message": format!("upstream answered HTTP {s}: {body}")}}));
                    }
                    return;
                }
                _ => {}
            }
            if is_init {
                self.session.learn_id(&resp);
            }
            let sse = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("text/event-stream"));
            if !sse {
                let answer = read_capped(resp, MAX_ANSWER).await.and_then(|body| {
                    if body.is_empty() && id.is_none() {
                        return Ok(None);
                    }
                    serde_json::from_slice::<Value>(&body)
                        .map(Some)
                        .map_err(|e| format!("an answer that is not JSON ({e})"))
                });
                match (answer, &id) {
                    (Ok(Some(v)), _) => self.deliver(peer, v, is_init, id.as_ref()),
                    (Err(e), Some(id)) => {
                        peer.deliver(id, json!({"jsonrpc": "2.0", "id": id, "error": {"code": crate::jsonrpc::INTERNAL_ERROR, "message": format!("upstream sent {e}")}}));
                    }
                    _ => {}
                }
                return;
            }
            let done = self.read_sse(peer, resp, id.as_ref(), is_init).await;
            if let (false, Some(id)) = (done, &id) {
                self.resume(peer, id, is_init).await;
            }
            return;
        }
    }

    /// The bearer token, or `None` after reporting why there is none (the connection ends).
    async fn bearer_or_report(&self) -> Option<Option<String>> {
        match self.bearer().await {
            Ok(t) => Some(t),
            Err(f) => {
                let _ = self.fail.send(f);
                None
            }
        }
    }

    /// The upstream refused `token` (401): drop it and tell the agent, which refreshes.
    async fn reject(&self, token: Option<String>) -> Result<(), Failure> {
        self.token.lock().take();
        if let (Auth::Agent(agent), Some(t)) = (&self.spec.auth, token) {
            tracing::info!(upstream = %self.up.name, "upstream answered 401; asking the agent for a new token");
            agent
                .token_rejected(&self.up.name, &t)
                .await
                .map_err(|e| match e {
                    TokenError::Agent(e @ proto::AgentError::NeedsLogin { .. }) => {
                        Failure::NeedsLogin(e.to_string())
                    }
                    e => Failure::Broken(e.to_string()),
                })?;
        }
        Ok(())
    }

    fn legacy_endpoint(&self) -> Option<String> {
        self.legacy.lock().as_ref().map(|(e, _)| e.clone())
    }

    /// Stops the connection's streams: the legacy event stream and the GET stream.
    fn stop_legacy(&self) {
        if let Some((_, task)) = self.legacy.lock().take() {
            task.abort();
        }
        if let Some(task) = self.stream_task.lock().take() {
            task.abort();
        }
    }

    /// Opens the legacy event stream, waits (up to the startup timeout) for its `endpoint`
    /// event, and leaves a task dispatching the stream's messages; its end ends the connection.
    /// `refused` is the status the Streamable HTTP `initialize` POST got, if one was tried.
    async fn open_legacy(&self, peer: &Arc<RpcPeer>, refused: Option<u16>) -> Result<(), Failure> {
        let base = url::Url::parse(&self.spec.url)
            .map_err(|e| Failure::Broken(format!("bad url {}: {e}", self.spec.url)))?;
        let mut rejected = false;
        let resp = loop {
            let token = self.bearer().await?;
            let resp = self
                .request(reqwest::Method::GET, token.as_deref(), false)
                .header("accept", "text/event-stream")
                .send()
                .await
                .map_err(|e| Failure::Broken(format!("cannot reach {}: {e}", self.spec.url)))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && !rejected {
                rejected = true;
                self.reject(token).await?;
                continue;
            }
            if !resp.status().is_success() {
                let post = refused.map_or(String::new(), |s| {
                    format!("the initialize POST got HTTP {s}, ")
                });
                return Err(Failure::Broken(format!(
                    "{} speaks neither Streamable HTTP nor the legacy SSE transport ({post}the SSE GET got HTTP {})",
                    self.spec.url,
                    resp.status().as_u16()
                )));
            }
            break resp;
        };
        let mut parser = SseParser::new(64 * 1024 * 1024);
        let mut body = resp.bytes_stream();
        let mut early = Vec::new();
        let endpoint = tokio::time::timeout(self.up.timeouts.startup, async {
            while let Some(Ok(chunk)) = body.next().await {
                let Ok(events) = parser.push(&chunk) else {
                    return None;
                };
                let mut found = None;
                for e in events {
                    if found.is_none() && e.event.as_deref() == Some("endpoint") {
                        found = Some(e.data);
                    } else if found.is_some() {
                        early.push(e);
                    }
                }
                if found.is_some() {
                    return found;
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| {
            Failure::Broken(format!(
                "{}: the legacy SSE stream sent no endpoint event",
                self.spec.url
            ))
        })?;
        let endpoint = legacy_endpoint(&base, &endpoint).map_err(Failure::Broken)?;
        tracing::info!(upstream = %self.up.name, endpoint = %endpoint, "using the legacy HTTP+SSE transport");
        let (up, peer, fail) = (self.up.clone(), peer.clone(), self.fail.clone());
        let task = tokio::spawn(async move {
            let dispatch = |e: crate::sse::SseEvent| {
                let is_message = e.event.as_deref().is_none_or(|t| t == "message");
                if let (true, Ok(v)) = (is_message, serde_json::from_str::<Value>(&e.data)) {
                    super::protocol::dispatch(&up, &peer, v);
                }
            };
            early.into_iter().for_each(dispatch);
            while let Some(Ok(chunk)) = body.next().await {
                let Ok(events) = parser.push(&chunk) else {
                    break;
                };
                events.into_iter().for_each(dispatch);
            }
            let _ = fail.send(Failure::Broken("the legacy SSE stream closed".into()));
        });
        *self.legacy.lock() = Some((endpoint.to_string(), task));
        Ok(())
    }

    /// Legacy transport: POSTs one message to the endpoint; the answer comes on the stream.
    async fn post_legacy(&self, peer: &Arc<RpcPeer>, line: Bytes, id: Option<&Value>) {
        let Some(endpoint) = self.legacy_endpoint() else {
            return;
        };
        let mut rejected = false;
        loop {
            let Some(token) = self.bearer_or_report().await else {
                return;
            };
            let resp = self
                .request_to(&endpoint, reqwest::Method::POST, token.as_deref(), false)
                .header("content-type", "application/json")
                .body(line.clone())
                .send()
                .await;
            let status = match resp {
                Ok(r) => r.status(),
                Err(e) => {
                    let _ = self
                        .fail
                        .send(Failure::Broken(format!("cannot reach {endpoint}: {e}")));
                    return;
                }
            };
            if status == reqwest::StatusCode::UNAUTHORIZED && !rejected {
                rejected = true;
                if let Err(f) = self.reject(token).await {
                    let _ = self.fail.send(f);
                    return;
                }
                continue;
            }
            if !status.is_success()
                && let Some(id) = id
            {
                peer.deliver(id, json!({"jsonrpc": "2.0", "id": id, "error": {"code": crate::jsonrpc::INTERNAL_ERROR, "message": format!("upstream answered HTTP {}", status.as_u16())}}));
            }
            return;
        }
    }

    /// Dispatches a message that arrived in the answer to our request `cause`: server→client
    /// requests, progress and logs on that stream belong exactly to the client request behind
    /// it.
    fn deliver(&self, peer: &Arc<RpcPeer>, v: Value, is_init: bool, cause: Option<&Value>) {
        if is_init {
            self.session.learn_version(&v);
        }
        super::protocol::dispatch_for(&self.up, peer, v, cause);
    }

    /// Dispatches the events of an SSE answer; true once the response to `id` arrived.
    /// Remembers the last event id for resumption.
    async fn read_sse(
        &self,
        peer: &Arc<RpcPeer>,
        resp: reqwest::Response,
        id: Option<&Value>,
        is_init: bool,
    ) -> bool {
        let mut parser = SseParser::new(64 * 1024 * 1024);
        let mut body = resp.bytes_stream();
        let mut last_id: Option<String> = None;
        while let Some(Ok(chunk)) = body.next().await {
            let Ok(events) = parser.push(&chunk) else {
                break;
            };
            for e in events {
                if e.id.is_some() {
                    last_id.clone_from(&e.id);
                }
                if let Some(r) = e.retry {
                    *self.retry_ms.lock() = Some(r.min(60_000));
                }
                if e.data.is_empty() {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(&e.data) else {
                    continue;
                };
                let is_answer = id.is_some() && v.get("id") == id && v.get("method").is_none();
                self.deliver(peer, v, is_init, id);
                if is_answer {
                    return true;
                }
            }
        }
        if last_id.is_some() {
            *self.resume_from.lock() = last_id;
        }
        false
    }

    /// The answer stream broke before the response: resume it with GET + Last-Event-ID.
    async fn resume(&self, peer: &Arc<RpcPeer>, id: &Value, is_init: bool) {
        for attempt in 0..3u32 {
            let Some(last) = self.resume_from.lock().clone() else {
                break;
            };
            // The server's `retry` says when to come back (MUST be respected); else soon.
            let wait = self.retry_ms.lock().unwrap_or(100) * u64::from(attempt + 1);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let Some(token) = self.bearer_or_report().await else {
                return;
            };
            let resp = self
                .request(reqwest::Method::GET, token.as_deref(), true)
                .header("accept", "text/event-stream")
                .header("last-event-id", &last)
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(upstream = %self.up.name, last_event_id = %last, "resumed a broken answer stream");
                    if self.read_sse(peer, r, Some(id), is_init).await {
                        return;
                    }
                }
                Ok(r) => {
                    tracing::warn!(upstream = %self.up.name, status = %r.status(), "cannot resume the answer stream")
                }
                Err(e) => {
                    tracing::warn!(upstream = %self.up.name, error = %e, "cannot resume the answer stream")
                }
            }
        }
        peer.deliver(id, json!({"jsonrpc": "2.0", "id": id, "error": {"code": crate::jsonrpc::INTERNAL_ERROR, "message": "the upstream's answer stream broke and could not be resumed"}}));
    }

    /// A fresh session with the same `initialize` params, out of band of the peer's ids.
    async fn reinitialize(&self) -> Result<(), String> {
        let params = self.init.lock().clone().ok_or("no initialize to replay")?;
        self.session.clear_id();
        let token = self.bearer().await.map_err(|_| "no token".to_owned())?;
        let init = json!({"jsonrpc": "2.0", "id": "mcp-bridge-reinit", "method": "initialize", "params": params});
        let resp = self
            .request(reqwest::Method::POST, token.as_deref(), false)
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        self.session.learn_id(&resp);
        let _ = read_capped(resp, MAX_ANSWER).await;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let _ = self
            .request(reqwest::Method::POST, token.as_deref(), true)
            .header("accept", "application/json, text/event-stream")
            .json(&note)
            .send()
            .await;
        Ok(())
    }

    /// Relays the GET stream of server-initiated messages while the session lives.
    ///
    /// The stream ending is no sign of life: it is reopened at once, and if the server cannot
    /// be reached or no longer knows the session (it restarted), the connection fails and the
    /// supervisor reconnects, so a restarted upstream is found without waiting for a call.
    /// The first open failing to connect is a failure too (the server went away meanwhile).
    async fn server_stream(self: Arc<Self>, peer: Arc<RpcPeer>) {
        // The first GET is made moments after the session was created: any refusal means the
        // server offers no GET stream (405 per the spec; some answer 404). A refusal on a
        // reopen, after a stream that was open ended, means the server lost the session.
        let mut reopening = false;
        loop {
            let Ok(token) = self.bearer().await else {
                return;
            };
            let resp = self
                .request(reqwest::Method::GET, token.as_deref(), true)
                .header("accept", "text/event-stream")
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    let _ = self.fail.send(Failure::Broken(format!(
                        "the GET stream could not be reopened: cannot reach {}: {e}",
                        self.spec.url
                    )));
                    return;
                }
            };
            let status = resp.status().as_u16();
            if !(200..300).contains(&status) {
                let body = error_body(resp).await;
                if reopening && session_lost(status, &body) {
                    let _ = self.fail.send(Failure::Broken(format!(
                        "the upstream lost the session (GET stream answered HTTP {status}: {body})"
                    )));
                }
                // 405 and the like: the server offers no GET stream.
                return;
            }
            let mut parser = SseParser::new(64 * 1024 * 1024);
            let mut body = resp.bytes_stream();
            while let Some(Ok(chunk)) = body.next().await {
                let Ok(events) = parser.push(&chunk) else {
                    break;
                };
                for e in events.into_iter().filter(|e| !e.data.is_empty()) {
                    if let Ok(v) = serde_json::from_str::<Value>(&e.data) {
                        super::protocol::dispatch(&self.up, &peer, v);
                    }
                }
            }
            reopening = true;
            tracing::debug!(upstream = %self.up.name, "the GET stream ended; reopening it");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn delete_session(&self) {
        if self.session.id().is_none() {
            return;
        }
        let token = self.bearer().await.ok().flatten();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.request(reqwest::Method::DELETE, token.as_deref(), true)
                .send(),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_session_is_recognised_in_the_ways_servers_say_it() {
        // TypeScript SDK 1.x servers (server-everything 2026.8.31):
        assert!(session_lost(
            400,
            r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"}}"#
        ));
        // Python SDK 2.x: 404 "Session not found"; the spec: 404.
        assert!(session_lost(
            404,
            r#"{"error":{"message":"Session not found"}}"#
        ));
        assert!(session_lost(404, ""));
        assert!(session_lost(400, "invalid session id"));
        // A 400 about something else is the request's problem, not the session's.
        assert!(!session_lost(
            400,
            r#"{"error":{"message":"Bad Request: Unsupported protocol version"}}"#
        ));
        assert!(!session_lost(400, "Parse error"));
        assert!(!session_lost(500, "session not found"));
    }

    #[test]
    fn legacy_endpoints_must_stay_on_the_same_origin() {
        let base = url::Url::parse("https://mcp.example.com/sse").unwrap();
        let ok = |d: &str| legacy_endpoint(&base, d).map(|u| u.to_string());
        assert_eq!(
            ok("/messages?sessionId=1").unwrap(),
            "https://mcp.example.com/messages?sessionId=1"
        );
        assert_eq!(
            ok(" messages?x=1\n").unwrap(),
            "https://mcp.example.com/messages?x=1"
        );
        assert_eq!(
            ok("https://mcp.example.com/m").unwrap(),
            "https://mcp.example.com/m"
        );
        for evil in [
            "https://evil.example/messages",
            "//evil.example/messages",
            "http://mcp.example.com/messages",
            "https://mcp.example.com:8443/messages",
        ] {
            assert!(ok(evil).is_err(), "{evil}");
        }
    }
}
