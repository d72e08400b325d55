//! `mcp-bridge doctor`: checks what usually goes wrong, each failure with its fix.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use proto::config::{Auth, AuthKind, Config, Transport};

struct Report {
    failures: usize,
}

impl Report {
    fn ok(&self, what: impl std::fmt::Display) {
        println!("ok    {what}");
    }

    /// Something to look at that is not a failure.
    fn note(&self, what: impl std::fmt::Display) {
        println!("note  {what}");
    }

    fn fail(&mut self, what: impl std::fmt::Display, fix: impl std::fmt::Display) {
        self.failures += 1;
        println!("FAIL  {what}\n      fix: {fix}");
    }
}

fn on_path(command: &str) -> bool {
    let p = Path::new(command);
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if command.contains('/') {
        return executable(p);
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| executable(&d.join(command))))
}

/// Runs every check; returns the number of failures.
pub async fn run() -> usize {
    let mut r = Report { failures: 0 };
    let config = match proto::config::load_process() {
        Ok(c) => {
            match &c.config_file {
                Some(f) => r.ok(format!(
                    "configuration {} parses ({} upstreams)",
                    f.display(),
                    c.upstreams.len()
                )),
                None => r.ok(format!(
                    "no {} (the demo upstream is served)",
                    c.config_dir.join(proto::config::CONFIG_FILE_NAME).display()
                )),
            }
            c
        }
        Err(e) => {
            r.fail(
                format!("configuration: {e}"),
                "correct the file at the line named above",
            );
            return r.failures;
        }
    };
    check_port(&mut r, &config).await;
    let oauth: Vec<&str> = config
        .upstreams
        .iter()
        .filter(|u| {
            matches!(
                u.transport,
                Transport::Http {
                    auth: Auth::Named(AuthKind::Oauth),
                    ..
                }
            )
        })
        .map(|u| u.name.as_str())
        .collect();
    let logged_in = check_agent(&mut r, &config, !oauth.is_empty()).await;
    for u in &config.upstreams {
        match &u.transport {
            Transport::Stdio { command, .. } => {
                if on_path(command) {
                    r.ok(format!("upstream {}: `{command}` is executable", u.name));
                } else {
                    r.fail(format!("upstream {}: `{command}` is not found or not executable", u.name), "install it, or fix `command` in config.toml (an absolute path avoids PATH differences under launchd/systemd)");
                }
            }
            Transport::Http { url, .. } => check_url(&mut r, &u.name, url).await,
        }
    }
    for name in oauth {
        match logged_in
            .as_ref()
            .map(|l| l.iter().find(|(n, _)| n == name).map(|(_, ok)| *ok))
        {
            Some(Some(true)) => r.ok(format!("upstream {name}: logged in")),
            Some(_) => r.fail(
                format!("upstream {name}: not logged in"),
                format!("run `mcp-cred-agent login {name}`"),
            ),
            None => r.fail(
                format!("upstream {name}: login state unknown (agent unreachable)"),
                "start the agent first",
            ),
        }
    }
    check_views(&r, &config);
    check_logs(&mut r, &config);
    println!(
        "{}",
        if r.failures == 0 {
            "all checks passed".to_owned()
        } else {
            format!("{} check(s) failed", r.failures)
        }
    );
    r.failures
}

/// What clients see: each upstream's policy and pin mode, pending approvals, and each profile.
fn check_views(r: &Report, c: &Config) {
    for u in &c.upstreams {
        if let Some(p) = crate::views::describe_policy(&u.policy) {
            r.ok(format!("upstream {}: policy {p}", u.name));
        }
        if u.pin != proto::config::PinMode::Strict {
            let mode = serde_json::to_value(u.pin)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            r.ok(format!("upstream {}: pin = {mode:?}", u.name));
        }
    }
    match crate::pins::describe(&c.config_dir, true) {
        Ok(text) if text.contains("PENDING") => {
            let n = text.lines().filter(|l| l.contains(": PENDING")).count();
            r.note(format!(
                "{n} tool(s) new or changed since approval; review with `mcp-bridge tools list --pending`, approve with `mcp-bridge tools approve UPSTREAM TOOL`"
            ));
        }
        Ok(_) => {}
        Err(e) => r.note(format!("tool pins: {e}")),
    }
    if let Some(url) = &c.server.public_url {
        let loopback = url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost");
        if url.starts_with("https://") || loopback {
            r.ok(format!(
                "connectors: public URL {url} (OAuth for claude.ai and ChatGPT)"
            ));
        } else {
            r.note(format!("connectors: public URL {url} is not https; claude.ai and ChatGPT need an https tunnel URL"));
        }
        match crate::connectors::read(&c.config_dir) {
            Ok(f) => r.ok(format!(
                "connectors: {} with access (`mcp-bridge connectors list`; add one with `mcp-bridge connectors pair`)",
                f.grants.len()
            )),
            Err(e) => r.note(format!("connectors: {e}")),
        }
    }
    let views = crate::views::Views::from_config(c);
    for (name, p) in views.all() {
        let default = if views.browser() == name {
            " (served to browser origins no profile names)"
        } else {
            ""
        };
        r.ok(format!(
            "profile {name} at {}/{name}: {}{default}",
            c.mcp_path,
            crate::views::describe_profile(p)
        ));
    }
}

async fn check_port(r: &mut Report, c: &Config) {
    let host = if c.host.contains(':') {
        format!("[{}]", c.host)
    } else {
        c.host.clone()
    };
    let health = format!("http://{host}:{}/healthz", c.port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    if let Ok(resp) = client.get(&health).send().await
        && resp.status().is_success()
    {
        r.ok(format!("mcp-bridge is running on {host}:{}", c.port));
        return;
    }
    match std::net::TcpListener::bind((c.host.as_str(), c.port)) {
        Ok(_) => r.ok(format!(
            "port {host}:{} is free (the bridge is not running)",
            c.port
        )),
        Err(e) => r.fail(
            format!("port {host}:{} is taken by another program ({e})", c.port),
            "stop that program or set MCP_BRIDGE_PORT to a free port",
        ),
    }
}

/// Returns each OAuth upstream's login state, if the agent answered.
async fn check_agent(r: &mut Report, c: &Config, needed: bool) -> Option<Vec<(String, bool)>> {
    let path = crate::registry::agent_socket(c);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(_) if !needed => {
            r.ok("no OAuth upstreams: the credential agent is not needed");
            return None;
        }
        Err(_) => {
            r.fail(
                format!("credential agent socket {} does not exist", path.display()),
                "start `mcp-cred-agent serve` (or `mcp-bridge service install`)",
            );
            return None;
        }
    };
    if meta.uid() != crate::sys::effective_uid() {
        r.fail(
            format!(
                "agent socket {} belongs to uid {}",
                path.display(),
                meta.uid()
            ),
            "remove it and start the agent as yourself",
        );
        return None;
    }
    let client = crate::agent_client::AgentClient::new(path.clone());
    match tokio::time::timeout(
        Duration::from_secs(3),
        client.request(proto::Request::Status),
    )
    .await
    {
        Ok(Ok(proto::Response::Status { upstreams, store })) => {
            r.ok(format!("credential agent answers on {}", path.display()));
            if let Some(store) = store {
                if store.contains("NOT WRITTEN") {
                    r.fail(
                        format!("token store: {store}"),
                        "unlock the keychain (or fix the disk); the agent retries by itself",
                    );
                } else {
                    r.ok(format!("logins are kept in {store}"));
                }
            }
            Some(
                upstreams
                    .into_iter()
                    .map(|u| (u.name, u.logged_in))
                    .collect(),
            )
        }
        Ok(Ok(other)) => {
            r.fail(format!("agent answered {other:?}"), "restart the agent");
            None
        }
        Ok(Err(e)) => {
            r.fail(
                format!("credential agent: {e}"),
                "start `mcp-cred-agent serve`; a stale socket is replaced at start",
            );
            None
        }
        Err(_) => {
            r.fail(
                "credential agent did not answer within 3 s",
                "restart the agent",
            );
            None
        }
    }
}

async fn check_url(r: &mut Report, name: &str, url: &str) {
    let Ok(u) = url::Url::parse(url) else {
        r.fail(
            format!("upstream {name}: {url:?} is not a URL"),
            "fix `url` in config.toml",
        );
        return;
    };
    let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else {
        r.fail(
            format!("upstream {name}: {url} has no host"),
            "fix `url` in config.toml",
        );
        return;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    match tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => r.ok(format!("upstream {name}: {host}:{port} is reachable")),
        Ok(Err(e)) => r.fail(
            format!("upstream {name}: cannot connect to {host}:{port} ({e})"),
            "check the URL and the network",
        ),
        Err(_) => r.fail(
            format!("upstream {name}: {host}:{port} did not answer within 3 s"),
            "check the URL, the network, a proxy or VPN",
        ),
    }
}

fn check_logs(r: &mut Report, c: &Config) {
    let var = |k: &str| std::env::var(k).ok();
    let path = logfile::default_path(
        c.log_path.as_deref().and_then(|p| p.to_str()),
        var("HOME").as_deref(),
        var("XDG_STATE_HOME").as_deref(),
        "mcp-bridge.log",
    );
    let dir = path.parent().unwrap_or(Path::new("."));
    let probe = dir.join(format!(".mcp-bridge-doctor-{}", std::process::id()));
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .and_then(|()| std::fs::remove_file(&probe));
    match result {
        Ok(()) => r.ok(format!("log directory {} is writable", dir.display())),
        Err(e) => r.fail(
            format!("log directory {} is not writable ({e})", dir.display()),
            "fix its permissions or set MCP_BRIDGE_LOG_PATH",
        ),
    }
}
