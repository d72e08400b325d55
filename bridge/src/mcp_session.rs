//! The client side of a Streamable HTTP session, shared by the shim's client (`client`) and
//! HTTP upstreams (`upstream::http`): the session id the server gave in its `initialize`
//! answer and the protocol version it negotiated, sent on every later request.

use parking_lot::Mutex;
use serde_json::Value;

#[derive(Default)]
pub struct McpSession {
    id: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
}

impl McpSession {
    /// The session id, once the server gave one.
    pub fn id(&self) -> Option<String> {
        self.id.lock().clone()
    }

    /// Forgets the session (before a new `initialize`).
    pub fn reset(&self) {
        *self.id.lock() = None;
        *self.version.lock() = None;
    }

    /// Forgets the session id only (a re-initialize keeps the negotiated version).
    pub fn clear_id(&self) {
        *self.id.lock() = None;
    }

    /// Adds `Mcp-Session-Id` and `MCP-Protocol-Version` when known.
    pub fn headers(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(s) = self.id() {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = self.version.lock().clone() {
            req = req.header("mcp-protocol-version", v);
        }
        req
    }

    /// Takes the session id of an `initialize` answer, if it has one.
    pub fn learn_id(&self, resp: &reqwest::Response) {
        if let Some(s) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            *self.id.lock() = Some(s.to_owned());
        }
    }

    /// Takes the negotiated version from an `initialize` answer message.
    pub fn learn_version(&self, answer: &Value) {
        if let Some(v) = answer
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
        {
            *self.version.lock() = Some(v.to_owned());
        }
    }
}
