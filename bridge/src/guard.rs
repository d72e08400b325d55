//! The security of a loopback server: Host and Origin validation against DNS rebinding, CORS for
//! the browser-based clients we allow, and the optional inbound bearer token.
//!
//! Everything is exact matching on parsed values, never substring matching: a wildcard
//! `https://*.openai.com` matches whole DNS labels, so `https://evilopenai.com` and
//! `https://openai.com.evil.com` are refused.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The origins claude.ai, ChatGPT and their sandboxes use.
pub const DEFAULT_ORIGINS: [&str; 5] = [
    "https://claude.ai",
    "https://chatgpt.com",
    "https://chat.openai.com",
    "https://*.claudeusercontent.com",
    "https://*.openai.com",
];

const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OriginPattern {
    scheme: String,
    /// Lowercase host; for a wildcard, the suffix after `*.`.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedOrigin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    }
}

fn valid_dns_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Splits `host[:port]` or `[v6][:port]`; the host comes back lowercase, brackets removed.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        (host, &rest[end + 1..])
    } else {
        match s.rfind(':') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        }
    };
    let port = match port {
        "" => None,
        p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    let host = host.to_ascii_lowercase();
    if !s.starts_with('[') && !valid_dns_host(&host) {
        return None;
    }
    Some((host, port))
}

/// Parses a serialised origin `scheme://host[:port]`; anything else (paths, userinfo, `null`)
/// is `None`.
pub(crate) fn parse_origin(s: &str) -> Option<ParsedOrigin> {
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (host, port) = split_host_port(rest)?;
    let port = port.filter(|p| Some(*p) != default_port(&scheme));
    Some(ParsedOrigin { scheme, host, port })
}

pub(crate) fn parse_pattern(s: &str) -> Option<OriginPattern> {
    let (scheme, rest) = s.split_once("://")?;
    let (wildcard, rest) = match rest.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let o = parse_origin(&format!("{scheme}://{rest}"))?;
    Some(OriginPattern {
        scheme: o.scheme,
        host: o.host,
        wildcard,
        port: o.port,
    })
}

impl OriginPattern {
    pub(crate) fn matches(&self, o: &ParsedOrigin) -> bool {
        if self.scheme != o.scheme || self.port != o.port {
            return false;
        }
        if self.wildcard {
            // At least one whole label before the suffix: `a.claudeusercontent.com`, never
            // `claudeusercontent.com` itself nor `evilclaudeusercontent.com`.
            o.host.len() > self.host.len() + 1
                && o.host.ends_with(&self.host)
                && o.host.as_bytes()[o.host.len() - self.host.len() - 1] == b'.'
        } else {
            self.host == o.host
        }
    }
}

#[derive(Debug, Clone)]
pub struct Guard {
    hosts: Vec<String>,
    origins: Vec<OriginPattern>,
    allow_loopback_origins: bool,
    token: Option<String>,
    /// Origins bound to a profile (`[[profile]] origins`) are allowed too; reloaded with it.
    views: Option<crate::views::SharedViews>,
    /// The public URL's authorization server: its host is allowed, and requests for it need
    /// its tokens instead of the inbound token.
    connectors: Option<Arc<crate::connectors::Connectors>>,
}

#[derive(Debug, thiserror::Error)]
#[error("allowed origin {0:?} is not of the form https://host[:port] or https://*.domain")]
pub struct BadPattern(String);

impl Guard {
    pub fn new(
        extra_hosts: &[String],
        extra_origins: &[String],
        allow_loopback_origins: bool,
        token: Option<String>,
    ) -> Result<Self, BadPattern> {
        let mut origins = Vec::new();
        for o in DEFAULT_ORIGINS
            .iter()
            .copied()
            .chain(extra_origins.iter().map(String::as_str))
        {
            origins.push(parse_pattern(o).ok_or_else(|| BadPattern(o.to_owned()))?);
        }
        let hosts = LOOPBACK_HOSTS
            .iter()
            .map(|h| (*h).to_owned())
            .chain(
                extra_hosts
                    .iter()
                    .map(|h| h.trim_end_matches('.').to_ascii_lowercase()),
            )
            .collect();
        Ok(Self {
            hosts,
            origins,
            allow_loopback_origins,
            token,
            views: None,
            connectors: None,
        })
    }

    /// Serves the public URL of `connectors` (see `connectors`).
    pub fn with_connectors(mut self, connectors: Arc<crate::connectors::Connectors>) -> Self {
        self.connectors = Some(connectors);
        self
    }

    /// Also allows the origins the profiles name.
    pub fn with_views(mut self, views: crate::views::SharedViews) -> Self {
        self.views = Some(views);
        self
    }

    pub fn host_allowed(&self, host: &str) -> bool {
        split_host_port(host).is_some_and(|(h, _)| self.hosts.contains(&h))
            || self.connectors.as_ref().is_some_and(|c| c.is_public(host))
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        let Some(o) = parse_origin(origin) else {
            return false;
        };
        if self.allow_loopback_origins && LOOPBACK_HOSTS.contains(&o.host.as_str()) {
            return true;
        }
        self.origins.iter().any(|p| p.matches(&o))
            || self
                .views
                .as_ref()
                .is_some_and(|v| v.read().bound_profile(origin).is_some())
    }

    fn token_ok(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let Some(got) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
        else {
            return false;
        };
        constant_time_eq(got.trim().as_bytes(), expected.as_bytes())
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn forbidden(message: &str) -> Response {
    let body = crate::jsonrpc::error_response(
        &serde_json::Value::Null,
        crate::jsonrpc::INVALID_REQUEST,
        message,
    );
    (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}

const ALLOW_HEADERS: &str =
    "Content-Type, Accept, Authorization, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID";
const EXPOSE_HEADERS: &str = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate";

/// What a request for the public URL may do: only the MCP endpoint (with a token of ours, whose
/// grant's profile it gets) and the OAuth endpoints; `Err` is the answer otherwise.
#[allow(clippy::result_large_err)]
fn public_request(
    c: &crate::connectors::Connectors,
    req: &mut Request<Body>,
) -> Result<(), Response> {
    use crate::connectors::http;
    let path = req.uri().path().to_owned();
    if !http::public_path(&path, &c.mcp_path) {
        return Err((
            StatusCode::NOT_FOUND,
            axum::Json(crate::jsonrpc::error_response(
                &serde_json::Value::Null,
                crate::jsonrpc::INVALID_REQUEST,
                "Not Found: the public URL serves the MCP endpoint and OAuth only",
            )),
        )
            .into_response());
    }
    if path != c.mcp_path || req.method() == Method::OPTIONS {
        return Ok(());
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(profile) = bearer.and_then(|t| c.authenticate(t)) else {
        return Err(http::unauthorized(c, bearer.is_some()));
    };
    match HeaderValue::from_str(&profile) {
        Ok(v) => {
            req.headers_mut().insert(http::GRANT_PROFILE_HEADER, v);
            Ok(())
        }
        Err(_) => Err(http::unauthorized(c, true)),
    }
}

/// Middleware in front of every route.
pub async fn guard(
    State(guard): State<Arc<Guard>>,
    mut req: Request<Body>,
    next: Next,
) -> Response {
    // Only the guard says which grant a request has.
    req.headers_mut()
        .remove(crate::connectors::http::GRANT_PROFILE_HEADER);
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    match &host {
        Some(h) if guard.host_allowed(h) => {}
        Some(h) => {
            tracing::warn!(host = %h, "refused a request with a Host that is not allowed (DNS rebinding?)");
            return forbidden("Forbidden: Host header is not allowed");
        }
        None => return forbidden("Forbidden: missing Host header"),
    }
    // The public URL's requests: its Host, or anything a proxy forwarded (a tunnel that
    // rewrites Host to 127.0.0.1 must not make the internet look local).
    // Only looked at when there is a public URL: a loopback-only bridge pays nothing per request.
    let forwarded = || {
        [
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-host",
            "cf-connecting-ip",
            "x-real-ip",
        ]
        .iter()
        .any(|h| headers.contains_key(*h))
    };
    let public = guard
        .connectors
        .as_ref()
        .filter(|c| forwarded() || host.as_deref().is_some_and(|h| c.is_public(h)))
        .cloned();
    let origin = match headers.get(header::ORIGIN) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(o) if guard.origin_allowed(o) => Some(v.clone()),
            // The public URL's own pages (the consent form) post to it: same origin, no CORS.
            Ok(o) if public.as_ref().is_some_and(|c| c.is_own_origin(o)) => None,
            _ => {
                tracing::warn!(origin = ?v, "refused a request from an origin that is not allowed");
                return forbidden("Forbidden: Origin is not allowed");
            }
        },
    };
    if req.method() == Method::OPTIONS {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(
            header::ALLOW,
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        if let Some(origin) = origin {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
            if req
                .headers()
                .contains_key("access-control-request-private-network")
            {
                h.insert(
                    "access-control-allow-private-network",
                    HeaderValue::from_static("true"),
                );
            }
        }
        return resp;
    }
    let mut resp = if let Some(c) = public {
        match public_request(&c, &mut req) {
            Ok(()) => next.run(req).await,
            Err(resp) => resp,
        }
    } else if guard.token_ok(req.headers()) {
        next.run(req).await
    } else {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            axum::Json(crate::jsonrpc::error_response(
                &serde_json::Value::Null,
                crate::jsonrpc::INVALID_REQUEST,
                "Unauthorized: this bridge requires its inbound bearer token",
            )),
        )
            .into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    };
    if let Some(origin) = origin {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> Guard {
        Guard::new(
            &["bridge.example.com".into()],
            &[
                "https://*.example.org".into(),
                "http://dev.local:3000".into(),
            ],
            true,
            None,
        )
        .unwrap()
    }

    #[test]
    fn hosts() {
        let g = g();
        for ok in [
            "127.0.0.1:8769",
            "localhost:8769",
            "LOCALHOST",
            "[::1]:8769",
            "[::1]",
            "bridge.example.com",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:8769",
            "127.0.0.2:8769",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
            "",
            "[::2]:1",
            "localhost:99999",
            "local host",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn origins_match_whole_labels() {
        let g = g();
        for ok in [
            "https://claude.ai",
            "https://claude.ai:443",
            "https://CHATGPT.com",
            "https://chat.openai.com",
            "https://a.claudeusercontent.com",
            "https://x.y.claudeusercontent.com",
            "https://platform.openai.com",
            "https://a.example.org",
            "http://dev.local:3000",
            "http://localhost:6274",
            "http://127.0.0.1:6274",
            "http://[::1]:6274",
        ] {
            assert!(g.origin_allowed(ok), "{ok}");
        }
        for bad in [
            "https://evilclaude.ai",
            "https://claude.ai.evil.com",
            "http://claude.ai",
            "https://claude.ai:8443",
            "https://claudeusercontent.com",
            "https://evilclaudeusercontent.com",
            "https://a.claudeusercontent.com.evil.com",
            "https://openai.com",
            "https://evil.example",
            "https://example.org",
            "http://dev.local:3001",
            "null",
            "https://claude.ai/path",
            "https://user@claude.ai",
            "https://claude.ai.",
            "file://claude.ai",
            "",
        ] {
            assert!(!g.origin_allowed(bad), "{bad}");
        }
        let strict = Guard::new(&[], &[], false, None).unwrap();
        assert!(!strict.origin_allowed("http://localhost:6274"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Guard::new(&[], &["claude.ai".into()], true, None).is_err());
        assert!(Guard::new(&[], &["https://a/b".into()], true, None).is_err());
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
