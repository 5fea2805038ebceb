//! One connection's side of the rooms protocol: reads a request, checks it against this
//! connection's identity and grants (with `--auth-key`, from its token) and bounds (rooms
//! joined, text length, publish rate), asks the engine, and queues the answer. Every answer
//! goes through the member's queue, behind whatever the room sent before it, so the session
//! writes one ordered stream.
//!
//! Identity is decided here, once, for both engines: in open mode a connection is an
//! `anon-` user under the name of its `?name=`, allowed everywhere; with tokens, its first
//! frame must be `auth`, and a later `auth` refreshes the token (same `sub`), recomputing what
//! it may read and write. Closes that identity calls for (4401, 4429) end the queue; the
//! session closes at [`Member::deadline`] (4401 before `auth`, 4408 at the token's expiry).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use room_protocol::frames::parse_client;
use room_protocol::limits::TokenBucket;
use room_protocol::{ClientFrame, ErrorCode, Problem, ServerFrame};

use room_protocol::bounds::close;
use tokio::time::Instant;

use super::{Engine, Join, MemberId, MemberQueue, Publish, Taken, Visitor};
use crate::auth::{Auth, Grants, Identity, UserSlot};
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
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    start.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch, for what people read (a message's `time`) and for
/// epochs, which must sort across restarts.
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis().try_into().unwrap_or(u64::MAX))
}

/// Who a connection is.
#[derive(Debug)]
enum Who {
    /// Open mode: a random `anon-` user id, the `?name=` it gave, every room.
    Open { user: String, name: String },
    /// Tokens, before the first `auth` frame: nothing but `auth` is taken.
    Unknown,
    /// Tokens, accepted.
    Signed {
        identity: Identity,
        /// Counts this connection against `--max-connections-per-user`.
        _slot: UserSlot,
    },
}

/// One connection in the rooms it joined.
#[derive(Debug)]
pub(crate) struct Member {
    id: MemberId,
    who: Who,
    /// Set with `--auth-key`: tokens decide who the connection is.
    auth: Option<Arc<Auth>>,
    /// When the session must end the connection unless something changes: the end of the
    /// time to authenticate, then the token's expiry.
    deadline: Option<Instant>,
    engine: Arc<Engine>,
    queue: Arc<MemberQueue>,
    rooms: HashSet<String>,
    /// When (ms) this connection last sent `typing` on to each room it is in: a typing
    /// frame sooner than the interval after it is dropped here, before it reaches the room.
    typed: HashMap<String, u64>,
    bucket: TokenBucket,
    /// Joins and leaves: what each holds (a local room, a subscription, a Redis read) is
    /// shared, so one connection may not churn it faster than this.
    join_bucket: TokenBucket,
    limits: MemberLimits,
}

impl Member {
    /// A member: with `auth`, nobody until its token is accepted; without, an anonymous user
    /// called `name` (checked by the handshake).
    /// `compression`: how its session sends (its queue keeps what that needs).
    pub(crate) fn new(
        name: Option<String>,
        auth: Option<Arc<Auth>>,
        engine: Arc<Engine>,
        limits: MemberLimits,
        compression: Compression,
    ) -> Member {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let (who, deadline) = match (&auth, name) {
            (Some(auth), _) => (Who::Unknown, Some(Instant::now() + auth.timeout)),
            (None, name) => (
                Who::Open {
                    user: anonymous_user(),
                    name: name.unwrap_or_default(),
                },
                None,
            ),
        };
        Member {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            who,
            auth,
            deadline,
            engine,
            queue: Arc::new(MemberQueue::new(
                limits.queue_bytes,
                limits.hold_bytes,
                compression,
            )),
            rooms: HashSet::new(),
            typed: HashMap::new(),
            bucket: TokenBucket::new(limits.publish_rate, limits.publish_burst, now_ms()),
            join_bucket: TokenBucket::new(limits.join_rate, limits.join_burst, now_ms()),
            limits,
        }
    }

    /// The queue the session writes from.
    pub(crate) fn queue(&self) -> &Arc<MemberQueue> {
        &self.queue
    }

    /// When the session must call [`Member::deadline_passed`], if ever.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The deadline came: the close it calls for (no `auth` in time, or the token expired).
    pub(crate) fn deadline_passed(&self) -> (u16, &'static str) {
        match self.who {
            Who::Signed { .. } => (close::TOKEN_EXPIRED, "token expired"),
            Who::Unknown | Who::Open { .. } => (
                close::UNAUTHORIZED,
                "no auth frame in time: send {\"type\":\"auth\",\"token\":...} first",
            ),
        }
    }

    /// A binary message: not part of the protocol, refused with an error frame.
    pub(crate) fn binary(&self) {
        if matches!(self.who, Who::Unknown) {
            self.close(close::UNAUTHORIZED, "the first frame must be auth");
            return;
        }
        self.refuse(Problem::new(
            ErrorCode::BadRequest,
            "the rooms protocol is JSON in text messages",
        ));
    }

    /// Ends the connection with `code` (what is still queued is dropped: a client that comes
    /// back resumes from its position).
    fn close(&self, code: u16, reason: &'static str) {
        self.queue.end(Taken::Closed { code, reason });
    }

    /// An `auth` frame: the first one signs the connection in, a later one refreshes it.
    fn authenticate(&mut self, token: &str) {
        let Some(auth) = &self.auth else {
            self.refuse(Problem::new(
                ErrorCode::BadRequest,
                "this server takes no tokens (it was started without --auth-key)",
            ));
            return;
        };
        let identity = match auth.verify(token, wall_ms()) {
            Ok(identity) => identity,
            Err(refusal) => {
                tracing::debug!(reason = refusal.reason(), "token refused");
                self.close(close::UNAUTHORIZED, refusal.reason());
                return;
            }
        };
        let slot = match std::mem::replace(&mut self.who, Who::Unknown) {
            Who::Signed {
                identity: old,
                _slot,
            } if old.user == identity.user => _slot,
            Who::Signed { .. } => {
                self.close(
                    close::UNAUTHORIZED,
                    "a refresh must be for the same user (sub)",
                );
                return;
            }
            Who::Unknown | Who::Open { .. } => match auth.admit(&identity.user) {
                Some(slot) => slot,
                None => {
                    self.close(
                        close::TOO_MANY_CONNECTIONS,
                        "too many connections for this user: close one first",
                    );
                    return;
                }
            },
        };
        let expires_ms = identity.expires_ms;
        let until = Duration::from_millis(expires_ms.saturating_sub(wall_ms()));
        self.deadline = Some(Instant::now() + until);
        // A room the new token no longer lets it read is left.
        let lost: Vec<String> = self
            .rooms
            .iter()
            .filter(|room| !identity.grants.may_read(room))
            .cloned()
            .collect();
        self.answer(&ServerFrame::Authed {
            user: identity.user.clone(),
            name: identity.name.clone(),
            expires: expires_ms,
        });
        self.who = Who::Signed {
            identity,
            _slot: slot,
        };
        let now = now_ms();
        for room in lost {
            self.rooms.remove(&room);
            self.engine.forget(&room, self.id, now);
            self.answer(&ServerFrame::Left {
                room,
                reason: Some("forbidden".to_owned()),
            });
        }
    }

    /// Whether the connection's grants allow `check` in `room` (always in open mode).
    fn may(&self, room: &str, check: fn(&Grants, &str) -> bool) -> bool {
        match &self.who {
            Who::Open { .. } => true,
            Who::Unknown => false,
            Who::Signed { identity, .. } => check(&identity.grants, room),
        }
    }

    /// Who a publish is from: its user id and the name others see.
    fn author(&self) -> (String, String) {
        match &self.who {
            Who::Open { user, name } => (user.clone(), name.clone()),
            Who::Unknown => (String::new(), String::new()),
            Who::Signed { identity, .. } => (identity.user.clone(), identity.name.clone()),
        }
    }

    /// One text message from the client: its answer (and, for a join, the replay) is queued,
    /// now or, if the engine must wait (on Redis), when the [`Waiting`] it returns ends and
    /// its outcome is handed to [`Member::finish`]. Until then the session takes no other
    /// request, so answers keep their order, but goes on writing and pinging.
    pub(crate) fn request(&mut self, text: &str) -> Option<Waiting> {
        let frame = match parse_client(text) {
            Ok(frame) => frame,
            Err(_) if matches!(self.who, Who::Unknown) => {
                self.close(close::UNAUTHORIZED, "the first frame must be auth");
                return None;
            }
            Err(problem) => {
                self.refuse(problem);
                return None;
            }
        };
        if let ClientFrame::Auth { token } = &frame {
            // A refresh verifies a signature: no faster than joins may come.
            if matches!(self.who, Who::Signed { .. }) && !self.join_bucket.try_take(now_ms()) {
                self.refuse(Problem::new(
                    ErrorCode::RateLimited,
                    "refreshing the token too fast: send it again in a moment",
                ));
                return None;
            }
            self.authenticate(token);
            return None;
        }
        if matches!(self.who, Who::Unknown) {
            self.close(close::UNAUTHORIZED, "the first frame must be auth");
            return None;
        }
        let now = now_ms();
        match frame {
            ClientFrame::Auth { .. } => None,
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
            ClientFrame::Join { room, .. } if !self.may(&room, Grants::may_read) => {
                self.refuse(
                    Problem::new(
                        ErrorCode::Forbidden,
                        "your token does not let you read this room",
                    )
                    .about(Some(&room), None),
                );
                None
            }
            ClientFrame::Join {
                room,
                since,
                history,
                presence,
            } => {
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
                let (user, name) = self.author();
                let join = Join {
                    room,
                    since,
                    // Past what any room keeps it means all that is kept.
                    history: usize::try_from(history.unwrap_or(0)).unwrap_or(usize::MAX),
                    visitor: Visitor {
                        user,
                        name,
                        watch: presence,
                    },
                };
                let (engine, queue, member) =
                    (Arc::clone(&self.engine), Arc::clone(&self.queue), self.id);
                self.start(async move {
                    match engine.join(&join, member, &queue, now).await {
                        Ok(_) => Outcome::Joined(join.room),
                        Err(problem) => Outcome::Refused(problem.about(Some(&join.room), None)),
                    }
                })
            }
            ClientFrame::Typing { room } => {
                if !self.rooms.contains(&room) {
                    self.refuse(not_joined(&room, None));
                    return None;
                }
                // Dropped quietly: typing from a member who may not write, or again within the
                // interval (checked here first, so a flood never reaches the room's lock).
                let recent = self.typed.get(&room).is_some_and(|last| {
                    now.saturating_sub(*last) < room_protocol::bounds::TYPING_INTERVAL_MS
                });
                if self.may(&room, Grants::may_write) && !recent {
                    self.typed.insert(room.clone(), now);
                    self.engine.typing(&room, self.id, now);
                }
                None
            }
            ClientFrame::Leave { room } => {
                if !self.rooms.remove(&room) {
                    self.refuse(not_joined(&room, None));
                    return None;
                }
                self.typed.remove(&room);
                self.engine.forget(&room, self.id, now);
                self.answer(&ServerFrame::Left { room, reason: None });
                None
            }
            ClientFrame::Publish { room, id, text } => {
                if !self.rooms.contains(&room) {
                    self.refuse(not_joined(&room, Some(&id)));
                    return None;
                }
                if !self.may(&room, Grants::may_write) {
                    self.refuse(
                        Problem::new(
                            ErrorCode::Forbidden,
                            "your token lets you read this room, not write in it",
                        )
                        .about(Some(&room), Some(&id)),
                    );
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
                let (user, from) = self.author();
                let signed = matches!(self.who, Who::Signed { .. });
                let engine = Arc::clone(&self.engine);
                self.start(async move {
                    let publish = Publish {
                        room: &room,
                        id: &id,
                        user: &user,
                        from: &from,
                        text: &text,
                        dedup_user: signed.then_some(user.as_str()),
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

    /// Leaves every room and gives back the user's connection slot (the session is ending:
    /// a reconnect of the same user may come before its close handshake is over).
    pub(crate) fn leave_all(&mut self) {
        let now = now_ms();
        for room in self.rooms.drain() {
            self.engine.forget(&room, self.id, now);
        }
        if matches!(self.who, Who::Signed { .. }) {
            self.who = Who::Unknown;
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

/// An open-mode user id: `anon-` and 16 random hex digits, new for every connection.
fn anonymous_user() -> String {
    let mut random = [0u8; 8];
    if getrandom::fill(&mut random).is_err() {
        // No system randomness: still unique in this process, and unguessable enough for a
        // name anyone could take anyway in open mode.
        static DRAWN: AtomicU64 = AtomicU64::new(0);
        let count = DRAWN.fetch_add(1, Ordering::Relaxed);
        random = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            count,
        )
        .to_le_bytes();
    }
    format!("anon-{:016x}", u64::from_le_bytes(random))
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
