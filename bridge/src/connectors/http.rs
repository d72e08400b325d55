//! The authorization server's HTTP side: RFC 9728 and RFC 8414 metadata, registration,
//! the authorization endpoint with its consent page, the token and revocation endpoints; and
//! what the public URL serves at all (`public_path`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{AuthRequest, AuthorizeError, Connectors, OAuthError};
use crate::server::Bridge;

/// The header the guard sets (after removing any a client sent) on an authenticated request
/// to the public URL: the profile of the token's grant.
pub const GRANT_PROFILE_HEADER: &str = "x-mcp-bridge-grant-profile";
const CONSENT_COOKIE: &str = "__Host-mcpb-consent";

/// The paths the public URL serves: the MCP endpoint and the OAuth ones. Everything else
/// (`/status`, `/healthz`, the agent's login callback, profile paths) is local only.
pub fn public_path(path: &str, mcp_path: &str) -> bool {
    path == mcp_path
        || matches!(
            path,
            "/.well-known/oauth-protected-resource"
                | "/.well-known/oauth-authorization-server"
                | "/register"
                | "/authorize"
                | "/token"
                | "/revoke"
        )
        || path
            .strip_prefix("/.well-known/oauth-protected-resource")
            .is_some_and(|p| p == mcp_path)
}

/// The 401 a request to the public MCP endpoint gets without a valid token: where to find how
/// to get one (RFC 9728 §5.1).
pub fn unauthorized(c: &Connectors, token_given: bool) -> Response {
    let mut challenge = format!(
        "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource{}\"",
        c.issuer, c.mcp_path
    );
    if token_given {
        challenge.push_str(", error=\"invalid_token\", error_description=\"the token is unknown, expired or revoked\"");
    }
    let body = crate::jsonrpc::error_response(
        &Value::Null,
        crate::jsonrpc::INVALID_REQUEST,
        "Unauthorized: connect through OAuth (this is mcp-bridge's public URL)",
    );
    let mut resp = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

pub fn routes(mcp_path: &str) -> Router<Arc<Bridge>> {
    Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(resource_metadata),
        )
        .route(
            &format!("/.well-known/oauth-protected-resource{mcp_path}"),
            get(resource_metadata),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(server_metadata),
        )
        .route("/register", post(register))
        .route("/authorize", get(authorize).post(consent))
        .route("/token", post(token_endpoint))
        .route("/revoke", post(revoke))
}

fn not_served() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn oauth_error(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    no_store((status, axum::Json(e.body())).into_response())
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn resource_metadata(State(bridge): State<Arc<Bridge>>) -> Response {
    let Some(c) = bridge.connectors.as_ref() else {
        return not_served();
    };
    axum::Json(json!({
        "resource": c.resource,
        "authorization_servers": [c.issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-bridge",
    }))
    .into_response()
}

async fn server_metadata(State(bridge): State<Arc<Bridge>>) -> Response {
    let Some(c) = bridge.connectors.as_ref() else {
        return not_served();
    };
    let at = |p: &str| format!("{}{p}", c.issuer);
    axum::Json(json!({
        "issuer": c.issuer,
        "authorization_endpoint": at("/authorize"),
        "token_endpoint": at("/token"),
        "registration_endpoint": at("/register"),
        "revocation_endpoint": at("/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

async fn register(State(bridge): State<Arc<Bridge>>, body: Bytes) -> Response {
    let Some(c) = bridge.connectors.as_ref() else {
        return not_served();
    };
    let Ok(meta) = serde_json::from_slice::<Value>(&body) else {
        return oauth_error(&OAuthError::new(
            400,
            "invalid_client_metadata",
            "the body must be a JSON object (RFC 7591)",
        ));
    };
    match c.register(&meta) {
        Ok(v) => no_store((StatusCode::CREATED, axum::Json(v)).into_response()),
        Err(e) => oauth_error(&e),
    }
}

async fn token_endpoint(State(bridge): State<Arc<Bridge>>, body: Bytes) -> Response {
    let Some(c) = bridge.connectors.as_ref() else {
        return not_served();
    };
    let f = form(&body);
    let result = match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => c.exchange_code(&f),
        Some("refresh_token") => c.refresh(&f),
        other => Err(OAuthError::new(
            400,
            "unsupported_grant_type",
            format!(
                "grant_type {:?} is not supported (authorization_code, refresh_token)",
                other.unwrap_or("")
            ),
        )),
    };
    match result {
        Ok(v) => no_store(axum::Json(v).into_response()),
        Err(e) => oauth_error(&e),
    }
}

async fn revoke(State(bridge): State<Arc<Bridge>>, body: Bytes) -> Response {
    let Some(c) = bridge.connectors.as_ref() else {
        return not_served();
    };
    // RFC 7009: an unknown token is not an error.
    match c.revoke(form(&body).get("token").map(String::as_str).unwrap_or("")) {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => oauth_error(&e),
    }
}

fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    no_store(resp)
}

/// `GET /authorize`: checks the request, then either takes an open pairing window or shows
/// the consent page.
async fn authorize(State(bridge): State<Arc<Bridge>>, RawQuery(query): RawQuery) -> Response {
    let Some(c) = bridge.connectors.as_ref() else {
        return not_served();
    };
    let q = form(query.as_deref().unwrap_or("").as_bytes());
    let request = match c.check_authorize(&q).await {
        Ok(r) => r,
        Err(AuthorizeError::Redirect(to)) => return redirect(&to),
        Err(AuthorizeError::Page(message)) => {
            return page(StatusCode::BAD_REQUEST, "Cannot connect", &message, None);
        }
    };
    let who = format!(
        "{} (redirecting to {})",
        request.client.client_name,
        request.redirect_host()
    );
    let views = bridge.registry.views.read().clone();
    if let Some(profile) = c.take_pairing(&who, |p| views.get(p).is_some()) {
        tracing::info!(client = %request.client.client_name, profile, "a connector was approved through the pairing window");
        return approve(c, request, profile);
    }
    match c.begin_consent(request.clone()) {
        Ok((id, csrf)) => consent_page(&bridge, &request, &id, &csrf, None),
        Err(e) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            &e.description,
            None,
        ),
    }
}

fn approve(c: &Connectors, request: AuthRequest, profile: String) -> Response {
    let (redirect_uri, state) = (request.redirect_uri.clone(), request.state.clone());
    match c.issue_code(request, profile) {
        Ok(code) => redirect(&c.redirect_to(&redirect_uri, &[("code", &code)], state.as_deref())),
        Err(e) => redirect(&c.redirect_to(
            &redirect_uri,
            &[("error", e.error), ("error_description", &e.description)],
            state.as_deref(),
        )),
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// `POST /authorize`: the consent form. Needs the page's CSRF token twice (form and cookie),
/// a profile, and the owner password (checked by the agent).
async fn consent(State(bridge): State<Arc<Bridge>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(c) = bridge.connectors.as_ref() else {
        return not_served();
    };
    let f = form(&body);
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let (id, csrf) = (field("request"), field("csrf"));
    let request = match cookie(&headers, CONSENT_COOKIE) {
        Some(k) if !csrf.is_empty() && k == csrf => c.consent(id, csrf),
        _ => None,
    };
    let Some(request) = request else {
        tracing::warn!("a connector consent form without its CSRF token was refused");
        return page(
            StatusCode::FORBIDDEN,
            "Expired",
            "This consent form expired or did not come from this page. Start connecting again from the app.",
            None,
        );
    };
    if field("decision") == "deny" {
        c.end_consent(id);
        return redirect(&c.redirect_to(
            &request.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "the owner refused"),
            ],
            request.state.as_deref(),
        ));
    }
    let profile = field("profile").to_owned();
    if bridge.registry.views.read().get(&profile).is_none() {
        return consent_page(&bridge, &request, id, csrf, Some("Choose what it may use."));
    }
    let password = proto::Redacted(field("password").to_owned());
    let answer = bridge
        .registry
        .agent
        .request(proto::Request::VerifyOwner { password })
        .await;
    match answer {
        Ok(proto::Response::Ack) => {
            c.end_consent(id);
            tracing::info!(client = %request.client.client_name, profile, "the owner approved a connector");
            approve(c, request, profile)
        }
        Ok(proto::Response::Error { error }) => {
            consent_page(&bridge, &request, id, csrf, Some(&error.to_string()))
        }
        Ok(_) => consent_page(
            &bridge,
            &request,
            id,
            csrf,
            Some("unexpected answer from the credential agent"),
        ),
        Err(e) => consent_page(
            &bridge,
            &request,
            id,
            csrf,
            Some(&format!(
                "the credential agent is not reachable ({e}); start it, or approve with `mcp-bridge connectors pair`"
            )),
        ),
    }
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;padding:1rem;color:#111;background:#f6f6f4}main{max-width:34rem;margin:2rem auto;background:#fff;padding:1.5rem;border-radius:8px;box-shadow:0 1px 3px #0002}h1{font-size:1.3rem;margin-top:0}fieldset{border:1px solid #ccc;border-radius:6px;margin:1rem 0}label{display:block;margin:.4rem 0}small{color:#555}input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}button{font-size:1rem;padding:.5rem 1.2rem;margin:.8rem .5rem 0 0}.error{color:#a00;font-weight:600}";

/// A page of ours: no scripts, its one style allowed by hash, never framed, forms only to
/// here (and, after a consent, the redirect to the client).
fn page(status: StatusCode, title: &str, body: &str, form_target: Option<&str>) -> Response {
    let style_hash =
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\"><title>{} · mcp-bridge</title><style>{STYLE}</style></head><body><main>{}</main></body></html>",
        escape(title),
        if form_target.is_some() {
            body.to_owned()
        } else {
            format!("<h1>{}</h1><p>{}</p>", escape(title), escape(body))
        }
    );
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{style_hash}'; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        form_target.unwrap_or("")
    );
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(csp.trim_end()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`: nothing leaks to other sites, and the consent form's POST carries this
    // origin (with `no-referrer` browsers send `Origin: null`).
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    no_store(resp)
}

/// The consent page: who asks, where the browser goes back to, what it may use (a profile,
/// none preselected), the owner password.
fn consent_page(
    bridge: &Bridge,
    request: &AuthRequest,
    id: &str,
    csrf: &str,
    error: Option<&str>,
) -> Response {
    let views = bridge.registry.views.read().clone();
    let mut choices = String::new();
    for (name, p) in views.all() {
        choices.push_str(&format!(
            "<label><input type=radio name=profile value=\"{n}\" required> <b>{n}</b> <small>{}</small></label>",
            escape(&crate::views::describe_profile(p)),
            n = escape(name)
        ));
    }
    let origin = url::Url::parse(&request.redirect_uri)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    let body = format!(
        "<h1>Allow {client} to use your MCP tools?</h1>\
         <p>{client} asks to connect to this mcp-bridge. After you allow it, your browser goes back to <b>{host}</b>. Only allow a connector you are adding yourself, now.</p>\
         {err}\
         <form method=post action=\"/authorize\">\
         <input type=hidden name=request value=\"{id}\"><input type=hidden name=csrf value=\"{csrf}\">\
         <fieldset><legend>What it may use</legend>{choices}</fieldset>\
         <label>Owner password<input type=password name=password autocomplete=current-password></label>\
         <button name=decision value=approve>Allow</button><button name=decision value=deny formnovalidate>Deny</button>\
         </form>",
        client = escape(&request.client.client_name),
        host = escape(&request.redirect_host()),
        err = error.map_or(String::new(), |e| format!(
            "<p class=error>{}</p>",
            escape(e)
        )),
        id = escape(id),
        csrf = escape(csrf),
    );
    let status = if error.is_some() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    };
    let mut resp = page(status, "Connect", &body, Some(&origin));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{CONSENT_COOKIE}={csrf}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=600"
    )) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}
