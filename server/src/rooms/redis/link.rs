//! The pub/sub link: one connection of this instance's own, subscribed to the rooms its
//! members are in. [`Redis::maintain`] keeps it up until shutdown: connects (with backoff
//! while Redis cannot be reached), subscribes every room held here, has each read from its
//! last delivered offset, then hands what arrives to the feed, pinging to notice a Redis that
//! stopped answering.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use redis::{RedisError, Value};
use room_protocol::Problem;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{COMMAND_TIMEOUT, FIRST_RETRY, Redis, keys, millis};
use crate::rooms::shards::lock;

/// A pub/sub link that stayed up this long is reconnected at once when it drops; one that
/// drops sooner is retried with backoff.
const STABLE_LINK: Duration = Duration::from_secs(5);
/// Pub/sub link checks: a ping this often, which must be answered within the command timeout.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Every room held here is compared with Redis's last offset this often, so a message that
/// pub/sub lost without the link dropping reaches a quiet room anyway (Centrifugo's position
/// check).
const POSITION_CHECK: Duration = Duration::from_secs(3);
/// Rooms asked about in one pipelined round trip.
const POSITION_CHECK_BATCH: usize = 500;
const LAST_RETRY: Duration = Duration::from_secs(5);

/// A room's epoch and last offset as Redis has them (`None` for a room without meta).
type RoomTop = (Option<String>, Option<u64>);

/// Channel changes asked for and not yet sent.
#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Rooms to subscribe, with the joins waiting for it.
    pub(super) subscribe: HashMap<String, Vec<oneshot::Sender<Result<(), Problem>>>>,
    /// Rooms nobody here is in any more.
    pub(super) unsubscribe: HashSet<String>,
}

/// The pub/sub connection's sending half, and which connection it is.
#[derive(Debug, Default)]
pub(super) struct Link {
    pub(super) sink: Option<PubSubSink>,
    pub(super) generation: u64,
}

impl Redis {
    /// Sends the channel changes asked for, all that gathered at once as one `UNSUBSCRIBE`
    /// and one `SUBSCRIBE`, until shutdown; then lets Redis forget the rooms left.
    pub(super) async fn subscriber(self: Arc<Redis>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.changed.notified() => {}
            }
            let changes = std::mem::take(&mut *lock(&self.changes));
            let mut link = self.link.lock().await;
            let generation = link.generation;
            // A room left and joined again since is still wanted. Its subscription is taken
            // off the books *before* asking whether anyone here holds it, so a join that
            // enters after the question waits for a subscription of its own.
            let mut leaving = Vec::new();
            for room in changes.unsubscribe {
                if changes.subscribe.contains_key(&room) {
                    continue;
                }
                let was = self.subscribed.of(&room).remove(&room);
                if self.hub.is_held(&room) {
                    if let Some(generation) = was {
                        self.subscribed.of(&room).insert(room, generation);
                    }
                } else {
                    leaving.push(room);
                }
            }
            let joining: Vec<String> = changes
                .subscribe
                .keys()
                .filter(|room| self.subscribed.of(room).get(*room) != Some(&generation))
                .cloned()
                .collect();
            let Some(sink) = link.sink.as_mut() else {
                drop(link);
                for (_, waiting) in changes.subscribe {
                    for done in waiting {
                        let _ = done.send(Err(super::unavailable()));
                    }
                }
                continue;
            };
            let mut left = true;
            if !leaving.is_empty() {
                let channels: Vec<String> =
                    leaving.iter().map(|room| keys::channel(room)).collect();
                let sent = tokio::time::timeout(COMMAND_TIMEOUT, sink.unsubscribe(&channels)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    // Still subscribed: their messages find no local room and are dropped.
                    self.metrics.redis_error();
                    left = false;
                }
            }
            let mut answer = Ok(());
            if !joining.is_empty() {
                let channels: Vec<String> =
                    joining.iter().map(|room| keys::channel(room)).collect();
                answer =
                    match tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(&channels)).await {
                        Ok(Ok(())) => {
                            for room in &joining {
                                self.subscribed.of(room).insert(room.clone(), generation);
                            }
                            Ok(())
                        }
                        Ok(Err(error)) => Err(self.failed("subscribe", &error)),
                        Err(_) => {
                            self.metrics.redis_error();
                            Err(super::unavailable())
                        }
                    };
            }
            drop(link);
            for (_, waiting) in changes.subscribe {
                for done in waiting {
                    let _ = done.send(answer.clone());
                }
            }
            if left && !leaving.is_empty() {
                // On a task of its own: joins do not wait for rooms being forgotten.
                let this = Arc::clone(&self);
                self.spawn(async move {
                    for room in leaving {
                        this.forget_room(&room).await;
                    }
                });
            }
        }
    }

    /// See the module documentation.
    pub(super) async fn maintain(self: Arc<Redis>, shutdown: CancellationToken) {
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
                    self.set_reachable(false);
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

    /// Opens a pub/sub connection, subscribes every room held here on it (one command), makes
    /// it the link, and has each room read what it missed while the link was down and hear
    /// the other instances' presence again.
    async fn connect(&self) -> Result<redis::aio::PubSubStream, RedisError> {
        let timed_out = || RedisError::from((redis::ErrorKind::Io, "no answer in time"));
        let (mut sink, stream) =
            tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_pubsub())
                .await
                .map_err(|_| timed_out())??
                .split();
        let mut link = self.link.lock().await;
        let rooms = self.hub.rooms();
        if !rooms.is_empty() {
            let channels: Vec<String> = rooms.iter().map(|room| keys::channel(room)).collect();
            tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(&channels))
                .await
                .map_err(|_| timed_out())??;
        }
        link.generation += 1;
        let generation = link.generation;
        for room in &rooms {
            self.subscribed.of(room).insert(room.clone(), generation);
        }
        self.generation.store(generation, Ordering::Release);
        link.sink = Some(sink);
        drop(link);
        for room in rooms {
            // What the others said while the link was down never came, and their users may
            // have expired here: ask them (they answer with their next flush), and say this
            // instance's users again with its own (they may have expired ours too).
            self.ask_presence(&room);
            self.hub.presence_asked(&room);
            self.fill_soon(room);
        }
        Ok(stream)
    }

    /// Hands what the link brings to the feed until it ends (the reason) or shutdown (`None`).
    async fn listen(
        &self,
        mut stream: redis::aio::PubSubStream,
        shutdown: &CancellationToken,
    ) -> Option<String> {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut check = tokio::time::interval(POSITION_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.reset();
        let Some(mut pinger) = self.link.lock().await.sink.clone() else {
            return Some("the link was gone before it was used".to_owned());
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return None,
                message = stream.next() => match message {
                    Some(message) => self.dispatch(message),
                    None => return Some("the pub/sub connection closed".to_owned()),
                },
                _ = ping.tick() => {
                    // Messages keep arriving into the stream's buffer meanwhile.
                    let answered =
                        tokio::time::timeout(COMMAND_TIMEOUT, pinger.ping::<Value>()).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        return Some("a ping went unanswered".to_owned());
                    }
                    for room in self.hub.pending_fills() {
                        self.fill_soon(room);
                    }
                }
                _ = check.tick() => {
                    if let Some(this) = self.this.upgrade() {
                        self.spawn(async move { this.check_positions().await });
                    }
                }
            }
        }
    }

    /// Asks Redis for the last offset of every room held here, a batch per round trip, and
    /// has each room that is behind read from the stream.
    async fn check_positions(&self) {
        let rooms = self.hub.rooms();
        for batch in rooms.chunks(POSITION_CHECK_BATCH) {
            let mut pipe = redis::pipe();
            for room in batch {
                pipe.cmd("HMGET")
                    .arg(keys::meta(room))
                    .arg("epoch")
                    .arg("top");
            }
            let mut commands = self.commands.clone();
            let answer: Result<Vec<RoomTop>, RedisError> =
                tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async(&mut commands))
                    .await
                    .unwrap_or_else(|_| Err(RedisError::from((redis::ErrorKind::Io, "timed out"))));
            let Ok(tops) = answer else {
                self.metrics.redis_error();
                return;
            };
            for (room, (epoch, top)) in batch.iter().zip(tops) {
                let (Some(epoch), Some(top)) = (epoch, top) else {
                    continue;
                };
                if self
                    .hub
                    .position(room)
                    .is_some_and(|(known, last)| known == epoch && last < top)
                {
                    self.fill_soon(room.clone());
                }
            }
        }
    }

    fn set_reachable(&self, up: bool) {
        self.reachable.store(up, Ordering::Relaxed);
        self.metrics.redis_up(up);
    }

    fn came_up(&self) {
        self.set_reachable(true);
        let after_outage = self.warned.swap(false, Ordering::Relaxed);
        if after_outage || !self.linked_once.swap(true, Ordering::Relaxed) {
            tracing::info!("redis reachable: rooms are shared through it");
        }
    }

    fn went_down(&self, reason: &str) {
        self.set_reachable(false);
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

#[cfg(test)]
mod tests {
    use super::*;

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
