//! A remote MCP server behind a real OAuth 2.1 authorization server, in one process, for the
//! end-to-end tests of the agent and of HTTP upstreams. Written for these tests.
//!
//! Authorization server: RFC 9728 protected-resource metadata, RFC 8414 metadata, dynamic
//! registration (RFC 7591), PKCE S256 verification, short-lived access tokens, rotating refresh
//! tokens with reuse detection (a reused refresh token revokes its whole family), revocation
//! (RFC 7009), auto-approve or password-form consent.
//! Resource server: Streamable HTTP MCP at `/mcp` requiring a valid bearer token, and the same
//! tools over the legacy HTTP+SSE transport (2024-11-05): `GET /sse` opens the stream whose first
//! event names `/messages?sessionId=…`, answers arrive on the stream (`POST /sse` is 405, as on a
//! legacy-only server).
//! Test switches: `POST /control` with `{"token_fail", "token_delay_ms", "revoke_all",
//! "drop_next_sse", "forget_sessions", "access_ttl", "expire_access", "deny_consent",
//! "huge_metadata", "hang_after_rotate"}`;
//! `GET /control/stats`.
//!
//! Flags: `--consent auto|password` (password from `FIXTURE_OWNER_PASSWORD`),
//! `--access-ttl SECS`, `--port N`, `--state FILE` (keep registered clients, refresh tokens,
//! families and stats in FILE, written before each answer, so the server can be killed and
//! restarted like a real one; access tokens are not kept, so they stop working).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use oauth2::{PkceCodeChallenge, PkceCodeVerifier};
use serde_json::{Value, json};

fn random(prefix: &str) -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    format!(
        "{prefix}{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    resource: Option<String>,
    scope: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Family {
    revoked: bool,
    scope: String,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Stats {
    token_requests: u64,
    codes_exchanged: u64,
    refreshes: u64,
    reuse_detected: u64,
    revocations: u64,
    rejected_bearer: u64,
    mcp_requests: u64,
    /// The refresh token issued last (tests compare it with the agent's store).
    latest_refresh: String,
}

/// What `--state FILE` keeps across restarts.
#[derive(serde::Serialize, serde::Deserialize)]
struct Durable {
    clients: HashMap<String, Vec<String>>,
    refresh: HashMap<String, (String, bool)>,
    families: HashMap<String, Family>,
    stats: Stats,
}

struct St {
    state_file: Option<std::path::PathBuf>,
    base: String,
    password: Option<String>,
    access_ttl: u64,
    clients: HashMap<String, Vec<String>>,
    codes: HashMap<String, Code>,
    access: HashMap<String, (String, Instant)>,
    refresh: HashMap<String, (String, bool)>,
    families: HashMap<String, Family>,
    stats: Stats,
    token_fail: bool,
    token_delay_ms: u64,
    /// The owner refuses consent: `/authorize` shows a page with no way forward.
    deny_consent: bool,
    /// The protected-resource metadata is 1 MiB of JSON.
    huge_metadata: bool,
    /// A refresh rotates the tokens, then the answer never comes (a crash window).
    hang_after_rotate: bool,
    drop_next_sse: bool,
    sessions: HashMap<String, ()>,
    /// Stream id → events (id, data) kept for Last-Event-ID replay.
    streams: HashMap<String, Vec<(String, String)>>,
    /// Legacy SSE sessions: id → the open stream.
    legacy: HashMap<String, tokio::sync::mpsc::UnboundedSender<String>>,
}

type S = Arc<Mutex<St>>;

/// Writes the durable part of the state (atomically) when `--state` was given.
fn save(st: &St) {
    let Some(path) = &st.state_file else {
        return;
    };
    let durable = json!({"clients": st.clients, "refresh": st.refresh, "families": st.families, "stats": st.stats});
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, durable.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn metadata(base: &str) -> Value {
    json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "registration_endpoint": format!("{base}/register"),
        "revocation_endpoint": format!("{base}/revoke"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["mcp"],
        "authorization_response_iss_parameter_supported": true,
    })
}

fn prm(base: &str) -> Value {
    json!({
        "resource": format!("{base}/mcp"),
        "authorization_servers": [base],
        "scopes_supported": ["mcp"],
        "bearer_methods_supported": ["header"],
    })
}

async fn register(State(s): State<S>, axum::Json(body): axum::Json<Value>) -> Response {
    let uris: Vec<String> = body["redirect_uris"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if uris.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_redirect_uri"})),
        )
            .into_response();
    }
    let id = random("client-");
    {
        let mut st = s.lock().unwrap();
        st.clients.insert(id.clone(), uris.clone());
        save(&st);
    }
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "client_id": id,
            "redirect_uris": uris,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "application_type": body["application_type"],
        })),
    )
        .into_response()
}

fn authorize_checks(st: &St, q: &HashMap<String, String>) -> Result<(), String> {
    let client = q.get("client_id").ok_or("client_id missing")?;
    let uris = st.clients.get(client).ok_or("unknown client")?;
    let redirect = q.get("redirect_uri").ok_or("redirect_uri missing")?;
    if !uris.contains(redirect) {
        return Err("redirect_uri not registered".into());
    }
    if q.get("code_challenge_method").map(String::as_str) != Some("S256")
        || !q.contains_key("code_challenge")
    {
        return Err("PKCE S256 required".into());
    }
    if q.get("response_type").map(String::as_str) != Some("code") {
        return Err("response_type must be code".into());
    }
    Ok(())
}

fn grant(st: &mut St, q: &HashMap<String, String>) -> String {
    let code = random("code-");
    st.codes.insert(
        code.clone(),
        Code {
            client_id: q["client_id"].clone(),
            redirect_uri: q["redirect_uri"].clone(),
            challenge: q["code_challenge"].clone(),
            resource: q.get("resource").cloned(),
            scope: q.get("scope").cloned().unwrap_or_default(),
        },
    );
    let mut url = url::Url::parse(&q["redirect_uri"]).unwrap();
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("iss", &st.base);
    if let Some(state) = q.get("state") {
        url.query_pairs_mut().append_pair("state", state);
    }
    url.to_string()
}

async fn authorize_get(State(s): State<S>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut st = s.lock().unwrap();
    if let Err(e) = authorize_checks(&st, &q) {
        return (StatusCode::BAD_REQUEST, e).into_response();
    }
    if st.deny_consent {
        return (
            StatusCode::FORBIDDEN,
            Html("<html><body>The owner has not allowed this client.</body></html>"),
        )
            .into_response();
    }
    if st.password.is_none() {
        return Redirect::to(&grant(&mut st, &q)).into_response();
    }
    let hidden: String = q
        .iter()
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{v}\">"))
        .collect();
    Html(format!("<html><body><h1>Allow access?</h1><form method=\"post\" action=\"/authorize\">{hidden}<label>Owner password <input type=\"password\" name=\"password\"></label><button type=\"submit\">Allow</button></form></body></html>")).into_response()
}

async fn authorize_post(State(s): State<S>, Form(q): Form<HashMap<String, String>>) -> Response {
    let mut st = s.lock().unwrap();
    if let Err(e) = authorize_checks(&st, &q) {
        return (StatusCode::BAD_REQUEST, e).into_response();
    }
    if q.get("password") != st.password.as_ref() {
        return (
            StatusCode::UNAUTHORIZED,
            Html("<html><body>wrong password</body></html>"),
        )
            .into_response();
    }
    Redirect::to(&grant(&mut st, &q)).into_response()
}

fn issue(st: &mut St, family: &str, scope: &str) -> Value {
    let access = random("at-");
    let refresh = random("rt-");
    st.access.insert(
        access.clone(),
        (
            family.to_owned(),
            Instant::now() + Duration::from_secs(st.access_ttl),
        ),
    );
    st.refresh
        .insert(refresh.clone(), (family.to_owned(), false));
    st.stats.latest_refresh = refresh.clone();
    json!({"access_token": access, "token_type": "Bearer", "expires_in": st.access_ttl, "refresh_token": refresh, "scope": scope})
}

fn token_error(code: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": code}))).into_response()
}

async fn token(State(s): State<S>, Form(f): Form<HashMap<String, String>>) -> Response {
    let delay = s.lock().unwrap().token_delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let (answer, hang) = {
        let mut st = s.lock().unwrap();
        let answer = token_locked(&mut st, &f);
        save(&st);
        let hang = st.hang_after_rotate
            && f.get("grant_type").map(String::as_str) == Some("refresh_token")
            && answer.status().is_success();
        (answer, hang)
    };
    if hang {
        // The rotation is done and stored here; the client never hears of it.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    answer
}

fn token_locked(st: &mut St, f: &HashMap<String, String>) -> Response {
    st.stats.token_requests += 1;
    if st.token_fail {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "temporarily_unavailable"})),
        )
            .into_response();
    }
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(code) = f.get("code").and_then(|c| st.codes.remove(c)) else {
                return token_error("invalid_grant");
            };
            let verifier =
                PkceCodeVerifier::new(f.get("code_verifier").cloned().unwrap_or_default());
            let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
            if challenge.as_str() != code.challenge
                || f.get("client_id") != Some(&code.client_id)
                || f.get("redirect_uri") != Some(&code.redirect_uri)
                || f.get("resource") != code.resource.as_ref()
            {
                return token_error("invalid_grant");
            }
            st.stats.codes_exchanged += 1;
            let family = random("fam-");
            st.families.insert(
                family.clone(),
                Family {
                    revoked: false,
                    scope: code.scope.clone(),
                },
            );
            axum::Json(issue(st, &family, &code.scope)).into_response()
        }
        Some("refresh_token") => {
            let Some(rt) = f.get("refresh_token") else {
                return token_error("invalid_request");
            };
            let Some((family, used)) = st.refresh.get(rt).cloned() else {
                return token_error("invalid_grant");
            };
            if st.families.get(&family).is_none_or(|fam| fam.revoked) {
                return token_error("invalid_grant");
            }
            if used {
                // Reuse of a rotated refresh token: the whole family is compromised.
                st.stats.reuse_detected += 1;
                if let Some(fam) = st.families.get_mut(&family) {
                    fam.revoked = true;
                }
                return token_error("invalid_grant");
            }
            st.refresh.insert(rt.clone(), (family.clone(), true));
            st.stats.refreshes += 1;
            let scope = st.families[&family].scope.clone();
            axum::Json(issue(st, &family, &scope)).into_response()
        }
        _ => token_error("unsupported_grant_type"),
    }
}

async fn revoke(State(s): State<S>, Form(f): Form<HashMap<String, String>>) -> StatusCode {
    let mut st = s.lock().unwrap();
    let tok = f.get("token").cloned().unwrap_or_default();
    let family = st
        .refresh
        .get(&tok)
        .map(|(f, _)| f.clone())
        .or_else(|| st.access.get(&tok).map(|(f, _)| f.clone()));
    if let Some(fam) = family.and_then(|f| st.families.get_mut(&f)) {
        fam.revoked = true;
    }
    st.stats.revocations += 1;
    save(&st);
    StatusCode::OK
}

async fn control(State(s): State<S>, axum::Json(c): axum::Json<Value>) -> StatusCode {
    let mut guard = s.lock().unwrap();
    let st = &mut *guard;
    for (key, flag) in [
        ("token_fail", &mut st.token_fail),
        ("hang_after_rotate", &mut st.hang_after_rotate),
        ("huge_metadata", &mut st.huge_metadata),
        ("deny_consent", &mut st.deny_consent),
        ("drop_next_sse", &mut st.drop_next_sse),
    ] {
        if let Some(v) = c[key].as_bool() {
            *flag = v;
        }
    }
    if let Some(v) = c["token_delay_ms"].as_u64() {
        st.token_delay_ms = v;
    }
    if let Some(v) = c["access_ttl"].as_u64() {
        st.access_ttl = v;
    }
    if c["revoke_all"] == true {
        for f in st.families.values_mut() {
            f.revoked = true;
        }
        save(st);
    }
    if c["expire_access"] == true {
        for (_, exp) in st.access.values_mut() {
            *exp = Instant::now();
        }
    }
    if c["forget_sessions"] == true {
        st.sessions.clear();
    }
    StatusCode::OK
}

async fn stats(State(s): State<S>) -> axum::Json<Value> {
    let st = s.lock().unwrap();
    let x = &st.stats;
    axum::Json(json!({
        "token_requests": x.token_requests, "codes_exchanged": x.codes_exchanged, "refreshes": x.refreshes,
        "reuse_detected": x.reuse_detected, "revocations": x.revocations, "rejected_bearer": x.rejected_bearer,
        "mcp_requests": x.mcp_requests, "sessions": st.sessions.len(), "latest_refresh": x.latest_refresh,
    }))
}

fn unauthorized(base: &str, error: Option<&str>) -> Response {
    let mut challenge = format!(
        "Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
    );
    if let Some(e) = error {
        challenge.push_str(&format!(", error=\"{e}\""));
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        "unauthorized",
    )
        .into_response()
}

#[allow(clippy::result_large_err)]
fn check_bearer(st: &mut St, headers: &HeaderMap) -> Result<(), Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return Err(unauthorized(&st.base, None));
    };
    let ok = st.access.get(token).is_some_and(|(fam, exp)| {
        *exp > Instant::now() && st.families.get(fam).is_some_and(|f| !f.revoked)
    });
    if ok {
        Ok(())
    } else {
        st.stats.rejected_bearer += 1;
        Err(unauthorized(&st.base, Some("invalid_token")))
    }
}

/// The scope of the family the request's bearer token belongs to.
fn bearer_scope(st: &St, headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| st.access.get(t))
        .and_then(|(fam, _)| st.families.get(fam))
        .map(|f| f.scope.clone())
        .unwrap_or_default()
}

fn sse_body(events: &[(String, String)]) -> String {
    events
        .iter()
        .map(|(id, data)| format!("id: {id}\nevent: message\ndata: {data}\n\n"))
        .collect()
}

async fn mcp_post(State(s): State<S>, headers: HeaderMap, body: String) -> Response {
    let mut st = s.lock().unwrap();
    if let Err(r) = check_bearer(&mut st, &headers) {
        return r;
    }
    st.stats.mcp_requests += 1;
    let Ok(msg) = serde_json::from_str::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let method = msg["method"].as_str().unwrap_or("");
    let Some(id) = msg.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    if msg.get("method").is_none() {
        return StatusCode::ACCEPTED.into_response();
    }
    if method == "initialize" {
        let sid = random("sess-");
        st.sessions.insert(sid.clone(), ());
        let result = json!({"protocolVersion": msg["params"]["protocolVersion"].as_str().unwrap_or("2025-11-25"), "capabilities": {"tools": {}}, "serverInfo": {"name": "fixture-http", "version": "1"}});
        return (
            [("mcp-session-id", sid)],
            axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})),
        )
            .into_response();
    }
    let sid = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !st.sessions.contains_key(sid) {
        return (StatusCode::NOT_FOUND, "unknown session").into_response();
    }
    if method == "tools/call" && msg["params"]["name"] == "admin_echo" {
        let scope = bearer_scope(&st, &headers);
        if !scope.split_whitespace().any(|s| s == "admin") {
            let challenge = format!(
                "Bearer error=\"insufficient_scope\", scope=\"mcp admin\", resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
                st.base
            );
            return (
                StatusCode::FORBIDDEN,
                [(header::WWW_AUTHENTICATE, challenge)],
                "insufficient_scope",
            )
                .into_response();
        }
    }
    if method == "tools/call" && msg["params"]["name"] == "huge" {
        // 65 MiB, one byte over the bridge's 64 MiB bound on an answer.
        let pad = "x".repeat(65 * 1024 * 1024);
        let out = json!({"jsonrpc": "2.0", "id": msg["id"], "result": {"content": [{"type": "text", "text": pad}]}});
        return (
            [(header::CONTENT_TYPE, "application/json")],
            out.to_string(),
        )
            .into_response();
    }
    if method == "tools/call" && msg["params"]["name"] == "sse_echo" {
        let id = msg["id"].clone();
        let args = &msg["params"]["arguments"];
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": format!("[remote-sse] {}", args["message"].as_str().unwrap_or(""))}]}}).to_string();
        let stream = random("st-");
        let events = vec![
            (format!("{stream}:0"), String::new()),
            (format!("{stream}:1"), reply),
        ];
        st.streams.insert(stream.clone(), events.clone());
        let shown = if std::mem::take(&mut st.drop_next_sse) {
            &events[..1]
        } else {
            &events[..]
        };
        // Dropping the stream after the priming event: the client must resume with GET.
        return (
            [(header::CONTENT_TYPE, "text/event-stream")],
            sse_body(shown),
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], answer(&msg)).into_response()
}

/// The answer to a request after `initialize` (both transports).
fn answer(msg: &Value) -> String {
    let id = msg["id"].clone();
    let method = msg["method"].as_str().unwrap_or("");
    let reply = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    let text = |t: String| json!({"content": [{"type": "text", "text": t}]});
    let args = msg["params"]["arguments"].clone();
    match method {
        "ping" => reply(json!({})),
        "tools/list" => reply(json!({"tools": [
            {"name": "echo", "description": "echo", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
            {"name": "sse_echo", "description": "echo over an SSE answer", "inputSchema": {"type": "object"}},
            {"name": "admin_echo", "description": "echo that needs the admin scope", "inputSchema": {"type": "object"}},
            {"name": "huge", "description": "a 65 MiB answer", "inputSchema": {"type": "object"}},
        ]})),
        "tools/call" => match msg["params"]["name"].as_str().unwrap_or("") {
            "echo" => reply(text(format!("[remote] {}", args["message"].as_str().unwrap_or("")))),
            "admin_echo" => reply(text(format!("[remote admin] {}", args["message"].as_str().unwrap_or("")))),
            other => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": format!("Unknown tool: {other}")}}).to_string(),
        },
        other => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("Method not found: {other}")}}).to_string(),
    }
}

/// Legacy transport: the stream. Its first event names where to POST messages.
async fn legacy_get(State(s): State<S>, headers: HeaderMap) -> Response {
    let mut st = s.lock().unwrap();
    if let Err(r) = check_bearer(&mut st, &headers) {
        return r;
    }
    let sid = random("legacy-");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tx.send(format!(
        "event: endpoint\ndata: /messages?sessionId={sid}\n\n"
    ))
    .unwrap();
    st.legacy.insert(sid, tx);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|ev| (Ok::<_, std::convert::Infallible>(ev), rx))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// Legacy transport: a message from the client; the answer goes out on its stream.
async fn legacy_post(
    State(s): State<S>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut st = s.lock().unwrap();
    if let Err(r) = check_bearer(&mut st, &headers) {
        return r;
    }
    st.stats.mcp_requests += 1;
    let Some(tx) = q.get("sessionId").and_then(|id| st.legacy.get(id)).cloned() else {
        return (StatusCode::NOT_FOUND, "unknown session").into_response();
    };
    let Ok(msg) = serde_json::from_str::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if msg.get("id").is_some() && msg.get("method").is_some() {
        let out = if msg["method"] == "initialize" {
            json!({"jsonrpc": "2.0", "id": msg["id"], "result": {"protocolVersion": "2024-11-05", "capabilities": {"tools": {}}, "serverInfo": {"name": "fixture-http-legacy", "version": "1"}}}).to_string()
        } else {
            answer(&msg)
        };
        let _ = tx.send(format!("event: message\ndata: {out}\n\n"));
    }
    StatusCode::ACCEPTED.into_response()
}

async fn mcp_get(State(s): State<S>, headers: HeaderMap) -> Response {
    let mut st = s.lock().unwrap();
    if let Err(r) = check_bearer(&mut st, &headers) {
        return r;
    }
    let sid = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !st.sessions.contains_key(sid) {
        return (StatusCode::NOT_FOUND, "unknown session").into_response();
    }
    let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let Some((stream, n)) = last.rsplit_once(':') else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let n: usize = n.parse().unwrap_or(0);
    let Some(events) = st.streams.get(stream) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let rest: Vec<_> = events.iter().skip(n + 1).cloned().collect();
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        sse_body(&rest),
    )
        .into_response()
}

async fn mcp_delete(State(s): State<S>, headers: HeaderMap) -> StatusCode {
    let sid = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    s.lock().unwrap().sessions.remove(&sid);
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut consent, mut ttl, mut port) = ("auto".to_owned(), 3600u64, 0u16);
    let mut state_file = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--consent" => consent = args.next().unwrap(),
            "--access-ttl" => ttl = args.next().unwrap().parse().unwrap(),
            "--port" => port = args.next().unwrap().parse().unwrap(),
            "--state" => state_file = Some(std::path::PathBuf::from(args.next().unwrap())),
            other => panic!("unknown flag {other}"),
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let password = (consent == "password")
        .then(|| std::env::var("FIXTURE_OWNER_PASSWORD").expect("FIXTURE_OWNER_PASSWORD"));
    let durable: Option<Durable> = state_file
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .map(|b| serde_json::from_slice(&b).expect("a readable --state file"));
    let mut st = St {
        state_file,
        base: base.clone(),
        password,
        access_ttl: ttl,
        clients: HashMap::new(),
        codes: HashMap::new(),
        access: HashMap::new(),
        refresh: HashMap::new(),
        families: HashMap::new(),
        stats: Stats::default(),
        token_fail: false,
        token_delay_ms: 0,
        deny_consent: false,
        huge_metadata: false,
        hang_after_rotate: false,
        drop_next_sse: false,
        sessions: HashMap::new(),
        streams: HashMap::new(),
        legacy: HashMap::new(),
    };
    if let Some(d) = durable {
        st.clients = d.clients;
        st.refresh = d.refresh;
        st.families = d.families;
        st.stats = d.stats;
    }
    let st = Arc::new(Mutex::new(st));
    let (b1, b2, b3) = (base.clone(), base.clone(), base.clone());
    let app = Router::new()
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(move |State(s): State<S>| async move {
                let mut doc = prm(&b1);
                if s.lock().unwrap().huge_metadata {
                    doc["padding"] = Value::String("x".repeat(1024 * 1024));
                }
                axum::Json(doc)
            }),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(move || async move { axum::Json(prm(&b3)) }),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { axum::Json(metadata(&b2)) }),
        )
        .route("/register", post(register))
        .route("/authorize", get(authorize_get).post(authorize_post))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route("/control", post(control))
        .route("/control/stats", get(stats))
        .route("/mcp", post(mcp_post).get(mcp_get).delete(mcp_delete))
        .route("/sse", get(legacy_get))
        .route("/messages", post(legacy_post))
        .with_state(st);
    eprintln!("fixture-http listening on {base}");
    axum::serve(listener, app).await.unwrap();
}
