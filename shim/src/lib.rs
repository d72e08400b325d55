//! mcp-bridge-shim: the stdio front door for MCP hosts that only launch stdio servers (Claude
//! Desktop). JSON-RPC lines on stdin are POSTed to the running bridge; answers and
//! server-initiated messages are written to stdout, one message a line. stdout carries only
//! protocol messages; diagnostics go to stderr.
//!
//! This build forwards requests concurrently, keeps the GET stream, sends the inbound token,
//! and deletes its session when stdin closes or on SIGTERM. Surviving a bridge restart
//! (re-initialize and resend) is not implemented yet: requests then get a JSON-RPC error that
//! says how to start the bridge.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use futures_util::StreamExt;
use mcp_bridge::client::{ClientError, Posted, StreamableClient};
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(
    name = "mcp-bridge-shim",
    version,
    about = "stdio <-> HTTP proxy that connects stdio-only MCP hosts (Claude Desktop) to a running mcp-bridge"
)]
struct Cli {
    /// The bridge's MCP endpoint [default: http://MCP_BRIDGE_HOST:MCP_BRIDGE_PORT/MCP_BRIDGE_MCP_PATH]
    #[arg(long)]
    url: Option<String>,
}

/// Longest line accepted on stdin.
const MAX_LINE: usize = 64 * 1024 * 1024;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-bridge-shim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn default_url(config: &proto::config::Config) -> String {
    let host = if config.host.contains(':') {
        format!("[{}]", config.host)
    } else {
        config.host.clone()
    };
    let host = if host == "0.0.0.0" || host == "[::]" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    format!("http://{host}:{}{}", config.port, config.mcp_path)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = mcp_bridge::cli::load_config()?;
    let url = cli.url.unwrap_or_else(|| default_url(&config));
    let token = mcp_bridge::inbound_token(
        &config.config_dir,
        std::env::var(mcp_bridge::INBOUND_TOKEN_ENV).ok(),
    )?;
    let client = Arc::new(StreamableClient::new(&url, token));

    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(msg) = out_rx.recv().await {
            let mut line = msg.to_string();
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });

    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    let mut tasks = JoinSet::new();
    let mut stream_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let line = tokio::select! {
            r = mcp_bridge::upstream::stdio::read_line_capped(&mut stdin, &mut buf, MAX_LINE) => r?,
            _ = term.recv() => None,
        };
        let Some(cut) = line else { break };
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let msg = match (cut, serde_json::from_slice::<Value>(&buf)) {
            (false, Ok(m)) => m,
            (true, _) | (_, Err(_)) => {
                let _ = out_tx.send(mcp_bridge::jsonrpc::error_response(
                    &Value::Null,
                    mcp_bridge::jsonrpc::PARSE_ERROR,
                    "Parse error: not a JSON-RPC message",
                ));
                continue;
            }
        };
        let is_init = msg.get("method").and_then(Value::as_str) == Some("initialize")
            && msg.get("id").is_some();
        if is_init {
            // Later messages need the session id, so initialize completes before anything else.
            forward(&client, msg, &out_tx).await;
            if stream_task.is_none() && client.session().is_some() {
                stream_task = Some(tokio::spawn(server_stream(client.clone(), out_tx.clone())));
            }
        } else {
            let (client, out) = (client.clone(), out_tx.clone());
            tasks.spawn(async move { forward(&client, msg, &out).await });
        }
        // Reap finished forwards so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    // stdin closed: let in-flight requests finish, then end the session.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if let Some(t) = stream_task {
        t.abort();
    }
    client.delete().await;
    drop(out_tx);
    let _ = writer.await;
    Ok(())
}

fn explain(client: &StreamableClient, e: &ClientError) -> String {
    if e.is_connect() {
        format!(
            "mcp-bridge is not reachable at {}: {e}. Start it with `mcp-bridge serve` (or its service).",
            client.url()
        )
    } else {
        format!("mcp-bridge answered with an error: {e}")
    }
}

/// POSTs one message and writes every message of the answer to stdout.
async fn forward(client: &StreamableClient, msg: Value, out: &mpsc::UnboundedSender<Value>) {
    let id = msg.get("id").cloned();
    let is_request = id.is_some() && msg.get("method").is_some();
    let is_init = msg.get("method").and_then(Value::as_str) == Some("initialize");
    match client.post(&msg).await {
        Ok(Posted::Accepted) => {}
        Ok(Posted::Messages(mut stream)) => {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(m) => {
                        if is_init && m.get("id") == id.as_ref() {
                            client.note_initialized(&m);
                        }
                        let _ = out.send(m);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "answer stream broke");
                        if let (true, Some(id)) = (is_request, &id) {
                            let _ = out.send(mcp_bridge::jsonrpc::error_response(
                                id,
                                mcp_bridge::jsonrpc::INTERNAL_ERROR,
                                explain(client, &e),
                            ));
                        }
                        return;
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "forwarding failed");
            if let (true, Some(id)) = (is_request, &id) {
                let _ = out.send(mcp_bridge::jsonrpc::error_response(
                    id,
                    mcp_bridge::jsonrpc::UPSTREAM_UNAVAILABLE,
                    explain(client, &e),
                ));
            }
        }
    }
}

/// Relays the GET stream (list_changed and other server-initiated messages) to stdout.
async fn server_stream(client: Arc<StreamableClient>, out: mpsc::UnboundedSender<Value>) {
    match client.open_stream().await {
        Ok(Some(stream)) => {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(m) => {
                        let _ = out.send(m);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "server stream broke");
                        return;
                    }
                }
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot open the server stream"),
    }
}
