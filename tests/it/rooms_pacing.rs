//! `--room-flush-interval`: a member written to within the interval holds what its rooms send
//! until the next tick, so a busy member's messages leave together; a held queue still never
//! loses a message or closes its member when a burst passes its bound.

use std::time::Duration;

use room_protocol::ServerFrame;
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::rooms::{JOINS_UNLIMITED, Member, UNLIMITED, publish};
use crate::support::{PATIENCE, RawClient, TEXT, TestServer};

/// Complete server frames at the start of `bytes`: their payloads, and the bytes they take.
fn complete_frames(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let (mut frames, mut at) = (Vec::new(), 0);
    loop {
        let rest = &bytes[at..];
        if rest.len() < 2 {
            break;
        }
        let (length, header) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            126 => break,
            127 => panic!("no 64-bit lengths expected here"),
            short => (usize::from(short), 2),
        };
        if rest.len() < header + length {
            break;
        }
        assert_eq!(
            rest[0],
            0x80 | TEXT,
            "a whole text frame, got {:?}",
            String::from_utf8_lossy(&rest[header..header + length])
        );
        frames.push(rest[header..header + length].to_vec());
        at += header + length;
    }
    (frames, at)
}

/// A member on a raw socket, to see how the server's writes arrive.
async fn raw_member(server: &TestServer, room: &str) -> RawClient {
    let mut raw = RawClient::connect(server.addr, "/rooms?name=reader").await;
    raw.send(
        TEXT,
        json!({"type": "join", "room": room}).to_string().as_bytes(),
    )
    .await;
    let (_, joined) = raw.read_frame().await.expect("joined");
    assert!(
        matches!(
            ServerFrame::from_json(std::str::from_utf8(&joined).expect("UTF-8")),
            Ok(ServerFrame::Joined { .. })
        ),
        "{}",
        String::from_utf8_lossy(&joined)
    );
    raw
}

/// Reads until `count` messages arrived; returns their texts and how many reads it took.
async fn read_messages(raw: &mut RawClient, count: usize) -> (Vec<String>, usize) {
    read_messages_telling(raw, count, &tokio::sync::watch::channel(0).0).await
}

/// [`read_messages`], telling `progress` how many arrived so far.
async fn read_messages_telling(
    raw: &mut RawClient,
    count: usize,
    progress: &tokio::sync::watch::Sender<usize>,
) -> (Vec<String>, usize) {
    let (mut pending, mut texts, mut reads) = (Vec::new(), Vec::new(), 0);
    let mut buffer = vec![0u8; 256 * 1024];
    while texts.len() < count {
        let read = tokio::time::timeout(PATIENCE, raw.stream.read(&mut buffer))
            .await
            .expect("messages arrive promptly")
            .expect("read");
        assert!(read > 0, "the server closed after {} messages", texts.len());
        reads += 1;
        pending.extend_from_slice(&buffer[..read]);
        let (frames, used) = complete_frames(&pending);
        pending.drain(..used);
        for frame in frames {
            let text = String::from_utf8(frame).expect("UTF-8");
            match ServerFrame::from_json(&text) {
                Ok(ServerFrame::Message { text, .. }) => texts.push(text),
                other => panic!("expected a message, got {other:?}"),
            }
        }
        progress.send_replace(texts.len());
    }
    (texts, reads)
}

#[tokio::test]
async fn a_busy_members_messages_leave_together_once_an_interval() {
    // Ticks a second apart; ten publishes, two at a time 40 ms apart (about 160 ms), span at
    // most one tick, so the member gets them in at most two writes. With every message
    // written as it comes, they would take five or more; so would a session that took the
    // wake-up the second of a pair leaves behind for a reason to write.
    let server = TestServer::start_with_env(
        JOINS_UNLIMITED,
        &[UNLIMITED.as_slice(), &["--room-flush-interval", "1000"]].concat(),
    )
    .await;
    let mut reader = raw_member(&server, "busy").await;
    let mut publisher = Member::connect(&server, "pub").await;
    publisher.join("busy", None).await;
    publisher.send(publish("busy", "first", "first")).await;
    let (first, _) = read_messages(&mut reader, 1).await;
    assert_eq!(first, ["first"]);
    // Read as they come, beside the publishing.
    let publishing = async {
        let mut ticker = tokio::time::interval(Duration::from_millis(40));
        for pair in 0..5 {
            ticker.tick().await;
            publisher
                .send_all(
                    (2 * pair..2 * pair + 2)
                        .map(|n| publish("busy", &format!("m{n}"), &format!("m{n}"))),
                )
                .await;
        }
        std::time::Instant::now()
    };
    let (last_published, (texts, reads)) = tokio::join!(publishing, read_messages(&mut reader, 10));
    let expected: Vec<String> = (0..10).map(|n| format!("m{n}")).collect();
    assert_eq!(texts, expected);
    assert!(reads <= 2, "ten messages in {reads} reads");
    // Held at most to the next tick: a second, and time to spare for a loaded machine.
    let waited = last_published.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "the last waited {waited:?}"
    );
}

#[tokio::test]
async fn a_held_queue_past_half_its_bound_is_written_at_once() {
    // The smallest queue, 16 KiB: 70 messages of 167 bytes (231 counted each) fit. The
    // publisher keeps at most 60 messages ahead of what the member has read, so the queue
    // can never overflow, however the tasks are scheduled; the member's session holds its
    // queue for up to a second. Past half the bound (36 messages) the hold gives way and the
    // queue is written at once: 1,000 messages take moments. Were it held to the tick, the
    // publisher would wait a second for every 60 messages (about 17 s).
    const WINDOW: usize = 60;
    let server = TestServer::start_with_env(
        JOINS_UNLIMITED,
        &[
            UNLIMITED.as_slice(),
            &[
                "--room-flush-interval",
                "1000",
                "--room-queue-bytes",
                "16384",
                // No history to leave room for: the hold may take half the queue.
                "--room-history",
                "0",
            ],
        ]
        .concat(),
    )
    .await;
    let mut reader = raw_member(&server, "burst").await;
    let mut publisher = Member::connect(&server, "pub").await;
    publisher.join("burst", None).await;
    publisher.send(publish("burst", "first", "first")).await;
    read_messages(&mut reader, 1).await;
    let texts: Vec<String> = (0..1_000)
        .map(|n| format!("{n:04}{}", "x".repeat(60)))
        .collect();
    let (progress, mut read_so_far) = tokio::sync::watch::channel(0);
    let started = std::time::Instant::now();
    let publishing = async {
        for (batch, chunk) in texts.chunks(10).enumerate() {
            let sent = batch * 10;
            read_so_far
                .wait_for(|&read| sent + chunk.len() - read <= WINDOW)
                .await
                .expect("the reader is there");
            publisher
                .send_all(
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(n, text)| publish("burst", &format!("b{batch}-{n}"), text)),
                )
                .await;
        }
    };
    let (_, (got, _)) = tokio::join!(
        publishing,
        read_messages_telling(&mut reader, 1_000, &progress)
    );
    assert_eq!(got, texts);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "1,000 messages took {took:?}: held to the tick past half the bound?"
    );
}
