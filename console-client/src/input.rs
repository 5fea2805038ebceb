//! Standard input as lines, read on a thread of its own (a blocking read cannot be cancelled,
//! and a thread blocked in one does not keep the program from exiting) and handed to the
//! connection task through a channel. The channel holds one line: the reader waits while the
//! outbox is full, so a long pipe is read as fast as the server answers, never all at once.
//!
//! A line is kept only up to one byte past the limit: a longer one is counted and refused
//! without ever being held whole.

use std::io::BufRead;

use tokio::sync::mpsc;

/// One line of input, without its `\n` (or `\r\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Text(String),
    /// Longer than the limit; `bytes` is its whole length.
    TooLong {
        bytes: usize,
    },
    /// Not UTF-8, so not a text message.
    NotText,
}

/// Starts the reader thread: lines of at most `limit` bytes arrive on the returned channel,
/// which closes when standard input ends (or cannot be read).
pub fn read_stdin(limit: usize) -> mpsc::Receiver<Line> {
    let (lines_tx, lines_rx) = mpsc::channel(1);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        // Ends when the input ends, cannot be read, or nobody takes lines any more.
        while let Ok(Some(line)) = read_line(&mut stdin, limit) {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    lines_rx
}

/// The next line of `reader`, holding at most `limit + 1` of its bytes; `None` at the end.
pub fn read_line(reader: &mut impl BufRead, limit: usize) -> std::io::Result<Option<Line>> {
    let mut kept = Vec::new();
    let mut bytes = 0;
    let mut ended = false;
    let mut last_byte = None;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            break;
        }
        let (part, found) = match buffer.iter().position(|byte| *byte == b'\n') {
            Some(at) => (&buffer[..at], true),
            None => (buffer, false),
        };
        let room = (limit + 1).saturating_sub(kept.len());
        kept.extend_from_slice(&part[..part.len().min(room)]);
        bytes += part.len();
        last_byte = part.last().copied().or(last_byte);
        let used = part.len() + usize::from(found);
        reader.consume(used);
        if found {
            ended = true;
            break;
        }
    }
    if !ended && bytes == 0 {
        return Ok(None);
    }
    if last_byte == Some(b'\r') {
        bytes -= 1;
        kept.truncate(bytes);
    }
    if bytes > limit {
        return Ok(Some(Line::TooLong { bytes }));
    }
    Ok(Some(match String::from_utf8(kept) {
        Ok(text) => Line::Text(text),
        Err(_) => Line::NotText,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], limit: usize) -> Vec<Line> {
        // A tiny buffer, so lines cross buffer boundaries.
        let mut reader = std::io::BufReader::with_capacity(3, input);
        std::iter::from_fn(|| read_line(&mut reader, limit).expect("reads")).collect()
    }

    fn text(text: &str) -> Line {
        Line::Text(text.to_owned())
    }

    #[test]
    fn lines_lose_their_line_ends_and_the_last_needs_none() {
        assert_eq!(
            lines(b"foo\nhello\r\n\nend", 100),
            [text("foo"), text("hello"), text(""), text("end")]
        );
        assert_eq!(lines(b"", 100), []);
        assert_eq!(lines(b"\n", 100), [text("")]);
    }

    #[test]
    fn a_line_past_the_limit_is_refused_with_its_whole_length() {
        let mut input = "a".repeat(10).into_bytes();
        input.extend_from_slice(b"\n");
        input.extend_from_slice(&"b".repeat(11).into_bytes());
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&"c".repeat(5000).into_bytes());
        input.extend_from_slice(b"\nnext\n");
        assert_eq!(
            lines(&input, 10),
            [
                text(&"a".repeat(10)),
                Line::TooLong { bytes: 11 },
                Line::TooLong { bytes: 5000 },
                text("next"),
            ]
        );
        // Bytes, not characters: five two-byte characters are ten bytes.
        assert_eq!(
            lines("ééééé\néééééé\n".as_bytes(), 10),
            [text("ééééé"), Line::TooLong { bytes: 12 }]
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_not_text() {
        assert_eq!(
            lines(b"ok\n\xff\xfe\nok\n", 100),
            [text("ok"), Line::NotText, text("ok")]
        );
    }
}
