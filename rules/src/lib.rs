//! What each WebSocket app answers to a message: pure decisions, no sockets, no dependencies.
//!
//! The server performs a [`Reply`] (`server/src/session.rs`); the web client uses the same
//! [`Reply`] to know what answer each message it sent is still waiting for
//! (`web-client/src/outbox.rs`). Every protocol word of the apps (`foo`, `bar`, `end`,
//! `Greetings!`, the repeat count) lives here and only here.

/// Sent by `/subscriptions` as soon as a client connects.
pub const GREETING: &str = "Greetings!";
/// How many times `/subscriptions` and `/echo` send back a text they have no rule for.
pub const REPEAT_COUNT: usize = 10;

/// The WebSocket applications the server offers, one per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// `/subscriptions`: greeting, `foo`/`bar` swap, `end` closes, anything else 10 times.
    Subscriptions,
    /// `/echo`: `FOO`/`BAR` swap, anything else 10 times.
    Echo,
    /// `/mirror`: plain RFC 6455 echo, every text or binary message back once.
    Mirror,
}

/// What must be done in answer to one data message. It names no message type of any
/// WebSocket library: the server turns it into frames, the client into expectations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Send nothing.
    Nothing,
    /// Send the received message itself back, `times` times in a row, as one batch.
    SendBack { times: usize },
    /// Send this text once.
    Send(&'static str),
    /// Close the connection normally (1000).
    Close,
}

impl App {
    /// Every app with its route, in one table so routing and docs cannot disagree.
    pub const ALL: [App; 3] = [App::Subscriptions, App::Echo, App::Mirror];

    /// The URL path this app is served on.
    pub const fn path(self) -> &'static str {
        match self {
            App::Subscriptions => "/subscriptions",
            App::Echo => "/echo",
            App::Mirror => "/mirror",
        }
    }

    /// The app served on `path`, if any.
    pub fn from_path(path: &str) -> Option<App> {
        App::ALL.into_iter().find(|app| app.path() == path)
    }

    /// What the app sends as soon as the connection is open.
    pub fn greeting(self) -> Option<&'static str> {
        match self {
            App::Subscriptions => Some(GREETING),
            App::Echo | App::Mirror => None,
        }
    }

    /// What the app answers to a text message. Rules match whole messages, case-sensitively.
    pub fn reply_to_text(self, text: &str) -> Reply {
        match (self, text) {
            (App::Mirror, _) => Reply::SendBack { times: 1 },
            (App::Subscriptions, "foo") => Reply::Send("bar"),
            (App::Subscriptions, "bar") => Reply::Send("foo"),
            (App::Subscriptions, "end") => Reply::Close,
            (App::Echo, "FOO") => Reply::Send("BAR"),
            (App::Echo, "BAR") => Reply::Send("FOO"),
            (App::Subscriptions | App::Echo, _) => Reply::SendBack {
                times: REPEAT_COUNT,
            },
        }
    }

    /// What the app answers to a binary message: `/subscriptions` and `/echo` ignore them, as
    /// in the apps this project is modelled on.
    pub fn reply_to_binary(self) -> Reply {
        match self {
            App::Mirror => Reply::SendBack { times: 1 },
            App::Subscriptions | App::Echo => Reply::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_table() {
        let ten = Reply::SendBack { times: 10 };
        let cases: &[(App, &str, Reply)] = &[
            (App::Subscriptions, "foo", Reply::Send("bar")),
            (App::Subscriptions, "bar", Reply::Send("foo")),
            (App::Subscriptions, "end", Reply::Close),
            (App::Subscriptions, "hello", ten),
            (App::Subscriptions, "", ten),
            (App::Subscriptions, "héllo ✓ 👋", ten),
            // Whole messages, case-sensitively.
            (App::Subscriptions, "FOO", ten),
            (App::Subscriptions, "foo ", ten),
            (App::Subscriptions, "END", ten),
            (App::Echo, "FOO", Reply::Send("BAR")),
            (App::Echo, "BAR", Reply::Send("FOO")),
            (App::Echo, "foo", ten),
            (App::Echo, "end", ten),
            (App::Mirror, "foo", Reply::SendBack { times: 1 }),
            (App::Mirror, "end", Reply::SendBack { times: 1 }),
        ];
        for &(app, input, expected) in cases {
            assert_eq!(app.reply_to_text(input), expected, "{app:?} <- {input:?}");
        }
    }

    #[test]
    fn only_the_mirror_answers_binary() {
        assert_eq!(App::Subscriptions.reply_to_binary(), Reply::Nothing);
        assert_eq!(App::Echo.reply_to_binary(), Reply::Nothing);
        assert_eq!(App::Mirror.reply_to_binary(), Reply::SendBack { times: 1 });
    }

    #[test]
    fn only_subscriptions_greets() {
        assert_eq!(App::Subscriptions.greeting(), Some(GREETING));
        assert_eq!(App::Echo.greeting(), None);
        assert_eq!(App::Mirror.greeting(), None);
    }

    #[test]
    fn routes_round_trip() {
        for app in App::ALL {
            assert_eq!(App::from_path(app.path()), Some(app));
        }
        assert_eq!(App::from_path("/subscriptions/"), None);
        assert_eq!(App::from_path("/"), None);
    }
}
