//! Hostile input against the bridge: it answers with clear errors and keeps serving.

use mcp_bridge_tests::*;
use serde_json::json;

async fn still_serving(b: &Bridge) {
    let c = b.client().await;
    assert_eq!(c.request("ping", json!({})).await["result"], json!({}));
}

#[tokio::test]
async fn deep_nesting_and_invalid_utf8_are_parse_errors() {
    let b = Bridge::builder()
        .config(&fixture_entry("alpha", &[]))
        .start()
        .await;
    let c = b.client().await;
    let deep = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let a = c.post_raw(deep, &[]).await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (400, json!(-32700))
    );
    let a = c.post_raw(vec![b'{', 0xff, 0xfe, b'}'], &[]).await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (400, json!(-32700))
    );
    let a = c.post_raw("", &[]).await;
    assert_eq!(a.status, 400);
    still_serving(&b).await;
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let b = Bridge::builder().start().await;
    let huge = "x".repeat(1024 * 1024);
    let r = reqwest::Client::new()
        .post(&b.url)
        .header("x-junk", huge)
        .body("{}")
        .send()
        .await;
    // The server may also close the connection instead of answering.
    if let Ok(resp) = r {
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    still_serving(&b).await;
}

#[tokio::test]
async fn abandoned_sessions_stay_bounded() {
    let b = Bridge::builder()
        .config("[server]\nmax_sessions = 50\n")
        .start()
        .await;
    let mut last = None;
    for _ in 0..400 {
        last = Some(b.client().await);
    }
    let s = b.status().await;
    assert!(s["sessions"].as_u64().unwrap() <= 50, "{s}");
    // The newest session still works.
    let c = last.unwrap();
    assert_eq!(c.request("ping", json!({})).await["result"], json!({}));
}

#[tokio::test]
async fn tool_output_cannot_smuggle_sse_events() {
    let (_bridge, c) = bridge_with(&fixture_entry("alpha", &[]), 1).await;
    let evil = "a\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{}}\n\n";
    // Answered as SSE (the client accepts only event streams).
    let a = c
        .post_raw(json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"message": evil}}}).to_string(), &[("accept", "text/event-stream")])
        .await;
    let msgs = a.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["id"], 7);
    assert_eq!(text_of(&msgs[0]), format!("[alpha] {evil}"));
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Bridge::builder()
        .config("[server]\nheader_timeout_secs = 1\n")
        .start()
        .await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", b.port))
        .await
        .unwrap();
    // Headers that never end.
    s.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert_eq!(
        closed,
        Ok(true),
        "the bridge closes a connection whose headers never end"
    );
    still_serving(&b).await;
}

#[tokio::test]
async fn slow_bodies_get_408_and_a_closed_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Bridge::builder()
        .config("[server]\nbody_timeout_secs = 1\n")
        .start()
        .await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", b.port))
        .await
        .unwrap();
    // Complete headers, then 10 of the 100 promised body bytes, then nothing.
    s.write_all(
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        s.read_to_end(&mut answer),
    )
    .await;
    assert!(
        read.is_ok(),
        "the bridge neither answered nor closed the connection"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.contains("-32600") && text.contains("did not arrive"),
        "{text}"
    );
    still_serving(&b).await;
}

#[tokio::test]
async fn smuggled_requests_never_get_past_the_guard() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Bridge::builder().start().await;
    // Content-Length and Transfer-Encoding together, with a second request hidden where one
    // of the two framings says the body is: whichever framing wins, the hidden request (to
    // /status with a rebinding Host) must meet the Host guard, never be answered.
    let attacks: [&[u8]; 2] = [
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
          GET /status HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 0\r\nContent-Length: 48\r\n\r\n\
          GET /status HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    ];
    for attack in attacks {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", b.port))
            .await
            .unwrap();
        s.write_all(attack).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(15),
            s.read_to_end(&mut answer),
        )
        .await;
        let text = String::from_utf8_lossy(&answer);
        eprintln!("{}", text.lines().next().unwrap_or_default());
        assert!(
            !text.contains("\"upstreams\""),
            "a smuggled request was served: {text}"
        );
        assert!(text.starts_with("HTTP/1.1 4"), "{text}");
    }
    still_serving(&b).await;
}
