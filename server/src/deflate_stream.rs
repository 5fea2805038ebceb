//! permessage-deflate one layer under tungstenite, which refuses RSV1 and has no extension
//! hook: `DeflateStream` reads the client's frames and hands tungstenite ordinary ones.
//! Writing is not its business: a session compresses each message where it is made
//! ([`crate::outgoing`]) and hands tungstenite a frame with RSV1, which tungstenite writes as
//! given, so what tungstenite writes passes through this layer untouched.
//!
//! Reading: a frame that is not part of a compressed message passes through untouched (still
//! masked; tungstenite unmasks and checks it). A compressed message is unmasked and inflated
//! here, at most [`OUT_CHUNK`] bytes at a time, each piece handed up as an unmasked frame of
//! the same message (fragments, the last with FIN), so no more than one piece is held however
//! far a small frame inflates; past `--max-message-size` inflated bytes it is refused (1009).
//! tungstenite is told to accept unmasked frames for that reason, so the masking rule is
//! enforced here, for every frame, along with the rules RFC 7692 adds (RSV1 only on a
//! message's first frame). Those failures come up as an `io::Error` holding a [`Violation`],
//! which the session turns into its close code.
//!
//! Frame headers are parsed and written with tungstenite's `FrameHeader`; this layer only
//! counts how many header bytes to wait for (`HeaderBytes::needed`), so that it never reads
//! into a payload it must pass on untouched.

use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper_tungstenite::tungstenite::protocol::frame::FrameHeader;
use hyper_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::deflate::{InflateError, Inflater};

/// Most inflated bytes handed up as one frame.
const OUT_CHUNK: usize = 16 * 1024;
/// Most compressed bytes read at a time.
const IN_CHUNK: usize = 16 * 1024;
/// Buffers larger than this are freed once drained, so idle sessions stay small.
const KEEP: usize = 1024;
/// The longest frame header: 2 bytes, 8 of length, 4 of mask.
const MAX_HEADER: usize = 14;

/// The mask bit of a header's second byte: it says how long the header is.
const MASKED: u8 = 0x80;
const CONTINUATION: OpCode = OpCode::Data(Data::Continue);

/// A client broke a rule only this layer sees; the session closes with `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub(crate) struct Violation {
    pub code: CloseCode,
    pub reason: &'static str,
}

impl Violation {
    fn protocol(reason: &'static str) -> Violation {
        Violation {
            code: CloseCode::Protocol,
            reason,
        }
    }

    /// The violation an I/O error from this layer carries, if it is one.
    pub(crate) fn of(error: &io::Error) -> Option<Violation> {
        error.get_ref()?.downcast_ref::<Violation>().copied()
    }
}

impl From<InflateError> for Violation {
    fn from(error: InflateError) -> Violation {
        match error {
            InflateError::Invalid => Violation {
                code: CloseCode::Invalid,
                reason: "invalid compressed data",
            },
            InflateError::TooLarge => Violation {
                code: CloseCode::Size,
                reason: "message too large once inflated",
            },
        }
    }
}

impl From<Violation> for io::Error {
    fn from(violation: Violation) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, violation)
    }
}

/// The stream under tungstenite when the client and the server agreed on permessage-deflate.
#[derive(Debug)]
pub(crate) struct DeflateStream<S> {
    stream: S,
    reader: Reader,
}

impl<S> DeflateStream<S> {
    /// `max_message_size` bounds an inflated message, as it bounds any other.
    pub(crate) fn new(stream: S, max_message_size: usize) -> DeflateStream<S> {
        DeflateStream {
            stream,
            reader: Reader::new(max_message_size),
        }
    }
}

/// A frame header's bytes, as many as have arrived.
#[derive(Debug, Default)]
struct HeaderBytes {
    bytes: [u8; MAX_HEADER],
    len: usize,
}

impl HeaderBytes {
    /// The header's whole length, as far as the bytes so far tell.
    fn needed(&self) -> usize {
        if self.len < 2 {
            return 2;
        }
        let extended = match self.bytes[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.bytes[1] & MASKED != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    fn missing(&self) -> usize {
        self.needed() - self.len
    }

    fn raw(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Parses a complete header with tungstenite's parser: the header and its payload length.
    /// `None` for a header it refuses (a reserved opcode).
    fn parse(&self) -> Option<(FrameHeader, u64)> {
        // Complete by `needed`, so the parser never asks for more (`Ok(None)`).
        FrameHeader::parse(&mut Cursor::new(self.raw()))
            .ok()
            .flatten()
    }
}

/// Appends an unmasked frame header to `out` (tungstenite's formatter: the shortest length).
fn put_header(out: &mut Vec<u8>, header: &FrameHeader, len: usize) {
    header
        .format(len as u64, out)
        .expect("writing to a Vec cannot fail");
}

/// The header of an unmasked frame with no RSV bits: what tungstenite reads.
fn plain_header(is_final: bool, opcode: OpCode) -> FrameHeader {
    FrameHeader {
        is_final,
        opcode,
        mask: None,
        ..FrameHeader::default()
    }
}

/// Frees a drained buffer that has grown past [`KEEP`].
fn release(buffer: &mut Vec<u8>) {
    buffer.clear();
    if buffer.capacity() > KEEP {
        *buffer = Vec::new();
    }
}

/// The message a continuation frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Plain,
    Compressed,
}

#[derive(Debug, Clone, Copy)]
enum ReadState {
    Header,
    /// Passing `left` bytes of an untouched frame straight through.
    Forward {
        left: u64,
    },
    /// Reading `left` more compressed bytes of a frame; `mask_at` is where the next byte
    /// falls in the mask; `tail` once the sync flush's tail has been given to the inflater.
    Compressed {
        left: u64,
        mask: [u8; 4],
        mask_at: usize,
        fin: bool,
        tail: bool,
    },
}

#[derive(Debug)]
struct Reader {
    header: HeaderBytes,
    state: ReadState,
    open: Open,
    /// Most inflated bytes a message may have.
    limit: usize,
    /// Most compressed bytes a message may have: inflating never makes data smaller by more
    /// than stored blocks' few bytes of framing, so this only stops endless empty blocks.
    compressed_limit: u64,
    compressed_so_far: u64,
    inflater: Option<Inflater>,
    /// Compressed bytes read and unmasked, not yet inflated: `input[input_at..]`.
    input: Vec<u8>,
    input_at: usize,
    /// The inflater filled its output last time and may hold more.
    more_output: bool,
    /// Inflated bytes not yet made into a frame.
    inflated: Vec<u8>,
    /// Opcode of the next frame made of inflated bytes: the message's, then continuation.
    next_opcode: OpCode,
    /// Bytes for tungstenite: `ready[ready_at..]`.
    ready: Vec<u8>,
    ready_at: usize,
    /// After a violation the frames cannot be trusted: raw bytes pass (the session only
    /// drains them).
    failed: bool,
}

impl Reader {
    fn new(limit: usize) -> Reader {
        Reader {
            header: HeaderBytes::default(),
            state: ReadState::Header,
            open: Open::None,
            limit,
            compressed_limit: limit as u64 + limit as u64 / 64 + 1024,
            compressed_so_far: 0,
            inflater: None,
            input: Vec::new(),
            input_at: 0,
            more_output: false,
            inflated: Vec::new(),
            next_opcode: CONTINUATION,
            ready: Vec::new(),
            ready_at: 0,
            failed: false,
        }
    }

    /// Decides what to do with the frame whose header just completed.
    fn start_frame(&mut self) -> Result<(), Violation> {
        // The next frame's header starts afresh; this one's bytes may still be passed on.
        let raw = std::mem::take(&mut self.header);
        let Some((header, len)) = raw.parse() else {
            return Err(Violation::protocol("reserved opcode"));
        };
        let Some(mask) = header.mask else {
            return Err(Violation::protocol("unmasked frame from the client"));
        };
        let compressed = match (header.opcode, self.open) {
            // Control frames may come between fragments; tungstenite checks the rest of them.
            (OpCode::Control(_), _) => false,
            (CONTINUATION, _) if header.rsv1 => {
                return Err(Violation::protocol("RSV1 set on a continuation frame"));
            }
            (CONTINUATION, Open::None) => {
                return Err(Violation::protocol(
                    "continuation frame with no message to continue",
                ));
            }
            (CONTINUATION, open) => open == Open::Compressed,
            (OpCode::Data(Data::Text | Data::Binary), Open::Plain | Open::Compressed) => {
                return Err(Violation::protocol(
                    "a new message began before the last one ended",
                ));
            }
            (opcode @ OpCode::Data(Data::Text | Data::Binary), Open::None) if header.rsv1 => {
                self.inflater = Some(Inflater::start(self.limit));
                self.next_opcode = opcode;
                self.compressed_so_far = 0;
                self.inflated = Vec::with_capacity(OUT_CHUNK);
                self.open = Open::Compressed;
                true
            }
            (OpCode::Data(Data::Text | Data::Binary), Open::None) => {
                if !header.is_final {
                    self.open = Open::Plain;
                }
                false
            }
            // The parser refuses reserved opcodes already (`raw.parse()`).
            (OpCode::Data(Data::Reserved(_)), _) => {
                return Err(Violation::protocol("reserved opcode"));
            }
        };
        if compressed {
            // Saturating: a length near 2^64 must not wrap the sum below the limit.
            self.compressed_so_far = self.compressed_so_far.saturating_add(len);
            if self.compressed_so_far > self.compressed_limit {
                return Err(InflateError::TooLarge.into());
            }
            self.state = ReadState::Compressed {
                left: len,
                mask,
                mask_at: 0,
                fin: header.is_final,
                tail: false,
            };
        } else {
            if header.is_final && header.opcode == CONTINUATION {
                self.open = Open::None;
            }
            self.ready.extend_from_slice(raw.raw());
            self.state = ReadState::Forward { left: len };
        }
        Ok(())
    }

    /// Makes the inflated bytes so far a frame for tungstenite.
    fn emit(&mut self, fin: bool) {
        let header = plain_header(fin, self.next_opcode);
        put_header(&mut self.ready, &header, self.inflated.len());
        self.ready.extend_from_slice(&self.inflated);
        self.inflated.clear();
        self.next_opcode = CONTINUATION;
    }

    /// Ends a compressed message: everything handed up, the inflater given back.
    fn end_message(&mut self) {
        self.emit(true);
        if let Some(inflater) = self.inflater.take() {
            inflater.finish();
        }
        self.open = Open::None;
        self.state = ReadState::Header;
        self.inflated = Vec::new();
        self.input = Vec::new();
        self.input_at = 0;
        self.more_output = false;
    }

    fn poll_read<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.failed {
            return Pin::new(stream).poll_read(cx, buf);
        }
        loop {
            if self.ready_at < self.ready.len() {
                let count = buf.remaining().min(self.ready.len() - self.ready_at);
                buf.put_slice(&self.ready[self.ready_at..self.ready_at + count]);
                self.ready_at += count;
                if self.ready_at == self.ready.len() {
                    release(&mut self.ready);
                    self.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            match self.state {
                ReadState::Header => {
                    let missing = self.header.missing();
                    if missing > 0 {
                        let at = self.header.len;
                        let mut into = ReadBuf::new(&mut self.header.bytes[at..at + missing]);
                        ready!(Pin::new(&mut *stream).poll_read(cx, &mut into))?;
                        let read = into.filled().len();
                        if read == 0 {
                            // The end of the stream: tungstenite decides what it means.
                            return Poll::Ready(Ok(()));
                        }
                        self.header.len += read;
                        continue;
                    }
                    if let Err(violation) = self.start_frame() {
                        self.failed = true;
                        return Poll::Ready(Err(violation.into()));
                    }
                }
                ReadState::Forward { left: 0 } => self.state = ReadState::Header,
                ReadState::Forward { left } => {
                    let want = buf
                        .remaining()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    if want == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let read = {
                        let mut into = ReadBuf::new(buf.initialize_unfilled_to(want));
                        ready!(Pin::new(&mut *stream).poll_read(cx, &mut into))?;
                        into.filled().len()
                    };
                    buf.advance(read);
                    self.state = ReadState::Forward {
                        left: left - read as u64,
                    };
                    return Poll::Ready(Ok(()));
                }
                ReadState::Compressed { .. } => {
                    if let Err(violation) = ready!(self.poll_inflate(stream, cx)) {
                        self.failed = true;
                        return Poll::Ready(Err(violation));
                    }
                }
            }
        }
    }

    /// One step of a compressed frame: inflate, read more of it, or end it. Ready once it made
    /// progress (the caller loops), pending only while waiting for the client.
    fn poll_inflate<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let ReadState::Compressed {
            left,
            mask,
            mask_at,
            fin,
            tail,
        } = self.state
        else {
            return Poll::Ready(Ok(()));
        };
        if self.input_at < self.input.len() || self.more_output {
            if self.inflated.len() == self.inflated.capacity() {
                self.emit(false);
                return Poll::Ready(Ok(()));
            }
            let inflater = self
                .inflater
                .as_mut()
                .expect("a compressed message has an inflater");
            let used = inflater
                .inflate(&self.input[self.input_at..], &mut self.inflated)
                .map_err(Violation::from)?;
            self.input_at += used;
            self.more_output = self.inflated.len() == self.inflated.capacity();
            return Poll::Ready(Ok(()));
        }
        self.input.clear();
        self.input_at = 0;
        if left > 0 {
            let want = IN_CHUNK.min(usize::try_from(left).unwrap_or(usize::MAX));
            self.input.resize(want, 0);
            let mut into = ReadBuf::new(&mut self.input);
            let polled = Pin::new(stream).poll_read(cx, &mut into);
            let read = into.filled().len();
            self.input.truncate(read);
            ready!(polled)?;
            if read == 0 {
                // The end of the stream mid-frame: tungstenite sees it end.
                return Poll::Ready(Ok(()));
            }
            for (offset, byte) in self.input.iter_mut().enumerate() {
                *byte ^= mask[(mask_at + offset) % 4];
            }
            self.state = ReadState::Compressed {
                left: left - read as u64,
                mask,
                mask_at: (mask_at + read) % 4,
                fin,
                tail,
            };
        } else if !fin {
            // The message goes on in a continuation frame.
            self.state = ReadState::Header;
        } else if !tail {
            self.input.extend_from_slice(Inflater::tail());
            self.state = ReadState::Compressed {
                left,
                mask,
                mask_at,
                fin,
                tail: true,
            };
        } else {
            self.end_message();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeflateStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.reader.poll_read(&mut this.stream, cx, buf)
    }
}

/// What tungstenite writes passes straight through: a session compresses its messages
/// itself (`outgoing`), as frames with RSV1 that tungstenite writes as given.
impl<S: AsyncWrite + Unpin> AsyncWrite for DeflateStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::compress;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // The tests encode and parse frames by hand, independently of the parser the layer uses.
    const FIN: u8 = 0x80;
    const RSV1: u8 = 0x40;
    const CONTINUATION: u8 = 0x0;
    const TEXT: u8 = 0x1;
    const BINARY: u8 = 0x2;

    /// A frame as tungstenite writes it (unmasked) or as a client sends it (masked).
    fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![first];
        let mask_bit = if mask.is_some() { MASKED } else { 0 };
        match payload.len() {
            len @ 0..=125 => out.push(mask_bit | len as u8),
            len @ 126..=0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if let Some(mask) = mask {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    /// An unmasked header at the front of `bytes`: `(first byte, header length, payload length)`.
    fn split_header(bytes: &[u8]) -> (u8, usize, usize) {
        match bytes[1] & 0x7f {
            126 => (
                bytes[0],
                4,
                usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            ),
            127 => {
                let long: [u8; 8] = bytes[2..10].try_into().expect("8 bytes");
                (
                    bytes[0],
                    10,
                    usize::try_from(u64::from_be_bytes(long)).expect("small"),
                )
            }
            short => (bytes[0], 2, usize::from(short)),
        }
    }

    /// Splits a byte stream of unmasked frames into `(first byte, payload)`.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut found = Vec::new();
        while !bytes.is_empty() {
            let (first, used, len) = split_header(bytes);
            found.push((first, bytes[used..used + len].to_vec()));
            bytes = &bytes[used + len..];
        }
        found
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

    const LONG: &str = "{\"user\":\"ada\",\"text\":\"the deploy is green again\"}";

    #[tokio::test]
    async fn what_tungstenite_writes_passes_through_untouched_however_split() {
        let long = LONG.repeat(40);
        let mut packed = Vec::new();
        assert!(compress(long.as_bytes(), 15, &mut packed));
        // Long plain frames stay plain (the session decides what is compressed), and a
        // compressed one the session made leaves as it was made.
        let written: Vec<u8> = [
            frame(FIN | TEXT, b"short", None),
            frame(FIN | TEXT, long.as_bytes(), None),
            frame(FIN | 0x9, b"ping", None),
            frame(FIN | RSV1 | BINARY, &packed, None),
            frame(FIN | BINARY, &[], None),
        ]
        .concat();
        for split in [1, 2, 5, 13, 4096] {
            let mut layer = DeflateStream::new(Vec::new(), 1 << 20);
            for piece in written.chunks(split) {
                layer.write_all(piece).await.expect("write");
            }
            layer.flush().await.expect("flush");
            layer.shutdown().await.expect("shutdown");
            assert_eq!(layer.stream, written, "split {split}");
            let sent = frames(&layer.stream);
            assert_eq!(sent[3].0, FIN | RSV1 | BINARY);
            assert_eq!(inflate(&sent[3].1), long.as_bytes());
        }
    }

    #[tokio::test]
    async fn tungstenite_reads_compressed_messages_as_plain_frames_however_small_its_reads() {
        let long = LONG.repeat(2000);
        let mut packed = Vec::new();
        assert!(compress(long.as_bytes(), 15, &mut packed));
        let (one, two) = packed.split_at(packed.len() / 2);
        let mask = Some([9, 8, 7, 6]);
        let received: Vec<u8> = [
            frame(FIN | TEXT, b"plain", mask),
            frame(RSV1 | TEXT, one, mask),
            frame(FIN | 0x9, b"ping", mask),
            frame(FIN | CONTINUATION, two, mask),
        ]
        .concat();
        for read_size in [1, 7, 100, 1 << 16] {
            let mut layer = DeflateStream::new(&received[..], 1 << 20);
            let mut handed_up = Vec::new();
            let mut chunk = vec![0; read_size];
            loop {
                let read = layer.read(&mut chunk).await.expect("read");
                if read == 0 {
                    break;
                }
                handed_up.extend_from_slice(&chunk[..read]);
            }
            // The plain frame and the ping pass untouched (still masked: split them by hand).
            let plain = frame(FIN | TEXT, b"plain", mask);
            assert_eq!(
                &handed_up[..plain.len()],
                &plain[..],
                "reads of {read_size}"
            );
            let rest = &handed_up[plain.len()..];
            let mut message = Vec::new();
            let mut at = 0;
            let mut saw_ping = false;
            while at < rest.len() {
                if rest[at] & 0x0f == 0x9 {
                    let ping = frame(FIN | 0x9, b"ping", mask);
                    assert_eq!(&rest[at..at + ping.len()], &ping[..]);
                    at += ping.len();
                    saw_ping = true;
                    continue;
                }
                let (first, header_len, payload_len) = split_header(&rest[at..]);
                let payload = &rest[at + header_len..at + header_len + payload_len];
                at += header_len + payload_len;
                assert_eq!(first & RSV1, 0, "tungstenite never sees RSV1");
                assert_eq!(
                    first & 0x0f,
                    if message.is_empty() {
                        TEXT
                    } else {
                        CONTINUATION
                    }
                );
                message.extend_from_slice(payload);
                if first & FIN != 0 {
                    assert_eq!(at, rest.len(), "the last piece ends the stream");
                }
            }
            assert!(saw_ping);
            assert_eq!(message, long.as_bytes(), "reads of {read_size}");
        }
    }

    #[tokio::test]
    async fn what_breaks_the_rules_comes_up_as_a_violation_with_its_close_code() {
        let mask = Some([1, 2, 3, 4]);
        let mut packed = Vec::new();
        assert!(compress(LONG.repeat(10).as_bytes(), 15, &mut packed));
        let endless = [
            MASKED | 127,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            1,
            2,
            3,
            4,
        ];
        let cases: [(Vec<u8>, CloseCode); 6] = [
            (frame(FIN | TEXT, b"unmasked", None), CloseCode::Protocol),
            (
                frame(FIN | CONTINUATION, b"orphan", mask),
                CloseCode::Protocol,
            ),
            (
                frame(FIN | RSV1 | TEXT, &[0xff; 8], mask),
                CloseCode::Invalid,
            ),
            (
                [frame(TEXT, b"half", mask), frame(FIN | TEXT, b"new", mask)].concat(),
                CloseCode::Protocol,
            ),
            (frame(FIN | 0x3, b"reserved", mask), CloseCode::Protocol),
            // A compressed length near 2^64 in a continuation must not wrap the running sum.
            (
                [
                    frame(RSV1 | TEXT, &packed, mask),
                    vec![CONTINUATION],
                    endless.to_vec(),
                ]
                .concat(),
                CloseCode::Size,
            ),
        ];
        for (bytes, code) in cases {
            let mut layer = DeflateStream::new(&bytes[..], 1 << 20);
            let mut sink = Vec::new();
            let error = layer.read_to_end(&mut sink).await.expect_err("a violation");
            assert_eq!(Violation::of(&error).map(|v| v.code), Some(code), "{error}");
        }
    }
}
