//! The stdio shim in front of a real bridge: a client speaking stdio lines to the real shim
//! binary.

use std::process::Stdio;
use std::time::Duration;

use mcp_bridge_tests::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

struct Shim {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Shim {
    fn start(url: &str) -> Self {
        Self::start_with(url, &[])
    }

    fn start_with(url: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(bin("mcp-bridge-shim"))
            .args(["--url", url])
            .args(extra)
            .env("MCP_BRIDGE_CONFIG_DIR", "/nonexistent-mcpb-config")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    async fn send(&mut self, msg: Value) {
        let s = self.stdin.as_mut().unwrap();
        s.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
        s.flush().await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
            .await
            .expect("shim answered in time")
            .unwrap()
            .expect("a line");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carries only JSON-RPC: {line:?}: {e}"))
    }

    /// Receives until the response with `id`, keeping other messages.
    async fn recv_id(&mut self, id: Value, others: &mut Vec<Value>) -> Value {
        loop {
            let m = self.recv().await;
            if m.get("id") == Some(&id) && m.get("method").is_none() {
                return m;
            }
            others.push(m);
        }
    }

    async fn initialize(&mut self) {
        self.send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"desktop","version":"1"}}})).await;
        let r = self.recv().await;
        assert_eq!(r["result"]["protocolVersion"], "2025-06-18");
        self.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
    }
}

#[tokio::test]
async fn lists_and_calls_through_the_shim() {
    let b = Bridge::builder()
        .config(&fixture_entry("alpha", &[]))
        .start()
        .await;
    b.wait_ready(1).await;
    let mut shim = Shim::start(&b.url);
    shim.initialize().await;
    let mut others = Vec::new();
    shim.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    let list = shim.recv_id(json!(1), &mut others).await;
    assert!(
        list["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "alpha__echo")
    );
    shim.send(json!({"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"alpha__echo","arguments":{"message":"via shim"}}})).await;
    let r = shim.recv_id(json!("c"), &mut others).await;
    assert_eq!(text_of(&r), "[alpha] via shim");

    // 50 interleaved concurrent requests come back with the right ids.
    for i in 0..50 {
        let tool = if i % 3 == 0 { "sleep" } else { "echo" };
        shim.send(json!({"jsonrpc":"2.0","id":100 + i,"method":"tools/call","params":{"name":format!("alpha__{tool}"),"arguments":{"message":format!("m{i}"),"ms":30}}})).await;
    }
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 50 {
        let m = shim.recv().await;
        if let Some(id) = m.get("id").and_then(Value::as_i64) {
            seen.insert(id, text_of(&m));
        }
    }
    for i in 0..50 {
        let want = if i % 3 == 0 {
            "[alpha] slept 30".to_owned()
        } else {
            format!("[alpha] m{i}")
        };
        assert_eq!(seen[&(100 + i)], want);
    }

    // Server-initiated messages arrive on stdout through the GET stream.
    shim.send(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__add_tool","arguments":{"name":"late"}}})).await;
    let mut others = Vec::new();
    shim.recv_id(json!(2), &mut others).await;
    while !others
        .iter()
        .any(|m| m["method"] == "notifications/tools/list_changed")
    {
        others.push(shim.recv().await);
    }

    // stdin closes: the shim deletes its session and exits 0.
    assert_eq!(b.status().await["sessions"], 1);
    drop(shim.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(20), shim.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert_eq!(b.status().await["sessions"], 0);
}

#[tokio::test]
async fn a_missing_bridge_gets_a_clear_error() {
    // A port with nothing listening: bind and drop.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut shim = Shim::start_with(
        &format!("http://127.0.0.1:{port}/mcp"),
        &["--wait-secs", "0.5"],
    );
    shim.send(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"d","version":"1"}}})).await;
    let r = shim.recv().await;
    assert_eq!(r["id"], 1);
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("mcp-bridge serve"), "{msg}");
    shim.send(json!("not a request")).await;
    shim.stdin
        .as_mut()
        .unwrap()
        .write_all(b"{broken\n")
        .await
        .unwrap();
    let r = shim.recv().await;
    assert_eq!(r["error"]["code"], -32700);
    drop(shim.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(20), shim.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_bridge_restart_is_invisible_to_the_client() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let dir = TempDir::new("restart");
    let start = || {
        Bridge::builder()
            .in_dir(dir.path())
            .config(&fixture_entry("alpha", &[]))
            .env("MCP_BRIDGE_PORT", &port)
            .start()
    };
    let mut b = start().await;
    b.wait_ready(1).await;
    let mut shim = Shim::start(&b.url);
    shim.initialize().await;
    let mut others = Vec::new();
    shim.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    shim.recv_id(json!(1), &mut others).await;
    // One read-only and one non-idempotent call in flight when the bridge dies.
    shim.send(json!({"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"alpha__sleep","arguments":{"ms":1500}}})).await;
    shim.send(json!({"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"alpha__slow_write","arguments":{"ms":1500}}})).await;
    b.wait_log("the read at the child", |l| {
        l.contains("fixture alpha sleeping 1500")
    })
    .await;
    b.wait_log("the write at the child", |l| {
        l.contains("fixture alpha writing for 1500")
    })
    .await;
    signal(b.pid(), libc::SIGKILL);
    wait_exit(&mut b.child, Duration::from_secs(10));
    let b2 = start().await;
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 2 {
        let m = shim.recv().await;
        if let Some(id) = m.get("id").and_then(Value::as_i64) {
            answers.insert(id, m);
        }
    }
    assert_eq!(
        text_of(&answers[&10]),
        "[alpha] slept 1500",
        "read-only call retried: {}",
        answers[&10]
    );
    assert_eq!(answers[&11]["error"]["code"], -32003, "{}", answers[&11]);
    assert!(
        answers[&11]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("restarted")
    );
    // The session goes on as if nothing happened.
    shim.send(json!({"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"message":"after"}}})).await;
    let mut others = Vec::new();
    assert_eq!(
        text_of(&shim.recv_id(json!(12), &mut others).await),
        "[alpha] after"
    );
    assert_eq!(
        b2.status().await["sessions"],
        1,
        "one new session, not one per request"
    );
}

#[tokio::test]
async fn sampling_reaches_the_stdio_client_and_the_answer_goes_back() {
    let config = format!(
        "[[upstream]]\nname = \"ev\"\ncommand = {:?}\n",
        bin("fixture-everything").display().to_string()
    );
    let b = Bridge::builder().config(&config).start().await;
    b.wait_ready(1).await;
    let mut shim = Shim::start(&b.url);
    shim.send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"desktop","version":"1"}}})).await;
    shim.recv().await;
    shim.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    shim.send(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ev__test_sampling","arguments":{"prompt":"hello"}}})).await;
    let q = loop {
        let m = shim.recv().await;
        if m["method"] == "sampling/createMessage" {
            break m;
        }
    };
    assert_eq!(q["params"]["messages"][0]["content"]["text"], "hello");
    shim.send(json!({"jsonrpc":"2.0","id":q["id"],"result":{"role":"assistant","content":{"type":"text","text":"hi from desktop"},"model":"m"}})).await;
    let mut others = Vec::new();
    let r = shim.recv_id(json!(3), &mut others).await;
    assert_eq!(text_of(&r), "LLM response: hi from desktop");
}

#[tokio::test]
async fn the_official_typescript_sdk_client_works_through_the_shim() {
    // Node 22 and the pinned SDK are installed on first use (an install failure fails here).
    let tp = ThirdParty::get();
    let root = tp.root.clone();
    let node = tp.node();
    let sdk = root.join(".tools/compat/node_modules/@modelcontextprotocol/sdk");
    let b = Bridge::builder()
        .config(&fixture_entry("alpha", &[]))
        .start()
        .await;
    b.wait_ready(1).await;
    let out = tokio::process::Command::new(node)
        .arg(root.join("tests/js/sdk-client.mjs"))
        .arg(&sdk)
        .arg(bin("mcp-bridge-shim"))
        .arg(&b.url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["server"]["name"], "mcp-bridge");
    assert!(
        v["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "alpha__echo"),
        "{v}"
    );
    assert_eq!(v["echo"], "[alpha] from the sdk");
    assert_eq!(v["ping"], json!({}));
}
