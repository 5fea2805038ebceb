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
