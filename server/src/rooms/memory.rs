//! The memory broker (no `--redis-url`): every room's history in this process. Per room an
//! epoch, a counter, a bounded history and the dedup window, under the room's own lock; a
//! publish takes its offset and hands the message to the hub under that lock, so the hub sees
//! each room's offsets in order with no gap. A message's frame is encoded once: the hub's
//! members and the history share its bytes (and, with permessage-deflate, its compression).
//!
//! `--max-rooms` counts rooms stored here: rooms with members, and rooms kept only for their
//! history. When it is reached, the room that has gone longest without members is dropped to
//! make way, so history never locks out people who want to talk. A room without members and
//! without history is dropped at once.
//!
//! Times here (history ages, the dedup window) are on the engine's monotonic clock; a
//! message's `time` and a room's epoch on the wall clock.
//!
//! Each room draws its epoch when it is made: a room dropped and made again, or a restarted
//! process, has lost its history, and clients resuming from an old position are told so.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper_tungstenite::tungstenite::Utf8Bytes;
use room_protocol::frames::MessageAroundOffset;
use room_protocol::{Position, Problem};

use super::dedup::{self, Dedup};
use super::hub::Hub;
use super::shards::{Shards, lock};
use super::{Entry, Publish, RoomSettings, Snapshot, fresh_epoch, rooms_full, wall_ms};
use crate::metrics::RoomMetrics;
use crate::outgoing::QueuedText;

#[derive(Debug)]
struct StoredRoom {
    epoch: String,
    last: u64,
    history: VecDeque<Entry>,
    history_bytes: usize,
    /// Someone on this instance is in the room.
    occupied: bool,
    /// Set when the room lost its last member: its place in the eviction order.
    memberless_since: Option<u64>,
    /// Taken out of the map: whoever still holds it looks the room up again.
    removed: bool,
}

impl StoredRoom {
    fn new() -> StoredRoom {
        StoredRoom {
            epoch: fresh_epoch(wall_ms()),
            last: 0,
            history: VecDeque::new(),
            history_bytes: 0,
            occupied: false,
            memberless_since: None,
            removed: false,
        }
    }

    /// Drops what history keeps too long, then what is over its bounds, oldest first.
    fn trim(&mut self, settings: &RoomSettings, now_ms: u64) {
        while let Some(oldest) = self.history.front() {
            let expired = now_ms.saturating_sub(oldest.time_ms) >= settings.history_ttl_ms;
            let over = self.history.len() > settings.history_messages
                || self.history_bytes > settings.history_bytes;
            if !(expired || over) {
                break;
            }
            self.history_bytes -= oldest.frame.len();
            self.history.pop_front();
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Memory {
    hub: Arc<Hub>,
    settings: RoomSettings,
    metrics: RoomMetrics,
    rooms: Shards<Arc<Mutex<StoredRoom>>>,
    /// Rooms stored, for `--max-rooms`.
    count: AtomicUsize,
    /// Rooms kept only for their history, in the order they lost their last member.
    memberless: Mutex<Memberless>,
    memberless_stamp: AtomicU64,
    dedup: Dedup,
}

impl Memory {
    pub(crate) fn new(hub: Arc<Hub>, settings: RoomSettings, metrics: RoomMetrics) -> Memory {
        Memory {
            hub,
            dedup: Dedup::new(
                settings.dedup_window_ms,
                settings.dedup_max_ids,
                metrics.clone(),
            ),
            settings,
            metrics,
            rooms: Shards::default(),
            count: AtomicUsize::new(0),
            memberless: Mutex::new(Memberless::default()),
            memberless_stamp: AtomicU64::new(0),
        }
    }

    /// The room called `name`, made if it does not exist (dropping the longest memberless
    /// room if the server is full).
    fn room(&self, name: &str) -> Result<Arc<Mutex<StoredRoom>>, Problem> {
        loop {
            if let Some(room) = self.rooms.of(name).get(name) {
                return Ok(Arc::clone(room));
            }
            if self.count.fetch_add(1, Ordering::Relaxed) >= self.settings.max_rooms {
                self.count.fetch_sub(1, Ordering::Relaxed);
                if !self.evict_one() {
                    return Err(rooms_full());
                }
                continue;
            }
            let mut rooms = self.rooms.of(name);
            if rooms.contains_key(name) {
                self.count.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let room = Arc::new(Mutex::new(StoredRoom::new()));
            rooms.insert(name.to_owned(), Arc::clone(&room));
            return Ok(room);
        }
    }

    /// Drops the room that has gone longest without members; `false` if there is none.
    fn evict_one(&self) -> bool {
        loop {
            let Some((name, stamp)) = lock(&self.memberless).pop_oldest() else {
                return false;
            };
            let mut rooms = self.rooms.of(&name);
            let Some(room) = rooms.get(&name).map(Arc::clone) else {
                continue;
            };
            let mut stored = lock(&room);
            if stored.occupied || stored.memberless_since != Some(stamp) {
                continue;
            }
            stored.removed = true;
            rooms.remove(&name);
            self.count.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(
                room = name,
                "dropped a memberless room's history to make way"
            );
            return true;
        }
    }

    /// Runs `act` on the room under its lock, looking it up again if it was dropped meanwhile.
    fn with_room<T>(
        &self,
        name: &str,
        now_ms: u64,
        mut act: impl FnMut(&mut StoredRoom) -> T,
    ) -> Result<T, Problem> {
        loop {
            let room = self.room(name)?;
            let mut stored = lock(&room);
            if stored.removed {
                continue;
            }
            stored.trim(&self.settings, now_ms);
            return Ok(act(&mut stored));
        }
    }

    /// A member here is in the room: it is kept, and it is made if new.
    pub(crate) fn subscribe(&self, name: &str, now_ms: u64) -> Result<(), Problem> {
        self.with_room(name, now_ms, |stored| {
            stored.occupied = true;
            // Only a room that was memberless takes the shared lock.
            if stored.memberless_since.take().is_some() {
                lock(&self.memberless).occupied(name);
            }
        })
    }

    /// Nobody here is in the room any more (unless a join came meanwhile): without history
    /// it goes at once, with history it is kept and may make way for another.
    pub(crate) fn unsubscribe(&self, name: &str, now_ms: u64) {
        let mut rooms = self.rooms.of(name);
        let Some(room) = rooms.get(name).map(Arc::clone) else {
            return;
        };
        let mut stored = lock(&room);
        if self.hub.is_held(name) {
            return;
        }
        stored.occupied = false;
        stored.trim(&self.settings, now_ms);
        if stored.history.is_empty() {
            stored.removed = true;
            rooms.remove(name);
            self.count.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        drop(rooms);
        let stamp = self.memberless_stamp.fetch_add(1, Ordering::Relaxed);
        stored.memberless_since = Some(stamp);
        lock(&self.memberless).push(name, stamp);
    }

    /// Takes a publish: the offset it got, or the one it got before if its id is known.
    pub(crate) fn publish(&self, publish: &Publish<'_>, now_ms: u64) -> Result<u64, Problem> {
        let settings = &self.settings;
        let key = dedup::Key::new(publish.room, publish.dedup_user, publish.id);
        self.with_room(publish.room, now_ms, |stored| {
            if let Some(offset) = self.dedup.get(&key, now_ms) {
                return offset;
            }
            stored.last += 1;
            let offset = stored.last;
            let frame = QueuedText::shared(Utf8Bytes::from(
                MessageAroundOffset::new(
                    publish.room,
                    publish.id,
                    publish.user,
                    publish.from,
                    publish.text,
                )
                .frame(offset, wall_ms()),
            ));
            self.dedup.insert(&key, offset, now_ms);
            self.metrics.published();
            // Under the room's lock: the hub gets the room's offsets in order.
            self.hub
                .offer(publish.room, &stored.epoch, offset, || frame.clone());
            stored.history_bytes += frame.len();
            stored.history.push_back(Entry {
                offset,
                time_ms: now_ms,
                frame,
            });
            stored.trim(settings, now_ms);
            offset
        })
    }

    /// The room's epoch, last offset, and the history after `since` if it is of that epoch.
    pub(crate) fn read(
        &self,
        name: &str,
        since: Option<&Position>,
        history: usize,
        now_ms: u64,
    ) -> Result<Snapshot, Problem> {
        self.with_room(name, now_ms, |stored| Snapshot {
            epoch: stored.epoch.clone(),
            top: stored.last,
            entries: match since {
                Some(since) if since.epoch == stored.epoch && since.offset < stored.last => stored
                    .history
                    .iter()
                    .filter(|entry| entry.offset > since.offset)
                    .cloned()
                    .collect(),
                // The newest `history`, for a join that recovers nothing.
                _ => stored
                    .history
                    .iter()
                    .skip(stored.history.len().saturating_sub(history))
                    .cloned()
                    .collect(),
            },
            now_ms,
        })
    }

    /// How many rooms are stored.
    #[cfg(test)]
    pub(crate) fn room_count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Entries in the eviction order, current or not.
    #[cfg(test)]
    pub(crate) fn memberless_entries(&self) -> usize {
        lock(&self.memberless).order.len()
    }
}

/// The eviction order of the rooms kept only for their history: each time a room lost its
/// last member, oldest first, with the stamp of that time. An entry whose room was joined
/// again (or lost its members again later) is no longer current; `current` says which are, so
/// the order can be compacted without taking any room's lock. Without that, a room with
/// history that people keep joining and leaving (the last person in it reloading the page)
/// added an entry each time, and entries went only when `--max-rooms` was reached: 110 bytes
/// per leave, for ever. The order holds at most twice the current entries (and a few).
#[derive(Debug, Default)]
struct Memberless {
    order: VecDeque<(String, u64)>,
    /// The stamp of each memberless room's current entry.
    current: std::collections::HashMap<String, u64>,
}

impl Memberless {
    /// Entries beyond twice the current ones that are let stand before a compaction.
    const SLACK: usize = 64;

    fn push(&mut self, name: &str, stamp: u64) {
        self.current.insert(name.to_owned(), stamp);
        self.order.push_back((name.to_owned(), stamp));
        if self.order.len() > 2 * self.current.len() + Self::SLACK {
            let current = &self.current;
            self.order
                .retain(|(name, stamp)| current.get(name) == Some(stamp));
        }
    }

    /// The room has members again: its entry is no longer current.
    fn occupied(&mut self, name: &str) {
        self.current.remove(name);
    }

    /// The oldest current entry, taken out.
    fn pop_oldest(&mut self) -> Option<(String, u64)> {
        while let Some((name, stamp)) = self.order.pop_front() {
            if self.current.get(&name) == Some(&stamp) {
                self.current.remove(&name);
                return Some((name, stamp));
            }
        }
        None
    }
}
