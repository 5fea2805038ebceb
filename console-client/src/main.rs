//! The `console-client` binary: lines from standard input go into a bounded queue; one
//! background task sends them over one WebSocket (reconnecting, resending, refusing as the
//! shared `client-core` decides) and prints every reply on standard output.
//!
//! Exit status: 0 when the input ended and every message was answered (or the server ended the
//! conversation after `end`), and when standard output was closed (`| head -1`); 1, with one
//! line on standard error, when no connection could be opened within `--connect-timeout` or a
//! message failed; 2 for bad flags; 130 after SIGINT (Ctrl-C) and 143 after SIGTERM, once the
//! connection was closed with 1000.

mod config;
mod connect;
mod input;
mod run;
mod screen;
mod signals;
mod talk;
mod token;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use client_core::settings::{Settings, rooms_url, server_base};
use room_protocol::bounds::MAX_TEXT_BYTES;
use rules::App;

use crate::config::Config;
use crate::connect::Connector;
use crate::run::{Stop, Timeouts};
use crate::screen::{Escape, Screen};
use crate::signals::Signals;
use crate::talk::{Follow, RoomView, View};
use crate::token::TokenSource;
use client_core::outbox::Outbox;
use client_core::room::{ROOM_OUTBOX_CAPACITY, Room};
use client_core::session::Talk;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(error) => {
            // --help and --version are not errors.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    let tokens = match config.tokens(std::env::var(config::TOKEN_VARIABLE).ok()) {
        Ok(tokens) => tokens,
        Err(error) => {
            eprintln!("console-client: {error}");
            return ExitCode::from(2);
        }
    };
    // The URL to connect to, and what is spoken there. With a token, the token names the
    // person and the URL has no name.
    let target = match (config.room.clone(), config.name.clone()) {
        (Some(room), name) => server_base(&config.url).map(|base| {
            let url = match &name {
                Some(name) => rooms_url(&base, name),
                None => format!("{base}{}", client_core::settings::ROOMS_PATH),
            };
            let name = name.unwrap_or_else(|| "you".to_owned());
            (url, Conversation::Room { room, name })
        }),
        (None, _) => Settings::for_url(&config.url)
            .map(|settings| (settings.url, Conversation::App(settings.app))),
    };
    let (connector, conversation) = match target
        .map_err(|error| format!("the URL {error}"))
        .and_then(|(url, conversation)| {
            Connector::new(&url, config.ca_cert.as_deref())
                .map(|connector| (connector, conversation))
        }) {
        Ok(found) => found,
        Err(error) => {
            eprintln!("console-client: {error}");
            return ExitCode::from(2);
        }
    };
    // Listened to before anything is sent, so that no signal cuts a connection without a close.
    let mut signals = match Signals::listen() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("console-client: cannot listen to signals: {error}");
            return ExitCode::FAILURE;
        }
    };
    let timeouts = Timeouts {
        connect: config.connect_timeout,
        reply: config.reply_timeout,
    };
    match conversation {
        Conversation::Room { room, name } => {
            // The text of a message, which the protocol bounds too; the frame around it is the
            // server's business (it refuses a publish that does not fit, and says so).
            let limit = config.max_message_size.min(MAX_TEXT_BYTES);
            let follow = Follow {
                presence: config.presence,
                typing: config.typing,
            };
            let mut joined = Room::with_capacity(&room, ROOM_OUTBOX_CAPACITY, limit)
                .with_history(config.history);
            if follow.presence || follow.typing {
                joined = joined.with_presence();
            }
            let view = View::Room(RoomView::new(&room, &name, limit, follow));
            // Others' names and texts reach this terminal or pipe: none may forge a line or
            // send the terminal an escape sequence.
            let screen = Screen::new(Escape::Controls);
            let tokens = tokens.as_ref();
            talk_until_done(
                &connector,
                (Talk::Room(joined), view),
                limit,
                timeouts,
                tokens,
                screen,
                &mut signals,
            )
            .await
        }
        Conversation::App(app) => {
            let talk = Talk::App(Outbox::new(app, config.max_message_size));
            let view = View::App {
                max_message_bytes: config.max_message_size,
            };
            // A pipe gets each reply exactly as received but for its line breaks; a terminal
            // would act on the control characters in it.
            let screen = Screen::new(if std::io::stdout().is_terminal() {
                Escape::Controls
            } else {
                Escape::LineBreaks
            });
            let limit = config.max_message_size;
            talk_until_done(
                &connector,
                (talk, view),
                limit,
                timeouts,
                None,
                screen,
                &mut signals,
            )
            .await
        }
    }
}

/// What the client speaks on its connection.
#[derive(Debug)]
enum Conversation {
    /// An app's messages and answers, as its rules say.
    App(App),
    /// The rooms protocol, in room `room` as `name`.
    Room { room: String, name: String },
}

/// Reads standard input (lines of at most `limit` bytes) and talks until done; the exit code.
async fn talk_until_done(
    connector: &Connector,
    (talk, mut view): (Talk, View),
    limit: usize,
    timeouts: Timeouts,
    tokens: Option<&TokenSource>,
    mut screen: Screen,
    signals: &mut Signals,
) -> ExitCode {
    let mut lines = input::read_stdin(limit);
    let result = run::run(
        connector,
        talk,
        &mut view,
        &mut lines,
        timeouts,
        tokens,
        &mut screen,
        signals,
    )
    .await;
    match result {
        // Said already, in the status line that counted what was left.
        Err(Stop::Signalled(signal)) => ExitCode::from(signal.exit_code()),
        // The reader closed the pipe (`| head -1`): it has all it wanted, so nothing went wrong
        // and nothing is said, as Unix tools do. Any other write error (a full disk) is one.
        Err(Stop::StdoutGone(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(stop) => {
            screen.status(&format!("console-client: {stop}"));
            ExitCode::FAILURE
        }
        Ok(()) if screen.failures() > 0 => {
            let failures = screen.failures();
            screen.status(&format!(
                "console-client: {failures} message(s) failed (see above)"
            ));
            ExitCode::FAILURE
        }
        Ok(()) => ExitCode::SUCCESS,
    }
}
