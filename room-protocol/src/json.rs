//! The JSON the clients read and write, by hand: a reader into [`Value`] and string escaping
//! as serde_json does it. The server keeps serde; the clients use this instead, because serde's
//! generated code and serde_json were a third of the wasm client (52 KiB of 565 before
//! wasm-opt, and 20 KiB more of float formatting that only serde's error messages needed).
//! Every frame and saved state read or written this way is table-tested against serde_json.
//!
//! Numbers are whole and non-negative (`u64`), the only ones the protocol has; anything else
//! (a sign, a fraction, an exponent, past `u64`) reads as [`Value::OtherNumber`], which no
//! field accepts. Nesting past [`MAX_DEPTH`] is refused, so no input can exhaust the stack.

/// Arrays and objects nested deeper than this are refused.
pub const MAX_DEPTH: usize = 32;

/// A JSON value as the clients need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(u64),
    /// A number that is not a whole one from 0 to `u64::MAX`.
    OtherNumber,
    String(String),
    Array(Vec<Value>),
    /// Members in their order; a repeated name keeps its first value (see [`Value::get`]).
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `name` of an object; `None` for anything else or a missing member.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(number) => Some(*number),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(value) => Some(*value),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Takes the member `name` out of an object (the first of that name).
    pub fn take(&mut self, name: &str) -> Option<Value> {
        match self {
            Value::Object(members) => {
                let at = members.iter().position(|(key, _)| key == name)?;
                Some(members.swap_remove(at).1)
            }
            _ => None,
        }
    }

    pub fn into_string(self) -> Option<String> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }
}

/// Reads one JSON text (surrounding whitespace allowed); `Err` says where it went wrong.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        at: 0,
    };
    reader.space();
    let value = reader.value(0)?;
    reader.space();
    if reader.at != reader.bytes.len() {
        return Err(reader.error("trailing characters"));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.at)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", char::from(byte))))
        }
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, String> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a value")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.space();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a member name"));
            }
            let name = self.string()?;
            self.space();
            self.expect(b':')?;
            self.space();
            let value = self.value(depth)?;
            if !members.iter().any(|(key, _)| *key == name) {
                members.push((name, value));
            }
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.space();
            items.push(self.value(depth)?);
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let digits = self.digits();
        if digits == 0 {
            return Err(self.error("expected a digit"));
        }
        if digits > 1 && self.bytes[self.at - digits] == b'0' {
            return Err(self.error("a number does not start with 0"));
        }
        let whole_end = self.at;
        let mut other = negative;
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.error("expected a digit"));
            }
            other = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("expected a digit"));
            }
            other = true;
        }
        if other {
            return Ok(Value::OtherNumber);
        }
        let mut number: u64 = 0;
        for &digit in &self.bytes[start..whole_end] {
            let next = number
                .checked_mul(10)
                .and_then(|number| number.checked_add(u64::from(digit - b'0')));
            match next {
                Some(next) => number = next,
                None => return Ok(Value::OtherNumber),
            }
        }
        Ok(Value::Number(number))
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut text = String::new();
        loop {
            // The run up to the next quote, backslash or control character, as it is.
            let start = self.at;
            while matches!(self.peek(), Some(byte) if byte != b'"' && byte != b'\\' && byte >= 0x20)
            {
                self.at += 1;
            }
            // Whole UTF-8 sequences only: the run ends at an ASCII byte or the end.
            let run = std::str::from_utf8(&self.bytes[start..self.at])
                .map_err(|_| self.error("not UTF-8"))?;
            text.push_str(run);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(text);
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape(&mut text)?;
                }
                Some(_) => return Err(self.error("a control character in a string")),
                None => return Err(self.error("an unterminated string")),
            }
        }
    }

    fn escape(&mut self, text: &mut String) -> Result<(), String> {
        let Some(kind) = self.peek() else {
            return Err(self.error("an unterminated string"));
        };
        self.at += 1;
        let simple = match kind {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&first) {
                    // A high surrogate: its low one must follow.
                    if !self.bytes[self.at..].starts_with(b"\\u") {
                        return Err(self.error("a lone surrogate"));
                    }
                    self.at += 2;
                    let second = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return Err(self.error("a lone surrogate"));
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    first
                };
                char::from_u32(code).ok_or_else(|| self.error("a lone surrogate"))?
            }
            _ => return Err(self.error("an unknown escape")),
        };
        text.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("a short \\u escape"))?;
        let mut code = 0;
        for &digit in digits {
            let value = char::from(digit)
                .to_digit(16)
                .ok_or_else(|| self.error("a bad \\u escape"))?;
            code = code * 16 + value;
        }
        self.at += 4;
        Ok(code)
    }
}

/// Appends `value` as a JSON string, escaped as serde_json escapes it: `"` and `\`, the
/// control characters (`\n` and the like by name, the others as `\u00XX`), nothing else.
pub fn push_string(out: &mut String, value: &str) {
    out.push('"');
    let mut start = 0;
    for (at, byte) in value.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&value[start..at]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escaped);
        }
        start = at + 1;
    }
    out.push_str(&value[start..]);
    out.push('"');
}

/// An object written member by member, in order: `{"a":1,"b":"x"}`.
#[derive(Debug)]
pub struct ObjectWriter<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    pub fn new(out: &'a mut String) -> ObjectWriter<'a> {
        out.push('{');
        ObjectWriter { out, first: true }
    }

    fn name(&mut self, name: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_string(self.out, name);
        self.out.push(':');
        self.out
    }

    pub fn string(&mut self, name: &str, value: &str) -> &mut Self {
        let out = self.name(name);
        push_string(out, value);
        self
    }

    pub fn number(&mut self, name: &str, value: u64) -> &mut Self {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(value);
        self.name(name).push_str(digits);
        self
    }

    pub fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.name(name)
            .push_str(if value { "true" } else { "false" });
        self
    }

    pub fn null(&mut self, name: &str) -> &mut Self {
        self.name(name).push_str("null");
        self
    }

    /// A member whose value `write` appends as JSON text.
    pub fn raw(&mut self, name: &str, write: impl FnOnce(&mut String)) -> &mut Self {
        write(self.name(name));
        self
    }

    pub fn end(&mut self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde_json's reading of `text`, as a [`Value`], for comparison.
    fn serde_value(text: &str) -> Result<Value, ()> {
        fn convert(value: serde_json::Value) -> Value {
            match value {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::Bool(value) => Value::Bool(value),
                serde_json::Value::Number(number) => {
                    number.as_u64().map_or(Value::OtherNumber, Value::Number)
                }
                serde_json::Value::String(text) => Value::String(text),
                serde_json::Value::Array(items) => {
                    Value::Array(items.into_iter().map(convert).collect())
                }
                serde_json::Value::Object(members) => Value::Object(
                    members
                        .into_iter()
                        .map(|(key, value)| (key, convert(value)))
                        .collect(),
                ),
            }
        }
        serde_json::from_str::<serde_json::Value>(text)
            .map(convert)
            .map_err(|_| ())
    }

    #[test]
    fn reads_what_serde_json_reads_and_refuses_what_it_refuses() {
        let table = [
            r#"{"type":"message","room":"lobby","offset":7,"text":"h\u00e9\n\"x\"\\","ok":true,"n":null}"#,
            r#" [ 1 , 2 ,[ ], { } ] "#,
            r#"{"a":"\ud83d\ude00","b":"\/","c":"\b\f\r\t","d":"é😀"}"#,
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "1.5",
            "1e3",
            "0",
            "\"\"",
            // Refused by both.
            "",
            "{",
            "[1,]",
            r#"{"a":1,}"#,
            "01",
            "-",
            "1.",
            "1e",
            r#""\ud800""#,
            r#""\udc00x""#,
            r#""\x""#,
            "\"a\nb\"",
            "\"\u{1}\"",
            "tru",
            "nul",
            r#"{"a" 1}"#,
            r#"{1:2}"#,
            "[1 2]",
            "\"unterminated",
            "1 2",
        ];
        // serde_json's map is sorted by name: compare objects so.
        fn sorted(value: Value) -> Value {
            match value {
                Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
                Value::Object(members) => {
                    let mut members: Vec<(String, Value)> = members
                        .into_iter()
                        .map(|(key, value)| (key, sorted(value)))
                        .collect();
                    members.sort_by(|a, b| a.0.cmp(&b.0));
                    Value::Object(members)
                }
                other => other,
            }
        }
        for text in table {
            assert_eq!(
                parse(text).map(sorted).map_err(|_| ()),
                serde_value(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn nesting_past_the_bound_is_refused_not_a_stack_overflow() {
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&deep).is_ok());
        let deeper = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(&deeper).is_err());
        let hostile = "[".repeat(1_000_000);
        assert!(parse(&hostile).is_err());
        let objects = r#"{"a":"#.repeat(MAX_DEPTH + 1) + "1" + &"}".repeat(MAX_DEPTH + 1);
        assert!(parse(&objects).is_err());
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_control = String::new();
        for code in 0..0x20_u8 {
            every_control.push(char::from(code));
        }
        for text in [
            "plain",
            "quote \" and backslash \\",
            "line\nbreak\ttab\r",
            every_control.as_str(),
            "\u{7f}é😀\u{2028}\u{202e}",
            "",
        ] {
            let mut out = String::new();
            push_string(&mut out, text);
            assert_eq!(
                out,
                serde_json::to_string(text).expect("encodes"),
                "{text:?}"
            );
            assert_eq!(parse(&out), Ok(Value::String(text.to_owned())));
        }
    }

    #[test]
    fn objects_are_written_in_order() {
        let mut out = String::new();
        ObjectWriter::new(&mut out)
            .string("type", "join")
            .number("n", u64::MAX)
            .bool("yes", true)
            .null("none")
            .raw("list", |out| out.push_str("[]"))
            .end();
        assert_eq!(
            out,
            r#"{"type":"join","n":18446744073709551615,"yes":true,"none":null,"list":[]}"#
        );
    }
}
