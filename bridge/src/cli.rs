//! Command line: `mcp-bridge [serve]`, `mcp-bridge status [--json]`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use proto::config::Config;

#[derive(Parser)]
#[command(
    name = "mcp-bridge",
    version = env!("MCP_BRIDGE_BUILD"),
    about = "OAuth-aware local bridge for MCP servers: one Streamable HTTP endpoint for many upstreams"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Serve,
    /// Show every upstream's state, from the running daemon.
    Status {
        /// Print the raw JSON status.
        #[arg(long)]
        json: bool,
    },
    /// Check configuration, port, agent, upstreams, logins and the log directory.
    Doctor,
    /// Install, remove or print the launchd agents (macOS) or systemd user units (Linux) of
    /// both daemons.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
        /// Which service manager to write for (default: this machine's).
        #[arg(long, value_enum, global = true)]
        platform: Option<crate::service::Platform>,
    },
    /// Pinned tool definitions: list them, approve new or changed ones.
    Tools {
        #[command(subcommand)]
        action: ToolsAction,
    },
    /// claude.ai and ChatGPT connectors (`[server] public_url`): the grants, pairing.
    Connectors {
        #[command(subcommand)]
        action: ConnectorsAction,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print the `mcpServers` entry for Claude Desktop's claude_desktop_config.json, with this
    /// machine's path to mcp-bridge-shim.
    DesktopConfig,
    /// Serve the built-in demo MCP server on stdio (the bridge spawns this itself).
    #[command(hide = true)]
    DemoUpstream,
}

#[derive(Subcommand)]
enum ServiceAction {
    /// Write the service files and start both services (idempotent).
    Install,
    /// Stop both services and remove their files.
    Uninstall,
    /// Print the service files without touching the system.
    Print,
}

#[derive(Subcommand)]
enum ToolsAction {
    /// The pinned tools, and for each pending one what changed.
    List {
        /// Only the pending ones (new, or changed since their approval).
        #[arg(long)]
        pending: bool,
    },
    /// Approve a pending tool (or, with --all, every pending tool of UPSTREAM): the running
    /// bridge serves it within a second.
    Approve {
        upstream: String,
        tool: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum ConnectorsAction {
    /// Every connector with access: its client, where it redirects, its profile.
    List,
    /// End a connector's access at once (its tokens stop working on the next request).
    Revoke { name: String },
    /// Approve the next connector that asks, within --minutes, with --profile; prints who
    /// it was. (Instead of the owner password on the consent page.)
    Pair {
        /// What it may use: `all`, `read-only` or a [[profile]] of config.toml.
        #[arg(long, default_value = "all")]
        profile: String,
        #[arg(long, default_value_t = 5)]
        minutes: u64,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Convert a claude_desktop_config.json (or any `mcpServers` JSON) into config.toml.
    Import {
        path: std::path::PathBuf,
        /// Replace an existing config.toml.
        #[arg(long)]
        force: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::DemoUpstream => crate::demo::serve_stdio().context("demo upstream"),
        Command::DesktopConfig => desktop_config(),
        Command::Doctor => runtime().and_then(|rt| {
            let failures = rt.block_on(crate::doctor::run());
            if failures == 0 {
                Ok(())
            } else {
                Err(anyhow::anyhow!("{failures} check(s) failed"))
            }
        }),
        Command::Service { action, platform } => load_config().and_then(|config| {
            let platform = platform.unwrap_or_else(crate::service::Platform::current);
            let paths = crate::service::paths(&config)?;
            match action {
                ServiceAction::Print => {
                    crate::service::print(platform, &paths);
                    Ok(())
                }
                ServiceAction::Install => crate::service::install(platform, &paths),
                ServiceAction::Uninstall => crate::service::uninstall(platform, &paths),
            }
        }),
        Command::Config {
            action: ConfigAction::Import { path, force },
        } => load_config().and_then(|c| crate::import::run(&path, &c.config_dir, force)),
        Command::Tools { action } => load_config().and_then(|c| tools(&c.config_dir, action)),
        Command::Connectors { action } => load_config().and_then(|c| connectors(&c, action)),
        Command::Serve => runtime().and_then(|rt| rt.block_on(serve())),
        Command::Status { json } => runtime().and_then(|rt| rt.block_on(status(json))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-bridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration of this process (environment and config.toml).
fn load_config() -> anyhow::Result<Config> {
    Ok(proto::config::load_process()?)
}

/// The async runtime: one worker thread unless `TOKIO_WORKER_THREADS` names more. The bridge
/// waits on sockets and pipes; with a worker per core, each call hopped between threads (the
/// HTTP task, the upstream's writer and reader) and paid for futex wake-ups: on 2 cores one
/// worker cut the added latency at c=1 by ~30 µs and the CPU per call by ~25%, with the same
/// throughput at c=16 (BENCHMARKS.md). Blocking work runs on tokio's blocking pool as before.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Logs to the size-rotated file (and stderr on a terminal); says where.
pub fn init_logging(config: &Config, file_name: &str) {
    match logfile::init_default(
        config.log_path.as_deref(),
        config.logging.max_bytes,
        config.logging.keep,
        file_name,
    ) {
        Ok(p) => tracing::info!(file = %p.display(), "logging"),
        Err(e) => eprintln!("{e}"),
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = proto::config::load_process()?;
    init_logging(&config, "mcp-bridge.log");
    let token = crate::inbound_token(
        &config.config_dir,
        std::env::var(crate::INBOUND_TOKEN_ENV).ok(),
    )?;
    let addrs: Vec<_> = tokio::net::lookup_host((config.host.as_str(), config.port))
        .await
        .with_context(|| format!("cannot resolve MCP_BRIDGE_HOST {:?}", config.host))?
        .collect();
    if addrs.iter().any(|a| !a.ip().is_loopback()) && token.is_none() {
        anyhow::bail!(
            "refusing to listen on {} (not a loopback address) without an inbound bearer token; \
             put one in {} or set {}",
            config.host,
            config.config_dir.join(crate::INBOUND_TOKEN_FILE).display(),
            crate::INBOUND_TOKEN_ENV
        );
    }
    let listener = tokio::net::TcpListener::bind(&addrs[..])
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let local = listener.local_addr()?;
    tracing::info!(
        "mcp-bridge {} listening on http://{local}{}",
        env!("CARGO_PKG_VERSION"),
        config.mcp_path
    );
    match &config.config_file {
        Some(f) => {
            tracing::info!(file = %f.display(), upstreams = config.upstreams.len(), "configuration loaded")
        }
        None => tracing::info!(dir = %config.config_dir.display(), "no config.toml"),
    }
    let demo = if config.upstreams.is_empty() {
        let exe = std::env::current_exe()
            .context("cannot find this executable to spawn the demo upstream")?;
        tracing::info!(
            "no upstreams configured: serving the built-in demo upstream 'demo' (tools demo__echo, demo__add). \
             Add real upstreams in {} or set MCP_BRIDGE_SENTINEL_COMMAND; see README.md",
            config
                .config_dir
                .join(proto::config::CONFIG_FILE_NAME)
                .display()
        );
        Some((
            exe.to_string_lossy().into_owned(),
            vec!["demo-upstream".to_owned()],
        ))
    } else {
        None
    };
    let options = crate::Options {
        demo_command: demo,
        inbound_token: token,
        reload_on_sighup: true,
    };
    crate::serve(config, options, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn status(json: bool) -> anyhow::Result<()> {
    // A broken config.toml must not hide a running bridge: ask it where the environment (or
    // the defaults) say it listens, and say what is wrong with the file.
    let config = match proto::config::load_process() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "warning: {e:#}\n(asking the running bridge anyway; it keeps the configuration it started with)"
            );
            let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
            proto::config::load(&env, |_: &Path| Ok(None))?
        }
    };
    let host = if config.host.contains(':') {
        format!("[{}]", config.host)
    } else {
        config.host.clone()
    };
    let url = format!("http://{host}:{}/status", config.port);
    let mut req = reqwest::Client::new().get(&url);
    if let Some(t) = crate::inbound_token(
        &config.config_dir,
        std::env::var(crate::INBOUND_TOKEN_ENV).ok(),
    )? {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.with_context(|| {
        format!(
            "the bridge is not answering at {url}; start it with `mcp-bridge serve` or its service"
        )
    })?;
    let body: serde_json::Value = resp.error_for_status()?.json().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    println!(
        "mcp-bridge {} at {}: {} tools, {} sessions",
        body["version"].as_str().unwrap_or("?"),
        body["endpoint"].as_str().unwrap_or("?"),
        body["tools"],
        body["sessions"]
    );
    if let Some(agent) = body.get("agent") {
        match agent["reachable"].as_bool() {
            Some(true) => println!("credential agent: reachable"),
            _ => println!(
                "credential agent: NOT reachable ({})",
                agent["error"].as_str().unwrap_or("?")
            ),
        }
    }
    println!(
        "{:<20} {:<6} {:<13} {:<10} {:>5} {:>6} {:>7}  LAST ERROR",
        "UPSTREAM", "KIND", "STATE", "MCP", "TOOLS", "HIDDEN", "PENDING"
    );
    for u in body["upstreams"].as_array().into_iter().flatten() {
        println!(
            "{:<20} {:<6} {:<13} {:<10} {:>5} {:>6} {:>7}  {}",
            u["name"].as_str().unwrap_or("?"),
            u["transport"].as_str().unwrap_or("?"),
            u["state"].as_str().unwrap_or("?"),
            u["protocol_version"].as_str().unwrap_or("-"),
            u["tools"],
            u["tools_hidden"].as_u64().unwrap_or(0),
            u["pins_pending"].as_array().map_or(0, Vec::len),
            u["last_error"].as_str().unwrap_or("-")
        );
    }
    for u in body["upstreams"].as_array().into_iter().flatten() {
        if let Some(p) = u["policy"].as_str() {
            println!("policy of {}: {p}", u["name"].as_str().unwrap_or("?"));
        }
    }
    if let Some(e) = body["pins_error"].as_str() {
        println!("tool pins: {e}");
    }
    println!(
        "{:<20} {:>5} {:>8}  ENDPOINT, WHAT IT SHOWS",
        "PROFILE", "TOOLS", "SESSIONS"
    );
    for p in body["profiles"].as_array().into_iter().flatten() {
        let default = if p["browser_default"] == true {
            " (browser origins no profile names)"
        } else {
            ""
        };
        println!(
            "{:<20} {:>5} {:>8}  {}: {}{default}",
            p["name"].as_str().unwrap_or("?"),
            p["tools"],
            p["sessions"],
            p["path"].as_str().unwrap_or("?"),
            p["shows"].as_str().unwrap_or("?"),
        );
    }
    if let Some(c) = body.get("connectors").filter(|c| !c.is_null()) {
        match c["error"].as_str() {
            Some(e) => println!(
                "connectors at {}: REFUSED: {e}",
                c["public_url"].as_str().unwrap_or("?")
            ),
            None => println!(
                "connectors at {}: {} with access (`mcp-bridge connectors list`)",
                c["public_url"].as_str().unwrap_or("?"),
                c["grants"].as_array().map_or(0, Vec::len)
            ),
        }
    }
    if body["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|u| u["pins_pending"].as_array().is_some_and(|p| !p.is_empty()))
    {
        println!(
            "pending tools: review with `mcp-bridge tools list --pending`, approve with `mcp-bridge tools approve UPSTREAM TOOL`"
        );
    }
    Ok(())
}

fn connectors(config: &Config, action: ConnectorsAction) -> anyhow::Result<()> {
    let dir = &config.config_dir;
    match action {
        ConnectorsAction::List => {
            if config.server.public_url.is_none() {
                println!(
                    "no [server] public_url in config.toml: connectors cannot reach this bridge"
                );
            }
            print!(
                "{}",
                crate::connectors::describe(dir).map_err(anyhow::Error::msg)?
            );
        }
        ConnectorsAction::Revoke { name } => {
            crate::connectors::revoke_grant(dir, &name).map_err(anyhow::Error::msg)?;
            println!("{name}: access ended");
        }
        ConnectorsAction::Pair { profile, minutes } => {
            let Some(url) = &config.server.public_url else {
                anyhow::bail!(
                    "set [server] public_url in config.toml to your tunnel's URL first (README, \"claude.ai and ChatGPT\")"
                );
            };
            let views = crate::views::Views::from_config(config);
            let Some(p) = views.get(&profile) else {
                let names: Vec<&str> = views.all().map(|(n, _)| n.as_ref()).collect();
                anyhow::bail!("no profile {profile:?}; choose one of {}", names.join(", "));
            };
            println!(
                "Pairing for {minutes} min: the next connector that asks is approved with profile {profile} ({}).\nAdd the connector now, with the URL {url}{}",
                crate::views::describe_profile(p),
                config.mcp_path
            );
            match crate::connectors::pair(dir, &profile, minutes.clamp(1, 30) * 60)
                .map_err(anyhow::Error::msg)?
            {
                Some(who) => println!("approved: {who}"),
                None => {
                    anyhow::bail!("no connector asked within {minutes} min; nothing was approved")
                }
            }
        }
    }
    Ok(())
}

fn tools(dir: &std::path::Path, action: ToolsAction) -> anyhow::Result<()> {
    match action {
        ToolsAction::List { pending } => {
            print!(
                "{}",
                crate::pins::describe(dir, pending).map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
        ToolsAction::Approve {
            upstream,
            tool,
            all,
        } => {
            if tool.is_none() && !all {
                anyhow::bail!(
                    "name the tool (mcp-bridge tools approve {upstream} TOOL) or approve every pending one with --all"
                );
            }
            let n = crate::pins::approve(dir, &upstream, tool.as_deref())
                .map_err(anyhow::Error::msg)?;
            match (n, &tool) {
                (0, Some(t)) => anyhow::bail!(
                    "{upstream} has no pending tool {t:?}; `mcp-bridge tools list --pending` shows what is pending"
                ),
                (0, None) => println!("{upstream} has no pending tools"),
                (n, _) => println!(
                    "approved {n} tool(s) of {upstream}; the running bridge serves them within a second"
                ),
            }
            Ok(())
        }
    }
}

/// The Claude Desktop entry: the shim beside this executable, talking to this config's URL.
fn desktop_config() -> anyhow::Result<()> {
    let config = proto::config::load_process()?;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let shim = exe.with_file_name("mcp-bridge-shim");
    if !shim.exists() {
        eprintln!(
            "note: {} does not exist yet; build it with `cargo build --release --bin mcp-bridge-shim`",
            shim.display()
        );
    }
    let host = if config.host.contains(':') {
        format!("[{}]", config.host)
    } else {
        config.host.clone()
    };
    let url = format!("http://{host}:{}{}", config.port, config.mcp_path);
    let mut server = serde_json::json!({
        "command": shim.to_string_lossy(),
        "args": ["--url", url],
    });
    // Claude Desktop starts the shim with its own environment: what the shim must know to find
    // this bridge's config directory (and so its inbound-token file) goes into `env`.
    let default_dir = proto::config::default_config_dir(std::env::var("HOME").ok().as_deref());
    if config.config_dir != default_dir {
        server["env"] = serde_json::json!({
            "MCP_BRIDGE_CONFIG_DIR": config.config_dir.to_string_lossy(),
        });
    }
    let token_file = config.config_dir.join("inbound-token");
    if std::env::var_os("MCP_BRIDGE_INBOUND_TOKEN").is_some() && !token_file.exists() {
        eprintln!(
            "note: the bridge takes its inbound token from MCP_BRIDGE_INBOUND_TOKEN, which Claude Desktop will not pass to the shim; write the token to {} (mode 0600) and the shim reads it there (it is not printed here)",
            token_file.display()
        );
    }
    let entry = serde_json::json!({ "mcpServers": { "mcp-bridge": server } });
    println!("{}", serde_json::to_string_pretty(&entry)?);
    Ok(())
}
