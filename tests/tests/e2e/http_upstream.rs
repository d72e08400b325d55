//! Remote OAuth-protected upstreams end to end: fixture authorization server + remote MCP
//! server, the credential agent and the bridge, all real processes.

use std::time::Duration;

use mcp_bridge_tests::*;
use serde_json::{Value, json};

struct Setup {
    fixture: FixtureHttp,
    dir: TempDir,
    agent: Option<AgentProc>,
}

async fn setup() -> Setup {
    let fixture = FixtureHttp::start(&[], None).await;
    let dir = TempDir::new("remote");
    dir.write(
        "config.toml",
        &(oauth_entry("remote", &fixture.mcp_url()) + &fixture_entry("alpha", &[])),
    );
    let agent = AgentProc::start(dir.path(), &[]).await;
    let out = agent.cli(&["login", "remote", "--no-browser"]).await;
    assert!(
        out.status.success(),
        "login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Setup {
        fixture,
        dir,
        agent: Some(agent),
    }
}

impl Setup {
    async fn bridge(&self) -> Bridge {
        let b = Bridge::builder().in_dir(self.dir.path()).start().await;
        b.wait_ready(2).await;
        b
    }
}

fn error_text(r: &Value) -> String {
    r["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn remote_tools_beside_stdio_ones_and_token_expiry_is_invisible() {
    let s = setup().await;
    let b = s.bridge().await;
    let c = b.client().await;
    let names = c.tool_names().await;
    assert!(
        names.contains(&"remote__echo".to_owned()) && names.contains(&"alpha__echo".to_owned()),
        "{names:?}"
    );
    assert_eq!(
        text_of(&c.call_tool("remote__echo", json!({"message": "hi"})).await),
        "[remote] hi"
    );
    for round in 0..3 {
        // The server stops accepting the access token mid-run: 401, the agent refreshes, the
        // bridge retries; the client sees nothing.
        s.fixture.control(json!({"expire_access": true})).await;
        let r = c
            .call_tool("remote__echo", json!({"message": round.to_string()}))
            .await;
        assert_eq!(text_of(&r), format!("[remote] {round}"), "{r}");
    }
    let stats = s.fixture.stats().await;
    assert_eq!(stats["refreshes"], 3, "{stats}");
    assert_eq!(stats["reuse_detected"], 0);
    assert!(
        !b.logs().join("\n").contains("at-"),
        "no access token in the bridge's logs"
    );
}

#[tokio::test]
async fn a_bridge_restart_needs_no_new_login() {
    let s = setup().await;
    let mut b = s.bridge().await;
    assert!(b.terminate().success());
    let b = s.bridge().await;
    let c = b.client().await;
    assert_eq!(
        text_of(
            &c.call_tool("remote__echo", json!({"message": "again"}))
                .await
        ),
        "[remote] again"
    );
    assert_eq!(
        s.fixture.stats().await["codes_exchanged"],
        1,
        "one login, ever"
    );
}

#[tokio::test]
async fn the_agent_going_away_and_coming_back() {
    let mut s = setup().await;
    let b = s.bridge().await;
    let c = b.client().await;
    drop(s.agent.take());
    s.fixture.control(json!({"expire_access": true})).await;
    let r = c.call_tool("remote__echo", json!({"message": "x"})).await;
    assert!(error_text(&r).contains("mcp-cred-agent"), "{r}");
    assert!(
        c.tool_names().await.contains(&"remote__echo".to_owned()),
        "cached tools still listed"
    );
    s.agent = Some(AgentProc::start(s.dir.path(), &[]).await);
    wait_for("calls to recover", Duration::from_secs(30), async || {
        let r = c
            .call_tool("remote__echo", json!({"message": "back"}))
            .await;
        (text_of(&r) == "[remote] back").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_broken_sse_answer_is_resumed() {
    let s = setup().await;
    let b = s.bridge().await;
    let c = b.client().await;
    s.fixture.control(json!({"drop_next_sse": true})).await;
    let r = c
        .call_tool("remote__sse_echo", json!({"message": "resumed"}))
        .await;
    assert_eq!(text_of(&r), "[remote-sse] resumed", "{r}");
    b.wait_log("resumption logged", |l| {
        l.contains("resumed a broken answer stream")
    })
    .await;
}

#[tokio::test]
async fn an_expired_upstream_session_is_reinitialized_transparently() {
    let s = setup().await;
    let b = s.bridge().await;
    let c = b.client().await;
    s.fixture.control(json!({"forget_sessions": true})).await;
    assert_eq!(
        text_of(
            &c.call_tool("remote__echo", json!({"message": "fresh"}))
                .await
        ),
        "[remote] fresh"
    );
    b.wait_log("re-initialization logged", |l| {
        l.contains("forgot the session")
    })
    .await;
}

#[tokio::test]
async fn a_revoked_login_tells_the_user_what_to_run() {
    let s = setup().await;
    let b = s.bridge().await;
    let c = b.client().await;
    // Revoked, and the owner no longer consents, so no headless re-login can save it.
    s.fixture
        .control(json!({"revoke_all": true, "expire_access": true, "deny_consent": true}))
        .await;
    let r = c.call_tool("remote__echo", json!({"message": "x"})).await;
    assert!(
        error_text(&r).contains("mcp-cred-agent login remote"),
        "{r}"
    );
    wait_for(
        "the remote upstream to show needs_login",
        Duration::from_secs(10),
        async || {
            let status = b.status().await;
            let remote = status["upstreams"]
                .as_array()?
                .iter()
                .find(|u| u["name"] == "remote")?
                .clone();
            (remote["state"] == "needs_login").then_some(())
        },
    )
    .await;
    // The stdio upstream is unaffected.
    assert_eq!(
        text_of(&c.call_tool("alpha__echo", json!({"message": "ok"})).await),
        "[alpha] ok"
    );
}

#[tokio::test]
async fn a_revoked_login_is_restored_headlessly_when_consent_needs_no_person() {
    let s = setup().await;
    let b = s.bridge().await;
    let c = b.client().await;
    s.fixture
        .control(json!({"revoke_all": true, "expire_access": true}))
        .await;
    // 401 → the agent's refresh meets invalid_grant → it logs in again on its own (the fixture
    // approves at once) → the call goes through.
    let r = c
        .call_tool("remote__echo", json!({"message": "still here"}))
        .await;
    assert_eq!(text_of(&r), "[remote] still here", "{r}");
    let stats = s.fixture.stats().await;
    assert_eq!(stats["codes_exchanged"], 2, "one new login: {stats}");
    assert_eq!(stats["reuse_detected"], 0, "{stats}");
    let agent = s.agent.as_ref().unwrap();
    agent
        .proc
        .wait_log("the re-login to be logged", |l| {
            l.contains("logged in again headlessly")
        })
        .await;
}

#[tokio::test]
async fn legacy_sse_servers_are_detected_or_forced_and_strict_mode_says_why_not() {
    let fixture = FixtureHttp::start(&[], None).await;
    let dir = TempDir::new("legacy");
    let legacy = format!("{}/sse", fixture.base);
    let entry = |name: &str, transport: &str| {
        format!(
            "{}\ntransport = {transport:?}\n\n",
            oauth_entry(name, &legacy).trim_end()
        )
    };
    dir.write(
        "config.toml",
        &(oauth_entry("old", &legacy)
            + &entry("forced", "sse")
            + &entry("strict", "streamable-http")
            + &format!(
                "[[upstream]]\nname = \"neither\"\nurl = \"{}/nothing\"\n\n",
                fixture.base
            )),
    );
    let agent = AgentProc::start(dir.path(), &[]).await;
    for name in ["old", "forced", "strict"] {
        let out = agent.cli(&["login", name, "--no-browser"]).await;
        assert!(
            out.status.success(),
            "login {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let b = Bridge::builder().in_dir(dir.path()).start().await;
    let c = b.client().await;
    c.wait_for_tool("old__echo", true).await;
    c.wait_for_tool("forced__echo", true).await;
    for (tool, msg) in [("old__echo", "auto"), ("forced__echo", "forced")] {
        let r = c.call_tool(tool, json!({"message": msg})).await;
        assert_eq!(text_of(&r), format!("[remote] {msg}"), "{r}");
    }
    // A token the server stops accepting: the legacy POST gets 401, the agent refreshes.
    fixture.control(json!({"expire_access": true})).await;
    let r = c
        .call_tool("old__echo", json!({"message": "after 401"}))
        .await;
    assert_eq!(text_of(&r), "[remote] after 401", "{r}");
    assert!(
        b.logs()
            .join("\n")
            .contains("using the legacy HTTP+SSE transport"),
        "the fallback is logged"
    );
    // Streamable HTTP only: the 405 is reported, not papered over.
    let status = wait_for(
        "strict to report the 405",
        Duration::from_secs(20),
        async || {
            let s = b.status().await;
            let strict = s["upstreams"]
                .as_array()?
                .iter()
                .find(|u| u["name"] == "strict")?
                .clone();
            strict["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("405"))
                .then_some(strict)
        },
    )
    .await;
    assert_ne!(status["state"], "ready", "{status}");
    // Neither transport: both answers are in the error.
    wait_for(
        "neither to report both refusals",
        Duration::from_secs(20),
        async || {
            let s = b.status().await;
            let e = s["upstreams"]
                .as_array()?
                .iter()
                .find(|u| u["name"] == "neither")?["last_error"]
                .as_str()?
                .to_owned();
            e.contains("the initialize POST got HTTP 404, the SSE GET got HTTP 404")
                .then_some(())
        },
    )
    .await;
    assert_eq!(fixture.stats().await["reuse_detected"], 0);
}

#[tokio::test]
async fn insufficient_scope_gets_a_step_up_login_then_the_call_goes_through() {
    let s = setup().await;
    let b = s.bridge().await;
    let c = b.client().await;
    // The login asked for the server's advertised scope ("mcp"); admin_echo needs "admin" too.
    let r = c
        .call_tool("remote__admin_echo", json!({"message": "root"}))
        .await;
    assert_eq!(text_of(&r), "[remote admin] root", "{r}");
    let stats = s.fixture.stats().await;
    assert_eq!(stats["codes_exchanged"], 2, "one step-up login: {stats}");
    // The new login kept the old scope: plain tools still work, and nothing logs in again.
    let r = c
        .call_tool("remote__echo", json!({"message": "plain"}))
        .await;
    assert_eq!(text_of(&r), "[remote] plain", "{r}");
    let r = c
        .call_tool("remote__admin_echo", json!({"message": "again"}))
        .await;
    assert_eq!(text_of(&r), "[remote admin] again", "{r}");
    assert_eq!(s.fixture.stats().await["codes_exchanged"], 2);
}

#[tokio::test]
async fn a_step_up_that_needs_a_person_says_so_and_the_upstream_stays_up() {
    let s = setup().await;
    let b = s.bridge().await;
    let c = b.client().await;
    s.fixture.control(json!({"deny_consent": true})).await;
    let r = c
        .call_tool("remote__admin_echo", json!({"message": "root"}))
        .await;
    let msg = error_text(&r);
    assert!(
        msg.contains("needs more scope") && msg.contains("mcp-cred-agent login remote"),
        "{r}"
    );
    // Only that call failed: the connection and the other tools are fine.
    let r = c
        .call_tool("remote__echo", json!({"message": "plain"}))
        .await;
    assert_eq!(text_of(&r), "[remote] plain", "{r}");
    // A second attempt within the minute does not start another login.
    let r = c
        .call_tool("remote__admin_echo", json!({"message": "root"}))
        .await;
    assert!(error_text(&r).contains("less than a minute ago"), "{r}");
    assert_eq!(s.fixture.stats().await["codes_exchanged"], 1);
}

#[tokio::test]
async fn an_oversized_upstream_answer_is_refused_not_buffered() {
    let s = setup().await;
    let b = s.bridge().await;
    let c = b.client().await;
    let r = c.call_tool("remote__huge", json!({})).await;
    assert!(
        error_text(&r).contains("an answer over 67108864 bytes"),
        "{}",
        &r.to_string()[..200.min(r.to_string().len())]
    );
    let r = c
        .call_tool("remote__echo", json!({"message": "fine"}))
        .await;
    assert_eq!(text_of(&r), "[remote] fine", "{r}");
}

#[tokio::test]
async fn a_login_reaches_the_bridge_at_once_and_ready_clears_the_error() {
    let fixture = FixtureHttp::start(&[], None).await;
    let dir = TempDir::new("late-login");
    dir.write("config.toml", &oauth_entry("remote", &fixture.mcp_url()));
    let agent = AgentProc::start(dir.path(), &[]).await;
    let b = Bridge::builder().in_dir(dir.path()).start().await;
    let remote = async || {
        let status = b.status().await;
        status["upstreams"]
            .as_array()?
            .iter()
            .find(|u| u["name"] == "remote")
            .cloned()
    };
    // Let it fail a few times, so its backoff has grown.
    wait_for(
        "needs_login, retried",
        Duration::from_secs(30),
        async || {
            let r = remote().await?;
            (r["state"] == "needs_login" && r["failures"].as_u64()? >= 4).then_some(())
        },
    )
    .await;
    let out = agent.cli(&["login", "remote", "--no-browser"]).await;
    assert!(
        out.status.success(),
        "login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logged_in = std::time::Instant::now();
    // Bounded by the needs-login retry (2 s), not by the grown backoff.
    let r = wait_for(
        "the bridge to use the login",
        Duration::from_secs(8),
        async || remote().await.filter(|r| r["state"] == "ready"),
    )
    .await;
    assert!(
        r["last_error"].is_null(),
        "Ready clears the stale error: {r}"
    );
    eprintln!(
        "login picked up {:.2} s after it completed",
        logged_in.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn a_server_wanting_authorization_without_auth_configured_says_what_to_set() {
    let fixture = FixtureHttp::start(&[], None).await;
    let config = format!(
        "[[upstream]]\nname = \"plain\"\nurl = {:?}\n\n",
        fixture.mcp_url()
    );
    let b = Bridge::builder().config(&config).start().await;
    let err = wait_for(
        "the 401 to be explained",
        Duration::from_secs(20),
        async || {
            let status = b.status().await;
            status["upstreams"][0]["last_error"]
                .as_str()
                .map(str::to_owned)
        },
    )
    .await;
    assert!(
        err.contains("auth = \"oauth\"") && !err.contains("freshly issued"),
        "{err}"
    );
}
