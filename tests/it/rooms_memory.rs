//! The rooms' memory bound, the README's figure for the flags given: rooms' histories filled
//! past every bound (more rooms than `--max-rooms`, more frames than `--room-history-bytes`,
//! with texts of control characters, whose frames are six times their length) and the
//! process's resident memory stays under what the README's formula says for those flags.

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{PATIENCE, TestServer};

const MAX_ROOMS: u64 = 800;
const ROOMS_FILLED: u64 = 1_000;
const HISTORY_BYTES: u64 = 64 * 1024;
const HISTORY_MESSAGES: u64 = 10;
const PUBLISHES_PER_ROOM: usize = 5;
const QUEUE_BYTES: u64 = 48 * 1024;
const DEDUP_MAX_IDS: u64 = 10_000;
const CONNECTIONS: u64 = 4;

/// The README's bound, in KiB, for the flags above and `connections` connections.
fn bound_kib(connections: u64) -> u64 {
    let history = MAX_ROOMS * (HISTORY_BYTES + 192 * HISTORY_MESSAGES);
    let queues = connections * (QUEUE_BYTES + HISTORY_BYTES);
    let dedup = DEDUP_MAX_IDS * 736;
    (history + queues + dedup) / 1024
}

#[tokio::test]
async fn histories_filled_past_every_bound_stay_within_the_stated_memory() {
    let flags = [
        ("--max-rooms", MAX_ROOMS),
        ("--room-history-bytes", HISTORY_BYTES),
        ("--room-history", HISTORY_MESSAGES),
        ("--room-queue-bytes", QUEUE_BYTES),
        ("--dedup-max-ids", DEDUP_MAX_IDS),
        ("--join-rate", 1_000_000),
        ("--join-burst", 1_000_000),
        ("--publish-rate", 1_000_000),
        ("--publish-burst", 1_000_000),
        ("--max-message-size", 1024 * 1024),
    ]
    .map(|(flag, value)| [flag.to_owned(), value.to_string()]);
    let args: Vec<&str> = flags.iter().flatten().map(String::as_str).collect();
    let server = TestServer::start(&args).await;
    // 4 KiB of control characters: each is `\u0001` in the frame, 24 KiB and more.
    let text: String = (0..4096).map(|n| char::from(1 + (n % 30) as u8)).collect();
    let mut clients = Vec::new();
    for n in 0..CONNECTIONS {
        clients.push(server.connect(&format!("/rooms?name=filler{n}")).await);
    }
    let baseline_kib = server.rss_kib();
    let mut tasks = Vec::new();
    for (n, mut client) in clients.into_iter().enumerate() {
        let text = text.clone();
        tasks.push(tokio::spawn(async move {
            for room in (n as u64..ROOMS_FILLED).step_by(CONNECTIONS as usize) {
                let room = format!("r{room}");
                client
                    .feed(Message::text(json!({"type": "join", "room": room}).to_string()))
                    .await
                    .expect("sent");
                for m in 0..PUBLISHES_PER_ROOM {
                    let publish = json!({"type": "publish", "room": room, "id": format!("m{m}"), "text": text});
                    client.feed(Message::text(publish.to_string())).await.expect("sent");
                }
                client
                    .send(Message::text(json!({"type": "leave", "room": room}).to_string()))
                    .await
                    .expect("sent");
                // Every answer read, up to `left`: a refusal is a failure.
                loop {
                    let next = tokio::time::timeout(PATIENCE, client.next())
                        .await
                        .expect("an answer in time")
                        .expect("open")
                        .expect("a frame");
                    let Message::Text(frame) = next else { continue };
                    assert!(!frame.contains(r#""type":"error""#), "{room}: {frame}");
                    if frame.contains(r#""type":"left""#) {
                        break;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a filler");
    }
    let grown_kib = server.rss_kib().saturating_sub(baseline_kib);
    let bound = bound_kib(CONNECTIONS);
    eprintln!("rooms' memory: grew {grown_kib} KiB for a bound of {bound} KiB");
    assert!(
        grown_kib <= bound,
        "the process grew by {grown_kib} KiB, past the {bound} KiB the README's formula gives"
    );
    // And it holds what it says: the last rooms kept their history, two frames each.
    let mut reader = server.connect("/rooms?name=reader").await;
    let last = format!("r{}", ROOMS_FILLED - 1);
    reader
        .send(Message::text(
            json!({"type": "join", "room": last}).to_string(),
        ))
        .await
        .expect("sent");
    let joined = tokio::time::timeout(PATIENCE, reader.next())
        .await
        .expect("joined in time")
        .expect("open")
        .expect("a frame");
    assert!(
        joined
            .to_text()
            .is_ok_and(|text| text.contains(r#""offset":5"#)),
        "{joined:?}"
    );
}
