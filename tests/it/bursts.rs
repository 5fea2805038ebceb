//! Bursts: many frames in one write, answered in full and in order, whatever the batch bound;
//! replies written before the socket closes; deadlines that cover every byte the server writes;
//! every ending of a `wss:` session shut down with TLS close_notify.
//!
//! The server answers at most 64 messages per flush (`MAX_MESSAGES_PER_FLUSH`); these tests go
//! far past that bound, and put a broken frame on each side of it. Frames are made by hand
//! (`encode_frame`), compressed with flate2 (miniz_oxide, not the server's zlib-rs), and read
//! back with a parser of this module's own.

use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::{
    CLOSE, PATIENCE, PING, RawClient, TEXT, TestCertificate, TestServer, encode_frame,
};

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const PONG: u8 = 0xA;
const MASK: Option<[u8; 4]> = Some([0x6b, 0x13, 0xe0, 0x2c]);
/// What a browser offers, as in `compression.rs`.
const DEFLATE_OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// One server frame: its first byte (FIN, RSV and opcode) and payload.
type Frame = (u8, Vec<u8>);

/// Reads one unmasked server frame; `Ok(None)` at a clean end of the stream before a frame.
async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Option<Frame>> {
    let first = match stream.read_u8().await {
        Ok(first) => first,
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    };
    let second = stream.read_u8().await?;
    assert_eq!(second & 0x80, 0, "server frames are never masked");
    let length = match second & 0x7f {
        126 => u64::from(stream.read_u16().await?),
        127 => stream.read_u64().await?,
        short => u64::from(short),
    };
    let mut payload = vec![0; usize::try_from(length).expect("a sane length")];
    stream.read_exact(&mut payload).await?;
    Ok(Some((first, payload)))
}

/// The next frame, which must arrive within [`PATIENCE`].
async fn next_frame(stream: &mut (impl AsyncRead + Unpin), waiting_for: &str) -> Frame {
    tokio::time::timeout(PATIENCE, read_frame(stream))
        .await
        .unwrap_or_else(|_| panic!("no frame within {PATIENCE:?} while waiting for {waiting_for}"))
        .unwrap_or_else(|error| panic!("read failed while waiting for {waiting_for}: {error}"))
        .unwrap_or_else(|| panic!("the connection ended while waiting for {waiting_for}"))
}

/// Raw deflate with a sync flush and the `00 00 ff ff` tail removed, as RFC 7692 sends it.
fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    while compress.total_in() < payload.len() as u64 || out.len() == out.capacity() {
        out.reserve(out.capacity() + 64);
        let read = usize::try_from(compress.total_in()).expect("small");
        compress
            .compress_vec(&payload[read..], &mut out, FlushCompress::Sync)
            .expect("compress");
    }
    out.truncate(out.len() - 4);
    out
}

fn inflate(compressed: &[u8]) -> Vec<u8> {
    let mut input = compressed.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut decompress = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 16);
    decompress
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("the server's compressed data inflates");
    out
}

/// How a burst is made.
#[derive(Debug, Clone, Copy)]
struct Burst {
    path: &'static str,
    count: usize,
    /// A ping after every text frame.
    pings: bool,
    /// permessage-deflate negotiated: every other frame is sent compressed, and every third
    /// message is long enough that its replies come back compressed.
    compressed: bool,
}

impl Burst {
    /// The text of message `index`: short, or (every third, when compressed) over the 128
    /// bytes from which the server compresses.
    fn message(&self, index: usize) -> String {
        if self.compressed && index.is_multiple_of(3) {
            format!("{index}:{}", "chat line, chat line, ".repeat(10))
        } else {
            format!("m{index}")
        }
    }

    /// Every frame of the burst, back to back: what the test writes in one call.
    fn bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for index in 0..self.count {
            let text = self.message(index);
            if self.compressed && index % 2 == 0 {
                let packed = deflate(text.as_bytes());
                bytes.extend(encode_frame(
                    FIN | RSV1 | TEXT,
                    packed.len() as u64,
                    &packed,
                    MASK,
                ));
            } else {
                bytes.extend(encode_frame(
                    FIN | TEXT,
                    text.len() as u64,
                    text.as_bytes(),
                    MASK,
                ));
            }
            if self.pings {
                let ping = format!("p{index}");
                bytes.extend(encode_frame(
                    FIN | PING,
                    ping.len() as u64,
                    ping.as_bytes(),
                    MASK,
                ));
            }
        }
        bytes
    }

    /// Copies of each message the app sends back.
    fn copies(&self) -> usize {
        match self.path {
            "/mirror" => 1,
            "/subscriptions" | "/echo" => 10,
            other => panic!("no burst for {other}"),
        }
    }

    /// Opens the connection, writes the burst in one call, and checks that every message is
    /// answered in order (and every ping with its pong, in order).
    async fn check(self, server: &TestServer) {
        let offer = if self.compressed { DEFLATE_OFFER } else { "" };
        let (client, head) = RawClient::handshake(server.addr, self.path, offer, &[]).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert_eq!(
            head.contains("permessage-deflate"),
            self.compressed,
            "{self:?}: {head}"
        );
        let mut stream = BufReader::new(client.stream);
        stream
            .get_mut()
            .write_all(&self.bytes())
            .await
            .expect("the burst is written");
        let mut expected = Vec::new();
        if self.path == "/subscriptions" {
            expected.push("Greetings!".to_owned());
        }
        for index in 0..self.count {
            expected.extend(std::iter::repeat_n(self.message(index), self.copies()));
        }
        let expected_pongs: Vec<String> = if self.pings {
            (0..self.count).map(|index| format!("p{index}")).collect()
        } else {
            Vec::new()
        };
        let (mut texts, mut pongs) = (Vec::new(), Vec::new());
        while texts.len() < expected.len() || pongs.len() < expected_pongs.len() {
            let waiting_for = format!(
                "{self:?}: reply {} of {} and pong {} of {}",
                texts.len() + 1,
                expected.len(),
                pongs.len() + 1,
                expected_pongs.len()
            );
            let (first, payload) = next_frame(&mut stream, &waiting_for).await;
            let payload = if first & RSV1 != 0 {
                assert!(self.compressed, "{waiting_for}: RSV1 without the extension");
                inflate(&payload)
            } else {
                payload
            };
            let payload = String::from_utf8(payload).expect("UTF-8 from the server");
            match first & 0x0f {
                TEXT => texts.push(payload),
                PONG => pongs.push(payload),
                // The server's own keep-alive ping: not an answer.
                PING => {}
                opcode => panic!("{waiting_for}: unexpected opcode {opcode}: {payload:?}"),
            }
        }
        if let Some(at) = (0..expected.len()).find(|&at| texts[at] != expected[at]) {
            panic!(
                "{self:?}: reply {at} is {:?}, expected {:?}",
                texts[at], expected[at]
            );
        }
        assert_eq!(pongs, expected_pongs, "{self:?}: pongs");
    }
}

#[tokio::test]
async fn bursts_of_200_and_1000_frames_in_one_write_are_answered_in_full_and_in_order() {
    let server = TestServer::start(&[]).await;
    for path in ["/mirror", "/subscriptions"] {
        for count in [200, 1000] {
            Burst {
                path,
                count,
                pings: false,
                compressed: false,
            }
            .check(&server)
            .await;
        }
    }
}

#[tokio::test]
async fn every_ping_in_a_burst_gets_its_pong_and_every_message_its_replies() {
    let server = TestServer::start(&[]).await;
    for path in ["/mirror", "/subscriptions"] {
        for count in [200, 1000] {
            Burst {
                path,
                count,
                pings: true,
                compressed: false,
            }
            .check(&server)
            .await;
        }
    }
}

#[tokio::test]
async fn compressed_bursts_are_answered_in_full_and_in_order() {
    let server = TestServer::start(&["--compression"]).await;
    for path in ["/mirror", "/subscriptions"] {
        for count in [200, 1000] {
            for pings in [false, true] {
                Burst {
                    path,
                    count,
                    pings,
                    compressed: true,
                }
                .check(&server)
                .await;
            }
        }
    }
}

/// A frame the server must refuse, and the close code it must refuse it with.
#[derive(Debug, Clone, Copy)]
enum Invalid {
    /// A text frame that is not UTF-8: 1007.
    Utf8,
    /// A frame over `--max-message-size` (1024 here): 1009.
    TooLarge,
    /// Opcode 3 is reserved: 1002.
    ReservedOpcode,
}

impl Invalid {
    const MAX_MESSAGE_SIZE: &str = "1024";

    fn frame(self) -> Vec<u8> {
        match self {
            Invalid::Utf8 => encode_frame(FIN | TEXT, 4, b"ok\xff\xfe", MASK),
            Invalid::TooLarge => encode_frame(FIN | TEXT, 2000, &[b'x'; 2000], MASK),
            Invalid::ReservedOpcode => encode_frame(FIN | 0x3, 2, b"??", MASK),
        }
    }

    fn close_code(self) -> u16 {
        match self {
            Invalid::Utf8 => 1007,
            Invalid::TooLarge => 1009,
            Invalid::ReservedOpcode => 1002,
        }
    }
}

#[tokio::test]
async fn a_broken_frame_anywhere_in_a_burst_closes_with_its_code_after_every_earlier_reply() {
    let server = TestServer::start(&["--max-message-size", Invalid::MAX_MESSAGE_SIZE]).await;
    for invalid in [Invalid::Utf8, Invalid::TooLarge, Invalid::ReservedOpcode] {
        // Positions count from 1: the broken frame is the 1st, the 64th (the last of the
        // first batch), the 65th (the first past it), ... of the burst.
        for position in [1, 63, 64, 65, 66, 200] {
            let case = format!("{invalid:?} at position {position}");
            let client = RawClient::connect(server.addr, "/mirror").await;
            let mut stream = BufReader::new(client.stream);
            let mut burst = Vec::new();
            for index in 1..position {
                let text = format!("m{index}");
                burst.extend(encode_frame(
                    FIN | TEXT,
                    text.len() as u64,
                    text.as_bytes(),
                    MASK,
                ));
            }
            burst.extend(invalid.frame());
            // Frames after the broken one are never answered: the stream cannot be trusted.
            for _ in 0..5 {
                burst.extend(encode_frame(FIN | TEXT, 5, b"after", MASK));
            }
            stream.get_mut().write_all(&burst).await.expect("write");
            for index in 1..position {
                let waiting_for = format!("{case}: reply {index}");
                let (first, payload) = next_frame(&mut stream, &waiting_for).await;
                assert_eq!(
                    (first, String::from_utf8_lossy(&payload).into_owned()),
                    (FIN | TEXT, format!("m{index}")),
                    "{waiting_for}"
                );
            }
            let (first, payload) = next_frame(&mut stream, &format!("{case}: the close")).await;
            assert_eq!(first, FIN | CLOSE, "{case}: {payload:?}");
            assert!(payload.len() >= 2, "{case}: a close without a code");
            assert_eq!(
                u16::from_be_bytes([payload[0], payload[1]]),
                invalid.close_code(),
                "{case}: {}",
                String::from_utf8_lossy(&payload[2..])
            );
        }
    }
}

#[tokio::test]
async fn replies_to_a_client_that_half_closes_all_arrive_before_the_socket_closes() {
    let server = TestServer::start(&[]).await;
    // One connection lost its replies 47 times in 50: thirty make a 1-in-10 loss all but
    // certain to show.
    for connection in 0..30 {
        // The handshake, `hello` and the FIN all go out before the server has answered, so
        // the session finds the end of the stream right behind the message.
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        let mut request = handshake_request(server.addr, "/echo").into_bytes();
        request.extend(encode_frame(FIN | TEXT, 5, b"hello", MASK));
        tcp.write_all(&request).await.expect("write");
        tcp.shutdown().await.expect("shutdown(Write)");
        let mut stream = BufReader::new(tcp);
        read_response_head(&mut stream).await;
        for copy in 1..=10 {
            let waiting_for = format!("connection {connection}: copy {copy}");
            let (first, payload) = next_frame(&mut stream, &waiting_for).await;
            assert_eq!(
                (first, payload.as_slice()),
                (FIN | TEXT, &b"hello"[..]),
                "{waiting_for}"
            );
        }
        // Then the server closes its side too.
        let end = tokio::time::timeout(PATIENCE, read_frame(&mut stream))
            .await
            .expect("the server closes after the replies");
        assert!(
            matches!(end, Ok(None)),
            "connection {connection}: after the replies: {end:?}"
        );
    }
}

#[tokio::test]
async fn a_client_that_floods_pings_and_never_reads_is_closed_by_the_server() {
    let server = TestServer::start(&["--send-timeout", "1"]).await;
    let mut client = RawClient::connect(server.addr, "/echo").await;
    // Each ping makes the server queue a pong of the same size, which this client never reads.
    let ping = encode_frame(FIN | PING, 125, &[b'p'; 125], MASK);
    let batch = ping.repeat(512);
    let started = Instant::now();
    // Generous: the server should give up after about a second (its send timeout), and a
    // loaded machine may take several; a server that never gives up keeps the write going
    // until the bound, or blocks it.
    let bound = Duration::from_secs(60);
    let ended = loop {
        match tokio::time::timeout(PATIENCE, client.stream.write_all(&batch)).await {
            Ok(Ok(())) if started.elapsed() < bound => continue,
            Ok(Ok(())) => break "still taking pings",
            Ok(Err(_)) => break "reset",
            Err(_) => break "stopped reading without closing",
        }
    };
    assert_eq!(ended, "reset", "after {:?}", started.elapsed());
    server
        .wait_for_log("client does not read its replies")
        .await;
}

#[tokio::test]
async fn a_client_that_pings_slowly_and_never_reads_is_closed_at_the_next_ping() {
    // One small ping every 10 ms never fills the server's socket (the client's kernel takes
    // megabytes of pongs), so no write of the server's ever waits: only the server's own
    // ping, which such a client cannot answer, shows that it does not read.
    let server = TestServer::start(&["--ping-interval", "1"]).await;
    let mut client = RawClient::connect(server.addr, "/echo").await;
    let ping = encode_frame(FIN | PING, 4, b"ping", MASK);
    let flood = async {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if client.stream.write_all(&ping).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        () = flood => {}
        () = server.wait_for_log("no pong received") => {}
    }
    server.wait_for_log("no pong received").await;
}

/// A TLS connection to `server` that has completed the WebSocket handshake on `path`.
async fn wss_connect(
    server: &TestServer,
    certificate: &TestCertificate,
    path: &str,
) -> BufReader<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a name");
    let mut tls = tokio::time::timeout(PATIENCE, certificate.connector().connect(name, tcp))
        .await
        .expect("the TLS handshake completes promptly")
        .expect("the TLS handshake succeeds");
    let request = handshake_request(server.addr, path);
    tls.write_all(request.as_bytes())
        .await
        .expect("send handshake");
    let mut stream = BufReader::new(tls);
    read_response_head(&mut stream).await;
    stream
}

/// A WebSocket opening handshake for `path`.
fn handshake_request(addr: std::net::SocketAddr, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Reads the response head, which must be a `101`.
async fn read_response_head(stream: &mut (impl AsyncRead + Unpin)) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(PATIENCE, stream.read_u8())
            .await
            .expect("handshake answered promptly")
            .expect("handshake response");
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

/// Reads to the end of a TLS stream; `Ok(())` only for a clean end (the server's close_notify):
/// tokio-rustls reports a TCP close without it as `UnexpectedEof`.
async fn read_to_tls_end(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<()> {
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the server ends the connection promptly")?;
    assert!(rest.is_empty(), "bytes after the close: {rest:?}");
    Ok(())
}

#[tokio::test]
async fn a_wss_session_closed_by_the_server_ends_with_tls_close_notify() {
    let certificate = TestCertificate::new();
    let server = certificate.start_server(&[]).await;
    let mut stream = wss_connect(&server, &certificate, "/subscriptions").await;
    let (_, greeting) = next_frame(&mut stream, "the greeting").await;
    assert_eq!(greeting, b"Greetings!");
    stream
        .get_mut()
        .write_all(&encode_frame(FIN | TEXT, 3, b"end", MASK))
        .await
        .expect("send end");
    let (first, payload) = next_frame(&mut stream, "the server's close").await;
    assert_eq!(
        (first, &payload[..2]),
        (FIN | CLOSE, &1000u16.to_be_bytes()[..])
    );
    stream
        .get_mut()
        .write_all(&encode_frame(FIN | CLOSE, 2, &1000u16.to_be_bytes(), MASK))
        .await
        .expect("answer the close");
    let end = read_to_tls_end(&mut stream).await;
    assert!(end.is_ok(), "no close_notify: {end:?}");
}

#[tokio::test]
async fn a_wss_session_closed_by_the_client_ends_with_tls_close_notify() {
    let certificate = TestCertificate::new();
    let server = certificate.start_server(&[]).await;
    let mut stream = wss_connect(&server, &certificate, "/echo").await;
    stream
        .get_mut()
        .write_all(&encode_frame(FIN | TEXT, 3, b"FOO", MASK))
        .await
        .expect("send");
    assert_eq!(
        next_frame(&mut stream, "the reply").await,
        (FIN | TEXT, b"BAR".to_vec())
    );
    stream
        .get_mut()
        .write_all(&encode_frame(FIN | CLOSE, 2, &1000u16.to_be_bytes(), MASK))
        .await
        .expect("send the close");
    let (first, payload) = next_frame(&mut stream, "the close reply").await;
    assert_eq!(
        (first, payload),
        (FIN | CLOSE, 1000u16.to_be_bytes().to_vec())
    );
    let end = read_to_tls_end(&mut stream).await;
    assert!(end.is_ok(), "no close_notify: {end:?}");
}

#[tokio::test]
async fn bursts_over_tls_are_answered_in_full_too() {
    // The TLS stream goes under the same generic session code as TCP: a burst past the batch
    // bound, over it, proves the session runs on the stream the connection code handed it.
    let certificate = TestCertificate::new();
    let server = certificate.start_server(&[]).await;
    let mut stream = wss_connect(&server, &certificate, "/mirror").await;
    let burst = Burst {
        path: "/mirror",
        count: 300,
        pings: false,
        compressed: false,
    };
    stream
        .get_mut()
        .write_all(&burst.bytes())
        .await
        .expect("write");
    for index in 0..burst.count {
        let waiting_for = format!("reply {index} over TLS");
        let (_, payload) = next_frame(&mut stream, &waiting_for).await;
        assert_eq!(
            String::from_utf8_lossy(&payload),
            burst.message(index),
            "{waiting_for}"
        );
    }
}
