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

/// Shortest time between two `typing` frames of one user in one room that reach the others:
/// a server drops those in between, so a client need not send more often.
pub const TYPING_INTERVAL_MS: u64 = 2_000;

/// Longest time a room's presence changes wait to go out together: at most one presence
/// frame per room per interval.
pub const PRESENCE_INTERVAL_MS: u64 = 200;

/// Longest token an `auth` frame may carry, in bytes (a server refuses a longer one, 4401).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Close codes of a server that wants tokens, which clients act on.
pub mod close {
    /// The token was refused (or no `auth` frame came first, or in time): the reason says
    /// why. A client must not try again with the same token.
    pub const UNAUTHORIZED: u16 = 4401;
    /// The token reached its `exp` without a refresh: get a new one and reconnect.
    pub const TOKEN_EXPIRED: u16 = 4408;
    /// The user has as many connections to this instance as it allows.
    pub const TOO_MANY_CONNECTIONS: u16 = 4429;
}
