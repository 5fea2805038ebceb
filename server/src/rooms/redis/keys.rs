//! The names of a room's keys and channel in Redis. Each holds the room's name in a hash tag
//! (`{NAME}`), so a room's keys share a cluster slot and its scripts stay single-slot.
//!
//! | key | type | what | expires |
//! |---|---|---|---|
//! | `rooms:{R}:meta` | hash | `epoch`, `top` (last offset), `bytes` (history size) | 24 h after the last publish or join; deleted when the last member anywhere leaves a room nobody published in |
//! | `rooms:{R}:log` | stream | entry `<offset>-0`: `t` (time, ms), `f` (the frame) | `--room-history-ttl` after the last publish |
//! | `rooms:{R}:id:<ID>` | string | the offset that id got (open rooms) | `--dedup-window` |
//! | `rooms:{R}:uid:<N>:<USER>:<ID>` | string | the offset that user's id got (with `--auth-key`; `N`: the user id's length in bytes) | `--dedup-window` |
//! | channel `rooms:{R}` | pub/sub | `<epoch> <offset> <frame>`, and between instances: `~p <instance> <users JSON>` (its users in the room, on each change and every third of `--presence-ttl`), `~q <instance>` (new in the room: say yours), `~t <instance> <typing frame>` | |

/// A channel message that is no room message starts with this: an epoch never does.
pub(super) const NOTICE: char = '~';

pub(super) fn channel(room: &str) -> String {
    format!("rooms:{{{room}}}")
}

pub(super) fn meta(room: &str) -> String {
    format!("rooms:{{{room}}}:meta")
}

pub(super) fn log(room: &str) -> String {
    format!("rooms:{{{room}}}:log")
}

/// With a user (tokens), its length goes first, so no user and id pair reads as another.
pub(super) fn dedup(room: &str, user: Option<&str>, id: &str) -> String {
    match user {
        None => format!("rooms:{{{room}}}:id:{id}"),
        Some(user) => format!("rooms:{{{room}}}:uid:{}:{user}:{id}", user.len()),
    }
}

/// The room a channel is for.
pub(super) fn room_of_channel(channel: &str) -> Option<&str> {
    channel.strip_prefix("rooms:{")?.strip_suffix('}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_channels_name_the_room_in_a_hash_tag_and_back() {
        assert_eq!(meta("lobby"), "rooms:{lobby}:meta");
        assert_eq!(log("a:b"), "rooms:{a:b}:log");
        assert_eq!(dedup("lobby", None, "x y"), "rooms:{lobby}:id:x y");
        assert_eq!(
            dedup("lobby", Some("a:b"), "c"),
            "rooms:{lobby}:uid:3:a:b:c"
        );
        assert_ne!(dedup("r", Some("a:b"), "c"), dedup("r", Some("a"), "b:c"));
        assert_eq!(room_of_channel(&channel("a.b-c_d:e")), Some("a.b-c_d:e"));
        assert_eq!(room_of_channel("other"), None);
        assert_eq!(room_of_channel("rooms:{lobby"), None);
    }
}
