//! Reference server for the rooms benchmark: the pattern a Rust user reaches for, after axum's
//! chat example (`tokio-rs/axum`, `examples/chat`), on plain tokio + tokio-tungstenite.
//!
//! One `tokio::sync::broadcast` channel per room, capacity 100 as in the example, carrying each
//! message's JSON as a `String`. Every socket is split into a sender task and a receiver task,
//! as in the example: the sender task forwards `recv()` to its socket with one `send` (one
//! flush, one write) per message; the receiver task reads requests and publishes. It speaks the
//! rooms protocol of `GET /rooms?name=NAME` with the project's own `room-protocol` crate, so
//! only the fan-out differs from the project's server.
//!
//! Where the example had nothing to copy, the additions are the plainest ones: the publisher's
//! own replies (`joined`, `ack`, errors) go through a bounded `mpsc` channel that the sender
//! task selects on beside the room; a room's offset counter is a `Mutex` held while the message
//! is handed to the channel, so offsets leave in order. The example ends a connection when its
//! receiver lags (`while let Ok(msg) = rx.recv().await`); here a lagging receiver skips what the
//! channel dropped and goes on, the fix its users apply, and the skipped messages are counted.
//! On SIGTERM or Ctrl-C the server prints `skipped N` on stderr and exits, so the benchmark can
//! set its count beside the one the load generator saw.
//!
//! Deliberate limits (it is a benchmark reference, not a product): one room per connection,
//! no history (`recovered` is always false), rooms are never dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
// The longest `text` of a publish, in bytes: the project server's default.
use room_protocol::bounds::MAX_TEXT_BYTES;
use room_protocol::{ClientFrame, ErrorCode, Problem, ServerFrame};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

/// Messages a room's channel holds for its slowest receiver: axum's chat example uses 100.
const CHANNEL_CAPACITY: usize = 100;

/// Replies to one connection's own requests waiting for its sender task.
const DIRECT_CAPACITY: usize = 100;

struct State {
    rooms: Mutex<HashMap<String, Arc<Mutex<Room>>>>,
    /// Changes with every start, as an engine that keeps no history must.
    epoch: String,
    /// Messages receivers missed because they lagged more than the channel holds.
    skipped: AtomicU64,
}

struct Room {
    sender: broadcast::Sender<String>,
    /// Offset of the room's last message (0 before the first).
    last_offset: u64,
}

/// What the receiver task hands the sender task.
enum Outgoing {
    /// A reply to this connection only.
    Text(String),
    /// `joined`: send it, then forward the room from this receiver on.
    Joined {
        text: String,
        receiver: broadcast::Receiver<String>,
    },
    /// `left`: stop forwarding the room, then send it.
    Left(String),
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let state = Arc::new(State {
        rooms: Mutex::new(HashMap::new()),
        epoch: format!("{:x}", started.as_nanos()),
        skipped: AtomicU64::new(0),
    });
    let serving = bench::serve_forever({
        let state = state.clone();
        move |stream| serve(stream, state.clone())
    });
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        result = serving => result,
        _ = terminate.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    eprintln!("skipped {}", state.skipped.load(Ordering::Relaxed));
    result
}

/// The display name of `/rooms?name=NAME`, or the status refusing the request.
fn display_name(request: &Request) -> Result<String, StatusCode> {
    if request.uri().path() != "/rooms" {
        return Err(StatusCode::NOT_FOUND);
    }
    let query = request.uri().query().unwrap_or_default();
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("name="))
        .ok_or(StatusCode::BAD_REQUEST)?;
    let name = percent_encoding::percent_decode_str(&raw.replace('+', " "))
        .decode_utf8()
        .map_err(|_| StatusCode::BAD_REQUEST)?
        .into_owned();
    if room_protocol::names::is_display_name(&name) {
        Ok(name)
    } else {
        Err(StatusCode::BAD_REQUEST)
    }
}

// The callback's error type (a whole HTTP response) is fixed by tungstenite's `Callback` trait.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, state: Arc<State>) {
    static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
    let user = format!("anon-{:016x}", CONNECTIONS.fetch_add(1, Ordering::Relaxed));
    let mut name = String::new();
    let callback = |request: &Request, response: Response| match display_name(request) {
        Ok(found) => {
            name = found;
            Ok(response)
        }
        Err(status) => {
            let mut refusal = ErrorResponse::new(Some(status.to_string()));
            *refusal.status_mut() = status;
            Err(refusal)
        }
    };
    let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    // By splitting, we can send and receive at the same time (as the example says).
    let (mut socket_sender, mut socket_receiver) = socket.split();
    let (direct_tx, mut direct_rx) = mpsc::channel::<Outgoing>(DIRECT_CAPACITY);

    let sender_state = state.clone();
    let mut send_task = tokio::spawn(async move {
        let mut room: Option<broadcast::Receiver<String>> = None;
        loop {
            let text = tokio::select! {
                outgoing = direct_rx.recv() => match outgoing {
                    Some(Outgoing::Text(text)) => text,
                    Some(Outgoing::Joined { text, receiver }) => {
                        room = Some(receiver);
                        text
                    }
                    Some(Outgoing::Left(text)) => {
                        room = None;
                        text
                    }
                    None => break,
                },
                received = receive_from(&mut room) => match received {
                    Ok(text) => text,
                    Err(RecvError::Lagged(skipped)) => {
                        sender_state.skipped.fetch_add(skipped, Ordering::Relaxed);
                        continue;
                    }
                    // Rooms are never dropped while a receiver holds their sender's clone.
                    Err(RecvError::Closed) => break,
                },
            };
            // In any websocket error, break loop.
            if socket_sender.send(Message::text(text)).await.is_err() {
                break;
            }
        }
    });

    let mut recv_task = tokio::spawn(async move {
        let mut joined: Option<(String, Arc<Mutex<Room>>)> = None;
        while let Some(Ok(message)) = socket_receiver.next().await {
            let text = match message {
                Message::Text(text) => text,
                Message::Binary(_) => {
                    let problem = Problem::new(ErrorCode::BadRequest, "frames are JSON text");
                    let reply = Outgoing::Text(problem.into_frame().to_json());
                    if direct_tx.send(reply).await.is_err() {
                        break;
                    }
                    continue;
                }
                // tungstenite answers pings itself; pongs and raw frames carry nothing here.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Close(_) => break,
            };
            let reply = match room_protocol::frames::parse_client(&text) {
                Ok(request) => handle(request, (&user, &name), &state, &mut joined),
                Err(problem) => Outgoing::Text(problem.into_frame().to_json()),
            };
            if direct_tx.send(reply).await.is_err() {
                break;
            }
        }
    });

    // If any one of the tasks run to completion, we abort the other.
    tokio::select! {
        _ = &mut send_task => recv_task.abort(),
        _ = &mut recv_task => send_task.abort(),
    };
}

/// The next message of the joined room; never, while in none.
async fn receive_from(room: &mut Option<broadcast::Receiver<String>>) -> Result<String, RecvError> {
    match room {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Acts on one request and says what to send back.
/// `author`: the connection's user id (`anon-` and 16 hex digits, the length the project
/// server's are, so frames are the same size) and display name.
fn handle(
    request: ClientFrame,
    (user, name): (&str, &str),
    state: &State,
    joined: &mut Option<(String, Arc<Mutex<Room>>)>,
) -> Outgoing {
    let error = |problem: Problem| Outgoing::Text(problem.into_frame().to_json());
    match request {
        // The reference keeps no history and no presence: the fan-out rows ask for neither.
        ClientFrame::Join { room, .. } => {
            if joined.as_ref().is_some_and(|(current, _)| *current != room) {
                return error(
                    Problem::new(
                        ErrorCode::TooManyRooms,
                        "this reference server keeps one room per connection",
                    )
                    .about(Some(&room), None),
                );
            }
            let shared = state
                .rooms
                .lock()
                .expect("no code panics while holding the rooms lock")
                .entry(room.clone())
                .or_insert_with(|| {
                    Arc::new(Mutex::new(Room {
                        sender: broadcast::channel(CHANNEL_CAPACITY).0,
                        last_offset: 0,
                    }))
                })
                .clone();
            // Subscribing under the room's lock: every message after `offset` reaches us.
            let (receiver, offset) = {
                let locked = shared.lock().expect("no code panics holding a room lock");
                (locked.sender.subscribe(), locked.last_offset)
            };
            let text = ServerFrame::Joined {
                room: room.clone(),
                epoch: state.epoch.clone(),
                offset,
                recovered: false,
            }
            .to_json();
            *joined = Some((room, shared));
            Outgoing::Joined { text, receiver }
        }
        ClientFrame::Leave { room } => match joined {
            Some((current, _)) if *current == room => {
                *joined = None;
                Outgoing::Left(ServerFrame::Left { room, reason: None }.to_json())
            }
            _ => error(
                Problem::new(ErrorCode::NotJoined, "not in this room").about(Some(&room), None),
            ),
        },
        ClientFrame::Auth { .. } => error(Problem::new(
            ErrorCode::BadRequest,
            "this reference takes no tokens",
        )),
        ClientFrame::Typing { room } => error(
            Problem::new(ErrorCode::BadRequest, "this reference forwards no typing")
                .about(Some(&room), None),
        ),
        ClientFrame::Publish { room, id, text } => {
            let shared = match joined {
                Some((current, shared)) if *current == room => shared,
                _ => {
                    return error(
                        Problem::new(ErrorCode::NotJoined, "join the room before publishing")
                            .about(Some(&room), Some(&id)),
                    );
                }
            };
            if text.len() > MAX_TEXT_BYTES {
                return error(
                    Problem::new(ErrorCode::TooLong, "the text is longer than 4 KiB")
                        .about(Some(&room), Some(&id)),
                );
            }
            let time = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64);
            let offset = {
                let mut locked = shared.lock().expect("no code panics holding a room lock");
                locked.last_offset += 1;
                let message = ServerFrame::Message {
                    room: room.clone(),
                    offset: locked.last_offset,
                    id: id.clone(),
                    user: user.to_owned(),
                    from: name.to_owned(),
                    text,
                    time,
                };
                // No receivers is not an error: the message simply reaches no one.
                let _ = locked.sender.send(message.to_json());
                locked.last_offset
            };
            Outgoing::Text(ServerFrame::Ack { room, id, offset }.to_json())
        }
    }
}
