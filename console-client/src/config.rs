//! Command-line flags and environment variables, with their defaults: the web page's query
//! parameters (`?ws=`, `?reply-timeout=`, `?max-message-size=`, `?room=`, `?name=`) as flags,
//! checked by the same `client_core::settings` functions.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::token::TokenSource;
use client_core::outbox::MAX_MESSAGE_BYTES;
use client_core::settings::{parse_max_message_size, parse_reply_timeout, parse_seconds};
use room_protocol::names;

/// Where the console client connects unless told otherwise: the server's default address.
pub const DEFAULT_URL: &str = "ws://127.0.0.1:8080/subscriptions";

/// The longest `--connect-timeout` accepted: a day.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Reads lines from standard input and sends each over one WebSocket; prints every reply on
/// standard output, one per line (line breaks in it escaped as \n, and every control character
/// when standard output is a terminal or in a room). Status goes to standard error.
#[derive(Clone, Parser)]
#[command(name = "console-client", version, about)]
pub struct Config {
    /// WebSocket URL (ws:// or wss://) of an app: /subscriptions, /echo or /mirror. With
    /// --room, the server whose /rooms to use (the path is replaced).
    #[arg(default_value = DEFAULT_URL)]
    pub url: String,

    /// PEM file of certificates to trust for wss:// besides the public roots, e.g. a private
    /// CA or a self-signed server certificate. Not read for ws:// URLs.
    #[arg(long, env = "CONSOLE_CLIENT_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Speak the rooms protocol: join this room, print its messages as `name: text`, publish
    /// each line typed. Needs --name on an open server, or a token (--token, --token-command)
    /// on one that wants them.
    #[arg(long, value_parser = room_name, value_name = "NAME")]
    pub room: Option<String>,

    /// The display name others see in the room, on a server without tokens. Needs --room.
    #[arg(long, requires = "room", value_parser = display_name, value_name = "NAME",
          conflicts_with_all = ["token", "token_command"])]
    pub name: Option<String>,

    /// The signed token (JWT) to sign in to the room's server with: it names you and says
    /// which rooms you may read and write. Needs --room. Prefer the environment variable
    /// ROOMS_TOKEN (read for a --room without --name, --token or --token-command): a command
    /// line is visible to other users of the machine.
    #[arg(
        long,
        requires = "room",
        conflicts_with = "token_command",
        value_name = "JWT"
    )]
    pub token: Option<String>,

    /// A command that prints a fresh token (run with `sh -c`): at start, before the token
    /// expires (at about 80% of its life), and after the server says it expired. Needs --room.
    #[arg(long, requires = "room", value_name = "COMMAND")]
    pub token_command: Option<String>,

    /// With --room: on entry, print the room's last N messages (those it still keeps).
    #[arg(long, requires = "room", value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub history: u64,

    /// With --room: say on standard error who is in the room, then who joins and leaves.
    #[arg(long, requires = "room")]
    pub presence: bool,

    /// With --room: say on standard error who is typing.
    #[arg(long, requires = "room")]
    pub typing: bool,

    /// Seconds to keep trying to connect (at start, or after the connection was lost) before
    /// giving up with one line on standard error and a non-zero exit.
    #[arg(long, env = "CONSOLE_CLIENT_CONNECT_TIMEOUT", default_value = "10",
          value_parser = connect_timeout, value_name = "SECONDS")]
    pub connect_timeout: Duration,

    /// Seconds a sent message may go without any frame from the server before the client
    /// takes the server for hung, closes (4000) and reconnects; the page's ?reply-timeout=.
    #[arg(long, env = "CONSOLE_CLIENT_REPLY_TIMEOUT", default_value = "5",
          value_parser = parse_reply_timeout, value_name = "SECONDS")]
    pub reply_timeout: Duration,

    /// Longest line sent, in bytes (UTF-8): the server's --max-message-size, which closes the
    /// connection (1009) on longer ones. Longer lines are refused here; the page's
    /// ?max-message-size=. With --room, the longest text of a message (at most 4096).
    #[arg(long, env = "CONSOLE_CLIENT_MAX_MESSAGE_SIZE", default_value_t = MAX_MESSAGE_BYTES,
          value_parser = parse_max_message_size, value_name = "BYTES")]
    pub max_message_size: usize,
}

impl std::fmt::Debug for Config {
    /// Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("room", &self.room)
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("token_command", &self.token_command)
            .finish_non_exhaustive()
    }
}

/// The environment variable a room's token may come from.
pub const TOKEN_VARIABLE: &str = "ROOMS_TOKEN";

impl Config {
    /// Where a room's token comes from: `--token`, `--token-command`, or, for a `--room`
    /// given neither nor `--name`, `env_token` (ROOMS_TOKEN's value). Read by hand rather
    /// than by clap, whose conflicts would then hold for the variable too, so an exported
    /// token would break every other use of the client. `Err`: a room with no way to sign in.
    pub fn tokens(&self, env_token: Option<String>) -> Result<Option<TokenSource>, String> {
        let from_env = || {
            env_token
                .filter(|token| !token.is_empty())
                .map(TokenSource::Fixed)
        };
        match (&self.room, &self.name, &self.token, &self.token_command) {
            (_, _, Some(token), _) => Ok(Some(TokenSource::Fixed(token.clone()))),
            (_, _, None, Some(command)) => Ok(Some(TokenSource::Command(command.clone()))),
            (Some(_), None, None, None) => from_env().map(Some).ok_or_else(|| {
                format!(
                    "--room needs --name (on a server without tokens) or a token: --token, \
                     {TOKEN_VARIABLE} or --token-command"
                )
            }),
            _ => Ok(None),
        }
    }
}

fn connect_timeout(seconds: &str) -> Result<Duration, String> {
    parse_seconds(seconds.trim())
        .filter(|timeout| !timeout.is_zero() && *timeout <= MAX_CONNECT_TIMEOUT)
        .ok_or_else(|| {
            format!(
                "must be a number of seconds above 0 and at most {}, not {seconds:?}",
                MAX_CONNECT_TIMEOUT.as_secs()
            )
        })
}

fn room_name(room: &str) -> Result<String, String> {
    if names::is_room_name(room) {
        Ok(room.to_owned())
    } else {
        Err(format!(
            "must be 1 to {} of A-Z a-z 0-9 _ . : -",
            names::MAX_ROOM_NAME
        ))
    }
}

fn display_name(name: &str) -> Result<String, String> {
    if names::is_display_name(name) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "must be 1 to {} characters, {}",
            names::MAX_DISPLAY_NAME,
            names::DISPLAY_NAME_RULES
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("console-client").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_the_pages() {
        let config = parse(&[]).expect("defaults parse");
        assert_eq!(config.url, DEFAULT_URL);
        assert_eq!(config.connect_timeout, Duration::from_secs(10));
        assert_eq!(config.reply_timeout, Duration::from_secs(5));
        assert_eq!(config.max_message_size, MAX_MESSAGE_BYTES);
        assert_eq!((config.room, config.name), (None, None));
        assert_eq!((config.token, config.token_command), (None, None));
    }

    #[test]
    fn flags_are_checked() {
        let config =
            parse(&["--connect-timeout", "0.5", "--max-message-size", "100"]).expect("valid flags");
        assert_eq!(config.connect_timeout, Duration::from_millis(500));
        assert_eq!(config.max_message_size, 100);
        for bad in [
            &["--connect-timeout", "0"][..],
            &["--reply-timeout", "soon"],
            &["--max-message-size", "0"],
            &["--name", "ana"],
            &["--room", "a b", "--name", "ana"],
            &["--room", "lobby", "--name", ""],
            &["--room", "lobby", "--name", "ana", "--history", "1001"],
            &["--history", "5"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let most = parse(&["--room", "lobby", "--name", "ana", "--history", "1000"]);
        assert_eq!(most.expect("the most history").history, 1000);
        let room = parse(&["--room", "lobby", "--name", "Zoë"]).expect("a room");
        assert_eq!(room.room.as_deref(), Some("lobby"));
        let signed = parse(&["--room", "lobby", "--token-command", "mint"]).expect("a room");
        assert_eq!(signed.token_command.as_deref(), Some("mint"));
        for bad in [
            &["--token", "t"][..],
            &["--room", "lobby", "--name", "ana", "--token", "t"],
            &["--room", "lobby", "--token", "t", "--token-command", "mint"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_exported_token_is_read_for_a_room_without_a_name_and_nowhere_else() {
        let env = || Some("from-env".to_owned());
        let tokens = |args: &[&str], env_token: Option<String>| {
            parse(args).expect("valid flags").tokens(env_token)
        };
        assert_eq!(
            tokens(&["--room", "lobby"], env()),
            Ok(Some(TokenSource::Fixed("from-env".into())))
        );
        assert!(tokens(&["--room", "lobby"], None).is_err());
        assert!(tokens(&["--room", "lobby"], Some(String::new())).is_err());
        // Set but not wanted: an app, a named room, another token source.
        assert_eq!(tokens(&["ws://h/echo"], env()), Ok(None));
        assert_eq!(
            tokens(&["--room", "lobby", "--name", "ana"], env()),
            Ok(None)
        );
        assert_eq!(
            tokens(&["--room", "lobby", "--token-command", "mint"], env()),
            Ok(Some(TokenSource::Command("mint".into())))
        );
        assert_eq!(
            tokens(&["--room", "lobby", "--token", "flag"], env()),
            Ok(Some(TokenSource::Fixed("flag".into())))
        );
    }
}
