//! `mcp-bench`: measures the bridge against a direct MCP server in one run and writes
//! BENCHMARKS.md. Run with `bash bench/run.sh` (release build first).
//!
//! Figures: calls/s and p50/p99 at concurrency 1, 16, 64 (direct and through the bridge), the
//! bridge's added latency, its resident memory idle and under load, launch → first `tools/list`
//! from the warm cache with an upstream that takes 2 s to start, `tools/list` with 50 upstreams
//! of 100 tools, and the `GetToken` round trip to the agent.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

// === the direct server: MCP echo over Streamable HTTP, JSON answers ===

async fn direct_server() -> anyhow::Result<()> {
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    async fn post(headers: HeaderMap, body: String) -> axum::response::Response {
        let Ok(msg) = serde_json::from_str::<Value>(&body) else {
            return axum::http::StatusCode::BAD_REQUEST.into_response();
        };
        let Some(id) = msg.get("id").cloned() else {
            return axum::http::StatusCode::ACCEPTED.into_response();
        };
        let result = match msg["method"].as_str().unwrap_or("") {
            "initialize" => {
                let r = json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"direct","version":"1"}}});
                return ([("mcp-session-id", "direct-session")], axum::Json(r)).into_response();
            }
            "tools/list" => json!({"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}),
            "tools/call" => {
                json!({"content":[{"type":"text","text": msg["params"]["arguments"]["message"]}]})
            }
            _ => json!({}),
        };
        let _ = headers;
        axum::Json(json!({"jsonrpc":"2.0","id":id,"result":result})).into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    let app = axum::Router::new().route("/mcp", axum::routing::post(post));
    axum::serve(listener, app).await?;
    Ok(())
}

// === processes ===

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time (user + system) a process has used, in microseconds, from /proc.
fn cpu_us(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // /proc reports these in USER_HZ ticks, which Linux fixes at 100 per second.
    ticks * 10_000
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The anonymous part of the resident set (the heap and stacks, without the mapped program).
fn anon_kib(pid: u32) -> u64 {
    status_kib(pid, "RssAnon:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn tree_rss_kib(root: u32) -> u64 {
    let mut total = rss_kib(root);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid: u32 = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0);
            if ppid == root {
                total += tree_rss_kib(pid);
            }
        }
    }
    total
}

fn start_bridge(dir: &Path, config: &str) -> anyhow::Result<(Proc, String)> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.toml"), config)?;
    let mut child = Command::new(bin("mcp-bridge"))
        .env("MCP_BRIDGE_CONFIG_DIR", dir)
        .env("MCP_BRIDGE_PORT", "0")
        .env("MCP_BRIDGE_LOG_PATH", dir.join("bridge.log"))
        .env("MCP_BRIDGE_LOG_STDERR", "1")
        .env("RUST_LOG", "warn,mcp_bridge::cli=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn mcp-bridge (run `cargo build --release --workspace` first)")?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.split("listening on ").nth(1) {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(20))
        .context("the bridge did not start")?;
    Ok((Proc(child), url))
}

// === a small MCP client ===

struct Mcp {
    http: reqwest::Client,
    url: String,
    session: String,
}

impl Mcp {
    async fn connect(http: &reqwest::Client, url: &str) -> anyhow::Result<Self> {
        let r = http
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-bench","version":"1"}}}).to_string())
            .send()
            .await?;
        let session = r
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let _ = r.bytes().await?;
        // The handshake as the spec has it: a strict server refuses requests before this.
        let mut note = http
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-11-25");
        if !session.is_empty() {
            note = note.header("mcp-session-id", &session);
        }
        let n = note
            .body(json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string())
            .send()
            .await?;
        if !n.status().is_success() {
            bail!(
                "{url} refused notifications/initialized: HTTP {}",
                n.status()
            );
        }
        Ok(Self {
            http: http.clone(),
            url: url.to_owned(),
            session,
        })
    }

    async fn call(&self, id: u64, method: &str, params: Value) -> anyhow::Result<String> {
        let r = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-11-25")
            .body(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string())
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("HTTP {}", r.status());
        }
        Ok(r.text().await?)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Load {
    /// Every call made, warm-up included (for CPU per call).
    calls: u64,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i])
}

/// `concurrency` workers calling the echo tool for `secs` seconds after a one-second warm-up.
async fn load(url: &str, tool: &str, concurrency: usize, secs: f64) -> anyhow::Result<Load> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let client = Arc::new(Mcp::connect(&http, url).await?);
    let next = Arc::new(AtomicU64::new(1));
    let errors = Arc::new(AtomicU64::new(0));
    let warm_end = Instant::now() + Duration::from_secs(1);
    let end = warm_end + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, errors, tool) = (
            client.clone(),
            next.clone(),
            errors.clone(),
            tool.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let id = next.fetch_add(1, Ordering::Relaxed);
                let msg = format!("m{id}");
                let ok = match client
                    .call(
                        id,
                        "tools/call",
                        json!({"name": tool, "arguments": {"message": msg}}),
                    )
                    .await
                {
                    Ok(body) => body.contains(&msg) && !body.contains("\"isError\":true"),
                    Err(_) => false,
                };
                if now >= warm_end {
                    if ok {
                        lat.push(now.elapsed().as_micros() as u32);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    all.sort_unstable();
    Ok(Load {
        calls: next.load(Ordering::Relaxed) - 1,
        per_sec: all.len() as f64 / secs,
        p50_us: percentile(&all, 0.5),
        p99_us: percentile(&all, 0.99),
        errors: errors.load(Ordering::Relaxed),
    })
}

fn fixture_entry(name: &str, prefix: &str, args: &[&str]) -> String {
    let mut a = vec!["--name".to_owned(), name.to_owned()];
    a.extend(args.iter().map(|s| (*s).to_owned()));
    format!(
        "[[upstream]]\nname = {name:?}\nprefix = {prefix:?}\ncommand = {:?}\nargs = {a:?}\nping_interval_secs = 0\n\n",
        bin("fixture-stdio").display().to_string()
    )
}

async fn wait_ready(url: &str, count: usize, tools: usize) -> anyhow::Result<()> {
    let status = url
        .rsplit_once('/')
        .map(|(b, _)| format!("{b}/status"))
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(&status).await
            && let Ok(v) = r.json::<Value>().await
        {
            let ups = v["upstreams"].as_array().cloned().unwrap_or_default();
            if ups.len() == count
                && ups.iter().all(|u| u["state"] == "ready")
                && v["tools"].as_u64() == Some(tools as u64)
            {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("upstreams not ready in time")
}

struct Report {
    rows: Vec<(String, String, String)>,
}

impl Report {
    fn add(&mut self, what: &str, value: String, budget: &str) {
        println!("{what:<58} {value:<28} {budget}");
        self.rows.push((what.to_owned(), value, budget.to_owned()));
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
        / 1024;
    format!(
        "{cores} cores ({cpu}), {mem} GiB, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

async fn run(
    out: Option<PathBuf>,
    secs: f64,
    peer: Option<(String, String)>,
) -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!("mcp-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let mut r = Report { rows: Vec::new() };

    // Direct server.
    let mut direct = Command::new(std::env::current_exe()?)
        .arg("direct-server")
        .stdout(Stdio::piped())
        .spawn()?;
    let port = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(direct.stdout.take().context("stdout")?).read_line(&mut line)?;
        line.trim().to_owned()
    };
    let direct = Proc(direct);
    let direct_url = format!("http://127.0.0.1:{port}/mcp");

    // Bridge with one fast stdio echo upstream exposed without prefix.
    let (bridge, bridge_url) = start_bridge(&work.join("load"), &fixture_entry("echo", "", &[]))?;
    wait_ready(&bridge_url, 1, 8).await?;
    let pid = bridge.0.id();
    let http = reqwest::Client::new();
    let warm = Mcp::connect(&http, &bridge_url).await?;
    warm.call(
        1,
        "tools/call",
        json!({"name":"echo","arguments":{"message":"x"}}),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid);
    let idle_anon = anon_kib(pid);
    let idle_tree = tree_rss_kib(pid);

    let mut peak = 0;
    let mut c1 = (Load::default(), Load::default());
    let mut c16 = (Load::default(), Load::default());
    let direct_pid = direct.0.id();
    let mut cpu16 = (0.0, 0.0);
    for c in [1usize, 16, 64] {
        let cpu_before = cpu_us(direct_pid);
        let d = load(&direct_url, "echo", c, secs).await?;
        let direct_cpu = cpu_us(direct_pid) - cpu_before;
        let sampler = {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let s = stop.clone();
            let h = std::thread::spawn(move || {
                let mut max = 0;
                while !s.load(Ordering::Relaxed) {
                    max = max.max(rss_kib(pid));
                    std::thread::sleep(Duration::from_millis(100));
                }
                max
            });
            (stop, h)
        };
        let cpu_before = cpu_us(pid);
        let b = load(&bridge_url, "echo", c, secs).await?;
        let bridge_cpu = cpu_us(pid) - cpu_before;
        if c == 16 {
            cpu16 = (
                direct_cpu as f64 / d.calls.max(1) as f64,
                bridge_cpu as f64 / b.calls.max(1) as f64,
            );
        }
        sampler.0.store(true, Ordering::Relaxed);
        peak = peak.max(sampler.1.join().unwrap_or(0));
        r.add(
            &format!("c={c}: direct calls/s, p50/p99"),
            format!("{:.0}/s, {:.0}/{:.0} µs", d.per_sec, d.p50_us, d.p99_us),
            "",
        );
        r.add(
            &format!("c={c}: through the bridge calls/s, p50/p99"),
            format!(
                "{:.0}/s, {:.0}/{:.0} µs ({} errors)",
                b.per_sec, b.p50_us, b.p99_us, b.errors
            ),
            "",
        );
        if c == 1 {
            c1 = (d, b);
        }
        if c == 16 {
            c16 = (d, b);
        }
    }
    if let Some((url, tool)) = &peer {
        for c in [1usize, 16] {
            let p = load(url, tool, c, secs).await?;
            r.add(
                &format!("c={c}: peer {url} calls/s, p50/p99"),
                format!(
                    "{:.0}/s, {:.0}/{:.0} µs ({} errors)",
                    p.per_sec, p.p50_us, p.p99_us, p.errors
                ),
                "",
            );
        }
    }
    r.add(
        "c=16: CPU per call, bridge process / direct server (from /proc)",
        format!(
            "{:.1} µs / {:.1} µs ({:.2}x)",
            cpu16.1,
            cpu16.0,
            cpu16.1 / cpu16.0.max(0.001)
        ),
        "≤ 1.25x",
    );
    let added = c1.1.p50_us - c1.0.p50_us;
    r.add(
        "added latency at c=1 (p50, bridge − direct)",
        format!("{:.3} ms", added / 1000.0),
        "≤ 0.02 ms",
    );
    r.add(
        "c=16 throughput, bridge ÷ direct",
        format!("{:.0}%", 100.0 * c16.1.per_sec / c16.0.per_sec.max(1.0)),
        "≥ 85%",
    );
    r.add(
        "bridge RSS idle (bridge alone / with its upstream)",
        format!(
            "{:.1} MiB / {:.1} MiB",
            idle as f64 / 1024.0,
            idle_tree as f64 / 1024.0
        ),
        "≤ 8 MiB (bridge alone)",
    );
    r.add(
        "of which anonymous (heap, stacks; the rest is the mapped program)",
        format!("{:.1} MiB", idle_anon as f64 / 1024.0),
        "",
    );
    r.add(
        "bridge RSS under load (peak)",
        format!("{:.1} MiB", peak as f64 / 1024.0),
        "≤ 40 MiB",
    );
    drop(bridge);
    drop(direct);

    // Launch → first tools/list from the warm cache, upstream taking 2 s to start.
    let slow = fixture_entry("slow", "slow", &["--slow-start", "2000"]);
    let dir = work.join("warm");
    {
        let (_b, url) = start_bridge(&dir, &slow)?;
        wait_ready(&url, 1, 8).await?;
    }
    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let (_b, url) = start_bridge(&dir, &slow)?;
        let listed = loop {
            if let Ok(c) = Mcp::connect(&http, &url).await
                && let Ok(body) = c.call(1, "tools/list", json!({})).await
                && body.contains("slow__echo")
            {
                break started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        samples.push(listed.as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    r.add(
        "launch → first tools/list (warm cache, upstream 2 s to start), median of 5",
        format!("{:.1} ms", samples[2]),
        "< 30 ms",
    );

    // 50 upstreams × 100 tools.
    let many: String = (0..50)
        .map(|i| {
            fixture_entry(
                &format!("u{i:02}"),
                &format!("u{i:02}"),
                &["--extra-tools", "92"],
            )
        })
        .collect();
    let (bridge, url) = start_bridge(&work.join("many"), &many)?;
    wait_ready(&url, 50, 5000).await?;
    let c = Mcp::connect(&http, &url).await?;
    let mut lat = Vec::new();
    let mut size = 0;
    for i in 0..200 {
        let t = Instant::now();
        let body = c.call(i, "tools/list", json!({})).await?;
        lat.push(t.elapsed().as_micros() as u32);
        size = body.len();
    }
    lat.sort_unstable();
    r.add(
        "tools/list, 50 upstreams × 100 tools (p50/p99)",
        format!(
            "{:.2}/{:.2} ms, {} KiB",
            percentile(&lat, 0.5) / 1000.0,
            percentile(&lat, 0.99) / 1000.0,
            size / 1024
        ),
        "< 5 ms",
    );
    r.add(
        "bridge RSS with 50 upstreams (bridge alone)",
        format!(
            "{:.1} MiB ({:.1} MiB anonymous)",
            rss_kib(bridge.0.id()) as f64 / 1024.0,
            anon_kib(bridge.0.id()) as f64 / 1024.0
        ),
        "≤ 25 MiB",
    );
    drop(bridge);

    // GetToken round trip to the agent (logged in against the fixture authorization server).
    match get_token_bench(&work.join("agent")).await {
        Ok((p50, p99)) => r.add(
            "GetToken round trip to the agent (p50/p99)",
            format!("{:.3}/{:.3} ms", p50 / 1000.0, p99 / 1000.0),
            "< 0.1 ms",
        ),
        Err(e) => r.add(
            "GetToken round trip to the agent",
            format!("not measured: {e}"),
            "< 0.1 ms",
        ),
    }
    let _ = std::fs::remove_dir_all(&work);

    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut md = format!(
        "## mcp-bench, {date}\n\nMachine: {}. Release build; load generator, bridge and upstream share the machine; {secs} s per load level after 1 s warm-up; one MCP session shared by all workers. Direct = an in-repo Rust Streamable-HTTP echo server (the floor); bridge = mcp-bridge with a Rust stdio echo upstream (tests' fixture-stdio).\n\n| measurement | value | budget |\n|---|---|---|\n",
        machine()
    );
    for (w, v, b) in &r.rows {
        md.push_str(&format!("| {w} | {v} | {b} |\n"));
    }
    if let Some(out) = out {
        let existing = std::fs::read_to_string(&out).unwrap_or_default();
        let marker = "<!-- mcp-bench -->";
        let head = existing.split(marker).next().unwrap_or("").to_owned();
        let tail = existing.split(marker).nth(2).unwrap_or("").to_owned();
        std::fs::write(&out, format!("{head}{marker}\n{md}{marker}{tail}"))?;
        println!("wrote {}", out.display());
    } else {
        println!("{md}");
    }
    Ok(())
}

async fn get_token_bench(dir: &Path) -> anyhow::Result<(f64, f64)> {
    use futures_util::{SinkExt, StreamExt};
    std::fs::create_dir_all(dir)?;
    let mut fixture = Command::new(bin("fixture-http"))
        .stderr(Stdio::piped())
        .spawn()
        .context("fixture-http")?;
    let base = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(fixture.stderr.take().context("stderr")?).read_line(&mut line)?;
        line.split("listening on ")
            .nth(1)
            .context("fixture-http did not start")?
            .trim()
            .to_owned()
    };
    let _fixture = Proc(fixture);
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[[upstream]]\nname = \"remote\"\nurl = \"{base}/mcp\"\nauth = \"oauth\"\nallow_local_oauth = true\n"
        ),
    )?;
    let agent_cmd = || {
        let mut c = Command::new(bin("mcp-cred-agent"));
        c.env("MCP_BRIDGE_CONFIG_DIR", dir)
            .env("MCP_BRIDGE_LOG_PATH", dir.join("agent.log"))
            .env("RUST_LOG", "warn");
        c
    };
    let _agent = Proc(agent_cmd().stderr(Stdio::null()).spawn()?);
    let sock = dir.join("agent.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let login = agent_cmd()
        .args(["login", "remote", "--no-browser"])
        .output()?;
    if !login.status.success() {
        bail!("login failed: {}", String::from_utf8_lossy(&login.stderr));
    }
    let mut f = tokio_util::codec::Framed::new(
        tokio::net::UnixStream::connect(&sock).await?,
        proto::codec(),
    );
    f.send(proto::encode(&proto::ClientMessage::Hello {
        protocol_version: proto::PROTOCOL_VERSION,
    }))
    .await?;
    f.next().await.context("hello")??;
    let mut lat = Vec::new();
    for id in 0..3000u64 {
        let t = Instant::now();
        f.send(proto::encode(&proto::ClientMessage::Request {
            id,
            request: proto::Request::GetToken {
                upstream: "remote".into(),
                min_valid_for_secs: 60,
            },
        }))
        .await?;
        let frame = f.next().await.context("answer")??;
        if id >= 100 {
            lat.push(t.elapsed().as_micros() as u32);
        }
        let _: proto::AgentMessage = proto::decode(&frame)?;
    }
    lat.sort_unstable();
    Ok((percentile(&lat, 0.5), percentile(&lat, 0.99)))
}

const USAGE: &str = "mcp-bench: measures mcp-bridge against a direct MCP server and writes a report

usage:
  mcp-bench [--out FILE] [--secs N] [--peer URL TOOL]
      the whole benchmark (what `bash bench/run.sh` runs): throughput and latency direct vs
      through the bridge at c=1/16/64, memory, warm start, large tool lists, agent round trip;
      --peer adds the same load against any MCP endpoint (a peer gateway serving an echo tool
      named TOOL that takes {\"message\"}), in the same run
  mcp-bench load URL TOOL CONCURRENCY SECS
      one load level against any endpoint (for profiling a running bridge)
  mcp-bench direct-server
      the direct echo server the benchmark compares against (prints its port)
  mcp-bench --help";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("direct-server") {
        return rt.block_on(direct_server());
    }
    // `mcp-bench load URL TOOL CONCURRENCY SECS`: one load level against any endpoint (for
    // profiling a running bridge with perf).
    if args.first().map(String::as_str) == Some("load") && args.len() == 5 {
        let l = rt.block_on(load(&args[1], &args[2], args[3].parse()?, args[4].parse()?))?;
        println!(
            "{:.0} calls/s, p50 {:.0} µs, p99 {:.0} µs, {} errors",
            l.per_sec, l.p50_us, l.p99_us, l.errors
        );
        return Ok(());
    }
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let secs = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let peer = args
        .iter()
        .position(|a| a == "--peer")
        .map(|i| match (args.get(i + 1), args.get(i + 2)) {
            (Some(url), Some(tool)) => Ok((url.clone(), tool.clone())),
            _ => Err(anyhow::anyhow!("--peer needs URL and TOOL\n\n{USAGE}")),
        })
        .transpose()?;
    rt.block_on(run(out, secs, peer))
}
