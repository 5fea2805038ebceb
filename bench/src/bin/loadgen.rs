//! Load generator: N WebSocket connections to one server on 127.0.0.1, closed loop (K messages
//! in flight per connection) or open loop (a fixed total rate), or idle (open N connections
//! and measure the server's memory). Prints one JSON line.
//!
//! Kept cheap so it measures the server, not itself: one pre-masked frame is encoded once and
//! written as is; replies are parsed only to their frame headers, payloads are skipped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use hdrhistogram::Histogram;
use hyper_tungstenite::tungstenite::protocol::frame::FrameHeader;
use hyper_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

#[derive(Debug, Parser)]
struct Args {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// WebSocket path.
    #[arg(long, default_value = "/mirror")]
    path: String,
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Payload size of each message, in bytes.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Messages in flight per connection (closed loop).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Total messages per second over all connections (open loop); closed loop when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Replies that complete one round trip (10 on /subscriptions).
    #[arg(long, default_value_t = 1)]
    replies: u32,
    /// Frames to skip after the handshake (the greeting on /subscriptions).
    #[arg(long, default_value_t = 0)]
    skip: u32,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Server process to read CPU time and memory from.
    #[arg(long)]
    pid: Option<u32>,
    /// Only open the connections, hold them, and report memory per connection.
    #[arg(long)]
    idle: bool,
    /// With `--idle`: each connection first sends one message of `--size` bytes and reads its
    /// `--replies`, so the memory is that of sessions idle after some activity.
    #[arg(long, requires = "idle")]
    after_one_message: bool,
    /// Send exactly this many messages in all (closed loop, one in flight per connection, as
    /// fast as the server answers), then stop: for instruction counts, which depend on the
    /// work done, not on time. Prints `{"messages": N}`.
    #[arg(long, conflicts_with_all = ["idle", "rate"])]
    messages: Option<u64>,
    /// Speak TLS (`wss:`), trusting the PEM certificate in this file.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// Messages are chat-like JSON (`{"user":…,"text":…}` lines) instead of one repeated
    /// byte, so they compress as real traffic does.
    #[arg(long)]
    chat: bool,
    /// Offer permessage-deflate as browsers do (failing if the server declines) and send every
    /// message compressed, as Chromium does.
    #[arg(long)]
    deflate: bool,
}

/// A connection: plain TCP, or TLS over TCP.
type Connection = Either<TcpStream, TlsStream<TcpStream>>;

/// How connections are opened: where to, and with which TLS client, if any.
struct Dialer {
    addr: SocketAddr,
    path: String,
    tls: Option<tokio_rustls::TlsConnector>,
    deflate: bool,
}

impl Dialer {
    fn new(args: &Args) -> Result<Dialer, Box<dyn std::error::Error>> {
        let tls = match &args.tls_ca {
            None => None,
            Some(path) => {
                use rustls_pki_types::CertificateDer;
                use rustls_pki_types::pem::PemObject;
                use tokio_rustls::rustls;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(path)? {
                    roots.add(cert?)?;
                }
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
                    config,
                )))
            }
        };
        Ok(Dialer {
            addr: args.addr,
            path: args.path.clone(),
            tls,
            deflate: args.deflate,
        })
    }

    async fn connect(&self) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let stream = match &self.tls {
            None => Either::Left(stream),
            Some(connector) => {
                let name = rustls_pki_types::ServerName::from(self.addr.ip());
                Either::Right(connector.connect(name, stream).await?)
            }
        };
        handshake(stream, self.addr, &self.path, self.deflate).await
    }
}

/// What one connection measured.
struct Tally {
    round_trips: u64,
    latency: Histogram<u64>,
    /// WebSocket bytes sent and received while measuring (frames, not TCP/IP headers).
    wire_bytes: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    rlimit::increase_nofile_limit(u64::MAX)?;
    if args.idle {
        return idle(&args).await;
    }
    if let Some(messages) = args.messages {
        return fixed_count(&args, messages).await;
    }
    let dialer = Dialer::new(&args)?;
    let frame = message_frame(&args);
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.connections {
        let stream = dialer.connect().await?;
        let plan = Plan {
            frame: frame.clone(),
            in_flight: args.in_flight,
            interval: args
                .rate
                .map(|rate| Duration::from_secs_f64(args.connections as f64 / rate)),
            // Spread open-loop senders evenly over one interval.
            offset: args.rate.map_or(Duration::ZERO, |rate| {
                Duration::from_secs_f64(index as f64 / rate)
            }),
            replies: args.replies,
            skip: args.skip,
            start,
            measure_from,
            end,
        };
        tasks.spawn(drive(stream, plan));
    }
    let cpu_before = wait_and_read_cpu(measure_from, args.pid).await;
    let cpu_after = wait_and_read_cpu(end, args.pid).await;
    let mut round_trips = 0;
    let mut wire_bytes = 0;
    let mut latency = Histogram::<u64>::new(3)?;
    while let Some(tally) = tasks.join_next().await {
        let tally = tally??;
        round_trips += tally.round_trips;
        wire_bytes += tally.wire_bytes;
        latency.add(&tally.latency)?;
    }
    let per_second = round_trips as f64 / args.duration;
    let cpu_us = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if round_trips > 0 => {
            json_number((after - before) * 1e6 / round_trips as f64)
        }
        _ => serde_json::Value::Null,
    };
    let line = serde_json::json!({
        "round_trips_per_sec": per_second.round(),
        "messages_in_per_sec": (per_second * f64::from(args.replies)).round(),
        "p50_us": latency.value_at_quantile(0.5),
        "p90_us": latency.value_at_quantile(0.9),
        "p99_us": latency.value_at_quantile(0.99),
        "p999_us": latency.value_at_quantile(0.999),
        "server_cpu_us_per_round_trip": cpu_us,
        "wire_bytes_per_round_trip": json_number(wire_bytes as f64 / round_trips.max(1) as f64),
        "server_rss_kib": args.pid.and_then(rss_kib),
    });
    println!("{line}");
    Ok(())
}

fn json_number(value: f64) -> serde_json::Value {
    serde_json::Value::from((value * 100.0).round() / 100.0)
}

/// Holds `connections` open sockets and reports the server's RSS growth per connection.
async fn idle(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let pid = args.pid.ok_or("--idle needs --pid")?;
    let before = rss_kib(pid).ok_or("cannot read the server's memory")?;
    let frame = message_frame(args);
    let dialer = Dialer::new(args)?;
    let mut sockets = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let mut stream = dialer.connect().await?;
        skip_frames(&mut stream, args.skip).await?;
        if args.after_one_message {
            stream.write_all(&frame).await?;
            skip_frames(&mut stream, args.replies).await?;
        }
        sockets.push(stream);
    }
    // Let the server finish setting up the last sessions before reading its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid).ok_or("cannot read the server's memory")?;
    let line = serde_json::json!({
        "connections": sockets.len(),
        "server_rss_kib": after,
        "rss_per_connection_kib": json_number((after - before) as f64 / sockets.len() as f64),
    });
    println!("{line}");
    Ok(())
}

/// `--messages`: that many round trips in all, spread over the connections, then stop.
async fn fixed_count(args: &Args, messages: u64) -> Result<(), Box<dyn std::error::Error>> {
    let dialer = Dialer::new(args)?;
    let frame = message_frame(args);
    let connections = args.connections.max(1) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..connections {
        let mut stream = dialer.connect().await?;
        // The first connections take the remainder.
        let count = messages / connections + u64::from(index < messages % connections);
        let (frame, replies, skip) = (frame.clone(), args.replies as usize, args.skip);
        tasks.spawn(async move {
            skip_frames(&mut stream, skip).await?;
            let mut parser = HeaderParser::default();
            let mut buffer = vec![0u8; 64 * 1024];
            for _ in 0..count {
                stream.write_all(&frame).await?;
                let mut seen = 0;
                while seen < replies {
                    let read = stream.read(&mut buffer).await?;
                    if read == 0 {
                        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                    }
                    seen += parser.count_frames(&buffer[..read])?;
                }
            }
            Ok::<u64, std::io::Error>(count)
        });
    }
    let mut done = 0;
    while let Some(count) = tasks.join_next().await {
        done += count??;
    }
    println!("{}", serde_json::json!({ "messages": done }));
    Ok(())
}

struct Plan {
    frame: bytes::Bytes,
    in_flight: usize,
    interval: Option<Duration>,
    offset: Duration,
    replies: u32,
    skip: u32,
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

/// One connection's loop: send on schedule (or as replies complete), count replies by header.
async fn drive(mut stream: Connection, plan: Plan) -> std::io::Result<Tally> {
    skip_frames(&mut stream, plan.skip).await?;
    let mut tally = Tally {
        round_trips: 0,
        latency: Histogram::new(3).expect("valid sigfig"),
        wire_bytes: 0,
    };
    let measuring = |at: Instant| at >= plan.measure_from && at < plan.end;
    let mut parser = HeaderParser::default();
    let mut buffer = vec![0u8; 64 * 1024];
    // When each outstanding message was written.
    let mut sent_at: VecDeque<Instant> = VecDeque::new();
    let mut replies_seen = 0;
    tokio::time::sleep_until(plan.start).await;
    let mut next_due = plan.start + plan.offset;
    if plan.interval.is_none() {
        let mut burst = Vec::with_capacity(plan.frame.len() * plan.in_flight);
        for _ in 0..plan.in_flight {
            burst.extend_from_slice(&plan.frame);
            sent_at.push_back(Instant::now());
        }
        stream.write_all(&burst).await?;
    }
    while Instant::now() < plan.end {
        let due = plan.interval.map(|_| next_due);
        let read = tokio::select! {
            read = stream.read(&mut buffer) => Some(read?),
            () = tokio::time::sleep_until(due.unwrap_or(plan.end).min(plan.end)) => None,
        };
        if let Some(interval) = plan.interval {
            // Open loop: send everything that has come due. The schedule never waits for
            // replies, so there is no coordinated omission to correct for; latency starts at
            // the actual write, which keeps tokio's 1 ms timer granularity (the generator's
            // own lateness in waking up) out of the server's numbers.
            let now = Instant::now();
            while next_due <= now && next_due < plan.end {
                stream.write_all(&plan.frame).await?;
                if measuring(now) {
                    tally.wire_bytes += plan.frame.len() as u64;
                }
                sent_at.push_back(Instant::now());
                next_due += interval;
            }
        }
        let Some(read) = read else { continue };
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if measuring(Instant::now()) {
            tally.wire_bytes += read as u64;
        }
        let frames = parser.count_frames(&buffer[..read])?;
        let mut resend = 0;
        for _ in 0..frames {
            replies_seen += 1;
            if replies_seen < plan.replies {
                continue;
            }
            replies_seen = 0;
            let now = Instant::now();
            if let Some(sent) = sent_at.pop_front()
                && now >= plan.measure_from
                && now < plan.end
            {
                tally.round_trips += 1;
                let micros = now.saturating_duration_since(sent).as_micros() as u64;
                let _ = tally.latency.record(micros.max(1));
            }
            if plan.interval.is_none() {
                resend += 1;
            }
        }
        if resend > 0 {
            let mut burst = Vec::with_capacity(plan.frame.len() * resend);
            for _ in 0..resend {
                burst.extend_from_slice(&plan.frame);
                sent_at.push_back(Instant::now());
            }
            stream.write_all(&burst).await?;
            if measuring(Instant::now()) {
                tally.wire_bytes += burst.len() as u64;
            }
        }
    }
    Ok(tally)
}

/// Counts complete server frames in a byte stream, skipping payloads without looking at them.
/// Headers are parsed by tungstenite's `FrameHeader`.
#[derive(Default)]
struct HeaderParser {
    /// The header being read (at most 14 bytes, the longest header there is).
    header: [u8; 14],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    /// Whether the frame being skipped is a data frame (counted once it is complete).
    skipping_data: bool,
}

impl HeaderParser {
    /// Feeds bytes; returns how many data frames were completed. Control frames (pings) are
    /// skipped without being counted. A header tungstenite refuses (a reserved opcode) is an
    /// error: the server never sends one.
    fn count_frames(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut completed = 0;
        let mut at = 0;
        while at < bytes.len() {
            if self.skip > 0 {
                let step = self.skip.min((bytes.len() - at) as u64);
                self.skip -= step;
                at += step as usize;
                if self.skip == 0 && self.skipping_data {
                    completed += 1;
                }
                continue;
            }
            self.header[self.header_len] = bytes[at];
            self.header_len += 1;
            at += 1;
            let mut cursor = std::io::Cursor::new(&self.header[..self.header_len]);
            // `None` until the header's last byte has arrived.
            if let Some((header, payload)) =
                FrameHeader::parse(&mut cursor).map_err(std::io::Error::other)?
            {
                let is_data = matches!(header.opcode, OpCode::Data(_));
                self.header_len = 0;
                self.skip = payload;
                self.skipping_data = is_data;
                if payload == 0 && is_data {
                    completed += 1;
                }
            }
        }
        Ok(completed)
    }
}

/// The one message every connection sends, as a final, masked text frame encoded once:
/// `--size` bytes of `x`, or of chat-like JSON with `--chat`; compressed with `--deflate`.
fn message_frame(args: &Args) -> bytes::Bytes {
    let payload: Vec<u8> = if args.chat {
        chat_text(args.size).into_bytes()
    } else {
        vec![b'x'; args.size]
    };
    let (rsv1, payload) = if args.deflate {
        (true, deflate(&payload))
    } else {
        (false, payload)
    };
    let mask = [0x11, 0x22, 0x33, 0x44];
    let header = FrameHeader {
        is_final: true,
        rsv1,
        opcode: OpCode::Data(Data::Text),
        mask: Some(mask),
        ..FrameHeader::default()
    };
    let mut frame = Vec::with_capacity(header.len(payload.len() as u64) + payload.len());
    header
        .format(payload.len() as u64, &mut frame)
        .expect("writing to a Vec cannot fail");
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(index, byte)| byte ^ mask[index % 4]),
    );
    frame.into()
}

/// `len` bytes of JSON chat lines, varied enough that deflate does what it does on real chat.
fn chat_text(len: usize) -> String {
    const WORDS: [&str; 12] = [
        "hello", "the", "deploy", "is", "green", "again", "after", "lunch", "ok", "shipping",
        "tomorrow", "thanks",
    ];
    let mut text = String::with_capacity(len + 64);
    let mut n = 0usize;
    while text.len() < len {
        let words: Vec<&str> = (0..6)
            .map(|k| WORDS[(n * 7 + k * 5 + n / 3) % WORDS.len()])
            .collect();
        text.push_str(&format!(
            "{{\"user\":\"user{}\",\"at\":{},\"text\":\"{}\"}}\n",
            n % 13,
            1_700_000_000 + n * 37,
            words.join(" ")
        ));
        n += 1;
    }
    text.truncate(len);
    text
}

/// Raw deflate, sync flush, the `00 00 ff ff` tail removed: one permessage-deflate message.
fn deflate(payload: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    loop {
        let read = compress.total_in() as usize;
        compress
            .compress_vec(&payload[read..], &mut out, FlushCompress::Sync)
            .expect("deflate never fails on a buffer");
        if compress.total_in() as usize == payload.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    out.truncate(out.len().saturating_sub(4));
    out
}

/// The WebSocket opening handshake on an open connection; with `deflate`, the offer Chromium
/// sends, which the server must accept.
async fn handshake(
    mut stream: Connection,
    addr: SocketAddr,
    path: &str,
    deflate: bool,
) -> std::io::Result<Connection> {
    let offer = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{offer}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await?);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(std::io::Error::other(head.into_owned()));
    }
    if deflate && !head.to_ascii_lowercase().contains("permessage-deflate") {
        return Err(std::io::Error::other(format!(
            "the server declined permessage-deflate (is --compression on?): {head}"
        )));
    }
    Ok(stream)
}

/// Reads and drops `count` whole frames (the greeting).
async fn skip_frames(stream: &mut Connection, count: u32) -> std::io::Result<()> {
    for _ in 0..count {
        let _first = stream.read_u8().await?;
        let length = match stream.read_u8().await? & 0x7f {
            126 => u64::from(stream.read_u16().await?),
            127 => stream.read_u64().await?,
            short => u64::from(short),
        };
        let mut payload = vec![0; length as usize];
        stream.read_exact(&mut payload).await?;
    }
    Ok(())
}

/// Sleeps until `at`, then reads the server's CPU time in seconds.
async fn wait_and_read_cpu(at: Instant, pid: Option<u32>) -> Option<f64> {
    tokio::time::sleep_until(at).await;
    cpu_seconds(pid?)
}

/// User + system CPU time of a process, from `/proc/PID/stat` (fields 14 and 15, in clock
/// ticks; Linux reports them at USER_HZ = 100 on every mainstream architecture).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x81];
        match payload.len() {
            0..=125 => frame.push(payload.len() as u8),
            len => {
                frame.push(126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn counts_frames_split_at_every_byte() {
        let mut stream = Vec::new();
        stream.extend(server_frame(b"hello"));
        stream.extend([0x89, 2, b'p', b'!']); // a ping: not counted
        stream.extend(server_frame(&[b'y'; 300]));
        stream.extend(server_frame(b""));
        for chunk_size in 1..=stream.len() {
            let mut parser = HeaderParser::default();
            let counted: usize = stream
                .chunks(chunk_size)
                .map(|c| parser.count_frames(c).expect("valid frames"))
                .sum();
            assert_eq!(counted, 3, "chunks of {chunk_size}");
        }
    }
}
