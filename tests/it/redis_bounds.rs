//! The Redis engine past its bounds (issue 24): what a join leaves in Redis, joins into a
//! room that never stands still, a join or a gap read whose Redis answer is late (through
//! [`RedisProxy`]), a session whose own request waits on a stalled Redis, and a quiet room
//! after a pub/sub outage. Real server processes on a real `redis-server`; every wait bounded.
//!
//! Every member checks the one guarantee of the rooms protocol: from its `joined` on (or from
//! its `since`, when recovered), every offset once, in order, up to the room's last one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use room_protocol::{ErrorCode, ServerFrame};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::redis_proxy::{Held, Matching, RedisProxy};
use crate::support::{Client, PATIENCE, Redis, RespReply, TestServer};

/// Publishes one publisher keeps unacknowledged at most.
const MAX_IN_FLIGHT: usize = 1_000;

/// Publish bounds high enough that no test here is a test of the publish rate.
const UNLIMITED: [&str; 4] = ["--publish-rate", "1000000", "--publish-burst", "1000000"];

/// A history that keeps everything these tests publish, so every `since` is recoverable.
const WHOLE_HISTORY: [&str; 4] = [
    "--room-history",
    "100000",
    "--room-history-bytes",
    "67108864",
];

/// An instance on its own free port, on the Redis at `redis_url` (the real one, or a proxy).
async fn instance(redis_url: &str, extra: &[&str]) -> TestServer {
    let mut args = vec!["--redis-url", redis_url];
    args.extend_from_slice(&UNLIMITED);
    args.extend_from_slice(extra);
    let server = TestServer::start(&args).await;
    // It answers joins `unavailable` until its pub/sub link is up, as /readyz says.
    assert_eq!(
        server.wait_for_readiness(StatusCode::OK).await,
        "ready\nredis: reachable\n"
    );
    server
}

fn channel(room: &str) -> String {
    format!("rooms:{{{room}}}")
}

fn log_key(room: &str) -> String {
    format!("rooms:{{{room}}}:log")
}

/// What a `joined` said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Joined {
    epoch: String,
    offset: u64,
    recovered: bool,
}

fn join_request(room: &str, since: Option<&(String, u64)>) -> Value {
    let mut request = json!({"type": "join", "room": room});
    if let Some((epoch, offset)) = since {
        request["since"] = json!({"epoch": epoch, "offset": offset});
    }
    request
}

fn publish_request(room: &str, id: &str, text: &str) -> Value {
    json!({"type": "publish", "room": room, "id": id, "text": text})
}

/// Opens `/rooms?name=NAME` on the server at `ws_base` (`ws://ADDR`).
async fn connect(ws_base: &str, name: &str) -> Client {
    let (client, _response) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::connect_async(format!("{ws_base}/rooms?name={name}")),
    )
    .await
    .expect("the handshake completes promptly")
    .expect("the handshake succeeds");
    client
}

fn ws_base(server: &TestServer) -> String {
    format!("ws://{}", server.addr)
}

/// What one read from a rooms connection gave.
#[derive(Debug)]
enum Event {
    Frame(ServerFrame),
    Ping,
    Pong(Vec<u8>),
    /// A close frame with its code (1005 for none).
    Closed(u16),
    /// The connection ended without a close frame.
    Ended,
}

/// The next event on `stream` within `patience`; `None` if nothing came by then.
async fn next_event(
    stream: &mut SplitStream<Client>,
    patience: Duration,
    who: &str,
) -> Option<Event> {
    let next = tokio::time::timeout(patience, stream.next()).await.ok()?;
    Some(match next {
        Some(Ok(Message::Text(text))) => Event::Frame(
            ServerFrame::from_json(&text).unwrap_or_else(|error| panic!("{who}: {error}: {text}")),
        ),
        Some(Ok(Message::Ping(_))) => Event::Ping,
        Some(Ok(Message::Pong(payload))) => Event::Pong(payload.to_vec()),
        Some(Ok(Message::Close(frame))) => {
            Event::Closed(frame.map_or(1005, |frame| frame.code.into()))
        }
        Some(Ok(other)) => panic!("{who}: unexpected {other:?}"),
        Some(Err(_)) | None => Event::Ended,
    })
}

/// Sends the requests in one write.
async fn send_all(
    sink: &mut SplitSink<Client, Message>,
    requests: impl IntoIterator<Item = Value>,
) {
    for request in requests {
        sink.feed(Message::text(request.to_string()))
            .await
            .expect("queued");
    }
    sink.flush().await.expect("sent");
}

/// Joins `room` and waits for the answer: `joined`, or the error frame's words.
async fn join(
    sink: &mut SplitSink<Client, Message>,
    stream: &mut SplitStream<Client>,
    room: &str,
    since: Option<&(String, u64)>,
    who: &str,
) -> Result<Joined, String> {
    send_all(sink, [join_request(room, since)]).await;
    loop {
        match next_event(stream, PATIENCE, who).await {
            Some(Event::Frame(ServerFrame::Joined {
                room: joined,
                epoch,
                offset,
                recovered,
            })) if joined == room => {
                return Ok(Joined {
                    epoch,
                    offset,
                    recovered,
                });
            }
            Some(Event::Frame(ServerFrame::Error { code, message, .. })) => {
                return Err(format!("{code:?}: {message}"));
            }
            Some(Event::Ping | Event::Pong(_)) => {}
            other => return Err(format!("{other:?} instead of joined")),
        }
    }
}

/// Microseconds since `clock`: what a publisher writes as its text and a reader compares.
fn micros_since(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_micros()).expect("a test lasts less than 500,000 years")
}

/// A member publishing into a room at a steady pace until told to stop, reading what its
/// connection brings (its room's messages too) so it is never a slow reader. Each text is
/// the time it was sent ([`micros_since`] the test's clock).
struct Publisher {
    stop: watch::Sender<bool>,
    task: JoinHandle<u64>,
}

impl Publisher {
    /// Joins `room` on `server` as `name`, then publishes `per_tick` messages every `tick`.
    async fn start(
        server: &TestServer,
        room: &str,
        name: &str,
        per_tick: usize,
        tick: Duration,
        clock: Instant,
    ) -> Publisher {
        let (mut sink, mut stream) = connect(&ws_base(server), name).await.split();
        join(&mut sink, &mut stream, room, None, name)
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        let (stop, mut stopped) = watch::channel(false);
        let (room, name) = (room.to_owned(), name.to_owned());
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sent = 0_usize;
            let mut acked = 0_usize;
            let mut last_offset = 0;
            let mut texts: HashMap<String, String> = HashMap::new();
            let mut stopping = false;
            while !(stopping && acked == sent) {
                tokio::select! {
                    // At most a second's worth unacknowledged, as a client's outbox keeps
                    // at most so many in flight: a server slower than the pace (a debug
                    // build) slows the publishers down instead of piling up a backlog.
                    _ = ticker.tick(), if !stopping && sent - acked < MAX_IN_FLIGHT => {
                        let text = micros_since(clock).to_string();
                        let batch: Vec<Value> = (sent..sent + per_tick)
                            .map(|n| {
                                let id = format!("{name}-{n}");
                                texts.insert(id.clone(), text.clone());
                                publish_request(&room, &id, &text)
                            })
                            .collect();
                        send_all(&mut sink, batch).await;
                        sent += per_tick;
                    }
                    changed = stopped.changed(), if !stopping => {
                        stopping = changed.is_err() || *stopped.borrow();
                    }
                    event = next_event(&mut stream, PATIENCE, &name) => match event {
                        Some(Event::Frame(ServerFrame::Ack { id, offset, .. })) => {
                            if texts.remove(&id).is_some() {
                                acked += 1;
                                last_offset = last_offset.max(offset);
                            }
                        }
                        // Redis could not be reached (a frozen Redis): sent again with the
                        // same id, as a client's outbox does; the dedup makes it one message.
                        Some(Event::Frame(ServerFrame::Error {
                            code: ErrorCode::Unavailable,
                            id: Some(id),
                            ..
                        })) => {
                            let text = texts.get(&id).cloned().unwrap_or_default();
                            send_all(&mut sink, [publish_request(&room, &id, &text)]).await;
                        }
                        Some(Event::Frame(ServerFrame::Message { .. }) | Event::Ping | Event::Pong(_)) => {}
                        other => panic!(
                            "{name}: {other:?} with {acked} of {sent} publishes acked"
                        ),
                    },
                }
            }
            last_offset
        });
        Publisher { stop, task }
    }

    /// Stops publishing and waits for every ack: the highest offset it was given.
    async fn stop(self) -> u64 {
        self.stop.send_replace(true);
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("every publish is acked promptly")
            .expect("the publisher did not panic")
    }
}

/// Stops every publisher: the room's last offset (the highest any of them was given).
async fn stop_all(publishers: Vec<Publisher>) -> u64 {
    let mut last = 0;
    for publisher in publishers {
        last = last.max(publisher.stop().await);
    }
    last
}

/// How a [`Follower`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// It saw the room's last offset.
    Reached,
    Closed(u16),
    Ended,
    /// Nothing more came for [`PATIENCE`] after the last offset was known.
    Stalled,
}

/// What a [`Follower`] got.
#[derive(Debug)]
struct Followed {
    name: String,
    since: Option<(String, u64)>,
    /// `joined` (or the refusal) and how long it took to come.
    answer: Result<Joined, String>,
    join_took: Duration,
    /// Every message's offset, in arrival order.
    offsets: Vec<u64>,
    /// For each live message: (sent, received), in µs of the test's clock.
    times: Vec<(u64, u64)>,
    ending: Ending,
    /// When it saw the last offset.
    reached_at: Option<Instant>,
}

impl Followed {
    /// The offset from which this member must have every message.
    fn start(&self) -> u64 {
        let joined = self.answer.as_ref().expect("joined");
        match (&self.since, joined.recovered) {
            (Some((_, since)), true) => *since,
            _ => joined.offset,
        }
    }
}

/// A member of a room that joins (with `since`, if given) and records every message until it
/// has the room's last offset, which the test tells it once the publishers stopped.
struct Follower {
    joined: oneshot::Receiver<(Result<Joined, String>, Duration)>,
    /// The last offset seen so far.
    last: Arc<AtomicU64>,
    task: JoinHandle<Followed>,
}

impl Follower {
    fn start(
        ws_base: String,
        room: &str,
        name: &str,
        since: Option<(String, u64)>,
        mut last_offset: watch::Receiver<Option<u64>>,
        clock: Instant,
    ) -> Follower {
        let (answered, joined) = oneshot::channel();
        let last = Arc::new(AtomicU64::new(0));
        let seen_last = Arc::clone(&last);
        let (room, name) = (room.to_owned(), name.to_owned());
        let task = tokio::spawn(async move {
            let (mut sink, mut stream) = connect(&ws_base, &name).await.split();
            let asked = Instant::now();
            let answer = join(&mut sink, &mut stream, &room, since.as_ref(), &name).await;
            let join_took = asked.elapsed();
            let _ = answered.send((answer.clone(), join_took));
            let mut followed = Followed {
                name: name.clone(),
                since,
                answer,
                join_took,
                offsets: Vec::new(),
                times: Vec::new(),
                ending: Ending::Ended,
                reached_at: None,
            };
            if followed.answer.is_err() {
                return followed;
            }
            loop {
                let goal = *last_offset.borrow();
                if let Some(goal) = goal
                    && followed.offsets.last().is_some_and(|last| *last >= goal)
                {
                    followed.ending = Ending::Reached;
                    followed.reached_at = Some(Instant::now());
                    break;
                }
                // Until the goal is known, frames may pause (a quiet room); after, they must come.
                let patience = if goal.is_some() {
                    PATIENCE
                } else {
                    2 * PATIENCE
                };
                tokio::select! {
                    changed = last_offset.changed(), if goal.is_none() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                    event = next_event(&mut stream, patience, &name) => match event {
                        Some(Event::Frame(ServerFrame::Message { offset, text, .. })) => {
                            followed.offsets.push(offset);
                            seen_last.store(offset, Ordering::Relaxed);
                            if let Ok(sent) = text.parse() {
                                followed.times.push((sent, micros_since(clock)));
                            }
                        }
                        Some(Event::Frame(other)) => panic!("{name}: unexpected {other:?}"),
                        Some(Event::Ping | Event::Pong(_)) => {}
                        Some(Event::Closed(code)) => {
                            followed.ending = Ending::Closed(code);
                            break;
                        }
                        Some(Event::Ended) => break,
                        None => {
                            followed.ending = Ending::Stalled;
                            break;
                        }
                    },
                }
            }
            followed
        });
        Follower { joined, last, task }
    }

    /// Waits for its join's answer (bounded): `joined` or the refusal, and how long it took.
    async fn joined(&mut self) -> (Result<Joined, String>, Duration) {
        tokio::time::timeout(PATIENCE, &mut self.joined)
            .await
            .expect("a join is answered promptly")
            .expect("the follower reports its join")
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    async fn finish(self) -> Followed {
        // Its own reads are bounded by PATIENCE after the last offset is known.
        tokio::time::timeout(3 * PATIENCE, self.task)
            .await
            .expect("the follower ends")
            .expect("the follower did not panic")
    }
}

/// What is wrong with `offsets` where exactly `first..=last` were due, once each, in order;
/// `None` when nothing is.
fn contiguity_problem(offsets: &[u64], first: u64, last: u64) -> Option<String> {
    let wanted: Vec<u64> = (first..=last).collect();
    if offsets == wanted.as_slice() {
        return None;
    }
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for offset in offsets {
        *counts.entry(*offset).or_default() += 1;
    }
    let missing: Vec<u64> = wanted
        .iter()
        .filter(|offset| !counts.contains_key(offset))
        .copied()
        .collect();
    let mut doubled: Vec<u64> = counts
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(offset, _)| *offset)
        .collect();
    doubled.sort_unstable();
    let outside = offsets
        .iter()
        .filter(|offset| !(first..=last).contains(*offset))
        .count();
    let first_wrong = offsets
        .iter()
        .zip(&wanted)
        .position(|(got, wanted)| got != wanted)
        .unwrap_or(offsets.len().min(wanted.len()));
    let around = &offsets[first_wrong.saturating_sub(2)..];
    Some(format!(
        "{} offsets where {first}..={last} ({}) were due: {} missing (first {:?}), {} doubled \
         (first {:?}), {outside} outside; first out of place at position {first_wrong}: {:?}",
        offsets.len(),
        wanted.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        doubled.len(),
        &doubled[..doubled.len().min(5)],
        &around[..around.len().min(6)]
    ))
}

/// The value below which `part` of `sorted` (µs) lies.
fn percentile(sorted: &[u64], part: f64) -> Duration {
    let index = ((sorted.len() as f64 * part).ceil() as usize).clamp(1, sorted.len());
    Duration::from_micros(sorted[index - 1])
}

/// `used_memory` from `INFO memory`.
async fn used_memory(redis: &Redis) -> i64 {
    let info = match redis.command(&["INFO", "memory"]).await {
        RespReply::Bulk(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        other => panic!("INFO answered {other:?}"),
    };
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no used_memory in {info}"))
}

/// The channels Redis has subscribers for, among the rooms'.
async fn room_channels(redis: &Redis) -> usize {
    match redis.command(&["PUBSUB", "CHANNELS", "rooms:*"]).await {
        RespReply::Array(Some(channels)) => channels.len(),
        other => panic!("PUBSUB CHANNELS answered {other:?}"),
    }
}

/// A join then a leave of each room, in one write.
async fn send_joins_and_leaves(client: &mut Client, rooms: impl Iterator<Item = String>) {
    for room in rooms {
        for kind in ["join", "leave"] {
            let request = json!({"type": kind, "room": room}).to_string();
            client.feed(Message::text(request)).await.expect("queued");
        }
    }
    client.flush().await.expect("sent");
}

/// Joins and leaves `count` rooms nobody else uses, named `fresh-WORKER-N`, two chunks of
/// requests in flight at a time; every answer must be `joined` (offset 0, not recovered) then
/// `left`, in order.
async fn join_and_leave_fresh_rooms(mut client: Client, worker: usize, count: usize) {
    const CHUNK: usize = 250;
    let name = |n: usize| format!("fresh-{worker}-{n}");
    let chunks: Vec<std::ops::Range<usize>> = (0..count)
        .step_by(CHUNK)
        .map(|start| start..(start + CHUNK).min(count))
        .collect();
    let mut in_flight = 0;
    for (index, range) in chunks.iter().enumerate() {
        while in_flight < chunks.len() && in_flight <= index + 1 {
            send_joins_and_leaves(&mut client, chunks[in_flight].clone().map(name)).await;
            in_flight += 1;
        }
        for n in range.clone() {
            let room = name(n);
            for expected in ["joined", "left"] {
                let text = loop {
                    match tokio::time::timeout(PATIENCE, client.next()).await {
                        Ok(Some(Ok(Message::Text(text)))) => break text,
                        Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                        other => panic!("worker {worker} at {room}: {other:?}"),
                    }
                };
                let frame = ServerFrame::from_json(&text).expect("a server frame");
                let fits = match (&frame, expected) {
                    (
                        ServerFrame::Joined {
                            room: joined,
                            offset: 0,
                            recovered: false,
                            ..
                        },
                        "joined",
                    ) => *joined == room,
                    (ServerFrame::Left { room: left, .. }, "left") => *left == room,
                    _ => false,
                };
                assert!(
                    fits,
                    "worker {worker}: {expected} {room} expected, got {text}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_and_leaving_100_000_fresh_rooms_leaves_no_key_and_no_memory_behind_in_redis() {
    const ROOMS: usize = 100_000;
    const CONNECTIONS: usize = 8;
    const ONE_MIB: i64 = 1024 * 1024;
    let redis = Redis::start().await;
    let server = instance(
        &redis.url(),
        &["--join-rate", "1000000", "--join-burst", "1000000"],
    )
    .await;
    let keys_before = redis.integer(&["DBSIZE"]).await;
    let memory_before = used_memory(&redis).await;

    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CONNECTIONS {
        let client = server.connect(&format!("/rooms?name=churn{worker}")).await;
        workers.push(tokio::spawn(join_and_leave_fresh_rooms(
            client,
            worker,
            ROOMS / CONNECTIONS,
        )));
    }
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(120), worker)
            .await
            .expect("100,000 joins and leaves within 120 s")
            .expect("every join and leave answered in order");
    }
    let took = started.elapsed();
    eprintln!("{ROOMS} fresh rooms joined and left over {CONNECTIONS} connections in {took:?}");

    // The instance lets every channel go, and Redis holds what it held before: no key, and
    // no more memory than a little allocator slack. Polled (bounded): an unsubscribe and an
    // expiry run on their own time.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let channels = room_channels(&redis).await;
        let keys = redis.integer(&["DBSIZE"]).await;
        let memory = used_memory(&redis).await;
        if channels == 0 && keys == keys_before && (memory - memory_before).abs() <= ONE_MIB {
            eprintln!("Redis used {memory_before} bytes before, {memory} after");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {ROOMS} joins and leaves of rooms nobody published in: {keys} keys (before: \
             {keys_before}), used_memory {memory} (before: {memory_before}, {:+} bytes), \
             {channels} room channels still subscribed",
            memory - memory_before
        );
        // Polling Redis's own view: it announces nothing.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_joins_into_a_room_taking_5_000_publishes_a_second_each_answer_within_a_second_and_miss_nothing()
 {
    const ROOM: &str = "busy";
    const JOINS: usize = 20;
    const PUBLISHERS: usize = 5;
    let redis = Redis::start().await;
    // A queue for whatever backlog this test's own reading makes: a slow test is not a slow
    // member.
    let flags = [&WHOLE_HISTORY[..], &["--room-queue-bytes", "268435456"]].concat();
    let publishing = instance(&redis.url(), &flags).await;
    let joining = instance(&redis.url(), &flags).await;
    let clock = Instant::now();
    let (last_tx, last_rx) = watch::channel(None);
    // The joining instance delivers the room already, as it does once anyone there is in it.
    let mut watcher = Follower::start(
        ws_base(&joining),
        ROOM,
        "watcher",
        None,
        last_rx.clone(),
        clock,
    );
    let epoch = watcher.joined().await.0.expect("the watcher joins").epoch;
    // 5 × 10 messages every 10 ms: 5,000 a second.
    let mut publishers = Vec::new();
    for publisher in 0..PUBLISHERS {
        publishers.push(
            Publisher::start(
                &publishing,
                ROOM,
                &format!("publisher{publisher}"),
                10,
                Duration::from_millis(10),
                clock,
            )
            .await,
        );
    }
    // The room flows: its rate, measured on the joining instance.
    let deadline = Instant::now() + PATIENCE;
    while watcher.last() < 1_000 {
        assert!(Instant::now() < deadline, "the room never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (rate_from, rate_offset) = (Instant::now(), watcher.last());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rate = (watcher.last() - rate_offset) as f64 / rate_from.elapsed().as_secs_f64();
    eprintln!("the room takes {rate:.0} messages a second");
    // Offered 5,000 a second; a debug build on a loaded machine takes fewer, but a room that
    // took fewer than 1,000 would not be busy, and the joins would prove nothing.
    assert!(
        rate >= 1_000.0,
        "the room took only {rate:.0} messages a second"
    );

    // Twenty joins, one every 100 ms, alternately fresh and resuming 500 messages back.
    let mut joiners = Vec::new();
    for join in 0..JOINS {
        let since = (join % 2 == 1).then(|| (epoch.clone(), watcher.last().saturating_sub(500)));
        joiners.push(Follower::start(
            ws_base(&joining),
            ROOM,
            &format!("joiner{join}"),
            since,
            last_rx.clone(),
            clock,
        ));
        // The pace of the joins, not a wait for anything.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for joiner in &mut joiners {
        // Its answer is checked with the rest below.
        let _ = joiner.joined().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last = stop_all(publishers).await;
    last_tx.send_replace(Some(last));
    eprintln!("{last} messages published in {:?}", clock.elapsed());

    let mut problems = Vec::new();
    let mut took = Vec::new();
    let mut latencies = Vec::new();
    for joiner in joiners {
        let followed = joiner.finish().await;
        took.push(followed.join_took);
        latencies.extend(
            followed
                .times
                .iter()
                .map(|(sent, received)| received - sent),
        );
        let joined = match &followed.answer {
            Ok(joined) => joined,
            Err(refusal) => {
                problems.push(format!(
                    "{}: refused after {:?}: {refusal}",
                    followed.name, followed.join_took
                ));
                continue;
            }
        };
        if followed.join_took >= Duration::from_secs(1) {
            problems.push(format!(
                "{}: joined after {:?}",
                followed.name, followed.join_took
            ));
        }
        if followed.since.is_some() && !joined.recovered {
            problems.push(format!("{}: not recovered: {joined:?}", followed.name));
        }
        if followed.ending != Ending::Reached {
            problems.push(format!("{}: ended {:?}", followed.name, followed.ending));
        }
        if let Some(problem) = contiguity_problem(&followed.offsets, followed.start() + 1, last) {
            problems.push(format!("{}: {problem}", followed.name));
        }
    }
    let watched = watcher.finish().await;
    if let Some(problem) = contiguity_problem(&watched.offsets, 1, last) {
        problems.push(format!("watcher: {problem}"));
    }
    took.sort_unstable();
    eprintln!("joins took {:?} to {:?}", took.first(), took.last());
    latencies.sort_unstable();
    if !latencies.is_empty() {
        let [p50, p99, max] = [0.5, 0.99, 1.0].map(|part| percentile(&latencies, part));
        eprintln!("publish to a joiner (replays too): p50 {p50:?}, p99 {p99:?}, max {max:?}");
    }
    assert!(
        problems.is_empty(),
        "{} problems in {JOINS} joins into a room taking {rate:.0} messages a second:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// One join racing the room's publishes: which half of its reads the proxy holds, and
/// whether it resumes from a position (`since`) or joins fresh.
#[derive(Debug, Clone, Copy)]
struct RacingJoin {
    held: Held,
    resumes: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_whose_history_read_is_held_500_ms_while_the_room_flows_gets_every_message_once_in_order()
 {
    const ROOM: &str = "race";
    const HOLD: Duration = Duration::from_millis(500);
    let redis = Redis::start().await;
    let proxy = RedisProxy::start(&redis.socket_path());
    // Publishes go straight to Redis through one instance; the joins go through the proxy on
    // the other, where nothing but the joins' reads touches the room's stream.
    let publishing = instance(&redis.url(), &WHOLE_HISTORY).await;
    // What arrives while a read is held (500 ms at 1,000 a second: about 110 KB of frames
    // and their handles) must fit in what a join may hold, its queue's bound: a join holds no
    // more than its member may have queued, and reads again when the room outruns it.
    let joining = instance(
        &proxy.url(),
        &[&WHOLE_HISTORY[..], &["--room-queue-bytes", "1048576"]].concat(),
    )
    .await;
    let clock = Instant::now();
    let (last_tx, last_rx) = watch::channel(None);
    let mut watcher = Follower::start(
        ws_base(&joining),
        ROOM,
        "watcher",
        None,
        last_rx.clone(),
        clock,
    );
    let epoch = watcher.joined().await.0.expect("the watcher joins").epoch;
    // 2 × 5 messages every 10 ms: 1,000 a second, 500 of them while a read is held.
    let mut publishers = Vec::new();
    for publisher in 0..2 {
        publishers.push(
            Publisher::start(
                &publishing,
                ROOM,
                &format!("publisher{publisher}"),
                5,
                Duration::from_millis(10),
                clock,
            )
            .await,
        );
    }
    let deadline = Instant::now() + PATIENCE;
    while watcher.last() < 200 {
        assert!(Instant::now() < deadline, "the room never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let joins = [
        RacingJoin {
            held: Held::Command,
            resumes: false,
        },
        RacingJoin {
            held: Held::Command,
            resumes: true,
        },
        RacingJoin {
            held: Held::Reply,
            resumes: false,
        },
        RacingJoin {
            held: Held::Reply,
            resumes: true,
        },
    ];
    let mut joiners = Vec::new();
    let mut problems = Vec::new();
    for (index, racing) in joins.iter().enumerate() {
        // Every read of the room's stream is slow while this join waits: the link is.
        proxy.hold(
            Matching::containing(log_key(ROOM)),
            racing.held,
            HOLD,
            usize::MAX,
        );
        let holds_before = proxy.holds().len();
        let since = racing
            .resumes
            .then(|| (epoch.clone(), watcher.last().saturating_sub(200)));
        let asked = Instant::now();
        let mut joiner = Follower::start(
            ws_base(&joining),
            ROOM,
            &format!("joiner{index}"),
            since,
            last_rx.clone(),
            clock,
        );
        let (answer, took) = joiner.joined().await;
        proxy.stop_holding();
        let held = proxy.holds()[holds_before..]
            .iter()
            .filter(|at| **at >= asked)
            .count();
        // The race happened: this join's read was held.
        assert!(held >= 1, "{racing:?}: no read held");
        eprintln!("{racing:?}: answered after {took:?}, {held} reads held: {answer:?}");
        match answer {
            Err(refusal) => problems.push(format!(
                "{racing:?}: refused after {took:?} and {held} held reads: {refusal}"
            )),
            Ok(_) if took > 4 * HOLD => problems.push(format!(
                "{racing:?}: joined after {took:?} and {held} held reads"
            )),
            Ok(_) => {}
        }
        joiners.push((*racing, joiner));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = stop_all(publishers).await;
    last_tx.send_replace(Some(last));

    for (racing, joiner) in joiners {
        let followed = joiner.finish().await;
        let Ok(joined) = &followed.answer else {
            continue;
        };
        if followed.since.is_some() && !joined.recovered {
            problems.push(format!("{racing:?}: not recovered: {joined:?}"));
        }
        if followed.ending != Ending::Reached {
            problems.push(format!("{racing:?}: ended {:?}", followed.ending));
        }
        if let Some(problem) = contiguity_problem(&followed.offsets, followed.start() + 1, last) {
            problems.push(format!("{racing:?}: {problem}"));
        }
    }
    let watched = watcher.finish().await;
    if let Some(problem) = contiguity_problem(&watched.offsets, 1, last) {
        problems.push(format!("watcher: {problem}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rooms_gap_read_held_2_s_does_not_delay_the_other_rooms_p99_under_50_ms() {
    const SLOW: &str = "slow";
    const CALM: [&str; 3] = ["calm0", "calm1", "calm2"];
    const HOLD: Duration = Duration::from_secs(2);
    let redis = Redis::start().await;
    let proxy = RedisProxy::start(&redis.socket_path());
    // Readers on the instance behind the proxy; publishers straight to Redis on the other, so
    // the held read is the only command the readers' instance has to wait for.
    // History enough that the slow room's gap can always be filled: late, never lost.
    let reading = instance(&proxy.url(), &WHOLE_HISTORY).await;
    let publishing = instance(&redis.url(), &WHOLE_HISTORY).await;
    let clock = Instant::now();
    let mut readers = Vec::new();
    for room in CALM.iter().chain([&SLOW]) {
        // Each room has its own last offset.
        let (last_tx, last_rx) = watch::channel(None);
        let mut reader = Follower::start(
            ws_base(&reading),
            room,
            &format!("reader-{room}"),
            None,
            last_rx,
            clock,
        );
        reader.joined().await.0.expect("the reader joins");
        readers.push((*room, reader, last_tx));
    }
    // Pub/sub loses one message of the slow room: the next one shows the gap, and the read
    // that fills it is held.
    proxy.drop_messages(&channel(SLOW), 1);
    proxy.hold(Matching::containing(log_key(SLOW)), Held::Command, HOLD, 1);
    let mut publishers = HashMap::new();
    for room in CALM.iter().chain([&SLOW]) {
        // One message every 20 ms per room.
        let publisher = Publisher::start(
            &publishing,
            room,
            &format!("publisher-{room}"),
            1,
            Duration::from_millis(20),
            clock,
        )
        .await;
        publishers.insert(*room, publisher);
    }
    let held_at = proxy.wait_for_holds(1).await;
    let held_from = u64::try_from((held_at - clock).as_micros()).expect("µs");
    let held_until = held_from + u64::try_from(HOLD.as_micros()).expect("µs");
    // Publishing goes on through the hold and a little after it.
    tokio::time::sleep_until(held_at + HOLD + Duration::from_millis(500)).await;
    let mut lasts = HashMap::new();
    for (room, publisher) in publishers {
        lasts.insert(room, publisher.stop().await);
    }
    assert_eq!(proxy.dropped(), 1);
    assert_eq!(proxy.holds().len(), 1);

    let mut problems = Vec::new();
    let mut latencies = Vec::new();
    for (room, reader, last_tx) in readers {
        last_tx.send_replace(Some(lasts[room]));
        let followed = reader.finish().await;
        if followed.ending != Ending::Reached {
            problems.push(format!("{room}: ended {:?}", followed.ending));
        }
        if let Some(problem) = contiguity_problem(&followed.offsets, 1, lasts[room]) {
            problems.push(format!("{room}: {problem}"));
        }
        if room != SLOW {
            latencies.extend(
                followed
                    .times
                    .iter()
                    .filter(|(sent, _)| (held_from..held_until).contains(sent))
                    .map(|(sent, received)| received - sent),
            );
        }
    }
    latencies.sort_unstable();
    assert!(
        latencies.len() >= 200,
        "only {} messages of the other rooms sent during the hold",
        latencies.len()
    );
    let [p50, p99, max] = [0.5, 0.99, 1.0].map(|part| percentile(&latencies, part));
    eprintln!(
        "other rooms while one room's gap read was held {HOLD:?}: {} messages, p50 {p50:?}, \
         p99 {p99:?}, max {max:?}",
        latencies.len()
    );
    if p99 >= Duration::from_millis(50) {
        problems.push(format!(
            "the other rooms' publish-to-delivery p99 was {p99:?} (p50 {p50:?}, max {max:?}) \
             while one room's gap read was held {HOLD:?}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// How a reader's own publish is kept waiting on the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// Redis stopped (SIGSTOP) for [`STALL`]: every command of every instance waits.
    FrozenRedis,
    /// Only that publish held by the proxy for [`STALL`], while the room goes on flowing
    /// through the other instance and pub/sub.
    HeldPublish,
}

const STALL: Duration = Duration::from_millis(1500);

/// Reads `events` into `log` until `done` holds of it (`true`), or the connection ended or
/// [`PATIENCE`] passed (`false`).
async fn record_until(
    events: &mut mpsc::UnboundedReceiver<(Instant, Event)>,
    log: &mut Vec<(Instant, Event)>,
    done: impl Fn(&[(Instant, Event)]) -> bool,
) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if done(log) {
            return true;
        }
        if matches!(log.last(), Some((_, Event::Closed(_) | Event::Ended))) {
            return false;
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => log.push(event),
            Ok(None) | Err(_) => return false,
        }
    }
}

fn messages(log: &[(Instant, Event)]) -> impl Iterator<Item = (Instant, u64, &str)> {
    log.iter().filter_map(|(at, event)| match event {
        Event::Frame(ServerFrame::Message { offset, id, .. }) => Some((*at, *offset, id.as_str())),
        _ => None,
    })
}

/// The acks and refusals of the publish `id` in `log`, with when they came.
fn answers_to<'log>(
    log: &'log [(Instant, Event)],
    id: &'log str,
) -> impl Iterator<Item = (Instant, &'log ServerFrame)> {
    log.iter().filter_map(move |(at, event)| match event {
        Event::Frame(
            frame @ (ServerFrame::Ack { id: answered, .. }
            | ServerFrame::Error {
                id: Some(answered), ..
            }),
        ) if answered == id => Some((*at, frame)),
        _ => None,
    })
}

/// A reader of a busy room sends a publish that waits on the engine (`stall`), and pings
/// the server every 100 ms meanwhile, on an instance that pings every second.
async fn a_reader_whose_publish_waits(stall: Stall) {
    const ROOM: &str = "busy";
    const STUCK: &str = "stuck";
    let redis = Redis::start().await;
    let proxy = RedisProxy::start(&redis.socket_path());
    // Held: 2 × 10 messages every 10 ms (2,000 a second, some 340 KB a second) against the
    // smallest queue (64 KiB), so a session that stops writing its queue for the hold
    // overflows it many times over. Frozen: nothing flows during the freeze anyway.
    let (reader_redis, per_tick, queue_bytes) = match stall {
        Stall::FrozenRedis => (redis.url(), 5, "1048576"),
        Stall::HeldPublish => (proxy.url(), 10, "65536"),
    };
    let reading = instance(
        &reader_redis,
        &["--ping-interval", "1", "--room-queue-bytes", queue_bytes],
    )
    .await;
    let publishing = instance(&redis.url(), &[]).await;
    let clock = Instant::now();
    let (mut sink, mut stream) = connect(&ws_base(&reading), "reader").await.split();
    let joined = join(&mut sink, &mut stream, ROOM, None, "reader")
        .await
        .expect("the reader joins");
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let recording = tokio::spawn(async move {
        while let Some(event) = next_event(&mut stream, 3 * PATIENCE, "reader").await {
            let ended = matches!(event, Event::Closed(_) | Event::Ended);
            if events_tx.send((Instant::now(), event)).is_err() || ended {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let mut publishers = Vec::new();
    for publisher in 0..2 {
        publishers.push(
            Publisher::start(
                &publishing,
                ROOM,
                &format!("publisher{publisher}"),
                per_tick,
                Duration::from_millis(10),
                clock,
            )
            .await,
        );
    }
    let flowing = record_until(&mut events, &mut log, |log| messages(log).count() >= 50).await;
    assert!(
        flowing,
        "the room never reached the reader: {:?}",
        log.last()
    );

    let stuck = publish_request(ROOM, STUCK, "waits on the engine");
    let stalled_at = match stall {
        Stall::FrozenRedis => {
            redis.freeze();
            let frozen_at = Instant::now();
            send_all(&mut sink, [stuck.clone()]).await;
            frozen_at
        }
        Stall::HeldPublish => {
            // Its dedup key names it alone.
            let key = format!("rooms:{{{ROOM}}}:id:{STUCK}");
            proxy.hold(Matching::containing(key), Held::Command, STALL, 1);
            send_all(&mut sink, [stuck.clone()]).await;
            proxy.wait_for_holds(1).await
        }
    };
    // The client's own pings, every 100 ms of the stall: each must be answered promptly.
    let mut pings = Vec::new();
    for n in 0..14_u8 {
        tokio::time::sleep_until(stalled_at + Duration::from_millis(100) * u32::from(n + 1)).await;
        sink.send(Message::Ping(vec![n].into()))
            .await
            .expect("a ping is sent");
        pings.push((n, Instant::now()));
    }
    if stall == Stall::FrozenRedis {
        tokio::time::sleep_until(stalled_at + STALL).await;
        redis.thaw();
    }
    // The stuck publish is acked in the end: sent again after `unavailable`, as a client's
    // outbox does (a few times at most).
    let mut sent = 1;
    let acked_at = loop {
        let answered = record_until(&mut events, &mut log, |log| {
            answers_to(log, STUCK).count() >= sent
        })
        .await;
        match answers_to(&log, STUCK).last() {
            Some((at, ServerFrame::Ack { .. })) => break Some(at),
            Some((
                _,
                ServerFrame::Error {
                    code: ErrorCode::Unavailable,
                    ..
                },
            )) if answered && sent < 4 => {
                sent += 1;
                send_all(&mut sink, [stuck.clone()]).await;
            }
            _ => break None,
        }
    };
    let last = stop_all(publishers).await;
    // The stuck publish may have taken an offset after the publishers' last.
    let stuck_offset = answers_to(&log, STUCK).find_map(|(_, frame)| match frame {
        ServerFrame::Ack { offset, .. } => Some(*offset),
        _ => None,
    });
    let last = last.max(stuck_offset.unwrap_or(0));
    record_until(&mut events, &mut log, |log| {
        messages(log)
            .last()
            .is_some_and(|(_, offset, _)| offset >= last)
    })
    .await;
    recording.abort();

    let since_stall = |at: Instant| at.saturating_duration_since(stalled_at);
    let mut problems = Vec::new();
    if stall == Stall::HeldPublish
        && let Some(acked_at) = acked_at
    {
        // The test did what it says: the publish waited the whole hold.
        assert!(
            since_stall(acked_at) >= STALL,
            "acked {:?} into the hold",
            since_stall(acked_at)
        );
    }
    match acked_at {
        Some(at) => eprintln!(
            "{stall:?}: the stuck publish acked {:?} after the stall began",
            since_stall(at)
        ),
        None => problems.push("the stuck publish was never acked".to_owned()),
    }
    for (at, event) in &log {
        if let Event::Closed(_) | Event::Ended = event {
            problems.push(format!(
                "closed {:?} after the stall began: {event:?}",
                since_stall(*at)
            ));
        }
    }
    for (n, sent) in &pings {
        let pong = log.iter().find_map(|(at, event)| match event {
            Event::Pong(payload) if payload == &[*n] => Some(*at),
            _ => None,
        });
        match pong {
            Some(at) if at.duration_since(*sent) < Duration::from_millis(500) => {}
            Some(at) => problems.push(format!(
                "ping {n}, sent {:?} into the stall, answered after {:?}",
                since_stall(*sent),
                at.duration_since(*sent)
            )),
            None => problems.push(format!(
                "ping {n}, sent {:?} into the stall, never answered",
                since_stall(*sent)
            )),
        }
    }
    let stall_window = |at: &Instant| *at >= stalled_at && *at < stalled_at + STALL;
    let server_pings = log
        .iter()
        .filter(|(at, event)| matches!(event, Event::Ping) && stall_window(at))
        .count();
    if server_pings == 0 {
        problems.push(format!(
            "no ping from the server during the {STALL:?} stall, at --ping-interval 1"
        ));
    }
    if stall == Stall::HeldPublish {
        // The room flowed the whole time: no pause in deliveries longer than 300 ms.
        let mut previous = stalled_at + Duration::from_millis(100);
        let mut longest = Duration::ZERO;
        for (at, _, _) in messages(&log).filter(|(at, _, _)| stall_window(at)) {
            longest = longest.max(at.saturating_duration_since(previous));
            previous = previous.max(at);
        }
        longest = longest.max((stalled_at + STALL).saturating_duration_since(previous));
        if longest >= Duration::from_millis(300) {
            problems.push(format!(
                "no delivery for {longest:?} while the reader's publish was held (the room took \
                 2,000 messages a second)"
            ));
        }
    }
    let offsets: Vec<u64> = messages(&log).map(|(_, offset, _)| offset).collect();
    if let Some(problem) = contiguity_problem(&offsets, joined.offset + 1, last) {
        problems.push(problem);
    }
    let stuck_seen = messages(&log).filter(|(_, _, id)| *id == STUCK).count();
    if acked_at.is_some() && stuck_seen != 1 {
        problems.push(format!("the stuck publish delivered {stuck_seen} times"));
    }
    assert!(problems.is_empty(), "{stall:?}:\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_whose_publish_waits_on_a_frozen_redis_is_still_pinged_and_answered_and_never_closed()
 {
    a_reader_whose_publish_waits(Stall::FrozenRedis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_whose_publish_is_held_1_5_s_keeps_receiving_its_busy_room_and_is_never_closed_1008()
 {
    a_reader_whose_publish_waits(Stall::HeldPublish).await;
}

/// How the reader's instance loses pub/sub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// The proxy closes the instance's pub/sub connection, as a dropped link does.
    ProxyCut,
    /// Redis drops every pub/sub connection (`CLIENT KILL TYPE pubsub`).
    ClientKill,
}

/// Publishes `ids` and waits for their acks: the highest offset.
async fn publish_and_ack(
    sink: &mut SplitSink<Client, Message>,
    stream: &mut SplitStream<Client>,
    room: &str,
    ids: &[String],
) -> u64 {
    send_all(
        sink,
        ids.iter().map(|id| publish_request(room, id, "quiet")),
    )
    .await;
    let mut acked = 0;
    let mut last = 0;
    while acked < ids.len() {
        match next_event(stream, PATIENCE, "publisher").await {
            Some(Event::Frame(ServerFrame::Ack { id, offset, .. })) if ids.contains(&id) => {
                acked += 1;
                last = last.max(offset);
            }
            Some(Event::Frame(ServerFrame::Message { .. }) | Event::Ping | Event::Pong(_)) => {}
            other => panic!("publisher: {other:?} with {acked} of {} acked", ids.len()),
        }
    }
    last
}

/// A room that goes quiet right after messages were published while the reader's instance
/// had no pub/sub: the instance must fetch them itself, with nobody publishing again.
async fn a_quiet_rooms_messages_from_a_pub_sub_outage_arrive(outage: Outage) {
    const ROOM: &str = "quiet";
    const RESUBSCRIBE_HELD: Duration = Duration::from_millis(1500);
    let redis = Redis::start().await;
    let proxy = RedisProxy::start(&redis.socket_path());
    let reading = instance(&proxy.url(), &[]).await;
    let publishing = instance(&redis.url(), &[]).await;
    let clock = Instant::now();
    let (last_tx, last_rx) = watch::channel(None);
    let mut reader = Follower::start(ws_base(&reading), ROOM, "reader", None, last_rx, clock);
    reader.joined().await.0.expect("the reader joins");
    let (mut sink, mut stream) = connect(&ws_base(&publishing), "publisher").await.split();
    join(&mut sink, &mut stream, ROOM, None, "publisher")
        .await
        .expect("the publisher joins");
    publish_and_ack(&mut sink, &mut stream, ROOM, &["before".to_owned()]).await;
    let deadline = Instant::now() + PATIENCE;
    while reader.last() < 1 {
        assert!(
            Instant::now() < deadline,
            "the first message never reached the reader"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The reader's instance loses pub/sub, and its new subscription waits in the proxy.
    proxy.hold(
        Matching::Named("SUBSCRIBE".to_owned()),
        Held::Command,
        RESUBSCRIBE_HELD,
        1,
    );
    match outage {
        Outage::ProxyCut => assert_eq!(proxy.cut_subscribers(), 1),
        Outage::ClientKill => {
            let killed = redis.integer(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
            assert!(killed >= 2, "{killed}: both instances' pub/sub connections");
        }
    }
    let held_at = proxy.wait_for_holds(1).await;
    let ids: Vec<String> = (0..5).map(|n| format!("while-{n}")).collect();
    let last = publish_and_ack(&mut sink, &mut stream, ROOM, &ids).await;
    let published_at = Instant::now();
    assert!(
        published_at < held_at + RESUBSCRIBE_HELD,
        "the machine took {:?}: the messages were not all published during the outage",
        published_at - held_at
    );
    // Nobody publishes again.
    last_tx.send_replace(Some(last));
    let followed = reader.finish().await;
    let mut problems = Vec::new();
    match followed.reached_at {
        Some(at) => {
            let took = at.saturating_duration_since(published_at);
            eprintln!(
                "{outage:?}: the quiet room's last messages arrived {took:?} after they were published"
            );
            if took > Duration::from_secs(5) {
                problems.push(format!("the last messages arrived only after {took:?}"));
            }
        }
        None => problems.push(format!(
            "the last messages never arrived: ended {:?} at offset {:?} of {last}",
            followed.ending,
            followed.offsets.last()
        )),
    }
    if let Some(problem) = contiguity_problem(&followed.offsets, 1, last) {
        problems.push(problem);
    }
    assert!(problems.is_empty(), "{outage:?}:\n{}", problems.join("\n"));
}

#[tokio::test]
async fn a_quiet_rooms_messages_published_while_the_proxy_cut_pub_sub_arrive_without_another_publish()
 {
    a_quiet_rooms_messages_from_a_pub_sub_outage_arrive(Outage::ProxyCut).await;
}

#[tokio::test]
async fn a_quiet_rooms_messages_published_while_redis_killed_pub_sub_arrive_without_another_publish()
 {
    a_quiet_rooms_messages_from_a_pub_sub_outage_arrive(Outage::ClientKill).await;
}

/// Pub/sub loses a quiet room's last message without the link dropping (the proxy swallows
/// it): the instance finds it by comparing the room's position with Redis's every few seconds.
#[tokio::test]
async fn a_quiet_rooms_message_that_pub_sub_lost_without_a_drop_arrives_by_the_position_check() {
    const ROOM: &str = "lost";
    let redis = Redis::start().await;
    let proxy = RedisProxy::start(&redis.socket_path());
    let reading = instance(&proxy.url(), &[]).await;
    let publishing = instance(&redis.url(), &[]).await;
    let clock = Instant::now();
    let (last_tx, last_rx) = watch::channel(None);
    let mut reader = Follower::start(ws_base(&reading), ROOM, "reader", None, last_rx, clock);
    reader.joined().await.0.expect("the reader joins");
    let (mut sink, mut stream) = connect(&ws_base(&publishing), "publisher").await.split();
    join(&mut sink, &mut stream, ROOM, None, "publisher")
        .await
        .expect("the publisher joins");
    proxy.drop_messages(&channel(ROOM), 1);
    let last = publish_and_ack(&mut sink, &mut stream, ROOM, &["swallowed".to_owned()]).await;
    let published_at = Instant::now();
    // Nobody publishes again.
    last_tx.send_replace(Some(last));
    let followed = reader.finish().await;
    assert_eq!(proxy.dropped(), 1, "the proxy swallowed the message");
    let reached = followed.reached_at.unwrap_or_else(|| {
        panic!(
            "the swallowed message never arrived: ended {:?} at {:?}",
            followed.ending,
            followed.offsets.last()
        )
    });
    let took = reached.saturating_duration_since(published_at);
    eprintln!("a message pub/sub lost arrived {took:?} after it was published");
    assert!(took < Duration::from_secs(5), "it took {took:?}");
    assert_eq!(followed.offsets, [last], "once");
}

/// Another room's `SUBSCRIBE` held 1.5 s before Redis sees it: a join to a room this instance
/// subscribes to already answers at once, and the held one when its subscription is confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_to_a_room_subscribed_here_never_waits_on_another_rooms_subscribe() {
    const HOLD: Duration = Duration::from_millis(1500);
    let redis = Redis::start().await;
    let proxy = RedisProxy::start(&redis.socket_path());
    let server = instance(&proxy.url(), &[]).await;
    let base = ws_base(&server);
    // Someone here is in the lobby: its channel is subscribed.
    let (mut sink, mut stream) = connect(&base, "first").await.split();
    join(&mut sink, &mut stream, "lobby", None, "first")
        .await
        .expect("the first member joins");
    proxy.hold(
        Matching::Named("SUBSCRIBE".to_owned()),
        Held::Command,
        HOLD,
        1,
    );
    let slow_base = base.clone();
    let slow = tokio::spawn(async move {
        let (mut sink, mut stream) = connect(&slow_base, "slow").await.split();
        let started = Instant::now();
        let joined = join(&mut sink, &mut stream, "elsewhere", None, "slow").await;
        (joined, started.elapsed())
    });
    proxy.wait_for_holds(1).await;
    let (mut sink, mut stream) = connect(&base, "second").await.split();
    let started = Instant::now();
    join(&mut sink, &mut stream, "lobby", None, "second")
        .await
        .expect("the second member joins");
    let took = started.elapsed();
    let (slow_joined, slow_took) = slow.await.expect("the slow join");
    eprintln!("a join to a subscribed room took {took:?}; the held one {slow_took:?}");
    assert!(
        took < Duration::from_millis(500),
        "a join to a room subscribed here waited {took:?} behind another room's SUBSCRIBE"
    );
    slow_joined.expect("the held join is answered once its SUBSCRIBE is");
    assert!(
        slow_took >= HOLD - Duration::from_millis(100),
        "the held join took only {slow_took:?}: the hold did not hold it"
    );
}

/// Past the 64 requests a session holds while one waits on the engine: 1,000 publishes in one
/// write while Redis is frozen. The first waits, 63 more are held, the rest stay in the
/// socket; once Redis answers, every one is acknowledged, once and in order, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_sent_while_one_waits_on_a_frozen_redis_are_all_answered_in_order() {
    const COUNT: usize = 1_000;
    let redis = Redis::start().await;
    let server = instance(&redis.url(), &[]).await;
    let (mut sink, mut stream) = connect(&ws_base(&server), "burst").await.split();
    join(&mut sink, &mut stream, "burst", None, "burst")
        .await
        .expect("joins");
    redis.freeze();
    let ids: Vec<String> = (0..COUNT).map(|n| format!("b{n}")).collect();
    send_all(
        &mut sink,
        ids.iter().map(|id| publish_request("burst", id, "x")),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.thaw();
    let mut acked = Vec::new();
    while acked.len() < COUNT {
        match next_event(&mut stream, PATIENCE, "burst").await {
            Some(Event::Frame(ServerFrame::Ack { id, offset, .. })) => acked.push((id, offset)),
            Some(Event::Frame(ServerFrame::Message { .. }) | Event::Ping | Event::Pong(_)) => {}
            other => panic!("after {} acks: {other:?}", acked.len()),
        }
    }
    let acked_ids: Vec<&str> = acked.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        acked_ids,
        ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let offsets: Vec<u64> = acked.iter().map(|(_, offset)| *offset).collect();
    assert_eq!(offsets, (1..=COUNT as u64).collect::<Vec<_>>());
}
