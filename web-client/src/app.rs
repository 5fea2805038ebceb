//! Wiring: the page's events become [`Wake`]s for one connection task, the shell of the core's
//! [`Session`]. The task opens, writes and closes the socket as the session says, feeds it the
//! socket's events, the page's wakes, the sign-in's answers and the time, and shows what it
//! reports; it decides nothing about timing, retries or what a frame means. This module also
//! keeps what waits in the tab's `sessionStorage`, so a reload loses nothing.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::LocalBoxFuture;
use futures::{FutureExt, StreamExt, future};
use gloo_events::EventListener;
use gloo_timers::future::TimeoutFuture;
use wasm_bindgen_futures::spawn_local;

use crate::dom::{
    LogWatch, OUTBOX_KEY, OwnState, Page, RoomLine, earlier_room_key, room_key, warn,
};
use crate::signin::{fetch_mode, fetch_token};
use crate::socket::{Socket, SocketEvent};
use crate::url::{AuthMode, DEFAULT_APP, RoomPage, Settings};
use client_core::outbox::{
    GivenUp, MAX_MESSAGE_BYTES, MessageId, OUTBOX_CAPACITY, Outbox, PushError,
};
use client_core::room::{self, Event, GAP_NOTICE, HISTORY_END, Room};
use client_core::saved;
use client_core::session::{self, Effect, Fetch, Greeting, Lost, Millis, Session, Talk};
use client_core::settings::DEFAULT_REPLY_TIMEOUT;
use client_core::signin::TokenAnswer;
use client_core::status::{Status, cannot_connect_notice, no_reply_notice, not_opened_reason};
use client_core::transcript::{Entry, Speaker, Transcript};

/// What the page tells the connection task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// A message was queued: what the session now sends is carried out.
    Queued,
    /// The Reconnect button was pressed.
    ReconnectClicked,
    /// The browser is online again.
    Online,
    /// The browser went offline.
    Offline,
    /// The tab became visible.
    Visible,
    /// [`Running::stop`]: close the socket and end.
    Stop,
    /// Something was typed in the room view's input: others may be told.
    Typed,
}

/// What woke the connection task.
#[derive(Debug)]
enum Turn {
    /// The socket left the connecting state: `true` if it opened.
    Opened(bool),
    Socket(SocketEvent),
    Wake(Option<Wake>),
    /// The session's timeout is due.
    Timer,
    Fetched(Fetched),
    /// Someone's "is typing" is over: the presence line is drawn again.
    Redraw,
    /// A second of the countdown to the next attempt passed.
    Tick,
}

/// What a fetch the session asked for answered.
#[derive(Debug)]
enum Fetched {
    /// `GET /auth/config`: whether the server wants tokens.
    Setup(Result<AuthMode, String>),
    Token(TokenAnswer),
}

/// A started client: [`Running::stop`] ends it (its socket closed, its listeners removed).
/// Dropping it leaves the client running for the life of the page.
#[derive(Debug)]
pub struct Running {
    wakes: mpsc::UnboundedSender<Wake>,
    ended: oneshot::Receiver<()>,
}

impl Running {
    /// Closes the client's socket (1000) and waits until its task has ended.
    pub async fn stop(self) {
        // Fails only when the task is gone already, which is what is asked.
        let _ = self.wakes.unbounded_send(Wake::Stop);
        let _ = self.ended.await;
    }
}

/// Everything the connection task and the event handlers share. Single-threaded: `RefCell`
/// borrows are never held across an `await`, nor while the page is changed.
#[derive(Debug)]
pub struct Client {
    page: Page,
    /// The conversation and every decision about it.
    session: RefCell<Session>,
    transcript: RefCell<Transcript>,
    wakes: mpsc::UnboundedSender<Wake>,
    /// The URL the outbox is saved for across reloads; `None` when the settings are wrong.
    saved_for: Option<String>,
    /// The server ended the conversation (`end`): nothing goes out until Reconnect.
    ended_by_server: Cell<bool>,
    /// The room view's state; `None` in the `/subscriptions` view. Both views share
    /// everything else: status, backoff, reconnects, timeouts.
    room: Option<RoomView>,
    /// Itself, for the timer that saves later.
    this: Weak<Client>,
    /// The status shown, not drawn again while it is the same.
    shown_status: RefCell<Option<Status>>,
    /// What a reload needs changed since it was last saved.
    save_due: Cell<bool>,
    /// A timer will save.
    save_timer: Cell<bool>,
    /// When (`Date.now()`) it was last saved.
    saved_at: Cell<f64>,
    /// The last save failed (said once, until one works again).
    save_failed: Cell<bool>,
    /// The `beforeunload` listener, held while something waits to be sent.
    leave_guard: RefCell<Option<EventListener>>,
}

/// What a reload needs is saved at most this often (and when the page is left).
const SAVE_EVERY_MILLIS: f64 = 250.0;

/// The room the page is in, and who the user is there.
#[derive(Debug)]
struct RoomView {
    /// Users in the room, and whether the server stopped naming them (past its cap).
    present: Cell<(u64, bool)>,
    /// Who is typing, and until when (`Date.now()`, whole ms: an `f64` here would bring
    /// float formatting into the wasm through `Debug`).
    typing: RefCell<Vec<(String, u64)>>,
    /// Lines of others that arrived while the tab was hidden (in the title).
    unread: Cell<u32>,
    /// Refused publishes (id, text, why), newest last, at most the outbox's capacity: their
    /// lines offer to edit and send them again.
    refused: RefCell<std::collections::VecDeque<(String, String, String)>>,
    /// Who the user is in the room: `?name=`, or the name the token gives once signed in.
    name: RefCell<String>,
    /// Where its state is saved for a reload (per server, name and room).
    key: String,
    page: RoomPage,
}

/// Messages of the room's recent history shown on entry.
const HISTORY_ON_ENTRY: u64 = 50;

/// How long "is typing" shows after the last `typing` heard: a little more than the server's
/// interval between two of them, so steady typing shows steadily.
const TYPING_SHOWN_MILLIS: u64 = 3_000;

/// The name own lines carry before a server that wants tokens said whose they are.
const UNNAMED: &str = "you";

/// How a client starts. Built once per page and moved at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Plan {
    /// `/subscriptions` or another app, at these settings.
    Talk(Settings),
    /// A room; its settings follow from what the server says about tokens.
    Room(RoomView, Room),
    /// Settings that cannot work: the page says why.
    Broken(String),
}

/// The page's clock, for the session: `Date.now()`.
fn now() -> Millis {
    js_sys::Date::now() as Millis
}

/// The session's settings for the page: it never gives up, and every connection's greeting
/// is shown (it says the connection is new).
fn session_config(reply_timeout: Duration) -> session::Config {
    session::Config {
        reply_timeout,
        connect_timeout: None,
        greeting: Greeting::Every,
        epoch_at_zero: 0,
        jitter: js_sys::Math::random,
    }
}

impl Client {
    /// Starts the client on `page`. It runs until [`Running::stop`], and so do its event
    /// listeners: with settings that cannot work (`Err`, a malformed `?ws=`) the page says
    /// what is wrong, and the form still never submits natively.
    pub fn start(page: Page, settings: Result<Settings, String>) -> Running {
        Client::start_view(page, settings.map_or_else(Plan::Broken, Plan::Talk))
    }

    /// Starts the room view on `page`; with settings that cannot work, the page says why and
    /// opens no socket.
    pub fn start_room(page: Page, settings: Result<RoomPage, String>) -> Running {
        match settings {
            Ok(settings) => {
                let name = settings.name.clone().unwrap_or_else(|| UNNAMED.to_owned());
                page.show_room(&settings.room, &name);
                let owner = settings.owner();
                let room = Room::new(&settings.room)
                    .owned_by(&owner)
                    .with_history(HISTORY_ON_ENTRY)
                    .with_presence();
                let view = RoomView {
                    key: room_key(&owner, &settings.room),
                    present: Cell::new((0, false)),
                    typing: RefCell::new(Vec::new()),
                    unread: Cell::new(0),
                    refused: RefCell::default(),
                    name: RefCell::new(name),
                    page: settings,
                };
                Client::start_view(page, Plan::Room(view, room))
            }
            Err(error) => Client::start_view(page, Plan::Broken(error)),
        }
    }

    fn start_view(page: Page, plan: Plan) -> Running {
        let (wakes, mut wakes_rx) = mpsc::unbounded();
        let (ended_tx, ended) = oneshot::channel();
        let (session, room, settings, saved_for) = match plan {
            Plan::Talk(settings) => {
                let outbox = Outbox::new(settings.app, settings.max_message_bytes);
                let config = session_config(settings.reply_timeout);
                let saved_for = Some(settings.url.clone());
                let session = Session::new(Talk::App(outbox), config);
                (session, None, Some(Ok(settings)), saved_for)
            }
            Plan::Room(view, room) => {
                let config = session_config(view.page.reply_timeout());
                // The setup: whether the server wants tokens (`/auth/config`).
                let session = Session::new(Talk::Room(room), config).preparing();
                (session, Some(view), None, None)
            }
            Plan::Broken(error) => {
                let outbox = Outbox::new(DEFAULT_APP, MAX_MESSAGE_BYTES);
                let session =
                    Session::new(Talk::App(outbox), session_config(DEFAULT_REPLY_TIMEOUT));
                (session, None, Some(Err(error)), None)
            }
        };
        let client = Rc::new_cyclic(|this| Client {
            page,
            session: RefCell::new(session),
            transcript: RefCell::default(),
            wakes: wakes.clone(),
            saved_for,
            ended_by_server: Cell::new(false),
            room,
            this: this.clone(),
            shown_status: RefCell::new(None),
            save_due: Cell::new(false),
            save_timer: Cell::new(false),
            saved_at: Cell::new(0.0),
            save_failed: Cell::new(false),
            leave_guard: RefCell::new(None),
        });
        client.restore();
        let listeners = Rc::clone(&client).listen();
        client.page.focus_input();
        spawn_local(async move {
            {
                // The listeners live as long as this task.
                let _listeners = listeners;
                match settings {
                    Some(Err(error)) => client.cannot_connect(error, &mut wakes_rx).await,
                    Some(Ok(settings)) => client.drive(Some(settings), &mut wakes_rx).await,
                    None => client.drive(None, &mut wakes_rx).await,
                }
            }
            // Nobody waits for it when the page dropped its handle.
            let _ = ended_tx.send(());
        });
        Running { wakes, ended }
    }

    fn session(&self) -> RefMut<'_, Session> {
        self.session.borrow_mut()
    }

    /// The app view's outbox.
    fn outbox(&self) -> Option<Ref<'_, Outbox>> {
        Ref::filter_map(self.session.borrow(), |session| match session.talk() {
            Talk::App(outbox) => Some(outbox),
            Talk::Room(_) => None,
        })
        .ok()
    }

    /// The room view's room.
    fn joined(&self) -> Option<Ref<'_, Room>> {
        Ref::filter_map(self.session.borrow(), Session::room).ok()
    }

    /// Turns the page's events into wakes.
    fn listen(self: Rc<Self>) -> (Vec<EventListener>, LogWatch) {
        let mut listeners = vec![
            self.page.on_reconnect({
                let client = Rc::clone(&self);
                move || {
                    // The button hides once the page reconnects; keep the keyboard where
                    // typing goes.
                    client.page.focus_input();
                    let _ = client.wakes.unbounded_send(Wake::ReconnectClicked);
                }
            }),
            self.page.on_visible({
                let client = Rc::clone(&self);
                move || {
                    if let Some(view) = &client.room {
                        view.unread.set(0);
                        client.page.set_unread(0);
                    }
                    let _ = client.wakes.unbounded_send(Wake::Visible);
                }
            }),
        ];
        let log = self.page.on_log({
            let client = Rc::clone(&self);
            move |id| client.resend(&id)
        });
        listeners.extend(self.page.on_online({
            let client = Rc::clone(&self);
            move || {
                let _ = client.wakes.unbounded_send(Wake::Online);
            }
        }));
        listeners.extend(self.page.on_offline({
            let client = Rc::clone(&self);
            move || {
                let _ = client.wakes.unbounded_send(Wake::Offline);
            }
        }));
        listeners.extend(self.page.on_hide({
            let client = Rc::clone(&self);
            move || client.save_now()
        }));
        listeners.push(self.page.on_input({
            let client = Rc::clone(&self);
            move || client.check_input()
        }));
        listeners.extend(self.page.on_submit({
            let client = Rc::clone(&self);
            move || client.submit()
        }));
        (listeners, log)
    }

    /// "Edit and send again" on a refused line: its text goes back to the composer, and the
    /// line away.
    fn resend(&self, id: &str) {
        let Some(view) = &self.room else { return };
        let refused = {
            let mut refused = view.refused.borrow_mut();
            let Some(at) = refused.iter().position(|(refused, ..)| refused == id) else {
                return;
            };
            refused.remove(at)
        };
        if let Some((_, text, reason)) = refused {
            self.page.remove_line(id);
            self.page.put_in_input(&text);
            self.check_input();
            // Why it was refused, under the composer while it is edited (a refusal the page's
            // own check does not foresee, such as a server's lower limit).
            if self.page.hint_is_empty() {
                self.page.set_hint(Some(&format!("It was {reason}.")));
            }
        }
    }

    /// Puts back what this tab's previous page saved: sent first on the first connection.
    fn restore(&self) {
        if let Some(view) = &self.room {
            return self.restore_room(view);
        }
        let Some(url) = &self.saved_for else {
            return;
        };
        let Some(saved) = self.page.saved(OUTBOX_KEY) else {
            return;
        };
        let capacity = OUTBOX_CAPACITY;
        let messages = match saved::decode(url, &saved, capacity) {
            Ok(messages) => messages,
            Err(why) => {
                warn(&format!("The saved messages were ignored: {why}."));
                let _ = self.page.keep(OUTBOX_KEY, None);
                return;
            }
        };
        let mut restored = 0;
        for text in messages {
            // Before the session starts: nothing is sent yet, whatever the time.
            let pushed = self.session().push(0, text);
            match pushed {
                Ok(_) => restored += 1,
                // Words, not `{:?}`: Debug formatting would add a kilobyte to the wasm.
                Err(PushError::TooLong { bytes, limit }) => warn(&format!(
                    "A saved message of {bytes} bytes was ignored: this page's limit is {limit}."
                )),
                Err(PushError::Empty) => warn("An empty saved message was ignored."),
                Err(PushError::Full) => warn("A saved message was ignored: the outbox is full."),
            }
        }
        if restored > 0 {
            let plural = if restored == 1 { "message" } else { "messages" };
            self.notice(format!(
                "{restored} {plural} typed before the page was reloaded and not yet answered \
                 will be sent first."
            ));
        }
        self.show_waiting();
    }

    /// Puts back the room's outbox and position this tab saved: its publishes are shown as
    /// *sending* again and go out first, with their ids.
    fn restore_room(&self, view: &RoomView) {
        let room_name = self
            .joined()
            .map(|room| room.name().to_owned())
            .unwrap_or_default();
        // What an earlier version of the page saved, for whichever name it had: offered
        // back, never sent, and removed.
        let earlier_key = earlier_room_key(&room_name);
        if let Some(earlier) = self.page.saved(&earlier_key) {
            let _ = self.page.keep(&earlier_key, None);
            for (id, text) in room::earlier_pending(&earlier) {
                self.show_own(view, &id, &text);
                self.refused(
                    view,
                    id,
                    "not sent: saved by an earlier version of this page".to_owned(),
                    text,
                );
            }
        }
        if let Some(saved) = self.page.saved(&view.key) {
            let restored = match self.session().talk_mut() {
                Talk::Room(room) => room.restore(&saved),
                Talk::App(_) => Ok(()),
            };
            if let Err(why) = restored {
                warn(&format!(
                    "The saved state of room {room_name} was ignored: {why}."
                ));
                let _ = self.page.keep(&view.key, None);
            }
        }
        let pending: Vec<(String, String)> = self
            .joined()
            .map(|room| {
                room.pending()
                    .map(|publish| (publish.id.clone(), publish.text.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if !pending.is_empty() {
            let count = pending.len();
            let plural = if count == 1 { "message" } else { "messages" };
            self.notice(format!(
                "{count} {plural} typed before the page was reloaded and not yet delivered \
                 will be sent first."
            ));
        }
        for (id, text) in &pending {
            self.show_own(view, id, text);
        }
        self.show_waiting();
    }

    /// The input changed: say at once when it is too long to send, before Send is pressed.
    fn check_input(&self) {
        let text = self.page.input_value();
        let checked = match self.session.borrow().talk() {
            Talk::Room(room) => room.check_length(&text),
            Talk::App(outbox) => outbox.check_length(&text),
        };
        if self.room.is_some() && !text.is_empty() {
            let _ = self.wakes.unbounded_send(Wake::Typed);
        }
        match checked {
            Err(PushError::TooLong { bytes, limit }) => self.page.set_hint(Some(&format!(
                "This text is {bytes} bytes (UTF-8) and this server accepts at most {limit}: \
                 shorten it to send it. Nothing was cut."
            ))),
            Ok(()) | Err(PushError::Empty | PushError::Full) => self.page.set_hint(None),
        }
    }

    /// The form was submitted: queue the input, or say why not and keep the text.
    fn submit(&self) {
        if let Some(view) = &self.room {
            return self.submit_to_room(view);
        }
        let text = self.page.input_value();
        let pushed = self.session().push(now(), text);
        match pushed {
            Ok(_) => {
                self.page.clear_input();
                self.page.set_hint(None);
                let _ = self.wakes.unbounded_send(Wake::Queued);
                self.show_waiting();
            }
            // Nothing to send; nothing to say either.
            Err(PushError::Empty) => {}
            Err(PushError::TooLong { bytes, limit }) => self.notice(format!(
                "This message is {bytes} bytes; the server accepts at most {limit}. It was kept \
                 in the input: shorten it and send again."
            )),
            Err(PushError::Full) => self.notice(format!(
                "{OUTBOX_CAPACITY} messages are already waiting to be sent or answered; this \
                 one was kept in the input. Send it again once some of them are answered."
            )),
        }
        // Send may have been pressed with the mouse: typing goes on in the input.
        self.page.focus_input();
    }

    /// The form was submitted in the room view: the text becomes a publish with a fresh id,
    /// shown at once as *sending*.
    fn submit_to_room(&self, view: &RoomView) {
        let text = self.page.input_value();
        let Some(random) = self.page.random_bytes() else {
            self.notice(
                "This browser gives no random numbers (crypto.getRandomValues), which message \
                 ids need: the message was kept in the input."
                    .to_owned(),
            );
            return;
        };
        let id = room::message_id(&random);
        let pushed = self.session().publish(now(), id.clone(), text.clone());
        match pushed {
            Ok(()) => {
                self.page.clear_input();
                self.page.set_hint(None);
                self.show_own(view, &id, &text);
                let _ = self.wakes.unbounded_send(Wake::Queued);
                self.show_waiting();
            }
            Err(PushError::Empty) => {}
            Err(PushError::TooLong { bytes, limit }) => self.notice(format!(
                "This message is {bytes} bytes; the room accepts at most {limit}. It was kept \
                 in the input: shorten it and send again."
            )),
            Err(PushError::Full) => self.notice(format!(
                "{} messages are already waiting to be delivered; this one was kept in the \
                 input. Send it again once some of them are delivered.",
                room::ROOM_OUTBOX_CAPACITY
            )),
        }
        self.page.focus_input();
    }

    /// The page's settings cannot work: say so, and keep queueing what the user types.
    async fn cannot_connect(&self, error: String, wakes: &mut mpsc::UnboundedReceiver<Wake>) {
        self.notice(format!(
            "Cannot connect: {error}. Messages typed here wait until the page is loaded with a \
             working address."
        ));
        self.page.set_status(&Status::Failed { reason: error });
        while let Some(wake) = wakes.next().await {
            if wake == Wake::Stop {
                return;
            }
        }
    }

    /// The connection task: carries out what the session asks, feeds it what happens, shows
    /// what it reports, until [`Running::stop`]. `settings`: the app view's; the room view's
    /// follow from the setup (whether the server wants tokens).
    async fn drive(
        &self,
        mut settings: Option<Settings>,
        wakes: &mut mpsc::UnboundedReceiver<Wake>,
    ) {
        let mut socket: Option<Socket> = None;
        // The socket is still connecting: the next event is its `open` or `error`.
        let mut opening = false;
        let mut fetching: Option<LocalBoxFuture<'_, Fetched>> = None;
        // Whether this outage was already reported in the conversation: once is enough.
        let mut outage_reported = false;
        // What the last fetch asked, to name it when it cannot be answered.
        let mut asked = Fetch::Setup;
        // What an earlier page in this tab learned of the server's mode was tried (a reload
        // asks nothing for it; the session asks for real if the first attempt fails).
        let mut recalled = false;
        self.session().network(now(), self.page.is_online());
        self.session().start(now());
        // What waits when the last turn began: a change is kept for a reload.
        let mut left = self.session.borrow().left();
        loop {
            // Whether what a reload needs changed (the room's position, a message given up).
            let mut changed = false;
            loop {
                // Taken out first: the borrow must end before the effect is carried out.
                let effect = self.session().poll();
                let Some(effect) = effect else { break };
                changed |= effect.changes_saved_state();
                match effect {
                    Effect::Connect => {
                        let Some(url) = settings.as_ref().map(|settings| settings.url.clone())
                        else {
                            continue;
                        };
                        match Socket::open(&url) {
                            Ok(opened) => {
                                socket = Some(opened);
                                opening = true;
                            }
                            // A malformed URL will not get better by retrying.
                            Err(error) => {
                                return self.cannot_connect(format!("{url}: {error}"), wakes).await;
                            }
                        }
                    }
                    Effect::Send { text, report } => {
                        // Refused only by a socket that is closing already: its close event
                        // follows, and the session sends it again on the next connection.
                        let written = socket.as_mut().is_some_and(|open| open.send_text(&text));
                        if written && report {
                            self.session().sent(now());
                        }
                    }
                    Effect::Close { code, reason } => {
                        if let Some(open) = socket.take() {
                            open.close(code, &reason);
                        }
                    }
                    Effect::Fetch(fetch) => {
                        asked = fetch;
                        let remembered = (fetch == Fetch::Setup
                            && !std::mem::replace(&mut recalled, true))
                        .then(|| self.page.saved(AUTH_MODE_KEY))
                        .flatten()
                        .and_then(|saved| decode_mode(&saved));
                        if let Some(found) = remembered.and_then(|mode| self.use_mode(mode).ok()) {
                            settings = Some(found);
                            self.session().fetched_from_memory(now());
                            continue;
                        }
                        fetching = self.fetch(fetch);
                    }
                    Effect::Lost { why, .. } => {
                        socket = None;
                        self.lost(why, asked, settings.as_ref(), &mut outage_reported);
                    }
                    shown => self.show(shown),
                }
            }
            self.show_status();
            self.show_pending();
            let now_left = self.session.borrow().left();
            if changed || now_left != left {
                self.save_soon();
            }
            left = now_left;
            let timers = Timers {
                session: self.session.borrow().timeout(),
                redraw: self
                    .room
                    .as_ref()
                    .and_then(|view| view.typing.borrow().iter().map(|(_, until)| *until).min()),
                // The countdown, in a visible tab (a hidden one gets no frames to draw it).
                tick: matches!(
                    *self.shown_status.borrow(),
                    Some(Status::Reconnecting { .. })
                ) && !self.page.is_hidden(),
            };
            let turn = next_turn(socket.as_mut(), opening, wakes, timers, &mut fetching).await;
            let now = now();
            match turn {
                Turn::Opened(true) => {
                    opening = false;
                    outage_reported = false;
                    let extensions = socket.as_ref().map(Socket::extensions).unwrap_or_default();
                    self.page.show_extensions(&extensions);
                    let compressed = extensions.starts_with("permessage-deflate");
                    self.session().opened(now, compressed);
                }
                // The browser fired `error` before `open`. A `close` usually follows, but not
                // for a socket the CSP refused: waiting for it could last forever.
                Turn::Opened(false) => {
                    opening = false;
                    socket = None;
                    self.session().not_opened(now, None);
                }
                Turn::Socket(SocketEvent::Text(text)) => self.session().text(now, &text),
                Turn::Socket(SocketEvent::Binary(length)) => self.session().binary(now, length),
                Turn::Socket(SocketEvent::Closed { code, reason }) => {
                    socket = None;
                    self.session().closed(now, Ok((code, reason)));
                }
                Turn::Timer => self.session().handle_timeout(now),
                Turn::Fetched(fetched) => {
                    fetching = None;
                    match fetched {
                        Fetched::Setup(Ok(mode)) => {
                            // Kept for a reload of this tab; not kept, it is asked again.
                            let _ = self.page.keep(AUTH_MODE_KEY, Some(encode_mode(mode)));
                            match self.use_mode(mode) {
                                Ok(found) => settings = Some(found),
                                Err(error) => return self.cannot_connect(error, wakes).await,
                            }
                            self.session().fetched(now, Ok(()));
                        }
                        Fetched::Setup(Err(why)) => self.session().fetched(now, Err(why)),
                        Fetched::Token(answer) => self.session().token(now, answer),
                    }
                }
                Turn::Wake(Some(Wake::Queued) | None) | Turn::Tick => {}
                Turn::Wake(Some(Wake::Typed)) => self.session().typed(now),
                Turn::Wake(Some(Wake::Online)) => self.session().network(now, true),
                Turn::Wake(Some(Wake::Offline)) => self.session().network(now, false),
                Turn::Wake(Some(Wake::Visible)) => self.session().visible(now),
                Turn::Wake(Some(Wake::ReconnectClicked)) => {
                    self.ended_by_server.set(false);
                    self.session().reconnect(now);
                }
                Turn::Wake(Some(Wake::Stop)) => {
                    if let Some(open) = socket.take() {
                        open.close(NORMAL_CLOSURE, "the page stopped the client");
                    }
                    return;
                }
                Turn::Redraw => self.show_presence(),
            }
        }
    }

    /// The room view's settings for a server in `mode`, and the session told whether it
    /// signs in.
    fn use_mode(&self, mode: AuthMode) -> Result<Settings, String> {
        let view = self.room.as_ref().ok_or_else(String::new)?;
        match mode {
            // The token URL gives a new one whenever asked.
            AuthMode::Tokens { .. } => self.session().with_tokens(true),
            AuthMode::Open => self.session().without_tokens(),
        }
        view.page.settings(mode)
    }

    /// What the session asked to fetch, under way.
    fn fetch(&self, fetch: Fetch) -> Option<LocalBoxFuture<'static, Fetched>> {
        let view = self.room.as_ref()?;
        let page = &view.page;
        let timeout = page.reply_timeout();
        Some(match fetch {
            Fetch::Setup => {
                let url = page.config_url.clone();
                async move { Fetched::Setup(fetch_mode(&url, timeout).await) }.boxed_local()
            }
            Fetch::Token | Fetch::Refresh => {
                let (url, name) = (page.token_url.clone(), page.name.clone());
                async move { Fetched::Token(fetch_token(&url, name.as_deref(), timeout).await) }
                    .boxed_local()
            }
        })
    }

    /// A connection, or an attempt, is over: an attempt's failure is said once per outage, a
    /// server that stopped answering each time.
    fn lost(&self, why: Lost, asked: Fetch, settings: Option<&Settings>, reported: &mut bool) {
        let url = || match (asked, &self.room, settings) {
            (Fetch::Setup, Some(view), _) => view.page.config_url.clone(),
            (Fetch::Token | Fetch::Refresh, Some(view), _) => view.page.token_url.clone(),
            (_, _, Some(settings)) => settings.url.clone(),
            _ => String::new(),
        };
        let reason = match why {
            Lost::NoReply(timeout) => return self.notice(no_reply_notice(timeout)),
            // The close was said already, by the session's notice or the status.
            Lost::Closed { .. } | Lost::Broken(_) => return,
            Lost::NotOpened(why) => {
                let url = settings
                    .map(|settings| settings.url.clone())
                    .unwrap_or_default();
                let reason = why.unwrap_or_else(|| not_opened_reason().to_owned());
                return self.report_outage(&url, &reason, reported);
            }
            Lost::OpenTimedOut { reason, .. } => {
                let url = settings
                    .map(|settings| settings.url.clone())
                    .unwrap_or_default();
                return self.report_outage(&url, &reason, reported);
            }
            Lost::Unavailable(why) => why,
        };
        self.report_outage(&url(), &reason, reported);
    }

    /// Says once per outage that the server cannot be reached.
    fn report_outage(&self, url: &str, reason: &str, reported: &mut bool) {
        if !*reported {
            *reported = true;
            self.notice(cannot_connect_notice(url, reason));
        }
    }

    /// The status line, drawn again only when it changed.
    fn show_status(&self) {
        let status = self.session.borrow().status(now());
        let mut shown = self.shown_status.borrow_mut();
        if shown.as_ref() != Some(&status) {
            self.page.set_status(&status);
            *shown = Some(status);
        }
    }

    /// Shows what the session reported.
    fn show(&self, effect: Effect) {
        match effect {
            Effect::Reply(text) => self.record(Speaker::Server, text),
            Effect::Sent { id, text, again } => {
                let speaker = if again {
                    Speaker::YouAgain
                } else {
                    Speaker::You
                };
                self.record_message(speaker, text, id);
            }
            Effect::GivenUp(given_up) => self.show_given_up(&given_up),
            Effect::Binary(length) => {
                self.notice(format!("The server sent {length} bytes of binary data."));
            }
            Effect::Notice(text) => self.notice(text),
            Effect::Room(event) => {
                if let Some(view) = &self.room {
                    self.show_room_event(view, event);
                }
            }
            Effect::Ended { .. } => self.ended_by_server.set(true),
            Effect::SignedOut { said, .. } => self.notice(format!(
                "{said} Nothing more is tried until you press Reconnect; what you type waits here."
            )),
            Effect::RefreshRefused(words) => self.notice(format!(
                "Cannot refresh the sign-in: {words}. This page stays connected until the \
                 token expires."
            )),
            // The page never gives up and never finishes; the rest is carried out in `drive`.
            Effect::GaveUp(_)
            | Effect::Finished
            | Effect::Fetch(_)
            | Effect::Connect
            | Effect::Send { .. }
            | Effect::Close { .. }
            | Effect::Lost { .. } => {}
        }
    }

    /// What a room frame meant, on the page.
    fn show_room_event(&self, view: &RoomView, event: Event) {
        match event {
            Event::Show {
                from,
                text,
                time,
                earlier,
            } => {
                self.show_message(&from, &text, time, !earlier);
                if !earlier && self.page.is_hidden() {
                    view.unread.set(view.unread.get().saturating_add(1));
                    self.page.set_unread(view.unread.get());
                }
                // The line where the room's history ends and what happens now begins.
                let in_history = self.joined().is_some_and(|room| room.in_history());
                if earlier && !in_history {
                    self.notice(HISTORY_END.to_owned());
                }
                // Whoever wrote it is no longer typing.
                view.typing.borrow_mut().retain(|(name, _)| *name != from);
                self.show_presence();
            }
            Event::Presence { count, capped, .. } => {
                view.present.set((count, capped));
                self.show_presence();
            }
            Event::Typing { name, .. } => {
                let until = now() + TYPING_SHOWN_MILLIS;
                let mut typing = view.typing.borrow_mut();
                typing.retain(|(typist, _)| *typist != name);
                typing.push((name, until));
                drop(typing);
                self.show_presence();
            }
            Event::Delivered { id, time } => {
                self.page.set_room_state(&id, OwnState::Delivered);
                if let Some(time) = time {
                    self.page.set_room_time(&id, &clock_time(time), time);
                }
            }
            Event::Stamped { id, time } => self.page.set_room_time(&id, &clock_time(time), time),
            Event::Refused { id, reason, text } => self.refused(view, id, reason, text),
            Event::Gap { .. } => self.notice(GAP_NOTICE.to_owned()),
            Event::CaughtUp { missed } => {
                for line in missed {
                    match line.own {
                        Some(id) => {
                            self.page.set_room_state(&id, OwnState::Delivered);
                            self.page
                                .set_room_time(&id, &clock_time(line.time), line.time);
                        }
                        None => self.show_message(&line.from, &line.text, line.time, true),
                    }
                }
            }
            Event::Notice(text) => self.notice(text),
            Event::SignedIn { name, not_sent, .. } => {
                // Restored from a reload, written by another user: offered back, never sent.
                for publish in not_sent {
                    self.refused(
                        view,
                        publish.id,
                        "not sent: another user wrote it before this sign-in".to_owned(),
                        publish.text,
                    );
                }
                self.signed_in(view, name);
            }
            Event::Joined | Event::RetryLater | Event::Nothing => {}
        }
    }

    /// The server accepted the token: own lines carry the name it gives to others.
    fn signed_in(&self, view: &RoomView, name: String) {
        let known = view.name.borrow().clone();
        if known != name {
            self.page.rename_own(&known, &name);
            let room = self
                .joined()
                .map(|room| room.name().to_owned())
                .unwrap_or_default();
            self.page.show_room(&room, &name);
            self.notice(format!("Signed in as {name}."));
            *view.name.borrow_mut() = name;
        }
    }

    /// Own publish `id` was refused for good, for `reason`: its line says so and offers to
    /// edit and send `text` again.
    fn refused(&self, view: &RoomView, id: String, reason: String, text: String) {
        if self.page.set_room_state(&id, OwnState::Refused(&reason)) {
            let mut refused = view.refused.borrow_mut();
            if refused.len() == room::ROOM_OUTBOX_CAPACITY
                && let Some((oldest, ..)) = refused.pop_front()
            {
                // Its text is no longer kept: no button that would do nothing.
                self.page.drop_resend(&oldest);
            }
            refused.push_back((id, text, reason));
        } else {
            self.notice(format!("A message was {reason}: {}", preview(&text)));
        }
    }

    /// Who is in the room, and who is typing.
    fn show_presence(&self) {
        let Some(view) = &self.room else { return };
        let now = js_sys::Date::now() as u64;
        view.typing.borrow_mut().retain(|(_, until)| *until > now);
        let (count, capped) = view.present.get();
        self.page.set_people(
            count,
            capped,
            &self.joined().map(|room| room.present()).unwrap_or_default(),
        );
        let typing: Vec<String> = view
            .typing
            .borrow()
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        let line = match typing.len() {
            0 => String::new(),
            1 => format!("{} is typing…", typing[0]),
            _ => format!("{} are typing…", typing.join(", ")),
        };
        self.page.set_typing(&line);
    }

    /// Shows a message of someone else, at the server's `time`; `announce`: a live one.
    fn show_message(&self, from: &str, text: &str, time: u64, announce: bool) {
        let shown = clock_time(time);
        self.record_room_line(&RoomLine {
            author: from,
            time: &shown,
            at: time,
            text,
            state: None,
            id: None,
            own: false,
            announce,
        });
    }

    /// Shows an own publish, *sending* until its ack arrives; timed by this clock, as the
    /// server's time comes only with the message.
    fn show_own(&self, view: &RoomView, id: &str, text: &str) {
        let at = js_sys::Date::now() as u64;
        let time = clock_time(at);
        self.record_room_line(&RoomLine {
            author: &view.name.borrow(),
            time: &time,
            at,
            text,
            state: Some(OwnState::Sending),
            id: Some(id),
            own: true,
            announce: false,
        });
    }

    fn record_room_line(&self, line: &RoomLine<'_>) {
        let evicted = self.transcript.borrow_mut().push();
        self.page.append_room_line(line, evicted);
    }

    /// A message left the outbox without its answer: its line says why.
    fn show_given_up(&self, given_up: &GivenUp) {
        let outcome = given_up.outcome.to_string();
        if !self.page.mark_message(given_up.id, &outcome) {
            self.notice(format!("{:?}: {outcome}", given_up.text));
        }
        self.show_waiting();
    }

    /// Shows what waits, and has it kept for a reload.
    fn show_waiting(&self) {
        self.show_pending();
        self.save_soon();
    }

    /// Shows what waits, and guards leaving while something does.
    fn show_pending(&self) {
        let waiting = if let Some(room) = self.joined() {
            self.page.set_waiting(&room.waiting().to_string());
            !room.is_empty()
        } else if let Some(outbox) = self.outbox() {
            let waiting = outbox.waiting();
            let text = if self.ended_by_server.get() && !outbox.is_empty() {
                format!("{waiting}: the server ended the conversation, press Reconnect to send")
            } else {
                waiting.to_string()
            };
            self.page.set_waiting(&text);
            !outbox.is_empty()
        } else {
            false
        };
        self.guard_leaving(waiting);
    }

    /// Asks the browser to confirm leaving while something waits, and only then.
    fn guard_leaving(&self, waiting: bool) {
        let mut guard = self.leave_guard.borrow_mut();
        if !waiting {
            guard.take();
        } else if guard.is_none() {
            let this = self.this.clone();
            *guard = self.page.on_leave(move || {
                this.upgrade()
                    .is_some_and(|client| client.session.borrow().left() > 0)
            });
        }
    }

    /// Saves what a reload needs now, or once [`SAVE_EVERY_MILLIS`] have passed since the
    /// last save (a burst of frames is saved once, not once a frame).
    fn save_soon(&self) {
        self.save_due.set(true);
        if self.save_timer.get() {
            return;
        }
        // At most one interval, even if the clock stepped back since the last save.
        let wait =
            (self.saved_at.get() + SAVE_EVERY_MILLIS - js_sys::Date::now()).min(SAVE_EVERY_MILLIS);
        if wait <= 0.0 {
            return self.save_now();
        }
        self.save_timer.set(true);
        let this = self.this.clone();
        spawn_local(async move {
            TimeoutFuture::new(wait as u32).await;
            if let Some(client) = this.upgrade() {
                client.save_timer.set(false);
                client.save_now();
            }
        });
    }

    /// Saves what a reload needs, if it changed: the room's outbox and position, or the
    /// demo's outbox. A copy that cannot be kept is removed and the person told, once.
    fn save_now(&self) {
        if !self.save_due.replace(false) {
            return;
        }
        self.saved_at.set(js_sys::Date::now());
        let (key, copy, count) = if let (Some(view), Some(room)) = (&self.room, self.joined()) {
            (view.key.clone(), Some(room.save()), room.len())
        } else if let (Some(url), Some(outbox)) = (&self.saved_for, self.outbox()) {
            let copy = (!outbox.is_empty()).then(|| saved::encode(url, &outbox.texts()));
            (OUTBOX_KEY.to_owned(), copy, outbox.len())
        } else {
            return;
        };
        match self.page.keep(&key, copy.as_deref()) {
            Ok(()) => {
                if self.save_failed.replace(false) && count > 0 {
                    self.notice("What waits to be sent is kept for a reload again.".to_owned());
                }
            }
            // Only the room's position is lost: a reload shows its recent history instead.
            Err(_) if count == 0 => {}
            Err(why) => {
                if !self.save_failed.replace(true) {
                    let plural = if count == 1 { "message" } else { "messages" };
                    self.notice(format!(
                        "What waits cannot be kept for a reload ({why}): reloading or closing \
                         this page now would lose {count} {plural}. This page still sends them."
                    ));
                }
            }
        }
    }

    fn record(&self, speaker: Speaker, text: String) {
        let entry = Entry { speaker, text };
        let evicted = self.transcript.borrow_mut().push();
        self.page.append(&entry, evicted);
    }

    fn record_message(&self, speaker: Speaker, text: String, id: MessageId) {
        let entry = Entry { speaker, text };
        let evicted = self.transcript.borrow_mut().push();
        self.page.append_message(&entry, evicted, id);
    }

    fn notice(&self, text: String) {
        self.record(Speaker::Notice, text);
    }
}

/// Where the room view keeps, for a reload of the tab, whether the server wants tokens.
const AUTH_MODE_KEY: &str = "web-client.auth-mode";

fn encode_mode(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Open => "open",
        AuthMode::Tokens { dev_sign_in: false } => "tokens",
        AuthMode::Tokens { dev_sign_in: true } => "tokens dev",
    }
}

fn decode_mode(saved: &str) -> Option<AuthMode> {
    match saved {
        "open" => Some(AuthMode::Open),
        "tokens" => Some(AuthMode::Tokens { dev_sign_in: false }),
        "tokens dev" => Some(AuthMode::Tokens { dev_sign_in: true }),
        _ => None,
    }
}

/// The close code the client sends when it stops on purpose.
const NORMAL_CLOSURE: u16 = 1000;

/// What [`next_turn`] waits for besides the socket, the page and a fetch.
#[derive(Debug, Clone, Copy)]
struct Timers {
    /// The session's next timeout.
    session: Option<Millis>,
    /// When someone's "is typing" ends.
    redraw: Option<Millis>,
    /// Redraw the countdown in a second.
    tick: bool,
}

/// Waits for the socket's next event (its opening, while `opening`), the page's next wake,
/// one of the `timers`, or the answer to a fetch, whichever comes first; socket events win a
/// tie, so an answer that arrives at the deadline still counts. One timer runs each wait:
/// browsers throttle chains of short timers in background tabs, and a hidden tab ticks no
/// countdown.
async fn next_turn(
    socket: Option<&mut Socket>,
    opening: bool,
    wakes: &mut mpsc::UnboundedReceiver<Wake>,
    timers: Timers,
    fetching: &mut Option<LocalBoxFuture<'_, Fetched>>,
) -> Turn {
    let event = async {
        match socket {
            Some(socket) if opening => Turn::Opened(socket.opened().await),
            Some(socket) => Turn::Socket(socket.next_event().await),
            None => future::pending().await,
        }
    }
    .fuse();
    let timer = until(timers.session).fuse();
    let redraw = until(timers.redraw).fuse();
    let tick = async {
        if timers.tick {
            TimeoutFuture::new(1_000).await;
        } else {
            future::pending::<()>().await;
        }
    }
    .fuse();
    let fetched = async {
        match fetching.as_mut() {
            Some(asked) => asked.await,
            None => future::pending().await,
        }
    }
    .fuse();
    futures::pin_mut!(event, timer, redraw, tick, fetched);
    futures::select_biased! {
        turn = event => turn,
        wake = wakes.next() => Turn::Wake(wake),
        () = timer => Turn::Timer,
        fetched = fetched => Turn::Fetched(fetched),
        () = redraw => Turn::Redraw,
        () = tick => Turn::Tick,
    }
}

/// Resolves at `at` (a `Date.now()` in milliseconds); never for `None`. A browser timer
/// takes at most 2^31 - 1 ms (24.8 days; past it, it fires at once): a later time is waited
/// for in steps.
async fn until(at: Option<Millis>) {
    let Some(at) = at else {
        return future::pending::<()>().await;
    };
    loop {
        let left = at.saturating_sub(now());
        if left == 0 {
            return;
        }
        TimeoutFuture::new(u32::try_from(left.min(i32::MAX as u64)).unwrap_or(u32::MAX)).await;
    }
}

/// A server time as the reader's clock shows it.
fn clock_time(millis: u64) -> String {
    let offset_minutes = -js_sys::Date::new_0().get_timezone_offset() as i64;
    room::clock_time(millis, offset_minutes)
}

/// The start of `text`, quoted, for a notice about it (shown as text: nothing to escape).
fn preview(text: &str) -> String {
    match client_core::shown::preview(text) {
        (start, true) => format!("\"{start}…\""),
        (whole, false) => format!("\"{whole}\""),
    }
}
