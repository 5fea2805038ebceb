//! The rooms protocol of `GET /rooms?name=NAME`, shared by the server, the web client and the
//! tests: the JSON frames both sides exchange ([`frames`]), what a valid room, display name and
//! message id are ([`names`]), and the pure decisions the guarantees rest on ([`order`]:
//! recovery from a position, offsets delivered in order with no gap and none twice, messages
//! shown once; [`limits`]: the dedup window and the publish rate), and the default bounds
//! both sides rely on ([`bounds`]: longest text, publish rate). No sockets, no clocks: time
//! comes in as milliseconds, so every decision is table-tested on the host.

pub mod bounds;
pub mod frames;
pub mod json;
pub mod limits;
pub mod names;
pub mod order;

pub use frames::{ClientFrame, ErrorCode, Position, PresentUser, Problem, ServerFrame};
