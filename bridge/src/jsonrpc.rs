//! Small helpers for JSON-RPC 2.0 envelopes. The bridge forwards raw JSON and only looks at the
//! fields routing needs, so these work on `serde_json::Value` rather than typed messages.

use serde_json::{Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// Cancelled by the client (the code LSP uses; MCP defines none).
pub const REQUEST_CANCELLED: i64 = -32800;
/// MCP: the resource does not exist.
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// Server-defined: the upstream that owns the request is not available right now.
pub const UPSTREAM_UNAVAILABLE: i64 = -32000;
/// Server-defined (as in the TypeScript SDK): the session id is unknown or expired.
pub const SESSION_NOT_FOUND: i64 = -32001;
/// Server-defined (as in the TypeScript SDK): the request timed out waiting for the upstream.
pub const REQUEST_TIMEOUT: i64 = -32001;

/// A JSON-RPC error object (`{"code", "message", "data"?}`), kept raw so that an upstream's
/// error passes through with every field it set.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError(pub Value);

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self(json!({ "code": code, "message": message.into() }))
    }

    pub fn with_data(code: i64, message: impl Into<String>, data: Value) -> Self {
        Self(json!({ "code": code, "message": message.into(), "data": data }))
    }

    pub fn code(&self) -> Option<i64> {
        self.0.get("code").and_then(Value::as_i64)
    }

    pub fn message(&self) -> &str {
        self.0.get("message").and_then(Value::as_str).unwrap_or("")
    }
}

pub fn response(id: &Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(RpcError(error)) => json!({ "jsonrpc": "2.0", "id": id, "error": error }),
    }
}

pub fn error_response(id: &Value, code: i64, message: impl Into<String>) -> Value {
    response(id, Err(RpcError::new(code, message)))
}

pub fn notification(method: &str, params: Option<Value>) -> Value {
    match params {
        Some(p) => json!({ "jsonrpc": "2.0", "method": method, "params": p }),
        None => json!({ "jsonrpc": "2.0", "method": method }),
    }
}

/// Why a POST body is not one JSON-RPC message.
#[derive(Debug, PartialEq)]
pub struct BodyError {
    pub code: i64,
    pub message: String,
}

/// Parses a POST body into one JSON-RPC message: not JSON (or nested deeper than serde_json's
/// recursion limit of 128) is a parse error, a batch is refused (removed in MCP 2025-06-18).
/// Whether the message's fields make sense is [`classify`]'s job.
pub fn parse_message(body: &[u8]) -> Result<Value, BodyError> {
    let msg: Value = serde_json::from_slice(body).map_err(|e| BodyError {
        code: PARSE_ERROR,
        message: format!("Parse error: {e}"),
    })?;
    if msg.is_array() {
        return Err(BodyError {
            code: INVALID_REQUEST,
            message:
                "Invalid Request: JSON-RPC batches are not supported (removed in MCP 2025-06-18)"
                    .into(),
        });
    }
    Ok(msg)
}

/// What a single JSON-RPC message is, judged by its fields.
#[derive(Debug, PartialEq)]
pub enum Kind<'a> {
    Request { id: &'a Value, method: &'a str },
    Notification { method: &'a str },
    Response { id: &'a Value },
    Invalid(&'static str),
}

pub fn classify(msg: &Value) -> Kind<'_> {
    let Some(obj) = msg.as_object() else {
        return Kind::Invalid("a JSON-RPC message must be an object");
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Kind::Invalid("\"jsonrpc\" must be \"2.0\"");
    }
    let id = obj.get("id").filter(|id| valid_id(id));
    if obj.contains_key("id") && id.is_none() {
        return Kind::Invalid("\"id\" must be a string or an integer");
    }
    match (obj.get("method"), id) {
        (Some(Value::String(method)), Some(id)) => Kind::Request { id, method },
        (Some(Value::String(method)), None) => Kind::Notification { method },
        (Some(_), _) => Kind::Invalid("\"method\" must be a string"),
        (None, Some(id)) if obj.contains_key("result") || obj.contains_key("error") => {
            Kind::Response { id }
        }
        (None, _) => Kind::Invalid("not a request, notification or response"),
    }
}

fn valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let req = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
        assert!(matches!(
            classify(&req),
            Kind::Request { method: "ping", .. }
        ));
        let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        assert!(matches!(classify(&note), Kind::Notification { .. }));
        let resp = json!({"jsonrpc":"2.0","id":"a","result":{}});
        assert!(matches!(classify(&resp), Kind::Response { .. }));
        for bad in [
            json!([]),
            json!({"id":1,"method":"x"}),
            json!({"jsonrpc":"2.0","id":1.5,"method":"x"}),
            json!({"jsonrpc":"2.0","id":null,"method":"x"}),
            json!({"jsonrpc":"2.0","id":1,"method":3}),
            json!({"jsonrpc":"2.0","id":1}),
        ] {
            assert!(matches!(classify(&bad), Kind::Invalid(_)), "{bad}");
        }
    }
}
