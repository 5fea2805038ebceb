//! The data messages a session sends, compressed where they are made: once per reply (the
//! ten copies of a `/subscriptions` echo share one compressed payload), once per room
//! publication and window size for every member that negotiated permessage-deflate.
//!
//! A compressed message goes to tungstenite as a [`Message::Frame`] with RSV1 set, which it
//! writes as given, so nothing under tungstenite has to parse or rewrite what it writes
//! (`deflate_stream` only reads). Without context takeover (the only agreement this server
//! makes, see `deflate`) a message's compressed bytes do not depend on the connection, only
//! on the window size, which is what lets one compression serve every member of a room.
//!
//! The plain path costs what it did: a session without compression sends the text it was
//! given, and a queued room message is its text plus a pointer to the shared compression,
//! which is allocated once per publication (and only for texts long enough to compress).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use hyper_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use hyper_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use hyper_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::deflate::{
    Agreement, MAX_WINDOW_BITS, MIN_COMPRESS_WINDOW_BITS, MIN_COMPRESSED_SIZE, compress,
};

/// How one session sends its data messages: compressed with its window, or plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Compression {
    /// `None`: every message goes out as it is (no agreement, or a window too small to
    /// compress with).
    window_bits: Option<u8>,
}

impl Compression {
    /// Every message as it is.
    #[cfg(test)]
    pub(crate) const PLAIN: Compression = Compression { window_bits: None };

    /// The session's compression, from what the handshake agreed (if anything).
    pub(crate) fn of(agreement: Option<Agreement>) -> Compression {
        Compression {
            window_bits: agreement.and_then(Agreement::compress_window_bits),
        }
    }

    /// Whether the session compresses anything at all.
    pub(crate) fn is_on(self) -> bool {
        self.window_bits.is_some()
    }

    /// One message as it goes out: a text or binary message compressed when that makes it
    /// smaller, anything else (pings, closes) as it is.
    pub(crate) fn message(self, message: Message) -> Message {
        let Some(window_bits) = self.window_bits else {
            return message;
        };
        let (opcode, payload) = match &message {
            Message::Text(text) => (Data::Text, text.as_bytes()),
            Message::Binary(bytes) => (Data::Binary, &bytes[..]),
            // Control frames are never compressed (RFC 7692 section 6), and a frame already
            // made is sent as it was made.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {
                return message;
            }
        };
        match compressed(payload, window_bits) {
            Some(compressed) => compressed_frame(opcode, compressed),
            None => message,
        }
    }

    /// `times` copies of one message, compressed once: the copies share its bytes.
    pub(crate) fn copies(self, message: Message, times: usize) -> impl Iterator<Item = Message> {
        std::iter::repeat_n(self.message(message), times)
    }

    /// A text from a rooms session's queue as it goes out: a room's message is compressed
    /// by the first member with this window that sends it, and the others share the result.
    pub(crate) fn queued(self, queued: QueuedText) -> Message {
        match (self.window_bits, queued.shared) {
            (None, _) => Message::Text(queued.text),
            (Some(window_bits), Some(shared)) => {
                match shared.compressed(queued.text.as_bytes(), window_bits) {
                    Some(compressed) => compressed_frame(Data::Text, compressed),
                    None => Message::Text(queued.text),
                }
            }
            // Sent once (the member's own answers) or too short to compress.
            (Some(_), None) => self.message(Message::Text(queued.text)),
        }
    }
}

/// A message's payload compressed with `window_bits`, if it is long enough and comes out
/// smaller.
fn compressed(payload: &[u8], window_bits: u8) -> Option<Bytes> {
    if payload.len() < MIN_COMPRESSED_SIZE {
        return None;
    }
    let mut out = Vec::new();
    if !compress(payload, window_bits, &mut out) {
        return None;
    }
    // `compress` reserves more than the worst case; a room's history keeps these bytes, so
    // they keep only what they use.
    out.shrink_to_fit();
    Some(Bytes::from(out))
}

/// A whole compressed message (RFC 7692: RSV1 on its first and only frame).
fn compressed_frame(opcode: Data, payload: Bytes) -> Message {
    let header = FrameHeader {
        is_final: true,
        rsv1: true,
        opcode: OpCode::Data(opcode),
        ..FrameHeader::default()
    };
    Message::Frame(Frame::from_payload(header, payload))
}

/// Windows of [`MIN_COMPRESS_WINDOW_BITS`] up to one bit below [`MAX_WINDOW_BITS`].
const SMALLER_WINDOWS: usize = (MAX_WINDOW_BITS - MIN_COMPRESS_WINDOW_BITS) as usize;

/// One compression of one payload: `Some` bytes, or `None` when it did not come out smaller.
type Once = OnceLock<Option<Bytes>>;

/// A room message's compressions, at most one per window size, each made by the first
/// session that needs it; the others wait for it (`OnceLock`) rather than compress it again.
#[derive(Debug, Default)]
pub(crate) struct CompressOnce {
    /// The largest window: what every browser gets (none asks for a smaller one).
    largest: Once,
    /// Smaller windows, which few clients ask for: made the first time one does, so a
    /// message in a room's history stays small.
    smaller: OnceLock<Box<[Once; SMALLER_WINDOWS]>>,
}

impl CompressOnce {
    fn compressed(&self, payload: &[u8], window_bits: u8) -> Option<Bytes> {
        let slot = if window_bits == MAX_WINDOW_BITS {
            Some(&self.largest)
        } else {
            let smaller = self.smaller.get_or_init(Box::default);
            window_bits
                .checked_sub(MIN_COMPRESS_WINDOW_BITS)
                .and_then(|at| smaller.get(usize::from(at)))
        };
        match slot {
            Some(slot) => slot
                .get_or_init(|| compressed(payload, window_bits))
                .clone(),
            // `Agreement` only compresses with the windows above; any other is not cached.
            None => compressed(payload, window_bits),
        }
    }
}

/// A text frame as a rooms session's queue and a room's history hold it: a room's message
/// carries the compression every member shares; the member's own answers, each sent once,
/// carry none.
#[derive(Debug, Clone)]
pub(crate) struct QueuedText {
    text: Utf8Bytes,
    shared: Option<Arc<CompressOnce>>,
}

impl QueuedText {
    /// A text sent to one member only.
    pub(crate) fn own(text: Utf8Bytes) -> QueuedText {
        QueuedText { text, shared: None }
    }

    /// The same text without the shared compression: what a member that sends everything
    /// plain queues, so that its deliveries take no reference count to the compression they
    /// never use.
    pub(crate) fn text_only(&self) -> QueuedText {
        QueuedText::own(self.text.clone())
    }

    /// A text sent to many (a room's message): its compressions are shared, and only a
    /// text long enough to be compressed pays for the allocation that shares them.
    pub(crate) fn shared(text: Utf8Bytes) -> QueuedText {
        let shared = (text.len() >= MIN_COMPRESSED_SIZE).then(Arc::default);
        QueuedText { text, shared }
    }

    /// The text alone, as a session that sends everything plain sends it.
    pub(crate) fn into_text(self) -> Utf8Bytes {
        self.text
    }

    #[cfg(test)]
    pub(crate) fn shares_compression(&self) -> bool {
        self.shared.is_some()
    }

    #[cfg(test)]
    pub(crate) fn text(&self) -> &Utf8Bytes {
        &self.text
    }

    pub(crate) fn len(&self) -> usize {
        self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::{Inflater, compress_calls, negotiate};

    fn compression(offer: &'static str) -> Compression {
        Compression::of(negotiate([&http::HeaderValue::from_static(offer)]))
    }

    fn inflate(compressed: &[u8]) -> Vec<u8> {
        let mut inflater = Inflater::start(1 << 20);
        let mut out = Vec::with_capacity(1 << 20);
        let mut input = compressed.to_vec();
        input.extend_from_slice(Inflater::tail());
        let used = inflater.inflate(&input, &mut out).expect("inflates");
        assert_eq!(used, input.len());
        out
    }

    /// A compressed message's opcode and inflated payload; panics on anything else.
    fn inflated(message: &Message) -> (OpCode, Vec<u8>) {
        let Message::Frame(frame) = message else {
            panic!("not compressed: {message:?}");
        };
        let header = frame.header();
        assert!(header.is_final && header.rsv1 && header.mask.is_none());
        (header.opcode, inflate(frame.payload()))
    }

    const LONG: &str = "{\"user\":\"ada\",\"text\":\"the deploy is green again\"}";

    #[test]
    fn long_data_messages_leave_compressed_and_the_rest_as_they_were() {
        let compression = compression("permessage-deflate");
        let long = LONG.repeat(40);
        let text = compression.message(Message::text(long.clone()));
        assert_eq!(
            inflated(&text),
            (OpCode::Data(Data::Text), long.clone().into())
        );
        let binary = compression.message(Message::binary(long.clone()));
        assert_eq!(inflated(&binary), (OpCode::Data(Data::Binary), long.into()));
        let unchanged = [
            Message::text("short"),
            Message::text("x".repeat(MIN_COMPRESSED_SIZE - 1)),
            Message::binary(Vec::new()),
            Message::Ping(Bytes::from(LONG.repeat(2))),
            Message::Close(None),
        ];
        for message in unchanged {
            assert_eq!(compression.message(message.clone()), message);
        }
    }

    #[test]
    fn what_does_not_come_out_smaller_and_windows_too_small_go_out_plain() {
        // A xorshift sequence does not compress.
        let mut state = 0x2545_f491_u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let message = Message::binary(noise);
        let agreed = compression("permessage-deflate");
        assert_eq!(agreed.message(message.clone()), message);
        // zlib cannot compress with an 8-bit window: that client gets everything plain.
        let eight = compression("permessage-deflate; server_max_window_bits=8");
        let long = Message::text(LONG.repeat(40));
        assert_eq!(eight.message(long.clone()), long);
        assert_eq!(Compression::of(None).message(long.clone()), long);
    }

    #[test]
    fn copies_are_compressed_once_and_share_their_bytes() {
        let compression = compression("permessage-deflate");
        let long = LONG.repeat(40);
        let before = compress_calls();
        let copies: Vec<Message> = compression
            .copies(Message::text(long.clone()), 10)
            .collect();
        assert_eq!(compress_calls() - before, 1);
        assert_eq!(copies.len(), 10);
        for copy in &copies {
            assert_eq!(inflated(copy).1, long.as_bytes());
            assert_eq!(copy, &copies[0]);
        }
    }

    #[test]
    fn a_room_message_is_compressed_once_per_window_for_every_member() {
        let long = LONG.repeat(40);
        let published = QueuedText::shared(long.clone().into());
        let members = [
            compression("permessage-deflate"),
            compression("permessage-deflate; server_max_window_bits=10"),
            compression("permessage-deflate; server_max_window_bits=8"),
            Compression::of(None),
        ];
        let before = compress_calls();
        // A hundred deliveries to each kind of member, as the queues hand them out.
        for _ in 0..100 {
            for member in members {
                let message = member.queued(published.clone());
                match member.window_bits {
                    Some(_) => assert_eq!(inflated(&message).1, long.as_bytes()),
                    None => assert_eq!(message, Message::text(long.clone())),
                }
            }
        }
        // Once for the 15-bit window, once for the 10-bit one; never for the plain members.
        assert_eq!(compress_calls() - before, 2);
        // A member's own answer is compressed for it alone, each time it is sent.
        let own = QueuedText::own(long.clone().into());
        let before = compress_calls();
        assert_eq!(inflated(&members[0].queued(own)).1, long.as_bytes());
        assert_eq!(compress_calls() - before, 1);
    }

    #[test]
    fn short_room_messages_carry_no_shared_compression() {
        let short = QueuedText::shared("x".repeat(MIN_COMPRESSED_SIZE - 1).into());
        assert!(short.shared.is_none());
        let message = compression("permessage-deflate").queued(short.clone());
        assert_eq!(message, Message::Text(short.text));
        // The queue element is one pointer more than the text.
        assert_eq!(
            size_of::<QueuedText>(),
            size_of::<Utf8Bytes>() + size_of::<usize>()
        );
    }
}
