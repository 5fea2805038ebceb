//! The outbox as the tab's `sessionStorage` keeps it across a reload: the messages still
//! waiting or unanswered, oldest first, for one WebSocket URL. Plain text, so it needs no
//! serialization crate in the wasm: a header line, then each field as `<bytes>:<text>`.
//!
//! Whatever is stored may be old, written by another version of this page, or edited by hand:
//! decoding checks everything and says what is wrong, so the page can warn and start empty.

/// The first line of every entry this version writes.
const HEADER: &str = "web-client outbox 1\n";

/// `messages` for the page talking to `url`, as one string.
pub fn encode(url: &str, messages: &[&str]) -> String {
    let mut saved = String::from(HEADER);
    for field in std::iter::once(url).chain(messages.iter().copied()) {
        saved.push_str(&field.len().to_string());
        saved.push(':');
        saved.push_str(field);
    }
    saved
}

/// The messages in `saved`, if it was written by [`encode`] for `url`; at most `capacity`
/// of them (an entry can be edited to hold more than the outbox would keep).
pub fn decode(url: &str, saved: &str, capacity: usize) -> Result<Vec<String>, String> {
    let mut rest = saved
        .strip_prefix(HEADER)
        .ok_or("it was not written by this version of the page")?;
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let (length, after) = rest.split_once(':').ok_or("a field has no length prefix")?;
        let length: usize = length
            .bytes()
            .all(|byte| byte.is_ascii_digit())
            .then(|| length.parse().ok())
            .flatten()
            .ok_or("a field's length is not a number")?;
        let field = after
            .get(..length)
            .ok_or("a field is shorter than its length says")?;
        fields.push(field.to_owned());
        rest = &after[length..];
    }
    let mut fields = fields.into_iter();
    match fields.next() {
        Some(saved_url) if saved_url == url => {}
        Some(saved_url) => {
            return Err(format!(
                "it holds messages for {saved_url}, and this page talks to {url}"
            ));
        }
        None => return Err("it names no WebSocket URL".to_owned()),
    }
    let messages: Vec<String> = fields.collect();
    if messages.len() > capacity {
        return Err(format!(
            "it holds {} messages, more than the {capacity} the outbox keeps",
            messages.len()
        ));
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "ws://127.0.0.1:8080/subscriptions";

    #[test]
    fn messages_come_back_as_they_went_in() {
        let messages = ["foo", "", "12:34", "é ✓ 🦀", "line\nbreak", "9:x"];
        let saved = encode(URL, &messages);
        assert_eq!(
            decode(URL, &saved, 100),
            Ok(messages.map(String::from).to_vec())
        );
        assert_eq!(decode(URL, &encode(URL, &[]), 100), Ok(Vec::new()));
    }

    #[test]
    fn broken_or_foreign_entries_are_refused_with_a_reason() {
        let good = encode(URL, &["hello", "héllo"]);
        let cases = [
            String::new(),
            "[\"hello\"]".to_owned(),
            "web-client outbox 2\n3:abc".to_owned(),
            format!("{HEADER}33:{URL}5:hel"),
            format!("{HEADER}33:{URL}x:hello"),
            format!("{HEADER}33:{URL}-1:hello"),
            format!("{HEADER}33:{URL}hello"),
            // Cut inside a two-byte character: the length lands between its bytes.
            good[..good.len() - 1].to_owned(),
            format!(
                "{HEADER}{}:{}",
                "ws://elsewhere/echo".len(),
                "ws://elsewhere/echo"
            ),
            HEADER.to_owned(),
        ];
        for saved in &cases {
            let error = decode(URL, saved, 100).expect_err(saved);
            assert!(!error.is_empty());
        }
        let error = decode("ws://other/subscriptions", &good, 100).expect_err("another URL");
        assert!(error.contains("ws://other/subscriptions"), "{error}");
    }

    #[test]
    fn more_messages_than_the_outbox_keeps_are_refused() {
        let messages: Vec<String> = (0..101).map(|n| n.to_string()).collect();
        let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
        assert!(decode(URL, &encode(URL, &refs[..100]), 100).is_ok());
        let error = decode(URL, &encode(URL, &refs), 100).expect_err("one past the bound");
        assert!(error.contains("101"), "{error}");
    }
}
