//! The guards of the loopback endpoint, over real HTTP against the real binary.

use std::time::Duration;

use mcp_bridge_tests::*;
use serde_json::json;

async fn raw(url: &str, method: reqwest::Method, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut req = reqwest::Client::new().request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body.to_owned()).send().await.unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"g","version":"1"}}}"#;

#[tokio::test]
async fn host_header_must_be_loopback_or_configured() {
    let b = Bridge::builder()
        .config("[server]\nallowed_hosts = [\"bridge.example.com\"]\n")
        .start()
        .await;
    let port = b.port;
    for (host, want) in [
        (format!("127.0.0.1:{port}"), 200),
        (format!("localhost:{port}"), 200),
        (format!("[::1]:{port}"), 200),
        ("bridge.example.com".to_owned(), 200),
        (format!("evil.com:{port}"), 403),
        (format!("localhost.evil.com:{port}"), 403),
        (format!("127.0.0.1.nip.io:{port}"), 403),
        ("bridge.example.com.evil.com".to_owned(), 403),
    ] {
        let a = raw(
            &b.url,
            reqwest::Method::POST,
            &[JSON, ACCEPT, ("host", &host)],
            INIT,
        )
        .await;
        assert_eq!(a.status, want, "Host {host}: {}", a.body);
    }
    let a = raw(
        &format!("{}/healthz", b.base),
        reqwest::Method::GET,
        &[("host", "evil.com")],
        "",
    )
    .await;
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn origin_allowlist_matches_whole_labels() {
    let b = Bridge::builder()
        .config("[server]\nallowed_origins = [\"https://*.example.org\"]\n")
        .start()
        .await;
    for (origin, want) in [
        ("https://claude.ai", 200),
        ("https://chatgpt.com", 200),
        ("https://chat.openai.com", 200),
        ("https://abc.claudeusercontent.com", 200),
        ("https://platform.openai.com", 200),
        ("https://x.example.org", 200),
        ("http://localhost:6274", 200),
        ("https://evilclaude.ai", 403),
        ("https://claude.ai.evil.com", 403),
        ("https://evilclaudeusercontent.com", 403),
        ("https://claudeusercontent.com", 403),
        ("https://evilopenai.com", 403),
        ("http://claude.ai", 403),
        ("https://example.org", 403),
        ("null", 403),
        ("https://evil.example", 403),
    ] {
        let a = raw(
            &b.url,
            reqwest::Method::POST,
            &[JSON, ACCEPT, ("origin", origin)],
            INIT,
        )
        .await;
        assert_eq!(a.status, want, "Origin {origin}: {}", a.body);
        if want == 200 {
            assert_eq!(a.header("access-control-allow-origin"), Some(origin));
            assert!(
                a.header("access-control-expose-headers")
                    .unwrap()
                    .contains("Mcp-Session-Id")
            );
        } else {
            assert!(a.header("access-control-allow-origin").is_none());
        }
    }
}

#[tokio::test]
async fn cors_preflight_only_for_allowed_origins() {
    let b = Bridge::builder().start().await;
    let pre = [
        ("origin", "https://claude.ai"),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "content-type, mcp-session-id",
        ),
        ("access-control-request-private-network", "true"),
    ];
    let a = raw(&b.url, reqwest::Method::OPTIONS, &pre, "").await;
    assert_eq!(a.status, 204);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://claude.ai")
    );
    assert_eq!(
        a.header("access-control-allow-private-network"),
        Some("true")
    );
    assert!(
        a.header("access-control-allow-methods")
            .unwrap()
            .contains("DELETE")
    );
    assert!(
        a.header("access-control-allow-headers")
            .unwrap()
            .contains("Mcp-Session-Id")
    );
    assert!(
        a.header("access-control-expose-headers")
            .unwrap()
            .contains("Mcp-Session-Id")
    );
    // Without the private-network request header, that grant is not volunteered.
    let a = raw(&b.url, reqwest::Method::OPTIONS, &pre[..3], "").await;
    assert_eq!(a.status, 204);
    assert!(a.header("access-control-allow-private-network").is_none());
    let mut evil = pre;
    evil[0].1 = "https://claude.ai.evil.com";
    let a = raw(&b.url, reqwest::Method::OPTIONS, &evil, "").await;
    assert_eq!(a.status, 403);
    assert!(a.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn malformed_and_invalid_requests_get_clear_errors() {
    let b = Bridge::builder()
        .config("[server]\nmax_body_bytes = 2048\n")
        .start()
        .await;
    let c = b.client().await;
    let a = c
        .post_raw("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ", &[])
        .await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (400, json!(-32700))
    );
    let a = c
        .post_raw("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", &[])
        .await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (400, json!(-32600))
    );
    let a = c
        .post_raw("{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}", &[])
        .await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (400, json!(-32600))
    );
    let r = c.request("no/such_method", json!({})).await;
    assert_eq!(r["error"]["code"], -32601);
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(4096)
    );
    let a = c.post_raw(big, &[]).await;
    assert_eq!(a.status, 413);
    let a = c
        .post_raw(
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(a.status, 415);
    let a = c
        .post_raw(
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
            &[("accept", "text/html")],
        )
        .await;
    assert_eq!(a.status, 406);
    let a = c
        .post_raw(
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
            &[("mcp-protocol-version", "1999-01-01")],
        )
        .await;
    assert_eq!(a.status, 400);
    let a = c.post_raw("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"cursor\":\"bogus\"}}", &[]).await;
    assert_eq!(a.json()["error"]["code"], -32602);
}

#[tokio::test]
async fn sessions_are_required_and_unknown_ones_are_404() {
    let b = Bridge::builder().start().await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let a = raw(&b.url, reqwest::Method::POST, &[JSON, ACCEPT], ping).await;
    assert_eq!(a.status, 400, "missing session: {}", a.body);
    let a = raw(
        &b.url,
        reqwest::Method::POST,
        &[JSON, ACCEPT, ("mcp-session-id", "deadbeef")],
        ping,
    )
    .await;
    assert_eq!(a.status, 404);
    let a = raw(
        &b.url,
        reqwest::Method::GET,
        &[
            ("accept", "text/event-stream"),
            ("mcp-session-id", "deadbeef"),
        ],
        "",
    )
    .await;
    assert_eq!(a.status, 404);
    let a = raw(
        &b.url,
        reqwest::Method::DELETE,
        &[("mcp-session-id", "deadbeef")],
        "",
    )
    .await;
    assert_eq!(a.status, 404);
    let a = raw(
        &b.url,
        reqwest::Method::GET,
        &[("accept", "text/event-stream")],
        "",
    )
    .await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn idle_sessions_expire() {
    let b = Bridge::builder()
        .config("[server]\nsession_idle_secs = 1\n")
        .start()
        .await;
    let c = b.client().await;
    assert_eq!(b.status().await["sessions"], 1);
    // Watch the count through /status, which does not touch the session.
    wait_for(
        "the idle session to expire",
        Duration::from_secs(10),
        async || (b.status().await["sessions"] == 0).then_some(()),
    )
    .await;
    let a = c
        .post_json(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
        .await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn non_loopback_bind_needs_a_token_and_then_requires_it() {
    let Spawned {
        mut child,
        logs,
        owned: _keep,
        ..
    } = Bridge::builder().env("MCP_BRIDGE_HOST", "0.0.0.0").spawn();
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(!status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("inbound bearer token"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            logs.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let b = Bridge::builder()
        .env("MCP_BRIDGE_HOST", "0.0.0.0")
        .env("MCP_BRIDGE_INBOUND_TOKEN", "s3cret-token")
        .start()
        .await;
    let url = format!("http://127.0.0.1:{}/mcp", b.port);
    let a = raw(&url, reqwest::Method::POST, &[JSON, ACCEPT], INIT).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    let a = raw(
        &url,
        reqwest::Method::POST,
        &[JSON, ACCEPT, ("authorization", "Bearer wrong")],
        INIT,
    )
    .await;
    assert_eq!(a.status, 401);
    let a = raw(
        &url,
        reqwest::Method::POST,
        &[JSON, ACCEPT, ("authorization", "Bearer s3cret-token")],
        INIT,
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(
        !b.logs().join("\n").contains("s3cret-token"),
        "the token never reaches the logs"
    );
}

#[tokio::test]
async fn healthz_answers() {
    let b = Bridge::builder().start().await;
    let a = raw(
        &format!("{}/healthz", b.base),
        reqwest::Method::GET,
        &[],
        "",
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["status"], "ok");
}
