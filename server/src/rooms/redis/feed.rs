//! The feed: what the pub/sub link brings goes to the hub, which delivers it if it is the
//! room's next message. The link hands each message to one of [`WORKERS`] tasks, chosen by
//! its room, through a bounded channel: rooms fan out in parallel and in order, and an
//! instance that falls behind never buffers without bound: a message that finds its worker's
//! channel full is let go and its room read from the stream instead, as for any gap. A gap (pub/sub lost something, or the link was down) is read from the
//! room's stream by a task of its own, at most one per room at a time (a gap found meanwhile
//! reads again when it ends), so the link goes on feeding every other room; a read that fails
//! is tried again at the link's next ping.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use hyper_tungstenite::tungstenite::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Redis, keys, script};
use crate::outgoing::QueuedText;
use crate::rooms::hub::Offered;
use crate::rooms::shards::lock;

/// Tasks the pub/sub messages are spread over, by room.
pub(super) const WORKERS: usize = 4;
/// Messages waiting for one worker, at most.
const WORKER_BACKLOG: usize = 4_096;

/// Where the link hands messages: one channel per worker, and how rooms are spread.
#[derive(Debug)]
pub(super) struct Feeds {
    hasher: RandomState,
    workers: Vec<mpsc::Sender<redis::Msg>>,
}

impl Redis {
    /// Starts the workers, on `tracker` until `shutdown`.
    pub(super) fn start_feeds(
        self: &Arc<Redis>,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Feeds {
        let mut workers = Vec::with_capacity(WORKERS);
        for _ in 0..WORKERS {
            let (sender, mut receiver) = mpsc::channel::<redis::Msg>(WORKER_BACKLOG);
            workers.push(sender);
            let this = Arc::clone(self);
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        message = receiver.recv() => match message {
                            Some(message) => this.arrived(&message),
                            None => return,
                        },
                    }
                }
            });
        }
        Feeds {
            hasher: RandomState::new(),
            workers,
        }
    }

    /// Hands a pub/sub message to its room's worker; a full worker lets it go and has the
    /// room read from the stream.
    pub(super) fn dispatch(&self, message: redis::Msg) {
        let Some(feeds) = self.feeds.get() else {
            return self.arrived(&message);
        };
        let channel = message.get_channel_name();
        let worker = feeds.hasher.hash_one(channel) as usize % feeds.workers.len();
        match feeds.workers[worker].try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(message)) => {
                if let Some(room) = keys::room_of_channel(message.get_channel_name()) {
                    // Read at the next ping, or at the room's next message.
                    self.hub.fill_later(room);
                }
            }
            // Shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// One pub/sub message.
    pub(super) fn arrived(&self, message: &redis::Msg) {
        let Some(room) = keys::room_of_channel(message.get_channel_name()) else {
            return;
        };
        let payload = std::str::from_utf8(message.get_payload_bytes()).ok();
        if let Some(notice) = payload.and_then(|payload| payload.strip_prefix(keys::NOTICE)) {
            return self.noticed(room, notice);
        }
        let Some((epoch, offset, frame)) = payload.and_then(script::parse_published) else {
            self.metrics.redis_error();
            tracing::warn!(
                room,
                "a pub/sub message that is not a room message; dropped"
            );
            return;
        };
        let frame = || QueuedText::shared(Utf8Bytes::from(frame.to_owned()));
        match self.hub.offer(room, epoch, offset, frame) {
            Offered::Taken => {}
            // Pub/sub lost something: the stream has it, this message included.
            Offered::AfterGap => self.fill_soon(room.to_owned()),
            // Left, but its channel still subscribed (an unsubscribe that failed).
            Offered::NotHere => self.unsubscribe(room),
        }
    }

    /// Has the room read from its last delivered offset, on a task of its own.
    pub(super) fn fill_soon(&self, room: String) {
        {
            let mut filling = lock(&self.filling);
            if let Some(again) = filling.get_mut(&room) {
                *again = true;
                return;
            }
            filling.insert(room.clone(), false);
        }
        let Some(this) = self.this.upgrade() else {
            return;
        };
        self.spawn(async move { this.fill(room).await });
    }

    /// Reads what the room missed here and hands it to the hub, again while gaps were found
    /// meanwhile.
    async fn fill(self: Arc<Redis>, room: String) {
        loop {
            if let Some(from) = self.hub.position(&room) {
                let since = room_protocol::Position {
                    epoch: from.0.clone(),
                    offset: from.1,
                };
                match self.read(&room, Some(&since), 0).await {
                    Ok(read) => self.hub.fill(&room, &from, read),
                    Err(_) => self.hub.fill_later(&room),
                }
            }
            let mut filling = lock(&self.filling);
            if filling.get(&room) == Some(&true) {
                filling.insert(room.clone(), false);
                continue;
            }
            filling.remove(&room);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RoomMetrics;
    use crate::outgoing::Compression;
    use crate::rooms::hub::Hub;
    use crate::rooms::tests::anyone;
    use crate::rooms::{MemberQueue, Snapshot};
    use redis::Value;

    fn message(room: &str, offset: u64) -> redis::Msg {
        let bulk = |text: String| Value::BulkString(text.into_bytes());
        redis::Msg::from_owned_value(Value::Array(vec![
            bulk("message".to_owned()),
            bulk(keys::channel(room)),
            bulk(format!("e {offset} {{}}")),
        ]))
        .expect("a pub/sub message")
    }

    #[tokio::test]
    async fn past_a_workers_backlog_the_room_is_read_from_the_stream_instead() {
        let hub = Arc::new(Hub::new(10, u64::MAX, 1000, RoomMetrics::default()));
        let redis = super::super::lazy_for_tests(Arc::clone(&hub));
        // One worker that takes nothing: what the link hands it piles up to the bound.
        let (sender, _receiver) = mpsc::channel(WORKER_BACKLOG);
        redis
            .feeds
            .set(Feeds {
                hasher: RandomState::new(),
                workers: vec![sender],
            })
            .expect("set once");
        let queue = Arc::new(MemberQueue::new(1 << 20, 1 << 19, Compression::PLAIN));
        hub.enter("r", 1, &queue, anyone()).expect("enters");
        let snapshot = Snapshot {
            epoch: "e".to_owned(),
            top: 0,
            entries: Vec::new(),
            now_ms: 0,
        };
        hub.complete("r", 1, None, 0, snapshot).expect("joins");
        for offset in 1..=WORKER_BACKLOG as u64 {
            redis.dispatch(message("r", offset));
        }
        assert!(
            hub.pending_fills().is_empty(),
            "up to the bound, all queued"
        );
        for offset in WORKER_BACKLOG as u64 + 1..=5_000 {
            redis.dispatch(message("r", offset));
        }
        assert_eq!(hub.pending_fills(), ["r"], "past it, read from the stream");
    }
}
