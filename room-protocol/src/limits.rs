//! Two bounds of a room engine, as plain data over a clock given in milliseconds:
//! [`DedupWindow`] remembers which message ids a room has taken, and [`TokenBucket`] limits how
//! fast one connection publishes.

use std::collections::{HashMap, VecDeque};

/// The message ids a room has taken, each with the offset it got, for `window_ms` after it was
/// taken and at most `capacity` of them (the oldest go first when more arrive): a publish sent
/// again with the same id, within both, is answered with the original offset instead of being
/// broadcast twice.
#[derive(Debug, Clone)]
pub struct DedupWindow {
    window_ms: u64,
    capacity: usize,
    offsets: HashMap<String, u64>,
    /// Ids in the order they were taken, with the time they expire.
    expiry: VecDeque<(u64, String)>,
}

impl DedupWindow {
    pub fn new(window_ms: u64, capacity: usize) -> DedupWindow {
        DedupWindow {
            window_ms,
            capacity: capacity.max(1),
            offsets: HashMap::new(),
            expiry: VecDeque::new(),
        }
    }

    /// The offset `id` was taken at, if it still counts at `now_ms`.
    pub fn get(&mut self, id: &str, now_ms: u64) -> Option<u64> {
        self.expire(now_ms);
        self.offsets.get(id).copied()
    }

    /// Remembers that `id` was taken at `offset`. `true` when an id was forgotten before
    /// its window ended to make room for it (the capacity was reached).
    pub fn insert(&mut self, id: &str, offset: u64, now_ms: u64) -> bool {
        self.expire(now_ms);
        let mut forgot = false;
        if self.offsets.insert(id.to_owned(), offset).is_none() {
            if self.expiry.len() == self.capacity
                && let Some((_, oldest)) = self.expiry.pop_front()
            {
                self.offsets.remove(&oldest);
                forgot = true;
            }
            self.expiry
                .push_back((now_ms.saturating_add(self.window_ms), id.to_owned()));
        }
        forgot
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some((expires, _)) = self.expiry.front() {
            if *expires > now_ms {
                break;
            }
            if let Some((_, id)) = self.expiry.pop_front() {
                self.offsets.remove(&id);
            }
        }
    }
}

/// A token bucket: `burst` publishes at once, refilled at `per_second`. Counted in thousandths
/// of a token so a clock in milliseconds refills exactly.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    per_second: u64,
    burst_milli: u64,
    milli: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn new(per_second: u32, burst: u32, now_ms: u64) -> TokenBucket {
        let burst_milli = u64::from(burst.max(1)) * 1_000;
        TokenBucket {
            per_second: u64::from(per_second),
            burst_milli,
            milli: burst_milli,
            last_ms: now_ms,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.milli = self
            .milli
            .saturating_add(elapsed.saturating_mul(self.per_second))
            .min(self.burst_milli);
        if self.milli >= 1_000 {
            self.milli -= 1_000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_remembers_ids_for_the_window_only() {
        let mut window = DedupWindow::new(300_000, 100);
        assert_eq!(window.get("a", 0), None);
        window.insert("a", 7, 0);
        assert_eq!(window.get("a", 1), Some(7));
        assert_eq!(window.get("a", 299_999), Some(7));
        assert_eq!(window.get("a", 300_000), None);
        assert!(window.is_empty());
    }

    #[test]
    fn dedup_is_bounded_past_its_capacity() {
        let mut window = DedupWindow::new(300_000, 64);
        let forgotten = (0..1_000u64)
            .filter(|&n| window.insert(&format!("id{n}"), n + 1, n))
            .count();
        assert_eq!(forgotten, 1_000 - 64);
        assert_eq!(window.len(), 64);
        assert_eq!(window.get("id999", 1_000), Some(1_000));
        assert_eq!(window.get("id936", 1_000), Some(937));
        assert_eq!(window.get("id935", 1_000), None);
        // Inserting an id already known neither grows nor changes the order.
        window.insert("id999", 1_000, 1_001);
        assert_eq!(window.len(), 64);
    }

    #[test]
    fn the_bucket_allows_bursts_then_the_rate() {
        let mut bucket = TokenBucket::new(20, 40, 0);
        let burst = (0..100).filter(|_| bucket.try_take(0)).count();
        assert_eq!(burst, 40);
        // 20 per second: one every 50 ms.
        assert!(!bucket.try_take(49));
        assert!(bucket.try_take(50));
        assert!(!bucket.try_take(50));
        // A second of silence refills 20, never more than the burst.
        let after_a_second = (0..100).filter(|_| bucket.try_take(1_050)).count();
        assert_eq!(after_a_second, 20);
        let after_an_hour = (0..100).filter(|_| bucket.try_take(3_600_000)).count();
        assert_eq!(after_an_hour, 40);
        // A clock that goes back takes nothing and breaks nothing.
        assert!(!bucket.try_take(0));
    }
}
