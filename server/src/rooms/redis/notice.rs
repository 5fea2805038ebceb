//! Presence and typing notices between instances, on the rooms' channels (`~p`, `~q`, `~t`).
//!
//! One task sends them, in the order they were asked for: a room's users said after its `[]`
//! would otherwise stand for the whole TTL. That task is also the one place that knows what
//! the other instances were last told, so at shutdown it says `[]` in every room where this
//! instance's last word was a non-empty list, whatever the sessions and the presence ticker
//! were doing when the shutdown came (a member's leave queued behind the shutdown, or a room
//! already gone from the hub, would otherwise leave its users standing for the TTL).

use std::collections::HashSet;

use redis::RedisError;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use super::{COMMAND_TIMEOUT, keys};

/// One notice for a room's channel.
#[derive(Debug)]
pub(super) struct Notice {
    pub(super) channel: String,
    pub(super) payload: String,
    /// For a presence list: whether it names anyone.
    pub(super) lists: Option<bool>,
}

/// Sends the queued notices one after another until `shutdown`, then says `[]` as
/// `instance` wherever its last list named someone. The last word is bounded by the command
/// timeout.
pub(super) async fn send(
    mut commands: ConnectionManager,
    mut queued: Receiver<Notice>,
    instance: String,
    shutdown: CancellationToken,
) {
    // Channels whose last list sent (or tried) named someone.
    let mut standing: HashSet<String> = HashSet::new();
    loop {
        let notice = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            next = queued.recv() => match next {
                Some(next) => next,
                None => break,
            },
        };
        match notice.lists {
            Some(true) => {
                standing.insert(notice.channel.clone());
            }
            Some(false) => {
                standing.remove(&notice.channel);
            }
            None => {}
        }
        let sent: Result<(), RedisError> = redis::cmd("PUBLISH")
            .arg(notice.channel)
            .arg(notice.payload)
            .query_async(&mut commands)
            .await;
        if let Err(error) = sent {
            tracing::debug!(%error, "a presence or typing notice was not sent");
        }
    }
    // Whatever is still queued is let go: every list in it is superseded by the `[]` below,
    // and typing or a question means nothing from an instance that is leaving.
    if standing.is_empty() {
        return;
    }
    let mut pipe = redis::pipe();
    for channel in standing {
        pipe.cmd("PUBLISH")
            .arg(channel)
            .arg(format!("{}p {instance} []", keys::NOTICE))
            .ignore();
    }
    let sent = tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async::<()>(&mut commands)).await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!("the last presence notices were not sent");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::NOTICE_BACKLOG;
    use crate::metrics::RoomMetrics;
    use crate::rooms::hub::Hub;

    #[tokio::test]
    async fn past_the_backlog_the_newest_notices_are_let_go_and_nothing_waits() {
        let hub = Arc::new(Hub::new(10, u64::MAX, 1000, RoomMetrics::default()));
        let redis = super::super::lazy_for_tests(hub);
        // A sender that takes nothing (Redis frozen): the notices pile up to the bound.
        let (notices, mut queued) = tokio::sync::mpsc::channel(NOTICE_BACKLOG);
        redis.notices.set(notices).expect("set once");
        // 5,000 typing notices, as fast as sessions could ask: none of them waits.
        for n in 0..5_000 {
            redis.publish_typing("r", &format!("{{\"n\":{n}}}"));
        }
        let mut kept = Vec::new();
        while let Ok(notice) = queued.try_recv() {
            kept.push(notice.payload);
        }
        assert_eq!(kept.len(), NOTICE_BACKLOG, "up to the bound");
        assert_eq!(
            redis.metrics.notices_dropped_count(),
            (5_000 - NOTICE_BACKLOG) as u64,
            "each one let go is counted"
        );
        assert!(kept[0].ends_with("{\"n\":0}"), "{}", kept[0]);
        assert!(
            kept[NOTICE_BACKLOG - 1].ends_with(&format!("{{\"n\":{}}}", NOTICE_BACKLOG - 1)),
            "in order, the oldest kept: {}",
            kept[NOTICE_BACKLOG - 1]
        );
        // Room again: the next notice is queued.
        redis.publish_typing("r", "{\"n\":\"later\"}");
        assert!(
            queued
                .try_recv()
                .is_ok_and(|notice| notice.payload.ends_with("{\"n\":\"later\"}"))
        );
    }
}
