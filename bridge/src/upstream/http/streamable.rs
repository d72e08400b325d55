//! Streamable HTTP: one POST per message (a JSON or SSE answer, resumed with `Last-Event-ID`
//! when its stream breaks), the GET stream, a transparent re-initialize when the server lost
//! the session, and DELETE at the end.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::auth::insufficient_scope;
use super::{Auth, Conn, Failure, MAX_ANSWER, error_body, read_capped};
use crate::sse::SseParser;
use crate::upstream::peer::RpcPeer;
use proto::config::HttpTransport;

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

impl Conn {
    /// POSTs one message from the peer and dispatches whatever comes back.
    pub(super) async fn post(&self, peer: &Arc<RpcPeer>, line: Bytes) {
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
        // MCP 2026-07-28: no session, the headers its `_meta` and method call for.
        let stateless = msg
            .pointer("/params/_meta")
            .and_then(|m| m.get(crate::modern::META_VERSION))
            .is_some();
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
            let mut req = self.request(
                reqwest::Method::POST,
                token.as_deref(),
                !is_init && !stateless,
            );
            if stateless {
                for (k, v) in crate::modern::request_headers(&msg) {
                    req = req.header(k, v);
                }
                if method == "tools/call" {
                    for (k, v) in self.param_headers(&msg) {
                        req = req.header(k, v);
                    }
                }
            }
            let resp = req
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
                s if stateless && !(200..300).contains(&s) => {
                    // 2026-07-28 errors come with their HTTP status (400, 404) and a JSON-RPC
                    // error body: that error is the answer.
                    let body = read_capped(resp, MAX_ANSWER).await.unwrap_or_default();
                    let error = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v.get("error").cloned());
                    if let Some(id) = &id {
                        let error = error.unwrap_or_else(|| json!({"code": crate::jsonrpc::INTERNAL_ERROR, "message": format!("upstream answered HTTP {s}: {}", String::from_utf8_lossy(&body).chars().take(300).collect::<String>())}));
                        peer.deliver(id, json!({"jsonrpc": "2.0", "id": id, "error": error}));
                    }
                    return;
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
            if method == "subscriptions/listen" {
                // The stream that carries the upstream's list changes: without it the lists
                // would go stale, so its end ends the connection (the reconnect listens anew).
                let _ = self.fail.send(Failure::Broken(
                    "the upstream ended its subscriptions/listen stream".into(),
                ));
                return;
            }
            if let (false, Some(id)) = (done, &id) {
                if stateless {
                    // 2026-07-28 has no resumption: the answer is lost.
                    peer.deliver(id, json!({"jsonrpc": "2.0", "id": id, "error": {"code": crate::jsonrpc::INTERNAL_ERROR, "message": "the upstream's answer stream ended before the answer"}}));
                } else {
                    self.resume(peer, id, is_init).await;
                }
            }
            return;
        }
    }

    /// The `Mcp-Param-*` headers of a `tools/call`, from the tool's listed `inputSchema`.
    fn param_headers(&self, msg: &Value) -> Vec<(String, String)> {
        let Some(name) = msg.pointer("/params/name").and_then(Value::as_str) else {
            return Vec::new();
        };
        let lists = self.up.lists();
        let Some(tool) = lists
            .tools
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
        else {
            return Vec::new();
        };
        let empty = json!({});
        crate::modern::param_headers(
            tool.get("inputSchema").unwrap_or(&empty),
            msg.pointer("/params/arguments").unwrap_or(&empty),
        )
    }

    /// Dispatches a message that arrived in the answer to our request `cause`: server→client
    /// requests, progress and logs on that stream belong exactly to the client request behind
    /// it.
    pub(super) fn deliver(
        &self,
        peer: &Arc<RpcPeer>,
        v: Value,
        is_init: bool,
        cause: Option<&Value>,
    ) {
        if is_init {
            self.session.learn_version(&v);
        }
        crate::upstream::protocol::dispatch_for(&self.up, peer, v, cause);
    }

    /// Dispatches the events of an SSE answer; true once the response to `id` arrived.
    /// Remembers the last event id for resumption.
    pub(super) async fn read_sse(
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
    pub(super) async fn resume(&self, peer: &Arc<RpcPeer>, id: &Value, is_init: bool) {
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
    pub(super) async fn reinitialize(&self) -> Result<(), String> {
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
    pub(super) async fn server_stream(self: Arc<Self>, peer: Arc<RpcPeer>) {
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
                        crate::upstream::protocol::dispatch(&self.up, &peer, v);
                    }
                }
            }
            reopening = true;
            tracing::debug!(upstream = %self.up.name, "the GET stream ended; reopening it");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub(super) async fn delete_session(&self) {
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
}
