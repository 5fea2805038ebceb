//! A room as both clients hold it (the page's room view, the console client's `--room`), plain
//! Rust with no browser types: the publishes typed into one room until the server acknowledges
//! them, what each frame from the server means for the client, and the state a page reload
//! must keep.
//!
//! Order, dedup and recovery are decided by [`room_protocol::order::Seen`]; this module only
//! asks it. A publish keeps its id (128 random bits, chosen by the page) for as long as it
//! waits, so one sent again after a reconnect is recognised by the server's dedup (acked with
//! its first offset, not broadcast twice) and, if the server lost that memory (a restart), by
//! every page's `Seen` (not shown twice).
//!
//! A publish is *to send* until the socket takes it, then *in flight* until its `ack` (or its
//! own `message`) arrives. At most [`MAX_IN_FLIGHT`] are in flight at once, so publishes reach
//! the room in the order typed even when the server asks to wait. On a new connection every publish
//! not yet acked is to send again, after the `joined` that answers the join with `since`.

use std::collections::VecDeque;
use std::fmt;

// The longest text: the protocol's, which is the server's default `--max-text-bytes`. A
// server started with a smaller limit refuses longer ones (`too_long`), and the page marks
// them refused.
use room_protocol::bounds::MAX_TEXT_BYTES;
use room_protocol::order::{Rejoined, Seen};
use room_protocol::{ClientFrame, ErrorCode, PresentUser, ServerFrame, json, names};

use crate::outbox::PushError;

/// Publishes kept at most, to send and in flight together: the `/subscriptions` outbox's bound.
pub const ROOM_OUTBOX_CAPACITY: usize = crate::outbox::OUTBOX_CAPACITY;

/// Publishes sent and not yet acknowledged, at most, on one connection. One, so the room
/// gets them in the order typed: with several in flight, one refused with `rate_limited`
/// (kept, sent again after the pause) is overtaken by the next ones, which the server may take
/// as its bucket refills (a burst test in Chromium saw exactly that). One round trip per
/// publish is far faster than anyone types, and than the server's default rate
/// ([`PUBLISH_RATE`](room_protocol::bounds::PUBLISH_RATE), 20 a second).
pub const MAX_IN_FLIGHT: usize = 1;

/// How long sending pauses after the server said `rate_limited` or `unavailable`: a second
/// refills [`PUBLISH_RATE`](room_protocol::bounds::PUBLISH_RATE) publishes at the server's
/// default rate.
pub const RETRY_AFTER_MILLIS: u32 = 1_000;

/// The line under the room's recent history shown on entry: what follows happens now.
pub const HISTORY_END: &str = "Messages above were sent before you came in.";

/// The line the page shows when a rejoin could not bring back everything.
pub const GAP_NOTICE: &str = "Some messages from while you were away could not be recovered.";

/// One publish waiting for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub id: String,
    pub text: String,
    /// Sent on the current connection, ack not yet in.
    in_flight: bool,
}

/// Where the current connection stands with the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    /// No connection.
    Away,
    /// `join` sent, `joined` not yet in.
    Joining,
    /// The join was refused for now (`unavailable`): join again after the pause.
    JoinHeld,
    /// Joined into a new epoch that has messages already: joined again from its start, and
    /// waiting for that `joined`. Messages of the first join are not taken: they come again
    /// in the replay.
    CatchingUp,
    Joined,
}

/// What a frame from the server means for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Show a message of someone else (or one of ours from before a reload). `earlier`: one
    /// of the room's recent history, from before this client came in.
    Show {
        from: String,
        text: String,
        time: u64,
        earlier: bool,
    },
    /// Who is in the room changed (or, with `everyone`, here is who is: the first frame):
    /// names that came and went, and how many users there are now. `capped`: the room is
    /// past the server's limit for naming them.
    Presence {
        joined: Vec<String>,
        left: Vec<String>,
        everyone: Option<Vec<String>>,
        count: u64,
        capped: bool,
    },
    /// Someone else in the room is typing.
    Typing { user: String, name: String },
    /// Our publish `id` was taken by the room: its line is *delivered*. `time`: the server's
    /// time of it, when its message came back before its ack.
    Delivered { id: String, time: Option<u64> },
    /// Our delivered publish `id` came back as the room's message: the server's time of it,
    /// for its line (which showed this clock's until now).
    Stamped { id: String, time: u64 },
    /// Our publish `id` was refused for good: its line says why, and it left the outbox with
    /// its `text` (for the person to edit and send again).
    Refused {
        id: String,
        reason: String,
        text: String,
    },
    /// The room's joined; not everything since our last position could be recovered. With
    /// `rejoin`, send that join to fetch the new epoch's messages from its start (publishes
    /// wait for its `joined`); without, publishes may go out.
    Gap { rejoin: Option<String> },
    /// The room is joined and nothing was missed: publishes may go out.
    Joined,
    /// The catch-up join from the new epoch's start is answered but could not replay it all
    /// (its history was trimmed meanwhile): these live messages, which arrived while it was
    /// asked and are in no replay, are shown (or, one's own, delivered), oldest first; then
    /// publishes may go out.
    CaughtUp { missed: Vec<Missed> },
    /// The server asks to wait: call [`Room::resume`] after [`RETRY_AFTER_MILLIS`].
    RetryLater,
    /// The server accepted the connection's token (`authed`): who it is now, and when the
    /// token expires (ms since the Unix epoch), to refresh it before.
    SignedIn {
        user: String,
        name: String,
        expires: u64,
        /// Publishes restored from a reload that another user wrote (the sign-in now names
        /// someone else: a shared computer, another account): out of the outbox, never sent
        /// under this user's name; offered back to edit and send.
        not_sent: Vec<Publish>,
    },
    /// Something for the user that concerns no one message.
    Notice(String),
    /// Nothing to show (another room's frame, a `left`, an ack already counted).
    Nothing,
}

/// A live message that arrived while the room was catching up ([`Event::CaughtUp`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub from: String,
    pub text: String,
    pub time: u64,
    /// One's own publish (its id): delivered, its line is there already.
    pub own: Option<String>,
}

/// Live messages kept at most while a room catches up; past it the oldest go (the gap was
/// said already).
pub const CATCH_UP_BUFFER: usize = 256;

/// One room as a client holds it.
#[derive(Debug)]
pub struct Room {
    room: String,
    seen: Seen,
    /// Oldest first.
    pending: VecDeque<Publish>,
    capacity: usize,
    max_text_bytes: usize,
    membership: Membership,
    /// The server said to wait: nothing goes out until [`Room::resume`].
    paused: bool,
    /// Messages of the room's recent history to ask for on entry (a first join).
    history: u64,
    /// Whether to follow who is in the room.
    presence: bool,
    /// The join that is answered asked for history: `joined` then says up to which offset
    /// the replay is history.
    asked_history: bool,
    /// Replayed messages up to this offset are the room's recent history.
    history_until: Option<u64>,
    /// Who is in the room, by user id, as the presence frames say.
    present: std::collections::BTreeMap<String, String>,
    /// Own publishes acked before their message came back, oldest first, at most the
    /// outbox's capacity: the message then gives the line the server's time.
    unstamped: VecDeque<String>,
    /// Whose it is ([`Room::owned_by`]); empty for none said.
    owner: String,
    /// The user the server last said this is (`authed`), saved with the outbox: a reload
    /// signed in as someone else does not send it. Empty in open mode.
    user: String,
    /// Live messages that arrived while catching up, oldest first, at most
    /// [`CATCH_UP_BUFFER`]: `(offset, id, from, text, time)`.
    catching: VecDeque<(u64, String, String, String, u64)>,
}

impl Room {
    pub fn new(room: &str) -> Room {
        Room::with_capacity(room, ROOM_OUTBOX_CAPACITY, MAX_TEXT_BYTES)
    }

    pub fn with_capacity(room: &str, capacity: usize, max_text_bytes: usize) -> Room {
        Room {
            room: room.to_owned(),
            seen: Seen::default(),
            pending: VecDeque::new(),
            capacity,
            max_text_bytes,
            membership: Membership::Away,
            paused: false,
            history: 0,
            presence: false,
            asked_history: false,
            history_until: None,
            present: std::collections::BTreeMap::new(),
            unstamped: VecDeque::new(),
            owner: String::new(),
            user: String::new(),
            catching: VecDeque::new(),
        }
    }

    /// On entry (a first join, without a position), ask for the room's last `messages`.
    pub fn with_history(mut self, messages: u64) -> Room {
        self.history = messages;
        self
    }

    /// Whose room this is, for what is saved for a reload: the server and the name the page
    /// was opened with. A saved state of another owner is refused ([`Room::restore`]), so a
    /// tab reloaded under another name never sends one person's messages as another's.
    pub fn owned_by(mut self, owner: &str) -> Room {
        owner.clone_into(&mut self.owner);
        self
    }

    /// Follow who is in the room ([`Event::Presence`]).
    pub fn with_presence(mut self) -> Room {
        self.presence = true;
        self
    }

    /// Whether the messages arriving now are still the room's recent history (a join that
    /// asked for it, until its last one).
    pub fn in_history(&self) -> bool {
        self.history_until.is_some()
    }

    /// The `typing` frame to send, while joined: the caller sends it at most once per
    /// [`TYPING_INTERVAL_MS`](room_protocol::bounds::TYPING_INTERVAL_MS), which is all the
    /// server forwards.
    pub fn typing_frame(&self) -> Option<String> {
        (self.membership == Membership::Joined).then(|| {
            encode(&ClientFrame::Typing {
                room: self.room.clone(),
            })
        })
    }

    /// The names of who is in the room, sorted, as the last presence frames said.
    pub fn present(&self) -> Vec<String> {
        let mut names: Vec<String> = self.present.values().cloned().collect();
        // Unstable: the same order for equal names anyway, and the smaller sort in the wasm.
        names.sort_unstable();
        names
    }

    pub fn name(&self) -> &str {
        &self.room
    }

    /// Whether `text` is short enough to publish.
    pub fn check_length(&self, text: &str) -> Result<(), PushError> {
        if text.len() > self.max_text_bytes {
            return Err(PushError::TooLong {
                bytes: text.len(),
                limit: self.max_text_bytes,
            });
        }
        Ok(())
    }

    /// Queues a publish with its `id` (unique, from the client's random source).
    pub fn push(&mut self, id: String, text: String) -> Result<(), PushError> {
        if text.is_empty() {
            return Err(PushError::Empty);
        }
        self.check_length(&text)?;
        if self.pending.len() >= self.capacity {
            return Err(PushError::Full);
        }
        self.pending.push_back(Publish {
            id,
            text,
            in_flight: false,
        });
        Ok(())
    }

    /// A connection opened: the join frame to send first, resuming from our position.
    pub fn connection_opened(&mut self) -> String {
        self.forget_connection();
        self.membership = Membership::Joining;
        self.join_frame()
    }

    /// The connection ended: every publish not acked waits to go out again.
    pub fn connection_closed(&mut self) {
        self.forget_connection();
    }

    fn forget_connection(&mut self) {
        self.membership = Membership::Away;
        self.paused = false;
        self.catching.clear();
        for publish in &mut self.pending {
            publish.in_flight = false;
        }
    }

    fn join_frame(&mut self) -> String {
        let since = self.seen.position();
        // History on entry only: a client that has a position resumes from it.
        self.asked_history = since.is_none() && self.history > 0;
        encode(&ClientFrame::Join {
            room: self.room.clone(),
            since,
            history: self.asked_history.then_some(self.history),
            presence: self.presence,
        })
    }

    /// The pause is over: the join frame to send again if the join was held.
    pub fn resume(&mut self) -> Option<String> {
        self.paused = false;
        (self.membership == Membership::JoinHeld).then(|| {
            self.membership = Membership::Joining;
            self.join_frame()
        })
    }

    /// The next publish to send on this connection: its id and frame. `None` until the room is
    /// joined, while paused, or with [`MAX_IN_FLIGHT`] publishes unacknowledged.
    pub fn next_to_send(&self) -> Option<(String, String)> {
        if self.membership != Membership::Joined || self.paused || self.in_flight() >= MAX_IN_FLIGHT
        {
            return None;
        }
        let publish = self.pending.iter().find(|publish| !publish.in_flight)?;
        let frame = encode(&ClientFrame::Publish {
            room: self.room.clone(),
            id: publish.id.clone(),
            text: publish.text.clone(),
        });
        Some((publish.id.clone(), frame))
    }

    /// The socket took the publish `id` that [`Room::next_to_send`] gave.
    pub fn mark_sent(&mut self, id: &str) {
        if let Some(publish) = self.pending.iter_mut().find(|publish| publish.id == id) {
            publish.in_flight = true;
        }
    }

    fn in_flight(&self) -> usize {
        self.pending
            .iter()
            .filter(|publish| publish.in_flight)
            .count()
    }

    /// Whether the server owes this connection an answer (a `joined` or an `ack`): while it
    /// does, a silent server is taken for hung.
    pub fn awaiting_reply(&self) -> bool {
        matches!(
            self.membership,
            Membership::Joining | Membership::CatchingUp
        ) || self.in_flight() > 0
    }

    /// A presence frame applied as set operations: who came and went (names), and, for a
    /// full list, everyone.
    fn presence_changed(
        &mut self,
        count: u64,
        members: Option<Vec<PresentUser>>,
        joined: Option<Vec<PresentUser>>,
        left: Option<Vec<PresentUser>>,
        capped: bool,
    ) -> Event {
        let mut came = Vec::new();
        let mut went = Vec::new();
        let everyone = members.map(|members| {
            self.present = members
                .into_iter()
                .map(|present| (present.user, present.name))
                .collect();
            self.present()
        });
        for present in joined.into_iter().flatten() {
            // Named again (set semantics): no news.
            if self
                .present
                .insert(present.user, present.name.clone())
                .is_none()
            {
                came.push(present.name);
            }
        }
        for present in left.into_iter().flatten() {
            if let Some(name) = self.present.remove(&present.user) {
                went.push(name);
            }
        }
        if capped {
            self.present.clear();
        }
        Event::Presence {
            joined: came,
            left: went,
            everyone,
            count,
            capped,
        }
    }

    /// A text frame from the server.
    pub fn receive(&mut self, text: &str) -> Event {
        let Ok(frame) = ServerFrame::from_json(text) else {
            return Event::Notice(format!(
                "The server sent something this page does not understand: {text}"
            ));
        };
        match frame {
            ServerFrame::Joined {
                room,
                epoch,
                offset,
                recovered,
            } => {
                if room != self.room {
                    return Event::Nothing;
                }
                let rejoined = self.seen.joined(&epoch, offset, recovered);
                self.history_until =
                    (self.asked_history && !recovered && offset > 0).then_some(offset);
                if self.membership == Membership::CatchingUp {
                    // The gap was said already; whatever this replay holds is all there is.
                    self.membership = Membership::Joined;
                    let caught = std::mem::take(&mut self.catching);
                    if recovered || caught.is_empty() {
                        // The replay brings them again, in order.
                        return Event::Joined;
                    }
                    return Event::CaughtUp {
                        missed: self.missed(caught),
                    };
                }
                match rejoined {
                    Rejoined::Complete => {
                        self.membership = Membership::Joined;
                        Event::Joined
                    }
                    Rejoined::Gap => match self.seen.from_epoch_start() {
                        Some(_) => {
                            self.membership = Membership::CatchingUp;
                            Event::Gap {
                                rejoin: Some(self.join_frame()),
                            }
                        }
                        None => {
                            self.membership = Membership::Joined;
                            Event::Gap { rejoin: None }
                        }
                    },
                }
            }
            ServerFrame::Message {
                room,
                offset,
                id,
                user: _,
                from,
                text,
                time,
            } => {
                if room != self.room {
                    return Event::Nothing;
                }
                if self.membership == Membership::CatchingUp {
                    // Kept: the catch-up's replay brings it again, unless that replay cannot
                    // be given (then it is shown from here).
                    if self.catching.len() == CATCH_UP_BUFFER {
                        self.catching.pop_front();
                    }
                    self.catching.push_back((offset, id, from, text, time));
                    return Event::Nothing;
                }
                if let Some(until) = self.history_until.filter(|until| offset <= *until) {
                    if offset == until {
                        self.history_until = None;
                    }
                    return if self.seen.earlier(&id) {
                        Event::Show {
                            from,
                            text,
                            time,
                            earlier: true,
                        }
                    } else {
                        Event::Nothing
                    };
                }
                self.history_until = None;
                let show = self.seen.message(offset, &id);
                // Our own publish coming back before its ack (or replayed after a lost ack):
                // its line is there already, and this is its delivery.
                if self.take(&id).is_some() {
                    return Event::Delivered {
                        id,
                        time: Some(time),
                    };
                }
                if let Some(at) = self.unstamped.iter().position(|own| *own == id) {
                    self.unstamped.remove(at);
                    return Event::Stamped { id, time };
                }
                if show {
                    Event::Show {
                        from,
                        text,
                        time,
                        earlier: false,
                    }
                } else {
                    Event::Nothing
                }
            }
            ServerFrame::Ack { room, id, .. } => {
                if room != self.room || self.take(&id).is_none() {
                    return Event::Nothing;
                }
                // Remembered, so its message coming back (live or republished into a new
                // epoch) is not shown a second time.
                self.seen.own(&id);
                if self.unstamped.len() == self.capacity {
                    self.unstamped.pop_front();
                }
                self.unstamped.push_back(id.clone());
                Event::Delivered { id, time: None }
            }
            ServerFrame::Left {
                room,
                reason: Some(reason),
            } if room == self.room => Event::Notice(format!(
                "The server took this page out of the room ({reason}): your sign-in no longer lets you read it."
            )),
            ServerFrame::Authed {
                user,
                name,
                expires,
            } => {
                // The token goes before the join, and nothing is published before `joined`:
                // what another user wrote is taken out before it could go.
                let not_sent = if !self.user.is_empty() && self.user != user {
                    self.pending.drain(..).collect()
                } else {
                    Vec::new()
                };
                self.user.clone_from(&user);
                Event::SignedIn {
                    user,
                    name,
                    expires,
                    not_sent,
                }
            }
            ServerFrame::Presence {
                room,
                count,
                members,
                joined,
                left,
                capped,
            } if room == self.room => self.presence_changed(count, members, joined, left, capped),
            ServerFrame::Typing { room, user, name } if room == self.room => {
                Event::Typing { user, name }
            }
            ServerFrame::Left { .. }
            | ServerFrame::Presence { .. }
            | ServerFrame::Typing { .. } => Event::Nothing,
            ServerFrame::Error {
                code,
                message,
                room,
                id,
            } => self.refused(code, message, room, id),
        }
    }

    fn refused(
        &mut self,
        code: ErrorCode,
        message: String,
        room: Option<String>,
        id: Option<String>,
    ) -> Event {
        let ours = room.as_deref().is_none_or(|room| room == self.room);
        let wait = matches!(code, ErrorCode::RateLimited | ErrorCode::Unavailable);
        if let Some(id) = id.filter(|_| ours) {
            if wait {
                if let Some(publish) = self.pending.iter_mut().find(|publish| publish.id == id) {
                    // Kept in its place, and sent again with the same id after the pause.
                    publish.in_flight = false;
                    self.paused = true;
                    return Event::RetryLater;
                }
                return Event::Nothing;
            }
            return match self.take(&id) {
                Some(publish) => Event::Refused {
                    id,
                    reason: refusal_reason(code, &message),
                    text: publish.text,
                },
                None => Event::Nothing,
            };
        }
        if ours
            && matches!(
                self.membership,
                Membership::Joining | Membership::CatchingUp
            )
        {
            if wait {
                self.membership = Membership::JoinHeld;
                self.paused = true;
                return Event::RetryLater;
            }
            return Event::Notice(format!(
                "The server refused to join room {}: {message}",
                self.room
            ));
        }
        Event::Notice(format!("The server refused a request: {message}"))
    }

    /// The live messages kept while catching up, as shown now: each once (one already seen
    /// is not), one's own delivered.
    fn missed(&mut self, caught: VecDeque<(u64, String, String, String, u64)>) -> Vec<Missed> {
        let mut missed = Vec::new();
        for (_, id, from, text, time) in caught {
            let own = self.take(&id).map(|_| {
                self.seen.own(&id);
                id.clone()
            });
            if own.is_some() || self.seen.earlier(&id) {
                missed.push(Missed {
                    from,
                    text,
                    time,
                    own,
                });
            }
        }
        missed
    }

    /// Takes publish `id` out of the outbox.
    fn take(&mut self, id: &str) -> Option<Publish> {
        let position = self.pending.iter().position(|publish| publish.id == id)?;
        self.pending.remove(position)
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// The publishes waiting, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &Publish> {
        self.pending.iter()
    }

    /// How many publishes wait, and for what.
    pub fn waiting(&self) -> RoomWaiting {
        let in_flight = self.in_flight();
        RoomWaiting {
            to_send: self.pending.len() - in_flight,
            for_ack: in_flight,
        }
    }

    /// What a reload must keep, as one string for `sessionStorage`.
    pub fn save(&self) -> String {
        let mut out = String::new();
        let mut saved = json::ObjectWriter::new(&mut out);
        saved
            .number("version", u64::from(SAVED_VERSION))
            .string("owner", &self.owner)
            .string("user", &self.user)
            .string("room", &self.room)
            .raw("seen", |out| self.seen.write_json(out))
            .raw("pending", |out| {
                out.push('[');
                for (at, publish) in self.pending.iter().enumerate() {
                    if at > 0 {
                        out.push(',');
                    }
                    json::ObjectWriter::new(out)
                        .string("id", &publish.id)
                        .string("text", &publish.text)
                        .end();
                }
                out.push(']');
            })
            .end();
        out
    }

    /// Puts back what [`Room::save`] wrote for this room. Anything wrong (another version,
    /// another room or owner, more publishes than the outbox keeps, a bad id or text) refuses
    /// the whole entry, with the reason, and leaves the room as it was.
    pub fn restore(&mut self, saved: &str) -> Result<(), String> {
        let shape = "it is not what this page saves";
        let saved = json::parse(saved).map_err(|error| format!("{shape} ({error})"))?;
        let field = |name: &str| {
            saved
                .get(name)
                .ok_or_else(|| format!("{shape} (no {name:?})"))
        };
        let text = |name: &str| {
            field(name)?
                .as_str()
                .ok_or_else(|| format!("{shape} ({name:?} is not a string)"))
        };
        let version = field("version")?.as_u64();
        if version != Some(u64::from(SAVED_VERSION)) {
            return Err(match version {
                Some(version) => format!("it was written by version {version} of the page"),
                None => format!("{shape} (no version)"),
            });
        }
        let (owner, user, room) = (text("owner")?, text("user")?, text("room")?);
        if room != self.room {
            return Err(format!("it belongs to room {room:?}, not {:?}", self.room));
        }
        if owner != self.owner {
            return Err(format!(
                "it was saved by {owner:?}, not {:?}: its messages are not sent under another name",
                self.owner
            ));
        }
        let seen = Seen::from_json(field("seen")?).ok_or_else(|| format!("{shape} (seen)"))?;
        let list = field("pending")?
            .as_array()
            .ok_or_else(|| format!("{shape} (pending)"))?;
        if list.len() > self.capacity {
            return Err(format!(
                "it holds {} messages, more than the {} the outbox keeps",
                list.len(),
                self.capacity
            ));
        }
        let mut pending = VecDeque::with_capacity(list.len());
        for item in list {
            let (Some(id), Some(text)) = (
                item.get("id").and_then(json::Value::as_str),
                item.get("text").and_then(json::Value::as_str),
            ) else {
                return Err(format!("{shape} (a message in it)"));
            };
            if !names::is_message_id(id) {
                return Err("a message in it has an invalid id".to_owned());
            }
            if text.is_empty() || self.check_length(text).is_err() {
                return Err("a message in it is empty or too long".to_owned());
            }
            pending.push_back(Publish {
                id: id.to_owned(),
                text: text.to_owned(),
                in_flight: false,
            });
        }
        user.clone_into(&mut self.user);
        self.seen = seen;
        self.pending = pending;
        Ok(())
    }
}

/// The publishes an earlier version of the page saved for a room (versions 1 and 2, under a
/// key without the owner): `(id, text)` of each valid one, at most the outbox's capacity.
/// Whose they were is not known: the page offers them back rather than send them.
pub fn earlier_pending(saved: &str) -> Vec<(String, String)> {
    let Ok(saved) = json::parse(saved) else {
        return Vec::new();
    };
    saved
        .get("pending")
        .and_then(json::Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|item| {
            let id = item.get("id")?.as_str()?;
            let text = item.get("text")?.as_str()?;
            (names::is_message_id(id) && !text.is_empty()).then(|| (id.to_owned(), text.to_owned()))
        })
        .take(ROOM_OUTBOX_CAPACITY)
        .collect()
}

/// The first field of every saved room this version writes (2: with its owner; 3: with the
/// signed-in user, written by hand).
const SAVED_VERSION: u32 = 3;

fn encode(frame: &ClientFrame) -> String {
    frame.to_json()
}

/// Why a publish was refused for good, as its line says it.
fn refusal_reason(code: ErrorCode, message: &str) -> String {
    match code {
        ErrorCode::TooLong => "refused: too long for this server".to_owned(),
        ErrorCode::Forbidden => "refused: you may not write in this room".to_owned(),
        ErrorCode::BadRequest
        | ErrorCode::BadRoom
        | ErrorCode::NotJoined
        | ErrorCode::TooManyRooms
        | ErrorCode::RateLimited
        | ErrorCode::Unavailable => format!("refused: {message}"),
    }
}

/// The publishes in the outbox, as the page tells the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomWaiting {
    pub to_send: usize,
    pub for_ack: usize,
}

impl fmt::Display for RoomWaiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "message" } else { "messages" };
        match (self.to_send, self.for_ack) {
            (0, 0) => Ok(()),
            (sending, 0) => write!(f, "{sending} {} waiting to be sent", plural(sending)),
            (0, ack) => write!(f, "{ack} {} sending", plural(ack)),
            (sending, ack) => write!(
                f,
                "{sending} {} waiting to be sent, {ack} sending",
                plural(sending)
            ),
        }
    }
}

/// 16 random bytes as the 32 hex digits of a message id.
pub fn message_id(random: &[u8; 16]) -> String {
    random.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A server time (milliseconds since the Unix epoch) as `HH:MM` on a clock `offset_minutes`
/// ahead of UTC (the page passes `-Date.getTimezoneOffset()`).
pub fn clock_time(millis: u64, offset_minutes: i64) -> String {
    let minutes = i64::try_from(millis / 60_000).unwrap_or(0) + offset_minutes;
    let of_day = minutes.rem_euclid(24 * 60);
    format!("{:02}:{:02}", of_day / 60, of_day % 60)
}

/// `value` for a URL query, every byte but the unreserved ones percent-encoded.
pub fn query_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Server frames for the tests of this module and of the session.
#[cfg(test)]
pub(crate) mod test_frames {
    use room_protocol::{ErrorCode, ServerFrame};

    const ROOM: &str = "lobby";

    pub(crate) fn joined(epoch: &str, offset: u64, recovered: bool) -> String {
        ServerFrame::Joined {
            room: ROOM.into(),
            epoch: epoch.into(),
            offset,
            recovered,
        }
        .to_json()
    }

    pub(crate) fn message(offset: u64, id: &str, from: &str, text: &str) -> String {
        ServerFrame::Message {
            room: ROOM.into(),
            offset,
            id: id.into(),
            user: format!("u-{from}"),
            from: from.into(),
            text: text.into(),
            time: 1_764_400_000_123,
        }
        .to_json()
    }

    pub(crate) fn ack(id: &str, offset: u64) -> String {
        ServerFrame::Ack {
            room: ROOM.into(),
            id: id.into(),
            offset,
        }
        .to_json()
    }

    pub(crate) fn error(code: ErrorCode, id: Option<&str>) -> String {
        ServerFrame::Error {
            code,
            message: "words".into(),
            room: Some(ROOM.into()),
            id: id.map(str::to_owned),
        }
        .to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::test_frames::{ack, error, joined, message};
    use super::*;

    const ROOM: &str = "lobby";

    /// Sends everything the room offers now; returns the ids.
    fn send_all(room: &mut Room) -> Vec<String> {
        let mut sent = Vec::new();
        while let Some((id, frame)) = room.next_to_send() {
            assert!(frame.contains(&id), "{frame}");
            room.mark_sent(&id);
            sent.push(id);
        }
        sent
    }

    fn shown(from: &str, text: &str) -> Event {
        Event::Show {
            from: from.into(),
            text: text.into(),
            time: 1_764_400_000_123,
            earlier: false,
        }
    }

    fn earlier(from: &str, text: &str) -> Event {
        Event::Show {
            from: from.into(),
            text: text.into(),
            time: 1_764_400_000_123,
            earlier: true,
        }
    }

    fn delivered(id: &str) -> Event {
        Event::Delivered {
            id: id.into(),
            time: None,
        }
    }

    #[test]
    fn joins_then_publishes_and_resumes_from_its_position() {
        let mut room = Room::new(ROOM);
        room.push("m1".into(), "hello".into()).expect("queued");
        assert_eq!(room.next_to_send(), None, "nothing before a connection");
        assert_eq!(
            room.connection_opened(),
            r#"{"type":"join","room":"lobby"}"#
        );
        assert_eq!(room.next_to_send(), None, "nothing before joined");
        assert!(room.awaiting_reply());
        assert_eq!(room.receive(&joined("E", 4, false)), Event::Joined);
        assert_eq!(send_all(&mut room), ["m1"]);
        assert!(room.awaiting_reply());
        assert_eq!(room.waiting().to_string(), "1 message sending");
        assert_eq!(
            room.receive(&message(5, "x", "bo", "hi")),
            shown("bo", "hi")
        );
        assert_eq!(room.receive(&ack("m1", 6)), delivered("m1"));
        assert!(!room.awaiting_reply());
        assert!(room.is_empty());
        // Its own message coming back after the ack is not shown again: it gives the line
        // the server's time.
        assert_eq!(
            room.receive(&message(6, "m1", "ana", "hello")),
            Event::Stamped {
                id: "m1".into(),
                time: 1_764_400_000_123
            }
        );
        room.connection_closed();
        assert_eq!(
            room.connection_opened(),
            r#"{"type":"join","room":"lobby","since":{"epoch":"E","offset":6}}"#
        );
    }

    #[test]
    fn unacknowledged_publishes_go_out_again_with_their_ids_after_a_reconnect() {
        let mut room = Room::new(ROOM);
        room.connection_opened();
        room.receive(&joined("E", 0, false));
        room.push("a".into(), "one".into()).expect("queued");
        room.push("b".into(), "two".into()).expect("queued");
        assert_eq!(send_all(&mut room), ["a"], "one in flight");
        assert_eq!(room.receive(&ack("a", 1)), delivered("a"));
        assert_eq!(send_all(&mut room), ["b"]);
        room.connection_closed();
        assert_eq!(room.waiting().to_string(), "1 message waiting to be sent");
        room.connection_opened();
        assert_eq!(
            send_all(&mut room),
            Vec::<String>::new(),
            "only after joined"
        );
        // The server died: a new epoch. "b" was taken and broadcast before, its ack lost.
        assert_eq!(
            room.receive(&joined("F", 0, false)),
            Event::Gap { rejoin: None }
        );
        assert_eq!(send_all(&mut room), ["b"]);
        assert_eq!(room.receive(&ack("b", 1)), delivered("b"));
    }

    #[test]
    fn a_message_published_again_into_a_new_epoch_is_shown_once() {
        let mut room = Room::new(ROOM);
        room.connection_opened();
        room.receive(&joined("E", 0, false));
        assert_eq!(
            room.receive(&message(1, "x", "bo", "hi")),
            shown("bo", "hi")
        );
        assert_eq!(room.receive(&message(1, "x", "bo", "hi")), Event::Nothing);
        room.connection_closed();
        room.connection_opened();
        assert_eq!(
            room.receive(&joined("F", 0, false)),
            Event::Gap { rejoin: None }
        );
        // bo's page resent "x" (its ack was lost): a new offset in the new epoch, same id.
        assert_eq!(room.receive(&message(1, "x", "bo", "hi")), Event::Nothing);
        assert_eq!(
            room.receive(&message(2, "y", "bo", "more")),
            shown("bo", "more")
        );
    }

    #[test]
    fn a_restarted_room_with_messages_is_fetched_from_the_start_of_its_epoch() {
        let mut room = Room::new(ROOM);
        room.connection_opened();
        room.receive(&joined("E", 0, false));
        assert_eq!(
            room.receive(&message(1, "x", "bo", "hi")),
            shown("bo", "hi")
        );
        room.push("a".into(), "mine".into()).expect("queued");
        send_all(&mut room);
        room.connection_closed();
        room.connection_opened();
        // The engine restarted; two messages were published into the new epoch before this
        // join: "x" again (bo's resend) and "y".
        assert_eq!(
            room.receive(&joined("F", 2, false)),
            Event::Gap {
                rejoin: Some(
                    r#"{"type":"join","room":"lobby","since":{"epoch":"F","offset":0}}"#.into()
                )
            }
        );
        assert!(room.awaiting_reply());
        assert_eq!(room.next_to_send(), None, "publishes wait for the replay");
        // A live message of the first join is not taken: it comes again in the replay.
        assert_eq!(room.receive(&message(3, "z", "cy", "live")), Event::Nothing);
        assert_eq!(room.receive(&joined("F", 3, true)), Event::Joined);
        let replay = [
            (message(1, "x", "bo", "hi"), Event::Nothing),
            (message(2, "y", "bo", "new"), shown("bo", "new")),
            (message(3, "z", "cy", "live"), shown("cy", "live")),
        ];
        for (frame, expected) in replay {
            assert_eq!(room.receive(&frame), expected, "{frame}");
        }
        assert_eq!(send_all(&mut room), ["a"]);
        // A replay that could not be given after all: no second gap line, no loop.
        room.connection_closed();
        room.connection_opened();
        assert!(matches!(
            room.receive(&joined("G", 5, false)),
            Event::Gap { rejoin: Some(_) }
        ));
        assert_eq!(room.receive(&joined("G", 9, false)), Event::Joined);
        assert_eq!(
            room.receive(&message(10, "w", "bo", "on")),
            shown("bo", "on")
        );
    }

    #[test]
    fn live_messages_while_catching_up_are_shown_when_the_replay_cannot_bring_them() {
        let caught_up = |recovered: bool| {
            let mut room = Room::new(ROOM);
            room.connection_opened();
            room.receive(&joined("E", 0, false));
            room.receive(&message(1, "x", "bo", "hi"));
            room.push("mine".into(), "own".into()).expect("queued");
            // A new epoch with messages already: joined again from its start.
            room.connection_closed();
            room.connection_opened();
            assert!(matches!(
                room.receive(&joined("F", 3, false)),
                Event::Gap { rejoin: Some(_) }
            ));
            // Live messages of the first join, one of them one's own sent before.
            send_all(&mut room);
            for (offset, id, from, text) in [(4, "l4", "cy", "four"), (5, "mine", "ana", "own")] {
                assert_eq!(
                    room.receive(&message(offset, id, from, text)),
                    Event::Nothing
                );
            }
            (room.receive(&joined("F", 5, recovered)), room)
        };
        // The replay can be given: it brings them, in order; nothing is shown twice.
        let (event, mut room) = caught_up(true);
        assert_eq!(event, Event::Joined);
        assert_eq!(
            room.receive(&message(4, "l4", "cy", "four")),
            shown("cy", "four")
        );
        // The history was trimmed: they are shown from what was kept, one's own delivered.
        let (event, mut room) = caught_up(false);
        assert_eq!(
            event,
            Event::CaughtUp {
                missed: vec![
                    Missed {
                        from: "cy".into(),
                        text: "four".into(),
                        time: 1_764_400_000_123,
                        own: None
                    },
                    Missed {
                        from: "ana".into(),
                        text: "own".into(),
                        time: 1_764_400_000_123,
                        own: Some("mine".into())
                    },
                ]
            }
        );
        assert!(room.is_empty(), "the own publish is delivered");
        assert_eq!(
            room.receive(&message(6, "l6", "cy", "six")),
            shown("cy", "six")
        );
    }

    #[test]
    fn past_its_bound_the_catch_up_buffer_keeps_the_newest() {
        let mut room = Room::new(ROOM);
        room.connection_opened();
        room.receive(&joined("E", 0, false));
        room.receive(&message(1, "x", "bo", "hi"));
        room.connection_closed();
        room.connection_opened();
        room.receive(&joined("F", 3, false));
        let burst = CATCH_UP_BUFFER + 44;
        for n in 0..burst {
            let offset = 4 + n as u64;
            room.receive(&message(offset, &format!("b{n}"), "bo", &n.to_string()));
        }
        let Event::CaughtUp { missed } = room.receive(&joined("F", 3 + burst as u64, false)) else {
            panic!("caught up");
        };
        assert_eq!(missed.len(), CATCH_UP_BUFFER);
        assert_eq!(missed[0].text, 44.to_string());
        assert_eq!(missed[CATCH_UP_BUFFER - 1].text, (burst - 1).to_string());
    }

    #[test]
    fn own_message_arriving_before_its_ack_is_its_delivery() {
        let mut room = Room::new(ROOM);
        room.connection_opened();
        room.receive(&joined("E", 0, false));
        room.push("m".into(), "mine".into()).expect("queued");
        send_all(&mut room);
        assert_eq!(
            room.receive(&message(1, "m", "ana", "mine")),
            Event::Delivered {
                id: "m".into(),
                time: Some(1_764_400_000_123)
            },
            "with the server's time"
        );
        assert_eq!(room.receive(&ack("m", 1)), Event::Nothing);
        assert!(room.is_empty());
    }

    #[test]
    fn own_message_arriving_after_its_ack_gives_its_line_the_servers_time_once() {
        let mut room = Room::with_capacity(ROOM, 2, MAX_TEXT_BYTES);
        room.connection_opened();
        room.receive(&joined("E", 0, false));
        // More acked publishes than the outbox holds: the oldest is no longer waited for.
        let mut offset = 0;
        for id in ["a", "b", "c"] {
            room.push(id.into(), "mine".into()).expect("queued");
            send_all(&mut room);
            offset += 1;
            assert_eq!(room.receive(&ack(id, offset)), delivered(id));
        }
        assert_eq!(
            room.receive(&message(1, "a", "ana", "mine")),
            Event::Nothing,
            "past the bound: not waited for, and not shown"
        );
        for (offset, id) in [(2, "b"), (3, "c")] {
            assert_eq!(
                room.receive(&message(offset, id, "ana", "mine")),
                Event::Stamped {
                    id: id.into(),
                    time: 1_764_400_000_123
                }
            );
        }
        // Replayed again (a rejoin): nothing more.
        room.receive(&joined("E", 0, true));
        assert_eq!(
            room.receive(&message(3, "c", "ana", "mine")),
            Event::Nothing
        );
    }

    #[test]
    fn waiting_answers_keep_the_publish_and_final_ones_take_it_out() {
        let mut room = Room::new(ROOM);
        room.connection_opened();
        room.receive(&joined("E", 0, false));
        for id in ["a", "b", "c"] {
            room.push(id.into(), format!("text {id}")).expect("queued");
        }
        // (the answer to the publish in flight, what it means, publishes left, sent next)
        let table = [
            (
                error(ErrorCode::RateLimited, Some("a")),
                Event::RetryLater,
                3,
                "a",
            ),
            (ack("a", 1), delivered("a"), 2, "b"),
            (
                error(ErrorCode::Unavailable, Some("b")),
                Event::RetryLater,
                2,
                "b",
            ),
            (ack("b", 2), delivered("b"), 1, "c"),
        ];
        assert_eq!(send_all(&mut room), ["a"]);
        for (answer, expected, left, next) in table {
            assert_eq!(room.receive(&answer), expected, "{answer}");
            assert_eq!(room.len(), left, "{answer}");
            if expected == Event::RetryLater {
                assert_eq!(room.next_to_send(), None, "paused");
                assert_eq!(room.resume(), None, "the join was not held");
            }
            // The one that waited goes again first, with its id: nothing overtakes it.
            assert_eq!(send_all(&mut room), [next], "{answer}");
        }
        assert_eq!(
            room.receive(&error(ErrorCode::TooLong, Some("c"))),
            Event::Refused {
                id: "c".into(),
                reason: "refused: too long for this server".into(),
                text: "text c".into(),
            }
        );
        assert!(room.is_empty());
        // Already gone: nothing, and no loop.
        assert_eq!(
            room.receive(&error(ErrorCode::TooLong, Some("c"))),
            Event::Nothing
        );
        assert_eq!(send_all(&mut room), Vec::<String>::new());
    }

    #[test]
    fn a_join_the_engine_cannot_take_now_is_sent_again_after_the_pause() {
        let mut room = Room::new(ROOM);
        room.push("a".into(), "x".into()).expect("queued");
        room.connection_opened();
        let refusal = ServerFrame::Error {
            code: ErrorCode::Unavailable,
            message: "later".into(),
            room: Some(ROOM.into()),
            id: None,
        };
        assert_eq!(room.receive(&refusal.to_json()), Event::RetryLater);
        assert_eq!(room.next_to_send(), None);
        assert_eq!(
            room.resume().as_deref(),
            Some(r#"{"type":"join","room":"lobby"}"#)
        );
        assert_eq!(room.receive(&joined("E", 0, false)), Event::Joined);
        assert_eq!(send_all(&mut room), ["a"]);
    }

    #[test]
    fn frames_of_other_rooms_and_nonsense_change_nothing() {
        let mut room = Room::new(ROOM);
        room.connection_opened();
        room.receive(&joined("E", 0, false));
        let other = ServerFrame::Message {
            room: "elsewhere".into(),
            offset: 1,
            id: "x".into(),
            user: "u-bo".into(),
            from: "bo".into(),
            text: "hi".into(),
            time: 0,
        };
        assert_eq!(room.receive(&other.to_json()), Event::Nothing);
        assert!(matches!(room.receive("{not json"), Event::Notice(_)));
        assert!(matches!(
            room.receive(r#"{"type":"shout"}"#),
            Event::Notice(_)
        ));
        assert_eq!(
            room.receive(&message(1, "x", "bo", "hi")),
            shown("bo", "hi")
        );
    }

    #[test]
    fn a_thousand_publishes_against_a_hundred_place_outbox() {
        let mut room = Room::new(ROOM);
        room.connection_opened();
        room.receive(&joined("E", 0, false));
        let mut accepted = Vec::new();
        let mut full = 0;
        for n in 0..1_000 {
            match room.push(format!("id{n}"), format!("text {n}")) {
                Ok(()) => accepted.push(format!("id{n}")),
                Err(PushError::Full) => full += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(accepted.len(), ROOM_OUTBOX_CAPACITY);
        assert_eq!(full, 1_000 - ROOM_OUTBOX_CAPACITY);
        // At most MAX_IN_FLIGHT go out at once; each ack lets the next one go, in order.
        let mut sent = send_all(&mut room);
        assert_eq!(sent.len(), MAX_IN_FLIGHT);
        let mut offset = 0;
        while let Some(id) = sent.first().cloned() {
            offset += 1;
            assert_eq!(room.receive(&ack(&id, offset)), delivered(&id));
            sent.remove(0);
            let more = send_all(&mut room);
            assert!(more.len() <= 1, "{more:?}");
            sent.extend(more);
            assert!(room.waiting().for_ack <= MAX_IN_FLIGHT);
        }
        assert_eq!(offset, ROOM_OUTBOX_CAPACITY as u64);
        assert!(room.is_empty());
        assert!(room.push("next".into(), "room again".into()).is_ok());
    }

    #[test]
    fn texts_are_checked_by_their_utf8_length() {
        let mut room = Room::new(ROOM);
        assert_eq!(room.push("e".into(), String::new()), Err(PushError::Empty));
        assert!(room.push("a".into(), "a".repeat(MAX_TEXT_BYTES)).is_ok());
        assert_eq!(
            room.push("b".into(), "é".repeat(MAX_TEXT_BYTES / 2) + "a"),
            Err(PushError::TooLong {
                bytes: MAX_TEXT_BYTES + 1,
                limit: MAX_TEXT_BYTES
            })
        );
    }

    #[test]
    fn outbox_and_position_survive_a_reload() {
        let mut room = Room::new(ROOM);
        room.connection_opened();
        room.receive(&joined("E", 0, false));
        room.receive(&message(1, "x", "bo", "hi"));
        room.push("a".into(), "one".into()).expect("queued");
        room.push("b".into(), "two".into()).expect("queued");
        send_all(&mut room);
        let saved = room.save();

        let mut reloaded = Room::new(ROOM);
        reloaded.restore(&saved).expect("restores");
        assert_eq!(
            reloaded.waiting().to_string(),
            "2 messages waiting to be sent"
        );
        assert_eq!(
            reloaded.connection_opened(),
            r#"{"type":"join","room":"lobby","since":{"epoch":"E","offset":1}}"#
        );
        assert_eq!(reloaded.receive(&joined("E", 1, true)), Event::Joined);
        assert_eq!(send_all(&mut reloaded), ["a"]);
        assert_eq!(reloaded.receive(&ack("a", 2)), delivered("a"));
        assert_eq!(send_all(&mut reloaded), ["b"]);
        // A message shown before the reload, replayed into a new epoch, is still known.
        let mut again = Room::new(ROOM);
        again.restore(&saved).expect("restores");
        again.connection_opened();
        again.receive(&joined("F", 0, false));
        assert_eq!(again.receive(&message(1, "x", "bo", "hi")), Event::Nothing);
    }

    #[test]
    fn broken_or_foreign_saved_rooms_are_refused_with_a_reason() {
        const OWNER: &str = "ws://chat.example|ana";
        let mut room = Room::new(ROOM).owned_by(OWNER);
        room.push("a".into(), "one".into()).expect("queued");
        let good = room.save();
        let head = format!(r#""version":3,"owner":"{OWNER}","user":"","room":"lobby""#);
        assert!(good.starts_with(&format!("{{{head}")), "{good}");
        let too_many: Vec<String> = (0..=ROOM_OUTBOX_CAPACITY)
            .map(|n| format!(r#"{{"id":"i{n}","text":"t"}}"#))
            .collect();
        let seen = r#"{"epoch":"E","last":1,"ids":[]}"#;
        let table = [
            String::new(),
            "web-client outbox 1\n".to_owned(),
            "[1,2]".to_owned(),
            good[..good.len() - 1].to_owned(),
            good.replace(r#""version":3"#, r#""version":2"#),
            good.replace(r#""version":3"#, r#""version":"3""#),
            good.replace(r#""user":"""#, r#""user":7"#),
            good.replace(r#""room":"lobby""#, r#""room":"other""#),
            // Another name (a reload with another `?name=`, a duplicated tab edited) or
            // another server: not sent under this one.
            good.replace(OWNER, "ws://chat.example|bo"),
            good.replace(OWNER, "ws://elsewhere.example|ana"),
            good.replace(&format!(r#""owner":"{OWNER}","#), ""),
            format!(
                r#"{{{head},"seen":{seen},"pending":[{}]}}"#,
                too_many.join(",")
            ),
            format!(r#"{{{head},"seen":{seen},"pending":[{{"id":"","text":"t"}}]}}"#),
            format!(r#"{{{head},"seen":{seen},"pending":[{{"id":"a","text":""}}]}}"#),
            format!(
                r#"{{{head},"seen":{seen},"pending":[{{"id":"a","text":"{}"}}]}}"#,
                "x".repeat(MAX_TEXT_BYTES + 1)
            ),
            format!(r#"{{{head},"seen":{{"epoch":"E"}},"pending":[]}}"#),
        ];
        for saved in &table {
            let mut fresh = Room::new(ROOM).owned_by(OWNER);
            let reason = fresh.restore(saved).expect_err(saved);
            assert!(!reason.is_empty());
            assert!(fresh.is_empty(), "{saved}");
            assert_eq!(
                fresh.connection_opened(),
                r#"{"type":"join","room":"lobby"}"#
            );
        }
        let mut exactly_full = Room::new(ROOM).owned_by(OWNER);
        let full = format!(
            r#"{{{head},"seen":{seen},"pending":[{}]}}"#,
            too_many[..ROOM_OUTBOX_CAPACITY].join(",")
        );
        assert_eq!(exactly_full.restore(&full), Ok(()));
        assert_eq!(exactly_full.len(), ROOM_OUTBOX_CAPACITY);
    }

    #[test]
    fn publishes_saved_by_one_user_are_not_sent_when_the_sign_in_names_another() {
        let signed_in = |user: &str| {
            ServerFrame::Authed {
                user: user.into(),
                name: user.to_uppercase(),
                expires: 1,
            }
            .to_json()
        };
        let mut room = Room::new(ROOM).owned_by("ws://chat.example|");
        room.connection_opened();
        room.receive(&signed_in("u-ana"));
        room.push("a".into(), "from ana".into()).expect("queued");
        let saved = room.save();
        // Reloaded, and signed in as Ana again: hers go.
        let mut again = Room::new(ROOM).owned_by("ws://chat.example|");
        again.restore(&saved).expect("restores");
        again.connection_opened();
        let Event::SignedIn { not_sent, .. } = again.receive(&signed_in("u-ana")) else {
            panic!("signed in");
        };
        assert!(not_sent.is_empty());
        assert_eq!(again.len(), 1);
        // Reloaded, and the token now names Bo (a shared computer): nothing of Ana's goes.
        let mut other = Room::new(ROOM).owned_by("ws://chat.example|");
        other.restore(&saved).expect("restores");
        other.connection_opened();
        let Event::SignedIn { not_sent, .. } = other.receive(&signed_in("u-bo")) else {
            panic!("signed in");
        };
        assert_eq!(
            not_sent.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(),
            ["from ana"]
        );
        assert!(other.is_empty());
        other.receive(&joined("E", 0, false));
        assert_eq!(send_all(&mut other), Vec::<String>::new());
        assert!(other.save().contains(r#""user":"u-bo""#));
    }

    #[test]
    fn an_earlier_versions_waiting_publishes_are_read_to_be_offered_back() {
        let v2 = r#"{"version":2,"owner":"ws://h|ana","room":"lobby","seen":{"epoch":null,"last":0,"ids":[]},"pending":[{"id":"a","text":"one"},{"id":"","text":"bad id"},{"id":"b","text":""},{"id":"c","text":"two"}]}"#;
        assert_eq!(
            earlier_pending(v2),
            [
                ("a".to_owned(), "one".to_owned()),
                ("c".to_owned(), "two".to_owned())
            ]
        );
        assert!(earlier_pending("not json").is_empty());
        assert!(earlier_pending(r#"{"pending":{}}"#).is_empty());
        let many: Vec<String> = (0..ROOM_OUTBOX_CAPACITY + 5)
            .map(|n| format!(r#"{{"id":"i{n}","text":"t"}}"#))
            .collect();
        let full = format!(r#"{{"version":1,"pending":[{}]}}"#, many.join(","));
        assert_eq!(earlier_pending(&full).len(), ROOM_OUTBOX_CAPACITY);
    }

    #[test]
    fn helpers_format_ids_times_and_query_values() {
        assert_eq!(message_id(&[0; 16]), "0".repeat(32));
        let id = message_id(&[0xab; 16]);
        assert_eq!(id.len(), 32);
        assert!(names::is_message_id(&id));
        assert_eq!(clock_time(0, 0), "00:00");
        assert_eq!(clock_time(1_764_400_000_123, 0), "07:06");
        assert_eq!(clock_time(1_764_400_000_123, 60), "08:06");
        assert_eq!(clock_time(0, -30), "23:30");
        assert_eq!(query_encode("ana"), "ana");
        assert_eq!(query_encode("Zoë & co"), "Zo%C3%AB%20%26%20co");
    }

    #[test]
    fn on_entry_the_recent_history_is_shown_as_earlier_then_live_ones() {
        let mut room = Room::new(ROOM).with_history(50);
        let join = room.connection_opened();
        assert!(join.contains(r#""history":50"#), "{join}");
        assert_eq!(room.receive(&joined("E", 12, false)), Event::Joined);
        assert_eq!(
            room.receive(&message(11, "a", "ana", "before")),
            earlier("ana", "before")
        );
        assert_eq!(
            room.receive(&message(12, "b", "bo", "just before")),
            earlier("bo", "just before")
        );
        assert_eq!(
            room.receive(&message(13, "c", "ana", "now")),
            shown("ana", "now")
        );
        // A reconnect resumes from the position: no history asked, nothing shown twice.
        room.connection_closed();
        let join = room.connection_opened();
        assert!(
            !join.contains("history") && join.contains(r#""offset":13"#),
            "{join}"
        );
        assert_eq!(room.receive(&joined("E", 13, true)), Event::Joined);
        assert_eq!(
            room.receive(&message(13, "c", "ana", "now")),
            Event::Nothing
        );
    }

    #[test]
    fn a_history_message_seen_before_is_not_shown_again() {
        let mut room = Room::new(ROOM).with_history(5);
        room.connection_opened();
        room.receive(&joined("E", 2, false));
        assert_eq!(
            room.receive(&message(1, "a", "ana", "one")),
            earlier("ana", "one")
        );
        // The same id again (a second replay): not shown.
        room.receive(&joined("E", 2, false));
        assert_eq!(room.receive(&message(1, "a", "ana", "one")), Event::Nothing);
        // Without `history` asked, replayed-looking messages are old: not shown.
        let mut plain = Room::new(ROOM);
        let join = plain.connection_opened();
        assert!(!join.contains("history"), "{join}");
        plain.receive(&joined("E", 2, false));
        assert_eq!(plain.receive(&message(2, "b", "bo", "old")), Event::Nothing);
    }

    #[test]
    fn presence_frames_become_who_came_and_went_by_name() {
        let mut room = Room::new(ROOM).with_presence();
        let join = room.connection_opened();
        assert!(join.contains(r#""presence":true"#), "{join}");
        let user = |id: &str, name: &str| PresentUser {
            user: id.into(),
            name: name.into(),
        };
        let frame = |count, members, joined, left, capped| {
            ServerFrame::Presence {
                room: ROOM.into(),
                count,
                members,
                joined,
                left,
                capped,
            }
            .to_json()
        };
        assert_eq!(
            room.receive(&frame(
                2,
                Some(vec![user("1", "Bo"), user("2", "Ana")]),
                None,
                None,
                false
            )),
            Event::Presence {
                joined: vec![],
                left: vec![],
                everyone: Some(vec!["Ana".into(), "Bo".into()]),
                count: 2,
                capped: false,
            }
        );
        // Ana named again (set semantics) is no news; Cy is.
        assert_eq!(
            room.receive(&frame(
                3,
                None,
                Some(vec![user("2", "Ana"), user("3", "Cy")]),
                Some(vec![]),
                false
            )),
            Event::Presence {
                joined: vec!["Cy".into()],
                left: vec![],
                everyone: None,
                count: 3,
                capped: false,
            }
        );
        room.receive(&frame(
            2,
            None,
            Some(vec![]),
            Some(vec![user("1", "Bo")]),
            false,
        ));
        assert_eq!(room.present(), vec!["Ana".to_owned(), "Cy".to_owned()]);
        let typing = ServerFrame::Typing {
            room: ROOM.into(),
            user: "3".into(),
            name: "Cy".into(),
        }
        .to_json();
        assert_eq!(
            room.receive(&typing),
            Event::Typing {
                user: "3".into(),
                name: "Cy".into()
            }
        );
    }
}
