//! Two small pieces every part of the rooms engine locks with: [`lock`], which takes a mutex
//! whose critical sections leave its data consistent at every step (so a poisoned lock is still
//! safe to use), and [`Shards`], a map of rooms split over several mutexes so that no lock is
//! shared by every room's traffic: two rooms contend only when they hash to the same shard.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`; a panic elsewhere while holding it leaves the data usable (every critical
/// section in the rooms engine is a few plain updates).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many mutexes the rooms are spread over: well above the cores a server has, so two busy
/// rooms rarely share one.
const SHARDS: usize = 64;

/// Rooms by name, spread over [`SHARDS`] mutexes.
#[derive(Debug)]
pub(crate) struct Shards<V> {
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<String, V>>]>,
}

impl<V> Default for Shards<V> {
    fn default() -> Shards<V> {
        Shards {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl<V> Shards<V> {
    /// The shard that holds `room`, locked.
    pub(crate) fn of(&self, room: &str) -> MutexGuard<'_, HashMap<String, V>> {
        let index = self.hasher.hash_one(room) as usize % self.shards.len();
        lock(&self.shards[index])
    }

    /// Every room name, one shard locked at a time (for a reconnection, never on a message's
    /// path).
    pub(crate) fn names(&self) -> Vec<String> {
        self.shards
            .iter()
            .flat_map(|shard| lock(shard).keys().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// The names of the rooms for which `pick` holds, one shard locked at a time.
    pub(crate) fn names_where(&self, mut pick: impl FnMut(&V) -> bool) -> Vec<String> {
        self.shards
            .iter()
            .flat_map(|shard| {
                lock(shard)
                    .iter()
                    .filter(|(_, value)| pick(value))
                    .map(|(name, _)| name.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_spread_over_the_shards_and_are_found_again() {
        let shards: Shards<u32> = Shards::default();
        for n in 0..1_000 {
            shards.of(&format!("room{n}")).insert(format!("room{n}"), n);
        }
        let used = shards
            .shards
            .iter()
            .filter(|shard| !lock(shard).is_empty())
            .count();
        assert!(used > SHARDS / 2, "{used} shards of {SHARDS} used");
        assert_eq!(shards.of("room7").get("room7"), Some(&7));
        assert_eq!(shards.names().len(), 1_000);
        assert_eq!(shards.names_where(|n| *n < 10).len(), 10);
    }
}
