//! Display names and message ids against the real binary: format and separator characters
//! (bidi overrides and isolates, zero-width characters, line separators) are refused in a name
//! at the handshake exactly as control characters are, and in a message id as a bad request;
//! a text may hold every one of them and reaches the others byte for byte (the clients show
//! them inert).

use futures_util::SinkExt;
use room_protocol::{ErrorCode, ServerFrame};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Client, HttpReply, TestServer, next_text};

/// One of each kind the names rule refuses beyond controls: a bidi override, a zero-width
/// space, a line separator, a bidi isolate, a zero-width joiner, a byte order mark, a tag.
const REFUSED: [char; 7] = [
    '\u{202E}',
    '\u{200B}',
    '\u{2028}',
    '\u{2066}',
    '\u{200D}',
    '\u{FEFF}',
    '\u{E0041}',
];

/// `text` percent-encoded as a query value: every byte outside the unreserved set as `%XX`.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The answer to a WebSocket handshake on `/rooms?name=` with `name` (percent-encoded here).
async fn handshake(server: &TestServer, name: &str) -> HttpReply {
    server
        .request(
            "GET",
            &format!("/rooms?name={}", percent_encoded(name)),
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        )
        .await
}

async fn send(client: &mut Client, request: Value) {
    client
        .send(Message::text(request.to_string()))
        .await
        .expect("the request is sent");
}

async fn next_frame(client: &mut Client) -> ServerFrame {
    let text = next_text(client).await;
    ServerFrame::from_json(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

/// Opens `/rooms` as `name` and joins `lobby`.
async fn joined(server: &TestServer, name: &str) -> Client {
    let mut client = server
        .connect(&format!("/rooms?name={}", percent_encoded(name)))
        .await;
    send(&mut client, json!({"type": "join", "room": "lobby"})).await;
    match next_frame(&mut client).await {
        ServerFrame::Joined { room, .. } => assert_eq!(room, "lobby"),
        other => panic!("expected joined, got {other:?}"),
    }
    client
}

#[tokio::test]
async fn format_and_separator_characters_are_refused_in_a_name_like_control_characters() {
    let server = TestServer::start(&[]).await;
    let control = handshake(&server, "a\nb").await;
    assert_eq!(control.status, 400);
    for c in REFUSED {
        for name in [format!("a{c}b"), format!("{c}ana"), format!("ana{c}")] {
            let reply = handshake(&server, &name).await;
            let code = u32::from(c);
            assert_eq!(reply.status, 400, "U+{code:04X} in {name:?}");
            assert_eq!(reply.body, control.body, "U+{code:04X} in {name:?}");
        }
    }
    // Names of other scripts, accents and emoji are names.
    for name in ["Zoë", "محمد", "東京", "ana 🙂"] {
        joined(&server, name).await;
    }
}

#[tokio::test]
async fn a_text_may_hold_them_and_is_delivered_byte_for_byte() {
    let server = TestServer::start(&[]).await;
    let mut ana = joined(&server, "ana").await;
    let mut bo = joined(&server, "Zoë").await;
    // An override that would reverse the line after it, an isolate left open, a line
    // separator, zero-width characters and an emoji ZWJ sequence.
    let text =
        "pay \u{202E}000,1\u{202C} now \u{2066}open\u{2028}next\u{200B}\u{FEFF} 👩\u{200D}💻";
    send(
        &mut ana,
        json!({"type": "publish", "room": "lobby", "id": "m1", "text": text}),
    )
    .await;
    match next_frame(&mut bo).await {
        ServerFrame::Message {
            from, text: got, ..
        } => {
            assert_eq!(from, "ana");
            assert_eq!(got.as_bytes(), text.as_bytes());
        }
        other => panic!("expected the message, got {other:?}"),
    }
    // A message id is held to the names rule: refused, and the connection goes on.
    send(
        &mut ana,
        json!({"type": "publish", "room": "lobby", "id": "m\u{202E}2", "text": "x"}),
    )
    .await;
    let mut refused = false;
    while !refused {
        match next_frame(&mut ana).await {
            // What ana's first publish brought back to her.
            ServerFrame::Message { id, .. } | ServerFrame::Ack { id, .. } => {
                assert_eq!(id, "m1")
            }
            ServerFrame::Error { code, .. } => {
                assert_eq!(code, ErrorCode::BadRequest);
                refused = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    send(
        &mut ana,
        json!({"type": "publish", "room": "lobby", "id": "m3", "text": "still here"}),
    )
    .await;
    match next_frame(&mut bo).await {
        ServerFrame::Message { from, id, .. } => {
            assert_eq!((from.as_str(), id.as_str()), ("ana", "m3"))
        }
        other => panic!("expected the message, got {other:?}"),
    }
}
