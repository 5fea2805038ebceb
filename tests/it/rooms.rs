//! Rooms (`/rooms?name=NAME`) against the real binary: every frame and error code, every
//! bound crossed, and the guarantees (each member sees offsets in order, once; duplicates are
//! acked and not broadcast; recovery gives exactly what was missed or says it cannot; a slow
//! reader is closed and never slows the room).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::SinkExt;
use room_protocol::{ErrorCode, ServerFrame};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Client, PATIENCE, TestServer, expect_close, next_message, next_text};

/// How long a publisher may wait for an ack while another member of its room is stuck.
const ACK_LATENCY: Duration = Duration::from_secs(1);

/// Join bounds high enough that a test of something else is not a test of the join rate:
/// environment variables, which a server without them ignores.
pub(crate) const JOINS_UNLIMITED: &[(&str, &str)] =
    &[("JOIN_RATE", "1000000"), ("JOIN_BURST", "1000000")];

/// Publish bounds high enough that a test of ordering is not a test of the rate limit.
pub(crate) const UNLIMITED: [&str; 4] = ["--publish-rate", "1000000", "--publish-burst", "1000000"];

/// One rooms connection, as the tests here and in `rooms_bounds` drive it.
pub(crate) struct Member {
    pub(crate) client: Client,
}

impl Member {
    pub(crate) async fn connect(server: &TestServer, name: &str) -> Member {
        let client = server.connect(&format!("/rooms?name={name}")).await;
        Member { client }
    }

    /// Connects with a receive buffer of `bytes` (`SO_RCVBUF`, which the kernel doubles and
    /// then never grows): returns the member and the buffer the kernel gave it.
    pub(crate) async fn connect_with_receive_buffer(
        server: &TestServer,
        name: &str,
        bytes: u32,
    ) -> (Member, usize) {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let given = socket.recv_buffer_size().expect("SO_RCVBUF") as usize;
        let stream = tokio::time::timeout(PATIENCE, socket.connect(server.addr))
            .await
            .expect("connects promptly")
            .expect("connects");
        let url = server.ws_url(&format!("/rooms?name={name}"));
        let (client, _response) = tokio::time::timeout(
            PATIENCE,
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)),
        )
        .await
        .expect("the handshake completes promptly")
        .expect("the handshake succeeds");
        (Member { client }, given)
    }

    pub(crate) async fn send(&mut self, request: Value) {
        self.client
            .send(Message::text(request.to_string()))
            .await
            .expect("the request is sent");
    }

    /// Sends many requests in one write.
    pub(crate) async fn send_all(&mut self, requests: impl IntoIterator<Item = Value>) {
        for request in requests {
            self.client
                .feed(Message::text(request.to_string()))
                .await
                .expect("queued");
        }
        self.client.flush().await.expect("sent");
    }

    pub(crate) async fn next(&mut self) -> ServerFrame {
        let text = next_text(&mut self.client).await;
        ServerFrame::from_json(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
    }

    /// Joins `room` (resuming from `since` if given) and returns its `joined` frame.
    pub(crate) async fn join(
        &mut self,
        room: &str,
        since: Option<(&str, u64)>,
    ) -> (String, u64, bool) {
        let mut request = json!({"type": "join", "room": room});
        if let Some((epoch, offset)) = since {
            request["since"] = json!({"epoch": epoch, "offset": offset});
        }
        self.send(request).await;
        match self.next().await {
            ServerFrame::Joined {
                room: joined,
                epoch,
                offset,
                recovered,
            } => {
                assert_eq!(joined, room);
                (epoch, offset, recovered)
            }
            other => panic!("expected joined, got {other:?}"),
        }
    }

    pub(crate) async fn expect_error(
        &mut self,
        code: ErrorCode,
    ) -> (Option<String>, Option<String>) {
        match self.next().await {
            ServerFrame::Error {
                code: got,
                message,
                room,
                id,
            } => {
                assert_eq!(got, code, "{message}");
                assert!(!message.is_empty());
                (room, id)
            }
            other => panic!("expected error {code:?}, got {other:?}"),
        }
    }

    /// Reads `count` room messages (skipping acks) and returns their offsets and ids.
    pub(crate) async fn messages(&mut self, count: usize) -> Vec<(u64, String)> {
        let mut got = Vec::new();
        while got.len() < count {
            match self.next().await {
                ServerFrame::Message { offset, id, .. } => got.push((offset, id)),
                ServerFrame::Ack { .. } => {}
                other => panic!("expected a message, got {other:?}"),
            }
        }
        got
    }
}

pub(crate) fn publish(room: &str, id: &str, text: &str) -> Value {
    json!({"type": "publish", "room": room, "id": id, "text": text})
}

#[tokio::test]
async fn every_frame_of_the_protocol() {
    let server = TestServer::start(&[]).await;
    let mut ana = Member::connect(&server, "ana").await;
    let mut bo = Member::connect(&server, "Bo%20B").await;
    let (epoch, offset, recovered) = ana.join("lobby", None).await;
    assert_eq!((offset, recovered), (0, false));
    assert!(!epoch.is_empty());
    bo.join("lobby", None).await;
    ana.send(publish("lobby", "m1", "hello <b>")).await;
    // The publisher gets its message and its ack; the other member the message.
    let mut frames = [ana.next().await, ana.next().await];
    frames.sort_by_key(|frame| matches!(frame, ServerFrame::Ack { .. }));
    match &frames[0] {
        ServerFrame::Message {
            room,
            offset,
            id,
            user,
            from,
            text,
            time,
        } => {
            assert_eq!((room.as_str(), *offset, id.as_str()), ("lobby", 1, "m1"));
            assert_eq!((from.as_str(), text.as_str()), ("ana", "hello <b>"));
            // In open mode every connection is an anonymous user of its own.
            assert!(
                user.len() == 21
                    && user.starts_with("anon-")
                    && user[5..].bytes().all(|digit| digit.is_ascii_hexdigit()),
                "anon- and 16 hex digits: {user}"
            );
            assert!(*time > 1_700_000_000_000, "milliseconds since the epoch");
        }
        other => panic!("expected the message, got {other:?}"),
    }
    assert_eq!(
        frames[1],
        ServerFrame::Ack {
            room: "lobby".into(),
            id: "m1".into(),
            offset: 1
        }
    );
    match bo.next().await {
        ServerFrame::Message { from, offset, .. } => {
            assert_eq!((from.as_str(), offset), ("ana", 1))
        }
        other => panic!("expected the message, got {other:?}"),
    }
    bo.send(json!({"type": "leave", "room": "lobby"})).await;
    assert_eq!(
        bo.next().await,
        ServerFrame::Left {
            room: "lobby".into(),
            reason: None
        }
    );
    // After leaving, nothing of the room arrives; a publish there is refused.
    ana.send(publish("lobby", "m2", "after")).await;
    assert_eq!(ana.messages(1).await[0].0, 2);
    bo.send(publish("lobby", "b1", "x")).await;
    assert_eq!(
        bo.expect_error(ErrorCode::NotJoined).await,
        (Some("lobby".into()), Some("b1".into()))
    );
}

#[tokio::test]
async fn every_error_code_and_the_connection_stays_open() {
    let server = TestServer::start(&[
        "--max-rooms-per-connection",
        "2",
        "--max-rooms",
        "3",
        "--max-text-bytes",
        "10",
    ])
    .await;
    let mut ana = Member::connect(&server, "ana").await;
    for bad in [
        "not json",
        "[1]",
        r#"{"type":"shout","room":"a"}"#,
        r#"{"type":"join"}"#,
    ] {
        ana.client.send(Message::text(bad)).await.expect("sent");
        ana.expect_error(ErrorCode::BadRequest).await;
    }
    ana.client
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .expect("sent");
    ana.expect_error(ErrorCode::BadRequest).await;
    ana.send(json!({"type": "join", "room": "no spaces"})).await;
    ana.expect_error(ErrorCode::BadRoom).await;
    ana.send(json!({"type": "leave", "room": "lobby"})).await;
    ana.expect_error(ErrorCode::NotJoined).await;
    ana.join("a", None).await;
    ana.join("b", None).await;
    ana.send(json!({"type": "join", "room": "c"})).await;
    assert_eq!(
        ana.expect_error(ErrorCode::TooManyRooms).await.0.as_deref(),
        Some("c")
    );
    // Exactly the limit in UTF-8 bytes is taken, one byte more is not.
    ana.send(publish("a", "fits", "ééééé")).await;
    assert_eq!(ana.messages(1).await[0].1, "fits");
    ana.send(publish("a", "long", "éééééa")).await;
    loop {
        match ana.next().await {
            ServerFrame::Ack { id, .. } => assert_eq!(id, "fits"),
            ServerFrame::Error { code, id, .. } => {
                assert_eq!((code, id.as_deref()), (ErrorCode::TooLong, Some("long")));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The server holds 3 rooms at most: a, b, and one more.
    let mut bo = Member::connect(&server, "bo").await;
    bo.join("c", None).await;
    bo.send(json!({"type": "join", "room": "d"})).await;
    bo.expect_error(ErrorCode::Unavailable).await;
    // After all of that, the connection still works.
    ana.send(publish("b", "ok", "still here")).await;
    assert_eq!(ana.messages(1).await[0].1, "ok");
}

#[tokio::test]
async fn the_longest_publish_fits_the_smallest_message_size_allowed() {
    // The server refuses to start with a message size that a publish of --max-text-bytes could
    // pass, however a client writes its JSON. At the smallest it takes, the longest publish
    // there is gets its ack, and one more byte of text is `too_long`, never a close: a room of
    // 64 characters each written as an escape, an id of 64 characters outside the BMP each an
    // escaped surrogate pair, and a text of 1,000 control characters (6 bytes each).
    // Given, --max-text-bytes is checked against the message size; left to its default, it
    // is lowered to what the message size holds, with a warning.
    let given =
        TestServer::start(&["--max-text-bytes", "1000", "--max-message-size", "8048"]).await;
    let lowered = TestServer::start(&["--max-message-size", "8048"]).await;
    lowered
        .wait_for_log("rooms: texts of a publish are limited to what --max-message-size holds")
        .await;
    for server in [given, lowered] {
        longest_publish_then_one_byte_more(&server).await;
    }
}

async fn longest_publish_then_one_byte_more(server: &TestServer) {
    let room = "r".repeat(64);
    let mut ana = Member::connect(server, "ana").await;
    ana.join(&room, None).await;
    let escaped_room = "\\u0072".repeat(64);
    let frame = |pair: &str, controls: usize| {
        format!(
            r#"{{"type":"publish","room":"{escaped_room}","id":"{}","text":"{}"}}"#,
            pair.repeat(64),
            "\\u0001".repeat(controls)
        )
    };
    let longest = frame("\\ud83d\\ude00", 1000);
    assert!(longest.len() > 7 * 1024, "{} bytes", longest.len());
    ana.client.send(Message::text(longest)).await.expect("sent");
    let acked = loop {
        match ana.next().await {
            ServerFrame::Ack { id, .. } => break id,
            ServerFrame::Message { .. } => {}
            other => panic!("expected the ack, got {other:?}"),
        }
    };
    assert_eq!(acked, "😀".repeat(64));
    let past = frame("\\ud83d\\ude01", 1001);
    ana.client.send(Message::text(past)).await.expect("sent");
    ana.expect_error(ErrorCode::TooLong).await;
}

#[tokio::test]
async fn the_protocols_bounds_are_the_servers_defaults() {
    // The clients refuse longer texts themselves and pace themselves by the rate, so a server
    // started without flags must take exactly `MAX_TEXT_BYTES` and `PUBLISH_BURST` at once.
    use room_protocol::bounds::{MAX_TEXT_BYTES, PUBLISH_BURST, PUBLISH_RATE};
    let server = TestServer::start(&[]).await;
    let mut ana = Member::connect(&server, "ana").await;
    ana.join("lobby", None).await;
    ana.send(publish("lobby", "fits", &"é".repeat(MAX_TEXT_BYTES / 2)))
        .await;
    ana.send(publish("lobby", "long", &"x".repeat(MAX_TEXT_BYTES + 1)))
        .await;
    let mut fits = false;
    loop {
        match ana.next().await {
            ServerFrame::Ack { id, .. } | ServerFrame::Message { id, .. } => {
                assert_eq!(id, "fits");
                fits = true;
            }
            ServerFrame::Error { code, id, .. } => {
                assert_eq!((code, id.as_deref()), (ErrorCode::TooLong, Some("long")));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(fits);
    // Twice the burst in one write, on a fresh connection (a full bucket): the burst is taken,
    // and past it only what the rate refilled while the server read them; the rest refused.
    let mut bo = Member::connect(&server, "bo").await;
    bo.join("tea", None).await;
    let total = 2 * PUBLISH_BURST as usize;
    let started = std::time::Instant::now();
    bo.send_all((0..total).map(|n| publish("tea", &format!("m{n}"), "x")))
        .await;
    let (mut acks, mut limited) = (0, 0);
    while acks + limited < total {
        match bo.next().await {
            ServerFrame::Ack { .. } => acks += 1,
            ServerFrame::Message { .. } => {}
            ServerFrame::Error { code, .. } => {
                assert_eq!(code, ErrorCode::RateLimited);
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let refilled = (started.elapsed().as_secs_f64() * f64::from(PUBLISH_RATE)).ceil() as usize;
    let burst = PUBLISH_BURST as usize;
    assert!(
        (burst..=burst + refilled).contains(&acks),
        "{acks} acks, {refilled} refilled"
    );
}

#[tokio::test]
async fn publishing_past_the_rate_is_refused_not_closed() {
    let server = TestServer::start(&["--publish-rate", "1", "--publish-burst", "40"]).await;
    let mut ana = Member::connect(&server, "ana").await;
    ana.join("lobby", None).await;
    // 100 publishes in one write: the burst of 40 is taken, the rest refused, in order.
    ana.send_all((0..100).map(|n| publish("lobby", &format!("m{n}"), "x")))
        .await;
    let (mut acks, mut limited, mut messages) = (0, 0, 0);
    while acks + limited < 100 {
        match ana.next().await {
            ServerFrame::Ack { .. } => acks += 1,
            ServerFrame::Message { .. } => messages += 1,
            ServerFrame::Error { code, .. } => {
                assert_eq!(code, ErrorCode::RateLimited);
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // One token may have refilled while the burst was read.
    assert!((40..=41).contains(&acks), "{acks} acks");
    assert_eq!(acks + limited, 100);
    assert_eq!(ana.messages(acks - messages).await.len(), acks - messages);
}

#[tokio::test]
async fn display_names_are_checked_at_the_handshake() {
    let server = TestServer::start(&[]).await;
    let long = "%C3%A9".repeat(33);
    for query in [
        "",
        "?name=",
        "?other=x",
        "?name=a%0Ab",
        "?name=a&name=b",
        &format!("?name={long}"),
        // Not UTF-8 once decoded, alone or in a longer name: refused, never shown as `�`.
        "?name=%ff",
        "?name=ana%C3",
        "?name=ana&n%ffme=x&name=%ff",
        // Names that look like another or like nothing.
        "?name=ana+",
        "?name=%20",
        "?name=%E3%85%A4",
        "?name=%E2%A0%80",
    ] {
        let path = format!("/rooms{query}");
        let reply = server
            .request(
                "GET",
                &path,
                &[
                    ("Connection", "Upgrade"),
                    ("Upgrade", "websocket"),
                    ("Sec-WebSocket-Version", "13"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ],
            )
            .await;
        assert_eq!(reply.status, 400, "{path}");
    }
    // 32 characters of two bytes each is a name.
    let mut member = Member::connect(&server, &"%C3%A9".repeat(32)).await;
    member.join("lobby", None).await;
    // A form's `+` is a space, and other parameters do not matter.
    let mut spaced = Member::connect(&server, "ana+b%C3%A9&x=%ff").await;
    spaced.join("lobby", None).await;
    spaced
        .send(json!({"type": "publish", "room": "lobby", "id": "1", "text": "hi"}))
        .await;
    let from = loop {
        if let ServerFrame::Message { from, .. } = spaced.next().await {
            break from;
        }
    };
    assert_eq!(from, "ana bé");
}

#[tokio::test]
async fn three_members_two_publishers_500_messages_each_seen_once_in_order() {
    let server = TestServer::start(
        // Bursts of 500 at once, past any publish rate: queues that hold them all.
        &[&UNLIMITED[..], &["--room-queue-bytes", "1048576"]].concat(),
    )
    .await;
    let mut readers = Vec::new();
    for name in ["r1", "r2", "r3"] {
        let mut reader = Member::connect(&server, name).await;
        reader.join("lobby", None).await;
        readers.push(reader);
    }
    let mut publishers = Vec::new();
    for name in ["p1", "p2"] {
        let mut publisher = Member::connect(&server, name).await;
        publisher.join("lobby", None).await;
        publishers.push(publisher);
    }
    // Both publishers send 250 each at once, interleaved by the server.
    let sends = publishers.iter_mut().enumerate().map(|(which, publisher)| {
        publisher.send_all((0..250).map(move |n| publish("lobby", &format!("p{which}-{n}"), "hi")))
    });
    futures_util::future::join_all(sends).await;
    for reader in &mut readers {
        let got = reader.messages(500).await;
        let offsets: Vec<u64> = got.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(offsets, (1..=500).collect::<Vec<_>>());
        // Each publisher's messages in the order it sent them.
        for which in 0..2 {
            let ids: Vec<&str> = got
                .iter()
                .map(|(_, id)| id.as_str())
                .filter(|id| id.starts_with(&format!("p{which}-")))
                .collect();
            let sent: Vec<String> = (0..250).map(|n| format!("p{which}-{n}")).collect();
            assert_eq!(ids, sent);
        }
    }
    // Each publisher got an ack for each of its own and every message once.
    for publisher in &mut publishers {
        let (mut acks, mut offsets) = (0, Vec::new());
        while acks < 250 || offsets.len() < 500 {
            match publisher.next().await {
                ServerFrame::Ack { .. } => acks += 1,
                ServerFrame::Message { offset, .. } => offsets.push(offset),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(offsets, (1..=500).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_duplicate_id_is_acked_with_its_first_offset_and_not_broadcast() {
    let server = TestServer::start(&[]).await;
    let mut ana = Member::connect(&server, "ana").await;
    let mut bo = Member::connect(&server, "bo").await;
    ana.join("lobby", None).await;
    bo.join("lobby", None).await;
    ana.send_all([
        publish("lobby", "same", "first"),
        publish("lobby", "other", "second"),
        publish("lobby", "same", "first again"),
        publish("lobby", "last", "third"),
    ])
    .await;
    let mut acks = HashMap::new();
    let mut ana_messages = Vec::new();
    while acks.len() < 3 || ana_messages.len() < 3 {
        match ana.next().await {
            ServerFrame::Ack { id, offset, .. } => {
                if let Some(first) = acks.insert(id.clone(), offset) {
                    assert_eq!(first, offset, "{id} acked twice with different offsets");
                }
            }
            ServerFrame::Message { offset, id, .. } => ana_messages.push((offset, id)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(acks["same"], 1);
    assert_eq!(acks["other"], 2);
    assert_eq!(acks["last"], 3);
    let ids: Vec<String> = bo.messages(3).await.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, ["same", "other", "last"]);
    // And nothing else follows for bo: a marker published now is the next thing it sees.
    ana.send(publish("lobby", "marker", "m")).await;
    assert_eq!(bo.messages(1).await, [(4, "marker".to_owned())]);
}

#[tokio::test]
async fn coming_back_with_since_gives_exactly_what_was_missed_then_live() {
    let server = TestServer::start(&UNLIMITED).await;
    let mut publisher = Member::connect(&server, "pub").await;
    publisher.join("lobby", None).await;
    let mut reader = Member::connect(&server, "reader").await;
    let (epoch, _, _) = reader.join("lobby", None).await;
    publisher
        .send_all((1..=10).map(|n| publish("lobby", &format!("m{n}"), "before")))
        .await;
    let seen = reader.messages(10).await;
    let last = seen.last().expect("ten messages").0;
    assert_eq!(last, 10);
    drop(reader);
    publisher
        .send_all((11..=60).map(|n| publish("lobby", &format!("m{n}"), "missed")))
        .await;
    publisher.messages(60).await;
    let mut back = Member::connect(&server, "reader").await;
    let (same_epoch, offset, recovered) = back.join("lobby", Some((&epoch, last))).await;
    assert_eq!(
        (same_epoch.as_str(), offset, recovered),
        (epoch.as_str(), 60, true)
    );
    let replayed = back.messages(50).await;
    assert_eq!(
        replayed
            .iter()
            .map(|(offset, _)| *offset)
            .collect::<Vec<_>>(),
        (11..=60).collect::<Vec<_>>()
    );
    publisher.send(publish("lobby", "live", "now")).await;
    assert_eq!(back.messages(1).await, [(61, "live".to_owned())]);
}

#[tokio::test]
async fn past_history_or_from_another_epoch_nothing_is_replayed() {
    let server = TestServer::start(&[&UNLIMITED[..], &["--room-history", "10"]].concat()).await;
    let mut publisher = Member::connect(&server, "pub").await;
    let (epoch, _, _) = publisher.join("lobby", None).await;
    publisher
        .send_all((1..=30).map(|n| publish("lobby", &format!("m{n}"), "x")))
        .await;
    publisher.messages(30).await;
    let refused = [
        (epoch.as_str(), 5),
        ("another-epoch", 25),
        // A position the room never reached (a client from before a restart, say).
        (epoch.as_str(), 1_000),
    ];
    for (probes, since) in refused.into_iter().enumerate() {
        let mut back = Member::connect(&server, "back").await;
        let (_, offset, recovered) = back.join("lobby", Some(since)).await;
        // Each round publishes one probe: the room's position moves on by one.
        assert_eq!(
            (offset, recovered),
            (30 + probes as u64, false),
            "{since:?}"
        );
        // Nothing replayed: the next frame is the live message published now.
        publisher
            .send(publish("lobby", &format!("probe-{}", since.1), "x"))
            .await;
        let (live, id) = back.messages(1).await.remove(0);
        assert_eq!(id, format!("probe-{}", since.1), "at {live}");
        publisher.messages(1).await;
    }
    // Within history it does replay.
    let mut back = Member::connect(&server, "back").await;
    let (_, offset, recovered) = back.join("lobby", Some((&epoch, 25))).await;
    assert_eq!((offset, recovered), (33, true));
    assert_eq!(back.messages(8).await[0].0, 26);
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_closed_and_the_room_goes_on() {
    // A send timeout of an hour: only the room queue's bound can end the stalled member within
    // this test, so the test fails if that bound is gone (a 2 s timeout closed it anyway).
    let server = TestServer::start(
        &[
            &UNLIMITED[..],
            &[
                "--room-queue-bytes",
                "262144",
                "--send-timeout",
                "3600",
                "--max-text-bytes",
                "4096",
            ],
        ]
        .concat(),
    )
    .await;
    let mut stalled = Member::connect(&server, "stalled").await;
    stalled.join("lobby", None).await;
    let mut reader = Member::connect(&server, "reader").await;
    reader.join("lobby", None).await;
    let mut publisher = Member::connect(&server, "pub").await;
    publisher.join("lobby", None).await;
    // 4,000 messages of 4 KiB (16 MB): far past what the stalled member's kernel buffers, its
    // session's write buffer and its queue hold. Batches of 40 KiB, each acked before the
    // next, so a member that reads never falls a queue (256 KiB) behind.
    let text = "x".repeat(4096);
    let total = 4_000;
    let publishing = async {
        let mut acks = 0;
        while acks < total {
            let batch = (acks..acks + 10).map(|n| publish("lobby", &format!("m{n}"), &text));
            publisher.send_all(batch).await;
            // A reader that stops never slows the room: each ack of the batch arrives within
            // `ACK_LATENCY` of the batch's write, however full the stalled member is.
            let deadline = Instant::now() + ACK_LATENCY;
            let batch_end = acks + 10;
            while acks < batch_end {
                let frame = tokio::time::timeout_at(deadline, publisher.next())
                    .await
                    .unwrap_or_else(|_| {
                        panic!(
                            "ack {acks} took over {ACK_LATENCY:?}: a stalled reader slows the room"
                        )
                    });
                match frame {
                    ServerFrame::Ack { offset, .. } => {
                        acks += 1;
                        assert_eq!(offset, acks as u64);
                    }
                    ServerFrame::Message { .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    };
    // A member that reads gets the whole room, in order, meanwhile.
    let reading = async {
        let offsets: Vec<u64> = reader
            .messages(total)
            .await
            .into_iter()
            .map(|(offset, _)| offset)
            .collect();
        assert_eq!(offsets, (1..=total as u64).collect::<Vec<_>>());
    };
    tokio::join!(publishing, reading);
    // Reading now, the stalled member gets a prefix of the room, in order, then the close
    // that says why: 1008 with the queue's reason (not the send timeout's, not a reset).
    let mut offsets = Vec::new();
    let close = loop {
        match next_message(&mut stalled.client).await {
            Message::Text(text) => match ServerFrame::from_json(&text) {
                Ok(ServerFrame::Message { offset, .. }) => {
                    offsets.push(offset);
                    assert!(
                        offsets.len() < total,
                        "served all {total} messages: the stalled member was never cut off"
                    );
                }
                other => panic!("expected a message, got {other:?}"),
            },
            Message::Close(frame) => {
                break frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()));
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        close,
        Some((1008, "too slow: fell behind its rooms".to_owned()))
    );
    assert_eq!(
        offsets,
        (1..=offsets.len() as u64).collect::<Vec<_>>(),
        "a prefix, in order"
    );
    // The room still works for everyone else.
    publisher.send(publish("lobby", "after", "x")).await;
    assert_eq!(
        publisher.messages(1).await,
        [(total as u64 + 1, "after".to_owned())]
    );
    assert_eq!(
        reader.messages(1).await,
        [(total as u64 + 1, "after".to_owned())]
    );
}

#[tokio::test]
async fn a_flooding_client_that_reads_is_slowed_not_closed() {
    let server = TestServer::start_with_env(
        JOINS_UNLIMITED,
        &[
            &UNLIMITED[..],
            &[
                "--room-queue-bytes",
                "65536",
                "--room-history-bytes",
                "65536",
                "--max-text-bytes",
                "8192",
                "--metrics-addr",
                "127.0.0.1:0",
            ],
        ]
        .concat(),
    )
    .await;
    let mut publisher = Member::connect(&server, "pub").await;
    let (epoch, _, _) = publisher.join("lobby", None).await;
    // A history of 4 messages of 8 KiB: each join from offset 0 is answered with 32 KiB.
    let text = "x".repeat(8192);
    publisher
        .send_all((1..=4).map(|n| publish("lobby", &format!("m{n}"), &text)))
        .await;
    publisher.messages(4).await;
    let receive_buffer = 64 * 1024;
    let (mut flooder, receive_buffer) =
        Member::connect_with_receive_buffer(&server, "flooder", receive_buffer).await;
    // What the server can have answered while the flooder reads nothing: its socket's send
    // buffer at most (the kernel grows it up to `tcp_wmem`'s maximum), the flooder's receive
    // buffer, the session's write buffer (16 KiB and 11 messages of the 64 KiB
    // `--max-message-size`), and one answer taken but not yet written, one read but not yet
    // answered, one in the queue.
    let held = tcp_send_buffer_max() + receive_buffer + 16 * 1024 + 11 * (65_536 + 14);
    let bound = held / (4 * text.len()) + 3;
    let joins = 4 * bound;
    let received = || server.metric("chat_websocket_messages_received_total{app=\"/rooms\"}");
    let before = received().await;
    let since = json!({"epoch": epoch, "offset": 0});
    // All the joins in one write: 4 times what the server may answer while nobody reads.
    tokio::time::timeout(
        PATIENCE,
        flooder
            .send_all((0..joins).map(|_| json!({"type": "join", "room": "lobby", "since": since}))),
    )
    .await
    .expect("the joins fit in the kernel's buffers");
    // For a second, the flooder reads nothing: the server must stop reading its requests
    // once their answers fill what lies between them, not take them all into memory.
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let taken = received().await - before;
        assert!(
            taken <= bound as u64,
            "the server took {taken} of {joins} joins from a client that reads nothing; \
             at most {bound} answers fit in its buffers"
        );
        // Sampling a counter over the second under test: there is no event to await.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Now it reads: every join is answered in full, in order, and the connection stays open.
    for join in 0..joins {
        match flooder.next().await {
            ServerFrame::Joined {
                offset, recovered, ..
            } => {
                assert_eq!((offset, recovered), (4, true), "join {join}");
            }
            other => panic!("join {join}: expected joined, got {other:?}"),
        }
        let offsets: Vec<u64> = flooder
            .messages(4)
            .await
            .into_iter()
            .map(|(offset, _)| offset)
            .collect();
        assert_eq!(offsets, [1, 2, 3, 4], "join {join}");
    }
    assert_eq!(received().await - before, joins as u64);
    publisher.send(publish("lobby", "still", "open")).await;
    assert_eq!(flooder.messages(1).await, [(5, "still".to_owned())]);
}

/// The most the kernel lets a TCP socket's send buffer grow to (`net.ipv4.tcp_wmem`).
fn tcp_send_buffer_max() -> usize {
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").expect("tcp_wmem");
    wmem.split_whitespace()
        .nth(2)
        .and_then(|max| max.parse().ok())
        .expect("tcp_wmem: min default max")
}

#[tokio::test]
async fn shutdown_closes_rooms_sessions_with_1001() {
    let mut server = TestServer::start(&[]).await;
    let mut ana = Member::connect(&server, "ana").await;
    ana.join("lobby", None).await;
    server.signal("TERM");
    assert_eq!(expect_close(&mut ana.client).await.0, 1001);
    assert!(server.wait().await.success());
}
