//! permessage-deflate (`--compression`), through raw sockets: the negotiation as the `101`
//! says it, compressed frames made here with flate2 (miniz_oxide, another implementation than
//! the server's zlib-rs), and every way a compressed message can be wrong.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use crate::support::{
    BINARY, CLOSE, CONTINUATION, PING, RawClient, RawTlsClient, TEXT, TestCertificate, TestServer,
    encode_frame,
};

/// What a browser offers.
const BROWSER_OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
/// What the server agrees to.
const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const RSV1: u8 = 0x40;
const FIN: u8 = 0x80;
const MASK: Option<[u8; 4]> = Some([0x5a, 0x01, 0xc3, 0x7e]);

/// Raw deflate with a sync flush and the `00 00 ff ff` tail removed, as RFC 7692 sends it.
fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    while compress.total_in() < payload.len() as u64 || out.len() == out.capacity() {
        out.reserve(out.capacity() + 64);
        let read = compress.total_in() as usize;
        compress
            .compress_vec(&payload[read..], &mut out, FlushCompress::Sync)
            .expect("compress");
    }
    assert!(
        out.ends_with(&[0, 0, 0xff, 0xff]),
        "a sync flush ends with its tail"
    );
    out.truncate(out.len() - 4);
    out
}

fn inflate(compressed: &[u8]) -> Vec<u8> {
    let mut input = compressed.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut decompress = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    decompress
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("the server's compressed data inflates");
    out
}

fn header_line<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

async fn compressed_client(server: &TestServer, path: &str) -> RawClient {
    let (client, head) = RawClient::handshake(server.addr, path, BROWSER_OFFER, &[]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header_line(&head, "sec-websocket-extensions"),
        Some(AGREED),
        "{head}"
    );
    client
}

/// A text of `len` bytes that compresses well, like chat or JSON does.
fn chatty_text(len: usize) -> String {
    let mut text = String::new();
    let mut n = 0;
    while text.len() < len {
        text.push_str(&format!(
            "{{\"user\":\"user{}\",\"text\":\"message number {n}\"}}",
            n % 7
        ));
        n += 1;
    }
    text.truncate(len);
    text
}

#[tokio::test]
async fn without_the_flag_an_offer_gets_no_extension_and_rsv1_is_refused() {
    let server = TestServer::start(&[]).await;
    let (mut client, head) = RawClient::handshake(server.addr, "/mirror", BROWSER_OFFER, &[]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header_line(&head, "sec-websocket-extensions"),
        None,
        "{head}"
    );
    client
        .send_raw(FIN | RSV1 | TEXT, &deflate(b"hello"), MASK)
        .await;
    assert_eq!(client.read_close_code().await, 1002);
}

#[tokio::test]
async fn a_browser_offer_is_agreed_and_the_conversation_works_compressed() {
    let server = TestServer::start(&["--compression"]).await;
    let mut client = compressed_client(&server, "/subscriptions").await;
    // Small messages go out as they are: RSV1 is per message.
    let (first, greeting) = client.read_frame_with_flags().await.expect("greeting");
    assert_eq!(
        (first, greeting.as_slice()),
        (FIN | TEXT, &b"Greetings!"[..])
    );
    client
        .send_raw(FIN | RSV1 | TEXT, &deflate(b"foo"), MASK)
        .await;
    let (first, reply) = client.read_frame_with_flags().await.expect("reply");
    assert_eq!((first, reply.as_slice()), (FIN | TEXT, &b"bar"[..]));
    // A client may send any message uncompressed, too.
    client.send(TEXT, b"bar").await;
    assert_eq!(client.read_frame().await, Some((TEXT, b"foo".to_vec())));
    // A long message comes back ten times, each compressed, each whole.
    let long = chatty_text(4000);
    let packed = deflate(long.as_bytes());
    assert!(packed.len() < long.len() / 4, "{}", packed.len());
    client.send_raw(FIN | RSV1 | TEXT, &packed, MASK).await;
    for copy in 0..10 {
        let (first, payload) = client.read_frame_with_flags().await.expect("copy");
        assert_eq!(first, FIN | RSV1 | TEXT, "copy {copy} is compressed");
        assert!(payload.len() < long.len() / 4, "{}", payload.len());
        assert_eq!(inflate(&payload), long.as_bytes(), "copy {copy}");
    }
    client
        .send_raw(FIN | RSV1 | TEXT, &deflate(b"end"), MASK)
        .await;
    assert_eq!(client.read_close_code().await, 1000);
}

#[tokio::test]
async fn compressed_frames_right_behind_the_handshake_are_answered_in_order() {
    // The layer sits on top of what hyper read past the request: those bytes come first.
    let server = TestServer::start(&["--compression"]).await;
    let text = chatty_text(20_000);
    let packed = deflate(text.as_bytes());
    let mut early = Vec::new();
    for (first, payload) in [
        (FIN | RSV1 | TEXT, deflate(b"foo")),
        (FIN | RSV1 | TEXT, packed),
        (FIN | TEXT, b"bar".to_vec()),
    ] {
        early.extend(encode_frame(first, payload.len() as u64, &payload, MASK));
    }
    let (mut client, head) =
        RawClient::handshake(server.addr, "/mirror", BROWSER_OFFER, &early).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        client.read_frame_with_flags().await,
        Some((FIN | TEXT, b"foo".to_vec()))
    );
    let (first, echoed) = client.read_frame_with_flags().await.expect("echo");
    assert_eq!(first, FIN | RSV1 | TEXT);
    assert!(inflate(&echoed) == text.as_bytes(), "the echo differs");
    assert_eq!(
        client.read_frame_with_flags().await,
        Some((FIN | TEXT, b"bar".to_vec()))
    );
}

#[tokio::test]
async fn a_fragmented_compressed_message_with_a_ping_between_is_answered() {
    let server = TestServer::start(&["--compression"]).await;
    let mut client = compressed_client(&server, "/mirror").await;
    let text = chatty_text(50_000);
    let packed = deflate(text.as_bytes());
    let (one, rest) = packed.split_at(packed.len() / 3);
    let (two, three) = rest.split_at(rest.len() / 2);
    client.send_raw(RSV1 | TEXT, one, MASK).await;
    client.send_raw(FIN | PING, b"between", MASK).await;
    client.send_raw(CONTINUATION, two, MASK).await;
    client.send_raw(FIN | CONTINUATION, three, MASK).await;
    let (first, pong) = client.read_frame_with_flags().await.expect("pong");
    assert_eq!((first, pong.as_slice()), (FIN | 0xA, &b"between"[..]));
    let (first, echoed) = client.read_frame_with_flags().await.expect("echo");
    assert_eq!(first, FIN | RSV1 | TEXT);
    assert_eq!(inflate(&echoed), text.as_bytes());
}

#[tokio::test]
async fn a_window_the_client_asks_for_is_kept_and_an_offer_the_server_cannot_honour_is_declined() {
    let server = TestServer::start(&["--compression"]).await;
    // The second half repeats the first 2,000 bytes: out of reach of a 10-bit (1 KiB) window,
    // so it costs as much as the first half; within the default window, one back-reference.
    let half = letters(2_000);
    let text = format!("{half}{half}");
    let mut sizes = Vec::new();
    for (offer, agreed) in [
        (
            "permessage-deflate; server_max_window_bits=10",
            format!("{AGREED}; server_max_window_bits=10"),
        ),
        ("permessage-deflate", AGREED.to_owned()),
    ] {
        let offer = format!("Sec-WebSocket-Extensions: {offer}\r\n");
        let (mut client, head) = RawClient::handshake(server.addr, "/mirror", &offer, &[]).await;
        assert_eq!(
            header_line(&head, "sec-websocket-extensions"),
            Some(agreed.as_str()),
            "{head}"
        );
        client.send(TEXT, text.as_bytes()).await;
        let (first, echoed) = client.read_frame_with_flags().await.expect("echo");
        assert_eq!(first, FIN | RSV1 | TEXT);
        assert!(inflate(&echoed) == text.as_bytes(), "the echo differs");
        sizes.push(echoed.len());
    }
    let (ten_bits, default) = (sizes[0], sizes[1]);
    eprintln!("window: {ten_bits} bytes with 10 bits, {default} with the default");
    assert!(
        ten_bits > default * 3 / 2,
        "{ten_bits} bytes with a 10-bit window, {default} with the default one"
    );

    // zlib cannot keep to 8 bits: agreed, and every message goes out as it is.
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n";
    let (mut client, head) = RawClient::handshake(server.addr, "/mirror", offer, &[]).await;
    assert_eq!(
        header_line(&head, "sec-websocket-extensions"),
        Some(&*format!("{AGREED}; server_max_window_bits=8")),
    );
    let text = chatty_text(3000);
    client.send(TEXT, text.as_bytes()).await;
    assert_eq!(
        client.read_frame_with_flags().await,
        Some((FIN | TEXT, text.clone().into_bytes()))
    );

    // Declined, not half-accepted: the session goes on without the extension.
    let offer =
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7, x-other\r\n";
    let (mut client, head) = RawClient::handshake(server.addr, "/mirror", offer, &[]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header_line(&head, "sec-websocket-extensions"),
        None,
        "{head}"
    );
    client.send(TEXT, text.as_bytes()).await;
    assert_eq!(
        client.read_frame_with_flags().await,
        Some((FIN | TEXT, text.into_bytes()))
    );
}

/// `count` pieces of 1 MiB of zeros, each compressed on its own and sync-flushed, as one valid
/// compressed message: about 1 KiB on the wire per MiB inflated.
fn zeros_bomb(count: usize) -> Vec<u8> {
    // Each piece keeps its sync flush's tail but the last, as one stream would.
    let piece = deflate(&vec![0u8; 1 << 20]);
    let mut bomb = Vec::new();
    for _ in 1..count {
        bomb.extend_from_slice(&piece);
        bomb.extend_from_slice(&[0, 0, 0xff, 0xff]);
    }
    bomb.extend_from_slice(&piece);
    bomb
}

/// Bytes that do not compress (a xorshift sequence).
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

/// A message's payload as sent: inflated when the frame says it is compressed.
fn message_payload(first: u8, payload: &[u8]) -> Vec<u8> {
    if first & RSV1 != 0 {
        inflate(payload)
    } else {
        payload.to_vec()
    }
}

#[tokio::test]
async fn a_compressed_frame_longer_than_the_limit_is_refused_from_its_header_alone() {
    use tokio::io::AsyncWriteExt;
    // The default limit, 64 KiB.
    let server = TestServer::start(&["--compression"]).await;
    // Near the limit and incompressible: compressed, it is a little longer than itself, and
    // that is fine.
    let mut client = compressed_client(&server, "/mirror").await;
    let noise = incompressible(65_000);
    let packed = deflate(&noise);
    assert!(
        packed.len() > noise.len() && packed.len() < 65_536,
        "{}",
        packed.len()
    );
    client.send_raw(FIN | RSV1 | BINARY, &packed, MASK).await;
    let (first, echoed) = client.read_frame_with_flags().await.expect("echo");
    assert_eq!(first & 0x0f, BINARY);
    assert!(message_payload(first, &echoed) == noise, "the echo differs");

    // A header that claims 100 KiB of compressed data, with none of it sent: no inflating can
    // happen, so the close can only come from the length the header claims.
    let mut client = compressed_client(&server, "/mirror").await;
    let header = encode_frame(FIN | RSV1 | BINARY, 100 * 1024, &[], MASK);
    client.stream.write_all(&header).await.expect("send header");
    assert_eq!(client.read_close_code().await, 1009);
}

#[tokio::test]
async fn a_small_frame_that_inflates_past_the_limit_closes_with_1009_while_inflating() {
    use tokio::io::AsyncWriteExt;
    // The default limit, 64 KiB; 60 MiB once inflated, under 64 KiB compressed.
    let server = TestServer::start(&["--compression"]).await;
    let bomb = zeros_bomb(60);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let frame = encode_frame(FIN | RSV1 | BINARY, bomb.len() as u64, &bomb, MASK);

    // Only the first tenth of the frame goes out, and the rest never does: that much already
    // inflates to several MiB, so the close has to come while inflating, not once the frame
    // is complete.
    let mut client = compressed_client(&server, "/mirror").await;
    client
        .stream
        .write_all(&frame[..frame.len() / 10])
        .await
        .expect("send part of the frame");
    assert_eq!(client.read_close_code().await, 1009);

    // The whole frame: refused just the same, and the server never held the 60 MiB. The peak
    // is what counts: a large buffer goes back to the kernel as soon as it is freed.
    let peak_before = server.peak_rss_kib();
    let mut client = compressed_client(&server, "/mirror").await;
    client.stream.write_all(&frame).await.expect("send frame");
    assert_eq!(client.read_close_code().await, 1009);
    let grown = server.peak_rss_kib().saturating_sub(peak_before);
    eprintln!("60 MiB bomb under a 64 KiB limit: peak RSS grew by {grown} KiB");
    assert!(grown < 8 * 1024, "the server's peak grew by {grown} KiB");

    // 100 MB through a limit of 16 MiB (100 KiB compressed, well under it): refused at the
    // limit, holding about the limit, not 100 MB.
    let server = TestServer::start(&["--compression", "--max-message-size", "16777216"]).await;
    let bomb = zeros_bomb(100);
    let peak_before = server.peak_rss_kib();
    let mut client = compressed_client(&server, "/mirror").await;
    client.send_raw(FIN | RSV1 | BINARY, &bomb, MASK).await;
    assert_eq!(client.read_close_code().await, 1009);
    let grown = server.peak_rss_kib().saturating_sub(peak_before);
    eprintln!("100 MiB bomb under a 16 MiB limit: peak RSS grew by {grown} KiB");
    assert!(grown < 40 * 1024, "the server's peak grew by {grown} KiB");
}

#[tokio::test]
async fn broken_compressed_messages_get_their_close_codes() {
    let server = TestServer::start(&["--compression"]).await;
    // Not deflate at all (BTYPE 11 is reserved).
    let mut client = compressed_client(&server, "/mirror").await;
    client
        .send_raw(FIN | RSV1 | TEXT, &[0xff, 0xff, 0xff, 0xff], MASK)
        .await;
    assert_eq!(client.read_close_code().await, 1007);
    // Inflates fine, but not to UTF-8.
    let mut client = compressed_client(&server, "/mirror").await;
    client
        .send_raw(FIN | RSV1 | TEXT, &deflate(b"ok \xff\xfe no"), MASK)
        .await;
    assert_eq!(client.read_close_code().await, 1007);
    // RSV1 belongs on a message's first frame only.
    let mut client = compressed_client(&server, "/mirror").await;
    client.send_raw(RSV1 | TEXT, &deflate(b"one"), MASK).await;
    client
        .send_raw(FIN | RSV1 | CONTINUATION, &deflate(b"two"), MASK)
        .await;
    assert_eq!(client.read_close_code().await, 1002);
    // ... and never on a control frame.
    let mut client = compressed_client(&server, "/mirror").await;
    client.send_raw(FIN | RSV1 | PING, b"", MASK).await;
    assert_eq!(client.read_close_code().await, 1002);
    // The layer hands tungstenite unmasked frames, so it checks the mask itself.
    let mut client = compressed_client(&server, "/mirror").await;
    client.send_raw(FIN | TEXT, b"unmasked", None).await;
    assert_eq!(client.read_close_code().await, 1002);
    // A new message in the middle of a compressed one.
    let mut client = compressed_client(&server, "/mirror").await;
    client.send_raw(RSV1 | TEXT, &deflate(b"half"), MASK).await;
    client.send_raw(FIN | TEXT, b"another", MASK).await;
    assert_eq!(client.read_close_code().await, 1002);
    // The server goes on serving.
    let mut client = compressed_client(&server, "/mirror").await;
    client
        .send_raw(FIN | RSV1 | TEXT, &deflate(b"still here"), MASK)
        .await;
    assert_eq!(
        client.read_frame().await,
        Some((TEXT, b"still here".to_vec()))
    );
}

#[tokio::test]
async fn a_close_from_the_client_is_answered_before_the_connection_ends() {
    // The compression layer gathers what tungstenite writes; tungstenite never flushes its
    // reply to a close, so this is the case that would lose it.
    let server = TestServer::start(&["--compression"]).await;
    let mut client = compressed_client(&server, "/mirror").await;
    client
        .send_raw(FIN | RSV1 | TEXT, &deflate(b"hello"), MASK)
        .await;
    assert_eq!(client.read_frame().await, Some((TEXT, b"hello".to_vec())));
    client
        .send_raw(FIN | CLOSE, &1000u16.to_be_bytes(), MASK)
        .await;
    assert_eq!(client.read_close_code().await, 1000);
    assert_eq!(client.read_to_end().await, 0, "nothing after the close");
}

#[tokio::test]
async fn compressed_sessions_are_counted() {
    let server = TestServer::start(&["--compression", "--metrics-addr", "127.0.0.1:0"]).await;
    let _compressed = compressed_client(&server, "/mirror").await;
    let _plain = RawClient::connect(server.addr, "/mirror").await;
    let text = crate::deployment::scrape(&server).await;
    for line in [
        "chat_websocket_sessions_opened_total{app=\"/mirror\"} 2",
        "chat_websocket_sessions_compressed_total{app=\"/mirror\"} 1",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}

/// Text that compresses only so far (letters in a xorshift order): its compressed form is
/// longer than one TLS record (16 KiB) when the text is 40 KiB.
fn letters(len: usize) -> String {
    incompressible(len)
        .into_iter()
        .map(|byte| char::from(b'a' + byte % 26))
        .collect()
}

#[tokio::test]
async fn compression_works_over_tls_both_ways_at_every_size() {
    let certificate = TestCertificate::new();
    let server = certificate.start_server(&["--compression"]).await;
    let texts = [
        "FOO".to_owned(),
        chatty_text(100),
        chatty_text(300),
        chatty_text(5_000),
        // Inflated in pieces of 16 KiB, compressed in one TLS record.
        chatty_text(40_000),
        // Compressed, still longer than a TLS record both ways.
        letters(40_000),
    ];
    for (path, copies) in [("/echo", 10), ("/mirror", 1)] {
        let (mut client, head) =
            RawTlsClient::handshake(&server, &certificate, path, BROWSER_OFFER, &[]).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert_eq!(
            header_line(&head, "sec-websocket-extensions"),
            Some(AGREED),
            "{head}"
        );
        for text in &texts {
            for compressed in [true, false] {
                if compressed {
                    let packed = deflate(text.as_bytes());
                    client.send_raw(FIN | RSV1 | TEXT, &packed, MASK).await;
                } else {
                    client.send_raw(FIN | TEXT, text.as_bytes(), MASK).await;
                }
                let (expected, copies) = match (path, text.as_str()) {
                    ("/echo", "FOO") => ("BAR", 1),
                    _ => (text.as_str(), copies),
                };
                let case = format!("{path}, {} bytes, compressed: {compressed}", text.len());
                for copy in 1..=copies {
                    let (first, payload) = client
                        .read_frame_with_flags()
                        .await
                        .unwrap_or_else(|| panic!("{case}: copy {copy} never came"));
                    // Short replies go out as they are; everything else compressed.
                    let rsv1 = if expected.len() < 128 { 0 } else { RSV1 };
                    assert_eq!(first, FIN | rsv1 | TEXT, "{case}: copy {copy}");
                    assert!(
                        message_payload(first, &payload) == expected.as_bytes(),
                        "{case}: copy {copy} differs"
                    );
                    if rsv1 != 0 {
                        assert!(payload.len() < expected.len(), "{case}: not smaller");
                    }
                }
            }
        }
        // And the connection is still a healthy one: a close is answered with a close.
        client
            .send_raw(FIN | CLOSE, &1000u16.to_be_bytes(), MASK)
            .await;
        let (first, payload) = client.read_frame_with_flags().await.expect("close reply");
        assert_eq!(
            (first, payload.get(..2)),
            (FIN | CLOSE, Some(&[0x03, 0xe8][..]))
        );
    }
}

/// A rooms client's next data frame: `(compressed, JSON)`, pings skipped.
async fn next_room_frame(client: &mut RawClient) -> (bool, serde_json::Value) {
    loop {
        let (first, payload) = client.read_frame_with_flags().await.expect("a frame");
        if first & 0x0f == PING {
            continue;
        }
        assert_eq!(first & 0x0f, TEXT, "rooms frames are text");
        assert_ne!(first & FIN, 0, "whole messages");
        let json = serde_json::from_slice(&message_payload(first, &payload)).expect("JSON");
        return (first & RSV1 != 0, json);
    }
}

/// A rooms client joined to `room`, compressed or not; returns it and the `joined` frame.
async fn room_member(
    server: &TestServer,
    name: &str,
    offer: &str,
    join: serde_json::Value,
) -> (RawClient, serde_json::Value) {
    let path = format!("/rooms?name={name}");
    let (mut client, head) = RawClient::handshake(server.addr, &path, offer, &[]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let agreed = header_line(&head, "sec-websocket-extensions");
    assert_eq!(agreed.is_some(), !offer.is_empty(), "{head}");
    client.send(TEXT, join.to_string().as_bytes()).await;
    let (_, joined) = next_room_frame(&mut client).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    (client, joined)
}

#[tokio::test]
async fn a_room_message_reaches_compressed_and_plain_members_each_as_they_agreed() {
    let server = TestServer::start(&["--compression"]).await;
    let join = serde_json::json!({"type": "join", "room": "lobby"});
    let mut compressed = Vec::new();
    for n in 0..3 {
        let (client, _) = room_member(&server, &format!("c{n}"), BROWSER_OFFER, join.clone()).await;
        compressed.push(client);
    }
    // A client whose window zlib cannot keep to gets everything plain, like one that offered
    // nothing.
    let eight_bits = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n";
    let (mut narrow, _) = room_member(&server, "narrow", eight_bits, join.clone()).await;
    let (mut plain, joined) = room_member(&server, "plain", "", join.clone()).await;
    let text = chatty_text(1024);
    let publish = serde_json::json!({"type": "publish", "room": "lobby", "id": "m1", "text": text});
    plain.send(TEXT, publish.to_string().as_bytes()).await;
    let expected = |json: &serde_json::Value| {
        assert_eq!(json["type"], "message", "{json}");
        assert_eq!(json["from"], "plain");
        assert_eq!(json["id"], "m1");
        assert_eq!(json["text"], text.as_str());
        assert_eq!(json["offset"], 1);
    };
    for client in &mut compressed {
        let (was_compressed, json) = next_room_frame(client).await;
        assert!(was_compressed, "a compressed member gets it compressed");
        expected(&json);
    }
    for client in [&mut narrow, &mut plain] {
        let (was_compressed, json) = next_room_frame(client).await;
        assert!(!was_compressed, "{json}");
        expected(&json);
    }
    let (_, ack) = next_room_frame(&mut plain).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    // A compressed member coming back gets the replay from history compressed too.
    let since = serde_json::json!({"epoch": joined["epoch"], "offset": 0});
    let rejoin = serde_json::json!({"type": "join", "room": "lobby", "since": since});
    let (mut late, joined) = room_member(&server, "late", BROWSER_OFFER, rejoin).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    let (was_compressed, json) = next_room_frame(&mut late).await;
    assert!(was_compressed, "the replay is compressed");
    expected(&json);
}

#[tokio::test]
async fn a_reply_of_ten_copies_arrives_as_ten_compressed_frames_of_the_same_bytes() {
    let server = TestServer::start(&["--compression"]).await;
    let mut client = compressed_client(&server, "/echo").await;
    let long = chatty_text(2000);
    client.send(TEXT, long.as_bytes()).await;
    let mut copies = Vec::new();
    while copies.len() < 10 {
        let (first, payload) = client.read_frame_with_flags().await.expect("a copy");
        if first & 0x0f == PING {
            continue;
        }
        assert_eq!(
            first,
            FIN | RSV1 | TEXT,
            "copy {} is compressed",
            copies.len()
        );
        assert_eq!(inflate(&payload), long.as_bytes());
        copies.push(payload);
    }
    assert!(copies.iter().all(|copy| copy == &copies[0]));
}
