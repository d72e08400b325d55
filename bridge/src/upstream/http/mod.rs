//! Remote upstreams: one connection attempt (`run_once`), the state one HTTP session shares
//! between its tasks (`Conn`), and that session as a `connection::Transport`. The wire lives in
//! the submodules: `streamable` (Streamable HTTP, MCP 2025-11-25 down to 2025-03-26: one POST
//! per message with a JSON or SSE answer, resumption, lost-session recovery, the GET stream,
//! DELETE), `legacy` (the HTTP+SSE transport of 2024-11-05, used when the server refuses the
//! `initialize` POST with 400, 404 or 405, or when the config says `transport = "sse"`; its
//! `endpoint` must be on the same origin, so the bearer token never goes elsewhere), and
//! `auth` (bearer tokens from the agent or an environment variable, 401 and 403 step-up).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod auth;
mod legacy;
mod streamable;

pub use streamable::session_lost;

use super::Upstream;
use super::peer::RpcPeer;
use super::supervisor::{self, Outcome};
use crate::agent_client::AgentClient;
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
            // POSTs in flight by request id: over 2026-07-28, cancelling a request is closing
            // its exchange, not a notification.
            let mut in_flight = InFlight::default();
            while let Some(line) = out_rx.recv().await {
                let (conn, peer) = (conn.clone(), peer.clone());
                in_flight.0.retain(|_, t| !t.is_finished());
                if peer.is_stateless() {
                    let msg: Value = serde_json::from_slice(&line).unwrap_or_default();
                    if msg.get("method").and_then(Value::as_str) == Some("notifications/cancelled")
                    {
                        if let Some(t) = msg
                            .pointer("/params/requestId")
                            .and_then(|id| in_flight.0.remove(&id.to_string()))
                        {
                            t.abort();
                        }
                        continue;
                    }
                    let key = msg.get("id").map(Value::to_string);
                    let task = tokio::spawn(async move { conn.post(&peer, line).await });
                    if let Some(key) = key {
                        in_flight.0.insert(key, task.abort_handle());
                    }
                    continue;
                }
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

/// The 2026-07-28 POSTs in flight (the `subscriptions/listen` among them), by request id. They
/// are aborted with the connection's sender task: nothing of a closed connection keeps running.
#[derive(Default)]
struct InFlight(std::collections::HashMap<String, tokio::task::AbortHandle>);

impl Drop for InFlight {
    fn drop(&mut self) {
        for t in self.0.values() {
            t.abort();
        }
    }
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

impl Conn {
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
}
