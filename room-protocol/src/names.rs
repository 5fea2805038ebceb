//! What a room name, a display name and a message id may be. Room names are counted in
//! characters of a small ASCII set, so every engine (a Redis key among them) can use them as
//! they are; display names and ids in Unicode characters, without control characters, so no
//! one can forge line breaks or hide text in what others see.

/// Longest room name, in characters.
pub const MAX_ROOM_NAME: usize = 64;
/// Longest display name (`?name=`), in characters.
pub const MAX_DISPLAY_NAME: usize = 32;
/// Longest message id, in characters.
pub const MAX_MESSAGE_ID: usize = 64;

/// 1 to 64 characters of `A-Z a-z 0-9 _ . : -`.
pub fn is_room_name(name: &str) -> bool {
    (1..=MAX_ROOM_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-'))
}

/// 1 to 32 characters, none of them a control character.
pub fn is_display_name(name: &str) -> bool {
    counted_without_controls(name, MAX_DISPLAY_NAME)
}

/// 1 to 64 characters, none of them a control character.
pub fn is_message_id(id: &str) -> bool {
    counted_without_controls(id, MAX_MESSAGE_ID)
}

fn counted_without_controls(text: &str, most: usize) -> bool {
    let mut count = 0;
    for c in text.chars() {
        if c.is_control() {
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
    fn message_ids() {
        assert!(is_message_id("0123456789abcdef0123456789abcdef"));
        assert!(is_message_id(&"x".repeat(64)));
        assert!(!is_message_id(&"x".repeat(65)));
        assert!(!is_message_id(""));
        assert!(!is_message_id("a\rb"));
    }
}
