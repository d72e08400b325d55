//! The compatibility suite: third-party MCP servers and clients (pinned in
//! `tests/compat/install.sh`, installed on first use) run through the real bridge. Isolation
//! findings are proven here too, against the servers that showed them.

use std::time::{Duration, Instant};

use mcp_bridge_tests::*;
use serde_json::{Value, json};

/// A unique request id for the calls of these tests.
fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Calls a tool, answering every `roots/list` the bridge relays meanwhile with `roots`.
async fn call_answering_roots(c: &Client, tool: &str, args: Value, roots: &[String]) -> Value {
    call_answering(c, tool, args, |m| {
        assert_eq!(m["method"], "roots/list", "{m}");
        roots_result(roots)
    })
    .await
    .0
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
            text_of(&r).contains(&other).then_some(text_of(&r))
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
    let text = text_of(&r);
    assert!(
        text.contains(&own) && !text.contains(&other),
        "Y sees X's roots: {text}"
    );

    // No `roots`: nobody's roots, the server keeps its arguments, for X as for Y.
    for (who, c) in [("X", &x), ("Y", &y)] {
        let r =
            call_answering_roots(c, "fs_none__list_allowed_directories", json!({}), &roots_x).await;
        let text = text_of(&r);
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
            text_of(&r).contains(&fixed).then_some(text_of(&r))
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
    assert!(text_of(&r).contains(&fixed) && !text_of(&r).contains(&other));
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

// ---------------------------------------------------------------------------------------------
// Field compatibility: each third-party server through the bridge against a direct client.

/// Appends a line to the matrix CI prints (`target/compat-matrix.md`).
pub(crate) fn matrix(line: &str) {
    use std::io::Write;
    let path = bin_dir().join("../compat-matrix.md");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// A direct client of a stdio server, declaring what the bridge declares upstream.
struct DirectStdio {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: std::io::BufReader<std::process::ChildStdout>,
    capabilities: Value,
}

impl DirectStdio {
    fn start(cmd: &std::path::Path, args: &[String], env: &[(&str, String)]) -> Self {
        let mut child = std::process::Command::new(cmd)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut d = Self {
            child,
            stdin,
            out,
            capabilities: Value::Null,
        };
        let init = d.ask(0, "initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}, "elicitation": {}}, "clientInfo": {"name": "direct", "version": "1"}}));
        d.capabilities = init["result"]["capabilities"].clone();
        d.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        d
    }

    fn send(&mut self, msg: &Value) {
        use std::io::Write;
        writeln!(self.stdin, "{msg}").unwrap();
    }

    fn ask(&mut self, id: u64, method: &str, params: Value) -> Value {
        use std::io::BufRead;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            assert!(
                self.out.read_line(&mut line).unwrap() > 0,
                "{method}: the server closed stdout"
            );
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["id"] == id && v.get("method").is_none() {
                return v;
            }
        }
    }

    /// Tool, resource and prompt counts, following pagination.
    fn counts(&mut self) -> [usize; 3] {
        let mut out = [0; 3];
        for (i, (cap, method, key)) in [
            ("tools", "tools/list", "tools"),
            ("resources", "resources/list", "resources"),
            ("prompts", "prompts/list", "prompts"),
        ]
        .into_iter()
        .enumerate()
        {
            if self.capabilities.get(cap).is_none() {
                continue;
            }
            let mut cursor = Value::Null;
            for page in 0..100u64 {
                let params = if cursor.is_null() {
                    json!({})
                } else {
                    json!({"cursor": cursor})
                };
                let r = self.ask(100 + i as u64 * 1000 + page, method, params);
                out[i] += r["result"][key].as_array().map_or(0, Vec::len);
                cursor = r["result"]["nextCursor"].clone();
                if cursor.is_null() {
                    break;
                }
            }
        }
        out
    }
}

impl Drop for DirectStdio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bridge's counts of what one upstream (by prefix) offers.
async fn bridged_counts(c: &Client, prefix: &str) -> [usize; 3] {
    let mut out = [0; 3];
    for (i, (method, key, field)) in [
        ("tools/list", "tools", "name"),
        ("resources/list", "resources", "uri"),
        ("prompts/list", "prompts", "name"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = c.request(method, json!({})).await;
        out[i] = r["result"][key].as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|t| t[field].as_str().is_some_and(|n| n.starts_with(prefix)))
                .count()
        });
    }
    out
}

/// The direct children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    == Some(&pid.to_string())
            })
        })
        .collect()
}

/// Calls `tool` until it answers without error, returning how long that took.
async fn until_served(c: &Client, tool: &str, args: Value, limit: Duration) -> Duration {
    let started = Instant::now();
    wait_for(&format!("{tool} served again"), limit, async || {
        let r = c
            .request("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        (r["result"].is_object() && r["result"]["isError"] != true).then_some(())
    })
    .await;
    started.elapsed()
}

struct StdioCase {
    name: &'static str,
    command: std::path::PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    tool: &'static str,
    tool_args: Value,
}

#[tokio::test]
async fn third_party_stdio_servers_through_the_bridge() {
    let tp = ThirdParty::get();
    let dir = TempDir::new("compat-stdio");
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("hello.txt"), "hello").unwrap();
    let node = tp.node();
    let cases = [
        StdioCase {
            name: "everything",
            command: node.clone(),
            args: vec![tp.everything().display().to_string(), "stdio".into()],
            env: vec![],
            tool: "get-sum",
            tool_args: json!({"a": 1, "b": 2}),
        },
        StdioCase {
            name: "filesystem",
            command: node.clone(),
            args: vec![
                tp.filesystem().display().to_string(),
                files.display().to_string(),
            ],
            env: vec![],
            tool: "list_directory",
            tool_args: json!({"path": files.display().to_string()}),
        },
        StdioCase {
            name: "memory",
            command: node.clone(),
            args: vec![tp.memory().display().to_string()],
            env: vec![(
                "MEMORY_FILE_PATH",
                dir.path().join("memory.jsonl").display().to_string(),
            )],
            tool: "read_graph",
            tool_args: json!({}),
        },
        StdioCase {
            name: "time",
            command: tp.venv_bin("mcp-server-time"),
            args: vec!["--local-timezone".into(), "UTC".into()],
            env: vec![],
            tool: "get_current_time",
            tool_args: json!({"timezone": "UTC"}),
        },
        StdioCase {
            name: "python",
            command: tp.python(),
            args: vec![tp.py_server().display().to_string(), "stdio".into()],
            env: vec![],
            tool: "add",
            tool_args: json!({"a": 2, "b": 3}),
        },
    ];
    let mut config = String::new();
    for c in &cases {
        let env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
        config.push_str(&format!(
            "[[upstream]]\nname = {:?}\ncommand = {:?}\nargs = {:?}\nenv = {{ {} }}\n\n",
            c.name,
            c.command.display().to_string(),
            c.args,
            env.join(", ")
        ));
    }
    let (b, client) = bridge_with(&config, cases.len()).await;
    let mut failures = Vec::new();
    for c in &cases {
        let (cmd, args, env) = (c.command.clone(), c.args.clone(), c.env.clone());
        let direct =
            tokio::task::spawn_blocking(move || DirectStdio::start(&cmd, &args, &env).counts())
                .await
                .unwrap();
        let bridged = bridged_counts(&client, &format!("{}__", c.name)).await;
        // Resources are exposed as `<prefix>+<uri>`.
        let res = client.request("resources/list", json!({})).await;
        let bridged_res = res["result"]["resources"].as_array().map_or(0, |r| {
            r.iter()
                .filter(|x| {
                    x["uri"]
                        .as_str()
                        .is_some_and(|u| u.starts_with(&format!("{}+", c.name)))
                })
                .count()
        });
        let bridged = [bridged[0], bridged_res, bridged[2]];
        let tool = format!("{}__{}", c.name, c.tool);
        let call = client
            .request(
                "tools/call",
                json!({"name": tool, "arguments": c.tool_args}),
            )
            .await;
        let call_ok = call["result"].is_object() && call["result"]["isError"] != true;
        // kill -9 of the server: full service back without a human.
        let pids: Vec<u32> = children(b.pid() as u32)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|cl| cl.contains(&c.args.join("\0")))
            })
            .collect();
        assert_eq!(pids.len(), 1, "{}: one child process", c.name);
        signal(pids[0] as i32, libc::SIGKILL);
        let recovery =
            until_served(&client, &tool, c.tool_args.clone(), Duration::from_secs(60)).await;
        let ok = direct == bridged && call_ok;
        matrix(&format!(
            "| {} (stdio) | bridge | tools/resources/prompts {:?} direct {:?} | call {} | kill -9 → served again in {:.2} s | {} |",
            c.name,
            bridged,
            direct,
            if call_ok { "ok" } else { "FAILED" },
            recovery.as_secs_f64(),
            if ok { "pass" } else { "FAIL" }
        ));
        if !ok {
            failures.push(format!(
                "{}: bridged {bridged:?} direct {direct:?} call {call}",
                c.name
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Starts server-everything in an HTTP mode on a loopback port; returns it once it listens.
async fn everything_http(tp: &ThirdParty, mode: &str, port: u16) -> Proc {
    let mut cmd = std::process::Command::new(tp.node());
    cmd.arg(tp.everything())
        .arg(mode)
        .env("PORT", port.to_string())
        .env(
            "NODE_OPTIONS",
            format!("--require {}", tp.loopback_preload().display()),
        );
    let p = Proc::spawn(cmd);
    p.wait_log("server-everything to listen", |l| {
        l.contains("running on port") || l.contains("listening on port")
    })
    .await;
    p
}

#[tokio::test]
async fn server_everything_over_streamable_http_and_sse_recovers_from_restarts() {
    let tp = ThirdParty::get();
    let (http_port, sse_port) = (free_port(), free_port());
    let mut servers = [
        everything_http(tp, "streamableHttp", http_port).await,
        everything_http(tp, "sse", sse_port).await,
    ];
    let config = format!(
        "[[upstream]]\nname = \"ev_http\"\nurl = \"http://127.0.0.1:{http_port}/mcp\"\nping_interval_secs = 2\nping_timeout_secs = 2\n\n[[upstream]]\nname = \"ev_sse\"\nurl = \"http://127.0.0.1:{sse_port}/sse\"\ntransport = \"sse\"\n\n"
    );
    let (b, client) = bridge_with(&config, 2).await;
    // A direct client declaring what the bridge declares (sampling, elicitation; no roots).
    let direct = Client::connect_with(
        &format!("http://127.0.0.1:{http_port}/mcp"),
        json!({"sampling": {}, "elicitation": {}}),
    )
    .await;
    let direct_tools = direct.tool_names().await.len();
    for (name, mode, port) in [
        ("ev_http", "streamableHttp", http_port),
        ("ev_sse", "sse", sse_port),
    ] {
        let bridged = bridged_counts(&client, &format!("{name}__")).await;
        assert_eq!(
            bridged[0], direct_tools,
            "{name}: every tool a direct client sees, incl. those registered after initialized"
        );
        assert_eq!(bridged[2], 4, "{name}: prompts");
        let sum = client
            .call_tool(&format!("{name}__get-sum"), json!({"a": 1, "b": 2}))
            .await;
        assert!(text_of(&sum).contains('3'), "{sum}");
        let prompt = client
            .request(
                "prompts/get",
                json!({"name": format!("{name}__simple-prompt")}),
            )
            .await;
        assert!(prompt["result"]["messages"].is_array(), "{prompt}");
        // Resource links inside a tool result are exposed like the lists, and readable.
        let links = client
            .call_tool(&format!("{name}__get-resource-links"), json!({"count": 2}))
            .await;
        let link = links["result"]["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "resource_link")
            .cloned()
            .expect("a resource link");
        let uri = link["uri"].as_str().unwrap();
        assert!(
            uri.starts_with(&format!("{}+demo://", name.replace('_', "."))),
            "{link}"
        );
        let read = client.request("resources/read", json!({"uri": uri})).await;
        assert_eq!(read["result"]["contents"][0]["uri"], uri, "{read}");
        // Progress through the bridge.
        let mut r = client.post_stream(&json!({"jsonrpc": "2.0", "id": "p1", "method": "tools/call", "params": {"name": format!("{name}__trigger-long-running-operation"), "arguments": {"duration": 1, "steps": 2}, "_meta": {"progressToken": "tok"}}})).await;
        let (before, answer) = r.until_response(&json!("p1")).await;
        assert!(answer["result"].is_object(), "{answer}");
        assert!(
            before
                .iter()
                .any(|m| m["method"] == "notifications/progress"
                    && m["params"]["progressToken"] == "tok"),
            "{before:?}"
        );
        // kill -9 and restart on the same port: back without a human.
        let i = if mode == "sse" { 1 } else { 0 };
        let _ = servers[i].child.kill();
        let _ = servers[i].child.wait();
        let killed = Instant::now();
        servers[i] = everything_http(tp, mode, port).await;
        let recovery = until_served(
            &client,
            &format!("{name}__get-sum"),
            json!({"a": 1, "b": 2}),
            Duration::from_secs(90),
        )
        .await;
        let after = bridged_counts(&client, &format!("{name}__")).await;
        assert_eq!(
            after[0], direct_tools,
            "{name}: every tool after the restart"
        );
        matrix(&format!(
            "| server-everything ({mode}) | bridge | tools {} = direct {direct_tools}, prompts {}, call, prompt, resource link read, progress ok | kill -9 + restart → served again {:.2} s after the new server listened ({:.2} s after the kill) | pass |",
            bridged[0],
            bridged[2],
            recovery.as_secs_f64(),
            killed.elapsed().as_secs_f64()
        ));
    }
    drop(b);
}

#[tokio::test]
async fn python_sdk_server_over_streamable_http_recovers_from_a_restart() {
    let tp = ThirdParty::get();
    let port = free_port();
    let start = || {
        let mut cmd = std::process::Command::new(tp.python());
        cmd.arg(tp.py_server()).arg("http").arg(port.to_string());
        Proc::spawn(cmd)
    };
    let mut server = start();
    server
        .wait_log("the Python server to listen", |l| {
            l.contains("Uvicorn running")
        })
        .await;
    let config = format!(
        "[[upstream]]\nname = \"py\"\nurl = \"http://127.0.0.1:{port}/mcp\"\nping_interval_secs = 2\nping_timeout_secs = 2\n\n"
    );
    let (_b, client) = bridge_with(&config, 1).await;
    let bridged = bridged_counts(&client, "py__").await;
    let res = client.request("resources/list", json!({})).await;
    assert_eq!(
        res["result"]["resources"][0]["uri"], "py+demo://hello",
        "{res}"
    );
    assert_eq!(bridged[0], 1);
    assert_eq!(bridged[2], 1);
    let sum = client.call_tool("py__add", json!({"a": 2, "b": 3})).await;
    assert_eq!(text_of(&sum), "5", "{sum}");
    let read = client
        .request("resources/read", json!({"uri": "py+demo://hello"}))
        .await;
    assert_eq!(
        read["result"]["contents"][0]["text"], "Hello from Python",
        "{read}"
    );
    let _ = server.child.kill();
    let _ = server.child.wait();
    server = start();
    server
        .wait_log("the Python server to listen again", |l| {
            l.contains("Uvicorn running")
        })
        .await;
    let recovery = until_served(
        &client,
        "py__add",
        json!({"a": 1, "b": 1}),
        Duration::from_secs(90),
    )
    .await;
    matrix(&format!(
        "| Python SDK mcp 2.3.0 MCPServer (streamable HTTP) | bridge | tools 1, resources 1, prompts 1, call, read ok | kill -9 + restart → served again {:.2} s after it listened | pass |",
        recovery.as_secs_f64()
    ));
}

#[tokio::test]
async fn third_party_clients_list_and_call_through_the_bridge() {
    let tp = ThirdParty::get();
    let config = tp.node_entry("everything", &tp.everything(), &["stdio"], "");
    let (b, c) = bridge_with(&config, 1).await;
    let ours = c.tool_names().await.len();
    // The MCP Inspector CLI.
    let inspector = tp
        .root
        .join(".tools/compat/node_modules/.bin/mcp-inspector");
    let path = format!(
        "{}:{}",
        tp.node().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = async |args: &[&str]| {
        tokio::process::Command::new(&inspector)
            .args(["--cli", &b.url, "--transport", "http"])
            .args(args)
            .env("PATH", &path)
            .env("HOME", b.dir.display().to_string())
            .output()
            .await
            .unwrap()
    };
    let out = run(&["--method", "tools/list"]).await;
    assert!(
        out.status.success(),
        "inspector: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("inspector prints JSON");
    let n = listed["tools"].as_array().map_or(0, Vec::len);
    assert_eq!(n, ours, "the Inspector CLI sees the catalog");
    let out = run(&[
        "--method",
        "tools/call",
        "--tool-name",
        "everything__get-sum",
        "--tool-arg",
        "a=1",
        "b=2",
    ])
    .await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("The sum of 1 and 2 is 3"),
        "{out:?}"
    );
    matrix(&format!(
        "| bridge | MCP Inspector CLI 2.12.0 | tools/list {n} = {ours}, tools/call ok | | pass |"
    ));
    // The Python SDK client (mcp 2.3.0), in its default mode (it probes 2026-07-28 first).
    let script = "import asyncio, sys
from mcp import Client
async def main():
    async with Client(sys.argv[1]) as c:
        tools = (await c.list_tools()).tools
        r = await c.call_tool('everything__get-sum', {'a': 2, 'b': 2})
        print(len(tools), r.content[0].text)
asyncio.run(main())
";
    let out = tokio::process::Command::new(tp.python())
        .args(["-c", script, &b.url])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with(&format!("{ours} ")) && text.contains("The sum of 2 and 2 is 4"),
        "{text}"
    );
    matrix(&format!(
        "| bridge | Python SDK client mcp 2.3.0 | tools/list {ours}, tools/call ok | | pass |"
    ));
}

#[tokio::test]
async fn a_first_start_lists_tools_of_a_server_still_starting() {
    // No warm cache, a server that takes 1.5 s to answer (npx servers take 1-5 s).
    let config = fixture_entry("slow", &["--slow-start", "1500"]);
    let b = Bridge::builder().config(&config).start().await;
    let c = b.client().await;
    let names = c.tool_names().await;
    assert!(
        names.iter().any(|n| n == "slow__echo"),
        "the first tools/list was {names:?}"
    );
}

/// Calls a tool on a streamed POST, answering each server→client request that arrives on that
/// stream with `answer(request)`; returns the result and the methods it answered.
async fn call_answering(
    c: &Client,
    tool: &str,
    args: Value,
    answer: impl Fn(&Value) -> Value,
) -> (Value, Vec<String>) {
    let id = json!(format!("call-{}", next_id()));
    let mut r = c
        .post_stream(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}))
        .await;
    let mut asked = Vec::new();
    while let Some(m) = r.next().await {
        if m.get("method").is_some() && m.get("id").is_some() {
            asked.push(m["method"].as_str().unwrap_or("").to_owned());
            c.answer(&m, answer(&m)).await;
        } else if m.get("id") == Some(&id) {
            return (m, asked);
        }
    }
    panic!("no answer to {tool}");
}

#[tokio::test]
async fn sampling_and_elicitation_reach_the_calling_client_over_http_and_stdio() {
    let tp = ThirdParty::get();
    let port = free_port();
    let _server = everything_http(tp, "streamableHttp", port).await;
    let config = format!(
        "[[upstream]]\nname = \"ev_http\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n\n{}",
        tp.node_entry("ev_stdio", &tp.everything(), &["stdio"], "")
    );
    let (b, _) = bridge_with(&config, 2).await;
    let caps = json!({"sampling": {}, "elicitation": {}});
    let (caller, bystander) = (
        Client::connect_with(&b.url, caps.clone()).await,
        Client::connect_with(&b.url, caps).await,
    );
    // The bystander keeps a GET stream open: a misrouted request would land there.
    let mut bystander_stream = bystander.get_stream().await;
    for name in ["ev_http", "ev_stdio"] {
        let (r, asked) = call_answering(
            &caller,
            &format!("{name}__trigger-sampling-request"),
            json!({"prompt": "hello", "maxTokens": 5}),
            |_| json!({"role": "assistant", "content": {"type": "text", "text": "from the caller"}, "model": "m", "stopReason": "endTurn"}),
        )
        .await;
        assert_eq!(asked, ["sampling/createMessage"], "{name}");
        assert!(text_of(&r).contains("from the caller"), "{name}: {r}");
        let (r, asked) = call_answering(
            &caller,
            &format!("{name}__trigger-elicitation-request"),
            json!({}),
            |_| json!({"action": "decline"}),
        )
        .await;
        assert_eq!(asked, ["elicitation/create"], "{name}");
        assert!(
            r["result"]["content"].to_string().contains("declined"),
            "{name}: {r}"
        );
        matrix(&format!(
            "| server-everything ({}) | bridge | sampling/createMessage and elicitation/create relayed to the calling client only | | pass |",
            if name == "ev_http" {
                "streamableHttp"
            } else {
                "stdio"
            }
        ));
    }
    let soon = Instant::now() + Duration::from_millis(300);
    while let Some(m) = bystander_stream.next_before(soon).await {
        assert!(m.get("id").is_none(), "the bystander was asked: {m}");
    }
}
