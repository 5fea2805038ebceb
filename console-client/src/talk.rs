//! What the console shows of a conversation. The [`Session`] decides
//! (`client_core::session`); [`View`] turns the lines typed into what the session queues, and
//! what it reports ([`Effect`]s that concern the screen) into lines on the [`Screen`]. Neither
//! touches the socket, which [`crate::run`] owns.

use std::collections::HashMap;

use client_core::outbox::PushError;
use client_core::room::{self, Event, GAP_NOTICE};
use client_core::session::{Effect, Millis, Session};

use crate::input::Line;
use crate::screen::{Screen, StdoutGone};

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

/// What the console shows: an app's replies, or a room's lines.
#[derive(Debug)]
pub enum View {
    /// An app's, whose messages may have at most this many bytes (`--max-message-size`).
    App {
        max_message_bytes: usize,
    },
    Room(RoomView),
}

/// A room conversation as the console shows it.
#[derive(Debug)]
pub struct RoomView {
    room: String,
    /// Who this client is in the room: `--name`, or the name its token gives.
    name: String,
    /// The text of each publish not yet delivered, to print it once it is.
    texts: HashMap<String, String>,
    /// The longest text published, in bytes, for the line that refuses a longer one.
    max_text_bytes: usize,
    /// What is said of who is here: `--presence`, `--typing`.
    follow: Follow,
    /// The server accepted a token before: a refresh is not said.
    signed_in: bool,
}

/// What a room conversation says of who is here, on standard error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Follow {
    /// Joins and leaves (`--presence`).
    pub presence: bool,
    /// Who is typing (`--typing`).
    pub typing: bool,
}

impl RoomView {
    /// Room `room` as `name`, whose texts may have at most `max_text_bytes` bytes.
    pub fn new(room: &str, name: &str, max_text_bytes: usize, follow: Follow) -> RoomView {
        RoomView {
            room: room.to_owned(),
            name: name.to_owned(),
            texts: HashMap::new(),
            max_text_bytes,
            follow,
            signed_in: false,
        }
    }
}

impl View {
    /// A line typed (or piped): queued in the session, or refused on standard error.
    pub fn take_line(
        &mut self,
        session: &mut Session,
        now: Millis,
        line: Line,
        screen: &mut Screen,
    ) {
        let (what, limit) = match self {
            View::App { max_message_bytes } => {
                ("the server takes (--max-message-size)", *max_message_bytes)
            }
            View::Room(view) => ("a room message may have", view.max_text_bytes),
        };
        let text = match line {
            Line::Text(text) => text,
            Line::TooLong { bytes } => {
                return refuse(PushError::TooLong { bytes, limit }, what, screen);
            }
            Line::NotText => return screen.failed("Refused: a line that is not UTF-8 text."),
        };
        let View::Room(view) = self else {
            if let Err(error) = session.push(now, text) {
                refuse(error, what, screen);
            }
            return;
        };
        let mut random = [0; 16];
        if let Err(error) = getrandom::fill(&mut random) {
            return screen.failed(&format!("Refused: no random id for a message ({error})."));
        }
        let id = room::message_id(&random);
        match session.publish(now, id.clone(), text.clone()) {
            Ok(()) => drop(view.texts.insert(id, text)),
            Err(error) => refuse(error, what, screen),
        }
    }

    /// Shows what the session reported; effects that are not for the screen show nothing.
    pub fn show(&mut self, effect: Effect, screen: &mut Screen) -> Result<(), StdoutGone> {
        match (effect, self) {
            (Effect::Reply(text), _) => screen.reply(&text)?,
            (
                Effect::Sent {
                    text, again: true, ..
                },
                _,
            ) => {
                screen.status(&format!("Sent again: {}", preview(&text)));
            }
            (Effect::GivenUp(given_up), _) => {
                screen.failed(&format!(
                    "{}: {}.",
                    preview(&given_up.text),
                    given_up.outcome
                ));
            }
            (Effect::Binary(bytes), _) => {
                screen.status(&format!("The server sent {bytes} bytes of binary data."));
            }
            (Effect::Notice(notice), _) => screen.status(&notice),
            (Effect::Room(event), View::Room(view)) => view.show(event, screen)?,
            _ => {}
        }
        Ok(())
    }
}

impl RoomView {
    fn say_joined(&self, screen: &mut Screen) {
        screen.status(&format!("Joined room {} as {}", self.room, self.name));
    }

    fn show(&mut self, event: Event, screen: &mut Screen) -> Result<(), StdoutGone> {
        let room = &self.room;
        match event {
            Event::Show { from, text, .. } => screen.reply(&format!("{from}: {text}"))?,
            Event::Delivered { id, .. } => {
                if let Some(text) = self.texts.remove(&id) {
                    screen.reply(&format!("{}: {text}", self.name))?;
                }
            }
            Event::Refused { id, reason, text } => {
                self.texts.remove(&id);
                screen.failed(&format!("{}: {reason}.", preview(&text)));
            }
            Event::Gap { rejoin } => {
                screen.status(GAP_NOTICE);
                // Joined again from the new epoch's start: its `joined` says so.
                if rejoin.is_none() {
                    self.say_joined(screen);
                }
            }
            Event::Joined => self.say_joined(screen),
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
            }
            Event::SignedIn {
                user,
                name,
                not_sent,
                ..
            } => {
                for publish in not_sent {
                    self.texts.remove(&publish.id);
                    screen.failed(&format!(
                        "{}: not sent, another user wrote it before this sign-in.",
                        preview(&publish.text)
                    ));
                }
                if !self.signed_in && name != self.name {
                    screen.status(&format!("Signed in as {name} ({user})."));
                }
                self.signed_in = true;
                self.name = name;
            }
            Event::Presence {
                joined,
                left,
                everyone,
                count,
                capped,
            } => {
                if self.follow.presence {
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
            }
            Event::Typing { name, .. } => {
                if self.follow.typing {
                    screen.status(&format!("{name} is typing…"));
                }
            }
            Event::Notice(notice) => screen.status(&notice),
            Event::Stamped { .. } | Event::RetryLater | Event::Nothing => {}
        }
        Ok(())
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
