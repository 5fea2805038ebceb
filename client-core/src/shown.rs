//! How the page shows a name or a text that someone else typed, decided here so the rule is
//! tested natively. The page puts each name and each text in an element of its own that
//! isolates it (`<bdi>`: `unicode-bidi: isolate`, `dir="auto"`), so nothing in it can reorder
//! the line around it, whatever it holds. Inside it, [`pieces`] leaves ordinary characters as
//! they are and picks out the ones that would still change how the text itself reads: the bidi
//! embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069, which reverse or reorder
//! what follows them: "Trojan Source") and the line and paragraph separators (U+2028,
//! U+2029, a line break in the middle of a line). The page shows each of those as its code
//! point, [`Piece::Marked`], in place of the character, so it is visible and acts on nothing.
//!
//! The other format characters stay as they are, inert inside their isolate: they are part
//! of ordinary writing (the joiner of an emoji sequence and of Indic scripts, the non-joiner
//! of Persian, the left-to-right and right-to-left marks of Arabic and Hebrew, the soft
//! hyphen, the tags of a subdivision flag), and showing them as codes would break that writing
//! for everyone. Names hold none of them ([`room_protocol::names`] refuses every format
//! character); a text may. The console client, which cannot isolate, escapes every one.

/// A piece of a name or a text as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Characters shown as they are.
    Text(&'a str),
    /// A character that would reorder or break the text: shown as [`marker`], not as itself.
    Marked(char),
}

/// A character that [`pieces`] shows as its code point instead of itself.
pub fn is_marked(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// `text` in the pieces the page shows: runs of ordinary characters, and each [`is_marked`]
/// character on its own. Concatenating the runs and the marked characters gives `text` back.
pub fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut run_start = 0;
    for (at, c) in text.char_indices() {
        if is_marked(c) {
            if run_start < at {
                pieces.push(Piece::Text(&text[run_start..at]));
            }
            pieces.push(Piece::Marked(c));
            run_start = at + c.len_utf8();
        }
    }
    if run_start < text.len() {
        pieces.push(Piece::Text(&text[run_start..]));
    }
    pieces
}

/// What the page shows in place of a marked character: its code point, `U+202E`.
pub fn marker(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// Characters of a text a notice about it quotes.
pub const PREVIEW_CHARS: usize = 40;

/// The start of `text` that a notice about it quotes (at most [`PREVIEW_CHARS`] characters),
/// and whether it was cut. Each client quotes it its own way (a terminal escapes it).
pub fn preview(text: &str) -> (&str, bool) {
    match text.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => (&text[..cut], true),
        None => (text, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reordering_and_line_breaking_characters_are_marked_and_the_rest_kept() {
        let cases: &[(&str, &[Piece<'_>])] = &[
            ("", &[]),
            ("hello", &[Piece::Text("hello")]),
            (
                "pay \u{202E}000,1\u{202C} now",
                &[
                    Piece::Text("pay "),
                    Piece::Marked('\u{202E}'),
                    Piece::Text("000,1"),
                    Piece::Marked('\u{202C}'),
                    Piece::Text(" now"),
                ],
            ),
            (
                "\u{2066}\u{2067}x\u{2068}\u{2069}",
                &[
                    Piece::Marked('\u{2066}'),
                    Piece::Marked('\u{2067}'),
                    Piece::Text("x"),
                    Piece::Marked('\u{2068}'),
                    Piece::Marked('\u{2069}'),
                ],
            ),
            (
                "a\u{2028}b\u{2029}",
                &[
                    Piece::Text("a"),
                    Piece::Marked('\u{2028}'),
                    Piece::Text("b"),
                    Piece::Marked('\u{2029}'),
                ],
            ),
            (
                "\u{202A}\u{202B}\u{202D}",
                &[
                    Piece::Marked('\u{202A}'),
                    Piece::Marked('\u{202B}'),
                    Piece::Marked('\u{202D}'),
                ],
            ),
            // Ordinary writing keeps its format characters: an emoji ZWJ sequence, a Persian
            // word with its non-joiner, Hebrew with a right-to-left mark, a soft hyphen, a
            // subdivision flag's tags, a zero-width space, a byte order mark.
            (
                "👩\u{200D}💻 می\u{200C}خواهم שלום\u{200F} co\u{AD}op 🏴\u{E0067}\u{E0062}\u{E007F} a\u{200B}b\u{FEFF}",
                &[Piece::Text(
                    "👩\u{200D}💻 می\u{200C}خواهم שלום\u{200F} co\u{AD}op 🏴\u{E0067}\u{E0062}\u{E007F} a\u{200B}b\u{FEFF}",
                )],
            ),
        ];
        for &(text, expected) in cases {
            assert_eq!(pieces(text), expected, "{text:?}");
            // Nothing is lost: the pieces put back together are the text.
            let joined: String = pieces(text)
                .iter()
                .map(|piece| match piece {
                    Piece::Text(run) => (*run).to_owned(),
                    Piece::Marked(c) => c.to_string(),
                })
                .collect();
            assert_eq!(joined, text);
        }
    }

    #[test]
    fn every_marked_character_is_a_format_or_separator_character() {
        // So a name, which holds none of those, is always one plain piece.
        let marked: Vec<char> = ('\u{0}'..=char::MAX).filter(|&c| is_marked(c)).collect();
        assert_eq!(marked.len(), 11, "{marked:?}");
        for c in marked {
            assert!(room_protocol::names::is_control_or_format(c), "{c:?}");
        }
    }

    #[test]
    fn a_marker_is_the_code_point() {
        assert_eq!(marker('\u{202E}'), "U+202E");
        assert_eq!(marker('\u{2028}'), "U+2028");
        assert_eq!(marker('\u{2066}'), "U+2066");
    }

    #[test]
    fn previews_cut_at_a_character_count() {
        assert_eq!(preview("hello"), ("hello", false));
        let long = "é".repeat(100);
        let (start, cut) = preview(&long);
        assert_eq!((start.chars().count(), cut), (PREVIEW_CHARS, true));
        assert_eq!(preview(&long[..80]), (&long[..80], false));
    }
}
