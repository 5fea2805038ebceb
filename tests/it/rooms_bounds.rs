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

use crate::rooms::{JOINS_UNLIMITED, Member, UNLIMITED, publish};
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
            (Request::Leave(room), ServerFrame::Left { room: named, .. })
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
            room: "lobby".into(),
            reason: None
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
    assert_eq!(
        bo.next().await,
        ServerFrame::Left {
            room: "a0".into(),
            reason: None
        }
    );
    bo.join("a5", None).await;
}

/// A person passing through a fresh room: join, say one thing, leave, in one write, every
/// answer checked. Returns the room's epoch.
async fn pass_through(member: &mut Member, room: &str) -> String {
    member
        .send_all([
            json!({"type": "join", "room": room}),
            publish(room, "said", "hi"),
            json!({"type": "leave", "room": room}),
        ])
        .await;
    let epoch = match member.next().await {
        ServerFrame::Joined {
            room: named,
            epoch,
            offset: 0,
            recovered: false,
        } if named == room => epoch,
        other => panic!("joining the fresh room {room}: expected joined at 0, got {other:?}"),
    };
    let mut frames = [member.next().await, member.next().await];
    frames.sort_by_key(|frame| matches!(frame, ServerFrame::Ack { .. }));
    assert!(
        matches!(&frames[0], ServerFrame::Message { offset: 1, id, .. } if id == "said"),
        "{room}: {frames:?}"
    );
    assert_eq!(
        frames[1],
        ServerFrame::Ack {
            room: room.into(),
            id: "said".into(),
            offset: 1
        }
    );
    assert_eq!(
        member.next().await,
        ServerFrame::Left {
            room: room.into(),
            reason: None
        }
    );
    epoch
}

/// Passes through `rounds` fresh rooms called `{prefix}-{round}`; returns the first's epoch.
async fn pass_through_many(member: &mut Member, prefix: &str, rounds: usize) -> String {
    let first = pass_through(member, &format!("{prefix}-0")).await;
    for round in 1..rounds {
        pass_through(member, &format!("{prefix}-{round}")).await;
    }
    first
}

/// Reads `count` messages and `count` acks, in whatever order they interleave.
async fn published(member: &mut Member, count: usize) -> Vec<(u64, String)> {
    let (mut messages, mut acks) = (Vec::new(), 0);
    while messages.len() < count || acks < count {
        match member.next().await {
            ServerFrame::Message { offset, id, .. } => messages.push((offset, id)),
            ServerFrame::Ack { .. } => acks += 1,
            other => panic!("expected messages and acks, got {other:?}"),
        }
    }
    assert_eq!((messages.len(), acks), (count, count));
    messages
}

/// Joins `room` from `since` and checks it recovers: `joined` at `last`, then offsets
/// `since + 1..=last`.
async fn recovers(member: &mut Member, room: &str, since: (&str, u64), last: u64) {
    let (epoch, offset, recovered) = member.join(room, Some(since)).await;
    assert_eq!(
        (epoch.as_str(), offset, recovered),
        (since.0, last, true),
        "{room}"
    );
    let count = (last - since.1) as usize;
    let offsets: Vec<u64> = member
        .messages(count)
        .await
        .into_iter()
        .map(|(offset, _)| offset)
        .collect();
    assert_eq!(offsets, (since.1 + 1..=last).collect::<Vec<_>>(), "{room}");
}

#[tokio::test]
async fn at_max_rooms_a_memberless_rooms_history_makes_way_for_people_who_talk() {
    let server = TestServer::start_with_env(
        JOINS_UNLIMITED,
        &[&UNLIMITED[..], &["--max-rooms", "20"]].concat(),
    )
    .await;
    // A room its member never leaves, with a history of 5.
    let mut keeper = Member::connect(&server, "keeper").await;
    let (kept_epoch, _, _) = keeper.join("kept", None).await;
    keeper
        .send_all((1..=5).map(|n| publish("kept", &format!("k{n}"), "kept")))
        .await;
    published(&mut keeper, 5).await;
    // Two people pass through 40 fresh rooms each, and a third through 30, all at once: 110
    // rooms that keep a history once left, against a limit of 20. Every join is taken.
    let mut first = Member::connect(&server, "first").await;
    let mut second = Member::connect(&server, "second").await;
    let mut third = Member::connect(&server, "third").await;
    let (oldest_epoch, _, _) = tokio::join!(
        pass_through_many(&mut first, "first", 40),
        pass_through_many(&mut second, "second", 40),
        pass_through_many(&mut third, "third", 30),
    );
    let newest_epoch = pass_through(&mut first, "newest").await;
    let mut checker = Member::connect(&server, "checker").await;
    // The room with a member kept its whole history; so did the newest memberless room.
    recovers(&mut checker, "kept", (&kept_epoch, 0), 5).await;
    recovers(&mut checker, "newest", (&newest_epoch, 0), 1).await;
    // The oldest made way long ago: its history is gone.
    let (_, offset, recovered) = checker.join("first-0", Some((&oldest_epoch, 1))).await;
    assert_eq!((offset, recovered), (0, false), "first-0 kept its history");
    // Rooms somebody is in are never evicted: the checker is in 3, 17 more with members
    // fill the server, and then no room keeps only history: the next new room is refused.
    let mut holder = Member::connect(&server, "holder").await;
    for n in 0..16 {
        holder.join(&format!("held-{n}"), None).await;
    }
    let mut last = Member::connect(&server, "last").await;
    last.join("held-16", None).await;
    last.send(json!({"type": "join", "room": "held-17"})).await;
    assert_eq!(
        last.expect_error(ErrorCode::Unavailable).await,
        (Some("held-17".into()), None)
    );
    recovers(&mut checker, "kept", (&kept_epoch, 0), 5).await;
    recovers(&mut checker, "newest", (&newest_epoch, 0), 1).await;
}

/// Reads what a member of a room receives while `acks` of its own publishes are acked:
/// messages at exactly `offsets`, in order, and `acks` acks, each id once.
async fn receives(member: &mut Member, offsets: std::ops::RangeInclusive<u64>, acks: usize) {
    let expected: Vec<u64> = offsets.collect();
    let (mut got, mut acked) = (Vec::new(), HashSet::new());
    while got.len() < expected.len() || acked.len() < acks {
        match member.next().await {
            ServerFrame::Message { offset, .. } => got.push(offset),
            ServerFrame::Ack { id, .. } => assert!(acked.insert(id.clone()), "{id} acked twice"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, expected);
    assert_eq!(acked.len(), acks);
}

#[tokio::test]
async fn an_id_is_recognised_after_1500_other_ids_in_its_room() {
    let server = TestServer::start(
        // 1,500 publishes at once, past any rate: a queue that holds them.
        &[&UNLIMITED[..], &["--room-queue-bytes", "1048576"]].concat(),
    )
    .await;
    let mut watcher = Member::connect(&server, "watcher").await;
    watcher.join("lobby", None).await;
    let mut publishers = Vec::new();
    for name in ["p0", "p1", "p2"] {
        let mut publisher = Member::connect(&server, name).await;
        publisher.join("lobby", None).await;
        publishers.push(publisher);
    }
    publishers[0].send(publish("lobby", "x", "first")).await;
    assert_eq!(
        published(&mut publishers[0], 1).await,
        [(1, "x".to_owned())]
    );
    // 1,500 other ids, 500 from each publisher in one write, all at once.
    for (which, publisher) in publishers.iter_mut().enumerate() {
        publisher
            .send_all((0..500).map(|n| publish("lobby", &format!("p{which}-{n}"), "other")))
            .await;
    }
    let mut reads = vec![receives(&mut watcher, 1..=1_501, 0)];
    for (which, publisher) in publishers.iter_mut().enumerate() {
        let from = if which == 0 { 2 } else { 1 };
        reads.push(receives(publisher, from..=1_501, 500));
    }
    futures_util::future::join_all(reads).await;
    // Sent again, as after a reconnect: acked with its first offset and not broadcast again.
    let mut back = Member::connect(&server, "p0").await;
    assert_eq!(back.join("lobby", None).await.1, 1_501);
    back.send(publish("lobby", "x", "first")).await;
    match back.next().await {
        ServerFrame::Ack { id, offset, .. } => {
            assert_eq!((id.as_str(), offset), ("x", 1), "x acked at a new offset");
        }
        ServerFrame::Message { id, offset, .. } => {
            panic!("{id} was broadcast again, at {offset}")
        }
        other => panic!("expected the ack of x, got {other:?}"),
    }
    // Nothing was broadcast: a marker is every member's next message, at 1,502.
    back.send(publish("lobby", "marker", "m")).await;
    for member in [&mut back, &mut watcher]
        .into_iter()
        .chain(publishers.iter_mut())
    {
        assert_eq!(member.messages(1).await, [(1_502, "marker".to_owned())]);
    }
}

/// A member coming back to `room` from `since`, after `ids` were published there since its
/// position's room lost its history: it may be told that nothing can be recovered, but if
/// it is told `recovered: true`, every one of `ids` must follow.
async fn comes_back_after_a_loss(
    server: &TestServer,
    room: &str,
    since: (&str, u64),
    ids: &[&str],
) {
    let mut back = Member::connect(server, "back").await;
    let (_, last, recovered) = back.join(room, Some(since)).await;
    if recovered {
        // What a recovery replays: every offset after `since` up to the room's last.
        let replayed: Vec<String> = back
            .messages((last - since.1) as usize)
            .await
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        assert_eq!(replayed, ids, "{room}: recovered, yet a message is missing");
    }
}

#[tokio::test]
async fn a_room_that_lost_its_history_never_claims_to_recover_past_the_loss() {
    // The history expires (1 s) while ana is in the room; she leaves, and the room, with
    // nothing left to keep, goes. Made again, it must not pass its new messages off as the
    // ones after ana's old position.
    let server = TestServer::start(&["--room-history-ttl", "1"]).await;
    let mut ana = Member::connect(&server, "ana").await;
    let (epoch, _, _) = ana.join("a", None).await;
    ana.send(publish("a", "old", "before")).await;
    assert_eq!(published(&mut ana, 1).await, [(1, "old".to_owned())]);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ana.send(json!({"type": "leave", "room": "a"})).await;
    assert_eq!(
        ana.next().await,
        ServerFrame::Left {
            room: "a".into(),
            reason: None
        }
    );
    ana.join("a", None).await;
    let ids = ["new-1", "new-2", "new-3"];
    ana.send_all(ids.iter().map(|id| publish("a", id, "after")))
        .await;
    published(&mut ana, 3).await;
    comes_back_after_a_loss(&server, "a", (&epoch, 1), &ids).await;
    // Evicted at `--max-rooms` for a room somebody is in, the same.
    let server = TestServer::start_with_env(JOINS_UNLIMITED, &["--max-rooms", "2"]).await;
    let mut ana = Member::connect(&server, "ana").await;
    let epoch = pass_through(&mut ana, "b").await;
    let mut bo = Member::connect(&server, "bo").await;
    bo.join("c", None).await;
    bo.join("d", None).await;
    bo.send(json!({"type": "leave", "room": "d"})).await;
    assert_eq!(
        bo.next().await,
        ServerFrame::Left {
            room: "d".into(),
            reason: None
        }
    );
    ana.join("b", None).await;
    ana.send_all(ids.iter().map(|id| publish("b", id, "after")))
        .await;
    published(&mut ana, 3).await;
    comes_back_after_a_loss(&server, "b", (&epoch, 1), &ids).await;
}
