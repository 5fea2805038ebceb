//! Wiring: the page's events become [`Wake`]s for one connection task, which opens the
//! socket, sends what the outbox offers, reads the answers, notices a server that stopped
//! answering, and reconnects. The outbox decides what to send and when a message is done (or
//! given up); this module only moves messages between it, the socket and the page, and keeps
//! the outbox in the tab's `sessionStorage` so a reload loses nothing.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::LocalBoxFuture;
use futures::{FutureExt, StreamExt, future};
use gloo_events::EventListener;
use gloo_timers::future::{IntervalStream, TimeoutFuture};
use wasm_bindgen_futures::spawn_local;

use crate::dom::{
    LogWatch, OUTBOX_KEY, OwnState, Page, RoomLine, earlier_room_key, room_key, warn,
};
use crate::signin::{fetch_mode, fetch_token};
use crate::socket::{Socket, SocketEvent};
use crate::url::{AuthMode, DEFAULT_APP, RoomPage, Settings};
use client_core::backoff::Backoff;
use client_core::outbox::{
    CloseMeant, GivenUp, MAX_MESSAGE_BYTES, MessageId, OUTBOX_CAPACITY, Outbox, PushError, Received,
};
use client_core::room::{self, Event, GAP_NOTICE, HISTORY_END, RETRY_AFTER_MILLIS, Room};
use client_core::saved;
use client_core::signin::{IdentityClose, TokenAnswer, auth_frame, identity_close, refresh_delay};
use client_core::status::{
    AfterClose, NO_REPLY, Status, after_close, cannot_connect_notice, close_notice,
    no_reply_notice, no_reply_reason, not_opened_reason, open_timeout_reason,
};
use client_core::transcript::{Entry, Speaker, Transcript};

/// What the page tells the connection task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// A message was queued.
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

/// How a connection ended.
#[derive(Debug)]
enum Ending {
    /// The socket closed with this code and reason.
    Closed { code: u16, reason: String },
    /// The socket never opened: the browser refused it or the server was not there (it fires
    /// `error`, and for a socket the CSP refuses, no `close` at all).
    NotOpened,
    /// The server did not accept the connection within the open timeout.
    OpenTimedOut { reason: String },
    /// The client gave up on a server that did not answer; the notice says so.
    GaveUp { notice: String },
    /// [`Running::stop`] asked for it.
    Stopped,
}

/// What woke the connection task while a socket is open.
#[derive(Debug)]
enum Turn {
    Socket(SocketEvent),
    Wake(Option<Wake>),
    NoReply,
    /// The pause the server asked for (`rate_limited`, `unavailable`) is over.
    RetryDue,
    /// Someone's "is typing" is over: the presence line is drawn again.
    Redraw,
    /// The token is due for a refresh.
    RefreshDue,
    /// The token URL answered a refresh.
    Refreshed(TokenAnswer),
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
/// borrows are never held across an `await`.
#[derive(Debug)]
pub struct Client {
    page: Page,
    outbox: RefCell<Outbox>,
    transcript: RefCell<Transcript>,
    wakes: mpsc::UnboundedSender<Wake>,
    /// The URL the outbox is saved for across reloads; `None` when the settings are wrong.
    saved_for: Option<String>,
    /// The server ended the conversation (`end`): nothing goes out until Reconnect.
    ended_by_server: Cell<bool>,
    /// The browser said it is offline and has not said it is back.
    offline: Cell<bool>,
    /// The room view's state; `None` in the `/subscriptions` view, whose outbox is then the
    /// one in use. Both views share everything else: status, backoff, reconnects, timeouts.
    room: Option<RoomView>,
    /// Itself, for the timer that saves later.
    this: Weak<Client>,
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
    room: RefCell<Room>,
    /// Users in the room, and whether the server stopped naming them (past its cap).
    present: Cell<(u64, bool)>,
    /// Who is typing, and until when (`Date.now()`, whole ms: an `f64` here would bring
    /// float formatting into the wasm through `Debug`).
    typing: RefCell<Vec<(String, u64)>>,
    /// When this page last said it is typing (`Date.now()`, whole ms).
    typed_at: Cell<u64>,
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
    /// With a server that wants tokens: the sign-in's state.
    signin: RefCell<SignIn>,
}

/// Signing in to a server that wants tokens (`--auth-key`).
#[derive(Debug, Default)]
struct SignIn {
    /// Whether the server wants tokens; once learned, for the life of the page.
    tokens: bool,
    /// The token to send first on the next connection; taken away by a 4408 or a refusal.
    token: Option<String>,
    /// When (`Date.now()`) to refresh the token, once the server accepted it.
    refresh_at: Option<f64>,
    /// When (ms since the epoch) the token the server accepted expires.
    expires: Option<f64>,
}

/// Messages of the room's recent history shown on entry.
const HISTORY_ON_ENTRY: u64 = 50;

/// How long "is typing" shows after the last `typing` heard: a little more than the server's
/// interval between two of them, so steady typing shows steadily.
const TYPING_SHOWN_MILLIS: u64 = 3_000;

/// The name own lines carry before a server that wants tokens said whose they are.
const UNNAMED: &str = "you";

/// How long to wait before asking the token URL again after it could not answer a refresh.
const REFRESH_RETRY_MILLIS: f64 = 5_000.0;

/// How a client starts. Built once per page and moved at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Plan {
    /// `/subscriptions` or another app, at these settings.
    Talk(Settings),
    /// A room; its settings follow from what the server says about tokens.
    Room(RoomView),
    /// Settings that cannot work: the page says why.
    Broken(String),
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
                let view = RoomView {
                    room: RefCell::new(
                        Room::new(&settings.room)
                            .owned_by(&owner)
                            .with_history(HISTORY_ON_ENTRY)
                            .with_presence(),
                    ),
                    key: room_key(&owner, &settings.room),
                    present: Cell::new((0, false)),
                    typing: RefCell::new(Vec::new()),
                    typed_at: Cell::new(0),
                    unread: Cell::new(0),
                    refused: RefCell::default(),
                    name: RefCell::new(name),
                    page: settings,
                    signin: RefCell::default(),
                };
                Client::start_view(page, Plan::Room(view))
            }
            Err(error) => Client::start_view(page, Plan::Broken(error)),
        }
    }

    fn start_view(page: Page, plan: Plan) -> Running {
        let (wakes, mut wakes_rx) = mpsc::unbounded();
        let (ended_tx, ended) = oneshot::channel();
        let (app, max_message_bytes, saved_for) = match &plan {
            Plan::Talk(settings) => (
                settings.app,
                settings.max_message_bytes,
                Some(settings.url.clone()),
            ),
            Plan::Room(_) | Plan::Broken(_) => (DEFAULT_APP, MAX_MESSAGE_BYTES, None),
        };
        let (room, settings) = match plan {
            Plan::Room(view) => (Some(view), None),
            Plan::Talk(settings) => (None, Some(Ok(settings))),
            Plan::Broken(error) => (None, Some(Err(error))),
        };
        let client = Rc::new_cyclic(|this| Client {
            offline: Cell::new(!page.is_online()),
            page,
            outbox: RefCell::new(Outbox::new(app, max_message_bytes)),
            transcript: RefCell::default(),
            wakes: wakes.clone(),
            saved_for,
            ended_by_server: Cell::new(false),
            room,
            this: this.clone(),
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
                    None => client.enter_room(&mut wakes_rx).await,
                    Some(Ok(settings)) => client.stay_connected(&settings, &mut wakes_rx).await,
                    Some(Err(error)) => client.cannot_connect(error, &mut wakes_rx).await,
                }
            }
            // Nobody waits for it when the page dropped its handle.
            let _ = ended_tx.send(());
        });
        Running { wakes, ended }
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
                client.offline.set(false);
                let _ = client.wakes.unbounded_send(Wake::Online);
            }
        }));
        listeners.extend(self.page.on_offline({
            let client = Rc::clone(&self);
            move || {
                client.offline.set(true);
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
            let pushed = self.outbox.borrow_mut().push(text);
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
        let room_name = view.room.borrow().name().to_owned();
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
            let restored = view.room.borrow_mut().restore(&saved);
            if let Err(why) = restored {
                warn(&format!(
                    "The saved state of room {room_name} was ignored: {why}."
                ));
                let _ = self.page.keep(&view.key, None);
            }
        }
        let pending: Vec<(String, String)> = view
            .room
            .borrow()
            .pending()
            .map(|publish| (publish.id.clone(), publish.text.clone()))
            .collect();
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
        let checked = match &self.room {
            Some(view) => view.room.borrow().check_length(&text),
            None => self.outbox.borrow().check_length(&text),
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
        let pushed = self.outbox.borrow_mut().push(text);
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
        let pushed = view.room.borrow_mut().push(id.clone(), text.clone());
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

    /// Connects, talks until the connection ends, then reconnects or waits for the user.
    async fn stay_connected(&self, settings: &Settings, wakes: &mut mpsc::UnboundedReceiver<Wake>) {
        let mut backoff = Backoff::default();
        // Whether this outage was already reported in the conversation: once is enough.
        let mut outage_reported = false;
        loop {
            if self.offline.get() {
                self.page.set_status(&Status::Offline);
                if !wait_until_online(wakes).await {
                    return;
                }
            }
            match self
                .ready_to_sign_in(&mut backoff, &mut outage_reported, wakes)
                .await
            {
                Step::Go => {}
                Step::Again => continue,
                Step::Stopped => return,
            }
            self.page.set_status(&Status::Connecting);
            let ending = match Socket::open(&settings.url) {
                Ok(socket) => {
                    self.converse(socket, settings, &mut backoff, &mut outage_reported, wakes)
                        .await
                }
                // A malformed URL will not get better by retrying.
                Err(error) => {
                    let error = format!("{}: {error}", settings.url);
                    return self.cannot_connect(error, wakes).await;
                }
            };
            if let Some(view) = &self.room {
                view.room.borrow_mut().connection_closed();
            }
            // Taken out first: the borrow must end before the page is updated.
            let given_up = self.outbox.borrow_mut().connection_closed();
            if let Some(given_up) = given_up {
                self.show_given_up(&given_up);
            }
            self.show_waiting();
            let reconnect = match ending {
                Ending::Stopped => return,
                Ending::Closed { code, reason } => {
                    let identity = self
                        .signs_in()
                        .then(|| identity_close(code, &reason))
                        .flatten();
                    match (identity, after_close(code)) {
                        (Some(IdentityClose::Expired), _) => {
                            // A new token, then the same positions: nothing lost.
                            self.forget_token();
                            true
                        }
                        (Some(IdentityClose::Refused(words)), _) => {
                            self.forget_token();
                            self.signed_out(&words, &format!("{code}: {reason}"));
                            if !wait_for_click(wakes).await {
                                return;
                            }
                            backoff.reset();
                            false
                        }
                        (None, AfterClose::StayClosed) => {
                            self.ended_by_server.set(true);
                            self.show_waiting();
                            self.page.set_status(&Status::Closed { code, reason });
                            if !wait_for_click(wakes).await {
                                return;
                            }
                            self.ended_by_server.set(false);
                            backoff.reset();
                            false
                        }
                        (None, AfterClose::Reconnect) => true,
                    }
                }
                Ending::NotOpened => {
                    self.report_outage(&settings.url, not_opened_reason(), &mut outage_reported);
                    true
                }
                Ending::OpenTimedOut { reason } => {
                    self.report_outage(&settings.url, &reason, &mut outage_reported);
                    true
                }
                Ending::GaveUp { notice } => {
                    self.notice(notice);
                    true
                }
            };
            if reconnect {
                let delay = backoff.next_delay(js_sys::Math::random());
                if !self.wait_to_reconnect(delay, wakes).await {
                    return;
                }
            }
        }
    }

    /// The room view: learns whether the server wants tokens (asking again while it cannot
    /// answer), then stays connected with the settings that follow.
    async fn enter_room(&self, wakes: &mut mpsc::UnboundedReceiver<Wake>) {
        let Some(view) = &self.room else { return };
        let mut backoff = Backoff::default();
        let mut outage_reported = false;
        let mode = loop {
            if self.offline.get() {
                self.page.set_status(&Status::Offline);
                if !wait_until_online(wakes).await {
                    return;
                }
            }
            self.page.set_status(&Status::Connecting);
            let asked = fetch_mode(&view.page.config_url, view.page.reply_timeout());
            match unless_stopped(asked, wakes).await {
                None => return,
                Some(Ok(mode)) => break mode,
                Some(Err(why)) => {
                    self.report_outage(&view.page.config_url, &why, &mut outage_reported);
                    let delay = backoff.next_delay(js_sys::Math::random());
                    if !self.wait_to_reconnect(delay, wakes).await {
                        return;
                    }
                }
            }
        };
        view.signin.borrow_mut().tokens = matches!(mode, AuthMode::Tokens { .. });
        match view.page.settings(mode) {
            Ok(settings) => self.stay_connected(&settings, wakes).await,
            Err(error) => self.cannot_connect(error, wakes).await,
        }
    }

    /// Whether this page signs in with tokens.
    fn signs_in(&self) -> bool {
        self.room
            .as_ref()
            .is_some_and(|view| view.signin.borrow().tokens)
    }

    /// Before a connection to a server that wants tokens: a token to send first, the one
    /// kept unless it is about to expire, or a new one from the token URL. A refusal is said
    /// once and nothing is asked again until Reconnect is pressed.
    async fn ready_to_sign_in(
        &self,
        backoff: &mut Backoff,
        outage_reported: &mut bool,
        wakes: &mut mpsc::UnboundedReceiver<Wake>,
    ) -> Step {
        let Some(view) = self.room.as_ref().filter(|_| self.signs_in()) else {
            return Step::Go;
        };
        {
            let mut signin = view.signin.borrow_mut();
            let expiring = signin
                .expires
                .is_some_and(|expires| expires - js_sys::Date::now() < MIN_TOKEN_LIFE_MILLIS);
            if expiring {
                signin.token = None;
            }
            if signin.token.is_some() {
                return Step::Go;
            }
        }
        self.page.set_status(&Status::Connecting);
        let page = &view.page;
        let asked = fetch_token(&page.token_url, page.name.as_deref(), page.reply_timeout());
        match unless_stopped(asked, wakes).await {
            None => Step::Stopped,
            Some(TokenAnswer::Token(token)) => {
                let mut signin = view.signin.borrow_mut();
                signin.token = Some(token);
                signin.expires = None;
                Step::Go
            }
            Some(TokenAnswer::Refused(words)) => {
                self.signed_out(&format!("Cannot sign in: {words}."), &words);
                if !wait_for_click(wakes).await {
                    return Step::Stopped;
                }
                backoff.reset();
                Step::Again
            }
            Some(TokenAnswer::Unavailable(why)) => {
                self.report_outage(&page.token_url, &why, outage_reported);
                let delay = backoff.next_delay(js_sys::Math::random());
                if self.wait_to_reconnect(delay, wakes).await {
                    Step::Again
                } else {
                    Step::Stopped
                }
            }
        }
    }

    /// The token is no longer good for connecting: the next connection asks for another.
    fn forget_token(&self) {
        if let Some(view) = &self.room {
            let mut signin = view.signin.borrow_mut();
            signin.token = None;
            signin.expires = None;
            signin.refresh_at = None;
        }
    }

    /// Says once that signing in was refused (`said`: the token URL's words, or the server's
    /// close), shows `reason` in the status, and Reconnect to try again.
    fn signed_out(&self, said: &str, reason: &str) {
        self.notice(format!(
            "{said} Nothing more is tried until you press Reconnect; what you type waits here."
        ));
        self.page.set_status(&Status::SignedOut {
            reason: reason.to_owned(),
        });
    }

    /// The server accepted the token: refresh it at about 80% of its life, and show the name
    /// it gives to others.
    fn signed_in(&self, view: &RoomView, name: String, expires: u64) {
        let now = js_sys::Date::now();
        {
            let mut signin = view.signin.borrow_mut();
            // ms since the epoch: exact in f64 for the next 285,000 years.
            #[allow(clippy::cast_precision_loss)]
            let expires = expires as f64;
            signin.expires = Some(expires);
            let token = signin.token.as_deref().unwrap_or_default();
            let delay = refresh_delay(token, now as u64, expires as u64);
            signin.refresh_at = Some(now + f64::from(millis(delay)));
        }
        let known = view.name.borrow().clone();
        if known != name {
            self.page.rename_own(&known, &name);
            self.page.show_room(view.room.borrow().name(), &name);
            self.notice(format!("Signed in as {name}."));
            *view.name.borrow_mut() = name;
        }
    }

    /// The token URL answered a refresh: the new token goes out on this connection (its
    /// `authed` sets the next refresh); a refusal is said once and the connection lasts until
    /// the token expires; no answer is asked again a little later, while the token lasts.
    fn refreshed(&self, answer: TokenAnswer, socket: &mut Socket) {
        let Some(view) = &self.room else { return };
        match answer {
            TokenAnswer::Token(token) => {
                // Refused only by a socket that closed already: its close event follows, and
                // the next connection sends this token first.
                let _ = socket.send_text(&auth_frame(&token));
                view.signin.borrow_mut().token = Some(token);
            }
            TokenAnswer::Refused(words) => self.notice(format!(
                "Cannot refresh the sign-in: {words}. This page stays connected until the \
                 token expires."
            )),
            TokenAnswer::Unavailable(why) => {
                warn(&format!("The token refresh failed ({why}): trying again."));
                let mut signin = view.signin.borrow_mut();
                let again = js_sys::Date::now() + REFRESH_RETRY_MILLIS;
                signin.refresh_at = signin
                    .expires
                    .filter(|expires| again < *expires)
                    .map(|_| again);
            }
        }
    }

    /// Says once per outage that the server cannot be reached.
    fn report_outage(&self, url: &str, reason: &str, reported: &mut bool) {
        if !*reported {
            *reported = true;
            self.notice(cannot_connect_notice(url, reason));
        }
    }

    /// One connection, from opening to its end. While a message waits for its answer and no
    /// frame arrives for the reply timeout, the server is taken for hung and the client closes.
    async fn converse(
        &self,
        mut socket: Socket,
        settings: &Settings,
        backoff: &mut Backoff,
        outage_reported: &mut bool,
        wakes: &mut mpsc::UnboundedReceiver<Wake>,
    ) -> Ending {
        let timeout = settings.reply_timeout;
        // A hung server can accept TCP (the kernel does) and never answer the handshake.
        let opened = {
            let opening = socket.opened();
            futures::pin_mut!(opening);
            match future::select(opening, TimeoutFuture::new(millis(timeout))).await {
                future::Either::Left((opened, _)) => Some(opened),
                future::Either::Right(((), _)) => None,
            }
        };
        let Some(opened) = opened else {
            let reason = open_timeout_reason(timeout);
            socket.close(NO_REPLY, &reason);
            return Ending::OpenTimedOut { reason };
        };
        if !opened {
            // The browser fired `error` before `open`. A `close` usually follows, but not for a
            // socket the CSP refused: waiting for it could last forever, and its code would be
            // 1006 anyway.
            return Ending::NotOpened;
        }
        *outage_reported = false;
        self.outbox.borrow_mut().connection_opened();
        if let Some(view) = &self.room {
            let token = view.signin.borrow().token.clone();
            if let Some(token) = token {
                // First on the connection: the server reads nothing else before it.
                let _ = socket.send_text(&auth_frame(&token));
            }
            let join = view.room.borrow_mut().connection_opened();
            // Refused only by a socket that closed already: its close event follows.
            let _ = socket.send_text(&join);
        }
        let extensions = socket.extensions();
        self.page.show_extensions(&extensions);
        let compressed = extensions.starts_with("permessage-deflate");
        self.show_open(compressed);
        self.send_waiting(&mut socket);
        // When the oldest unanswered message last saw progress: it was sent, or a frame came.
        let mut progress_at = js_sys::Date::now();
        // When sending may go on after the server asked to wait.
        let mut retry_at = None;
        // The token URL's answer to a refresh, while it is asked.
        let mut refreshing: Option<LocalBoxFuture<'_, TokenAnswer>> = None;
        loop {
            let deadline = self
                .awaiting_reply()
                .then(|| progress_at + millis(timeout) as f64);
            let refresh_at = self
                .room
                .as_ref()
                .and_then(|view| view.signin.borrow().refresh_at)
                .filter(|_| refreshing.is_none());
            let redraw_at = self.room.as_ref().and_then(|view| {
                view.typing
                    .borrow()
                    .iter()
                    .map(|(_, until)| *until)
                    .min()
                    .map(|until| until as f64)
            });
            let timers = Timers {
                deadline,
                retry_at,
                refresh_at,
                redraw_at,
            };
            match next_turn(&mut socket, wakes, timers, &mut refreshing).await {
                Turn::Socket(SocketEvent::Text(text)) => {
                    progress_at = js_sys::Date::now();
                    // A frame came from the server: whatever `navigator.onLine` said, the
                    // network works.
                    if self.offline.replace(false) {
                        self.show_open(compressed);
                    }
                    match &self.room {
                        Some(view) => {
                            if self.receive_in_room(view, text, backoff, &mut socket) {
                                retry_at =
                                    Some(js_sys::Date::now() + f64::from(RETRY_AFTER_MILLIS));
                            }
                        }
                        None => self.receive(text, backoff),
                    }
                }
                Turn::RetryDue => {
                    retry_at = None;
                    // What goes out now is what an answer is waited for: the reply timeout
                    // counts from here, not from the frame that asked for the pause.
                    progress_at = js_sys::Date::now();
                    if let Some(view) = &self.room {
                        let join = view.room.borrow_mut().resume();
                        if let Some(join) = join {
                            let _ = socket.send_text(&join);
                        }
                    }
                    self.send_waiting(&mut socket);
                }
                Turn::Socket(SocketEvent::Binary(length)) => {
                    progress_at = js_sys::Date::now();
                    self.notice(format!("The server sent {length} bytes of binary data."));
                }
                Turn::Socket(SocketEvent::Closed { code, reason }) => {
                    let meant = self.outbox.borrow_mut().received_close(code);
                    match meant {
                        CloseMeant::Refusal(refused) => self.show_given_up(&refused),
                        CloseMeant::Answer => {}
                        CloseMeant::Nothing => {
                            if let Some(text) = close_notice(code, &reason) {
                                self.notice(text);
                            }
                        }
                    }
                    return Ending::Closed { code, reason };
                }
                Turn::Wake(Some(Wake::Queued)) => {
                    if !self.awaiting_reply() {
                        progress_at = js_sys::Date::now();
                    }
                    self.send_waiting(&mut socket);
                }
                Turn::Wake(Some(Wake::Typed)) => {
                    if let Some(view) = &self.room {
                        let now = js_sys::Date::now() as u64;
                        // The server forwards no more than one per interval anyway.
                        let due = now.saturating_sub(view.typed_at.get())
                            >= room_protocol::bounds::TYPING_INTERVAL_MS;
                        let frame = view.room.borrow().typing_frame();
                        if let (true, Some(frame)) = (due, frame)
                            && socket.send_text(&frame)
                        {
                            view.typed_at.set(now);
                        }
                    }
                }
                Turn::Redraw => self.show_presence(),
                Turn::Wake(Some(Wake::Offline)) => self.page.set_status(&Status::Offline),
                Turn::Wake(Some(Wake::Online)) => self.show_open(compressed),
                Turn::Wake(Some(Wake::Stop)) => {
                    socket.close(NORMAL_CLOSURE, "the page stopped the client");
                    return Ending::Stopped;
                }
                // Nothing to reconnect while connected. The channel cannot close: this
                // client holds its sender.
                Turn::Wake(Some(Wake::ReconnectClicked | Wake::Visible) | None) => {}
                Turn::RefreshDue => {
                    if let Some(view) = &self.room {
                        view.signin.borrow_mut().refresh_at = None;
                        let page = &view.page;
                        let asked = fetch_token(&page.token_url, page.name.as_deref(), timeout);
                        refreshing = Some(asked.boxed_local());
                    }
                }
                Turn::Refreshed(answer) => {
                    refreshing = None;
                    self.refreshed(answer, &mut socket);
                }
                Turn::NoReply => {
                    socket.close(NO_REPLY, &no_reply_reason(timeout));
                    return Ending::GaveUp {
                        notice: no_reply_notice(timeout),
                    };
                }
            }
        }
    }

    /// "Connected", unless the browser says it is offline.
    fn show_open(&self, compressed: bool) {
        if self.offline.get() {
            self.page.set_status(&Status::Offline);
        } else {
            self.page.set_status(&Status::Open { compressed });
        }
    }

    /// Whether the server owes this connection an answer.
    fn awaiting_reply(&self) -> bool {
        self.outbox.borrow().awaiting_reply()
            || self
                .room
                .as_ref()
                .is_some_and(|view| view.room.borrow().awaiting_reply())
    }

    /// Sends what the outbox offers, in order, while the socket takes it.
    fn send_waiting(&self, socket: &mut Socket) {
        if let Some(view) = &self.room {
            loop {
                let next = view.room.borrow().next_to_send();
                let Some((id, frame)) = next else {
                    break;
                };
                if !socket.send_text(&frame) {
                    break;
                }
                view.room.borrow_mut().mark_sent(&id);
            }
            return self.show_waiting();
        }
        loop {
            let Some(message) = self.outbox.borrow().next_to_send() else {
                break;
            };
            if !socket.send_text(&message.text) {
                break;
            }
            self.outbox.borrow_mut().mark_sent();
            let speaker = if message.again {
                Speaker::YouAgain
            } else {
                Speaker::You
            };
            self.record_message(speaker, message.text, message.id);
        }
        self.show_waiting();
    }

    /// A text from the server: counted against the oldest unanswered message, and shown unless
    /// it is a copy already shown before the connection broke.
    fn receive(&self, text: String, backoff: &mut Backoff) {
        let received = self.outbox.borrow_mut().received_text(&text);
        match received {
            Received::Answer { complete, show } => {
                // The server works: the next drop starts from the shortest wait again.
                backoff.reset();
                if show {
                    self.record(Speaker::Server, text);
                }
                if complete {
                    self.show_waiting();
                }
            }
            Received::Greeting | Received::Unexpected => self.record(Speaker::Server, text),
        }
    }

    /// A frame from the room's server, as the room decides; `true` when the server asked to
    /// wait before sending more.
    fn receive_in_room(
        &self,
        view: &RoomView,
        text: String,
        backoff: &mut Backoff,
        socket: &mut Socket,
    ) -> bool {
        let event = view.room.borrow_mut().receive(&text);
        let mut wait = false;
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
                if earlier && !view.room.borrow().in_history() {
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
                let until = js_sys::Date::now() as u64 + TYPING_SHOWN_MILLIS;
                let mut typing = view.typing.borrow_mut();
                typing.retain(|(typist, _)| *typist != name);
                typing.push((name, until));
                drop(typing);
                self.show_presence();
            }
            Event::Delivered { id, time } => {
                backoff.reset();
                self.page.set_room_state(&id, OwnState::Delivered);
                if let Some(time) = time {
                    self.page.set_room_time(&id, &clock_time(time), time);
                }
                // A place in flight opened.
                self.send_waiting(socket);
            }
            Event::Stamped { id, time } => self.page.set_room_time(&id, &clock_time(time), time),
            Event::Refused { id, reason, text } => self.refused(view, id, reason, text),
            Event::Gap { rejoin } => {
                backoff.reset();
                self.notice(GAP_NOTICE.to_owned());
                match rejoin {
                    // Refused only by a socket that closed already: its close event follows.
                    Some(join) => drop(socket.send_text(&join)),
                    None => self.send_waiting(socket),
                }
            }
            Event::Joined => {
                backoff.reset();
                self.send_waiting(socket);
            }
            Event::CaughtUp { missed } => {
                backoff.reset();
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
                self.send_waiting(socket);
            }
            Event::RetryLater => wait = true,
            Event::Notice(text) => self.notice(text),
            Event::SignedIn {
                name,
                expires,
                not_sent,
                ..
            } => {
                // Restored from a reload, written by another user: offered back, never sent.
                for publish in not_sent {
                    self.refused(
                        view,
                        publish.id,
                        "not sent: another user wrote it before this sign-in".to_owned(),
                        publish.text,
                    );
                }
                self.signed_in(view, name, expires);
            }
            Event::Nothing => {}
        }
        // Saves the position too, which every shown message moves.
        self.show_waiting();
        wait
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
        self.page
            .set_people(count, capped, &view.room.borrow().present());
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

    /// Waits `delay` before the next attempt, showing "Reconnecting in N s". One timer runs
    /// the whole wait (browsers throttle chains of short timers in background tabs); the
    /// once-a-second refresh only redraws the countdown, which is not announced. The network
    /// coming back or the tab becoming visible ends the wait at once. `false`: stopped.
    async fn wait_to_reconnect(
        &self,
        delay: Duration,
        wakes: &mut mpsc::UnboundedReceiver<Wake>,
    ) -> bool {
        let until = js_sys::Date::now() + delay.as_secs_f64() * 1000.0;
        let mut wait = TimeoutFuture::new(millis(delay)).fuse();
        let mut redraw = IntervalStream::new(1000).fuse();
        loop {
            let left = ((until - js_sys::Date::now()) / 1000.0).max(0.0);
            if self.offline.get() {
                self.page.set_status(&Status::Offline);
            } else {
                self.page.set_status(&Status::Reconnecting {
                    seconds: left.ceil() as u32,
                });
            }
            futures::select_biased! {
                () = wait => return true,
                wake = wakes.next() => match wake {
                    Some(Wake::Online | Wake::Visible) => return true,
                    Some(Wake::Stop) | None => return false,
                    Some(Wake::Queued | Wake::ReconnectClicked | Wake::Offline | Wake::Typed) => {}
                },
                _ = redraw.next() => {}
            }
        }
    }

    /// Shows what waits, and has it kept for a reload.
    fn show_waiting(&self) {
        let waiting = if let Some(view) = &self.room {
            let room = view.room.borrow();
            self.page.set_waiting(&room.waiting().to_string());
            !room.is_empty()
        } else {
            let outbox = self.outbox.borrow();
            let waiting = outbox.waiting();
            let text = if self.ended_by_server.get() && !outbox.is_empty() {
                format!("{waiting}: the server ended the conversation, press Reconnect to send")
            } else {
                waiting.to_string()
            };
            self.page.set_waiting(&text);
            !outbox.is_empty()
        };
        self.guard_leaving(waiting);
        self.save_soon();
    }

    /// Asks the browser to confirm leaving while something waits, and only then.
    fn guard_leaving(&self, waiting: bool) {
        let mut guard = self.leave_guard.borrow_mut();
        if !waiting {
            guard.take();
        } else if guard.is_none() {
            let this = self.this.clone();
            *guard = self.page.on_leave(move || {
                this.upgrade().is_some_and(|client| {
                    !client.outbox.borrow().is_empty()
                        || client
                            .room
                            .as_ref()
                            .is_some_and(|view| !view.room.borrow().is_empty())
                })
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
        let (key, copy, count) = if let Some(view) = &self.room {
            let room = view.room.borrow();
            (view.key.clone(), Some(room.save()), room.len())
        } else if let Some(url) = &self.saved_for {
            let outbox = self.outbox.borrow();
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

/// The close code the client sends when it stops on purpose.
const NORMAL_CLOSURE: u16 = 1000;

/// The times [`next_turn`] waits for (`Date.now()` values in milliseconds).
#[derive(Debug, Clone, Copy)]
struct Timers {
    /// The reply deadline.
    deadline: Option<f64>,
    /// The end of the pause the server asked for.
    retry_at: Option<f64>,
    /// When the token is due for a refresh.
    refresh_at: Option<f64>,
    /// When someone's "is typing" ends.
    redraw_at: Option<f64>,
}

/// Waits for the open socket's next event, the page's next wake, one of the `timers`, or the
/// token URL's answer to a refresh, whichever comes first; socket events win a tie, so an
/// answer that arrives at the deadline still counts.
async fn next_turn(
    socket: &mut Socket,
    wakes: &mut mpsc::UnboundedReceiver<Wake>,
    timers: Timers,
    refreshing: &mut Option<LocalBoxFuture<'_, TokenAnswer>>,
) -> Turn {
    let no_reply = until(timers.deadline).fuse();
    let retry = until(timers.retry_at).fuse();
    let refresh = until(timers.refresh_at).fuse();
    let redraw = until(timers.redraw_at).fuse();
    let refreshed = async {
        match refreshing.as_mut() {
            Some(asked) => asked.await,
            None => future::pending().await,
        }
    }
    .fuse();
    let event = socket.next_event().fuse();
    futures::pin_mut!(no_reply, retry, refresh, redraw, refreshed, event);
    futures::select_biased! {
        event = event => Turn::Socket(event),
        wake = wakes.next() => Turn::Wake(wake),
        () = no_reply => Turn::NoReply,
        () = retry => Turn::RetryDue,
        answer = refreshed => Turn::Refreshed(answer),
        () = refresh => Turn::RefreshDue,
        () = redraw => Turn::Redraw,
    }
}

/// What follows the step before connecting.
enum Step {
    /// Connect.
    Go,
    /// Start over (the user pressed Reconnect, or the wait after a failure is over).
    Again,
    /// [`Running::stop`] asked to end.
    Stopped,
}

/// A token closer to its expiry than this is not used for a new connection: another is
/// asked for first.
const MIN_TOKEN_LIFE_MILLIS: f64 = 5_000.0;

/// `work`'s result, or `None` when [`Running::stop`] asks to end first; other wakes are of no
/// concern while it runs (what is queued goes out once connected).
async fn unless_stopped<T>(
    work: impl Future<Output = T>,
    wakes: &mut mpsc::UnboundedReceiver<Wake>,
) -> Option<T> {
    let work = work.fuse();
    futures::pin_mut!(work);
    loop {
        futures::select_biased! {
            done = work => return Some(done),
            wake = wakes.next() => {
                if matches!(wake, Some(Wake::Stop) | None) {
                    return None;
                }
            }
        }
    }
}

/// Resolves at `at` (a `Date.now()` in milliseconds); never for `None`. A browser timer
/// takes at most 2^31 - 1 ms (24.8 days; past it, it fires at once): a later time is waited
/// for in steps.
async fn until(at: Option<f64>) {
    let Some(at) = at else {
        return future::pending::<()>().await;
    };
    loop {
        let left = at - js_sys::Date::now();
        if left <= 0.0 {
            return;
        }
        TimeoutFuture::new(left.min(f64::from(i32::MAX)) as u32).await;
    }
}

/// A server time as the reader's clock shows it.
fn clock_time(millis: u64) -> String {
    let offset_minutes = -js_sys::Date::new_0().get_timezone_offset() as i64;
    room::clock_time(millis, offset_minutes)
}

/// Waits until the Reconnect button is pressed (`true`) or the client is stopped (`false`);
/// other wakes change nothing while closed.
async fn wait_for_click(wakes: &mut mpsc::UnboundedReceiver<Wake>) -> bool {
    loop {
        match wakes.next().await {
            Some(Wake::ReconnectClicked) => return true,
            Some(Wake::Stop) | None => return false,
            Some(Wake::Queued | Wake::Online | Wake::Offline | Wake::Visible | Wake::Typed) => {}
        }
    }
}

/// Waits until the browser is online again, the user asks to reconnect anyway, or the longest
/// backoff has passed (`true`: `navigator.onLine` is sometimes wrong, and a page that believed
/// it would never try again), or the client is stopped (`false`).
async fn wait_until_online(wakes: &mut mpsc::UnboundedReceiver<Wake>) -> bool {
    let mut anyway = TimeoutFuture::new(millis(client_core::backoff::MAX_WINDOW)).fuse();
    loop {
        futures::select_biased! {
            wake = wakes.next() => match wake {
                Some(Wake::Online | Wake::ReconnectClicked) => return true,
                Some(Wake::Stop) | None => return false,
                Some(Wake::Queued | Wake::Offline | Wake::Visible | Wake::Typed) => {}
            },
            () = anyway => return true,
        }
    }
}

/// The start of `text`, quoted, for a notice about it (shown as text: nothing to escape).
fn preview(text: &str) -> String {
    match client_core::shown::preview(text) {
        (start, true) => format!("\"{start}…\""),
        (whole, false) => format!("\"{whole}\""),
    }
}

/// A duration as a browser timer's milliseconds.
fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}
