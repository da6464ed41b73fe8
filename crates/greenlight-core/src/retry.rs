//! When a failed job runs again.
//!
//! [`RetryPolicy`] is a pure function from the failure number to a delay:
//! exponential growth from a base, capped, with jitter subtracted so that
//! the jitter never pushes a delay past the cap. The randomness is an
//! argument ([`Jitter`]), so the same inputs always give the same delay.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, JobId};

/// A number in `[0, 1)` that decides how much jitter a delay gets.
///
/// Stores derive it from the job id and attempt with [`Jitter::for_attempt`],
/// so that jobs failing together spread out, and so that two stores given
/// the same job compute the same `run_at`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Jitter(f64);

impl Jitter {
    /// No jitter: the delay is exactly the exponential one.
    pub const NONE: Jitter = Jitter(0.0);

    /// A jitter from any number; it is clamped into `[0, 1)` and a NaN
    /// becomes zero.
    pub fn new(unit: f64) -> Self {
        if unit.is_nan() {
            return Self::NONE;
        }
        Self(unit.clamp(0.0, 1.0 - f64::EPSILON))
    }

    /// The value in `[0, 1)`.
    pub const fn value(self) -> f64 {
        self.0
    }

    /// A well-spread jitter that depends only on the job and the attempt.
    ///
    /// This is splitmix64 over the UUID's bits and the attempt: cheap,
    /// stateless, and identical in every store.
    pub fn for_attempt(id: JobId, attempt: u32) -> Self {
        let bits = id.0.as_u128();
        let mut x = (bits as u64) ^ ((bits >> 64) as u64) ^ u64::from(attempt);
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        // The top 53 bits fill an f64 mantissa exactly: the result is in
        // [0, 1) and every value is equally likely.
        Self((x >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Exponential backoff with a cap and jitter.
///
/// The delay before failure number `n` (counting from 1) is
/// `min(base * multiplier^(n-1), cap)` before jitter, then reduced by up to
/// `jitter` of itself. Jitter only ever shortens a delay, so the cap holds
/// after jitter too.
///
/// ```
/// use std::time::Duration;
/// use greenlight_core::{Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::default();
/// assert_eq!(policy.delay_before_jitter(1), Duration::from_secs(2));
/// assert_eq!(policy.delay_before_jitter(2), Duration::from_secs(4));
/// assert_eq!(policy.delay_before_jitter(30), Duration::from_secs(600));
/// let jittered = policy.delay(3, Jitter::new(0.5));
/// assert!(jittered <= Duration::from_secs(8) && jittered >= Duration::from_secs(6));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    base: Duration,
    multiplier: f64,
    cap: Duration,
    jitter: f64,
}

impl Default for RetryPolicy {
    /// Base 2 s: a Greenlight hiccup (a restart, a full sandbox pool) often
    /// clears within seconds. Multiplier 2: the usual doubling, so six
    /// failures wait about two minutes in all. Cap 10 min: a learner waiting
    /// on a result should not wait longer than that between tries. Jitter
    /// 0.2: enough to spread a burst of failures without making delays
    /// unpredictable.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            multiplier: 2.0,
            cap: Duration::from_secs(600),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// A policy; see the type's docs for the formula.
    ///
    /// Refused: a zero base, a multiplier below 1 or not finite, a cap below
    /// the base, a jitter outside `[0, 1]`.
    pub fn new(base: Duration, multiplier: f64, cap: Duration, jitter: f64) -> Result<Self, Error> {
        if base.is_zero() {
            return Err(Error::invalid("base", "must be greater than zero"));
        }
        if !multiplier.is_finite() || multiplier < 1.0 {
            return Err(Error::invalid("multiplier", "must be a finite number of at least 1"));
        }
        if cap < base {
            return Err(Error::invalid("cap", "must be at least the base delay"));
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(Error::invalid("jitter", "must be between 0 and 1"));
        }
        Ok(Self { base, multiplier, cap, jitter })
    }

    /// A policy that always waits `delay`, with no jitter: handy in tests.
    pub fn fixed(delay: Duration) -> Self {
        let delay = delay.max(Duration::from_micros(1));
        Self { base: delay, multiplier: 1.0, cap: delay, jitter: 0.0 }
    }

    /// The delay before the first retry, before jitter.
    pub const fn base(&self) -> Duration {
        self.base
    }

    /// The factor between consecutive delays.
    pub const fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The longest delay.
    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// The largest fraction of a delay that jitter removes.
    pub const fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The delay after failure number `failure` (1 for the first failure),
    /// before jitter. Never decreases as `failure` grows; never exceeds the
    /// cap. Failure 0 is treated as 1.
    pub fn delay_before_jitter(&self, failure: u32) -> Duration {
        let exponent = failure.saturating_sub(1).min(i32::MAX as u32) as i32;
        let factor = self.multiplier.powi(exponent);
        let seconds = self.base.as_secs_f64() * factor;
        // `factor` can be infinite for a huge exponent; the comparison with
        // the cap also catches that, so from_secs_f64 never sees it.
        if !seconds.is_finite() || seconds >= self.cap.as_secs_f64() {
            return self.cap;
        }
        Duration::from_secs_f64(seconds).min(self.cap)
    }

    /// The delay after failure number `failure`, with jitter applied: the
    /// delay before jitter, shortened by `jitter * self.jitter()` of itself,
    /// rounded down to whole microseconds (the precision stored).
    pub fn delay(&self, failure: u32, jitter: Jitter) -> Duration {
        let before = self.delay_before_jitter(failure);
        let kept = 1.0 - self.jitter * jitter.value();
        // From nanoseconds, so that the one rounding is the final floor: the
        // delay's microseconds first rounded down and then shortened could
        // land a microsecond below the documented band.
        let micros = (before.as_nanos() as f64 * kept / 1_000.0).floor() as u64;
        Duration::from_micros(micros).min(self.cap)
    }
}
