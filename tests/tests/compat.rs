//! The compatibility suite: third-party MCP servers and clients (pinned in
//! `tests/compat/install.sh`, installed on first use) run through the real bridge. Isolation
//! findings are proven here too, against the servers that showed them.

use std::time::{Duration, Instant};

use mcp_bridge_tests::*;
use serde_json::{Value, json};

/// Calls a tool on a streamed POST, answering every `roots/list` the bridge relays meanwhile
/// with `roots`.
async fn call_answering_roots(c: &Client, tool: &str, args: Value, roots: &[String]) -> Value {
    let id = json!(format!("call-{}", fastrand_id()));
    let mut r = c
        .post_stream(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}))
        .await;
    while let Some(m) = r.next().await {
        if m["method"] == "roots/list" {
            c.answer(&m, roots_result(roots)).await;
        } else if m.get("id") == Some(&id) && m.get("method").is_none() {
            return m;
        }
    }
    panic!("no answer to {tool}");
}

fn fastrand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn roots_result(roots: &[String]) -> Value {
    json!({"roots": roots.iter().map(|r| json!({"uri": r, "name": "r"})).collect::<Vec<_>>()})
}

/// Keeps answering `roots/list` requests that arrive on the client's GET stream.
async fn answer_roots_on_get_stream(c: Client, roots: Vec<String>) -> tokio::task::JoinHandle<()> {
    let mut stream = c.get_stream().await;
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(120);
        while let Some(m) = stream.next_before(deadline).await {
            if m["method"] == "roots/list" {
                c.answer(&m, roots_result(&roots)).await;
            }
        }
    })
}

fn allowed_dirs(resp: &Value) -> String {
    text_of(resp)
}

#[tokio::test]
async fn no_daemon_secret_reaches_a_stdio_upstream() {
    let tp = ThirdParty::get();
    let config = tp.node_entry(
        "everything",
        &tp.everything(),
        &["stdio"],
        "env = { CONFIGURED = \"yes\" }\ninherit_env = [\"WANTED_VAR\"]\n",
    );
    let b = Bridge::builder()
        .config(&config)
        .env("MCP_BRIDGE_INBOUND_TOKEN", "inbound-s3cret-value")
        .env("MCP_BRIDGE_OWNER_PASSWORD", "owner-s3cret-value")
        .env("MCP_BRIDGE_OWNER_PASSWORD_OP_REF", "op://vault/s3cret/item")
        .env("AWS_SECRET_ACCESS_KEY", "aws-s3cret-value")
        .env("WANTED_VAR", "passed-on-request")
        .start()
        .await;
    let c = Client::connect_as(
        &b.url,
        json!({}),
        &[("authorization", "Bearer inbound-s3cret-value")],
    )
    .await;
    c.wait_for_tool("everything__get-env", true).await;
    let resp = c.call_tool("everything__get-env", json!({})).await;
    let env: Value = serde_json::from_str(&text_of(&resp)).expect("get-env answers JSON");
    let env = env.as_object().expect("an object");
    let leaked: Vec<&String> = env
        .iter()
        .filter(|(k, v)| {
            k.to_ascii_uppercase().starts_with("MCP_")
                || v.as_str().is_some_and(|v| v.contains("s3cret"))
        })
        .map(|(k, _)| k)
        .collect();
    assert!(leaked.is_empty(), "secrets reached the child: {leaked:?}");
    assert_eq!(env["WANTED_VAR"], "passed-on-request", "inherit_env");
    assert_eq!(env["CONFIGURED"], "yes", "config env");
    assert!(
        env.contains_key("PATH") && env.contains_key("HOME"),
        "basics"
    );
}

#[tokio::test]
async fn roots_of_one_client_never_reach_another() {
    let tp = ThirdParty::get();
    let dirs = TempDir::new("roots");
    let [own, other, fixed] = ["own", "other", "fixed"].map(|d| {
        let p = dirs.path().join(d);
        std::fs::create_dir_all(&p).unwrap();
        p.canonicalize().unwrap().display().to_string()
    });
    let fs = tp.filesystem();
    let config = format!(
        "{}{}{}",
        tp.node_entry("fs_none", &fs, &[&own], ""),
        tp.node_entry(
            "fs_fixed",
            &fs,
            &[&own],
            &format!("roots = [\"file://{fixed}\"]\n")
        ),
        tp.node_entry("fs_client", &fs, &[&own], "roots = \"client\"\n"),
    );
    let (b, _) = bridge_with(&config, 3).await;
    let roots_x = vec![format!("file://{other}")];
    let x = Client::connect_with(&b.url, json!({"roots": {"listChanged": true}})).await;
    let answering = answer_roots_on_get_stream(x.fork(), roots_x.clone()).await;
    // X says its roots changed: before the fix every upstream asked it and took its answer.
    let n = x
        .post_json(&json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}))
        .await;
    assert_eq!(n.status, 202);
    let y = Client::connect(&b.url).await;

    // roots = "client": X's own roots reach the upstream while it serves X...
    let seen = wait_for(
        "X's roots on fs_client",
        Duration::from_secs(30),
        async || {
            // The server takes roots asynchronously; saying they changed again makes it ask again.
            x.post_json(&json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}))
                .await;
            let r = call_answering_roots(
                &x,
                "fs_client__list_allowed_directories",
                json!({}),
                &roots_x,
            )
            .await;
            allowed_dirs(&r)
                .contains(&other)
                .then_some(allowed_dirs(&r))
        },
    )
    .await;
    assert!(
        !seen.contains(&own),
        "roots replace the CLI directory: {seen}"
    );
    // ...and Y, arriving next, gets a fresh upstream that never saw them.
    let r = y
        .call_tool("fs_client__list_allowed_directories", json!({}))
        .await;
    let text = allowed_dirs(&r);
    assert!(
        text.contains(&own) && !text.contains(&other),
        "Y sees X's roots: {text}"
    );

    // No `roots`: nobody's roots, the server keeps its arguments, for X as for Y.
    for (who, c) in [("X", &x), ("Y", &y)] {
        let r =
            call_answering_roots(c, "fs_none__list_allowed_directories", json!({}), &roots_x).await;
        let text = allowed_dirs(&r);
        assert!(
            text.contains(&own) && !text.contains(&other),
            "{who} on fs_none: {text}"
        );
    }
    // Configured roots: the same for every client.
    let seen = wait_for(
        "the configured roots",
        Duration::from_secs(30),
        async || {
            let r = y
                .call_tool("fs_fixed__list_allowed_directories", json!({}))
                .await;
            allowed_dirs(&r)
                .contains(&fixed)
                .then_some(allowed_dirs(&r))
        },
    )
    .await;
    assert!(!seen.contains(&other), "{seen}");
    let r = call_answering_roots(
        &x,
        "fs_fixed__list_allowed_directories",
        json!({}),
        &roots_x,
    )
    .await;
    assert!(allowed_dirs(&r).contains(&fixed) && !allowed_dirs(&r).contains(&other));
    answering.abort();
}

/// Waits for a log message on `stream` whose level satisfies `pred`, until `deadline`.
async fn log_where(
    stream: &mut MessageReader,
    deadline: Instant,
    pred: impl Fn(&str) -> bool,
) -> Option<Value> {
    while let Some(m) = stream.next_before(deadline).await {
        if m["method"] == "notifications/message"
            && pred(m["params"]["level"].as_str().unwrap_or(""))
        {
            return Some(m);
        }
    }
    None
}

#[tokio::test]
async fn one_clients_log_level_neither_silences_nor_floods_another() {
    let tp = ThirdParty::get();
    let config = tp.node_entry("everything", &tp.everything(), &["stdio"], "");
    let (b, quiet) = bridge_with(&config, 1).await;
    let other = b.client().await;
    // `quiet` wants emergencies only; `other` never set a level.
    let r = quiet
        .request("logging/setLevel", json!({"level": "emergency"}))
        .await;
    assert_eq!(r["result"], json!({}), "{r}");
    let mut quiet_stream = quiet.get_stream().await;
    let mut other_stream = other.get_stream().await;
    let on = other
        .call_tool("everything__toggle-simulated-logging", json!({}))
        .await;
    assert!(on["result"].is_object(), "{on}");
    // The server logs every 5 s at a random level: `other` still gets info and above...
    let deadline = Instant::now() + Duration::from_secs(90);
    let got = log_where(&mut other_stream, deadline, |l| {
        !["debug", "emergency"].contains(&l)
    })
    .await;
    assert!(
        got.is_some(),
        "the other client was silenced by logging/setLevel emergency"
    );
    // ...while `quiet` received nothing below emergency meanwhile.
    let leaked = log_where(
        &mut quiet_stream,
        Instant::now() + Duration::from_millis(200),
        |l| l != "emergency",
    )
    .await;
    assert!(leaked.is_none(), "the quiet client got {leaked:?}");
    other
        .call_tool("everything__toggle-simulated-logging", json!({}))
        .await;
}

#[tokio::test]
async fn subscription_updates_reach_only_subscribers() {
    let tp = ThirdParty::get();
    let config = tp.node_entry("everything", &tp.everything(), &["stdio"], "");
    let (b, a) = bridge_with(&config, 1).await;
    let (leaver, never) = (b.client().await, b.client().await);
    let list = a.request("resources/list", json!({})).await;
    let uri = list["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["uri"].as_str().filter(|u| u.contains("architecture")))
        .expect("server-everything's architecture document")
        .to_owned();
    assert!(uri.starts_with("everything+demo://"), "{uri}");
    for c in [&a, &leaver] {
        let r = c.request("resources/subscribe", json!({"uri": uri})).await;
        assert_eq!(r["result"], json!({}), "{r}");
    }
    let r = leaver
        .request("resources/unsubscribe", json!({"uri": uri}))
        .await;
    assert_eq!(r["result"], json!({}), "{r}");
    let mut streams = [
        a.get_stream().await,
        leaver.get_stream().await,
        never.get_stream().await,
    ];
    a.call_tool("everything__toggle-subscriber-updates", json!({}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = None;
    while let Some(m) = streams[0].next_before(deadline).await {
        if m["method"] == "notifications/resources/updated" {
            got = Some(m);
            break;
        }
    }
    let got = got.expect("the remaining subscriber lost its updates when another unsubscribed");
    assert_eq!(got["params"]["uri"], uri.as_str(), "the exposed URI");
    for (who, s) in [
        ("the client that left", 1),
        ("a client that never subscribed", 2),
    ] {
        let soon = Instant::now() + Duration::from_millis(300);
        while let Some(m) = streams[s].next_before(soon).await {
            assert_ne!(
                m["method"], "notifications/resources/updated",
                "{who} got {m}"
            );
        }
    }
    a.call_tool("everything__toggle-subscriber-updates", json!({}))
        .await;
}
