//! Reference server for the benchmark: fastwebsockets on hyper, the same routes, deciding its
//! replies with the project's own `server::rules` (so only the WebSocket engine differs).
//! `/mirror` echoes the frame it read as is, the way fastwebsockets' own echo example does.

use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, WebSocketError};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_tungstenite::tungstenite::Message;
use hyper_util::rt::TokioIo;
use server::rules::{App, Reply};

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
        write(&mut socket, greeting).await?;
    }
    loop {
        let frame = socket.read_frame().await?;
        let message = match frame.opcode {
            OpCode::Close => return Ok(()),
            _ if app == App::Mirror && matches!(frame.opcode, OpCode::Text | OpCode::Binary) => {
                socket.write_frame(frame).await?;
                continue;
            }
            OpCode::Text => match String::from_utf8(frame.payload.to_vec()) {
                Ok(text) => Message::text(text),
                Err(_) => return Ok(()),
            },
            OpCode::Binary => Message::binary(frame.payload.to_vec()),
            OpCode::Continuation | OpCode::Ping | OpCode::Pong => continue,
        };
        match app.reply(message) {
            Reply::Nothing => {}
            Reply::Once(reply) => write(&mut socket, reply).await?,
            Reply::Repeat(reply, count) => {
                for _ in 0..count {
                    write(&mut socket, reply.clone()).await?;
                }
            }
            Reply::Close => {
                socket.write_frame(Frame::close(1000, b"")).await?;
                return Ok(());
            }
        }
    }
}

async fn write(socket: &mut Socket, message: Message) -> Result<(), WebSocketError> {
    let frame = match &message {
        Message::Text(text) => Frame::text(Payload::Borrowed(text.as_bytes())),
        Message::Binary(bytes) => Frame::binary(Payload::Borrowed(bytes)),
        _ => return Ok(()),
    };
    socket.write_frame(frame).await
}
