//! The WebSocket apps through a real socket: `/subscriptions`, `/echo`, `/mirror`.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    BINARY, RawClient, RawTlsClient, TEXT, TestCertificate, TestServer, encode_frame, expect_close,
    next_message, next_text,
};

/// Asserts that `text` comes back exactly ten times, then proves no eleventh copy is on its way:
/// the next reply must be the answer to a probe sent afterwards.
async fn assert_ten_echoes(client: &mut crate::support::Client, text: &str, probe: (&str, &str)) {
    client.send(Message::text(text)).await.expect("send");
    for copy in 1..=10 {
        assert_eq!(next_text(client).await, text, "copy {copy} of {text:?}");
    }
    client.send(Message::text(probe.0)).await.expect("send");
    assert_eq!(
        next_text(client).await,
        probe.1,
        "an 11th copy of {text:?} arrived"
    );
}

#[tokio::test]
async fn subscriptions_greets_and_swaps_foo_and_bar() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect("/subscriptions").await;
    assert_eq!(next_text(&mut client).await, "Greetings!");
    client.send(Message::text("foo")).await.expect("send");
    assert_eq!(next_text(&mut client).await, "bar");
    client.send(Message::text("bar")).await.expect("send");
    assert_eq!(next_text(&mut client).await, "foo");
}

#[tokio::test]
async fn subscriptions_sends_other_text_back_exactly_ten_times() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_subscriptions().await;
    for text in ["hello", "", "héllo wörld ✓ 👋", "FOO", "end "] {
        assert_ten_echoes(&mut client, text, ("foo", "bar")).await;
    }
}

#[tokio::test]
async fn subscriptions_keeps_order_across_pipelined_messages() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_subscriptions().await;
    for text in ["one", "foo", "two"] {
        client.feed(Message::text(text)).await.expect("feed");
    }
    client.flush().await.expect("flush");
    let mut received = Vec::new();
    for _ in 0..21 {
        received.push(next_text(&mut client).await);
    }
    let mut expected = vec!["one"; 10];
    expected.push("bar");
    expected.extend(["two"; 10]);
    assert_eq!(received, expected);
}

#[tokio::test]
async fn subscriptions_end_closes_with_1000_and_logs_it() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_subscriptions().await;
    client.send(Message::text("end")).await.expect("send");
    let (code, _reason) = expect_close(&mut client).await;
    assert_eq!(code, 1000);
    server
        .wait_for_log("server closing the connection code=1000")
        .await;
}

#[tokio::test]
async fn subscriptions_ignores_binary_messages() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_subscriptions().await;
    client
        .send(Message::binary(b"foo".to_vec()))
        .await
        .expect("send");
    client.send(Message::text("foo")).await.expect("send");
    assert_eq!(
        next_text(&mut client).await,
        "bar",
        "the binary message was answered"
    );
}

#[tokio::test]
async fn client_close_is_logged_with_code_and_reason() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_subscriptions().await;
    client
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 4001u16.into(),
            reason: "bye now".into(),
        }))
        .await
        .expect("close");
    let (code, reason) = expect_close(&mut client).await;
    assert_eq!(
        (code, reason.as_str()),
        (4001, "bye now"),
        "the server echoes the close"
    );
    server
        .wait_for_log("client closed the connection code=4001 reason=bye now")
        .await;
}

#[tokio::test]
async fn echo_swaps_upper_case_words_and_repeats_the_rest() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect("/echo").await;
    client.send(Message::text("FOO")).await.expect("send");
    assert_eq!(next_text(&mut client).await, "BAR", "/echo must not greet");
    client.send(Message::text("BAR")).await.expect("send");
    assert_eq!(next_text(&mut client).await, "FOO");
    assert_ten_echoes(&mut client, "foo", ("FOO", "BAR")).await;
    assert_ten_echoes(&mut client, "end", ("FOO", "BAR")).await;
}

#[tokio::test]
async fn mirror_sends_every_text_and_binary_message_back_once() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect("/mirror").await;
    let messages = [
        Message::text("foo"),
        Message::text("end"),
        Message::text(""),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::binary(vec![7u8; 60_000]),
        Message::text("ü".repeat(1000)),
    ];
    for message in messages {
        client.send(message.clone()).await.expect("send");
        assert_eq!(next_message(&mut client).await, message);
    }
    // Still open: `end` means nothing to the mirror.
    client
        .send(Message::text("still here"))
        .await
        .expect("send");
    assert_eq!(next_text(&mut client).await, "still here");
}

/// Three frames for `/mirror`, a large one between two small ones, and the frames that
/// answer them (first byte, payload).
fn early_frames() -> (Vec<u8>, Vec<(u8, Vec<u8>)>) {
    let mask = Some([9, 8, 7, 6]);
    let large = vec![0x5a; 20_000];
    let mut early = encode_frame(0x80 | TEXT, 3, b"foo", mask);
    early.extend(encode_frame(
        0x80 | BINARY,
        large.len() as u64,
        &large,
        mask,
    ));
    early.extend(encode_frame(0x80 | TEXT, 3, b"bar", mask));
    let answers = vec![
        (0x80 | TEXT, b"foo".to_vec()),
        (0x80 | BINARY, large),
        (0x80 | TEXT, b"bar".to_vec()),
    ];
    (early, answers)
}

#[tokio::test]
async fn frames_sent_right_behind_the_handshake_are_answered_in_order() {
    // hyper may read some of these along with the request; the session must get those bytes
    // first, then the rest from the socket.
    let server = TestServer::start(&[]).await;
    let (early, answers) = early_frames();
    let mut client = RawClient::connect_sending(server.addr, "/mirror", &early).await;
    for answer in answers {
        assert_eq!(client.read_frame_with_flags().await, Some(answer));
    }
}

#[tokio::test]
async fn frames_sent_right_behind_the_handshake_over_tls_are_answered_in_order() {
    // The TLS session is taken back from hyper on a path of its own, with what hyper had
    // already decrypted and read past the request.
    let certificate = TestCertificate::new();
    let server = certificate.start_server(&[]).await;
    let (early, answers) = early_frames();
    let (mut client, head) =
        RawTlsClient::handshake(&server, &certificate, "/mirror", "", &early).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for answer in answers {
        assert_eq!(client.read_frame_with_flags().await, Some(answer));
    }
}
