//! Wiring: the page's events become [`Wake`]s for one connection task, which opens the
//! socket, sends what the outbox offers, reads the answers, notices a server that stopped
//! answering, and reconnects. The outbox decides what to send and when a message is done; this
//! module only moves messages between it, the socket and the page.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt, future};
use gloo_events::EventListener;
use gloo_timers::future::{IntervalStream, TimeoutFuture};
use wasm_bindgen_futures::spawn_local;

use crate::backoff::Backoff;
use crate::dom::Page;
use crate::outbox::{MAX_MESSAGE_BYTES, OUTBOX_CAPACITY, Outbox, PushError, Received};
use crate::socket::{Socket, SocketEvent};
use crate::status::{
    AfterClose, NO_REPLY, Status, after_close, close_notice, no_reply_notice, no_reply_reason,
    open_timeout_reason,
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
    /// The tab became visible.
    Visible,
}

/// How a connection ended.
#[derive(Debug)]
enum Ending {
    /// The socket closed with this code and reason.
    Closed { code: u16, reason: String },
    /// The client gave up on a server that did not answer; the notice says so.
    GaveUp { notice: String },
}

/// What woke the connection task while a socket is open.
#[derive(Debug)]
enum Turn {
    Socket(SocketEvent),
    Wake(Option<Wake>),
    NoReply,
}

/// Everything the connection task and the event handlers share. Single-threaded: `RefCell`
/// borrows are never held across an `await`.
#[derive(Debug)]
pub struct Client {
    page: Page,
    outbox: RefCell<Outbox>,
    transcript: RefCell<Transcript>,
    wakes: mpsc::UnboundedSender<Wake>,
}

impl Client {
    /// Starts the client on `page`. Runs for the life of the page, and so do its event
    /// listeners: with settings that cannot work (`Err`, a malformed `?ws=`) the page says
    /// what is wrong, and the form still never submits natively.
    pub fn start(page: Page, settings: Result<Settings, String>) {
        let (wakes, mut wakes_rx) = mpsc::unbounded();
        let app = settings
            .as_ref()
            .map_or(DEFAULT_APP, |settings| settings.app);
        let client = Rc::new(Client {
            page,
            outbox: RefCell::new(Outbox::new(app)),
            transcript: RefCell::default(),
            wakes,
        });
        let listeners = Rc::clone(&client).listen();
        client.page.focus_input();
        spawn_local(async move {
            // The listeners live as long as this task, which never ends.
            let _listeners = listeners;
            match settings {
                Ok(settings) => client.stay_connected(&settings, &mut wakes_rx).await,
                Err(error) => client.cannot_connect(error, &mut wakes_rx).await,
            }
        });
    }

    /// Turns the page's events into wakes.
    fn listen(self: Rc<Self>) -> Vec<EventListener> {
        let wake = |wake: Wake| {
            let wakes = self.wakes.clone();
            // Fails only once the task is gone, and then there is nobody to wake.
            move || drop(wakes.unbounded_send(wake))
        };
        let mut listeners = vec![
            self.page.on_reconnect(wake(Wake::ReconnectClicked)),
            self.page.on_visible(wake(Wake::Visible)),
        ];
        listeners.extend(self.page.on_online(wake(Wake::Online)));
        listeners.push(self.page.on_submit({
            let client = Rc::clone(&self);
            move || client.submit()
        }));
        listeners
    }

    /// The form was submitted: queue the input, or say why not and keep the text.
    fn submit(&self) {
        let text = self.page.input_value();
        let pushed = self.outbox.borrow_mut().push(text);
        match pushed {
            Ok(()) => {
                self.page.clear_input();
                let _ = self.wakes.unbounded_send(Wake::Queued);
                self.show_waiting();
            }
            // Nothing to send; nothing to say either.
            Err(PushError::Empty) => {}
            Err(PushError::TooLong { bytes }) => self.notice(format!(
                "This message is {bytes} bytes; the server accepts at most \
                 {MAX_MESSAGE_BYTES}. It was kept in the input: shorten it and send again."
            )),
            Err(PushError::Full) => self.notice(format!(
                "{OUTBOX_CAPACITY} messages are already waiting to be sent or answered; this \
                 one was kept in the input. Send it again once the connection is back."
            )),
        }
    }

    /// The page's settings cannot work: say so, and keep queueing what the user types.
    async fn cannot_connect(&self, error: String, wakes: &mut mpsc::UnboundedReceiver<Wake>) {
        self.notice(format!(
            "Cannot connect: {error}. Messages typed here wait until the page is loaded with a \
             working address."
        ));
        self.page.set_status(&Status::Failed { reason: error });
        while wakes.next().await.is_some() {}
    }

    /// Connects, talks until the connection ends, then reconnects or waits for the user.
    async fn stay_connected(&self, settings: &Settings, wakes: &mut mpsc::UnboundedReceiver<Wake>) {
        let mut backoff = Backoff::default();
        loop {
            self.page.set_status(&Status::Connecting);
            let ending = match Socket::open(&settings.url) {
                Ok(socket) => self.converse(socket, settings, &mut backoff, wakes).await,
                // A malformed URL will not get better by retrying.
                Err(error) => {
                    let error = format!("{}: {error}", settings.url);
                    return self.cannot_connect(error, wakes).await;
                }
            };
            self.outbox.borrow_mut().connection_closed();
            self.show_waiting();
            match ending {
                Ending::Closed { code, reason } => {
                    if let Some(text) = close_notice(code, &reason) {
                        self.notice(text);
                    }
                    match after_close(code) {
                        AfterClose::StayClosed => {
                            self.page.set_status(&Status::Closed { code, reason });
                            wait_for_click(wakes).await;
                            backoff.reset();
                        }
                        AfterClose::Reconnect => {
                            let delay = backoff.next_delay(js_sys::Math::random());
                            self.wait_to_reconnect(delay, wakes).await;
                        }
                    }
                }
                Ending::GaveUp { notice } => {
                    self.notice(notice);
                    let delay = backoff.next_delay(js_sys::Math::random());
                    self.wait_to_reconnect(delay, wakes).await;
                }
            }
        }
    }

    /// One connection, from opening to its end. While a message waits for its answer and no
    /// frame arrives for the reply timeout, the server is taken for hung and the client closes.
    async fn converse(
        &self,
        mut socket: Socket,
        settings: &Settings,
        backoff: &mut Backoff,
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
            return Ending::GaveUp {
                notice: format!("Cannot connect: {reason}."),
            };
        };
        if opened {
            backoff.reset();
            self.outbox.borrow_mut().connection_opened();
            let extensions = socket.extensions();
            self.page.show_extensions(&extensions);
            self.page.set_status(&Status::Open {
                compressed: extensions.starts_with("permessage-deflate"),
            });
            self.send_waiting(&mut socket);
        }
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
                    self.receive(text);
                }
                Turn::Socket(SocketEvent::Binary(length)) => {
                    progress_at = js_sys::Date::now();
                    self.notice(format!("The server sent {length} bytes of binary data."));
                }
                Turn::Socket(SocketEvent::Closed { code, reason }) => {
                    self.outbox.borrow_mut().received_close(code);
                    return Ending::Closed { code, reason };
                }
                Turn::Wake(Some(Wake::Queued)) => {
                    if !self.outbox.borrow().awaiting_reply() {
                        progress_at = js_sys::Date::now();
                    }
                    self.send_waiting(&mut socket);
                }
                // Nothing to reconnect while connected. The channel cannot close: this
                // client holds its sender.
                Turn::Wake(Some(Wake::ReconnectClicked | Wake::Online | Wake::Visible) | None) => {}
                Turn::NoReply => {
                    socket.close(NO_REPLY, &no_reply_reason(timeout));
                    return Ending::GaveUp {
                        notice: no_reply_notice(timeout),
                    };
                }
            }
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
            self.record(speaker, message.text);
        }
        self.show_waiting();
    }

    /// A text from the server: shown, and counted against the oldest unanswered message.
    fn receive(&self, text: String) {
        let received = self.outbox.borrow_mut().received_text(&text);
        self.record(Speaker::Server, text);
        match received {
            Received::Answer { complete: true } => self.show_waiting(),
            Received::Answer { complete: false } | Received::Greeting | Received::Unexpected => {}
        }
    }

    /// Waits `delay` before the next attempt, showing "Reconnecting in N s". One timer runs
    /// the whole wait (browsers throttle chains of short timers in background tabs); the
    /// once-a-second refresh only redraws the countdown. The network coming back or the tab
    /// becoming visible ends the wait at once.
    async fn wait_to_reconnect(&self, delay: Duration, wakes: &mut mpsc::UnboundedReceiver<Wake>) {
        let until = js_sys::Date::now() + delay.as_secs_f64() * 1000.0;
        let mut wait = TimeoutFuture::new(millis(delay)).fuse();
        let mut redraw = IntervalStream::new(1000).fuse();
        loop {
            let left = ((until - js_sys::Date::now()) / 1000.0).max(0.0);
            self.page.set_status(&Status::Reconnecting {
                seconds: left.ceil() as u32,
            });
            futures::select_biased! {
                () = wait => return,
                wake = wakes.next() => match wake {
                    Some(Wake::Online | Wake::Visible) | None => return,
                    Some(Wake::Queued | Wake::ReconnectClicked) => {}
                },
                _ = redraw.next() => {}
            }
        }
    }

    fn show_waiting(&self) {
        self.page.set_waiting(self.outbox.borrow().waiting());
    }

    fn record(&self, speaker: Speaker, text: String) {
        let entry = Entry { speaker, text };
        let evicted = self.transcript.borrow_mut().push(entry.clone());
        self.page.append(&entry, evicted);
    }

    fn notice(&self, text: String) {
        self.record(Speaker::Notice, text);
    }
}

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

/// Waits until the Reconnect button is pressed; other wakes change nothing while closed.
async fn wait_for_click(wakes: &mut mpsc::UnboundedReceiver<Wake>) {
    loop {
        match wakes.next().await {
            Some(Wake::ReconnectClicked) | None => return,
            Some(Wake::Queued | Wake::Online | Wake::Visible) => {}
        }
    }
}

/// A duration as a browser timer's milliseconds.
fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}
