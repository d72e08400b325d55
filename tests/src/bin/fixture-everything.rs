//! A stdio MCP server with the surface the official conformance suite's server scenarios call
//! (the "everything server" of @modelcontextprotocol/conformance 0.1.16), written for these
//! tests. The bridge exposes it without prefix, so the suite runs against the bridge as if it
//! were this server.
//!
//! Every request is handled on its own thread, so a tool waiting for the client's answer to
//! `sampling/createMessage` or `elicitation/create` does not block other requests.
//!
//! It speaks only the 2025 era. The tools the suite's 2026-07-28 scenarios call
//! (`test_input_required_result_*`, `test_missing_capability`, the list-change triggers) are
//! written the 2025 way: they send real server→client requests and list_changed notifications,
//! which the bridge translates for 2026-07-28 clients (`input_required` rounds, -32021,
//! `subscriptions/listen`).
//!
//! With `--stateless` it speaks only MCP 2026-07-28 instead: `initialize` is refused with
//! -32022, `server/discover` and `subscriptions/listen` are served, every result carries
//! `resultType`, and the same tools ask for input with `input_required` results under the keys
//! the suite's scenarios expect (`user_name`, `confirm`, `step1`…), reading the per-request
//! client capabilities from `_meta`.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const WAV_B64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

type Answer = Result<Value, Value>;

struct Server {
    out: Mutex<std::io::Stdout>,
    waiting: Mutex<HashMap<String, mpsc::Sender<Answer>>>,
    next: AtomicU64,
    level: Mutex<usize>,
    /// Toggled by `test_trigger_tool_change` / `test_trigger_prompt_change`: one more item.
    extra_tool: AtomicBool,
    extra_prompt: AtomicBool,
    /// `--stateless`: MCP 2026-07-28 only.
    stateless: bool,
    /// `--quiet-lists` (with `--stateless`): no `listChanged` announced nor sent; lists say
    /// `ttlMs: 1000` instead.
    quiet_lists: bool,
}

impl Server {
    fn send(&self, v: &Value) {
        let mut o = self.out.lock().unwrap();
        writeln!(o, "{v}").unwrap();
        o.flush().unwrap();
    }

    fn notify(&self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    fn log(&self, level: &str, data: &str) {
        let wanted = *self.level.lock().unwrap();
        if LEVELS.iter().position(|l| *l == level).unwrap_or(0) >= wanted {
            self.notify(
                "notifications/message",
                json!({"level": level, "data": data}),
            );
        }
    }

    /// Sends a request to the client and blocks until its answer.
    fn ask(&self, method: &str, params: Value) -> Answer {
        let id = format!("srv-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel();
        self.waiting.lock().unwrap().insert(id.clone(), tx);
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        rx.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| Err(json!({"code": -32001, "message": "client did not answer"})))
    }
}

fn text(s: impl Into<String>) -> Value {
    json!({"type": "text", "text": s.into()})
}

fn tool(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "description": description, "inputSchema": schema})
}

fn empty() -> Value {
    json!({"type": "object", "properties": {}})
}

fn tools(s: &Server) -> Value {
    let mut list = base_tools();
    if let Some(l) = list.as_array_mut() {
        l.extend(input_tools());
        if s.extra_tool.load(Ordering::Relaxed) {
            l.push(tool(
                "test_dynamic_tool",
                "Appears and disappears with test_trigger_tool_change",
                empty(),
            ));
        }
    }
    list
}

/// The tools of the 2026-07-28 scenarios, each written the 2025 way.
fn input_tools() -> Vec<Value> {
    let plain = |name: &str, description: &str| tool(name, description, empty());
    vec![
        plain(
            "test_missing_capability",
            "Asks the client for sampling (a client without the capability gets -32021 from the bridge)",
        ),
        plain(
            "test_streaming_elicitation",
            "Asks the client for input while its call is open",
        ),
        plain("test_logging_tool", "Sends a log message, then answers"),
        plain(
            "test_trigger_tool_change",
            "Adds or removes test_dynamic_tool and says the tool list changed",
        ),
        plain(
            "test_trigger_prompt_change",
            "Adds or removes test_dynamic_prompt and says the prompt list changed",
        ),
        plain(
            "test_input_required_result_elicitation",
            "Asks the user's name by elicitation",
        ),
        plain(
            "test_input_required_result_sampling",
            "Asks the client's model a question by sampling",
        ),
        plain(
            "test_input_required_result_list_roots",
            "Asks the client for its roots",
        ),
        plain(
            "test_input_required_result_request_state",
            "Asks for a confirmation by elicitation",
        ),
        plain(
            "test_input_required_result_multiple_inputs",
            "Asks for elicitation, sampling and roots at once",
        ),
        plain(
            "test_input_required_result_multi_round",
            "Asks by elicitation twice, one after the other",
        ),
        plain(
            "test_input_required_result_tampered_state",
            "Asks for a confirmation by elicitation",
        ),
        plain(
            "test_input_required_result_capabilities",
            "Asks the client's model by sampling",
        ),
        plain(
            "test_touch_resource",
            "Says test://watched-resource changed (notifications/resources/updated)",
        ),
        tool(
            "test_param_header",
            "Echoes its region, a parameter 2026-07-28 clients mirror in the Mcp-Param-Region header",
            json!({"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}, "required": ["region"]}),
        ),
    ]
}

fn base_tools() -> Value {
    json!([
        tool(
            "test_simple_text",
            "Tests simple text content response",
            empty()
        ),
        tool(
            "test_image_content",
            "Tests image content response",
            empty()
        ),
        tool(
            "test_audio_content",
            "Tests audio content response",
            empty()
        ),
        tool(
            "test_embedded_resource",
            "Tests embedded resource content response",
            empty()
        ),
        tool(
            "test_multiple_content_types",
            "Tests response with multiple content types (text, image, resource)",
            empty()
        ),
        tool(
            "test_tool_with_logging",
            "Tests tool that emits log messages during execution",
            empty()
        ),
        tool(
            "test_tool_with_progress",
            "Tests tool that reports progress notifications",
            empty()
        ),
        tool(
            "test_error_handling",
            "Tests error response handling",
            empty()
        ),
        tool(
            "test_sampling",
            "Tests server-initiated sampling (LLM completion request)",
            json!({"type": "object", "properties": {"prompt": {"type": "string", "description": "The prompt to send to the LLM"}}, "required": ["prompt"]})
        ),
        tool(
            "test_elicitation",
            "Tests server-initiated elicitation (user input request)",
            json!({"type": "object", "properties": {"message": {"type": "string", "description": "The message to show the user"}}, "required": ["message"]})
        ),
        tool(
            "test_elicitation_sep1034_defaults",
            "Tests elicitation with default values per SEP-1034",
            empty()
        ),
        tool(
            "test_elicitation_sep1330_enums",
            "Tests elicitation with enum schema improvements per SEP-1330",
            empty()
        ),
        tool(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
                "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
                "additionalProperties": false
            })
        ),
    ])
}

fn call_tool(s: &Server, params: &Value) -> Result<Value, (i64, String)> {
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    let content = |items: Vec<Value>| Ok(json!({"content": items}));
    match params["name"].as_str().unwrap_or("") {
        "test_simple_text" => content(vec![text("This is a simple text response for testing.")]),
        "test_image_content" => content(vec![
            json!({"type": "image", "data": PNG_B64, "mimeType": "image/png"}),
        ]),
        "test_audio_content" => content(vec![
            json!({"type": "audio", "data": WAV_B64, "mimeType": "audio/wav"}),
        ]),
        "test_embedded_resource" => content(vec![
            json!({"type": "resource", "resource": {"uri": "test://embedded-resource", "mimeType": "text/plain", "text": "This is an embedded resource content."}}),
        ]),
        "test_multiple_content_types" => content(vec![
            text("Multiple content types test:"),
            json!({"type": "image", "data": PNG_B64, "mimeType": "image/png"}),
            json!({"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}}),
        ]),
        "test_tool_with_logging" => {
            for (i, m) in [
                "Tool execution started",
                "Tool processing data",
                "Tool execution completed",
            ]
            .iter()
            .enumerate()
            {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(50));
                }
                s.log("info", m);
            }
            content(vec![text("Tool with logging executed successfully")])
        }
        "test_tool_with_progress" => {
            let token = params
                .pointer("/_meta/progressToken")
                .cloned()
                .unwrap_or(json!(0));
            for (i, p) in [0, 50, 100].iter().enumerate() {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(50));
                }
                s.notify("notifications/progress", json!({"progressToken": token, "progress": p, "total": 100, "message": format!("Completed step {p} of 100")}));
            }
            let shown = match &token {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            content(vec![text(shown)])
        }
        "test_error_handling" => Ok(
            json!({"content": [text("This tool intentionally returns an error for testing")], "isError": true}),
        ),
        "test_sampling" => {
            let prompt = args["prompt"].as_str().unwrap_or("").to_owned();
            let answer = s.ask("sampling/createMessage", json!({"messages": [{"role": "user", "content": {"type": "text", "text": prompt}}], "maxTokens": 100}));
            match answer {
                Ok(r) => content(vec![text(format!(
                    "LLM response: {}",
                    r.pointer("/content/text")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ))]),
                Err(e) => content(vec![text(format!(
                    "Sampling not supported or error: {}",
                    e["message"].as_str().unwrap_or("")
                ))]),
            }
        }
        "test_elicitation" => {
            let message = args["message"].as_str().unwrap_or("").to_owned();
            let schema = json!({"type": "object", "properties": {"username": {"type": "string", "description": "User's response"}, "email": {"type": "string", "description": "User's email address"}}, "required": ["username", "email"]});
            elicit(s, message, schema, "User response")
        }
        "test_elicitation_sep1034_defaults" => elicit(
            s,
            "Please review and update the form fields with defaults".into(),
            json!({"type": "object", "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "description": "Verification status", "default": true}
        }, "required": []}),
            "Elicitation completed",
        ),
        "test_elicitation_sep1330_enums" => elicit(
            s,
            "Please select options from the enum fields".into(),
            json!({"type": "object", "properties": {
            "untitledSingle": {"type": "string", "description": "Select one option", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "description": "Select one option with titles", "oneOf": [{"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"}, {"const": "value3", "title": "Third Option"}]},
            "legacyEnum": {"type": "string", "description": "Select one option (legacy)", "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "description": "Select multiple options", "minItems": 1, "maxItems": 3, "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "description": "Select multiple options with titles", "minItems": 1, "maxItems": 3, "items": {"anyOf": [{"const": "value1", "title": "First Choice"}, {"const": "value2", "title": "Second Choice"}, {"const": "value3", "title": "Third Choice"}]}}
        }, "required": []}),
            "Elicitation completed",
        ),
        "json_schema_2020_12_tool" => content(vec![text(format!(
            "JSON Schema 2020-12 tool called with: {args}"
        ))]),
        "test_missing_capability"
        | "test_input_required_result_sampling"
        | "test_input_required_result_capabilities" => {
            let r = sample(s, "What is the capital of France?")?;
            content(vec![text(format!("Sampling result: {r}"))])
        }
        "test_streaming_elicitation" | "test_input_required_result_elicitation" => {
            let r = ask_field(s, "What is your name?", "name")?;
            content(vec![text(format!("Hello, {r}!"))])
        }
        "test_logging_tool" => {
            s.log("info", "test_logging_tool ran");
            content(vec![text("logged")])
        }
        "test_trigger_tool_change" => {
            s.extra_tool.fetch_xor(true, Ordering::Relaxed);
            if !s.quiet_lists {
                s.notify("notifications/tools/list_changed", json!({}));
            }
            content(vec![text("tool list changed")])
        }
        "test_trigger_prompt_change" => {
            s.extra_prompt.fetch_xor(true, Ordering::Relaxed);
            s.notify("notifications/prompts/list_changed", json!({}));
            content(vec![text("prompt list changed")])
        }
        "test_dynamic_tool" => content(vec![text("dynamic")]),
        "test_touch_resource" => {
            s.notify(
                "notifications/resources/updated",
                json!({"uri": "test://watched-resource"}),
            );
            content(vec![text("touched")])
        }
        "test_param_header" => content(vec![text(format!(
            "region: {}",
            args["region"].as_str().unwrap_or("")
        ))]),
        "test_input_required_result_list_roots" => {
            let roots = s.ask("roots/list", json!({})).map_err(asked)?;
            content(vec![text(format!("roots: {}", roots["roots"]))])
        }
        "test_input_required_result_request_state"
        | "test_input_required_result_tampered_state" => {
            let r = s.ask("elicitation/create", json!({"message": "Please confirm", "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}})).map_err(asked)?;
            let ok = r.pointer("/content/ok").and_then(Value::as_bool) == Some(true);
            content(vec![text(if ok {
                "state-ok: confirmed"
            } else {
                "not confirmed"
            })])
        }
        "test_input_required_result_multi_round" => {
            let name = ask_field(s, "What is your name?", "name")?;
            let color = ask_field(s, "What is your favourite color?", "color")?;
            content(vec![text(format!("{name} likes {color}"))])
        }
        "test_input_required_result_multiple_inputs" => {
            // All three at once, each on its own thread, as a server with three questions would.
            let s2: &Server = s;
            let (name, greeting, roots) = std::thread::scope(|scope| {
                let name = scope.spawn(|| ask_field(s2, "What is your name?", "name"));
                let greeting = scope.spawn(|| sample(s2, "Say hello"));
                let roots = scope.spawn(|| s2.ask("roots/list", json!({})).map_err(asked));
                (name.join(), greeting.join(), roots.join())
            });
            let joined = |r: std::thread::Result<Result<String, (i64, String)>>| {
                r.unwrap_or_else(|_| Err((-32603, "panicked".into())))
            };
            let name = joined(name)?;
            let greeting = joined(greeting)?;
            let roots = roots.unwrap_or_else(|_| Err((-32603, "panicked".into())))?;
            content(vec![text(format!(
                "{name} / {greeting} / {}",
                roots["roots"]
            ))])
        }
        other => Err((-32602, format!("Unknown tool: {other}"))),
    }
}

fn asked(e: Value) -> (i64, String) {
    (
        e["code"].as_i64().unwrap_or(-32603),
        e["message"]
            .as_str()
            .unwrap_or("the client refused")
            .to_owned(),
    )
}

/// Asks the client for one string field by elicitation.
fn ask_field(s: &Server, message: &str, field: &str) -> Result<String, (i64, String)> {
    let r = s
        .ask(
            "elicitation/create",
            json!({"message": message, "requestedSchema": {"type": "object", "properties": {field: {"type": "string"}}, "required": [field]}}),
        )
        .map_err(asked)?;
    Ok(r.pointer(&format!("/content/{field}"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned())
}

/// Asks the client's model by sampling; the text it answered.
fn sample(s: &Server, question: &str) -> Result<String, (i64, String)> {
    let r = s
        .ask(
            "sampling/createMessage",
            json!({"messages": [{"role": "user", "content": {"type": "text", "text": question}}], "maxTokens": 50}),
        )
        .map_err(asked)?;
    Ok(r.pointer("/content/text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned())
}

fn elicit(s: &Server, message: String, schema: Value, label: &str) -> Result<Value, (i64, String)> {
    match s.ask(
        "elicitation/create",
        json!({"message": message, "requestedSchema": schema}),
    ) {
        Ok(r) => Ok(
            json!({"content": [text(format!("{label}: action={}, content={}", r["action"].as_str().unwrap_or(""), r.get("content").cloned().unwrap_or(json!({}))))]}),
        ),
        Err(e) => Ok(
            json!({"content": [text(format!("Elicitation failed: {}", e["message"].as_str().unwrap_or("")))], "isError": true}),
        ),
    }
}

fn resources() -> Value {
    json!([
        {"uri": "test://static-text", "name": "static-text", "title": "Static Text Resource", "description": "A static text resource for testing", "mimeType": "text/plain"},
        {"uri": "test://static-binary", "name": "static-binary", "title": "Static Binary Resource", "description": "A static binary resource (image) for testing", "mimeType": "image/png"},
        {"uri": "test://watched-resource", "name": "watched-resource", "title": "Watched Resource", "description": "A resource that can be subscribed to", "mimeType": "text/plain"},
    ])
}

fn read_resource(uri: &str) -> Result<Value, (i64, String)> {
    let one = |c: Value| Ok(json!({"contents": [c]}));
    match uri {
        "test://static-text" => one(
            json!({"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."}),
        ),
        "test://static-binary" => {
            one(json!({"uri": uri, "mimeType": "image/png", "blob": PNG_B64}))
        }
        "test://watched-resource" => {
            one(json!({"uri": uri, "mimeType": "text/plain", "text": "Watched resource content"}))
        }
        _ => match uri
            .strip_prefix("test://template/")
            .and_then(|r| r.strip_suffix("/data"))
        {
            Some(id) => one(
                json!({"uri": uri, "mimeType": "application/json", "text": json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")}).to_string()}),
            ),
            None => Err((-32002, format!("Resource not found: {uri}"))),
        },
    }
}

fn prompts(s: &Server) -> Value {
    let mut list = base_prompts();
    if let Some(l) = list.as_array_mut() {
        l.push(json!({"name": "test_input_required_result_prompt", "description": "Asks the user for context by elicitation while the prompt is built"}));
        if s.extra_prompt.load(Ordering::Relaxed) {
            l.push(json!({"name": "test_dynamic_prompt", "description": "Appears and disappears with test_trigger_prompt_change"}));
        }
    }
    list
}

fn base_prompts() -> Value {
    json!([
        {"name": "test_simple_prompt", "title": "Simple Test Prompt", "description": "A simple prompt without arguments"},
        {"name": "test_prompt_with_arguments", "title": "Prompt With Arguments", "description": "A prompt with required arguments",
         "arguments": [{"name": "arg1", "description": "First test argument", "required": true}, {"name": "arg2", "description": "Second test argument", "required": true}]},
        {"name": "test_prompt_with_embedded_resource", "title": "Prompt With Embedded Resource", "description": "A prompt that includes an embedded resource",
         "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]},
        {"name": "test_prompt_with_image", "title": "Prompt With Image", "description": "A prompt that includes image content"},
    ])
}

fn get_prompt(s: &Server, params: &Value) -> Result<Value, (i64, String)> {
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    let user = |content: Value| json!({"role": "user", "content": content});
    let messages = match params["name"].as_str().unwrap_or("") {
        "test_simple_prompt" => vec![user(text("This is a simple prompt for testing."))],
        "test_prompt_with_arguments" => vec![user(text(format!(
            "Prompt with arguments: arg1='{}', arg2='{}'",
            args["arg1"].as_str().unwrap_or(""),
            args["arg2"].as_str().unwrap_or("")
        )))],
        "test_prompt_with_embedded_resource" => vec![
            user(
                json!({"type": "resource", "resource": {"uri": args["resourceUri"].as_str().unwrap_or("test://example-resource"), "mimeType": "text/plain", "text": "Embedded resource content for testing."}}),
            ),
            user(text("Please process the embedded resource above.")),
        ],
        "test_prompt_with_image" => vec![
            user(json!({"type": "image", "data": PNG_B64, "mimeType": "image/png"})),
            user(text("Please analyze the image above.")),
        ],
        "test_input_required_result_prompt" => {
            let context = ask_field(s, "What context should the prompt use?", "context")?;
            vec![user(text(format!("Prompt with context: {context}")))]
        }
        "test_dynamic_prompt" => vec![user(text("dynamic"))],
        other => return Err((-32602, format!("Unknown prompt: {other}"))),
    };
    Ok(json!({"messages": messages}))
}

fn handle(s: &Server, method: &str, params: &Value) -> Result<Value, (i64, String)> {
    match method {
        "initialize" => {
            let asked = params["protocolVersion"].as_str().unwrap_or("");
            let version =
                if ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"].contains(&asked) {
                    asked
                } else {
                    "2025-11-25"
                };
            Ok(json!({
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true, "listChanged": true}, "prompts": {"listChanged": true}, "logging": {}, "completions": {}},
                "serverInfo": {"name": "mcp-conformance-test-server", "version": "1.0.0"},
            }))
        }
        "ping" | "resources/subscribe" | "resources/unsubscribe" => Ok(json!({})),
        "logging/setLevel" => {
            let level = params["level"].as_str().unwrap_or("info");
            *s.level.lock().unwrap() = LEVELS.iter().position(|l| *l == level).unwrap_or(1);
            s.log(level, &format!("Log level set to: {level}"));
            Ok(json!({}))
        }
        "tools/list" => Ok(json!({"tools": tools(s)})),
        "tools/call" => call_tool(s, params),
        "resources/list" => Ok(json!({"resources": resources()})),
        "resources/templates/list" => Ok(
            json!({"resourceTemplates": [{"uriTemplate": "test://template/{id}/data", "name": "template", "title": "Resource Template", "description": "A resource template with parameter substitution", "mimeType": "application/json"}]}),
        ),
        "resources/read" => read_resource(params["uri"].as_str().unwrap_or("")),
        "prompts/list" => Ok(json!({"prompts": prompts(s)})),
        "prompts/get" => get_prompt(s, params),
        "completion/complete" => {
            Ok(json!({"completion": {"values": [], "total": 0, "hasMore": false}}))
        }
        other => Err((-32601, format!("Method not found: {other}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// MCP 2026-07-28 (`--stateless`)

fn complete(mut v: Value) -> Value {
    v["resultType"] = json!("complete");
    v
}

/// A result with the 2026-07-28 cache hints.
fn cached(mut v: Value) -> Value {
    v["resultType"] = json!("complete");
    v["ttlMs"] = json!(0);
    v["cacheScope"] = json!("private");
    v
}

fn input_required(requests: Value, state: Option<&str>) -> Value {
    let mut v = json!({"resultType": "input_required", "inputRequests": requests});
    if let Some(st) = state {
        v["requestState"] = json!(st);
    }
    v
}

fn elicit_request(message: &str, field: &str, kind: &str) -> Value {
    json!({"method": "elicitation/create", "params": {"message": message, "requestedSchema": {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}}})
}

fn sample_request(question: &str) -> Value {
    json!({"method": "sampling/createMessage", "params": {"messages": [{"role": "user", "content": {"type": "text", "text": question}}], "maxTokens": 50}})
}

fn texts(t: String) -> Value {
    complete(json!({"content": [text(t)]}))
}

/// One 2026-07-28 request. `Ok(None)`: no answer (an open `subscriptions/listen`).
fn handle_stateless(
    s: &Server,
    id: &Value,
    method: &str,
    params: &Value,
) -> Result<Option<Value>, Value> {
    let err = |code: i64, message: String| json!({"code": code, "message": message});
    let legacy = |r: Result<Value, (i64, String)>| r.map_err(|(c, m)| err(c, m));
    let caps = params
        .pointer("/_meta/io.modelcontextprotocol~1clientCapabilities")
        .cloned()
        .unwrap_or(json!({}));
    let responses = params.get("inputResponses").and_then(Value::as_object);
    let got = |k: &str| {
        responses
            .and_then(|r| r.get(k))
            .filter(|v| v.is_object())
            .cloned()
    };
    let field = |k: &str, f: &str| {
        got(k).map(|v| {
            v.pointer(&format!("/content/{f}"))
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned()
        })
    };
    let state = params.get("requestState").and_then(Value::as_str);
    let name = params["name"].as_str().unwrap_or("");
    let answer = match method {
        "initialize" => {
            return Err(
                json!({"code": -32022, "message": "this server speaks only 2026-07-28", "data": {"supported": ["2026-07-28"], "requested": params["protocolVersion"]}}),
            );
        }
        "server/discover" if s.quiet_lists => cached(json!({
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}, "resources": {}, "prompts": {}, "completions": {}},
        })),
        "server/discover" => cached(json!({
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {"listChanged": true}, "resources": {"listChanged": true}, "prompts": {"listChanged": true}, "logging": {}, "completions": {}},
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "mcp-conformance-test-server", "version": "1.0.0"}},
        })),
        "subscriptions/listen" => {
            s.notify("notifications/subscriptions/acknowledged", json!({"_meta": {"io.modelcontextprotocol/subscriptionId": id}, "notifications": params["notifications"]}));
            return Ok(None);
        }
        "tools/list" if s.quiet_lists => {
            let mut v = cached(json!({"tools": tools(s)}));
            v["ttlMs"] = json!(1000);
            v
        }
        "tools/list" => cached(json!({"tools": tools(s)})),
        "resources/list" => cached(json!({"resources": resources()})),
        "resources/templates/list" => cached(legacy(handle(s, method, params))?),
        "prompts/list" => cached(json!({"prompts": prompts(s)})),
        "resources/read" => {
            let uri = params["uri"].as_str().unwrap_or("");
            match read_resource(uri) {
                Ok(v) => cached(v),
                Err((_, m)) => {
                    return Err(json!({"code": -32602, "message": m, "data": {"uri": uri}}));
                }
            }
        }
        "completion/complete" => complete(legacy(handle(s, method, params))?),
        "prompts/get" if name == "test_input_required_result_prompt" => {
            match field("user_context", "context") {
                Some(c) => complete(
                    json!({"messages": [{"role": "user", "content": text(format!("Prompt with context: {c}"))}]}),
                ),
                None => input_required(
                    json!({"user_context": elicit_request("What context should the prompt use?", "context", "string")}),
                    None,
                ),
            }
        }
        "prompts/get" => complete(legacy(get_prompt(s, params))?),
        "tools/call" => match name {
            "test_input_required_result_elicitation" | "test_streaming_elicitation" => {
                match field("user_name", "name") {
                    Some(n) => texts(format!("Hello, {n}!")),
                    None => input_required(
                        json!({"user_name": elicit_request("What is your name?", "name", "string")}),
                        None,
                    ),
                }
            }
            "test_missing_capability" if caps.get("sampling").is_none() => {
                return Err(
                    json!({"code": -32021, "message": "this tool needs the sampling capability", "data": {"requiredCapabilities": {"sampling": {}}}}),
                );
            }
            "test_missing_capability" | "test_input_required_result_sampling" => {
                match got("sample_request") {
                    Some(v) => texts(format!(
                        "Sampling result: {}",
                        v.pointer("/content/text")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    )),
                    None => input_required(
                        json!({"sample_request": sample_request("What is the capital of France?")}),
                        None,
                    ),
                }
            }
            "test_input_required_result_list_roots" => match got("roots_request") {
                Some(v) => texts(format!("roots: {}", v["roots"])),
                None => input_required(json!({"roots_request": {"method": "roots/list"}}), None),
            },
            "test_input_required_result_request_state"
            | "test_input_required_result_tampered_state" => {
                let expected = if name.ends_with("tampered_state") {
                    "tamper-test"
                } else {
                    "rs-confirm"
                };
                match (state, got("confirm")) {
                    (Some(st), Some(v)) if st == expected => texts(format!(
                        "state-ok: ok={}",
                        v.pointer("/content/ok").unwrap_or(&Value::Null)
                    )),
                    _ => input_required(
                        json!({"confirm": elicit_request("Please confirm", "ok", "boolean")}),
                        Some(expected),
                    ),
                }
            }
            "test_input_required_result_multiple_inputs" => match (
                state,
                field("user_name", "name"),
                got("greeting"),
                got("client_roots"),
            ) {
                (Some("multi"), Some(n), Some(g), Some(r)) => texts(format!(
                    "{n} / {} / {}",
                    g.pointer("/content/text")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    r["roots"]
                )),
                _ => input_required(
                    json!({
                        "user_name": elicit_request("What is your name?", "name", "string"),
                        "greeting": sample_request("Say hello"),
                        "client_roots": {"method": "roots/list"},
                    }),
                    Some("multi"),
                ),
            },
            "test_input_required_result_multi_round" => match state {
                Some("round1") if got("step1").is_some() => {
                    let n = field("step1", "name").unwrap_or_default();
                    input_required(
                        json!({"step2": elicit_request("What is your favourite color?", "color", "string")}),
                        Some(&format!("round2:{n}")),
                    )
                }
                Some(st) if st.starts_with("round2:") && got("step2").is_some() => texts(format!(
                    "{} likes {}",
                    &st[7..],
                    field("step2", "color").unwrap_or_default()
                )),
                _ => input_required(
                    json!({"step1": elicit_request("What is your name?", "name", "string")}),
                    Some("round1"),
                ),
            },
            "test_input_required_result_capabilities" => {
                if responses.is_some_and(|r| !r.is_empty()) {
                    texts("capabilities-ok".into())
                } else {
                    let mut asks = serde_json::Map::new();
                    if caps.get("elicitation").is_some() {
                        asks.insert(
                            "elicit_input".into(),
                            elicit_request("What is your name?", "name", "string"),
                        );
                    }
                    if caps.get("sampling").is_some() {
                        asks.insert("sample_input".into(), sample_request("Say hello"));
                    }
                    if asks.is_empty() {
                        texts("No supported capabilities declared".into())
                    } else {
                        input_required(Value::Object(asks), None)
                    }
                }
            }
            _ => complete(legacy(call_tool(s, params))?),
        },
        other => return Err(err(-32601, format!("Method not found: {other}"))),
    };
    Ok(Some(answer))
}

fn main() {
    let server = Arc::new(Server {
        out: Mutex::new(std::io::stdout()),
        waiting: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
        level: Mutex::new(0),
        extra_tool: AtomicBool::new(false),
        extra_prompt: AtomicBool::new(false),
        stateless: std::env::args().any(|a| a == "--stateless"),
        quiet_lists: std::env::args().any(|a| a == "--quiet-lists"),
    });
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let id = msg.get("id").cloned();
        match (msg.get("method").and_then(Value::as_str), id) {
            (Some(method), Some(id)) => {
                let (server, method, params) = (
                    server.clone(),
                    method.to_owned(),
                    msg.get("params").cloned().unwrap_or(json!({})),
                );
                std::thread::spawn(move || {
                    if server.stateless {
                        let reply = match handle_stateless(&server, &id, &method, &params) {
                            Ok(None) => return,
                            Ok(Some(r)) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
                            Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e}),
                        };
                        server.send(&reply);
                        return;
                    }
                    let reply = match handle(&server, &method, &params) {
                        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
                        Err((code, message)) => {
                            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
                        }
                    };
                    server.send(&reply);
                });
            }
            (None, Some(id)) => {
                let key = id
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| id.to_string());
                if let Some(tx) = server.waiting.lock().unwrap().remove(&key) {
                    let answer = match msg.get("error") {
                        Some(e) => Err(e.clone()),
                        None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
                    };
                    let _ = tx.send(answer);
                }
            }
            _ => {}
        }
    }
}
