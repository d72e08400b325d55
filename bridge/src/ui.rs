//! The status page at `/`: what the daemon is doing, at a glance, from `/status` (refreshed
//! every two seconds by a small script served beside it, no inline script or style, a strict
//! CSP). Pending tool approvals have buttons; their POST needs this process's CSRF token,
//! which only a same-origin page can read. Served on loopback only (the public URL of
//! connectors serves none of this).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::server::Bridge;

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/status.js");
const STYLE: &str = include_str!("ui/status.css");
const CSRF_HEADER: &str = "x-csrf-token";

pub fn routes() -> Router<Arc<Bridge>> {
    Router::new()
        .route("/", get(page))
        .route(
            "/ui/status.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/ui/status.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
        .route("/ui/approve", post(approve))
}

/// A random token for this process: the approve buttons send it back.
pub fn new_token() -> String {
    let mut bytes = [0u8; 24];
    // Without OS randomness the page still shows; only its buttons stop working.
    if getrandom::fill(&mut bytes).is_err() {
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    secure(([(header::CONTENT_TYPE, kind)], body).into_response())
}

/// A request from another origin (an allowed browser page elsewhere on this machine) gets
/// nothing here: it could read the CSRF token otherwise.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin == format!("http://{host}")
}

fn refused() -> Response {
    secure(
        (
            StatusCode::FORBIDDEN,
            "the status page is served to its own origin only",
        )
            .into_response(),
    )
}

async fn page(State(bridge): State<Arc<Bridge>>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return refused();
    }
    let html = PAGE.replace("{{csrf}}", &bridge.ui_token);
    secure(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

/// `POST /ui/approve` `{"upstream": …, "tool": …}` (no tool: every pending one).
async fn approve(State(bridge): State<Arc<Bridge>>, headers: HeaderMap, body: Bytes) -> Response {
    let token = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = !bridge.ui_token.is_empty()
        && crate::guard::constant_time_eq(token.as_bytes(), bridge.ui_token.as_bytes());
    if !same_origin(&headers) || !ok {
        tracing::warn!("refused a status page approval without the page's token");
        return refused();
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(upstream) = v.get("upstream").and_then(Value::as_str) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "name the upstream"})),
        )
            .into_response();
    };
    let tool = v.get("tool").and_then(Value::as_str);
    match crate::pins::approve(bridge.registry.pins.dir(), upstream, tool) {
        Ok(n) => {
            tracing::info!(
                upstream,
                tool,
                approved = n,
                "tools approved on the status page"
            );
            bridge.registry.pins_changed();
            axum::Json(json!({ "approved": n })).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": e }))).into_response(),
    }
}
