//! The feed: what the pub/sub link brings goes to the hub, which delivers it if it is the
//! room's next message. A gap (pub/sub lost something, or the link was down) is read from the
//! room's stream by a task of its own, at most one per room at a time (a gap found meanwhile
//! reads again when it ends), so the link goes on feeding every other room; a read that fails
//! is tried again at the link's next ping.

use std::sync::Arc;

use hyper_tungstenite::tungstenite::Utf8Bytes;

use super::{Redis, keys, script};
use crate::outgoing::QueuedText;
use crate::rooms::hub::Offered;
use crate::rooms::shards::lock;

impl Redis {
    /// One pub/sub message.
    pub(super) fn arrived(&self, message: &redis::Msg) {
        let Some(room) = keys::room_of_channel(message.get_channel_name()) else {
            return;
        };
        let Some((epoch, offset, frame)) = std::str::from_utf8(message.get_payload_bytes())
            .ok()
            .and_then(script::parse_published)
        else {
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
                match self.read(&room, Some(&since)).await {
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
