//! The bounds of the protocol that both sides need to know: what a server enforces unless
//! started with other values (`--max-text-bytes`, `--publish-rate`, `--publish-burst` take
//! their defaults from here), and what the clients assume of a server they cannot ask.

/// Longest `text` of a publish, in UTF-8 bytes: the server's default `--max-text-bytes`
/// (`too_long` past it) and the longest text the clients let anyone type.
pub const MAX_TEXT_BYTES: usize = 4 * 1024;

/// Publishes per second one connection may make on average: the server's default
/// `--publish-rate` (`rate_limited` past it).
pub const PUBLISH_RATE: u32 = 20;

/// Publishes one connection may make at once before [`PUBLISH_RATE`] applies: the server's
/// default `--publish-burst`.
pub const PUBLISH_BURST: u32 = 40;
