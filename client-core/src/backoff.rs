//! When to reconnect: exponential backoff with full jitter, over a window from 0.5 s up to 30 s.

use std::time::Duration;

/// The backoff window after the first drop.
pub const MIN_WINDOW: Duration = Duration::from_millis(500);
/// The widest window between attempts.
pub const MAX_WINDOW: Duration = Duration::from_secs(30);

/// Delays between reconnection attempts. "Full jitter": the delay is anywhere in the window,
/// so that the pages a restarted server dropped return spread over the whole window instead
/// of all at its end (10,000 pages over 0-0.5 s, then over 0-1 s, ...).
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The window the next delay is drawn from: doubles with each failure, up to the cap.
    pub fn window(&self) -> Duration {
        MIN_WINDOW
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_WINDOW)
    }

    /// The delay before the next attempt. `jitter` is a random number in `[0, 1)`; the delay
    /// is that fraction of the window.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let window = self.window();
        self.failures = self.failures.saturating_add(1);
        // In whole microseconds: `Duration::mul_f64` would bring float formatting (its panic
        // message) into the wasm, 20 KiB of it.
        let micros = window.as_micros();
        // In [0, 1) (NaN: 0), to a millionth.
        let fraction = (jitter.clamp(0.0, 1.0) * 1_000_000.0) as u128;
        let delay = micros.saturating_mul(fraction) / 1_000_000;
        Duration::from_micros(u64::try_from(delay).unwrap_or(u64::MAX))
    }

    /// Called once the server answered a message (or the user asked to reconnect): the next
    /// drop starts from the smallest window again. Not when a connection merely opens: a
    /// server that accepts and closes at once would then be retried every half second.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_grows_exponentially_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let windows: Vec<_> = (0..10)
            .map(|_| {
                let window = backoff.window();
                backoff.next_delay(0.5);
                window
            })
            .collect();
        assert_eq!(windows[0], Duration::from_millis(500));
        assert_eq!(windows[1], Duration::from_secs(1));
        assert_eq!(windows[2], Duration::from_secs(2));
        assert_eq!(windows[6], Duration::from_secs(30));
        assert_eq!(windows[9], Duration::from_secs(30));
    }

    #[test]
    fn the_delay_is_the_jitter_fraction_of_the_whole_window() {
        for (jitter, expected) in [
            (0.0, Duration::ZERO),
            (0.25, Duration::from_millis(500)),
            (0.5, Duration::from_secs(1)),
            (0.999, Duration::from_millis(1998)),
        ] {
            let mut backoff = Backoff::default();
            backoff.next_delay(0.0);
            backoff.next_delay(0.0);
            // Third attempt: the window is 2 s.
            assert_eq!(backoff.next_delay(jitter), expected, "jitter {jitter}");
        }
    }

    #[test]
    fn pages_dropped_together_return_spread_over_the_window() {
        // A thousand pages with evenly spread random numbers: their first delays cover the
        // whole first window, not its upper half.
        let delays: Vec<Duration> = (0..1000)
            .map(|n| Backoff::default().next_delay(f64::from(n) / 1000.0))
            .collect();
        let early = delays.iter().filter(|d| **d < MIN_WINDOW / 4).count();
        let late = delays.iter().filter(|d| **d >= MIN_WINDOW * 3 / 4).count();
        assert_eq!((early, late), (250, 250));
        assert!(delays.iter().all(|d| *d < MIN_WINDOW));
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.next_delay(1.0);
        }
        backoff.reset();
        assert_eq!(backoff.window(), MIN_WINDOW);
        assert_eq!(backoff.next_delay(1.0), MIN_WINDOW);
    }
}
