//! The Redis engine (`--redis-url`): every instance given the same Redis shares its rooms.
//!
//! Redis holds what must survive an instance, in Centrifugo's data model: per room a meta hash
//! (`rooms:{NAME}:meta`: the epoch and the last offset), a stream of the room's message frames
//! (`rooms:{NAME}:log`, entry id `<offset>-0`, trimmed to `--room-history` messages and
//! `--room-history-bytes`), and one key per
//! message id for dedup (`rooms:{NAME}:id:<ID>`, kept for `--dedup-window`). A publish is one
//! Lua script ([`PUBLISH`]): the dedup check, the next offset, the stream entry, the expiries and
//! the `PUBLISH` on the room's channel `rooms:{NAME}`, atomically. A join, a gap fill and a
//! resubscription read with one script too ([`READ`]): the epoch, the last offset and the
//! entries after a position, as one snapshot.
//!
//! Each instance subscribes only to the rooms its members are in, on one pub/sub connection of
//! its own (no pattern subscription), and fans a message out locally as the embedded engine
//! does: one frame, shared by every member's queue. What arrives is checked against the room's
//! [`Sequence`]: an offset already delivered is dropped, a jump is filled from the stream first,
//! and after a reconnection every room is read from its last delivered offset before anything
//! newer. When the stream cannot give what is missing (Redis restarted empty: a new epoch; or
//! more was lost than history keeps), the room's members here are closed with 1012 and join
//! again, to be told `recovered: false`.
//!
//! While the pub/sub connection is down the instance is not ready (`/readyz` 503), joins and
//! publishes are answered `unavailable`, and it reconnects with backoff, logging once per
//! episode.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use hyper_tungstenite::tungstenite::Utf8Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use redis::{Client, RedisError, Script, Value};
use room_protocol::frames::MessageAroundOffset;
use room_protocol::order::{Arrival, Recovery, RoomState, Sequence, recovery};
use room_protocol::{ErrorCode, Position, Problem, ServerFrame};
use tokio_util::sync::CancellationToken;

use super::queue::{MemberQueue, Taken};
use super::{Joined, MemberId, Publish, RoomSettings, fresh_epoch, rooms_full};
use crate::metrics::RoomMetrics;
use crate::outgoing::QueuedText;

/// One publish, atomically: dedup, offset, stream, expiries, `PUBLISH`. Returns `{taken, offset}`:
/// `taken` 0 when the id was known (its first offset comes back).
///
/// The history is trimmed oldest first to `--room-history` messages and
/// `--room-history-bytes` bytes of frames (the meta hash keeps the byte count), as the
/// embedded engine trims it.
///
/// KEYS: meta, log, dedup key. ARGV: a fresh epoch (used if the room has none), history
/// length, history TTL ms, meta TTL ms, dedup window ms, frame head, frame tail, time ms,
/// channel, history bytes.
const PUBLISH: &str = r"
local known = redis.call('GET', KEYS[3])
if known then return {0, tonumber(known)} end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
local frame = ARGV[6] .. offset .. ARGV[7]
local most = tonumber(ARGV[2])
local most_bytes = tonumber(ARGV[10])
if most > 0 then
  local count = redis.call('XLEN', KEYS[2])
  local bytes = 0
  if count > 0 then bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0') end
  redis.call('XADD', KEYS[2], offset .. '-0', 't', ARGV[8], 'f', frame)
  count = count + 1
  bytes = bytes + #frame
  while count > 0 and (count > most or bytes > most_bytes) do
    local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
    bytes = bytes - #oldest[2][4]
    redis.call('XDEL', KEYS[2], oldest[1])
    count = count - 1
  end
  redis.call('HSET', KEYS[1], 'bytes', bytes)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[3], offset, 'PX', ARGV[5])
redis.call('PUBLISH', ARGV[9], epoch .. ' ' .. offset .. ' ' .. frame)
return {1, offset}
";

/// A room's epoch, last offset, and the entries after a position of that epoch (none for
/// another epoch), as one snapshot; a room without meta gets a fresh epoch here.
///
/// KEYS: meta, log. ARGV: a fresh epoch, meta TTL ms, the position's epoch ('' for none), its
/// offset.
const READ: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
local entries = {}
if epoch == ARGV[3] and tonumber(ARGV[4]) < top then
  entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[4] .. '-0', '+')
end
return {epoch, top, entries}
";

/// The meta hash outlives an idle room by this much at least: its expiry starts a new epoch,
/// which closes the room's members, so it must not come from a quiet afternoon.
const META_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Reads a join makes at most to catch up with what this instance delivered meanwhile.
const MAX_JOIN_ROUNDS: u32 = 8;
/// A pub/sub link that stayed up this long is reconnected at once when it drops; one that
/// drops sooner is retried with backoff.
const STABLE_LINK: Duration = Duration::from_secs(5);
/// Longest wait for one Redis command or subscription before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Pub/sub link checks: a ping this often, which must be answered within the command timeout.
const PING_INTERVAL: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

fn channel(room: &str) -> String {
    format!("rooms:{{{room}}}")
}

fn meta_key(room: &str) -> String {
    format!("rooms:{{{room}}}:meta")
}

fn log_key(room: &str) -> String {
    format!("rooms:{{{room}}}:log")
}

fn dedup_key(room: &str, id: &str) -> String {
    format!("rooms:{{{room}}}:id:{id}")
}

/// The room a channel is for.
fn room_of_channel(channel: &str) -> Option<&str> {
    channel.strip_prefix("rooms:{")?.strip_suffix('}')
}

/// A member on this instance: its queue, and the offset its `joined` frame named, so a
/// message at or before it (already replayed, or before its join) is not given twice.
#[derive(Debug)]
struct Listener {
    queue: Arc<MemberQueue>,
    after: u64,
}

/// A join under way, counted out of its room when dropped.
struct Entered<'a> {
    engine: &'a Redis,
    room: &'a str,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.engine.exit(self.room);
    }
}

/// A room as this instance holds it: its members here and how far it has delivered.
#[derive(Debug, Default)]
struct LocalRoom {
    /// The epoch and the offsets delivered; unknown until the first read or message.
    position: Option<(String, Sequence)>,
    members: HashMap<MemberId, Listener>,
    /// Joins under way: the room stays subscribed for them.
    joining: usize,
    /// The pub/sub connection (by generation) this room's channel is subscribed on.
    subscribed_on: Option<u64>,
    /// A gap was found that could not be read yet.
    needs_fill: bool,
}

impl LocalRoom {
    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.joining == 0
    }

    /// Queues `frame` (at `offset`) to every member that has not had it; a member over its
    /// limit leaves the room. Returns how many took it.
    fn deliver(&mut self, offset: u64, frame: &QueuedText) -> usize {
        let mut delivered = 0;
        self.members.retain(|_, listener| {
            if offset <= listener.after {
                return true;
            }
            let taken = listener.queue.push_room(frame);
            delivered += usize::from(taken);
            taken
        });
        delivered
    }

    /// The room's messages up to now cannot all reach its members here: they are closed
    /// (1012) and join again.
    fn lose_history(&mut self, room: &str) {
        if !self.members.is_empty() {
            tracing::info!(
                room,
                members = self.members.len(),
                "a room's history was lost; closing its members here so they join again"
            );
        }
        for (_, listener) in self.members.drain() {
            listener.queue.end(Taken::HistoryLost);
        }
    }
}

/// What became of a pub/sub message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offered {
    /// Delivered, or dropped as delivered already.
    Taken,
    /// Messages before it are missing: fill the gap from the stream first.
    AfterGap,
    /// No member here is in its room.
    NotHere,
}

/// One message of a room's stream.
#[derive(Debug)]
struct Entry {
    offset: u64,
    time_ms: u64,
    frame: String,
}

/// What [`READ`] found.
#[derive(Debug)]
struct Snapshot {
    epoch: String,
    top: u64,
    entries: Vec<Entry>,
}

/// The pub/sub connection's sending half, and which connection it is.
#[derive(Debug, Default)]
struct Link {
    sink: Option<PubSubSink>,
    generation: u64,
}

/// See the module documentation.
pub(crate) struct Redis {
    client: Client,
    commands: ConnectionManager,
    publish: Script,
    read: Script,
    settings: RoomSettings,
    metrics: RoomMetrics,
    rooms: Mutex<HashMap<String, LocalRoom>>,
    /// Held while subscribing or unsubscribing, so changes to a channel go out in order.
    link: tokio::sync::Mutex<Link>,
    reachable: AtomicBool,
    /// The current outage has been logged.
    warned: AtomicBool,
    /// The pub/sub link has been up at least once (its first time is logged).
    linked_once: AtomicBool,
    /// Rooms left here whose channel is being unsubscribed.
    unsubscribing: Mutex<HashSet<String>>,
    /// Itself, for the tasks it spawns.
    this: Weak<Redis>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Redis")
            .field("reachable", &self.reachable)
            .field("rooms", &lock(&self.rooms).len())
            .finish_non_exhaustive()
    }
}

/// Locks a mutex whose critical sections leave its data consistent at every step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unavailable() -> Problem {
    Problem::new(
        ErrorCode::Unavailable,
        "the rooms store cannot be reached right now; send it again in a moment",
    )
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

impl Redis {
    /// An engine on the Redis at `url` (checked by the flag's parser). Nothing connects yet:
    /// [`Redis::maintain`] opens the pub/sub link, and commands connect on first use.
    pub(crate) fn new(
        url: &str,
        settings: RoomSettings,
        metrics: RoomMetrics,
    ) -> Result<Arc<Redis>, RedisError> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(FIRST_RETRY)
            .set_max_delay(Duration::from_secs(1));
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Arc::new_cyclic(|this| Redis {
            this: this.clone(),
            client,
            commands,
            publish: Script::new(PUBLISH),
            read: Script::new(READ),
            settings,
            metrics,
            rooms: Mutex::new(HashMap::new()),
            link: tokio::sync::Mutex::new(Link::default()),
            reachable: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            linked_once: AtomicBool::new(false),
            unsubscribing: Mutex::new(HashSet::new()),
        }))
    }

    /// Whether the pub/sub link is up: members here receive what is published.
    pub(crate) fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn meta_ttl_ms(&self) -> u64 {
        META_TTL_MS
            .max(self.settings.history_ttl_ms)
            .max(self.settings.dedup_window_ms)
    }

    /// A command failed: counted, and the caller answers `unavailable`.
    fn failed(&self, what: &str, error: &RedisError) -> Problem {
        self.metrics.redis_error();
        tracing::debug!(%error, "redis {what} failed");
        unavailable()
    }

    /// Runs a script, once more if the connection had dropped (Redis restarted, say): the
    /// manager reconnects on that error, and both scripts are safe to run twice (a publish
    /// run twice finds its id and answers its first offset).
    async fn invoke<'script, T: redis::FromRedisValue>(
        &self,
        invocation: impl Fn() -> redis::ScriptInvocation<'script>,
    ) -> Result<T, RedisError> {
        let mut commands = self.commands.clone();
        match invocation().invoke_async(&mut commands).await {
            Err(error) if error.is_connection_dropped() && !error.is_timeout() => {
                tracing::debug!(%error, "redis connection dropped; trying once more");
                invocation().invoke_async(&mut commands).await
            }
            answer => answer,
        }
    }

    /// Takes a publish: the offset it got, or the one it got before if its id is known.
    pub(crate) async fn publish(&self, publish: &Publish<'_>, now_ms: u64) -> Result<u64, Problem> {
        let cut =
            MessageAroundOffset::new(publish.room, publish.id, publish.from, publish.text, now_ms);
        let answer: Result<(u8, u64), RedisError> = self
            .invoke(|| {
                let mut invocation = self.publish.prepare_invoke();
                invocation
                    .key(meta_key(publish.room))
                    .key(log_key(publish.room))
                    .key(dedup_key(publish.room, publish.id))
                    .arg(fresh_epoch())
                    .arg(self.settings.history_messages)
                    .arg(self.settings.history_ttl_ms.max(1))
                    .arg(self.meta_ttl_ms())
                    .arg(self.settings.dedup_window_ms.max(1))
                    .arg(&cut.head)
                    .arg(&cut.tail)
                    .arg(now_ms)
                    .arg(channel(publish.room))
                    .arg(self.settings.history_bytes);
                invocation
            })
            .await;
        let (taken, offset) = answer.map_err(|error| self.failed("publish", &error))?;
        if taken == 1 {
            self.metrics.published();
        }
        Ok(offset)
    }

    /// Reads the room's epoch, last offset and the entries after `position` (if it is of
    /// that epoch).
    async fn read(&self, room: &str, epoch: &str, after: u64) -> Result<Snapshot, Problem> {
        let answer: Result<Value, RedisError> = self
            .invoke(|| {
                let mut invocation = self.read.prepare_invoke();
                invocation
                    .key(meta_key(room))
                    .key(log_key(room))
                    .arg(fresh_epoch())
                    .arg(self.meta_ttl_ms())
                    .arg(epoch)
                    .arg(after);
                invocation
            })
            .await;
        let value = answer.map_err(|error| self.failed("read", &error))?;
        snapshot(value).ok_or_else(|| {
            self.metrics.redis_error();
            tracing::warn!(
                room,
                "redis answered a read with something else than a snapshot"
            );
            unavailable()
        })
    }

    /// Joins `member`: its queue gets `joined`, the replay `since` asks for, then every
    /// message published after, in order.
    pub(crate) async fn join(
        &self,
        room: &str,
        since: Option<&Position>,
        member: MemberId,
        queue: &Arc<MemberQueue>,
        now_ms: u64,
    ) -> Result<Joined, Problem> {
        self.enter(room)?;
        // Counted out however the join ends, even dropped half-way (at the shutdown grace).
        let _entered = Entered { engine: self, room };
        self.join_entered(room, since, member, queue, now_ms).await
    }

    /// A join under way is over: the room goes when nobody here is in it.
    fn exit(&self, room: &str) {
        let mut rooms = lock(&self.rooms);
        if let Some(local) = rooms.get_mut(room) {
            local.joining -= 1;
            if local.is_empty() {
                rooms.remove(room);
                drop(rooms);
                self.unsubscribe_later(room);
            }
        }
    }

    /// Counts a join under way in the local room, made if this instance has room for it.
    fn enter(&self, room: &str) -> Result<(), Problem> {
        let mut rooms = lock(&self.rooms);
        if !rooms.contains_key(room) && rooms.len() >= self.settings.max_rooms {
            return Err(rooms_full());
        }
        rooms.entry(room.to_owned()).or_default().joining += 1;
        Ok(())
    }

    async fn join_entered(
        &self,
        room: &str,
        since: Option<&Position>,
        member: MemberId,
        queue: &Arc<MemberQueue>,
        now_ms: u64,
    ) -> Result<Joined, Problem> {
        // Subscribed before reading: whatever is published after the read arrives live.
        self.subscribe(room).await?;
        let (since_epoch, since_offset) =
            since.map_or(("", 0), |since| (&*since.epoch, since.offset));
        let read = self.read(room, since_epoch, since_offset).await?;
        let ttl = self.settings.history_ttl_ms;
        let fresh = |entry: &Entry| now_ms.saturating_sub(entry.time_ms) < ttl;
        let decided = recovery(
            since,
            RoomState {
                epoch: &read.epoch,
                last: read.top,
                oldest_kept: read
                    .entries
                    .iter()
                    .find(|entry| fresh(entry))
                    .map(|entry| entry.offset),
            },
        );
        let mut replay: Vec<Entry> = match decided {
            Recovery::Replay { after } => read
                .entries
                .into_iter()
                .filter(|entry| entry.offset > after)
                .collect(),
            Recovery::Fresh | Recovery::Lost => Vec::new(),
        };
        let epoch = read.epoch;
        let mut top = read.top;
        let mut delivered;
        for round in 0.. {
            if round == MAX_JOIN_ROUNDS {
                // Publishes outrun the reads: the client joins again in a moment.
                return Err(unavailable());
            }
            {
                let mut rooms = lock(&self.rooms);
                let Some(local) = rooms.get_mut(room) else {
                    return Err(unavailable());
                };
                delivered = match &local.position {
                    // Past the snapshot already: the new member needs what lies between.
                    Some((known, sequence)) if *known == epoch && sequence.last() > top => {
                        Some(sequence.last())
                    }
                    Some((known, _)) if *known == epoch => None,
                    // The instance's view is of a history Redis no longer has.
                    Some(_) => {
                        local.lose_history(room);
                        local.position = Some((epoch.clone(), Sequence::after(top)));
                        None
                    }
                    None => {
                        local.position = Some((epoch.clone(), Sequence::after(top)));
                        None
                    }
                };
                if delivered.is_none() {
                    register(local, room, &epoch, top, decided, &replay, member, queue);
                    break;
                }
            }
            // Only a replay needs the entries; otherwise the read is for the offset alone.
            let wanted = if decided.recovered() {
                epoch.as_str()
            } else {
                ""
            };
            let more = self.read(room, wanted, top).await?;
            if more.epoch == epoch && delivered.is_some_and(|delivered| more.top < delivered) {
                // Redis is behind what this instance delivered (restored from an older
                // snapshot): what follows would reuse offsets its members already have.
                self.behind_redis(room, &epoch, more.top);
            }
            let complete = more.top >= top
                && more.entries.len() as u64 == more.top - top
                && more
                    .entries
                    .first()
                    .is_none_or(|entry| entry.offset == top + 1);
            if more.epoch != epoch || (decided.recovered() && !complete) {
                // The history changed under the join, or no longer holds what the replay
                // needs: the client asks again.
                return Err(unavailable());
            }
            if decided.recovered() {
                replay.extend(more.entries);
            }
            top = more.top;
        }
        Ok(Joined {
            recovery: decided,
            replayed: replay.len(),
        })
    }

    /// Subscribes this instance to the room's channel on the current pub/sub connection.
    async fn subscribe(&self, room: &str) -> Result<(), Problem> {
        let mut link = self.link.lock().await;
        let generation = link.generation;
        let subscribed = lock(&self.rooms)
            .get(room)
            .is_some_and(|local| local.subscribed_on == Some(generation));
        if subscribed {
            return Ok(());
        }
        let Some(sink) = link.sink.as_mut() else {
            return Err(unavailable());
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(channel(room))).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(self.failed("subscribe", &error)),
            Err(_) => {
                self.metrics.redis_error();
                return Err(unavailable());
            }
        }
        if let Some(local) = lock(&self.rooms).get_mut(room) {
            local.subscribed_on = Some(generation);
        }
        Ok(())
    }

    /// Unsubscribes from a room nobody here is in any more, unless someone joined it again
    /// meanwhile.
    fn unsubscribe_later(&self, room: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(this) = self.this.upgrade() else {
            return;
        };
        if !lock(&self.unsubscribing).insert(room.to_owned()) {
            return;
        }
        let room = room.to_owned();
        runtime.spawn(async move {
            let mut link = this.link.lock().await;
            lock(&this.unsubscribing).remove(&room);
            if lock(&this.rooms).contains_key(&room) {
                return;
            }
            if let Some(sink) = link.sink.as_mut() {
                let unsubscribed =
                    tokio::time::timeout(COMMAND_TIMEOUT, sink.unsubscribe(channel(&room))).await;
                if !matches!(unsubscribed, Ok(Ok(()))) {
                    // Still subscribed: its messages find no local room and are dropped.
                    this.metrics.redis_error();
                }
            }
        });
    }

    /// Takes `member` out of the room; the instance unsubscribes when nobody here is left.
    pub(crate) fn leave(&self, room: &str, member: MemberId) {
        let mut rooms = lock(&self.rooms);
        let Some(local) = rooms.get_mut(room) else {
            return;
        };
        local.members.remove(&member);
        if local.is_empty() {
            rooms.remove(room);
            drop(rooms);
            self.unsubscribe_later(room);
        }
    }
}

impl Redis {
    /// Keeps the pub/sub link up until `shutdown`: connects (with backoff while Redis cannot
    /// be reached), subscribes every room that has members here, reads each from its last
    /// delivered offset, then delivers what arrives, pinging to notice a Redis that stopped
    /// answering.
    pub(crate) async fn maintain(self: Arc<Redis>, shutdown: CancellationToken) {
        let mut retry = Duration::ZERO;
        loop {
            let connected = tokio::select! {
                () = shutdown.cancelled() => return,
                connected = self.connect() => connected,
            };
            match connected {
                Ok(stream) => {
                    self.came_up();
                    let up_since = std::time::Instant::now();
                    let Some(reason) = self.listen(stream, &shutdown).await else {
                        return;
                    };
                    self.reachable.store(false, Ordering::Relaxed);
                    self.link.lock().await.sink = None;
                    if up_since.elapsed() >= STABLE_LINK {
                        self.metrics.redis_error();
                        // A link that was up is tried again at once, quietly: what pub/sub
                        // drops meanwhile must come from the stream, which keeps only so much.
                        tracing::debug!(reason, "the redis pub/sub link dropped; linking again");
                        retry = Duration::ZERO;
                        continue;
                    }
                    self.went_down(&reason);
                }
                Err(error) => {
                    self.went_down(&error.to_string());
                    self.link.lock().await.sink = None;
                }
            }
            retry = next_retry(retry);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(jitter(retry)) => {}
            }
        }
    }

    /// Opens a pub/sub connection, subscribes every local room on it, makes it the link, and
    /// fills what each room missed while it was down.
    async fn connect(&self) -> Result<redis::aio::PubSubStream, RedisError> {
        let timed_out = || RedisError::from((redis::ErrorKind::Io, "no answer in time"));
        let (mut sink, stream) =
            tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_pubsub())
                .await
                .map_err(|_| timed_out())??
                .split();
        let mut link = self.link.lock().await;
        let rooms: Vec<String> = lock(&self.rooms).keys().cloned().collect();
        if !rooms.is_empty() {
            let channels: Vec<String> = rooms.iter().map(|room| channel(room)).collect();
            tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(&channels))
                .await
                .map_err(|_| timed_out())??;
        }
        link.generation += 1;
        let generation = link.generation;
        {
            let mut local_rooms = lock(&self.rooms);
            for room in &rooms {
                if let Some(local) = local_rooms.get_mut(room) {
                    local.subscribed_on = Some(generation);
                }
            }
        }
        link.sink = Some(sink);
        drop(link);
        for room in &rooms {
            self.catch_up(room).await.map_err(|()| {
                RedisError::from((
                    redis::ErrorKind::Io,
                    "a room could not be read after reconnecting",
                ))
            })?;
        }
        Ok(stream)
    }

    /// Delivers what the link brings until it ends (the reason) or shutdown (`None`).
    async fn listen(
        &self,
        mut stream: redis::aio::PubSubStream,
        shutdown: &CancellationToken,
    ) -> Option<String> {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let Some(mut pinger) = self.link.lock().await.sink.clone() else {
            return Some("the link was gone before it was used".to_owned());
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return None,
                message = stream.next() => match message {
                    Some(message) => self.arrived(&message).await,
                    None => return Some("the pub/sub connection closed".to_owned()),
                },
                _ = ping.tick() => {
                    // Messages keep arriving into the stream's buffer meanwhile.
                    let answered =
                        tokio::time::timeout(COMMAND_TIMEOUT, pinger.ping::<Value>()).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        return Some("a ping went unanswered".to_owned());
                    }
                    self.fill_pending().await;
                }
            }
        }
    }

    fn came_up(&self) {
        self.reachable.store(true, Ordering::Relaxed);
        let after_outage = self.warned.swap(false, Ordering::Relaxed);
        if after_outage || !self.linked_once.swap(true, Ordering::Relaxed) {
            tracing::info!("redis reachable: rooms are shared through it");
        }
    }

    fn went_down(&self, reason: &str) {
        self.reachable.store(false, Ordering::Relaxed);
        self.metrics.redis_error();
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                reason,
                "redis unreachable: rooms answer `unavailable` and /readyz 503 until it is back"
            );
        } else {
            tracing::debug!(reason, "redis still unreachable");
        }
    }

    /// One pub/sub message: delivered in order, after filling any gap before it.
    async fn arrived(&self, message: &redis::Msg) {
        let Some(room) = room_of_channel(message.get_channel_name()) else {
            return;
        };
        let Some((epoch, offset, frame)) = std::str::from_utf8(message.get_payload_bytes())
            .ok()
            .and_then(parse_published)
        else {
            self.metrics.redis_error();
            tracing::warn!(
                room,
                "a pub/sub message that is not a room message; dropped"
            );
            return;
        };
        match self.offer(room, epoch, offset, frame) {
            Offered::Taken => {}
            Offered::AfterGap => {
                // Pub/sub lost something: the stream has it. The message itself is in the
                // range read (or was delivered meanwhile).
                if self.catch_up(room).await.is_ok() {
                    self.offer(room, epoch, offset, frame);
                } else if let Some(local) = lock(&self.rooms).get_mut(room) {
                    // Read again at the next ping, or at the room's next message.
                    local.needs_fill = true;
                }
            }
            // Left, but its channel still subscribed (an unsubscribe that failed).
            Offered::NotHere => self.unsubscribe_later(room),
        }
    }

    /// Fills the rooms whose gap could not be read when it was found.
    async fn fill_pending(&self) {
        let pending: Vec<String> = lock(&self.rooms)
            .iter()
            .filter(|(_, local)| local.needs_fill)
            .map(|(room, _)| room.clone())
            .collect();
        for room in pending {
            if self.catch_up(&room).await.is_err() {
                return;
            }
        }
    }

    /// Delivers a message if it is the next of its room here.
    fn offer(&self, room: &str, epoch: &str, offset: u64, frame: &str) -> Offered {
        let mut rooms = lock(&self.rooms);
        let Some(local) = rooms.get_mut(room) else {
            return Offered::NotHere;
        };
        let arrival = match &local.position {
            None => {
                // No member has joined yet: this is where delivery starts.
                local.position = Some((epoch.to_owned(), Sequence::after(offset)));
                return Offered::Taken;
            }
            Some((known, _)) if known != epoch => {
                local.lose_history(room);
                local.position = Some((epoch.to_owned(), Sequence::after(offset)));
                return Offered::Taken;
            }
            Some((_, sequence)) => sequence.check(offset),
        };
        if arrival == Arrival::Next {
            let frame = QueuedText::shared(Utf8Bytes::from(frame.to_owned()));
            let delivered = local.deliver(offset, &frame);
            self.metrics.delivered(delivered);
            if let Some((_, sequence)) = local.position.as_mut() {
                sequence.advance(offset);
            }
        }
        match arrival {
            Arrival::Gap { .. } => Offered::AfterGap,
            Arrival::Next | Arrival::Old => Offered::Taken,
        }
    }

    /// Redis answered a top below what this instance delivered in the same epoch: it lost
    /// writes (restored from an older snapshot). The members here are closed and delivery
    /// goes on from Redis's offsets.
    fn behind_redis(&self, room: &str, epoch: &str, top: u64) {
        let mut rooms = lock(&self.rooms);
        let Some(local) = rooms.get_mut(room) else {
            return;
        };
        if local
            .position
            .as_ref()
            .is_some_and(|(known, _)| known == epoch)
        {
            tracing::warn!(
                room,
                top,
                "redis is behind what this instance delivered: it lost writes"
            );
            local.lose_history(room);
            local.position = Some((epoch.to_owned(), Sequence::after(top)));
        }
    }

    /// Reads everything after the room's last delivered offset from the stream and delivers
    /// it; what the stream no longer holds closes the room's members here.
    async fn catch_up(&self, room: &str) -> Result<(), ()> {
        let position = lock(&self.rooms)
            .get(room)
            .and_then(|local| local.position.clone());
        let Some((epoch, sequence)) = position else {
            return Ok(());
        };
        let read = self
            .read(room, &epoch, sequence.last())
            .await
            .map_err(|_| ())?;
        let mut rooms = lock(&self.rooms);
        let Some(local) = rooms.get_mut(room) else {
            return Ok(());
        };
        if local
            .position
            .as_ref()
            .is_none_or(|(known, _)| *known != epoch)
        {
            // A join moved the room to another epoch meanwhile: this read is of the old one.
            return Ok(());
        }
        if read.epoch == epoch && read.top < sequence.last() {
            drop(rooms);
            self.behind_redis(room, &epoch, read.top);
            return Ok(());
        }
        if read.epoch != epoch {
            local.lose_history(room);
            local.position = Some((read.epoch, Sequence::after(read.top)));
            return Ok(());
        }
        local.needs_fill = false;
        let mut delivered = 0;
        let mut filled = false;
        for entry in read.entries {
            let Some((_, sequence)) = local.position.as_mut() else {
                break;
            };
            match sequence.check(entry.offset) {
                Arrival::Next => {
                    sequence.advance(entry.offset);
                    let frame = QueuedText::shared(Utf8Bytes::from(entry.frame));
                    delivered += local.deliver(entry.offset, &frame);
                    filled = true;
                }
                Arrival::Old => {}
                Arrival::Gap { .. } => break,
            }
        }
        self.metrics.delivered(delivered);
        if filled {
            self.metrics.gap_filled();
        }
        let behind = local
            .position
            .as_ref()
            .is_some_and(|(_, sequence)| sequence.last() < read.top);
        if behind {
            // Trimmed before it could be read: these members cannot get every message.
            local.lose_history(room);
            local.position = Some((read.epoch, Sequence::after(read.top)));
        }
        Ok(())
    }
}

/// `epoch offset frame`, as [`PUBLISH`] sends it.
fn parse_published(payload: &str) -> Option<(&str, u64, &str)> {
    let mut parts = payload.splitn(3, ' ');
    let epoch = parts.next()?;
    let offset = parts.next()?.parse().ok()?;
    let frame = parts.next()?;
    Some((epoch, offset, frame))
}

/// `{epoch, top, entries}` as [`READ`] answers, each entry `[id, [field, value, ...]]`.
fn snapshot(value: Value) -> Option<Snapshot> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [epoch, top, entries]: [Value; 3] = parts.try_into().ok()?;
    let epoch = text(epoch)?;
    let top = match top {
        Value::Int(top) => u64::try_from(top).ok()?,
        _ => return None,
    };
    let Value::Array(entries) = entries else {
        return None;
    };
    let entries = entries
        .into_iter()
        .map(entry)
        .collect::<Option<Vec<Entry>>>()?;
    Some(Snapshot {
        epoch,
        top,
        entries,
    })
}

fn entry(value: Value) -> Option<Entry> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [id, fields]: [Value; 2] = parts.try_into().ok()?;
    let offset = text(id)?.strip_suffix("-0")?.parse().ok()?;
    let Value::Array(fields) = fields else {
        return None;
    };
    let mut time_ms = None;
    let mut frame = None;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match text(name)?.as_str() {
            "t" => time_ms = text(value)?.parse().ok(),
            "f" => frame = text(value),
            _ => {}
        }
    }
    Some(Entry {
        offset,
        time_ms: time_ms?,
        frame: frame?,
    })
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

/// The pause after `retry`: doubled, from [`FIRST_RETRY`] up to [`LAST_RETRY`].
fn next_retry(retry: Duration) -> Duration {
    (retry * 2).clamp(FIRST_RETRY, LAST_RETRY)
}

/// Somewhere between half of `pause` and all of it, so instances that lost Redis together do
/// not all come back in the same instant.
fn jitter(pause: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let half = millis(pause) / 2;
    Duration::from_millis(half + random % (half + 1))
}

/// Queues `joined` and the replay for a member, and makes it a listener after `top`.
#[allow(clippy::too_many_arguments)]
fn register(
    local: &mut LocalRoom,
    room: &str,
    epoch: &str,
    top: u64,
    decided: Recovery,
    replay: &[Entry],
    member: MemberId,
    queue: &Arc<MemberQueue>,
) {
    let joined = ServerFrame::Joined {
        room: room.to_owned(),
        epoch: epoch.to_owned(),
        offset: top,
        recovered: decided.recovered(),
    };
    queue.push_own(joined.to_json().into());
    for entry in replay {
        queue.push_replay(&QueuedText::shared(Utf8Bytes::from(entry.frame.clone())));
    }
    local.members.insert(
        member,
        Listener {
            queue: Arc::clone(queue),
            after: top,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outgoing::Compression;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn keys_and_channels_name_the_room_in_a_hash_tag_and_back() {
        assert_eq!(meta_key("lobby"), "rooms:{lobby}:meta");
        assert_eq!(log_key("a:b"), "rooms:{a:b}:log");
        assert_eq!(dedup_key("lobby", "x y"), "rooms:{lobby}:id:x y");
        assert_eq!(room_of_channel(&channel("a.b-c_d:e")), Some("a.b-c_d:e"));
        assert_eq!(room_of_channel("other"), None);
        assert_eq!(room_of_channel("rooms:{lobby"), None);
    }

    #[test]
    fn a_published_message_is_epoch_offset_frame_and_the_frame_may_hold_spaces() {
        assert_eq!(
            parse_published(r#"e1 42 {"text":"a b c"}"#),
            Some(("e1", 42, r#"{"text":"a b c"}"#))
        );
        for broken in ["", "e1", "e1 x {}", "e1 42", "e1 -1 {}"] {
            assert_eq!(parse_published(broken), None, "{broken:?}");
        }
    }

    #[test]
    fn a_snapshot_is_read_from_the_script_answer_and_anything_else_is_refused() {
        let answer = Value::Array(vec![
            bulk("epoch"),
            Value::Int(7),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("6-0"),
                    Value::Array(vec![bulk("t"), bulk("1000"), bulk("f"), bulk("{}")]),
                ]),
                Value::Array(vec![
                    bulk("7-0"),
                    Value::Array(vec![bulk("f"), bulk("{\"a\":1}"), bulk("t"), bulk("2000")]),
                ]),
            ]),
        ]);
        let read = snapshot(answer).expect("a snapshot");
        assert_eq!((read.epoch.as_str(), read.top), ("epoch", 7));
        let entries: Vec<(u64, u64, &str)> = read
            .entries
            .iter()
            .map(|entry| (entry.offset, entry.time_ms, entry.frame.as_str()))
            .collect();
        assert_eq!(entries, [(6, 1000, "{}"), (7, 2000, "{\"a\":1}")]);
        let broken = [
            Value::Nil,
            Value::Array(vec![bulk("epoch"), Value::Int(-1), Value::Array(vec![])]),
            Value::Array(vec![bulk("epoch"), Value::Int(1)]),
            Value::Array(vec![
                bulk("epoch"),
                Value::Int(1),
                Value::Array(vec![Value::Array(vec![
                    bulk("1-5"),
                    Value::Array(vec![bulk("t"), bulk("1"), bulk("f"), bulk("{}")]),
                ])]),
            ]),
            Value::Array(vec![
                bulk("epoch"),
                Value::Int(1),
                Value::Array(vec![Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("t"), bulk("1")]),
                ])]),
            ]),
        ];
        for value in broken {
            assert!(snapshot(value.clone()).is_none(), "{value:?}");
        }
    }

    #[test]
    fn a_member_gets_nothing_at_or_before_its_joined_offset() {
        let mut room = LocalRoom::default();
        let early = Arc::new(MemberQueue::new(10_000, Compression::PLAIN));
        let late = Arc::new(MemberQueue::new(10_000, Compression::PLAIN));
        room.members.insert(
            1,
            Listener {
                queue: Arc::clone(&early),
                after: 0,
            },
        );
        room.members.insert(
            2,
            Listener {
                queue: Arc::clone(&late),
                after: 2,
            },
        );
        for offset in 1..=3 {
            let frame = QueuedText::shared(Utf8Bytes::from(offset.to_string()));
            room.deliver(offset, &frame);
        }
        let taken = |queue: &MemberQueue| {
            let mut frames = Vec::new();
            queue.take_all(&mut frames);
            frames
                .iter()
                .map(|frame| frame.text().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(taken(&early), ["1", "2", "3"]);
        assert_eq!(taken(&late), ["3"]);
        room.lose_history("r");
        assert!(room.members.is_empty());
        assert_eq!(late.take_all(&mut Vec::new()), Taken::HistoryLost);
    }

    #[test]
    fn retries_wait_between_half_and_all_of_the_pause() {
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let pause = jitter(Duration::from_millis(400));
            assert!((200..=400).contains(&pause.as_millis()), "{pause:?}");
            distinct.insert(pause);
        }
        // A jitter that always gave the same pause would bring instances back together.
        assert!(distinct.len() >= 2, "{distinct:?}");
    }

    #[test]
    fn retries_double_from_100_ms_up_to_5_s() {
        let mut retry = Duration::ZERO;
        let mut pauses = Vec::new();
        for _ in 0..8 {
            retry = next_retry(retry);
            pauses.push(millis(retry));
        }
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
