//! The legacy HTTP+SSE transport (MCP 2024-11-05): one GET event stream whose `endpoint` event
//! names where messages are POSTed (same origin only), answers arriving on the stream.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{Conn, Failure};
use crate::sse::SseParser;
use crate::upstream::peer::RpcPeer;

/// Resolves a legacy stream's `endpoint` event against the upstream URL; only the same origin
/// is accepted, so messages (and the bearer token) never go to another server.
fn legacy_endpoint_url(base: &url::Url, data: &str) -> Result<url::Url, String> {
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

impl Conn {
    pub(super) fn legacy_endpoint(&self) -> Option<String> {
        self.legacy.lock().as_ref().map(|(e, _)| e.clone())
    }

    /// Stops the connection's streams: the legacy event stream and the GET stream.
    pub(super) fn stop_legacy(&self) {
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
    pub(super) async fn open_legacy(
        &self,
        peer: &Arc<RpcPeer>,
        refused: Option<u16>,
    ) -> Result<(), Failure> {
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
        let endpoint = legacy_endpoint_url(&base, &endpoint).map_err(Failure::Broken)?;
        tracing::info!(upstream = %self.up.name, endpoint = %endpoint, "using the legacy HTTP+SSE transport");
        let (up, peer, fail) = (self.up.clone(), peer.clone(), self.fail.clone());
        let task = tokio::spawn(async move {
            let dispatch = |e: crate::sse::SseEvent| {
                let is_message = e.event.as_deref().is_none_or(|t| t == "message");
                if let (true, Ok(v)) = (is_message, serde_json::from_str::<Value>(&e.data)) {
                    crate::upstream::protocol::dispatch(&up, &peer, v);
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
    pub(super) async fn post_legacy(&self, peer: &Arc<RpcPeer>, line: Bytes, id: Option<&Value>) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_endpoints_must_stay_on_the_same_origin() {
        let base = url::Url::parse("https://mcp.example.com/sse").unwrap();
        let ok = |d: &str| legacy_endpoint_url(&base, d).map(|u| u.to_string());
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
