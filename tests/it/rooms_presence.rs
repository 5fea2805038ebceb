//! Who is here, who types and what was said before, against the real binary: presence per
//! user (the snapshot holds oneself, a second tab changes nothing, the last tab's leave shows
//! within a second), changes coalesced and net, the member cap; typing forwarded to the others,
//! once per interval per user, never back, never replayed, never from a reader; a join's
//! recent history.

use std::time::Duration;

use room_protocol::{PresentUser, ServerFrame};
use serde_json::json;

use crate::rooms::{Member, publish};
use crate::rooms_auth::{Keys, claims, hs256, sign_in, start};
use crate::support::TestServer;

/// A presence frame's fields: count, members, joined, left, capped.
type Presence = (
    u64,
    Option<Vec<PresentUser>>,
    Option<Vec<PresentUser>>,
    Option<Vec<PresentUser>>,
    bool,
);

fn presence(frame: ServerFrame) -> Presence {
    match frame {
        ServerFrame::Presence {
            count,
            members,
            joined,
            left,
            capped,
            ..
        } => (count, members, joined, left, capped),
        other => panic!("expected presence, got {other:?}"),
    }
}

fn names(list: Option<&Vec<PresentUser>>) -> Vec<String> {
    list.into_iter()
        .flatten()
        .map(|present| present.name.clone())
        .collect()
}

/// Joins `room` asking for presence (and `history` messages); returns the snapshot that
/// follows `joined`.
async fn join_with_presence(member: &mut Member, room: &str) -> Presence {
    member
        .send(json!({"type": "join", "room": room, "presence": true}))
        .await;
    assert!(
        matches!(member.next().await, ServerFrame::Joined { .. }),
        "joined first"
    );
    presence(member.next().await)
}

/// The next presence frame, skipping nothing else: any other frame first is a failure.
async fn next_presence(member: &mut Member) -> Presence {
    presence(member.next().await)
}

/// A room's presence as a client keeps it: the frames applied as set operations.
#[derive(Debug, Default)]
struct View {
    /// Names by user id.
    users: std::collections::BTreeMap<String, String>,
    count: u64,
    frames: usize,
}

impl View {
    fn apply(&mut self, (count, members, joined, left, capped): Presence) {
        self.frames += 1;
        self.count = count;
        if capped {
            return;
        }
        if let Some(members) = members {
            self.users = members.into_iter().map(|p| (p.user, p.name)).collect();
        }
        for present in joined.into_iter().flatten() {
            self.users.insert(present.user, present.name);
        }
        for present in left.into_iter().flatten() {
            self.users.remove(&present.user);
        }
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.users.values().cloned().collect();
        names.sort();
        names
    }

    /// Reads `member`'s presence frames until its view names exactly `expected` (and the
    /// count agrees); any other frame first is a failure.
    async fn until(&mut self, member: &mut Member, expected: &[&str]) {
        while self.names() != expected || self.count as usize != expected.len() {
            self.apply(next_presence(member).await);
        }
    }
}

#[tokio::test]
async fn presence_is_per_user_holds_oneself_and_a_leave_shows_within_a_second() {
    let keys = Keys::new();
    let server = start(&keys, &[]).await;
    let token = |sub: &str, name: &str| hs256(&claims(sub, Some(name), json!({"*": "write"}), 600));
    let (mut ana, _) = sign_in(&server, &token("u-ana", "Ana")).await;
    let (count, members, ..) = join_with_presence(&mut ana, "lobby").await;
    assert_eq!(
        (count, names(members.as_ref())),
        (1, vec!["Ana".to_owned()])
    );
    assert_eq!(
        members.expect("members")[0].user,
        "u-ana",
        "presence is by user id"
    );
    let mut anas = View::default();

    let (mut bo, _) = sign_in(&server, &token("u-bo", "Bo")).await;
    let mut bos = View::default();
    bos.apply(join_with_presence(&mut bo, "lobby").await);
    bos.until(&mut bo, &["Ana", "Bo"]).await;
    anas.until(&mut ana, &["Ana", "Bo"]).await;

    // Ana's second tab changes nothing: Cy's arrival is all Bo hears of, in one change.
    let (mut ana_again, _) = sign_in(&server, &token("u-ana", "Ana")).await;
    ana_again.join("lobby", None).await;
    let (mut cy, _) = sign_in(&server, &token("u-cy", "Cy")).await;
    cy.join("lobby", None).await;
    bos.until(&mut bo, &["Ana", "Bo", "Cy"]).await;
    // The second tab goes: still nothing; Cy's leave is what Bo hears.
    ana_again
        .send(json!({"type": "leave", "room": "lobby"}))
        .await;
    cy.send(json!({"type": "leave", "room": "lobby"})).await;
    bos.until(&mut bo, &["Ana", "Bo"]).await;
    // Ana's last tab closes: gone from Bo's presence within a second.
    let closed = tokio::time::Instant::now();
    ana.client.close(None).await.expect("closes");
    bos.until(&mut bo, &["Bo"]).await;
    // Nothing but changes: no frame said what was known already, bar Bo himself once.
    assert!(bos.frames <= 5, "{} frames", bos.frames);
    assert!(
        closed.elapsed() < Duration::from_secs(1),
        "{:?}",
        closed.elapsed()
    );
}

#[tokio::test]
async fn a_hundred_joins_within_an_interval_come_as_a_few_frames_naming_each_once() {
    const JOINERS: usize = 100;
    let server = TestServer::start(&[]).await;
    let mut watcher = Member::connect(&server, "watcher").await;
    join_with_presence(&mut watcher, "busy").await;
    let mut joiners = Vec::with_capacity(JOINERS);
    for n in 0..JOINERS {
        let mut member = Member::connect(&server, &format!("m{n}")).await;
        member.send(json!({"type": "join", "room": "busy"})).await;
        joiners.push(member);
    }
    let mut named = std::collections::HashMap::new();
    let mut frames = 0;
    while named.len() < JOINERS + 1 {
        let (count, members, joined, left, _) = next_presence(&mut watcher).await;
        frames += 1;
        assert!(members.is_none() && names(left.as_ref()).is_empty());
        for name in names(joined.as_ref()) {
            *named.entry(name).or_insert(0) += 1;
        }
        assert_eq!(count as usize, named.len(), "the count follows");
    }
    assert!(
        named.values().all(|times| *times == 1),
        "each once: {named:?}"
    );
    // At most one frame per 200 ms: a hundred joins in well under a few seconds.
    assert!(frames <= 10, "{frames} frames for {JOINERS} joins");
    // And all leave: the same, the other way.
    drop(joiners);
    let mut gone = 0;
    let mut leave_frames = 0;
    while gone < JOINERS {
        let (count, _, joined, left, _) = next_presence(&mut watcher).await;
        leave_frames += 1;
        assert!(names(joined.as_ref()).is_empty());
        gone += names(left.as_ref()).len();
        assert_eq!(count as usize, 1 + JOINERS - gone);
    }
    assert!(
        leave_frames <= 10,
        "{leave_frames} frames for {JOINERS} leaves"
    );
}

#[tokio::test]
async fn presence_frames_larger_than_a_members_whole_queue_bound_reach_it_whole() {
    // 300 users with 32-character names: about 22 KB of names, past the smallest queue bound
    // (16 KiB), in the list every member gets when the room falls back under the cap.
    const JOINERS: usize = 300;
    let cap = JOINERS.to_string();
    let server = TestServer::start(&[
        "--room-queue-bytes",
        "16384",
        "--presence-max-members",
        cap.as_str(),
    ])
    .await;
    let name = |n: usize| format!("member-{n:03}-{}", "x".repeat(21));
    assert_eq!(name(0).len(), room_protocol::names::MAX_DISPLAY_NAME);
    let mut watcher = Member::connect(&server, "watcher").await;
    let mut watchers = View::default();
    watchers.apply(join_with_presence(&mut watcher, "crowd").await);
    let mut joiners = Vec::with_capacity(JOINERS);
    for n in 0..JOINERS {
        let mut member = Member::connect(&server, &name(n)).await;
        member.send(json!({"type": "join", "room": "crowd"})).await;
        joiners.push(member);
    }
    // Past the cap: the count alone.
    loop {
        let (count, members, joined, _, capped) = next_presence(&mut watcher).await;
        if count as usize == JOINERS + 1 {
            assert!(capped && members.is_none() && joined.is_none());
            break;
        }
    }
    // One leaves: back under it, everyone again, in one frame larger than the whole bound.
    drop(joiners.remove(0));
    let (count, members, ..) = next_presence(&mut watcher).await;
    let frame_bytes = serde_json::to_string(&members).expect("json").len();
    assert!(
        frame_bytes > 16_384,
        "{frame_bytes} bytes: not past the bound"
    );
    let mut everyone: Vec<String> = (1..JOINERS).map(name).collect();
    everyone.push("watcher".to_owned());
    everyone.sort();
    let mut listed = names(members.as_ref());
    listed.sort();
    assert_eq!((count as usize, listed), (JOINERS, everyone));
    // Still in the room: a publish reaches it.
    joiners[0].send(publish("crowd", "p", "still here?")).await;
    loop {
        match watcher.next().await {
            ServerFrame::Message { text, .. } => {
                assert_eq!(text, "still here?");
                break;
            }
            ServerFrame::Presence { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn past_the_member_cap_presence_is_the_count_and_under_it_everyone_again() {
    let server = TestServer::start(&["--presence-max-members", "3"]).await;
    let mut watcher = Member::connect(&server, "watcher").await;
    join_with_presence(&mut watcher, "cap").await;
    let mut others = Vec::new();
    for name in ["b", "c", "d"] {
        let mut member = Member::connect(&server, name).await;
        member.join("cap", None).await;
        others.push(member);
    }
    // 4 users, past the cap of 3: counts only (one or more frames as the joins spread).
    loop {
        let (count, members, joined, left, capped) = next_presence(&mut watcher).await;
        if capped {
            assert_eq!(count, 4);
            assert!(members.is_none() && joined.is_none() && left.is_none());
            break;
        }
    }
    // A member joining now gets the count alone too.
    let mut late = Member::connect(&server, "late").await;
    let (count, members, _, _, capped) = join_with_presence(&mut late, "cap").await;
    assert_eq!((count, members, capped), (5, None, true));
    // Back to 3: everyone, named again.
    drop(late);
    others.pop();
    let (count, members, ..) = loop {
        let frame = next_presence(&mut watcher).await;
        if !frame.4 {
            break frame;
        }
    };
    assert_eq!(
        (count, names(members.as_ref())),
        (
            3,
            vec!["b".to_owned(), "c".to_owned(), "watcher".to_owned()]
        )
    );
}

#[tokio::test]
async fn typing_reaches_the_others_once_per_interval_never_its_sender_never_a_replay() {
    let server = TestServer::start(&[]).await;
    let mut ana = Member::connect(&server, "ana").await;
    let mut bo = Member::connect(&server, "bo").await;
    ana.join("tea", None).await;
    bo.join("tea", None).await;
    for _ in 0..5 {
        ana.send(json!({"type": "typing", "room": "tea"})).await;
    }
    match bo.next().await {
        ServerFrame::Typing { room, user, name } => {
            assert_eq!((room.as_str(), name.as_str()), ("tea", "ana"));
            assert!(user.starts_with("anon-"), "{user}");
        }
        other => panic!("expected typing, got {other:?}"),
    }
    // A message after the burst: the next thing either of them gets (the four other typings
    // were dropped, and none came back to ana).
    ana.send(publish("tea", "m1", "tea is ready")).await;
    assert!(matches!(bo.next().await, ServerFrame::Message { .. }));
    for _ in 0..2 {
        assert!(matches!(
            ana.next().await,
            ServerFrame::Message { .. } | ServerFrame::Ack { .. }
        ));
    }
    // The interval over, typing goes out again.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    ana.send(json!({"type": "typing", "room": "tea"})).await;
    assert!(matches!(bo.next().await, ServerFrame::Typing { .. }));
    // A newcomer's replay holds the message, not the typing.
    let mut cy = Member::connect(&server, "cy").await;
    cy.send(json!({"type": "join", "room": "tea", "history": 10}))
        .await;
    assert!(matches!(cy.next().await, ServerFrame::Joined { .. }));
    assert!(matches!(cy.next().await, ServerFrame::Message { .. }));
    cy.send(publish("tea", "m2", "and cake")).await;
    for _ in 0..2 {
        assert!(matches!(
            cy.next().await,
            ServerFrame::Message { .. } | ServerFrame::Ack { .. }
        ));
    }
    // Typing in a room not joined is an error; the connection stays.
    cy.send(json!({"type": "typing", "room": "elsewhere"}))
        .await;
    cy.expect_error(room_protocol::ErrorCode::NotJoined).await;
}

#[tokio::test]
async fn typing_from_a_reader_is_dropped_quietly() {
    let keys = Keys::new();
    let server = start(&keys, &[]).await;
    let (mut reader, _) = sign_in(
        &server,
        &hs256(&claims("u-r", Some("Reader"), json!({"news": "read"}), 600)),
    )
    .await;
    let (mut writer, _) = sign_in(
        &server,
        &hs256(&claims(
            "u-w",
            Some("Writer"),
            json!({"news": "write"}),
            600,
        )),
    )
    .await;
    reader.join("news", None).await;
    writer.join("news", None).await;
    reader.send(json!({"type": "typing", "room": "news"})).await;
    writer.send(json!({"type": "typing", "room": "news"})).await;
    // The writer's typing reaches the reader; the reader's never reaches the writer, whose
    // next frame is its own message.
    assert!(matches!(reader.next().await, ServerFrame::Typing { name, .. } if name == "Writer"));
    writer.send(publish("news", "n1", "headline")).await;
    assert!(matches!(
        writer.next().await,
        ServerFrame::Message { .. } | ServerFrame::Ack { .. }
    ));
}

/// The offsets of the messages replayed after a join with `request`, up to `expected` of
/// them, and whether the join recovered.
async fn replay(
    member: &mut Member,
    request: serde_json::Value,
    expected: usize,
) -> (bool, Vec<u64>) {
    member.send(request).await;
    let recovered = match member.next().await {
        ServerFrame::Joined { recovered, .. } => recovered,
        other => panic!("expected joined, got {other:?}"),
    };
    let mut offsets = Vec::new();
    for _ in 0..expected {
        match member.next().await {
            ServerFrame::Message { offset, .. } => offsets.push(offset),
            other => panic!("expected a replayed message, got {other:?}"),
        }
    }
    (recovered, offsets)
}

/// What a join with `history` gets on `server`, whose room keeps 4 of the 6 published.
async fn history_is_replayed(server: &TestServer) {
    let mut author = Member::connect(server, "author").await;
    let (epoch, ..) = author.join("old", None).await;
    for n in 1..=6 {
        author
            .send(publish("old", &format!("h{n}"), "said before"))
            .await;
    }
    author.messages(6).await;
    let mut reader = Member::connect(server, "reader").await;
    let join = |history: u64| json!({"type": "join", "room": "old", "history": history});
    assert_eq!(replay(&mut reader, join(2), 2).await, (false, vec![5, 6]));
    assert_eq!(
        replay(&mut reader, join(100), 4).await,
        (false, vec![3, 4, 5, 6])
    );
    // As many as a u64 holds (Redis's COUNT is signed): all that is kept, no error.
    assert_eq!(
        replay(&mut reader, join(u64::MAX), 4).await,
        (false, vec![3, 4, 5, 6])
    );
    // None asked, none given: a publish is the next thing the reader sees.
    assert_eq!(replay(&mut reader, join(0), 0).await, (false, vec![]));
    author.send(publish("old", "h7", "live")).await;
    assert!(matches!(
        reader.next().await,
        ServerFrame::Message { offset: 7, .. }
    ));
    // A position that cannot be recovered (another epoch): the recent history instead.
    let lost = json!({"type": "join", "room": "old", "history": 3,
                      "since": {"epoch": "0000000000000000beef", "offset": 2}});
    assert_eq!(replay(&mut reader, lost, 3).await, (false, vec![5, 6, 7]));
    // One that can: what follows it, and `history` changes nothing.
    let kept = json!({"type": "join", "room": "old", "history": 3,
                      "since": {"epoch": epoch, "offset": 5}});
    assert_eq!(replay(&mut reader, kept, 2).await, (true, vec![6, 7]));
}

#[tokio::test]
async fn a_join_gets_the_recent_history_it_asks_for() {
    let server = TestServer::start(&["--room-history", "4"]).await;
    history_is_replayed(&server).await;
}

#[tokio::test]
async fn a_join_gets_the_recent_history_it_asks_for_through_redis() {
    let redis = crate::support::Redis::start().await;
    let server = crate::redis_rooms::instance(&redis, &["--room-history", "4"]).await;
    history_is_replayed(&server).await;
}

#[tokio::test]
async fn across_instances_a_leave_shows_within_a_second_and_a_killed_instances_members_within_the_ttl()
 {
    let redis = crate::support::Redis::start().await;
    let args = ["--presence-ttl", "3"];
    let first = crate::redis_rooms::instance(&redis, &args).await;
    let mut second = crate::redis_rooms::instance(&redis, &args).await;
    let mut ana = Member::connect(&first, "ana").await;
    let mut anas = View::default();
    anas.apply(join_with_presence(&mut ana, "far").await);
    assert_eq!((anas.count, anas.names()), (1, vec!["ana".to_owned()]));
    // Bo on the other instance: each hears of the other.
    let mut bo = Member::connect(&second, "bo").await;
    let mut bos = View::default();
    bos.apply(join_with_presence(&mut bo, "far").await);
    anas.until(&mut ana, &["ana", "bo"]).await;
    bos.until(&mut bo, &["ana", "bo"]).await;
    // Bo closes: Ana's presence says so within a second.
    let closed = tokio::time::Instant::now();
    bo.client.close(None).await.expect("closes");
    anas.until(&mut ana, &["ana"]).await;
    assert!(
        closed.elapsed() < Duration::from_secs(1),
        "{:?}",
        closed.elapsed()
    );
    // Cy on the other instance, which then dies without a word: gone within the TTL (3 s)
    // and 2 s more.
    let mut cy = Member::connect(&second, "cy").await;
    cy.join("far", None).await;
    anas.until(&mut ana, &["ana", "cy"]).await;
    let killed = tokio::time::Instant::now();
    second.signal("KILL");
    let _ = second.wait().await;
    tokio::time::timeout(Duration::from_secs(8), anas.until(&mut ana, &["ana"]))
        .await
        .expect("the dead instance's members leave");
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "gone after {:?}",
        killed.elapsed()
    );
    // Typing crosses instances too.
    let third = crate::redis_rooms::instance(&redis, &args).await;
    let mut dan = Member::connect(&third, "dan").await;
    dan.join("far", None).await;
    anas.until(&mut ana, &["ana", "dan"]).await;
    dan.send(json!({"type": "typing", "room": "far"})).await;
    assert!(matches!(ana.next().await, ServerFrame::Typing { name, .. } if name == "dan"));
}

#[tokio::test]
async fn an_instance_that_shuts_down_cleanly_takes_its_members_out_of_presence_at_once() {
    let redis = crate::support::Redis::start().await;
    // The default TTL (15 s): a leave that waited for it would fail the bound below.
    let first = crate::redis_rooms::instance(&redis, &[]).await;
    let second = crate::redis_rooms::instance(&redis, &[]).await;
    let mut ana = Member::connect(&first, "ana").await;
    let mut anas = View::default();
    anas.apply(join_with_presence(&mut ana, "porch").await);
    let mut dee = Member::connect(&first, "dee").await;
    let mut dees = View::default();
    dees.apply(join_with_presence(&mut dee, "yard").await);
    // Several members in several rooms on the instance that stops: their sessions leave
    // their rooms while it shuts down, in whatever order the tasks run, and every room must
    // still hear that the instance has nobody left in it.
    let mut leaving = Vec::new();
    for name in ["bo", "cy", "eve"] {
        let mut member = Member::connect(&second, name).await;
        member.join("porch", None).await;
        member.join("yard", None).await;
        leaving.push(member);
    }
    anas.until(&mut ana, &["ana", "bo", "cy", "eve"]).await;
    dees.until(&mut dee, &["bo", "cy", "dee", "eve"]).await;
    let stopped = tokio::time::Instant::now();
    second.signal("TERM");
    anas.until(&mut ana, &["ana"]).await;
    dees.until(&mut dee, &["dee"]).await;
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "gone after {:?}",
        stopped.elapsed()
    );
}

#[tokio::test]
async fn a_user_who_comes_while_an_instances_pub_sub_is_down_shows_there_once_it_is_back() {
    use crate::redis_proxy::{Held, Matching, RedisProxy};
    use hyper::StatusCode;
    const RESUBSCRIBE_HELD: Duration = Duration::from_millis(1500);
    let redis = crate::support::Redis::start().await;
    let proxy = RedisProxy::start(&redis.socket_path());
    // A TTL whose heartbeats (every third of it, 20 s) come long after the bound below: only
    // an instance that asks when its link is back hears what it missed in time.
    let ttl = ["--presence-ttl", "60"];
    let url = proxy.url();
    let mut args = vec!["--redis-url", url.as_str()];
    args.extend_from_slice(&ttl);
    let first = TestServer::start(&args).await;
    first.wait_for_readiness(StatusCode::OK).await;
    let second = crate::redis_rooms::instance(&redis, &ttl).await;
    // A third instance, whose member sees what the second says on the room's channel.
    let third = crate::redis_rooms::instance(&redis, &ttl).await;
    let mut ana = Member::connect(&first, "ana").await;
    let mut anas = View::default();
    anas.apply(join_with_presence(&mut ana, "porch").await);
    let mut bo = Member::connect(&second, "bo").await;
    bo.join("porch", None).await;
    let mut dee = Member::connect(&third, "dee").await;
    let mut dees = View::default();
    dees.apply(join_with_presence(&mut dee, "porch").await);
    anas.until(&mut ana, &["ana", "bo", "dee"]).await;
    dees.until(&mut dee, &["ana", "bo", "dee"]).await;

    // The first instance loses pub/sub, and its new subscription waits in the proxy.
    proxy.hold(
        Matching::Named("SUBSCRIBE".to_owned()),
        Held::Command,
        RESUBSCRIBE_HELD,
        1,
    );
    assert_eq!(proxy.cut_subscribers(), 1);
    let held_at = proxy.wait_for_holds(1).await;
    // Cy comes meanwhile: the second instance says so on the room's channel, where the third
    // hears it and the first does not.
    let mut cy = Member::connect(&second, "cy").await;
    cy.join("porch", None).await;
    dees.until(&mut dee, &["ana", "bo", "cy", "dee"]).await;
    assert!(
        held_at.elapsed() < RESUBSCRIBE_HELD,
        "the machine took {:?}: cy's arrival was not said during the outage",
        held_at.elapsed()
    );
    first.wait_for_readiness(StatusCode::OK).await;
    let back = tokio::time::Instant::now();
    anas.until(&mut ana, &["ana", "bo", "cy", "dee"]).await;
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "cy shown {:?} after the link was back",
        back.elapsed()
    );
}

#[tokio::test]
async fn a_user_typing_on_two_instances_is_said_once_per_interval() {
    let redis = crate::support::Redis::start().await;
    let keys = Keys::new();
    let hmac = keys.path("hmac");
    let url = redis.url();
    let args = ["--auth-key", hmac.as_str(), "--redis-url", url.as_str()];
    let first = TestServer::start(&args).await;
    let second = TestServer::start(&args).await;
    for server in [&first, &second] {
        server.wait_for_readiness(hyper::StatusCode::OK).await;
    }
    let token = |sub: &str, name: &str| hs256(&claims(sub, Some(name), json!({"*": "write"}), 600));
    // Ana in a tab on each instance; Bo beside the second tab.
    let (mut ana_here, _) = sign_in(&first, &token("u-ana", "Ana")).await;
    let (mut ana_there, _) = sign_in(&second, &token("u-ana", "Ana")).await;
    let (mut bo, _) = sign_in(&second, &token("u-bo", "Bo")).await;
    let mut bos = View::default();
    bos.apply(join_with_presence(&mut bo, "desk").await);
    ana_here.join("desk", None).await;
    ana_there.join("desk", None).await;
    bos.until(&mut bo, &["Ana", "Bo"]).await;
    // Ana types in the first tab: Bo hears it, through the other instance.
    ana_here
        .send(json!({"type": "typing", "room": "desk"}))
        .await;
    assert!(matches!(bo.next().await, ServerFrame::Typing { user, .. } if user == "u-ana"));
    // And at once in the second: the same user within the interval, not said again. Her
    // message after it is the next thing Bo gets.
    ana_there
        .send(json!({"type": "typing", "room": "desk"}))
        .await;
    ana_there.send(publish("desk", "m1", "done typing")).await;
    match bo.next().await {
        ServerFrame::Message { text, .. } => assert_eq!(text, "done typing"),
        other => panic!("expected the message, got {other:?}"),
    }
}
