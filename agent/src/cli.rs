//! Command line: `mcp-cred-agent [serve]`, `mcp-cred-agent status [--json]`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use proto::Response;

#[derive(Parser)]
#[command(
    name = "mcp-cred-agent",
    version,
    about = "Credential agent for mcp-bridge: holds OAuth secrets and serves short-lived access tokens over a Unix socket"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the default).
    Serve,
    /// Log in to an OAuth upstream (all of them that are not logged in, if none is named).
    Login {
        upstream: Option<String>,
        /// Print the authorization URL instead of opening a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Forget an upstream's tokens, revoking them where the server supports it.
    Logout { upstream: String },
    /// Show every OAuth upstream's login state, from the running agent.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            rt.block_on(async {
                match cli.command.unwrap_or(Command::Serve) {
                    Command::Serve => serve().await,
                    Command::Status { json } => status(json).await,
                    Command::Login {
                        upstream,
                        no_browser,
                    } => crate::login::run(upstream, no_browser).await,
                    Command::Logout { upstream } => logout(upstream).await,
                }
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-cred-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let (config, socket) = crate::config::load()?;
    match logfile::init_default(
        config.log_path.as_deref(),
        config.logging.max_bytes,
        config.logging.keep,
        "mcp-cred-agent.log",
    ) {
        Ok(p) => tracing::info!(file = %p.display(), "logging"),
        Err(e) => eprintln!("{e}"),
    }
    let failed = crate::sys::harden_process();
    if failed.is_empty() {
        tracing::info!(
            dumpable = crate::sys::is_dumpable(),
            "core dumps off; the process is not dumpable or ptrace-able by other processes"
        );
    } else {
        tracing::warn!(failed = ?failed, "could not fully protect the agent's memory");
    }
    let agent = crate::tokens::Agent::new(&config, crate::consent::OwnerPassword::from_env())?;
    agent.spawn_refreshers();
    // SIGHUP re-reads config.toml, as it does for the bridge (and must not kill the agent).
    // Saving config.toml does too.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut watch = match proto::watch::config_changes(&config.config_dir) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("config.toml is not watched (reload with SIGHUP): {e}");
            None
        }
    };
    let reloading = agent.clone();
    tokio::spawn(async move {
        loop {
            let why = tokio::select! {
                Some(()) = hup.recv() => "SIGHUP",
                Some(()) = async {
                    match watch.as_mut() {
                        Some(w) => w.changes.recv().await,
                        None => std::future::pending().await,
                    }
                } => "config.toml changed",
                else => return,
            };
            match crate::config::load() {
                Ok((config, _)) => {
                    tracing::info!("{why}: reloading the configuration");
                    reloading.reload(&config)
                }
                Err(e) => tracing::error!("{why}: keeping the running configuration: {e:#}"),
            }
        }
    });
    // After a sleep, tokens that expired meanwhile are refreshed before anyone asks.
    let resumed = agent.clone();
    let mut resumes = proto::wake::resumes();
    tokio::spawn(async move {
        while let Some(gap) = resumes.recv().await {
            resumed.resumed(gap);
        }
    });
    let listener = crate::server::bind(&socket).await?;
    tracing::info!(
        "mcp-cred-agent {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        socket.display()
    );
    crate::server::run(agent, listener, socket, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
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
    let (_, socket) = crate::config::load()?;
    let mut client = crate::server::AgentClient::connect(&socket).await?;
    let Response::Status { upstreams, store } = client.request(proto::Request::Status).await?
    else {
        anyhow::bail!("unexpected answer to Status");
    };
    if json {
        let v: Vec<_> = upstreams
            .iter()
            .map(|u| serde_json::json!({"name": u.name, "logged_in": u.logged_in, "issuer": u.issuer, "scopes": u.scopes, "expires_at": u.expires_at, "last_error": u.last_error}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if let Some(store) = store {
        println!("logins are kept in {store}");
    }
    if upstreams.is_empty() {
        println!("no OAuth upstreams configured");
    }
    for u in upstreams {
        let state = if u.logged_in {
            "logged in"
        } else {
            "not logged in"
        };
        println!(
            "{:<20} {state}  {}",
            u.name,
            u.last_error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

async fn logout(upstream: String) -> anyhow::Result<()> {
    let (_, socket) = crate::config::load()?;
    let mut client = crate::server::AgentClient::connect(&socket).await?;
    match client
        .request(proto::Request::Logout {
            upstream: upstream.clone(),
        })
        .await?
    {
        Response::Ack => {
            println!("logged out of {upstream}");
            Ok(())
        }
        Response::Error { error } => Err(error.into()),
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}
