//! Rooms (`GET /rooms?name=NAME`): many people in one room over one connection each.
//!
//! The protocol's frames and every decision about order, dedup and recovery live in the
//! `room-protocol` crate; this module stores and moves the bytes: [`Engine`] (the embedded
//! engine today, Redis behind the same calls for several instances), and [`MemberQueue`], where
//! a room's fan-out meets a session.

mod embedded;
mod member;
mod queue;

use std::sync::Arc;

use room_protocol::order::Recovery;
use room_protocol::{Position, Problem};

pub(crate) use embedded::Embedded;
pub(crate) use member::{Member, MemberLimits};
pub(crate) use queue::{MemberQueue, Taken};

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

/// The engine every session talks to.
#[derive(Debug)]
pub(crate) enum Engine {
    Embedded(Embedded),
}

impl Engine {
    pub(crate) fn embedded(settings: RoomSettings) -> Arc<Engine> {
        Arc::new(Engine::Embedded(Embedded::new(settings)))
    }

    pub(crate) async fn publish(&self, publish: &Publish<'_>, now_ms: u64) -> Result<u64, Problem> {
        match self {
            Engine::Embedded(engine) => engine.publish(publish, now_ms),
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
        match self {
            Engine::Embedded(engine) => engine.join(room, since, member, queue, now_ms),
        }
    }

    pub(crate) async fn leave(&self, room: &str, member: MemberId, now_ms: u64) {
        self.forget(room, member, now_ms);
    }

    /// Leaves without waiting, for a member dropped without leaving.
    pub(crate) fn forget(&self, room: &str, member: MemberId, now_ms: u64) {
        match self {
            Engine::Embedded(engine) => engine.leave(room, member, now_ms),
        }
    }
}
