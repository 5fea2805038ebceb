//! The embedded engine: every room in this process's memory. Per room a counter, a bounded
//! history, the dedup window and the members' queues, under one lock, so a join reads history
//! and subscribes in one step (nothing published can slip between) and every member receives
//! a room's messages in offset order. A message's frame is encoded once and every member's
//! queue holds the same bytes; with permessage-deflate it is also compressed at most once per
//! window size, by the first session that sends it, for every member and every replay.
//!
//! The epoch is drawn when the engine starts: a restarted process has lost every history, and
//! clients resuming from an old position are told so (`recovered: false`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use hyper_tungstenite::tungstenite::Utf8Bytes;
use room_protocol::limits::DedupWindow;
use room_protocol::order::{Recovery, RoomState, recovery};
use room_protocol::{Position, Problem, ServerFrame};

use super::queue::MemberQueue;
use super::{Joined, MemberId, Publish, RoomSettings, fresh_epoch, rooms_full};
use crate::metrics::RoomMetrics;
use crate::outgoing::QueuedText;

/// Ids remembered per room for dedup, at most: with the window, what bounds its memory.
pub(crate) const DEDUP_IDS_PER_ROOM: usize = 1_000;

/// A message in a room's history: its frame as every member receives it, with the
/// compressions the live members made of it (a replay shares them too).
#[derive(Debug)]
struct Kept {
    offset: u64,
    time_ms: u64,
    frame: QueuedText,
}

#[derive(Debug)]
struct Room {
    last: u64,
    history: VecDeque<Kept>,
    history_bytes: usize,
    members: HashMap<MemberId, Arc<MemberQueue>>,
    dedup: DedupWindow,
    /// Taken out of the engine's map: whoever still holds it looks the room up again.
    removed: bool,
}

impl Room {
    fn new(settings: &RoomSettings) -> Room {
        Room {
            last: 0,
            history: VecDeque::new(),
            history_bytes: 0,
            members: HashMap::new(),
            dedup: DedupWindow::new(settings.dedup_window_ms, DEDUP_IDS_PER_ROOM),
            removed: false,
        }
    }

    /// Drops what history keeps too long, and then what is over its bounds, oldest first.
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

    /// A room nobody is in and whose history is gone costs memory for nothing.
    fn is_idle(&self) -> bool {
        self.members.is_empty() && self.history.is_empty()
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Embedded {
    epoch: String,
    settings: RoomSettings,
    metrics: RoomMetrics,
    rooms: Mutex<HashMap<String, Arc<Mutex<Room>>>>,
}

/// Locks a mutex whose critical sections leave its data consistent at every step, so a
/// poisoned lock (a panic elsewhere while holding it) is still safe to use.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Embedded {
    pub(crate) fn new(settings: RoomSettings, metrics: RoomMetrics) -> Embedded {
        Embedded {
            epoch: fresh_epoch(),
            settings,
            metrics,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    /// The room called `name`, made if it does not exist and the engine has room for it.
    fn room(&self, name: &str, now_ms: u64) -> Result<Arc<Mutex<Room>>, Problem> {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(name) {
            return Ok(Arc::clone(room));
        }
        if rooms.len() >= self.settings.max_rooms {
            self.sweep(&mut rooms, now_ms);
        }
        if rooms.len() >= self.settings.max_rooms {
            return Err(rooms_full());
        }
        let room = Arc::new(Mutex::new(Room::new(&self.settings)));
        rooms.insert(name.to_owned(), Arc::clone(&room));
        Ok(room)
    }

    /// Drops every room that is idle once its history has expired.
    fn sweep(&self, rooms: &mut HashMap<String, Arc<Mutex<Room>>>, now_ms: u64) {
        rooms.retain(|_, room| {
            let mut room = lock(room);
            room.trim(&self.settings, now_ms);
            if room.is_idle() {
                room.removed = true;
                false
            } else {
                true
            }
        });
    }

    /// Runs `act` on the room under its lock, looking it up again if it was swept meanwhile.
    fn with_room<T>(
        &self,
        name: &str,
        now_ms: u64,
        mut act: impl FnMut(&mut Room) -> T,
    ) -> Result<T, Problem> {
        loop {
            let room = self.room(name, now_ms)?;
            let mut room = lock(&room);
            if room.removed {
                continue;
            }
            room.trim(&self.settings, now_ms);
            return Ok(act(&mut room));
        }
    }

    /// Takes a publish: the offset it got, or the one it got before if its id is known.
    pub(crate) fn publish(&self, publish: &Publish<'_>, now_ms: u64) -> Result<u64, Problem> {
        let settings = &self.settings;
        self.with_room(publish.room, now_ms, |room| {
            if let Some(offset) = room.dedup.get(publish.id, now_ms) {
                return offset;
            }
            room.last += 1;
            let offset = room.last;
            let frame = QueuedText::shared(Utf8Bytes::from(
                ServerFrame::Message {
                    room: publish.room.to_owned(),
                    offset,
                    id: publish.id.to_owned(),
                    from: publish.from.to_owned(),
                    text: publish.text.to_owned(),
                    time: now_ms,
                }
                .to_json(),
            ));
            room.dedup.insert(publish.id, offset, now_ms);
            // A member that cannot take it is over its limit: it leaves the room here, and its
            // session closes it.
            room.members.retain(|_, queue| queue.push_room(&frame));
            self.metrics.published();
            self.metrics.delivered(room.members.len());
            room.history_bytes += frame.len();
            room.history.push_back(Kept {
                offset,
                time_ms: now_ms,
                frame,
            });
            room.trim(settings, now_ms);
            offset
        })
    }

    /// Joins `member` to the room: its queue gets `joined`, then the replay `since` asks for,
    /// then every message published after, in order.
    pub(crate) fn join(
        &self,
        name: &str,
        since: Option<&Position>,
        member: MemberId,
        queue: &Arc<MemberQueue>,
        now_ms: u64,
    ) -> Result<Joined, Problem> {
        self.with_room(name, now_ms, |room| {
            let state = RoomState {
                epoch: &self.epoch,
                last: room.last,
                oldest_kept: room.history.front().map(|kept| kept.offset),
            };
            let decided = recovery(since, state);
            let joined = ServerFrame::Joined {
                room: name.to_owned(),
                epoch: self.epoch.clone(),
                offset: room.last,
                recovered: decided.recovered(),
            };
            queue.push_own(joined.to_json().into());
            let mut replayed = 0;
            if let Recovery::Replay { after } = decided {
                for kept in room.history.iter().filter(|kept| kept.offset > after) {
                    queue.push_replay(&kept.frame);
                    replayed += 1;
                }
            }
            room.members.insert(member, Arc::clone(queue));
            Joined {
                recovery: decided,
                replayed,
            }
        })
    }

    /// Takes `member` out of the room; an idle room is dropped once its history is gone.
    pub(crate) fn leave(&self, name: &str, member: MemberId, now_ms: u64) {
        let mut rooms = lock(&self.rooms);
        let Some(room) = rooms.get(name).map(Arc::clone) else {
            return;
        };
        let mut room = lock(&room);
        room.members.remove(&member);
        room.trim(&self.settings, now_ms);
        if room.is_idle() {
            room.removed = true;
            rooms.remove(name);
        }
    }

    /// How many rooms the engine holds.
    #[cfg(test)]
    fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outgoing::Compression;
    use room_protocol::ErrorCode;

    fn settings() -> RoomSettings {
        RoomSettings {
            history_messages: 100,
            history_bytes: 256 * 1024,
            history_ttl_ms: 300_000,
            max_rooms: 10,
            dedup_window_ms: 300_000,
        }
    }

    fn publish<'a>(room: &'a str, id: &'a str, text: &'a str) -> Publish<'a> {
        Publish {
            room,
            id,
            from: "ana",
            text,
        }
    }

    fn frames(queue: &MemberQueue) -> Vec<ServerFrame> {
        let mut taken = Vec::new();
        queue.take_all(&mut taken);
        taken
            .iter()
            .map(|frame| {
                ServerFrame::from_json(frame.text()).expect("the engine writes valid frames")
            })
            .collect()
    }

    fn offsets(frames: &[ServerFrame]) -> Vec<u64> {
        frames
            .iter()
            .filter_map(|frame| match frame {
                ServerFrame::Message { offset, .. } => Some(*offset),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn members_get_joined_then_every_message_in_order() {
        let engine = Embedded::new(settings(), RoomMetrics::default());
        let queue = Arc::new(MemberQueue::new(1 << 20, Compression::PLAIN));
        engine.join("lobby", None, 1, &queue, 0).expect("joins");
        for n in 0..500 {
            let offset = engine
                .publish(&publish("lobby", &format!("m{n}"), "hi"), n)
                .expect("publishes");
            assert_eq!(offset, n + 1);
        }
        let got = frames(&queue);
        assert!(matches!(
            &got[0],
            ServerFrame::Joined {
                offset: 0,
                recovered: false,
                ..
            }
        ));
        assert_eq!(offsets(&got), (1..=500).collect::<Vec<_>>());
    }

    #[test]
    fn a_duplicate_id_gets_the_original_offset_and_is_not_broadcast() {
        let engine = Embedded::new(settings(), RoomMetrics::default());
        let queue = Arc::new(MemberQueue::new(1 << 20, Compression::PLAIN));
        engine.join("lobby", None, 1, &queue, 0).expect("joins");
        assert_eq!(engine.publish(&publish("lobby", "a", "x"), 1), Ok(1));
        assert_eq!(engine.publish(&publish("lobby", "b", "y"), 2), Ok(2));
        assert_eq!(engine.publish(&publish("lobby", "a", "x"), 3), Ok(1));
        assert_eq!(offsets(&frames(&queue)), [1, 2]);
        // Past the window the id is new again.
        assert_eq!(engine.publish(&publish("lobby", "a", "x"), 300_001), Ok(3));
    }

    #[test]
    fn resuming_replays_exactly_what_was_missed() {
        let engine = Embedded::new(settings(), RoomMetrics::default());
        for n in 1..=60 {
            engine
                .publish(&publish("lobby", &format!("m{n}"), "hi"), n)
                .expect("publishes");
        }
        let since = Position {
            epoch: engine.epoch.clone(),
            offset: 10,
        };
        let queue = Arc::new(MemberQueue::new(1 << 20, Compression::PLAIN));
        let joined = engine
            .join("lobby", Some(&since), 2, &queue, 61)
            .expect("joins");
        assert_eq!(joined.replayed, 50);
        let got = frames(&queue);
        assert!(matches!(
            &got[0],
            ServerFrame::Joined {
                offset: 60,
                recovered: true,
                ..
            }
        ));
        assert_eq!(offsets(&got), (11..=60).collect::<Vec<_>>());
        engine
            .publish(&publish("lobby", "live", "hi"), 62)
            .expect("publishes");
        assert_eq!(offsets(&frames(&queue)), [61]);
    }

    #[test]
    fn past_history_or_another_epoch_nothing_is_replayed() {
        let engine = Embedded::new(settings(), RoomMetrics::default());
        for n in 1..=250 {
            engine
                .publish(&publish("lobby", &format!("m{n}"), "hi"), n)
                .expect("publishes");
        }
        for since in [
            Position {
                epoch: engine.epoch.clone(),
                offset: 100,
            },
            Position {
                epoch: "another".into(),
                offset: 240,
            },
        ] {
            let queue = Arc::new(MemberQueue::new(1 << 20, Compression::PLAIN));
            engine
                .join("lobby", Some(&since), 3, &queue, 300)
                .expect("joins");
            let got = frames(&queue);
            assert_eq!(got.len(), 1, "only joined");
            assert!(matches!(
                &got[0],
                ServerFrame::Joined {
                    offset: 250,
                    recovered: false,
                    ..
                }
            ));
        }
    }

    #[test]
    fn history_is_bounded_by_count_bytes_and_age() {
        let engine = Embedded::new(
            RoomSettings {
                history_bytes: 20_000,
                ..settings()
            },
            RoomMetrics::default(),
        );
        let text = "x".repeat(1_000);
        for n in 1..=1_000u64 {
            engine
                .publish(&publish("big", &format!("m{n}"), &text), n)
                .expect("publishes");
            engine
                .publish(&publish("small", &format!("m{n}"), "hi"), n)
                .expect("publishes");
        }
        let kept = |name: &str, now_ms: u64| {
            engine
                .with_room(name, now_ms, |room| {
                    (
                        room.history.len(),
                        room.history.front().map(|kept| kept.offset),
                    )
                })
                .expect("room")
        };
        assert_eq!(kept("small", 1_000), (100, Some(901)));
        let (count, oldest) = kept("big", 1_000);
        assert!(count < 20, "{count} messages of 1 KiB in 20,000 bytes");
        assert_eq!(oldest, Some(1_001 - count as u64));
        assert_eq!(kept("small", 1_000 + 300_000), (0, None));
    }

    #[test]
    fn a_slow_member_is_dropped_and_never_slows_the_room() {
        let engine = Embedded::new(settings(), RoomMetrics::default());
        let slow = Arc::new(MemberQueue::new(10_000, Compression::PLAIN));
        let reader = Arc::new(MemberQueue::new(10_000, Compression::PLAIN));
        engine.join("lobby", None, 1, &slow, 0).expect("joins");
        engine.join("lobby", None, 2, &reader, 0).expect("joins");
        let mut reader_offsets = Vec::new();
        for n in 1..=1_000 {
            engine
                .publish(&publish("lobby", &format!("m{n}"), "hello"), n)
                .expect("publishes");
            reader_offsets.extend(offsets(&frames(&reader)));
        }
        assert_eq!(reader_offsets, (1..=1_000).collect::<Vec<_>>());
        let mut taken = Vec::new();
        assert_eq!(
            slow.take_all(&mut taken),
            super::super::queue::Taken::Overflowed
        );
        let members = engine
            .with_room("lobby", 1_000, |room| room.members.len())
            .expect("room");
        assert_eq!(members, 1);
    }

    #[test]
    fn rooms_are_bounded_and_idle_ones_make_way() {
        let engine = Embedded::new(settings(), RoomMetrics::default());
        let queue = Arc::new(MemberQueue::new(1 << 20, Compression::PLAIN));
        for n in 0..10 {
            engine
                .join(&format!("r{n}"), None, n, &queue, 0)
                .expect("joins");
        }
        let refused = engine.join("r10", None, 10, &queue, 0);
        assert_eq!(
            refused.map(|_| ()).map_err(|p| p.code),
            Err(ErrorCode::Unavailable)
        );
        // A member leaving an empty room drops it at once.
        engine.leave("r0", 0, 0);
        assert_eq!(engine.room_count(), 9);
        engine
            .join("r10", None, 10, &queue, 0)
            .expect("room for one more");
        // A room with history stays until the history expires, then makes way.
        engine
            .publish(&publish("r1", "m", "x"), 1)
            .expect("publishes");
        engine.leave("r1", 1, 1);
        assert_eq!(engine.room_count(), 10);
        assert!(engine.join("r11", None, 11, &queue, 2).is_err());
        engine
            .join("r11", None, 11, &queue, 1 + 300_000)
            .expect("the expired room was swept");
    }
}
