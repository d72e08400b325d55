//! Upstream lifecycle end to end: crashes, backoff, keepalive, the warm cache, list_changed
//! accounting, and config reload.

use std::time::{Duration, Instant};

use mcp_bridge_tests::*;
use serde_json::{Value, json};

fn pid_of(resp: &Value) -> u32 {
    text_of(resp)
        .split("pid=")
        .nth(1)
        .unwrap_or_else(|| panic!("no pid in {resp}"))
        .parse()
        .unwrap()
}

fn upstream<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap()
}

#[tokio::test]
async fn kill_9_of_a_child_mid_call_fails_fast_and_recovers() {
    let (b, c) = bridge_with(&fixture_entry("alpha", &[]), 1).await;
    let pid = pid_of(&c.call_tool("alpha__whoami", json!({})).await);
    let slow = {
        let c = c.fork();
        tokio::spawn(async move { c.call_tool("alpha__sleep", json!({"ms": 60_000})).await })
    };
    b.wait_log("the call reached the child", |l| {
        l.contains("fixture alpha sleeping 60000")
    })
    .await;
    let killed = Instant::now();
    signal(pid as i32, libc::SIGKILL);
    let r = tokio::time::timeout(Duration::from_secs(20), slow)
        .await
        .expect("the in-flight call did not hang")
        .unwrap();
    let failed_after = killed.elapsed();
    let msg = r["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.contains("alpha") && msg.contains("reconnecting"), "{r}");
    // The next call waits for the reconnect and succeeds on a new process.
    let r = c.call_tool("alpha__whoami", json!({})).await;
    let back_after = killed.elapsed();
    assert_ne!(pid_of(&r), pid);
    eprintln!(
        "MEASURED: child death -> failed in-flight call {:.1} ms; death -> first successful call {:.1} ms",
        failed_after.as_secs_f64() * 1e3,
        back_after.as_secs_f64() * 1e3
    );
}

#[tokio::test]
async fn a_child_that_always_crashes_backs_off_and_others_are_unaffected() {
    let config = fixture_entry("alpha", &["--exit-on-start", "1"]) + &fixture_entry("beta", &[]);
    let b = Bridge::builder().config(&config).start().await;
    let c = b.client().await;
    let status = wait_for(
        "alpha to fail four times",
        Duration::from_secs(30),
        async || {
            let s = b.status().await;
            (upstream(&s, "alpha")["failures"].as_u64()? >= 4).then_some(s)
        },
    )
    .await;
    let alpha = upstream(&status, "alpha");
    assert!(
        alpha["backoff_ceiling_ms"].as_u64().unwrap() >= 2000,
        "{alpha}"
    );
    assert!(
        alpha["last_error"].as_str().unwrap().contains("exited"),
        "{alpha}"
    );
    assert!(alpha["next_retry_at"].is_number(), "{alpha}");
    assert_eq!(
        text_of(&c.call_tool("beta__echo", json!({"message": "fine"})).await),
        "[beta] fine"
    );
    let h = reqwest::get(format!("{}/healthz", b.base)).await.unwrap();
    assert_eq!(h.status(), 200);
}

#[tokio::test]
async fn a_hung_upstream_is_detected_by_ping() {
    let config =
        fixture_entry("alpha", &[]) + "ping_interval_secs = 0.3\nping_timeout_secs = 0.5\n";
    let (b, c) = bridge_with(&config, 1).await;
    let pid = pid_of(&c.call_tool("alpha__whoami", json!({})).await);
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        c.call_tool("alpha__hang", json!({})),
    )
    .await
    .expect("the call to the hung upstream ended");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("hung"),
        "{r}"
    );
    b.wait_log("ping failure logged", |l| {
        l.contains("upstream=alpha") && l.contains("looks hung")
    })
    .await;
    let again = pid_of(&c.call_tool("alpha__whoami", json!({})).await);
    assert_ne!(again, pid);
    wait_for(
        "the hung child to be killed",
        Duration::from_secs(10),
        async || (!alive(pid)).then_some(()),
    )
    .await;
}

#[tokio::test]
async fn start_with_the_upstream_down_serves_cached_tools() {
    let dir = TempDir::new("cache");
    {
        let mut b = Bridge::builder()
            .in_dir(dir.path())
            .config(&fixture_entry("alpha", &[]))
            .start()
            .await;
        b.wait_ready(1).await;
        let cache = dir.path().join("tools-cache.json");
        wait_for("the cache file", Duration::from_secs(10), async || {
            std::fs::read_to_string(&cache)
                .ok()
                .filter(|t| t.contains("\"whoami\""))
                .map(|_| ())
        })
        .await;
        assert!(b.terminate().success());
    }
    let broken = fixture_entry("alpha", &["--exit-on-start", "1"]) + "reconnect_wait_secs = 0.5\n";
    let b = Bridge::builder()
        .in_dir(dir.path())
        .config(&broken)
        .start()
        .await;
    // At once, before any handshake could have finished.
    let c = b.client().await;
    let names = c.tool_names().await;
    assert!(names.contains(&"alpha__echo".to_owned()), "{names:?}");
    let r = c.call_tool("alpha__echo", json!({"message": "x"})).await;
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("alpha"),
        "{r}"
    );
    let s = b.status().await;
    assert_ne!(upstream(&s, "alpha")["state"], "ready");
    assert_eq!(upstream(&s, "alpha")["tools"], 8);
    // The cache keeps alpha's list while it is down.
    let text = std::fs::read_to_string(dir.path().join("tools-cache.json")).unwrap();
    assert!(text.contains("\"whoami\""));
}

#[tokio::test]
async fn a_corrupt_cache_is_ignored_and_replaced_only_by_a_good_list() {
    let dir = TempDir::new("corrupt");
    let cache = dir.write("tools-cache.json", "{ this is not json");
    let b = Bridge::builder()
        .in_dir(dir.path())
        .config(&fixture_entry("alpha", &["--exit-on-start", "1"]))
        .start()
        .await;
    b.wait_log("corruption logged", |l| l.contains("tool cache is corrupt"))
        .await;
    wait_for("two failed starts", Duration::from_secs(20), async || {
        (upstream(&b.status().await, "alpha")["failures"].as_u64()? >= 2).then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&cache).unwrap(),
        "{ this is not json"
    );
    // A working upstream arrives by reload; its list replaces the corrupt file.
    std::fs::write(dir.path().join("config.toml"), fixture_entry("alpha", &[])).unwrap();
    signal(b.pid(), libc::SIGHUP);
    wait_for("a good cache file", Duration::from_secs(20), async || {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&cache).ok()?).ok()?;
        v["upstreams"]["alpha"]["tools"]
            .as_array()
            .filter(|t| !t.is_empty())
            .map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn list_changed_is_sent_once_per_real_change() {
    let (b, c) = bridge_with(&fixture_entry("alpha", &[]), 1).await;
    let base = b.status().await["list_changed_sent"].as_u64().unwrap();
    let sent = async || b.status().await["list_changed_sent"].as_u64().unwrap() - base;

    c.call_tool("alpha__add_tool", json!({"name": "first"}))
        .await;
    c.wait_for_tool("alpha__first", true).await;
    // A list_changed without a change, and a restart that brings back the same list.
    c.call_tool("alpha__touch_list", json!({})).await;
    let pid = pid_of(&c.call_tool("alpha__whoami", json!({})).await);
    c.call_tool("alpha__exit", json!({})).await;
    let again = pid_of(&c.call_tool("alpha__whoami", json!({})).await);
    assert_ne!(pid, again);
    // The restarted fixture lost its added tool: that is a real change (the list shrank).
    c.wait_for_tool("alpha__first", false).await;
    c.call_tool("alpha__add_tool", json!({"name": "first"}))
        .await;
    c.wait_for_tool("alpha__first", true).await;
    assert_eq!(
        sent().await,
        3,
        "one notification per real change: add, shrink on restart, add"
    );
}

#[tokio::test]
async fn a_restart_with_the_same_list_sends_no_list_changed() {
    let (b, c) = bridge_with(&fixture_entry("alpha", &[]), 1).await;
    let before = b.status().await["list_changed_sent"].as_u64().unwrap();
    let pid = pid_of(&c.call_tool("alpha__whoami", json!({})).await);
    c.call_tool("alpha__exit", json!({})).await;
    assert_ne!(pid_of(&c.call_tool("alpha__whoami", json!({})).await), pid);
    c.call_tool("alpha__touch_list", json!({})).await;
    // A real change afterwards proves the counter is live; the restart and touch added nothing.
    c.call_tool("alpha__add_tool", json!({"name": "marker"}))
        .await;
    c.wait_for_tool("alpha__marker", true).await;
    assert_eq!(
        b.status().await["list_changed_sent"].as_u64().unwrap() - before,
        1
    );
}

#[tokio::test]
async fn sighup_reload_starts_stops_and_keeps_upstreams() {
    let (b, c) = bridge_with(&fixture_entry("alpha", &[]), 1).await;
    let alpha_pid = pid_of(&c.call_tool("alpha__whoami", json!({})).await);
    let config = b.dir.join("config.toml");

    std::fs::write(
        &config,
        fixture_entry("alpha", &[]) + &fixture_entry("beta", &[]),
    )
    .unwrap();
    signal(b.pid(), libc::SIGHUP);
    b.wait_ready(2).await;
    assert_eq!(
        text_of(&c.call_tool("beta__echo", json!({"message": "new"})).await),
        "[beta] new"
    );
    assert_eq!(
        pid_of(&c.call_tool("alpha__whoami", json!({})).await),
        alpha_pid,
        "untouched upstream kept its process"
    );
    let beta_pid = pid_of(&c.call_tool("beta__whoami", json!({})).await);

    std::fs::write(&config, fixture_entry("beta", &["--extra-tools", "1"])).unwrap();
    signal(b.pid(), libc::SIGHUP);
    wait_for(
        "alpha gone and beta changed",
        Duration::from_secs(20),
        async || {
            let names = c.tool_names().await;
            (!names.iter().any(|n| n.starts_with("alpha__"))
                && names.contains(&"beta__t0".to_owned()))
            .then_some(())
        },
    )
    .await;
    wait_for(
        "alpha's process stopped",
        Duration::from_secs(10),
        async || (!alive(alpha_pid)).then_some(()),
    )
    .await;
    assert_ne!(
        pid_of(&c.call_tool("beta__whoami", json!({})).await),
        beta_pid,
        "changed upstream restarted"
    );

    // A broken file is refused and the running configuration stays.
    std::fs::write(&config, "[[upstream]]\nname = 'x'\n").unwrap();
    signal(b.pid(), libc::SIGHUP);
    b.wait_log("reload refused", |l| {
        l.contains("keeping the running configuration") && l.contains("line 1")
    })
    .await;
    assert_eq!(
        text_of(&c.call_tool("beta__echo", json!({"message": "still"})).await),
        "[beta] still"
    );
}

#[tokio::test]
async fn a_restart_right_after_sigterm_binds_the_port_while_a_call_drains() {
    let port = free_port().to_string();
    let dir = TempDir::new("restart-port");
    let config = fixture_entry("alpha", &[]);
    let first = Bridge::builder()
        .config(&config)
        .in_dir(dir.path())
        .env("MCP_BRIDGE_PORT", &port)
        .start()
        .await;
    first.wait_ready(1).await;
    let c = first.client().await;
    let slow = c.fork();
    let call =
        tokio::spawn(async move { slow.call_tool("alpha__sleep", json!({"ms": 4000})).await });
    first
        .wait_log("the call to be in flight", |l| {
            l.contains("sleeping 4000 ms")
        })
        .await;
    signal(first.pid(), libc::SIGTERM);
    // The service manager restarts it at once: the port must be free although the old process
    // is still draining the call.
    let second = Bridge::builder()
        .config(&config)
        .in_dir(dir.path())
        .env("MCP_BRIDGE_PORT", &port)
        .start()
        .await;
    assert!(
        alive(first.child.id()),
        "the first bridge was still draining when the second bound the port"
    );
    assert_eq!(second.port.to_string(), port);
    let answer = call.await.unwrap();
    assert_eq!(
        text_of(&answer),
        "[alpha] slept 4000",
        "the in-flight call finished"
    );
}

/// Writes `config.toml` the way editors save: a new file renamed over the old one.
fn save(dir: &std::path::Path, text: &str) {
    let tmp = dir.join(".config.toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("config.toml")).unwrap();
}

#[tokio::test]
async fn saving_config_toml_reloads_it_and_a_broken_save_is_refused() {
    let dir = TempDir::new("reload-on-save");
    dir.write("config.toml", &fixture_entry("alpha", &[]));
    let b = Bridge::builder().in_dir(dir.path()).start().await;
    b.wait_ready(1).await;
    let c = b.client().await;
    // No SIGHUP: the save alone.
    save(
        dir.path(),
        &(fixture_entry("alpha", &[]) + &fixture_entry("beta", &[])),
    );
    c.wait_for_tool("beta__echo", true).await;
    b.wait_log("the reload named its cause", |l| {
        l.contains("config.toml changed: reloading")
    })
    .await;
    // A broken save is refused and what runs stays.
    save(dir.path(), "[[upstream]]\nname = \"gamma\"\n");
    b.wait_log("the broken file refused", |l| {
        l.contains("config.toml changed: keeping the running configuration")
    })
    .await;
    let names = c.tool_names().await;
    assert!(
        names.contains(&"alpha__echo".to_owned()) && names.contains(&"beta__echo".to_owned()),
        "{names:?}"
    );
    // An edit in place counts too.
    std::fs::write(dir.path().join("config.toml"), fixture_entry("alpha", &[])).unwrap();
    c.wait_for_tool("beta__echo", false).await;
}

/// libfaketime (Debian `faketime`, installed by `.ci/run`): moves a process's wall clock by
/// what a file says, leaving its monotonic clock alone, as a suspend does.
fn faketime_env(file: &std::path::Path) -> Vec<(String, String)> {
    let lib = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|d| std::path::Path::new(d).join("faketime/libfaketimeMT.so.1"))
    .find(|p| p.exists())
    .expect(
        "the sleep/wake test needs libfaketime: `apt-get install faketime` (.ci/run installs it)",
    );
    [
        ("LD_PRELOAD", lib.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE", file.display().to_string()),
        ("FAKETIME_NO_CACHE", "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[tokio::test]
async fn after_a_sleep_remote_upstreams_reconnect_and_expired_tokens_are_refreshed() {
    let f = FixtureHttp::start(&["--access-ttl", "3600"], None).await;
    let dir = TempDir::new("sleep-wake");
    let clock = dir.path().join("faketime");
    std::fs::write(&clock, "+0\n").unwrap();
    let env = faketime_env(&clock);
    dir.write("config.toml", &oauth_entry("remote", &f.mcp_url()));
    let agent = AgentProc::start(dir.path(), &env).await;
    let out = agent.cli(&["login", "remote", "--no-browser"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The agent alone: two hours pass on the wall clock and none on the monotonic one, so the
    // access token (an hour's) expired while the machine slept. Nobody asks for it; the agent
    // notices the resume and the token is refreshed by itself. (Under libfaketime the agent's
    // refresh timer fires at the jump even without the resume's nudge, so this half shows the
    // outcome, not which of the two caused it; on a real suspend the timer's clock stops too.)
    let refreshes = f.stats().await["refreshes"].as_u64().unwrap();
    std::fs::write(&clock, "+7200\n").unwrap();
    agent
        .proc
        .wait_log("the agent to notice the resume", |l| {
            l.contains("the system resumed")
        })
        .await;
    wait_for(
        "the expired token refreshed",
        Duration::from_secs(15),
        async || (f.stats().await["refreshes"].as_u64() > Some(refreshes)).then_some(()),
    )
    .await;
    // Then the bridge: after the next sleep its remote connection, presumed dead, is replaced
    // at once.
    let mut builder = Bridge::builder().in_dir(dir.path());
    for (k, v) in &env {
        builder = builder.env(k, v);
    }
    let b = builder.start().await;
    b.wait_ready(1).await;
    let connects = b.status().await["upstreams"][0]["connects"]
        .as_u64()
        .unwrap();
    std::fs::write(&clock, "+14400\n").unwrap();
    b.wait_log("the bridge to notice the resume", |l| {
        l.contains("the system resumed")
    })
    .await;
    wait_for("a new connection", Duration::from_secs(15), async || {
        let u = b.status().await["upstreams"][0].clone();
        (u["connects"].as_u64() > Some(connects) && u["state"] == "ready").then_some(())
    })
    .await;
    // And the first call after the sleep works.
    let c = b.client().await;
    let names = c.tool_names().await;
    assert!(names.iter().any(|n| n.starts_with("remote__")), "{names:?}");
}
