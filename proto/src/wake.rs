//! Noticing that the machine slept: the wall clock keeps running through a suspend, the
//! monotonic clock does not (Linux `CLOCK_MONOTONIC`, macOS `mach_absolute_time`). When the
//! wall clock has moved well ahead of the monotonic one between two looks, the machine was
//! asleep (or its clock was set forward), and connections, timers and tokens may have gone
//! stale meanwhile.

use std::time::{Duration, Instant, SystemTime};

/// How often the daemons look.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How far the wall clock must run ahead of the monotonic clock to count as a resume (NTP
/// corrections are far smaller).
pub const THRESHOLD: Duration = Duration::from_secs(10);

/// Compares consecutive readings of both clocks.
#[derive(Debug, Clone, Copy)]
pub struct ResumeDetector {
    wall: SystemTime,
    mono: Instant,
}

impl ResumeDetector {
    pub fn new(wall: SystemTime, mono: Instant) -> Self {
        Self { wall, mono }
    }

    /// Takes a new reading; the time the machine was away if the wall clock ran ahead of the
    /// monotonic clock by more than [`THRESHOLD`] since the last one.
    pub fn check(&mut self, wall: SystemTime, mono: Instant) -> Option<Duration> {
        let wall_passed = wall.duration_since(self.wall).unwrap_or_default();
        let mono_passed = mono.saturating_duration_since(self.mono);
        self.wall = wall;
        self.mono = mono;
        wall_passed
            .checked_sub(mono_passed)
            .filter(|gap| *gap > THRESHOLD)
    }
}

/// Yields once per detected resume (how long the machine was away), looking every
/// [`CHECK_EVERY`].
pub fn resumes() -> tokio::sync::mpsc::Receiver<Duration> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut detector = ResumeDetector::new(SystemTime::now(), Instant::now());
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(gap) = detector.check(SystemTime::now(), Instant::now())
                && tx.send(gap).await.is_err()
            {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_jump_beyond_the_monotonic_one_is_a_resume() {
        let (w0, m0) = (
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            Instant::now(),
        );
        let mut d = ResumeDetector::new(w0, m0);
        // Both clocks move together: nothing.
        let (w1, m1) = (w0 + Duration::from_secs(2), m0 + Duration::from_secs(2));
        assert_eq!(d.check(w1, m1), None);
        // An NTP nudge of a few seconds: nothing.
        let (w2, m2) = (w1 + Duration::from_secs(7), m1 + Duration::from_secs(2));
        assert_eq!(d.check(w2, m2), None);
        // An hour asleep: the wall clock ran 3600 s while the monotonic one ran 2.
        let (w3, m3) = (w2 + Duration::from_secs(3602), m2 + Duration::from_secs(2));
        assert_eq!(d.check(w3, m3), Some(Duration::from_secs(3600)));
        // The clock set back: not a resume.
        let (w4, m4) = (w3 - Duration::from_secs(600), m3 + Duration::from_secs(2));
        assert_eq!(d.check(w4, m4), None);
        assert_eq!(
            d.check(w4 + Duration::from_secs(2), m4 + Duration::from_secs(2)),
            None
        );
    }
}
