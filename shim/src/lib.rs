//! mcp-bridge-shim: the stdio front door for MCP hosts that only launch stdio servers (Claude
//! Desktop). JSON-RPC lines on stdin are POSTed to the running bridge; answers and
//! server-initiated messages are written to stdout, one message a line. stdout carries only
//! protocol messages; diagnostics go to stderr.
//!
//! Bridge restarts are invisible to the client: on a refused connection, a 404 session or a
//! stream cut mid-answer, the shim waits for the bridge with backoff, opens a new session with
//! the client's original `initialize` params, and resends the requests that were in flight if
//! they are safe to repeat (list and read methods, tools annotated read-only or idempotent);
//! others get a JSON-RPC error saying the bridge restarted.
//!
//! Both protocol eras pass: a 2026-07-28 client (no `initialize`; `server/discover` and
//! requests carrying their version in `_meta`) has each request POSTed on its own, with the
//! 2026 headers and no session, and a stdio `notifications/cancelled` for one of them closes
//! its HTTP exchange, which is how 2026-07-28 cancels over HTTP.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures_util::StreamExt;
use mcp_bridge::client::{ClientError, Posted, StreamableClient};
use mcp_bridge::jsonrpc;
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(
    name = "mcp-bridge-shim",
    version,
    about = "stdio <-> HTTP proxy that connects stdio-only MCP hosts (Claude Desktop) to a running mcp-bridge"
)]
struct Cli {
    /// The bridge's MCP endpoint [default: http://MCP_BRIDGE_HOST:MCP_BRIDGE_PORT/MCP_BRIDGE_MCP_PATH]
    #[arg(long)]
    url: Option<String>,
    /// Serve the host this profile of the bridge (a `[[profile]]` of config.toml, or the
    /// built-in `read-only`): the endpoint becomes `<endpoint>/<NAME>`.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// How long to wait for the bridge when it is not running (at start or after it went away).
    #[arg(long, default_value_t = 30.0)]
    wait_secs: f64,
}

/// Longest line accepted on stdin.
const MAX_LINE: usize = 64 * 1024 * 1024;
/// JSON-RPC error code for a request lost to a bridge restart (server-defined range).
pub const BRIDGE_RESTARTED: i64 = -32003;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-bridge-shim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn default_url(config: &proto::config::Config) -> String {
    let host = if config.host.contains(':') {
        format!("[{}]", config.host)
    } else {
        config.host.clone()
    };
    let host = if host == "0.0.0.0" || host == "[::]" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    format!("http://{host}:{}{}", config.port, config.mcp_path)
}

struct Shim {
    client: StreamableClient,
    out: mpsc::UnboundedSender<Value>,
    wait: Duration,
    /// The client's `initialize` params, replayed when a new session is needed.
    init_params: Mutex<Option<Value>>,
    /// Sessions opened so far; a request remembers the one it was sent on.
    generation: tokio::sync::Mutex<u64>,
    /// Tool name → safe to repeat, learnt from the `tools/list` answers passing through.
    safe_tools: Mutex<HashMap<String, bool>>,
    stream: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// 2026-07-28 requests in flight, by JSON-serialised id: aborting one closes its exchange.
    stateless: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

/// Whether a stdio message is 2026-07-28 traffic: a version in `_meta`, or the discovery probe.
fn is_stateless(msg: &Value) -> bool {
    msg.pointer("/params/_meta")
        .and_then(|m| m.get(mcp_bridge::modern::META_VERSION))
        .is_some()
        || msg.get("method").and_then(Value::as_str) == Some("server/discover")
}

enum Lost {
    /// The bridge is unreachable or forgot the session before the request got there.
    NotSent(ClientError),
    /// The request may have reached the bridge; its answer was lost.
    InFlight(ClientError),
}

impl Shim {
    fn explain(&self, e: &ClientError) -> String {
        if e.is_connect() {
            format!(
                "mcp-bridge is not reachable at {} ({e}). Start it with `mcp-bridge serve`, or install it as a service with `mcp-bridge service install`.",
                self.client.url()
            )
        } else {
            format!("mcp-bridge answered with an error: {e}")
        }
    }

    /// Whether repeating `msg` cannot do harm twice.
    fn safe_to_repeat(&self, msg: &Value) -> bool {
        match msg.get("method").and_then(Value::as_str) {
            Some(
                "ping"
                | "tools/list"
                | "resources/list"
                | "resources/templates/list"
                | "prompts/list"
                | "resources/read"
                | "prompts/get"
                | "completion/complete"
                | "logging/setLevel",
            ) => true,
            Some("tools/call") => msg
                .pointer("/params/name")
                .and_then(Value::as_str)
                .and_then(|n| self.safe_tools.lock().get(n).copied())
                .unwrap_or(false),
            _ => false,
        }
    }

    fn learn_tools(&self, answer: &Value) {
        let Some(tools) = answer.pointer("/result/tools").and_then(Value::as_array) else {
            return;
        };
        let mut safe = self.safe_tools.lock();
        for t in tools {
            if let Some(name) = t.get("name").and_then(Value::as_str) {
                let hint =
                    |k: &str| t.pointer(&format!("/annotations/{k}")) == Some(&Value::Bool(true));
                safe.insert(
                    name.to_owned(),
                    hint("readOnlyHint") || hint("idempotentHint"),
                );
            }
        }
    }

    /// POSTs one message and relays its answer; `Err` if the bridge went away before the answer
    /// was complete.
    async fn post_once(&self, msg: &Value) -> Result<(), Lost> {
        let id = msg.get("id").cloned();
        let is_list = msg.get("method").and_then(Value::as_str) == Some("tools/list");
        let is_init = msg.get("method").and_then(Value::as_str) == Some("initialize");
        let mut stream = match self.client.post(msg).await {
            Ok(Posted::Accepted) => return Ok(()),
            Ok(Posted::Messages(s)) => s,
            Err(e @ (ClientError::Connect { .. } | ClientError::SessionGone)) => {
                return Err(Lost::NotSent(e));
            }
            Err(e @ ClientError::Broken { .. }) => return Err(Lost::InFlight(e)),
            Err(e) => {
                if let Some(id) = &id {
                    let _ = self.out.send(jsonrpc::error_response(
                        id,
                        jsonrpc::UPSTREAM_UNAVAILABLE,
                        self.explain(&e),
                    ));
                }
                return Ok(());
            }
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(m) => {
                    let is_answer =
                        id.is_some() && m.get("id") == id.as_ref() && m.get("method").is_none();
                    if is_answer && is_init {
                        self.client.note_initialized(&m);
                    }
                    if is_answer && is_list {
                        self.learn_tools(&m);
                    }
                    let _ = self.out.send(m);
                    if is_answer {
                        return Ok(());
                    }
                }
                Err(e) => return Err(Lost::InFlight(e)),
            }
        }
        if id.is_some() && msg.get("method").is_some() {
            return Err(Lost::InFlight(ClientError::Protocol(
                "the answer stream ended without the response".into(),
            )));
        }
        Ok(())
    }

    /// Forwards one client message, surviving a bridge restart.
    async fn forward(self: &Arc<Self>, msg: Value) {
        let id = msg.get("id").cloned();
        let is_request = id.is_some() && msg.get("method").is_some();
        let is_init = msg.get("method").and_then(Value::as_str) == Some("initialize");
        if is_init {
            *self.init_params.lock() = msg.get("params").cloned();
        }
        for attempt in 0..3 {
            let generation = *self.generation.lock().await;
            let lost = match self.post_once(&msg).await {
                Ok(()) => {
                    if is_init {
                        self.start_stream(generation);
                    }
                    return;
                }
                Err(lost) => lost,
            };
            if !is_request {
                // A notification or an answer for a session that is gone has nobody to reach.
                tracing::info!("dropped a message for a bridge session that ended");
                return;
            }
            let (in_flight, error) = match lost {
                Lost::NotSent(e) => (false, e),
                Lost::InFlight(e) => (true, e),
            };
            tracing::warn!(error = %error, attempt, in_flight, id = ?id, "the bridge went away; reconnecting");
            if is_init {
                if !self.wait_for_bridge(&msg).await {
                    if let Some(id) = &id {
                        let _ = self.out.send(jsonrpc::error_response(
                            id,
                            jsonrpc::UPSTREAM_UNAVAILABLE,
                            self.explain(&error),
                        ));
                    }
                    eprintln!("mcp-bridge-shim: {}", self.explain(&error));
                }
                return;
            }
            if let Err(e) = self.reconnect(generation).await {
                if let Some(id) = &id {
                    let _ = self.out.send(jsonrpc::error_response(
                        id,
                        jsonrpc::UPSTREAM_UNAVAILABLE,
                        self.explain(&e),
                    ));
                }
                return;
            }
            if in_flight && !self.safe_to_repeat(&msg) {
                if let Some(id) = &id {
                    let _ = self.out.send(jsonrpc::error_response(
                        id,
                        BRIDGE_RESTARTED,
                        "mcp-bridge restarted while this request was in flight; it was not repeated because it may not be safe to run twice",
                    ));
                }
                return;
            }
        }
        if let Some(id) = &id {
            let _ = self.out.send(jsonrpc::error_response(
                id,
                jsonrpc::UPSTREAM_UNAVAILABLE,
                "mcp-bridge kept going away; giving up on this request",
            ));
        }
    }

    /// Forwards one 2026-07-28 request. Nothing is tied to a session, so a bridge that is not
    /// up yet is waited for and the request sent when it is; one lost in flight is repeated
    /// only if safe.
    async fn forward_stateless(self: &Arc<Self>, msg: Value) {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut delay = Duration::from_millis(100);
        let error = loop {
            let lost = match self.client.post_stateless(&msg).await {
                Ok(Posted::Accepted) => return,
                Ok(Posted::Messages(mut stream)) => {
                    let mut lost = None;
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(m) => {
                                let is_answer =
                                    m.get("id") == Some(&id) && m.get("method").is_none();
                                let _ = self.out.send(m);
                                if is_answer {
                                    return;
                                }
                            }
                            Err(e) => {
                                lost = Some(e);
                                break;
                            }
                        }
                    }
                    // A listen stream that ends has nothing more to say; anything else ended
                    // before its answer.
                    if msg.get("method").and_then(Value::as_str) == Some("subscriptions/listen") {
                        return;
                    }
                    Lost::InFlight(lost.unwrap_or_else(|| {
                        ClientError::Protocol("the answer stream ended without the response".into())
                    }))
                }
                Err(e @ ClientError::Connect { .. }) => Lost::NotSent(e),
                Err(e @ ClientError::Broken { .. }) => Lost::InFlight(e),
                Err(e) => break e,
            };
            let e = match lost {
                Lost::InFlight(e) if !self.safe_to_repeat(&msg) => {
                    let _ = self.out.send(jsonrpc::error_response(
                        &id,
                        BRIDGE_RESTARTED,
                        "mcp-bridge went away while this request was in flight; it was not repeated because it may not be safe to run twice",
                    ));
                    tracing::warn!(error = %e, "a 2026-07-28 request was lost in flight");
                    return;
                }
                Lost::InFlight(e) | Lost::NotSent(e) => e,
            };
            if tokio::time::Instant::now() + delay > deadline {
                break e;
            }
            tracing::info!(error = %e, "waiting for mcp-bridge");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        };
        let _ = self.out.send(jsonrpc::error_response(
            &id,
            jsonrpc::UPSTREAM_UNAVAILABLE,
            self.explain(&error),
        ));
    }

    /// Retries the client's own `initialize` until the bridge answers or the wait is over.
    async fn wait_for_bridge(self: &Arc<Self>, msg: &Value) -> bool {
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut delay = Duration::from_millis(100);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            self.client.reset();
            if self.post_once(msg).await.is_ok() {
                let generation = *self.generation.lock().await;
                self.start_stream(generation);
                return true;
            }
        }
        false
    }

    /// Opens a new session with the client's original `initialize` params, unless another task
    /// already did since `seen`.
    async fn reconnect(self: &Arc<Self>, seen: u64) -> Result<(), ClientError> {
        let mut generation = self.generation.lock().await;
        if *generation != seen {
            return Ok(());
        }
        let params = self.init_params.lock().clone().unwrap_or_else(|| {
            json!({
                "protocolVersion": mcp_bridge::upstream::LATEST_VERSION,
                "capabilities": {},
                "clientInfo": { "name": "mcp-bridge-shim", "version": env!("CARGO_PKG_VERSION") },
            })
        });
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut delay = Duration::from_millis(50);
        let mut last = None;
        while tokio::time::Instant::now() < deadline {
            self.client.reset();
            let init = json!({ "jsonrpc": "2.0", "id": "mcp-bridge-shim-reinit", "method": "initialize", "params": params });
            match self.client.post(&init).await {
                Ok(Posted::Messages(mut s)) => {
                    while let Some(Ok(m)) = s.next().await {
                        if m.get("id") == init.get("id") {
                            self.client.note_initialized(&m);
                            break;
                        }
                    }
                    let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
                    let _ = self.client.post(&note).await;
                    *generation += 1;
                    tracing::warn!(
                        generation = *generation,
                        "reconnected to mcp-bridge with a new session"
                    );
                    drop(generation);
                    let g = *self.generation.lock().await;
                    self.start_stream(g);
                    return Ok(());
                }
                Ok(Posted::Accepted) => {
                    last = Some(ClientError::Protocol("initialize got no answer".into()))
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol("timed out".into())))
    }

    /// Relays the GET stream of the current session; when it breaks (the bridge went away),
    /// reconnects so server-initiated messages keep flowing.
    fn start_stream(self: &Arc<Self>, generation: u64) {
        let shim = self.clone();
        let task = tokio::spawn(async move {
            match shim.client.open_stream().await {
                Ok(Some(stream)) => {
                    let mut stream = std::pin::pin!(stream);
                    while let Some(Ok(m)) = stream.next().await {
                        let _ = shim.out.send(m);
                    }
                }
                Ok(None) => return,
                Err(e) => tracing::debug!(error = %e, "cannot open the server stream"),
            }
            if *shim.generation.lock().await == generation {
                tracing::warn!("the server stream ended; reconnecting");
                let _ = shim.reconnect(generation).await;
            }
        });
        if let Some(old) = self.stream.lock().replace(task) {
            old.abort();
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = proto::config::load_process()?;
    let mut url = cli.url.unwrap_or_else(|| default_url(&config));
    if let Some(p) = &cli.profile {
        if !proto::config::valid_name(p) {
            anyhow::bail!("--profile {p:?}: a profile name is 1-64 characters of [a-zA-Z0-9_-]");
        }
        url = format!("{}/{p}", url.trim_end_matches('/'));
    }
    let token = mcp_bridge::inbound_token(
        &config.config_dir,
        std::env::var(mcp_bridge::INBOUND_TOKEN_ENV).ok(),
    )?;
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(msg) = out_rx.recv().await {
            let mut line = msg.to_string();
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let shim = Arc::new(Shim {
        client: StreamableClient::new(&url, token),
        out: out_tx.clone(),
        wait: Duration::from_secs_f64(cli.wait_secs.clamp(0.0, 3600.0)),
        init_params: Mutex::new(None),
        generation: tokio::sync::Mutex::new(0),
        safe_tools: Mutex::new(HashMap::new()),
        stream: Mutex::new(None),
        stateless: Mutex::new(HashMap::new()),
    });

    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    let mut tasks = JoinSet::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let line = tokio::select! {
            r = mcp_bridge::upstream::stdio::read_line_capped(&mut stdin, &mut buf, MAX_LINE) => r?,
            _ = term.recv() => None,
        };
        let Some(cut) = line else { break };
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let msg = match (cut, serde_json::from_slice::<Value>(&buf)) {
            (false, Ok(m)) => m,
            (true, _) | (_, Err(_)) => {
                let _ = out_tx.send(jsonrpc::error_response(
                    &Value::Null,
                    jsonrpc::PARSE_ERROR,
                    "Parse error: not a JSON-RPC message",
                ));
                continue;
            }
        };
        let is_init = msg.get("method").and_then(Value::as_str) == Some("initialize")
            && msg.get("id").is_some();
        if msg.get("method").and_then(Value::as_str) == Some("notifications/cancelled")
            && let Some(rid) = msg.pointer("/params/requestId")
            && let Some(task) = shim.stateless.lock().remove(&rid.to_string())
        {
            // 2026-07-28 over HTTP: closing the request's exchange is its cancellation.
            task.abort();
            continue;
        }
        if is_stateless(&msg) && msg.get("id").is_some() {
            let key = msg.get("id").map(Value::to_string).unwrap_or_default();
            let s = shim.clone();
            let k = key.clone();
            // The task starts once its handle is registered, so its own removal at the end
            // never comes before the insert.
            let (go, ready) = tokio::sync::oneshot::channel::<()>();
            let handle = tasks.spawn(async move {
                let _ = ready.await;
                s.forward_stateless(msg).await;
                s.stateless.lock().remove(&k);
            });
            shim.stateless.lock().insert(key, handle);
            let _ = go.send(());
        } else if is_init {
            // Later messages need the session id, so initialize completes before anything else.
            shim.forward(msg).await;
        } else {
            let shim = shim.clone();
            tasks.spawn(async move { shim.forward(msg).await });
        }
        while tasks.try_join_next().is_some() {}
    }
    // stdin closed: let in-flight requests finish, then end the session.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if let Some(t) = shim.stream.lock().take() {
        t.abort();
    }
    shim.client.delete().await;
    drop(shim);
    drop(out_tx);
    let _ = writer.await;
    Ok(())
}
