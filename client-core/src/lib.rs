//! The core both clients share: what to send, when a message is done, when to reconnect, and
//! what a room frame means. Plain Rust with no browser, socket or runtime: the web client
//! (`web-client`, wasm) and the console client (`console-client`, tokio) each only move
//! messages between it, their socket and their screen, so both behave alike and the rules
//! are tested once, natively, with `cargo test`.
//!
//! - [`session`]: the conversation as a sans-IO state machine (events and the time in,
//!   effects out): every timing rule, once, for both clients.
//! - [`outbox`]: every message from typed to answered (or given up), counted by the shared
//!   `rules`, so each answer is shown exactly as many times as the rules say.
//! - [`backoff`]: full-jitter reconnection delays.
//! - [`settings`]: the URL, app, reply timeout and message limit a client talks with.
//! - [`room`]: a room's publishes until acknowledged, and what each server frame means.
//! - [`signin`]: the `auth` frame, when a token is refreshed, what 4401/4408/4429 mean.
//! - [`shown`]: which characters of others' names and texts the page shows as their code.
//! - [`status`]: the connection's state in words, and what follows a close.
//! - [`saved`], [`transcript`]: the web page's saved outbox format and its capped log.

pub mod backoff;
pub mod outbox;
pub mod room;
pub mod saved;
pub mod session;
pub mod settings;
pub mod shown;
pub mod signin;
pub mod status;
pub mod transcript;
