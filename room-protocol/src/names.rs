//! What a room name, a display name and a message id may be. Room names are counted in
//! characters of a small ASCII set, so every engine (a Redis key among them) can use them as
//! they are; display names and ids in Unicode characters, none of them a control, format or
//! line/paragraph separator character ([`is_control_or_format`]), so no one can forge line
//! breaks, reorder what others see around a name (bidi overrides and isolates), or make two
//! names that look alike differ by an invisible character.
//!
//! One consequence, chosen: an emoji ZWJ sequence (`👩‍💻`, a family) is not a display name,
//! because its joiner (U+200D) is a format character like any other zero-width one. Single
//! emoji, skin tones (symbols) and variation selectors (marks) are names as usual. Texts
//! (message bodies) may hold every one of these characters: the clients show them inert.

use std::cmp::Ordering;

/// Longest room name, in characters.
pub const MAX_ROOM_NAME: usize = 64;
/// Longest display name (`?name=`), in characters.
pub const MAX_DISPLAY_NAME: usize = 32;
/// Longest message id, in characters.
pub const MAX_MESSAGE_ID: usize = 64;

/// What display names and ids may not hold, in words, for the messages that refuse one.
pub const REFUSED_CHARACTERS: &str =
    "no control, format or line separator characters (Unicode Cc, Cf, Zl, Zp)";

/// What a display name may not be, in words, for the messages that refuse one: its
/// characters ([`REFUSED_CHARACTERS`]) and how it shows.
pub const DISPLAY_NAME_RULES: &str = "no control, format or line separator characters \
     (Unicode Cc, Cf, Zl, Zp), no blank fillers, no space at either end, and at most 4 \
     combining marks in a row";

/// Characters that show as nothing, though Unicode gives them a category that shows (a
/// letter, a mark, a symbol): a name of them, or with them, would look like a name without.
/// As ranges, first and last.
const BLANK_LOOKING: &[(char, char)] = &[
    ('\u{34F}', '\u{34F}'),     // combining grapheme joiner
    ('\u{115F}', '\u{1160}'),   // Hangul choseong and jungseong fillers
    ('\u{17B4}', '\u{17B5}'),   // Khmer inherent vowels
    ('\u{180B}', '\u{180F}'),   // Mongolian free variation selectors
    ('\u{2800}', '\u{2800}'),   // braille pattern blank
    ('\u{3164}', '\u{3164}'),   // Hangul filler
    ('\u{FE00}', '\u{FE0E}'),   // variation selectors 1-15 (16, emoji style, below)
    ('\u{FFA0}', '\u{FFA0}'),   // halfwidth Hangul filler
    ('\u{16FE4}', '\u{16FE4}'), // Khitan small script filler
    ('\u{E0100}', '\u{E01EF}'), // variation selectors 17-256
];

/// Variation selector 16: draws the symbol before it as an emoji (`❤\u{FE0F}`), so it may
/// follow a symbol; after a letter, or first, it shows nothing.
const EMOJI_STYLE: char = '\u{FE0F}';

/// Most combining marks in a row: Vietnamese stacks two on a vowel, Hebrew with points and
/// cantillation three; dozens make a name that spills over the lines above and below it.
const MAX_MARKS_IN_A_ROW: usize = 4;

/// A combining mark of the blocks where marks are stacked: the combining diacritics, their
/// extensions and supplement, those for symbols, half marks, and the marks of Cyrillic,
/// Hebrew, Arabic, Devanagari and Thai. A few characters of those ranges are not marks
/// (Hebrew's maqaf): counting them too only matters past four in a row.
fn is_combining_mark(c: char) -> bool {
    matches!(c,
        '\u{300}'..='\u{36F}'
        | '\u{483}'..='\u{489}'
        | '\u{591}'..='\u{5C7}'
        | '\u{610}'..='\u{61A}'
        | '\u{64B}'..='\u{65F}'
        | '\u{670}'
        | '\u{6D6}'..='\u{6ED}'
        | '\u{900}'..='\u{903}'
        | '\u{93A}'..='\u{94F}'
        | '\u{951}'..='\u{957}'
        | '\u{962}'..='\u{963}'
        | '\u{E31}'
        | '\u{E34}'..='\u{E3A}'
        | '\u{E47}'..='\u{E4E}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE20}'..='\u{FE2F}')
}

fn is_blank_looking(c: char) -> bool {
    BLANK_LOOKING
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// 1 to 64 characters of `A-Z a-z 0-9 _ . : -`.
pub fn is_room_name(name: &str) -> bool {
    (1..=MAX_ROOM_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-'))
}

/// 1 to 32 characters, none of them [`is_control_or_format`] or blank-looking, no white space
/// at either end, at most [`MAX_MARKS_IN_A_ROW`] combining marks in a row: no two names that
/// look alike differ by what cannot be seen (`ana` and `ana `), and no name is blank.
pub fn is_display_name(name: &str) -> bool {
    let mut marks = 0;
    let mut before: Option<char> = None;
    counted_without_controls(name, MAX_DISPLAY_NAME)
        && !name.starts_with(char::is_whitespace)
        && !name.ends_with(char::is_whitespace)
        && name.chars().all(|c| {
            marks = if is_combining_mark(c) { marks + 1 } else { 0 };
            let shows = if c == EMOJI_STYLE {
                before.is_some_and(|symbol| !symbol.is_alphanumeric() && !symbol.is_whitespace())
            } else {
                !is_blank_looking(c)
            };
            before = Some(c);
            marks <= MAX_MARKS_IN_A_ROW && shows
        })
}

/// 1 to 64 characters, none of them [`is_control_or_format`].
pub fn is_message_id(id: &str) -> bool {
    counted_without_controls(id, MAX_MESSAGE_ID)
}

/// Longest user id (a token's `sub`), in characters.
pub const MAX_USER_ID: usize = 64;

/// A user id (a token's `sub`): 1 to 64 characters, none of them [`is_control_or_format`].
pub fn is_user_id(user: &str) -> bool {
    counted_without_controls(user, MAX_USER_ID)
}

/// The format (Cf), line separator (Zl) and paragraph separator (Zp) characters, as sorted
/// ranges of code points, first and last: those of Unicode 18 when written.
///
/// Written out here rather than asked of a crate at run time: the crates that give the general
/// category (`unicode-properties`, `unicode-general-category`) carry the table of all 30
/// categories, 3,466 ranges, which made the web client's wasm 42 KB larger (18 KB gzip, about
/// a sixth of it) for these 21. The crate still decides: a test compares this table with
/// `unicode-properties` for every character, so a newer Unicode there that adds a format
/// character fails that test until the range is added here.
const FORMAT_AND_SEPARATORS: &[(char, char)] = &[
    ('\u{AD}', '\u{AD}'),       // soft hyphen
    ('\u{600}', '\u{605}'),     // Arabic number signs
    ('\u{61C}', '\u{61C}'),     // Arabic letter mark
    ('\u{6DD}', '\u{6DD}'),     // Arabic end of ayah
    ('\u{70F}', '\u{70F}'),     // Syriac abbreviation mark
    ('\u{890}', '\u{891}'),     // Arabic pound and piastre marks above
    ('\u{8E2}', '\u{8E2}'),     // Arabic disputed end of ayah
    ('\u{180E}', '\u{180E}'),   // Mongolian vowel separator
    ('\u{200B}', '\u{200F}'),   // zero-width space, non-joiner, joiner; LRM, RLM
    ('\u{2028}', '\u{202E}'),   // line, paragraph separators; bidi embeddings, overrides
    ('\u{2060}', '\u{2064}'),   // word joiner, invisible operators
    ('\u{2066}', '\u{206F}'),   // bidi isolates; deprecated format characters
    ('\u{FEFF}', '\u{FEFF}'),   // zero-width no-break space (byte order mark)
    ('\u{FFF9}', '\u{FFFB}'),   // interlinear annotation
    ('\u{110BD}', '\u{110BD}'), // Kaithi number sign
    ('\u{110CD}', '\u{110CD}'), // Kaithi number sign above
    ('\u{13430}', '\u{1343F}'), // Egyptian hieroglyph format controls
    ('\u{1BCA0}', '\u{1BCA3}'), // shorthand format controls
    ('\u{1D173}', '\u{1D17A}'), // musical symbol beams, ties, slurs, phrases
    ('\u{E0001}', '\u{E0001}'), // language tag
    ('\u{E0020}', '\u{E007F}'), // tags
];

/// A character that acts on the text around it instead of showing as itself: Unicode's
/// general categories Cc (controls: line breaks, escape sequences), Cf (format: bidi
/// embeddings, overrides, isolates and marks, zero-width spaces and joiners, U+FEFF, the soft
/// hyphen, tags) and Zl, Zp (U+2028, U+2029, which break lines). A character assigned one of
/// these categories after the table was written is allowed until the table learns it.
pub fn is_control_or_format(c: char) -> bool {
    c.is_control()
        || FORMAT_AND_SEPARATORS
            .binary_search_by(|&(first, last)| {
                if last < c {
                    Ordering::Less
                } else if first > c {
                    Ordering::Greater
                } else {
                    Ordering::Equal
                }
            })
            .is_ok()
}

fn counted_without_controls(text: &str, most: usize) -> bool {
    let mut count = 0;
    for c in text.chars() {
        if is_control_or_format(c) {
            return false;
        }
        count += 1;
        if count > most {
            return false;
        }
    }
    count > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Characters a name may not hold beyond the controls: each format (Cf) or separator
    /// (Zl, Zp) character the issue named, and the ends of the ranges.
    const FORMAT_AND_SEPARATORS: &[(char, &str)] = &[
        ('\u{AD}', "soft hyphen"),
        ('\u{600}', "Arabic number sign"),
        ('\u{61C}', "Arabic letter mark"),
        ('\u{6DD}', "Arabic end of ayah"),
        ('\u{70F}', "Syriac abbreviation mark"),
        ('\u{180E}', "Mongolian vowel separator"),
        ('\u{200B}', "zero width space"),
        ('\u{200C}', "zero width non-joiner"),
        ('\u{200D}', "zero width joiner"),
        ('\u{200E}', "left-to-right mark"),
        ('\u{200F}', "right-to-left mark"),
        ('\u{2028}', "line separator"),
        ('\u{2029}', "paragraph separator"),
        ('\u{202A}', "left-to-right embedding"),
        ('\u{202B}', "right-to-left embedding"),
        ('\u{202C}', "pop directional formatting"),
        ('\u{202D}', "left-to-right override"),
        ('\u{202E}', "right-to-left override"),
        ('\u{2060}', "word joiner"),
        ('\u{2061}', "function application"),
        ('\u{2064}', "invisible plus"),
        ('\u{2066}', "left-to-right isolate"),
        ('\u{2067}', "right-to-left isolate"),
        ('\u{2068}', "first strong isolate"),
        ('\u{2069}', "pop directional isolate"),
        ('\u{206A}', "inhibit symmetric swapping"),
        ('\u{206F}', "nominal digit shapes"),
        ('\u{FEFF}', "zero width no-break space (BOM)"),
        ('\u{FFF9}', "interlinear annotation anchor"),
        ('\u{FFFB}', "interlinear annotation terminator"),
        ('\u{110BD}', "Kaithi number sign"),
        ('\u{1BCA0}', "shorthand format letter overlap"),
        ('\u{1D173}', "musical symbol begin beam"),
        ('\u{E0001}', "language tag"),
        ('\u{E0020}', "tag space"),
        ('\u{E0041}', "tag latin capital letter a"),
        ('\u{E007F}', "cancel tag"),
    ];

    #[test]
    fn room_names() {
        for good in ["lobby", "a", "A-Z_a.z:0-9", &"r".repeat(64)] {
            assert!(is_room_name(good), "{good}");
        }
        for bad in ["", "a b", "é", "a/b", "a\n", &"r".repeat(65), "lobby\u{0}"] {
            assert!(!is_room_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn display_names_count_characters_not_bytes() {
        for good in ["ana", "Zoë", &"é".repeat(32), "a b", "🙂"] {
            assert!(is_display_name(good), "{good}");
        }
        for bad in ["", &"é".repeat(33), "a\nb", "\u{7f}", "tab\there", "\u{85}"] {
            assert!(!is_display_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn format_and_separator_characters_are_refused_anywhere_in_a_name_or_an_id() {
        for &(c, what) in FORMAT_AND_SEPARATORS {
            assert!(is_control_or_format(c), "{what} U+{:04X}", u32::from(c));
            for name in [
                format!("{c}"),
                format!("{c}ana"),
                format!("ana{c}"),
                format!("a{c}b"),
            ] {
                assert!(!is_display_name(&name), "{what} in {name:?}");
                assert!(!is_message_id(&name), "{what} in {name:?}");
            }
        }
    }

    #[test]
    fn ordinary_names_of_every_script_are_accepted() {
        for good in [
            "Zoë",
            "José María",
            "Åsa Ødegård",
            "Ελένη",
            "Наташа",
            "محمد",
            "שרה",
            "東京太郎",
            "김민준",
            "देवनागरी",
            "ana 🙂",
            "👍🏽",
            "❤\u{FE0F}",
            "🇫🇷",
            "a\u{A0}b",
            "a\u{3000}b",
            "x²",
            "~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./",
        ] {
            assert!(is_display_name(good), "{good:?}");
            assert!(is_message_id(good), "{good:?}");
            assert!(!good.chars().any(is_control_or_format), "{good:?}");
        }
    }

    #[test]
    fn a_display_name_cannot_look_like_another_or_like_nothing() {
        for bad in [
            " ",
            "   ",
            "ana ",
            " ana",
            "ana\u{3000}",
            "\u{A0}ana",
            "\u{3164}",
            "ana\u{3164}",
            "\u{115F}\u{1160}",
            "\u{FFA0}",
            "\u{2800}",
            "a\u{34F}na",
            "\u{17B4}",
            &format!("a{}", "\u{301}".repeat(5)),
            &format!("a{}", "\u{1DC0}\u{20D0}\u{FE20}\u{1AB0}\u{300}"),
            // Variation selectors that show nothing: first, after a letter, or any but 16.
            "\u{FE0F}",
            "\u{FE00}",
            "ana\u{FE00}",
            "ana\u{FE0F}",
            "ana\u{E0100}",
            "\u{180B}",
            "\u{16FE4}",
            // Stacks in the scripts that stack.
            &format!("a{}", "\u{E49}".repeat(5)),
            &format!("a{}", "\u{591}".repeat(5)),
            &format!("a{}", "\u{483}".repeat(5)),
            &format!("\u{628}{}", "\u{64B}".repeat(5)),
        ] {
            assert!(!is_display_name(bad), "{bad:?}");
        }
        for good in [
            "a b",
            "Nguyễn",
            // Decomposed: e, circumflex, tilde below... two marks on one letter.
            "Nguye\u{302}\u{303}n",
            &format!("a{}", "\u{301}".repeat(4)),
            &format!("{}b", "a\u{301}".repeat(8)),
            "❤\u{FE0F}",
            "ana ❤\u{FE0F}",
            // Hebrew with points, Thai with a vowel and a tone mark, Arabic with harakat,
            // Hindi.
            "שָׁלוֹם",
            "สมชาย",
            "กิ่ง",
            "مُحَمَّد",
            "प्रिया",
        ] {
            assert!(is_display_name(good), "{good:?}");
        }
    }

    #[test]
    fn an_emoji_zwj_sequence_is_not_a_name() {
        // Chosen: the joiner is a zero-width format character like the others.
        assert!(!is_display_name("👩\u{200D}💻"));
        assert!(!is_display_name("👨\u{200D}👩\u{200D}👧"));
        // A subdivision flag is tags too.
        assert!(!is_display_name(
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}"
        ));
    }

    #[test]
    fn message_ids() {
        assert!(is_message_id("0123456789abcdef0123456789abcdef"));
        assert!(is_message_id(&"x".repeat(64)));
        assert!(!is_message_id(&"x".repeat(65)));
        assert!(!is_message_id(""));
        assert!(!is_message_id("a\rb"));
    }

    #[test]
    fn every_character_is_sorted_as_the_unicode_tables_say() {
        use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
        // A newer Unicode in the crate that adds a format character fails here: add it above.
        let mismatched: Vec<String> = ('\u{0}'..=char::MAX)
            .filter(|&c| {
                let refused = matches!(
                    c.general_category(),
                    GeneralCategory::Control
                        | GeneralCategory::Format
                        | GeneralCategory::LineSeparator
                        | GeneralCategory::ParagraphSeparator
                );
                is_control_or_format(c) != refused
            })
            .map(|c| format!("U+{:04X} {:?}", u32::from(c), c.general_category()))
            .collect();
        assert!(mismatched.is_empty(), "{mismatched:?}");
    }
}
