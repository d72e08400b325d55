//! MCP 2026-07-28 on the same endpoint as the 2025 era: stateless POSTs that carry their
//! protocol version, client capabilities and client info in `_meta`, with no `initialize`, no
//! session, no GET stream and no server→client requests.
//!
//! A request is modern when it carries no `Mcp-Session-Id` and either names a protocol version
//! in `_meta` or sends an `MCP-Protocol-Version` the 2025 era does not know (see [`is_modern`]).
//! Everything else takes the 2025 path in `server.rs`, so both eras share `/mcp`.
//!
//! Upstreams are spoken to in their own era. When a 2025 upstream sends a server→client request
//! (`sampling/createMessage`, `elicitation/create`) during a modern client's call, the bridge
//! ends the client's call with an `input_required` result, keeps the upstream request waiting
//! ([`Mrtr`]), and when the client retries with `inputResponses` and the `requestState` the
//! bridge issued, answers the upstream's request and carries on where the call left off.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::catalog::Catalog;
use crate::downstream::{ClientSession, RequestContext};
use crate::jsonrpc::{self, Kind, RpcError};
use crate::server::{Bridge, SESSION_HEADER, VERSION_HEADER, accepts, header_str};
use crate::session;
use crate::upstream::{Answer, ListKind, SUPPORTED_VERSIONS};

/// The stateless protocol version.
pub const VERSION: &str = "2026-07-28";
/// Stateless versions the bridge speaks, newest first.
pub const VERSIONS: [&str; 1] = [VERSION];

pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT: &str = "io.modelcontextprotocol/clientInfo";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub const META_SERVER: &str = "io.modelcontextprotocol/serverInfo";
pub const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";

/// A header is missing or disagrees with the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// The request needs a client capability the client did not declare.
pub const MISSING_CAPABILITY: i64 = -32021;
/// The protocol version is not one the server speaks.
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// The list kinds a `subscriptions/listen` filter names: its flag, the server capability whose
/// `listChanged` offers it, and the notification it brings.
pub const LIST_CHANGE_FLAGS: [(&str, &str, &str); 3] = [
    (
        "toolsListChanged",
        "tools",
        "notifications/tools/list_changed",
    ),
    (
        "promptsListChanged",
        "prompts",
        "notifications/prompts/list_changed",
    ),
    (
        "resourcesListChanged",
        "resources",
        "notifications/resources/list_changed",
    ),
];

/// Methods of the 2025 era that 2026-07-28 removed: answered 404 / -32601 to modern traffic.
const REMOVED: [&str; 6] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "notifications/initialized",
];

/// How long the bridge waits, after a first server→client request, for more of them before it
/// answers the client with `input_required` (an upstream asking several things at once).
const GATHER: Duration = Duration::from_millis(25);
/// How long a call waiting for the client's `inputResponses` is kept.
const PARKED_FOR: Duration = Duration::from_secs(600);
/// Rounds of `input_required` one call may take.
const MAX_ROUNDS: u32 = 16;
/// Calls kept waiting for input at once; beyond it the one expiring soonest is dropped.
const MAX_PARKED: usize = 1024;

/// Whether a POSTed message is 2026-07-28 traffic. Without a session: a `_meta` protocol
/// version, or a version header the 2025 era does not have (unsupported versions are answered
/// by the modern path with -32022), or a bare `server/discover` probe.
pub fn is_modern(headers: &HeaderMap, msg: &Value) -> bool {
    if headers.contains_key(SESSION_HEADER) {
        return false;
    }
    if msg
        .pointer("/params/_meta")
        .and_then(|m| m.get(META_VERSION))
        .is_some()
    {
        return true;
    }
    match header_str(headers, VERSION_HEADER) {
        Some(v) => !SUPPORTED_VERSIONS.contains(&single_version(v)),
        None => msg.get("method").and_then(Value::as_str) == Some("server/discover"),
    }
}

/// A version header as sent, or the one value of a header a client duplicated (`a, a`).
fn single_version(v: &str) -> &str {
    let mut parts = v.split(',').map(str::trim);
    let first = parts.next().unwrap_or("");
    if parts.all(|p| p == first) { first } else { v }
}

/// A header value, with the `=?base64?…?=` form of non-ASCII values decoded.
fn decoded(v: &str) -> Option<String> {
    let v = v.trim();
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(v.to_owned()),
    }
}

/// A header value as a 2026-07-28 client sends it: as is when it is plain visible ASCII, else
/// in the `=?base64?…?=` form.
pub fn encode_header(v: &str) -> String {
    let plain = v.bytes().all(|b| (0x21..=0x7e).contains(&b) || b == b' ')
        && !v.starts_with(' ')
        && !v.ends_with(' ')
        && !v.starts_with("=?");
    if plain {
        v.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
    }
}

/// Whether `name` can be the `{Name}` of an `Mcp-Param-{Name}` header: a non-empty HTTP token.
fn header_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The `Mcp-Param-{Name}` headers of a `tools/call`: each argument whose property in the
/// tool's `inputSchema` is marked `x-mcp-header: Name`, mirrored (strings encoded like every
/// header value, numbers and booleans as JSON writes them, null or absent left out).
pub fn param_headers(input_schema: &Value, arguments: &Value) -> Vec<(String, String)> {
    let Some(props) = input_schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (param, schema) in props {
        let Some(name) = schema.get("x-mcp-header").and_then(Value::as_str) else {
            continue;
        };
        if !header_token(name) {
            continue;
        }
        let value = match arguments.get(param) {
            Some(Value::String(s)) => encode_header(s),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            _ => continue,
        };
        out.push((format!("mcp-param-{name}"), value));
    }
    out
}

/// Compares the `Mcp-Param-*` headers a client sent with the arguments they mirror (the tool's
/// `x-mcp-header` parameters): one that disagrees is 400 -32020, since something between the
/// client and the bridge routed on a value the call does not carry. An absent header, or one
/// for a parameter the tool does not mark, is let through.
fn check_param_headers(
    catalog: &Catalog,
    headers: &HeaderMap,
    id: &Value,
    params: &Value,
) -> Option<Response> {
    let sent: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix("mcp-param-")?;
            Some((name.to_owned(), decoded(v.to_str().ok()?)?))
        })
        .collect();
    if sent.is_empty() {
        return None;
    }
    let name = params.get("name").and_then(Value::as_str)?;
    let route = catalog.routes.get(name)?;
    let lists = route.upstream.lists();
    let tool = lists
        .tools
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(route.tool.as_str()))?;
    let empty = json!({});
    let expected = param_headers(
        tool.get("inputSchema").unwrap_or(&empty),
        params.get("arguments").unwrap_or(&empty),
    );
    for (header, value) in expected {
        let Some(want) = decoded(&value) else {
            continue;
        };
        let param = header.trim_start_matches("mcp-param-").to_ascii_lowercase();
        if let Some((_, got)) = sent.iter().find(|(n, _)| *n == param)
            && *got != want
        {
            return Some(error(
                StatusCode::BAD_REQUEST,
                id,
                HEADER_MISMATCH,
                &format!(
                    "the Mcp-Param-{param} header ({got:?}) does not match the argument it mirrors ({want:?})"
                ),
                None,
            ));
        }
    }
    None
}

/// The headers a 2026-07-28 POST of `msg` carries: the version of its `_meta`, the method,
/// and the name of what `tools/call`, `prompts/get` and `resources/read` address.
pub fn request_headers(msg: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let version = msg
        .pointer("/params/_meta")
        .and_then(|m| m.get(META_VERSION))
        .and_then(Value::as_str)
        .unwrap_or(VERSION);
    out.push(("mcp-protocol-version", version.to_owned()));
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    if !method.is_empty() {
        out.push(("mcp-method", encode_header(method)));
    }
    let field = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(name) = field
        .and_then(|f| msg.pointer(&format!("/params/{f}")))
        .and_then(Value::as_str)
    {
        out.push(("mcp-name", encode_header(name)));
    }
    out
}

fn error(
    status: StatusCode,
    id: &Value,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Response {
    let mut err = json!({ "code": code, "message": message });
    if let Some(d) = data {
        err["data"] = d;
    }
    (
        status,
        axum::Json(json!({ "jsonrpc": "2.0", "id": id, "error": err })),
    )
        .into_response()
}

/// What a modern request says of its client, from `_meta`.
struct Meta {
    capabilities: Value,
    client: String,
    log_rank: Option<u8>,
}

/// Checks the version header and `_meta` in the order the spec's error codes are layered:
/// required `_meta` fields (-32602), header against body (-32020), then the version (-32022).
#[allow(clippy::result_large_err)]
fn check(headers: &HeaderMap, id: &Value, method: &str, msg: &Value) -> Result<Meta, Response> {
    let bad = |status, code, message: &str, data| Err(error(status, id, code, message, data));
    let Some(header_version) = header_str(headers, VERSION_HEADER).map(single_version) else {
        return bad(
            StatusCode::BAD_REQUEST,
            HEADER_MISMATCH,
            "Missing MCP-Protocol-Version header: a 2026-07-28 request names its version in the header and in _meta",
            None,
        );
    };
    let meta = msg.pointer("/params/_meta").and_then(Value::as_object);
    let version = meta
        .and_then(|m| m.get(META_VERSION))
        .and_then(Value::as_str);
    let capabilities = meta.and_then(|m| m.get(META_CAPABILITIES));
    let (Some(version), Some(capabilities)) = (version, capabilities.filter(|c| c.is_object()))
    else {
        return bad(
            StatusCode::BAD_REQUEST,
            jsonrpc::INVALID_PARAMS,
            &format!(
                "Invalid params: a 2026-07-28 request needs params._meta with \"{META_VERSION}\" and \"{META_CAPABILITIES}\""
            ),
            None,
        );
    };
    // A client bug seen in the field sends a 2025 version in the header and 2026-07-28 in
    // `_meta`; the body is what the client means, so that one combination is let through.
    let known_slip = SUPPORTED_VERSIONS.contains(&header_version) && VERSIONS.contains(&version);
    if header_version != version && !known_slip {
        return bad(
            StatusCode::BAD_REQUEST,
            HEADER_MISMATCH,
            &format!(
                "Mismatched MCP-Protocol-Version header: {header_version:?} in the header, {version:?} in _meta"
            ),
            None,
        );
    }
    if !VERSIONS.contains(&version) {
        return bad(
            StatusCode::BAD_REQUEST,
            UNSUPPORTED_VERSION,
            &format!(
                "Unsupported protocol version {version:?}; this server speaks {} without a session (and {} after initialize)",
                VERSIONS.join(", "),
                SUPPORTED_VERSIONS.join(", ")
            ),
            Some(json!({ "supported": VERSIONS, "requested": version })),
        );
    }
    if let Some(h) = header_str(headers, "mcp-method").and_then(decoded)
        && h != method
    {
        return bad(
            StatusCode::BAD_REQUEST,
            HEADER_MISMATCH,
            &format!("Mcp-Method header {h:?} does not match the body's method {method:?}"),
            None,
        );
    }
    let name_field = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(field) = name_field
        && let Some(h) = header_str(headers, "mcp-name").and_then(decoded)
    {
        let body = msg
            .pointer(&format!("/params/{field}"))
            .and_then(Value::as_str);
        if body != Some(h.as_str()) {
            return bad(
                StatusCode::BAD_REQUEST,
                HEADER_MISMATCH,
                &format!("Mcp-Name header {h:?} does not match params.{field} {body:?}"),
                None,
            );
        }
    }
    let meta = meta.cloned().unwrap_or_default();
    Ok(Meta {
        capabilities: capabilities.clone(),
        client: meta
            .get(META_CLIENT)
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("unknown client")
            .chars()
            .take(64)
            .collect(),
        log_rank: meta
            .get(META_LOG_LEVEL)
            .and_then(Value::as_str)
            .and_then(session::log_rank),
    })
}

/// Serves one 2026-07-28 POST.
pub async fn handle(
    bridge: Arc<Bridge>,
    headers: HeaderMap,
    msg: Value,
    view: Arc<str>,
) -> Response {
    let (id, method) = match jsonrpc::classify(&msg) {
        Kind::Request { id, method } => (id.clone(), method.to_owned()),
        // Nothing of a stateless server is waiting for a client's notification or answer
        // (cancellation over HTTP is closing the request's stream).
        Kind::Notification { .. } | Kind::Response { .. } => {
            return StatusCode::ACCEPTED.into_response();
        }
        Kind::Invalid(why) => {
            let id = msg.get("id").cloned().unwrap_or(Value::Null);
            return error(
                StatusCode::BAD_REQUEST,
                &id,
                jsonrpc::INVALID_REQUEST,
                &format!("Invalid Request: {why}"),
                None,
            );
        }
    };
    let meta = match check(&headers, &id, &method, &msg) {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    let params = msg.get("params").cloned().unwrap_or(json!({}));
    let catalog = match bridge.registry.view(&view) {
        Ok(c) => c,
        Err(e) => return json_reply(&id, Err(e)),
    };
    match method.as_str() {
        "server/discover" => json_reply(&id, Ok(discover(&catalog))),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            list(&bridge, &view, &id, &method, &params).await
        }
        "tools/call" | "prompts/get" | "resources/read" | "completion/complete" => {
            if method == "tools/call"
                && let Some(resp) = check_param_headers(&catalog, &headers, &id, &params)
            {
                return resp;
            }
            call(bridge, &headers, id, method, params, meta, view).await
        }
        "subscriptions/listen" => listen(bridge, id, &params, &catalog, view).await,
        m if REMOVED.contains(&m) => error(
            StatusCode::NOT_FOUND,
            &id,
            jsonrpc::METHOD_NOT_FOUND,
            &format!(
                "Method not found: {m} is not part of MCP {VERSION} (it needs a 2025 session)"
            ),
            None,
        ),
        m => error(
            StatusCode::NOT_FOUND,
            &id,
            jsonrpc::METHOD_NOT_FOUND,
            &format!("Method not found: {m}"),
            None,
        ),
    }
}

fn server_meta() -> Value {
    json!({
        META_SERVER: { "name": "mcp-bridge", "title": "mcp-bridge", "version": env!("CARGO_PKG_VERSION") },
        crate::upstream::INSTANCE_META: crate::upstream::instance_id(),
    })
}

/// `server/discover`: every version the endpoint speaks (both eras), the aggregate
/// capabilities, and who this is.
fn discover(catalog: &Catalog) -> Value {
    let versions: Vec<&str> = VERSIONS
        .iter()
        .chain(SUPPORTED_VERSIONS.iter())
        .copied()
        .collect();
    json!({
        "supportedVersions": versions,
        // What 2025 clients see (resource subscriptions go through `subscriptions/listen`).
        "capabilities": catalog.capabilities.clone(),
        "serverInfo": { "name": "mcp-bridge", "title": "mcp-bridge", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "This server bridges several MCP servers. Tool names are <upstream>__<tool>.",
        "resultType": "complete",
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": server_meta(),
    })
}

/// The cache hints of everything the bridge lists: lists change whenever an upstream's do (a
/// `subscriptions/listen` stream says when), and what a client may see can depend on who it
/// is, so nothing is shared or reused without asking.
const LIST_HINTS: &str = r#""resultType":"complete","ttlMs":0,"cacheScope":"private""#;

async fn list(bridge: &Bridge, view: &str, id: &Value, method: &str, params: &Value) -> Response {
    bridge
        .registry
        .wait_for_first_lists(bridge.first_list_wait)
        .await;
    if params.get("cursor").is_some_and(|c| !c.is_null()) {
        return json_reply(
            id,
            Err(RpcError::new(
                jsonrpc::INVALID_PARAMS,
                "Invalid cursor: this server returns every item on one page",
            )),
        );
    }
    // Read after the wait: it may have brought the first lists.
    let catalog = match bridge.registry.view(view) {
        Ok(c) => c,
        Err(e) => return json_reply(id, Err(e)),
    };
    let raw = match method {
        "tools/list" => catalog.raw(ListKind::Tools),
        "prompts/list" => catalog.raw(ListKind::Prompts),
        "resources/list" => catalog.raw(ListKind::Resources),
        _ => catalog.raw(ListKind::Templates),
    };
    let result = extend_object(raw.get(), LIST_HINTS);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#,
        serde_json::to_string(id).unwrap_or_else(|_| "null".into())
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Appends `fields` (`"k":v,…`) to a serialised JSON object.
fn extend_object(object: &str, fields: &str) -> String {
    let body = object.trim_end();
    let Some(inner) = body.strip_suffix('}') else {
        return format!("{{{fields}}}");
    };
    if inner.trim_end().ends_with('{') {
        format!("{inner}{fields}}}")
    } else {
        format!("{inner},{fields}}}")
    }
}

fn response_text(id: &Value, result: &Result<Value, RpcError>) -> String {
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        jsonrpc: &'static str,
        id: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a Value>,
    }
    let (result, error) = match result {
        Ok(v) => (Some(v), None),
        Err(RpcError(e)) => (None, Some(e)),
    };
    serde_json::to_string(&Envelope {
        jsonrpc: "2.0",
        id,
        result,
        error,
    })
    .unwrap_or_default()
}

/// A final answer the upstream wrote as text that needs only `resultType` added (not a read,
/// whose cache hints are decided on the parsed result): the response, spliced without parsing.
fn spliced_response(id: &Value, method: &str, answer: &Answer) -> Option<String> {
    let Answer::Text(raw) = answer else {
        return None;
    };
    let text = raw.get().trim();
    if method == "resources/read"
        || !text.starts_with('{')
        || !text.ends_with('}')
        || answer.may_say("resultType")
    {
        return None;
    }
    Some(format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
        serde_json::to_string(id).unwrap_or_else(|_| "null".into()),
        extend_object(text, r#""resultType":"complete""#)
    ))
}

fn json_reply(id: &Value, result: Result<Value, RpcError>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        response_text(id, &result),
    )
        .into_response()
}

/// A final answer from an upstream, put in modern form: `resultType`, cache hints on reads, and
/// the 2026-07-28 code for an unknown resource (-32602 with the URI, was -32002).
fn modern_result(
    method: &str,
    uri: Option<&str>,
    result: Result<Value, RpcError>,
) -> Result<Value, RpcError> {
    match result {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.entry("resultType").or_insert_with(|| json!("complete"));
                if method == "resources/read" {
                    o.entry("ttlMs").or_insert_with(|| json!(0));
                    o.entry("cacheScope").or_insert_with(|| json!("private"));
                }
            }
            Ok(v)
        }
        Err(e) if e.code() == Some(jsonrpc::RESOURCE_NOT_FOUND) => Err(RpcError::with_data(
            jsonrpc::INVALID_PARAMS,
            e.message(),
            json!({ "uri": uri }),
        )),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// One modern client request, as upstreams see it.

/// A server→client request an upstream made during a modern client's call, waiting for the
/// client's `inputResponses`.
struct Waiting {
    key: String,
    method: String,
    params: Value,
    reply: oneshot::Sender<Result<Value, RpcError>>,
}

enum Ask {
    Input(Waiting),
    /// The upstream needs a capability the client did not declare in this request's `_meta`.
    Missing(&'static str),
}

/// The client of one modern request: capabilities and log level from its `_meta`; no stream
/// of its own, and server→client requests become `input_required` rounds.
struct StatelessClient {
    id: String,
    origin: Option<String>,
    capabilities: Value,
    log_rank: Option<u8>,
    asks: mpsc::UnboundedSender<Ask>,
    keys: AtomicU64,
}

fn capability_of(method: &str) -> &'static str {
    match method {
        "sampling/createMessage" => "sampling",
        "elicitation/create" => "elicitation",
        "roots/list" => "roots",
        _ => "experimental",
    }
}

impl ClientSession for StatelessClient {
    fn id(&self) -> &str {
        &self.id
    }
    fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }
    fn has_capability(&self, capability: &str) -> bool {
        self.capabilities
            .get(capability)
            .is_some_and(|c| !c.is_null())
    }
    fn stateless(&self) -> bool {
        true
    }
    /// Logs reach a modern client only at the level its request asked for, and only then.
    fn wants_log(&self, level: &str) -> bool {
        self.log_rank
            .is_some_and(|want| session::log_rank(level).unwrap_or(u8::MAX) >= want)
    }
    /// A modern client has no stream outside its requests.
    fn push(&self, _: &Value) {}
    fn request<'a>(
        self: Arc<Self>,
        related: Option<&'a RequestContext>,
        method: &'a str,
        params: Value,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Value, RpcError>> {
        self.request_keyed(related, None, method, params, timeout)
    }

    /// A 2026-07-28 upstream's input request keeps the key the upstream gave it; a 2025
    /// upstream's request is named after its method.
    fn request_keyed<'a>(
        self: Arc<Self>,
        _related: Option<&'a RequestContext>,
        key: Option<&'a str>,
        method: &'a str,
        params: Value,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Value, RpcError>> {
        Box::pin(async move {
            let capability = capability_of(method);
            if !self.has_capability(capability) {
                let _ = self.asks.send(Ask::Missing(capability));
                return Err(RpcError::new(
                    jsonrpc::METHOD_NOT_FOUND,
                    format!("the client did not declare the {capability} capability"),
                ));
            }
            let key = match key {
                Some(k) => k.to_owned(),
                None => {
                    let n = self.keys.fetch_add(1, Ordering::Relaxed);
                    let kind = method.split('/').next().unwrap_or("input");
                    if n == 0 {
                        kind.to_owned()
                    } else {
                        format!("{kind}_{}", n + 1)
                    }
                }
            };
            let (tx, rx) = oneshot::channel();
            let waiting = Waiting {
                key,
                method: method.to_owned(),
                params,
                reply: tx,
            };
            if self.asks.send(Ask::Input(waiting)).is_err() {
                return Err(RpcError::new(
                    jsonrpc::INTERNAL_ERROR,
                    "the client's call has ended",
                ));
            }
            match tokio::time::timeout(timeout.max(PARKED_FOR), rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(RpcError::new(
                    jsonrpc::INTERNAL_ERROR,
                    "the client did not come back with inputResponses",
                )),
                Err(_) => Err(RpcError::new(
                    jsonrpc::REQUEST_TIMEOUT,
                    format!("the client did not answer {method} in time"),
                )),
            }
        })
    }
}

/// A modern call in progress: the forwarded request running as a task (dropping this aborts
/// it, which cancels it upstream), what it asks of the client, and related messages.
struct Running {
    work: AbortOnDropHandle<Result<Answer, RpcError>>,
    asks: mpsc::UnboundedReceiver<Ask>,
    notes: mpsc::UnboundedReceiver<Value>,
    waiting: Vec<Waiting>,
    round: u32,
    method: String,
    /// The tool or prompt name, or the resource URI: a retry must be for the same thing.
    target: Option<String>,
    binding: [u8; 32],
}

/// What a call does next: a related message, or a stop that answers the client's request.
enum Step {
    Note(Value),
    Stop(Stop),
}

enum Stop {
    /// The upstream's final answer.
    Done(Result<Answer, RpcError>),
    /// The upstream waits for the client's input (`Running::waiting`).
    Input,
    /// The upstream needs a capability the client did not declare.
    Missing(&'static str),
}

impl Running {
    async fn next(&mut self) -> Step {
        tokio::select! {
            biased;
            Some(n) = self.notes.recv() => Step::Note(n),
            Some(ask) = self.asks.recv() => {
                match ask {
                    Ask::Missing(cap) => return Step::Stop(Stop::Missing(cap)),
                    Ask::Input(w) => self.waiting.push(w),
                }
                let until = Instant::now() + GATHER;
                while let Ok(Some(ask)) = tokio::time::timeout_at(until, self.asks.recv()).await {
                    match ask {
                        Ask::Missing(cap) => return Step::Stop(Stop::Missing(cap)),
                        Ask::Input(w) => self.waiting.push(w),
                    }
                }
                Step::Stop(Stop::Input)
            }
            r = &mut self.work => Step::Stop(Stop::Done(r.unwrap_or_else(|e| {
                Err(RpcError::new(jsonrpc::INTERNAL_ERROR, format!("the call ended: {e}")))
            }))),
        }
    }
}

/// Who a `requestState` belongs to: the credentials and origin of the request, the client's
/// name and the profile it is served. A state presented by anyone else, or on another
/// profile's endpoint, fails its integrity check.
fn binding(headers: &HeaderMap, meta: &Meta, view: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        header_str(headers, header::AUTHORIZATION.as_str()).unwrap_or(""),
        header_str(headers, "origin").unwrap_or(""),
        meta.client.as_str(),
        view,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

fn target_of(method: &str, params: &Value) -> Option<String> {
    let field = if method == "resources/read" {
        "uri"
    } else {
        "name"
    };
    params.get(field).and_then(Value::as_str).map(str::to_owned)
}

async fn call(
    bridge: Arc<Bridge>,
    headers: &HeaderMap,
    id: Value,
    method: String,
    mut params: Value,
    meta: Meta,
    view: Arc<str>,
) -> Response {
    let Some(p) = params.as_object_mut() else {
        return json_reply(
            &id,
            Err(RpcError::new(
                jsonrpc::INVALID_PARAMS,
                format!("{method} needs params"),
            )),
        );
    };
    let state = p.remove("requestState");
    let responses = p.remove("inputResponses");
    // The upstream sees the request as its own era has it: no 2026 `_meta` keys.
    if let Some(m) = p.get_mut("_meta").and_then(Value::as_object_mut) {
        m.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
        if m.is_empty() {
            p.remove("_meta");
        }
    }
    let binding = binding(headers, &meta, &view);
    let target = target_of(&method, &params);
    let run = match state {
        Some(state) => {
            let Some(state) = state.as_str() else {
                return json_reply(
                    &id,
                    Err(RpcError::new(
                        jsonrpc::INVALID_PARAMS,
                        "requestState must be a string",
                    )),
                );
            };
            match bridge
                .mrtr
                .resume(state, &binding, &method, target.as_deref(), responses)
            {
                Ok(run) => run,
                Err(e) => return json_reply(&id, Err(e)),
            }
        }
        None => {
            // Without a state of ours nothing here waits for them: they go on with the request
            // (a 2026-07-28 upstream may take answers it did not ask for in this call; a 2025
            // one ignores an unknown parameter).
            if let (Some(r), Some(p)) = (responses, params.as_object_mut()) {
                p.insert("inputResponses".into(), r);
            }
            start(
                &bridge,
                headers,
                method.clone(),
                params,
                meta,
                binding,
                target,
                view,
            )
        }
    };
    drive(bridge, id, run, accepts(headers, "text/event-stream")).await
}

// The parts of a call's identity (`binding`, `target`, `method`) and its context (`meta`,
// `view`) arrive separately from `call`, which checked each; bundling them would only move them.
#[allow(clippy::too_many_arguments)]
fn start(
    bridge: &Arc<Bridge>,
    headers: &HeaderMap,
    method: String,
    params: Value,
    meta: Meta,
    binding: [u8; 32],
    target: Option<String>,
    view: Arc<str>,
) -> Running {
    let (ask_tx, asks) = mpsc::unbounded_channel();
    let (note_tx, notes) = mpsc::unbounded_channel();
    let client = Arc::new(StatelessClient {
        id: format!("m-{}", bridge.mrtr.next.fetch_add(1, Ordering::Relaxed)),
        origin: header_str(headers, "origin").map(str::to_owned),
        capabilities: meta.capabilities,
        log_rank: meta.log_rank,
        asks: ask_tx,
        keys: AtomicU64::new(0),
    });
    let ctx = Arc::new(RequestContext {
        session: client,
        related: Some(note_tx),
        progress_token: params.pointer("/_meta/progressToken").cloned(),
        outstanding: Default::default(),
    });
    let work = {
        let (bridge, method) = (bridge.clone(), method.clone());
        tokio::spawn(async move {
            bridge
                .registry
                .forward(&view, &method, params, Some(ctx))
                .await
        })
    };
    Running {
        work: AbortOnDropHandle::new(work),
        asks,
        notes,
        waiting: Vec::new(),
        round: 0,
        method,
        target,
        binding,
    }
}

/// Runs a call to its next stop: the final answer, an `input_required` round, or a missing
/// capability. JSON unless related messages (progress, logs the client asked for) come first;
/// then an SSE stream of them and, last, the answer. The client closing that stream cancels
/// the call.
async fn drive(bridge: Arc<Bridge>, id: Value, mut run: Running, sse: bool) -> Response {
    // A retry that answered only some of the requests is asked again for the rest: the call
    // cannot move until they are answered.
    if !run.waiting.is_empty() {
        return conclude(&bridge, &id, Stop::Input, run).into_response();
    }
    let first = loop {
        match run.next().await {
            Step::Note(n) if sse => break n,
            // A client that takes only JSON gets no related messages.
            Step::Note(_) => continue,
            Step::Stop(stop) => return conclude(&bridge, &id, stop, run).into_response(),
        }
    };
    let (tx, rx) = mpsc::channel::<String>(64);
    tokio::spawn(async move {
        let _ = tx.send(first.to_string()).await;
        loop {
            let step = tokio::select! {
                s = run.next() => s,
                // The client went away: dropping the call cancels it upstream.
                () = tx.closed() => return,
            };
            match step {
                Step::Note(n) => {
                    let _ = tx.send(n.to_string()).await;
                }
                Step::Stop(stop) => {
                    let Concluded(_, body) = conclude(&bridge, &id, stop, run);
                    let _ = tx.send(body).await;
                    return;
                }
            }
        }
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((
            Ok::<_, Infallible>(Event::default().event("message").data(data)),
            rx,
        ))
    });
    let mut resp = Sse::new(events).into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

struct Concluded(StatusCode, String);

impl IntoResponse for Concluded {
    fn into_response(self) -> Response {
        (self.0, [(header::CONTENT_TYPE, "application/json")], self.1).into_response()
    }
}

/// The answer to the client's request at a stop. An `input_required` stop parks the call.
fn conclude(bridge: &Bridge, id: &Value, stop: Stop, mut run: Running) -> Concluded {
    let (status, result) = match stop {
        Stop::Done(result) => {
            if let Some(text) = result
                .as_ref()
                .ok()
                .and_then(|a| spliced_response(id, &run.method, a))
            {
                return Concluded(StatusCode::OK, text);
            }
            let uri = (run.method == "resources/read")
                .then_some(run.target.as_deref())
                .flatten();
            let result = modern_result(&run.method, uri, result.map(Answer::into_value));
            // A missing capability an upstream of the 2026 era reported is the client's error.
            let status = match &result {
                Err(e) if e.code() == Some(MISSING_CAPABILITY) => StatusCode::BAD_REQUEST,
                _ => StatusCode::OK,
            };
            (status, result)
        }
        Stop::Missing(capability) => {
            tracing::debug!(method = %run.method, capability, "a 2025 upstream needs a capability the modern client did not declare");
            let mut required = Map::new();
            required.insert(capability.to_owned(), json!({}));
            let err = RpcError::with_data(
                MISSING_CAPABILITY,
                format!(
                    "This request needs the client capability {capability:?}, which the request's _meta does not declare"
                ),
                json!({ "requiredCapabilities": required }),
            );
            (StatusCode::BAD_REQUEST, Err(err))
        }
        Stop::Input if run.round >= MAX_ROUNDS => {
            let err = RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                format!(
                    "the call asked for input more than {MAX_ROUNDS} times; mcp-bridge ended it"
                ),
            );
            (StatusCode::OK, Err(err))
        }
        Stop::Input => {
            run.round += 1;
            let requests: Map<String, Value> = run
                .waiting
                .iter()
                .map(|w| {
                    let mut r = json!({ "method": w.method });
                    if w.params.as_object().is_some_and(|p| !p.is_empty()) {
                        r["params"] = w.params.clone();
                    }
                    (w.key.clone(), r)
                })
                .collect();
            let state = bridge.mrtr.park(run);
            let result = json!({
                "resultType": "input_required",
                "inputRequests": requests,
                "requestState": state,
            });
            (StatusCode::OK, Ok(result))
        }
    };
    Concluded(status, response_text(id, &result))
}

// ---------------------------------------------------------------------------------------------
// Calls waiting for input, and the requestState that names them.

struct Parked {
    run: Running,
    expires: Instant,
}

/// Calls waiting for a modern client's `inputResponses`. A `requestState` names one of them,
/// its round, its expiry and, through an HMAC under a key drawn at start, the client it was
/// issued to: it is opaque to the client, cannot be altered or used by another client, and
/// expires with the call.
pub struct Mrtr {
    key: [u8; 32],
    next: AtomicU64,
    parked: Mutex<HashMap<u64, Parked>>,
}

impl Default for Mrtr {
    fn default() -> Self {
        Self {
            key: crate::upstream::random_bytes::<32>(),
            next: AtomicU64::new(1),
            parked: Mutex::new(HashMap::new()),
        }
    }
}

fn hmac_sha256(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn state_error(message: &str) -> RpcError {
    RpcError::new(jsonrpc::INVALID_PARAMS, format!("requestState {message}"))
}

/// Whether a client's answer has the shape its request's result must have.
fn valid_response(method: &str, v: &Value) -> bool {
    match method {
        "elicitation/create" => v
            .get("action")
            .and_then(Value::as_str)
            .is_some_and(|a| matches!(a, "accept" | "decline" | "cancel")),
        "sampling/createMessage" => v.get("content").is_some() && v.get("role").is_some(),
        "roots/list" => v.get("roots").is_some_and(Value::is_array),
        _ => v.is_object(),
    }
}

impl Mrtr {
    fn mac(&self, id: u64, round: u32, expires: u64, binding: &[u8; 32]) -> String {
        let data = format!("{id}.{round}.{expires}.{}", hex(binding));
        hex(&hmac_sha256(&self.key, data.as_bytes())[..20])
    }

    /// Keeps a call that waits for input; returns its `requestState`.
    fn park(&self, run: Running) -> String {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let expires = unix_now() + PARKED_FOR.as_secs();
        let state = format!(
            "mcpb1.{id}.{}.{expires}.{}",
            run.round,
            self.mac(id, run.round, expires, &run.binding)
        );
        let mut parked = self.parked.lock();
        let now = Instant::now();
        parked.retain(|_, p| p.expires > now);
        if parked.len() >= MAX_PARKED
            && let Some(soonest) = parked
                .iter()
                .min_by_key(|(_, p)| p.expires)
                .map(|(k, _)| *k)
        {
            parked.remove(&soonest);
            tracing::warn!("{MAX_PARKED} calls wait for client input; dropped the oldest");
        }
        parked.insert(
            id,
            Parked {
                run,
                expires: now + PARKED_FOR,
            },
        );
        state
    }

    /// Takes back the call a retry's `requestState` names, after checking that it is
    /// untampered, issued to this client, current and for the same request, and hands the
    /// waiting upstream requests the client's answers. A state that fails any check leaves the
    /// call parked (a tampered copy cannot cancel the real one).
    #[allow(clippy::result_large_err)]
    fn resume(
        &self,
        state: &str,
        binding: &[u8; 32],
        method: &str,
        target: Option<&str>,
        responses: Option<Value>,
    ) -> Result<Running, RpcError> {
        let parts: Vec<&str> = state.split('.').collect();
        let [tag, id, round, expires, mac] = parts[..] else {
            return Err(state_error(
                "integrity check failed (not a state mcp-bridge issued)",
            ));
        };
        let (Ok(id), Ok(round), Ok(expires)) = (
            id.parse::<u64>(),
            round.parse::<u32>(),
            expires.parse::<u64>(),
        ) else {
            return Err(state_error(
                "integrity check failed (not a state mcp-bridge issued)",
            ));
        };
        let expected = self.mac(id, round, expires, binding);
        let same =
            tag == "mcpb1" && crate::guard::constant_time_eq(mac.as_bytes(), expected.as_bytes());
        if !same {
            return Err(state_error(
                "integrity check failed (altered, or issued to another client)",
            ));
        }
        if expires < unix_now() {
            return Err(state_error("has expired; call again without it"));
        }
        let responses = match responses {
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(RpcError::new(
                    jsonrpc::INVALID_PARAMS,
                    "inputResponses must be an object keyed by the inputRequests keys",
                ));
            }
            None => Map::new(),
        };
        let mut parked = self.parked.lock();
        let Some(p) = parked.get(&id) else {
            return Err(state_error(
                "names a call mcp-bridge no longer holds (it ended, expired or the bridge restarted); call again without it",
            ));
        };
        if p.run.round != round {
            return Err(state_error(
                "is from an earlier round of this call; use the latest one",
            ));
        }
        if p.run.method != method || p.run.target.as_deref() != target {
            return Err(state_error(
                "was issued for a different request; retry the same method and name",
            ));
        }
        for w in &p.run.waiting {
            if let Some(v) = responses.get(&w.key)
                && !valid_response(&w.method, v)
            {
                return Err(RpcError::new(
                    jsonrpc::INVALID_PARAMS,
                    format!(
                        "inputResponses.{} is not a valid {} result",
                        w.key, w.method
                    ),
                ));
            }
        }
        let Some(Parked { mut run, .. }) = parked.remove(&id) else {
            return Err(state_error("names a call mcp-bridge no longer holds"));
        };
        drop(parked);
        let mut still = Vec::new();
        for w in run.waiting.drain(..) {
            match responses.get(&w.key) {
                Some(v) => {
                    let _ = w.reply.send(Ok(v.clone()));
                }
                None => still.push(w),
            }
        }
        run.waiting = still;
        Ok(run)
    }
}

// ---------------------------------------------------------------------------------------------
// subscriptions/listen

/// Ends a listen stream's resource subscriptions when the stream goes: the upstream is told to
/// unsubscribe from each URI nobody else (no session, no other stream) still wants.
struct ListenGuard {
    bridge: Arc<Bridge>,
    listener: u64,
    /// The profile the URIs were subscribed through.
    view: Arc<str>,
}

impl Drop for ListenGuard {
    fn drop(&mut self) {
        let uris = self.bridge.sessions.remove_listener(self.listener);
        let (bridge, view) = (self.bridge.clone(), self.view.clone());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            for uri in uris {
                if !bridge.sessions.anyone_subscribed(&uri) {
                    let _ = bridge
                        .registry
                        .forward(&view, "resources/unsubscribe", json!({ "uri": uri }), None)
                        .await;
                }
            }
        });
    }
}

async fn listen(
    bridge: Arc<Bridge>,
    id: Value,
    params: &Value,
    catalog: &Catalog,
    view: Arc<str>,
) -> Response {
    let Some(wanted) = params.get("notifications").and_then(Value::as_object) else {
        return json_reply(
            &id,
            Err(RpcError::new(
                jsonrpc::INVALID_PARAMS,
                "subscriptions/listen needs params.notifications (toolsListChanged, promptsListChanged, resourcesListChanged, resourceSubscriptions)",
            )),
        );
    };
    let caps = &catalog.capabilities;
    let offered =
        |cap: &str| caps.pointer(&format!("/{cap}/listChanged")) == Some(&Value::Bool(true));
    let mut honored = Map::new();
    for (flag, cap, _) in LIST_CHANGE_FLAGS {
        if wanted.get(flag) == Some(&Value::Bool(true)) && offered(cap) {
            honored.insert(flag.to_owned(), Value::Bool(true));
        }
    }
    // Resource subscriptions: each URI the upstream that serves it accepts (it is subscribed
    // once, however many sessions and streams want it). The stream is registered, and each URI
    // counted as its own, before the upstream is asked, so a stream closing meanwhile never
    // unsubscribes a URI this one still wants; the guard undoes whatever was done if this
    // request goes away half way.
    let (listener, rx) = bridge.sessions.add_listener();
    let guard = ListenGuard {
        bridge: bridge.clone(),
        listener,
        view: view.clone(),
    };
    let mut accepted = Vec::new();
    for uri in wanted
        .get("resourceSubscriptions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .take(1000)
    {
        // Only what the profile can read, whoever else is subscribed already.
        if catalog.resolve_uri(uri).is_none() {
            continue;
        }
        bridge.sessions.listener_uri(listener, uri, true);
        let ok = bridge.sessions.others_than_listener(uri, listener)
            || bridge
                .registry
                .forward(&view, "resources/subscribe", json!({ "uri": uri }), None)
                .await
                .is_ok();
        if ok {
            accepted.push(Value::String(uri.to_owned()));
        } else {
            bridge.sessions.listener_uri(listener, uri, false);
        }
    }
    if !accepted.is_empty() {
        honored.insert("resourceSubscriptions".into(), Value::Array(accepted));
    }
    let updates = rx;
    let tag = json!({ META_SUBSCRIPTION: id });
    let ack = json!({
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": { "_meta": tag, "notifications": honored },
    });
    let flag_of = |method: &str| {
        LIST_CHANGE_FLAGS
            .iter()
            .find(|(_, _, m)| *m == method)
            .map_or("", |(flag, _, _)| *flag)
    };
    let lists = bridge.list_events.subscribe();
    let shutdown = bridge.shutdown.clone();
    let event =
        |v: Value| Ok::<_, Infallible>(Event::default().event("message").data(v.to_string()));
    let state = (Some(ack), lists, updates, shutdown, honored, tag, guard);
    let events = futures_util::stream::unfold(
        state,
        move |(first, mut lists, mut updates, shutdown, honored, tag, guard)| async move {
            if let Some(ack) = first {
                return Some((
                    event(ack),
                    (None, lists, updates, shutdown, honored, tag, guard),
                ));
            }
            loop {
                let note = tokio::select! {
                    m = lists.recv() => match m {
                        Ok((v, method)) if v == guard.view && honored.contains_key(flag_of(method)) => {
                            json!({ "jsonrpc": "2.0", "method": method, "params": { "_meta": tag } })
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return None,
                    },
                    Some(mut u) = updates.recv() => {
                        if let Some(p) = u.get_mut("params").and_then(Value::as_object_mut) {
                            p.insert("_meta".into(), tag.clone());
                        }
                        u
                    }
                    () = shutdown.cancelled() => return None,
                };
                return Some((
                    event(note),
                    (None, lists, updates, shutdown, honored, tag, guard),
                ));
            }
        },
    );
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_answer_gets_its_result_type_without_parsing() {
        let text =
            |s: &str| Answer::Text(serde_json::value::RawValue::from_string(s.to_owned()).unwrap());
        let id = json!(7);
        let spliced = spliced_response(&id, "tools/call", &text(r#"{"content":[]}"#)).unwrap();
        let v: Value = serde_json::from_str(&spliced).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":7,"result":{"content":[],"resultType":"complete"}})
        );
        let empty = spliced_response(&id, "prompts/get", &text(" {} ")).unwrap();
        let v: Value = serde_json::from_str(&empty).unwrap();
        assert_eq!(v["result"], json!({"resultType":"complete"}));
        // Parsed instead: a result that names its type, a read (cache hints), not an object,
        // a parsed answer.
        for (method, a) in [
            ("tools/call", text(r#"{"resultType":"input_required"}"#)),
            ("resources/read", text(r#"{"contents":[]}"#)),
            ("tools/call", text("[1]")),
            ("tools/call", Answer::Parsed(json!({}))),
        ] {
            assert!(
                spliced_response(&id, method, &a).is_none(),
                "{method} {a:?}"
            );
        }
    }

    #[test]
    fn extends_serialised_objects() {
        assert_eq!(
            extend_object(r#"{"tools":[]}"#, r#""a":1"#),
            r#"{"tools":[],"a":1}"#
        );
        assert_eq!(extend_object("{}", r#""a":1"#), r#"{"a":1}"#);
    }

    #[test]
    fn header_values_round_trip() {
        for v in [
            "tools/call",
            "héllo wörld",
            " padded ",
            "=?base64?x?=",
            "",
            "a\tb",
        ] {
            assert_eq!(decoded(&encode_header(v)).as_deref(), Some(v));
        }
        let h = request_headers(
            &json!({"method": "tools/call", "params": {"name": "ünï", "_meta": {META_VERSION: VERSION}}}),
        );
        assert_eq!(h[0], ("mcp-protocol-version", VERSION.to_owned()));
        assert_eq!(h[1], ("mcp-method", "tools/call".to_owned()));
        assert_eq!(decoded(&h[2].1).as_deref(), Some("ünï"));
    }

    #[test]
    fn annotated_parameters_are_mirrored() {
        let schema = json!({"properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "n": {"type": "integer", "x-mcp-header": "Priority"},
            "flag": {"type": "boolean", "x-mcp-header": "Verbose"},
            "plain": {"type": "string"},
            "bad": {"type": "string", "x-mcp-header": "Has Space"},
        }});
        let mut h = param_headers(
            &schema,
            &json!({"region": "Hello, 世界", "n": 42, "flag": null, "plain": "x", "bad": "y"}),
        );
        h.sort();
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[0], ("mcp-param-Priority".to_owned(), "42".to_owned()));
        assert_eq!(decoded(&h[1].1).as_deref(), Some("Hello, 世界"));
    }

    #[test]
    fn header_values_decode() {
        assert_eq!(decoded("=?base64?SGVsbG8=?=").as_deref(), Some("Hello"));
        assert_eq!(decoded(" tools/call ").as_deref(), Some("tools/call"));
        assert_eq!(single_version("2026-07-28, 2026-07-28"), "2026-07-28");
        assert_eq!(
            single_version("2026-07-28, 2025-11-25"),
            "2026-07-28, 2025-11-25"
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_2_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; ours are 32 bytes, padded the same way.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex(&hmac_sha256(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn states_are_bound_and_tamper_evident() {
        let m = Mrtr::default();
        let b = [7u8; 32];
        let mac = m.mac(3, 1, 99, &b);
        assert_eq!(mac, m.mac(3, 1, 99, &b));
        assert_ne!(mac, m.mac(3, 2, 99, &b), "the round is covered");
        assert_ne!(mac, m.mac(3, 1, 99, &[8u8; 32]), "the client is covered");
        let err = m
            .resume(
                &format!("mcpb1.3.1.99.{mac}x"),
                &b,
                "tools/call",
                None,
                None,
            )
            .err()
            .map(|e| e.message().to_owned());
        assert!(err.is_some_and(|e| e.contains("integrity")));
    }
}
