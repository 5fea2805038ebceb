//! Where the console client writes: replies on standard output, one per line, exactly as
//! received; status on standard error, the same lines whether or not a person is watching.
//! It also counts the messages that failed, for the exit code.

use std::io::Write;

/// The two outputs and the count of failed messages.
#[derive(Debug, Default)]
pub struct Screen {
    failed: usize,
}

/// Standard output is gone (a closed pipe): nothing more can be shown.
#[derive(Debug)]
pub struct StdoutGone(pub std::io::Error);

impl Screen {
    /// A reply (or a room's message), on standard output. Flushed at once, so a reader of the
    /// pipe sees each line as it arrives.
    pub fn reply(&mut self, text: &str) -> Result<(), StdoutGone> {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush())
            .map_err(StdoutGone)
    }

    /// A status line on standard error.
    pub fn status(&mut self, text: &str) {
        // Nothing useful can be done when standard error is gone.
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    /// A message that will never have its answer: said on standard error, and counted.
    pub fn failed(&mut self, text: &str) {
        self.failed += 1;
        self.status(text);
    }

    pub fn failures(&self) -> usize {
        self.failed
    }
}
