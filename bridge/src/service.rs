//! `mcp-bridge service install|uninstall|print`: launchd agents on macOS, systemd user units on
//! Linux, one for each daemon (the bridge ordered after the agent).

use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    Launchd,
    Systemd,
}

impl Platform {
    pub fn current() -> Self {
        if cfg!(target_os = "macos") {
            Self::Launchd
        } else {
            Self::Systemd
        }
    }
}

/// What the service files point at.
#[derive(Debug, Clone)]
pub struct Paths {
    pub bridge: PathBuf,
    pub agent: PathBuf,
    pub home: PathBuf,
    pub bridge_log: PathBuf,
    pub agent_log: PathBuf,
    /// Seed environment variables to carry into the services (secrets excluded).
    pub env: Vec<(String, String)>,
}

/// Variables never written into service files: they hold secrets.
const SECRET_VARS: [&str; 2] = ["MCP_BRIDGE_OWNER_PASSWORD", "MCP_BRIDGE_INBOUND_TOKEN"];

/// The seed's variables from `env` worth carrying into the services.
pub fn carried_env(env: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut v: Vec<_> = env
        .into_iter()
        .filter(|(k, v)| {
            (k.starts_with("MCP_BRIDGE_") || k == proto::SOCKET_ENV || k == "RUST_LOG")
                && !SECRET_VARS.contains(&k.as_str())
                && !v.is_empty()
        })
        .collect();
    v.sort();
    v
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn plist(label: &str, program: &Path, log: &Path, env: &[(String, String)]) -> String {
    let mut envs = String::new();
    for (k, v) in env {
        envs.push_str(&format!(
            "      <key>{}</key>\n      <string>{}</string>\n",
            xml(k),
            xml(v)
        ));
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
  <dict>
    <key>Label</key>
    <string>{label}</string>
    <key>ProgramArguments</key>
    <array>
      <string>{program}</string>
      <string>serve</string>
    </array>
    <key>EnvironmentVariables</key>
    <dict>
{envs}    </dict>
    <key>RunAtLoad</key>
    <true/>
    <key>KeepAlive</key>
    <true/>
    <key>ThrottleInterval</key>
    <integer>10</integer>
    <key>ProcessType</key>
    <string>Background</string>
    <key>StandardOutPath</key>
    <string>{log}</string>
    <key>StandardErrorPath</key>
    <string>{log}</string>
  </dict>
</plist>
"#,
        program = xml(&program.to_string_lossy()),
        log = xml(&log.to_string_lossy()),
    )
}

fn systemd_quote(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('%', "%%")
    )
}

fn unit(
    description: &str,
    program: &Path,
    env: &[(String, String)],
    after: Option<&str>,
) -> String {
    let mut out = format!("[Unit]\nDescription={description}\n");
    if let Some(a) = after {
        out.push_str(&format!("After={a}\nWants={a}\n"));
    }
    out.push_str("StartLimitIntervalSec=60\nStartLimitBurst=10\n\n[Service]\nType=simple\n");
    out.push_str(&format!(
        "ExecStart={} serve\n",
        systemd_quote(&program.to_string_lossy())
    ));
    for (k, v) in env {
        out.push_str(&format!(
            "Environment={}\n",
            systemd_quote(&format!("{k}={v}"))
        ));
    }
    out.push_str("Restart=on-failure\nRestartSec=2\nUMask=0077\nNoNewPrivileges=yes\nLockPersonality=yes\nRestrictRealtime=yes\nRestrictSUIDSGID=yes\nSystemCallArchitectures=native\n\n[Install]\nWantedBy=default.target\n");
    out
}

pub const AGENT_LABEL: &str = "dev.mcp-bridge.cred-agent";
pub const BRIDGE_LABEL: &str = "dev.mcp-bridge.bridge";
pub const AGENT_UNIT: &str = "mcp-cred-agent.service";
pub const BRIDGE_UNIT: &str = "mcp-bridge.service";

/// The service files (target path, content), agent first.
pub fn render(platform: Platform, p: &Paths) -> Vec<(PathBuf, String)> {
    match platform {
        Platform::Launchd => {
            let dir = p.home.join("Library/LaunchAgents");
            vec![
                (
                    dir.join(format!("{AGENT_LABEL}.plist")),
                    plist(AGENT_LABEL, &p.agent, &p.agent_log, &p.env),
                ),
                (
                    dir.join(format!("{BRIDGE_LABEL}.plist")),
                    plist(BRIDGE_LABEL, &p.bridge, &p.bridge_log, &p.env),
                ),
            ]
        }
        Platform::Systemd => {
            let dir = p.home.join(".config/systemd/user");
            vec![
                (
                    dir.join(AGENT_UNIT),
                    unit(
                        "mcp-cred-agent: OAuth credential agent for mcp-bridge",
                        &p.agent,
                        &p.env,
                        None,
                    ),
                ),
                (
                    dir.join(BRIDGE_UNIT),
                    unit(
                        "mcp-bridge: local bridge for MCP servers",
                        &p.bridge,
                        &p.env,
                        Some(AGENT_UNIT),
                    ),
                ),
            ]
        }
    }
}

/// The paths of this installation: the daemons beside this executable.
pub fn paths(config: &proto::config::Config) -> anyhow::Result<Paths> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let home = PathBuf::from(std::env::var("HOME").context("HOME is not set")?);
    let var = |k: &str| std::env::var(k).ok();
    let log = |f: &str| {
        logfile::default_path(
            config.log_path.as_deref().and_then(|p| p.to_str()),
            var("HOME").as_deref(),
            var("XDG_STATE_HOME").as_deref(),
            f,
        )
    };
    Ok(Paths {
        agent: exe.with_file_name("mcp-cred-agent"),
        bridge: exe,
        home,
        bridge_log: log("mcp-bridge.log"),
        agent_log: log("mcp-cred-agent.log"),
        env: carried_env(std::env::vars()),
    })
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let env = proto::childenv::child_env(std::env::vars(), &[], &Default::default());
    match std::process::Command::new(cmd)
        .args(args)
        .env_clear()
        .envs(env)
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `{cmd}`: {e}")),
    }
}

pub fn print(platform: Platform, p: &Paths) {
    for (path, content) in render(platform, p) {
        println!("# {}\n{content}", path.display());
    }
}

/// Writes the files (idempotently) and starts the services.
pub fn install(platform: Platform, p: &Paths) -> anyhow::Result<()> {
    if std::env::vars().any(|(k, _)| k == "MCP_BRIDGE_OWNER_PASSWORD") {
        println!(
            "note: MCP_BRIDGE_OWNER_PASSWORD is not written into service files; use MCP_BRIDGE_OWNER_PASSWORD_OP_REF (1Password) for headless re-consent"
        );
    }
    for (path, content) in render(platform, p) {
        if std::fs::read_to_string(&path).ok().as_deref() == Some(content.as_str()) {
            println!("unchanged {}", path.display());
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, &content)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    let started = match platform {
        Platform::Systemd => run("systemctl", &["--user", "daemon-reload"]).and_then(|()| {
            run(
                "systemctl",
                &["--user", "enable", "--now", AGENT_UNIT, BRIDGE_UNIT],
            )
        }),
        Platform::Launchd => {
            let uid = format!("gui/{}", crate::sys::effective_uid());
            render(platform, p).iter().try_for_each(|(path, _)| {
                let path = path.to_string_lossy();
                let _ = run("launchctl", &["bootout", &uid, &path]);
                run("launchctl", &["bootstrap", &uid, &path])
            })
        }
    };
    match started {
        Ok(()) => println!("started both services; undo with `mcp-bridge service uninstall`"),
        Err(e) => {
            println!("the files are in place but the services could not be started: {e}");
            println!("undo with `mcp-bridge service uninstall`");
            anyhow::bail!("service manager refused: {e}");
        }
    }
    Ok(())
}

pub fn uninstall(platform: Platform, p: &Paths) -> anyhow::Result<()> {
    match platform {
        Platform::Systemd => {
            if let Err(e) = run(
                "systemctl",
                &["--user", "disable", "--now", BRIDGE_UNIT, AGENT_UNIT],
            ) {
                println!("{e}");
            }
        }
        Platform::Launchd => {
            let uid = format!("gui/{}", crate::sys::effective_uid());
            for (path, _) in render(platform, p) {
                let _ = run("launchctl", &["bootout", &uid, &path.to_string_lossy()]);
            }
        }
    }
    for (path, _) in render(platform, p) {
        match std::fs::remove_file(&path) {
            Ok(()) => println!("removed {}", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                println!("not installed: {}", path.display())
            }
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    if platform == Platform::Systemd {
        let _ = run("systemctl", &["--user", "daemon-reload"]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Paths {
        Paths {
            bridge: "/opt/mcp-bridge/bin/mcp-bridge".into(),
            agent: "/opt/mcp-bridge/bin/mcp-cred-agent".into(),
            home: "/home/me".into(),
            bridge_log: "/home/me/.local/state/mcp-bridge/mcp-bridge.log".into(),
            agent_log: "/home/me/.local/state/mcp-bridge/mcp-cred-agent.log".into(),
            env: carried_env([
                ("MCP_BRIDGE_PORT".to_owned(), "8769".to_owned()),
                (
                    "MCP_BRIDGE_OVERSEER_URL".to_owned(),
                    "https://mcp.example.com/mcp?a=1&b=\"2\"".to_owned(),
                ),
                ("MCP_BRIDGE_OWNER_PASSWORD".to_owned(), "secret".to_owned()),
                ("HOME".to_owned(), "/home/me".to_owned()),
            ]),
        }
    }

    fn snapshot(platform: Platform) -> String {
        render(platform, &sample())
            .into_iter()
            .map(|(p, c)| format!("# {}\n{c}", p.display()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn systemd_units() {
        let s = snapshot(Platform::Systemd);
        assert!(!s.contains("secret"), "secrets never go into unit files");
        insta::assert_snapshot!(s);
    }

    #[test]
    fn launchd_plists() {
        let s = snapshot(Platform::Launchd);
        assert!(!s.contains("secret"));
        insta::assert_snapshot!(s);
    }

    #[test]
    fn plists_are_well_formed_xml() {
        for (path, content) in render(Platform::Launchd, &sample()) {
            let out = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import sys, xml.dom.minidom; xml.dom.minidom.parseString(sys.stdin.read())",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().unwrap().write_all(content.as_bytes())?;
                    c.wait_with_output()
                })
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
