//! [`RedisProxy`]: a slow link between an instance and the test's Redis, slow on purpose.
//!
//! It listens on a unix socket of its own and forwards every connection to redis-server's
//! socket byte for byte, reading RESP only far enough to know where each command and each
//! reply ends. Told to, it holds back the next command (or the reply to it) whose bytes match
//! a [`Matching`] for a while, drops the next pub/sub message of a channel, or cuts the
//! pub/sub connections. It never changes a byte it forwards.
//!
//! Redis answers a connection's commands in order, so a held command holds everything its
//! connection sends after it (and a held reply every reply after it): that is what a slow link
//! does to a pipelined connection. A test that holds one room's read must therefore keep the
//! traffic it measures off that instance's command connection (publish from another instance,
//! straight to Redis).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::support::PATIENCE;

/// Which commands a hold applies to.
#[derive(Debug, Clone)]
pub enum Matching {
    /// A command whose bytes (the whole RESP array: name, keys, arguments) contain these, such
    /// as a room's key `rooms:{NAME}:log`.
    Containing(Vec<u8>),
    /// A command of this name (`SUBSCRIBE`), in any case.
    Named(String),
}

impl Matching {
    pub fn containing(bytes: impl AsRef<[u8]>) -> Matching {
        Matching::Containing(bytes.as_ref().to_vec())
    }

    fn matches(&self, command: &[u8]) -> bool {
        match self {
            Matching::Containing(pattern) => command
                .windows(pattern.len())
                .any(|window| window == pattern.as_slice()),
            Matching::Named(name) => bulk_items(command)
                .and_then(|items| items.first().copied())
                .is_some_and(|first| first.eq_ignore_ascii_case(name.as_bytes())),
        }
    }
}

/// What a hold keeps back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The command, before Redis sees it: Redis answers it late, as it then is.
    Command,
    /// Redis's answer, after Redis ran the command: the caller learns late what was true
    /// then, while pub/sub (another connection) already brings what happened since.
    Reply,
}

#[derive(Debug)]
struct Hold {
    matching: Matching,
    held: Held,
    delay: Duration,
    left: usize,
}

/// One client connection through the proxy.
#[derive(Debug, Default)]
struct Connection {
    /// It sent a (P|S)SUBSCRIBE: its replies are no longer one per command.
    subscriber: AtomicBool,
    /// Replies to hold, by the index of the command they answer.
    held_replies: Mutex<VecDeque<(u64, Duration)>>,
    cut: Notify,
}

#[derive(Debug)]
struct Shared {
    upstream: PathBuf,
    holds: Mutex<Vec<Hold>>,
    /// Channels whose next pub/sub room messages are dropped, and how many more.
    drops: Mutex<Vec<(Vec<u8>, usize)>>,
    /// When each hold began, in order.
    held_at: Mutex<Vec<Instant>>,
    dropped: AtomicU64,
    changed: Notify,
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
    next_connection: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// The delay for `command` if a hold of kind `held` takes it (and counts it).
    fn take_hold(&self, command: &[u8], held: Held) -> Option<Duration> {
        let mut holds = lock(&self.holds);
        let hold = holds
            .iter_mut()
            .find(|hold| hold.held == held && hold.left > 0 && hold.matching.matches(command))?;
        hold.left -= 1;
        Some(hold.delay)
    }

    fn note_held(&self) {
        lock(&self.held_at).push(Instant::now());
        self.changed.notify_waiters();
    }

    /// Whether `frame` (from Redis) is a pub/sub message to drop, counting it if so.
    fn take_drop(&self, frame: &[u8]) -> bool {
        let Some(items) = bulk_items(frame) else {
            return false;
        };
        let [kind, channel, payload] = items.as_slice() else {
            return false;
        };
        if !kind.eq_ignore_ascii_case(b"message") && !kind.eq_ignore_ascii_case(b"smessage") {
            return false;
        }
        // Room messages only: instances' presence and typing notices (`~...`) on the same
        // channel are not what a test that loses messages means to lose.
        if payload.starts_with(b"~") {
            return false;
        }
        let mut drops = lock(&self.drops);
        let Some(rule) = drops
            .iter_mut()
            .find(|(wanted, left)| *left > 0 && wanted == channel)
        else {
            return false;
        };
        rule.1 -= 1;
        drop(drops);
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
        true
    }
}

/// See the module documentation. Its tasks end when it is dropped.
#[derive(Debug)]
pub struct RedisProxy {
    dir: tempfile::TempDir,
    shared: Arc<Shared>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl RedisProxy {
    /// A proxy to the redis-server listening on `upstream`.
    pub fn start(upstream: &Path) -> RedisProxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = UnixListener::bind(dir.path().join("proxy.sock")).expect("bind the proxy");
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            holds: Mutex::new(Vec::new()),
            drops: Mutex::new(Vec::new()),
            held_at: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            changed: Notify::new(),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
        });
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let accepting = {
            let shared = Arc::clone(&shared);
            let tasks = Arc::clone(&tasks);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let shared = Arc::clone(&shared);
                    let mut tasks = lock(&tasks);
                    // Reap what ended, so a long test does not keep every finished connection.
                    while tasks.try_join_next().is_some() {}
                    tasks.spawn(serve(client, shared));
                }
            }
        };
        lock(&tasks).spawn(accepting);
        RedisProxy { dir, shared, tasks }
    }

    /// The URL an instance takes as `--redis-url` to go through the proxy.
    pub fn url(&self) -> String {
        format!("unix://{}", self.dir.path().join("proxy.sock").display())
    }

    /// Holds the next `times` commands that match (or their replies) for `delay` each.
    pub fn hold(&self, matching: Matching, held: Held, delay: Duration, times: usize) {
        lock(&self.shared.holds).push(Hold {
            matching,
            held,
            delay,
            left: times,
        });
    }

    /// Ends every hold not used up yet (those under way go on).
    pub fn stop_holding(&self) {
        lock(&self.shared.holds).clear();
    }

    /// Drops the next `times` pub/sub messages Redis sends on `channel`.
    pub fn drop_messages(&self, channel: &str, times: usize) {
        lock(&self.shared.drops).push((channel.as_bytes().to_vec(), times));
    }

    /// When each hold so far began.
    pub fn holds(&self) -> Vec<Instant> {
        lock(&self.shared.held_at).clone()
    }

    /// How many pub/sub messages were dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits (at most [`PATIENCE`]) until `count` holds have begun; returns when the last began.
    pub async fn wait_for_holds(&self, count: usize) -> Instant {
        self.wait_until(&format!("{count} holds"), || {
            let held_at = lock(&self.shared.held_at);
            (held_at.len() >= count).then(|| held_at[count - 1])
        })
        .await
    }

    async fn wait_until<T>(&self, what: &str, mut done: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // Registered before looking, so a change between the look and the wait is seen.
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(value) = done() {
                return value;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("the proxy never saw {what} within {PATIENCE:?}");
            }
        }
    }

    /// Closes every connection that subscribed (both ways, as a dropped link would); returns
    /// how many.
    pub fn cut_subscribers(&self) -> usize {
        let connections = lock(&self.shared.connections);
        let mut cut = 0;
        for connection in connections.values() {
            if connection.subscriber.load(Ordering::Relaxed) {
                connection.cut.notify_one();
                cut += 1;
            }
        }
        cut
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        lock(&self.tasks).abort_all();
    }
}

/// Forwards one client connection until either side closes or it is cut.
async fn serve(client: UnixStream, shared: Arc<Shared>) {
    let Ok(upstream) = UnixStream::connect(&shared.upstream).await else {
        // Redis is down: the client sees its connection refused as a closed one.
        return;
    };
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let connection = Arc::new(Connection::default());
    lock(&shared.connections).insert(id, Arc::clone(&connection));
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    tokio::select! {
        _ = commands(client_read, upstream_write, &shared, &connection) => {}
        _ = replies(upstream_read, client_write, &shared, &connection) => {}
        () = connection.cut.notified() => {}
    }
    lock(&shared.connections).remove(&id);
}

/// Client to Redis: each command forwarded in order, a matching one after its hold.
async fn commands(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    shared: &Shared,
    connection: &Connection,
) -> std::io::Result<()> {
    let mut pending = Vec::new();
    let mut chunk = vec![0_u8; 64 * 1024];
    let mut out = Vec::new();
    let mut sent: u64 = 0;
    loop {
        let read = from.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&chunk[..read]);
        let mut used = 0;
        while let Some(length) = frame_length(&pending[used..]) {
            let command = &pending[used..used + length];
            used += length;
            if bulk_items(command)
                .and_then(|items| items.first().copied())
                .is_some_and(|name| {
                    [&b"SUBSCRIBE"[..], b"PSUBSCRIBE", b"SSUBSCRIBE"]
                        .iter()
                        .any(|subscribe| name.eq_ignore_ascii_case(subscribe))
                })
            {
                connection.subscriber.store(true, Ordering::Relaxed);
            }
            let index = sent;
            sent += 1;
            if let Some(delay) = shared.take_hold(command, Held::Command) {
                // What came before it goes first; it and everything after wait.
                to.write_all(&out).await?;
                out.clear();
                shared.note_held();
                tokio::time::sleep(delay).await;
            }
            // Only a plain connection answers one reply per command, so only there can a reply
            // be told by its command's index.
            if !connection.subscriber.load(Ordering::Relaxed)
                && let Some(delay) = shared.take_hold(command, Held::Reply)
            {
                lock(&connection.held_replies).push_back((index, delay));
            }
            out.extend_from_slice(command);
        }
        pending.drain(..used);
        to.write_all(&out).await?;
        out.clear();
    }
}

/// Redis to client: each reply forwarded in order, a held one after its hold; a pub/sub
/// message to drop is left out.
async fn replies(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    shared: &Shared,
    connection: &Connection,
) -> std::io::Result<()> {
    let mut pending = Vec::new();
    let mut chunk = vec![0_u8; 64 * 1024];
    let mut out = Vec::new();
    let mut answered: u64 = 0;
    loop {
        let read = from.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&chunk[..read]);
        let mut used = 0;
        while let Some(length) = frame_length(&pending[used..]) {
            let frame = &pending[used..used + length];
            used += length;
            if connection.subscriber.load(Ordering::Relaxed) {
                if shared.take_drop(frame) {
                    continue;
                }
            } else {
                let index = answered;
                answered += 1;
                let delay = {
                    let mut held = lock(&connection.held_replies);
                    match held.front() {
                        Some(&(wanted, delay)) if wanted == index => {
                            held.pop_front();
                            Some(delay)
                        }
                        _ => None,
                    }
                };
                if let Some(delay) = delay {
                    to.write_all(&out).await?;
                    out.clear();
                    shared.note_held();
                    tokio::time::sleep(delay).await;
                }
            }
            out.extend_from_slice(frame);
        }
        pending.drain(..used);
        to.write_all(&out).await?;
        out.clear();
    }
}

/// The length of the RESP2 or RESP3 frame at the start of `bytes`, or `None` when it is not
/// all there yet. A line that is not RESP is an inline command, one line long.
fn frame_length(bytes: &[u8]) -> Option<usize> {
    let line_end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
    let after_line = line_end + 2;
    let number = || -> i64 {
        std::str::from_utf8(&bytes[1..line_end])
            .ok()
            .and_then(|line| line.parse().ok())
            .unwrap_or_else(|| panic!("a RESP length: {:?}", &bytes[..line_end]))
    };
    match bytes[0] {
        // Simple string, error, integer, null, double, boolean, big number: one line.
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after_line),
        // Bulk string, bulk error, verbatim string: a length, then that many bytes.
        b'$' | b'!' | b'=' => match usize::try_from(number()) {
            Err(_) => Some(after_line),
            Ok(length) => {
                let end = after_line + length + 2;
                (bytes.len() >= end).then_some(end)
            }
        },
        // Array, push, set: that many frames; map, attribute: twice that many.
        kind @ (b'*' | b'>' | b'~' | b'%' | b'|') => match usize::try_from(number()) {
            Err(_) => Some(after_line),
            Ok(count) => {
                let frames = if matches!(kind, b'%' | b'|') {
                    count * 2
                } else {
                    count
                };
                let mut used = after_line;
                for _ in 0..frames {
                    used += frame_length(&bytes[used..])?;
                }
                Some(used)
            }
        },
        _ => Some(after_line),
    }
}

/// The items of a complete array (or push) of bulk strings, such as a command or a pub/sub
/// message; `None` for any other frame.
fn bulk_items(frame: &[u8]) -> Option<Vec<&[u8]>> {
    if !matches!(frame.first(), Some(b'*' | b'>')) {
        return None;
    }
    let line_end = frame.windows(2).position(|pair| pair == b"\r\n")?;
    let count: usize = std::str::from_utf8(&frame[1..line_end])
        .ok()?
        .parse()
        .ok()?;
    let mut items = Vec::with_capacity(count);
    let mut at = line_end + 2;
    for _ in 0..count {
        let rest = &frame[at..];
        if rest.first() != Some(&b'$') {
            return None;
        }
        let end = rest.windows(2).position(|pair| pair == b"\r\n")?;
        let length: usize = std::str::from_utf8(&rest[1..end]).ok()?.parse().ok()?;
        let start = end + 2;
        items.push(rest.get(start..start + length)?);
        at += start + length + 2;
    }
    Some(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_measured_whole_and_only_once_complete() {
        let command = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n";
        assert_eq!(frame_length(command), Some(command.len()));
        for cut in 0..command.len() {
            assert_eq!(frame_length(&command[..cut]), None, "{cut}");
        }
        let nested = b"*2\r\n*1\r\n:1\r\n$-1\r\n+OK\r\n";
        assert_eq!(frame_length(nested), Some(nested.len() - 5));
        assert_eq!(frame_length(b"%1\r\n+a\r\n:1\r\n"), Some(12));
        assert_eq!(frame_length(b"PING\r\n"), Some(6));
    }

    #[test]
    fn a_pub_sub_message_is_read_into_its_items_and_matched_by_name_or_bytes() {
        let message = b"*3\r\n$7\r\nmessage\r\n$9\r\nrooms:{a}\r\n$3\r\nx y\r\n";
        assert_eq!(
            bulk_items(message),
            Some(vec![&b"message"[..], b"rooms:{a}", b"x y"])
        );
        assert_eq!(bulk_items(b"+OK\r\n"), None);
        assert!(Matching::Named("message".into()).matches(message));
        assert!(Matching::containing("rooms:{a}").matches(message));
        assert!(!Matching::containing("rooms:{b}").matches(message));
    }
}
