//! The `console-client` binary: lines from standard input go into a bounded queue; one
//! background task sends them over one WebSocket (reconnecting, resending, refusing as the
//! shared `client-core` decides) and prints every reply on standard output.
//!
//! Exit status: 0 when the input ended and every message was answered (or the server ended the
//! conversation after `end`); 1, with one line on standard error, when no connection could be
//! opened within `--connect-timeout` or a message failed; 2 for bad flags.

mod config;
mod connect;
mod input;
mod run;
mod screen;
mod talk;

use std::process::ExitCode;

use clap::Parser;
use client_core::room::MAX_TEXT_BYTES;
use client_core::settings::{Settings, rooms_url, server_base};
use rules::App;

use crate::config::Config;
use crate::connect::Connector;
use crate::run::Timeouts;
use crate::screen::Screen;
use crate::talk::{AppTalk, RoomTalk, Talk};

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
    // The URL to connect to, and what is spoken there.
    let target = match config.room.clone().zip(config.name.clone()) {
        Some((room, name)) => server_base(&config.url)
            .map(|base| (rooms_url(&base, &name), Conversation::Room { room, name })),
        None => Settings::for_url(&config.url)
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
    let timeouts = Timeouts {
        connect: config.connect_timeout,
        reply: config.reply_timeout,
    };
    match conversation {
        Conversation::Room { room, name } => {
            let talk = RoomTalk::new(&room, &name);
            talk_until_done(&connector, talk, MAX_TEXT_BYTES, timeouts).await
        }
        Conversation::App(app) => {
            let talk = AppTalk::new(app, config.max_message_size);
            talk_until_done(&connector, talk, config.max_message_size, timeouts).await
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
    mut talk: impl Talk,
    limit: usize,
    timeouts: Timeouts,
) -> ExitCode {
    let mut lines = input::read_stdin(limit);
    let mut screen = Screen::default();
    let result = run::run(connector, &mut talk, &mut lines, timeouts, &mut screen).await;
    match result {
        Err(stop) => {
            eprintln!("console-client: {stop}");
            ExitCode::FAILURE
        }
        Ok(()) if screen.failures() > 0 => {
            eprintln!(
                "console-client: {} message(s) failed (see above)",
                screen.failures()
            );
            ExitCode::FAILURE
        }
        Ok(()) => ExitCode::SUCCESS,
    }
}
