//! Every message the user typed, from the moment it is queued until the server has answered
//! it. Nothing is dropped silently: a full outbox refuses the push, and a message leaves only
//! once its answer arrived.
//!
//! A message is first *queued*; once the socket took it, it is *unanswered* until the answer
//! the shared [`rules`] predict for it has arrived in full, in order. When a connection opens,
//! every unanswered message goes out again first, in its original order, then the queue: so
//! every message is answered at least once, and one is sent twice only when the server
//! answered it but the answer was lost on the way.

use std::collections::VecDeque;
use std::fmt;

use rules::{App, Reply};

/// Messages kept at most, queued and unanswered together, as the `Queue.bounded(100)` of the
/// client this project is modelled on.
pub const OUTBOX_CAPACITY: usize = 100;

/// Longest message, in bytes as sent (UTF-8): the server's default `--max-message-size`. The
/// server closes the connection (1009) on a longer one, and the message would be lost, so it
/// is refused here and stays in the input. The input's `maxlength` cannot do this: it counts
/// UTF-16 units, and 65,536 of them can be up to 196,608 bytes of UTF-8.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The close code that answers `end`.
const NORMAL_CLOSURE: u16 = 1000;

/// Why a message was not queued; each is shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Empty messages are not sent.
    Empty,
    /// The outbox holds [`OUTBOX_CAPACITY`] messages already.
    Full,
    /// The message is longer than [`MAX_MESSAGE_BYTES`]; `bytes` is its length.
    TooLong { bytes: usize },
}

/// A message ready to go out, as [`Outbox::next_to_send`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
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
    /// and the message has left the outbox.
    Answer { complete: bool },
    /// Nothing the rules predict: shown, but it answers nothing.
    Unexpected,
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
struct Unanswered {
    text: String,
    awaiting: Awaiting,
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
    queued: VecDeque<String>,
    capacity: usize,
    /// The greeting still to come on this connection, if the app sends one.
    greeting_due: Option<&'static str>,
}

impl Outbox {
    /// An outbox for messages to `app`, which decides what answers each message.
    pub fn new(app: App) -> Outbox {
        Outbox::with_capacity(app, OUTBOX_CAPACITY)
    }

    pub fn with_capacity(app: App, capacity: usize) -> Outbox {
        Outbox {
            app,
            unanswered: VecDeque::new(),
            sent_here: 0,
            queued: VecDeque::new(),
            capacity,
            greeting_due: None,
        }
    }

    /// Queues a message at the back.
    pub fn push(&mut self, text: String) -> Result<(), PushError> {
        if text.is_empty() {
            return Err(PushError::Empty);
        }
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(PushError::TooLong { bytes: text.len() });
        }
        if self.len() >= self.capacity {
            return Err(PushError::Full);
        }
        self.queued.push_back(text);
        Ok(())
    }

    /// A connection opened: unanswered messages go out again first, and whatever part of
    /// their answers came on the old connection no longer counts.
    pub fn connection_opened(&mut self) {
        self.sent_here = 0;
        for message in &mut self.unanswered {
            if let Some(fresh) = Awaiting::for_message(self.app, &message.text) {
                message.awaiting = fresh;
            }
        }
        self.greeting_due = self.app.greeting();
    }

    /// The connection ended: every unanswered message waits to be sent again.
    pub fn connection_closed(&mut self) {
        self.sent_here = 0;
        self.greeting_due = None;
    }

    /// The next message to send on this connection: an unanswered one first, then the queue.
    pub fn next_to_send(&self) -> Option<Outgoing> {
        match self.unanswered.get(self.sent_here) {
            Some(message) => Some(Outgoing {
                text: message.text.clone(),
                again: true,
            }),
            None => self.queued.front().map(|text| Outgoing {
                text: text.clone(),
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
        let Some(text) = self.queued.pop_front() else {
            return;
        };
        // A message nothing answers is done once sent.
        if let Some(awaiting) = Awaiting::for_message(self.app, &text) {
            self.unanswered.push_back(Unanswered { text, awaiting });
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
                if complete {
                    self.answered();
                }
                Received::Answer { complete }
            }
            Awaiting::Texts { .. } | Awaiting::Close => Received::Unexpected,
        }
    }

    /// The server closed the connection with `code`: `true` if that answered the oldest
    /// message (a normal close after `end`), which then leaves the outbox.
    pub fn received_close(&mut self, code: u16) -> bool {
        let answers = self.sent_here > 0
            && code == NORMAL_CLOSURE
            && self
                .unanswered
                .front()
                .is_some_and(|oldest| oldest.awaiting == Awaiting::Close);
        if answers {
            self.answered();
        }
        answers
    }

    fn answered(&mut self) {
        self.unanswered.pop_front();
        self.sent_here -= 1;
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

    /// Every message kept, queued and unanswered.
    pub fn len(&self) -> usize {
        self.queued.len() + self.unanswered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The messages still in the outbox, as the page tells the user.
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
        let mut outbox = Outbox::new(App::Subscriptions);
        for message in messages {
            assert_eq!(outbox.push((*message).to_owned()), Ok(()));
        }
        outbox
    }

    #[test]
    fn refuses_empty_and_overflow_and_keeps_order() {
        let mut outbox = Outbox::with_capacity(App::Subscriptions, 2);
        assert_eq!(outbox.push(String::new()), Err(PushError::Empty));
        assert_eq!(outbox.push("a".into()), Ok(()));
        assert_eq!(outbox.push(" ".into()), Ok(()), "whitespace is a message");
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
        let mut outbox = Outbox::new(App::Subscriptions);
        assert_eq!(outbox.push("a".repeat(MAX_MESSAGE_BYTES)), Ok(()));
        assert_eq!(
            outbox.push("a".repeat(MAX_MESSAGE_BYTES + 1)),
            Err(PushError::TooLong {
                bytes: MAX_MESSAGE_BYTES + 1
            })
        );
        // Half as many characters, each two bytes: one byte over.
        let accented = "é".repeat(MAX_MESSAGE_BYTES / 2) + "a";
        assert_eq!(
            outbox.push(accented),
            Err(PushError::TooLong {
                bytes: MAX_MESSAGE_BYTES + 1
            })
        );
        assert_eq!(outbox.len(), 1, "refused messages are not kept");
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
            Received::Answer { complete: true }
        );
        assert_eq!(
            outbox.received_text("foo"),
            Received::Answer { complete: true }
        );
        // Anything else: ten copies; the message leaves with the tenth.
        for _ in 0..9 {
            assert_eq!(
                outbox.received_text("hello"),
                Received::Answer { complete: false }
            );
        }
        assert_eq!(outbox.len(), 2);
        assert_eq!(
            outbox.received_text("hello"),
            Received::Answer { complete: true }
        );
        // end -> a normal close, and nothing else.
        assert!(!outbox.received_close(1001), "only 1000 answers end");
        assert!(outbox.received_close(1000));
        assert!(outbox.is_empty());
        assert!(!outbox.awaiting_reply());
    }

    #[test]
    fn the_echo_app_has_its_own_words() {
        let mut outbox = Outbox::new(App::Echo);
        outbox.push("FOO".into()).expect("room");
        outbox.push("end".into()).expect("room");
        outbox.connection_opened();
        send_all(&mut outbox);
        assert_eq!(
            outbox.received_text("BAR"),
            Received::Answer { complete: true }
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
        assert!(
            !outbox.received_close(1000),
            "the oldest waits for bar, not a close"
        );
        assert_eq!(
            outbox.received_text("bar"),
            Received::Answer { complete: true }
        );
        assert_eq!(
            outbox.received_text("foo"),
            Received::Answer { complete: true }
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
        assert!(outbox.received_close(1000));
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
        let mut outbox = Outbox::new(App::Subscriptions);
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
        assert_eq!(outbox.push("one more".into()), Ok(()));
        assert_eq!(outbox.push("and another".into()), Err(PushError::Full));
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
