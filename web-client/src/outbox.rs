//! The bounded queue between the input field and the socket: messages wait here, in order,
//! until the connection is open. Nothing is dropped silently: a full queue refuses the push.

use std::collections::VecDeque;

/// Queue size, as the `Queue.bounded(100)` of the client this project is modelled on.
pub const OUTBOX_CAPACITY: usize = 100;

/// Longest message, in bytes as sent (UTF-8): the server's default `--max-message-size`. The
/// server closes the connection (1009) on a longer one, and the message would be lost, so it
/// is refused here and stays in the input. The input's `maxlength` cannot do this: it counts
/// UTF-16 units, and 65,536 of them can be up to 196,608 bytes of UTF-8.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Why a message was not queued; each is shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Empty messages are not sent.
    Empty,
    /// The queue holds [`OUTBOX_CAPACITY`] messages already.
    Full,
    /// The message is longer than [`MAX_MESSAGE_BYTES`]; `bytes` is its length.
    TooLong { bytes: usize },
}

/// Messages typed by the user and not yet sent.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<String>,
    capacity: usize,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::with_capacity(OUTBOX_CAPACITY)
    }
}

impl Outbox {
    pub fn with_capacity(capacity: usize) -> Outbox {
        Outbox {
            queue: VecDeque::with_capacity(capacity),
            capacity,
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
        if self.queue.len() >= self.capacity {
            return Err(PushError::Full);
        }
        self.queue.push_back(text);
        Ok(())
    }

    /// The oldest message, still queued: it leaves only once it is really sent.
    pub fn front(&self) -> Option<&str> {
        self.queue.front().map(String::as_str)
    }

    /// Removes the oldest message after it was sent.
    pub fn pop(&mut self) -> Option<String> {
        self.queue.pop_front()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_refuses_empty_and_overflow() {
        let mut outbox = Outbox::with_capacity(2);
        assert_eq!(outbox.push(String::new()), Err(PushError::Empty));
        assert_eq!(outbox.push("a".into()), Ok(()));
        assert_eq!(outbox.push(" ".into()), Ok(()), "whitespace is a message");
        assert_eq!(outbox.push("c".into()), Err(PushError::Full));
        assert_eq!(outbox.front(), Some("a"));
        assert_eq!(outbox.front(), Some("a"), "peeking does not remove");
        assert_eq!(outbox.pop().as_deref(), Some("a"));
        assert_eq!(outbox.push("c".into()), Ok(()));
        assert_eq!(outbox.pop().as_deref(), Some(" "));
        assert_eq!(outbox.pop().as_deref(), Some("c"));
        assert!(outbox.is_empty());
    }

    #[test]
    fn messages_longer_than_the_server_accepts_are_refused_by_their_utf8_length() {
        let mut outbox = Outbox::default();
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
        assert_eq!(outbox.len(), 1, "refused messages are not queued");
    }

    #[test]
    fn default_capacity_is_one_hundred() {
        let mut outbox = Outbox::default();
        for n in 0..OUTBOX_CAPACITY {
            assert_eq!(outbox.push(n.to_string()), Ok(()));
        }
        assert_eq!(outbox.push("one more".into()), Err(PushError::Full));
        assert_eq!(outbox.len(), 100);
    }
}
