//! The agent's socket: a 0600 Unix socket in a 0700 directory, one task per connection, the
//! peer's uid checked on accept.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use proto::{AgentError, AgentMessage, ClientMessage, PROTOCOL_VERSION, Request, Response};

use crate::tokens::Agent;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::Framed;

/// Creates `dir` with mode 0700, forcing the mode if it already existed.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // The directory may have existed with a wider mode; the socket's safety rests on this one.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set mode 0700 on {}", dir.display()))
}

/// Binds the socket: refuses while another agent answers on it, replaces a stale one.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    if path.exists() {
        match UnixStream::connect(path).await {
            Ok(_) => anyhow::bail!(
                "another mcp-cred-agent is already running on {}",
                path.display()
            ),
            Err(_) => {
                tracing::info!(path = %path.display(), "removing a stale socket left by an agent that is gone");
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
            }
        }
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set mode 0600 on {}", path.display()))?;
    Ok(listener)
}

/// Most client connections served at once (the bridge keeps one; each CLI command opens one).
/// Past it new connections are closed at once, so a flood cannot exhaust descriptors.
pub const MAX_CONNECTIONS: usize = 256;

/// A client must say hello within this long after connecting.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts connections until `shutdown`; removes the socket file on the way out.
pub async fn run(
    agent: Arc<Agent>,
    listener: UnixListener,
    path: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let me = crate::sys::effective_uid();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == me => {}
            Ok(cred) => {
                tracing::warn!(peer_uid = cred.uid(), peer_pid = ?cred.pid(), "refused a connection from another user");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "refused a connection whose peer cannot be identified");
                continue;
            }
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("refused a connection: {MAX_CONNECTIONS} connections already open");
            continue;
        };
        let agent = agent.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = serve_connection(&agent, stream).await {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn serve_connection(agent: &Arc<Agent>, stream: UnixStream) -> anyhow::Result<()> {
    let mut framed = Framed::new(stream, proto::codec());
    let Ok(first) = tokio::time::timeout(HELLO_TIMEOUT, framed.next()).await else {
        anyhow::bail!("no hello within {HELLO_TIMEOUT:?}");
    };
    let Some(first) = first else {
        return Ok(());
    };
    match proto::decode::<ClientMessage>(&first?)? {
        ClientMessage::Hello { protocol_version } if protocol_version == PROTOCOL_VERSION => {
            framed
                .send(proto::encode(&AgentMessage::Hello {
                    protocol_version: PROTOCOL_VERSION,
                }))
                .await?;
        }
        ClientMessage::Hello { protocol_version } => {
            let error = AgentError::VersionMismatch {
                got: protocol_version,
                supported: PROTOCOL_VERSION,
            };
            framed
                .send(proto::encode(&AgentMessage::Response {
                    id: 0,
                    response: Response::Error { error },
                }))
                .await?;
            return Ok(());
        }
        ClientMessage::Request { .. } => anyhow::bail!("client sent a request before Hello"),
    }
    // Requests are answered concurrently (a slow refresh for one upstream does not hold up
    // another's token); answers carry the request id.
    let (mut sink, mut stream) = framed.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<AgentMessage>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(proto::encode(&m)).await.is_err() {
                break;
            }
        }
    });
    while let Some(frame) = stream.next().await {
        match proto::decode::<ClientMessage>(&frame?)? {
            ClientMessage::Request { id, request } => {
                tracing::debug!(id, ?request, "request");
                let (agent, tx) = (agent.clone(), tx.clone());
                tokio::spawn(async move {
                    let response = agent.handle(request).await;
                    let _ = tx.send(AgentMessage::Response { id, response }).await;
                });
            }
            ClientMessage::Hello { .. } => anyhow::bail!("Hello sent twice"),
        }
    }
    drop(tx);
    let _ = writer.await;
    Ok(())
}

/// A client of the agent socket (used by `mcp-cred-agent status` and, later, the bridge).
pub struct AgentClient {
    framed: proto::client::Conn,
    next_id: u64,
}

impl AgentClient {
    pub async fn connect(path: &Path) -> anyhow::Result<Self> {
        let framed = proto::client::connect(path).await.map_err(|e| match e {
            proto::client::ClientError::Io(e) => anyhow::anyhow!(
                "mcp-cred-agent is not running (no answer on {}: {e}); start it with `mcp-cred-agent serve`",
                path.display()
            ),
            e => anyhow::anyhow!("agent refused the connection: {e}"),
        })?;
        Ok(Self { framed, next_id: 1 })
    }

    pub async fn request(&mut self, request: Request) -> anyhow::Result<Response> {
        let id = self.next_id;
        self.next_id += 1;
        Ok(proto::client::exchange(&mut self.framed, id, request).await?)
    }
}
