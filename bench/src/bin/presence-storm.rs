//! Presence join storm for `cargo xtask bench presence` (issue 26): `--members` connections
//! (spread round-robin over the `--addr` instances) join one room within `--spread` seconds,
//! each asking for presence. Prints one JSON line: the presence frames and bytes every member
//! got until it knew the whole room, per member (mean, max), the time from the first join
//! until every member had the full list, and the CPU the servers (and redis-server) used
//! meanwhile, from `/proc/PID/stat`.
//!
//! A naive server (one diff to every member for every join, as Phoenix Presence or a loop
//! over members would send) sends n(n-1)/2 frames for n joins: 499,500 for 1,000.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use room_protocol::ServerFrame;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// An instance to join through (loopback only); repeat for several, members go round-robin.
    #[arg(long, required = true)]
    addr: Vec<SocketAddr>,
    /// The servers' (and redis-server's) process ids, for their CPU time.
    #[arg(long)]
    pid: Vec<u32>,
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(2..=20_000))]
    members: u32,
    /// Seconds over which the joins start, evenly.
    #[arg(long, default_value_t = 1.0)]
    spread: f64,
    /// Most seconds for every member to know the whole room.
    #[arg(long, default_value_t = 60.0)]
    limit: f64,
}

type Error = Box<dyn std::error::Error + Send + Sync>;
type Socket = WebSocketStream<TcpStream>;

/// What one member saw.
#[derive(Debug, Default)]
struct Seen {
    frames: u64,
    bytes: u64,
    /// When it first knew every member, from the first join.
    full_after: Option<Duration>,
}

const ROOM: &str = "storm";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::from(args.members) * 2 + 256);
    for addr in &args.addr {
        assert!(addr.ip().is_loopback(), "benchmarks talk to 127.0.0.1 only");
    }
    // Every connection opens first: the storm is the joins.
    let mut sockets = Vec::with_capacity(args.members as usize);
    for n in 0..args.members as usize {
        let addr = args.addr[n % args.addr.len()];
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let url = format!("ws://{addr}/rooms?name=m{n}");
        let (socket, _) = tokio_tungstenite::client_async(url, stream).await?;
        sockets.push(socket);
    }
    let members = args.members as usize;
    let cpu_before = cpu(&args.pid)?;
    let start = Instant::now();
    let step = Duration::from_secs_f64(args.spread / args.members as f64);
    let mut tasks = tokio::task::JoinSet::new();
    for (n, socket) in sockets.into_iter().enumerate() {
        let at = start + step * n as u32;
        tasks.spawn(member(socket, at, start, members));
    }
    let limit = Duration::from_secs_f64(args.limit);
    let mut seen = Vec::with_capacity(members);
    while let Some(done) = tokio::time::timeout(limit, tasks.join_next())
        .await
        .map_err(|_| "not every member knew the whole room in time")?
    {
        seen.push(done??);
    }
    let cpu_after = cpu(&args.pid)?;
    let frames: u64 = seen.iter().map(|seen| seen.frames).sum();
    let bytes: u64 = seen.iter().map(|seen| seen.bytes).sum();
    let most = seen.iter().map(|seen| seen.frames).max().unwrap_or(0);
    let full = seen
        .iter()
        .filter_map(|seen| seen.full_after)
        .max()
        .unwrap_or_default();
    let naive = (members * (members - 1) / 2) as u64;
    println!(
        "{}",
        json!({
            "members": members,
            "instances": args.addr.len(),
            "frames": frames,
            "bytes": bytes,
            "frames_per_member": frames as f64 / members as f64,
            "most_frames_per_member": most,
            "full_list_ms": full.as_secs_f64() * 1000.0,
            "server_cpu_s": cpu_after - cpu_before,
            "naive_frames": naive,
        })
    );
    Ok(())
}

/// One member: joins at `at` asking for presence, then reads presence frames until it knows
/// all `members`.
async fn member(
    mut socket: Socket,
    at: Instant,
    start: Instant,
    members: usize,
) -> Result<Seen, Error> {
    tokio::time::sleep_until(at).await;
    let join = json!({"type": "join", "room": ROOM, "presence": true}).to_string();
    socket.send(Message::text(join)).await?;
    let mut seen = Seen::default();
    let mut here: HashSet<String> = HashSet::new();
    while seen.full_after.is_none() {
        let text = match socket.next().await.ok_or("the server closed")?? {
            Message::Text(text) => text,
            Message::Close(frame) => return Err(format!("closed: {frame:?}").into()),
            _ => continue,
        };
        let Ok(ServerFrame::Presence {
            members: everyone,
            joined,
            left,
            capped,
            ..
        }) = ServerFrame::from_json(&text)
        else {
            continue;
        };
        assert!(
            !capped,
            "the room's presence is capped: raise --presence-max-members"
        );
        seen.frames += 1;
        seen.bytes += text.len() as u64;
        if let Some(everyone) = everyone {
            here = everyone.into_iter().map(|present| present.user).collect();
        }
        here.extend(joined.into_iter().flatten().map(|present| present.user));
        for present in left.into_iter().flatten() {
            here.remove(&present.user);
        }
        if here.len() == members {
            seen.full_after = Some(start.elapsed());
        }
    }
    // Open until the run ends: a close now would be a leave the others must hear of.
    tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} });
    Ok(seen)
}

/// User + system CPU seconds of `pids` ([`bench::stat_cpu_seconds`]).
fn cpu(pids: &[u32]) -> Result<f64, Error> {
    pids.iter().try_fold(0.0, |total, pid| {
        let path = format!("/proc/{pid}/stat");
        Ok(total + bench::stat_cpu_seconds(&path).ok_or(format!("cannot read {path}"))?)
    })
}
