//! Injected time.
//!
//! The core never reads the system clock by itself: every transition takes
//! `now` as an argument, and stores take a [`Clock`]. Tests drive a
//! [`ManualClock`] instead of sleeping.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time, truncated to whole microseconds (see [`truncate`]).
    fn now(&self) -> DateTime<Utc>;
}

/// Truncates a time to whole microseconds.
///
/// PostgreSQL stores microseconds; keeping the same precision everywhere
/// means a job reads back equal to what was written, in every store.
pub fn truncate(time: DateTime<Utc>) -> DateTime<Utc> {
    // Most times reaching here are whole microseconds already (the clocks
    // give them), and the test is far cheaper than chrono's rounding.
    if time.timestamp_subsec_nanos().is_multiple_of(1_000) { time } else { time.trunc_subsecs(6) }
}

/// Adds a duration to a time, saturating at the latest time chrono can hold
/// so that an absurd lease or delay cannot panic.
pub fn add(time: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| time.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        // Whole microseconds read straight off the system time: one
        // calendar conversion instead of two (`Utc::now`, then `truncate`),
        // which matters to a store that reads the clock on every call.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|since| i64::try_from(since.as_micros()).ok())
            .and_then(DateTime::from_timestamp_micros)
            .unwrap_or_else(|| truncate(Utc::now()))
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use greenlight_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(shared.now().to_rfc3339(), "2026-01-01T00:01:30+00:00");
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock stopped at `start` (truncated to microseconds).
    pub fn new(start: DateTime<Utc>) -> Self {
        Self { now: Arc::new(Mutex::new(truncate(start))) }
    }

    /// A clock stopped at the current system time.
    pub fn starting_now() -> Self {
        Self::new(Utc::now())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = truncate(add(*now, by));
    }

    /// Sets the clock to `to`, forward or back.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = truncate(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        // A poisoned lock still holds a valid time: the guarded value is a
        // plain timestamp that no panic can leave half-written.
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_whole_microseconds_of_the_current_time() {
        let before = truncate(Utc::now());
        let now = SystemClock.now();
        let after = Utc::now();
        assert!(
            now.timestamp_subsec_nanos().is_multiple_of(1_000),
            "{now:?} has sub-microsecond digits"
        );
        assert!(before <= now && now <= after, "{before:?} <= {now:?} <= {after:?}");
    }
}
