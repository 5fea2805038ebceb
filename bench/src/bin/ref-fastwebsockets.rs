//! Reference server for the benchmark: fastwebsockets on hyper, the same routes, deciding its
//! replies with the project's own `rules` crate (so only the WebSocket engine differs).
//! `/mirror` echoes the frame it read as is, the way fastwebsockets' own echo example does.
//!
//! Two ways to write, as fastwebsockets' users do: by default every frame is its own write
//! (`FragmentCollector` over the upgraded stream); with `--batch` the replies to one message
//! gather in a `BufWriter` and leave with one flush, as this project's server sends them.

use bytes::Bytes;
use std::future::Future;

use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, Role, WebSocket, WebSocketError};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rules::{App, Reply};
use tokio::io::BufWriter;

type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// What the serving loop needs of a fastwebsockets socket, so one loop serves both ways.
trait Socket: Send {
    fn read_frame(&mut self)
    -> impl Future<Output = Result<Frame<'static>, WebSocketError>> + Send;
    fn write_frame<'a>(
        &'a mut self,
        frame: Frame<'a>,
    ) -> impl Future<Output = Result<(), WebSocketError>> + Send + 'a;
    /// Sends what the writes gathered; nothing to do when every write went out at once.
    fn flush(&mut self) -> impl Future<Output = Result<(), WebSocketError>> + Send;
}

/// Every frame its own write.
impl Socket for FragmentCollector<Upgraded> {
    fn read_frame(
        &mut self,
    ) -> impl Future<Output = Result<Frame<'static>, WebSocketError>> + Send {
        FragmentCollector::read_frame(self)
    }
    fn write_frame<'a>(
        &'a mut self,
        frame: Frame<'a>,
    ) -> impl Future<Output = Result<(), WebSocketError>> + Send + 'a {
        FragmentCollector::write_frame(self, frame)
    }
    async fn flush(&mut self) -> Result<(), WebSocketError> {
        Ok(())
    }
}

/// Writes gathered in a buffer, sent by `flush`.
impl Socket for WebSocket<BufWriter<Upgraded>> {
    fn read_frame(
        &mut self,
    ) -> impl Future<Output = Result<Frame<'static>, WebSocketError>> + Send {
        WebSocket::read_frame(self)
    }
    fn write_frame<'a>(
        &'a mut self,
        frame: Frame<'a>,
    ) -> impl Future<Output = Result<(), WebSocketError>> + Send + 'a {
        WebSocket::write_frame(self, frame)
    }
    fn flush(&mut self) -> impl Future<Output = Result<(), WebSocketError>> + Send {
        WebSocket::flush(self)
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let batch = std::env::args().any(|arg| arg == "--batch");
    bench::serve_forever(move |stream| async move {
        let _ = http1::Builder::new()
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |request| handle(request, batch)),
            )
            .with_upgrades()
            .await;
    })
    .await
}

async fn handle(
    mut request: Request<Incoming>,
    batch: bool,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let Some(app) = App::from_path(request.uri().path()) else {
        let mut response = Response::new(Empty::new());
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    };
    let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut request)?;
    tokio::spawn(async move {
        let Ok(socket) = upgrade.await else {
            return;
        };
        let _ = if batch {
            let buffered = BufWriter::with_capacity(64 * 1024, socket.into_inner());
            serve(app, WebSocket::after_handshake(buffered, Role::Server)).await
        } else {
            serve(app, FragmentCollector::new(socket)).await
        };
    });
    Ok(response)
}

async fn serve(app: App, mut socket: impl Socket) -> Result<(), WebSocketError> {
    if let Some(greeting) = app.greeting() {
        write_text(&mut socket, greeting).await?;
        socket.flush().await?;
    }
    loop {
        let frame = socket.read_frame().await?;
        let (opcode, payload, reply) = match frame.opcode {
            OpCode::Close => return Ok(()),
            _ if app == App::Mirror && matches!(frame.opcode, OpCode::Text | OpCode::Binary) => {
                // Unmasked on the way out: `WebSocket::read_frame` keeps the client's mask key.
                let echo = Frame::new(true, frame.opcode, None, frame.payload);
                socket.write_frame(echo).await?;
                socket.flush().await?;
                continue;
            }
            OpCode::Text => {
                let payload = frame.payload.to_vec();
                let Ok(text) = std::str::from_utf8(&payload) else {
                    return Ok(());
                };
                let reply = app.reply_to_text(text);
                (OpCode::Text, payload, reply)
            }
            OpCode::Binary => (
                OpCode::Binary,
                frame.payload.to_vec(),
                app.reply_to_binary(),
            ),
            OpCode::Continuation | OpCode::Ping | OpCode::Pong => continue,
        };
        match reply {
            Reply::Nothing => {}
            Reply::SendBack { times } => {
                for _ in 0..times {
                    let copy = Frame::new(true, opcode, None, Payload::Borrowed(&payload));
                    socket.write_frame(copy).await?;
                }
            }
            Reply::Send(text) => write_text(&mut socket, text).await?,
            Reply::Close => {
                socket.write_frame(Frame::close(1000, b"")).await?;
                socket.flush().await?;
                return Ok(());
            }
        }
        socket.flush().await?;
    }
}

async fn write_text(socket: &mut impl Socket, text: &str) -> Result<(), WebSocketError> {
    socket
        .write_frame(Frame::text(Payload::Borrowed(text.as_bytes())))
        .await
}
