//! The engine with the memory broker, through the calls a session makes: the hub and the
//! broker together.

use std::sync::Arc;

use room_protocol::{ErrorCode, Position, ServerFrame};

use super::queue::{MemberQueue, Taken};
use super::{Engine, Join, Publish, RoomSettings, Visitor};
use crate::metrics::RoomMetrics;
use crate::outgoing::Compression;

fn settings() -> RoomSettings {
    RoomSettings {
        history_messages: 100,
        history_bytes: 256 * 1024,
        history_ttl_ms: 300_000,
        max_rooms: 10,
        dedup_window_ms: 300_000,
        dedup_max_ids: 100_000,
        presence_max_members: 1000,
        presence_ttl_ms: 15_000,
    }
}

fn publish<'a>(room: &'a str, id: &'a str, text: &'a str) -> Publish<'a> {
    Publish {
        room,
        id,
        user: "anon-1",
        from: "ana",
        text,
        dedup_user: None,
    }
}

/// What a member's queue holds, as frames (shared with the hub's tests).
pub(super) fn frames(queue: &MemberQueue) -> Vec<ServerFrame> {
    let mut taken = Vec::new();
    queue.take_all(&mut taken);
    taken
        .iter()
        .map(|frame| ServerFrame::from_json(frame.text()).expect("the engine writes valid frames"))
        .collect()
}

/// The offsets of the messages among `frames`.
pub(super) fn offsets(frames: &[ServerFrame]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::Message { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect()
}

fn queue() -> Arc<MemberQueue> {
    Arc::new(MemberQueue::new(1 << 20, 1 << 19, Compression::PLAIN))
}

fn engine(settings: RoomSettings) -> Arc<Engine> {
    Engine::embedded(settings, RoomMetrics::default())
}

/// Someone in a room's presence who does not follow it.
pub(crate) fn anyone() -> Visitor {
    Visitor {
        user: "anon-0".into(),
        name: "anyone".into(),
        watch: false,
    }
}

/// A join of `room` from `since`, nothing more.
pub(crate) fn plain_join(room: &str, since: Option<&Position>) -> Join {
    Join {
        room: room.to_owned(),
        since: since.cloned(),
        history: 0,
        visitor: anyone(),
    }
}

fn join(
    engine: &Engine,
    room: &str,
    since: Option<&Position>,
    member: u64,
    now: u64,
) -> Arc<MemberQueue> {
    let queue = queue();
    futures_util::FutureExt::now_or_never(engine.join(
        &plain_join(room, since),
        member,
        &queue,
        now,
    ))
    .expect("the memory broker never waits")
    .expect("joins");
    queue
}

fn publish_now(engine: &Engine, publish: &Publish<'_>, now: u64) -> Result<u64, ErrorCode> {
    futures_util::FutureExt::now_or_never(engine.publish(publish, now))
        .expect("the memory broker never waits")
        .map_err(|problem| problem.code)
}

fn epoch_of(frames: &[ServerFrame]) -> String {
    match &frames[0] {
        ServerFrame::Joined { epoch, .. } => epoch.clone(),
        other => panic!("expected joined, got {other:?}"),
    }
}

#[test]
fn members_get_joined_then_every_message_in_order() {
    let engine = engine(settings());
    let queue = join(&engine, "lobby", None, 1, 0);
    for n in 0..500 {
        let offset = publish_now(&engine, &publish("lobby", &format!("m{n}"), "hi"), n);
        assert_eq!(offset, Ok(n + 1));
    }
    let got = frames(&queue);
    assert!(matches!(
        &got[0],
        ServerFrame::Joined {
            offset: 0,
            recovered: false,
            ..
        }
    ));
    assert_eq!(offsets(&got), (1..=500).collect::<Vec<_>>());
}

#[test]
fn a_duplicate_id_gets_the_original_offset_and_is_not_broadcast_for_the_whole_window() {
    let engine = engine(settings());
    let queue = join(&engine, "lobby", None, 1, 0);
    assert_eq!(publish_now(&engine, &publish("lobby", "a", "x"), 1), Ok(1));
    // Far more ids than the old per-room cap of 1,000 in between.
    for n in 0..5_000 {
        publish_now(&engine, &publish("lobby", &format!("m{n}"), "y"), 2).expect("publishes");
    }
    assert_eq!(
        publish_now(&engine, &publish("lobby", "a", "x"), 299_000),
        Ok(1)
    );
    assert_eq!(offsets(&frames(&queue)).len(), 5_001);
    // Past the window the id is new again.
    assert_eq!(
        publish_now(&engine, &publish("lobby", "a", "x"), 300_002),
        Ok(5_002)
    );
}

#[test]
fn resuming_replays_exactly_what_was_missed() {
    let engine = engine(settings());
    let first = join(&engine, "lobby", None, 1, 0);
    let epoch = epoch_of(&frames(&first));
    for n in 1..=60 {
        publish_now(&engine, &publish("lobby", &format!("m{n}"), "hi"), n).expect("publishes");
    }
    let since = Position { epoch, offset: 10 };
    let queue = join(&engine, "lobby", Some(&since), 2, 61);
    let got = frames(&queue);
    assert!(matches!(
        &got[0],
        ServerFrame::Joined {
            offset: 60,
            recovered: true,
            ..
        }
    ));
    assert_eq!(offsets(&got), (11..=60).collect::<Vec<_>>());
    publish_now(&engine, &publish("lobby", "live", "hi"), 62).expect("publishes");
    assert_eq!(offsets(&frames(&queue)), [61]);
}

#[test]
fn past_history_or_from_another_epoch_nothing_is_replayed() {
    let engine = engine(settings());
    let first = join(&engine, "lobby", None, 1, 0);
    let epoch = epoch_of(&frames(&first));
    for n in 1..=250 {
        publish_now(&engine, &publish("lobby", &format!("m{n}"), "hi"), n).expect("publishes");
    }
    for since in [
        Position { epoch, offset: 100 },
        Position {
            epoch: "another".into(),
            offset: 240,
        },
    ] {
        let queue = join(&engine, "lobby", Some(&since), 3, 300);
        let got = frames(&queue);
        assert_eq!(got.len(), 1, "only joined");
        assert!(matches!(
            &got[0],
            ServerFrame::Joined {
                offset: 250,
                recovered: false,
                ..
            }
        ));
        engine.forget("lobby", 3, 300);
    }
}

#[test]
fn history_is_bounded_by_count_bytes_and_age() {
    let engine = engine(RoomSettings {
        history_bytes: 20_000,
        ..settings()
    });
    let big = join(&engine, "big", None, 1, 0);
    let small = join(&engine, "small", None, 2, 0);
    let epoch = |queue: &MemberQueue| epoch_of(&frames(queue));
    let (big_epoch, small_epoch) = (epoch(&big), epoch(&small));
    let text = "x".repeat(1_000);
    for n in 1..=1_000u64 {
        publish_now(&engine, &publish("big", &format!("m{n}"), &text), n).expect("publishes");
        publish_now(&engine, &publish("small", &format!("m{n}"), "hi"), n).expect("publishes");
    }
    let replayed = |room: &str, epoch: &str, now: u64| {
        let since = Position {
            epoch: epoch.to_owned(),
            offset: 0,
        };
        // From the start: only what is kept can come, so the join is not recovered; a join
        // from the oldest kept offset tells what is kept.
        let queue = join(&engine, room, Some(&since), 9, now);
        let got = frames(&queue);
        engine.forget(room, 9, now);
        got
    };
    assert!(matches!(
        replayed("small", &small_epoch, 1_000)[0],
        ServerFrame::Joined {
            recovered: false,
            ..
        }
    ));
    let kept = |room: &str, epoch: &str, from: u64, now: u64| {
        let since = Position {
            epoch: epoch.to_owned(),
            offset: from,
        };
        let queue = join(&engine, room, Some(&since), 9, now);
        let got = offsets(&frames(&queue));
        engine.forget(room, 9, now);
        got
    };
    assert_eq!(
        kept("small", &small_epoch, 900, 1_000),
        (901..=1_000).collect::<Vec<_>>()
    );
    assert!(
        kept("small", &small_epoch, 899, 1_000).is_empty(),
        "901 is the oldest kept"
    );
    assert_eq!(kept("big", &big_epoch, 990, 1_000).len(), 10);
    assert!(
        kept("big", &big_epoch, 980, 1_000).is_empty(),
        "20 frames of over 1 KiB are more than 20,000 bytes"
    );
    assert!(
        kept("small", &small_epoch, 999, 1_000 + 300_000).is_empty(),
        "expired"
    );
}

#[test]
fn a_slow_member_is_dropped_and_never_slows_the_room() {
    let engine = engine(settings());
    let slow = Arc::new(MemberQueue::new(10_000, 5_000, Compression::PLAIN));
    let reader = Arc::new(MemberQueue::new(10_000, 5_000, Compression::PLAIN));
    for (member, queue) in [(1, &slow), (2, &reader)] {
        futures_util::FutureExt::now_or_never(engine.join(
            &plain_join("lobby", None),
            member,
            queue,
            0,
        ))
        .expect("no wait")
        .expect("joins");
    }
    let mut reader_offsets = Vec::new();
    for n in 1..=1_000 {
        publish_now(&engine, &publish("lobby", &format!("m{n}"), "hello"), n).expect("publishes");
        reader_offsets.extend(offsets(&frames(&reader)));
    }
    assert_eq!(reader_offsets, (1..=1_000).collect::<Vec<_>>());
    assert_eq!(slow.take_all(&mut Vec::new()), Taken::Overflowed);
}

#[test]
fn rooms_kept_for_history_make_way_for_a_room_with_members_oldest_first() {
    let engine = engine(settings());
    // Ten rooms with history and nobody in them.
    for n in 0..10 {
        let room = format!("r{n}");
        join(&engine, &room, None, n, n);
        publish_now(&engine, &publish(&room, "m", "x"), n).expect("publishes");
        engine.forget(&room, n, n);
    }
    // Each new room takes the place of the one that has gone longest without members.
    for n in 10..30 {
        let room = format!("r{n}");
        let queue = join(&engine, &room, None, n, n);
        assert_eq!(frames(&queue).len(), 1);
        publish_now(&engine, &publish(&room, "m", "x"), n).expect("publishes");
        engine.forget(&room, n, n);
    }
    let Engine { broker, .. } = &*engine;
    let super::Broker::Memory(memory) = broker else {
        panic!("memory broker")
    };
    assert_eq!(memory.room_count(), 10);
}

#[test]
fn joining_and_leaving_a_room_kept_for_its_history_stays_bounded_and_keeps_the_order() {
    let engine = engine(settings());
    let Engine { broker, .. } = &*engine;
    let super::Broker::Memory(memory) = broker else {
        panic!("memory broker")
    };
    // Nine rooms with history and nobody in them; "busy" is the newest of them all.
    for n in 0..9 {
        let room = format!("r{n}");
        join(&engine, &room, None, n, n);
        publish_now(&engine, &publish(&room, "m", "x"), n).expect("publishes");
        engine.forget(&room, n, n);
    }
    join(&engine, "busy", None, 100, 10);
    publish_now(&engine, &publish("busy", "m", "x"), 10).expect("publishes");
    engine.forget("busy", 100, 10);
    // Its last member comes and goes 10,000 times (a reload, again and again): the eviction
    // order keeps one current entry per room, and no more than twice them and its slack.
    for n in 0..10_000 {
        join(&engine, "busy", None, 100, 11 + n);
        engine.forget("busy", 100, 11 + n);
    }
    assert!(
        memory.memberless_entries() <= 2 * 10 + 64,
        "{} entries for 10 memberless rooms",
        memory.memberless_entries()
    );
    // The order is still by when each room lost its last member: the nine older rooms make
    // way first, "busy" last.
    for n in 0..9 {
        join(&engine, &format!("new{n}"), None, 200 + n, 20_000);
    }
    let queue = join(&engine, "busy", None, 300, 20_000);
    let replayed = frames(&queue);
    assert!(
        matches!(&replayed[0], ServerFrame::Joined { offset: 1, .. }),
        "busy kept its history: {replayed:?}"
    );
}

#[test]
fn rooms_with_members_are_never_evicted_and_past_them_a_join_is_refused() {
    let engine = engine(settings());
    let queues: Vec<_> = (0..10)
        .map(|n| join(&engine, &format!("r{n}"), None, n, 0))
        .collect();
    let extra = queue();
    let refused =
        futures_util::FutureExt::now_or_never(engine.join(&plain_join("r10", None), 10, &extra, 0))
            .expect("no wait");
    assert_eq!(
        refused.map(|_| ()).map_err(|p| p.code),
        Err(ErrorCode::Unavailable)
    );
    // A member leaving an empty room lets it go at once.
    engine.forget("r0", 0, 0);
    join(&engine, "r10", None, 10, 0);
    drop(queues);
}

#[test]
fn a_room_made_again_has_a_new_epoch() {
    let engine = engine(settings());
    let first = epoch_of(&frames(&join(&engine, "lobby", None, 1, 0)));
    engine.forget("lobby", 1, 0);
    let second = epoch_of(&frames(&join(&engine, "lobby", None, 1, 0)));
    assert_ne!(first, second);
}

#[test]
fn epochs_drawn_later_sort_after() {
    use std::cmp::Ordering;
    assert_eq!(
        super::compare_epochs(&super::fresh_epoch(1_000), &super::fresh_epoch(2_000)),
        Ordering::Less
    );
    assert_eq!(
        super::compare_epochs("0123456789abcdef", &super::fresh_epoch(0)),
        Ordering::Less,
        "the older 16-digit format is older"
    );
    assert_eq!(super::fresh_epoch(1_700_000_000_000).len(), 20);
}
