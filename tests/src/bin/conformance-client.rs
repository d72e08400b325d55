//! A client command for the MCP conformance suite's client scenarios, built on the credential
//! agent's OAuth code (discovery, registration, PKCE, headless consent, token requests):
//! `conformance-client <server-url>`. It initializes, lists tools and calls the tools the
//! scenario asks for, authorizing when the server answers 401 and stepping up on 403
//! `insufficient_scope`. When the runner asks for MCP 2026-07-28
//! (`MCP_CONFORMANCE_PROTOCOL_VERSION`) it speaks it: no `initialize`, `_meta` and the 2026
//! headers on every request.

use std::time::Duration;

use mcp_cred_agent::consent::{self, OwnerPassword};
use mcp_cred_agent::oauth::{self, AuthMethod, ClientCreds};
use serde_json::{Value, json};

const REDIRECT: &str = "http://localhost:3000/callback";
/// The client metadata document URL the conformance suite's servers accept (CIMD).
const CLIENT_METADATA_URL: &str = "https://conformance-test.local/client-metadata.json";

struct Session {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    session: Option<String>,
    version: Option<String>,
}

enum Answer {
    Ok(Value),
    Unauthorized(oauth::Challenge),
    Forbidden(oauth::Challenge),
    Status(u16),
}

impl Session {
    async fn post(&mut self, msg: &Value) -> anyhow::Result<Answer> {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        if msg.pointer("/params/_meta").is_some() {
            for (k, v) in mcp_bridge::modern::request_headers(msg) {
                req = req.header(k, v);
            }
        } else if let Some(v) = &self.version {
            req = req.header("mcp-protocol-version", v);
        }
        let resp = req.body(msg.to_string()).send().await?;
        let challenge = || {
            resp.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(oauth::parse_challenge)
                .unwrap_or_default()
        };
        match resp.status().as_u16() {
            401 => return Ok(Answer::Unauthorized(challenge())),
            403 => return Ok(Answer::Forbidden(challenge())),
            s if !(200..300).contains(&s) => return Ok(Answer::Status(s)),
            _ => {}
        }
        if let Some(s) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session = Some(s.to_owned());
        }
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        let text = resp.text().await?;
        let id = msg.get("id");
        let found = if sse {
            text.split("\n\n")
                .filter_map(|ev| {
                    let data: Vec<&str> = ev
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    serde_json::from_str::<Value>(&data.join("\n")).ok()
                })
                .find(|v| v.get("id") == id)
        } else {
            serde_json::from_str::<Value>(&text).ok()
        };
        Ok(Answer::Ok(found.unwrap_or(Value::Null)))
    }
}

/// Runs the authorization code flow headlessly and returns an access token.
async fn authorize(
    http: &reqwest::Client,
    url: &str,
    scope_hint: Option<&str>,
    clients: &mut std::collections::HashMap<String, ClientCreds>,
    requested: &mut Vec<String>,
) -> anyhow::Result<String> {
    let mut d = oauth::discover(http, url, &[], true).await?;
    if let Some(s) = scope_hint {
        d.scopes = s.split_whitespace().map(str::to_owned).collect();
    }
    // A step-up asks for what was asked before and what the challenge adds, as the agent does
    // (its extra scopes accumulate per upstream).
    for old in requested.iter() {
        if !d.scopes.contains(old) {
            d.scopes.insert(0, old.clone());
        }
    }
    requested.clone_from(&d.scopes);
    // Kept per authorization server, as the agent keeps them: a server that moved to another
    // authorization server gets a registration there, never the old server's client id.
    if !clients.contains_key(&d.issuer) {
        let context: Value = std::env::var("MCP_CONFORMANCE_CONTEXT")
            .ok()
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or_default();
        clients.insert(
            d.issuer.clone(),
            match (context["client_id"].as_str(), &d.registration_endpoint) {
                // As the agent does with `client_metadata_url` configured: the metadata URL is
                // the id. This one is the suite's test client's, which its servers know.
                (None, _) if d.cimd_supported => ClientCreds::public(CLIENT_METADATA_URL),
                (Some(id), _) => ClientCreds {
                    client_id: id.to_owned(),
                    client_secret: context["client_secret"].as_str().map(str::to_owned),
                    method: AuthMethod::Basic,
                },
                (None, Some(endpoint)) => oauth::register(http, endpoint, REDIRECT).await?,
                (None, None) => {
                    anyhow::bail!("no registration endpoint and no pre-registered client")
                }
            },
        );
    }
    let creds = clients
        .get(&d.issuer)
        .ok_or_else(|| anyhow::anyhow!("no client"))?;
    let pending = oauth::authorization_request(&d, &creds.client_id, REDIRECT, true)?;
    let consent::Outcome::Redirected {
        code,
        state,
        error,
        iss,
    } = consent::headless(
        http,
        &pending.authorization_url,
        REDIRECT,
        &OwnerPassword::default(),
        true,
    )
    .await
    .map_err(anyhow::Error::msg)?
    else {
        anyhow::bail!("consent needs a browser");
    };
    if let Some(e) = error {
        anyhow::bail!("authorization error {e}");
    }
    if state.as_deref() != Some(pending.state.as_str()) {
        anyhow::bail!("state mismatch");
    }
    oauth::check_iss(&d.issuer, d.iss_parameter_supported, iss.as_deref())
        .map_err(anyhow::Error::msg)?;
    let code = code.ok_or_else(|| anyhow::anyhow!("no code"))?;
    let t = oauth::exchange_code(
        http,
        creds,
        &d.token_endpoint,
        &code,
        pending.verifier,
        REDIRECT,
        Some(&d.resource),
    )
    .await?;
    Ok(t.access_token)
}

async fn run(url: &str, via_bridge: bool) -> anyhow::Result<()> {
    let http = oauth::http_client();
    let mut s = Session {
        http: http.clone(),
        url: url.to_owned(),
        token: None,
        session: None,
        version: None,
    };
    let mut creds = std::collections::HashMap::new();
    let mut requested = Vec::new();
    let mut authorizations = 0;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "mcp-bridge-conformance-client", "version": env!("CARGO_PKG_VERSION")}}});
    // Through a bridge the bridge is the client under test; this one stays in the 2025 era.
    let stateless = !via_bridge
        && std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION").as_deref()
            == Ok(mcp_bridge::modern::VERSION);
    let steps = if stateless {
        vec![json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})]
    } else {
        vec![
            init,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}),
        ]
    };
    let with_meta = |mut m: Value| {
        if stateless && m.get("id").is_some() {
            m["params"]["_meta"] = json!({
                mcp_bridge::modern::META_VERSION: mcp_bridge::modern::VERSION,
                mcp_bridge::modern::META_CAPABILITIES: {},
                mcp_bridge::modern::META_CLIENT: {"name": "mcp-bridge-conformance-client", "version": env!("CARGO_PKG_VERSION")},
            });
        }
        m
    };
    let mut tool: Option<String> = None;
    let mut queue: Vec<Value> = steps;
    let mut i = 0;
    while i < queue.len() {
        let msg = with_meta(queue[i].clone());
        match s.post(&msg).await? {
            Answer::Ok(v) => {
                if msg["method"] == "initialize" {
                    s.version = v
                        .pointer("/result/protocolVersion")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
                if msg["method"] == "tools/list" {
                    tool = v
                        .pointer("/result/tools/0/name")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    for (n, (name, args)) in scenario_calls(&v).into_iter().enumerate() {
                        queue.push(json!({"jsonrpc": "2.0", "id": 3 + n, "method": "tools/call", "params": {"name": name, "arguments": args}}));
                    }
                }
                i += 1;
            }
            Answer::Unauthorized(c) | Answer::Forbidden(c) => {
                authorizations += 1;
                if authorizations > 3 {
                    anyhow::bail!("still not authorized after 3 authorizations; giving up");
                }
                s.token = Some(
                    authorize(&http, url, c.scope.as_deref(), &mut creds, &mut requested).await?,
                );
            }
            Answer::Status(code) if msg.get("id").is_none() => {
                let _ = code;
                i += 1;
            }
            Answer::Status(code) => anyhow::bail!("{} answered HTTP {code}", msg["method"]),
        }
    }
    let _ = tool;
    Ok(())
}

/// The tool calls a scenario asks for, from what the runner passes
/// (`MCP_CONFORMANCE_SCENARIO`, `MCP_CONFORMANCE_CONTEXT`): the context's `toolCalls` if it
/// names some; `tools_call`'s `add_numbers` with 2 and 3; every listed tool in order for the
/// MRTR client scenario; else the first tool with no arguments.
fn scenario_calls(listed: &Value) -> Vec<(String, Value)> {
    let context: Value = std::env::var("MCP_CONFORMANCE_CONTEXT")
        .ok()
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or(Value::Null);
    if let Some(calls) = context.get("toolCalls").and_then(Value::as_array) {
        return calls
            .iter()
            .filter_map(|c| {
                Some((
                    c.get("name")?.as_str()?.to_owned(),
                    c.get("arguments").cloned().unwrap_or(json!({})),
                ))
            })
            .collect();
    }
    let names: Vec<String> = listed
        .pointer("/result/tools")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|t| t.get("name")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    match std::env::var("MCP_CONFORMANCE_SCENARIO").as_deref() {
        Ok("tools_call") => names
            .into_iter()
            .take(1)
            .map(|n| (n, json!({"a": 2, "b": 3})))
            .collect(),
        Ok("sep-2322-client-request-state") => names.into_iter().map(|n| (n, json!({}))).collect(),
        _ => names.into_iter().take(1).map(|n| (n, json!({}))).collect(),
    }
}

/// Starts the bridge with `upstream` as its only upstream and returns its MCP URL.
fn start_bridge(
    upstream: &str,
    dir: &std::path::Path,
) -> anyhow::Result<(std::process::Child, String)> {
    use std::io::BufRead;
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[[upstream]]\nname = \"server\"\nprefix = \"\"\nurl = {upstream:?}\nping_interval_secs = 0\nreconnect_wait_secs = 10\n"
        ),
    )?;
    let exe = std::env::current_exe()?.with_file_name("mcp-bridge");
    let mut child = std::process::Command::new(exe)
        .env("MCP_BRIDGE_CONFIG_DIR", dir)
        .env("MCP_BRIDGE_PORT", "0")
        .env("MCP_BRIDGE_LOG_PATH", dir.join("bridge.log"))
        .env("MCP_BRIDGE_LOG_STDERR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("the bridge exited"))??;
        if let Some(u) = line.split("listening on ").nth(1) {
            break u.trim().to_owned();
        }
    };
    // Keep draining the bridge's stderr.
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, url))
}

async fn via_bridge(upstream: &str) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("mcpb-conf-client-{}", std::process::id()));
    let (mut child, url) = start_bridge(upstream, &dir)?;
    let status_url = url
        .rsplit_once('/')
        .map(|(b, _)| format!("{b}/status"))
        .unwrap_or_default();
    let result = async {
        // Wait for the upstream's tools to be known.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let v: Value = reqwest::get(&status_url).await?.json().await?;
            if v["upstreams"][0]["state"] == "ready" {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the upstream never became ready: {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        run(&url, true).await
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Authorization scenarios test the agent's OAuth code, which this command drives itself;
    // the others test the bridge's HTTP client, so they go through a bridge.
    let auth_scenario =
        std::env::var("MCP_CONFORMANCE_SCENARIO").is_ok_and(|s| s.starts_with("auth/"));
    let bridge = args.iter().any(|a| a == "--via-bridge") && !auth_scenario;
    let Some(url) = args.iter().rfind(|a| !a.starts_with("--")).cloned() else {
        eprintln!("usage: conformance-client [--via-bridge] <server-url>");
        return std::process::ExitCode::from(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let work = async {
        if bridge {
            via_bridge(&url).await
        } else {
            run(&url, false).await
        }
    };
    match rt.block_on(async { tokio::time::timeout(Duration::from_secs(25), work).await }) {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("conformance-client: {e:#}");
            std::process::ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("conformance-client: timed out");
            std::process::ExitCode::FAILURE
        }
    }
}
