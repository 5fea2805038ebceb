//! What a client talks to and how patiently: the WebSocket URL and the app it leads to, the
//! reply timeout, and the longest message the server takes. Each client reads them its own way
//! (the page from its location and query, the console client from its flags) and both check
//! them here; the errors say what is wrong without naming where it was given, for each client
//! to put its own name in front (`?ws= must be …`, `the URL must be …`).

use std::time::Duration;

use rules::App;

use crate::outbox::MAX_MESSAGE_BYTES;
use crate::room::query_encode;

/// The app a client talks to unless told otherwise.
pub const DEFAULT_APP: App = App::Subscriptions;

/// How long a sent message may go without any frame from the server before the client
/// decides the server hangs. Answers take milliseconds; a congested mobile link can hold a
/// round trip for a second or two. Five seconds keeps false alarms rare and still notices a
/// hung server before a person gives up on the page.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest reply timeout accepted: past an hour the check is as good as off.
pub const MAX_REPLY_TIMEOUT: Duration = Duration::from_secs(3600);

/// The largest message limit accepted: a browser tab holding a few messages of this size is
/// already slow.
pub const MAX_MESSAGE_SIZE_LIMIT: usize = 64 * 1024 * 1024;

/// The rooms endpoint's path.
pub const ROOMS_PATH: &str = "/rooms";

/// Where the client connects and how long it waits for answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub url: String,
    /// The app served at `url`: its rules say what answers each message.
    pub app: App,
    pub reply_timeout: Duration,
    /// The longest message the server accepts, in UTF-8 bytes.
    pub max_message_bytes: usize,
}

impl Settings {
    /// Settings for `url` with the default reply timeout and message limit. The error says
    /// what is wrong with the URL, for the client to name where it came from.
    pub fn for_url(url: &str) -> Result<Settings, String> {
        Ok(Settings {
            app: app_of(url)?,
            url: url.to_owned(),
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            max_message_bytes: MAX_MESSAGE_BYTES,
        })
    }

    /// Settings for the rooms endpoint at `url`: the URL is always that of `/rooms` with
    /// `?name=`, and the app only matters for the defaults.
    pub fn for_rooms(url: String) -> Settings {
        Settings {
            url,
            app: DEFAULT_APP,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            max_message_bytes: MAX_MESSAGE_BYTES,
        }
    }
}

/// The rooms URL for display name `name` on the server at `base` (`ws://host:port`, with any
/// path prefix a proxy mounts the server under).
pub fn rooms_url(base: &str, name: &str) -> String {
    format!("{base}{ROOMS_PATH}?name={}", query_encode(name))
}

/// The server part of a WebSocket URL: the URL without its query, and without the app or
/// rooms path it ends with, so [`rooms_url`] can lead to `/rooms` on the same server.
pub fn server_base(url: &str) -> Result<String, String> {
    let Some(rest) = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
    else {
        return Err(format!("must be a ws:// or wss:// URL, not {url:?}"));
    };
    let without_query = url
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .trim_end_matches('/');
    if rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .is_empty()
    {
        return Err(format!("must name a host, not {url:?}"));
    }
    let base = App::ALL
        .iter()
        .map(|app| app.path())
        .chain([ROOMS_PATH])
        .find_map(|path| without_query.strip_suffix(path))
        .unwrap_or(without_query);
    Ok(base.to_owned())
}

/// The app a WebSocket URL leads to, by the end of its path (a proxy may mount the server
/// under a prefix).
fn app_of(url: &str) -> Result<App, String> {
    let Some(rest) = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
    else {
        return Err(format!("must be a ws:// or wss:// URL, not {url:?}"));
    };
    let path = rest.find('/').map_or("", |start| &rest[start..]);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    App::ALL
        .into_iter()
        .find(|app| path.ends_with(app.path()))
        .ok_or_else(|| {
            let paths: Vec<&str> = App::ALL.iter().map(|app| app.path()).collect();
            format!(
                "must lead to one of {}, so the client knows what answers to expect; {url:?} does not",
                paths.join(", ")
            )
        })
}

/// A reply timeout in seconds (`"5"`, `"2.5"`), above 0 and at most [`MAX_REPLY_TIMEOUT`].
pub fn parse_reply_timeout(seconds: &str) -> Result<Duration, String> {
    parse_seconds(seconds.trim())
        .filter(|timeout| !timeout.is_zero() && *timeout <= MAX_REPLY_TIMEOUT)
        .ok_or_else(|| {
            format!(
                "must be a number of seconds above 0 and at most {}, not {seconds:?}",
                MAX_REPLY_TIMEOUT.as_secs()
            )
        })
}

/// A message limit in bytes, above 0 and at most [`MAX_MESSAGE_SIZE_LIMIT`].
pub fn parse_max_message_size(bytes: &str) -> Result<usize, String> {
    let digits = bytes.trim();
    digits
        .bytes()
        .all(|byte| byte.is_ascii_digit())
        .then(|| digits.parse::<usize>().ok())
        .flatten()
        .filter(|limit| (1..=MAX_MESSAGE_SIZE_LIMIT).contains(limit))
        .ok_or_else(|| {
            format!(
                "must be a number of bytes above 0 and at most {MAX_MESSAGE_SIZE_LIMIT}, not {bytes:?}"
            )
        })
}

/// `"5"`, `"2.5"`, `"0.25"` as a duration, to the millisecond. Not `str::parse::<f64>`: the
/// standard library's float parser would add about 10 KiB (gzip) to the wasm.
pub fn parse_seconds(text: &str) -> Option<Duration> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 3 {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let millis: u64 = format!("{fraction:0<3}").parse().ok()?;
    Some(Duration::from_secs(whole) + Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_knows_its_app_behind_a_proxy_prefix_too() {
        let settings = Settings::for_url("ws://b:2/echo").expect("valid");
        assert_eq!(
            (settings.url.as_str(), settings.app),
            ("ws://b:2/echo", App::Echo)
        );
        assert_eq!(settings.reply_timeout, DEFAULT_REPLY_TIMEOUT);
        assert_eq!(settings.max_message_bytes, MAX_MESSAGE_BYTES);
        let behind_a_proxy = Settings::for_url("wss://chat.example/api/mirror?x=1");
        assert_eq!(behind_a_proxy.map(|s| s.app), Ok(App::Mirror));
    }

    #[test]
    fn explains_a_bad_url() {
        let error = Settings::for_url("javascript:alert(1)").expect_err("not a WebSocket URL");
        assert!(
            error.starts_with("must be a ws:// or wss:// URL"),
            "{error}"
        );
        let error = Settings::for_url("ws://b:2/elsewhere").expect_err("unknown app");
        assert!(
            error.starts_with("must lead to one of /subscriptions, /echo, /mirror"),
            "{error}"
        );
        assert!(Settings::for_url("ws://b:2").is_err(), "no path at all");
    }

    #[test]
    fn the_rooms_url_is_on_the_same_server_as_any_app_url() {
        let table = [
            ("ws://127.0.0.1:8080/subscriptions", "ws://127.0.0.1:8080"),
            ("wss://chat.example/api/echo?x=1", "wss://chat.example/api"),
            ("ws://a:1/rooms?name=old", "ws://a:1"),
            ("ws://a:1/", "ws://a:1"),
            ("ws://a:1", "ws://a:1"),
        ];
        for (url, base) in table {
            assert_eq!(server_base(url).as_deref(), Ok(base), "{url}");
        }
        assert!(server_base("http://a:1/subscriptions").is_err());
        assert!(server_base("ws:///subscriptions").is_err());
        assert_eq!(
            rooms_url("wss://chat.example", "Zoë & co"),
            "wss://chat.example/rooms?name=Zo%C3%AB%20%26%20co"
        );
    }

    #[test]
    fn the_reply_timeout_is_in_seconds_within_bounds() {
        let table = [
            ("2.5", Duration::from_millis(2500)),
            ("0.25", Duration::from_millis(250)),
            ("3", Duration::from_secs(3)),
            (" 4 ", Duration::from_secs(4)),
            ("3600", MAX_REPLY_TIMEOUT),
        ];
        for (text, expected) in table {
            assert_eq!(parse_reply_timeout(text), Ok(expected), "{text}");
        }
        for bad in [
            "0", "0.0", "-1", "soon", "NaN", "inf", "3601", "1e3", ".5", "1.2345", "",
        ] {
            let error = parse_reply_timeout(bad).expect_err(bad);
            assert!(error.starts_with("must be a number of seconds"), "{error}");
        }
    }

    #[test]
    fn the_message_limit_is_in_bytes_within_bounds() {
        assert_eq!(parse_max_message_size("1000"), Ok(1000));
        assert_eq!(
            parse_max_message_size(&MAX_MESSAGE_SIZE_LIMIT.to_string()),
            Ok(MAX_MESSAGE_SIZE_LIMIT)
        );
        let one_past = (MAX_MESSAGE_SIZE_LIMIT + 1).to_string();
        for bad in ["0", "-1", "1e3", "1.5", "", "lots", "+5", one_past.as_str()] {
            let error = parse_max_message_size(bad).expect_err(bad);
            assert!(error.starts_with("must be a number of bytes"), "{error}");
        }
    }
}
