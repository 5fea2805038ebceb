//! One connection's side of the rooms protocol: reads a request, checks it against this
//! connection's bounds (rooms joined, text length, publish rate), asks the engine, and queues
//! the answer. Every answer goes through the member's queue, behind whatever the room sent
//! before it, so the session writes one ordered stream.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use room_protocol::frames::parse_client;
use room_protocol::limits::TokenBucket;
use room_protocol::{ClientFrame, ErrorCode, Problem, ServerFrame};

use super::{Engine, MemberId, MemberQueue, Publish};
use crate::outgoing::Compression;

/// A request waiting on the engine, polled by the session beside its other work.
pub(crate) type Waiting = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// What a request that waited on the engine came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    Joined(String),
    Acked {
        room: String,
        id: String,
        offset: u64,
    },
    Refused(Problem),
}

/// What bounds one connection, from the server's flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberLimits {
    pub max_rooms: usize,
    pub max_text_bytes: usize,
    pub publish_rate: u32,
    pub publish_burst: u32,
    pub join_rate: u32,
    pub join_burst: u32,
    pub queue_bytes: usize,
    /// Most bytes of room messages a session holds back for its flush interval.
    pub hold_bytes: usize,
}

/// Milliseconds on a monotonic clock (since this process first asked): history ages, the
/// dedup window and the publish and join rates all read this one clock, which a change of the
/// system's time does not move.
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch, for what people read (a message's `time`) and for
/// epochs, which must sort across restarts.
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis().try_into().unwrap_or(u64::MAX))
}

/// One connection in the rooms it joined.
#[derive(Debug)]
pub(crate) struct Member {
    id: MemberId,
    name: String,
    engine: Arc<Engine>,
    queue: Arc<MemberQueue>,
    rooms: HashSet<String>,
    bucket: TokenBucket,
    /// Joins and leaves: what each holds (a local room, a subscription, a Redis read) is
    /// shared, so one connection may not churn it faster than this.
    join_bucket: TokenBucket,
    limits: MemberLimits,
}

impl Member {
    /// A member called `name` (checked by the handshake).
    /// `compression`: how its session sends (its queue keeps what that needs).
    pub(crate) fn new(
        name: String,
        engine: Arc<Engine>,
        limits: MemberLimits,
        compression: Compression,
    ) -> Member {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Member {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name,
            engine,
            queue: Arc::new(MemberQueue::new(
                limits.queue_bytes,
                limits.hold_bytes,
                compression,
            )),
            rooms: HashSet::new(),
            bucket: TokenBucket::new(limits.publish_rate, limits.publish_burst, now_ms()),
            join_bucket: TokenBucket::new(limits.join_rate, limits.join_burst, now_ms()),
            limits,
        }
    }

    /// The queue the session writes from.
    pub(crate) fn queue(&self) -> &Arc<MemberQueue> {
        &self.queue
    }

    /// A binary message: not part of the protocol, refused with an error frame.
    pub(crate) fn binary(&self) {
        self.refuse(Problem::new(
            ErrorCode::BadRequest,
            "the rooms protocol is JSON in text messages",
        ));
    }

    /// One text message from the client: its answer (and, for a join, the replay) is queued,
    /// now or, if the engine must wait (on Redis), when the [`Waiting`] it returns ends and
    /// its outcome is handed to [`Member::finish`]. Until then the session takes no other
    /// request, so answers keep their order, but goes on writing and pinging.
    pub(crate) fn request(&mut self, text: &str) -> Option<Waiting> {
        let frame = match parse_client(text) {
            Ok(frame) => frame,
            Err(problem) => {
                self.refuse(problem);
                return None;
            }
        };
        let now = now_ms();
        match frame {
            ClientFrame::Join { room, .. } | ClientFrame::Leave { room }
                if !self.join_bucket.try_take(now) =>
            {
                self.refuse(
                    Problem::new(
                        ErrorCode::RateLimited,
                        "joining and leaving too fast: send it again in a moment",
                    )
                    .about(Some(&room), None),
                );
                None
            }
            ClientFrame::Join { room, since } => {
                // Joining a room again resumes from `since` as a fresh join would.
                if self.rooms.remove(&room) {
                    self.engine.forget(&room, self.id, now);
                }
                if self.rooms.len() >= self.limits.max_rooms {
                    self.refuse(
                        Problem::new(
                            ErrorCode::TooManyRooms,
                            format!(
                                "a connection may be in {} rooms at most: leave one first",
                                self.limits.max_rooms
                            ),
                        )
                        .about(Some(&room), None),
                    );
                    return None;
                }
                let (engine, queue, member) =
                    (Arc::clone(&self.engine), Arc::clone(&self.queue), self.id);
                self.start(async move {
                    match engine
                        .join(&room, since.as_ref(), member, &queue, now)
                        .await
                    {
                        Ok(_) => Outcome::Joined(room),
                        Err(problem) => Outcome::Refused(problem.about(Some(&room), None)),
                    }
                })
            }
            ClientFrame::Leave { room } => {
                if !self.rooms.remove(&room) {
                    self.refuse(not_joined(&room, None));
                    return None;
                }
                self.engine.forget(&room, self.id, now);
                self.answer(&ServerFrame::Left { room });
                None
            }
            ClientFrame::Publish { room, id, text } => {
                if !self.rooms.contains(&room) {
                    self.refuse(not_joined(&room, Some(&id)));
                    return None;
                }
                if text.len() > self.limits.max_text_bytes {
                    self.refuse(
                        Problem::new(
                            ErrorCode::TooLong,
                            format!(
                                "a text is {} bytes of UTF-8 at most; this one is {}",
                                self.limits.max_text_bytes,
                                text.len()
                            ),
                        )
                        .about(Some(&room), Some(&id)),
                    );
                    return None;
                }
                if !self.bucket.try_take(now) {
                    self.refuse(
                        Problem::new(
                            ErrorCode::RateLimited,
                            "publishing too fast: send it again in a moment",
                        )
                        .about(Some(&room), Some(&id)),
                    );
                    return None;
                }
                let (engine, from) = (Arc::clone(&self.engine), self.name.clone());
                self.start(async move {
                    let publish = Publish {
                        room: &room,
                        id: &id,
                        from: &from,
                        text: &text,
                    };
                    match engine.publish(&publish, now).await {
                        Ok(offset) => Outcome::Acked { room, id, offset },
                        Err(problem) => Outcome::Refused(problem.about(Some(&room), Some(&id))),
                    }
                })
            }
        }
    }

    /// Runs a request's engine call: at once when it need not wait (the memory broker),
    /// else handed to the session.
    fn start(&mut self, call: impl Future<Output = Outcome> + Send + 'static) -> Option<Waiting> {
        let mut call: Waiting = Box::pin(call);
        match (&mut call).now_or_never() {
            Some(outcome) => {
                self.finish(outcome);
                None
            }
            None => Some(call),
        }
    }

    /// What a request that waited on the engine came to: its answer is queued.
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Joined(room) => {
                self.rooms.insert(room);
            }
            Outcome::Acked { room, id, offset } => {
                self.answer(&ServerFrame::Ack { room, id, offset });
            }
            Outcome::Refused(problem) => self.refuse(problem),
        }
    }

    /// Leaves every room (the session is ending).
    pub(crate) fn leave_all(&mut self) {
        let now = now_ms();
        for room in self.rooms.drain() {
            self.engine.forget(&room, self.id, now);
        }
    }

    fn answer(&self, frame: &ServerFrame) {
        self.queue.push_own(frame.to_json().into());
    }

    fn refuse(&self, problem: Problem) {
        tracing::debug!(code = ?problem.code, message = %problem.message, "rooms request refused");
        self.answer(&problem.into_frame());
    }
}

fn not_joined(room: &str, id: Option<&str>) -> Problem {
    Problem::new(
        ErrorCode::NotJoined,
        "this connection has not joined the room: join it first",
    )
    .about(Some(room), id)
}

impl Drop for Member {
    /// A session that ends without `leave_all` (its task dropped at the end of the shutdown
    /// grace) still leaves its rooms, so no room keeps a queue nobody reads.
    fn drop(&mut self) {
        if self.rooms.is_empty() {
            return;
        }
        let now = now_ms();
        for room in self.rooms.drain() {
            self.engine.forget(&room, self.id, now);
        }
    }
}
