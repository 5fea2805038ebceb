//! The guarantees of a room, decided here and nowhere else, whatever engine carries the bytes:
//!
//! - [`recovery`]: what a join with `since` gets: everything after it, or nothing and
//!   `recovered: false`.
//! - [`Sequence`]: a receiver (a connection, an instance reading pub/sub) takes offsets in
//!   order, each once; a jump is a gap to fill from history before anything newer.
//! - [`Seen`]: a client shows each message once, even one published again into a new epoch
//!   after its ack was lost, and knows the position to resume from.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::json;

use crate::frames::Position;

/// A room as a join finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomState<'a> {
    pub epoch: &'a str,
    /// Offset of the room's last message; 0 for none.
    pub last: u64,
    /// Offset of the oldest message still in history; `None` when history is empty.
    pub oldest_kept: Option<u64>,
}

/// What a join gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// No `since`: live messages from the join on (`recovered: false`, nothing to recover).
    Fresh,
    /// Every message after `after` follows the `joined` frame (`recovered: true`); none when
    /// `after` is the room's last offset.
    Replay { after: u64 },
    /// Not every message after `since` can be given (trimmed, expired, another epoch, or a
    /// position the room never reached): `recovered: false` and nothing is replayed.
    Lost,
}

impl Recovery {
    pub fn recovered(self) -> bool {
        matches!(self, Recovery::Replay { .. })
    }
}

/// Decides what a join with `since` gets from `room`.
pub fn recovery(since: Option<&Position>, room: RoomState<'_>) -> Recovery {
    let Some(since) = since else {
        return Recovery::Fresh;
    };
    if since.epoch != room.epoch || since.offset > room.last {
        return Recovery::Lost;
    }
    if since.offset == room.last {
        return Recovery::Replay {
            after: since.offset,
        };
    }
    let first_missing = since.offset + 1;
    match room.oldest_kept {
        Some(oldest) if oldest <= first_missing => Recovery::Replay {
            after: since.offset,
        },
        _ => Recovery::Lost,
    }
}

/// Offsets of one room as a receiver takes them: contiguous, each once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    last: u64,
}

/// Where an arriving offset stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next one: deliver it, then [`Sequence::advance`].
    Next,
    /// Delivered already (a replay overlapping the live stream): drop it.
    Old,
    /// Offsets `from..=to` are missing: fetch them from history and deliver them first.
    Gap { from: u64, to: u64 },
}

impl Sequence {
    /// A receiver that has everything up to and including `offset`.
    pub fn after(offset: u64) -> Sequence {
        Sequence { last: offset }
    }

    pub fn last(&self) -> u64 {
        self.last
    }

    pub fn check(&self, offset: u64) -> Arrival {
        match offset.checked_sub(self.last) {
            Some(1) => Arrival::Next,
            Some(0) | None => Arrival::Old,
            Some(_) => Arrival::Gap {
                from: self.last + 1,
                to: offset - 1,
            },
        }
    }

    /// `offset` was delivered; it must be [`Arrival::Next`].
    pub fn advance(&mut self, offset: u64) {
        debug_assert_eq!(self.check(offset), Arrival::Next);
        self.last = self.last.max(offset);
    }
}

/// Ids a client remembers per room to show a message once even across epochs: well over a
/// room's history, so a message republished after a restart is still recognised.
pub const SEEN_IDS: usize = 1_000;

/// What a client has shown of one room: the position to resume from and the recent ids.
///
/// Read back from storage through [`StoredSeen`], which a page cannot trust (another version,
/// an edit by hand): the ids are cut to the newest [`SEEN_IDS`], each once, so a stored entry
/// can neither grow the set past its bound nor make every message rebuild the index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredSeen")]
pub struct Seen {
    epoch: Option<String>,
    last: u64,
    /// Oldest first, at most [`SEEN_IDS`].
    ids: VecDeque<String>,
    #[serde(skip)]
    index: HashSet<String>,
}

/// [`Seen`] as storage holds it, before its ids are checked.
#[derive(Debug, Deserialize)]
struct StoredSeen {
    epoch: Option<String>,
    last: u64,
    ids: Vec<String>,
}

impl From<StoredSeen> for Seen {
    fn from(stored: StoredSeen) -> Seen {
        let mut index = HashSet::new();
        // Newest first, so a repeated id keeps its newest place and the oldest are cut.
        let mut newest_first = Vec::new();
        for id in stored.ids.into_iter().rev() {
            if newest_first.len() == SEEN_IDS {
                break;
            }
            if index.insert(id.clone()) {
                newest_first.push(id);
            }
        }
        Seen {
            epoch: stored.epoch,
            last: stored.last,
            ids: newest_first.into_iter().rev().collect(),
            index,
        }
    }
}

impl Seen {
    /// Appends this as the JSON object `{"epoch":E,"last":N,"ids":[...]}` (as serde writes
    /// it), for a client's storage, written by hand ([`json`]): the wasm carries no serde.
    pub fn write_json(&self, out: &mut String) {
        let mut object = json::ObjectWriter::new(out);
        match &self.epoch {
            Some(epoch) => object.string("epoch", epoch),
            None => object.null("epoch"),
        };
        object.number("last", self.last);
        object.raw("ids", |out| {
            out.push('[');
            for (at, id) in self.ids.iter().enumerate() {
                if at > 0 {
                    out.push(',');
                }
                json::push_string(out, id);
            }
            out.push(']');
        });
        object.end();
    }

    /// Reads what [`Seen::write_json`] wrote, checked as [`StoredSeen`] is; `None` when it is
    /// not that shape.
    pub fn from_json(value: &json::Value) -> Option<Seen> {
        let epoch = match value.get("epoch") {
            None | Some(json::Value::Null) => None,
            Some(epoch) => Some(epoch.as_str()?.to_owned()),
        };
        let last = value.get("last")?.as_u64()?;
        let ids = value
            .get("ids")?
            .as_array()?
            .iter()
            .map(|id| id.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()?;
        Some(Seen::from(StoredSeen { epoch, last, ids }))
    }
}

/// What a client does with a `joined` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejoined {
    /// Nothing missed (or nothing to miss: the first join).
    Complete,
    /// The client had a position and not everything after it could be recovered: say so.
    Gap,
}

impl Seen {
    /// Where to resume: `since` for the next join.
    pub fn position(&self) -> Option<Position> {
        self.epoch.as_ref().map(|epoch| Position {
            epoch: epoch.clone(),
            offset: self.last,
        })
    }

    /// The server's `joined`: from here on, messages after `offset` are live.
    pub fn joined(&mut self, epoch: &str, offset: u64, recovered: bool) -> Rejoined {
        let had_position = self.epoch.is_some();
        if recovered && self.epoch.as_deref() == Some(epoch) {
            // The replay brings everything after our position.
            return Rejoined::Complete;
        }
        self.epoch = Some(epoch.to_owned());
        self.last = offset;
        if had_position {
            Rejoined::Gap
        } else {
            Rejoined::Complete
        }
    }

    /// After a [`Rejoined::Gap`] into an epoch that has messages already (a restarted engine
    /// took publishes before this client came back, and a join without a matching `since`
    /// replays none of them): the position to join again from, the start of that epoch, so
    /// its history is replayed and nothing published since the restart is missed. From here,
    /// offsets count from that start again; ids still keep out what was shown before the
    /// restart. `None` when the epoch has no messages before our join (nothing to fetch).
    /// The caller takes no `message` until the next `joined`: those of the first join come
    /// again in the replay.
    pub fn from_epoch_start(&mut self) -> Option<Position> {
        let epoch = self.epoch.clone()?;
        if self.last == 0 {
            return None;
        }
        self.last = 0;
        Some(Position { epoch, offset: 0 })
    }

    /// A `message` frame: `true` if it is to be shown. One already shown (same epoch and an
    /// offset not after ours, or an id seen before) is not.
    pub fn message(&mut self, offset: u64, id: &str) -> bool {
        if offset <= self.last {
            return false;
        }
        self.last = offset;
        self.rebuild_index_if_needed();
        if self.index.contains(id) {
            return false;
        }
        if self.ids.len() == SEEN_IDS
            && let Some(oldest) = self.ids.pop_front()
        {
            self.index.remove(&oldest);
        }
        self.ids.push_back(id.to_owned());
        self.index.insert(id.to_owned());
        true
    }

    /// A message of the room's recent history, replayed after a `joined` that recovered
    /// nothing (a join with `history`): its offset is not after ours, so only its id says
    /// whether it was shown. `true` if it is to be shown; remembered either way.
    pub fn earlier(&mut self, id: &str) -> bool {
        self.rebuild_index_if_needed();
        if self.index.contains(id) {
            return false;
        }
        self.own(id);
        true
    }

    /// An id the client published itself was acked: remember it, so its own message coming
    /// back (live or after a restart) is recognised.
    pub fn own(&mut self, id: &str) {
        self.rebuild_index_if_needed();
        if self.index.insert(id.to_owned()) {
            self.ids.push_back(id.to_owned());
            if self.ids.len() > SEEN_IDS
                && let Some(oldest) = self.ids.pop_front()
            {
                self.index.remove(&oldest);
            }
        }
    }

    /// After deserializing, the index is rebuilt from the ids (it is not stored twice).
    fn rebuild_index_if_needed(&mut self) {
        if self.index.len() != self.ids.len() {
            self.index = self.ids.iter().cloned().collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: &str, offset: u64) -> Position {
        Position {
            epoch: epoch.into(),
            offset,
        }
    }

    #[test]
    fn recovery_gives_everything_after_since_or_nothing() {
        let room = RoomState {
            epoch: "E",
            last: 44,
            oldest_kept: Some(10),
        };
        let empty = RoomState {
            epoch: "E",
            last: 0,
            oldest_kept: None,
        };
        let trimmed_all = RoomState {
            epoch: "E",
            last: 44,
            oldest_kept: None,
        };
        let table = [
            (None, room, Recovery::Fresh),
            (Some(at("E", 41)), room, Recovery::Replay { after: 41 }),
            (Some(at("E", 44)), room, Recovery::Replay { after: 44 }),
            (Some(at("E", 9)), room, Recovery::Replay { after: 9 }),
            (Some(at("E", 8)), room, Recovery::Lost),
            (Some(at("E", 0)), room, Recovery::Lost),
            (Some(at("E", 45)), room, Recovery::Lost),
            (Some(at("F", 41)), room, Recovery::Lost),
            (Some(at("E", 0)), empty, Recovery::Replay { after: 0 }),
            (Some(at("E", 1)), empty, Recovery::Lost),
            (
                Some(at("E", 44)),
                trimmed_all,
                Recovery::Replay { after: 44 },
            ),
            (Some(at("E", 43)), trimmed_all, Recovery::Lost),
        ];
        for (since, state, expected) in table {
            assert_eq!(
                recovery(since.as_ref(), state),
                expected,
                "{since:?} {state:?}"
            );
        }
        assert!(Recovery::Replay { after: 1 }.recovered());
        assert!(!Recovery::Lost.recovered());
        assert!(!Recovery::Fresh.recovered());
    }

    #[test]
    fn a_sequence_takes_each_offset_once_and_names_gaps() {
        let mut sequence = Sequence::after(0);
        assert_eq!(sequence.check(1), Arrival::Next);
        sequence.advance(1);
        assert_eq!(sequence.check(1), Arrival::Old);
        assert_eq!(sequence.check(0), Arrival::Old);
        assert_eq!(sequence.check(2), Arrival::Next);
        assert_eq!(sequence.check(5), Arrival::Gap { from: 2, to: 4 });
        assert_eq!(sequence.check(3), Arrival::Gap { from: 2, to: 2 });
        for offset in 2..=1_000 {
            assert_eq!(sequence.check(offset), Arrival::Next);
            sequence.advance(offset);
        }
        assert_eq!(sequence.last(), 1_000);
    }

    #[test]
    fn a_client_shows_each_message_once() {
        let mut seen = Seen::default();
        assert_eq!(seen.position(), None);
        assert_eq!(seen.joined("E", 3, false), Rejoined::Complete);
        assert_eq!(seen.position(), Some(at("E", 3)));
        assert!(!seen.message(3, "old"), "before the join");
        assert!(seen.message(4, "a"));
        assert!(!seen.message(4, "a"), "the same offset again");
        assert!(seen.message(5, "b"));
        // Reconnected, resumed and everything replayed: an overlap is dropped.
        assert_eq!(seen.joined("E", 7, true), Rejoined::Complete);
        assert!(!seen.message(5, "b"));
        assert!(seen.message(6, "c"));
        assert!(seen.message(7, "d"));
        // The server restarted: a new epoch, history gone; a message published again into it
        // (its ack was lost) is recognised by its id.
        assert_eq!(seen.joined("F", 0, false), Rejoined::Gap);
        assert_eq!(seen.position(), Some(at("F", 0)));
        assert!(!seen.message(1, "d"));
        assert!(seen.message(2, "e"));
        assert_eq!(seen.position(), Some(at("F", 2)));
    }

    #[test]
    fn a_new_epoch_with_messages_is_fetched_from_its_start_and_shown_by_id() {
        // (messages of the new epoch before our join, replayed: offset, id, shown?)
        let table: &[(u64, &str, bool)] = &[
            (1, "republished", false),
            (2, "theirs", true),
            (3, "mine", false),
        ];
        let mut seen = Seen::default();
        assert_eq!(seen.from_epoch_start(), None, "no epoch yet");
        seen.joined("E", 0, false);
        assert!(seen.message(1, "republished"));
        seen.own("mine");
        // The engine restarted and took three publishes before this client came back.
        assert_eq!(seen.joined("F", 3, false), Rejoined::Gap);
        assert_eq!(seen.from_epoch_start(), Some(at("F", 0)));
        assert_eq!(seen.position(), Some(at("F", 0)));
        assert_eq!(seen.joined("F", 3, true), Rejoined::Complete);
        for &(offset, id, shown) in table {
            assert_eq!(seen.message(offset, id), shown, "{offset} {id}");
        }
        assert_eq!(seen.position(), Some(at("F", 3)));
        // A new epoch without messages before the join: nothing to fetch.
        assert_eq!(seen.joined("G", 0, false), Rejoined::Gap);
        assert_eq!(seen.from_epoch_start(), None);
    }

    #[test]
    fn own_messages_are_recognised_when_they_come_back() {
        let mut seen = Seen::default();
        seen.joined("E", 0, false);
        seen.own("mine");
        assert!(!seen.message(1, "mine"));
        assert!(seen.message(2, "theirs"));
    }

    #[test]
    fn stored_ids_are_cut_to_the_bound_and_each_kept_once() {
        let many: Vec<String> = (0..SEEN_IDS + 500).map(|n| format!("\"id{n}\"")).collect();
        let table: Vec<(String, usize, Vec<&str>, Vec<&str>)> = vec![
            // (stored ids, kept, known, forgotten)
            (r#"["a","b","a"]"#.into(), 2, vec!["a", "b"], vec![]),
            (r#"[]"#.into(), 0, vec![], vec!["a"]),
            (
                format!("[{}]", many.join(",")),
                SEEN_IDS,
                vec!["id1499", "id500"],
                vec!["id499", "id0"],
            ),
        ];
        for (ids, kept, known, forgotten) in table {
            let stored = format!(r#"{{"epoch":"E","last":7,"ids":{ids}}}"#);
            let seen: Seen = serde_json::from_str(&stored).expect("decodes");
            assert_eq!(seen.ids.len(), kept, "{ids}");
            assert_eq!(seen.index.len(), kept, "{ids}");
            assert_eq!(seen.position(), Some(at("E", 7)));
            for (offset, id) in (8..).zip(known) {
                assert!(!seen.clone().message(offset, id), "{id} is known");
            }
            for (offset, id) in (8..).zip(forgotten) {
                assert!(seen.clone().message(offset, id), "{id} is forgotten");
            }
        }
        // After a full cut, a new id pushes the oldest out: the bound holds from then on.
        let stored = format!(r#"{{"epoch":"E","last":0,"ids":[{}]}}"#, many.join(","));
        let mut seen = Seen::from_json(&json::parse(&stored).expect("JSON")).expect("reads");
        assert_eq!(
            seen,
            serde_json::from_str::<Seen>(&stored).expect("decodes")
        );
        assert!(seen.message(1, "new"));
        assert_eq!(seen.ids.len(), SEEN_IDS);
    }

    #[test]
    fn remembered_ids_are_bounded_and_survive_storage() {
        let mut seen = Seen::default();
        seen.joined("E", 0, false);
        for offset in 1..=(SEEN_IDS as u64 + 500) {
            assert!(seen.message(offset, &format!("id{offset}")));
        }
        assert_eq!(seen.ids.len(), SEEN_IDS);
        // Written and read as the clients do, by hand, and as serde would.
        let mut stored = String::new();
        seen.write_json(&mut stored);
        assert_eq!(stored, serde_json::to_string(&seen).expect("encodes"));
        let mut restored = Seen::from_json(&json::parse(&stored).expect("JSON")).expect("reads");
        assert_eq!(
            restored,
            serde_json::from_str::<Seen>(&stored).expect("decodes")
        );
        assert_eq!(
            Seen::from_json(&json::parse(r#"{"last":3,"ids":["a"]}"#).expect("JSON")),
            serde_json::from_str::<Seen>(r#"{"last":3,"ids":["a"]}"#).ok()
        );
        for bad in [
            r#"{"epoch":1,"last":3,"ids":[]}"#,
            r#"{"last":-3,"ids":[]}"#,
            r#"{"last":3}"#,
            r#"{"last":3,"ids":[1]}"#,
        ] {
            assert_eq!(
                Seen::from_json(&json::parse(bad).expect("JSON")),
                None,
                "{bad}"
            );
            assert!(serde_json::from_str::<Seen>(bad).is_err(), "{bad}");
        }
        // The newest ids are still known after a reload, the oldest were let go.
        restored.joined("F", 0, false);
        assert!(!restored.message(1, &format!("id{}", SEEN_IDS as u64 + 500)));
        assert!(restored.message(2, "id1"));
    }
}
