//! Client sessions of the Streamable HTTP endpoint: ids, negotiated version, the GET stream for
//! server-initiated messages with a small replay buffer for `Last-Event-ID` resumption, and
//! expiry of idle sessions.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Messages kept for resumption of the GET stream.
const REPLAY: usize = 128;
/// Messages queued for a slow GET stream before new ones are only kept for replay.
const STREAM_QUEUE: usize = 256;

pub type StreamItem = (u64, Arc<str>);

pub struct Session {
    pub id: String,
    pub protocol_version: String,
    pub client_name: String,
    last_seen: Mutex<Instant>,
    stream: Mutex<Option<mpsc::Sender<StreamItem>>>,
    next_event: AtomicU64,
    replay: Mutex<VecDeque<StreamItem>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    pub fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        lock(&self.last_seen).elapsed()
    }

    fn has_open_stream(&self) -> bool {
        lock(&self.stream).as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Queues a server-initiated message for the GET stream (and the replay buffer).
    pub fn push(&self, msg: &Value) {
        let n = self.next_event.fetch_add(1, Ordering::Relaxed);
        let text: Arc<str> = msg.to_string().into();
        {
            let mut replay = lock(&self.replay);
            if replay.len() == REPLAY {
                replay.pop_front();
            }
            replay.push_back((n, text.clone()));
        }
        let mut stream = lock(&self.stream);
        if let Some(tx) = stream.as_ref() {
            match tx.try_send((n, text)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => *stream = None,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(session = %self.id, "GET stream is not being read; message kept for replay only");
                }
            }
        }
    }

    /// Opens the GET stream. Returns `None` if one is already open (one per session). Events
    /// after `last_event` are replayed first.
    pub fn open_stream(
        &self,
        last_event: Option<u64>,
    ) -> Option<(u64, mpsc::Receiver<StreamItem>)> {
        let mut stream = lock(&self.stream);
        if stream.as_ref().is_some_and(|s| !s.is_closed()) {
            return None;
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        if let Some(after) = last_event {
            for item in lock(&self.replay).iter().filter(|(n, _)| *n > after) {
                let _ = tx.try_send(item.clone());
            }
        }
        *stream = Some(tx);
        let priming = self.next_event.fetch_add(1, Ordering::Relaxed);
        Some((priming, rx))
    }
}

/// Formats an SSE event id of this session's GET stream.
pub fn event_id(n: u64) -> String {
    format!("g-{n}")
}

pub fn parse_event_id(s: &str) -> Option<u64> {
    s.strip_prefix("g-")?.parse().ok()
}

#[derive(Default)]
pub struct Sessions {
    map: RwLock<HashMap<String, Arc<Session>>>,
}

/// 256 bits from the OS CSPRNG, hex: visible ASCII as the spec requires, unguessable.
fn new_session_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Sessions {
    pub fn create(
        &self,
        protocol_version: String,
        client_name: String,
    ) -> Result<Arc<Session>, getrandom::Error> {
        let session = Arc::new(Session {
            id: new_session_id()?,
            protocol_version,
            client_name,
            last_seen: Mutex::new(Instant::now()),
            stream: Mutex::new(None),
            next_event: AtomicU64::new(0),
            replay: Mutex::new(VecDeque::new()),
        });
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session.id.clone(), session.clone());
        Ok(session)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let s = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned();
        if let Some(s) = &s {
            s.touch();
        }
        s
    }

    pub fn remove(&self, id: &str) -> bool {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .is_some()
    }

    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Forgets sessions idle longer than `idle` that have no open GET stream.
    pub fn expire(&self, idle: Duration) -> usize {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let before = map.len();
        map.retain(|_, s| s.has_open_stream() || s.idle_for() < idle);
        before - map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_unique_visible_ascii() {
        let s = Sessions::default();
        let a = s.create("2025-11-25".into(), "t".into()).unwrap();
        let b = s.create("2025-11-25".into(), "t".into()).unwrap();
        assert_ne!(a.id, b.id);
        assert!(a.id.bytes().all(|c| (0x21..=0x7e).contains(&c)));
        assert_eq!(a.id.len(), 64);
    }

    #[tokio::test]
    async fn stream_replays_after_last_event_id() {
        let s = Sessions::default().create("v".into(), "t".into()).unwrap();
        s.push(&json!({"n": 0}));
        s.push(&json!({"n": 1}));
        let (_, mut rx) = s.open_stream(Some(0)).unwrap();
        assert!(s.open_stream(None).is_none(), "second stream refused");
        let (n, text) = rx.recv().await.unwrap();
        assert_eq!((n, &*text), (1, "{\"n\":1}"));
        s.push(&json!({"n": 2}));
        assert_eq!(&*rx.recv().await.unwrap().1, "{\"n\":2}");
        drop(rx);
        assert!(
            s.open_stream(None).is_some(),
            "reopen after the client left"
        );
        assert_eq!(parse_event_id(&event_id(7)), Some(7));
    }
}
