//! The conversation as the page shows it: who said what, newest last, capped in length so the
//! page stays fast after thousands of lines.

use std::collections::VecDeque;
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

/// The bounded log.
#[derive(Debug)]
pub struct Transcript {
    entries: VecDeque<Entry>,
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
            entries: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Appends an entry; returns how many of the oldest entries fell out (0 or 1), so the page
    /// removes the same number of lines.
    pub fn push(&mut self, entry: Entry) -> usize {
        self.entries.push_back(entry);
        let evicted = self.entries.len().saturating_sub(self.capacity);
        self.entries.drain(..evicted);
        evicted
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
    fn keeps_only_the_newest_entries() {
        let mut transcript = Transcript::with_capacity(3);
        let evicted: Vec<usize> = (0..5)
            .map(|n| transcript.push(entry(Speaker::Server, &n.to_string())))
            .collect();
        assert_eq!(evicted, [0, 0, 0, 1, 1]);
        let texts: Vec<_> = transcript.entries().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["2", "3", "4"]);
    }
}
