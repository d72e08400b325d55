//! Everyday operation: status, doctor, log rotation, config import, service files.

use std::process::Command;
use std::time::Duration;

use mcp_bridge_tests::*;
use serde_json::Value;

fn bridge_cli(dir: &std::path::Path, port: Option<u16>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(bin("mcp-bridge"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("MCP_BRIDGE_CONFIG_DIR", dir)
        .env("MCP_BRIDGE_LOG_PATH", dir.join("x.log"))
        .args(args);
    if let Some(p) = port {
        cmd.env("MCP_BRIDGE_PORT", p.to_string());
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn status_shows_one_upstream_up_and_one_down() {
    let config = fixture_entry("alpha", &[]) + &fixture_entry("broken", &["--exit-on-start", "4"]);
    let b = Bridge::builder().config(&config).start().await;
    wait_for(
        "alpha ready and broken failing",
        Duration::from_secs(20),
        async || {
            let s = b.status().await;
            let ups = s["upstreams"].as_array()?;
            let st = |n: &str| ups.iter().find(|u| u["name"] == n).cloned();
            (st("alpha")?["state"] == "ready" && st("broken")?["failures"].as_u64()? >= 1)
                .then_some(())
        },
    )
    .await;
    let dir = b.dir.clone();
    let port = b.port;
    let out =
        tokio::task::spawn_blocking(move || bridge_cli(&dir, Some(port), &["status", "--json"]))
            .await
            .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ups = v["upstreams"].as_array().unwrap();
    let alpha = ups.iter().find(|u| u["name"] == "alpha").unwrap();
    let broken = ups.iter().find(|u| u["name"] == "broken").unwrap();
    assert_eq!(alpha["state"], "ready");
    assert_eq!(alpha["tools"], 8);
    assert_ne!(broken["state"], "ready");
    assert!(
        broken["last_error"].as_str().unwrap().contains("exited"),
        "{broken}"
    );
    let (dir, port) = (b.dir.clone(), b.port);
    let table = tokio::task::spawn_blocking(move || bridge_cli(&dir, Some(port), &["status"]))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("alpha") && text.contains("ready") && text.contains("broken"),
        "{text}"
    );
    // A config.toml broken while the bridge runs: status still finds and asks it.
    std::fs::write(b.dir.join("config.toml"), "[upstream]\nname = \n").unwrap();
    let (dir, port) = (b.dir.clone(), b.port);
    let out =
        tokio::task::spawn_blocking(move || bridge_cli(&dir, Some(port), &["status", "--json"]))
            .await
            .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "status with a broken config: {stderr}"
    );
    assert!(
        stderr.contains("config.toml"),
        "names the broken file: {stderr}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["upstreams"].as_array().unwrap().len(), 2);
}

#[test]
fn status_without_a_bridge_says_how_to_start_it() {
    let dir = TempDir::new("status");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = bridge_cli(dir.path(), Some(port), &["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mcp-bridge serve"));
}

#[test]
fn doctor_reports_each_problem_with_its_fix() {
    let dir = TempDir::new("doctor");
    dir.write(
        "config.toml",
        &(oauth_entry("remote", "http://127.0.0.1:9/mcp")
            + "[[upstream]]\nname = \"gone\"\ncommand = \"/nonexistent/server\"\n"),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = bridge_cli(dir.path(), Some(port), &["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("ok    configuration"), "{text}");
    assert!(
        text.contains(&format!("port 127.0.0.1:{port} is free")),
        "{text}"
    );
    for (problem, fix) in [
        ("agent socket", "mcp-cred-agent serve"),
        ("`/nonexistent/server` is not found", "install it"),
        ("cannot connect to 127.0.0.1:9", "check the URL"),
        ("upstream remote: login state unknown", "start the agent"),
    ] {
        let i = text
            .find(problem)
            .unwrap_or_else(|| panic!("{problem:?} missing from:\n{text}"));
        assert!(
            text[i..].lines().nth(1).unwrap_or("").contains(fix),
            "fix for {problem:?} missing:\n{text}"
        );
    }
    assert!(text.contains("log directory"), "{text}");

    dir.write("config.toml", "[[upstream]]\nname = \"x\"\ncommand = \n");
    let out = bridge_cli(dir.path(), Some(port), &["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("FAIL  configuration") && text.contains("line 3"),
        "{text}"
    );
}

#[tokio::test]
async fn log_files_rotate_and_keep_the_configured_number() {
    let config = fixture_entry("alpha", &[]) + "[logging]\nmax_bytes = 2048\nkeep = 2\n";
    let b = Bridge::builder()
        .config(&config)
        .env("RUST_LOG", "debug")
        .start()
        .await;
    b.wait_ready(1).await;
    let c = b.client().await;
    for i in 0..60 {
        c.call_tool(
            "alpha__echo",
            serde_json::json!({"message": format!("fill the log {i}")}),
        )
        .await;
    }
    let mut files: Vec<String> = std::fs::read_dir(&b.dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("mcp-bridge.log"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["mcp-bridge.log", "mcp-bridge.log.1", "mcp-bridge.log.2"]
    );
    for f in &files {
        assert!(
            std::fs::metadata(b.dir.join(f)).unwrap().len() <= 2048,
            "{f}"
        );
    }
}

#[test]
fn config_import_writes_entries_and_refuses_to_overwrite() {
    let dir = TempDir::new("import");
    let src = dir.write(
        "claude_desktop_config.json",
        r#"{"mcpServers": {"files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]}, "remote": {"url": "https://mcp.example.com/mcp"}}}"#,
    );
    let out = bridge_cli(
        dir.path(),
        None,
        &["config", "import", src.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(
        toml.contains("name = \"files\"")
            && toml.contains("server-filesystem")
            && toml.contains("url = \"https://mcp.example.com/mcp\""),
        "{toml}"
    );
    let again = bridge_cli(
        dir.path(),
        None,
        &["config", "import", src.to_str().unwrap()],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let forced = bridge_cli(
        dir.path(),
        None,
        &["config", "import", "--force", src.to_str().unwrap()],
    );
    assert!(forced.status.success());
}

#[test]
fn service_print_writes_both_units_and_touches_nothing() {
    let dir = TempDir::new("service");
    let out = bridge_cli(
        dir.path(),
        None,
        &["service", "print", "--platform", "systemd"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mcp-cred-agent.service") && text.contains("After=mcp-cred-agent.service"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ExecStart=\"{}\" serve",
            bin("mcp-bridge").display()
        )),
        "{text}"
    );
    let out = bridge_cli(
        dir.path(),
        None,
        &["service", "print", "--platform", "launchd"],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("<key>KeepAlive</key>"));
    assert!(!dir.path().join(".config/systemd").exists() && !dir.path().join("Library").exists());
}

#[test]
fn desktop_config_passes_the_shim_a_custom_config_dir_and_never_the_token() {
    let dir = TempDir::new("desktop");
    let mut cmd = Command::new(bin("mcp-bridge"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("MCP_BRIDGE_CONFIG_DIR", dir.path())
        .env("MCP_BRIDGE_INBOUND_TOKEN", "desk-s3cret")
        .arg("desktop-config");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let entry = &v["mcpServers"]["mcp-bridge"];
    assert_eq!(
        entry["env"]["MCP_BRIDGE_CONFIG_DIR"],
        dir.path().display().to_string()
    );
    assert!(
        entry["command"]
            .as_str()
            .unwrap()
            .ends_with("mcp-bridge-shim")
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
    assert!(stderr.contains("inbound-token"), "{stderr}");
}

#[test]
fn version_names_the_build() {
    let out = std::process::Command::new(bin("mcp-bridge"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // `mcp-bridge 0.1.0 (<commit or "no git">, <target>, <profile>)`
    let rest = text
        .trim()
        .strip_prefix(&format!("mcp-bridge {} (", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{text}"));
    let parts: Vec<&str> = rest.trim_end_matches(')').split(", ").collect();
    assert_eq!(parts.len(), 3, "{text}");
    assert!(
        parts[1].contains("linux") || parts[1].contains("apple"),
        "{text}"
    );
}
