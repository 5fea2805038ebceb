//! Reference server for the benchmark: fastwebsockets on hyper, the same routes, deciding its
//! replies with the project's own `rules` crate (so only the WebSocket engine differs).
//! `/mirror` echoes the frame it read as is, the way fastwebsockets' own echo example does.

use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, WebSocketError};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rules::{App, Reply};

type Socket = FragmentCollector<TokioIo<hyper::upgrade::Upgraded>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    bench::serve_forever(|stream| async move {
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service_fn(handle))
            .with_upgrades()
            .await;
    })
    .await
}

async fn handle(mut request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let Some(app) = App::from_path(request.uri().path()) else {
        let mut response = Response::new(Empty::new());
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    };
    let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut request)?;
    tokio::spawn(async move {
        if let Ok(socket) = upgrade.await {
            let _ = serve(app, FragmentCollector::new(socket)).await;
        }
    });
    Ok(response)
}

async fn serve(app: App, mut socket: Socket) -> Result<(), WebSocketError> {
    if let Some(greeting) = app.greeting() {
        write_text(&mut socket, greeting).await?;
    }
    loop {
        let frame = socket.read_frame().await?;
        let (opcode, payload, reply) = match frame.opcode {
            OpCode::Close => return Ok(()),
            _ if app == App::Mirror && matches!(frame.opcode, OpCode::Text | OpCode::Binary) => {
                socket.write_frame(frame).await?;
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
                return Ok(());
            }
        }
    }
}

async fn write_text(socket: &mut Socket, text: &str) -> Result<(), WebSocketError> {
    socket
        .write_frame(Frame::text(Payload::Borrowed(text.as_bytes())))
        .await
}
