//! Rooms at the bounds issue 24 sets (embedded engine): joins and leaves are rate-limited
//! per connection like publishes; at `--max-rooms` a room that only keeps history makes way
//! for one somebody is in, and a room with members is never evicted; the dedup window keeps
//! every id for its whole length. Each test goes past its bound: 1,000 requests against a
//! bucket of 20, over 100 rooms against a limit of 20, 1,500 ids past the old cap of 1,000.

use std::collections::HashSet;
use std::time::Duration;

use room_protocol::{ErrorCode, ServerFrame};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::rooms::{JOINS_UNLIMITED, Member, publish};
use crate::support::TestServer;

/// Joins and leaves a connection may make a second, and at once, unless told otherwise.
const DEFAULT_JOIN_RATE: u32 = 10;
const DEFAULT_JOIN_BURST: usize = 20;

/// A request that the join bucket pays for.
#[derive(Debug, Clone, Copy)]
enum Request<'a> {
    Join(&'a str),
    Leave(&'a str),
}

impl Request<'_> {
    fn frame(self) -> Value {
        match self {
            Request::Join(room) => json!({"type": "join", "room": room}),
            Request::Leave(room) => json!({"type": "leave", "room": room}),
        }
    }
}

/// How a burst of joins and leaves was answered.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    taken: usize,
    rate_limited: usize,
    /// Leaves of a room whose join was refused: nothing to leave.
    not_joined: usize,
}

/// Sends `requests` in one write and reads exactly one answer per request, in order, each
/// naming its room: the first `burst` are taken; any other is taken or refused
/// `rate_limited` (a leave of a room never entered may be `not_joined` instead); and past the
/// burst no more are taken than the bucket can have refilled (`rate` a second) meanwhile.
async fn send_past_the_bucket(
    member: &mut Member,
    requests: &[Request<'_>],
    burst: usize,
    rate: u32,
) -> Tally {
    let started = Instant::now();
    member
        .send_all(requests.iter().map(|request| request.frame()))
        .await;
    let mut inside = HashSet::new();
    let mut tally = Tally::default();
    for (index, request) in requests.iter().enumerate() {
        let answer = member.next().await;
        match (*request, &answer) {
            (Request::Join(room), ServerFrame::Joined { room: named, .. }) if named == room => {
                inside.insert(room);
                tally.taken += 1;
            }
            (Request::Leave(room), ServerFrame::Left { room: named })
                if named == room && inside.contains(room) =>
            {
                inside.remove(room);
                tally.taken += 1;
            }
            (
                Request::Join(room) | Request::Leave(room),
                ServerFrame::Error {
                    code: ErrorCode::RateLimited,
                    room: Some(named),
                    message,
                    ..
                },
            ) if named == room && !message.is_empty() => {
                assert!(
                    index >= burst,
                    "request {index} ({request:?}) is within the burst of {burst}: {answer:?}"
                );
                tally.rate_limited += 1;
            }
            (
                Request::Leave(room),
                ServerFrame::Error {
                    code: ErrorCode::NotJoined,
                    room: Some(named),
                    ..
                },
            ) if named == room && !inside.contains(room) && index >= burst => {
                tally.not_joined += 1;
            }
            _ => panic!("request {index} ({request:?}) answered with {answer:?}"),
        }
    }
    let elapsed = started.elapsed();
    // The most tokens the bucket can have gained while the burst was answered.
    let refilled = (elapsed.as_secs_f64() * f64::from(rate)) as usize + 1;
    assert!(
        tally.taken <= burst + refilled,
        "{} of {} requests taken; the bucket holds {burst} and refilled at most {refilled} \
         in {elapsed:?}: {tally:?}",
        tally.taken,
        requests.len()
    );
    tally
}

#[tokio::test]
async fn joins_and_leaves_past_the_default_bucket_are_refused_in_order_and_none_is_lost() {
    let server = TestServer::start(&[]).await;
    let mut ana = Member::connect(&server, "ana").await;
    // 1,000 in one write: each is answered once, in order, and only the bucket's are taken.
    let requests: Vec<Request> = (0..500)
        .flat_map(|_| [Request::Join("lobby"), Request::Leave("lobby")])
        .collect();
    let tally =
        send_past_the_bucket(&mut ana, &requests, DEFAULT_JOIN_BURST, DEFAULT_JOIN_RATE).await;
    assert_eq!(tally.taken + tally.rate_limited + tally.not_joined, 1_000);
    // The connection is open, and once the bucket has refilled (2.5 tokens in 250 ms) a join
    // and a leave are taken again; they are the next answers, so nothing else was queued.
    tokio::time::sleep(Duration::from_millis(250)).await;
    ana.join("lobby", None).await;
    ana.send(json!({"type": "leave", "room": "lobby"})).await;
    assert_eq!(
        ana.next().await,
        ServerFrame::Left {
            room: "lobby".into()
        }
    );
}

#[tokio::test]
async fn the_join_rate_and_burst_come_from_the_environment_and_flags_win() {
    // From the environment: 3 at once, then 1 a second.
    let server = TestServer::start_with_env(&[("JOIN_RATE", "1"), ("JOIN_BURST", "3")], &[]).await;
    let mut ana = Member::connect(&server, "ana").await;
    let rooms: Vec<String> = (0..10).map(|n| format!("r{n}")).collect();
    let joins: Vec<Request> = rooms.iter().map(|room| Request::Join(room)).collect();
    assert_eq!(
        send_past_the_bucket(&mut ana, &joins, 3, 1).await,
        Tally {
            taken: 3,
            rate_limited: 7,
            not_joined: 0
        }
    );
    // Flags over an environment that says otherwise: 5 at once, then 2 a second.
    let server =
        TestServer::start_with_env(JOINS_UNLIMITED, &["--join-rate", "2", "--join-burst", "5"])
            .await;
    let mut bo = Member::connect(&server, "bo").await;
    let requests = [
        Request::Join("a0"),
        Request::Join("a1"),
        Request::Join("a2"),
        Request::Join("a3"),
        Request::Join("a4"),
        Request::Join("a5"),
        Request::Leave("a0"),
    ];
    assert_eq!(
        send_past_the_bucket(&mut bo, &requests, 5, 2).await,
        Tally {
            taken: 5,
            rate_limited: 2,
            not_joined: 0
        }
    );
    // The refused leave left bo in a0: its publish there is taken (publishes have a bucket
    // of their own).
    bo.send(publish("a0", "still-in", "x")).await;
    let mut frames = [bo.next().await, bo.next().await];
    frames.sort_by_key(|frame| matches!(frame, ServerFrame::Ack { .. }));
    assert!(
        matches!(&frames[0], ServerFrame::Message { offset: 1, id, .. } if id == "still-in"),
        "{frames:?}"
    );
    assert!(
        matches!(&frames[1], ServerFrame::Ack { offset: 1, id, .. } if id == "still-in"),
        "{frames:?}"
    );
    // Two tokens later (2.2 in 1.1 s) the leave and the join are taken.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    bo.send(json!({"type": "leave", "room": "a0"})).await;
    assert_eq!(bo.next().await, ServerFrame::Left { room: "a0".into() });
    bo.join("a5", None).await;
}
