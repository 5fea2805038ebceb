//! What the page talks to and how patiently, from its own location: `/subscriptions` on the
//! page's own host (`wss:` under `https:`), unless the query names another WebSocket URL
//! (`?ws=`), another reply timeout (`?reply-timeout=`, in seconds) or another message limit
//! (`?max-message-size=`, in bytes, for a server started with another `--max-message-size`).
//! The values are checked by `client_core::settings`, shared with the console client; this
//! module only knows the page's location and query, and names them in the errors.

use room_protocol::names;

use std::time::Duration;

pub use client_core::settings::{DEFAULT_APP, Settings};
use client_core::settings::{
    DEFAULT_REPLY_TIMEOUT, ROOMS_PATH, parse_max_message_size, parse_reply_timeout, rooms_url,
};
pub use client_core::signin::AuthMode;

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

fn page_reply_timeout(seconds: &str) -> Result<Duration, String> {
    parse_reply_timeout(seconds).map_err(|error| format!("?reply-timeout= {error}"))
}

/// Which view a page shows: `/subscriptions` (no `?room=` and no `?name=`), or a room.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    Subscriptions,
    /// `?room=` or `?name=` was given: the room view, or what is wrong with its parameters.
    Room(Result<RoomPage, String>),
}

/// The room view's settings, before the server said whether it wants tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomPage {
    pub room: String,
    /// `?name=`: the display name on an open server; on one that wants tokens, the name a
    /// sign-in form asks for (the server's `--dev-sign-in` does), or nothing.
    pub name: Option<String>,
    /// Where `GET` says whether the server wants tokens: `/auth/config` on the page's origin.
    pub config_url: String,
    /// Where the page `POST`s for a token: `?token-url=`, on the page's origin, default
    /// `/auth/token`.
    pub token_url: String,
    /// `ws://host` or `wss://host`.
    base: String,
    reply_timeout: Option<Duration>,
}

/// How to open the room view of a page with `?room=lobby&name=ana`.
const ROOM_EXAMPLE: &str = "open this page as /?room=lobby&name=ana";

impl RoomPage {
    /// The connection's settings for a server in `mode`: `/rooms?name=` on an open server
    /// (which needs `?name=`), `/rooms` with tokens (the name comes from the token).
    pub fn settings(&self, mode: AuthMode) -> Result<Settings, String> {
        let url = match (mode, &self.name) {
            (AuthMode::Tokens { .. }, _) => format!("{}{ROOMS_PATH}", self.base),
            (AuthMode::Open, Some(name)) => rooms_url(&self.base, name),
            (AuthMode::Open, None) => {
                return Err(format!("no ?name= was given: {ROOM_EXAMPLE}"));
            }
        };
        let mut settings = Settings::for_rooms(url);
        if let Some(timeout) = self.reply_timeout {
            settings.reply_timeout = timeout;
        }
        Ok(settings)
    }

    /// Whose the room's saved state is: the server and the page's `?name=` (none with a
    /// token, whose name is the sign-in's).
    pub fn owner(&self) -> String {
        format!("{}|{}", self.base, self.name.as_deref().unwrap_or_default())
    }

    /// How long to wait for an answer (the reply timeout): for the sign-in requests too.
    pub fn reply_timeout(&self) -> Duration {
        self.reply_timeout.unwrap_or(DEFAULT_REPLY_TIMEOUT)
    }
}

/// The query parameters of the room view.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoomQuery<'a> {
    pub room: Option<&'a str>,
    pub name: Option<&'a str>,
    pub reply_timeout: Option<&'a str>,
    pub token_url: Option<&'a str>,
}

/// The view for a page at `protocol//host` with these query parameters. A room needs
/// `?room=`, and `?name=` unless the server wants tokens, each valid by the protocol's rules;
/// the error says which is wrong.
pub fn view_for_page(protocol: &str, host: &str, query: RoomQuery<'_>) -> View {
    if query.room.is_none() && query.name.is_none() {
        return View::Subscriptions;
    }
    View::Room(room_page(protocol, host, query))
}

fn room_page(protocol: &str, host: &str, query: RoomQuery<'_>) -> Result<RoomPage, String> {
    let room = query
        .room
        .ok_or_else(|| format!("no ?room= was given: {ROOM_EXAMPLE}"))?;
    if !names::is_room_name(room) {
        return Err(format!(
            "?room= must be 1 to {} of A-Z a-z 0-9 _ . : -, not {room:?}",
            names::MAX_ROOM_NAME
        ));
    }
    if let Some(name) = query.name
        && !names::is_display_name(name)
    {
        return Err(format!(
            "?name= must be 1 to {} characters, {}, not {name:?}",
            names::MAX_DISPLAY_NAME,
            names::DISPLAY_NAME_RULES
        ));
    }
    let origin = page_origin(protocol, host)?;
    let token_url = match query.token_url {
        Some(url) => same_origin_url(&origin, url)
            .ok_or_else(|| format!("?token-url= must be a path on this page's origin ({origin}), such as /auth/token, not {url:?}"))?,
        None => format!("{origin}{DEFAULT_TOKEN_PATH}"),
    };
    let reply_timeout = query.reply_timeout.map(page_reply_timeout).transpose()?;
    Ok(RoomPage {
        room: room.to_owned(),
        name: query.name.map(str::to_owned),
        config_url: format!("{origin}{AUTH_CONFIG_PATH}"),
        token_url,
        base: default_base(protocol, host)?,
        reply_timeout,
    })
}

/// The page's own link to `room` as `name` (no name: a server that wants tokens names the
/// person), as the entry form on `/` leads there; the error says which field is wrong.
pub fn room_link(room: &str, name: &str) -> Result<String, String> {
    let (room, name) = (room.trim(), name.trim());
    if !names::is_room_name(room) {
        return Err(format!(
            "A room name is 1 to {} of A-Z a-z 0-9 _ . : -",
            names::MAX_ROOM_NAME
        ));
    }
    if name.is_empty() {
        return Ok(format!("/?room={}", client_core::room::query_encode(room)));
    }
    if !names::is_display_name(name) {
        return Err(format!(
            "A name is 1 to {} characters, {}",
            names::MAX_DISPLAY_NAME,
            names::DISPLAY_NAME_RULES
        ));
    }
    Ok(format!(
        "/?room={}&name={}",
        client_core::room::query_encode(room),
        client_core::room::query_encode(name)
    ))
}

/// Where the server says whether it wants tokens.
const AUTH_CONFIG_PATH: &str = "/auth/config";

/// Where the page asks for a token unless `?token-url=` says otherwise.
const DEFAULT_TOKEN_PATH: &str = "/auth/token";

/// `http://host` or `https://host` for a page at `protocol//host`.
fn page_origin(protocol: &str, host: &str) -> Result<String, String> {
    // Checked the way the WebSocket base is.
    default_base(protocol, host)?;
    Ok(format!("{protocol}//{host}"))
}

/// `url` as an absolute URL when it is on `origin`: a path (`/auth/token`, not `//elsewhere`)
/// or an absolute URL on that origin. Tokens are only ever asked of the page's own origin,
/// whose cookies say who the user is; no whitespace or control characters.
fn same_origin_url(origin: &str, url: &str) -> Option<String> {
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return None;
    }
    if url.starts_with('/') && !url.starts_with("//") {
        return Some(format!("{origin}{url}"));
    }
    let rest = url.strip_prefix(origin)?;
    (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')).then(|| url.to_owned())
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

    fn room_view(room: Option<&str>, name: Option<&str>) -> View {
        let query = RoomQuery {
            room,
            name,
            ..RoomQuery::default()
        };
        view_for_page("https:", "chat.example", query)
    }

    #[test]
    fn room_and_name_choose_the_room_view_and_are_checked() {
        assert_eq!(room_view(None, None), View::Subscriptions);
        let View::Room(Ok(page)) = room_view(Some("lobby"), Some("Zoë & co")) else {
            panic!("a room view");
        };
        assert_eq!(
            page.settings(AuthMode::Open).map(|s| s.url),
            Ok("wss://chat.example/rooms?name=Zo%C3%AB%20%26%20co".to_owned())
        );
        assert_eq!(
            (page.room.as_str(), page.name.as_deref()),
            ("lobby", Some("Zoë & co"))
        );
        let long_name = "n".repeat(33);
        let table = [
            (None, Some("ana"), "?room="),
            (Some("a b"), Some("ana"), "?room="),
            (Some(""), Some("ana"), "?room="),
            (Some("lobby"), Some(""), "?name="),
            (Some("lobby"), Some("a\nb"), "?name="),
            (Some("lobby"), Some(long_name.as_str()), "?name="),
        ];
        for (room, name, named) in table {
            let View::Room(Err(error)) = room_view(room, name) else {
                panic!("{room:?} {name:?} is refused");
            };
            assert!(error.contains(named), "{error}");
        }
        let query = RoomQuery {
            room: Some("r"),
            name: Some("n"),
            reply_timeout: Some("2"),
            token_url: None,
        };
        let View::Room(Ok(page)) = view_for_page("http:", "a:1", query) else {
            panic!("a room view");
        };
        let settings = page.settings(AuthMode::Open).expect("named");
        assert_eq!(settings.reply_timeout, Duration::from_secs(2));
        assert_eq!(page.reply_timeout(), Duration::from_secs(2));
        assert_eq!(settings.url, "ws://a:1/rooms?name=n");
    }

    #[test]
    fn with_tokens_the_name_comes_from_the_token_and_never_goes_in_the_url() {
        let View::Room(Ok(page)) = room_view(Some("lobby"), None) else {
            panic!("a room view without a name");
        };
        let error = page
            .settings(AuthMode::Open)
            .expect_err("open rooms need a name");
        assert!(error.contains("?name="), "{error}");
        let signed = AuthMode::Tokens { dev_sign_in: false };
        assert_eq!(
            page.settings(signed).map(|s| s.url),
            Ok("wss://chat.example/rooms".to_owned())
        );
        let View::Room(Ok(named)) = room_view(Some("lobby"), Some("ana")) else {
            panic!("a room view");
        };
        assert_eq!(
            named.settings(signed).map(|s| s.url),
            Ok("wss://chat.example/rooms".to_owned())
        );
        assert_eq!(page.config_url, "https://chat.example/auth/config");
        assert_eq!(page.token_url, "https://chat.example/auth/token");
        assert_eq!(page.reply_timeout(), DEFAULT_REPLY_TIMEOUT);
    }

    #[test]
    fn the_token_url_is_on_the_pages_origin() {
        let with = |url: &str| {
            let query = RoomQuery {
                room: Some("lobby"),
                token_url: Some(url),
                ..RoomQuery::default()
            };
            match view_for_page("https:", "chat.example", query) {
                View::Room(page) => page.map(|page| page.token_url),
                View::Subscriptions => panic!("a room view"),
            }
        };
        assert_eq!(
            with("/api/ws-token").as_deref(),
            Ok("https://chat.example/api/ws-token")
        );
        assert_eq!(
            with("https://chat.example/t?for=rooms").as_deref(),
            Ok("https://chat.example/t?for=rooms")
        );
        for bad in [
            "//evil.example/t",
            "https://evil.example/t",
            "https://chat.example.evil/t",
            "https://chat.example:444/t",
            "http://chat.example/t",
            "javascript:alert(1)",
            "/a b",
            "/\\evil.example",
            "token",
            "",
        ] {
            let error = with(bad).expect_err(bad);
            assert!(error.contains("?token-url="), "{error}");
        }
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

    #[test]
    fn the_entry_form_leads_to_the_room_view_or_says_which_field_is_wrong() {
        assert_eq!(
            room_link(" lobby ", "Zoë & co").as_deref(),
            Ok("/?room=lobby&name=Zo%C3%AB%20%26%20co")
        );
        assert_eq!(
            room_link("team-42.dev", "").as_deref(),
            Ok("/?room=team-42.dev")
        );
        assert!(
            room_link("a b", "ana")
                .expect_err("room")
                .starts_with("A room name")
        );
        assert!(room_link("", "ana").is_err());
        let long = "n".repeat(33);
        assert!(
            room_link("lobby", &long)
                .expect_err("name")
                .starts_with("A name")
        );
        assert!(room_link("lobby", "a\u{202e}b").is_err());
    }
}
