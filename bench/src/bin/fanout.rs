//! Fan-out load generator for `GET /rooms`: `--members` connections join one room, `--publishers`
//! more connections join it too and publish into it, closed loop (the next publish after the
//! previous one's ack) or at `--rate` per publisher; each member checks that offsets arrive
//! contiguous and once, and measures publish-to-delivery latency from the send time the
//! publisher wrote at the start of every text. Prints one JSON line.
//!
//! `--rooms N` spreads the same connections over N rooms (`ROOM-0` to `ROOM-{N-1}`): member
//! and publisher `i` join room `i mod N`, so many small rooms with a paced publisher each are
//! the load of chats as they run, where one room of a thousand is the load of a broadcast.
//!
//! Several `--addr` are instances that share their rooms (through Redis): members, and
//! publishers, are spread over them in turn, so every delivery to a member on one instance of
//! a publish made on the other crossed Redis. `--redis-socket` adds what the shared Redis did
//! while measuring: its CPU time per delivery and its commands per publish.
//!
//! Timeline: connect and join everyone, then `--warmup` seconds, then `--duration` seconds of
//! measurement (server CPU, deliveries received), then at most `--drain` seconds for the
//! messages published during the measurement to arrive. `offered_per_sec` is the publishes
//! sent while measuring times the members, per second; a publish counts as published when it
//! is acknowledged by the end of the drain; `expected` is those times the members, and
//! `missing` what of that never arrived (skipped by the server, queued beyond the drain, or
//! lost with a member the server closed).
//!
//! Kept cheap so one core drives a thousand members: frames are cut by hand from one buffer per
//! connection, and a delivery's offset and send time are found by scanning for `"offset":` and
//! `"text":"` instead of parsing the JSON. Inside a JSON string a quote is always escaped, so
//! those patterns only match the frame's own keys. Publishers send uncompressed frames even
//! with `--deflate`; members inflate what the server compresses.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use clap::Parser;
use flate2::{Decompress, FlushDecompress};
use hdrhistogram::Histogram;
use memchr::memmem::Finder;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

#[derive(Debug, Parser)]
struct Args {
    /// Server address (127.0.0.1 or another loopback address only). Repeat it for instances
    /// that share their rooms (through Redis): members, then publishers, are spread over them
    /// in turn.
    #[arg(long, required = true)]
    addr: Vec<SocketAddr>,
    /// Server process to read CPU time from; repeat it for several instances (their CPU time
    /// is summed).
    #[arg(long)]
    pid: Vec<u32>,
    /// The unix socket of the Redis the instances share: its CPU time (from the process id it
    /// reports) and the commands it ran per publish while measuring (`INFO commandstats`) are
    /// reported too.
    #[arg(long)]
    redis_socket: Option<PathBuf>,
    /// Connections that join a room and only read (all rooms together).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    members: u32,
    /// Connections that join a room and publish into it (not counted as members).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    publishers: u32,
    /// Rooms the members and publishers are spread over: connection `i` of each kind joins
    /// room `i mod N`. At most as many as there are members and as publishers, so that every
    /// room has both.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rooms: u32,
    /// Publishes per second per publisher; 0 is closed loop (each publish waits for the
    /// previous one's ack).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Bytes of each message's text (at least 24: the send time, 16 digits, and a space lead it).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(24..=1024 * 1024))]
    size: u32,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Seconds of publishing before the measurement starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Most seconds to wait after the measurement for its messages to arrive.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// Room to join; with `--rooms` above 1, the rooms are this name, a dash and 0 to N-1.
    #[arg(long, default_value = "bench")]
    room: String,
    /// Offer permessage-deflate as Chromium does, failing if the server declines.
    #[arg(long)]
    deflate: bool,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Longest any phase may be told to last, in seconds: the generator always stops by itself.
const MOST_SECONDS: f64 = 600.0;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The words alone, for the benchmark's table to quote.
            eprintln!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    if !args.addr.iter().all(|addr| addr.ip().is_loopback()) {
        return Err(
            "--addr must be a loopback address: this generator loads only this machine".into(),
        );
    }
    for (name, value) in [
        ("duration", args.duration),
        ("warmup", args.warmup),
        ("drain", args.drain),
    ] {
        if !(0.0..=MOST_SECONDS).contains(&value) {
            return Err(format!("--{name} must be between 0 and {MOST_SECONDS} seconds").into());
        }
    }
    if args.duration <= 0.0 {
        return Err("--duration must be more than 0 seconds".into());
    }
    if !(0.0..=100_000.0).contains(&args.rate) {
        return Err("--rate must be between 0 (closed loop) and 100000 per second".into());
    }
    if args.rooms > args.members || args.rooms > args.publishers {
        return Err("--rooms must be at most --members and at most --publishers".into());
    }
    let rooms = Rooms::new(&args.room, args.rooms, args.members, args.addr.len());
    if !rooms
        .names
        .iter()
        .all(|name| room_protocol::names::is_room_name(name))
    {
        return Err(
            "--room is 1 to 64 of A-Z a-z 0-9 _ . : - (with its number, when --rooms is above 1)"
                .into(),
        );
    }
    rlimit::increase_nofile_limit(u64::MAX)?;
    let dialer = Dialer {
        deflate: args.deflate,
    };
    let base = Instant::now();

    let mut members = Vec::with_capacity(args.members as usize);
    for index in 0..args.members {
        let (room, instance) = rooms.place(index);
        members.push(
            dialer
                .join(
                    args.addr[instance],
                    &format!("member{index}"),
                    &rooms.names[room],
                    room,
                )
                .await?,
        );
    }
    let mut publishers = Vec::with_capacity(args.publishers as usize);
    for index in 0..args.publishers {
        let (room, instance) = rooms.place(index);
        publishers.push(
            dialer
                .join(
                    args.addr[instance],
                    &format!("publisher{index}"),
                    &rooms.names[room],
                    room,
                )
                .await?,
        );
    }
    let mut redis = match &args.redis_socket {
        Some(socket) => Some(RedisProbe::connect(socket).await?),
        None => None,
    };

    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let clock = Clock {
        base,
        measure_from,
        end,
        drain_until: end + Duration::from_secs_f64(args.drain),
    };
    let progress = Arc::new(Progress {
        last_offsets: (0..args.rooms).map(|_| AtomicU64::new(0)).collect(),
        publishers_running: AtomicUsize::new(publishers.len()),
    });
    let filler = filler_text(args.size as usize);
    let mut member_tasks = tokio::task::JoinSet::new();
    for joined in members {
        member_tasks.spawn(member(joined, clock, progress.clone()));
    }
    let mut publisher_tasks = tokio::task::JoinSet::new();
    for (index, joined) in publishers.into_iter().enumerate() {
        let plan = PublishPlan {
            index,
            room: rooms.names[joined.room].clone(),
            audience: rooms.members[joined.room],
            filler: filler.clone(),
            interval: (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate)),
            first_due: start
                + Duration::from_secs_f64(if args.rate > 0.0 {
                    index as f64 / (args.rate * f64::from(args.publishers))
                } else {
                    0.0
                }),
        };
        publisher_tasks.spawn(publisher(joined, plan, clock, progress.clone()));
    }

    tokio::time::sleep_until(measure_from).await;
    let (server_before, own_before) = (servers_cpu_seconds(&args.pid), own_cpu_seconds());
    let redis_before = match &mut redis {
        Some(redis) => Some(redis.snapshot().await?),
        None => None,
    };
    tokio::time::sleep_until(end).await;
    let (server_after, own_after) = (servers_cpu_seconds(&args.pid), own_cpu_seconds());
    let redis_after = match &mut redis {
        Some(redis) => Some(redis.snapshot().await?),
        None => None,
    };

    let mut published = Published::default();
    while let Some(tally) = publisher_tasks.join_next().await {
        published.add(&tally??);
    }
    let mut delivered = MemberTally::new();
    while let Some(tally) = member_tasks.join_next().await {
        delivered.add(&tally?)?;
    }

    let summary = Summary::of(published.expected_deliveries, delivered.in_window_messages);
    let server_cpu_us = match (server_before, server_after) {
        (Some(before), Some(after)) if delivered.received_in_window > 0 => {
            json_number((after - before) * 1e6 / delivered.received_in_window as f64)
        }
        _ => serde_json::Value::Null,
    };
    let generator_share = match (own_before, own_after) {
        (Some(before), Some(after)) => json_number((after - before) / args.duration),
        _ => serde_json::Value::Null,
    };
    let latency_ms =
        |quantile: f64| json_number(delivered.latency.value_at_quantile(quantile) as f64 / 1000.0);
    let redis_work = match (&redis_before, &redis_after) {
        (Some(before), Some(after)) => RedisWork::between(
            before,
            after,
            published.sent_in_window,
            delivered.received_in_window,
        ),
        _ => RedisWork::default(),
    };
    let mut line = serde_json::json!({
        "members": args.members,
        "publishers": args.publishers,
        "rooms": args.rooms,
        "rate": args.rate,
        "size": args.size,
        "sent": published.sent_in_window,
        "published": published.in_window,
        "rejected": published.rejected,
        "offered_per_sec": (published.offered_deliveries as f64 / args.duration).round(),
        "expected": summary.expected,
        "deliveries": delivered.in_window_messages,
        "deliveries_whole_run": delivered.received,
        "missing": summary.missing,
        "gaps": delivered.tracker.gaps,
        "skipped_offsets": delivered.tracker.skipped,
        "duplicates": delivered.tracker.duplicates,
        "closed_members": delivered.closed,
        "closed_too_slow": delivered.closed_too_slow,
        "deliveries_per_sec": (delivered.received_in_window as f64 / args.duration).round(),
        "server_cpu_us_per_delivery": server_cpu_us,
        "p50_ms": latency_ms(0.5),
        "p99_ms": latency_ms(0.99),
        "max_ms": json_number(delivered.latency.max() as f64 / 1000.0),
        "generator_cpu_share": generator_share,
    });
    if redis.is_some() {
        // Per publish to 4 decimals: a stray command (a health-check PING, a script loaded
        // again) shows instead of rounding away.
        let per_publish = |value: f64| serde_json::Value::from((value * 1e4).round() / 1e4);
        line["redis_cpu_us_per_delivery"] = redis_work
            .cpu_us_per_delivery
            .map_or(serde_json::Value::Null, json_number);
        line["redis_evalsha_per_publish"] = redis_work
            .evalsha_per_publish
            .map_or(serde_json::Value::Null, per_publish);
        line["redis_commands_per_publish"] = redis_work
            .commands_per_publish
            .map_or(serde_json::Value::Null, per_publish);
        line["redis_commands"] = redis_work
            .per_publish
            .iter()
            .map(|(name, calls)| (name.clone(), per_publish(*calls)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    println!("{line}");
    Ok(())
}

fn json_number(value: f64) -> serde_json::Value {
    serde_json::Value::from((value * 100.0).round() / 100.0)
}

/// The phases of one run, shared by every task.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Send times in texts are microseconds since this.
    base: Instant,
    measure_from: Instant,
    end: Instant,
    drain_until: Instant,
}

impl Clock {
    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_micros() as u64
    }

    fn measuring(&self, at: Instant) -> bool {
        at >= self.measure_from && at < self.end
    }

    /// Whether a message sent at `sent` (microseconds since `base`) was sent while measuring.
    fn sent_while_measuring(&self, sent: u64) -> bool {
        (self.micros(self.measure_from)..self.micros(self.end)).contains(&sent)
    }
}

/// What members need to know of the publishers to stop early: the last offset acknowledged
/// in each room, and whether any publisher is still at work.
#[derive(Debug)]
struct Progress {
    last_offsets: Vec<AtomicU64>,
    publishers_running: AtomicUsize,
}

/// The rooms of a run and who goes where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rooms {
    names: Vec<String>,
    /// Members in each room.
    members: Vec<u64>,
    instances: usize,
}

impl Rooms {
    fn new(room: &str, rooms: u32, members: u32, instances: usize) -> Rooms {
        let names = if rooms == 1 {
            vec![room.to_owned()]
        } else {
            (0..rooms).map(|index| format!("{room}-{index}")).collect()
        };
        let mut counts = vec![0; rooms as usize];
        for index in 0..members {
            counts[index as usize % rooms as usize] += 1;
        }
        Rooms {
            names,
            members: counts,
            instances: instances.max(1),
        }
    }

    /// The room and instance of member (or publisher) `index`: room `index mod rooms`, and
    /// within a room the instances in turn, started at a different one in each room, so every
    /// room has its members, and its publishers, spread over every instance.
    fn place(&self, index: u32) -> (usize, usize) {
        let rooms = self.names.len();
        let (room, position) = (index as usize % rooms, index as usize / rooms);
        (room, (position + room) % self.instances)
    }
}

/// Marks one publisher finished however its task ends.
struct Finished(Arc<Progress>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.publishers_running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How connections are opened and joined.
struct Dialer {
    deflate: bool,
}

/// A connection that has joined its room.
struct Joined {
    stream: TcpStream,
    reader: FrameReader,
    /// Which of the run's rooms.
    room: usize,
    /// The room's last offset when the join took effect.
    offset: u64,
}

impl Dialer {
    /// Opens a connection as `name` and joins `room_name` (the run's room number `room`).
    async fn join(
        &self,
        addr: SocketAddr,
        name: &str,
        room_name: &str,
        room: usize,
    ) -> Result<Joined, Error> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let offer = if self.deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET /rooms?name={name} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{offer}\r\n",
            addr
        );
        stream.write_all(request.as_bytes()).await?;
        // Byte by byte, so nothing after the head is taken from the frames.
        let mut head = Vec::with_capacity(256);
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024 {
                return Err("the server's response head is longer than 16 KiB".into());
            }
            head.push(stream.read_u8().await?);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            let status = head.lines().next().unwrap_or_default().to_owned();
            return Err(format!(
                "the server refused the WebSocket upgrade of GET /rooms ({status}): does it serve /rooms?"
            )
            .into());
        }
        let head = head.to_ascii_lowercase();
        let inflater = match (self.deflate, head.contains("permessage-deflate")) {
            (false, _) => None,
            (true, true) => Some(Inflater::new(head.contains("server_no_context_takeover"))),
            (true, false) => {
                return Err("the server declined permessage-deflate (is --compression on?)".into());
            }
        };
        let join = format!(r#"{{"type":"join","room":"{room_name}"}}"#);
        stream
            .write_all(&client_frame(join.as_bytes(), 0x1))
            .await?;
        let mut reader = FrameReader::new(inflater);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let read = tokio::time::timeout_at(deadline, reader.read_from(&mut stream))
                .await
                .map_err(|_| "no joined frame within 10 s of the join")??;
            if read == 0 {
                return Err("the server closed the connection before joined".into());
            }
            let mut joined = None;
            let mut refused = None;
            reader.take_frames(|event| match event {
                Event::Text(text) => match frame_type(text) {
                    Some(FrameType::Joined) if joined.is_none() => {
                        joined = scan_number(text, &OFFSET_KEY);
                    }
                    Some(FrameType::Error) => {
                        refused = Some(String::from_utf8_lossy(text).into_owned());
                    }
                    _ => {}
                },
                // Pings are rare and answered by the tasks that follow; none come this early.
                Event::Ping(_) | Event::Close(_) => {}
            })?;
            if let Some(refusal) = refused {
                return Err(format!("the join was refused: {refusal}").into());
            }
            if let Some(offset) = joined {
                return Ok(Joined {
                    stream,
                    reader,
                    room,
                    offset,
                });
            }
        }
    }
}

/// What one member (or all, summed) saw.
struct MemberTally {
    tracker: OffsetTracker,
    /// Deliveries, each offset once, of messages sent while measuring (whenever they arrived).
    in_window_messages: u64,
    /// Deliveries, each offset once, that arrived while measuring (whenever they were sent).
    received_in_window: u64,
    /// Deliveries, each offset once, over the whole run: what a count of the server's work
    /// from start to exit (instructions under callgrind) is divided by.
    received: u64,
    /// Publish to delivery, microseconds, for messages sent while measuring.
    latency: Histogram<u64>,
    /// Members the server closed (or whose connection failed) before the end.
    closed: u64,
    /// Of those, members closed with 1008 (the server's "too slow").
    closed_too_slow: u64,
}

impl MemberTally {
    fn new() -> MemberTally {
        MemberTally {
            tracker: OffsetTracker::after(0),
            in_window_messages: 0,
            received_in_window: 0,
            received: 0,
            latency: Histogram::new(3).expect("3 significant figures is valid"),
            closed: 0,
            closed_too_slow: 0,
        }
    }

    fn add(&mut self, other: &MemberTally) -> Result<(), Error> {
        self.tracker.gaps += other.tracker.gaps;
        self.tracker.skipped += other.tracker.skipped;
        self.tracker.duplicates += other.tracker.duplicates;
        self.in_window_messages += other.in_window_messages;
        self.received_in_window += other.received_in_window;
        self.received += other.received;
        self.closed += other.closed;
        self.closed_too_slow += other.closed_too_slow;
        self.latency.add(&other.latency)?;
        Ok(())
    }
}

/// Offsets of one room as a member receives them: each gap (offsets jumped over) and each
/// offset that comes again or goes backwards is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OffsetTracker {
    next: u64,
    gaps: u64,
    skipped: u64,
    duplicates: u64,
}

impl OffsetTracker {
    /// A member whose `joined` said the room's last offset was `offset`.
    fn after(offset: u64) -> OffsetTracker {
        OffsetTracker {
            next: offset + 1,
            gaps: 0,
            skipped: 0,
            duplicates: 0,
        }
    }

    /// Takes an arriving offset; true when it is new (not seen before).
    fn see(&mut self, offset: u64) -> bool {
        if offset < self.next {
            self.duplicates += 1;
            return false;
        }
        if offset > self.next {
            self.gaps += 1;
            self.skipped += offset - self.next;
        }
        self.next = offset + 1;
        true
    }
}

/// One member: reads until everything published is in, or the drain ends.
async fn member(joined: Joined, clock: Clock, progress: Arc<Progress>) -> MemberTally {
    let Joined {
        mut stream,
        mut reader,
        room,
        offset,
    } = joined;
    let mut tally = MemberTally::new();
    tally.tracker = OffsetTracker::after(offset);
    let mut pongs: Vec<u8> = Vec::new();
    let mut wake = std::pin::pin!(tokio::time::sleep_until(clock.end));
    loop {
        let now = Instant::now();
        if now >= clock.drain_until {
            break;
        }
        if now >= clock.end
            && progress.publishers_running.load(Ordering::SeqCst) == 0
            && tally.tracker.next > progress.last_offsets[room].load(Ordering::SeqCst)
        {
            break;
        }
        // Wake at the end of the measurement, then often, to see whether all is in. One timer,
        // moved only once it has fired: a timer set per read costs more than the read.
        if wake.is_elapsed() {
            let next = (now + Duration::from_millis(20)).min(clock.drain_until);
            wake.as_mut().reset(next);
        }
        let read = tokio::select! {
            read = reader.read_from(&mut stream) => read,
            () = wake.as_mut() => continue,
        };
        match read {
            Ok(0) | Err(_) => {
                tally.closed += 1;
                break;
            }
            Ok(_) => {}
        }
        let now = Instant::now();
        let arrived = clock.micros(now);
        let mut closed = None;
        let taken = reader.take_frames(|event| match event {
            Event::Text(text) => {
                if frame_type(text) != Some(FrameType::Message) {
                    return;
                }
                let Some(offset) = scan_number(text, &OFFSET_KEY) else {
                    return;
                };
                if !tally.tracker.see(offset) {
                    return;
                }
                tally.received += 1;
                if clock.measuring(now) {
                    tally.received_in_window += 1;
                }
                if let Some(sent) = scan_number(text, &TEXT_KEY)
                    && clock.sent_while_measuring(sent)
                {
                    tally.in_window_messages += 1;
                    let _ = tally.latency.record(arrived.saturating_sub(sent).max(1));
                }
            }
            Event::Ping(payload) => pongs.extend(client_frame(payload, 0xA)),
            Event::Close(code) => closed = Some(code),
        });
        if let Some(code) = closed {
            tally.closed += 1;
            tally.closed_too_slow += u64::from(code == Some(1008));
            break;
        }
        if taken.is_err() {
            tally.closed += 1;
            break;
        }
        if !pongs.is_empty() {
            if stream.write_all(&pongs).await.is_err() {
                tally.closed += 1;
                break;
            }
            pongs.clear();
        }
    }
    tally
}

/// What one publisher did.
#[derive(Debug, Default)]
struct PublisherTally {
    /// Publishes sent while measuring.
    sent_in_window: u64,
    /// Publishes sent while measuring and acknowledged by the end of the drain.
    in_window: u64,
    /// Publishes answered with an error frame (a rate limit, for instance).
    rejected: u64,
    /// Members of its room: the deliveries each publish owes.
    audience: u64,
}

/// What the publishers did, summed, with the deliveries their publishes owe the members of
/// their rooms.
#[derive(Debug, Default, PartialEq, Eq)]
struct Published {
    sent_in_window: u64,
    in_window: u64,
    rejected: u64,
    /// Publishes sent while measuring, each times the members of its room.
    offered_deliveries: u64,
    /// Publishes acknowledged, each times the members of its room.
    expected_deliveries: u64,
}

impl Published {
    fn add(&mut self, tally: &PublisherTally) {
        self.sent_in_window += tally.sent_in_window;
        self.in_window += tally.in_window;
        self.rejected += tally.rejected;
        self.offered_deliveries += tally.sent_in_window * tally.audience;
        self.expected_deliveries += tally.in_window * tally.audience;
    }
}

struct PublishPlan {
    index: usize,
    room: String,
    /// Members of the room.
    audience: u64,
    filler: Arc<str>,
    /// Between publishes; `None` is closed loop.
    interval: Option<Duration>,
    first_due: Instant,
}

/// One publisher: publishes until the end of the measurement, then waits for its last acks.
async fn publisher(
    joined: Joined,
    plan: PublishPlan,
    clock: Clock,
    progress: Arc<Progress>,
) -> io::Result<PublisherTally> {
    let _finished = Finished(progress.clone());
    let Joined {
        mut stream,
        mut reader,
        room,
        ..
    } = joined;
    let mut tally = PublisherTally {
        audience: plan.audience,
        ..PublisherTally::default()
    };
    // Sequence numbers and send times of the publishes not yet answered, oldest first.
    let mut pending: VecDeque<(u64, u64)> = VecDeque::new();
    let mut sequence = 0u64;
    let mut next_due = plan.first_due;
    let mut outgoing: Vec<u8> = Vec::new();
    let closed_loop = plan.interval.is_none();
    loop {
        let now = Instant::now();
        if now >= clock.drain_until || (now >= clock.end && pending.is_empty()) {
            break;
        }
        // Publish what has come due: in closed loop, one whenever none is waiting.
        if now < clock.end && now >= plan.first_due {
            match plan.interval {
                None if pending.is_empty() => {
                    let sent = clock.micros(Instant::now());
                    outgoing.extend(publish_frame(&plan, sequence, sent));
                    pending.push_back((sequence, sent));
                    tally.sent_in_window += u64::from(clock.sent_while_measuring(sent));
                    sequence += 1;
                }
                None => {}
                Some(interval) => {
                    while next_due <= now && next_due < clock.end {
                        let sent = clock.micros(Instant::now());
                        outgoing.extend(publish_frame(&plan, sequence, sent));
                        pending.push_back((sequence, sent));
                        tally.sent_in_window += u64::from(clock.sent_while_measuring(sent));
                        sequence += 1;
                        next_due += interval;
                    }
                }
            }
        }
        if !outgoing.is_empty() {
            stream.write_all(&outgoing).await?;
            outgoing.clear();
        }
        let wake = if now < plan.first_due {
            plan.first_due
        } else if now < clock.end && !closed_loop {
            next_due.min(clock.end)
        } else if now < clock.end && pending.is_empty() {
            now
        } else {
            (now + Duration::from_millis(20)).min(clock.drain_until)
        };
        let read = tokio::select! {
            read = reader.read_from(&mut stream) => read?,
            () = tokio::time::sleep_until(wake) => continue,
        };
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed a publisher's connection",
            ));
        }
        let mut closed = false;
        reader
            .take_frames(|event| match event {
                Event::Text(text) => {
                    let answered = match frame_type(text) {
                        Some(FrameType::Ack) => {
                            if let Some(offset) = scan_number(text, &OFFSET_KEY) {
                                progress.last_offsets[room].fetch_max(offset, Ordering::SeqCst);
                            }
                            true
                        }
                        Some(FrameType::Error) => {
                            tally.rejected += 1;
                            false
                        }
                        _ => return,
                    };
                    let Some((_, answered_sequence)) = scan_id(text) else {
                        return;
                    };
                    // Answers come in order; anything older was answered in a frame not
                    // recognised and is dropped with it.
                    while let Some(&(oldest, sent)) = pending.front() {
                        if oldest > answered_sequence {
                            break;
                        }
                        pending.pop_front();
                        if oldest == answered_sequence
                            && answered
                            && clock.sent_while_measuring(sent)
                        {
                            tally.in_window += 1;
                        }
                    }
                }
                Event::Ping(payload) => outgoing.extend(client_frame(payload, 0xA)),
                Event::Close(_) => closed = true,
            })
            .map_err(io::Error::other)?;
        if closed {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server closed a publisher's connection",
            ));
        }
    }
    Ok(tally)
}

/// The publish frame: its id names the publisher and the sequence number, and its text starts
/// with the send time in microseconds (16 digits), then a space, then the filler.
fn publish_frame(plan: &PublishPlan, sequence: u64, sent: u64) -> Vec<u8> {
    let json = format!(
        r#"{{"type":"publish","room":"{}","id":"p{}s{sequence}","text":"{sent:016} {}"}}"#,
        plan.room, plan.index, plan.filler
    );
    client_frame(json.as_bytes(), 0x1)
}

/// `size - 17` bytes of chat-like words (no quotes or backslashes, so they need no escaping),
/// varied enough that permessage-deflate does the work it does on real chat.
fn filler_text(size: usize) -> Arc<str> {
    const WORDS: [&str; 12] = [
        "hello", "the", "deploy", "is", "green", "again", "after", "lunch", "ok", "shipping",
        "tomorrow", "thanks",
    ];
    let want = size.saturating_sub(17);
    let mut text = String::with_capacity(want + 16);
    let mut n = 0usize;
    while text.len() < want {
        text.push_str(WORDS[(n * 7 + n / 5) % WORDS.len()]);
        text.push(if n % 9 == 8 { '.' } else { ' ' });
        n += 1;
    }
    text.truncate(want);
    text.into()
}

/// A final, masked client frame (the key is fixed: only proxies care that it is random).
fn client_frame(payload: &[u8], opcode: u8) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(index, byte)| byte ^ mask[index % 4]),
    );
    frame
}

/// A server frame's header, once all of it is in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    /// Bytes of the header itself.
    length: usize,
    payload: usize,
    fin: bool,
    /// RSV1: the message is compressed (permessage-deflate).
    compressed: bool,
    opcode: u8,
}

/// Reads a server frame's header from the start of `bytes`: `Ok(None)` when it is not all in
/// yet. Servers never mask; a masked frame is a protocol error.
fn frame_header(bytes: &[u8]) -> Result<Option<Header>, &'static str> {
    let (Some(&first), Some(&second)) = (bytes.first(), bytes.get(1)) else {
        return Ok(None);
    };
    if second & 0x80 != 0 {
        return Err("the server sent a masked frame");
    }
    let (length, payload) = match second & 0x7f {
        126 => match bytes.get(2..4) {
            Some(raw) => (4, usize::from(u16::from_be_bytes([raw[0], raw[1]]))),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(raw) => {
                let raw: [u8; 8] = raw.try_into().expect("eight bytes");
                let payload = usize::try_from(u64::from_be_bytes(raw))
                    .map_err(|_| "a frame longer than memory")?;
                (10, payload)
            }
            None => return Ok(None),
        },
        short => (2, usize::from(short)),
    };
    Ok(Some(Header {
        length,
        payload,
        fin: first & 0x80 != 0,
        compressed: first & 0x40 != 0,
        opcode: first & 0x0f,
    }))
}

/// What a connection reads, frame by frame.
enum Event<'a> {
    /// A whole text message (inflated when it came compressed).
    Text(&'a [u8]),
    Ping(&'a [u8]),
    Close(Option<u16>),
}

/// Largest message a generator connection takes: well past any room frame.
const MOST_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// One connection's incoming bytes, cut into frames and messages.
struct FrameReader {
    buffer: Vec<u8>,
    /// Bytes at the start of `buffer` already taken.
    consumed: usize,
    /// A fragmented message being put together, and whether it is compressed.
    fragments: Option<(Vec<u8>, bool)>,
    inflater: Option<Inflater>,
    inflated: Vec<u8>,
}

impl FrameReader {
    fn new(inflater: Option<Inflater>) -> FrameReader {
        FrameReader {
            buffer: Vec::with_capacity(8 * 1024),
            consumed: 0,
            fragments: None,
            inflater,
            inflated: Vec::new(),
        }
    }

    /// Reads what the socket has (0 at its end).
    async fn read_from(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        if self.buffer.capacity() - self.buffer.len() < 4 * 1024 {
            self.buffer.reserve(self.buffer.capacity().max(8 * 1024));
        }
        stream.read_buf(&mut self.buffer).await
    }

    /// Hands every complete message and control frame in the buffer to `on`.
    fn take_frames(&mut self, mut on: impl FnMut(Event<'_>)) -> Result<(), Error> {
        loop {
            let rest = &self.buffer[self.consumed..];
            let Some(header) = frame_header(rest)? else {
                return Ok(());
            };
            if header.payload > MOST_MESSAGE_BYTES {
                return Err("the server sent a frame larger than 16 MiB".into());
            }
            let total = header.length + header.payload;
            if rest.len() < total {
                return Ok(());
            }
            let payload = &rest[header.length..total];
            self.consumed += total;
            match (header.opcode, header.fin, self.fragments.as_mut()) {
                (0x1, true, None) => {
                    let text = if header.compressed {
                        let inflater = self
                            .inflater
                            .as_mut()
                            .ok_or("a compressed frame without permessage-deflate")?;
                        inflater.inflate(payload, &mut self.inflated)?;
                        &self.inflated[..]
                    } else {
                        payload
                    };
                    on(Event::Text(text));
                }
                (0x1, false, None) => self.fragments = Some((payload.to_vec(), header.compressed)),
                (0x0, fin, Some((message, _))) => {
                    message.extend_from_slice(payload);
                    if message.len() > MOST_MESSAGE_BYTES {
                        return Err("the server sent a message larger than 16 MiB".into());
                    }
                    if fin {
                        let (message, compressed) =
                            self.fragments.take().expect("matched as present");
                        if compressed {
                            let inflater = self
                                .inflater
                                .as_mut()
                                .ok_or("a compressed frame without permessage-deflate")?;
                            inflater.inflate(&message, &mut self.inflated)?;
                            on(Event::Text(&self.inflated));
                        } else {
                            on(Event::Text(&message));
                        }
                    }
                }
                (0x9, _, _) => on(Event::Ping(payload)),
                (0x8, _, _) => {
                    let code = payload
                        .get(..2)
                        .map(|raw| u16::from_be_bytes([raw[0], raw[1]]));
                    on(Event::Close(code));
                }
                // Pongs answer nothing we sent; binary frames are not part of the protocol.
                (0xA | 0x2, _, _) => {}
                (opcode, _, _) => {
                    return Err(
                        format!("unexpected frame (opcode {opcode:#x}) at this point").into(),
                    );
                }
            }
        }
    }
}

/// permessage-deflate's receiving side (RFC 7692): raw deflate, each message ending with the
/// `00 00 ff ff` the sender removed.
struct Inflater {
    decompress: Decompress,
    /// The server said `server_no_context_takeover`: every message starts afresh.
    reset_each_message: bool,
}

impl Inflater {
    fn new(reset_each_message: bool) -> Inflater {
        Inflater {
            decompress: Decompress::new(false),
            reset_each_message,
        }
    }

    fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];
        out.clear();
        for chunk in [input, &TAIL[..]] {
            let mut taken = 0;
            loop {
                if out.capacity() - out.len() < 1024 {
                    out.reserve(out.capacity().max(4 * 1024));
                }
                let before = (self.decompress.total_in(), out.len());
                self.decompress
                    .decompress_vec(&chunk[taken..], out, FlushDecompress::Sync)?;
                taken += (self.decompress.total_in() - before.0) as usize;
                if out.len() > MOST_MESSAGE_BYTES {
                    return Err("a message inflates past 16 MiB".into());
                }
                let room_left = out.capacity() > out.len();
                if taken == chunk.len() && room_left {
                    break;
                }
                if room_left && (self.decompress.total_in(), out.len()) == before {
                    return Err("the compressed message does not inflate".into());
                }
            }
        }
        if self.reset_each_message {
            self.decompress.reset(false);
        }
        Ok(())
    }
}

/// The keys the generator looks for, each searcher built once.
static TYPE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"type\":\""));
static OFFSET_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"offset\":"));
static TEXT_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"text\":\""));
static ID_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"id\":\"p"));

/// The kinds of server frame the generator tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameType {
    Joined,
    Message,
    Ack,
    Error,
    Other,
}

/// The frame's `"type"`, found by scanning rather than parsing.
fn frame_type(text: &[u8]) -> Option<FrameType> {
    let at = TYPE_KEY.find(text)? + TYPE_KEY.needle().len();
    let rest = &text[at..];
    let kind = [
        (&b"message\""[..], FrameType::Message),
        (b"ack\"", FrameType::Ack),
        (b"joined\"", FrameType::Joined),
        (b"error\"", FrameType::Error),
    ]
    .into_iter()
    .find_map(|(word, kind)| rest.starts_with(word).then_some(kind));
    Some(kind.unwrap_or(FrameType::Other))
}

/// The digits right after `key` (which ends where the number starts), as a number.
fn scan_number(text: &[u8], key: &Finder<'_>) -> Option<u64> {
    let at = key.find(text)? + key.needle().len();
    leading_number(&text[at..])
}

fn leading_number(bytes: &[u8]) -> Option<u64> {
    let digits = bytes
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if digits == 0 || digits > 19 {
        return None;
    }
    bytes[..digits].iter().try_fold(0u64, |value, digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// The publisher and sequence number of an `"id":"pNsM"`.
fn scan_id(text: &[u8]) -> Option<(u64, u64)> {
    let at = ID_KEY.find(text)? + ID_KEY.needle().len();
    let rest = &text[at..];
    let publisher = leading_number(rest)?;
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(b"s")?;
    Some((publisher, leading_number(rest)?))
}

/// The totals of a run: what should have arrived and what did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Summary {
    expected: u64,
    missing: u64,
}

impl Summary {
    /// `expected` deliveries (acknowledged publishes times the members of their rooms), of
    /// which `delivered` arrived.
    fn of(expected: u64, delivered: u64) -> Summary {
        Summary {
            expected,
            missing: expected.saturating_sub(delivered),
        }
    }
}

/// A connection to the Redis the instances share, read with `INFO` at the start and the end
/// of the measurement. Plain RESP over the unix socket: two commands do not need a client.
struct RedisProbe {
    connection: BufReader<UnixStream>,
    /// redis-server's process id, as it reports it (`INFO server`), for its CPU time.
    pid: Option<u32>,
}

/// What Redis had done by one moment.
#[derive(Debug, Clone, PartialEq)]
struct RedisSnapshot {
    cpu_seconds: Option<f64>,
    /// Calls per command since Redis started (`INFO commandstats`).
    calls: BTreeMap<String, u64>,
}

/// Longest `INFO` answer taken: a few KiB in practice.
const MOST_INFO_BYTES: usize = 1024 * 1024;

impl RedisProbe {
    async fn connect(socket: &Path) -> Result<RedisProbe, Error> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|error| format!("cannot reach Redis at {}: {error}", socket.display()))?;
        let mut probe = RedisProbe {
            connection: BufReader::new(stream),
            pid: None,
        };
        let server = probe.info("server").await?;
        probe.pid = info_field(&server, "process_id").and_then(|pid| pid.parse().ok());
        Ok(probe)
    }

    /// One `INFO section`, its answer as text.
    async fn info(&mut self, section: &str) -> Result<String, Error> {
        let request = format!("*2\r\n$4\r\nINFO\r\n${}\r\n{section}\r\n", section.len());
        self.connection
            .get_mut()
            .write_all(request.as_bytes())
            .await?;
        let mut header = String::new();
        self.connection.read_line(&mut header).await?;
        let length = header
            .strip_prefix('$')
            .and_then(|length| length.trim_end().parse::<usize>().ok())
            .filter(|&length| length <= MOST_INFO_BYTES)
            .ok_or_else(|| format!("Redis answered INFO {section} with {:?}", header.trim_end()))?;
        // The text, then its closing CRLF.
        let mut body = vec![0; length + 2];
        self.connection.read_exact(&mut body).await?;
        body.truncate(length);
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    async fn snapshot(&mut self) -> Result<RedisSnapshot, Error> {
        let stats = self.info("commandstats").await?;
        Ok(RedisSnapshot {
            cpu_seconds: self.pid.and_then(cpu_seconds),
            calls: command_calls(&stats),
        })
    }
}

/// The value of `key:value` in an `INFO` answer.
fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// `cmdstat_NAME:calls=N,usec=...` lines as NAME to N (`client|list` for subcommands).
fn command_calls(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|stat| stat.strip_prefix("calls="))?
                .trim()
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// What Redis did while measuring, per publish sent and per delivery made.
#[derive(Debug, Default, PartialEq)]
struct RedisWork {
    cpu_us_per_delivery: Option<f64>,
    /// Script calls by their hash: the engine's one round trip per publish.
    evalsha_per_publish: Option<f64>,
    /// Every command counted, those a script runs included (Redis counts them in
    /// `commandstats` as if called on their own), the generator's `INFO` excluded.
    commands_per_publish: Option<f64>,
    /// The same, command by command (only those that ran).
    per_publish: BTreeMap<String, f64>,
}

impl RedisWork {
    fn between(
        before: &RedisSnapshot,
        after: &RedisSnapshot,
        publishes: u64,
        deliveries: u64,
    ) -> RedisWork {
        let cpu_us_per_delivery = match (before.cpu_seconds, after.cpu_seconds) {
            (Some(before), Some(after)) if deliveries > 0 => {
                Some((after - before) * 1e6 / deliveries as f64)
            }
            _ => None,
        };
        if publishes == 0 {
            return RedisWork {
                cpu_us_per_delivery,
                ..RedisWork::default()
            };
        }
        let per_publish: BTreeMap<String, f64> = after
            .calls
            .iter()
            .filter(|(name, _)| name.as_str() != "info")
            .filter_map(|(name, &calls)| {
                let earlier = before.calls.get(name).copied().unwrap_or(0);
                let made = calls.saturating_sub(earlier);
                (made > 0).then(|| (name.clone(), made as f64 / publishes as f64))
            })
            .collect();
        RedisWork {
            cpu_us_per_delivery,
            evalsha_per_publish: Some(per_publish.get("evalsha").copied().unwrap_or(0.0)),
            // Folded from 0.0: an empty `sum` of floats is -0.0.
            commands_per_publish: Some(
                per_publish.values().fold(0.0, |total, calls| total + calls),
            ),
            per_publish,
        }
    }
}

/// The summed CPU time of the server processes, if every one of them could be read.
fn servers_cpu_seconds(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// User + system CPU time of a process, from `/proc/PID/stat` (fields 14 and 15, in clock
/// ticks; Linux reports them at USER_HZ = 100 on every mainstream architecture).
fn cpu_seconds(pid: u32) -> Option<f64> {
    bench::stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// The generator's own CPU time: near 1.0 per second of measurement means it, not the
/// server, set the pace.
fn own_cpu_seconds() -> Option<f64> {
    bench::stat_cpu_seconds("/proc/self/stat")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_in_order_count_no_gap_and_no_duplicate() {
        let mut tracker = OffsetTracker::after(44);
        for offset in 45..=100 {
            assert!(tracker.see(offset));
        }
        assert_eq!(
            (tracker.gaps, tracker.skipped, tracker.duplicates),
            (0, 0, 0)
        );
        assert_eq!(tracker.next, 101);
    }

    #[test]
    fn gaps_count_once_each_with_the_offsets_they_skip() {
        let mut tracker = OffsetTracker::after(0);
        let arrivals = [1, 2, 5, 6, 6, 3, 10, 11];
        let new: Vec<bool> = arrivals.iter().map(|&offset| tracker.see(offset)).collect();
        assert_eq!(new, [true, true, true, true, false, false, true, true]);
        // 3-4 and 7-9 were jumped; 6 came twice; 3 came after 6 (too late: counted as a
        // duplicate, since the member has moved past it).
        assert_eq!(tracker.gaps, 2);
        assert_eq!(tracker.skipped, 5);
        assert_eq!(tracker.duplicates, 2);
    }

    #[test]
    fn missing_is_what_the_members_should_have_had_and_did_not() {
        assert_eq!(
            Summary::of(1000, 1000),
            Summary {
                expected: 1000,
                missing: 0
            }
        );
        assert_eq!(
            Summary::of(1000, 800),
            Summary {
                expected: 1000,
                missing: 200
            }
        );
        // Late arrivals of messages acked after the drain can exceed the count: never negative.
        assert_eq!(
            Summary::of(1000, 1001),
            Summary {
                expected: 1000,
                missing: 0
            }
        );
    }

    #[test]
    fn each_publish_owes_the_members_of_its_own_room() {
        // 3 rooms, 10 members: rooms of 4, 3 and 3.
        let rooms = Rooms::new("chat", 3, 10, 1);
        assert_eq!(rooms.names, ["chat-0", "chat-1", "chat-2"]);
        assert_eq!(rooms.members, [4, 3, 3]);
        let mut published = Published::default();
        for (sent, acked, audience) in [(10, 9, 4), (5, 5, 3), (0, 0, 3)] {
            published.add(&PublisherTally {
                sent_in_window: sent,
                in_window: acked,
                rejected: 0,
                audience,
            });
        }
        assert_eq!(
            published,
            Published {
                sent_in_window: 15,
                in_window: 14,
                rejected: 0,
                offered_deliveries: 55,
                expected_deliveries: 51,
            }
        );
        // One room keeps its name, with everyone in it.
        let one = Rooms::new("bench", 1, 7, 1);
        assert_eq!(
            (one.names, one.members),
            (vec!["bench".to_owned()], vec![7])
        );
    }

    #[test]
    fn every_room_is_spread_over_every_instance() {
        // One room over two instances: in turn, as before rooms were many.
        let one = Rooms::new("bench", 1, 6, 2);
        let placed: Vec<(usize, usize)> = (0..6).map(|index| one.place(index)).collect();
        assert_eq!(placed, [(0, 0), (0, 1), (0, 0), (0, 1), (0, 0), (0, 1)]);
        // 100 rooms of 10 over two instances: with `index mod 2` alone every room would sit
        // on one instance (100 is even); each room must have 5 members on each.
        let many = Rooms::new("chat", 100, 1000, 2);
        let mut per_room_instance = vec![[0u32; 2]; 100];
        for index in 0..1000 {
            let (room, instance) = many.place(index);
            per_room_instance[room][instance] += 1;
        }
        assert!(per_room_instance.iter().all(|counts| *counts == [5, 5]));
        // A room's only publisher and its members do not all share an instance.
        assert_eq!(many.place(0), (0, 0));
        assert_eq!(many.place(1), (1, 1));
    }

    #[test]
    fn percentiles_come_out_in_milliseconds_as_recorded_in_microseconds() {
        let mut latency = Histogram::<u64>::new(3).expect("valid");
        for micros in 1..=1000u64 {
            latency.record(micros * 10).expect("in range");
        }
        // 1,000 deliveries from 10 µs to 10 ms: the median near 5 ms, p99 near 9.9 ms.
        let ms = |quantile| latency.value_at_quantile(quantile) as f64 / 1000.0;
        assert!((ms(0.5) - 5.0).abs() < 0.01, "{}", ms(0.5));
        assert!((ms(0.99) - 9.9).abs() < 0.01, "{}", ms(0.99));
    }

    #[test]
    fn scans_find_the_keys_of_the_frame_not_lookalikes_in_the_text() {
        let message = br#"{"type":"message","room":"bench","offset":45,"id":"p3s17","from":"ana","text":"0000000001234567 \"offset\":9 hello","time":1764400000123}"#;
        assert_eq!(frame_type(message), Some(FrameType::Message));
        assert_eq!(scan_number(message, &OFFSET_KEY), Some(45));
        assert_eq!(scan_number(message, &TEXT_KEY), Some(1_234_567));
        assert_eq!(scan_id(message), Some((3, 17)));
        let ack = br#"{"type":"ack","room":"bench","id":"p0s9","offset":46}"#;
        assert_eq!(frame_type(ack), Some(FrameType::Ack));
        assert_eq!(scan_number(ack, &OFFSET_KEY), Some(46));
        assert_eq!(
            frame_type(br#"{"type":"left","room":"x"}"#),
            Some(FrameType::Other)
        );
        assert_eq!(frame_type(b"not json"), None);
        assert_eq!(leading_number(b"99999999999999999999"), None);
    }

    #[test]
    fn redis_work_is_the_difference_of_two_snapshots_per_publish_without_the_probes_own_info() {
        let before = "# Commandstats\r\n\
            cmdstat_info:calls=3,usec=24,usec_per_call=8.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_evalsha:calls=120,usec=140,usec_per_call=1.17,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_xadd:calls=100,usec=26,usec_per_call=0.26,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_subscribe:calls=2,usec=2,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n";
        let after = "# Commandstats\r\n\
            cmdstat_info:calls=4,usec=30,usec_per_call=7.50,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_evalsha:calls=520,usec=600,usec_per_call=1.15,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_xadd:calls=500,usec=130,usec_per_call=0.26,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_client|kill:calls=1,usec=9,usec_per_call=9.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_subscribe:calls=2,usec=2,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n";
        let snapshot = |info: &str, cpu: f64| RedisSnapshot {
            cpu_seconds: Some(cpu),
            calls: command_calls(info),
        };
        assert_eq!(command_calls(after).get("client|kill"), Some(&1));
        let work = RedisWork::between(&snapshot(before, 1.0), &snapshot(after, 1.5), 400, 1000);
        // 0.5 s over 1,000 deliveries; 400 script calls and 400 XADDs (run by the script)
        // for 400 publishes, one CLIENT KILL, nothing of SUBSCRIBE, and the INFO left out.
        assert_eq!(work.cpu_us_per_delivery, Some(500.0));
        assert_eq!(work.evalsha_per_publish, Some(1.0));
        assert_eq!(work.commands_per_publish, Some(2.0025));
        assert_eq!(
            work.per_publish.keys().collect::<Vec<_>>(),
            ["client|kill", "evalsha", "xadd"]
        );
        // Nothing published: no per-publish figures rather than infinities.
        let idle = RedisWork::between(&snapshot(before, 1.0), &snapshot(after, 1.5), 0, 1000);
        assert_eq!(
            (idle.evalsha_per_publish, idle.commands_per_publish),
            (None, None)
        );
        assert_eq!(
            info_field(
                "# Server\r\nredis_version:7.0.15\r\nprocess_id:4242\r\n",
                "process_id"
            ),
            Some("4242")
        );
    }

    fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![first];
        match payload.len() {
            len @ 0..=125 => frame.push(len as u8),
            len => {
                frame.push(126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn frames_split_at_every_byte_come_out_whole() {
        let long = vec![b'y'; 300];
        let mut stream = Vec::new();
        stream.extend(server_frame(0x81, b"hello"));
        stream.extend(server_frame(0x89, b"p!"));
        stream.extend(server_frame(0x01, b"frag"));
        stream.extend(server_frame(0x80, b"mented"));
        stream.extend(server_frame(0x81, &long));
        stream.extend(server_frame(0x88, &1008u16.to_be_bytes()));
        for chunk_size in 1..=stream.len() {
            let mut reader = FrameReader::new(None);
            let mut seen: Vec<String> = Vec::new();
            for chunk in stream.chunks(chunk_size) {
                reader.buffer.drain(..reader.consumed);
                reader.consumed = 0;
                reader.buffer.extend_from_slice(chunk);
                reader
                    .take_frames(|event| {
                        seen.push(match event {
                            Event::Text(text) => format!("text {}", text.len()),
                            Event::Ping(payload) => format!("ping {}", payload.len()),
                            Event::Close(code) => format!("close {code:?}"),
                        })
                    })
                    .expect("well-formed frames");
            }
            assert_eq!(
                seen,
                [
                    "text 5",
                    "ping 2",
                    "text 10",
                    "text 300",
                    "close Some(1008)"
                ],
                "chunks of {chunk_size}"
            );
        }
    }

    #[test]
    fn compressed_messages_inflate_with_and_without_context_takeover() {
        use flate2::{Compress, Compression, FlushCompress};
        let texts: [&[u8]; 3] = [b"hello hello hello", b"hello again hello", b"third"];
        for reset_each_message in [false, true] {
            let mut compress = Compress::new(Compression::default(), false);
            let mut inflater = Inflater::new(reset_each_message);
            let mut out = Vec::new();
            for text in texts {
                if reset_each_message {
                    compress.reset();
                }
                let mut compressed = Vec::with_capacity(256);
                compress
                    .compress_vec(text, &mut compressed, FlushCompress::Sync)
                    .expect("compresses");
                compressed.truncate(compressed.len() - 4);
                inflater.inflate(&compressed, &mut out).expect("inflates");
                assert_eq!(out, text);
            }
        }
    }

    #[test]
    fn publish_frames_carry_their_send_time_and_the_asked_text_size() {
        let plan = PublishPlan {
            index: 2,
            room: "bench".into(),
            audience: 1,
            filler: filler_text(64),
            interval: None,
            first_due: Instant::now(),
        };
        let frame = publish_frame(&plan, 7, 123_456);
        // Short enough for a 7-bit length: header 2 bytes + mask 4.
        let json: Vec<u8> = frame[6..]
            .iter()
            .enumerate()
            .map(|(index, byte)| byte ^ [0x37, 0xfa, 0x21, 0x3d][index % 4])
            .collect();
        let parsed: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
        assert_eq!(parsed["text"].as_str().map(str::len), Some(64));
        assert_eq!(parsed["id"], "p2s7");
        assert_eq!(scan_number(&json, &TEXT_KEY), Some(123_456));
    }
}
