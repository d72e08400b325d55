//! The built-in demo upstream, served when no upstream is configured so that a first run answers
//! at once. It is a real stdio MCP server (this binary, `mcp-bridge demo-upstream`), spawned and
//! supervised like any other upstream, and its tools say in their descriptions that they are a
//! demo.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

pub const NAME: &str = "demo";

fn tools() -> Value {
    json!([
        {
            "name": "echo",
            "title": "Echo (mcp-bridge demo)",
            "description": "Demo tool built into mcp-bridge: returns the message. Configure real upstreams in config.toml.",
            "inputSchema": {
                "type": "object",
                "properties": { "message": { "type": "string" } },
                "required": ["message"]
            },
            "annotations": { "readOnlyHint": true, "idempotentHint": true }
        },
        {
            "name": "add",
            "title": "Add (mcp-bridge demo)",
            "description": "Demo tool built into mcp-bridge: adds two numbers.",
            "inputSchema": {
                "type": "object",
                "properties": { "a": { "type": "number" }, "b": { "type": "number" } },
                "required": ["a", "b"]
            },
            "annotations": { "readOnlyHint": true, "idempotentHint": true }
        }
    ])
}

fn text(s: String) -> Value {
    json!({ "content": [{ "type": "text", "text": s }] })
}

fn call(params: &Value) -> Result<Value, (i64, String)> {
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    match params.get("name").and_then(Value::as_str) {
        Some("echo") => match args.get("message") {
            Some(Value::String(m)) => Ok(text(m.clone())),
            Some(other) => Ok(text(other.to_string())),
            None => Err((-32602, "echo needs a \"message\" argument".into())),
        },
        Some("add") => match (
            args.get("a").and_then(Value::as_f64),
            args.get("b").and_then(Value::as_f64),
        ) {
            (Some(a), Some(b)) => Ok(text(format!("{}", a + b))),
            _ => Err((-32602, "add needs numbers \"a\" and \"b\"".into())),
        },
        other => Err((
            -32602,
            format!("Unknown tool: {}", other.unwrap_or("<none>")),
        )),
    }
}

fn handle(msg: &Value) -> Option<Value> {
    let id = msg.get("id")?;
    let method = msg.get("method").and_then(Value::as_str)?;
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    let result = match method {
        "initialize" => {
            let asked = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let version = if crate::upstream::SUPPORTED_VERSIONS.contains(&asked) {
                asked
            } else {
                crate::upstream::LATEST_VERSION
            };
            Ok(json!({
                "protocolVersion": version,
                "capabilities": { "tools": {} },
                "serverInfo": { "name": "mcp-bridge-demo", "title": "mcp-bridge built-in demo", "version": env!("CARGO_PKG_VERSION") },
            }))
        }
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tools() })),
        "tools/call" => call(&params),
        _ => Err((-32601, format!("Method not found: {method}"))),
    };
    Some(match result {
        Ok(r) => json!({ "jsonrpc": "2.0", "id": id, "result": r }),
        Err((code, message)) => {
            json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
        }
    })
}

/// Serves MCP on stdin/stdout until stdin closes.
pub fn serve_stdio() -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(resp) = handle(&msg) {
            writeln!(stdout, "{resp}")?;
            stdout.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_basics() {
        let r = handle(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}})).unwrap();
        assert_eq!(r["result"]["content"][0]["text"], "5");
        let r = handle(&json!({"jsonrpc":"2.0","id":2,"method":"nope"})).unwrap();
        assert_eq!(r["error"]["code"], -32601);
        assert!(handle(&json!({"jsonrpc":"2.0","method":"notifications/initialized"})).is_none());
    }
}
