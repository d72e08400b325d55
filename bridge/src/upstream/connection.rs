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
                        // 2026-07-28 has no ping: a stateless upstream is alive when it answers.
                        if let Some(tx) = ping_tx.take().filter(|_| !peer.is_stateless()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use serde_json::{Value, json};
    use tokio::sync::{Notify, mpsc};

    use crate::upstream::{NoClients, Timeouts};

    /// A transport the test ends at will, recording how the connection closed it.
    struct Fake {
        end: Option<oneshot::Receiver<Ending>>,
        reported: Option<Ending>,
        closed: Arc<AtomicBool>,
        aborted: Arc<AtomicBool>,
    }

    impl Transport for Fake {
        fn ended(&mut self) -> BoxFuture<'_, Ending> {
            Box::pin(async move {
                match self.end.as_mut() {
                    Some(rx) => rx
                        .await
                        .unwrap_or_else(|_| Ending::Broken("test dropped".into())),
                    None => std::future::pending().await,
                }
            })
        }
        fn reported(&mut self) -> Option<Ending> {
            self.reported.take()
        }
        fn close(&mut self) -> BoxFuture<'_, ()> {
            self.closed.store(true, Ordering::Relaxed);
            Box::pin(async {})
        }
        fn abort(&mut self) -> BoxFuture<'_, ()> {
            self.aborted.store(true, Ordering::Relaxed);
            Box::pin(async {})
        }
    }

    struct Setup {
        up: Arc<Upstream>,
        peer: Arc<RpcPeer>,
        fake: Fake,
        end: Option<oneshot::Sender<Ending>>,
        closed: Arc<AtomicBool>,
        aborted: Arc<AtomicBool>,
    }

    /// An upstream whose server answers `initialize` with `init` and lists one tool; pings are
    /// answered unless `answer_pings` is false.
    fn setup(init: Value, answer_pings: bool, timeouts: Timeouts) -> Setup {
        let up = Arc::new(Upstream::new(
            "fake",
            "fake",
            "test",
            timeouts,
            Arc::new(Notify::new()),
            Arc::new(NoClients),
        ));
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let peer = Arc::new(RpcPeer::new("fake".into(), tx));
        let (u, p) = (up.clone(), peer.clone());
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                let msg: Value = serde_json::from_slice(&line).unwrap();
                let (Some(id), Some(method)) = (msg.get("id"), msg["method"].as_str()) else {
                    continue;
                };
                let result = match method {
                    "initialize" => init.clone(),
                    "tools/list" => {
                        json!({"tools": [{"name": "t", "inputSchema": {"type": "object"}}]})
                    }
                    "ping" if !answer_pings => continue,
                    _ => json!({}),
                };
                crate::upstream::protocol::dispatch(
                    &u,
                    &p,
                    json!({"jsonrpc": "2.0", "id": id, "result": result}),
                );
            }
        });
        let (end_tx, end_rx) = oneshot::channel();
        let (closed, aborted) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        Setup {
            up,
            peer,
            fake: Fake {
                end: Some(end_rx),
                reported: None,
                closed: closed.clone(),
                aborted: aborted.clone(),
            },
            end: Some(end_tx),
            closed,
            aborted,
        }
    }

    fn init() -> Value {
        json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "fake", "version": "1"}})
    }

    async fn ready(up: &Upstream) {
        let mut rx = up.subscribe_status();
        while rx.borrow_and_update().state != State::Ready {
            rx.changed().await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ready_then_the_transport_ends_and_the_connection_fails_with_its_reason() {
        let mut s = setup(init(), true, Timeouts::default());
        let stop = CancellationToken::new();
        let (up, peer) = (s.up.clone(), s.peer.clone());
        let run = tokio::spawn(async move { run(&up, peer, &mut s.fake, &stop).await });
        ready(&s.up).await;
        assert_eq!(s.up.tool_count(), 1, "the handshake listed the tools");
        assert!(s.up.ready_conn().is_some());
        tokio::time::sleep(Duration::from_secs(3)).await;
        s.end
            .take()
            .unwrap()
            .send(Ending::Broken("process exited (exit status: 1)".into()))
            .unwrap();
        match run.await.unwrap() {
            Outcome::Failed {
                reason,
                was_ready_for,
            } => {
                assert!(reason.contains("exited"), "{reason}");
                assert!(was_ready_for >= Duration::from_secs(3), "{was_ready_for:?}");
            }
            _ => panic!("expected Failed"),
        }
        assert!(s.aborted.load(Ordering::Relaxed) && !s.closed.load(Ordering::Relaxed));
        assert!(
            s.up.ready_conn().is_none(),
            "calls no longer go to the dead connection"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_and_restart_close_the_transport_in_good_order() {
        for restart in [false, true] {
            let mut s = setup(init(), true, Timeouts::default());
            let stop = CancellationToken::new();
            let (up, peer, st) = (s.up.clone(), s.peer.clone(), stop.clone());
            let run = tokio::spawn(async move { run(&up, peer, &mut s.fake, &st).await });
            ready(&s.up).await;
            if restart {
                s.up.restart.notify_one();
            } else {
                stop.cancel();
            }
            let outcome = run.await.unwrap();
            assert!(
                matches!(
                    (&outcome, restart),
                    (Outcome::Restart, true) | (Outcome::Shutdown, false)
                ),
                "restart = {restart}"
            );
            assert!(s.closed.load(Ordering::Relaxed) && !s.aborted.load(Ordering::Relaxed));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_is_this_bridge_is_disabled() {
        let mut init = init();
        init["_meta"] = json!({ crate::upstream::INSTANCE_META: crate::upstream::instance_id() });
        let mut s = setup(init, true, Timeouts::default());
        let stop = CancellationToken::new();
        match run(&s.up, s.peer.clone(), &mut s.fake, &stop).await {
            Outcome::Disabled { reason } => assert!(reason.contains("itself"), "{reason}"),
            _ => panic!("expected Disabled"),
        }
        assert!(s.closed.load(Ordering::Relaxed));
        assert!(s.up.tool_count() == 0, "nothing of it is listed");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_ping_fails_a_hung_connection() {
        let t = Timeouts {
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(2),
            ..Timeouts::default()
        };
        let mut s = setup(init(), false, t);
        s.fake.end = None;
        let stop = CancellationToken::new();
        match run(&s.up, s.peer.clone(), &mut s.fake, &stop).await {
            Outcome::Failed { reason, .. } => assert!(reason.contains("ping"), "{reason}"),
            _ => panic!("expected Failed"),
        }
        assert!(s.aborted.load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_handshake_is_explained_by_what_the_transport_reported() {
        // The server's initialize answer is unusable; the transport already knows why (no login).
        let t = Timeouts {
            startup: Duration::from_secs(1),
            ..Timeouts::default()
        };
        let mut s = setup(json!(null), true, t);
        s.fake.end = None;
        s.fake.reported = Some(Ending::NeedsLogin("no login for fake".into()));
        let stop = CancellationToken::new();
        match run(&s.up, s.peer.clone(), &mut s.fake, &stop).await {
            Outcome::NeedsLogin { reason } => assert_eq!(reason, "no login for fake"),
            _ => panic!("expected NeedsLogin"),
        }
    }
}
