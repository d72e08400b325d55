//! Protocol eras through one bridge: 2026-07-28 (stateless) and 2025 clients against 2025
//! upstreams, with real third-party clients (the Python SDK, pinned in tests/compat/install.sh)
//! and raw HTTP for what the bridge itself promises of a `requestState`.

use std::time::Duration;

use mcp_bridge_tests::*;
use serde_json::{Value, json};

use crate::compat::matrix;

/// server-everything (a third-party 2025 server) and fixture-everything (ours, with the
/// 2026-07-28 scenario tools written the 2025 way), under prefixes `everything` and `fx`.
pub(crate) fn two_upstreams(tp: &ThirdParty) -> String {
    format!(
        "{}[[upstream]]\nname = \"fx\"\ncommand = {:?}\npin = \"warn\"\n",
        tp.node_entry("everything", &tp.everything(), &["stdio"], ""),
        bin("fixture-everything").display().to_string()
    )
}

/// fixture-everything as upstream `fx`, with `args`; pinned in `warn` mode like every fixture
/// (its list-change trigger adds a tool).
fn fx_entry(args: &[&str]) -> String {
    format!(
        "[[upstream]]\nname = \"fx\"\ncommand = {:?}\nargs = {args:?}\npin = \"warn\"\n",
        bin("fixture-everything").display().to_string()
    )
}

/// A third-party SDK client script: tests/compat/py_client.py or tests/js/ts2-client.mjs.
#[derive(Clone, Copy)]
pub(crate) enum Sdk {
    Python,
    TypeScript,
}

impl Sdk {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Sdk::Python => "Python SDK client mcp 2.3.0",
            Sdk::TypeScript => "TypeScript SDK client @modelcontextprotocol/client 2.4.0",
        }
    }

    /// How a list change shows in the script's report.
    fn event(self) -> &'static str {
        match self {
            Sdk::Python => "ToolsListChanged",
            Sdk::TypeScript => "notifications/tools/list_changed",
        }
    }
}

/// Runs the `sdk` client script with `args` (`URL MODE`, or `stdio MODE COMMAND…`); its
/// JSON report.
pub(crate) async fn sdk_client(tp: &ThirdParty, sdk: Sdk, args: &[&str]) -> Value {
    sdk_client_with(tp, sdk, args, None).await
}

/// [`sdk_client`] with `MCP_COMPAT_TOOLS` naming the tools of the sum, sampling and elicitation
/// calls.
async fn sdk_client_with(tp: &ThirdParty, sdk: Sdk, args: &[&str], tools: Option<&Value>) -> Value {
    let mut cmd = match sdk {
        Sdk::Python => {
            let mut c = tokio::process::Command::new(tp.python());
            c.arg(tp.root.join("tests/compat/py_client.py"));
            c
        }
        Sdk::TypeScript => {
            let mut c = tokio::process::Command::new(tp.node());
            c.arg(tp.root.join("tests/js/ts2-client.mjs"));
            c
        }
    };
    if let Some(t) = tools {
        cmd.env("MCP_COMPAT_TOOLS", t.to_string());
    }
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        cmd.args(args).kill_on_drop(true).output(),
    )
    .await
    .expect("the client finished within 90 s")
    .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        sdk.label(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} printed no JSON ({e}): {}",
            sdk.label(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Checks one client run against the two 2025 upstreams: the catalog, a call, sampling and
/// elicitation relayed (input_required rounds for a 2026-07-28 client, requests on its stream
/// for a 2025 one), two input rounds, and for 2026-07-28 a list change on subscriptions/listen.
pub(crate) fn check_report(sdk: Sdk, mode: &str, tools: usize, r: &Value) {
    check_report_of(sdk, mode, tools, r, "The sum of 2 and 3 is 5.", "Name: Ada");
}

fn check_report_of(sdk: Sdk, mode: &str, tools: usize, r: &Value, sum: &str, elicited_has: &str) {
    let want_version = if mode == "legacy" { "2025-11-25" } else { mode };
    assert_eq!(r["version"], want_version, "{r}");
    assert_eq!(r["tools"], tools, "the same catalog in both eras: {r}");
    assert_eq!(r["sum"], sum, "{r}");
    let sampled = r["sampling"].as_str().unwrap_or("");
    assert!(sampled.contains("sampled by the"), "{r}");
    let elicited = r["elicitation"].as_str().unwrap_or("");
    assert!(elicited.contains(elicited_has), "{r}");
    // Two questions one after the other: two rounds, each with its own requestState.
    assert!(
        r["multi_round"]
            .as_str()
            .unwrap_or("")
            .starts_with("Ada likes"),
        "{r}"
    );
    if mode == "legacy" {
        assert!(r.get("event").is_none(), "{r}");
    } else {
        assert_eq!(r["honored"], json!(["toolsListChanged"]), "{r}");
        assert_eq!(r["event"], sdk.event(), "{r}");
    }
}

pub(crate) fn pairing(mode: &str) -> &'static str {
    if mode == "legacy" {
        ""
    } else {
        ", subscriptions/listen"
    }
}

#[tokio::test]
async fn sdk_clients_of_both_eras_work_against_2025_upstreams_over_http_and_the_shim() {
    let tp = ThirdParty::get();
    let (b, c) = bridge_with(&two_upstreams(tp), 2).await;
    let shim = bin("mcp-bridge-shim").display().to_string();
    for sdk in [Sdk::Python, Sdk::TypeScript] {
        // The 2026-07-28 run toggles a tool (its list-change trigger), so the count is taken
        // afresh before each run.
        for mode in ["legacy", "2026-07-28"] {
            let tools = c.tool_names().await.len();
            let r = sdk_client(tp, sdk, &[&b.url, mode]).await;
            check_report(sdk, mode, tools, &r);
            matrix(&format!(
                "| bridge ({mode} client, HTTP) | {} | tools/list {tools}, call, sampling, elicitation, two input rounds{} | 2025: server-everything 2026.8.31, fixture | pass |",
                sdk.label(),
                pairing(mode)
            ));
        }
    }
    // A stdio client through the shim, in each era (the Python SDK launches stdio servers).
    for mode in ["legacy", "2026-07-28"] {
        let tools = c.tool_names().await.len();
        let r = sdk_client(tp, Sdk::Python, &["stdio", mode, &shim, "--url", &b.url]).await;
        check_report(Sdk::Python, mode, tools, &r);
        matrix(&format!(
            "| shim ({mode} client, stdio) | {} | tools/list {tools}, call, sampling, elicitation, two input rounds{} | 2025: server-everything 2026.8.31, fixture | pass |",
            Sdk::Python.label(),
            pairing(mode)
        ));
    }
}

#[tokio::test]
async fn clients_of_both_eras_work_against_upstreams_that_speak_only_2026_07_28() {
    let tp = ThirdParty::get();
    // The TypeScript SDK 2.4.0 server, 2026-07-28 only (initialize refused, GET/DELETE 405).
    let ts_port = free_port();
    let mut ts = std::process::Command::new(tp.node());
    ts.arg(tp.root.join("tests/js/ts2-server.mjs"))
        .arg(ts_port.to_string());
    let ts = Proc::spawn(ts);
    ts.wait_log("the TypeScript server to listen", |l| {
        l.contains("listening")
    })
    .await;
    // The Python SDK 2.3.0 server, which serves both eras (the bridge's probe picks 2026-07-28).
    let py_port = free_port();
    let mut py = std::process::Command::new(tp.python());
    py.arg(tp.py_server()).arg("http").arg(py_port.to_string());
    let py = Proc::spawn(py);
    py.wait_log("the Python server to listen", |l| {
        l.contains("Uvicorn running")
    })
    .await;
    // And our fixture over stdio, 2026-07-28 only: it refuses initialize with -32022.
    let config = format!(
        "[[upstream]]\nname = \"ts2\"\nurl = \"http://127.0.0.1:{ts_port}/mcp\"\n\n[[upstream]]\nname = \"py\"\nurl = \"http://127.0.0.1:{py_port}/mcp\"\n\n[[upstream]]\nname = \"fx\"\ncommand = {:?}\nargs = [\"--stateless\"]\npin = \"warn\"\n",
        bin("fixture-everything").display().to_string()
    );
    let (b, c) = bridge_with(&config, 3).await;
    let status = b.status().await;
    for u in status["upstreams"].as_array().unwrap() {
        assert_eq!(u["protocol_version"], "2026-07-28", "{u}");
    }
    // A 2025 session calls each of them.
    let sum = c.call_tool("py__add", json!({"a": 2, "b": 3})).await;
    assert_eq!(text_of(&sum), "5", "{sum}");
    let read = c
        .request("resources/read", json!({"uri": "ts2+demo://ts2"}))
        .await;
    assert_eq!(
        read["result"]["contents"][0]["text"], "ts2 resource",
        "{read}"
    );
    let prompt = c
        .request(
            "prompts/get",
            json!({"name": "ts2__greet", "arguments": {"name": "Bob"}}),
        )
        .await;
    assert_eq!(
        prompt["result"]["messages"][0]["content"]["text"], "Please greet Bob.",
        "{prompt}"
    );
    // A 2026-07-28 client reads and gets a prompt from them too.
    let read = modern_post(
        &b.url,
        "m",
        "",
        "resources/read",
        json!({"uri": "ts2+demo://ts2"}),
    )
    .await;
    assert_eq!(
        read["result"]["contents"][0]["text"], "ts2 resource",
        "{read}"
    );
    assert_eq!(read["result"]["resultType"], "complete", "{read}");
    let prompt = modern_post(
        &b.url,
        "m",
        "",
        "prompts/get",
        json!({"name": "ts2__greet", "arguments": {"name": "Bob"}}),
    )
    .await;
    assert_eq!(
        prompt["result"]["messages"][0]["content"]["text"], "Please greet Bob.",
        "{prompt}"
    );
    // The SDK clients in both eras: input_required from the upstream answered by each client
    // (real requests for a 2025 client, the bridge's own rounds under the upstream's keys for a
    // 2026-07-28 one).
    let tools = json!({
        "sum": ["ts2__add", {"a": 2, "b": 3}],
        "sampling": ["fx__test_input_required_result_sampling", {}],
        "elicitation": ["ts2__ask-name", {}],
    });
    for sdk in [Sdk::Python, Sdk::TypeScript] {
        for mode in ["legacy", "2026-07-28"] {
            let count = c.tool_names().await.len();
            let r = sdk_client_with(tp, sdk, &[&b.url, mode], Some(&tools)).await;
            check_report_of(sdk, mode, count, &r, "sum: 5", "Hello, Ada!");
            matrix(&format!(
                "| bridge ({mode} client, HTTP) | {} | tools/list {count}, call, sampling, elicitation, two input rounds{} | 2026-07-28 only: TypeScript SDK server 2.4.0 (HTTP), fixture --stateless (stdio); both eras: Python SDK server 2.3.0 (HTTP, spoken 2026-07-28) | pass |",
                sdk.label(),
                pairing(mode)
            ));
        }
    }
    drop((ts, py));
}

/// A 2026-07-28 POST, as a client of `client` with `auth` would send it.
pub(crate) async fn modern_post(
    url: &str,
    client: &str,
    auth: &str,
    method: &str,
    params: Value,
) -> Value {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": { "elicitation": {} },
        "io.modelcontextprotocol/clientInfo": { "name": client, "version": "1" },
    });
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .header("authorization", auth)
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }))
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_request_state_answers_only_the_client_it_was_issued_to() {
    let b = Bridge::builder().config(&fx_entry(&[])).start().await;
    b.wait_ready(1).await;
    let call = |client: &'static str, extra: Value| {
        let mut params =
            json!({ "name": "fx__test_input_required_result_elicitation", "arguments": {} });
        if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        modern_post(&b.url, client, "Bearer tok", "tools/call", params)
    };
    let first = call("client-a", json!({})).await;
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let requests = first["result"]["inputRequests"].as_object().unwrap();
    let (key, request) = requests.iter().next().unwrap();
    assert_eq!(request["method"], "elicitation/create", "{first}");
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    let answer = json!({ key.clone(): { "action": "accept", "content": { "name": "Alice" } } });
    // Another client presenting the same state, or the state altered: refused, and the call
    // stays waiting for its own client.
    let other = call(
        "client-b",
        json!({ "requestState": state, "inputResponses": answer }),
    )
    .await;
    assert_eq!(other["error"]["code"], -32602, "{other}");
    assert!(
        other["error"]["message"]
            .as_str()
            .unwrap()
            .contains("integrity"),
        "{other}"
    );
    let stolen = modern_post(
        &b.url,
        "client-a",
        "Bearer someone-else",
        "tools/call",
        json!({ "name": "fx__test_input_required_result_elicitation", "arguments": {}, "requestState": state, "inputResponses": answer }),
    )
    .await;
    assert_eq!(
        stolen["error"]["code"], -32602,
        "other credentials: {stolen}"
    );
    let mut altered = state.clone();
    altered.replace_range(6..7, if &state[6..7] == "9" { "8" } else { "9" });
    let tampered = call(
        "client-a",
        json!({ "requestState": altered, "inputResponses": answer }),
    )
    .await;
    assert_eq!(tampered["error"]["code"], -32602, "{tampered}");
    let done = call(
        "client-a",
        json!({ "requestState": state, "inputResponses": answer }),
    )
    .await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(
        done["result"]["content"][0]["text"], "Hello, Alice!",
        "{done}"
    );
    // Used once: the call it named has finished.
    let again = call(
        "client-a",
        json!({ "requestState": state, "inputResponses": answer }),
    )
    .await;
    assert_eq!(again["error"]["code"], -32602, "{again}");
    matrix(
        "| bridge (2026-07-28 raw HTTP) | requestState bound to its client, tamper-evident, single use | | fixture (2025) | pass |",
    );
}

#[tokio::test]
async fn modern_traffic_gets_405_for_get_and_delete_and_2025_sessions_are_untouched() {
    let (b, c) = bridge_with(&fixture_entry("s", &[]), 1).await;
    let http = reqwest::Client::new();
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = http
            .request(method.clone(), &b.url)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(
            r.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some("POST, OPTIONS")
        );
    }
    // A 2025 session on the same endpoint still lists and calls.
    assert!(!c.tool_names().await.is_empty());
    // Removed methods are 404 / -32601 to modern clients.
    let r = http
        .post(&b.url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .json(
            &json!({"jsonrpc": "2.0", "id": 7, "method": "ping", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32601, "{v}");
    assert_eq!(v["id"], 7, "{v}");
}

#[tokio::test]
async fn an_mcp_param_header_must_agree_with_the_argument_it_mirrors() {
    let (b, _c) = bridge_with(&fx_entry(&[]), 1).await;
    let call = async |header: Option<&str>| {
        let mut req = reqwest::Client::new()
            .post(&b.url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "fx__test_param_header");
        if let Some(h) = header {
            req = req.header("mcp-param-region", h);
        }
        let resp = req
            .json(
                &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
                "name": "fx__test_param_header", "arguments": {"region": "eu-west1"},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {}}}}),
            )
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap())
    };
    let (status, v) = call(Some("us-east1")).await;
    assert_eq!((status, &v["error"]["code"]), (400, &json!(-32020)), "{v}");
    let (status, v) = call(Some("eu-west1")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "region: eu-west1", "{v}");
    // The base64 form is decoded before comparing; an absent header is let through.
    let (status, v) = call(Some("=?base64?ZXUtd2VzdDE=?=")).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(None).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn a_listen_stream_gets_the_updates_of_the_resources_it_subscribed_to() {
    use futures_util::StreamExt;
    let (b, c) = bridge_with(&fx_entry(&[]), 1).await;
    let uri = "fx+test://watched-resource";
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}});
    let resp = reqwest::Client::new()
        .post(&b.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .json(&json!({"jsonrpc": "2.0", "id": "listen-1", "method": "subscriptions/listen", "params": {
            "_meta": meta, "notifications": {"resourceSubscriptions": [uri]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut next_event = async || -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = buf
                .lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .map(str::to_owned)
            {
                let end = buf.find(&line).unwrap() + line.len();
                buf.drain(..end);
                return serde_json::from_str(&line).unwrap();
            }
            let chunk = tokio::time::timeout_at(deadline, body.next())
                .await
                .expect("an event within 10 s")
                .expect("the stream stays open")
                .unwrap();
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let ack = next_event().await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!([uri]),
        "{ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "listen-1"
    );
    // A 2025 session makes the upstream say the resource changed.
    c.call_tool("fx__test_touch_resource", json!({})).await;
    let update = next_event().await;
    assert_eq!(
        update["method"], "notifications/resources/updated",
        "{update}"
    );
    assert_eq!(update["params"]["uri"], uri, "the exposed URI: {update}");
    assert_eq!(
        update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "listen-1"
    );
}

#[tokio::test]
async fn a_list_no_change_is_announced_for_is_relisted_when_its_ttl_says_it_is_stale() {
    // A 2026-07-28 upstream that announces no list changes but says its tool list is fresh for
    // one second: a tool it adds silently is listed by the bridge a second or so later.
    let (_b, c) = bridge_with(&fx_entry(&["--stateless", "--quiet-lists"]), 1).await;
    assert!(
        !c.tool_names()
            .await
            .iter()
            .any(|n| n == "fx__test_dynamic_tool")
    );
    c.call_tool("fx__test_trigger_tool_change", json!({})).await;
    c.wait_for_tool("fx__test_dynamic_tool", true).await;
}

#[tokio::test]
async fn a_modern_client_closing_its_request_cancels_the_call_upstream() {
    let b = Bridge::builder()
        .config(&fixture_entry("alpha", &[]))
        .start()
        .await;
    b.wait_ready(1).await;
    let url = b.url.clone();
    let call = tokio::spawn(async move {
        reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .json(
                &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
                "name": "alpha__sleep", "arguments": {"ms": 60000},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {}}}}),
            )
            .send()
            .await
    });
    b.wait_log("the call to reach the child", |l| {
        l.contains("fixture alpha sleeping 60000")
    })
    .await;
    // 2026-07-28 over HTTP: closing the exchange is the cancellation.
    call.abort();
    b.wait_log("the cancel forwarded with the upstream's id", |l| {
        l.contains("fixture alpha got cancel for request")
    })
    .await;
}
