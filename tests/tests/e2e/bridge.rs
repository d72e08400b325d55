//! End-to-end tests of the bridge core: real bridge process, real fixture children, real HTTP.

use std::time::Duration;

use mcp_bridge_tests::*;
use serde_json::json;

fn two_upstreams() -> String {
    fixture_entry("alpha", &["--weird-names"])
        + &fixture_entry("beta", &["--page-size", "2", "--extra-tools", "5"])
}

#[tokio::test]
async fn handshake_negotiates_versions_and_creates_sessions() {
    let b = Bridge::builder()
        .config(&fixture_entry("alpha", &[]))
        .start()
        .await;
    let c = b.client().await;
    assert_eq!(c.init["protocolVersion"], "2025-11-25");
    assert_eq!(c.init["serverInfo"]["name"], "mcp-bridge");
    assert_eq!(c.init["capabilities"]["tools"]["listChanged"], true);
    for (asked, got) in [
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-11-05", "2024-11-05"),
        ("1999-01-01", "2025-11-25"),
    ] {
        let a = Client::new(&b.url)
            .post_json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":asked,"capabilities":{},"clientInfo":{"name":"x","version":"1"}}}))
            .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["result"]["protocolVersion"], got, "asked {asked}");
        assert!(a.header("mcp-session-id").is_some());
    }
    let pong = c.request("ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));
    // A notification and a response are accepted with 202 and no body.
    let a = c
        .post_json(
            &json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}}),
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (202, ""));
    let a = c
        .post_json(&json!({"jsonrpc":"2.0","id":"s1","result":{}}))
        .await;
    assert_eq!(a.status, 202);
}

#[tokio::test]
async fn tools_from_two_upstreams_are_prefixed_paginated_and_routed() {
    let (_bridge, c) = bridge_with(&two_upstreams(), 2).await;
    let names = c.tool_names().await;
    for n in [
        "alpha__echo",
        "alpha__whoami",
        "beta__echo",
        "beta__t0",
        "beta__t4",
        "alpha__dotted_name_with_space",
    ] {
        assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
    }
    // beta pages 2 at a time: 8 base tools + 5 extra all arrive.
    assert_eq!(names.iter().filter(|n| n.starts_with("beta__")).count(), 13);
    let re = regex_like_valid;
    assert!(names.iter().all(|n| re(n)), "{names:?}");
    // Unknown fields of a tool pass through untouched.
    let list = c.request("tools/list", json!({})).await;
    assert_eq!(list["result"]["tools"][0]["x-fixture-extra"]["kept"], true);

    assert_eq!(
        text_of(&c.call_tool("alpha__echo", json!({"message": "hi"})).await),
        "[alpha] hi"
    );
    assert_eq!(
        text_of(&c.call_tool("beta__echo", json!({"message": "yo"})).await),
        "[beta] yo"
    );
    assert!(text_of(&c.call_tool("beta__whoami", json!({})).await).starts_with("beta pid="));
    // The shortened long name still routes to the original tool.
    let long = names
        .iter()
        .find(|n| n.starts_with("alpha__longlong"))
        .unwrap();
    assert_eq!(long.len(), 64);
    let r = c.call_tool(long, json!({})).await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool: longlong"),
        "{r}"
    );
    let r = c.call_tool("nope__echo", json!({})).await;
    assert_eq!(r["error"]["code"], -32602);
}

fn regex_like_valid(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[tokio::test]
async fn two_sessions_share_upstreams_concurrently() {
    let b = Bridge::builder().config(&two_upstreams()).start().await;
    b.wait_ready(2).await;
    let (c1, c2) = (b.client().await, b.client().await);
    assert_ne!(c1.session, c2.session);
    let mut calls = Vec::new();
    for i in 0..20 {
        for (k, c) in [(1, &c1), (2, &c2)] {
            let up = if i % 2 == 0 { "alpha" } else { "beta" };
            calls.push(async move {
                let msg = format!("s{k}-{i}");
                let tool = if i % 5 == 0 { "sleep" } else { "echo" };
                let r = c
                    .call_tool(&format!("{up}__{tool}"), json!({"message": msg, "ms": 50}))
                    .await;
                (up, tool, msg, text_of(&r))
            });
        }
    }
    for (up, tool, msg, text) in futures_util::future::join_all(calls).await {
        if tool == "echo" {
            assert_eq!(text, format!("[{up}] {msg}"));
        } else {
            assert_eq!(text, format!("[{up}] slept 50"));
        }
    }
    assert_eq!(c1.delete().await, 204);
    let gone = c1
        .post_json(&json!({"jsonrpc":"2.0","id":5,"method":"ping"}))
        .await;
    assert_eq!(gone.status, 404);
    assert_eq!(
        text_of(
            &c2.call_tool("alpha__echo", json!({"message": "still"}))
                .await
        ),
        "[alpha] still"
    );
}

#[tokio::test]
async fn an_upstream_that_exits_does_not_take_the_others_down() {
    let (b, c) = bridge_with(&two_upstreams(), 2).await;
    let before = text_of(&c.call_tool("alpha__whoami", json!({})).await);
    let r = c.call_tool("alpha__exit", json!({"code": 3})).await;
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert!(
        msg.contains("alpha") && msg.contains("exited") && msg.contains("reconnecting"),
        "{msg}\n{}",
        b.logs().join("\n")
    );
    // The other upstream keeps serving, and the list keeps alpha's last known tools.
    let r = c.call_tool("beta__echo", json!({"message": "ok"})).await;
    assert_eq!(text_of(&r), "[beta] ok", "{r}\n{}", b.logs().join("\n"));
    assert!(c.tool_names().await.contains(&"alpha__echo".to_string()));
    // The supervisor restarts alpha: a new process answers.
    let after = wait_for("alpha to come back", Duration::from_secs(20), async || {
        let t = text_of(&c.call_tool("alpha__whoami", json!({})).await);
        (t.starts_with("alpha pid=")).then_some(t)
    })
    .await;
    assert_ne!(before, after, "a new process");
    b.wait_log("exit logged", |l| {
        l.contains("upstream=alpha") && l.contains("exiting on request")
    })
    .await;
}

#[tokio::test]
async fn a_child_that_cannot_start_is_reported_and_others_serve() {
    let config = fixture_entry("broken", &["--exit-on-start", "7"])
        + &fixture_entry("beta", &[])
        + "[[upstream]]\nname = \"missing\"\ncommand = \"/nonexistent/mcp-server\"\n";
    let b = Bridge::builder().config(&config).start().await;
    let c = b.client().await;
    c.wait_for_tool("beta__echo", true).await;
    let r = c.call_tool("beta__echo", json!({"message": "m"})).await;
    assert_eq!(text_of(&r), "[beta] m");
    let status = b.status().await;
    let missing = status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "missing")
        .unwrap()
        .clone();
    assert!(
        missing["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot start"),
        "{missing}"
    );
}

#[tokio::test]
async fn upstream_stderr_is_logged_with_its_name() {
    let b = Bridge::builder()
        .config(&fixture_entry("alpha", &[]))
        .start()
        .await;
    b.wait_log("stderr line", |l| {
        l.contains("upstream=alpha") && l.contains("fixture alpha starting")
    })
    .await;
}

#[tokio::test]
async fn list_changed_reaches_the_get_stream() {
    let (_bridge, c) = bridge_with(&fixture_entry("alpha", &[]), 1).await;
    let mut stream = c
        .http
        .get(&c.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // A second GET stream on the same session is refused.
    let second = c
        .http
        .get(&c.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 409);
    c.call_tool("alpha__add_tool", json!({"name": "fresh"}))
        .await;
    let mut seen = String::new();
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if parse_sse(&seen)
                .iter()
                .any(|e| e.data.contains("notifications/tools/list_changed"))
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "stream so far: {seen}");
    let events = parse_sse(&seen);
    assert!(
        events[0].id.is_some() && events[0].data.is_empty(),
        "priming event first: {events:?}"
    );
    assert!(c.tool_names().await.contains(&"alpha__fresh".to_string()));
}

#[tokio::test]
async fn sse_only_clients_get_an_event_stream() {
    let b = Bridge::builder()
        .config(&fixture_entry("alpha", &[]))
        .start()
        .await;
    let c = b.client().await;
    let a = c
        .post_raw(
            json!({"jsonrpc":"2.0","id":"p","method":"ping"}).to_string(),
            &[("accept", "text/event-stream")],
        )
        .await;
    assert_eq!(a.status, 200);
    assert!(
        a.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(a.json()["id"], "p");
}

#[tokio::test]
async fn seed_env_vars_configure_the_bridge() {
    let b = Bridge::builder()
        .env("MCP_BRIDGE_SENTINEL_COMMAND", fixture().to_str().unwrap())
        .env(
            "MCP_BRIDGE_SENTINEL_ARGS",
            "--name  sentinel --extra-tools 1",
        )
        .env("MCP_BRIDGE_MCP_PATH", "/custom")
        .env("MCP_BRIDGE_HOST", "127.0.0.1")
        .start()
        .await;
    assert!(b.url.ends_with("/custom"), "{}", b.url);
    assert!(b.url.starts_with("http://127.0.0.1:"));
    b.wait_ready(1).await;
    let c = b.client().await;
    assert_eq!(
        text_of(&c.call_tool("sentinel__echo", json!({"message": "s"})).await),
        "[sentinel] s"
    );
    assert!(c.tool_names().await.contains(&"sentinel__t0".to_string()));
    let other = Client::new(&format!("{}/mcp", b.base))
        .post_json(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
        .await;
    assert_eq!(other.status, 404);
}

#[tokio::test]
async fn no_upstreams_serves_the_labelled_demo() {
    let b = Bridge::builder().start().await;
    b.wait_log("demo banner", |l| l.contains("built-in demo upstream"))
        .await;
    b.wait_ready(1).await;
    let c = b.client().await;
    let list = c.request("tools/list", json!({})).await;
    let echo = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "demo__echo")
        .unwrap()
        .clone();
    assert!(echo["description"].as_str().unwrap().contains("Demo tool"));
    assert_eq!(
        text_of(&c.call_tool("demo__add", json!({"a": 2, "b": 40})).await),
        "42"
    );
}

#[tokio::test]
async fn bad_config_names_file_and_line() {
    let Spawned {
        mut child,
        logs,
        dir,
        owned: _keep,
    } = Bridge::builder()
        .config("[[upstream]]\nname = \"ok\"\ncommand = \"x\"\nbogus = 1\n")
        .spawn();
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(!status.success());
    let text = logs_when_closed(&logs);
    let file = dir.join("config.toml");
    assert!(
        text.contains(&file.display().to_string()) && text.contains("line 4"),
        "{text}"
    );
}

fn logs_when_closed(logs: &std::sync::Arc<std::sync::Mutex<Vec<String>>>) -> String {
    // The reader thread finishes when the process's stderr closes, which follows its exit.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = logs.lock().unwrap().join("\n");
        if text.contains("mcp-bridge:") || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn children_die_with_the_bridge() {
    // Graceful: SIGTERM stops the children and the bridge exits 0.
    let mut b = Bridge::builder()
        .config(&fixture_entry("alpha", &[]))
        .start()
        .await;
    b.wait_ready(1).await;
    let c = b.client().await;
    let pid: u32 = text_of(&c.call_tool("alpha__whoami", json!({})).await)
        .split("pid=")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(alive(pid));
    assert!(b.terminate().success());
    wait_for(
        "child gone after SIGTERM",
        Duration::from_secs(10),
        async || (!alive(pid)).then_some(()),
    )
    .await;

    // kill -9: the kernel's parent-death signal takes the child down.
    let mut b = Bridge::builder()
        .config(&fixture_entry("alpha", &[]))
        .start()
        .await;
    b.wait_ready(1).await;
    let c = b.client().await;
    let pid: u32 = text_of(&c.call_tool("alpha__whoami", json!({})).await)
        .split("pid=")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    signal(b.pid(), libc::SIGKILL);
    wait_exit(&mut b.child, Duration::from_secs(10));
    wait_for(
        "child gone after SIGKILL",
        Duration::from_secs(10),
        async || (!alive(pid)).then_some(()),
    )
    .await;
}

#[tokio::test]
async fn the_shared_smoke_harness_passes() {
    let harness =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/harness/smoke.py");
    assert!(
        harness.exists(),
        "the shared harness must be beside this checkout at {} (it is in CI and on every machine of the project)",
        harness.display()
    );
    let b = Bridge::builder()
        .config(&fixture_entry("sentinel", &[]))
        .start()
        .await;
    b.wait_ready(1).await;
    let url = b.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(&harness)
            .arg(&url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("11/11 checks passed"), "{text}");
}

#[tokio::test]
async fn an_upstream_that_is_this_bridge_is_disabled_not_proxied() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let config = format!(
        "{}[[upstream]]\nname = \"via_shim\"\ncommand = {:?}\nargs = [\"--url\", {url:?}]\n\n[[upstream]]\nname = \"via_url\"\nurl = {url:?}\n\n",
        fixture_entry("alpha", &[]),
        bin("mcp-bridge-shim").display().to_string(),
    );
    let b = Bridge::builder()
        .config(&config)
        .env("MCP_BRIDGE_PORT", &port.to_string())
        .start()
        .await;
    let status = wait_for(
        "both self-entries disabled",
        Duration::from_secs(30),
        async || {
            let s = b.status().await;
            let ups = s["upstreams"].as_array()?.clone();
            ups.iter()
                .filter(|u| u["name"] != "alpha")
                .all(|u| u["state"] == "disabled")
                .then_some(ups)
        },
    )
    .await;
    for u in status.iter().filter(|u| u["name"] != "alpha") {
        assert!(
            u["last_error"]
                .as_str()
                .unwrap()
                .contains("this mcp-bridge itself"),
            "{u}"
        );
    }
    let c = b.client().await;
    let names = c.tool_names().await;
    assert!(names.iter().all(|n| !n.starts_with("via_")), "{names:?}");
    assert_eq!(
        text_of(
            &c.call_tool("alpha__echo", json!({"message": "still here"}))
                .await
        ),
        "[alpha] still here"
    );
}
