//! The Streamable HTTP endpoint (MCP 2025-11-25, negotiating down to 2024-11-05): POST for
//! client messages, GET for the server-initiated SSE stream, DELETE to end a session; plus
//! `/healthz` and `/status`. Stateless MCP 2026-07-28 POSTs on the same path go to `modern.rs`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::{self, Kind, RpcError};
use crate::registry::{Catalog, Registry};
use crate::session::{self, Session, Sessions};
use crate::upstream::{Answer, ListKind, RequestContext};
use crate::upstream::{LATEST_VERSION, SUPPORTED_VERSIONS};
use tokio::sync::mpsc;

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";

pub struct Bridge {
    pub registry: Arc<Registry>,
    pub sessions: Arc<Sessions>,
    pub endpoint: String,
    pub started: SystemTime,
    /// Ends open SSE streams so a graceful shutdown does not wait on them forever.
    pub shutdown: CancellationToken,
    /// How many list_changed notifications were broadcast.
    pub list_changes: std::sync::atomic::AtomicU64,
    /// Numbers POST SSE streams, for event ids unique within a session.
    pub streams: std::sync::atomic::AtomicU64,
    /// How long a list waits for upstreams in their first handshake (`first_list_wait_secs`).
    pub first_list_wait: Duration,
    /// Calls of 2026-07-28 clients waiting for their `inputResponses`.
    pub mrtr: crate::modern::Mrtr,
    /// The list changes broadcast to sessions (profile, notification method), for
    /// `subscriptions/listen` streams too.
    pub list_events: tokio::sync::broadcast::Sender<(Arc<str>, &'static str)>,
    /// The OAuth authorization server of the public URL, when `public_url` is set.
    pub connectors: Option<Arc<crate::connectors::Connectors>>,
    /// The status page's CSRF token (`ui`).
    pub ui_token: String,
}

impl Bridge {
    /// The profile a request is served (see `views`): a JSON-RPC error response when the path
    /// names no profile (404) or a browser origin asks for another than its own (403).
    #[allow(clippy::result_large_err)]
    pub(crate) fn view_of(
        &self,
        asked: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Arc<str>, Response> {
        let views = self.registry.views.read().clone();
        // A request to the public URL (authenticated by the guard) sees its grant's profile.
        if let Some(p) = header_str(headers, crate::connectors::http::GRANT_PROFILE_HEADER) {
            return views
                .get(p)
                .map(|_| Arc::from(p))
                .ok_or_else(|| {
                    rpc_error(
                        StatusCode::FORBIDDEN,
                        &Value::Null,
                        jsonrpc::INVALID_REQUEST,
                        &format!("Forbidden: this connector's profile {p:?} is no longer in config.toml; revoke it and connect again"),
                    )
                });
        }
        views
            .resolve(asked, header_str(headers, "origin"))
            .map_err(|e| {
                let status = match e {
                    crate::views::ViewError::Unknown(_) => StatusCode::NOT_FOUND,
                    crate::views::ViewError::OriginBound { .. } => StatusCode::FORBIDDEN,
                };
                rpc_error(
                    status,
                    &Value::Null,
                    jsonrpc::INVALID_REQUEST,
                    &e.to_string(),
                )
            })
    }
}

/// How much of a request body is read, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: std::time::Duration,
}

pub fn router(
    bridge: Arc<Bridge>,
    mcp_path: &str,
    guard: crate::guard::Guard,
    limits: BodyLimits,
) -> Router {
    let guard = Arc::new(guard);
    let oauth = match &bridge.connectors {
        Some(_) => crate::connectors::http::routes(mcp_path),
        None => Router::new(),
    };
    let profile_path = format!("{}/{{profile}}", mcp_path.trim_end_matches('/'));
    Router::new()
        .route(
            mcp_path,
            get(|s, h| mcp_get(s, None, h))
                .post(|s, h, b| mcp_post(s, None, h, b))
                .delete(|s, h| mcp_delete(s, None, h))
                .options(|| async { StatusCode::NO_CONTENT }),
        )
        .route(
            &profile_path,
            get(|s, Path(p): Path<String>, h| mcp_get(s, Some(p), h))
                .post(|s, Path(p): Path<String>, h, b| mcp_post(s, Some(p), h, b))
                .delete(|s, Path(p): Path<String>, h| mcp_delete(s, Some(p), h))
                .options(|| async { StatusCode::NO_CONTENT }),
        )
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .route("/status", get(status))
        .route(
            "/metrics",
            get(|State(b): State<Arc<Bridge>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    b.registry.metrics.render(&b),
                )
            }),
        )
        .route("/oauth/callback", get(oauth_callback))
        .merge(oauth)
        .merge(crate::ui::routes())
        .layer(axum::middleware::from_fn_with_state(limits, read_body))
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::guard::guard,
        ))
        .with_state(bridge)
}

/// Reads the whole request body within the limits before any handler runs: a declared or
/// actual size over the limit gets 413, and a client that sends its headers and then trickles
/// (or never sends) the body gets 408 and a closed connection instead of holding a task.
async fn read_body(
    State(limits): State<BodyLimits>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let too_large = || {
        rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &Value::Null,
            jsonrpc::INVALID_REQUEST,
            &format!(
                "Payload Too Large: the body exceeds {} bytes",
                limits.max_bytes
            ),
        )
    };
    let (parts, body) = req.into_parts();
    let declared = header_str(&parts.headers, header::CONTENT_LENGTH.as_str())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return too_large();
    }
    match tokio::time::timeout(limits.timeout, axum::body::to_bytes(body, limits.max_bytes)).await {
        Ok(Ok(bytes)) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
        Ok(Err(e)) => {
            let over = e
                .into_inner()
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            if over {
                too_large()
            } else {
                rpc_error(
                    StatusCode::BAD_REQUEST,
                    &Value::Null,
                    jsonrpc::INVALID_REQUEST,
                    "Bad Request: the body could not be read",
                )
            }
        }
        Err(_) => {
            let mut resp = rpc_error(
                StatusCode::REQUEST_TIMEOUT,
                &Value::Null,
                jsonrpc::INVALID_REQUEST,
                &format!(
                    "Request Timeout: the body did not arrive within {} s",
                    limits.timeout.as_secs()
                ),
            );
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

/// Broadcasts `notifications/{tools,resources,prompts}/list_changed` to every session whenever
/// the served lists really change (the catalog only signals content changes).
pub async fn forward_list_changes(bridge: Arc<Bridge>) {
    let mut rx = bridge.registry.subscribe_catalog();
    let mut previous = rx.borrow_and_update().clone();
    loop {
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            () = bridge.shutdown.cancelled() => return,
        }
        let next = rx.borrow_and_update().clone();
        // Each profile's clients hear of changes to what they see, and of nothing else.
        for (view, catalog) in next.iter() {
            let Some(before) = previous.get(view) else {
                continue;
            };
            for method in before.changes(catalog) {
                bridge
                    .list_changes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let note = jsonrpc::notification(method, None);
                for s in bridge.sessions.all() {
                    if s.view == *view {
                        s.push(&note);
                    }
                }
                // No receiver (no listen stream open) is not an error.
                let _ = bridge.list_events.send((view.clone(), method));
            }
        }
        previous = next;
    }
}

fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    (
        status,
        axum::Json(jsonrpc::error_response(id, code, message)),
    )
        .into_response()
}

/// Whether an `Accept` header admits `mime` (absent = anything).
pub(crate) fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let major = mime.split('/').next().unwrap_or("");
    accept.split(',').any(|part| {
        let m = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        m == mime || m == "*/*" || m.strip_suffix("/*") == Some(major)
    })
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Looks up the session of a non-initialize request: 400 without the header, 404 if unknown
/// or if it was started on another profile's endpoint.
#[allow(clippy::result_large_err)]
fn session_of(bridge: &Bridge, headers: &HeaderMap, view: &str) -> Result<Arc<Session>, Response> {
    let Some(id) = header_str(headers, SESSION_HEADER) else {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            jsonrpc::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
        ));
    };
    bridge
        .sessions
        .get(id)
        .filter(|s| &*s.view == view)
        .ok_or_else(|| {
            rpc_error(
                StatusCode::NOT_FOUND,
                &Value::Null,
                jsonrpc::SESSION_NOT_FOUND,
                "Session not found",
            )
        })
}

#[derive(Serialize)]
struct Envelope<'a, R> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: R,
}

enum Reply {
    Value(Value),
    List(Arc<Catalog>, ListKind),
    /// An upstream's result as it wrote it (see [`Answer`]).
    Text(Box<RawValue>),
}

impl From<Answer> for Reply {
    fn from(a: Answer) -> Self {
        match a {
            Answer::Parsed(v) => Self::Value(v),
            Answer::Text(raw) => Self::Text(raw),
        }
    }
}

/// Serialises a JSON-RPC response; list results are spliced in pre-serialised.
fn response_body(id: &Value, result: Result<Reply, RpcError>) -> String {
    let envelope = |raw: &RawValue| {
        serde_json::to_string(&Envelope {
            jsonrpc: "2.0",
            id,
            result: raw,
        })
    };
    match result {
        Ok(Reply::Value(v)) => serde_json::to_string(&Envelope {
            jsonrpc: "2.0",
            id,
            result: v,
        }),
        Ok(Reply::List(c, kind)) => envelope(c.raw(kind)),
        Ok(Reply::Text(raw)) => envelope(&raw),
        Err(e) => serde_json::to_string(&jsonrpc::response(id, Err(e))),
    }
    .unwrap_or_default()
}

fn sse_headers() -> [(header::HeaderName, &'static str); 3] {
    [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache, no-transform"),
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ]
}

/// Writes the response in the form the client accepts: JSON, or a one-event SSE stream for a
/// client that only takes `text/event-stream`.
fn reply(
    headers: &HeaderMap,
    id: &Value,
    result: Result<Reply, RpcError>,
    session_id: Option<&str>,
) -> Response {
    let body = response_body(id, result);
    let mut resp = if accepts(headers, "application/json") {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        // An upstream's own text may hold a CR between tokens (never inside a string, where
        // JSON escapes it), which SSE would read as a line end: it goes, changing nothing.
        let body = if body.contains('\r') {
            body.replace('\r', "")
        } else {
            body
        };
        (sse_headers(), format!("event: message\ndata: {body}\n\n")).into_response()
    };
    if let Some(sid) = session_id.and_then(|s| HeaderValue::from_str(s).ok()) {
        resp.headers_mut().insert(SESSION_HEADER, sid);
    }
    resp
}

async fn mcp_post(
    State(bridge): State<Arc<Bridge>>,
    asked: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let view = match bridge.view_of(asked.as_deref(), &headers) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if !accepts(&headers, "application/json") && !accepts(&headers, "text/event-stream") {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            &Value::Null,
            jsonrpc::INVALID_REQUEST,
            "Not Acceptable: Accept must include application/json and text/event-stream",
        );
    }
    let content_type = header_str(&headers, header::CONTENT_TYPE.as_str()).unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &Value::Null,
            jsonrpc::INVALID_REQUEST,
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }
    let msg = match jsonrpc::parse_message(&body) {
        Ok(v) => v,
        Err(e) => {
            return rpc_error(StatusCode::BAD_REQUEST, &Value::Null, e.code, &e.message);
        }
    };
    if crate::modern::is_modern(&headers, &msg) {
        return crate::modern::handle(bridge, headers, msg, view).await;
    }
    let kind = jsonrpc::classify(&msg);
    if let Kind::Request {
        id,
        method: "initialize",
    } = kind
    {
        return initialize(&bridge, &headers, id, &msg, view);
    }
    if let Kind::Invalid(why) = kind {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &id,
            jsonrpc::INVALID_REQUEST,
            &format!("Invalid Request: {why}"),
        );
    }
    let session = match session_of(&bridge, &headers, &view) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    if let Some(v) = header_str(&headers, VERSION_HEADER)
        && !SUPPORTED_VERSIONS.contains(&v)
    {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            jsonrpc::INVALID_REQUEST,
            &format!(
                "Bad Request: unsupported MCP-Protocol-Version {v:?}; supported: {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        );
    }
    match kind {
        Kind::Request { id, method } => {
            let (id, method) = (id.clone(), method.to_owned());
            handle_request(bridge, session, &headers, id, method, msg).await
        }
        Kind::Notification { method } => {
            client_notification(&bridge, &session, method, &msg);
            StatusCode::ACCEPTED.into_response()
        }
        Kind::Response { id } => {
            if !session.deliver(id, &msg) {
                tracing::debug!(session = %&session.id[..8], "a response nobody waits for");
            }
            StatusCode::ACCEPTED.into_response()
        }
        Kind::Invalid(_) => StatusCode::ACCEPTED.into_response(),
    }
}

fn client_notification(bridge: &Bridge, session: &Session, method: &str, msg: &Value) {
    match method {
        "notifications/cancelled" => {
            if let Some(id) = msg.pointer("/params/requestId") {
                session.cancel(id);
            }
        }
        // Only upstreams that serve this very client (`roots = "client"`) hear of its roots.
        "notifications/roots/list_changed" => bridge.registry.roots_changed(session),
        _ => {}
    }
}

/// Runs one client request. The answer is JSON unless messages related to the request
/// (progress, logs, server→client requests) arrive first and the client takes SSE; then the
/// response is an SSE stream carrying those messages and, last, the answer.
async fn handle_request(
    bridge: Arc<Bridge>,
    session: Arc<Session>,
    headers: &HeaderMap,
    id: Value,
    method: String,
    msg: Value,
) -> Response {
    let started = Instant::now();
    let params = msg.get("params").cloned();
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let ctx = Arc::new(RequestContext {
        session: session.clone(),
        related: accepts(headers, "text/event-stream").then_some(tx),
        progress_token: params
            .as_ref()
            .and_then(|p| p.pointer("/_meta/progressToken"))
            .cloned(),
        outstanding: Default::default(),
    });
    let cancel = session.track(&id);
    let work = {
        let (bridge, method, session_for) = (bridge.clone(), method.clone(), session.clone());
        async move {
            tokio::select! {
                r = dispatch(&bridge, &method, params, &session_for, ctx) => r,
                () = cancel.cancelled() => Err(RpcError::new(jsonrpc::REQUEST_CANCELLED, "Request cancelled by the client")),
            }
        }
    };
    let mut work = Box::pin(work);
    let (first, done) = tokio::select! {
        result = &mut work => match rx.try_recv() {
            Ok(first) => (first, Some(result)),
            Err(_) => {
                session.untrack(&id);
                tracing::debug!(session = %&session.id[..8], method, ms = started.elapsed().as_secs_f64() * 1e3, ok = result.is_ok(), "request");
                return reply(headers, &id, result, None);
            }
        },
        Some(first) = rx.recv() => (first, None),
    };
    // Switch to SSE: related messages as they come, then the answer.
    let (out_tx, out_rx) = mpsc::channel::<String>(64);
    tokio::spawn(async move {
        let _ = out_tx.send(first.to_string()).await;
        let result = match done {
            Some(r) => r,
            None => loop {
                tokio::select! {
                    r = &mut work => break r,
                    Some(m) = rx.recv() => { let _ = out_tx.send(m.to_string()).await; }
                }
            },
        };
        while let Ok(m) = rx.try_recv() {
            let _ = out_tx.send(m.to_string()).await;
        }
        session.untrack(&id);
        tracing::debug!(session = %&session.id[..8], method, ms = started.elapsed().as_secs_f64() * 1e3, ok = result.is_ok(), "request (streamed)");
        let _ = out_tx.send(response_body(&id, result)).await;
    });
    let stream_no = bridge
        .streams
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let events = futures_util::stream::unfold((out_rx, 0u64), move |(mut rx, n)| async move {
        let data = rx.recv().await?;
        let event = Event::default()
            .event("message")
            .id(format!("p{stream_no}-{n}"))
            .data(data);
        Some((Ok::<_, Infallible>(event), (rx, n + 1)))
    });
    let mut resp = Sse::new(events).into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

fn initialize(
    bridge: &Bridge,
    headers: &HeaderMap,
    id: &Value,
    msg: &Value,
    view: Arc<str>,
) -> Response {
    let catalog = match bridge.registry.view(&view) {
        Ok(c) => c,
        Err(e) => return reply(headers, id, Err(e), None),
    };
    let params = msg.get("params");
    let requested = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = if SUPPORTED_VERSIONS.contains(&requested) {
        requested
    } else {
        LATEST_VERSION
    };
    let client = params
        .and_then(|p| p.pointer("/clientInfo/name"))
        .and_then(Value::as_str)
        .unwrap_or("unknown client")
        .chars()
        .take(64)
        .collect::<String>();
    let capabilities = params
        .and_then(|p| p.get("capabilities"))
        .cloned()
        .unwrap_or(Value::Null);
    let session = match bridge.sessions.create(
        version.to_owned(),
        client,
        capabilities,
        header_str(headers, "origin").map(str::to_owned),
        view,
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot draw a session id from the OS random source");
            return rpc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                id,
                jsonrpc::INTERNAL_ERROR,
                "cannot create a session",
            );
        }
    };
    tracing::info!(session = %&session.id[..8], client = %session.client_name, version, profile = %session.view, "client session started");
    let result = json!({
        "protocolVersion": version,
        "capabilities": catalog.capabilities.clone(),
        "serverInfo": {
            "name": "mcp-bridge",
            "title": "mcp-bridge",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "instructions": "This server bridges several MCP servers. Tool names are <upstream>__<tool>.",
        "_meta": { crate::upstream::INSTANCE_META: crate::upstream::instance_id() },
    });
    reply(headers, id, Ok(Reply::Value(result)), Some(&session.id))
}

async fn dispatch(
    bridge: &Bridge,
    method: &str,
    params: Option<Value>,
    session: &Arc<Session>,
    ctx: Arc<RequestContext>,
) -> Result<Reply, RpcError> {
    if matches!(
        method,
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list"
    ) {
        bridge
            .registry
            .wait_for_first_lists(bridge.first_list_wait)
            .await;
    }
    let list = |kind: ListKind| {
        if params
            .as_ref()
            .and_then(|p| p.get("cursor"))
            .is_some_and(|c| !c.is_null())
        {
            return Err(RpcError::new(
                jsonrpc::INVALID_PARAMS,
                "Invalid cursor: this server returns every item on one page",
            ));
        }
        Ok(Reply::List(bridge.registry.view(&session.view)?, kind))
    };
    match method {
        "ping" => Ok(Reply::Value(json!({}))),
        "tools/list" => list(ListKind::Tools),
        "prompts/list" => list(ListKind::Prompts),
        "resources/list" => list(ListKind::Resources),
        "resources/templates/list" => list(ListKind::Templates),
        "logging/setLevel" => {
            // Per client: the bridge filters what each client receives and asks upstreams for
            // the most verbose level any client needs, so no client silences or floods another.
            let level = params
                .as_ref()
                .and_then(|p| p.get("level"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let Some(rank) = session::log_rank(level) else {
                return Err(RpcError::new(
                    jsonrpc::INVALID_PARAMS,
                    format!(
                        "logging/setLevel needs a level, one of {}",
                        session::LOG_LEVELS.join(", ")
                    ),
                ));
            };
            session.set_log_level(rank);
            if let Some(r) = bridge.sessions.upstream_log_rank() {
                bridge
                    .registry
                    .set_log_level(&json!({ "level": session::LOG_LEVELS[usize::from(r)] }));
            }
            Ok(Reply::Value(json!({})))
        }
        "tools/call"
        | "prompts/get"
        | "resources/read"
        | "resources/subscribe"
        | "resources/unsubscribe"
        | "completion/complete" => {
            let Some(params) = params.filter(Value::is_object) else {
                return Err(RpcError::new(
                    jsonrpc::INVALID_PARAMS,
                    format!("{method} needs params"),
                ));
            };
            let uri = params.get("uri").and_then(Value::as_str).map(str::to_owned);
            if method == "resources/unsubscribe"
                && let Some(uri) = &uri
                && bridge.sessions.others_subscribed(uri, &session.id)
            {
                // Another client still wants updates of this resource: only this one leaves.
                session.unsubscribe(uri);
                return Ok(Reply::Value(json!({})));
            }
            let result = bridge
                .registry
                .forward(&session.view, method, params, Some(ctx))
                .await?;
            match (method, uri) {
                ("resources/subscribe", Some(uri)) => session.subscribe(&uri),
                ("resources/unsubscribe", Some(uri)) => session.unsubscribe(&uri),
                _ => {}
            }
            Ok(result.into())
        }
        _ => Err(RpcError::new(
            jsonrpc::METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        )),
    }
}

/// GET and DELETE belong to 2025 sessions; 2026-07-28 traffic (no session, a version the 2025
/// era does not have) is told they are not allowed.
fn modern_only_method(headers: &HeaderMap) -> Option<Response> {
    let version = header_str(headers, VERSION_HEADER)?;
    if headers.contains_key(SESSION_HEADER) || SUPPORTED_VERSIONS.contains(&version.trim()) {
        return None;
    }
    let mut resp = rpc_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &Value::Null,
        jsonrpc::INVALID_REQUEST,
        "Method Not Allowed: MCP 2026-07-28 uses POST only (subscriptions/listen replaces the GET stream)",
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    Some(resp)
}

/// The profile of a GET or DELETE (2025 sessions only).
#[allow(clippy::result_large_err)]
fn session_method_view(
    bridge: &Bridge,
    asked: Option<&str>,
    headers: &HeaderMap,
) -> Result<Arc<str>, Response> {
    let view = bridge.view_of(asked, headers)?;
    match modern_only_method(headers) {
        Some(resp) => Err(resp),
        None => Ok(view),
    }
}

async fn mcp_get(
    State(bridge): State<Arc<Bridge>>,
    asked: Option<String>,
    headers: HeaderMap,
) -> Response {
    let view = match session_method_view(&bridge, asked.as_deref(), &headers) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if !accepts(&headers, "text/event-stream") {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            &Value::Null,
            jsonrpc::INVALID_REQUEST,
            "Not Acceptable: the GET stream is text/event-stream",
        );
    }
    let session = match session_of(&bridge, &headers, &view) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let last = header_str(&headers, "last-event-id").and_then(session::parse_event_id);
    let Some((priming, rx)) = session.open_stream(last) else {
        return rpc_error(
            StatusCode::CONFLICT,
            &Value::Null,
            jsonrpc::INVALID_REQUEST,
            "Conflict: this session already has a GET stream open",
        );
    };
    let shutdown = bridge.shutdown.clone();
    let first = Event::default().id(session::event_id(priming)).data("");
    let events = futures_util::stream::unfold(
        (Some(first), rx, shutdown),
        |(first, mut rx, shutdown)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, Infallible>(first), (None, rx, shutdown)));
            }
            let item = tokio::select! {
                item = rx.recv() => item,
                () = shutdown.cancelled() => None,
            };
            let (n, text) = item?;
            let event = Event::default()
                .event("message")
                .id(session::event_id(n))
                .data(&*text);
            Some((Ok(event), (None, rx, shutdown)))
        },
    );
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

async fn mcp_delete(
    State(bridge): State<Arc<Bridge>>,
    asked: Option<String>,
    headers: HeaderMap,
) -> Response {
    let view = match session_method_view(&bridge, asked.as_deref(), &headers) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let session = match session_of(&bridge, &headers, &view) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    bridge.sessions.remove(&session.id);
    tracing::info!(session = %&session.id[..8], "client session ended");
    StatusCode::NO_CONTENT.into_response()
}

/// The OAuth redirect of a browser login: relayed to the agent, which alone holds the PKCE
/// verifier (the code is useless without it).
async fn oauth_callback(
    State(bridge): State<Arc<Bridge>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let pairs: std::collections::HashMap<String, String> =
        url_pairs(query.as_deref().unwrap_or(""));
    let request = proto::Request::CompleteLogin {
        state: pairs.get("state").cloned().unwrap_or_default(),
        code: pairs.get("code").cloned(),
        error: pairs.get("error").cloned(),
        iss: pairs.get("iss").cloned(),
    };
    let (status, text) = match bridge.registry.agent.request(request).await {
        Ok(proto::Response::Ack) => {
            // The login is there now: upstreams waiting for one connect at once.
            bridge.registry.wake_waiting_for_login();
            (
                StatusCode::OK,
                "Login complete. You can close this tab.".to_owned(),
            )
        }
        Ok(proto::Response::Error { error }) => {
            (StatusCode::BAD_REQUEST, format!("Login failed: {error}"))
        }
        Ok(other) => (
            StatusCode::BAD_GATEWAY,
            format!("Unexpected answer from the agent: {other:?}"),
        ),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let body = format!(
        "<!doctype html><html><body><p>mcp-bridge: {}</p></body></html>",
        crate::connectors::http::escape(&text)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn url_pairs(query: &str) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

async fn status(State(bridge): State<Arc<Bridge>>) -> Response {
    let mut v = status_json(&bridge);
    // The agent matters only when some upstream logs in through it.
    let needs_agent = bridge.registry.uses_agent();
    if needs_agent {
        let answer = tokio::time::timeout(
            Duration::from_secs(1),
            bridge.registry.agent.request(proto::Request::Status),
        )
        .await;
        v["agent"] = match answer {
            Ok(Ok(proto::Response::Status { upstreams, store })) => {
                json!({ "reachable": true, "store": store, "logins": upstreams.iter().map(|u| json!({"name": u.name, "logged_in": u.logged_in, "expires_at": u.expires_at})).collect::<Vec<_>>() })
            }
            Ok(Ok(_)) => json!({ "reachable": true }),
            Ok(Err(e)) => json!({ "reachable": false, "error": e.to_string() }),
            Err(_) => json!({ "reachable": false, "error": "no answer within 1 s" }),
        };
    }
    axum::Json(v).into_response()
}

/// What to do about an upstream's state, for `status` and the status page.
fn hint(u: &crate::upstream::Upstream, s: &crate::upstream::Status) -> Option<String> {
    use crate::upstream::State;
    match s.state {
        State::Ready => None,
        State::NeedsLogin => Some(format!("run `mcp-cred-agent login {}`", u.name)),
        State::Disabled => {
            Some("fix its entry in config.toml, then reload (SIGHUP or restart)".into())
        }
        State::Connecting | State::Initializing => Some("starting; wait a moment".into()),
        State::Backoff => Some(format!(
            "retrying by itself; check its command or URL in config.toml, or run `mcp-bridge doctor` (the log lines name {})",
            u.name
        )),
        State::Stopped => None,
    }
}

pub fn status_json(bridge: &Bridge) -> Value {
    let catalog = bridge.registry.catalog();
    let upstreams: Vec<Value> = bridge
        .registry
        .upstreams()
        .iter()
        .map(|u| {
            let s = u.status();
            let tools = catalog.count_for(u);
            json!({
                "name": &*u.name,
                "prefix": u.prefix,
                "transport": u.transport,
                "state": s.state,
                "tools": tools,
                "tools_listed": u.lists().tools.len(),
                // Listed by the upstream, hidden by its policy (`tools`, `read_only`).
                "tools_hidden": catalog.hidden_tools.values().filter(|n| n.as_ref() == &*u.name).count(),
                // Held back until approved (`pin = "strict"`), and recorded as pending.
                "tools_pending": catalog.pending_tools.values().filter(|n| n.as_ref() == &*u.name).count(),
                "pins_pending": bridge.registry.pins.pending(&u.name),
                "policy": crate::views::describe_policy(&u.policy),
                "pin": u.pin,
                "last_error": s.last_error,
                "next_retry_at": serde_json::to_value(&s).ok().and_then(|v| v.get("next_retry_at").cloned()),
                "connects": s.connects,
                "failures": s.failures,
                "backoff_ceiling_ms": s.backoff_ceiling_ms,
                "tools_live": u.has_live_lists(),
                "server_info": s.server_info,
                "protocol_version": s.protocol_version,
                "hint": hint(u, &s),
            })
        })
        .collect();
    let catalogs = bridge.registry.catalogs();
    let sessions = bridge.sessions.all();
    let mut recent_errors: Vec<(u64, String, String)> = bridge
        .registry
        .upstreams()
        .iter()
        .flat_map(|u| {
            u.recent_errors()
                .into_iter()
                .map(|(at, e)| (at, u.name.to_string(), e))
        })
        .collect();
    recent_errors.sort_by_key(|(at, _, _)| std::cmp::Reverse(*at));
    recent_errors.truncate(20);
    // No session ids: they are as good as credentials.
    let sessions_detail: Vec<Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "client": s.client_name,
                "profile": &*s.view,
                "protocol_version": s.protocol_version,
                "idle_secs": s.idle_secs(),
            })
        })
        .collect();
    let views = bridge.registry.views.read().clone();
    let profiles: Vec<Value> = views
        .all()
        .map(|(name, p)| {
            json!({
                "name": &**name,
                "shows": crate::views::describe_profile(p),
                "path": format!("{}/{name}", bridge.endpoint.trim_end_matches('/')),
                "upstreams": p.upstreams,
                "read_only": p.read_only,
                "origins": p.origins,
                "browser_default": views.browser() == name,
                "tools": catalogs.get(name).map_or(0, |c| c.len()),
                "sessions": sessions.iter().filter(|s| s.view == *name).count(),
            })
        })
        .collect();
    json!({
        "name": "mcp-bridge",
        "version": env!("CARGO_PKG_VERSION"),
        "build": env!("MCP_BRIDGE_BUILD"),
        "endpoint": bridge.endpoint,
        "uptime_secs": bridge.started.elapsed().map(|d| d.as_secs()).unwrap_or(0),
        "sessions": bridge.sessions.len(),
        "tools": catalog.len(),
        "list_changed_sent": bridge.list_changes.load(std::sync::atomic::Ordering::Relaxed),
        "pins_error": bridge.registry.pins.refused(),
        "profiles": profiles,
        "sessions_detail": sessions_detail,
        "recent_errors": recent_errors.iter().map(|(at, up, e)| json!({"at": at, "upstream": up, "error": e})).collect::<Vec<_>>(),
        "connectors": bridge.connectors.as_ref().map(|c| c.summary()),
        "upstreams": upstreams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// A config dir removed when the test ends.
    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The router of a bridge with no upstreams, in this process, on a fresh config dir.
    fn app() -> (Router, Dir) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mcpb-server-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let env = [(
            "MCP_BRIDGE_CONFIG_DIR".to_owned(),
            dir.display().to_string(),
        )]
        .into_iter()
        .collect();
        let config = proto::config::load(&env, |_| Ok(None)).unwrap();
        let views = crate::views::Views::shared(&config);
        let sessions = Arc::new(Sessions::with_limit(100, views.clone()));
        let registry = Registry::start(&config, None, sessions.clone(), views);
        let bridge = Arc::new(Bridge {
            registry,
            sessions,
            endpoint: "http://127.0.0.1:1/mcp".into(),
            started: SystemTime::now(),
            shutdown: CancellationToken::new(),
            list_changes: Default::default(),
            streams: Default::default(),
            first_list_wait: Duration::ZERO,
            mrtr: Default::default(),
            list_events: tokio::sync::broadcast::channel(4).0,
            connectors: None,
            ui_token: "t".into(),
        });
        let app = router(
            bridge,
            "/mcp",
            crate::guard::Guard::new(&[], &[], true, None).unwrap(),
            BodyLimits {
                max_bytes: 1 << 20,
                timeout: Duration::from_secs(5),
            },
        );
        (app, Dir(dir))
    }

    async fn post(
        app: &Router,
        path: &str,
        session: Option<&str>,
        body: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = axum::http::Request::post(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(s) = session {
            req = req
                .header(SESSION_HEADER, s)
                .header(VERSION_HEADER, "2025-11-25");
        }
        let resp = app
            .clone()
            .oneshot(req.body(axum::body::Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn request(id: u64, method: &str, params: Value) -> String {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
    }

    async fn session(app: &Router, path: &str) -> String {
        let init = request(
            0,
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "unit", "version": "1"}}),
        );
        let (status, headers, body) = post(app, path, None, &init).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["result"]["protocolVersion"], "2025-11-25");
        assert_eq!(body["result"]["capabilities"]["tools"]["listChanged"], true);
        headers[SESSION_HEADER].to_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn dispatch_answers_each_kind_of_message() {
        let (app, _dir) = app();
        let sid = session(&app, "/mcp").await;
        let s = Some(sid.as_str());
        let call = |id, method: &str, params| request(id, method, params);
        let (_, _, v) = post(&app, "/mcp", s, &call(1, "ping", json!({}))).await;
        assert_eq!(v["result"], json!({}));
        let (_, _, v) = post(&app, "/mcp", s, &call(2, "tools/list", json!({}))).await;
        assert_eq!(v["result"]["tools"], json!([]), "no upstreams, no tools");
        let (_, _, v) = post(
            &app,
            "/mcp",
            s,
            &call(3, "tools/list", json!({"cursor": "x"})),
        )
        .await;
        assert_eq!(v["error"]["code"], jsonrpc::INVALID_PARAMS);
        let (_, _, v) = post(
            &app,
            "/mcp",
            s,
            &call(4, "tools/call", json!({"name": "nope"})),
        )
        .await;
        assert_eq!(v["error"]["message"], "Unknown tool: nope");
        let (_, _, v) = post(&app, "/mcp", s, &call(5, "tools/call", json!(null))).await;
        assert_eq!(v["error"]["code"], jsonrpc::INVALID_PARAMS);
        let (_, _, v) = post(&app, "/mcp", s, &call(6, "no/such", json!({}))).await;
        assert_eq!(v["error"]["code"], jsonrpc::METHOD_NOT_FOUND);
        let (_, _, v) = post(
            &app,
            "/mcp",
            s,
            &call(7, "logging/setLevel", json!({"level": "loud"})),
        )
        .await;
        assert_eq!(v["error"]["code"], jsonrpc::INVALID_PARAMS);
        let (_, _, v) = post(
            &app,
            "/mcp",
            s,
            &call(8, "logging/setLevel", json!({"level": "debug"})),
        )
        .await;
        assert_eq!(v["result"], json!({}));
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
        assert_eq!(post(&app, "/mcp", s, &note).await.0, StatusCode::ACCEPTED);
        // An answer nobody waits for is accepted and dropped.
        let answer = json!({"jsonrpc": "2.0", "id": 99, "result": {}}).to_string();
        assert_eq!(post(&app, "/mcp", s, &answer).await.0, StatusCode::ACCEPTED);
    }

    #[tokio::test]
    async fn sessions_profiles_and_bad_messages_get_the_right_status() {
        let (app, _dir) = app();
        let ping = request(1, "ping", json!({}));
        let (status, _, v) = post(&app, "/mcp", None, &ping).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "no session id: {v}");
        let (status, _, _) = post(&app, "/mcp", Some("f00d"), &ping).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "unknown session");
        let (status, _, v) = post(&app, "/mcp", None, "{not json").await;
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(jsonrpc::PARSE_ERROR))
        );
        let (status, _, _) = post(&app, "/mcp", None, "[]").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "batches are refused");
        // A profile's session belongs to its endpoint.
        let ro = session(&app, "/mcp/read-only").await;
        assert_eq!(
            post(&app, "/mcp/read-only", Some(&ro), &ping).await.0,
            StatusCode::OK
        );
        assert_eq!(
            post(&app, "/mcp", Some(&ro), &ping).await.0,
            StatusCode::NOT_FOUND
        );
        let (status, _, v) = post(&app, "/mcp/nope", None, &ping).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    }
}
