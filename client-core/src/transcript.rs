//! The conversation as the page shows it: who said what, newest last, capped in length so the
//! page stays fast after thousands of lines.

use std::fmt;

/// Most entries kept; older ones leave the page as new ones arrive.
pub const TRANSCRIPT_CAPACITY: usize = 1000;

/// Who an entry is from; also its CSS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    You,
    /// The user's message, sent again on a new connection because its answer never came.
    YouAgain,
    Server,
    /// Notices from the client itself: connection changes, a full queue.
    Notice,
}

impl Speaker {
    pub fn class(self) -> &'static str {
        match self {
            Speaker::You => "you",
            Speaker::YouAgain => "you again",
            Speaker::Server => "server",
            Speaker::Notice => "notice",
        }
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub speaker: Speaker,
    pub text: String,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.speaker {
            Speaker::You => write!(f, "You: {}", self.text),
            Speaker::YouAgain => write!(f, "You (sent again): {}", self.text),
            Speaker::Server => write!(f, "Server: {}", self.text),
            Speaker::Notice => f.write_str(&self.text),
        }
    }
}

/// How many lines the page's log holds, capped: only the count is kept (the lines themselves
/// live in the page), which is all it takes to know when the oldest must go.
#[derive(Debug)]
pub struct Transcript {
    len: usize,
    capacity: usize,
}

impl Default for Transcript {
    fn default() -> Self {
        Transcript::with_capacity(TRANSCRIPT_CAPACITY)
    }
}

impl Transcript {
    pub fn with_capacity(capacity: usize) -> Transcript {
        Transcript {
            len: 0,
            capacity: capacity.max(1),
        }
    }

    /// Counts one more line; returns how many of the oldest lines fall out (0 or 1), so the
    /// page removes the same number.
    pub fn push(&mut self) -> usize {
        if self.len < self.capacity {
            self.len += 1;
            0
        } else {
            1
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(speaker: Speaker, text: &str) -> Entry {
        Entry {
            speaker,
            text: text.to_owned(),
        }
    }

    #[test]
    fn lines_name_the_speaker() {
        assert_eq!(entry(Speaker::Server, "bar").to_string(), "Server: bar");
        assert_eq!(entry(Speaker::You, "foo").to_string(), "You: foo");
        assert_eq!(
            entry(Speaker::YouAgain, "foo").to_string(),
            "You (sent again): foo"
        );
        assert_eq!(entry(Speaker::Notice, "Connected").to_string(), "Connected");
    }

    #[test]
    fn counts_up_to_the_cap_then_evicts_one_per_line() {
        let mut transcript = Transcript::with_capacity(3);
        let evicted: Vec<usize> = (0..5).map(|_| transcript.push()).collect();
        assert_eq!(evicted, [0, 0, 0, 1, 1]);
        assert_eq!(transcript.len(), 3);
    }
}
