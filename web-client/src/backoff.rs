//! When to reconnect: exponential backoff with jitter, from 0.5 s up to 30 s.

use std::time::Duration;

/// First delay after a drop.
pub const MIN_DELAY: Duration = Duration::from_millis(500);
/// Longest delay between attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// Delays between reconnection attempts. Jitter spreads clients out so a restarted server is
/// not hit by every client at the same instant.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The delay before the next attempt. `jitter` is a random number in `[0, 1)`; the delay is
    /// between half and all of the exponential step ("equal jitter").
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let step = MIN_DELAY
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_DELAY);
        self.failures = self.failures.saturating_add(1);
        let jitter = jitter.clamp(0.0, 1.0);
        (step / 2 + step.mul_f64(jitter / 2.0)).max(MIN_DELAY / 2)
    }

    /// Called once a connection opened: the next drop starts from the shortest delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..10).map(|_| backoff.next_delay(1.0)).collect();
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(delays[2], Duration::from_secs(2));
        assert_eq!(delays[6], Duration::from_secs(30));
        assert_eq!(delays[9], Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_half_to_full_step() {
        let mut low = Backoff::default();
        let mut high = Backoff::default();
        for _ in 0..20 {
            let (a, b) = (low.next_delay(0.0), high.next_delay(0.999));
            assert!(
                a <= b && b <= MAX_DELAY && a >= MIN_DELAY / 2,
                "{a:?} {b:?}"
            );
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.next_delay(1.0);
        }
        backoff.reset();
        assert_eq!(backoff.next_delay(1.0), MIN_DELAY);
    }
}
