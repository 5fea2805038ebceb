//! Wiring: the page's events become [`Wake`]s for one connection task, which opens the
//! socket, sends what the outbox offers, reads the answers, notices a server that stopped
//! answering, and reconnects. The outbox decides what to send and when a message is done (or
//! given up); this module only moves messages between it, the socket and the page, and keeps
//! the outbox in the tab's `sessionStorage` so a reload loses nothing.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, StreamExt, future};
use gloo_events::EventListener;
use gloo_timers::future::{IntervalStream, TimeoutFuture};
use wasm_bindgen_futures::spawn_local;

use crate::backoff::Backoff;
use crate::dom::{Page, warn};
use crate::outbox::{
    CloseMeant, GivenUp, MAX_MESSAGE_BYTES, MessageId, OUTBOX_CAPACITY, Outbox, PushError, Received,
};
use crate::saved;
use crate::socket::{Socket, SocketEvent};
use crate::status::{
    AfterClose, NO_REPLY, Status, after_close, cannot_connect_notice, close_notice,
    no_reply_notice, no_reply_reason, not_opened_reason, open_timeout_reason,
};
use crate::transcript::{Entry, Speaker, Transcript};
use crate::url::{DEFAULT_APP, Settings};

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
}

impl Client {
    /// Starts the client on `page`. It runs until [`Running::stop`], and so do its event
    /// listeners: with settings that cannot work (`Err`, a malformed `?ws=`) the page says
    /// what is wrong, and the form still never submits natively.
    pub fn start(page: Page, settings: Result<Settings, String>) -> Running {
        let (wakes, mut wakes_rx) = mpsc::unbounded();
        let (ended_tx, ended) = oneshot::channel();
        let (app, max_message_bytes) = settings
            .as_ref()
            .map_or((DEFAULT_APP, MAX_MESSAGE_BYTES), |settings| {
                (settings.app, settings.max_message_bytes)
            });
        let client = Rc::new(Client {
            offline: Cell::new(!page.is_online()),
            page,
            outbox: RefCell::new(Outbox::new(app, max_message_bytes)),
            transcript: RefCell::default(),
            wakes: wakes.clone(),
            saved_for: settings.as_ref().ok().map(|settings| settings.url.clone()),
            ended_by_server: Cell::new(false),
        });
        client.restore();
        let listeners = Rc::clone(&client).listen();
        client.page.focus_input();
        spawn_local(async move {
            {
                // The listeners live as long as this task.
                let _listeners = listeners;
                match settings {
                    Ok(settings) => client.stay_connected(&settings, &mut wakes_rx).await,
                    Err(error) => client.cannot_connect(error, &mut wakes_rx).await,
                }
            }
            // Nobody waits for it when the page dropped its handle.
            let _ = ended_tx.send(());
        });
        Running { wakes, ended }
    }

    /// Turns the page's events into wakes.
    fn listen(self: Rc<Self>) -> Vec<EventListener> {
        let wake = |wake: Wake| {
            let wakes = self.wakes.clone();
            // Fails only once the task is gone, and then there is nobody to wake.
            move || drop(wakes.unbounded_send(wake))
        };
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
            self.page.on_visible(wake(Wake::Visible)),
        ];
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
        listeners.extend(self.page.on_leave({
            let client = Rc::clone(&self);
            move || !client.outbox.borrow().is_empty()
        }));
        listeners.push(self.page.on_input({
            let client = Rc::clone(&self);
            move || client.check_input()
        }));
        listeners.push(self.page.on_submit({
            let client = Rc::clone(&self);
            move || client.submit()
        }));
        listeners
    }

    /// Puts back what this tab's previous page saved: sent first on the first connection.
    fn restore(&self) {
        let Some(url) = &self.saved_for else {
            return;
        };
        let Some(saved) = self.page.saved_outbox() else {
            return;
        };
        let capacity = OUTBOX_CAPACITY;
        let messages = match saved::decode(url, &saved, capacity) {
            Ok(messages) => messages,
            Err(why) => {
                warn(&format!("The saved messages were ignored: {why}."));
                self.page.save_outbox(None);
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

    /// The input changed: say at once when it is too long to send, before Send is pressed.
    fn check_input(&self) {
        let text = self.page.input_value();
        let checked = self.outbox.borrow().check_length(&text);
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
            // Taken out first: the borrow must end before the page is updated.
            let given_up = self.outbox.borrow_mut().connection_closed();
            if let Some(given_up) = given_up {
                self.show_given_up(&given_up);
            }
            self.show_waiting();
            let reconnect = match ending {
                Ending::Stopped => return,
                Ending::Closed { code, reason } => match after_close(code) {
                    AfterClose::StayClosed => {
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
                    AfterClose::Reconnect => true,
                },
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
        let extensions = socket.extensions();
        self.page.show_extensions(&extensions);
        let compressed = extensions.starts_with("permessage-deflate");
        self.show_open(compressed);
        self.send_waiting(&mut socket);
        // When the oldest unanswered message last saw progress: it was sent, or a frame came.
        let mut progress_at = js_sys::Date::now();
        loop {
            let deadline = self
                .outbox
                .borrow()
                .awaiting_reply()
                .then(|| progress_at + millis(timeout) as f64);
            match next_turn(&mut socket, wakes, deadline).await {
                Turn::Socket(SocketEvent::Text(text)) => {
                    progress_at = js_sys::Date::now();
                    self.receive(text, backoff);
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
                    if !self.outbox.borrow().awaiting_reply() {
                        progress_at = js_sys::Date::now();
                    }
                    self.send_waiting(&mut socket);
                }
                Turn::Wake(Some(Wake::Offline)) => self.page.set_status(&Status::Offline),
                Turn::Wake(Some(Wake::Online)) => self.show_open(compressed),
                Turn::Wake(Some(Wake::Stop)) => {
                    socket.close(NORMAL_CLOSURE, "the page stopped the client");
                    return Ending::Stopped;
                }
                // Nothing to reconnect while connected. The channel cannot close: this
                // client holds its sender.
                Turn::Wake(Some(Wake::ReconnectClicked | Wake::Visible) | None) => {}
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

    /// Sends what the outbox offers, in order, while the socket takes it.
    fn send_waiting(&self, socket: &mut Socket) {
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
                    Some(Wake::Queued | Wake::ReconnectClicked | Wake::Offline) => {}
                },
                _ = redraw.next() => {}
            }
        }
    }

    /// Shows what waits, and keeps it for a reload.
    fn show_waiting(&self) {
        let outbox = self.outbox.borrow();
        let waiting = outbox.waiting();
        let text = if self.ended_by_server.get() && !outbox.is_empty() {
            format!("{waiting}: the server ended the conversation, press Reconnect to send")
        } else {
            waiting.to_string()
        };
        self.page.set_waiting(&text);
        if let Some(url) = &self.saved_for {
            if outbox.is_empty() {
                self.page.save_outbox(None);
            } else {
                self.page
                    .save_outbox(Some(&saved::encode(url, &outbox.texts())));
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

/// Waits for the open socket's next event, the page's next wake, or the reply deadline (a
/// `Date.now()` in milliseconds), whichever comes first; socket events win a tie, so an answer
/// that arrives at the deadline still counts.
async fn next_turn(
    socket: &mut Socket,
    wakes: &mut mpsc::UnboundedReceiver<Wake>,
    deadline: Option<f64>,
) -> Turn {
    let no_reply = async {
        match deadline {
            Some(at) => {
                let left = (at - js_sys::Date::now()).max(0.0);
                TimeoutFuture::new(left.min(f64::from(u32::MAX)) as u32).await;
            }
            None => future::pending::<()>().await,
        }
    }
    .fuse();
    let event = socket.next_event().fuse();
    futures::pin_mut!(no_reply, event);
    futures::select_biased! {
        event = event => Turn::Socket(event),
        wake = wakes.next() => Turn::Wake(wake),
        () = no_reply => Turn::NoReply,
    }
}

/// Waits until the Reconnect button is pressed (`true`) or the client is stopped (`false`);
/// other wakes change nothing while closed.
async fn wait_for_click(wakes: &mut mpsc::UnboundedReceiver<Wake>) -> bool {
    loop {
        match wakes.next().await {
            Some(Wake::ReconnectClicked) => return true,
            Some(Wake::Stop) | None => return false,
            Some(Wake::Queued | Wake::Online | Wake::Offline | Wake::Visible) => {}
        }
    }
}

/// Waits until the browser is online again or the user asks to reconnect anyway (`true`), or
/// the client is stopped (`false`).
async fn wait_until_online(wakes: &mut mpsc::UnboundedReceiver<Wake>) -> bool {
    loop {
        match wakes.next().await {
            Some(Wake::Online | Wake::ReconnectClicked) => return true,
            Some(Wake::Stop) | None => return false,
            Some(Wake::Queued | Wake::Offline | Wake::Visible) => {}
        }
    }
}

/// A duration as a browser timer's milliseconds.
fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}
