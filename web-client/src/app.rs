//! Wiring: the input feeds the outbox; a sender task drains it into the socket while it is
//! open; a connection task reads replies, reconnects with backoff, and shows the status.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use gloo_timers::future::sleep;
use wasm_bindgen_futures::spawn_local;

use crate::backoff::Backoff;
use crate::dom::Page;
use crate::outbox::{MAX_MESSAGE_BYTES, OUTBOX_CAPACITY, Outbox, PushError};
use crate::socket::{Socket, SocketEvent};
use crate::status::{AfterClose, Status, after_close, close_notice};
use crate::transcript::{Entry, Speaker, Transcript};

/// Everything the tasks and event handlers share. Single-threaded: `RefCell` borrows are never
/// held across an `await`.
#[derive(Debug)]
pub struct Client {
    page: Page,
    outbox: RefCell<Outbox>,
    transcript: RefCell<Transcript>,
    /// The current socket, present from the moment it opens until it closes.
    socket: RefCell<Option<Socket>>,
    /// Rung when there may be something to send: a message was queued or a socket opened.
    doorbell: mpsc::UnboundedSender<()>,
}

impl Client {
    /// Starts the client on `page`, talking to `url`. Runs for the life of the page.
    pub fn start(page: Page, url: String) {
        let (doorbell, doorbell_rx) = mpsc::unbounded();
        let (reconnect_tx, reconnect_rx) = mpsc::unbounded();
        let client = Rc::new(Client {
            page,
            outbox: RefCell::default(),
            transcript: RefCell::default(),
            socket: RefCell::new(None),
            doorbell,
        });
        let submit = client.page.on_submit({
            let client = Rc::clone(&client);
            move || client.submit()
        });
        let reconnect = client.page.on_reconnect(move || {
            let _ = reconnect_tx.unbounded_send(());
        });
        client.page.focus_input();
        spawn_local(Rc::clone(&client).send_queued(doorbell_rx));
        spawn_local(async move {
            // The listeners live as long as this task, which is as long as the page.
            let _listeners = (submit, reconnect);
            client.stay_connected(url, reconnect_rx).await;
        });
    }

    /// The form was submitted: queue the input, or say why not and keep the text.
    fn submit(&self) {
        let text = self.page.input_value();
        match self.outbox.borrow_mut().push(text) {
            Ok(()) => self.page.clear_input(),
            // Nothing to send; nothing to say either.
            Err(PushError::Empty) => return,
            Err(PushError::TooLong { bytes }) => {
                self.notice(format!(
                    "This message is {bytes} bytes; the server accepts at most \
                     {MAX_MESSAGE_BYTES}. It was kept in the input: shorten it and send again."
                ));
                return;
            }
            Err(PushError::Full) => {
                self.notice(format!(
                    "{OUTBOX_CAPACITY} messages are already waiting; this one was kept in the \
                     input. Send it again once the connection is back."
                ));
                return;
            }
        }
        let _ = self.doorbell.unbounded_send(());
        self.page.set_queued(self.outbox.borrow().len());
    }

    /// The background sender: each ring drains the outbox, in order, into the open socket.
    /// A message leaves the queue only once the socket has taken it.
    async fn send_queued(self: Rc<Self>, mut doorbell: mpsc::UnboundedReceiver<()>) {
        while doorbell.next().await.is_some() {
            loop {
                let Some(socket) = self.socket.borrow().clone() else {
                    break;
                };
                let Some(text) = self.outbox.borrow().front().map(str::to_owned) else {
                    break;
                };
                if !socket.send_text(&text) {
                    break;
                }
                self.outbox.borrow_mut().pop();
                self.record(Speaker::You, text);
            }
            self.page.set_queued(self.outbox.borrow().len());
        }
    }

    /// Connects, reads until the socket closes, then reconnects or waits for the user.
    async fn stay_connected(&self, url: String, mut reconnect_clicks: mpsc::UnboundedReceiver<()>) {
        let mut backoff = Backoff::default();
        loop {
            self.page.set_status(&Status::Connecting);
            let (code, reason) = match Socket::open(&url) {
                Ok(socket) => self.converse(socket, &mut backoff).await,
                // A malformed URL will not get better by retrying.
                Err(error) => {
                    self.notice(format!("Cannot connect to {url}: {error}"));
                    self.page.set_status(&Status::Closed {
                        code: crate::socket::ABNORMAL_CLOSURE,
                        reason: error,
                    });
                    return;
                }
            };
            if let Some(text) = close_notice(code, &reason) {
                self.notice(text);
            }
            match after_close(code) {
                AfterClose::StayClosed => {
                    self.page.set_status(&Status::Closed { code, reason });
                    if reconnect_clicks.next().await.is_none() {
                        return;
                    }
                    backoff.reset();
                }
                AfterClose::Reconnect => {
                    let delay = backoff.next_delay(js_sys::Math::random());
                    self.count_down(delay).await;
                }
            }
        }
    }

    /// One connection, from open to close; returns the close code and reason.
    async fn converse(&self, socket: Socket, backoff: &mut Backoff) -> (u16, String) {
        if socket.opened().await {
            backoff.reset();
            self.page.set_status(&Status::Open);
            *self.socket.borrow_mut() = Some(socket.clone());
            let _ = self.doorbell.unbounded_send(());
        }
        let closed = loop {
            match socket.next_event().await {
                SocketEvent::Text(text) => self.record(Speaker::Server, text),
                SocketEvent::Binary(length) => {
                    self.notice(format!("The server sent {length} bytes of binary data."));
                }
                SocketEvent::Closed { code, reason } => break (code, reason),
            }
        };
        *self.socket.borrow_mut() = None;
        closed
    }

    /// Shows "Reconnecting in N s" while waiting `delay`.
    async fn count_down(&self, delay: Duration) {
        let mut left = delay;
        while !left.is_zero() {
            let seconds = left.as_secs_f64().ceil() as u32;
            self.page.set_status(&Status::Reconnecting { seconds });
            let step = left.min(Duration::from_secs(1));
            sleep(step).await;
            left -= step;
        }
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
