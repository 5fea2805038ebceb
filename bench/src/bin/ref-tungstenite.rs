//! Reference server for the benchmark: plain tokio-tungstenite with default settings, the
//! naive way: every reply is its own `send` (one flush, one syscall each). Same routes and the
//! project's own `rules` crate.

use futures_util::{SinkExt, StreamExt};
use rules::{App, Reply};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    bench::serve_forever(serve).await
}

// The callback's error type (a whole HTTP response) is fixed by tungstenite's `Callback` trait.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream) {
    let mut app = App::Mirror;
    let callback = |request: &Request, response: Response| {
        app = App::from_path(request.uri().path()).unwrap_or(App::Mirror);
        Ok(response)
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    if let Some(greeting) = app.greeting() {
        let _ = socket.send(Message::text(greeting)).await;
    }
    while let Some(Ok(message)) = socket.next().await {
        let reply = match &message {
            Message::Text(text) => app.reply_to_text(text),
            Message::Binary(_) => app.reply_to_binary(),
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {
                Reply::Nothing
            }
        };
        let sent = match reply {
            Reply::Nothing => Ok(()),
            Reply::Send(text) => socket.send(Message::text(text)).await,
            Reply::SendBack { times } => {
                let mut result = Ok(());
                for _ in 0..times {
                    result = socket.send(message.clone()).await;
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            Reply::Close => {
                let _ = socket.close(None).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}
