//! Rooms (`GET /rooms?name=NAME`): many people in one room over one connection each.
//!
//! The protocol's frames and every decision about order, dedup and recovery live in the
//! `room-protocol` crate; this module stores and moves the bytes: [`Engine`] (the embedded
//! engine for one process, or Redis for several instances, behind the same calls), and
//! [`MemberQueue`], where a room's fan-out meets a session.

mod embedded;
mod member;
mod queue;
mod redis;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use room_protocol::order::Recovery;
use room_protocol::{Position, Problem};

use crate::metrics::RoomMetrics;

pub(crate) use embedded::Embedded;
pub(crate) use member::{Member, MemberLimits};
pub(crate) use queue::{MemberQueue, Taken};
pub(crate) use redis::Redis;

/// One connection's identity in the rooms it joins.
pub(crate) type MemberId = u64;

/// The bounds of every room, from the server's flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoomSettings {
    /// Most messages a room's history keeps.
    pub history_messages: usize,
    /// Most bytes of frames a room's history keeps.
    pub history_bytes: usize,
    /// How long a message stays in history.
    pub history_ttl_ms: u64,
    /// Most rooms the engine holds.
    pub max_rooms: usize,
    /// How long a message id is remembered for dedup.
    pub dedup_window_ms: u64,
}

/// A publish as the engine takes it (checked already: joined, length, rate).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Publish<'a> {
    pub room: &'a str,
    pub id: &'a str,
    pub from: &'a str,
    pub text: &'a str,
}

/// What a join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joined {
    pub recovery: Recovery,
    /// Messages replayed after `joined`.
    pub replayed: usize,
}

/// A new epoch: random enough that no two histories (two runs of the server, a Redis
/// restarted empty) ever share one.
pub(crate) fn fresh_epoch() -> String {
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    let count = DRAWN.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}",
        RandomState::new().hash_one((std::process::id(), count, std::time::SystemTime::now()))
    )
}

/// The engine every session talks to.
#[derive(Debug)]
pub(crate) struct Engine {
    store: Store,
    metrics: RoomMetrics,
}

/// Where rooms live.
#[derive(Debug)]
enum Store {
    /// In this process (no `--redis-url`).
    Embedded(Embedded),
    /// In Redis, shared by every instance given it.
    Redis(Arc<Redis>),
}

impl Engine {
    pub(crate) fn embedded(settings: RoomSettings, metrics: RoomMetrics) -> Arc<Engine> {
        Arc::new(Engine {
            store: Store::Embedded(Embedded::new(settings, metrics.clone())),
            metrics,
        })
    }

    /// Rooms in the Redis at `url` (checked by the flag's parser).
    pub(crate) fn redis(
        url: &str,
        settings: RoomSettings,
        metrics: RoomMetrics,
    ) -> Result<Arc<Engine>, ::redis::RedisError> {
        Ok(Arc::new(Engine {
            store: Store::Redis(Redis::new(url, settings, metrics.clone())?),
            metrics,
        }))
    }

    /// Starts what the engine runs beside the sessions (Redis's pub/sub link) until `shutdown`.
    pub(crate) fn start(&self, tracker: &TaskTracker, shutdown: CancellationToken) {
        match &self.store {
            Store::Embedded(_) => {}
            Store::Redis(redis) => {
                tracker.spawn(Arc::clone(redis).maintain(shutdown));
            }
        }
    }

    /// Whether joins and publishes can be served now (`/readyz`).
    pub(crate) fn is_ready(&self) -> bool {
        match &self.store {
            Store::Embedded(_) => true,
            Store::Redis(redis) => redis.is_reachable(),
        }
    }

    pub(crate) async fn publish(&self, publish: &Publish<'_>, now_ms: u64) -> Result<u64, Problem> {
        match &self.store {
            Store::Embedded(engine) => engine.publish(publish, now_ms),
            Store::Redis(engine) => engine.publish(publish, now_ms).await,
        }
    }

    pub(crate) async fn join(
        &self,
        room: &str,
        since: Option<&Position>,
        member: MemberId,
        queue: &Arc<MemberQueue>,
        now_ms: u64,
    ) -> Result<Joined, Problem> {
        let joined = match &self.store {
            Store::Embedded(engine) => engine.join(room, since, member, queue, now_ms),
            Store::Redis(engine) => engine.join(room, since, member, queue, now_ms).await,
        }?;
        if since.is_some() {
            self.metrics.recovered(joined.recovery.recovered());
        }
        Ok(joined)
    }

    pub(crate) async fn leave(&self, room: &str, member: MemberId, now_ms: u64) {
        self.forget(room, member, now_ms);
    }

    /// Leaves without waiting, for a member dropped without leaving.
    pub(crate) fn forget(&self, room: &str, member: MemberId, now_ms: u64) {
        match &self.store {
            Store::Embedded(engine) => engine.leave(room, member, now_ms),
            Store::Redis(engine) => engine.leave(room, member),
        }
    }
}
