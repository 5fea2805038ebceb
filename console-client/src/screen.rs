//! Where the console client writes: replies on standard output, one per line; status on
//! standard error, the same lines whether or not a person is watching. It also counts the
//! messages that failed, for the exit code.
//!
//! One message is always exactly one line: text from the server (or typed by others in a
//! room) can hold line breaks and terminal escape sequences, so control characters are written
//! as escapes (`\n`, `\r`, `\u{1b}`), as `char::escape_debug` writes them; so are the format
//! and separator characters (a bidi override that would reverse the rest of the line, zero-width
//! characters, U+2028), as `\u{202e}`. Which ones is [`Escape`]'s choice: every one in room
//! messages, status lines and anything for a terminal; only the line breaks in an app's replies
//! written into a pipe or a file, which keep the rest exactly as received.

use std::borrow::Cow;
use std::io::Write;

use room_protocol::names::is_control_or_format;

/// Which characters of a line on standard output are written as escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Every control, format and line or paragraph separator character (Unicode Cc, Cf, Zl,
    /// Zp, as [`is_control_or_format`] says): what a terminal would act on (`ESC ]0;` retitles
    /// it, `\r` overwrites the line), every line break, and what would reorder the line or hide
    /// in it (U+202E reverses what follows it, U+200B shows as nothing). The joiner of an
    /// emoji sequence too, so `👩\u{200d}💻` shows as its two emoji around the escape.
    Controls,
    /// Only `\n` and `\r`, which would split one reply into two lines; everything else exactly
    /// as received, for a script reading a pipe.
    LineBreaks,
}

impl Escape {
    fn applies_to(self, c: char) -> bool {
        match self {
            Escape::Controls => is_control_or_format(c),
            Escape::LineBreaks => c == '\n' || c == '\r',
        }
    }
}

/// `text` with the characters `escape` names written as escapes (`\n`, `\r`, `\u{1b}`).
pub fn escaped(text: &str, escape: Escape) -> Cow<'_, str> {
    if !text.chars().any(|c| escape.applies_to(c)) {
        return Cow::Borrowed(text);
    }
    let mut line = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !escape.applies_to(c) {
            line.push(c);
        } else if c.is_control() {
            // A control character is never printable, so this is always an escape, and the
            // short one where there is one (`\n`, `\t`).
            line.extend(c.escape_debug());
        } else {
            // Not `escape_debug`, which writes a character as it is when the standard library's
            // own table (of its Unicode version) takes it for printable: the escape must not
            // depend on which of the two tables is newer.
            line.extend(c.escape_unicode());
        }
    }
    Cow::Owned(line)
}

/// The two outputs and the count of failed messages.
#[derive(Debug)]
pub struct Screen {
    /// What is escaped in the lines on standard output.
    replies: Escape,
    failed: usize,
}

/// Standard output is gone (a closed pipe): nothing more can be shown.
#[derive(Debug)]
pub struct StdoutGone(pub std::io::Error);

impl Screen {
    /// A screen whose standard output lines escape what `replies` says.
    pub fn new(replies: Escape) -> Screen {
        Screen { replies, failed: 0 }
    }

    /// A reply (or a room's message), on standard output as one line. Flushed at once, so a
    /// reader of the pipe sees each line as it arrives.
    pub fn reply(&mut self, text: &str) -> Result<(), StdoutGone> {
        let text = escaped(text, self.replies);
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush())
            .map_err(StdoutGone)
    }

    /// A status line on standard error; what it quotes from the server cannot make it two.
    pub fn status(&mut self, text: &str) {
        // Nothing useful can be done when standard error is gone.
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}",
            escaped(text, Escape::Controls)
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_escapes_and_nothing_else_changes() {
        let forged = "hi\nbo: I agree\r\x1b]0;pwned\x07\t\u{85}";
        assert_eq!(
            escaped(forged, Escape::Controls),
            r"hi\nbo: I agree\r\u{1b}]0;pwned\u{7}\t\u{85}"
        );
        assert_eq!(
            escaped(forged, Escape::LineBreaks),
            "hi\\nbo: I agree\\r\x1b]0;pwned\x07\t\u{85}"
        );
        // Plain text, quotes, backslashes and other scripts stay as they are, borrowed.
        for plain in [
            "hello",
            r#"a "quoted" \n"#,
            "Zoë 東京 🙂 👍🏽 ❤\u{fe0f}",
            "محمد",
            "",
        ] {
            for escape in [Escape::Controls, Escape::LineBreaks] {
                assert!(matches!(escaped(plain, escape), Cow::Borrowed(same) if same == plain));
            }
        }
    }

    #[test]
    fn format_and_separator_characters_become_escapes_in_room_and_status_lines() {
        // Each would reorder the line, break it or hide in it.
        for (c, escape) in [
            ('\u{202A}', r"\u{202a}"),
            ('\u{202E}', r"\u{202e}"),
            ('\u{2066}', r"\u{2066}"),
            ('\u{2069}', r"\u{2069}"),
            ('\u{200B}', r"\u{200b}"),
            ('\u{200D}', r"\u{200d}"),
            ('\u{200F}', r"\u{200f}"),
            ('\u{2028}', r"\u{2028}"),
            ('\u{2029}', r"\u{2029}"),
            ('\u{FEFF}', r"\u{feff}"),
            ('\u{AD}', r"\u{ad}"),
            ('\u{61C}', r"\u{61c}"),
            ('\u{180E}', r"\u{180e}"),
            ('\u{E0001}', r"\u{e0001}"),
            ('\u{E0041}', r"\u{e0041}"),
        ] {
            assert_eq!(
                escaped(&format!("ana: a{c}b"), Escape::Controls),
                format!("ana: a{escape}b"),
                "U+{:04X}",
                u32::from(c)
            );
        }
        // The override that would show the bytes "000,1" as "1,000" stays in its place,
        // written out, beside the controls' short escapes.
        assert_eq!(
            escaped("pay \u{202E}000,1\n\u{2028}", Escape::Controls),
            r"pay \u{202e}000,1\n\u{2028}"
        );
        // An emoji ZWJ sequence shows its joiner, like any zero-width character.
        assert_eq!(escaped("👩\u{200D}💻", Escape::Controls), r"👩\u{200d}💻");
        // An app's replies into a pipe keep them: only line breaks are escaped there.
        assert_eq!(
            escaped("a\u{202E}b\u{2028}c\n", Escape::LineBreaks),
            "a\u{202E}b\u{2028}c\\n"
        );
    }
}
