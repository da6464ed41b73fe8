//! Backing off from a storage that is not answering.

use std::time::Duration;

/// Exponential backoff with jitter for storage faults: 100 ms doubling to
/// 10 s, each delay cut by a random part of up to half, so that many
/// workers losing the same database do not come back in step.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(10);

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let doubled = Self::FIRST.saturating_mul(1 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        doubled.min(Self::CAP).mul_f64(1.0 - 0.5 * random_unit())
    }
}

/// A random number in `[0, 1)`, from the operating system's randomness
/// behind a version 4 UUID; the worker needs nothing stronger and no extra
/// dependency.
pub(crate) fn random_unit() -> f64 {
    let bits = greenlight_core::uuid::Uuid::new_v4().as_u128();
    (bits >> 75) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_reset() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(first <= Backoff::FIRST && first >= Backoff::FIRST / 2, "{first:?}");
        for _ in 0..40 {
            assert!(backoff.next_delay() <= Backoff::CAP);
        }
        let late = backoff.next_delay();
        assert!(late >= Backoff::CAP / 2, "{late:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= Backoff::FIRST);
    }

    #[test]
    fn random_units_stay_in_range() {
        for _ in 0..1_000 {
            let unit = random_unit();
            assert!((0.0..1.0).contains(&unit));
        }
    }
}
