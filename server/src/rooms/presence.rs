//! Who is in a room, as one instance sees it: per user (a second connection of a user changes
//! nothing; a user leaves with its last connection), with the changes since the last presence
//! frame kept as a set of users, so a frame says the net change (a leave and a rejoin within
//! one interval is no change) and costs what changed, not the room's size. The hub keeps one
//! per room beside its members and sends what [`Presence::flush`] gives every
//! [`PRESENCE_INTERVAL_MS`](room_protocol::bounds::PRESENCE_INTERVAL_MS) at most.
//!
//! Memory is bounded by the room's members: one entry per member, per user here, per user
//! announced (the users here at the last frame), per user changed since, and per user who
//! typed (dropped with the user).

use std::collections::{HashMap, HashSet};

use room_protocol::bounds::TYPING_INTERVAL_MS;
use room_protocol::{PresentUser, ServerFrame};

use super::MemberId;

/// Who a member is in a room's presence, and whether it asked for presence frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Visitor {
    pub user: String,
    pub name: String,
    pub watch: bool,
}

/// One room's presence: its users on this instance, and, with Redis, on the others.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    /// Each member here: who it is.
    members: HashMap<MemberId, Visitor>,
    /// Each user with a connection here: the name shown (its first connection's) and its
    /// connections here.
    local: HashMap<String, (String, u32)>,
    /// Other instances' users (with Redis), by instance: what each last said, until it
    /// expires unheard.
    remote: HashMap<String, Remote>,
    /// The users the last frame left the watchers with, and their names.
    announced: HashMap<String, String>,
    /// Users whose presence changed since the last frame.
    changed: HashSet<String>,
    /// This instance's users changed since the other instances were last told.
    local_changed: bool,
    /// The last frame said `capped`.
    capped: bool,
    /// When (ms) each user's last `typing` went out.
    typing: HashMap<String, u64>,
}

/// Another instance's users in a room, as it last said, and until when that holds.
#[derive(Debug)]
struct Remote {
    users: HashMap<String, String>,
    expires_ms: u64,
}

impl Presence {
    /// `member` is in the room as `visitor`; `true` when this makes the room's presence
    /// change where it had not since the last frame (the room needs a flush).
    pub(crate) fn enter(&mut self, member: MemberId, visitor: Visitor) -> bool {
        let was_clean = self.changed.is_empty();
        let user = visitor.user.clone();
        let name = visitor.name.clone();
        if let Some(old) = self.members.insert(member, visitor) {
            // The same member again (a join after a join): as if it had left first.
            self.count_out(&old.user);
        }
        let entry = self.local.entry(user.clone()).or_insert((name, 0));
        entry.1 += 1;
        if entry.1 == 1 {
            self.changed.insert(user);
            self.local_changed = true;
        }
        was_clean && !self.changed.is_empty()
    }

    /// `member` left; `true` as for [`Presence::enter`].
    pub(crate) fn leave(&mut self, member: MemberId) -> bool {
        let was_clean = self.changed.is_empty();
        if let Some(visitor) = self.members.remove(&member) {
            self.count_out(&visitor.user);
        }
        was_clean && !self.changed.is_empty()
    }

    fn count_out(&mut self, user: &str) {
        let Some(entry) = self.local.get_mut(user) else {
            return;
        };
        entry.1 -= 1;
        if entry.1 == 0 {
            self.local.remove(user);
            self.typing.remove(user);
            self.changed.insert(user.to_owned());
            self.local_changed = true;
        }
    }

    /// What `instance` says its users in the room are now, heard at `now_ms`, good until
    /// `expires_ms` unless it says so again; `true` as for [`Presence::enter`].
    pub(crate) fn remote(
        &mut self,
        instance: &str,
        users: Vec<PresentUser>,
        expires_ms: u64,
    ) -> bool {
        let was_clean = self.changed.is_empty();
        let users: HashMap<String, String> = users
            .into_iter()
            .map(|present| (present.user, present.name))
            .collect();
        let old = self
            .remote
            .remove(instance)
            .map(|old| old.users)
            .unwrap_or_default();
        for user in old.keys().filter(|user| !users.contains_key(*user)) {
            self.changed.insert(user.clone());
        }
        for user in users.keys().filter(|user| !old.contains_key(*user)) {
            self.changed.insert(user.clone());
        }
        if !users.is_empty() {
            self.remote
                .insert(instance.to_owned(), Remote { users, expires_ms });
        }
        was_clean && !self.changed.is_empty()
    }

    /// Forgets what instances not heard from until `now_ms` said (an instance that died);
    /// `true` as for [`Presence::enter`].
    pub(crate) fn expire(&mut self, now_ms: u64) -> bool {
        // Typing older than the interval throttles nothing: forgotten, so users typing on
        // other instances are remembered only while it matters.
        self.typing
            .retain(|_, last| now_ms.saturating_sub(*last) < TYPING_INTERVAL_MS);
        let was_clean = self.changed.is_empty();
        let gone: Vec<String> = self
            .remote
            .iter()
            .filter(|(_, remote)| remote.expires_ms <= now_ms)
            .map(|(instance, _)| instance.clone())
            .collect();
        for instance in gone {
            if let Some(remote) = self.remote.remove(&instance) {
                self.changed.extend(remote.users.into_keys());
            }
        }
        was_clean && !self.changed.is_empty()
    }

    /// The users with a connection here, to tell the other instances.
    pub(crate) fn local_users(&self) -> Vec<PresentUser> {
        self.local
            .iter()
            .map(|(user, (name, _))| PresentUser {
                user: user.clone(),
                name: name.clone(),
            })
            .collect()
    }

    /// Another instance asked for this one's users: they go out with the next flush. `true`
    /// when the room needs one (it was not due already).
    pub(crate) fn ask(&mut self) -> bool {
        let due = self.local_changed || !self.changed.is_empty();
        self.local_changed = true;
        !due
    }

    /// Whether this instance's users changed since the last call.
    pub(crate) fn take_local_changed(&mut self) -> bool {
        std::mem::take(&mut self.local_changed)
    }

    /// Whether `member` asked for presence frames.
    pub(crate) fn watches(&self, member: MemberId) -> bool {
        self.members
            .get(&member)
            .is_some_and(|visitor| visitor.watch)
    }

    /// The name `user` shows, if it is in the room on any instance.
    fn name_of(&self, user: &str) -> Option<&String> {
        self.local.get(user).map(|(name, _)| name).or_else(|| {
            self.remote
                .values()
                .find_map(|remote| remote.users.get(user))
        })
    }

    /// The frame a member that joined with `presence` gets first: the room as the last
    /// change frame left every watcher (so the changes that follow it, which start from there,
    /// add up to what they say for it too), with `member`'s own user in it; sorted by name then
    /// id; past `cap` users, the count alone. A user who came or went within the current
    /// interval is in the next change frame, at most an interval later.
    pub(crate) fn snapshot(&self, room: &str, cap: usize, member: Option<MemberId>) -> ServerFrame {
        let mut members: Vec<PresentUser> = self
            .announced
            .iter()
            .map(|(user, name)| PresentUser {
                user: user.clone(),
                name: name.clone(),
            })
            .collect();
        if let Some(visitor) = member.and_then(|member| self.members.get(&member))
            && !self.announced.contains_key(&visitor.user)
        {
            let name = self
                .local
                .get(&visitor.user)
                .map_or_else(|| visitor.name.clone(), |(name, _)| name.clone());
            members.push(PresentUser {
                user: visitor.user.clone(),
                name,
            });
        }
        // Capped exactly when the change frames say so: a member joining at the cap gets the
        // list (one past it), and the next change frame says `capped` to everyone alike.
        if self.capped || (member.is_none() && members.len() > cap) {
            return capped(room, members.len());
        }
        sort(&mut members);
        ServerFrame::Presence {
            room: room.to_owned(),
            count: members.len() as u64,
            members: Some(members),
            joined: None,
            left: None,
            capped: false,
        }
    }

    /// The frame for the changes since the last one, if they come to any: the net `joined`
    /// and `left`; past `cap` users the count with `capped`; back under it, everyone again.
    pub(crate) fn flush(&mut self, room: &str, cap: usize) -> Option<ServerFrame> {
        let mut joined = Vec::new();
        let mut left = Vec::new();
        let changed = std::mem::take(&mut self.changed);
        for user in changed {
            let now = self.name_of(&user).cloned();
            match (now, self.announced.contains_key(&user)) {
                (Some(name), false) => {
                    self.announced.insert(user.clone(), name.clone());
                    joined.push(PresentUser { user, name });
                }
                (None, true) => {
                    let name = self.announced.remove(&user).unwrap_or_default();
                    left.push(PresentUser { user, name });
                }
                // Left and came back, or came and left, within the interval: no change.
                _ => {}
            }
        }
        let count = self.announced.len();
        if count > cap {
            let news = !self.capped || !joined.is_empty() || !left.is_empty();
            self.capped = true;
            return news.then(|| capped(room, count));
        }
        if self.capped {
            self.capped = false;
            return Some(self.snapshot(room, cap, None));
        }
        if joined.is_empty() && left.is_empty() {
            return None;
        }
        sort(&mut joined);
        sort(&mut left);
        Some(ServerFrame::Presence {
            room: room.to_owned(),
            count: count as u64,
            members: None,
            joined: Some(joined),
            left: Some(left),
            capped: false,
        })
    }

    /// A `typing` of `user` heard at `now_ms`, typed here ([`Presence::typing`]) or passed on
    /// by another instance: `true` to pass it to the members here, unless that user's last
    /// one (from anywhere) went out less than [`TYPING_INTERVAL_MS`] ago, so a user typing in
    /// tabs on two instances is still said once per interval.
    pub(crate) fn typed(&mut self, user: &str, now_ms: u64) -> bool {
        let last = self.typing.get(user);
        if last.is_some_and(|last| now_ms.saturating_sub(*last) < TYPING_INTERVAL_MS) {
            return false;
        }
        self.typing.insert(user.to_owned(), now_ms);
        true
    }

    /// A `typing` from `member` at `now_ms`: the frame for the room's other members, unless
    /// its user's last one went out less than [`TYPING_INTERVAL_MS`] ago (dropped).
    pub(crate) fn typing(
        &mut self,
        room: &str,
        member: MemberId,
        now_ms: u64,
    ) -> Option<ServerFrame> {
        let visitor = self.members.get(&member)?;
        let (user, name) = (visitor.user.clone(), visitor.name.clone());
        if !self.typed(&user, now_ms) {
            return None;
        }
        let name = self.local.get(&user).map_or(name, |(name, _)| name.clone());
        Some(ServerFrame::Typing {
            room: room.to_owned(),
            user,
            name,
        })
    }
}

/// By name, then id: the order people read a list in, the same on every instance.
fn sort(users: &mut [PresentUser]) {
    users.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.user.cmp(&b.user)));
}

fn capped(room: &str, count: usize) -> ServerFrame {
    ServerFrame::Presence {
        room: room.to_owned(),
        count: count as u64,
        members: None,
        joined: None,
        left: None,
        capped: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor(user: &str, watch: bool) -> Visitor {
        Visitor {
            user: user.to_owned(),
            name: user.to_uppercase(),
            watch,
        }
    }

    fn users(list: &Option<Vec<PresentUser>>) -> Vec<&str> {
        list.iter()
            .flatten()
            .map(|present| present.user.as_str())
            .collect()
    }

    /// `(count, joined, left)` of a change frame.
    fn change(frame: Option<ServerFrame>) -> (u64, Vec<String>, Vec<String>) {
        match frame {
            Some(ServerFrame::Presence {
                count,
                joined,
                left,
                members: None,
                capped: false,
                ..
            }) => (
                count,
                users(&joined).into_iter().map(str::to_owned).collect(),
                users(&left).into_iter().map(str::to_owned).collect(),
            ),
            other => panic!("a change frame, not {other:?}"),
        }
    }

    #[test]
    fn a_user_counts_once_and_leaves_with_its_last_connection() {
        let mut room = Presence::default();
        assert!(room.enter(1, visitor("ana", true)), "the first change");
        assert!(
            !room.enter(2, visitor("ana", false)),
            "a second tab: no change"
        );
        assert!(!room.enter(3, visitor("bo", true)), "dirty already");
        assert_eq!(
            change(room.flush("r", 10)),
            (2, vec!["ana".into(), "bo".into()], vec![])
        );
        assert!(!room.leave(1), "ana's other tab is still here");
        assert_eq!(room.flush("r", 10), None);
        assert!(room.leave(2), "ana's last tab");
        assert_eq!(change(room.flush("r", 10)), (1, vec![], vec!["ana".into()]));
        assert!(room.watches(3) && !room.watches(2));
    }

    #[test]
    fn changes_are_net_within_an_interval() {
        let mut room = Presence::default();
        room.enter(1, visitor("ana", true));
        room.flush("r", 10);
        // Bo comes and goes, Ana goes and comes back: nothing to say.
        room.enter(2, visitor("bo", true));
        room.leave(2);
        room.leave(1);
        room.enter(3, visitor("ana", true));
        assert_eq!(room.flush("r", 10), None);
        // A hundred join within one interval: one frame, each once.
        for member in 10..110 {
            room.enter(member, visitor(&format!("u{member}"), false));
        }
        let (count, joined, left) = change(room.flush("r", 1000));
        assert_eq!((count, joined.len(), left.len()), (101, 100, 0));
        assert_eq!(room.flush("r", 1000), None);
    }

    #[test]
    fn the_snapshot_holds_everyone_and_the_cap_holds_only_the_count() {
        let mut room = Presence::default();
        for (member, user) in [(1, "cy"), (2, "ana"), (3, "bo")] {
            room.enter(member, visitor(user, true));
        }
        room.flush("r", 3);
        let ServerFrame::Presence { count, members, .. } = room.snapshot("r", 3, None) else {
            panic!("a presence frame");
        };
        assert_eq!((count, users(&members)), (3, vec!["ana", "bo", "cy"]));
        // Past the cap: the count and `capped`, once per change.
        room.enter(4, visitor("dan", true));
        assert_eq!(room.flush("r", 3), Some(capped("r", 4)));
        assert_eq!(room.snapshot("r", 3, None), capped("r", 4));
        room.enter(5, visitor("eve", true));
        assert_eq!(room.flush("r", 3), Some(capped("r", 5)));
        assert_eq!(room.flush("r", 3), None);
        // Back under it: everyone again.
        room.leave(4);
        room.leave(5);
        let Some(ServerFrame::Presence { members, .. }) = room.flush("r", 3) else {
            panic!("a snapshot");
        };
        assert_eq!(users(&members), vec!["ana", "bo", "cy"]);
    }

    #[test]
    fn typing_goes_out_once_per_interval_per_user() {
        let mut room = Presence::default();
        room.enter(1, visitor("ana", true));
        room.enter(2, visitor("ana", true));
        assert!(room.typing("r", 1, 10_000).is_some());
        assert!(room.typing("r", 2, 10_500).is_none(), "the same user");
        assert!(room.typing("r", 1, 11_999).is_none());
        assert!(room.typing("r", 1, 12_000).is_some());
        assert!(room.typing("r", 9, 20_000).is_none(), "not a member");
        // Leaving forgets the user's typing: memory stays bounded by the members.
        room.leave(1);
        room.leave(2);
        assert!(room.typing.is_empty());
    }

    #[test]
    fn typing_from_elsewhere_counts_with_typing_here_and_is_forgotten_after_the_interval() {
        let mut room = Presence::default();
        room.enter(1, visitor("ana", true));
        assert!(room.typed("ana", 10_000), "said on another instance");
        assert!(room.typing("r", 1, 10_500).is_none(), "the same user here");
        assert!(!room.typed("ana", 11_000));
        assert!(room.typing("r", 1, 12_000).is_some());
        assert!(!room.typed("ana", 13_000), "said here just now");
        // Users of other instances are remembered only while it matters.
        for n in 0..1_000 {
            assert!(room.typed(&format!("far-{n}"), 20_000));
        }
        room.expire(21_999);
        assert_eq!(room.typing.len(), 1_000);
        room.expire(22_000);
        assert!(room.typing.is_empty(), "{:?}", room.typing.len());
    }

    #[test]
    fn other_instances_users_count_once_and_go_when_their_instance_goes_quiet() {
        let mut room = Presence::default();
        room.enter(1, visitor("ana", true));
        room.flush("r", 10);
        let said = |users: &[&str]| {
            users
                .iter()
                .map(|user| PresentUser {
                    user: (*user).to_owned(),
                    name: user.to_uppercase(),
                })
                .collect::<Vec<_>>()
        };
        // Another instance has Ana (a second tab there) and Bo: only Bo is news.
        assert!(room.remote("i2", said(&["ana", "bo"]), 15_000));
        assert_eq!(change(room.flush("r", 10)), (2, vec!["bo".into()], vec![]));
        let ServerFrame::Presence { members, .. } = room.snapshot("r", 10, None) else {
            panic!("a snapshot");
        };
        assert_eq!(users(&members), vec!["ana", "bo"]);
        // Ana's tab here goes: she is still on the other instance.
        room.leave(1);
        assert_eq!(room.flush("r", 10), None);
        assert!(room.take_local_changed(), "the others must be told");
        assert!(room.local_users().is_empty());
        // The other instance dies: unheard until its expiry, its users go.
        assert!(!room.expire(14_999));
        assert!(room.expire(15_000));
        assert_eq!(
            change(room.flush("r", 10)),
            (0, vec![], vec!["ana".into(), "bo".into()])
        );
    }

    #[test]
    fn a_snapshot_and_the_changes_after_it_add_up_even_within_one_interval() {
        let mut room = Presence::default();
        // Bo comes; before the next frame Ana joins, gets her snapshot, and Bo goes again.
        room.enter(1, visitor("bo", false));
        room.enter(2, visitor("ana", true));
        let ServerFrame::Presence { members, .. } = room.snapshot("r", 10, Some(2)) else {
            panic!("a snapshot");
        };
        assert_eq!(
            users(&members),
            vec!["ana"],
            "herself, and what was announced"
        );
        room.leave(1);
        // The next frame names Ana (again: set semantics) and never Bo, whom she never saw.
        assert_eq!(change(room.flush("r", 10)), (1, vec!["ana".into()], vec![]));
        // Once announced, a snapshot holds everyone announced.
        room.enter(3, visitor("cy", true));
        room.flush("r", 10);
        let ServerFrame::Presence { members, .. } = room.snapshot("r", 10, Some(3)) else {
            panic!("a snapshot");
        };
        assert_eq!(users(&members), vec!["ana", "cy"]);
    }

    #[test]
    fn questions_from_other_instances_are_answered_once_per_flush() {
        let mut room = Presence::default();
        room.enter(1, visitor("ana", false));
        room.flush("r", 10);
        assert!(room.take_local_changed(), "the join is told");
        // Three instances ask within one interval: one flush, one answer.
        assert!(room.ask(), "the room needs a flush");
        assert!(!room.ask() && !room.ask(), "due already");
        assert!(room.take_local_changed());
        assert!(!room.take_local_changed());
    }
}
