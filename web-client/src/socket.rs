//! The browser WebSocket, through gloo-net. The only module that knows gloo-net.
//!
//! gloo-net's quirks, handled here once: every close (clean or not) arrives as
//! `Err(ConnectionClose(..))`, an error event as `Err(ConnectionError)` just before it, and
//! sending into a socket that is closing or closed does not fail: the browser drops the data.
//! So [`Socket::send_text`] refuses unless the socket is open, and callers keep the message.

use std::future::poll_fn;
use std::pin::Pin;

use futures::{Sink, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, State, WebSocketError};

/// Close code browsers report when a connection ends without a close frame.
pub const ABNORMAL_CLOSURE: u16 = 1006;

/// What the server sent, or that it has gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketEvent {
    Text(String),
    Binary(usize),
    Closed { code: u16, reason: String },
}

/// One browser WebSocket, owned by the task that talks over it.
pub struct Socket(WebSocket);

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Socket").field(&self.0.state()).finish()
    }
}

impl Socket {
    /// Starts connecting to `url`; fails at once only for a malformed URL.
    pub fn open(url: &str) -> Result<Socket, String> {
        WebSocket::open(url)
            .map(Socket)
            .map_err(|error| error.to_string())
    }

    /// Resolves once the socket has left the connecting state: `true` if it is open.
    pub async fn opened(&mut self) -> bool {
        // gloo's sink is ready once the browser fired `open` or `error`.
        let _ = poll_fn(|cx| Pin::new(&mut self.0).poll_ready(cx)).await;
        self.is_open()
    }

    pub fn is_open(&self) -> bool {
        matches!(self.0.state(), State::Open)
    }

    /// The extensions the server accepted (`WebSocket.extensions`).
    pub fn extensions(&self) -> String {
        self.0.extensions()
    }

    /// Sends a text message now if the socket is open; `false` means it was not sent.
    pub fn send_text(&mut self, text: &str) -> bool {
        self.is_open()
            && Pin::new(&mut self.0)
                .start_send(Message::Text(text.to_owned()))
                .is_ok()
    }

    /// The next event; after [`SocketEvent::Closed`] the socket is finished. Cancel-safe:
    /// dropping the future loses no event.
    pub async fn next_event(&mut self) -> SocketEvent {
        loop {
            return match self.0.next().await {
                Some(Ok(Message::Text(text))) => SocketEvent::Text(text),
                Some(Ok(Message::Bytes(bytes))) => SocketEvent::Binary(bytes.len()),
                Some(Err(WebSocketError::ConnectionClose(close))) => SocketEvent::Closed {
                    code: close.code,
                    reason: close.reason,
                },
                // An error event is always followed by the close event that says more.
                Some(Err(WebSocketError::ConnectionError)) => continue,
                Some(Err(error)) => SocketEvent::Closed {
                    code: ABNORMAL_CLOSURE,
                    reason: error.to_string(),
                },
                None => SocketEvent::Closed {
                    code: ABNORMAL_CLOSURE,
                    reason: String::new(),
                },
            };
        }
    }

    /// Closes with an application code and reason, without waiting for the server: the
    /// browser finishes the closing handshake, or gives up on it, on its own.
    pub fn close(self, code: u16, reason: &str) {
        // Fails only for a code outside 1000 and 3000-4999 or a reason over 123 bytes, which
        // the callers' constants rule out; the socket is dropped (and closed) either way.
        let _ = self.0.close(Some(code), Some(reason));
    }
}
