//! Rooms (`GET /rooms?name=NAME`): many people in one room over one connection each.
//!
//! The protocol's frames and every decision about order, dedup and recovery live in the
//! `room-protocol` crate. Here, as Centrifugo splits its engine: one [`Hub`](hub::Hub) per
//! instance holds the local members of each room, their order, fan-out and joins; a broker
//! stores rooms and feeds the hub: [`Memory`](memory::Memory) for one process, or
//! [`Redis`](redis::Redis) for several instances. [`Engine`] is what a session's
//! [`Member`] talks to: it runs a join, a publish or a leave through both, written once.

mod dedup;
mod hub;
mod member;
mod memory;
mod presence;
mod queue;
mod redis;
mod shards;

use std::cmp::Ordering as Order;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use room_protocol::order::Recovery;
use room_protocol::{Position, Problem};

use crate::metrics::RoomMetrics;
use crate::outgoing::QueuedText;

pub(crate) use member::{Member, MemberLimits, Outcome, Waiting, now_ms, wall_ms};
pub(crate) use presence::Visitor;
pub(crate) use queue::{Hold, MemberQueue, QUEUED_OVERHEAD, Taken};
pub(crate) use shards::lock;

/// One connection's identity in the rooms it joins.
pub(crate) type MemberId = u64;

/// The bounds of every room, from the server's flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoomSettings {
    /// Most messages a room's history keeps.
    pub history_messages: usize,
    /// Most bytes of frames a room's history keeps.
    pub history_bytes: usize,
    /// How long a message stays in history: one older is never replayed.
    pub history_ttl_ms: u64,
    /// Most rooms the engine holds.
    pub max_rooms: usize,
    /// How long a message id is remembered for dedup.
    pub dedup_window_ms: u64,
    /// Most message ids remembered at once (the memory broker).
    pub dedup_max_ids: usize,
    /// Past this many users in a room, its presence frames carry the count alone.
    pub presence_max_members: usize,
    /// With Redis: how long another instance's users stay in a room's presence unless it
    /// says so again (it does every third of this).
    pub presence_ttl_ms: u64,
}

/// A join as the engine takes it (checked already: grants, rates, rooms per connection).
#[derive(Debug, Clone)]
pub(crate) struct Join {
    pub room: String,
    /// Resume after this position.
    pub since: Option<Position>,
    /// The last messages to replay when there is no `since` or it cannot be recovered (at
    /// most what the room keeps).
    pub history: usize,
    /// Who joins, in the room's presence, and whether it follows presence.
    pub visitor: Visitor,
}

/// A publish as the engine takes it (checked already: joined, length, rate).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Publish<'a> {
    pub room: &'a str,
    pub id: &'a str,
    /// Who publishes: a token's `sub`, or the connection's `anon-` id in open mode.
    pub user: &'a str,
    /// The name others see.
    pub from: &'a str,
    pub text: &'a str,
    /// Whose ids the dedup window keeps apart: the user, when users are signed (one user's
    /// id never swallows another's message); none in open mode, where a reconnecting client
    /// is a new anonymous user and must still be recognised by its ids.
    pub dedup_user: Option<&'a str>,
}

/// What a join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joined {
    pub recovery: Recovery,
    /// Messages replayed after `joined`.
    pub replayed: usize,
}

/// One message of a room's history: its frame as every member receives it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub offset: u64,
    pub time_ms: u64,
    pub frame: QueuedText,
}

/// What a broker's history read found, as one snapshot.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub epoch: String,
    /// The room's last offset.
    pub top: u64,
    /// The history after the position asked for, if it is of this epoch; oldest first.
    pub entries: Vec<Entry>,
    /// The broker's clock when it read: history older than the TTL by it is not replayed.
    pub now_ms: u64,
}

/// Eight random hex digits, for an epoch.
pub(crate) fn epoch_suffix() -> String {
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    let count = DRAWN.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one((std::process::id(), count));
    format!("{:08x}", random as u32)
}

/// A new epoch: the time it was drawn (12 hex digits of ms), so a later epoch sorts after an
/// earlier one, then random digits, so no two histories (two runs of the server, a Redis
/// restarted empty) ever share one. Redis's scripts draw theirs the same way from its clock.
pub(crate) fn fresh_epoch(now_ms: u64) -> String {
    format!("{now_ms:012x}{}", epoch_suffix())
}

/// Which of two epochs is the newer. Epochs of this format sort by the time they were drawn;
/// an older format (16 random digits, shorter) sorts before them.
pub(crate) fn compare_epochs(a: &str, b: &str) -> Order {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// History reads a join makes at most while the room outruns what it may hold meanwhile.
const MAX_JOIN_READS: u32 = 8;

/// The answer when this server holds `--max-rooms` rooms already.
fn rooms_full() -> Problem {
    Problem::new(
        room_protocol::ErrorCode::Unavailable,
        "this server holds as many rooms as it may; try again later",
    )
}

/// Where rooms are stored and how their messages reach the hub.
#[derive(Debug)]
enum Broker {
    /// In this process (no `--redis-url`). Boxed like the other: one engine per server.
    Memory(Box<memory::Memory>),
    /// In Redis, shared by every instance given it.
    Redis(Arc<redis::Redis>),
}

/// The engine every session talks to: the hub and its broker.
#[derive(Debug)]
pub(crate) struct Engine {
    hub: Arc<hub::Hub>,
    broker: Broker,
    metrics: RoomMetrics,
    presence_ttl_ms: u64,
}

/// A join under way: if it ends without completing (refused, or dropped at the shutdown
/// grace), the member is taken out of the hub again.
struct Entered<'a> {
    engine: &'a Engine,
    room: &'a str,
    member: MemberId,
    done: bool,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.engine.forget(self.room, self.member, now_ms());
        }
    }
}

impl Engine {
    pub(crate) fn embedded(settings: RoomSettings, metrics: RoomMetrics) -> Arc<Engine> {
        let hub = Arc::new(hub::Hub::new(
            settings.max_rooms,
            settings.history_ttl_ms,
            settings.presence_max_members,
            metrics.clone(),
        ));
        Arc::new(Engine {
            broker: Broker::Memory(Box::new(memory::Memory::new(
                Arc::clone(&hub),
                settings,
                metrics.clone(),
            ))),
            hub,
            metrics,
            presence_ttl_ms: settings.presence_ttl_ms,
        })
    }

    /// Rooms in the Redis at `url` (checked by the flag's parser).
    pub(crate) fn redis(
        url: &str,
        settings: RoomSettings,
        metrics: RoomMetrics,
    ) -> Result<Arc<Engine>, ::redis::RedisError> {
        let hub = Arc::new(hub::Hub::new(
            settings.max_rooms,
            settings.history_ttl_ms,
            settings.presence_max_members,
            metrics.clone(),
        ));
        Ok(Arc::new(Engine {
            broker: Broker::Redis(redis::Redis::new(
                url,
                Arc::clone(&hub),
                settings,
                metrics.clone(),
            )?),
            hub,
            metrics,
            presence_ttl_ms: settings.presence_ttl_ms,
        }))
    }

    /// Starts what the engine runs beside the sessions until `shutdown`: the presence
    /// flush, and Redis's pub/sub link.
    pub(crate) fn start(&self, tracker: &TaskTracker, shutdown: CancellationToken) {
        let hub = Arc::clone(&self.hub);
        let redis = match &self.broker {
            Broker::Memory(_) => None,
            Broker::Redis(redis) => Some(Arc::clone(redis)),
        };
        let stop = shutdown.clone();
        let interval = room_protocol::bounds::PRESENCE_INTERVAL_MS;
        // With Redis: forget silent instances about every second, and say this one's users
        // again every third of the TTL.
        let expire_every = (1_000 / interval).max(1);
        let heartbeat_every = (self.presence_ttl_ms / 3 / interval).max(1);
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(interval));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ticks: u64 = 0;
            loop {
                tokio::select! {
                    // Leaving cleanly, the notice sender says `[]` where this instance had
                    // anyone: the others need not wait for the TTL.
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                ticks += 1;
                let Some(redis) = &redis else {
                    hub.flush_presence(&|_, _| {});
                    continue;
                };
                let tell = |room: &str, users: &[room_protocol::PresentUser]| {
                    redis.publish_presence(room, users);
                };
                hub.flush_presence(&tell);
                if ticks.is_multiple_of(expire_every) {
                    hub.expire_presence(now_ms());
                }
                if ticks.is_multiple_of(heartbeat_every) {
                    hub.local_presence(&tell);
                }
            }
        });
        match &self.broker {
            Broker::Memory(_) => self.metrics.redis_up(true),
            Broker::Redis(redis) => redis.start(tracker, shutdown),
        }
    }

    /// A `typing` from `member` in `room` (joined, allowed to write): to the room's other
    /// members, at most once per interval per user. `false` when it was dropped.
    pub(crate) fn typing(&self, room: &str, member: MemberId, now_ms: u64) -> bool {
        let Some(frame) = self.hub.typing(room, member, now_ms) else {
            return false;
        };
        if let Broker::Redis(redis) = &self.broker {
            redis.publish_typing(room, &frame);
        }
        true
    }

    /// Whether rooms are in Redis and it can be reached now (`/readyz`): `None` without
    /// Redis.
    pub(crate) fn redis_reachable(&self) -> Option<bool> {
        match &self.broker {
            Broker::Memory(_) => None,
            Broker::Redis(redis) => Some(redis.is_reachable()),
        }
    }

    /// Takes a publish: the offset it got, or the one it got before if its id is known.
    pub(crate) async fn publish(&self, publish: &Publish<'_>, now_ms: u64) -> Result<u64, Problem> {
        match &self.broker {
            Broker::Memory(memory) => memory.publish(publish, now_ms),
            Broker::Redis(redis) => redis.publish(publish).await,
        }
    }

    /// Joins `member`: its queue gets `joined`, the replay `since` asks for, then every
    /// message published after, in order. The member listens before the broker reads, so
    /// nothing published meanwhile slips between; what arrives during the read is held and
    /// follows the replay.
    pub(crate) async fn join(
        &self,
        join: &Join,
        member: MemberId,
        queue: &Arc<MemberQueue>,
        now_ms: u64,
    ) -> Result<Joined, Problem> {
        let (room, since) = (join.room.as_str(), join.since.as_ref());
        let made = self.hub.enter(room, member, queue, join.visitor.clone())?;
        let mut entered = Entered {
            engine: self,
            room,
            member,
            done: false,
        };
        match &self.broker {
            Broker::Memory(memory) => memory.subscribe(room, now_ms)?,
            Broker::Redis(redis) => {
                redis.subscribe(room).await?;
                if made {
                    // New here: the other instances say who they have in it.
                    redis.ask_presence(room);
                }
            }
        }
        let mut read_after = since.cloned();
        let mut reads = 0;
        let joined = loop {
            // The first read brings what `history` asks for too; one after it only what follows.
            let history = if reads == 0 { join.history } else { 0 };
            let snapshot = match &self.broker {
                Broker::Memory(memory) => {
                    memory.read(room, read_after.as_ref(), history, now_ms)?
                }
                Broker::Redis(redis) => redis.read(room, read_after.as_ref(), history).await?,
            };
            reads += 1;
            match self
                .hub
                .complete(room, member, since, join.history, snapshot)?
            {
                hub::Completed::Joined(joined) => break joined,
                hub::Completed::ReadAgain(_) if reads == MAX_JOIN_READS => {
                    // The room outruns every read: the member falls behind, as a reader too
                    // slow for its room would.
                    self.hub.give_up(room, member);
                    return Err(Problem::new(
                        room_protocol::ErrorCode::Unavailable,
                        "the room moves faster than it can be joined; join again in a moment",
                    ));
                }
                hub::Completed::ReadAgain(position) => read_after = Some(position),
            }
        };
        entered.done = true;
        if since.is_some() {
            self.metrics.recovered(joined.recovery.recovered());
        }
        Ok(joined)
    }

    /// Takes `member` out of the room; the broker stops feeding a room nobody here is in.
    pub(crate) fn forget(&self, room: &str, member: MemberId, now_ms: u64) {
        let redis = match &self.broker {
            Broker::Redis(redis) => Some(redis),
            Broker::Memory(_) => None,
        };
        // Nobody here any more: the others need not wait for the TTL to know.
        let emptied = || {
            if let Some(redis) = redis {
                redis.publish_presence(room, &[]);
            }
        };
        if !self.hub.remove(room, member, emptied) {
            return;
        }
        match &self.broker {
            Broker::Memory(memory) => memory.unsubscribe(room, now_ms),
            Broker::Redis(redis) => redis.unsubscribe(room),
        }
    }
}

#[cfg(test)]
mod tests;
