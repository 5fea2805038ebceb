//! The Redis broker (`--redis-url`): every instance given the same Redis shares its rooms.
//!
//! Redis holds what must survive an instance, in Centrifugo's data model ([`keys`]): per room
//! a meta hash (epoch, last offset), a stream of the room's message frames, and one key per
//! message id for dedup. A publish is one Lua script ([`script::publish`]): the dedup check,
//! the next offset, the stream entry, the expiries and the `PUBLISH` on the room's channel,
//! atomically. A join and a gap fill read with one script too ([`script::read`]).
//!
//! Each instance subscribes only to the rooms its members are in, on one pub/sub connection
//! of its own ([`link`]), and hands what arrives to the hub ([`feed`]), which decides order,
//! gaps and fan-out as it does for the memory broker. A gap is read from the stream by a task
//! of its own, so one room's slow read holds no other room.
//!
//! While the pub/sub connection is down the instance is not ready (`/readyz` 503), joins and
//! publishes are answered `unavailable`, and it reconnects with backoff, logging once per
//! episode.

mod feed;
mod keys;
mod link;
mod notice;
mod script;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script, Value};
use room_protocol::frames::MessageAroundOffset;
use room_protocol::{ErrorCode, Position, PresentUser, Problem};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::hub::Hub;
use super::shards::{Shards, lock};
use super::{Publish, RoomSettings, Snapshot, epoch_suffix};
use crate::metrics::RoomMetrics;

/// The meta hash outlives an idle room by this much at least: its expiry starts a new epoch,
/// which closes the room's members, so it must not come from a quiet afternoon.
const META_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Longest wait for one Redis command or subscription before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Presence and typing notices waiting to be sent, at most.
const NOTICE_BACKLOG: usize = 4_096;

/// See the module documentation.
pub(crate) struct Redis {
    client: Client,
    commands: ConnectionManager,
    publish: Script,
    read: Script,
    forget: Script,
    settings: RoomSettings,
    metrics: RoomMetrics,
    hub: Arc<Hub>,
    /// The pub/sub connection's sending half, held while subscribing or unsubscribing so
    /// changes to a channel go out in order.
    link: tokio::sync::Mutex<link::Link>,
    /// The pub/sub connection now (its generation), and on which one each room's channel
    /// was subscribed: a join to a room subscribed on the current one takes no lock.
    generation: AtomicU64,
    subscribed: Shards<u64>,
    reachable: AtomicBool,
    /// The current outage has been logged.
    warned: AtomicBool,
    /// When notices were last said to be let go (ms since the start), 0 for never.
    notices_warned_at: AtomicU64,
    /// The pub/sub link has been up at least once (its first time is logged).
    linked_once: AtomicBool,
    /// Rooms whose gap is being read, and whether another gap was found meanwhile.
    filling: Mutex<HashMap<String, bool>>,
    /// Subscriptions and unsubscriptions asked for and not yet sent: the link sends all that
    /// gathered as one command each ([`link`]'s `subscriber`), so a join waits for one round
    /// trip whatever else is joined or left at the same time.
    changes: Mutex<link::Changes>,
    changed: tokio::sync::Notify,
    /// The workers the pub/sub messages are spread over (set by [`Redis::start`]).
    feeds: OnceLock<feed::Feeds>,
    /// Where the tasks it spawns are tracked and stopped (set by [`Redis::start`]).
    tasks: OnceLock<(TaskTracker, CancellationToken)>,
    /// Itself, for the tasks it spawns.
    this: Weak<Redis>,
    /// Where presence and typing notices wait to be sent, in order (set by [`Redis::start`]).
    notices: OnceLock<tokio::sync::mpsc::Sender<notice::Notice>>,
    /// This instance among those on the same Redis: 16 random hex digits, new at each start,
    /// in the presence and typing notices it sends on rooms' channels.
    instance: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Redis")
            .field("reachable", &self.reachable)
            .finish_non_exhaustive()
    }
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
    /// A broker on the Redis at `url` (checked by the flag's parser). Nothing connects yet:
    /// [`Redis::start`] opens the pub/sub link, and commands connect on first use.
    pub(crate) fn new(
        url: &str,
        hub: Arc<Hub>,
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
        metrics.redis_up(false);
        Ok(Arc::new_cyclic(|this| Redis {
            this: this.clone(),
            client,
            commands,
            publish: Script::new(&script::publish()),
            read: Script::new(&script::read()),
            forget: Script::new(script::FORGET),
            settings,
            metrics,
            hub,
            link: tokio::sync::Mutex::new(link::Link::default()),
            generation: AtomicU64::new(0),
            subscribed: Shards::default(),
            reachable: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            notices_warned_at: AtomicU64::new(0),
            linked_once: AtomicBool::new(false),
            filling: Mutex::new(HashMap::new()),
            changes: Mutex::new(link::Changes::default()),
            changed: tokio::sync::Notify::new(),
            tasks: OnceLock::new(),
            feeds: OnceLock::new(),
            notices: OnceLock::new(),
            instance: format!("{}{}", super::epoch_suffix(), super::epoch_suffix()),
        }))
    }

    /// Keeps the pub/sub link up until `shutdown`; the tasks the broker spawns go on
    /// `tracker`.
    pub(crate) fn start(self: &Arc<Redis>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let _ = self.tasks.set((tracker.clone(), shutdown.clone()));
        let _ = self.feeds.set(self.start_feeds(tracker, &shutdown));
        let (notices, queued) = tokio::sync::mpsc::channel(NOTICE_BACKLOG);
        let _ = self.notices.set(notices);
        tracker.spawn(notice::send(
            self.commands.clone(),
            queued,
            self.instance.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(Arc::clone(self).subscriber(shutdown.clone()));
        tracker.spawn(Arc::clone(self).maintain(shutdown));
    }

    /// Runs `work` on a task of its own, stopped at shutdown.
    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match self.tasks.get() {
            Some((tracker, shutdown)) => {
                let shutdown = shutdown.clone();
                tracker.spawn_on(
                    async move {
                        tokio::select! {
                            () = shutdown.cancelled() => {}
                            () = work => {}
                        }
                    },
                    &runtime,
                );
            }
            None => {
                runtime.spawn(work);
            }
        }
    }

    /// Tells the other instances this one's users in `room` (none: it left the room).
    pub(crate) fn publish_presence(&self, room: &str, users: &[PresentUser]) {
        let list = serde_json::to_string(users).expect("plain strings");
        let payload = format!("{}p {} {list}", keys::NOTICE, self.instance);
        self.notice(room, payload, Some(!users.is_empty()));
    }

    /// Asks the other instances in `room` to say their users now (this one is new in it).
    pub(crate) fn ask_presence(&self, room: &str) {
        self.notice(room, format!("{}q {}", keys::NOTICE, self.instance), None);
    }

    /// A `typing` frame for `room`'s members on the other instances.
    pub(crate) fn publish_typing(&self, room: &str, frame: &str) {
        let payload = format!("{}t {} {frame}", keys::NOTICE, self.instance);
        self.notice(room, payload, None);
    }

    /// Sends `payload` on `room`'s channel, after every notice asked for before it
    /// ([`notice`]); `lists` says whether a presence list names anyone. Best effort: presence
    /// is said again every third of its TTL, a lost typing is no loss, and past
    /// [`NOTICE_BACKLOG`] waiting notices the newest are let go: counted, and warned of at
    /// most once a minute.
    fn notice(&self, room: &str, payload: String, lists: Option<bool>) {
        let Some(notices) = self.notices.get() else {
            return;
        };
        let notice = notice::Notice {
            channel: keys::channel(room),
            payload,
            lists,
        };
        if notices.try_send(notice).is_err() {
            self.metrics.notice_dropped();
            // Said at most once a minute: a frozen Redis would otherwise flood the log.
            let now = super::now_ms().max(1);
            let last = self.notices_warned_at.load(Ordering::Relaxed);
            if (last == 0 || now.saturating_sub(last) >= 60_000)
                && self
                    .notices_warned_at
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    room,
                    "presence and typing notices to the other instances are let go: {NOTICE_BACKLOG} \
                     wait for Redis (they are said again every third of --presence-ttl)"
                );
            }
        }
    }

    /// A notice from an instance on a room's channel: presence, a question, typing.
    pub(super) fn noticed(&self, room: &str, notice: &str) {
        let Some((kind, rest)) = notice.split_at_checked(1) else {
            return;
        };
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        let (instance, body) = rest.split_once(' ').unwrap_or((rest, ""));
        if instance == self.instance {
            return;
        }
        match kind {
            "p" => match serde_json::from_str::<Vec<PresentUser>>(body) {
                Ok(users) => self.hub.remote_presence(
                    room,
                    instance,
                    users,
                    super::now_ms() + self.settings.presence_ttl_ms,
                ),
                Err(_) => tracing::warn!(room, "a presence notice that is not a user list"),
            },
            // Answered with the room's next flush (within 200 ms): however many instances
            // ask, this one says its list at most once per interval.
            "q" => self.hub.presence_asked(room),
            "t" => self.hub.typing_from_elsewhere(room, body, super::now_ms()),
            _ => tracing::debug!(room, "an unknown notice on a room's channel"),
        }
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
    /// manager reconnects on that error, and every script is safe to run twice (a publish
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
    pub(crate) async fn publish(&self, publish: &Publish<'_>) -> Result<u64, Problem> {
        let cut = MessageAroundOffset::new(
            publish.room,
            publish.id,
            publish.user,
            publish.from,
            publish.text,
        );
        let answer: Result<(u8, u64), RedisError> = self
            .invoke(|| {
                let mut invocation = self.publish.prepare_invoke();
                invocation
                    .key(keys::meta(publish.room))
                    .key(keys::log(publish.room))
                    .key(keys::dedup(publish.room, publish.dedup_user, publish.id))
                    .arg(epoch_suffix())
                    .arg(self.settings.history_messages)
                    .arg(self.settings.history_ttl_ms.max(1))
                    .arg(self.meta_ttl_ms())
                    .arg(self.settings.dedup_window_ms.max(1))
                    .arg(&cut.head)
                    .arg(&cut.middle)
                    .arg(keys::channel(publish.room))
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

    /// Reads the room's epoch, last offset and the entries after `since` (if it is of that
    /// epoch).
    pub(crate) async fn read(
        &self,
        room: &str,
        since: Option<&Position>,
        history: usize,
    ) -> Result<Snapshot, Problem> {
        let (epoch, after) = since.map_or(("", 0), |since| (&*since.epoch, since.offset));
        let answer: Result<Value, RedisError> = self
            .invoke(|| {
                let mut invocation = self.read.prepare_invoke();
                invocation
                    .key(keys::meta(room))
                    .key(keys::log(room))
                    .arg(epoch_suffix())
                    .arg(self.meta_ttl_ms())
                    .arg(epoch)
                    .arg(after)
                    // Past what a room keeps it means all of it; Redis's COUNT is signed.
                    .arg(history.min(self.settings.history_messages));
                invocation
            })
            .await;
        let value = answer.map_err(|error| self.failed("read", &error))?;
        script::snapshot(value).ok_or_else(|| {
            self.metrics.redis_error();
            tracing::warn!(
                room,
                "redis answered a read with something else than a snapshot"
            );
            unavailable()
        })
    }

    /// Subscribes this instance to the room's channel on the current pub/sub connection:
    /// confirmed before the join reads, so whatever is published after the read arrives live.
    /// A room subscribed on the current connection already answers at once; the others are
    /// sent with whatever else was asked meanwhile, in one command.
    pub(crate) async fn subscribe(&self, room: &str) -> Result<(), Problem> {
        let current = self.generation.load(Ordering::Acquire);
        if current != 0 && self.subscribed.of(room).get(room) == Some(&current) {
            return Ok(());
        }
        let (done, answer) = tokio::sync::oneshot::channel();
        lock(&self.changes)
            .subscribe
            .entry(room.to_owned())
            .or_default()
            .push(done);
        self.changed.notify_one();
        match tokio::time::timeout(2 * COMMAND_TIMEOUT, answer).await {
            Ok(Ok(answer)) => answer,
            // Not sent in time, or the link went away with it.
            Ok(Err(_)) | Err(_) => {
                self.metrics.redis_error();
                Err(unavailable())
            }
        }
    }

    /// Nobody here is in the room any more: it is unsubscribed with the next batch (unless
    /// someone joined it again meanwhile), then Redis forgets a room nobody published in.
    pub(crate) fn unsubscribe(&self, room: &str) {
        lock(&self.changes).unsubscribe.insert(room.to_owned());
        self.changed.notify_one();
    }

    /// Lets Redis forget a room this instance left, if nobody published in it and nobody
    /// else subscribes to it.
    async fn forget_room(&self, room: &str) {
        let forgotten: Result<i64, RedisError> = self
            .invoke(|| {
                let mut invocation = self.forget.prepare_invoke();
                invocation.key(keys::meta(room)).arg(keys::channel(room));
                invocation
            })
            .await;
        if let Err(error) = forgotten {
            // Its meta expires on its own.
            self.failed("forget", &error);
        }
    }
}

/// A broker whose client connects only when used, for unit tests of what it does before.
#[cfg(test)]
pub(super) fn lazy_for_tests(hub: Arc<Hub>) -> Arc<Redis> {
    let settings = RoomSettings {
        history_messages: 100,
        history_bytes: 1 << 20,
        history_ttl_ms: 300_000,
        max_rooms: 10,
        dedup_window_ms: 300_000,
        dedup_max_ids: 1_000,
        presence_max_members: 1000,
        presence_ttl_ms: 15_000,
    };
    // Nothing listens on port 1: nothing connects until used.
    Redis::new("redis://127.0.0.1:1", hub, settings, RoomMetrics::default()).expect("a lazy client")
}
