//! Which message ids this process's rooms have taken, for the memory broker (Redis keeps its
//! own, one key per id). Every id is kept for the whole `--dedup-window`, in every room,
//! bounded by `--dedup-max-ids` for the whole server: memory is at most that many ids, what a
//! steady publish rate of `max / window` fills. Past it the oldest ids go first, so the window
//! is shorter than asked: never silently (a WARN, at most once a minute, and
//! `chat_rooms_dedup_forgotten_total`).
//!
//! The key is the room and the id; the identities issue adds the user to it.

use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use room_protocol::limits::DedupWindow;

use super::shards::lock;
use crate::metrics::RoomMetrics;

/// Mutexes the ids are spread over, so publishes to different rooms rarely meet.
const SHARDS: usize = 16;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Dedup {
    hasher: RandomState,
    shards: Box<[Mutex<DedupWindow>]>,
    metrics: RoomMetrics,
    /// When the last warning about a shortened window was logged (ms), 0 for never.
    warned_at: AtomicU64,
}

/// The key an id is remembered by: its room, its user when users are signed, and itself.
#[derive(Debug)]
pub(crate) struct Key(String);

impl Key {
    pub(crate) fn new(room: &str, user: Option<&str>, id: &str) -> Key {
        // Room names, user ids and message ids never hold a NUL (`names`), so the key is
        // unambiguous.
        let user_len = user.map_or(0, |user| user.len() + 1);
        let mut key = String::with_capacity(room.len() + 1 + user_len + id.len());
        key.push_str(room);
        key.push('\0');
        if let Some(user) = user {
            key.push_str(user);
            key.push('\0');
        }
        key.push_str(id);
        Key(key)
    }
}

impl Dedup {
    pub(crate) fn new(window_ms: u64, max_ids: usize, metrics: RoomMetrics) -> Dedup {
        let per_shard = max_ids.div_ceil(SHARDS).max(1);
        Dedup {
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(DedupWindow::new(window_ms, per_shard)))
                .collect(),
            metrics,
            warned_at: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<DedupWindow> {
        &self.shards[self.hasher.hash_one(key) as usize % self.shards.len()]
    }

    /// The offset the id of `key` got, if it was taken within the window.
    pub(crate) fn get(&self, key: &Key, now_ms: u64) -> Option<u64> {
        lock(self.shard(&key.0)).get(&key.0, now_ms)
    }

    /// Remembers that the id of `key` was taken at `offset`.
    pub(crate) fn insert(&self, key: &Key, offset: u64, now_ms: u64) {
        let forgot = lock(self.shard(&key.0)).insert(&key.0, offset, now_ms);
        if forgot {
            self.metrics.dedup_forgotten();
            let last = self.warned_at.load(Ordering::Relaxed);
            if (last == 0 || now_ms.saturating_sub(last) >= 60_000)
                && self
                    .warned_at
                    .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    "more message ids than --dedup-max-ids within --dedup-window: the oldest are \
                     forgotten early, so a resend that late may be broadcast twice"
                );
            }
        }
    }

    /// Ids remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_is_kept_for_the_window_whatever_else_is_published() {
        let dedup = Dedup::new(300_000, 1_000_000, RoomMetrics::default());
        dedup.insert(&Key::new("lobby", None, "first"), 1, 0);
        for n in 0..20_000u64 {
            dedup.insert(&Key::new("lobby", None, &format!("m{n}")), n + 2, n / 100);
        }
        assert_eq!(
            dedup.get(&Key::new("lobby", None, "first"), 299_999),
            Some(1)
        );
        assert_eq!(dedup.get(&Key::new("other", None, "first"), 1), None);
        assert_eq!(dedup.get(&Key::new("lobby", None, "first"), 300_000), None);
    }

    #[test]
    fn past_the_bound_the_oldest_go_first_and_it_is_counted() {
        let metrics = RoomMetrics::default();
        let dedup = Dedup::new(300_000, 1_600, metrics.clone());
        for n in 0..10_000u64 {
            dedup.insert(&Key::new("lobby", None, &format!("m{n}")), n + 1, 0);
        }
        assert!(dedup.len() <= 1_600, "{}", dedup.len());
        assert_eq!(
            dedup.get(&Key::new("lobby", None, "m9999"), 1),
            Some(10_000)
        );
        assert_eq!(dedup.get(&Key::new("lobby", None, "m0"), 1), None);
        assert!(metrics.dedup_forgotten_count() >= 10_000 - 1_600);
    }
}
