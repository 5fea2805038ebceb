//! What each WebSocket app answers to a message: pure decisions, no sockets.
//!
//! The session loop (`session.rs`) performs a [`Reply`]; it never decides one. Every protocol
//! word of the apps (`foo`, `bar`, `end`, `Greetings!`, the repeat count) lives here and only here.

use hyper_tungstenite::tungstenite::Message;

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

/// What the session must do in answer to one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Send nothing.
    Nothing,
    /// Send this message once.
    Once(Message),
    /// Send this message `count` times in a row, as one batch.
    Repeat(Message, usize),
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
    pub fn greeting(self) -> Option<Message> {
        match self {
            App::Subscriptions => Some(Message::text(GREETING)),
            App::Echo | App::Mirror => None,
        }
    }

    /// What the app answers to a data message from the client.
    ///
    /// Control frames (ping, pong, close) belong to the session, so they answer [`Reply::Nothing`]
    /// here. Binary messages are ignored by `/subscriptions` and `/echo`, as in the apps this
    /// project is modelled on.
    pub fn reply(self, message: Message) -> Reply {
        match (self, message) {
            (App::Mirror, message @ (Message::Text(_) | Message::Binary(_))) => {
                Reply::Once(message)
            }
            (App::Subscriptions, Message::Text(text)) => match text.as_str() {
                "foo" => Reply::Once(Message::text("bar")),
                "bar" => Reply::Once(Message::text("foo")),
                "end" => Reply::Close,
                _ => Reply::Repeat(Message::Text(text), REPEAT_COUNT),
            },
            (App::Echo, Message::Text(text)) => match text.as_str() {
                "FOO" => Reply::Once(Message::text("BAR")),
                "BAR" => Reply::Once(Message::text("FOO")),
                _ => Reply::Repeat(Message::Text(text), REPEAT_COUNT),
            },
            (App::Subscriptions | App::Echo, Message::Binary(_)) => Reply::Nothing,
            (_, Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_)) => {
                Reply::Nothing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Message {
        Message::text(s)
    }

    #[test]
    fn reply_table() {
        let binary = Message::binary(vec![0u8, 159, 255]);
        let cases: Vec<(App, Message, Reply)> = vec![
            (App::Subscriptions, text("foo"), Reply::Once(text("bar"))),
            (App::Subscriptions, text("bar"), Reply::Once(text("foo"))),
            (App::Subscriptions, text("end"), Reply::Close),
            (
                App::Subscriptions,
                text("hello"),
                Reply::Repeat(text("hello"), 10),
            ),
            (App::Subscriptions, text(""), Reply::Repeat(text(""), 10)),
            (
                App::Subscriptions,
                text("héllo ✓ 👋"),
                Reply::Repeat(text("héllo ✓ 👋"), 10),
            ),
            // Rules match whole messages, case-sensitively.
            (
                App::Subscriptions,
                text("FOO"),
                Reply::Repeat(text("FOO"), 10),
            ),
            (
                App::Subscriptions,
                text("foo "),
                Reply::Repeat(text("foo "), 10),
            ),
            (
                App::Subscriptions,
                text("END"),
                Reply::Repeat(text("END"), 10),
            ),
            (App::Subscriptions, binary.clone(), Reply::Nothing),
            (App::Echo, text("FOO"), Reply::Once(text("BAR"))),
            (App::Echo, text("BAR"), Reply::Once(text("FOO"))),
            (App::Echo, text("foo"), Reply::Repeat(text("foo"), 10)),
            (App::Echo, text("end"), Reply::Repeat(text("end"), 10)),
            (App::Echo, binary.clone(), Reply::Nothing),
            (App::Mirror, text("foo"), Reply::Once(text("foo"))),
            (App::Mirror, text("end"), Reply::Once(text("end"))),
            (App::Mirror, binary.clone(), Reply::Once(binary)),
            (App::Mirror, Message::Ping(vec![1].into()), Reply::Nothing),
            (
                App::Subscriptions,
                Message::Pong(vec![].into()),
                Reply::Nothing,
            ),
        ];
        for (app, input, expected) in cases {
            assert_eq!(app.reply(input.clone()), expected, "{app:?} <- {input:?}");
        }
    }

    #[test]
    fn only_subscriptions_greets() {
        assert_eq!(App::Subscriptions.greeting(), Some(text(GREETING)));
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
