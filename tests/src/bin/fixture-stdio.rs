//! A stdio MCP server used by the end-to-end tests, written independently of the bridge.
//!
//! Flags: `--name NAME` (used in answers and serverInfo), `--page-size N` (paginate tools/list),
//! `--extra-tools N` (tools `t0..tN-1`), `--weird-names` (tools whose names need sanitising),
//! `--exit-on-start CODE` (exit before answering anything), `--slow-start MS` (sleep before
//! reading stdin), `--crash-after N` (exit after N tool calls).
//!
//! Tools: `echo {message}` → "[NAME] message"; `whoami` → "NAME pid=PID"; `exit {code}` → the
//! process exits without answering; `sleep {ms}` → answers after a delay; `add_tool {name}` →
//! adds a tool and sends `notifications/tools/list_changed`; `touch_list` sends list_changed
//! without changing anything; `hang` stops reading and answering altogether.

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

struct Opts {
    name: String,
    page_size: usize,
    extra: usize,
    weird: bool,
    crash_after: Option<u64>,
    /// `--describe-echo TEXT`: what the echo tool claims to do (a changed definition).
    echo_description: Option<String>,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        name: "fixture".into(),
        page_size: 0,
        extra: 0,
        weird: false,
        crash_after: None,
        echo_description: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--name" => o.name = args.next().unwrap_or_default(),
            "--page-size" => o.page_size = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--extra-tools" => o.extra = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--weird-names" => o.weird = true,
            "--crash-after" => o.crash_after = args.next().and_then(|v| v.parse().ok()),
            "--describe-echo" => o.echo_description = args.next(),
            "--slow-start" => {
                let ms = args.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            "--exit-on-start" => {
                let code = args.next().and_then(|v| v.parse().ok()).unwrap_or(1);
                eprintln!("fixture exiting at start with {code}");
                std::process::exit(code);
            }
            other => {
                eprintln!("fixture: unknown flag {other}");
                std::process::exit(2);
            }
        }
    }
    o
}

fn tool(name: &str, desc: &str) -> Value {
    let mut t = json!({
        "name": name,
        "description": desc,
        "inputSchema": {"type": "object"},
        "x-fixture-extra": {"kept": true},
    });
    if ["echo", "whoami", "sleep"].contains(&name) {
        t["annotations"] = json!({"readOnlyHint": true});
    }
    t
}

fn text(s: String) -> Value {
    json!({"content": [{"type": "text", "text": s}]})
}

fn main() {
    let opts = parse_args();
    eprintln!("fixture {} starting", opts.name);
    let mut tools = vec![
        tool(
            "echo",
            opts.echo_description.as_deref().unwrap_or("echo a message"),
        ),
        tool("whoami", "name and pid"),
        tool("exit", "exit the process"),
        tool("sleep", "answer after ms"),
        tool("add_tool", "add a tool"),
        tool("touch_list", "send list_changed without a change"),
        tool("hang", "stop answering"),
        tool("slow_write", "a non-idempotent call that takes ms"),
    ];
    let mut calls = 0u64;
    for i in 0..opts.extra {
        tools.push(tool(&format!("t{i}"), "extra"));
    }
    if opts.weird {
        tools.push(tool("dotted.name/with space", "needs sanitising"));
        tools.push(tool(&"long".repeat(20), "needs shortening"));
    }
    let tools = Arc::new(Mutex::new(tools));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let send = {
        let out = out.clone();
        move |v: Value| {
            let mut o = out.lock().unwrap();
            writeln!(o, "{v}").unwrap();
            o.flush().unwrap();
        }
    };
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            eprintln!("fixture {}: bad line", opts.name);
            continue;
        };
        if msg["method"] == "notifications/cancelled" {
            eprintln!(
                "fixture {} got cancel for request {}",
                opts.name, msg["params"]["requestId"]
            );
        }
        let Some(id) = msg.get("id").cloned() else {
            continue;
        };
        let Some(method) = msg.get("method").and_then(Value::as_str) else {
            continue;
        };
        let params = msg.get("params").cloned().unwrap_or(json!({}));
        let result: Result<Value, (i64, String)> = match method {
            "initialize" => Ok(json!({
                "protocolVersion": params["protocolVersion"].as_str().unwrap_or("2025-11-25"),
                "capabilities": {"tools": {"listChanged": true}},
                "serverInfo": {"name": format!("fixture-{}", opts.name), "version": "1.0.0"},
            })),
            "ping" => Ok(json!({})),
            "tools/list" => {
                let all = tools.lock().unwrap().clone();
                let start: usize = params["cursor"]
                    .as_str()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                if opts.page_size == 0 {
                    Ok(json!({"tools": all}))
                } else {
                    let end = (start + opts.page_size).min(all.len());
                    let mut r = json!({"tools": all[start.min(end)..end]});
                    if end < all.len() {
                        r["nextCursor"] = json!(end.to_string());
                    }
                    Ok(r)
                }
            }
            "tools/call" => {
                calls += 1;
                if opts.crash_after.is_some_and(|n| calls > n) {
                    eprintln!("fixture {} crashing after {} calls", opts.name, calls - 1);
                    std::process::exit(9);
                }
                let args = params.get("arguments").cloned().unwrap_or(json!({}));
                match params["name"].as_str().unwrap_or("") {
                    "echo" => Ok(text(format!(
                        "[{}] {}",
                        opts.name,
                        args["message"].as_str().unwrap_or("")
                    ))),
                    "whoami" => Ok(text(format!("{} pid={}", opts.name, std::process::id()))),
                    "exit" => {
                        eprintln!("fixture {} exiting on request", opts.name);
                        std::process::exit(args["code"].as_i64().unwrap_or(3) as i32);
                    }
                    "sleep" => {
                        let ms = args["ms"].as_u64().unwrap_or(100);
                        eprintln!("fixture {} sleeping {ms} ms", opts.name);
                        let send = send.clone();
                        let name = opts.name.clone();
                        std::thread::spawn(move || {
                            std::thread::sleep(std::time::Duration::from_millis(ms));
                            send(
                                json!({"jsonrpc": "2.0", "id": id, "result": text(format!("[{name}] slept {ms}"))}),
                            );
                        });
                        continue;
                    }
                    "add_tool" => {
                        let n = args["name"].as_str().unwrap_or("added").to_owned();
                        tools.lock().unwrap().push(tool(&n, "added at runtime"));
                        send(
                            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
                        );
                        Ok(text(format!("added {n}")))
                    }
                    "slow_write" => {
                        let ms = args["ms"].as_u64().unwrap_or(100);
                        eprintln!("fixture {} writing for {ms} ms", opts.name);
                        let send = send.clone();
                        let name = opts.name.clone();
                        std::thread::spawn(move || {
                            std::thread::sleep(std::time::Duration::from_millis(ms));
                            send(
                                json!({"jsonrpc": "2.0", "id": id, "result": text(format!("[{name}] wrote"))}),
                            );
                        });
                        continue;
                    }
                    "touch_list" => {
                        send(
                            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
                        );
                        Ok(text("touched".into()))
                    }
                    "hang" => {
                        eprintln!("fixture {} hanging", opts.name);
                        loop {
                            std::thread::park();
                        }
                    }
                    other => Err((-32602, format!("Unknown tool: {other}"))),
                }
            }
            other => Err((-32601, format!("Method not found: {other}"))),
        };
        send(match result {
            Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
            Err((code, message)) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            }
        });
    }
}
