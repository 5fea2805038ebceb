//! Reconnect-storm load generator for `cargo xtask bench storm` (issue 24, section 4): two
//! instances of the server on one Redis; `--members` connections join `--rooms` rooms on the
//! first (`--doomed`), publishers on the second (`--survivor`) publish into every room at
//! `--rate` a second each; after `--flow` seconds the generator kills the first instance
//! (SIGKILL) and every member comes back on the second with its position, after the delay the
//! clients' backoff draws (`client_core::backoff`: full jitter, or with `--no-jitter` the whole
//! window, so that all arrive together as clients without jitter would). Prints one JSON line.
//!
//! What it measures, from the kill: when each member was back (`joined` with `recovered:
//! true`), how long its last attempt took from its start (the server's answer under the storm),
//! the peak rates of attempts and of joins answered (in 100 ms buckets), the CPU the survivor
//! and redis-server used from the kill until the last member was back (and their busiest
//! 100 ms), and the kernel's count of connections its listen queues dropped meanwhile (the
//! whole machine's). Then it checks what the members got: each one's offsets from its position
//! to its room's last message, once each (`gaps`, `duplicates`, `incomplete` otherwise), and
//! `not_recovered` for any join answered `recovered: false`.
//!
//! Members are tokio-tungstenite connections with small read buffers on one current-thread
//! runtime (the generator has one core of its own); a join refused `unavailable` is sent again
//! after a second, a publish likewise with its id, as the clients do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use client_core::backoff::Backoff;
use client_core::room::RETRY_AFTER_MILLIS;
use futures_util::{SinkExt, StreamExt};
use room_protocol::{ErrorCode, ServerFrame};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Debug, Parser)]
struct Args {
    /// The instance the members join first, and that is killed (loopback only).
    #[arg(long)]
    doomed: SocketAddr,
    /// Its process id, for the SIGKILL.
    #[arg(long)]
    doomed_pid: u32,
    /// The instance the publishers are on and the members come back to.
    #[arg(long)]
    survivor: SocketAddr,
    /// Its process id, for its CPU time.
    #[arg(long)]
    survivor_pid: u32,
    /// redis-server's process id, for its CPU time.
    #[arg(long)]
    redis_pid: u32,
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    members: u32,
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    rooms: u32,
    /// Publishers on the survivor; each takes every `publishers`-th room (at most 16 rooms
    /// each: the server's rooms per connection).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    publishers: u32,
    /// Publishes per second into each room.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Seconds of publishing before the kill, and after the last member is back.
    #[arg(long, default_value_t = 2.0)]
    flow: f64,
    /// Every member waits the whole backoff window instead of a random part of it.
    #[arg(long)]
    no_jitter: bool,
    /// Most seconds for every member to be back.
    #[arg(long, default_value_t = 60.0)]
    limit: f64,
}

type Error = Box<dyn std::error::Error + Send + Sync>;
type Socket = WebSocketStream<TcpStream>;

/// Handshakes to the first instance at once while the members first join.
const OPENING_AT_ONCE: usize = 64;
/// The clients' reply timeout: an attempt whose handshake or join is not answered by then is
/// dropped and tried again after the next backoff delay.
const ATTEMPT_TIMEOUT: Duration = client_core::settings::DEFAULT_REPLY_TIMEOUT;
/// Longest wait for the initial joins, for messages to flow, for the last messages.
const PATIENCE: Duration = Duration::from_secs(120);
/// Width of the buckets peak rates and CPU are counted in.
const BUCKET: Duration = Duration::from_millis(100);

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    match runtime.block_on(run(args)) {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            // The words alone, for the benchmark's table to quote.
            eprintln!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn room_name(room: usize) -> String {
    format!("storm{room}")
}

fn last_id(room: usize) -> String {
    format!("last-{room}")
}

/// A random number in `[0, 1)`, as the console client draws its jitter.
fn jitter() -> f64 {
    getrandom::u64().map_or(0.5, |random| (random >> 11) as f64 / (1u64 << 53) as f64)
}

async fn open(addr: SocketAddr, name: &str) -> Result<Socket, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    stream
        .set_nodelay(true)
        .map_err(|error| format!("nodelay: {error}"))?;
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (socket, _response) = tokio_tungstenite::client_async_with_config(
        format!("ws://{addr}/rooms?name={name}"),
        stream,
        Some(config),
    )
    .await
    .map_err(|error| format!("handshake: {error}"))?;
    Ok(socket)
}

/// What one read gave.
enum Read {
    Frame(ServerFrame),
    Closed(u16),
    Ended,
}

async fn read(socket: &mut Socket, deadline: Instant) -> Result<Read, String> {
    loop {
        let next = tokio::time::timeout_at(deadline, socket.next())
            .await
            .map_err(|_| "nothing arrived in time".to_owned())?;
        let text = match next {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Ok(Read::Closed(frame.map_or(1005, |frame| frame.code.into())));
            }
            // Pings are answered by the library.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Binary(_))) => return Err("a binary message".to_owned()),
            Some(Err(_)) | None => return Ok(Read::Ended),
        };
        return ServerFrame::from_json(&text)
            .map(Read::Frame)
            .map_err(|error| format!("{error}: {text}"));
    }
}

async fn send(socket: &mut Socket, request: &Value) -> Result<(), String> {
    socket
        .send(Message::text(request.to_string()))
        .await
        .map_err(|error| format!("send: {error}"))
}

/// Sends a join and reads its answer as the clients do: `unavailable` or `rate_limited` is
/// waited out for [`RETRY_AFTER_MILLIS`] and the join sent again (counted in `held`).
async fn join(socket: &mut Socket, request: &Value, held: &mut u32) -> Result<Read, String> {
    loop {
        send(socket, request).await?;
        match read(socket, Instant::now() + ATTEMPT_TIMEOUT).await? {
            Read::Frame(ServerFrame::Error {
                code: ErrorCode::Unavailable | ErrorCode::RateLimited,
                ..
            }) => {
                *held += 1;
                tokio::time::sleep(Duration::from_millis(RETRY_AFTER_MILLIS.into())).await;
            }
            answer => return Ok(answer),
        }
    }
}

#[derive(Debug, Default)]
struct Progress {
    joined: usize,
    flowing: usize,
    back: usize,
    /// Members that ended (back and read to their room's last message, or failed).
    done: usize,
    failures: Vec<String>,
}

struct Shared {
    rooms: usize,
    doomed: SocketAddr,
    survivor: SocketAddr,
    no_jitter: bool,
    progress: watch::Sender<Progress>,
    opening: Semaphore,
    killed: AtomicBool,
    deadline: Instant,
}

/// What one member saw.
#[derive(Debug, Default)]
struct Outcome {
    lost_at: Option<Instant>,
    /// When each attempt to come back started.
    attempts: Vec<Instant>,
    back_at: Option<Instant>,
    not_recovered: bool,
    held: u32,
    gaps: u64,
    duplicates: u64,
    /// It read its room's last message.
    complete: bool,
}

/// A member's place in its room.
struct Position {
    room: usize,
    epoch: String,
    next: u64,
}

impl Position {
    /// Takes a message: true when it is the room's last.
    fn take(&mut self, frame: ServerFrame, outcome: &mut Outcome) -> Result<bool, String> {
        let ServerFrame::Message { offset, id, .. } = frame else {
            return Err(format!("a message was due, got {frame:?}"));
        };
        if offset < self.next {
            outcome.duplicates += 1;
            return Ok(false);
        }
        if offset > self.next {
            outcome.gaps += 1;
        }
        self.next = offset + 1;
        Ok(id == last_id(self.room))
    }
}

async fn member(index: usize, shared: Arc<Shared>) -> Outcome {
    let mut outcome = Outcome::default();
    if let Err(failure) = live(index, &shared, &mut outcome).await {
        shared.progress.send_modify(|progress| {
            if progress.failures.len() < 5 {
                progress.failures.push(format!("member {index}: {failure}"));
            }
        });
    }
    shared.progress.send_modify(|progress| progress.done += 1);
    outcome
}

async fn live(index: usize, shared: &Shared, outcome: &mut Outcome) -> Result<(), String> {
    let room = index % shared.rooms;
    let name = format!("m{index}");
    let (mut socket, answer) = {
        let _turn = shared.opening.acquire().await.map_err(|_| "closed")?;
        let mut socket = open(shared.doomed, &name).await?;
        let answer = join(
            &mut socket,
            &json!({"type": "join", "room": room_name(room)}),
            &mut outcome.held,
        )
        .await?;
        (socket, answer)
    };
    let mut position = match answer {
        Read::Frame(ServerFrame::Joined { epoch, offset, .. }) => Position {
            room,
            epoch,
            next: offset + 1,
        },
        _ => return Err("no joined from the first instance".to_owned()),
    };
    shared.progress.send_modify(|progress| progress.joined += 1);
    let mut flowing = false;
    loop {
        match read(&mut socket, shared.deadline).await? {
            Read::Frame(frame) => {
                position.take(frame, outcome)?;
                if !flowing {
                    flowing = true;
                    shared
                        .progress
                        .send_modify(|progress| progress.flowing += 1);
                }
            }
            Read::Ended | Read::Closed(_) if shared.killed.load(Ordering::SeqCst) => break,
            Read::Ended | Read::Closed(_) => return Err("lost before the kill".to_owned()),
        }
    }
    outcome.lost_at = Some(Instant::now());
    drop(socket);

    let mut backoff = Backoff::default();
    let mut socket = loop {
        let fraction = if shared.no_jitter { 1.0 } else { jitter() };
        tokio::time::sleep(backoff.next_delay(fraction)).await;
        if Instant::now() >= shared.deadline {
            return Err("not back by the limit".to_owned());
        }
        outcome.attempts.push(Instant::now());
        let attempt = async {
            let mut socket = tokio::time::timeout(ATTEMPT_TIMEOUT, open(shared.survivor, &name))
                .await
                .map_err(|_| "no handshake in time".to_owned())??;
            let request = json!({
                "type": "join",
                "room": room_name(room),
                "since": {"epoch": position.epoch, "offset": position.next - 1},
            });
            let answer = join(&mut socket, &request, &mut outcome.held).await?;
            Ok::<_, String>((socket, answer))
        };
        match attempt.await {
            Ok((socket, Read::Frame(ServerFrame::Joined { recovered, .. }))) => {
                outcome.not_recovered = !recovered;
                break socket;
            }
            Ok((_, Read::Frame(frame))) => return Err(format!("joined was due, got {frame:?}")),
            // Tried again after the next delay, as the clients do.
            Ok((_, Read::Closed(_) | Read::Ended)) | Err(_) => {}
        }
    };
    outcome.back_at = Some(Instant::now());
    shared.progress.send_modify(|progress| progress.back += 1);
    if outcome.not_recovered {
        return Err("recovered: false".to_owned());
    }
    loop {
        match read(&mut socket, shared.deadline).await? {
            Read::Frame(frame) => {
                if position.take(frame, outcome)? {
                    outcome.complete = true;
                    break;
                }
            }
            Read::Closed(code) => return Err(format!("the survivor closed it: {code}")),
            Read::Ended => return Err("the survivor's connection ended".to_owned()),
        }
    }
    let _ = socket.close(None).await;
    Ok(())
}

/// What the publishers were acknowledged: per room, how many messages (the last one's offset
/// is the room's top).
#[derive(Debug, Default)]
struct Published {
    tops: HashMap<usize, u64>,
    resent: u64,
}

/// One publisher on the survivor: its rooms once every `interval` until `stop`, a publish
/// refused `unavailable` sent again with its id after [`RETRY_AFTER_MILLIS`]; then, once all
/// are acknowledged, each room's last message.
async fn publisher(
    index: usize,
    rooms: Vec<usize>,
    addr: SocketAddr,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<Published, String> {
    let failed = |what: String| format!("publisher {index}: {what}");
    let mut socket = open(addr, &format!("p{index}")).await.map_err(failed)?;
    let by_name: HashMap<String, usize> =
        rooms.iter().map(|room| (room_name(*room), *room)).collect();
    for name in by_name.keys() {
        let mut held = 0;
        match join(
            &mut socket,
            &json!({"type": "join", "room": name}),
            &mut held,
        )
        .await
        {
            Ok(Read::Frame(ServerFrame::Joined { .. })) => {}
            _ => return Err(failed(format!("its join of {name} was not answered"))),
        }
    }
    let mut published = Published::default();
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut again: Vec<(Instant, String)> = Vec::new();
    let mut sequence = 0u64;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut publishing = true;
    let mut last_sent = false;
    loop {
        let resend_at = again.iter().map(|(at, _)| *at).min();
        let mut out = Vec::new();
        tokio::select! {
            _ = ticks.tick(), if publishing => {
                for name in by_name.keys() {
                    let id = format!("{name}-{sequence}");
                    pending.insert(id.clone(), name.clone());
                    out.push(id);
                }
                sequence += 1;
            }
            changed = stop.changed(), if publishing => {
                changed.map_err(|_| failed("stopped without a word".to_owned()))?;
                publishing = false;
            }
            () = tokio::time::sleep_until(resend_at.unwrap_or_else(Instant::now)), if resend_at.is_some() => {
                let now = Instant::now();
                again.retain(|(at, id)| {
                    let due = *at <= now;
                    if due {
                        out.push(id.clone());
                    }
                    !due
                });
            }
            frame = read(&mut socket, Instant::now() + PATIENCE) => {
                match frame.map_err(failed)? {
                    Read::Frame(ServerFrame::Ack { id, offset, .. }) => {
                        if let Some(name) = pending.remove(&id) {
                            let top = published.tops.entry(by_name[&name]).or_default();
                            *top = (*top).max(offset);
                        }
                        if last_sent && pending.is_empty() {
                            return Ok(published);
                        }
                    }
                    Read::Frame(ServerFrame::Error {
                        code: ErrorCode::Unavailable | ErrorCode::RateLimited,
                        id: Some(id),
                        ..
                    }) if pending.contains_key(&id) => {
                        published.resent += 1;
                        again.push((
                            Instant::now() + Duration::from_millis(RETRY_AFTER_MILLIS.into()),
                            id,
                        ));
                    }
                    // Its own messages coming back.
                    Read::Frame(ServerFrame::Message { .. }) => {}
                    Read::Frame(frame) => return Err(failed(format!("{frame:?}"))),
                    Read::Closed(code) => return Err(failed(format!("closed with {code}"))),
                    Read::Ended => return Err(failed("its connection ended".to_owned())),
                }
            }
        }
        if !publishing && !last_sent && pending.is_empty() && again.is_empty() {
            for (name, room) in &by_name {
                let id = last_id(*room);
                pending.insert(id.clone(), name.clone());
                out.push(id);
            }
            last_sent = true;
        }
        for id in out {
            let request =
                json!({"type": "publish", "room": pending[&id], "id": id, "text": "hello"});
            socket
                .feed(Message::text(request.to_string()))
                .await
                .map_err(|error| failed(error.to_string()))?;
        }
        socket
            .flush()
            .await
            .map_err(|error| failed(error.to_string()))?;
    }
}

/// Waits until `done` holds or a member failed, at most `limit`; `false` when it did not hold.
async fn wait_for(
    progress: &mut watch::Receiver<Progress>,
    limit: Duration,
    done: impl Fn(&Progress) -> bool,
) -> bool {
    let _ = tokio::time::timeout(
        limit,
        progress.wait_for(|progress| !progress.failures.is_empty() || done(progress)),
    )
    .await;
    done(&progress.borrow())
}

/// The first failure members reported, for an error.
fn first_failure(progress: &watch::Receiver<Progress>) -> String {
    progress
        .borrow()
        .failures
        .first()
        .cloned()
        .unwrap_or_default()
}

/// CPU seconds of the survivor, redis-server and the generator at one moment.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: Instant,
    survivor: f64,
    redis: f64,
    generator: f64,
}

impl CpuSample {
    fn take(args: &Args) -> Result<CpuSample, Error> {
        let read = |path: &str| bench::stat_cpu_seconds(path).ok_or(format!("cannot read {path}"));
        Ok(CpuSample {
            at: Instant::now(),
            survivor: read(&format!("/proc/{}/stat", args.survivor_pid))?,
            redis: read(&format!("/proc/{}/stat", args.redis_pid))?,
            generator: read("/proc/self/stat")?,
        })
    }
}

/// The most CPU `of` used over any [`BUCKET`] of wall time between samples, in cores. Over
/// a full bucket at least: two samples taken close together (at the kill and the first tick
/// after it) would divide a whole 10 ms clock tick by a millisecond.
fn busiest(samples: &[CpuSample], of: fn(&CpuSample) -> f64) -> f64 {
    samples
        .iter()
        .enumerate()
        .filter_map(|(index, from)| {
            let to = samples[index + 1..]
                .iter()
                .find(|to| to.at.duration_since(from.at) >= BUCKET)?;
            Some((of(to) - of(from)) / to.at.duration_since(from.at).as_secs_f64())
        })
        .fold(0.0, f64::max)
}

/// The kernel's count of connections dropped because a listen queue was full (`TcpExt:
/// ListenOverflows` in `/proc/net/netstat`), the whole machine's.
fn listen_overflows() -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, value)| value.parse().ok())
}

/// The `quantile` of sorted milliseconds.
fn quantile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len());
    sorted[index - 1]
}

/// The most events in one [`BUCKET`] after `from`, per second.
fn peak_per_second(events: impl Iterator<Item = Instant>, from: Instant) -> f64 {
    let mut buckets: HashMap<u128, u64> = HashMap::new();
    for at in events {
        *buckets
            .entry(at.saturating_duration_since(from).as_millis() / BUCKET.as_millis())
            .or_default() += 1;
    }
    let most = buckets.values().copied().max().unwrap_or(0);
    most as f64 / BUCKET.as_secs_f64()
}

fn rounded(value: f64) -> Value {
    if value.is_finite() {
        Value::from((value * 100.0).round() / 100.0)
    } else {
        Value::Null
    }
}

async fn run(args: Args) -> Result<Value, Error> {
    if !(args.doomed.ip().is_loopback() && args.survivor.ip().is_loopback()) {
        return Err("--doomed and --survivor must be loopback addresses".into());
    }
    if !(0.1..=1_000.0).contains(&args.rate) || !(0.0..=600.0).contains(&args.flow) {
        return Err("--rate is 0.1 to 1000 a second, --flow 0 to 600 seconds".into());
    }
    if args.rooms.div_ceil(args.publishers) > 16 {
        return Err("at most 16 rooms per publisher (--rooms / --publishers)".into());
    }
    rlimit::increase_nofile_limit(u64::MAX)?;
    let members = args.members as usize;
    let rooms = args.rooms as usize;
    let started = Instant::now();
    let (progress_tx, mut progress) = watch::channel(Progress::default());
    let shared = Arc::new(Shared {
        rooms,
        doomed: args.doomed,
        survivor: args.survivor,
        no_jitter: args.no_jitter,
        progress: progress_tx,
        opening: Semaphore::new(OPENING_AT_ONCE),
        killed: AtomicBool::new(false),
        deadline: started + 3 * PATIENCE + Duration::from_secs_f64(args.limit + 2.0 * args.flow),
    });
    let mut member_tasks = tokio::task::JoinSet::new();
    for index in 0..members {
        member_tasks.spawn(member(index, Arc::clone(&shared)));
    }
    if !wait_for(&mut progress, PATIENCE, |p| p.joined == members).await {
        return Err(format!(
            "the members did not all join the first instance: {}",
            first_failure(&progress)
        )
        .into());
    }
    let joined_s = started.elapsed().as_secs_f64();

    let (stop_tx, stop_rx) = watch::channel(false);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut publishers = tokio::task::JoinSet::new();
    for index in 0..args.publishers as usize {
        let mine: Vec<usize> = (index..rooms).step_by(args.publishers as usize).collect();
        publishers.spawn(publisher(
            index,
            mine,
            args.survivor,
            interval,
            stop_rx.clone(),
        ));
    }
    if !wait_for(&mut progress, PATIENCE, |p| p.flowing == members).await {
        return Err(format!(
            "messages did not reach every member: {}",
            first_failure(&progress)
        )
        .into());
    }
    tokio::time::sleep(Duration::from_secs_f64(args.flow)).await;

    // The storm, with the CPU sampled every bucket meanwhile.
    let overflows_before = listen_overflows();
    let mut samples = vec![CpuSample::take(&args)?];
    shared.killed.store(true, Ordering::SeqCst);
    let killed_at = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &args.doomed_pid.to_string()])
        .status()?;
    if !killed.success() {
        return Err(format!("kill -KILL {} failed", args.doomed_pid).into());
    }
    let limit = Duration::from_secs_f64(args.limit);
    let mut sampling = tokio::time::interval(BUCKET);
    sampling.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let all_back = loop {
        tokio::select! {
            _ = sampling.tick() => samples.push(CpuSample::take(&args)?),
            changed = progress.changed() => {
                changed.map_err(|_| "the members went away")?;
                if progress.borrow().back == members {
                    break true;
                }
            }
        }
        if killed_at.elapsed() >= limit || progress.borrow().done == members {
            break progress.borrow().back == members;
        }
    };
    let storm_end = CpuSample::take(&args)?;
    samples.push(storm_end);
    let overflows_after = listen_overflows();

    // Live messages after the storm, then the end of every room.
    tokio::time::sleep(Duration::from_secs_f64(args.flow)).await;
    let _ = stop_tx.send(true);
    let mut tops: HashMap<usize, u64> = HashMap::new();
    let mut resent = 0;
    while let Some(done) = tokio::time::timeout(PATIENCE, publishers.join_next())
        .await
        .map_err(|_| "the publishers did not finish")?
    {
        let published = done??;
        tops.extend(published.tops);
        resent += published.resent;
    }
    let mut outcomes = Vec::with_capacity(members);
    let ending = tokio::time::timeout(PATIENCE, async {
        while let Some(outcome) = member_tasks.join_next().await {
            // A member that panicked is one fewer outcome: counted as incomplete.
            outcomes.extend(outcome.ok());
        }
    })
    .await;
    if ending.is_err() {
        member_tasks.abort_all();
    }

    let since_kill = |at: Instant| at.saturating_duration_since(killed_at).as_secs_f64() * 1e3;
    let mut back: Vec<f64> = outcomes
        .iter()
        .filter_map(|outcome| outcome.back_at.map(since_kill))
        .collect();
    back.sort_by(f64::total_cmp);
    let mut last_attempt: Vec<f64> = outcomes
        .iter()
        .filter_map(|outcome| {
            let (started, back) = (outcome.attempts.last()?, outcome.back_at?);
            Some(back.saturating_duration_since(*started).as_secs_f64() * 1e3)
        })
        .collect();
    last_attempt.sort_by(f64::total_cmp);
    let noticed = outcomes
        .iter()
        .filter_map(|outcome| outcome.lost_at.map(since_kill))
        .fold(0.0, f64::max);
    let storm_s = storm_end.at.duration_since(killed_at).as_secs_f64();
    let first = samples[0];
    let count = |of: fn(&Outcome) -> u64| outcomes.iter().map(of).sum::<u64>();
    Ok(json!({
        "members": members,
        "rooms": rooms,
        "rate": args.rate,
        "jitter": !args.no_jitter,
        "joined_s": rounded(joined_s),
        "messages": tops.values().sum::<u64>(),
        "all_back": all_back,
        "not_back": members - back.len(),
        "back_p50_ms": rounded(quantile(&back, 0.5)),
        "back_p99_ms": rounded(quantile(&back, 0.99)),
        "back_max_ms": rounded(quantile(&back, 1.0)),
        "noticed_max_ms": rounded(noticed),
        "attempt_p50_ms": rounded(quantile(&last_attempt, 0.5)),
        "attempt_p99_ms": rounded(quantile(&last_attempt, 0.99)),
        "attempt_max_ms": rounded(quantile(&last_attempt, 1.0)),
        "peak_attempts_per_sec": rounded(peak_per_second(
            outcomes.iter().flat_map(|outcome| outcome.attempts.iter().copied()),
            killed_at,
        )),
        "peak_joins_per_sec": rounded(peak_per_second(
            outcomes.iter().filter_map(|outcome| outcome.back_at),
            killed_at,
        )),
        "failed_attempts": count(|outcome| outcome.attempts.len().saturating_sub(1) as u64),
        "held_joins": count(|outcome| u64::from(outcome.held)),
        "resent_publishes": resent,
        "listen_overflows": match (overflows_before, overflows_after) {
            (Some(before), Some(after)) => Value::from(after.saturating_sub(before)),
            _ => Value::Null,
        },
        "storm_s": rounded(storm_s),
        "survivor_cpu_s": rounded(storm_end.survivor - first.survivor),
        "survivor_cores": rounded((storm_end.survivor - first.survivor) / storm_s),
        "survivor_peak_cores": rounded(busiest(&samples, |sample| sample.survivor)),
        "redis_cpu_s": rounded(storm_end.redis - first.redis),
        "redis_cores": rounded((storm_end.redis - first.redis) / storm_s),
        "redis_peak_cores": rounded(busiest(&samples, |sample| sample.redis)),
        "generator_cores": rounded((storm_end.generator - first.generator) / storm_s),
        "not_recovered": outcomes.iter().filter(|outcome| outcome.not_recovered).count(),
        "gaps": count(|outcome| outcome.gaps),
        "duplicates": count(|outcome| outcome.duplicates),
        "incomplete": outcomes.iter().filter(|outcome| !outcome.complete).count()
            + (members - outcomes.len()),
        "first_failure": first_failure(&progress),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_are_the_busiest_bucket_per_second() {
        let from = Instant::now();
        let at = |millis: u64| from + Duration::from_millis(millis);
        // 3 in the first 100 ms, 1 in the next, 5 in 500-599 ms.
        let events = [0, 10, 99, 150, 500, 510, 520, 530, 599].map(at);
        assert_eq!(peak_per_second(events.into_iter(), from), 50.0);
        assert_eq!(peak_per_second(std::iter::empty(), from), 0.0);
    }

    #[test]
    fn the_busiest_cpu_is_over_a_whole_bucket_never_two_samples_a_moment_apart() {
        let from = Instant::now();
        let sample = |millis: u64, survivor: f64| CpuSample {
            at: from + Duration::from_millis(millis),
            survivor,
            redis: 0.0,
            generator: 0.0,
        };
        // A tick of 10 ms counted between samples 1 ms apart is not 10 cores.
        let samples = [
            sample(0, 0.0),
            sample(1, 0.01),
            sample(100, 0.05),
            sample(200, 0.13),
            sample(201, 0.14),
        ];
        let most = busiest(&samples, |sample| sample.survivor);
        // 0 to 100 ms: 0.5 cores; 1 to 200 ms (the first sample a bucket on): 0.6; 100 to
        // 200 ms: 0.8, the busiest; nothing is a bucket after 200 ms.
        assert!((most - 0.8).abs() < 1e-9, "{most}");
        assert_eq!(busiest(&samples[..2], |sample| sample.survivor), 0.0);
    }

    #[test]
    fn quantiles_take_the_value_at_or_above_the_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.5), 50.0);
        assert_eq!(quantile(&sorted, 0.99), 99.0);
        assert_eq!(quantile(&sorted, 1.0), 100.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn offsets_count_gaps_and_duplicates_and_the_last_message_ends() {
        let mut outcome = Outcome::default();
        let mut position = Position {
            room: 3,
            epoch: "e".into(),
            next: 5,
        };
        let message = |offset: u64, id: &str| ServerFrame::Message {
            room: room_name(3),
            offset,
            id: id.into(),
            user: "u".into(),
            from: "p".into(),
            text: "t".into(),
            time: 0,
        };
        let ends: Vec<bool> = [(5, "a"), (5, "a"), (7, "b"), (8, "last-3")]
            .into_iter()
            .map(|(offset, id)| {
                position
                    .take(message(offset, id), &mut outcome)
                    .expect("messages")
            })
            .collect();
        assert_eq!(ends, [false, false, false, true]);
        assert_eq!((outcome.gaps, outcome.duplicates), (1, 1));
        assert!(
            position
                .take(
                    ServerFrame::Left {
                        room: room_name(3),
                        reason: None,
                    },
                    &mut outcome,
                )
                .is_err()
        );
    }
}
