//! The bounded queue between the input field and the socket: messages wait here, in order,
//! until the connection is open. Nothing is dropped silently: a full queue refuses the push.

use std::collections::VecDeque;

/// Queue size, as the `Queue.bounded(100)` of the client this project is modelled on.
pub const OUTBOX_CAPACITY: usize = 100;

/// Why a message was not queued; each is shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Empty messages are not sent.
    Empty,
    /// The queue holds [`OUTBOX_CAPACITY`] messages already.
    Full,
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
    fn default_capacity_is_one_hundred() {
        let mut outbox = Outbox::default();
        for n in 0..OUTBOX_CAPACITY {
            assert_eq!(outbox.push(n.to_string()), Ok(()));
        }
        assert_eq!(outbox.push("one more".into()), Err(PushError::Full));
        assert_eq!(outbox.len(), 100);
    }
}
