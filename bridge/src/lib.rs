//! mcp-bridge: one stable Streamable HTTP MCP endpoint in front of many upstream MCP servers.
//!
//! The binary is a thin wrapper around [`cli::main`]; tests can run [`serve`] in-process on a
//! listener of their own or spawn the binary.

pub mod agent_client;
pub mod cache;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod connectors;
pub mod demo;
pub mod doctor;
pub mod downstream;
pub mod guard;
pub mod import;
pub mod jsonfile;
pub mod jsonrpc;
pub mod mcp_session;
pub mod metrics;
pub mod modern;
pub mod naming;
pub mod pins;
pub mod registry;
pub mod server;
pub mod service;
pub mod session;
pub mod sse;
mod sys;
pub mod ui;
pub mod upstream;
pub mod views;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use proto::config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Environment variable holding the inbound bearer token (alternative to the token file).
pub const INBOUND_TOKEN_ENV: &str = "MCP_BRIDGE_INBOUND_TOKEN";
/// File in the config dir holding the inbound bearer token.
pub const INBOUND_TOKEN_FILE: &str = "inbound-token";

/// Reads the inbound bearer token: the environment first, then `<config_dir>/inbound-token`.
pub fn inbound_token(
    config_dir: &Path,
    env_value: Option<String>,
) -> anyhow::Result<Option<String>> {
    if let Some(t) = env_value.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(t.trim().to_owned()));
    }
    let path = config_dir.join(INBOUND_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_owned())),
        Ok(_) => anyhow::bail!("{} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// What `serve` needs besides the config.
pub struct Options {
    /// Command line of the built-in demo upstream, used when no upstream is configured.
    pub demo_command: Option<(String, Vec<String>)>,
    pub inbound_token: Option<String>,
    /// Re-read the configuration on SIGHUP (`proto::config::load_process`) and apply upstream changes.
    pub reload_on_sighup: bool,
}

/// Serves the bridge on `listener` until `shutdown` resolves, then stops every upstream.
pub async fn serve(
    config: Config,
    options: Options,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let views = views::Views::shared(&config);
    let connectors = connectors::Connectors::new(&config);
    let mut guard = guard::Guard::new(
        &config.server.allowed_hosts,
        &config.server.allowed_origins,
        config.server.allow_loopback_origins,
        options.inbound_token,
    )?
    .with_views(views.clone());
    if let Some(c) = &connectors {
        tracing::info!(public_url = %c.issuer, "serving connectors: requests for the public URL need an OAuth token issued here");
        guard = guard.with_connectors(c.clone());
    }
    let sessions = Arc::new(session::Sessions::with_limit(
        config.server.max_sessions,
        views.clone(),
    ));
    let registry =
        registry::Registry::start(&config, options.demo_command, sessions.clone(), views);
    let stop = CancellationToken::new();
    let endpoint = format!("http://{local}{}", config.mcp_path);
    let bridge = Arc::new(server::Bridge {
        registry: registry.clone(),
        sessions,
        endpoint,
        started: SystemTime::now(),
        shutdown: stop.clone(),
        list_changes: Default::default(),
        streams: Default::default(),
        first_list_wait: Duration::from_secs_f64(
            config.server.first_list_wait_secs.clamp(0.0, 600.0),
        ),
        mrtr: Default::default(),
        list_events: tokio::sync::broadcast::channel(64).0,
        connectors,
        ui_token: ui::new_token(),
    });
    tokio::spawn(server::forward_list_changes(bridge.clone()));
    let idle = Duration::from_secs(config.server.session_idle_secs.max(1));
    let sweeper = bridge.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(
            (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        );
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let n = sweeper.sessions.expire(idle);
                    if n > 0 {
                        tracing::info!(expired = n, "forgot idle client sessions");
                    }
                }
                () = sweeper.shutdown.cancelled() => return,
            }
        }
    });
    if options.reload_on_sighup {
        let (registry, stop) = (registry.clone(), stop.clone());
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        // Saving config.toml reloads it too; without a watch (an unwatchable directory) SIGHUP
        // still works.
        let mut watch = match proto::watch::config_changes(&config.config_dir) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("config.toml is not watched (reload with SIGHUP): {e}");
                None
            }
        };
        tokio::spawn(async move {
            loop {
                let why = tokio::select! {
                    _ = hup.recv() => "SIGHUP",
                    Some(()) = async {
                        match watch.as_mut() {
                            Some(w) => w.changes.recv().await,
                            None => std::future::pending().await,
                        }
                    } => "config.toml changed",
                    () = stop.cancelled() => return,
                };
                match proto::config::load_process() {
                    Ok(new) => {
                        tracing::info!(
                            upstreams = new.upstreams.len(),
                            "{why}: reloading the upstream configuration"
                        );
                        registry.reload(&new);
                    }
                    Err(e) => tracing::error!("{why}: keeping the running configuration: {e}"),
                }
            }
        });
    }
    // After a sleep, remote upstreams reconnect before the next call needs them.
    {
        let (registry, stop) = (registry.clone(), stop.clone());
        let mut resumes = proto::wake::resumes();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(gap) = resumes.recv() => registry.resumed(gap),
                    () = stop.cancelled() => return,
                }
            }
        });
    }
    let app = server::router(
        bridge.clone(),
        &config.mcp_path,
        guard,
        server::BodyLimits {
            max_bytes: config.server.max_body_bytes,
            timeout: Duration::from_secs(config.server.body_timeout_secs.max(1)),
        },
    );
    let stop_for_serve = stop.clone();
    let graceful = async move {
        shutdown.await;
        tracing::info!("shutting down");
        stop_for_serve.cancel();
    };
    let header_timeout = Duration::from_secs(config.server.header_timeout_secs.max(1));
    serve_http(listener, app, header_timeout, graceful).await;
    stop.cancel();
    registry.shutdown().await;
    Ok(())
}

/// How long open connections get to finish after shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` over HTTP/1.1 until `shutdown`, cutting off clients that take longer than
/// `header_timeout` to send a request's headers (slowloris; axum::serve has no such timeout),
/// then drains connections for at most [`DRAIN`].
async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let stop = CancellationToken::new();
    let conns = tokio_util::task::TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        conns.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    // Stop listening at once: a restarted bridge can bind the port while this one drains.
    drop(listener);
    stop.cancel();
    conns.close();
    let _ = tokio::time::timeout(DRAIN, conns.wait()).await;
}
