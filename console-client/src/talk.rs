//! The two conversations the console client can hold on its one connection: an app's
//! (`/subscriptions`, `/echo`, `/mirror`), decided by `client_core::outbox`, and a room's,
//! decided by `client_core::room`. Each turns what the core decides into lines on the
//! [`Screen`]; neither touches the socket, which [`crate::run`] owns.

use std::collections::{HashMap, VecDeque};

use client_core::outbox::{CloseMeant, OUTBOX_CAPACITY, Outbox, PushError, Received};
use client_core::room::{self, Event, GAP_NOTICE, ROOM_OUTBOX_CAPACITY, Room};
use client_core::signin::{self, IdentityClose, identity_close};
use client_core::status::{AfterClose, after_close, close_notice};
use rules::App;
use tokio::time::Instant;

use crate::input::Line;
use crate::screen::{Screen, StdoutGone};

/// A frame to send, and what it is, for [`Talk::sent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub text: String,
    kind: FrameKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FrameKind {
    /// The outbox's next message; `again` when it went out on an earlier connection.
    Message { again: bool },
    /// The room's publish with this id.
    Publish { id: String },
    /// A join: nothing to mark once sent.
    Join,
    /// The token, first on a connection or to refresh it.
    Auth,
}

/// What a text from the server meant for the connection task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Nothing that changes how the connection is handled.
    Nothing,
    /// The server answered: the next drop starts from the shortest backoff again.
    Answered,
    /// The server asks to wait before sending more: call [`Talk::resume`] after the pause.
    Wait,
}

/// What a close from the server means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseHeard {
    /// A fault to recover from (restart 1001, a refusal 1009, ...): reconnect.
    Reconnect,
    /// The server ended the conversation on purpose (1000); `answered_end` when it was the
    /// answer to an `end` that was sent.
    Ended { answered_end: bool },
}

/// One conversation's decisions, as the connection task asks for them.
pub trait Talk {
    /// Whether the outbox holds all it may: no line is read from the input until it does not.
    fn is_full(&self) -> bool;
    /// A line typed (or piped): queued, or refused on standard error.
    fn take_line(&mut self, line: Line, screen: &mut Screen);
    /// A connection opened.
    fn opened(&mut self);
    /// The next frame to send now, if any.
    fn next_frame(&mut self) -> Option<Frame>;
    /// The socket took `frame`.
    fn sent(&mut self, frame: Frame, screen: &mut Screen);
    /// A text from the server.
    fn received(&mut self, text: &str, screen: &mut Screen) -> Result<Heard, StdoutGone>;
    /// The server closed the connection with `code`.
    fn close_received(&mut self, code: u16, reason: &str, screen: &mut Screen) -> CloseHeard;
    /// The connection is gone, however it ended.
    fn closed(&mut self, screen: &mut Screen);
    /// The pause the server asked for is over.
    fn resume(&mut self);
    /// Whether the server owes this connection an answer.
    fn awaiting_reply(&self) -> bool;
    /// Whether a greeting that will be printed is still to come on this connection.
    fn owes_greeting(&self) -> bool;
    /// Messages still waiting for their answers (or to be sent).
    fn left(&self) -> usize;
    /// Sign in with `token` (a server that wants tokens): it goes first on every connection,
    /// and at once on the open one (a refresh).
    fn sign_in(&mut self, _token: String) {}
    /// When the token should be refreshed, if it should.
    fn refresh_at(&self) -> Option<Instant> {
        None
    }
    /// The refresh could not be made: the server's 4408 at expiry will say so.
    fn refresh_failed(&mut self) {}
    /// The server said the token expired (4408): a new one is needed to connect again.
    fn token_expired(&self) -> bool {
        false
    }
}

/// The first characters of a message, for a status line about it.
fn preview(text: &str) -> String {
    // Escaped (`{:?}`): a terminal must not run what the text holds.
    match client_core::shown::preview(text) {
        (start, true) => format!("{start:?}…"),
        (whole, false) => format!("{whole:?}"),
    }
}

/// A line the core refused to queue, said on standard error; `what` names the limit.
fn refuse(error: PushError, what: &str, screen: &mut Screen) {
    match error {
        // An empty line is no message, as in the page: skipped, not refused.
        PushError::Empty => {}
        PushError::TooLong { bytes, limit } => screen.failed(&format!(
            "Refused: a line of {bytes} bytes is longer than the {limit} {what}."
        )),
        // The connection task reads no line while the outbox is full.
        PushError::Full => screen.failed("Refused: the queue is full."),
    }
}

/// A conversation with an app, as its `rules` say it answers.
#[derive(Debug)]
pub struct AppTalk {
    outbox: Outbox,
    /// The greeting was printed: the greetings of later connections are not.
    greeted: bool,
}

impl AppTalk {
    pub fn new(app: App, max_message_bytes: usize) -> AppTalk {
        AppTalk {
            outbox: Outbox::new(app, max_message_bytes),
            greeted: false,
        }
    }
}

impl Talk for AppTalk {
    fn is_full(&self) -> bool {
        self.outbox.len() >= OUTBOX_CAPACITY
    }

    fn take_line(&mut self, line: Line, screen: &mut Screen) {
        const WHAT: &str = "the server takes (--max-message-size)";
        let limit = self.outbox.max_message_bytes();
        match line {
            Line::Text(text) => {
                if let Err(error) = self.outbox.push(text) {
                    refuse(error, WHAT, screen);
                }
            }
            Line::TooLong { bytes } => refuse(PushError::TooLong { bytes, limit }, WHAT, screen),
            Line::NotText => screen.failed("Refused: a line that is not UTF-8 text."),
        }
    }

    fn opened(&mut self) {
        self.outbox.connection_opened();
    }

    fn next_frame(&mut self) -> Option<Frame> {
        self.outbox.next_to_send().map(|message| Frame {
            text: message.text,
            kind: FrameKind::Message {
                again: message.again,
            },
        })
    }

    fn sent(&mut self, frame: Frame, screen: &mut Screen) {
        self.outbox.mark_sent();
        if frame.kind == (FrameKind::Message { again: true }) {
            screen.status(&format!("Sent again: {}", preview(&frame.text)));
        }
    }

    fn received(&mut self, text: &str, screen: &mut Screen) -> Result<Heard, StdoutGone> {
        match self.outbox.received_text(text) {
            Received::Greeting if self.greeted => Ok(Heard::Nothing),
            Received::Greeting => {
                self.greeted = true;
                screen.reply(text)?;
                Ok(Heard::Nothing)
            }
            Received::Answer { show, .. } => {
                if show {
                    screen.reply(text)?;
                }
                Ok(Heard::Answered)
            }
            Received::Unexpected => {
                screen.reply(text)?;
                Ok(Heard::Nothing)
            }
        }
    }

    fn close_received(&mut self, code: u16, reason: &str, screen: &mut Screen) -> CloseHeard {
        match self.outbox.received_close(code) {
            CloseMeant::Answer => CloseHeard::Ended { answered_end: true },
            CloseMeant::Refusal(refused) => {
                screen.failed(&format!("{}: {}.", preview(&refused.text), refused.outcome));
                CloseHeard::Reconnect
            }
            CloseMeant::Nothing => {
                if let Some(notice) = close_notice(code, reason) {
                    screen.status(&notice);
                }
                match after_close(code) {
                    AfterClose::StayClosed => CloseHeard::Ended {
                        answered_end: false,
                    },
                    AfterClose::Reconnect => CloseHeard::Reconnect,
                }
            }
        }
    }

    fn closed(&mut self, screen: &mut Screen) {
        if let Some(given_up) = self.outbox.connection_closed() {
            screen.failed(&format!(
                "{}: {}.",
                preview(&given_up.text),
                given_up.outcome
            ));
        }
    }

    fn resume(&mut self) {}

    fn awaiting_reply(&self) -> bool {
        self.outbox.awaiting_reply()
    }

    fn owes_greeting(&self) -> bool {
        // Later connections' greetings are not printed: nothing to wait for.
        !self.greeted && self.outbox.greeting_due()
    }

    fn left(&self) -> usize {
        self.outbox.len()
    }
}

/// A conversation in one room, as `name`.
#[derive(Debug)]
pub struct RoomTalk {
    room: Room,
    /// Who this client is in the room: `--name`, or the name its token gives.
    name: String,
    /// With a server that wants tokens: the token, sent first on every connection.
    token: Option<String>,
    /// The token is to be sent next (a new connection, or a refresh).
    auth_due: bool,
    /// When to refresh the token (80% of its life after it was accepted).
    refresh_at: Option<Instant>,
    /// The server closed with 4408.
    expired: bool,
    /// The text of each publish not yet delivered, to print it once it is.
    texts: HashMap<String, String>,
    /// Joins to send before any publish.
    joins: VecDeque<String>,
    /// The longest text published, in bytes, for the line that refuses a longer one.
    max_text_bytes: usize,
    /// What is said of who is here: `--presence`, `--typing`.
    follow: Follow,
}

/// What a room conversation says of who is here, on standard error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Follow {
    /// Joins and leaves (`--presence`).
    pub presence: bool,
    /// Who is typing (`--typing`).
    pub typing: bool,
}

impl RoomTalk {
    /// A conversation in `room` whose texts may have at most `max_text_bytes` bytes (at most
    /// the protocol's [`room_protocol::bounds::MAX_TEXT_BYTES`]).
    pub fn new(room: &str, name: &str, max_text_bytes: usize) -> RoomTalk {
        RoomTalk {
            room: Room::with_capacity(room, ROOM_OUTBOX_CAPACITY, max_text_bytes),
            name: name.to_owned(),
            token: None,
            auth_due: false,
            refresh_at: None,
            expired: false,
            texts: HashMap::new(),
            joins: VecDeque::new(),
            max_text_bytes,
            follow: Follow::default(),
        }
    }

    /// Asks for the room's last `history` messages on entry, and follows who is here.
    pub fn following(mut self, history: u64, follow: Follow) -> RoomTalk {
        self.room = self.room.with_history(history);
        if follow.presence || follow.typing {
            self.room = self.room.with_presence();
        }
        self.follow = follow;
        self
    }

    fn say_joined(&self, screen: &mut Screen) {
        screen.status(&format!(
            "Joined room {} as {}",
            self.room.name(),
            self.name
        ));
    }
}

impl Talk for RoomTalk {
    fn is_full(&self) -> bool {
        self.room.len() >= ROOM_OUTBOX_CAPACITY
    }

    fn take_line(&mut self, line: Line, screen: &mut Screen) {
        const WHAT: &str = "a room message may have";
        let text = match line {
            Line::Text(text) => text,
            Line::TooLong { bytes } => {
                let limit = self.max_text_bytes;
                return refuse(PushError::TooLong { bytes, limit }, WHAT, screen);
            }
            Line::NotText => return screen.failed("Refused: a line that is not UTF-8 text."),
        };
        let mut random = [0; 16];
        if let Err(error) = getrandom::fill(&mut random) {
            return screen.failed(&format!("Refused: no random id for a message ({error})."));
        }
        let id = room::message_id(&random);
        match self.room.push(id.clone(), text.clone()) {
            Ok(()) => drop(self.texts.insert(id, text)),
            Err(error) => refuse(error, WHAT, screen),
        }
    }

    fn opened(&mut self) {
        self.joins.clear();
        self.auth_due = self.token.is_some();
        self.joins.push_back(self.room.connection_opened());
    }

    fn next_frame(&mut self) -> Option<Frame> {
        if self.auth_due
            && let Some(token) = &self.token
        {
            self.auth_due = false;
            return Some(Frame {
                text: signin::auth_frame(token),
                kind: FrameKind::Auth,
            });
        }
        if let Some(join) = self.joins.pop_front() {
            return Some(Frame {
                text: join,
                kind: FrameKind::Join,
            });
        }
        self.room.next_to_send().map(|(id, text)| Frame {
            text,
            kind: FrameKind::Publish { id },
        })
    }

    fn sent(&mut self, frame: Frame, _screen: &mut Screen) {
        if let FrameKind::Publish { id } = frame.kind {
            self.room.mark_sent(&id);
        }
    }

    fn received(&mut self, text: &str, screen: &mut Screen) -> Result<Heard, StdoutGone> {
        Ok(match self.room.receive(text) {
            Event::Show { from, text, .. } => {
                screen.reply(&format!("{from}: {text}"))?;
                Heard::Nothing
            }
            Event::Delivered { id, .. } => {
                if let Some(text) = self.texts.remove(&id) {
                    screen.reply(&format!("{}: {text}", self.name))?;
                }
                Heard::Answered
            }
            Event::Refused { id, reason, text } => {
                self.texts.remove(&id);
                screen.failed(&format!("{}: {reason}.", preview(&text)));
                Heard::Nothing
            }
            Event::Gap { rejoin } => {
                screen.status(GAP_NOTICE);
                match rejoin {
                    // Joined again from the new epoch's start: its `joined` says so.
                    Some(join) => self.joins.push_back(join),
                    None => self.say_joined(screen),
                }
                Heard::Answered
            }
            Event::Joined => {
                self.say_joined(screen);
                Heard::Answered
            }
            Event::CaughtUp { missed } => {
                for line in missed {
                    match line.own {
                        Some(id) => {
                            if let Some(text) = self.texts.remove(&id) {
                                screen.reply(&format!("{}: {text}", self.name))?;
                            }
                        }
                        None => screen.reply(&format!("{}: {}", line.from, line.text))?,
                    }
                }
                self.say_joined(screen);
                Heard::Answered
            }
            Event::RetryLater => Heard::Wait,
            Event::SignedIn {
                user,
                name,
                expires,
                not_sent,
            } => {
                for publish in not_sent {
                    self.texts.remove(&publish.id);
                    screen.failed(&format!(
                        "{}: not sent, another user wrote it before this sign-in.",
                        preview(&publish.text)
                    ));
                }
                if self.refresh_at.is_none() && name != self.name {
                    screen.status(&format!("Signed in as {name} ({user})."));
                }
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| {
                        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                    });
                let token = self.token.as_deref().unwrap_or_default();
                let delay = signin::refresh_delay(token, now_ms, expires);
                self.refresh_at = Some(Instant::now() + delay);
                self.name = name;
                Heard::Nothing
            }
            Event::Presence {
                joined,
                left,
                everyone,
                count,
                capped,
            } => {
                if self.follow.presence {
                    let room = self.room.name();
                    if capped {
                        screen.status(&format!("{count} people in {room}"));
                    } else if let Some(everyone) = everyone {
                        screen.status(&format!("In {room}: {} ({count})", everyone.join(", ")));
                    } else {
                        for name in joined {
                            screen.status(&format!("{name} joined {room}"));
                        }
                        for name in left {
                            screen.status(&format!("{name} left {room}"));
                        }
                    }
                }
                Heard::Nothing
            }
            Event::Typing { name, .. } => {
                if self.follow.typing {
                    screen.status(&format!("{name} is typing…"));
                }
                Heard::Nothing
            }
            Event::Notice(notice) => {
                screen.status(&notice);
                Heard::Nothing
            }
            Event::Stamped { .. } | Event::Nothing => Heard::Nothing,
        })
    }

    fn close_received(&mut self, code: u16, reason: &str, screen: &mut Screen) -> CloseHeard {
        if let Some(notice) = close_notice(code, reason) {
            screen.status(&notice);
        }
        match identity_close(code, reason) {
            Some(IdentityClose::Expired) => self.expired = true,
            Some(IdentityClose::Refused(words)) => screen.status(&words),
            None => {}
        }
        match after_close(code) {
            AfterClose::StayClosed => CloseHeard::Ended {
                answered_end: false,
            },
            AfterClose::Reconnect => CloseHeard::Reconnect,
        }
    }

    fn closed(&mut self, _screen: &mut Screen) {
        self.joins.clear();
        self.auth_due = false;
        self.refresh_at = None;
        self.room.connection_closed();
    }

    fn sign_in(&mut self, token: String) {
        self.token = Some(token);
        self.auth_due = true;
        self.expired = false;
        self.refresh_at = None;
    }

    fn refresh_at(&self) -> Option<Instant> {
        self.refresh_at
    }

    fn refresh_failed(&mut self) {
        self.refresh_at = None;
    }

    fn token_expired(&self) -> bool {
        self.expired
    }

    fn resume(&mut self) {
        self.joins.extend(self.room.resume());
    }

    fn awaiting_reply(&self) -> bool {
        self.room.awaiting_reply()
    }

    fn owes_greeting(&self) -> bool {
        // Rooms greet nobody.
        false
    }

    fn left(&self) -> usize {
        self.room.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_short_and_quoted() {
        assert_eq!(preview("hello"), "\"hello\"");
        let long = "é".repeat(100);
        assert_eq!(preview(&long), format!("{:?}…", "é".repeat(40)));
    }
}
