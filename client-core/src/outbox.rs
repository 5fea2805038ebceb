//! Every message the user typed, from the moment it is queued until the server has answered
//! it, refused it, or failed to answer it three times. Nothing is dropped silently: a full
//! outbox refuses the push, and a message leaves only with an outcome the client shows (the
//! page on the message's line, the console client on standard error).
//!
//! A message is first *queued*; once the socket took it, it is *unanswered* until the answer
//! the shared [`rules`] predict for it has arrived in full, in order. When a connection opens,
//! every unanswered message goes out again first, in its original order, then the queue: so
//! every message is answered at least once, and one is sent twice only when the server
//! answered it but the answer was lost on the way. The copies of an answer already shown on an
//! earlier connection are not shown again ([`Received::Answer::show`]).
//!
//! Two ways out besides an answer keep one bad message from blocking the queue forever: the
//! server refused it (a 1009 or 1007 close while it was the next to be answered), or it went
//! out [`MAX_TRIES`] times and its answer never came.

use std::collections::VecDeque;
use std::fmt;

use rules::{App, Reply};

/// Messages kept at most, queued and unanswered together, as the `Queue.bounded(100)` of the
/// client this project is modelled on.
pub const OUTBOX_CAPACITY: usize = 100;

/// Longest message, in bytes as sent (UTF-8), unless the client is told otherwise (the page's
/// `?max-message-size=`, the console client's `--max-message-size`): the server's default
/// `--max-message-size`. The server closes the connection (1009) on a longer one, so it is
/// refused here (the page keeps it in the input). The input's `maxlength` cannot do this: it
/// counts UTF-16 units, and it cuts a paste silently.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Connections a message may go out on without its answer before it is given up.
pub const MAX_TRIES: u32 = 3;

/// The close code that answers `end`.
const NORMAL_CLOSURE: u16 = 1000;
/// The server's close for a message that is not valid UTF-8 text.
const INVALID_PAYLOAD: u16 = 1007;
/// The server's close for a message over its `--max-message-size`.
const MESSAGE_TOO_BIG: u16 = 1009;

/// Why a message was not queued; each is shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Empty messages are not sent.
    Empty,
    /// The outbox holds [`OUTBOX_CAPACITY`] messages already.
    Full,
    /// The message is longer than the limit; `bytes` is its length, `limit` the limit.
    TooLong { bytes: usize, limit: usize },
}

/// Names one message for as long as the client runs, so that its line can be marked when it
/// leaves the outbox without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(pub u64);

/// A message ready to go out, as [`Outbox::next_to_send`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub id: MessageId,
    pub text: String,
    /// It went out on an earlier connection and was not answered there.
    pub again: bool,
}

/// What a text from the server was, as far as the outbox can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The app's greeting, first on a connection.
    Greeting,
    /// Part of the answer to the oldest unanswered message; `complete` once it is all there
    /// and the message has left the outbox. `show` is `false` for a copy already shown on an
    /// earlier connection (the message was sent again after a break in mid-answer).
    Answer { complete: bool, show: bool },
    /// Nothing the rules predict: shown, but it answers nothing.
    Unexpected,
}

/// Why the server refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 1009: longer than the server's `--max-message-size`.
    TooLong,
    /// 1007: not text the server accepts.
    Invalid,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::TooLong => "too long for this server",
            Refusal::Invalid => "not valid text for this server",
        })
    }
}

/// How a message left the outbox without its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Refused(Refusal),
    /// Sent [`MAX_TRIES`] times; the answer never came.
    Failed,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Refused(refusal) => write!(f, "refused: {refusal}"),
            Outcome::Failed => write!(f, "failed: no answer after {MAX_TRIES} tries"),
        }
    }
}

/// A message taken out of the outbox without its answer, for the client to mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenUp {
    pub id: MessageId,
    pub text: String,
    pub outcome: Outcome,
}

/// What a close from the server meant to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseMeant {
    /// A normal close that answered `end`, which left the outbox.
    Answer,
    /// The server refused the next message to be answered, which left the outbox.
    Refusal(GivenUp),
    /// Nothing about any one message.
    Nothing,
}

/// The answer a sent message is still waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Awaiting {
    /// `left` more copies of `text`.
    Texts { text: String, left: usize },
    /// The server's normal close (1000).
    Close,
}

impl Awaiting {
    /// What the rules say `text` will be answered with; `None` when nothing answers it.
    fn for_message(app: App, text: &str) -> Option<Awaiting> {
        match app.reply_to_text(text) {
            Reply::Nothing => None,
            Reply::SendBack { times: 0 } => None,
            Reply::SendBack { times } => Some(Awaiting::Texts {
                text: text.to_owned(),
                left: times,
            }),
            Reply::Send(reply) => Some(Awaiting::Texts {
                text: reply.to_owned(),
                left: 1,
            }),
            Reply::Close => Some(Awaiting::Close),
        }
    }
}

#[derive(Debug)]
struct Queued {
    id: MessageId,
    text: String,
}

#[derive(Debug)]
struct Unanswered {
    id: MessageId,
    text: String,
    awaiting: Awaiting,
    /// Copies of the answer received on the current connection.
    received_here: usize,
    /// The most copies shown on any connection: copies up to this many are not shown again.
    shown: usize,
    /// Connections that ended while this message was the next to be answered.
    tries: u32,
}

/// Messages typed by the user and not yet answered.
#[derive(Debug)]
pub struct Outbox {
    app: App,
    /// Sent at least once, oldest first. The first `sent_here` went out on the current
    /// connection; the rest wait to be sent again.
    unanswered: VecDeque<Unanswered>,
    sent_here: usize,
    /// Never sent yet.
    queued: VecDeque<Queued>,
    capacity: usize,
    max_message_bytes: usize,
    next_id: u64,
    /// The greeting still to come on this connection, if the app sends one.
    greeting_due: Option<&'static str>,
    /// The server refused a message on this connection: what it sent after it was never read,
    /// so the end of this connection counts as no try against them.
    refused_here: bool,
}

impl Outbox {
    /// An outbox for messages to `app`, which decides what answers each message, refusing
    /// messages longer than `max_message_bytes`.
    pub fn new(app: App, max_message_bytes: usize) -> Outbox {
        Outbox::with_capacity(app, OUTBOX_CAPACITY, max_message_bytes)
    }

    pub fn with_capacity(app: App, capacity: usize, max_message_bytes: usize) -> Outbox {
        Outbox {
            app,
            unanswered: VecDeque::new(),
            sent_here: 0,
            queued: VecDeque::new(),
            capacity,
            max_message_bytes,
            next_id: 0,
            greeting_due: None,
            refused_here: false,
        }
    }

    /// The longest message accepted, in UTF-8 bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Whether `text` could be queued as far as its length goes (for the input to warn before
    /// sending).
    pub fn check_length(&self, text: &str) -> Result<(), PushError> {
        if text.len() > self.max_message_bytes {
            return Err(PushError::TooLong {
                bytes: text.len(),
                limit: self.max_message_bytes,
            });
        }
        Ok(())
    }

    /// Queues a message at the back.
    pub fn push(&mut self, text: String) -> Result<MessageId, PushError> {
        if text.is_empty() {
            return Err(PushError::Empty);
        }
        self.check_length(&text)?;
        if self.len() >= self.capacity {
            return Err(PushError::Full);
        }
        let id = MessageId(self.next_id);
        self.next_id += 1;
        self.queued.push_back(Queued { id, text });
        Ok(id)
    }

    /// A connection opened: unanswered messages go out again first, and whatever part of
    /// their answers came on the old connection counts only as already shown.
    pub fn connection_opened(&mut self) {
        self.sent_here = 0;
        self.refused_here = false;
        for message in &mut self.unanswered {
            if let Some(fresh) = Awaiting::for_message(self.app, &message.text) {
                message.awaiting = fresh;
            }
            message.received_here = 0;
        }
        self.greeting_due = self.app.greeting();
    }

    /// The connection ended: every unanswered message waits to be sent again, except the
    /// oldest when this was its [`MAX_TRIES`]th connection without its answer, which is given
    /// up and returned.
    pub fn connection_closed(&mut self) -> Option<GivenUp> {
        let charged = self.sent_here > 0 && !self.refused_here;
        self.sent_here = 0;
        self.greeting_due = None;
        self.refused_here = false;
        if !charged {
            return None;
        }
        // Sent on this connection and first in line: the server had it and did not answer.
        let oldest = self.unanswered.front_mut()?;
        oldest.tries += 1;
        if oldest.tries < MAX_TRIES {
            return None;
        }
        let oldest = self.unanswered.pop_front()?;
        Some(GivenUp {
            id: oldest.id,
            text: oldest.text,
            outcome: Outcome::Failed,
        })
    }

    /// The next message to send on this connection: an unanswered one first, then the queue.
    pub fn next_to_send(&self) -> Option<Outgoing> {
        match self.unanswered.get(self.sent_here) {
            Some(message) => Some(Outgoing {
                id: message.id,
                text: message.text.clone(),
                again: true,
            }),
            None => self.queued.front().map(|message| Outgoing {
                id: message.id,
                text: message.text.clone(),
                again: false,
            }),
        }
    }

    /// The message [`Outbox::next_to_send`] gave was taken by the socket.
    pub fn mark_sent(&mut self) {
        if self.sent_here < self.unanswered.len() {
            self.sent_here += 1;
            return;
        }
        let Some(Queued { id, text }) = self.queued.pop_front() else {
            return;
        };
        // A message nothing answers is done once sent.
        if let Some(awaiting) = Awaiting::for_message(self.app, &text) {
            self.unanswered.push_back(Unanswered {
                id,
                text,
                awaiting,
                received_here: 0,
                shown: 0,
                tries: 0,
            });
            self.sent_here += 1;
        }
    }

    /// A text from the server: the greeting, part of the oldest message's answer, or neither.
    pub fn received_text(&mut self, text: &str) -> Received {
        if self.greeting_due.take() == Some(text) {
            return Received::Greeting;
        }
        let Some(oldest) = self.unanswered.front_mut().filter(|_| self.sent_here > 0) else {
            return Received::Unexpected;
        };
        match &mut oldest.awaiting {
            Awaiting::Texts {
                text: expected,
                left,
            } if expected == text => {
                *left -= 1;
                let complete = *left == 0;
                oldest.received_here += 1;
                let show = oldest.received_here > oldest.shown;
                oldest.shown = oldest.shown.max(oldest.received_here);
                if complete {
                    self.answered();
                }
                Received::Answer { complete, show }
            }
            Awaiting::Texts { .. } | Awaiting::Close => Received::Unexpected,
        }
    }

    /// The server closed the connection with `code`: a normal close may answer `end`, and a
    /// 1009 or 1007 refuses the next message to be answered; either takes it out.
    pub fn received_close(&mut self, code: u16) -> CloseMeant {
        let refusal = match code {
            NORMAL_CLOSURE => {
                let answers = self.sent_here > 0
                    && self
                        .unanswered
                        .front()
                        .is_some_and(|oldest| oldest.awaiting == Awaiting::Close);
                if !answers {
                    return CloseMeant::Nothing;
                }
                self.answered();
                return CloseMeant::Answer;
            }
            MESSAGE_TOO_BIG => Refusal::TooLong,
            INVALID_PAYLOAD => Refusal::Invalid,
            _ => return CloseMeant::Nothing,
        };
        // The server answers in order: the messages before the refused one were answered (and
        // left), so it is the first sent here whose answer had not begun.
        let Some(position) = self
            .unanswered
            .iter()
            .take(self.sent_here)
            .position(|message| message.received_here == 0)
        else {
            return CloseMeant::Nothing;
        };
        let Some(refused) = self.unanswered.remove(position) else {
            return CloseMeant::Nothing;
        };
        self.sent_here -= 1;
        self.refused_here = true;
        CloseMeant::Refusal(GivenUp {
            id: refused.id,
            text: refused.text,
            outcome: Outcome::Refused(refusal),
        })
    }

    fn answered(&mut self) {
        self.unanswered.pop_front();
        self.sent_here -= 1;
    }

    /// Whether the app's greeting is still to come on this connection: nothing has come yet
    /// and the app sends one.
    pub fn greeting_due(&self) -> bool {
        self.greeting_due.is_some()
    }

    /// Whether a message sent on this connection still waits for its answer.
    pub fn awaiting_reply(&self) -> bool {
        self.sent_here > 0
    }

    /// How many messages wait, and for what.
    pub fn waiting(&self) -> Waiting {
        Waiting {
            to_send: self.queued.len() + self.unanswered.len() - self.sent_here,
            for_answer: self.sent_here,
        }
    }

    /// Every message kept, oldest first: unanswered, then queued. What a reload must not lose.
    pub fn texts(&self) -> Vec<&str> {
        self.unanswered
            .iter()
            .map(|message| message.text.as_str())
            .chain(self.queued.iter().map(|message| message.text.as_str()))
            .collect()
    }

    /// Every message kept, queued and unanswered.
    pub fn len(&self) -> usize {
        self.queued.len() + self.unanswered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The messages still in the outbox, as the client tells the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Waiting {
    /// Not sent on this connection yet (new, or to be sent again).
    pub to_send: usize,
    /// Sent on this connection, answer not yet (fully) arrived.
    pub for_answer: usize,
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "message" } else { "messages" };
        match (self.to_send, self.for_answer) {
            (0, 0) => Ok(()),
            (sending, 0) => write!(f, "{sending} {} waiting to be sent", plural(sending)),
            (0, answer) => write!(f, "{answer} {} waiting for an answer", plural(answer)),
            (sending, answer) => write!(
                f,
                "{sending} {} waiting to be sent, {answer} waiting for an answer",
                plural(sending)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends everything the outbox offers; returns what went out.
    fn send_all(outbox: &mut Outbox) -> Vec<Outgoing> {
        let mut sent = Vec::new();
        while let Some(message) = outbox.next_to_send() {
            outbox.mark_sent();
            sent.push(message);
        }
        sent
    }

    fn texts(sent: &[Outgoing]) -> Vec<(&str, bool)> {
        sent.iter().map(|m| (m.text.as_str(), m.again)).collect()
    }

    fn outbox_with(messages: &[&str]) -> Outbox {
        let mut outbox = Outbox::new(App::Subscriptions, MAX_MESSAGE_BYTES);
        for message in messages {
            assert!(outbox.push((*message).to_owned()).is_ok());
        }
        outbox
    }

    #[test]
    fn refuses_empty_and_overflow_and_keeps_order() {
        let mut outbox = Outbox::with_capacity(App::Subscriptions, 2, MAX_MESSAGE_BYTES);
        assert_eq!(outbox.push(String::new()), Err(PushError::Empty));
        assert!(outbox.push("a".into()).is_ok());
        assert!(outbox.push(" ".into()).is_ok(), "whitespace is a message");
        assert_eq!(outbox.push("c".into()), Err(PushError::Full));
        assert_eq!(outbox.next_to_send().map(|m| m.text), Some("a".into()));
        assert_eq!(
            outbox.next_to_send().map(|m| m.text),
            Some("a".into()),
            "peeking does not remove"
        );
    }

    #[test]
    fn messages_longer_than_the_server_accepts_are_refused_by_their_utf8_length() {
        let mut outbox = Outbox::new(App::Subscriptions, MAX_MESSAGE_BYTES);
        assert!(outbox.push("a".repeat(MAX_MESSAGE_BYTES)).is_ok());
        assert_eq!(
            outbox.push("a".repeat(MAX_MESSAGE_BYTES + 1)),
            Err(PushError::TooLong {
                bytes: MAX_MESSAGE_BYTES + 1,
                limit: MAX_MESSAGE_BYTES,
            })
        );
        // Half as many characters, each two bytes: one byte over.
        let accented = "é".repeat(MAX_MESSAGE_BYTES / 2) + "a";
        assert_eq!(
            outbox.push(accented),
            Err(PushError::TooLong {
                bytes: MAX_MESSAGE_BYTES + 1,
                limit: MAX_MESSAGE_BYTES,
            })
        );
        assert_eq!(outbox.len(), 1, "refused messages are not kept");
    }

    #[test]
    fn a_greeting_is_due_first_on_each_connection_of_an_app_that_sends_one() {
        let mut outbox = outbox_with(&[]);
        assert!(!outbox.greeting_due(), "no connection yet");
        outbox.connection_opened();
        assert!(outbox.greeting_due());
        assert_eq!(outbox.received_text("Greetings!"), Received::Greeting);
        assert!(!outbox.greeting_due());
        outbox.connection_opened();
        assert!(outbox.greeting_due(), "every connection is greeted");
        assert_eq!(outbox.received_text("other"), Received::Unexpected);
        assert!(!outbox.greeting_due(), "only first on a connection");
        outbox.connection_opened();
        outbox.connection_closed();
        assert!(!outbox.greeting_due(), "not after the connection ended");
        let mut echo = Outbox::new(App::Echo, MAX_MESSAGE_BYTES);
        echo.connection_opened();
        assert!(!echo.greeting_due(), "echo greets nobody");
    }

    #[test]
    fn every_rule_decides_what_answers_a_message() {
        let mut outbox = outbox_with(&["foo", "bar", "hello", "end"]);
        outbox.connection_opened();
        send_all(&mut outbox);
        assert_eq!(outbox.received_text("Greetings!"), Received::Greeting);
        // foo -> bar, bar -> foo: one text each.
        assert_eq!(
            outbox.received_text("bar"),
            Received::Answer {
                complete: true,
                show: true
            }
        );
        assert_eq!(
            outbox.received_text("foo"),
            Received::Answer {
                complete: true,
                show: true
            }
        );
        // Anything else: ten copies; the message leaves with the tenth.
        for _ in 0..9 {
            assert_eq!(
                outbox.received_text("hello"),
                Received::Answer {
                    complete: false,
                    show: true
                }
            );
        }
        assert_eq!(outbox.len(), 2);
        assert_eq!(
            outbox.received_text("hello"),
            Received::Answer {
                complete: true,
                show: true
            }
        );
        // end -> a normal close, and nothing else.
        assert_eq!(
            outbox.received_close(1001),
            CloseMeant::Nothing,
            "only 1000 answers end"
        );
        assert_eq!(outbox.received_close(1000), CloseMeant::Answer);
        assert!(outbox.is_empty());
        assert!(!outbox.awaiting_reply());
    }

    #[test]
    fn the_echo_app_has_its_own_words() {
        let mut outbox = Outbox::new(App::Echo, MAX_MESSAGE_BYTES);
        outbox.push("FOO".into()).expect("room");
        outbox.push("end".into()).expect("room");
        outbox.connection_opened();
        send_all(&mut outbox);
        assert_eq!(
            outbox.received_text("BAR"),
            Received::Answer {
                complete: true,
                show: true
            }
        );
        for _ in 0..10 {
            outbox.received_text("end");
        }
        assert!(outbox.is_empty(), "/echo answers end ten times");
    }

    #[test]
    fn answers_are_matched_in_order_and_strangers_answer_nothing() {
        let mut outbox = outbox_with(&["foo", "bar"]);
        outbox.connection_opened();
        send_all(&mut outbox);
        // The greeting only counts as the first text on a connection.
        assert_eq!(outbox.received_text("foo"), Received::Unexpected);
        assert_eq!(
            outbox.received_text("Greetings!"),
            Received::Unexpected,
            "a greeting after the first text answers nothing"
        );
        assert_eq!(
            outbox.received_close(1000),
            CloseMeant::Nothing,
            "the oldest waits for bar, not a close"
        );
        assert_eq!(
            outbox.received_text("bar"),
            Received::Answer {
                complete: true,
                show: true
            }
        );
        assert_eq!(
            outbox.received_text("foo"),
            Received::Answer {
                complete: true,
                show: true
            }
        );
    }

    #[test]
    fn unanswered_messages_go_out_again_first_in_order_then_the_queue() {
        let mut outbox = outbox_with(&["one", "two", "three"]);
        outbox.connection_opened();
        assert_eq!(
            texts(&send_all(&mut outbox)),
            [("one", false), ("two", false), ("three", false)]
        );
        outbox.received_text("Greetings!");
        // "one" is fully answered, "two" half, "three" not at all; then the connection drops.
        for _ in 0..10 {
            outbox.received_text("one");
        }
        for _ in 0..5 {
            outbox.received_text("two");
        }
        outbox.push("four".into()).expect("room");
        assert_eq!(
            outbox.waiting(),
            Waiting {
                to_send: 1,
                for_answer: 2
            }
        );

        outbox.connection_opened();
        assert!(
            !outbox.awaiting_reply(),
            "nothing is sent on the new one yet"
        );
        assert_eq!(
            outbox.waiting(),
            Waiting {
                to_send: 3,
                for_answer: 0
            }
        );
        assert_eq!(
            texts(&send_all(&mut outbox)),
            [("two", true), ("three", true), ("four", false)]
        );
        // The half answer on the old connection does not count: "two" needs ten again.
        outbox.received_text("Greetings!");
        for _ in 0..9 {
            outbox.received_text("two");
        }
        assert_eq!(outbox.len(), 3);
        outbox.received_text("two");
        assert_eq!(outbox.len(), 2);
    }

    #[test]
    fn a_message_sent_behind_end_waits_for_the_next_connection() {
        let mut outbox = outbox_with(&["end", "hello"]);
        outbox.connection_opened();
        send_all(&mut outbox);
        outbox.received_text("Greetings!");
        assert_eq!(outbox.received_close(1000), CloseMeant::Answer);
        assert_eq!(
            outbox.waiting(),
            Waiting {
                to_send: 0,
                for_answer: 1
            }
        );
        outbox.connection_closed();
        assert_eq!(
            outbox.waiting(),
            Waiting {
                to_send: 1,
                for_answer: 0
            },
            "once closed, it waits to be sent again"
        );
        outbox.connection_opened();
        assert_eq!(texts(&send_all(&mut outbox)), [("hello", true)]);
    }

    #[test]
    fn the_bound_counts_unanswered_and_queued_together() {
        let mut outbox = Outbox::new(App::Subscriptions, MAX_MESSAGE_BYTES);
        for n in 0..60 {
            outbox.push(n.to_string()).expect("room");
        }
        outbox.connection_opened();
        send_all(&mut outbox);
        for n in 60..OUTBOX_CAPACITY {
            outbox.push(n.to_string()).expect("room");
        }
        assert_eq!(outbox.push("one more".into()), Err(PushError::Full));
        assert_eq!(outbox.len(), 100);
        // Answering the oldest makes room for one.
        outbox.received_text("Greetings!");
        for _ in 0..10 {
            outbox.received_text("0");
        }
        assert!(outbox.push("one more".into()).is_ok());
        assert_eq!(outbox.push("and another".into()), Err(PushError::Full));
    }

    /// Feeds `copies` copies of `text` and returns which were to be shown.
    fn receive_copies(outbox: &mut Outbox, text: &str, copies: usize) -> Vec<bool> {
        (0..copies)
            .map(|_| match outbox.received_text(text) {
                Received::Answer { show, .. } => show,
                other => panic!("{text} is an answer, not {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_message_sent_again_after_a_break_in_mid_answer_shows_only_the_copies_not_yet_shown() {
        let mut outbox = outbox_with(&["hello", "next"]);
        outbox.connection_opened();
        send_all(&mut outbox);
        outbox.received_text("Greetings!");
        assert_eq!(receive_copies(&mut outbox, "hello", 5), [true; 5]);
        assert_eq!(outbox.connection_closed(), None);

        // Sent again; the first five copies were shown already.
        outbox.connection_opened();
        assert_eq!(
            texts(&send_all(&mut outbox)),
            [("hello", true), ("next", true)]
        );
        outbox.received_text("Greetings!");
        assert_eq!(receive_copies(&mut outbox, "hello", 3), [false; 3]);
        // A second break, after fewer copies than were shown: still five shown in all.
        assert_eq!(outbox.connection_closed(), None);
        outbox.connection_opened();
        send_all(&mut outbox);
        outbox.received_text("Greetings!");
        let shown = receive_copies(&mut outbox, "hello", 10);
        assert_eq!(shown, [[false; 5], [true; 5]].concat());
        assert_eq!(outbox.texts(), ["next"], "the tenth copy completed hello");
        // The next message's answer is shown whole: it never had any.
        assert_eq!(receive_copies(&mut outbox, "next", 10), [true; 10]);
        assert!(outbox.is_empty());
    }

    #[test]
    fn a_refused_message_leaves_and_the_queue_goes_on() {
        let mut outbox = outbox_with(&["foo", "too long", "after"]);
        outbox.connection_opened();
        send_all(&mut outbox);
        outbox.received_text("Greetings!");
        assert_eq!(
            outbox.received_text("bar"),
            Received::Answer {
                complete: true,
                show: true
            }
        );
        // The server read "too long" and closed with 1009; it never read "after".
        let CloseMeant::Refusal(refused) = outbox.received_close(1009) else {
            panic!("a 1009 refuses the next message to be answered");
        };
        assert_eq!(refused.text, "too long");
        assert_eq!(refused.outcome, Outcome::Refused(Refusal::TooLong));
        assert_eq!(
            refused.outcome.to_string(),
            "refused: too long for this server"
        );
        assert_eq!(
            outbox.connection_closed(),
            None,
            "a refusal is no try against the messages behind it"
        );
        outbox.connection_opened();
        assert_eq!(texts(&send_all(&mut outbox)), [("after", true)]);

        // 1007 refuses as well; a refusal with nothing sent refuses nothing.
        let CloseMeant::Refusal(refused) = outbox.received_close(1007) else {
            panic!("a 1007 refuses too");
        };
        assert_eq!(refused.outcome, Outcome::Refused(Refusal::Invalid));
        assert!(outbox.is_empty());
        outbox.connection_closed();
        outbox.connection_opened();
        assert_eq!(outbox.received_close(1009), CloseMeant::Nothing);
    }

    #[test]
    fn a_refusal_never_takes_a_message_whose_answer_had_begun() {
        let mut outbox = outbox_with(&["hello", "x"]);
        outbox.connection_opened();
        send_all(&mut outbox);
        receive_copies(&mut outbox, "hello", 4);
        let CloseMeant::Refusal(refused) = outbox.received_close(1009) else {
            panic!("refused");
        };
        assert_eq!(refused.text, "x");
        assert_eq!(outbox.texts(), ["hello"]);
    }

    #[test]
    fn a_message_never_answered_fails_after_three_tries_and_the_next_one_goes_on() {
        // The app predicts ten copies of "hello"; this server never sends them.
        let mut outbox = outbox_with(&["hello", "next"]);
        for tries in 1..MAX_TRIES {
            outbox.connection_opened();
            send_all(&mut outbox);
            assert_eq!(outbox.received_text("something else"), Received::Unexpected);
            assert_eq!(
                outbox.connection_closed(),
                None,
                "try {tries} of {MAX_TRIES}"
            );
            assert_eq!(outbox.texts(), ["hello", "next"]);
        }
        // One past the bound: the third connection without its answer gives it up.
        outbox.connection_opened();
        send_all(&mut outbox);
        let failed = outbox
            .connection_closed()
            .expect("given up after three tries");
        assert_eq!(failed.text, "hello");
        assert_eq!(failed.outcome, Outcome::Failed);
        assert_eq!(
            failed.outcome.to_string(),
            "failed: no answer after 3 tries"
        );
        // "next" waited behind it each time and is not charged for that.
        outbox.connection_opened();
        assert_eq!(texts(&send_all(&mut outbox)), [("next", true)]);
        assert_eq!(receive_copies(&mut outbox, "next", 10), [true; 10]);
        assert!(outbox.is_empty());
    }

    #[test]
    fn a_connection_with_nothing_sent_is_no_try() {
        let mut outbox = outbox_with(&["hello"]);
        for _ in 0..MAX_TRIES * 2 {
            outbox.connection_opened();
            assert_eq!(outbox.connection_closed(), None);
        }
        assert_eq!(outbox.texts(), ["hello"]);
    }

    #[test]
    fn the_length_limit_is_the_pages_and_counts_utf8_bytes() {
        let mut outbox = Outbox::new(App::Subscriptions, 4);
        assert!(outbox.check_length("éé").is_ok());
        assert_eq!(
            outbox.check_length("éé."),
            Err(PushError::TooLong { bytes: 5, limit: 4 })
        );
        assert_eq!(
            outbox.push("abcde".into()),
            Err(PushError::TooLong { bytes: 5, limit: 4 })
        );
        assert!(outbox.push("abcd".into()).is_ok());
        assert_eq!(outbox.max_message_bytes(), 4);
    }

    #[test]
    fn texts_lists_unanswered_then_queued_in_order() {
        let mut outbox = outbox_with(&["one", "two"]);
        outbox.connection_opened();
        send_all(&mut outbox);
        outbox.push("three".into()).expect("room");
        assert_eq!(outbox.texts(), ["one", "two", "three"]);
    }

    #[test]
    fn waiting_reads_as_a_sentence() {
        let waiting = |to_send, for_answer| {
            Waiting {
                to_send,
                for_answer,
            }
            .to_string()
        };
        assert_eq!(waiting(0, 0), "");
        assert_eq!(waiting(1, 0), "1 message waiting to be sent");
        assert_eq!(waiting(2, 0), "2 messages waiting to be sent");
        assert_eq!(waiting(0, 1), "1 message waiting for an answer");
        assert_eq!(
            waiting(3, 1),
            "3 messages waiting to be sent, 1 waiting for an answer"
        );
    }
}
