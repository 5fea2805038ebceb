//! permessage-deflate (RFC 7692): the negotiation and the codec. The frames around it are
//! made elsewhere: [`crate::outgoing`] compresses what a session sends where it is made,
//! [`crate::deflate_stream`] inflates what the client sends.
//!
//! What this server agrees to, whatever the client offers: **no context takeover either way**.
//! Each message is compressed and inflated on its own, so an idle connection holds no
//! compression state at all; the compressors and inflaters live in small per-thread pools and
//! are borrowed for one message. With context takeover, each connection would keep its own
//! (zlib-rs, measured: 332 KiB a connection with 15-bit windows, 73 KiB with 9-bit ones, so
//! 3.2 GiB or 0.7 GiB for 10,000 idle sockets); the price of not keeping them is a weaker
//! ratio on small messages that repeat earlier ones.
//!
//! The codec: raw deflate with a full flush per message (a sync flush that also forgets what
//! came before), the `00 00 ff ff` that ends every flush removed before sending and added back
//! before inflating (section 7.2). flate2 on
//! zlib-rs, for the window sizes RFC 7692 lets a client ask for (miniz_oxide has one).

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::HeaderValue;

/// The name of the extension in `Sec-WebSocket-Extensions`.
const EXTENSION: &str = "permessage-deflate";
/// What every sync flush ends with, removed on the wire.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Messages shorter than this go out uncompressed: without context takeover, deflate rarely
/// makes them smaller (a 100-byte chat line gains a few bytes at best) and costs a compressor.
pub(crate) const MIN_COMPRESSED_SIZE: usize = 128;
/// zlib's level 1: on chat-sized messages it is several times cheaper than the default level
/// 6 (static Huffman codes, no trees to build per message) for a few percent of ratio; see
/// the README's compression figures.
const LEVEL: Compression = Compression::new(1);
/// The largest LZ77 window, zlib's default.
pub(crate) const MAX_WINDOW_BITS: u8 = 15;
/// zlib's deflate cannot make a 256-byte window (it silently uses 512 bytes), so a client that
/// limits the server to 8 bits gets its messages uncompressed: allowed, since RSV1 is per
/// message, and still honest.
pub(crate) const MIN_COMPRESS_WINDOW_BITS: u8 = 9;
/// Compressors and inflaters a thread keeps for reuse.
const SPARE: usize = 4;

/// What the server agreed to for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreement {
    /// `server_max_window_bits` if the client asked for it.
    server_max_window_bits: Option<u8>,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value of the `101`.
    pub(crate) fn response(self) -> HeaderValue {
        let mut response =
            format!("{EXTENSION}; server_no_context_takeover; client_no_context_takeover");
        if let Some(bits) = self.server_max_window_bits {
            response.push_str(&format!("; server_max_window_bits={bits}"));
        }
        HeaderValue::try_from(response).expect("ASCII tokens make a valid header value")
    }

    /// The window the server compresses with, or `None`: send every message uncompressed.
    pub(crate) fn compress_window_bits(self) -> Option<u8> {
        match self.server_max_window_bits {
            None => Some(MAX_WINDOW_BITS),
            Some(bits) if bits >= MIN_COMPRESS_WINDOW_BITS => Some(bits),
            Some(_) => None,
        }
    }
}

/// Picks the first `permessage-deflate` offer the server can honour, from every
/// `Sec-WebSocket-Extensions` header of the request. An offer with an unknown, repeated or
/// malformed parameter is declined as a whole (section 7.1), never half-accepted; other
/// extensions are ignored.
pub(crate) fn negotiate<'a>(
    headers: impl IntoIterator<Item = &'a HeaderValue>,
) -> Option<Agreement> {
    headers
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(accept_offer)
}

/// One offer, `name; param; param=value`: the agreement, or `None` to decline it.
fn accept_offer(offer: &str) -> Option<Agreement> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut seen = Vec::with_capacity(4);
    let mut agreement = Agreement {
        server_max_window_bits: None,
    };
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(value)) => {
                agreement.server_max_window_bits = Some(window_bits(value)?);
            }
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(value)) => {
                // The client's own window: any size inflates with the largest one.
                window_bits(value)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    Some(agreement)
}

/// A parameter value, token or quoted string (section 7.1: both are allowed).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"'),
        None => Some(value),
    }
}

/// A window size: a decimal 8 to 15 with no leading zero (section 7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

thread_local! {
    static COMPRESSORS: RefCell<Vec<(u8, Compress)>> = const { RefCell::new(Vec::new()) };
    static INFLATERS: RefCell<Vec<Decompress>> = const { RefCell::new(Vec::new()) };
}

/// Compresses one message's payload into `out` (cleared first), without the sync flush's
/// tail. Returns `false`, with `out` meaningless, when the result would not be smaller: the
/// message then goes out as it is.
pub(crate) fn compress(payload: &[u8], window_bits: u8, out: &mut Vec<u8>) -> bool {
    #[cfg(test)]
    COMPRESS_CALLS.with(|calls| calls.set(calls.get() + 1));
    let mut compressor = COMPRESSORS
        .with_borrow_mut(|spare| {
            let at = spare.iter().position(|(bits, _)| *bits == window_bits)?;
            Some(spare.swap_remove(at).1)
        })
        .unwrap_or_else(|| Compress::new_with_window_bits(LEVEL, false, window_bits));
    // Room for more than the worst case (level 1 codes a byte in at most 9 bits), so zlib
    // never runs short of output mid-message: zlib-rs 0.6's level 1 can overrun its pending
    // buffer and panic when it does (found under the Autobahn suite; see the test
    // `an_input_that_once_tripped_zlib_rs_round_trips`).
    out.clear();
    out.reserve_exact(output_room(payload.len()));
    // A panic inside zlib (a bug of its own) must not end the session: the message then goes
    // out uncompressed and the compressor is dropped.
    let smaller = std::panic::catch_unwind(AssertUnwindSafe(|| {
        deflate_message(&mut compressor, payload, out)
    }));
    let Ok(smaller) = smaller else {
        tracing::warn!("the compressor failed on a message; sent it uncompressed");
        return false;
    };
    if smaller {
        out.truncate(out.len() - TAIL.len());
    } else {
        // Stopped mid-message: the compressor holds part of it.
        compressor.reset();
    }
    COMPRESSORS.with_borrow_mut(|spare| {
        if spare.len() < SPARE {
            spare.push((window_bits, compressor));
        }
    });
    smaller && out.len() < payload.len()
}

#[cfg(test)]
thread_local! {
    /// Calls of [`compress`] on this thread, so tests can tell how often a message was
    /// compressed.
    static COMPRESS_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many times [`compress`] ran on this thread.
#[cfg(test)]
pub(crate) fn compress_calls() -> usize {
    COMPRESS_CALLS.with(std::cell::Cell::get)
}

/// Output room for a payload of `len` bytes: more than level 1 can ever produce.
fn output_room(len: usize) -> usize {
    len + len / 4 + 1024
}

/// Runs one message through `compressor` with a full flush; `true` if it ended in the flush's
/// tail with room to spare.
fn deflate_message(compressor: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> bool {
    let start = compressor.total_in();
    loop {
        let (read, written) = ((compressor.total_in() - start) as usize, out.len());
        // A full flush is a sync flush that also forgets the data so far: what follows it
        // never refers back, which is what no context takeover asks for, and it costs less
        // than resetting the compressor (which zeroes all of its ~256 KiB).
        if compressor
            .compress_vec(&payload[read..], out, FlushCompress::Full)
            .is_err()
        {
            return false;
        }
        let read_now = (compressor.total_in() - start) as usize;
        if out.len() == out.capacity() {
            // Cannot happen with the room `compress` gives; if it does, send it as it is.
            return false;
        }
        if read_now == payload.len() {
            // zlib stops short of the output's end only once the flush is complete.
            return out.ends_with(&TAIL);
        }
        if read_now == read && out.len() == written {
            return false;
        }
    }
}

/// Why an inflated message is refused; each reason has its close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// Not a valid deflate stream (1007, as Node's `ws` does).
    Invalid,
    /// Inflates past `--max-message-size` (1009).
    TooLarge,
}

/// Inflates one message, bounded: at most `limit` bytes come out, however small the input.
#[derive(Debug)]
pub(crate) struct Inflater {
    inflate: Decompress,
    limit: u64,
    /// The deflate stream ended (a block with BFINAL): anything after it is ignored.
    ended: bool,
    /// zlib panicked: the inflater is dropped, not given back.
    broken: bool,
}

impl Inflater {
    /// Borrows an inflater from this thread's spares for one message of at most `limit`
    /// bytes once inflated.
    pub(crate) fn start(limit: usize) -> Inflater {
        let inflate = INFLATERS
            .with_borrow_mut(Vec::pop)
            .unwrap_or_else(|| Decompress::new_with_window_bits(false, MAX_WINDOW_BITS));
        Inflater {
            inflate,
            limit: limit as u64,
            ended: false,
            broken: false,
        }
    }

    /// Inflates from `input` into the spare capacity of `out`; returns how many input bytes
    /// were used. Call again while it uses input or fills `out`.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, InflateError> {
        if self.ended {
            return Ok(input.len());
        }
        let (read, written) = (self.inflate.total_in(), self.inflate.total_out());
        // The input is the client's: a panic inside zlib (a bug of its own) is invalid data,
        // and the inflater is not reused (see `finish`).
        let inflate = &mut self.inflate;
        let status = std::panic::catch_unwind(AssertUnwindSafe(|| {
            inflate.decompress_vec(input, out, FlushDecompress::Sync)
        }))
        .map_err(|_| {
            self.broken = true;
            InflateError::Invalid
        })?
        .map_err(|_| InflateError::Invalid)?;
        self.ended = status == Status::StreamEnd;
        if self.inflate.total_out() > self.limit {
            return Err(InflateError::TooLarge);
        }
        let used = (self.inflate.total_in() - read) as usize;
        if used == 0
            && self.inflate.total_out() == written
            && !input.is_empty()
            && out.len() < out.capacity()
        {
            // Room to write and input to read, yet no progress: zlib will not go on.
            return Err(InflateError::Invalid);
        }
        Ok(used)
    }

    /// The bytes the sender removed from the end of the message (section 7.2.2).
    pub(crate) fn tail() -> &'static [u8] {
        &TAIL
    }

    /// Gives the inflater back to this thread's spares, ready for another message.
    pub(crate) fn finish(mut self) {
        if self.broken {
            return;
        }
        self.inflate.reset(false);
        INFLATERS.with_borrow_mut(|spare| {
            if spare.len() < SPARE {
                spare.push(self.inflate);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<Agreement> {
        negotiate([&HeaderValue::from_str(value).expect("valid header")])
    }

    fn response(value: &str) -> Option<String> {
        offer(value).map(|agreement| agreement.response().to_str().expect("ASCII").to_owned())
    }

    const AGREED: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn what_browsers_offer_is_answered_without_context_takeover() {
        // Chromium and Firefox send exactly this.
        assert_eq!(
            response("permessage-deflate; client_max_window_bits").as_deref(),
            Some(AGREED)
        );
        assert_eq!(response("permessage-deflate").as_deref(), Some(AGREED));
        assert_eq!(
            response("PerMessage-Deflate; Server_No_Context_Takeover; client_no_context_takeover")
                .as_deref(),
            Some(AGREED)
        );
        assert_eq!(
            response("permessage-deflate; client_max_window_bits=10").as_deref(),
            Some(AGREED)
        );
    }

    #[test]
    fn a_window_the_client_asks_for_is_agreed_and_used() {
        assert_eq!(
            response("permessage-deflate; server_max_window_bits=10"),
            Some(format!("{AGREED}; server_max_window_bits=10"))
        );
        assert_eq!(
            response(r#"permessage-deflate; server_max_window_bits="12""#),
            Some(format!("{AGREED}; server_max_window_bits=12"))
        );
        let ten = offer("permessage-deflate; server_max_window_bits=10").expect("agreed");
        assert_eq!(ten.compress_window_bits(), Some(10));
        let eight = offer("permessage-deflate; server_max_window_bits=8").expect("agreed");
        assert_eq!(
            eight.compress_window_bits(),
            None,
            "zlib cannot keep to 256 bytes"
        );
        assert_eq!(
            offer("permessage-deflate").and_then(Agreement::compress_window_bits),
            Some(15)
        );
    }

    #[test]
    fn an_offer_that_cannot_be_honoured_is_declined_whole() {
        for declined in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=\"9",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
            "permessage-deflate; mystery",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(offer(declined), None, "{declined}");
        }
    }

    #[test]
    fn the_first_offer_that_can_be_honoured_wins() {
        assert_eq!(
            response(
                "x-foo, permessage-deflate; mystery, permessage-deflate; server_max_window_bits=11"
            ),
            Some(format!("{AGREED}; server_max_window_bits=11"))
        );
        let lines = [
            HeaderValue::from_static("permessage-deflate; server_max_window_bits=99"),
            HeaderValue::from_static("permessage-deflate; server_max_window_bits=9"),
        ];
        assert_eq!(
            negotiate(&lines).map(Agreement::compress_window_bits),
            Some(Some(9))
        );
    }

    /// Inflates a whole message the way the stream layer does, in `chunk`-byte outputs.
    fn inflate_all(compressed: &[u8], limit: usize, chunk: usize) -> Result<Vec<u8>, InflateError> {
        let mut inflater = Inflater::start(limit);
        let mut inflated = Vec::new();
        for input in [compressed, Inflater::tail()] {
            let mut at = 0;
            loop {
                let mut out = Vec::with_capacity(chunk);
                at += inflater.inflate(&input[at..], &mut out)?;
                let full = out.len() == out.capacity();
                inflated.extend_from_slice(&out);
                if at == input.len() && !full {
                    break;
                }
            }
        }
        inflater.finish();
        Ok(inflated)
    }

    fn compressed(payload: &[u8], bits: u8) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(compress(payload, bits, &mut out), "compressible");
        out
    }

    #[test]
    fn compressed_messages_inflate_to_themselves_without_the_tail() {
        let text = "{\"user\":\"ada\",\"text\":\"hello, hello, hello\"} ".repeat(50);
        for bits in [9, 12, 15] {
            let packed = compressed(text.as_bytes(), bits);
            assert!(!packed.ends_with(&TAIL));
            assert!(
                packed.len() < text.len() / 5,
                "{} of {}",
                packed.len(),
                text.len()
            );
            for chunk in [1, 7, 4096] {
                assert_eq!(
                    inflate_all(&packed, 1 << 20, chunk),
                    Ok(text.as_bytes().to_vec())
                );
            }
        }
        // A 1 KiB window is kept to: what was compressed with it inflates with it.
        let packed = compressed(text.as_bytes(), 10);
        let mut input = packed.clone();
        input.extend_from_slice(&TAIL);
        let mut small_window = Decompress::new_with_window_bits(false, 10);
        let mut out = Vec::with_capacity(text.len() + 1);
        small_window
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .expect("inflates with a 1 KiB window");
        assert_eq!(out, text.as_bytes());
        // Pooled compressors start each message afresh: the same input, the same output.
        assert_eq!(
            compressed(text.as_bytes(), 15),
            compressed(text.as_bytes(), 15)
        );
    }

    #[test]
    fn what_would_not_shrink_is_not_compressed() {
        // 1 KiB from a xorshift generator: deflate cannot make it smaller.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert!(!compress(&noise, 15, &mut Vec::new()));
    }

    #[test]
    fn inflating_stops_at_the_limit_however_small_the_input() {
        let zeros = vec![0u8; 10 << 20];
        let packed = compressed(&zeros, 15);
        assert!(packed.len() < 128 * 1024, "{}", packed.len());
        assert_eq!(
            inflate_all(&packed, 64 * 1024, 16 * 1024),
            Err(InflateError::TooLarge)
        );
        assert_eq!(
            inflate_all(&packed, 10 << 20, 64 * 1024).map(|out| out.len()),
            Ok(10 << 20)
        );
    }

    #[test]
    fn inputs_that_once_tripped_zlib_rs_compress_and_round_trip() {
        // With only the payload's size of output room, the 2,095th message of this sequence
        // through one compressor made zlib-rs 0.6's level 1 overrun its pending buffer and
        // panic. Run here without `compress`'s catch, so a panic fails the test.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut compressor = Compress::new_with_window_bits(LEVEL, false, MAX_WINDOW_BITS);
        let mut data = Vec::new();
        for round in 0..=2094 {
            let size = (next() % 140_000) as usize + 16;
            data.clear();
            while data.len() < size {
                let kind = next() % 3;
                let len = (next() % 300) as usize + 1;
                match kind {
                    0 => data.extend((0..len).map(|_| next() as u8)),
                    1 => {
                        let byte = next() as u8;
                        data.extend(std::iter::repeat_n(byte, len));
                    }
                    _ => data.extend((0..len).map(|_| b'a' + (next() % 4) as u8)),
                }
            }
            data.truncate(size);
            // Exactly the room `compress` gives (a reused buffer could have more).
            let mut out = Vec::with_capacity(output_room(data.len()));
            if !deflate_message(&mut compressor, &data, &mut out) {
                // What `compress` does with a message that would not shrink.
                compressor.reset();
                continue;
            }
            if round % 100 == 0 || round == 2094 {
                out.truncate(out.len() - TAIL.len());
                assert!(inflate_all(&out, 1 << 20, 64 * 1024) == Ok(data.clone()));
            }
        }
    }

    #[test]
    fn garbage_is_invalid_data() {
        // BTYPE 11 is reserved: no valid deflate stream starts with it.
        assert_eq!(
            inflate_all(&[0xff, 0xff, 0xff], 1024, 1024),
            Err(InflateError::Invalid)
        );
    }

    #[test]
    fn a_final_block_ends_the_message() {
        // RFC 7692, section 7.2.3.3: "Hello" in a block with BFINAL set.
        let final_block = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&final_block, 1024, 1024), Ok(b"Hello".to_vec()));
        // The RFC's own example of a sync-flushed "Hello" (section 7.2.3.1).
        let flushed = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&flushed, 1024, 1024), Ok(b"Hello".to_vec()));
    }
}
