//! Rooms across instances (`--redis-url`): two real server processes on one real
//! `redis-server`, raw WebSocket clients spread over both, and everything that can die killed
//! for real: an instance (SIGKILL), Redis's pub/sub connections (`CLIENT KILL TYPE pubsub`),
//! Redis itself (restarted empty). Each test checks what a client ends with: every offset
//! once and in order, every message id once, and never a replay that is not exactly what was
//! missed.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use room_protocol::{ErrorCode, ServerFrame};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Client, PATIENCE, Redis, RespReply, TestServer, this_thread_cpu_time};

/// Publish bounds high enough that a test of ordering is not a test of the rate limit.
const UNLIMITED: [&str; 4] = ["--publish-rate", "1000000", "--publish-burst", "1000000"];

const ROOM: &str = "lobby";

/// A history that keeps every message these tests publish.
const WHOLE_HISTORY: [&str; 4] = [
    "--room-history",
    "10000",
    "--room-history-bytes",
    "16777216",
];

/// Starts an instance on its own free port, using `redis`, with `extra` flags.
pub(crate) async fn instance(redis: &Redis, extra: &[&str]) -> TestServer {
    let url = redis.url();
    let mut args = vec!["--redis-url", url.as_str(), "--metrics-addr", "127.0.0.1:0"];
    args.extend_from_slice(&UNLIMITED);
    // Bursts of hundreds at once, past any publish rate, and gap reads that bring them all
    // back at once: queues that hold them, so these tests are not tests of the queue bound.
    args.extend_from_slice(&["--room-queue-bytes", "1048576"]);
    args.extend_from_slice(extra);
    let server = TestServer::start(&args).await;
    // It listens before its pub/sub link is up, and answers joins `unavailable` until then,
    // as /readyz says.
    assert_eq!(
        server.wait_for_readiness(StatusCode::OK).await,
        "ready\nredis: reachable\n"
    );
    server
}

fn publish(id: &str, text: &str) -> Value {
    json!({"type": "publish", "room": ROOM, "id": id, "text": text})
}

/// `count` publishes with ids `PREFIX-0`, `PREFIX-1`, …
fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n}")).collect()
}

/// What one read from a connection gave.
#[derive(Debug)]
enum Event {
    Frame(ServerFrame),
    /// A close frame with its code (1005 for none).
    Closed(u16),
    /// The connection ended without a close frame (its instance was killed).
    Ended,
}

/// A client of the room that keeps, across its connections, everything it was given: each
/// message's offset and id in arrival order, and each ack.
struct Member {
    name: String,
    client: Client,
    /// Every message of the room seen, in arrival order, over all connections.
    seen: Vec<(u64, String)>,
    acks: HashMap<String, u64>,
}

impl Member {
    async fn connect(server: &TestServer, name: &str) -> Member {
        Member {
            name: name.to_owned(),
            client: server.connect(&format!("/rooms?name={name}")).await,
            seen: Vec::new(),
            acks: HashMap::new(),
        }
    }

    /// A new connection to `server`, keeping what was seen on the old one.
    async fn reconnect(&mut self, server: &TestServer) {
        self.client = server.connect(&format!("/rooms?name={}", self.name)).await;
    }

    /// Sends the requests in one write.
    async fn send_all(&mut self, requests: impl IntoIterator<Item = Value>) {
        for request in requests {
            self.client
                .feed(Message::text(request.to_string()))
                .await
                .expect("queued");
        }
        self.client.flush().await.expect("sent");
    }

    async fn publish_all(&mut self, ids: &[String]) {
        let name = self.name.clone();
        self.send_all(ids.iter().map(|id| publish(id, &format!("from {name}"))))
            .await;
    }

    /// The next event on the connection, within [`PATIENCE`]; messages and acks are recorded.
    async fn next_event(&mut self) -> Event {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.client.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{}: nothing arrived within {PATIENCE:?}; {} messages seen, the last at {}",
                        self.name,
                        self.seen.len(),
                        self.last_offset()
                    )
                });
            let text = match next {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Event::Closed(frame.map_or(1005, |frame| frame.code.into()));
                }
                // Control frames are the library's business.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(data))) => panic!("{}: binary {data:?}", self.name),
                Some(Err(_)) | None => return Event::Ended,
            };
            let frame = ServerFrame::from_json(&text)
                .unwrap_or_else(|error| panic!("{}: {error}: {text}", self.name));
            match &frame {
                ServerFrame::Message {
                    room, offset, id, ..
                } => {
                    assert_eq!(room, ROOM);
                    self.seen.push((*offset, id.clone()));
                }
                ServerFrame::Ack { id, offset, .. } => {
                    if let Some(first) = self.acks.insert(id.clone(), *offset) {
                        assert_eq!(first, *offset, "{}: {id} acked at two offsets", self.name);
                    }
                }
                ServerFrame::Joined { .. }
                | ServerFrame::Left { .. }
                | ServerFrame::Authed { .. }
                | ServerFrame::Presence { .. }
                | ServerFrame::Typing { .. }
                | ServerFrame::Error { .. } => {}
            }
            return Event::Frame(frame);
        }
    }

    /// Reads until `done` holds; anything but messages and acks on the way is a failure.
    async fn read_until(&mut self, what: &str, done: impl Fn(&Member) -> bool) {
        while !done(self) {
            match self.next_event().await {
                Event::Frame(ServerFrame::Message { .. } | ServerFrame::Ack { .. }) => {}
                other => panic!("{} waiting for {what}: {other:?}", self.name),
            }
        }
    }

    async fn read_until_seen(&mut self, id: &str) {
        self.read_until(id, |member| member.has_seen(id)).await;
    }

    async fn read_until_acked(&mut self, ids: &[String]) {
        self.read_until("acks", |member| {
            ids.iter().all(|id| member.acks.contains_key(id))
        })
        .await;
    }

    /// Reads what is left until the connection ends (its instance was killed).
    async fn read_to_the_end(&mut self) {
        loop {
            match self.next_event().await {
                Event::Frame(ServerFrame::Message { .. } | ServerFrame::Ack { .. }) => {}
                Event::Ended => return,
                other => panic!("{}: expected the end, got {other:?}", self.name),
            }
        }
    }

    /// Joins the room (resuming after `since` if given): `(epoch, offset, recovered)`.
    async fn join(&mut self, since: Option<(&str, u64)>) -> (String, u64, bool) {
        let mut request = json!({"type": "join", "room": ROOM});
        if let Some((epoch, offset)) = since {
            request["since"] = json!({"epoch": epoch, "offset": offset});
        }
        self.send_all([request]).await;
        match self.next_event().await {
            Event::Frame(ServerFrame::Joined {
                room,
                epoch,
                offset,
                recovered,
            }) => {
                assert_eq!(room, ROOM);
                (epoch, offset, recovered)
            }
            other => panic!("{}: expected joined, got {other:?}", self.name),
        }
    }

    fn has_seen(&self, id: &str) -> bool {
        self.seen.iter().any(|(_, seen)| seen == id)
    }

    fn last_offset(&self) -> u64 {
        self.seen.last().map_or(0, |(offset, _)| *offset)
    }

    /// The offset at which this member saw `id`.
    fn offset_of(&self, id: &str) -> u64 {
        self.seen
            .iter()
            .find(|(_, seen)| seen == id)
            .unwrap_or_else(|| panic!("{} never saw {id}", self.name))
            .0
    }

    /// Asserts that the member saw offsets `1..=expected.len()` in order, each once, and
    /// each id of `expected` once.
    fn assert_saw_each_once(&self, expected: &BTreeSet<String>) {
        let offsets: Vec<u64> = self.seen.iter().map(|(offset, _)| *offset).collect();
        let wanted: Vec<u64> = (1..=expected.len() as u64).collect();
        if offsets != wanted {
            let holes: Vec<u64> = wanted
                .iter()
                .filter(|offset| !offsets.contains(offset))
                .copied()
                .collect();
            let first_wrong = offsets
                .iter()
                .zip(&wanted)
                .position(|(got, wanted)| got != wanted)
                .unwrap_or(offsets.len().min(wanted.len()));
            let around = &self.seen[first_wrong.saturating_sub(2)..];
            panic!(
                "{}: {} offsets where 1..={} were due, once each, in order; missing {holes:?}; \
                 the first out of place at position {first_wrong}: {:?}",
                self.name,
                offsets.len(),
                expected.len(),
                &around[..around.len().min(6)]
            );
        }
        let got: Vec<&String> = self.seen.iter().map(|(_, id)| id).collect();
        let distinct: BTreeSet<String> = got.iter().map(|id| (*id).clone()).collect();
        assert_eq!(got.len(), distinct.len(), "{}: an id twice", self.name);
        assert_eq!(&distinct, expected, "{}: not every id", self.name);
    }

    /// The next event must be the close frame `code`, with no message before it.
    async fn expect_close(&mut self, code: u16) {
        loop {
            match self.next_event().await {
                Event::Closed(got) => {
                    assert_eq!(got, code, "{}", self.name);
                    return;
                }
                // Refusals of requests sent while the engine was away may still come.
                Event::Frame(ServerFrame::Error { .. }) => {}
                other => panic!("{}: expected close {code}, got {other:?}", self.name),
            }
        }
    }
}

/// The sum of `name` over the instances' `/metrics`.
async fn metric_sum(servers: &[&TestServer], name: &str) -> u64 {
    let mut sum = 0;
    for server in servers {
        sum += server.metric(name).await;
    }
    sum
}

#[tokio::test]
async fn two_instances_500_messages_from_both_every_client_sees_each_once_in_order() {
    let redis = Redis::start().await;
    let first = instance(&redis, &[]).await;
    let second = instance(&redis, &[]).await;
    let mut members = Vec::new();
    for (server, names) in [(&first, ["r1", "r2", "p1"]), (&second, ["r3", "r4", "p2"])] {
        for name in names {
            let mut member = Member::connect(server, name).await;
            member.join(None).await;
            members.push(member);
        }
    }
    let sent: HashMap<&str, Vec<String>> = [("p1", ids("p1", 250)), ("p2", ids("p2", 250))].into();
    // Both publishers send all of theirs at once, each to its own instance.
    let sends = members
        .iter_mut()
        .filter(|member| member.name.starts_with('p'))
        .map(|member| {
            let ids = sent[member.name.as_str()].clone();
            async move { member.publish_all(&ids).await }
        });
    futures_util::future::join_all(sends).await;
    for member in members
        .iter_mut()
        .filter(|member| member.name.starts_with('p'))
    {
        let own = sent[member.name.as_str()].clone();
        member.read_until_acked(&own).await;
    }
    // A last message after every ack: whatever anyone sees before it is all there is.
    let marker = vec!["marker".to_owned()];
    members[2].publish_all(&marker).await;
    let expected: BTreeSet<String> = sent.values().flatten().chain(&marker).cloned().collect();
    for member in &mut members {
        member.read_until_seen("marker").await;
        member.assert_saw_each_once(&expected);
        // Each publisher's messages in the order it sent them.
        for (publisher, ids) in &sent {
            let in_order: Vec<&String> = member
                .seen
                .iter()
                .map(|(_, id)| id)
                .filter(|id| id.starts_with(publisher))
                .collect();
            assert_eq!(in_order, ids.iter().collect::<Vec<_>>(), "{}", member.name);
        }
        // Each ack names the offset the message has for everyone.
        for (id, offset) in &member.acks {
            assert_eq!(*offset, member.offset_of(id), "{}: {id}", member.name);
        }
    }
    // The work was shared, not done twice: 501 publishes taken in all, and each instance
    // queued every one of them to each of its three members.
    assert_eq!(
        metric_sum(&[&first, &second], "chat_rooms_publishes_total").await,
        501
    );
    for server in [&first, &second] {
        assert_eq!(server.metric("chat_rooms_deliveries_total").await, 1503);
    }
    // One script call per publish and per join reached Redis: 501 + 6.
    let stats = match redis.command(&["INFO", "commandstats"]).await {
        RespReply::Bulk(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        other => panic!("INFO answered {other:?}"),
    };
    assert_eq!(succeeded_calls(&stats, "evalsha"), 507, "{stats}");
    // What Redis keeps, and for how long: the history bound (100 by default) and the
    // expiries (--room-history-ttl and --dedup-window, 300 s by default).
    assert_eq!(redis.integer(&["XLEN", "rooms:{lobby}:log"]).await, 100);
    for key in [
        "rooms:{lobby}:meta",
        "rooms:{lobby}:log",
        "rooms:{lobby}:id:p1-0",
    ] {
        let ttl = redis.integer(&["PTTL", key]).await;
        assert!(ttl > 0, "{key} expires: {ttl}");
    }
    for key in ["rooms:{lobby}:log", "rooms:{lobby}:id:p1-0"] {
        let ttl = redis.integer(&["PTTL", key]).await;
        assert!(ttl <= 300_000, "{key} expires within 300 s: {ttl}");
    }
}

/// Successful calls of `command` in the text of `INFO commandstats`.
fn succeeded_calls(stats: &str, command: &str) -> u64 {
    let line = stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:")))
        .unwrap_or_else(|| panic!("no {command} in {stats}"));
    let field = |name: &str| -> u64 {
        line.split(',')
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    field("calls") - field("failed_calls") - field("rejected_calls")
}

#[tokio::test]
async fn an_instance_killed_mid_stream_its_clients_resume_on_the_other_and_resends_are_deduplicated()
 {
    let redis = Redis::start().await;
    // History enough for every message of the test: resuming always recovers.
    let mut doomed = instance(&redis, &WHOLE_HISTORY).await;
    let survivor = instance(&redis, &WHOLE_HISTORY).await;
    let mut reader_a = Member::connect(&doomed, "reader-a").await;
    let (epoch, _, _) = reader_a.join(None).await;
    let mut publisher_a = Member::connect(&doomed, "publisher-a").await;
    publisher_a.join(None).await;
    let mut reader_b = Member::connect(&survivor, "reader-b").await;
    reader_b.join(None).await;
    let mut publisher_b = Member::connect(&survivor, "publisher-b").await;
    publisher_b.join(None).await;

    // A first batch, acked.
    let settled = ids("a0", 50);
    publisher_a.publish_all(&settled).await;
    publisher_a.read_until_acked(&settled).await;
    // The stream flows on both instances: a batch from each, in one write each, none read.
    let in_flight = ids("a1", 100);
    let from_b_before = ids("b0", 150);
    publisher_a.publish_all(&in_flight).await;
    publisher_b.publish_all(&from_b_before).await;
    // Some of the in-flight batch went through Redis (the other instance shows it)...
    reader_b.read_until_seen("a1-0").await;
    // ...then the instance freezes, takes a last batch into its socket buffer that it never
    // reads, and dies without a word.
    doomed.signal("STOP");
    let never_read = ids("a2", 50);
    publisher_a.publish_all(&never_read).await;
    doomed.signal("KILL");
    let _ = doomed.wait().await;
    let from_b_after = ids("b1", 150);
    publisher_b.publish_all(&from_b_after).await;

    // The reader takes what reached it, then resumes on the other instance.
    reader_a.read_to_the_end().await;
    reader_a.reconnect(&survivor).await;
    let last = reader_a.last_offset();
    let (same_epoch, _, recovered) = reader_a.join(Some((&epoch, last))).await;
    assert_eq!((same_epoch.as_str(), recovered), (epoch.as_str(), true));
    // The publisher lost its connection with every ack of the last two batches in it: it
    // resumes from what it had read and sends them all again, with the same ids.
    let resent: Vec<String> = [in_flight.clone(), never_read.clone()].concat();
    publisher_a.reconnect(&survivor).await;
    let last = publisher_a.last_offset();
    let (same_epoch, _, recovered) = publisher_a.join(Some((&epoch, last))).await;
    assert_eq!((same_epoch.as_str(), recovered), (epoch.as_str(), true));
    publisher_a.publish_all(&resent).await;
    publisher_a.read_until_acked(&resent).await;
    publisher_b
        .read_until_acked(&[from_b_before, from_b_after].concat())
        .await;
    // A last message after everything: whatever anyone sees before it is all there is.
    let marker = vec!["marker".to_owned()];
    publisher_b.publish_all(&marker).await;

    let expected: BTreeSet<String> = [
        settled,
        in_flight.clone(),
        never_read,
        ids("b0", 150),
        ids("b1", 150),
        marker,
    ]
    .concat()
    .into_iter()
    .collect();
    assert_eq!(expected.len(), 501);
    for member in [
        &mut reader_a,
        &mut publisher_a,
        &mut reader_b,
        &mut publisher_b,
    ] {
        member.read_until_seen("marker").await;
        member.assert_saw_each_once(&expected);
    }
    // A resent id that had gone through before the kill is acked at its first offset (Redis
    // remembered it, not the dead instance), and was not broadcast again.
    assert_eq!(publisher_a.acks["a1-0"], reader_b.offset_of("a1-0"));
    for id in &resent {
        assert_eq!(publisher_a.acks[id], reader_b.offset_of(id), "{id}");
    }
}

#[tokio::test]
async fn pub_sub_connections_killed_while_messages_flow_leave_no_hole() {
    let redis = Redis::start().await;
    let first = instance(&redis, &WHOLE_HISTORY).await;
    let second = instance(&redis, &WHOLE_HISTORY).await;
    let mut publisher = Member::connect(&first, "publisher").await;
    publisher.join(None).await;
    let mut near = Member::connect(&first, "near").await;
    near.join(None).await;
    let mut far = Member::connect(&second, "far").await;
    far.join(None).await;
    let servers = [&first, &second];
    let gaps_before = metric_sum(&servers, "chat_rooms_gaps_filled_total").await;

    // Three rounds: a batch goes out in one write, and while the instances work through it
    // Redis drops every pub/sub connection; whatever is published until an instance has
    // subscribed again reaches it through the stream only.
    let mut sent = Vec::new();
    for round in 0..3 {
        let batch = ids(&format!("round{round}"), 150);
        publisher.publish_all(&batch).await;
        // Both instances subscribed (again, after the previous round) and delivering.
        wait_for_room_subscribers(&redis, ROOM, 2).await;
        publisher.read_until_seen(&batch[10]).await;
        let killed = redis.integer(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
        assert!(
            killed >= 2,
            "round {round}: {killed} pub/sub connections killed"
        );
        sent.extend(batch);
    }
    publisher.read_until_acked(&sent).await;
    let marker = vec!["marker".to_owned()];
    publisher.publish_all(&marker).await;
    sent.extend(marker);
    let expected: BTreeSet<String> = sent.into_iter().collect();
    for member in [&mut publisher, &mut near, &mut far] {
        member.read_until_seen("marker").await;
        member.assert_saw_each_once(&expected);
    }
    let gaps_after = metric_sum(&servers, "chat_rooms_gaps_filled_total").await;
    assert!(
        gaps_after > gaps_before,
        "gaps filled: {gaps_before} before, {gaps_after} after"
    );
}

#[tokio::test]
async fn redis_down_then_restarted_empty_refuses_then_resumes_and_nothing_typed_is_lost() {
    let mut redis = Redis::start().await;
    let first = instance(&redis, &[]).await;
    let second = instance(&redis, &[]).await;
    for server in [&first, &second] {
        server.wait_for_log("redis reachable").await;
    }
    let mut ana = Member::connect(&first, "ana").await;
    let (old_epoch, _, _) = ana.join(None).await;
    let mut bo = Member::connect(&second, "bo").await;
    bo.join(None).await;
    let before = ids("before", 2);
    ana.publish_all(&before).await;
    ana.read_until_acked(&before).await;
    // The ack comes straight back, the message through Redis.
    ana.read_until_seen("before-1").await;
    bo.read_until_seen("before-1").await;

    redis.stop().await;
    for server in [&first, &second] {
        let body = server
            .wait_for_readiness(StatusCode::SERVICE_UNAVAILABLE)
            .await;
        assert_eq!(body, "rooms engine unreachable\nredis: unreachable\n");
    }
    // What ana types now is refused, each by name: her client keeps it to send again.
    let typed_while_down = ids("typed-while-down", 5);
    let refused_from = Instant::now();
    ana.publish_all(&typed_while_down).await;
    let mut outbox = Vec::new();
    while outbox.len() < typed_while_down.len() {
        match ana.next_event().await {
            Event::Frame(ServerFrame::Error { code, room, id, .. }) => {
                assert_eq!(
                    (code, room.as_deref()),
                    (ErrorCode::Unavailable, Some(ROOM))
                );
                outbox.push(id.expect("the refusal names the message"));
            }
            other => panic!("ana: expected unavailable, got {other:?}"),
        }
    }
    assert_eq!(outbox, typed_while_down);
    eprintln!(
        "5 publishes refused within {:?} of being sent",
        refused_from.elapsed()
    );
    // A join is refused the same way.
    let mut late = Member::connect(&first, "late").await;
    late.send_all([json!({"type": "join", "room": "elsewhere"})])
        .await;
    match late.next_event().await {
        Event::Frame(ServerFrame::Error { code, room, .. }) => {
            assert_eq!(
                (code, room.as_deref()),
                (ErrorCode::Unavailable, Some("elsewhere"))
            );
        }
        other => panic!("late: expected unavailable, got {other:?}"),
    }
    // Down two seconds more, long enough for several reconnection attempts (100 ms doubling:
    // 100, 200, 400, 800 ms…): the outage itself, not a wait for readiness. Meanwhile the instances retry
    // with backoff, they do not spin: each spends far less CPU than a thread of this test
    // that never stops running (a fixed bound would break on a busy machine either way).
    let window = Duration::from_secs(2);
    let cpu_before = [first.cpu_time(), second.cpu_time()];
    let errors = "chat_rooms_redis_errors_total";
    let errors_before = [first.metric(errors).await, second.metric(errors).await];
    let busy = tokio::task::spawn_blocking(move || {
        let (started, cpu_before) = (std::time::Instant::now(), this_thread_cpu_time());
        let mut turns = 0u64;
        while started.elapsed() < window {
            turns = std::hint::black_box(turns.wrapping_add(1));
        }
        this_thread_cpu_time() - cpu_before
    })
    .await
    .expect("the busy thread");
    for ((server, before), errors_before) in [&first, &second]
        .into_iter()
        .zip(cpu_before)
        .zip(errors_before)
    {
        let spent = server.cpu_time() - before;
        // Each failed attempt counts as an error: 100 ms doubling (with jitter) allows a
        // handful in two seconds, a loop without backoff hundreds.
        let attempts = server.metric(errors).await - errors_before;
        assert!(attempts <= 12, "{attempts} failed attempts in {window:?}");
        eprintln!(
            "Redis down: an instance spent {spent:?} of CPU in {window:?}, a busy thread {busy:?}"
        );
        assert!(
            busy >= Duration::from_millis(100),
            "the machine gave a busy thread only {busy:?} in {window:?}: nothing can be measured"
        );
        assert!(
            spent * 4 < busy,
            "{spent:?} of CPU while Redis was down, a busy thread {busy:?}"
        );
        assert_eq!(server.readiness().await.0, StatusCode::SERVICE_UNAVAILABLE);
    }

    for server in [&first, &second] {
        assert!(server.metric("chat_rooms_redis_errors_total").await > 0);
    }

    redis.restart().await;
    for server in [&first, &second] {
        assert_eq!(
            server.wait_for_readiness(StatusCode::OK).await,
            "ready\nredis: reachable\n"
        );
        // Once per episode, not once per attempt.
        let logs = server.logs();
        let warnings = logs
            .lines()
            .filter(|line| line.contains("redis unreachable"))
            .count();
        assert_eq!(warnings, 1, "{logs}");
        assert!(!logs.contains("panicked"), "{logs}");
        assert!(
            logs.lines()
                .all(|line| !line.contains("redis unreachable") || line.contains("WARN")),
            "{logs}"
        );
    }
    for server in [&first, &second] {
        let deadline = Instant::now() + PATIENCE;
        while server
            .logs()
            .lines()
            .filter(|line| line.contains("redis reachable"))
            .count()
            < 2
        {
            assert!(Instant::now() < deadline, "{}", server.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Redis came back empty: the room starts a new epoch, and the members of the old one are
    // told to join again, with nothing of the new epoch passed off as the old one's.
    let mut carol = Member::connect(&second, "carol").await;
    let (new_epoch, offset, recovered) = carol.join(None).await;
    assert_ne!(new_epoch, old_epoch);
    assert_eq!((offset, recovered), (0, false));
    let first_of_new = vec!["carol-1".to_owned()];
    carol.publish_all(&first_of_new).await;
    carol.read_until_acked(&first_of_new).await;
    ana.expect_close(1012).await;
    bo.expect_close(1012).await;
    assert_eq!(
        ana.last_offset(),
        2,
        "nothing of the new epoch on the old connection"
    );
    assert_eq!(
        bo.last_offset(),
        2,
        "nothing of the new epoch on the old connection"
    );

    // Both come back with their old position: not recovered, nothing replayed.
    for (member, server) in [(&mut ana, &first), (&mut bo, &second)] {
        member.reconnect(server).await;
        let last = member.last_offset();
        let (epoch, offset, recovered) = member.join(Some((&old_epoch, last))).await;
        assert_eq!(
            (epoch.as_str(), offset, recovered),
            (new_epoch.as_str(), 1, false)
        );
    }
    // ana sends her outbox again, same ids: each is taken once.
    ana.publish_all(&outbox).await;
    ana.read_until_acked(&outbox).await;
    let after = vec!["bo-after".to_owned()];
    bo.publish_all(&after).await;
    for member in [&mut ana, &mut bo] {
        member.read_until_seen("bo-after").await;
        let new_epoch_ids: Vec<&String> = member.seen[2..].iter().map(|(_, id)| id).collect();
        let wanted: Vec<&String> = outbox.iter().chain(&after).collect();
        assert_eq!(new_epoch_ids, wanted, "{}", member.name);
        let offsets: Vec<u64> = member.seen[2..].iter().map(|(offset, _)| *offset).collect();
        assert_eq!(offsets, (2..=7).collect::<Vec<_>>(), "{}", member.name);
    }
    // Someone reading the new epoch from its start finds every message once: nothing typed
    // during the outage was lost.
    let mut dan = Member::connect(&first, "dan").await;
    let (epoch, offset, recovered) = dan.join(Some((&new_epoch, 0))).await;
    assert_eq!(
        (epoch.as_str(), offset, recovered),
        (new_epoch.as_str(), 7, true)
    );
    dan.read_until("the new epoch", |member| member.seen.len() >= 7)
        .await;
    let expected: BTreeSet<String> = first_of_new
        .into_iter()
        .chain(outbox)
        .chain(after)
        .collect();
    dan.assert_saw_each_once(&expected);
}

#[tokio::test]
async fn more_missed_than_history_while_an_instance_is_down_is_not_recovered_never_replayed_wrong()
{
    const HISTORY: u64 = 20;
    let redis = Redis::start().await;
    let history = ["--room-history", "20"];
    let mut doomed = instance(&redis, &history).await;
    let survivor = instance(&redis, &history).await;
    let mut reader = Member::connect(&doomed, "reader").await;
    let (epoch, _, _) = reader.join(None).await;
    let mut publisher = Member::connect(&survivor, "publisher").await;
    publisher.join(None).await;
    let early = ids("early", 5);
    publisher.publish_all(&early).await;
    reader.read_until_seen("early-4").await;

    doomed.signal("KILL");
    let _ = doomed.wait().await;
    // Far more than the history holds while the reader is away.
    let missed = ids("missed", 50);
    publisher.publish_all(&missed).await;
    publisher.read_until_acked(&missed).await;
    reader.read_to_the_end().await;
    assert_eq!(reader.last_offset(), 5);
    reader.reconnect(&survivor).await;
    let (same, offset, recovered) = reader.join(Some((&epoch, 5))).await;
    assert_eq!(
        (same.as_str(), offset, recovered),
        (epoch.as_str(), 55, false)
    );
    // Nothing replayed, not even the part that history still holds: the next message is
    // the one published now.
    let probe = vec!["probe".to_owned()];
    publisher.publish_all(&probe).await;
    reader.read_until_seen("probe").await;
    assert_eq!(reader.seen[5..], [(56, "probe".to_owned())]);

    // At the edge of the bound, on both instances' side of Redis: the last HISTORY messages
    // (37..=56) are all there, one more is not.
    let mut within = Member::connect(&survivor, "within").await;
    let (_, offset, recovered) = within.join(Some((&epoch, 56 - HISTORY))).await;
    assert_eq!((offset, recovered), (56, true));
    within
        .read_until("the replay", |member| member.seen.len() >= HISTORY as usize)
        .await;
    let offsets: Vec<u64> = within.seen.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (37..=56).collect::<Vec<_>>());
    let mut past = Member::connect(&survivor, "past").await;
    let (_, offset, recovered) = past.join(Some((&epoch, 55 - HISTORY))).await;
    assert_eq!((offset, recovered), (56, false));
    let last = vec!["last".to_owned()];
    publisher.publish_all(&last).await;
    for member in [&mut within, &mut past] {
        member.read_until_seen("last").await;
    }
    assert_eq!(past.seen, [(57, "last".to_owned())], "nothing replayed");
    assert_eq!(
        within.seen.len(),
        HISTORY as usize + 1,
        "the replay, then live"
    );
    let recoveries = "chat_rooms_recoveries_total";
    let counted = [
        survivor
            .metric(&format!("{recoveries}{{recovered=\"true\"}}"))
            .await,
        survivor
            .metric(&format!("{recoveries}{{recovered=\"false\"}}"))
            .await,
    ];
    assert_eq!(counted, [1, 2], "recoveries on the survivor: true, false");
}

#[tokio::test]
async fn a_pub_sub_gap_longer_than_history_closes_the_instances_members_with_1012() {
    let redis = Redis::start().await;
    let history = ["--room-history", "5"];
    let frozen = instance(&redis, &history).await;
    let live = instance(&redis, &history).await;
    let mut reader = Member::connect(&frozen, "reader").await;
    let (epoch, _, _) = reader.join(None).await;
    let mut publisher = Member::connect(&live, "publisher").await;
    publisher.join(None).await;
    let early = ids("early", 3);
    publisher.publish_all(&early).await;
    reader.read_until_seen("early-2").await;

    // One instance frozen while Redis drops the pub/sub connections: it cannot notice, nor
    // subscribe again, until it runs.
    frozen.signal("STOP");
    let killed = redis.integer(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    assert!(killed >= 2, "{killed}: both instances' pub/sub connections");
    // Publish only once the running instance has subscribed again (one subscriber on the
    // channel), so only the frozen one has a gap.
    wait_for_room_subscribers(&redis, ROOM, 1).await;
    let missed = ids("missed", 20);
    publisher.publish_all(&missed).await;
    publisher.read_until_acked(&missed).await;
    frozen.signal("CONT");

    // History holds the last 5 of the 20 missed: the gap cannot be filled, so the member is
    // told to join again rather than given a hole.
    reader.expect_close(1012).await;
    assert_eq!(reader.last_offset(), 3, "no message past the gap");
    reader.reconnect(&frozen).await;
    let (same, offset, recovered) = reader.join(Some((&epoch, 3))).await;
    assert_eq!(
        (same.as_str(), offset, recovered),
        (epoch.as_str(), 23, false)
    );
    // The instance serves the room again, live.
    let after = vec!["after".to_owned()];
    publisher.publish_all(&after).await;
    reader.read_until_seen("after").await;
    assert_eq!(reader.seen[3..], [(24, "after".to_owned())]);
    // The publisher's instance had no gap: it saw everything, and was not closed.
    publisher.read_until_seen("after").await;
    let expected: BTreeSet<String> = [early, missed, after].concat().into_iter().collect();
    publisher.assert_saw_each_once(&expected);
}

/// How many connections subscribe to `room`'s channel, and how many patterns are subscribed.
async fn subscriptions(redis: &Redis, room: &str) -> (i64, i64) {
    let channel = format!("rooms:{{{room}}}");
    let subscribers = match redis.command(&["PUBSUB", "NUMSUB", &channel]).await {
        RespReply::Array(Some(items)) => match items.get(1) {
            Some(RespReply::Integer(count)) => *count,
            other => panic!("NUMSUB answered {other:?}"),
        },
        other => panic!("NUMSUB answered {other:?}"),
    };
    (subscribers, redis.integer(&["PUBSUB", "NUMPAT"]).await)
}

/// Waits until `room`'s channel has `count` subscribers.
async fn wait_for_room_subscribers(redis: &Redis, room: &str, count: i64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (subscribers, _) = subscriptions(redis, room).await;
        if subscribers == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{room}: {subscribers} subscribers, not {count}"
        );
        // The instances say nothing when they (un)subscribe: polling Redis's view.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_instance_subscribes_only_to_the_rooms_its_members_are_in() {
    let redis = Redis::start().await;
    let first = instance(&redis, &[]).await;
    let second = instance(&redis, &[]).await;
    let mut ana = Member::connect(&first, "ana").await;
    ana.join(None).await;
    ana.send_all([json!({"type": "join", "room": "side"})])
        .await;
    assert!(
        matches!(ana.next_event().await, Event::Frame(ServerFrame::Joined { room, .. }) if room == "side")
    );
    let mut bo = Member::connect(&second, "bo").await;
    bo.join(None).await;
    // One channel per room and instance with members there; no pattern.
    assert_eq!(subscriptions(&redis, ROOM).await, (2, 0));
    assert_eq!(subscriptions(&redis, "side").await, (1, 0));
    assert_eq!(subscriptions(&redis, "nobody-here").await, (0, 0));
    // The last member here leaves: the instance lets the channel go.
    ana.send_all([json!({"type": "leave", "room": "side"})])
        .await;
    assert!(matches!(
        ana.next_event().await,
        Event::Frame(ServerFrame::Left { .. })
    ));
    wait_for_room_subscribers(&redis, "side", 0).await;
    drop(ana);
    wait_for_room_subscribers(&redis, ROOM, 1).await;
    // The other instance still delivers.
    let after = vec!["after".to_owned()];
    bo.publish_all(&after).await;
    bo.read_until_seen("after").await;
}

#[tokio::test]
async fn the_history_byte_bound_holds_in_redis_too() {
    // Ten frames of a little over 2,000 bytes against a bound of 10,000 bytes: four fit, as
    // the embedded engine keeps them; the count bound (100) is far away.
    let bound = ["--room-history-bytes", "10000", "--max-text-bytes", "4096"];
    let redis = Redis::start().await;
    let first = instance(&redis, &bound).await;
    let second = instance(&redis, &bound).await;
    let mut publisher = Member::connect(&first, "publisher").await;
    let (epoch, _, _) = publisher.join(None).await;
    let text = "x".repeat(2000);
    let big = ids("big", 10);
    publisher
        .send_all(big.iter().map(|id| publish(id, &text)))
        .await;
    publisher.read_until_acked(&big).await;
    // Exactly as many as fit: fewer would lose history the bound allows, more would pass it.
    let kept = redis.integer(&["XLEN", "rooms:{lobby}:log"]).await;
    assert_eq!(
        kept, 4,
        "Redis keeps {kept} frames of 2 KB under --room-history-bytes 10000"
    );
    // From the start: more than the bound holds, so not recovered, and nothing replayed.
    let mut back = Member::connect(&second, "back").await;
    let (_, offset, recovered) = back.join(Some((&epoch, 0))).await;
    assert_eq!((offset, recovered), (10, false));
    // The last three fit: replayed exactly.
    let mut recent = Member::connect(&second, "recent").await;
    let (_, offset, recovered) = recent.join(Some((&epoch, 7))).await;
    assert_eq!((offset, recovered), (10, true));
    recent
        .read_until("the replay", |member| member.seen.len() >= 3)
        .await;
    assert_eq!(
        recent
            .seen
            .iter()
            .map(|(offset, _)| *offset)
            .collect::<Vec<_>>(),
        [8, 9, 10]
    );
    // All four that fit: the oldest one kept is replayed too.
    let mut four = Member::connect(&second, "four").await;
    let (_, offset, recovered) = four.join(Some((&epoch, 6))).await;
    assert_eq!((offset, recovered), (10, true));
    four.read_until("the replay", |member| member.seen.len() >= 4)
        .await;
    let last = vec!["last".to_owned()];
    publisher.publish_all(&last).await;
    back.read_until_seen("last").await;
    assert_eq!(back.seen, [(11, "last".to_owned())], "nothing replayed");
    four.read_until_seen("last").await;
    assert_eq!(
        four.seen
            .iter()
            .map(|(offset, _)| *offset)
            .collect::<Vec<_>>(),
        [7, 8, 9, 10, 11],
        "the four kept, once each, then live"
    );
}

#[tokio::test]
async fn history_older_than_its_ttl_is_not_replayed_on_the_other_instance() {
    let ttl = ["--room-history-ttl", "2"];
    let redis = Redis::start().await;
    let first = instance(&redis, &ttl).await;
    let second = instance(&redis, &ttl).await;
    let mut publisher = Member::connect(&first, "publisher").await;
    let (epoch, _, _) = publisher.join(None).await;
    let sent = ids("m", 3);
    publisher.publish_all(&sent).await;
    publisher.read_until_acked(&sent).await;
    let published = Instant::now();
    // Within the TTL, the other instance replays them.
    let mut early = Member::connect(&second, "early").await;
    let (_, offset, recovered) = early.join(Some((&epoch, 0))).await;
    assert_eq!((offset, recovered), (3, true));
    early
        .read_until("the replay", |member| member.seen.len() >= 3)
        .await;
    assert!(
        published.elapsed() < Duration::from_secs(2),
        "the machine took {:?}: the first half proved nothing",
        published.elapsed()
    );
    // Past the TTL (the bound itself, not a wait for readiness), they are gone from history:
    // not recovered, nothing replayed; a client already at the end has missed nothing.
    tokio::time::sleep_until(published + Duration::from_millis(2500)).await;
    let mut late = Member::connect(&second, "late").await;
    let (_, offset, recovered) = late.join(Some((&epoch, 0))).await;
    assert_eq!((offset, recovered), (3, false));
    let mut current = Member::connect(&second, "current").await;
    let (_, offset, recovered) = current.join(Some((&epoch, 3))).await;
    assert_eq!((offset, recovered), (3, true));
    let after = vec!["after".to_owned()];
    publisher.publish_all(&after).await;
    for member in [&mut late, &mut current] {
        member.read_until_seen("after").await;
        assert_eq!(member.seen, [(4, "after".to_owned())], "{}", member.name);
    }
}

#[tokio::test]
async fn a_hung_redis_makes_both_instances_unready_and_refuses_publishes_then_nothing_is_lost() {
    let redis = Redis::start().await;
    let first = instance(&redis, &[]).await;
    let second = instance(&redis, &[]).await;
    let mut ana = Member::connect(&first, "ana").await;
    ana.join(None).await;
    let mut bo = Member::connect(&second, "bo").await;
    bo.join(None).await;
    let before = ids("before", 3);
    ana.publish_all(&before).await;
    ana.read_until_acked(&before).await;
    ana.read_until_seen("before-2").await;
    bo.read_until_seen("before-2").await;

    // Hung, not gone: every connection stays open and nothing is answered, so only the
    // instances' own timeouts can tell (the script call's 2 s, the link's ping every 1 s
    // with 2 s to answer).
    redis.freeze();
    let frozen_at = Instant::now();
    let during = vec!["during".to_owned()];
    ana.publish_all(&during).await;
    match ana.next_event().await {
        Event::Frame(ServerFrame::Error { code, room, id, .. }) => assert_eq!(
            (code, room.as_deref(), id.as_deref()),
            (ErrorCode::Unavailable, Some(ROOM), Some("during"))
        ),
        other => panic!("ana: expected unavailable, got {other:?}"),
    }
    let refused_after = frozen_at.elapsed();
    assert!(
        refused_after < Duration::from_secs(5),
        "a publish to a hung Redis answered after {refused_after:?}"
    );
    for server in [&first, &second] {
        let body = server
            .wait_for_readiness(StatusCode::SERVICE_UNAVAILABLE)
            .await;
        assert_eq!(body, "rooms engine unreachable\nredis: unreachable\n");
    }
    // The metric says what /readyz says (the metrics listener does not need Redis).
    assert_eq!(
        metric_sum(&[&first, &second], "chat_rooms_redis_up").await,
        0
    );
    let unready_after = frozen_at.elapsed();
    assert!(
        unready_after < Duration::from_secs(10),
        "both instances unready only after {unready_after:?}"
    );
    eprintln!(
        "hung Redis: publish refused after {refused_after:?}, both unready after {unready_after:?}"
    );

    // Thawed, Redis answers what it took meanwhile: the refused publish may go through now
    // after all. The client resends it with the same id, as its outbox does, and the dedup
    // key makes that one message whichever way it went.
    redis.thaw();
    for server in [&first, &second] {
        assert_eq!(
            server.wait_for_readiness(StatusCode::OK).await,
            "ready\nredis: reachable\n"
        );
    }
    assert_eq!(
        metric_sum(&[&first, &second], "chat_rooms_redis_up").await,
        2
    );
    ana.publish_all(&during).await;
    ana.read_until_acked(&during).await;
    let marker = vec!["marker".to_owned()];
    bo.publish_all(&marker).await;
    let expected: BTreeSet<String> = [before, during, marker].concat().into_iter().collect();
    for member in [&mut ana, &mut bo] {
        member.read_until_seen("marker").await;
        member.assert_saw_each_once(&expected);
    }
    assert_eq!(ana.acks["during"], bo.offset_of("during"));
    for server in [&first, &second] {
        assert!(!server.logs().contains("panicked"), "{}", server.logs());
    }
}

#[tokio::test]
async fn a_resend_within_the_dedup_window_is_the_same_message_one_past_it_is_a_new_one() {
    let redis = Redis::start().await;
    let first = instance(&redis, &["--dedup-window", "1"]).await;
    let mut publisher = Member::connect(&first, "publisher").await;
    publisher.join(None).await;
    let mut observer = Member::connect(&first, "observer").await;
    observer.join(None).await;
    let message = vec!["x".to_owned()];
    publisher.publish_all(&message).await;
    publisher.read_until_acked(&message).await;
    // The dedup key was written before the ack left: the window ends before `acked + 1 s`.
    let acked = Instant::now();
    let offset = publisher.acks["x"];
    observer.read_until_seen("x").await;

    // At once: the same message, acked at its offset and not broadcast again.
    publisher.acks.clear();
    publisher.publish_all(&message).await;
    publisher.read_until_acked(&message).await;
    assert_eq!(publisher.acks["x"], offset, "a resend within the window");
    assert!(
        acked.elapsed() < Duration::from_secs(1),
        "the machine took {:?}: the first half proved nothing",
        acked.elapsed()
    );

    // Past the window (the bound being crossed, not a wait for readiness): the id is
    // forgotten, so the same id is a new message with the next offset, broadcast.
    tokio::time::sleep_until(acked + Duration::from_millis(1500)).await;
    publisher.acks.clear();
    publisher.publish_all(&message).await;
    publisher.read_until_acked(&message).await;
    assert_eq!(publisher.acks["x"], offset + 1, "a resend past the window");
    observer
        .read_until("the second x", |member| member.seen.len() >= 2)
        .await;
    assert_eq!(
        observer.seen,
        [(offset, "x".to_owned()), (offset + 1, "x".to_owned())]
    );
    // The room's meta (epoch and offset) outlives the window by far: at least a day.
    let meta_ttl = redis.integer(&["PTTL", "rooms:{lobby}:meta"]).await;
    assert!(meta_ttl > 86_000_000, "the meta expires in {meta_ttl} ms");
}

#[tokio::test]
async fn redis_behind_what_an_instance_delivered_closes_its_members_and_goes_on_from_redis() {
    let redis = Redis::start().await;
    let first = instance(&redis, &[]).await;
    let mut ana = Member::connect(&first, "ana").await;
    let (epoch, _, _) = ana.join(None).await;
    let sent = ids("m", 5);
    ana.publish_all(&sent).await;
    ana.read_until_acked(&sent).await;
    ana.read_until_seen("m-4").await;
    assert_eq!(ana.last_offset(), 5);

    // Redis as an older snapshot would have it: the same epoch, one message, no history.
    // (HSET answers how many fields it added: none, `top` was there.)
    let meta = "rooms:{lobby}:meta";
    assert_eq!(redis.integer(&["HSET", meta, "top", "1"]).await, 0);
    assert_eq!(redis.integer(&["DEL", "rooms:{lobby}:log"]).await, 1);

    // A new member on the same instance: the instance finds Redis behind what it delivered,
    // closes its members (their offsets 2..=5 will be reused), and goes on from Redis's.
    let mut bo = Member::connect(&first, "bo").await;
    let (same, offset, _) = bo.join(None).await;
    assert_eq!((same.as_str(), offset), (epoch.as_str(), 1));
    ana.expect_close(1012).await;
    assert_eq!(ana.last_offset(), 5, "nothing after the close");
    let after = vec!["after".to_owned()];
    bo.publish_all(&after).await;
    bo.read_until_acked(&after).await;
    assert_eq!(bo.acks["after"], 2);
    let marker = vec!["marker".to_owned()];
    bo.publish_all(&marker).await;
    bo.read_until_seen("marker").await;
    assert_eq!(
        bo.seen,
        [(2, "after".to_owned()), (3, "marker".to_owned())],
        "each once, in order"
    );
}

#[tokio::test]
async fn started_without_a_reachable_redis_it_listens_unready_and_warns_once() {
    let url = "unix:///nonexistent/dir/redis.sock";
    // It prints its URL (the start returns only then) although Redis cannot be reached.
    let server = TestServer::start(&["--redis-url", url, "--metrics-addr", "127.0.0.1:0"]).await;
    assert_eq!(
        server.readiness().await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "rooms engine unreachable\nredis: unreachable\n".to_owned()
        )
    );
    let mut ana = Member::connect(&server, "ana").await;
    ana.send_all([json!({"type": "join", "room": ROOM})]).await;
    match ana.next_event().await {
        Event::Frame(ServerFrame::Error { code, room, .. }) => {
            assert_eq!(
                (code, room.as_deref()),
                (ErrorCode::Unavailable, Some(ROOM))
            );
        }
        other => panic!("ana: expected unavailable, got {other:?}"),
    }
    // A few attempts (each failed one counts as an error), then still one warning.
    let deadline = Instant::now() + PATIENCE;
    while server.metric("chat_rooms_redis_errors_total").await < 4 {
        assert!(Instant::now() < deadline, "{}", server.logs());
        // The instance says nothing per attempt: polling its counter.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = server.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("redis unreachable"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("WARN"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    assert_eq!(server.readiness().await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_redis_url_that_is_not_one_is_one_line_and_exit_2() {
    // Everything else in order, so the URL is the only thing it can refuse.
    let fixture = crate::support::static_fixture();
    let static_dir = crate::support::served_dir(&fixture);
    let output = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new(crate::support::server_binary())
            .args(["--addr", "127.0.0.1:0", "--redis-url", "http://x"])
            .arg("--static-dir")
            .arg(&static_dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the server gives up promptly")
    .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("--redis-url"), "{stderr}");
    assert!(output.stdout.is_empty(), "it never listened");
}

#[tokio::test]
async fn a_pub_sub_drop_after_a_stable_link_relinks_quietly_and_one_right_after_warns() {
    let redis = Redis::start().await;
    let server = instance(&redis, &[]).await;
    // A member, so the link subscribes a channel and counts as a pub/sub connection.
    let mut ana = Member::connect(&server, "ana").await;
    ana.join(None).await;
    wait_for_room_subscribers(&redis, ROOM, 1).await;
    // Past the engine's STABLE_LINK (5 s): this wait is the bound being crossed, not readiness.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let errors = server.metric("chat_rooms_redis_errors_total").await;
    assert_eq!(
        redis.integer(&["CLIENT", "KILL", "TYPE", "pubsub"]).await,
        1
    );
    let deadline = Instant::now() + PATIENCE;
    while server.metric("chat_rooms_redis_errors_total").await == errors {
        assert!(Instant::now() < deadline, "{}", server.logs());
        // The quiet relink says nothing: polling its counter.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_room_subscribers(&redis, ROOM, 1).await;
    assert_eq!(
        server.wait_for_readiness(StatusCode::OK).await,
        "ready\nredis: reachable\n"
    );
    assert!(
        !server.logs().contains("redis unreachable"),
        "a drop after a stable link is relinked quietly:\n{}",
        server.logs()
    );

    // The new link is young: dropped at once, it is an outage, said once, retried with backoff.
    assert_eq!(
        redis.integer(&["CLIENT", "KILL", "TYPE", "pubsub"]).await,
        1
    );
    server.wait_for_log("redis unreachable").await;
    wait_for_room_subscribers(&redis, ROOM, 1).await;
    assert_eq!(
        server.wait_for_readiness(StatusCode::OK).await,
        "ready\nredis: reachable\n"
    );
    let logs = server.logs();
    let warnings = logs
        .lines()
        .filter(|line| line.contains("redis unreachable"))
        .count();
    assert_eq!(warnings, 1, "{logs}");

    // Nothing was lost on the way: a message still reaches the member.
    ana.publish_all(&["after".to_owned()]).await;
    ana.read_until_seen("after").await;
}
