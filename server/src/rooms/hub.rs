//! The hub: one per instance, whichever broker stores the rooms. It holds the local members
//! of each room and everything decided about them once for both brokers: the offset sequence
//! and gap detection ([`Sequence`]), the fan-out into member queues with the overflow rule,
//! the `joined` + replay framing, the buffering of live messages while a join reads history,
//! and the bound on local rooms.
//!
//! A broker feeds it: [`Hub::offer`] for each published message (the memory broker under its
//! room's lock, the Redis broker from its pub/sub feed), [`Hub::fill`] with what a history read
//! found after a gap. A join is [`Hub::enter`] (the member listens from now on, its messages
//! held back), then the broker's history read, then [`Hub::complete`] (`joined`, the replay,
//! then what was held, merged by offset).
//!
//! Rooms are spread over [`Shards`]: a message's fan-out locks its own room's shard, never a
//! lock every room needs.
//!
//! A member's identity and policy are decided before it gets here (the
//! [`Member`](super::Member) checks them at each request); the hub sees a queue and the
//! [`Visitor`] it is in the room's presence, kept beside `members` in [`LocalRoom`] and fed by
//! the same enter and leave calls. Presence changes go out at most once per room per
//! [`PRESENCE_INTERVAL_MS`](room_protocol::bounds::PRESENCE_INTERVAL_MS): a room whose
//! presence changed is listed once, and [`Hub::flush_presence`] sends what the rooms listed
//! came to.

use std::cmp::Ordering as Order;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use room_protocol::order::{Arrival, Recovery, RoomState, Sequence, recovery};
use room_protocol::{ErrorCode, Position, PresentUser, Problem, ServerFrame};

use super::presence::{Presence, Visitor};
use super::queue::{MemberQueue, QUEUED_OVERHEAD, Taken};
use super::shards::{Shards, lock};
use super::{Joined, MemberId, Snapshot, compare_epochs, rooms_full};
use crate::metrics::RoomMetrics;
use crate::outgoing::QueuedText;

/// A member on this instance.
#[derive(Debug)]
enum Listener {
    /// Joined: takes every message after `after` (the offset its `joined` named, or the last
    /// one its replay gave).
    Live { queue: Arc<MemberQueue>, after: u64 },
    /// Its join is reading history: live messages wait here, to follow the replay.
    Joining {
        queue: Arc<MemberQueue>,
        held: Vec<(u64, QueuedText)>,
        held_bytes: usize,
        /// The room changed epoch meanwhile: what it reads belongs to another history.
        stale: bool,
        /// More arrived than it may hold: what arrives is let go, to be read from history.
        dropped: bool,
        /// Once `joined` went out: what the join was decided to be, its epoch, and the last
        /// offset it was given.
        sent: Option<(Joined, String, u64)>,
    },
}

/// A room as this instance holds it: its members here and how far it has delivered.
#[derive(Debug, Default)]
struct LocalRoom {
    /// The epoch and the offsets delivered; unknown until the first read or message.
    position: Option<(String, Sequence)>,
    members: HashMap<MemberId, Listener>,
    /// Who the members are, per user, and what the last presence frame said.
    presence: Presence,
    /// A gap was found that could not be read yet.
    needs_fill: bool,
}

impl LocalRoom {
    /// Queues `frame` (at `offset`) to every member that has not had it; a member over its
    /// limit leaves the room (its session closes it). Returns how many took it.
    fn deliver(&mut self, offset: u64, frame: &QueuedText) -> usize {
        let mut delivered = 0;
        self.members.retain(|_, listener| match listener {
            Listener::Live { queue, after } => {
                if offset <= *after {
                    return true;
                }
                let taken = queue.push_room(frame);
                delivered += usize::from(taken);
                taken
            }
            Listener::Joining {
                queue,
                held,
                held_bytes,
                dropped,
                ..
            } => {
                if *dropped {
                    return true;
                }
                // What is held counts against the same bound as what is queued; past it, the
                // join reads history again rather than hold more.
                *held_bytes += frame.len() + QUEUED_OVERHEAD;
                if queue.room_bytes() + *held_bytes > queue.limit() {
                    held.clear();
                    *held_bytes = 0;
                    *dropped = true;
                    return true;
                }
                held.push((offset, frame.clone()));
                true
            }
        });
        delivered
    }

    /// The room's messages up to now cannot all reach its members here: the joined ones are
    /// closed (1012) and join again; joins under way will be refused `unavailable`.
    fn lose_history(&mut self, room: &str, epoch: String, top: u64) {
        let live = self
            .members
            .values()
            .filter(|listener| matches!(listener, Listener::Live { .. }))
            .count();
        if live > 0 {
            tracing::info!(
                room,
                members = live,
                "a room's history was lost; closing its members here so they join again"
            );
        }
        self.members.retain(|_, listener| match listener {
            Listener::Live { queue, .. } => {
                queue.end(Taken::HistoryLost);
                false
            }
            Listener::Joining {
                held,
                held_bytes,
                stale,
                ..
            } => {
                held.clear();
                *held_bytes = 0;
                *stale = true;
                true
            }
        });
        self.position = Some((epoch, Sequence::after(top)));
    }
}

/// A presence frame to a member: counted against its queue's bound like a room message, so a
/// member that does not read is closed; one larger than the whole bound (a thousand long names
/// at once) goes as an answer instead, which the send timeout bounds, rather than close every
/// watcher of a busy room.
fn push_presence(queue: &MemberQueue, frame: &QueuedText) {
    if frame.len() + QUEUED_OVERHEAD > queue.limit() {
        queue.push_replay(frame);
    } else {
        // Over its bound: its queue has ended and its session closes it.
        queue.push_room(frame);
    }
}

/// What a join's history read came to.
#[derive(Debug)]
pub(crate) enum Completed {
    /// The member is live.
    Joined(Joined),
    /// More arrived while it read than it may hold: `joined` and what was read went out, and
    /// the broker reads again after this position before the member is live.
    ReadAgain(Position),
}

/// What became of a published message offered to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    /// Delivered, or dropped as delivered already or of an older epoch.
    Taken,
    /// Messages before it are missing: fill the gap from history first.
    AfterGap,
    /// No member here is in its room.
    NotHere,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Hub {
    rooms: Shards<LocalRoom>,
    /// Rooms held here, for `--max-rooms`.
    count: AtomicUsize,
    max_rooms: usize,
    history_ttl_ms: u64,
    /// Past this many users a room's presence frames carry the count alone.
    presence_cap: usize,
    /// Rooms whose presence changed since the last flush, each once.
    dirty: Mutex<Vec<String>>,
    metrics: RoomMetrics,
}

fn unavailable() -> Problem {
    Problem::new(
        ErrorCode::Unavailable,
        "the room changed while joining it; join again in a moment",
    )
}

impl Hub {
    pub(crate) fn new(
        max_rooms: usize,
        history_ttl_ms: u64,
        presence_cap: usize,
        metrics: RoomMetrics,
    ) -> Hub {
        Hub {
            rooms: Shards::default(),
            count: AtomicUsize::new(0),
            max_rooms,
            history_ttl_ms,
            presence_cap,
            dirty: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// `room`'s presence changed: it goes out at the next flush.
    fn mark_dirty(&self, room: &str) {
        lock(&self.dirty).push(room.to_owned());
    }

    /// Sends each room's presence changes since the last flush to its members that follow
    /// presence (at most one frame per room per flush; called every
    /// [`PRESENCE_INTERVAL_MS`](room_protocol::bounds::PRESENCE_INTERVAL_MS)). Each room is
    /// handled under its own shard's lock; no lock is held across rooms. `tell` gets each room
    /// whose users on this instance changed, with those users, under that room's lock (with
    /// Redis it queues the notice for the other instances: so a room's lists are queued in the
    /// order they were true, and the last member's leave, queued after its removal, comes last).
    pub(crate) fn flush_presence(&self, tell: &dyn Fn(&str, &[PresentUser])) {
        let rooms = std::mem::take(&mut *lock(&self.dirty));
        for room in rooms {
            let mut shard = self.rooms.of(&room);
            let Some(local) = shard.get_mut(&room) else {
                continue;
            };
            if local.presence.take_local_changed() {
                tell(&room, &local.presence.local_users());
            }
            let Some(frame) = local.presence.flush(&room, self.presence_cap) else {
                continue;
            };
            let frame = QueuedText::shared(frame.to_json().into());
            for (member, listener) in &local.members {
                // Live, or joining with its snapshot sent already (a join that reads again):
                // every change after the snapshot reaches it.
                let queue = match listener {
                    Listener::Live { queue, .. }
                    | Listener::Joining {
                        queue,
                        sent: Some(_),
                        ..
                    } => queue,
                    Listener::Joining { sent: None, .. } => continue,
                };
                if local.presence.watches(*member) {
                    push_presence(queue, &frame);
                }
            }
        }
    }

    /// What another instance says its users in `room` are (with Redis), good until
    /// `expires_ms` (this instance's clock) unless it says so again.
    pub(crate) fn remote_presence(
        &self,
        room: &str,
        instance: &str,
        users: Vec<PresentUser>,
        expires_ms: u64,
    ) {
        let mut shard = self.rooms.of(room);
        if let Some(local) = shard.get_mut(room)
            && local.presence.remote(instance, users, expires_ms)
        {
            self.mark_dirty(room);
        }
    }

    /// Forgets what other instances not heard from until `now_ms` said: the members of an
    /// instance that died leave every room's presence. One room's lock at a time.
    pub(crate) fn expire_presence(&self, now_ms: u64) {
        for room in self.rooms.names() {
            let mut shard = self.rooms.of(&room);
            if let Some(local) = shard.get_mut(&room)
                && local.presence.expire(now_ms)
            {
                self.mark_dirty(&room);
            }
        }
    }

    /// Every room held here with its users here, each given to `tell` under its room's lock:
    /// what this instance says again every third of the presence TTL, so the others know it
    /// is alive.
    pub(crate) fn local_presence(&self, tell: &dyn Fn(&str, &[PresentUser])) {
        for room in self.rooms.names() {
            if let Some(local) = self.rooms.of(&room).get(&room) {
                tell(&room, &local.presence.local_users());
            }
        }
    }

    /// Another instance asked who is in `room` here: the next flush says it.
    pub(crate) fn presence_asked(&self, room: &str) {
        let mut shard = self.rooms.of(room);
        if let Some(local) = shard.get_mut(room)
            && local.presence.ask()
        {
            self.mark_dirty(room);
        }
    }

    /// A `typing` from `member`: to the room's other members here, at most once per
    /// interval per user. The frame, for the other instances (with Redis), or `None` when
    /// it was dropped.
    pub(crate) fn typing(&self, room: &str, member: MemberId, now_ms: u64) -> Option<String> {
        let mut shard = self.rooms.of(room);
        let local = shard.get_mut(room)?;
        let frame = local.presence.typing(room, member, now_ms)?.to_json();
        let shared = QueuedText::shared(frame.clone().into());
        for (other, listener) in &local.members {
            if let Listener::Live { queue, .. } = listener
                && *other != member
            {
                queue.push_room(&shared);
            }
        }
        Some(frame)
    }

    /// A `typing` frame from a member on another instance: to every member here, at most
    /// once per interval per user whichever instances they type on.
    pub(crate) fn typing_from_elsewhere(&self, room: &str, frame: &str, now_ms: u64) {
        let Ok(ServerFrame::Typing { user, .. }) = ServerFrame::from_json(frame) else {
            return;
        };
        let mut shard = self.rooms.of(room);
        let Some(local) = shard.get_mut(room) else {
            return;
        };
        if !local.presence.typed(&user, now_ms) {
            return;
        }
        let shared = QueuedText::shared(frame.to_owned().into());
        for listener in local.members.values() {
            if let Listener::Live { queue, .. } = listener {
                queue.push_room(&shared);
            }
        }
    }

    /// Starts a join: the member listens to the room from now on, what arrives held back until
    /// [`Hub::complete`]. The room is made here if this instance has room for it: `true` when
    /// it was.
    pub(crate) fn enter(
        &self,
        room: &str,
        member: MemberId,
        queue: &Arc<MemberQueue>,
        visitor: Visitor,
    ) -> Result<bool, Problem> {
        let mut rooms = self.rooms.of(room);
        let made = !rooms.contains_key(room);
        if made {
            if self.count.fetch_add(1, Ordering::Relaxed) >= self.max_rooms {
                self.count.fetch_sub(1, Ordering::Relaxed);
                return Err(rooms_full());
            }
            rooms.insert(room.to_owned(), LocalRoom::default());
        }
        let local = rooms.get_mut(room).expect("inserted above");
        local.members.insert(
            member,
            Listener::Joining {
                queue: Arc::clone(queue),
                held: Vec::new(),
                held_bytes: 0,
                stale: false,
                dropped: false,
                sent: None,
            },
        );
        if local.presence.enter(member, visitor) {
            self.mark_dirty(room);
        }
        Ok(made)
    }

    /// Takes `member` out of the room (joined or joining). `true` when nobody here is left in
    /// it: the room is gone and the broker may stop feeding it. `emptied` runs then, under
    /// the room's lock, so what it queues (the `[]` of presence) comes after every list a
    /// flush queued for the room and before any a new join's flush will.
    pub(crate) fn remove(&self, room: &str, member: MemberId, emptied: impl FnOnce()) -> bool {
        let mut rooms = self.rooms.of(room);
        let Some(local) = rooms.get_mut(room) else {
            return false;
        };
        local.members.remove(&member);
        if local.presence.leave(member) && !local.members.is_empty() {
            self.mark_dirty(room);
        }
        if local.members.is_empty() {
            rooms.remove(room);
            self.count.fetch_sub(1, Ordering::Relaxed);
            emptied();
            return true;
        }
        false
    }

    /// Whether anyone here is in `room`.
    pub(crate) fn is_held(&self, room: &str) -> bool {
        self.rooms.of(room).contains_key(room)
    }

    /// Ends a join with what the broker read: the member's queue gets `joined`, the replay
    /// `since` asks for, then what arrived meanwhile, merged by offset; from then on every
    /// message after it, in order. If more arrived meanwhile than the member may hold, the
    /// broker reads again after what was given ([`Completed::ReadAgain`]) and this is called
    /// with that read.
    pub(crate) fn complete(
        &self,
        room: &str,
        member: MemberId,
        since: Option<&Position>,
        history: usize,
        snapshot: Snapshot,
    ) -> Result<Completed, Problem> {
        let mut rooms = self.rooms.of(room);
        let Some(local) = rooms.get_mut(room) else {
            return Err(unavailable());
        };
        // Gone: its queue overflowed while its join was reading (its session closes it).
        let Some(Listener::Joining {
            queue,
            held,
            stale,
            dropped,
            sent,
            ..
        }) = local.members.remove(&member)
        else {
            return Err(unavailable());
        };
        let top = snapshot.top;
        let (joined, epoch) = match sent {
            None => {
                if stale {
                    return Err(unavailable());
                }
                Self::reconcile(local, room, &snapshot, held.is_empty() && !dropped)?;
                // Nothing arrived yet: delivery here starts where the read ends.
                local
                    .position
                    .get_or_insert_with(|| (snapshot.epoch.clone(), Sequence::after(top)));
                let presence = local.presence.watches(member).then(|| {
                    local
                        .presence
                        .snapshot(room, self.presence_cap, Some(member))
                });
                let joined = self.first_answer(room, since, history, presence, &snapshot, &queue);
                (joined, snapshot.epoch)
            }
            Some((joined, epoch, after)) => {
                // `joined` went out already: what follows it must be of its epoch, whole.
                let mut last = after;
                let whole = !stale
                    && snapshot.epoch == epoch
                    && snapshot
                        .entries
                        .iter()
                        .filter(|entry| entry.offset > after)
                        .all(|entry| {
                            let next = entry.offset == last + 1;
                            last = entry.offset;
                            next
                        })
                    && last >= top;
                if !whole {
                    queue.end(Taken::HistoryLost);
                    return Err(unavailable());
                }
                for entry in snapshot.entries.iter().filter(|entry| entry.offset > after) {
                    queue.push_replay(&entry.frame);
                }
                (joined, epoch)
            }
        };
        // What was held must carry on from the read with nothing between (it starts at most
        // one past it); if it does not, or was let go, the broker reads again from here.
        let broken = held
            .first()
            .is_some_and(|(first, _)| *first > top.saturating_add(1));
        if dropped || broken {
            local.members.insert(
                member,
                Listener::Joining {
                    queue,
                    held: Vec::new(),
                    held_bytes: 0,
                    stale: false,
                    dropped: false,
                    sent: Some((joined, epoch.clone(), top)),
                },
            );
            return Ok(Completed::ReadAgain(Position { epoch, offset: top }));
        }
        let mut after = top;
        for (offset, frame) in held {
            if offset > after {
                if !queue.push_room(&frame) {
                    // Over its bound already: its session closes it.
                    return Ok(Completed::Joined(joined));
                }
                after = offset;
            }
        }
        local
            .members
            .insert(member, Listener::Live { queue, after });
        Ok(Completed::Joined(joined))
    }

    /// A join's first read against what this instance follows: the same epoch, a newer one
    /// (what members here had is lost), or an older one (a stale read: refused).
    fn reconcile(
        local: &mut LocalRoom,
        room: &str,
        snapshot: &Snapshot,
        nothing_since: bool,
    ) -> Result<(), Problem> {
        let Some((known, sequence)) = &local.position else {
            return Ok(());
        };
        match compare_epochs(&snapshot.epoch, known) {
            // Delivered here past what the broker has, and nothing since this join began:
            // Redis lost writes (restored from an older snapshot), and what follows would
            // reuse offsets members here already have.
            Order::Equal if nothing_since && sequence.last() > snapshot.top => {
                tracing::warn!(
                    room,
                    top = snapshot.top,
                    "redis is behind what this instance delivered: it lost writes"
                );
                local.lose_history(room, snapshot.epoch.clone(), snapshot.top);
                Ok(())
            }
            Order::Equal => Ok(()),
            Order::Greater => {
                // The instance's view is of a history the broker no longer has.
                local.lose_history(room, snapshot.epoch.clone(), snapshot.top);
                if nothing_since {
                    Ok(())
                } else {
                    Err(unavailable())
                }
            }
            // Read from a history older than what this instance follows.
            Order::Less => Err(unavailable()),
        }
    }

    /// `joined`, the room's presence when asked for, and the replay: what `since` asks for,
    /// or, when it is not there or cannot be recovered, the last `history` messages kept.
    fn first_answer(
        &self,
        room: &str,
        since: Option<&Position>,
        history: usize,
        presence: Option<ServerFrame>,
        snapshot: &Snapshot,
        queue: &MemberQueue,
    ) -> Joined {
        let ttl = self.history_ttl_ms;
        let decided = recovery(
            since,
            RoomState {
                epoch: &snapshot.epoch,
                last: snapshot.top,
                oldest_kept: snapshot
                    .entries
                    .iter()
                    .find(|entry| snapshot.now_ms.saturating_sub(entry.time_ms) < ttl)
                    .map(|entry| entry.offset),
            },
        );
        queue.push_own(
            ServerFrame::Joined {
                room: room.to_owned(),
                epoch: snapshot.epoch.clone(),
                offset: snapshot.top,
                recovered: decided.recovered(),
            }
            .to_json()
            .into(),
        );
        if let Some(presence) = presence {
            queue.push_own(presence.to_json().into());
        }
        let mut replayed = 0;
        match decided {
            Recovery::Replay { after } => {
                for entry in snapshot.entries.iter().filter(|entry| entry.offset > after) {
                    queue.push_replay(&entry.frame);
                    replayed += 1;
                }
            }
            Recovery::Fresh | Recovery::Lost if history > 0 => {
                // The newest `history` the TTL still lets be replayed, oldest first.
                let kept: Vec<&super::Entry> = snapshot
                    .entries
                    .iter()
                    .filter(|entry| snapshot.now_ms.saturating_sub(entry.time_ms) < ttl)
                    .collect();
                for entry in &kept[kept.len().saturating_sub(history)..] {
                    queue.push_replay(&entry.frame);
                    replayed += 1;
                }
            }
            Recovery::Fresh | Recovery::Lost => {}
        }
        Joined {
            recovery: decided,
            replayed,
        }
    }

    /// A join that could not catch up in as many reads as it may make: the member is closed
    /// (1008) as one that fell behind, and joins again.
    pub(crate) fn give_up(&self, room: &str, member: MemberId) {
        if let Some(Listener::Joining { queue, .. } | Listener::Live { queue, .. }) = self
            .rooms
            .of(room)
            .get(room)
            .and_then(|local| local.members.get(&member))
        {
            queue.end(Taken::Overflowed);
        }
    }

    /// A published message: delivered to the room's members here if it is the next one.
    /// `frame` is made only if someone takes it.
    pub(crate) fn offer(
        &self,
        room: &str,
        epoch: &str,
        offset: u64,
        frame: impl FnOnce() -> QueuedText,
    ) -> Offered {
        let mut rooms = self.rooms.of(room);
        let Some(local) = rooms.get_mut(room) else {
            return Offered::NotHere;
        };
        let arrival = match &local.position {
            // Nobody has finished joining: delivery (to the joins' hold) starts here.
            None => {
                local.position =
                    Some((epoch.to_owned(), Sequence::after(offset.saturating_sub(1))));
                Arrival::Next
            }
            Some((known, sequence)) => match compare_epochs(epoch, known) {
                Order::Equal => sequence.check(offset),
                Order::Greater => {
                    local.lose_history(room, epoch.to_owned(), offset);
                    return Offered::Taken;
                }
                // A late message of a history already replaced.
                Order::Less => return Offered::Taken,
            },
        };
        match arrival {
            Arrival::Next => {
                let delivered = local.deliver(offset, &frame());
                self.metrics.delivered(delivered);
                if let Some((_, sequence)) = local.position.as_mut() {
                    sequence.advance(offset);
                }
                Offered::Taken
            }
            Arrival::Old => Offered::Taken,
            Arrival::Gap { .. } => Offered::AfterGap,
        }
    }

    /// Where delivery stands in `room`: its epoch and the last offset delivered.
    pub(crate) fn position(&self, room: &str) -> Option<(String, u64)> {
        let rooms = self.rooms.of(room);
        let (epoch, sequence) = rooms.get(room)?.position.as_ref()?;
        Some((epoch.clone(), sequence.last()))
    }

    /// A gap in `room` could not be read: to be read again ([`Hub::pending_fills`]).
    pub(crate) fn fill_later(&self, room: &str) {
        if let Some(local) = self.rooms.of(room).get_mut(room) {
            local.needs_fill = true;
        }
    }

    /// The rooms whose gap could not be read when it was found.
    pub(crate) fn pending_fills(&self) -> Vec<String> {
        self.rooms.names_where(|local| local.needs_fill)
    }

    /// Every room held here.
    pub(crate) fn rooms(&self) -> Vec<String> {
        self.rooms.names()
    }

    /// What a history read after `from` (the epoch and offset [`Hub::position`] gave) found:
    /// delivered in order; what history no longer holds closes the room's members here.
    pub(crate) fn fill(&self, room: &str, from: &(String, u64), read: Snapshot) {
        let mut rooms = self.rooms.of(room);
        let Some(local) = rooms.get_mut(room) else {
            return;
        };
        let (epoch, last) = from;
        if local
            .position
            .as_ref()
            .is_none_or(|(known, _)| known != epoch)
        {
            // The room moved to another epoch meanwhile: this read is of the old one.
            return;
        }
        match compare_epochs(&read.epoch, epoch) {
            Order::Less => return,
            Order::Greater => {
                local.lose_history(room, read.epoch, read.top);
                return;
            }
            Order::Equal => {}
        }
        if read.top < *last {
            // The broker is behind what this instance delivered (Redis restored from an
            // older snapshot): what follows would reuse offsets members already have.
            tracing::warn!(
                room,
                top = read.top,
                "redis is behind what this instance delivered: it lost writes"
            );
            local.lose_history(room, read.epoch, read.top);
            return;
        }
        local.needs_fill = false;
        let mut delivered = 0;
        let mut filled = false;
        for entry in read.entries {
            let Some((_, sequence)) = local.position.as_mut() else {
                break;
            };
            match sequence.check(entry.offset) {
                Arrival::Next => {
                    sequence.advance(entry.offset);
                    delivered += local.deliver(entry.offset, &entry.frame);
                    filled = true;
                }
                Arrival::Old => {}
                Arrival::Gap { .. } => break,
            }
        }
        self.metrics.delivered(delivered);
        if filled {
            self.metrics.gap_filled();
        }
        let behind = local
            .position
            .as_ref()
            .is_some_and(|(_, sequence)| sequence.last() < read.top);
        if behind {
            // Trimmed before it could be read: these members cannot get every message.
            local.lose_history(room, read.epoch, read.top);
        }
    }

    /// How many rooms this instance holds.
    #[cfg(test)]
    pub(crate) fn room_count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outgoing::Compression;
    use crate::rooms::Entry;
    use crate::rooms::tests::{anyone, frames, offsets};
    use hyper_tungstenite::tungstenite::Utf8Bytes;

    fn frame(offset: u64) -> QueuedText {
        QueuedText::shared(Utf8Bytes::from(format!(
            r#"{{"type":"message","room":"r","offset":{offset},"id":"m{offset}","user":"u","from":"a","text":"t","time":0}}"#
        )))
    }

    fn snapshot(epoch: &str, top: u64, entries: impl IntoIterator<Item = u64>) -> Snapshot {
        Snapshot {
            epoch: epoch.to_owned(),
            top,
            entries: entries
                .into_iter()
                .map(|offset| Entry {
                    offset,
                    time_ms: 0,
                    frame: frame(offset),
                })
                .collect(),
            now_ms: 0,
        }
    }

    fn queue() -> Arc<MemberQueue> {
        Arc::new(MemberQueue::new(1 << 20, 1 << 19, Compression::PLAIN))
    }

    fn joined(completed: Result<Completed, Problem>) -> Joined {
        match completed {
            Ok(Completed::Joined(joined)) => joined,
            other => panic!("expected joined, got {other:?}"),
        }
    }

    #[test]
    fn what_arrives_while_a_join_reads_follows_its_replay_once_in_order() {
        let hub = Hub::new(10, u64::MAX, 1000, RoomMetrics::default());
        let early = queue();
        hub.enter("r", 1, &early, anyone()).expect("enters");
        joined(hub.complete("r", 1, None, 0, snapshot("e", 10, 1..=10)));
        let late = queue();
        hub.enter("r", 2, &late, anyone()).expect("enters");
        // Published while the second join reads: 11..=20; its read saw up to 15.
        for offset in 11..=20 {
            assert_eq!(
                hub.offer("r", "e", offset, || frame(offset)),
                Offered::Taken
            );
        }
        let since = Position {
            epoch: "e".into(),
            offset: 4,
        };
        let joined = joined(hub.complete("r", 2, Some(&since), 0, snapshot("e", 15, 1..=15)));
        assert_eq!(joined.replayed, 11);
        for offset in 21..=1_000 {
            hub.offer("r", "e", offset, || frame(offset));
        }
        let got = frames(&late);
        assert!(matches!(
            got[0],
            ServerFrame::Joined {
                offset: 15,
                recovered: true,
                ..
            }
        ));
        assert_eq!(offsets(&got), (5..=1_000).collect::<Vec<_>>());
        assert_eq!(offsets(&frames(&early)), (11..=1_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_read_ahead_of_live_delivery_is_not_given_twice() {
        let hub = Hub::new(10, u64::MAX, 1000, RoomMetrics::default());
        let member = queue();
        hub.enter("r", 1, &member, anyone()).expect("enters");
        // The first message here arrives while the read is under way, and the read saw it.
        hub.offer("r", "e", 7, || frame(7));
        joined(hub.complete("r", 1, None, 0, snapshot("e", 8, 1..=8)));
        for offset in 8..=10 {
            hub.offer("r", "e", offset, || frame(offset));
        }
        assert_eq!(offsets(&frames(&member)), [9, 10]);
    }

    #[test]
    fn a_gap_is_reported_and_filled_in_order() {
        let hub = Hub::new(10, u64::MAX, 1000, RoomMetrics::default());
        let member = queue();
        hub.enter("r", 1, &member, anyone()).expect("enters");
        joined(hub.complete("r", 1, None, 0, snapshot("e", 3, 1..=3)));
        assert_eq!(hub.offer("r", "e", 6, || frame(6)), Offered::AfterGap);
        let from = hub.position("r").expect("a position");
        assert_eq!(from, ("e".to_owned(), 3));
        hub.fill("r", &from, snapshot("e", 6, 4..=6));
        assert_eq!(hub.offer("r", "e", 6, || frame(6)), Offered::Taken);
        assert_eq!(offsets(&frames(&member)), [4, 5, 6]);
    }

    #[test]
    fn a_newer_epoch_closes_the_members_and_an_older_one_is_ignored() {
        let hub = Hub::new(10, u64::MAX, 1000, RoomMetrics::default());
        let member = queue();
        hub.enter("r", 1, &member, anyone()).expect("enters");
        joined(hub.complete("r", 1, None, 0, snapshot("0002", 3, 1..=3)));
        assert_eq!(hub.offer("r", "0001", 4, || frame(4)), Offered::Taken);
        assert!(offsets(&frames(&member)).is_empty());
        assert_eq!(hub.offer("r", "0003", 1, || frame(1)), Offered::Taken);
        assert_eq!(member.take_all(&mut Vec::new()), Taken::HistoryLost);
        // A join that read the older history is refused; one of the newer goes on.
        let next = queue();
        hub.enter("r", 2, &next, anyone()).expect("enters");
        let stale = hub.complete("r", 2, None, 0, snapshot("0002", 9, 1..=9));
        assert!(stale.is_err());
    }

    #[test]
    fn past_what_a_join_may_hold_it_reads_again_and_misses_nothing() {
        let hub = Hub::new(10, u64::MAX, 1000, RoomMetrics::default());
        let small = Arc::new(MemberQueue::new(10_000, 5_000, Compression::PLAIN));
        hub.enter("r", 1, &small, anyone()).expect("enters");
        // 1,000 messages while the join reads: far more than 10,000 bytes.
        for offset in 1..=1_000 {
            hub.offer("r", "e", offset, || frame(offset));
        }
        let again = hub.complete("r", 1, None, 0, snapshot("e", 0, []));
        let Ok(Completed::ReadAgain(position)) = again else {
            panic!("expected a second read, got {again:?}");
        };
        assert_eq!(position.offset, 0);
        // More arrive during the second read, which sees up to 1,003.
        for offset in 1_001..=1_005 {
            hub.offer("r", "e", offset, || frame(offset));
        }
        joined(hub.complete("r", 1, None, 0, snapshot("e", 1_003, 1..=1_003)));
        let mut frames = Vec::new();
        assert_eq!(small.take_all(&mut frames), Taken::Frames);
        let got: Vec<ServerFrame> = frames
            .iter()
            .map(|frame| ServerFrame::from_json(frame.text()).expect("valid"))
            .collect();
        assert!(matches!(got[0], ServerFrame::Joined { offset: 0, .. }));
        assert_eq!(offsets(&got), (1..=1_005).collect::<Vec<_>>());
    }

    #[test]
    fn rooms_are_bounded_and_an_emptied_room_makes_way() {
        let hub = Hub::new(3, u64::MAX, 1000, RoomMetrics::default());
        let member = queue();
        for n in 0..3 {
            hub.enter(&format!("r{n}"), n, &member, anyone())
                .expect("enters");
        }
        assert!(hub.enter("r3", 3, &member, anyone()).is_err());
        assert!(
            hub.enter("r0", 9, &member, anyone()).is_ok(),
            "a held room takes more"
        );
        assert!(!hub.remove("r0", 0, || {}));
        assert!(hub.remove("r0", 9, || {}));
        assert_eq!(hub.room_count(), 2);
        hub.enter("r3", 3, &member, anyone())
            .expect("room for one more");
    }
}
