//! A member's outgoing queue: the one place where a room's fan-out meets a session.
//!
//! The engine pushes room messages into it under the room's lock (so every member gets a
//! room's messages in offset order) and never waits: past `limit` bytes of room messages not
//! yet taken by the session, the member is marked as overflowed and dropped from the room,
//! and its session closes it with 1008. A session pushes its own answers (joined, replays,
//! acks, errors) too; those do not count against the member, and the session writes them as
//! soon as a request is answered, so a client that floods is slowed down by its own socket,
//! not closed, as long as it reads. A room whose history was lost under its
//! members (Redis restarted empty, or lost more than it kept) ends them too ([`Taken::HistoryLost`]),
//! so they join again and are told `recovered: false`.
//!
//! A room's message is queued as the room made it ([`QueuedText`]): its text and the
//! compression every member shares, so the session only decides how to send it.
//!
//! A busy member's session may *hold* its queue for a while (`--room-flush-interval`): room
//! messages pushed meanwhile do not wake it, so what arrives within the interval leaves in one
//! write. A hold never risks the bound: once the held messages pass the hold limit (half of
//! `limit`, less if a whole history, which a gap read pushes at once, would not fit beside
//! it), a push wakes the session as if nothing were held; an answer to the member's own
//! request or an ending always does.

use std::collections::VecDeque;
use std::sync::Mutex;

use hyper_tungstenite::tungstenite::Utf8Bytes;
use tokio::sync::Notify;

use super::shards::lock;
use crate::outgoing::{Compression, QueuedText};

/// What a queued message costs beyond its text (its slot, its handle on the shared frame),
/// counted with it, so many tiny messages cannot hold more than the bound says.
pub(crate) const QUEUED_OVERHEAD: usize = 64;

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<QueuedText>,
    /// Bytes of room messages queued: what the limit applies to.
    room_bytes: usize,
    /// Set once the member is to be closed: nothing more is queued or taken.
    ended: Option<Taken>,
    /// The session holds its room messages until its next write (see [`MemberQueue::hold`]).
    holding: bool,
    /// An answer to the member's own request is queued: the session should not hold.
    answered: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct MemberQueue {
    state: Mutex<State>,
    wake: Notify,
    limit: usize,
    /// Most bytes of room messages held before the session is woken (see [`Self::hold`]).
    hold_limit: usize,
    /// How the member's session sends: only a compressing one takes a room message's shared
    /// compression along with its text.
    compression: Compression,
}

/// What [`MemberQueue::hold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Nothing is queued (a wake-up for what the session already wrote): nothing to hold.
    Nothing,
    /// Held: the session writes at the end of its interval.
    Held,
    /// Past half the bound, an answer to the member's own request queued, or the member
    /// ended: the session should write now.
    WriteNow,
}

/// What a session took from its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// These frames, in order (possibly none).
    Frames,
    /// The member fell behind: close it (1008).
    Overflowed,
    /// A room it is in lost messages it had not received and cannot give them: close it
    /// (1012) so it joins again.
    HistoryLost,
    /// Who the member is calls for this close (a refused token, 4401; too many connections
    /// for its user, 4429).
    Closed { code: u16, reason: &'static str },
}

impl MemberQueue {
    /// A queue of `limit` bytes, which holds at most `hold_limit` of them (capped at half of
    /// `limit`) before it wakes a session that holds it.
    pub(crate) fn new(limit: usize, hold_limit: usize, compression: Compression) -> MemberQueue {
        MemberQueue {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            limit,
            hold_limit: hold_limit.min(limit / 2),
            compression,
        }
    }

    /// Bytes of room messages the member may have waiting.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of room messages waiting now (with [`QUEUED_OVERHEAD`] each).
    pub(crate) fn room_bytes(&self) -> usize {
        self.state().room_bytes
    }

    /// A room's message as this member queues it.
    fn for_member(&self, frame: &QueuedText) -> QueuedText {
        if self.compression.is_on() {
            frame.clone()
        } else {
            frame.text_only()
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// A room message; `false` if the member is over its limit (it is then marked to be
    /// closed and must be dropped from the room).
    pub(crate) fn push_room(&self, frame: &QueuedText) -> bool {
        let mut state = self.state();
        if state.ended.is_some() {
            return false;
        }
        let cost = frame.len() + QUEUED_OVERHEAD;
        if state.room_bytes + cost > self.limit {
            drop(state);
            self.end(Taken::Overflowed);
            return false;
        }
        state.room_bytes += cost;
        state.frames.push_back(self.for_member(frame));
        let wake = !state.holding || state.room_bytes > self.hold_limit;
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        true
    }

    /// Room messages pushed from now until the next [`take_all`](Self::take_all) wake the
    /// session only once they pass half of the limit, if [`Hold::Held`]: see [`Hold`]. Asked
    /// again on any wake-up while held, it says whether that wake-up needs a write (a wake-up
    /// stored before the hold does not).
    pub(crate) fn hold(&self) -> Hold {
        let mut state = self.state();
        let hold = if state.ended.is_some() || state.answered || state.room_bytes > self.hold_limit
        {
            Hold::WriteNow
        } else if state.frames.is_empty() {
            Hold::Nothing
        } else {
            Hold::Held
        };
        state.holding = hold == Hold::Held;
        hold
    }

    /// Ends the member with `how` (not [`Taken::Frames`]): what is queued is dropped and the
    /// session closes it.
    pub(crate) fn end(&self, how: Taken) {
        let mut state = self.state();
        if state.ended.is_none() {
            state.ended = Some(how);
        }
        state.frames.clear();
        state.room_bytes = 0;
        drop(state);
        self.wake.notify_one();
    }

    /// An answer to the member's own request: always queued.
    pub(crate) fn push_own(&self, frame: Utf8Bytes) {
        self.push_answer(QueuedText::own(frame));
    }

    /// A message from a room's history replayed for the member's join: an answer to its own
    /// request, which shares the room's compression of it.
    pub(crate) fn push_replay(&self, frame: &QueuedText) {
        self.push_answer(self.for_member(frame));
    }

    fn push_answer(&self, frame: QueuedText) {
        let mut state = self.state();
        if state.ended.is_some() {
            return;
        }
        state.frames.push_back(frame);
        state.answered = true;
        drop(state);
        self.wake.notify_one();
    }

    /// Moves everything queued into `out`, oldest first.
    pub(crate) fn take_all(&self, out: &mut Vec<QueuedText>) -> Taken {
        let mut state = self.state();
        if let Some(ended) = state.ended {
            return ended;
        }
        out.extend(state.frames.drain(..));
        state.room_bytes = 0;
        state.holding = false;
        state.answered = false;
        Taken::Frames
    }

    /// Resolves once something was queued (or the member overflowed) since the last wait;
    /// a push before the wait is not lost.
    pub(crate) async fn changed(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn frame(n: usize) -> QueuedText {
        QueuedText::shared(Utf8Bytes::from("x".repeat(n)))
    }

    #[test]
    fn room_messages_past_the_limit_overflow_the_member() {
        let queue = MemberQueue::new(1_000, 500, Compression::PLAIN);
        let mut taken = Vec::new();
        // A burst far past the bound: six fit (100 bytes and the overhead each), the seventh
        // overflows.
        let accepted = (0..1_000)
            .take_while(|_| queue.push_room(&frame(100)))
            .count();
        assert_eq!(accepted, 1_000 / (100 + QUEUED_OVERHEAD));
        assert!(!queue.push_room(&frame(1)), "stays overflowed");
        assert_eq!(queue.take_all(&mut taken), Taken::Overflowed);
        assert!(taken.is_empty());
    }

    #[test]
    fn own_answers_never_overflow() {
        let queue = MemberQueue::new(1_000, 500, Compression::PLAIN);
        for _ in 0..50 {
            queue.push_own(Utf8Bytes::from("x".repeat(100)));
        }
        // Own answers go on being queued past the limit.
        let mut taken = Vec::new();
        assert_eq!(queue.take_all(&mut taken), Taken::Frames);
        assert_eq!(taken.len(), 50);
        // Own answers do not count against the member: room messages still fit beside them.
        queue.push_own(Utf8Bytes::from("x".repeat(5_000)));
        assert!(queue.push_room(&frame(1_000 - QUEUED_OVERHEAD)));
        assert!(!queue.push_room(&frame(1)));
    }

    #[test]
    fn only_a_compressing_member_takes_the_shared_compression() {
        let offer = http::HeaderValue::from_static("permessage-deflate");
        let compressing = Compression::of(crate::deflate::negotiate([&offer]));
        let published = frame(1_000);
        assert!(published.shares_compression());
        for (compression, shares) in [(compressing, true), (Compression::PLAIN, false)] {
            let queue = MemberQueue::new(10_000, 5_000, compression);
            assert!(queue.push_room(&published));
            queue.push_replay(&published);
            let mut taken = Vec::new();
            queue.take_all(&mut taken);
            assert_eq!(taken.len(), 2);
            for queued in taken {
                assert_eq!(queued.shares_compression(), shares);
                assert_eq!(queued.text(), published.text());
            }
        }
    }

    #[test]
    fn a_held_queue_wakes_its_session_only_past_half_its_bound() {
        let queue = MemberQueue::new(10_000, 5_000, Compression::PLAIN);
        assert_eq!(queue.hold(), Hold::Nothing, "nothing queued");
        assert!(queue.push_room(&frame(100)));
        assert!(queue.changed().now_or_never().is_some());
        assert_eq!(queue.hold(), Hold::Held);
        let under_half = 10_000 / 2 / (100 + QUEUED_OVERHEAD);
        for _ in 1..under_half {
            assert!(queue.push_room(&frame(100)));
        }
        assert!(queue.changed().now_or_never().is_none(), "held: no wake-up");
        assert!(queue.push_room(&frame(100)));
        assert!(queue.changed().now_or_never().is_some(), "past half: woken");
        // Still past half: holding again is refused until the session takes the queue.
        assert_eq!(queue.hold(), Hold::WriteNow);
        let mut taken = Vec::new();
        assert_eq!(queue.take_all(&mut taken), Taken::Frames);
        assert_eq!(taken.len(), under_half + 1);
        // An answer to the member's own request wakes a held session, and is not held.
        assert!(queue.push_room(&frame(100)));
        assert!(
            queue.changed().now_or_never().is_some(),
            "not held yet: woken"
        );
        assert_eq!(queue.hold(), Hold::Held);
        queue.push_own(Utf8Bytes::from("ack"));
        assert!(queue.changed().now_or_never().is_some());
        assert_eq!(queue.hold(), Hold::WriteNow);
        assert_eq!(queue.take_all(&mut taken), Taken::Frames);
        // A wake-up stored before the hold (two pushes before the session ran) is told apart
        // from one that needs a write.
        assert!(queue.push_room(&frame(100)));
        assert!(queue.push_room(&frame(100)));
        assert!(queue.changed().now_or_never().is_some());
        assert_eq!(queue.hold(), Hold::Held);
        assert_eq!(
            queue.hold(),
            Hold::Held,
            "asked again, still nothing to write"
        );
    }

    #[test]
    fn a_burst_past_the_bound_into_a_held_queue_loses_nothing() {
        // 1,000 messages of 100 bytes (164,000 counted) into a queue of 10,000 held by its
        // session: the session is woken each time half the bound is held, takes the queue and
        // holds it again. Nothing overflows, nothing is lost, few wake-ups.
        let queue = MemberQueue::new(10_000, 5_000, Compression::PLAIN);
        let (mut taken, mut wakes, mut held) = (Vec::new(), 0, false);
        for n in 0..1_000 {
            assert!(queue.push_room(&frame(100)), "message {n} overflowed");
            // The session: woken while it holds, it writes; otherwise it holds.
            if queue.changed().now_or_never().is_some() {
                if held {
                    wakes += 1;
                    assert_eq!(queue.take_all(&mut taken), Taken::Frames);
                }
                // Held again from the next push on (nothing is queued right after a take).
                held = queue.hold() == Hold::Held;
            }
        }
        assert_eq!(queue.take_all(&mut taken), Taken::Frames);
        assert_eq!(taken.len(), 1_000);
        let per_wake = 10_000 / 2 / (100 + QUEUED_OVERHEAD) + 1;
        assert_eq!(wakes, 1_000 / per_wake);
    }

    #[tokio::test]
    async fn a_push_before_the_wait_is_not_lost() {
        let queue = MemberQueue::new(1_000, 500, Compression::PLAIN);
        queue.push_room(&frame(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), queue.changed())
            .await
            .expect("the stored wake-up resolves the wait");
        let mut taken = Vec::new();
        queue.take_all(&mut taken);
        let texts: Vec<&str> = taken.iter().map(|queued| queued.text().as_str()).collect();
        assert_eq!(texts, ["x"]);
    }
}
