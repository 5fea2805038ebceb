//! What the page talks to and how patiently, from its own location: `/subscriptions` on the
//! page's own host (`wss:` under `https:`), unless the query names another WebSocket URL
//! (`?ws=`), another reply timeout (`?reply-timeout=`, in seconds) or another message limit
//! (`?max-message-size=`, in bytes, for a server started with another `--max-message-size`).
//! The values are checked by `client_core::settings`, shared with the console client; this
//! module only knows the page's location and query, and names them in the errors.

use room_protocol::names;

pub use client_core::settings::{DEFAULT_APP, RoomSettings, Settings};
use client_core::settings::{parse_max_message_size, parse_reply_timeout, rooms_url};

/// Settings for the WebSocket URL `url` (as `?ws=` gives it); the error names `?ws=`.
pub fn settings_for_url(url: &str) -> Result<Settings, String> {
    Settings::for_url(url).map_err(|error| format!("?ws= {error}"))
}

/// Settings for a page at `protocol//host` (as `location.protocol` and `location.host` give
/// them), with the query parameters `ws`, `reply-timeout` and `max-message-size` when present.
/// The error says what is wrong, for the page to show.
pub fn settings_for_page(
    protocol: &str,
    host: &str,
    ws: Option<&str>,
    reply_timeout: Option<&str>,
    max_message_size: Option<&str>,
) -> Result<Settings, String> {
    let url = match ws {
        Some(url) => url.to_owned(),
        None => default_url(protocol, host)?,
    };
    let mut settings = settings_for_url(&url)?;
    if let Some(seconds) = reply_timeout {
        settings.reply_timeout = page_reply_timeout(seconds)?;
    }
    if let Some(bytes) = max_message_size {
        settings.max_message_bytes =
            parse_max_message_size(bytes).map_err(|error| format!("?max-message-size= {error}"))?;
    }
    Ok(settings)
}

fn page_reply_timeout(seconds: &str) -> Result<std::time::Duration, String> {
    parse_reply_timeout(seconds).map_err(|error| format!("?reply-timeout= {error}"))
}

/// Which view a page shows: `/subscriptions` (no `?room=` and no `?name=`), or a room.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    Subscriptions,
    /// `?room=` or `?name=` was given: the room view, or what is wrong with its parameters.
    Room(Result<RoomSettings, String>),
}

/// The view for a page at `protocol//host` with these query parameters. A room needs both
/// `?room=` and `?name=`, each valid by the protocol's rules; the error says which is wrong.
pub fn view_for_page(
    protocol: &str,
    host: &str,
    room: Option<&str>,
    name: Option<&str>,
    reply_timeout: Option<&str>,
) -> View {
    if room.is_none() && name.is_none() {
        return View::Subscriptions;
    }
    View::Room(room_settings(protocol, host, room, name, reply_timeout))
}

fn room_settings(
    protocol: &str,
    host: &str,
    room: Option<&str>,
    name: Option<&str>,
    reply_timeout: Option<&str>,
) -> Result<RoomSettings, String> {
    const EXAMPLE: &str = "open this page as /?room=lobby&name=ana";
    let room = room.ok_or_else(|| format!("no ?room= was given: {EXAMPLE}"))?;
    let name = name.ok_or_else(|| format!("no ?name= was given: {EXAMPLE}"))?;
    if !names::is_room_name(room) {
        return Err(format!(
            "?room= must be 1 to {} of A-Z a-z 0-9 _ . : -, not {room:?}",
            names::MAX_ROOM_NAME
        ));
    }
    if !names::is_display_name(name) {
        return Err(format!(
            "?name= must be 1 to {} characters, {}, not {name:?}",
            names::MAX_DISPLAY_NAME,
            names::REFUSED_CHARACTERS
        ));
    }
    let base = default_base(protocol, host)?;
    let mut settings = Settings::for_rooms(rooms_url(&base, name));
    if let Some(seconds) = reply_timeout {
        settings.reply_timeout = page_reply_timeout(seconds)?;
    }
    Ok(RoomSettings {
        settings,
        room: room.to_owned(),
        name: name.to_owned(),
    })
}

fn default_url(protocol: &str, host: &str) -> Result<String, String> {
    Ok(format!(
        "{}{}",
        default_base(protocol, host)?,
        DEFAULT_APP.path()
    ))
}

/// `ws://host` or `wss://host` for a page at `protocol//host`.
fn default_base(protocol: &str, host: &str) -> Result<String, String> {
    let scheme = match protocol {
        "https:" => "wss",
        "http:" => "ws",
        other => return Err(format!("cannot derive a WebSocket URL from a {other} page")),
    };
    if host.is_empty() {
        return Err("the page has no host".to_owned());
    }
    Ok(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use client_core::outbox::MAX_MESSAGE_BYTES;
    use client_core::settings::{DEFAULT_REPLY_TIMEOUT, MAX_MESSAGE_SIZE_LIMIT};
    use rules::App;

    use super::*;

    fn page(protocol: &str, host: &str) -> Result<Settings, String> {
        settings_for_page(protocol, host, None, None, None)
    }

    #[test]
    fn derives_from_the_page_location() {
        let settings = page("http:", "127.0.0.1:8080").expect("valid");
        assert_eq!(settings.url, "ws://127.0.0.1:8080/subscriptions");
        assert_eq!(settings.app, App::Subscriptions);
        assert_eq!(settings.reply_timeout, DEFAULT_REPLY_TIMEOUT);
        assert_eq!(
            page("https:", "chat.example").map(|s| s.url).as_deref(),
            Ok("wss://chat.example/subscriptions")
        );
        assert!(page("file:", "").is_err());
        assert!(page("http:", "").is_err());
    }

    #[test]
    fn honours_a_websocket_override_and_knows_its_app() {
        let settings = settings_for_page("http:", "a:1", Some("ws://b:2/echo"), None, None);
        assert_eq!(
            settings.map(|s| (s.url, s.app)),
            Ok(("ws://b:2/echo".to_owned(), App::Echo))
        );
        let behind_a_proxy = settings_for_url("wss://chat.example/api/mirror?x=1");
        assert_eq!(behind_a_proxy.map(|s| s.app), Ok(App::Mirror));
    }

    #[test]
    fn explains_a_bad_override() {
        let error = settings_for_page("http:", "a:1", Some("javascript:alert(1)"), None, None)
            .expect_err("not a WebSocket URL");
        assert!(error.contains("ws://"), "{error}");
        let error = settings_for_url("ws://b:2/elsewhere").expect_err("unknown app");
        assert!(error.contains("/subscriptions, /echo, /mirror"), "{error}");
        assert!(settings_for_url("ws://b:2").is_err(), "no path at all");
    }

    #[test]
    fn room_and_name_choose_the_room_view_and_are_checked() {
        let view = |room, name| view_for_page("https:", "chat.example", room, name, None);
        assert_eq!(view(None, None), View::Subscriptions);
        let View::Room(Ok(room)) = view(Some("lobby"), Some("Zoë & co")) else {
            panic!("a room view");
        };
        assert_eq!(
            room.settings.url,
            "wss://chat.example/rooms?name=Zo%C3%AB%20%26%20co"
        );
        assert_eq!(
            (room.room.as_str(), room.name.as_str()),
            ("lobby", "Zoë & co")
        );
        let long_name = "n".repeat(33);
        let table = [
            (Some("lobby"), None, "?name="),
            (None, Some("ana"), "?room="),
            (Some("a b"), Some("ana"), "?room="),
            (Some(""), Some("ana"), "?room="),
            (Some("lobby"), Some(""), "?name="),
            (Some("lobby"), Some("a\nb"), "?name="),
            (Some("lobby"), Some(long_name.as_str()), "?name="),
        ];
        for (room, name, named) in table {
            let View::Room(Err(error)) = view(room, name) else {
                panic!("{room:?} {name:?} is refused");
            };
            assert!(error.contains(named), "{error}");
        }
        let timeout = view_for_page("http:", "a:1", Some("r"), Some("n"), Some("2"));
        let View::Room(Ok(room)) = timeout else {
            panic!("a room view");
        };
        assert_eq!(room.settings.reply_timeout, Duration::from_secs(2));
        assert_eq!(room.settings.url, "ws://a:1/rooms?name=n");
    }

    #[test]
    fn the_reply_timeout_is_settable_in_seconds() {
        let with = |value| settings_for_page("http:", "a:1", None, Some(value), None);
        assert_eq!(
            with("2.5").map(|s| s.reply_timeout),
            Ok(Duration::from_millis(2500))
        );
        assert_eq!(
            with("0.25").map(|s| s.reply_timeout),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            with("3").map(|s| s.reply_timeout),
            Ok(Duration::from_secs(3))
        );
        for bad in [
            "0", "0.0", "-1", "soon", "NaN", "inf", "3601", "1e3", ".5", "1.2345", "",
        ] {
            let error = with(bad).expect_err(bad);
            assert!(error.contains("?reply-timeout="), "{error}");
        }
    }

    #[test]
    fn the_message_limit_is_settable_in_bytes_within_bounds() {
        let with = |value: &str| settings_for_page("http:", "a:1", None, None, Some(value));
        assert_eq!(
            page("http:", "a:1").map(|s| s.max_message_bytes),
            Ok(MAX_MESSAGE_BYTES)
        );
        assert_eq!(with("1000").map(|s| s.max_message_bytes), Ok(1000));
        assert_eq!(
            with(&MAX_MESSAGE_SIZE_LIMIT.to_string()).map(|s| s.max_message_bytes),
            Ok(MAX_MESSAGE_SIZE_LIMIT)
        );
        let one_past = (MAX_MESSAGE_SIZE_LIMIT + 1).to_string();
        for bad in ["0", "-1", "1e3", "1.5", "", "lots", "+5", one_past.as_str()] {
            let error = with(bad).expect_err(bad);
            assert!(error.contains("?max-message-size="), "{error}");
        }
    }
}
