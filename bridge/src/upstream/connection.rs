//! One connection's life, whatever the transport: the handshake, Ready, the keepalive, and how
//! the connection ends (the transport failed or ended, a ping went unanswered, a restart was
//! asked for, the bridge shuts down, or the upstream turned out to be unusable). The transports
//! (`stdio`, `http`) set up a peer and a [`Transport`] and hand both to [`run`]; the supervisor
//! decides what follows from the [`Outcome`].

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::peer::RpcPeer;
use super::supervisor::{self, Outcome};
use super::{CallError, State, Upstream};

/// Why a transport cannot go on.
#[derive(Debug)]
pub(crate) enum Ending {
    Broken(String),
    /// No usable credentials (shown as NeedsLogin, retried).
    NeedsLogin(String),
}

/// What a connection needs of its transport beside carrying the peer's messages.
pub(crate) trait Transport: Send {
    /// Resolves when the transport failed or ended, with the reason.
    fn ended(&mut self) -> BoxFuture<'_, Ending>;
    /// A failure the transport already reported, if any: it explains a failed handshake better
    /// than the handshake's own error (a refused token, say).
    fn reported(&mut self) -> Option<Ending> {
        None
    }
    /// Ends the connection in good order (shutdown, restart, disabled): what the other side is
    /// owed (a DELETE of the session, stdin closed before signals) is done.
    fn close(&mut self) -> BoxFuture<'_, ()>;
    /// Ends a connection that failed.
    fn abort(&mut self) -> BoxFuture<'_, ()>;
}

/// Why the bridge ended a connection itself.
enum Stop {
    Shutdown,
    Restart,
    Disabled(String),
}

/// Runs one connection until it ends; see the module doc.
pub(crate) async fn run(
    up: &Arc<Upstream>,
    peer: Arc<RpcPeer>,
    transport: &mut dyn Transport,
    shutdown: &CancellationToken,
) -> Outcome {
    up.update_status(|s| {
        // Retrying without a login stays NeedsLogin until a connection succeeds.
        if s.state != State::NeedsLogin {
            s.state = State::Initializing;
        }
    });
    let handshake = super::protocol::handshake(up, &peer, up.timeouts.startup);
    tokio::pin!(handshake);
    let (mut initializing, mut ready_since) = (true, None);
    let (ping_tx, mut ping_failed) = oneshot::channel();
    let (mut ping_tx, mut ping_armed) = (Some(ping_tx), true);
    let mut keepalive = None;
    let ended: Result<Ending, Stop> = loop {
        tokio::select! {
            result = &mut handshake, if initializing => {
                initializing = false;
                match result {
                    Ok(()) => {
                        ready_since = Some(tokio::time::Instant::now());
                        if let Some(tx) = ping_tx.take() {
                            let t = &up.timeouts;
                            keepalive = Some(tokio::spawn(supervisor::keepalive(peer.clone(), t.ping_interval, t.ping_timeout, tx)));
                        }
                        up.became_ready(&peer);
                    }
                    Err(CallError::Disabled { reason, .. }) => break Err(Stop::Disabled(reason)),
                    Err(e) => {
                        break Ok(transport
                            .reported()
                            .unwrap_or_else(|| Ending::Broken(format!("handshake failed: {e}"))));
                    }
                }
            }
            ending = transport.ended() => break Ok(ending),
            result = &mut ping_failed, if ping_armed => {
                ping_armed = false;
                if let Ok(reason) = result {
                    break Ok(Ending::Broken(reason));
                }
            }
            () = up.restart.notified() => break Err(Stop::Restart),
            () = shutdown.cancelled() => break Err(Stop::Shutdown),
        }
    };
    up.set_conn(None);
    if let Some(k) = keepalive {
        k.abort();
    }
    match ended {
        Err(stop) => {
            let (why, outcome) = match stop {
                Stop::Shutdown => ("the bridge is shutting down".to_owned(), Outcome::Shutdown),
                Stop::Restart => (
                    "the upstream is restarting for another client session".to_owned(),
                    Outcome::Restart,
                ),
                Stop::Disabled(reason) => (reason.clone(), Outcome::Disabled { reason }),
            };
            peer.close(&why);
            transport.close().await;
            outcome
        }
        Ok(ending) => {
            let was_ready_for = ready_since.map(|t| t.elapsed()).unwrap_or_default();
            let outcome = match ending {
                Ending::Broken(reason) => {
                    peer.close(&format!("{reason}; reconnecting"));
                    Outcome::Failed {
                        reason,
                        was_ready_for,
                    }
                }
                Ending::NeedsLogin(reason) => {
                    peer.close(&reason);
                    Outcome::NeedsLogin { reason }
                }
            };
            transport.abort().await;
            outcome
        }
    }
}
