//! Chaos: under a steady load of concurrent tool calls, kill -9 in turn a stdio upstream, the
//! HTTP upstream (the fixture that is also the authorization server), the credential agent and
//! the bridge, while the authorization server fails, delays and forgets access tokens
//! throughout and access tokens are short-lived (so refresh tokens rotate all the time).
//!
//! Asserted: every call gets an answer (a result or a JSON-RPC error with a message) within its
//! deadline, no hangs; after each fault the system serves every tool again without anyone
//! acting; the authorization server never sees a refresh token reused; the agent's store ends
//! logged in; the bridge's file descriptors and memory return to their baseline.
//!
//! Refresh-token rotation has one window no client can close: if either side dies after the
//! authorization server rotated a token and before the agent stored the new one, the login is
//! lost (a strict server sees the old token again as reuse). The agent and the authorization
//! server are therefore killed while the token endpoint refuses requests and after the agent
//! has stored the latest token; the stdio upstream and the bridge are killed at any moment.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mcp_bridge_tests::*;
use serde_json::{Value, json};
use tokio::sync::Mutex as AsyncMutex;

/// The longest a call may take: upstream request timeout (8 s) + waiting for a reconnect
/// (4 s) + a token fetch, with room to spare. Longer is a hang.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    rpc_errors: std::sync::Mutex<Vec<String>>,
    /// Connection refused/reset or 404 (session gone): only while the bridge restarts.
    transport: AtomicU64,
    hangs: AtomicU64,
    max_latency_ms: AtomicU64,
}

impl Tally {
    fn done(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
            + self.rpc_errors.lock().unwrap().len() as u64
            + self.transport.load(Ordering::Relaxed)
    }

    /// Waits until `n` more calls have been answered (one way or another).
    async fn progress(&self, n: u64, what: &str) {
        let from = self.done();
        wait_for(what, Duration::from_secs(60), async || {
            (self.done() >= from + n).then_some(())
        })
        .await;
    }
}

enum Outcome {
    Answer(Value),
    SessionGone,
    Transport,
    Hang,
}

async fn post(http: &reqwest::Client, url: &str, session: Option<&str>, msg: &Value) -> Outcome {
    let mut req = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .timeout(CALL_DEADLINE);
    if let Some(s) = session {
        req = req
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-11-25");
    }
    let resp = match req.body(msg.to_string()).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Outcome::Hang,
        Err(_) => return Outcome::Transport,
    };
    if resp.status() == 404 {
        return Outcome::SessionGone;
    }
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = match resp.text().await {
        Ok(b) => b,
        Err(e) if e.is_timeout() => return Outcome::Hang,
        Err(_) => return Outcome::Transport,
    };
    let mut msg = if is_sse {
        parse_sse(&body)
            .into_iter()
            .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
            .find(|m| m.get("id") == msg.get("id"))
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&body).unwrap_or(Value::Null)
    };
    if let Some(sid) = sid {
        msg["_session"] = Value::String(sid);
    }
    Outcome::Answer(msg)
}

async fn initialize(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "chaos", "version": "1"}}});
    let Outcome::Answer(a) = post(http, url, None, &init).await else {
        return Err("initialize failed".into());
    };
    let sid = a["_session"].as_str().ok_or("no session id")?.to_owned();
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    post(http, url, Some(&sid), &note).await;
    Ok(sid)
}

/// What one worker calls, and what a good answer says.
fn call_for(tool: &str, n: u64) -> (Value, String) {
    match tool {
        "alpha__sleep" => (json!({"ms": 20}), String::new()),
        _ => (json!({"message": n.to_string()}), format!("[remote] {n}")),
    }
}

async fn worker(url: String, tool: &'static str, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::new();
    let mut session: Option<String> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let sid = match &session {
            Some(s) => s.clone(),
            None => match initialize(&http, &url).await {
                Ok(s) => {
                    session = Some(s.clone());
                    s
                }
                Err(_) => {
                    tally.transport.fetch_add(1, Ordering::Relaxed);
                    // Pacing while the bridge is down, not synchronisation.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        n += 1;
        let (args, want) = call_for(tool, n);
        let msg = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
            "params": {"name": tool, "arguments": args}});
        let started = Instant::now();
        let outcome = post(&http, &url, Some(&sid), &msg).await;
        tally
            .max_latency_ms
            .fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        match outcome {
            Outcome::Answer(a) if a["result"].is_object() && a["result"]["isError"] != true => {
                assert!(
                    want.is_empty() || text_of(&a) == want,
                    "a wrong answer to call {n} of {tool}: {a}"
                );
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Answer(a) => {
                let msg = a["error"]["message"]
                    .as_str()
                    .or(a["result"]["content"][0]["text"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                assert!(
                    !msg.is_empty(),
                    "an answer that is neither a result nor a clear error: {a}"
                );
                tally
                    .rpc_errors
                    .lock()
                    .unwrap()
                    .push(format!("{tool}: {msg}"));
            }
            Outcome::SessionGone => {
                session = None;
                tally.transport.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Transport => {
                session = None;
                tally.transport.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Outcome::Hang => {
                tally.hangs.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Waits until a new client gets a good answer from every upstream, then ends its session.
async fn full_service(url: &str, what: &str) -> Duration {
    let started = Instant::now();
    let http = reqwest::Client::new();
    wait_for(what, Duration::from_secs(60), async || {
        let sid = initialize(&http, url).await.ok()?;
        let mut good = true;
        for (i, tool) in ["alpha__sleep", "remote__echo"].into_iter().enumerate() {
            let (args, want) = call_for(tool, 1_000 + i as u64);
            let msg = json!({"jsonrpc": "2.0", "id": 1_000 + i, "method": "tools/call",
                "params": {"name": tool, "arguments": args}});
            good &= matches!(post(&http, url, Some(&sid), &msg).await,
                Outcome::Answer(a) if a["result"].is_object() && a["result"]["isError"] != true
                    && (want.is_empty() || text_of(&a) == want));
        }
        let _ = http.delete(url).header("mcp-session-id", &sid).send().await;
        good.then_some(())
    })
    .await;
    started.elapsed()
}

/// The authorization server's faults, applied until `quiet` is set: it forgets every access
/// token, answers slowly, refuses token requests, and recovers, over and over.
async fn as_chaos(
    base: String,
    quiet: Arc<AtomicBool>,
    lock: Arc<AsyncMutex<()>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::new();
    let phases = [
        json!({"expire_access": true}),
        json!({"token_delay_ms": 700}),
        json!({"token_delay_ms": 0, "expire_access": true}),
        json!({"token_fail": true}),
        json!({"token_fail": false, "expire_access": true}),
    ];
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        // Pacing of the fault schedule, not synchronisation.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let _held = lock.lock().await;
        if quiet.load(Ordering::Relaxed) {
            continue;
        }
        let _ = http
            .post(format!("{base}/control"))
            .json(&phases[i % phases.len()])
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        i += 1;
    }
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn stored_refresh_token(dir: &std::path::Path) -> Option<String> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir.join("oauth-state.json")).ok()?).ok()?;
    v["upstreams"]["remote"]["refresh_token"]
        .as_str()
        .map(str::to_owned)
}

async fn stats(base: &str) -> Option<Value> {
    reqwest::get(format!("{base}/control/stats"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Makes the token endpoint refuse requests, then waits until the agent has stored the refresh
/// token the server issued last: no rotation can be half done while a process is killed.
async fn quiesce_tokens(
    base: &str,
    dir: &std::path::Path,
    quiet: &AtomicBool,
    lock: &AsyncMutex<()>,
) {
    quiet.store(true, Ordering::Relaxed);
    let _held = lock.lock().await;
    let r = reqwest::Client::new()
        .post(format!("{base}/control"))
        .json(&json!({"token_fail": true, "token_delay_ms": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for(
        "the agent to store the latest refresh token",
        Duration::from_secs(20),
        async || {
            let latest = stats(base).await?["latest_refresh"].as_str()?.to_owned();
            (stored_refresh_token(dir)? == latest).then_some(())
        },
    )
    .await;
}

async fn resume_tokens(base: &str, quiet: &AtomicBool) {
    let r = reqwest::Client::new()
        .post(format!("{base}/control"))
        .json(&json!({"token_fail": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    quiet.store(false, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_every_process_under_load_loses_nothing() {
    let dir = TempDir::new("chaos");
    let as_state = dir.path().join("fixture-as.json");
    let as_state_arg = as_state.display().to_string();
    let mut fixture =
        FixtureHttp::start(&["--access-ttl", "20", "--state", &as_state_arg], None).await;
    let as_port = fixture.base.rsplit(':').next().unwrap().to_owned();
    let base = fixture.base.clone();
    let timing = "request_timeout_secs = 8\nreconnect_wait_secs = 4\nping_interval_secs = 2\nping_timeout_secs = 2\n\n";
    dir.write(
        "config.toml",
        &format!(
            "{}{timing}{}{timing}",
            oauth_entry("remote", &fixture.mcp_url()),
            fixture_entry("alpha", &[])
        ),
    );
    let mut agent = AgentProc::start(dir.path(), &[]).await;
    let out = agent.cli(&["login", "remote", "--no-browser"]).await;
    assert!(
        out.status.success(),
        "login: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut bridge = Bridge::builder().in_dir(dir.path()).start().await;
    bridge.wait_ready(2).await;
    let url = bridge.url.clone();
    let port = bridge.port.to_string();

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let quiet = Arc::new(AtomicBool::new(false));
    let control_lock = Arc::new(AsyncMutex::new(()));
    let mut tasks = Vec::new();
    for tool in [
        "alpha__sleep",
        "alpha__sleep",
        "remote__echo",
        "remote__echo",
    ] {
        tasks.push(tokio::spawn(worker(
            url.clone(),
            tool,
            tally.clone(),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(as_chaos(
        base.clone(),
        quiet.clone(),
        control_lock.clone(),
        stop.clone(),
    )));
    tally.progress(400, "warm-up calls").await;
    let (fd_base, rss_base) = (fd_count(bridge.pid()), rss_kib(bridge.pid()));
    let mut recovery = Vec::new();

    // 1. The stdio upstream, at any moment.
    let status = bridge.status().await;
    let alpha = status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "alpha")
        .cloned()
        .unwrap();
    assert_eq!(alpha["state"], "ready", "{alpha}");
    let pid = bridge
        .wait_log("the stdio upstream's pid", |l| {
            l.contains("started stdio upstream")
        })
        .await;
    let pid: i32 = pid
        .split("pid=")
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {pid:?}"));
    signal(pid, libc::SIGKILL);
    tally
        .progress(100, "calls after killing the stdio upstream")
        .await;
    recovery.push((
        "stdio upstream",
        full_service(&url, "full service after the stdio kill").await,
    ));

    // 2. The HTTP upstream, which is also the authorization server.
    quiesce_tokens(&base, dir.path(), &quiet, &control_lock).await;
    signal(fixture.proc.child.id() as i32, libc::SIGKILL);
    let _ = fixture.proc.child.wait();
    tally
        .progress(100, "calls while the HTTP upstream is down")
        .await;
    fixture = FixtureHttp::start(
        &[
            "--access-ttl",
            "20",
            "--state",
            &as_state_arg,
            "--port",
            &as_port,
        ],
        None,
    )
    .await;
    assert_eq!(fixture.base, base);
    quiet.store(false, Ordering::Relaxed);
    recovery.push((
        "HTTP upstream + authorization server",
        full_service(&url, "full service after the HTTP upstream restart").await,
    ));

    // 3. The credential agent.
    quiesce_tokens(&base, dir.path(), &quiet, &control_lock).await;
    signal(agent.proc.child.id() as i32, libc::SIGKILL);
    let _ = agent.proc.child.wait();
    // Make the bridge's cached token useless so it has to ask the missing agent.
    fixture.control(json!({"expire_access": true})).await;
    tally.progress(100, "calls while the agent is down").await;
    agent = AgentProc::start(dir.path(), &[]).await;
    resume_tokens(&base, &quiet).await;
    recovery.push((
        "credential agent",
        full_service(&url, "full service after the agent restart").await,
    ));

    // The bridge survived three faults: its descriptors and memory are back to the baseline.
    let pid = bridge.pid();
    let fds = wait_for(
        "the bridge's fds back to baseline",
        Duration::from_secs(30),
        async || {
            let n = fd_count(pid);
            (n <= fd_base + 8).then_some(n)
        },
    )
    .await;
    let rss = rss_kib(pid);
    assert!(
        rss <= rss_base + rss_base / 2 + 8 * 1024,
        "bridge RSS {rss} KiB after the faults, {rss_base} KiB before"
    );

    // 4. The bridge itself, at any moment; a new one on the same port, same config dir.
    signal(bridge.pid(), libc::SIGKILL);
    let _ = bridge.child.wait();
    tally.progress(100, "calls while the bridge is down").await;
    bridge = Bridge::builder()
        .in_dir(dir.path())
        .env("MCP_BRIDGE_PORT", &port)
        .start()
        .await;
    assert_eq!(bridge.url, url);
    recovery.push((
        "bridge",
        full_service(&url, "full service after the bridge restart").await,
    ));
    tally.progress(100, "calls after the last fault").await;

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(CALL_DEADLINE * 2, t)
            .await
            .expect("a worker hung")
            .unwrap();
    }
    let errors = tally.rpc_errors.lock().unwrap().clone();
    let mut kinds: Vec<String> = errors
        .iter()
        .map(|e| e.chars().take(90).collect())
        .collect();
    kinds.sort();
    kinds.dedup();
    let st = fixture.stats().await;
    eprintln!(
        "chaos: {} ok, {} JSON-RPC errors, {} transport errors (bridge down), {} hangs, slowest call {} ms; \
         recovery {recovery:?}; bridge fds {fd_base} -> {fds}, RSS {rss_base} -> {rss} KiB; \
         authorization server: {} refreshes, {} reuse; error kinds: {kinds:#?}",
        tally.ok.load(Ordering::Relaxed),
        errors.len(),
        tally.transport.load(Ordering::Relaxed),
        tally.hangs.load(Ordering::Relaxed),
        tally.max_latency_ms.load(Ordering::Relaxed),
        st["refreshes"],
        st["reuse_detected"],
    );
    assert_eq!(tally.hangs.load(Ordering::Relaxed), 0, "calls hung");
    assert!(tally.max_latency_ms.load(Ordering::Relaxed) < CALL_DEADLINE.as_millis() as u64);
    assert_eq!(st["reuse_detected"], 0, "a refresh token was reused: {st}");
    assert!(
        st["refreshes"].as_u64().unwrap() >= 3,
        "tokens did not rotate: {st}"
    );
    assert_eq!(st["codes_exchanged"], 1, "a second login was needed: {st}");
    let mut ipc = agent.ipc().await;
    let proto::Response::Status { upstreams, .. } = ipc.ask(proto::Request::Status).await else {
        panic!("no status from the agent");
    };
    assert!(upstreams.iter().all(|u| u.logged_in), "{upstreams:?}");
    drop(bridge);
}
