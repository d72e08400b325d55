//! The credential agent against a real OAuth authorization server fixture, through its socket.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use mcp_bridge_tests::*;
use proto::{AgentError, Request, Response};
use serde_json::json;

fn token_of(r: &Response) -> String {
    match r {
        Response::Token { access_token, .. } => access_token.clone(),
        other => panic!("expected a token, got {other:?}"),
    }
}

async fn logged_in(fixture: &FixtureHttp, env: &[(String, String)]) -> (TempDir, AgentProc) {
    let dir = TempDir::new("oauth");
    dir.write("config.toml", &oauth_entry("remote", &fixture.mcp_url()));
    let agent = AgentProc::start(dir.path(), env).await;
    let out = agent.cli(&["login", "remote", "--no-browser"]).await;
    assert!(
        out.status.success(),
        "login: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.proc.text()
    );
    (dir, agent)
}

#[tokio::test]
async fn headless_login_with_auto_approval() {
    let f = FixtureHttp::start(&[], None).await;
    let (dir, agent) = logged_in(&f, &[]).await;
    let mut ipc = agent.ipc().await;
    let t = token_of(&ipc.token("remote", 30).await);
    // The token works at the resource server.
    let r = reqwest::Client::new()
        .post(f.mcp_url())
        .bearer_auth(&t)
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(f.stats().await["codes_exchanged"], 1);
    let store = dir.path().join("oauth-state.json");
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !agent.proc.text().contains(&t),
        "the token never reaches the logs"
    );
    let Response::Status { upstreams, .. } = ipc.ask(Request::Status).await else {
        panic!()
    };
    assert!(upstreams[0].logged_in);
    assert_eq!(upstreams[0].issuer.as_deref(), Some(f.base.as_str()));
}

#[tokio::test]
async fn headless_login_through_a_password_consent_form() {
    let f = FixtureHttp::start(&["--consent", "password"], Some("hunter2")).await;
    let env = vec![("MCP_BRIDGE_OWNER_PASSWORD".to_owned(), "hunter2".to_owned())];
    let (_dir, agent) = logged_in(&f, &env).await;
    let mut ipc = agent.ipc().await;
    assert!(matches!(
        ipc.token("remote", 0).await,
        Response::Token { .. }
    ));
    assert!(!agent.proc.text().contains("hunter2"));

    // A wrong password is a clear failure, not a hang.
    let dir = TempDir::new("oauth-bad");
    dir.write("config.toml", &oauth_entry("remote", &f.mcp_url()));
    let bad = AgentProc::start(
        dir.path(),
        &[("MCP_BRIDGE_OWNER_PASSWORD".into(), "wrong".into())],
    )
    .await;
    let out = bad.cli(&["login", "remote", "--no-browser"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn concurrent_get_tokens_on_an_expiring_token_refresh_once() {
    let f = FixtureHttp::start(&["--access-ttl", "3"], None).await;
    let (_dir, agent) = logged_in(&f, &[]).await;
    let mut ipc = agent.ipc().await;
    let before = token_of(&ipc.token("remote", 0).await);
    // Tokens issued from now on live 120 s, so one refresh satisfies everyone. Once the 3 s
    // token has run out, all 100 callers find it wanting at once. (Should the background
    // refresher get there first, it is the one refresh and the callers take its token.)
    f.control(json!({"access_ttl": 120})).await;
    wait_for(
        "the 3 s token to run out",
        Duration::from_secs(20),
        async || {
            let Response::Status { upstreams, .. } = ipc.ask(Request::Status).await else {
                return None;
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            (upstreams[0].expires_at? <= now).then_some(())
        },
    )
    .await;
    let calls = (0..100).map(|_| {
        let path = agent.dir.join("agent.sock");
        async move { AgentIpc::connect(&path).await.token("remote", 60).await }
    });
    let answers = futures_util::future::join_all(calls).await;
    let tokens: std::collections::BTreeSet<_> = answers.iter().map(token_of).collect();
    assert_eq!(tokens.len(), 1, "everyone got the same new token");
    assert!(!tokens.contains(&before));
    let s = f.stats().await;
    assert_eq!(s["refreshes"], 1, "{s}");
    assert_eq!(s["reuse_detected"], 0);
}

#[tokio::test]
async fn kill_9_after_a_rotation_loses_nothing() {
    let f = FixtureHttp::start(&[], None).await;
    let (dir, mut agent) = logged_in(&f, &[]).await;
    for round in 0..3 {
        let mut ipc = agent.ipc().await;
        let t = token_of(&ipc.token("remote", 0).await);
        let r = ipc
            .ask(Request::TokenRejected {
                upstream: "remote".into(),
                token_fingerprint: proto::token_fingerprint(&t),
            })
            .await;
        assert_eq!(r, Response::Ack);
        // Killed right after the rotation was acknowledged.
        signal(agent.proc.child.id() as i32, libc::SIGKILL);
        wait_exit(&mut agent.proc.child, Duration::from_secs(10));
        agent = AgentProc::start(dir.path(), &[]).await;
        let mut ipc = agent.ipc().await;
        let after = token_of(&ipc.token("remote", 0).await);
        assert_ne!(after, t, "round {round}");
    }
    // The restarted agent refreshes with the newest refresh token: no reuse, ever.
    let mut ipc = agent.ipc().await;
    let t = token_of(&ipc.token("remote", 0).await);
    ipc.ask(Request::TokenRejected {
        upstream: "remote".into(),
        token_fingerprint: proto::token_fingerprint(&t),
    })
    .await;
    let s = f.stats().await;
    assert_eq!(s["reuse_detected"], 0, "{s}");
    assert_eq!(s["refreshes"], 4, "{s}");
}

#[tokio::test]
async fn a_rejected_token_that_was_already_replaced_is_not_refreshed_again() {
    let f = FixtureHttp::start(&[], None).await;
    let (_dir, agent) = logged_in(&f, &[]).await;
    let mut ipc = agent.ipc().await;
    let old = token_of(&ipc.token("remote", 0).await);
    let fp = proto::token_fingerprint(&old);
    ipc.ask(Request::TokenRejected {
        upstream: "remote".into(),
        token_fingerprint: fp.clone(),
    })
    .await;
    ipc.ask(Request::TokenRejected {
        upstream: "remote".into(),
        token_fingerprint: fp,
    })
    .await;
    assert_eq!(f.stats().await["refreshes"], 1);
}

#[tokio::test]
async fn token_endpoint_down_serves_the_old_token_then_recovers() {
    let f = FixtureHttp::start(&["--access-ttl", "3"], None).await;
    let (_dir, agent) = logged_in(&f, &[]).await;
    let mut ipc = agent.ipc().await;
    let old = token_of(&ipc.token("remote", 0).await);
    f.control(json!({"token_fail": true})).await;
    // Wanting more validity than it has: the refresh fails, the old token is served.
    assert_eq!(token_of(&ipc.token("remote", 60).await), old);
    // Once it has expired and the server is still down: a typed error.
    let err = wait_for(
        "the old token to expire",
        Duration::from_secs(20),
        async || match ipc.token("remote", 0).await {
            Response::Error { error } => Some(error),
            _ => None,
        },
    )
    .await;
    assert!(matches!(err, AgentError::RefreshFailed { .. }), "{err:?}");
    f.control(json!({"token_fail": false})).await;
    // The background refresher retries with backoff and recovers without anyone asking.
    wait_for(
        "the agent to recover",
        Duration::from_secs(30),
        async || {
            let Response::Status { upstreams, .. } = ipc.ask(Request::Status).await else {
                return None;
            };
            (upstreams[0].last_error.is_none()).then_some(())
        },
    )
    .await;
    assert!(matches!(
        ipc.token("remote", 0).await,
        Response::Token { .. }
    ));
    assert_eq!(f.stats().await["reuse_detected"], 0);
}

#[tokio::test]
async fn a_revoked_refresh_token_means_needs_login() {
    let f = FixtureHttp::start(&[], None).await;
    let (_dir, agent) = logged_in(&f, &[]).await;
    let mut ipc = agent.ipc().await;
    let t = token_of(&ipc.token("remote", 0).await);
    // Revoked, and the owner no longer consents: no headless re-login can save it.
    f.control(json!({"revoke_all": true, "deny_consent": true}))
        .await;
    // The server refuses the access token; the refresh that follows meets invalid_grant.
    ipc.ask(Request::TokenRejected {
        upstream: "remote".into(),
        token_fingerprint: proto::token_fingerprint(&t),
    })
    .await;
    match ipc.token("remote", 0).await {
        Response::Error {
            error: AgentError::NeedsLogin { upstream, how },
        } => {
            assert_eq!(upstream, "remote");
            assert_eq!(how, "mcp-cred-agent login remote");
        }
        other => panic!("{other:?}"),
    }
    // And a new login fixes it once the owner consents again.
    f.control(json!({"deny_consent": false})).await;
    let out = agent.cli(&["login", "remote", "--no-browser"]).await;
    assert!(out.status.success());
    assert!(matches!(
        ipc.token("remote", 0).await,
        Response::Token { .. }
    ));
}

#[tokio::test]
async fn logout_revokes_and_forgets() {
    let f = FixtureHttp::start(&[], None).await;
    let (_dir, agent) = logged_in(&f, &[]).await;
    let out = agent.cli(&["logout", "remote"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(f.stats().await["revocations"].as_u64().unwrap() >= 1);
    let mut ipc = agent.ipc().await;
    assert!(matches!(
        ipc.token("remote", 0).await,
        Response::Error {
            error: AgentError::NeedsLogin { .. }
        }
    ));
    let status = agent.cli(&["status"]).await;
    assert!(String::from_utf8_lossy(&status.stdout).contains("not logged in"));
}

#[tokio::test]
async fn a_bad_store_is_refused_and_left_untouched() {
    let dir = TempDir::new("store");
    dir.write(
        "config.toml",
        &oauth_entry("remote", "http://127.0.0.1:9/mcp"),
    );
    let store = dir.write("oauth-state.json", "{\"version\":1}");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = AgentProc::command(dir.path(), &[]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must be 0600"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&store, "{ garbage").unwrap();
    let out = AgentProc::command(dir.path(), &[]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid token store"));
    assert_eq!(std::fs::read_to_string(&store).unwrap(), "{ garbage");
}

#[tokio::test]
async fn a_forged_callback_is_refused() {
    let f = FixtureHttp::start(&[], None).await;
    let (_dir, agent) = logged_in(&f, &[]).await;
    let mut ipc = agent.ipc().await;
    // A redirect whose state no login of ours is waiting for (login CSRF, or a replay).
    let r = ipc
        .ask(Request::CompleteLogin {
            state: "forged-state".into(),
            code: Some("code-from-elsewhere".into()),
            error: None,
            iss: None,
        })
        .await;
    assert!(
        matches!(
            r,
            Response::Error {
                error: AgentError::UnknownState
            }
        ),
        "{r:?}"
    );
    let s = f.stats().await;
    assert_eq!(s["codes_exchanged"], 1, "no code was exchanged for it: {s}");
    assert!(matches!(
        ipc.token("remote", 0).await,
        Response::Token { .. }
    ));
}

#[tokio::test]
async fn oversized_metadata_is_refused() {
    let f = FixtureHttp::start(&[], None).await;
    f.control(json!({"huge_metadata": true})).await;
    let dir = TempDir::new("agent");
    dir.write("config.toml", &oauth_entry("remote", &f.mcp_url()));
    let agent = AgentProc::start(dir.path(), &[]).await;
    let out = agent.cli(&["login", "remote", "--no-browser"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("an answer over 262144 bytes"), "{err}");
    assert!(
        err.len() < 2000,
        "the error does not carry the document: {} bytes",
        err.len()
    );
}

#[tokio::test]
async fn a_rotation_lost_to_a_crash_heals_with_a_headless_login() {
    // The one window rotation cannot close: the server rotated, the agent died before it
    // stored the new refresh token. A strict server then sees the old one as reuse and revokes
    // the login; with headless consent the agent logs in again by itself.
    let f = FixtureHttp::start(&["--access-ttl", "3"], None).await;
    let (dir, mut agent) = logged_in(&f, &[]).await;
    f.control(json!({"hang_after_rotate": true})).await;
    wait_for(
        "the background refresh to rotate",
        Duration::from_secs(30),
        async || (f.stats().await["refreshes"] == 1).then_some(()),
    )
    .await;
    signal(agent.proc.child.id() as i32, libc::SIGKILL);
    wait_exit(&mut agent.proc.child, Duration::from_secs(10));
    f.control(json!({"hang_after_rotate": false})).await;
    agent = AgentProc::start(dir.path(), &[]).await;
    let mut ipc = agent.ipc().await;
    // The stored token has expired: the refresh with the rotated-away token is reuse.
    assert!(
        matches!(ipc.token("remote", 0).await, Response::Token { .. }),
        "{}",
        agent.proc.text()
    );
    let s = f.stats().await;
    assert_eq!(s["reuse_detected"], 1, "{s}");
    assert_eq!(s["codes_exchanged"], 2, "one headless login healed it: {s}");
    agent
        .proc
        .wait_log("the re-login to be logged", |l| {
            l.contains("logged in again headlessly")
        })
        .await;
}

#[tokio::test]
async fn sighup_makes_the_agent_reread_its_config_and_keeps_it_alive() {
    let f = FixtureHttp::start(&[], None).await;
    let (dir, agent) = logged_in(&f, &[]).await;
    let mut ipc = agent.ipc().await;
    assert!(matches!(
        ipc.token("second", 0).await,
        Response::Error {
            error: AgentError::UnknownUpstream { .. }
        }
    ));
    dir.write(
        "config.toml",
        &(oauth_entry("remote", &f.mcp_url()) + &oauth_entry("second", &f.mcp_url())),
    );
    signal(agent.proc.child.id() as i32, libc::SIGHUP);
    wait_for(
        "the agent to know the new upstream",
        Duration::from_secs(10),
        async || {
            let Response::Status { upstreams, .. } = ipc.ask(Request::Status).await else {
                return None;
            };
            upstreams.iter().any(|u| u.name == "second").then_some(())
        },
    )
    .await;
    assert!(
        alive(agent.proc.child.id()),
        "SIGHUP must not kill the agent"
    );
    let out = agent.cli(&["login", "second", "--no-browser"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(matches!(
        ipc.token("second", 30).await,
        Response::Token { .. }
    ));
    // The first login is untouched by the reload.
    assert!(matches!(
        ipc.token("remote", 30).await,
        Response::Token { .. }
    ));
    // A broken file is refused and the running configuration stays.
    dir.write("config.toml", "[[upstream]]\nname = \n");
    signal(agent.proc.child.id() as i32, libc::SIGHUP);
    agent
        .proc
        .wait_log("the broken file to be refused", |l| {
            l.contains("keeping the running configuration")
        })
        .await;
    assert!(matches!(
        ipc.token("second", 30).await,
        Response::Token { .. }
    ));
}

#[tokio::test]
async fn saving_config_toml_makes_the_agent_reread_it_without_a_signal() {
    let f = FixtureHttp::start(&[], None).await;
    let (dir, agent) = logged_in(&f, &[]).await;
    let mut ipc = agent.ipc().await;
    let tmp = dir.path().join(".config.toml.new");
    std::fs::write(
        &tmp,
        oauth_entry("remote", &f.mcp_url()) + &oauth_entry("second", &f.mcp_url()),
    )
    .unwrap();
    std::fs::rename(&tmp, dir.path().join("config.toml")).unwrap();
    wait_for(
        "the agent to know the saved upstream",
        Duration::from_secs(10),
        async || {
            let Response::Status { upstreams, .. } = ipc.ask(Request::Status).await else {
                return None;
            };
            upstreams.iter().any(|u| u.name == "second").then_some(())
        },
    )
    .await;
    agent
        .proc
        .wait_log("the reload to name its cause", |l| {
            l.contains("config.toml changed: reloading")
        })
        .await;
}
