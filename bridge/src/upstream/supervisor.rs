//! The reconnect loop every upstream runs, whatever its transport: connect, serve until the
//! connection fails, wait a jittered exponential backoff, again; and the idle keepalive.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::BackoffBuilder;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::peer::RpcPeer;
use super::{CallError, State, Upstream};

pub const MIN_DELAY: Duration = Duration::from_millis(250);
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A connection must stay up this long before the backoff starts again from the minimum, so a
/// crash loop does not restart at the minimum delay forever.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Longest wait between attempts while an upstream needs a login.
pub const NEEDS_LOGIN_RETRY: Duration = Duration::from_secs(2);
/// Shortest wait between attempts even when the jitter draws zero: no hot loop.
const FLOOR: Duration = Duration::from_millis(50);

/// Exponential backoff with full jitter: the ceiling doubles from [`MIN_DELAY`] up to
/// [`MAX_DELAY`] (backon's schedule), and each delay is drawn uniformly below the ceiling.
pub struct Backoff {
    ceilings: backon::ExponentialBackoff,
    rng: fastrand::Rng,
    last_ceiling: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::with_rng(fastrand::Rng::new())
    }
}

impl Backoff {
    pub fn with_rng(rng: fastrand::Rng) -> Self {
        let ceilings = backon::ExponentialBuilder::default()
            .with_min_delay(MIN_DELAY)
            .with_max_delay(MAX_DELAY)
            .with_factor(2.0)
            .without_max_times()
            .build();
        Self {
            ceilings,
            rng,
            last_ceiling: MIN_DELAY,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceilings.next().unwrap_or(MAX_DELAY).min(MAX_DELAY);
        self.last_ceiling = ceiling;
        ceiling.mul_f64(self.rng.f64()).max(FLOOR)
    }

    /// The ceiling of the last delay drawn (for status and tests).
    pub fn ceiling(&self) -> Duration {
        self.last_ceiling
    }

    pub fn reset(&mut self) {
        *self = Self::with_rng(self.rng.clone());
    }
}

/// How one connection attempt ended.
pub enum Outcome {
    Shutdown,
    /// The connection failed or ended; `was_ready_for` is how long it had been Ready.
    Failed {
        reason: String,
        was_ready_for: Duration,
    },
    /// No credentials: retried with backoff, shown as NeedsLogin meanwhile.
    NeedsLogin {
        reason: String,
    },
    /// The connection was ended on purpose ([`Upstream::restart`]): start again at once.
    Restart,
    /// The upstream cannot work as configured: shown as Disabled, not retried.
    Disabled {
        reason: String,
    },
}

/// Runs `connect` until `shutdown`, with backoff between failed attempts.
pub async fn supervise<F, Fut>(up: Arc<Upstream>, shutdown: CancellationToken, mut connect: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut backoff = Backoff::default();
    loop {
        up.update_status(|s| {
            // Retrying without a login stays NeedsLogin until a connection succeeds.
            if s.state != State::NeedsLogin {
                s.state = State::Connecting;
            }
            s.next_retry_at = None;
        });
        let (reason, was_ready_for, state) = tokio::select! {
            outcome = connect() => match outcome {
                Outcome::Shutdown => break,
                Outcome::Restart => continue,
                Outcome::Disabled { reason } => {
                    tracing::error!(upstream = %up.name, error = %reason, "upstream disabled");
                    up.update_status(|s| {
                        s.state = State::Disabled;
                        s.last_error = Some(reason);
                        s.next_retry_at = None;
                    });
                    shutdown.cancelled().await;
                    return;
                }
                Outcome::Failed { reason, was_ready_for } => (reason, was_ready_for, State::Backoff),
                Outcome::NeedsLogin { reason } => (reason, Duration::ZERO, State::NeedsLogin),
            },
            () = shutdown.cancelled() => break,
        };
        if was_ready_for >= STABLE_AFTER {
            backoff.reset();
        }
        // Waiting for a login costs one local round trip to the agent per attempt: retry often,
        // so a login done with `mcp-cred-agent login` is picked up within a couple of seconds.
        let delay = match state {
            State::NeedsLogin => backoff.next_delay().min(NEEDS_LOGIN_RETRY),
            _ => backoff.next_delay(),
        };
        tracing::warn!(upstream = %up.name, error = %reason, retry_in_ms = delay.as_millis() as u64, "upstream down; reconnecting");
        up.update_status(|s| {
            s.state = state;
            s.last_error = Some(reason);
            s.failures += 1;
            s.next_retry_at = Some(SystemTime::now() + delay);
            s.backoff_ceiling_ms = backoff.ceiling().as_millis() as u64;
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = up.wake.notified() => {}
            () = shutdown.cancelled() => break,
        }
    }
    up.update_status(|s| {
        s.state = State::Stopped;
        s.next_retry_at = None;
    });
}

/// Pings the upstream whenever it has been silent for `interval`; reports on `failed` when a
/// ping goes unanswered for `timeout` (a hung upstream).
pub async fn keepalive(
    peer: Arc<RpcPeer>,
    interval: Duration,
    timeout: Duration,
    failed: oneshot::Sender<String>,
) {
    if interval.is_zero() {
        return std::future::pending().await;
    }
    loop {
        let idle = peer.silent_for();
        if idle < interval {
            tokio::time::sleep(interval - idle).await;
            continue;
        }
        let started = Instant::now();
        match peer.call("ping", None, timeout).await {
            // Any JSON-RPC answer, even an error, proves the upstream is alive (an HTTP error
            // answer to a ping fails the connection in the transport instead).
            Ok(_) | Err(CallError::Rpc(_)) => {
                tracing::trace!(upstream = %peer.upstream(), ms = started.elapsed().as_millis() as u64, "ping");
                // Wait a full interval before the next ping, even if nothing else arrives.
                tokio::time::sleep(interval).await;
            }
            Err(CallError::Timeout { .. }) => {
                let _ = failed.send(format!(
                    "no answer to ping within {} s; the upstream looks hung",
                    timeout.as_secs_f64()
                ));
                return;
            }
            Err(CallError::Unavailable { .. } | CallError::Disabled { .. }) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn full_jitter_below_a_doubling_ceiling_capped_at_60s() {
        let mut b = Backoff::with_rng(fastrand::Rng::with_seed(7));
        let mut ceilings = Vec::new();
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= b.ceiling().max(FLOOR), "{d:?} over {:?}", b.ceiling());
            ceilings.push(b.ceiling());
        }
        assert_eq!(ceilings[0], MIN_DELAY);
        assert_eq!(ceilings[1], MIN_DELAY * 2);
        assert!(ceilings.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*ceilings.last().unwrap(), MAX_DELAY);
        b.reset();
        b.next_delay();
        assert_eq!(b.ceiling(), MIN_DELAY);
    }

    fn test_upstream() -> Arc<Upstream> {
        Arc::new(Upstream::new(
            "t",
            "t",
            "test",
            super::super::Timeouts::default(),
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(super::super::NoClients),
        ))
    }

    /// A crash loop over ten virtual minutes: attempts back off towards the cap instead of
    /// spinning, and the status tells the story.
    #[tokio::test(start_paused = true)]
    async fn a_crash_loop_backs_off_to_the_cap() {
        let up = test_upstream();
        let attempts = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let n = attempts.clone();
        let task = tokio::spawn(supervise(up.clone(), stop.clone(), move || {
            n.fetch_add(1, Ordering::Relaxed);
            async {
                Outcome::Failed {
                    reason: "boom".into(),
                    was_ready_for: Duration::ZERO,
                }
            }
        }));
        tokio::time::sleep(Duration::from_secs(600)).await;
        let count = attempts.load(Ordering::Relaxed);
        // Ceilings 0.25+0.5+...+32 s reach the 60 s cap after ~64 s; full jitter averages half
        // the ceiling, so ten minutes hold roughly 25 attempts; a hot loop would hold thousands.
        assert!((9..=80).contains(&count), "{count} attempts in 10 minutes");
        let s = up.status();
        assert_eq!(s.state, State::Backoff);
        assert_eq!(s.backoff_ceiling_ms, 60_000);
        assert_eq!(s.last_error.as_deref(), Some("boom"));
        assert_eq!(s.failures, u64::from(count));
        stop.cancel();
        task.await.unwrap();
        assert_eq!(up.state(), State::Stopped);
    }

    /// After a connection that stayed up past STABLE_AFTER, the next delay starts from the
    /// minimum again; after short-lived ones it keeps growing.
    #[tokio::test(start_paused = true)]
    async fn backoff_resets_only_after_a_stable_connection() {
        let up = test_upstream();
        let attempts = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let n = attempts.clone();
        tokio::spawn(supervise(up.clone(), stop.clone(), move || {
            let i = n.fetch_add(1, Ordering::Relaxed);
            async move {
                // Six quick failures, then one connection that lasts 31 s.
                let lived = if i == 6 {
                    STABLE_AFTER + Duration::from_secs(1)
                } else {
                    Duration::ZERO
                };
                tokio::time::sleep(lived).await;
                Outcome::Failed {
                    reason: format!("attempt {i}"),
                    was_ready_for: lived,
                }
            }
        }));
        let mut ceilings = Vec::new();
        let mut rx = up.subscribe_status();
        while ceilings.len() < 8 {
            rx.changed().await.unwrap();
            let s = rx.borrow().clone();
            if s.state == State::Backoff && ceilings.len() < s.failures as usize {
                ceilings.push(s.backoff_ceiling_ms);
            }
        }
        stop.cancel();
        assert_eq!(&ceilings[..6], &[250, 500, 1000, 2000, 4000, 8000]);
        assert_eq!(
            ceilings[6], 250,
            "reset after the stable connection: {ceilings:?}"
        );
        assert_eq!(ceilings[7], 500);
    }
}
