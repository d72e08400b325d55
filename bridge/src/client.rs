//! A Streamable HTTP MCP client (the shim uses it to reach the bridge): POST one message,
//! get back JSON, an SSE stream of messages, or 202; open the GET stream; DELETE the session.
//! The session id and negotiated protocol version are kept and sent on every later request.

use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;

use crate::sse::SseParser;

const MAX_SSE_LINE: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {source}")]
    Connect { url: String, source: reqwest::Error },
    /// The connection broke after the request was (perhaps) sent.
    #[error("the connection to {url} broke: {source}")]
    Broken { url: String, source: reqwest::Error },
    #[error("the session is gone (HTTP 404)")]
    SessionGone,
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("bad response: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Whether the server could not be reached at all (not running, restarting).
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }
}

pub enum Posted {
    /// 202: a notification or response was accepted.
    Accepted,
    /// The messages of the answer, in order (one for a JSON answer).
    Messages(futures_util::stream::BoxStream<'static, Result<Value, ClientError>>),
}

pub struct StreamableClient {
    http: reqwest::Client,
    url: String,
    bearer: Option<String>,
    session: crate::mcp_session::McpSession,
}

impl StreamableClient {
    pub fn new(url: &str, bearer: Option<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            bearer,
            session: Default::default(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn session(&self) -> Option<String> {
        self.session.id()
    }

    /// Forgets the session (before a new `initialize`).
    pub fn reset(&self) {
        self.session.reset();
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut req = self.session.headers(self.http.request(method, &self.url));
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        req
    }

    fn connect_error(&self, source: reqwest::Error) -> ClientError {
        let url = self.url.clone();
        if source.is_connect() {
            ClientError::Connect { url, source }
        } else {
            ClientError::Broken { url, source }
        }
    }

    async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        match resp.status() {
            s if s.is_success() => Ok(resp),
            StatusCode::NOT_FOUND => Err(ClientError::SessionGone),
            s => Err(ClientError::Status {
                status: s.as_u16(),
                body: resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(500)
                    .collect(),
            }),
        }
    }

    /// POSTs one JSON-RPC message.
    pub async fn post(&self, msg: &Value) -> Result<Posted, ClientError> {
        let is_init = msg.get("method").and_then(Value::as_str) == Some("initialize");
        let resp = self
            .request(reqwest::Method::POST)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(msg.to_string())
            .send()
            .await
            .map_err(|e| self.connect_error(e))?;
        let resp = Self::check(resp).await?;
        if is_init {
            self.session.learn_id(&resp);
        }
        if resp.status() == StatusCode::ACCEPTED {
            return Ok(Posted::Accepted);
        }
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if sse {
            return Ok(Posted::Messages(messages(resp).boxed()));
        }
        let body = resp.bytes().await.map_err(|e| self.connect_error(e))?;
        if body.is_empty() {
            return Ok(Posted::Accepted);
        }
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if is_init {
            self.note_initialized(&v);
        }
        Ok(Posted::Messages(
            futures_util::stream::iter([Ok(v)]).boxed(),
        ))
    }

    /// POSTs one MCP 2026-07-28 message: no session, the headers its `_meta` and method call
    /// for. Error answers (400, 404) carry JSON-RPC errors and are relayed as messages.
    pub async fn post_stateless(&self, msg: &Value) -> Result<Posted, ClientError> {
        let mut req = self.http.post(&self.url);
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        for (k, v) in crate::modern::request_headers(msg) {
            req = req.header(k, v);
        }
        let resp = req
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(msg.to_string())
            .send()
            .await
            .map_err(|e| self.connect_error(e))?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if content_type.starts_with("text/event-stream") && resp.status().is_success() {
            return Ok(Posted::Messages(messages(resp).boxed()));
        }
        if resp.status() == StatusCode::ACCEPTED {
            return Ok(Posted::Accepted);
        }
        if !content_type.starts_with("application/json") {
            return Err(Self::check(resp)
                .await
                .err()
                .unwrap_or(ClientError::Protocol(
                    "an answer that is neither JSON nor an event stream".into(),
                )));
        }
        let body = resp.bytes().await.map_err(|e| self.connect_error(e))?;
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Posted::Messages(
            futures_util::stream::iter([Ok(v)]).boxed(),
        ))
    }

    /// Records the negotiated version from an `initialize` answer that came as SSE.
    pub fn note_initialized(&self, result: &Value) {
        self.session.learn_version(result);
    }

    /// Opens the GET stream of server-initiated messages. `Ok(None)` if the server has none (405).
    pub async fn open_stream(
        &self,
    ) -> Result<Option<impl Stream<Item = Result<Value, ClientError>> + use<>>, ClientError> {
        let resp = self
            .request(reqwest::Method::GET)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| self.connect_error(e))?;
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(None);
        }
        Ok(Some(messages(Self::check(resp).await?)))
    }

    /// Ends the session (best effort).
    pub async fn delete(&self) {
        if self.session.id().is_some() {
            let _ = self.request(reqwest::Method::DELETE).send().await;
        }
    }
}

/// The JSON-RPC messages of an SSE body, skipping events without data (priming, keep-alive).
fn messages(resp: reqwest::Response) -> impl Stream<Item = Result<Value, ClientError>> {
    let body = resp.bytes_stream();
    futures_util::stream::unfold(
        (
            body,
            SseParser::new(MAX_SSE_LINE),
            std::collections::VecDeque::new(),
            false,
        ),
        |(mut body, mut parser, mut ready, failed)| async move {
            loop {
                if let Some(v) = ready.pop_front() {
                    return Some((Ok(v), (body, parser, ready, failed)));
                }
                if failed {
                    return None;
                }
                match body.next().await? {
                    Ok(chunk) => match parser.push(&chunk) {
                        Ok(events) => {
                            for e in events.into_iter().filter(|e| !e.data.is_empty()) {
                                match serde_json::from_str::<Value>(&e.data) {
                                    Ok(v) => ready.push_back(v),
                                    Err(err) => {
                                        tracing::warn!(error = %err, "ignored an SSE event that is not JSON")
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            return Some((
                                Err(ClientError::Protocol(e.to_string())),
                                (body, parser, ready, true),
                            ));
                        }
                    },
                    Err(e) => {
                        return Some((
                            Err(ClientError::Protocol(e.to_string())),
                            (body, parser, ready, true),
                        ));
                    }
                }
            }
        },
    )
}
