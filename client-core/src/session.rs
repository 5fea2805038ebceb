//! One conversation over a WebSocket that comes and goes, as both clients hold it: sans-IO,
//! the shape of quinn-proto's `Connection`. A [`Session`] takes what happened (the socket
//! opened, a text frame, a close, a line typed, a timer fired, a token fetched) with the time
//! as an argument, and queues what to do about it ([`Effect`]: open a socket, send this frame,
//! close with this code, show this, fetch a token) for the shell to carry out. It has no
//! socket, no clock and no random source of its own: the time comes with every call, and the
//! backoff's jitter from the function it was given.
//!
//! The page (`web-client/src/app.rs`) and the console (`console-client/src/run.rs`) are the
//! shells: each feeds its events in, carries out the effects in order, and sleeps until
//! [`Session::timeout`]. Every timing rule lives here, once: the open timeout, the reply
//! deadline (which counts from what was sent, never from a frame that asked to wait), the pause
//! after `rate_limited`/`unavailable`, which answers reset the backoff, what a close means,
//! joins and the token before publishes, the token's refresh at about 80% of its life, and
//! the greeting. What differs between the clients is a [`Config`]: whether to give up after a
//! connect timeout, and whether every connection's greeting is shown.

use std::collections::VecDeque;
use std::time::Duration;

use room_protocol::bounds::TYPING_INTERVAL_MS;

use crate::backoff::{Backoff, MAX_WINDOW};
use crate::outbox::{CloseMeant, GivenUp, MessageId, Outbox, PushError, Received};
use crate::room::{self, RETRY_AFTER_MILLIS, Room};
use crate::signin::{IdentityClose, TokenAnswer, auth_frame, identity_close, refresh_delay};
use crate::status::{
    AfterClose, NO_REPLY, Status, after_close, close_notice, no_reply_reason, open_timeout_reason,
};

/// A time on the shell's clock, in milliseconds. The page's is `Date.now()`; the console's
/// counts from its start ([`Config::epoch_at_zero`] says when that was).
pub type Millis = u64;

/// Which greetings are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    /// Every connection's (the page: it says the connection is new).
    Every,
    /// The first connection's only (the console: one conversation on standard output).
    First,
}

/// What differs between the clients.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Longest wait for an answer, and for a socket to open.
    pub reply_timeout: Duration,
    /// Give up after this long without a connection (the console's `--connect-timeout`);
    /// `None`: never (the page keeps trying).
    pub connect_timeout: Option<Duration>,
    pub greeting: Greeting,
    /// Ms since the Unix epoch at the shell's clock's zero: a token's expiry is a time on that
    /// calendar. The page's clock is `Date.now()` (0).
    pub epoch_at_zero: u64,
    /// A random number in `[0, 1)` for the backoff's jitter.
    pub jitter: fn() -> f64,
}

/// What the shell is asked to fetch; answered with [`Session::fetched`] or
/// [`Session::token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// Whatever the shell needs before its first connection (the page asks the server whether
    /// it wants tokens). Asked only of a session made [`Session::preparing`].
    Setup,
    /// A token to sign in with on the next connection.
    Token,
    /// A new token for the open connection, before the one it uses expires.
    Refresh,
}

/// Why a connection, or an attempt at one, is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// The socket never opened; the shell's words, when it has any (a browser says nothing).
    NotOpened(Option<String>),
    /// The socket did not open within the reply timeout (or what was left of the connect
    /// timeout): it was abandoned. `cut_short`: by the connect timeout.
    OpenTimedOut { reason: String, cut_short: bool },
    /// A setup or token fetch could not be answered: why.
    Unavailable(String),
    /// Nothing came for the reply timeout while an answer was owed: closed with
    /// [`NO_REPLY`].
    NoReply(Duration),
    /// The server closed the connection, and trying again may work.
    Closed { code: u16, reason: String },
    /// The connection broke without a close; the shell's words.
    Broken(String),
}

/// What the shell is to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Fetch this; answer with [`Session::fetched`] or [`Session::token`].
    Fetch(Fetch),
    /// Open a socket; then [`Session::opened`], or [`Session::not_opened`].
    Connect,
    /// Send this text frame on the open socket. With `report`, call [`Session::sent`] once the
    /// socket took it (a message or a publish: nothing more of the conversation goes out
    /// until then, and one never written is neither counted as a try nor said as sent);
    /// without, it is a frame of this connection only (the token, a join, `typing`).
    Send { text: String, report: bool },
    /// Close the socket (or abandon the attempt to open it) with this code and reason; no
    /// more events from it are wanted.
    Close { code: u16, reason: String },
    /// The app answered: show this text.
    Reply(String),
    /// The app's message was written ([`Session::sent`]); `again`: it went out on an earlier
    /// connection too.
    Sent {
        id: MessageId,
        text: String,
        again: bool,
    },
    /// A message left the outbox without its answer.
    GivenUp(GivenUp),
    /// What a room frame meant (every event but [`room::Event::RetryLater`] and
    /// [`room::Event::Nothing`], which the session handles).
    Room(room::Event),
    /// The server sent binary data, this many bytes.
    Binary(usize),
    /// A line for the conversation about no one message.
    Notice(String),
    /// The connection (or an attempt) is over: the next attempt is in `retry_in`.
    Lost { why: Lost, retry_in: Duration },
    /// No connection for the whole connect timeout: given up, after this.
    GaveUp(Lost),
    /// The server ended the conversation (a normal close; `answered_end` when it answered an
    /// `end`): nothing goes out until [`Session::reconnect`].
    Ended {
        code: u16,
        reason: String,
        answered_end: bool,
    },
    /// Signing in was refused (`said`, in words for the user; `reason`, short, for a status):
    /// nothing is tried until [`Session::reconnect`].
    SignedOut { said: String, reason: String },
    /// A refresh was refused: the connection lasts until the token expires.
    RefreshRefused(String),
    /// The input ended and everything is answered: the socket was closed (1000).
    Finished,
}

impl Effect {
    /// Whether this changes what a reload needs besides how many messages wait (which a shell
    /// sees itself): a room's position, user or pending publishes, or a message given up. A
    /// shell that keeps the conversation for a reload saves after such an effect. Every
    /// variant is named: a new one must say whether it changes the saved state.
    pub fn changes_saved_state(&self) -> bool {
        match self {
            Effect::GivenUp(_) => true,
            Effect::Room(event) => match event {
                room::Event::Show { .. }
                | room::Event::Delivered { .. }
                | room::Event::Stamped { .. }
                | room::Event::Refused { .. }
                | room::Event::Gap { .. }
                | room::Event::Joined
                | room::Event::CaughtUp { .. }
                | room::Event::SignedIn { .. } => true,
                room::Event::Presence { .. }
                | room::Event::Typing { .. }
                | room::Event::Notice(_)
                // Handled by the session, never handed to a shell.
                | room::Event::RetryLater
                | room::Event::Nothing => false,
            },
            Effect::Fetch(_)
            | Effect::Connect
            | Effect::Send { .. }
            | Effect::Close { .. }
            | Effect::Reply(_)
            | Effect::Sent { .. }
            | Effect::Binary(_)
            | Effect::Notice(_)
            | Effect::Lost { .. }
            | Effect::GaveUp(_)
            | Effect::Ended { .. }
            | Effect::SignedOut { .. }
            | Effect::RefreshRefused(_)
            | Effect::Finished => false,
        }
    }
}

/// The conversation the session carries. One per client, made once: its size does not matter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Talk {
    /// An app's (`/subscriptions`, `/echo`, `/mirror`), as its rules say it answers.
    App(Outbox),
    /// One room's.
    Room(Room),
}

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Not started.
    Idle,
    /// A fetch is asked before connecting.
    Fetching(Fetch),
    /// Waiting until `at` to try again.
    Waiting {
        at: Millis,
    },
    /// The shell says the network is down: trying at `until` anyway (the browser is
    /// sometimes wrong), or as soon as it is back.
    Offline {
        until: Millis,
    },
    /// A socket asked to open at `since`, abandoned past `bound`.
    Connecting {
        since: Millis,
        bound: Duration,
    },
    Open(Open),
    /// Closed until the user asks again, with the status that says why.
    Closed(Status),
    /// Given up, or finished: nothing more.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Open {
    opened_at: Millis,
    compressed: bool,
    /// When the oldest unanswered message last saw progress: it was sent, or a frame came.
    progress_at: Millis,
    /// When sending may go on after the server asked to wait.
    retry_at: Option<Millis>,
    /// A send failed: the close that follows says why, within the reply timeout.
    broken_at: Option<Millis>,
}

/// The token, with a server that wants them.
#[derive(Debug, Default)]
struct SignIn {
    /// A new token can be had before this one expires (a refresh is asked for).
    renewable: bool,
    token: Option<String>,
    /// Send it next (a new connection, or a refresh).
    due: bool,
    /// When (this clock) to refresh it, once the server accepted it.
    refresh_at: Option<Millis>,
    /// A refresh is being fetched.
    refreshing: bool,
    /// When (this clock) the accepted token expires.
    expires: Option<Millis>,
}

/// What the shell was handed to write and has not yet reported written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Writing {
    /// The outbox's next message.
    Message(crate::outbox::Outgoing),
    /// The room's publish with this id.
    Publish(String),
}

/// A token closer to its expiry than this is not used for a new connection.
const MIN_TOKEN_LIFE_MILLIS: u64 = 5_000;
/// How long to wait before asking again after a refresh could not be answered.
const REFRESH_RETRY_MILLIS: u64 = 5_000;

/// See the module documentation.
#[derive(Debug)]
pub struct Session {
    talk: Talk,
    config: Config,
    state: State,
    backoff: Backoff,
    effects: VecDeque<Effect>,
    /// `Some` with a server that wants tokens.
    signin: Option<SignIn>,
    /// The shell has a setup to fetch before connecting the first time.
    setup_due: bool,
    /// The setup's answer is the one the shell remembered, not yet borne out by a connection:
    /// if the next attempt fails, the setup is asked for again (the server may have changed).
    setup_remembered: bool,
    /// Joins to send before any publish.
    joins: VecDeque<String>,
    /// A message or publish handed to the shell and not yet reported written.
    writing: Option<Writing>,
    /// The first connection's greeting was shown.
    greeted: bool,
    /// More lines may be typed.
    input_open: bool,
    /// The network, as the shell says.
    online: bool,
    /// Since when no connection is open (for the connect timeout).
    outage_since: Millis,
    /// The last failed attempt's reason, for a give-up cut short by the connect timeout.
    last_failure: Option<Lost>,
    /// When a `typing` frame last went out.
    typed_at: Option<Millis>,
}

impl Session {
    pub fn new(talk: Talk, config: Config) -> Session {
        Session {
            talk,
            config,
            state: State::Idle,
            backoff: Backoff::default(),
            effects: VecDeque::new(),
            signin: None,
            setup_due: false,
            setup_remembered: false,
            joins: VecDeque::new(),
            writing: None,
            greeted: false,
            input_open: true,
            online: true,
            outage_since: 0,
            last_failure: None,
            typed_at: None,
        }
    }

    /// Asks the shell for [`Fetch::Setup`] before the first connection.
    pub fn preparing(mut self) -> Session {
        self.setup_due = true;
        self
    }

    /// The server wants tokens: one goes first on every connection. `renewable`: the shell
    /// can fetch another before it expires (a refresh on the open connection); without, the
    /// connection lasts until the server's 4408.
    pub fn with_tokens(&mut self, renewable: bool) {
        self.signin.get_or_insert_with(SignIn::default).renewable = renewable;
    }

    /// The server wants no token (a setup that said so, after one that said it did).
    pub fn without_tokens(&mut self) {
        self.signin = None;
    }

    fn signs_in(&self) -> bool {
        self.signin.is_some()
    }

    pub fn talk(&self) -> &Talk {
        &self.talk
    }

    /// The conversation, to restore what a reload saved before the session starts.
    pub fn talk_mut(&mut self) -> &mut Talk {
        &mut self.talk
    }

    pub fn room(&self) -> Option<&Room> {
        match &self.talk {
            Talk::Room(room) => Some(room),
            Talk::App(_) => None,
        }
    }

    /// The next thing to do.
    pub fn poll(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When [`Session::handle_timeout`] is next due.
    pub fn timeout(&self) -> Option<Millis> {
        let reply = self.reply_ms();
        match &self.state {
            State::Waiting { at } => Some(*at),
            State::Offline { until } => Some(*until),
            State::Connecting { since, bound } => Some(since + millis(*bound)),
            State::Open(open) => {
                if let Some(broken) = open.broken_at {
                    return Some(broken + reply);
                }
                let deadline = (open.retry_at.is_none() && self.awaiting_reply())
                    .then(|| open.progress_at + reply);
                let greeting = self.finished_but_greeting().then(|| open.opened_at + reply);
                let refresh = self
                    .signin
                    .as_ref()
                    .filter(|signin| !signin.refreshing)
                    .and_then(|signin| signin.refresh_at);
                [deadline, open.retry_at, greeting, refresh]
                    .into_iter()
                    .flatten()
                    .min()
            }
            State::Idle | State::Fetching(_) | State::Closed(_) | State::Done => None,
        }
    }

    /// The connection's state in words at `now` (the countdown included).
    pub fn status(&self, now: Millis) -> Status {
        let offline = !self.online;
        match &self.state {
            State::Closed(status) => status.clone(),
            State::Offline { .. } => Status::Offline,
            _ if offline => Status::Offline,
            State::Waiting { at } => Status::Reconnecting {
                seconds: u32::try_from(at.saturating_sub(now).div_ceil(1000)).unwrap_or(u32::MAX),
            },
            State::Open(open) => Status::Open {
                compressed: open.compressed,
            },
            State::Idle | State::Fetching(_) | State::Connecting { .. } | State::Done => {
                Status::Connecting
            }
        }
    }

    /// Whether a socket is open (or opening).
    #[cfg(test)]
    fn is_connected(&self) -> bool {
        matches!(self.state, State::Open(_) | State::Connecting { .. })
    }

    /// Whether nothing more will happen.
    #[cfg(test)]
    fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether nothing goes out until [`Session::reconnect`].
    #[cfg(test)]
    fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Messages still waiting for their answers (or to be sent).
    pub fn left(&self) -> usize {
        match &self.talk {
            Talk::App(outbox) => outbox.len(),
            Talk::Room(room) => room.len(),
        }
    }

    /// Whether the server owes the open connection an answer.
    fn awaiting_reply(&self) -> bool {
        match &self.talk {
            Talk::App(outbox) => outbox.awaiting_reply(),
            Talk::Room(room) => room.awaiting_reply(),
        }
    }

    fn reply_ms(&self) -> Millis {
        millis(self.config.reply_timeout)
    }

    /// Starts connecting (after the setup, with a server that wants tokens after a token).
    pub fn start(&mut self, now: Millis) {
        if self.state == State::Idle {
            self.outage_since = now;
            self.attempt(now, true);
        }
    }

    /// The step before a connection: the setup, a token, or the socket.
    fn attempt(&mut self, now: Millis, check_online: bool) {
        if check_online && !self.online {
            self.state = State::Offline {
                until: now + millis(MAX_WINDOW),
            };
            return;
        }
        if self.setup_due {
            return self.fetch(Fetch::Setup);
        }
        if let Some(signin) = &mut self.signin {
            let expiring = signin
                .expires
                .is_some_and(|expires| expires.saturating_sub(now) < MIN_TOKEN_LIFE_MILLIS);
            if expiring {
                signin.token = None;
                signin.expires = None;
            }
            if signin.token.is_none() {
                return self.fetch(Fetch::Token);
            }
        }
        let connect_left = self.connect_left(now);
        let bound = connect_left.map_or(self.config.reply_timeout, |left| {
            left.min(self.config.reply_timeout)
        });
        self.state = State::Connecting { since: now, bound };
        self.effects.push_back(Effect::Connect);
    }

    fn fetch(&mut self, fetch: Fetch) {
        self.state = State::Fetching(fetch);
        self.effects.push_back(Effect::Fetch(fetch));
    }

    /// What is left of the connect timeout, if there is one.
    fn connect_left(&self, now: Millis) -> Option<Duration> {
        self.config.connect_timeout.map(|timeout| {
            timeout.saturating_sub(Duration::from_millis(now.saturating_sub(self.outage_since)))
        })
    }

    /// The setup was fetched (`Ok`), or could not be (`Err`: why; asked again later).
    pub fn fetched(&mut self, now: Millis, setup: Result<(), String>) {
        if self.state != State::Fetching(Fetch::Setup) {
            return;
        }
        match setup {
            Ok(()) => {
                self.setup_due = false;
                self.attempt(now, false);
            }
            Err(why) => self.attempt_failed(now, Lost::Unavailable(why)),
        }
    }

    /// The shell answers [`Fetch::Setup`] from what it remembered of an earlier one (a page
    /// reload: no request). The first attempt goes by it; if that attempt fails before a
    /// socket opens (a server that changed its mind refuses the URL, or the token URL), the
    /// setup is asked for again at once, before any failure is said or waited for.
    pub fn fetched_from_memory(&mut self, now: Millis) {
        if self.state == State::Fetching(Fetch::Setup) {
            self.setup_due = false;
            self.setup_remembered = true;
            self.attempt(now, false);
        }
    }

    /// An attempt failed while the setup was only remembered: ask for it again, now.
    fn recheck_setup(&mut self, now: Millis) -> bool {
        if !std::mem::take(&mut self.setup_remembered) {
            return false;
        }
        self.setup_due = true;
        self.attempt(now, false);
        true
    }

    /// The token source answered a [`Fetch::Token`] or a [`Fetch::Refresh`].
    pub fn token(&mut self, now: Millis, answer: TokenAnswer) {
        let refreshing = self.signin.as_ref().is_some_and(|signin| signin.refreshing);
        if refreshing {
            return self.refreshed(now, answer);
        }
        if self.state != State::Fetching(Fetch::Token) {
            return;
        }
        match answer {
            TokenAnswer::Token(token) => {
                if let Some(signin) = &mut self.signin {
                    signin.token = Some(token);
                    signin.expires = None;
                }
                self.attempt(now, false);
            }
            TokenAnswer::Refused(_) | TokenAnswer::Unavailable(_) if self.recheck_setup(now) => {}
            TokenAnswer::Refused(words) => {
                self.signed_out(format!("Cannot sign in: {words}."), words);
            }
            TokenAnswer::Unavailable(why) => self.attempt_failed(now, Lost::Unavailable(why)),
        }
    }

    fn refreshed(&mut self, now: Millis, answer: TokenAnswer) {
        let Some(signin) = &mut self.signin else {
            return;
        };
        signin.refreshing = false;
        match answer {
            TokenAnswer::Token(token) => {
                signin.token = Some(token);
                signin.due = true;
                self.flush(now);
            }
            TokenAnswer::Refused(words) => self.effects.push_back(Effect::RefreshRefused(words)),
            TokenAnswer::Unavailable(_) => {
                // Asked again a little later, while the token lasts.
                let again = now + REFRESH_RETRY_MILLIS;
                signin.refresh_at = signin
                    .expires
                    .filter(|expires| again < *expires)
                    .map(|_| again);
            }
        }
    }

    /// The socket opened; `compressed` when the server agreed to permessage-deflate.
    pub fn opened(&mut self, now: Millis, compressed: bool) {
        if !matches!(self.state, State::Connecting { .. }) {
            return;
        }
        self.state = State::Open(Open {
            opened_at: now,
            compressed,
            progress_at: now,
            retry_at: None,
            broken_at: None,
        });
        self.last_failure = None;
        self.setup_remembered = false;
        self.joins.clear();
        if let Some(signin) = &mut self.signin {
            signin.due = signin.token.is_some();
        }
        match &mut self.talk {
            Talk::App(outbox) => outbox.connection_opened(),
            Talk::Room(room) => self.joins.push_back(room.connection_opened()),
        }
        self.flush(now);
    }

    /// The socket did not open; `why` in the shell's words, if it has any.
    pub fn not_opened(&mut self, now: Millis, why: Option<String>) {
        if matches!(self.state, State::Connecting { .. }) {
            self.attempt_failed(now, Lost::NotOpened(why));
        }
    }

    /// An attempt failed before a socket opened: the next one after the backoff, unless the
    /// connect timeout is over.
    fn attempt_failed(&mut self, now: Millis, why: Lost) {
        if self.recheck_setup(now) {
            return;
        }
        let cut_short = matches!(
            why,
            Lost::OpenTimedOut {
                cut_short: true,
                ..
            }
        );
        let why = match (cut_short, self.last_failure.take()) {
            // Cut short by the connect timeout: the attempt before says why it failed.
            (true, Some(last)) => last,
            _ => why,
        };
        let left = self.connect_left(now);
        if left.is_some_and(|left| left.is_zero()) {
            self.state = State::Done;
            self.effects.push_back(Effect::GaveUp(why));
            return;
        }
        let mut delay = self.backoff.next_delay((self.config.jitter)());
        if let Some(left) = left {
            delay = delay.min(left);
        }
        self.last_failure = Some(why.clone());
        self.wait(now, why, delay);
    }

    fn wait(&mut self, now: Millis, why: Lost, delay: Duration) {
        self.state = State::Waiting {
            at: now + millis(delay),
        };
        self.effects.push_back(Effect::Lost {
            why,
            retry_in: delay,
        });
    }

    /// The open connection is over: what was in flight goes again on the next one, after the
    /// backoff (at most half the connect timeout: the next attempt needs the rest).
    fn connection_lost(&mut self, now: Millis, why: Lost) {
        self.forget_connection();
        if !self.input_open && self.left() == 0 {
            self.state = State::Done;
            self.effects.push_back(Effect::Finished);
            return;
        }
        self.outage_since = now;
        let mut delay = self.backoff.next_delay((self.config.jitter)());
        if let Some(timeout) = self.config.connect_timeout {
            delay = delay.min(timeout / 2);
        }
        self.wait(now, why, delay);
    }

    /// What a connection held is let go, and what it left unanswered given up if it must be.
    fn forget_connection(&mut self) {
        self.joins.clear();
        // Never written: neither a try nor "sent again" on the next connection.
        self.writing = None;
        if let Some(signin) = &mut self.signin {
            signin.due = false;
            signin.refresh_at = None;
            signin.refreshing = false;
        }
        let given_up = match &mut self.talk {
            Talk::App(outbox) => outbox.connection_closed(),
            Talk::Room(room) => {
                room.connection_closed();
                None
            }
        };
        if let Some(given_up) = given_up {
            self.effects.push_back(Effect::GivenUp(given_up));
        }
    }

    /// Sending failed: the socket is going, and its close says why, within the reply timeout.
    pub fn send_failed(&mut self, now: Millis) {
        if let State::Open(open) = &mut self.state {
            open.broken_at.get_or_insert(now);
        }
    }

    /// A text frame from the server.
    pub fn text(&mut self, now: Millis, text: &str) {
        let State::Open(open) = &mut self.state else {
            return;
        };
        open.progress_at = now;
        // A frame came: whatever the shell said of the network, it works.
        self.online = true;
        match &mut self.talk {
            Talk::App(outbox) => match outbox.received_text(text) {
                Received::Greeting => {
                    let show = self.config.greeting == Greeting::Every || !self.greeted;
                    self.greeted = true;
                    if show {
                        self.effects.push_back(Effect::Reply(text.to_owned()));
                    }
                }
                Received::Answer { show, .. } => {
                    // The server works: the next drop starts from the shortest wait again.
                    self.backoff.reset();
                    if show {
                        self.effects.push_back(Effect::Reply(text.to_owned()));
                    }
                }
                Received::Unexpected => self.effects.push_back(Effect::Reply(text.to_owned())),
            },
            Talk::Room(room) => {
                let event = room.receive(text);
                self.room_event(now, event);
            }
        }
        self.flush(now);
    }

    fn room_event(&mut self, now: Millis, event: room::Event) {
        use room::Event;
        match &event {
            Event::Delivered { .. } | Event::Joined | Event::CaughtUp { .. } => {
                self.backoff.reset();
            }
            Event::Gap { rejoin } => {
                self.backoff.reset();
                if let Some(join) = rejoin {
                    self.joins.push_back(join.clone());
                }
            }
            Event::RetryLater => {
                if let State::Open(open) = &mut self.state {
                    open.retry_at = Some(now + u64::from(RETRY_AFTER_MILLIS));
                }
                return;
            }
            Event::SignedIn { expires, .. } => {
                let wall = self.config.epoch_at_zero + now;
                if let Some(signin) = &mut self.signin {
                    let token = signin.token.as_deref().unwrap_or_default();
                    let delay = millis(refresh_delay(token, wall, *expires));
                    signin.refresh_at = signin.renewable.then_some(now + delay);
                    // On this clock, as every other time here.
                    signin.expires = Some(now.saturating_add(expires.saturating_sub(wall)));
                }
            }
            Event::Nothing => return,
            _ => {}
        }
        self.effects.push_back(Effect::Room(event));
    }

    /// Binary data from the server: nothing any conversation here expects.
    pub fn binary(&mut self, now: Millis, bytes: usize) {
        if let State::Open(open) = &mut self.state {
            open.progress_at = now;
            self.effects.push_back(Effect::Binary(bytes));
        }
    }

    /// The socket closed: `Some((code, reason))` when the server sent a close (or the browser
    /// reported one), `None` when it broke without one (`broken`: the shell's words).
    pub fn closed(&mut self, now: Millis, close: Result<(u16, String), String>) {
        match self.state {
            State::Connecting { .. } => {
                let why = match close {
                    Ok((code, reason)) => format!("closed ({code}) {reason}"),
                    Err(broken) => broken,
                };
                return self.attempt_failed(now, Lost::NotOpened(Some(why)));
            }
            State::Open(_) => {}
            _ => return,
        }
        let (code, reason) = match close {
            Ok(close) => close,
            Err(broken) => return self.connection_lost(now, Lost::Broken(broken)),
        };
        let meant = match &mut self.talk {
            Talk::App(outbox) => outbox.received_close(code),
            Talk::Room(_) => CloseMeant::Nothing,
        };
        let answered_end = match meant {
            CloseMeant::Answer => true,
            CloseMeant::Refusal(refused) => {
                self.effects.push_back(Effect::GivenUp(refused));
                false
            }
            CloseMeant::Nothing => {
                if let Some(notice) = close_notice(code, &reason) {
                    self.effects.push_back(Effect::Notice(notice));
                }
                false
            }
        };
        let identity = self
            .signs_in()
            .then(|| identity_close(code, &reason))
            .flatten();
        match identity {
            Some(IdentityClose::Expired) => {
                // A new token, then the same positions: nothing lost.
                self.forget_token();
                return self.connection_lost(now, Lost::Closed { code, reason });
            }
            Some(IdentityClose::Refused(words)) => {
                self.forget_token();
                self.forget_connection();
                return self.signed_out(words, format!("{code}: {reason}"));
            }
            None => {}
        }
        if answered_end || after_close(code) == AfterClose::StayClosed {
            self.forget_connection();
            self.state = State::Closed(Status::Closed {
                code,
                reason: reason.clone(),
            });
            self.effects.push_back(Effect::Ended {
                code,
                reason,
                answered_end,
            });
        } else {
            self.connection_lost(now, Lost::Closed { code, reason });
        }
    }

    fn forget_token(&mut self) {
        if let Some(signin) = &mut self.signin {
            *signin = SignIn {
                renewable: signin.renewable,
                ..SignIn::default()
            };
        }
    }

    fn signed_out(&mut self, said: String, reason: String) {
        self.state = State::Closed(Status::SignedOut {
            reason: reason.clone(),
        });
        self.effects.push_back(Effect::SignedOut { said, reason });
    }

    /// Time passed: whatever was due by `now` happens.
    pub fn handle_timeout(&mut self, now: Millis) {
        match self.state.clone() {
            State::Waiting { at } if now >= at => self.attempt(now, true),
            State::Offline { until } if now >= until => self.attempt(now, false),
            State::Connecting { since, bound } if now >= since + millis(bound) => {
                let reason = open_timeout_reason(bound);
                self.effects.push_back(Effect::Close {
                    code: NO_REPLY,
                    reason: reason.clone(),
                });
                let cut_short = bound < self.config.reply_timeout;
                self.attempt_failed(now, Lost::OpenTimedOut { reason, cut_short });
            }
            State::Open(open) => self.open_timeout(now, &open),
            _ => {}
        }
    }

    fn open_timeout(&mut self, now: Millis, open: &Open) {
        let reply = self.reply_ms();
        if let Some(broken) = open.broken_at {
            if now >= broken + reply {
                self.connection_lost(now, Lost::Broken("The connection broke.".to_owned()));
            }
            return;
        }
        if open.retry_at.is_some_and(|at| now >= at) {
            // What goes out now is what an answer is waited for: the reply deadline counts
            // from here, not from the frame that asked for the pause.
            if let State::Open(open) = &mut self.state {
                open.retry_at = None;
                open.progress_at = now;
            }
            if let Talk::Room(room) = &mut self.talk {
                self.joins.extend(room.resume());
            }
            return self.flush(now);
        }
        if open.retry_at.is_none() && self.awaiting_reply() && now >= open.progress_at + reply {
            self.effects.push_back(Effect::Close {
                code: NO_REPLY,
                reason: no_reply_reason(self.config.reply_timeout),
            });
            return self.connection_lost(now, Lost::NoReply(self.config.reply_timeout));
        }
        if let Some(signin) = &mut self.signin
            && !signin.refreshing
            && signin.refresh_at.is_some_and(|at| now >= at)
        {
            signin.refresh_at = None;
            signin.refreshing = true;
            self.effects.push_back(Effect::Fetch(Fetch::Refresh));
        }
        self.finish(now);
    }

    /// A message typed for an app: queued (and sent when it can be).
    pub fn push(&mut self, now: Millis, text: String) -> Result<MessageId, PushError> {
        let awaiting = self.awaiting_reply();
        let Talk::App(outbox) = &mut self.talk else {
            return Err(PushError::Empty);
        };
        let id = outbox.push(text)?;
        self.queued(now, awaiting);
        Ok(id)
    }

    /// A publish typed in the room, with its fresh `id`: queued (and sent when it can be).
    pub fn publish(&mut self, now: Millis, id: String, text: String) -> Result<(), PushError> {
        let awaiting = self.awaiting_reply();
        let Talk::Room(room) = &mut self.talk else {
            return Err(PushError::Empty);
        };
        room.push(id, text)?;
        self.queued(now, awaiting);
        Ok(())
    }

    fn queued(&mut self, now: Millis, awaiting: bool) {
        if let State::Open(open) = &mut self.state
            && !awaiting
        {
            // Nothing was owed: the deadline counts from what goes out now.
            open.progress_at = now;
        }
        self.flush(now);
    }

    /// Something was typed in the room: the others are told, at most once per interval
    /// (all the server forwards).
    pub fn typed(&mut self, now: Millis) {
        let (State::Open(_), Talk::Room(room)) = (&self.state, &self.talk) else {
            return;
        };
        let due = self
            .typed_at
            .is_none_or(|at| now.saturating_sub(at) >= TYPING_INTERVAL_MS);
        if let (true, Some(frame)) = (due, room.typing_frame()) {
            self.typed_at = Some(now);
            self.effects.push_back(Effect::Send {
                text: frame,
                report: false,
            });
        }
    }

    /// The input ended: once everything is answered, the session closes (1000) and finishes.
    /// Between connections it keeps trying: the next one finishes once it is open (and its
    /// greeting, if one is owed, came), and a connect timeout still says it never opened.
    pub fn input_ended(&mut self, now: Millis) {
        self.input_open = false;
        self.finish(now);
    }

    /// Whether the input ended and all is answered, but a greeting still due is waited for.
    fn finished_but_greeting(&self) -> bool {
        !self.input_open && self.left() == 0 && self.owes_greeting()
    }

    /// Whether a greeting that will be shown is still to come on this connection.
    fn owes_greeting(&self) -> bool {
        match &self.talk {
            Talk::App(outbox) => {
                outbox.greeting_due() && (self.config.greeting == Greeting::Every || !self.greeted)
            }
            Talk::Room(_) => false,
        }
    }

    /// Closes (1000) once the input ended and every message is answered; a greeting promised
    /// is waited for, as long as an answer may take.
    fn finish(&mut self, now: Millis) {
        let State::Open(open) = &self.state else {
            return;
        };
        if self.input_open || self.left() > 0 || open.broken_at.is_some() {
            return;
        }
        if self.owes_greeting() && now < open.opened_at + self.reply_ms() {
            return;
        }
        self.effects.push_back(Effect::Close {
            code: 1000,
            reason: "done".to_owned(),
        });
        self.state = State::Done;
        self.effects.push_back(Effect::Finished);
    }

    /// The user asks to connect again (closed by the server, refused a sign-in, offline).
    pub fn reconnect(&mut self, now: Millis) {
        match self.state {
            State::Closed(_) => {
                self.backoff.reset();
                self.outage_since = now;
                self.attempt(now, true);
            }
            State::Offline { .. } => self.attempt(now, false),
            _ => {}
        }
    }

    /// The shell says whether the network is up (the browser's `online`/`offline`). Back
    /// online, a wait ends at once.
    pub fn network(&mut self, now: Millis, online: bool) {
        self.online = online;
        if online && matches!(self.state, State::Offline { .. } | State::Waiting { .. }) {
            self.attempt(now, false);
        }
    }

    /// The page became visible: a wait to reconnect ends at once.
    pub fn visible(&mut self, now: Millis) {
        if matches!(self.state, State::Waiting { .. }) {
            self.attempt(now, true);
        }
    }

    /// Sends what may go out now, in order: the token, joins, then what the conversation
    /// offers, one at a time ([`Session::sent`] lets the next go).
    fn flush(&mut self, now: Millis) {
        let State::Open(open) = &self.state else {
            return;
        };
        if open.broken_at.is_some() {
            return;
        }
        let send = |text| Effect::Send {
            text,
            report: false,
        };
        if let Some(signin) = &mut self.signin
            && signin.due
            && let Some(token) = &signin.token
        {
            signin.due = false;
            self.effects.push_back(send(auth_frame(token)));
        }
        while let Some(join) = self.joins.pop_front() {
            self.effects.push_back(send(join));
        }
        if self.writing.is_none() {
            let next = match &self.talk {
                Talk::App(outbox) => outbox
                    .next_to_send()
                    .map(|message| (message.text.clone(), Writing::Message(message))),
                Talk::Room(room) => room
                    .next_to_send()
                    .map(|(id, frame)| (frame, Writing::Publish(id))),
            };
            if let Some((text, writing)) = next {
                self.writing = Some(writing);
                self.effects.push_back(Effect::Send { text, report: true });
            }
        }
        self.finish(now);
    }

    /// The socket took the frame of the last [`Effect::Send`] with `report` (or may have: a
    /// write that timed out can still be flushed before the close): it counts as sent, and
    /// the next may go.
    pub fn sent(&mut self, now: Millis) {
        let Some(writing) = self.writing.take() else {
            return;
        };
        match (writing, &mut self.talk) {
            (Writing::Message(message), Talk::App(outbox)) => {
                outbox.mark_sent();
                self.effects.push_back(Effect::Sent {
                    id: message.id,
                    text: message.text,
                    again: message.again,
                });
            }
            (Writing::Publish(id), Talk::Room(room)) => room.mark_sent(&id),
            _ => {}
        }
        self.flush(now);
    }
}

/// A duration in whole milliseconds.
fn millis(duration: Duration) -> Millis {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
