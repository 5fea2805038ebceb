//! One WebSocket session: reads messages, performs the app's [`Reply`] or the rooms
//! protocol's request ([`Talk`]), writes what the member's rooms queued, pings, and closes with
//! the right code on shutdown, protocol errors and slow clients.
//!
//! The session is generic over its stream (`run_upgraded::<S>`): the connection code hands it
//! the type it gave hyper, so TCP, TLS and any other stream run the same code.
//!
//! The apps and the rooms protocol have a loop each (`drive_app`, `drive_rooms`); what they
//! share is the ending (`run`), the pings (`Pings`) and the writes. A rooms request that waits
//! on the engine never stops its session: the loop polls it beside its other work.
//!
//! Messages that have already arrived are answered in batches of at most
//! [`MAX_MESSAGES_PER_FLUSH`], one flush per batch. A message is read only when the batch has
//! a turn left to answer it, so whatever is read (a message, an error, the end) is dealt with.
//!
//! Every data message is compressed here, where it is made, if permessage-deflate was agreed
//! ([`Compression`]): once per reply, however many copies it has, and once per room message
//! for every member (the room's queue carries the shared compression). The layer under
//! tungstenite (`deflate_stream`) only inflates what the client sends.
//!
//! Every write has a deadline: the send timeout for replies, pings, pongs and the last writes
//! after the client left; [`CLOSE_LINGER`] for a close the server starts. Every ending goes
//! through `shut_down`: what tungstenite and the layers under it still hold is written, then
//! the stream is shut down (TLS close_notify, TCP FIN).
//!
//! Expected endings (the client closes, goes away, or resets) are logged at debug; protocol
//! violations at info with the close code sent; anything else at warn. Each is logged once,
//! here, where the task ends.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_tungstenite::WebSocketStream;
use hyper_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use hyper_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use hyper_tungstenite::tungstenite::{Error as WsError, Message};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, MissedTickBehavior, Sleep, interval_at, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use rules::{App, Reply};

use crate::rooms::{Hold, Member, MemberQueue, Taken, Waiting};

use crate::deflate::Agreement;
use crate::deflate_stream::{DeflateStream, Violation};
use crate::gate::Gate;
use crate::metrics::SessionMetrics;
use crate::outgoing::{Compression, QueuedText};
use crate::read_ahead::ReadAhead;

/// A session's socket: tungstenite over the stream hyper upgraded, whatever it is.
type Socket<S> = WebSocketStream<S>;

/// What a session can run over.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

/// How long a close the server starts may take, from its close frame to the end of the
/// connection. The server keeps reading (and discarding) meanwhile, so the client receives the
/// close code instead of a reset (Chromium reports 1006 without this).
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Most messages answered before a flush, so a client that keeps sending cannot keep its
/// replies (or the shutdown and ping checks) waiting. tokio's cooperative budget also applies.
const MAX_MESSAGES_PER_FLUSH: usize = 64;

/// Timing settings of a session, from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionTiming {
    pub ping_interval: Duration,
    pub send_timeout: Duration,
    /// `--room-flush-interval` (see [`Pacing`]).
    pub room_flush_interval: Duration,
}

/// What a session speaks.
#[derive(Debug)]
pub(crate) enum Talk {
    /// One of the rules apps (`/subscriptions`, `/echo`, `/mirror`).
    App(App),
    /// The rooms protocol (`/rooms`). Boxed: the apps' sessions stay as small as they were.
    Room(Box<Member>),
}

/// What a session needs besides its socket.
#[derive(Debug)]
pub(crate) struct SessionContext {
    pub talk: Talk,
    pub timing: SessionTiming,
    pub shutdown: CancellationToken,
    pub metrics: SessionMetrics,
    /// permessage-deflate, if the client offered it and `--compression` is on.
    pub compression: Option<Agreement>,
}

/// How a session ended, decided in the loop and acted on once after it.
#[derive(Debug)]
enum End {
    /// The closing handshake is under way or done, or the peer is gone: nothing to add, but
    /// what is queued (replies, the reply to a close) is still written.
    Finished,
    /// The server closes normally (reply to `end`, shutdown, missed pong, slow reader).
    Close(CloseCode, &'static str),
    /// The client broke the protocol: send this close, then linger on the raw stream.
    Fail(CloseCode, String),
}

impl End {
    /// The client does not read its replies fast enough (send timeout or full write buffer).
    fn slow_reader() -> End {
        End::Close(CloseCode::Policy, "client too slow to read")
    }
}

/// Runs a session on the connection hyper upgraded from `S`, the stream the connection code
/// gave hyper (`serve_http` is generic over it, and so is everything down to here): TCP, TLS,
/// or anything else, each gets its own session code and its own task type, with no fallback
/// that only another stream type could reach.
///
/// The stream is taken back from hyper, with the bytes the client sent right behind its
/// handshake, rather than used through `Upgraded`, which adds a boxed, dynamically dispatched
/// layer (and its allocation) under every read and write. `ReadAhead` goes under tungstenite
/// where it measurably helps: on plain TCP, a 16 KiB message took five `recv` calls without it
/// and one with it.
///
/// No stream's session needs boxing to keep plain sessions small: each stream type spawns a
/// task of its own type, so a plain TCP session never holds room for rustls's state.
pub(crate) async fn run_upgraded<S: Stream>(
    upgraded: Upgraded,
    config: WebSocketConfig,
    context: SessionContext,
) {
    let parts = upgraded.downcast::<TokioIo<S>>().expect(
        "hyper's HTTP/1 server upgrades the very IO it was given, a `TokioIo<S>` (`serve_http`)",
    );
    let stream = ReadAhead::new(parts.io.into_inner(), &parts.read_buf);
    // hyper's read buffer (8 KiB or more) must not live as long as the session.
    drop(parts.read_buf);
    serve(stream, config, context).await;
}

/// Runs the session on `stream`, under permessage-deflate if it was agreed. The compressed
/// session is boxed: a task is as large as its largest variant, and the compression layer's
/// state would otherwise make every plain session (and every idle socket) larger.
async fn serve<S: Stream>(stream: S, config: WebSocketConfig, context: SessionContext) {
    if context.compression.is_none() {
        return run(start(stream, config).await, context).await;
    }
    // What the session sends is compressed where it is made (`outgoing`); the layer only
    // inflates what the client sends.
    let limit = config.max_message_size.unwrap_or(usize::MAX);
    let stream = DeflateStream::new(stream, limit);
    // The layer hands up inflated messages unmasked; it checks every client frame's mask.
    let config = config.accept_unmasked_frames(true);
    Box::pin(async move { run(start(stream, config).await, context).await }).await;
}

async fn start<S: Stream>(stream: S, config: WebSocketConfig) -> Socket<S> {
    WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await
}

/// Runs a session until it ends. Never panics on anything the client sends.
async fn run<S: Stream>(mut ws: Socket<S>, mut context: SessionContext) {
    let end = drive(&mut ws, &mut context).await;
    // Out of every room before the close: nothing more is queued for a session that ends.
    if let Talk::Room(member) = &mut context.talk {
        member.leave_all();
    }
    // One deadline for everything the ending writes: the send timeout for what was answered,
    // as for any write; `CLOSE_LINGER` from the moment the server starts a close.
    let deadline = match end {
        End::Finished => Instant::now() + context.timing.send_timeout,
        End::Close(code, reason) => {
            tracing::info!(
                code = u16::from(code),
                reason,
                "server closing the connection"
            );
            context.metrics.closed_with(code.into());
            let deadline = Instant::now() + CLOSE_LINGER;
            close_gracefully(&mut ws, code, reason, deadline).await;
            deadline
        }
        End::Fail(code, reason) => {
            tracing::info!(code = u16::from(code), %reason, "closing on protocol error");
            context.metrics.closed_with(code.into());
            let deadline = Instant::now() + CLOSE_LINGER;
            let frame = CloseFrame {
                code,
                reason: truncate_reason(reason).into(),
            };
            // The pipe may be blocked or already broken: the close is best effort, bounded.
            let _ = timeout_at(deadline, ws.close(Some(frame))).await;
            linger(&mut ws, deadline).await;
            deadline
        }
    };
    shut_down(&mut ws, deadline).await;
}

/// Every ending goes through here: what tungstenite still holds (replies to messages read
/// just before the client half-closed, its reply to a close, pongs) is written, then what the
/// stream below holds (TLS buffers what it encrypts), then the stream is shut down: TLS sends
/// close_notify, TCP its FIN. All of it by `deadline` (`timeout_at` tries once even when the
/// deadline has passed, so a stream that can take the bytes always gets them).
async fn shut_down<S: Stream>(ws: &mut Socket<S>, deadline: Instant) {
    let writes = async {
        // After the closing handshake tungstenite writes out its buffer and reports the
        // connection closed, which `flush` takes as done; any other error ends the writing.
        ws.flush().await.map_err(io::Error::other)?;
        let stream = ws.get_mut();
        stream.flush().await?;
        stream.shutdown().await
    };
    match timeout_at(deadline, writes).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "the last writes failed"),
        Err(_elapsed) => tracing::debug!("the last writes timed out"),
    }
}

/// The session loop: returns how the session ends without sending the final close itself.
/// The apps and the rooms protocol each have a loop of their own; both watch shutdown first,
/// ping the client, and answer every message that has already arrived before one flush.
async fn drive<S: Stream>(ws: &mut Socket<S>, context: &mut SessionContext) -> End {
    match context.talk {
        Talk::App(app) => drive_app(ws, app, context).await,
        Talk::Room(_) => drive_rooms(ws, context).await,
    }
}

/// An app's session (`/subscriptions`, `/echo`, `/mirror`): the greeting, then each message's
/// reply, as `App::reply` decides it.
async fn drive_app<S: Stream>(ws: &mut Socket<S>, app: App, context: &mut SessionContext) -> End {
    let timing = context.timing;
    if let Some(greeting) = app.greeting() {
        let greeting = Compression::of(context.compression).message(Message::text(greeting));
        if let Err(end) = send(ws, greeting, timing.send_timeout).await {
            return end;
        }
        context.metrics.sent(1);
    }
    let mut pings = Pings::new(timing);
    // One future for the whole session: a fresh `cancelled()` per message would register and
    // unregister a waiter on the token (a lock) every time round the loop.
    let shutdown = context.shutdown.clone().cancelled_owned();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            // Shutdown first, so a busy client cannot keep the session from seeing it.
            biased;
            () = &mut shutdown => return End::Close(CloseCode::Away, "server shutting down"),
            _ = pings.interval.tick() => {
                if let Err(end) = pings.ping(ws).await {
                    return end;
                }
            }
            incoming = ws.next() => {
                // Answer every message that has already arrived, then flush once: a burst of
                // messages is answered with one write instead of one per message. A message
                // is read only when there is a turn left to answer it: whatever is read (a
                // message, an error, the end) is dealt with, never dropped.
                let mut next = Some(incoming);
                let mut answered = 0;
                while let Some(incoming) = next.take() {
                    let message = match pings.read(incoming) {
                        Ok(message) => message,
                        Err(end) => return end,
                    };
                    if let Err(end) = answer_app(app, context, ws, message).await {
                        // Replies fed so far leave with the close frame, before it.
                        return end;
                    }
                    answered += 1;
                    if answered < MAX_MESSAGES_PER_FLUSH {
                        next = ws.next().now_or_never();
                    }
                }
                if let Err(end) = flush(ws, timing.send_timeout).await {
                    return end;
                }
            }
        }
    }
}

/// A rooms session: the member's requests and what its rooms send, through its one queue. A
/// request that must wait on the engine (Redis) is polled here beside the other work, so the
/// session goes on writing its queue, reading (pongs) and pinging meanwhile; the requests
/// read in the meantime are answered after it, in order.
async fn drive_rooms<S: Stream>(ws: &mut Socket<S>, context: &mut SessionContext) -> End {
    let SessionContext {
        talk: Talk::Room(member),
        timing,
        shutdown,
        metrics,
        compression,
    } = context
    else {
        unreachable!("`drive` hands rooms sessions only here");
    };
    let mut writer = Writer {
        metrics,
        compression: Compression::of(*compression),
        send_timeout: timing.send_timeout,
        pacing: Pacing::new(timing.room_flush_interval),
        fed: false,
    };
    let queue = Arc::clone(member.queue());
    let mut pings = Pings::new(*timing);
    let shutdown = shutdown.clone().cancelled_owned();
    tokio::pin!(shutdown);
    let mut waiting: Option<Waiting> = None;
    let mut held: VecDeque<Message> = VecDeque::new();
    // One wait on the queue, kept across turns of the loop (made again only once it fired),
    // and one buffer to take the queue into: a delivery registers no new waiter and
    // allocates nothing.
    let changed = queue.changed();
    tokio::pin!(changed);
    let mut frames = Vec::new();
    // The socket's read, the pings and shutdown are polled only when their own wakers fired:
    // a wake-up for a delivery polls the queue and nothing else.
    let (read_gate, ping_gate, shutdown_gate) = (Gate::new(), Gate::new(), Gate::new());
    // The time to authenticate, then the token's expiry (with `--auth-key`; never in open
    // mode): reset whenever a request moved it.
    let mut deadline_at = member.deadline();
    let deadline = tokio::time::sleep_until(deadline_at.unwrap_or_else(Instant::now));
    tokio::pin!(deadline);
    let deadline_gate = Gate::new();
    loop {
        if member.deadline() != deadline_at {
            deadline_at = member.deadline();
            if let Some(at) = deadline_at {
                deadline.as_mut().reset(at);
                deadline_gate.open();
            }
        }
        // No gate on reading for a full queue: a request's answers are written as soon as it
        // is answered, so a client that floods is slowed down by its own socket (the write
        // waits, bounded by the send timeout), not by the queue.
        tokio::select! {
            biased;
            () = poll_fn(|cx| shutdown_gate.poll(cx, |cx| shutdown.as_mut().poll(cx))) => {
                return End::Close(CloseCode::Away, "server shutting down");
            }
            _ = poll_fn(|cx| ping_gate.poll(cx, |cx| pings.interval.poll_tick(cx))) => {
                if let Err(end) = pings.ping(ws).await {
                    return end;
                }
            }
            () = poll_fn(|cx| deadline_gate.poll(cx, |cx| deadline.as_mut().poll(cx))),
                if deadline_at.is_some() =>
            {
                let (code, reason) = member.deadline_passed();
                tracing::info!(code, reason, "closing a rooms connection");
                return End::Close(CloseCode::from(code), reason);
            }
            () = &mut changed => {
                changed.set(queue.changed());
                // A busy member's room messages wait for the next tick.
                if writer.pacing.hold(&queue) {
                    continue;
                }
                if let Err(end) = writer.queued(ws, &queue, &mut frames).await {
                    return end;
                }
                if let Err(end) = writer.flush(ws).await {
                    return end;
                }
            }
            () = &mut writer.pacing.due, if writer.pacing.armed => {
                if let Err(end) = writer.queued(ws, &queue, &mut frames).await {
                    return end;
                }
                if let Err(end) = writer.flush(ws).await {
                    return end;
                }
            }
            outcome = wait_for(&mut waiting), if waiting.is_some() => {
                waiting = None;
                member.finish(outcome);
                while waiting.is_none() && let Some(message) = held.pop_front() {
                    waiting = answer_room(member, writer.metrics, &message);
                }
                if let Err(end) = writer.queued(ws, &queue, &mut frames).await {
                    return end;
                }
                if let Err(end) = writer.flush(ws).await {
                    return end;
                }
            }
            incoming = poll_fn(|cx| read_gate.poll(cx, |cx| ws.poll_next_unpin(cx))),
                if held.len() < MAX_MESSAGES_PER_FLUSH =>
            {
                let mut next = Some(incoming);
                let mut answered = 0;
                while let Some(incoming) = next.take() {
                    let message = match pings.read(incoming) {
                        Ok(message) => message,
                        Err(end) => return end,
                    };
                    let is_data = matches!(message, Message::Text(_) | Message::Binary(_));
                    if is_data && (waiting.is_some() || !held.is_empty()) {
                        // Answered once the request before it is.
                        held.push_back(message);
                    } else if let Some(call) = answer_room(member, writer.metrics, &message) {
                        // A control frame answered while a request waits leaves it waiting.
                        waiting = Some(call);
                    }
                    answered += 1;
                    // What a request queued (its answer, a replay, its own published message)
                    // goes into the socket's buffer at once: the queue is the slack for what
                    // other members publish, not for the member's own requests.
                    if let Err(end) = writer.queued(ws, &queue, &mut frames).await {
                        return end;
                    }
                    if answered < MAX_MESSAGES_PER_FLUSH && held.len() < MAX_MESSAGES_PER_FLUSH {
                        next = ws.next().now_or_never();
                    }
                }
                // Read with another waker just now: the next select polls the read again.
                read_gate.open();
                if let Err(end) = writer.flush(ws).await {
                    return end;
                }
            }
        }
    }
}

/// The server's pings and the client's pongs: a ping every `--ping-interval`; a client that
/// has not answered the previous one by then is closed. Only a pong proves the client reads
/// what the server sends: a client that floods pings or messages and never reads cannot
/// answer, and is closed at the next ping (its own pings' pongs would otherwise pile up in its
/// kernel without any write of ours ever having to wait).
struct Pings {
    interval: tokio::time::Interval,
    awaiting_pong: bool,
    send_timeout: Duration,
}

impl Pings {
    fn new(timing: SessionTiming) -> Pings {
        let mut interval = interval_at(Instant::now() + timing.ping_interval, timing.ping_interval);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Pings {
            interval,
            awaiting_pong: false,
            send_timeout: timing.send_timeout,
        }
    }

    /// The interval ticked: a ping, unless the last one is still unanswered.
    async fn ping<S: Stream>(&mut self, ws: &mut Socket<S>) -> Result<(), End> {
        if self.awaiting_pong {
            return Err(End::Close(CloseCode::Away, "no pong received"));
        }
        self.awaiting_pong = true;
        send(ws, Message::Ping(Default::default()), self.send_timeout).await
    }

    /// What the socket gave: a message (a pong noted), or how the session ends.
    fn read(&mut self, incoming: Option<Result<Message, WsError>>) -> Result<Message, End> {
        match incoming {
            Some(Ok(message)) => {
                if matches!(message, Message::Pong(_)) {
                    self.awaiting_pong = false;
                }
                Ok(message)
            }
            Some(Err(error)) => Err(classify(error)),
            // The stream ends after the closing handshake completes.
            None => Err(End::Finished),
        }
    }
}

/// The outcome of the rooms request the session waits for (never when it waits for none,
/// whose select arm is disabled).
async fn wait_for(waiting: &mut Option<Waiting>) -> crate::rooms::Outcome {
    match waiting {
        Some(waiting) => waiting.await,
        None => std::future::pending().await,
    }
}

/// `--room-flush-interval`: a member written to less than an interval ago holds its room
/// messages (`MemberQueue::hold`) until the next tick of a clock every session shares, ticking
/// once an interval; the first message after a quiet spell leaves at once. So a busy member
/// writes at most about once an interval, and the members of a busy room write at the same
/// tick, one after another: a reader woken by the first write is still awake for the next
/// (writes spread over the interval cost each a wake-up of an idle reader, which on loopback
/// the sender pays). Zero writes every message as it comes.
struct Pacing {
    interval: Duration,
    /// When the session last wrote its queue (room messages or answers).
    last_write: Instant,
    /// The next tick, while the queue is held.
    due: Pin<Box<Sleep>>,
    armed: bool,
    /// The time `hold` read, for the write it let through.
    now: Option<Instant>,
}

impl Pacing {
    fn new(interval: Duration) -> Pacing {
        let now = Instant::now();
        Pacing {
            interval,
            last_write: now.checked_sub(interval).unwrap_or(now),
            due: Box::pin(tokio::time::sleep_until(now)),
            armed: false,
            now: None,
        }
    }

    /// The queue changed: `true` if there is nothing to write now (nothing queued, or held
    /// until the next tick).
    fn hold(&mut self, queue: &MemberQueue) -> bool {
        if self.interval.is_zero() {
            return false;
        }
        // One clock read per wake-up: the write that follows a quiet spell takes this time.
        let now = Instant::now();
        if !self.armed && now >= self.last_write + self.interval {
            self.now = Some(now);
            return false;
        }
        match queue.hold() {
            Hold::Nothing => true,
            Hold::WriteNow => false,
            Hold::Held => {
                if !self.armed {
                    self.due.as_mut().reset(next_tick(now, self.interval));
                    self.armed = true;
                }
                true
            }
        }
    }

    /// The queue was taken (which ends a hold) and flushed; `any` if something was written.
    fn wrote(&mut self, any: bool) {
        self.armed = false;
        let now = self.now.take();
        if any && !self.interval.is_zero() {
            self.last_write = now.unwrap_or_else(Instant::now);
        }
    }
}

/// The first tick after `now` of a clock that ticks every `interval` from the first time any
/// session asked.
fn next_tick(now: Instant, interval: Duration) -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| now);
    let since = now.saturating_duration_since(start).as_nanos();
    let period = interval.as_nanos().max(1);
    let ticks = since / period + 1;
    start + Duration::from_nanos(u64::try_from(ticks * period).unwrap_or(u64::MAX))
}

/// How a rooms session writes what its member's queue holds.
struct Writer<'a> {
    metrics: &'a SessionMetrics,
    compression: Compression,
    send_timeout: Duration,
    pacing: Pacing,
    /// Something was fed since the last flush.
    fed: bool,
}

impl Writer<'_> {
    /// Flushes the socket: a write, as far as pacing is concerned, if anything was fed. Not
    /// an `async fn` of its own: one more future nested in every delivery's write costs about
    /// 150 instructions (callgrind, a room of 100).
    fn flush<'w, S: Stream>(
        &mut self,
        ws: &'w mut Socket<S>,
    ) -> impl Future<Output = Result<(), End>> + use<'w, S> {
        self.pacing.wrote(std::mem::take(&mut self.fed));
        flush(ws, self.send_timeout)
    }

    /// Feeds what the member's queue holds into the socket's write buffer, in order, without
    /// flushing; a member that fell behind its room is closed (1008).
    async fn queued<S: Stream>(
        &mut self,
        ws: &mut Socket<S>,
        queue: &MemberQueue,
        frames: &mut Vec<QueuedText>,
    ) -> Result<(), End> {
        match queue.take_all(frames) {
            Taken::Frames => {}
            Taken::Overflowed => {
                tracing::info!("a rooms client fell behind its rooms; closing");
                return Err(End::Close(
                    CloseCode::Policy,
                    "too slow: fell behind its rooms",
                ));
            }
            Taken::HistoryLost => {
                tracing::info!("a room lost messages its client had not received; closing");
                return Err(End::Close(
                    CloseCode::Restart,
                    "the room's history was lost: join again",
                ));
            }
            Taken::Closed { code, reason } => {
                tracing::info!(code, reason, "closing a rooms connection");
                return Err(End::Close(CloseCode::from(code), reason));
            }
        }
        if frames.is_empty() {
            return Ok(());
        }
        self.fed = true;
        self.metrics.sent(frames.len());
        let compression = self.compression;
        if compression.is_on() {
            let messages = frames.drain(..).map(|frame| compression.queued(frame));
            feed(ws, messages, self.send_timeout).await
        } else {
            // Decided once per batch, so a plain session's deliveries cost about what they
            // did before sessions compressed (callgrind, a room of 100: within 2% of the
            // instructions).
            let messages = frames
                .drain(..)
                .map(|frame| Message::Text(frame.into_text()));
            feed(ws, messages, self.send_timeout).await
        }
    }
}

/// A rooms request: handed to the member, whose answers go through its queue.
fn answer_room(
    member: &mut Member,
    metrics: &SessionMetrics,
    message: &Message,
) -> Option<Waiting> {
    match message {
        Message::Text(text) => {
            metrics.received();
            return member.request(text);
        }
        Message::Binary(_) => {
            metrics.received();
            member.binary();
        }
        Message::Close(frame) => log_client_close(frame.as_ref()),
        // tungstenite answers pings itself; frames are never produced when reading.
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
    }
    None
}

/// The app's reply to one message.
async fn answer_app<S: Stream>(
    app: App,
    context: &mut SessionContext,
    ws: &mut Socket<S>,
    message: Message,
) -> Result<(), End> {
    let send_timeout = context.timing.send_timeout;
    let compression = Compression::of(context.compression);
    let reply = match &message {
        Message::Text(text) => app.reply_to_text(text),
        Message::Binary(_) => app.reply_to_binary(),
        Message::Close(frame) => {
            log_client_close(frame.as_ref());
            // tungstenite has queued the echoed close; polling `next` again sends it and ends
            // the stream.
            return Ok(());
        }
        // tungstenite queues the pong itself and sends it on the next poll.
        Message::Ping(_) | Message::Pong(_) => return Ok(()),
        // Never produced when reading; only used for writing raw frames.
        Message::Frame(_) => return Ok(()),
    };
    context.metrics.received();
    match reply {
        Reply::Nothing => {
            tracing::debug!("ignored a binary message");
            Ok(())
        }
        Reply::Send(text) => {
            context.metrics.sent(1);
            let message = compression.message(Message::text(text));
            feed(ws, std::iter::once(message), send_timeout).await
        }
        // Copies share the payload (`Bytes`), compressed or not: repeating a message
        // allocates nothing, and compresses it once.
        Reply::SendBack { times } => {
            context.metrics.sent(times);
            feed(ws, compression.copies(message, times), send_timeout).await
        }
        Reply::Close => Err(End::Close(CloseCode::Normal, "")),
    }
}

/// Sends one message (the greeting, a ping) and flushes it.
async fn send<S: Stream>(
    ws: &mut Socket<S>,
    message: Message,
    send_timeout: Duration,
) -> Result<(), End> {
    feed(ws, std::iter::once(message), send_timeout).await?;
    flush(ws, send_timeout).await
}

/// Queues messages in the write buffer; tungstenite writes to the socket only when the buffer
/// passes `WRITE_BUFFER_SIZE`, which may wait for the client: bounded by `send_timeout`.
async fn feed<S: Stream>(
    ws: &mut Socket<S>,
    messages: impl Iterator<Item = Message>,
    send_timeout: Duration,
) -> Result<(), End> {
    within(send_timeout, async {
        for message in messages {
            ws.feed(message).await?;
        }
        Ok(())
    })
    .await
}

/// Writes out everything queued, bounded by `send_timeout`.
async fn flush<S: Stream>(ws: &mut Socket<S>, send_timeout: Duration) -> Result<(), End> {
    within(send_timeout, ws.flush()).await
}

/// Runs a write; an error ends the session, and so does a client that is too slow to read.
///
/// A client that does not read fills its TCP window and then our bounded write buffer; rather
/// than buffer without limit, the session gives up on it after `send_timeout`.
///
/// The timer is armed only for a write that has to wait: most are done on their first poll
/// (the socket had room), and a timer made for each would cost every delivery a clock read
/// and its setup and teardown.
async fn within(
    send_timeout: Duration,
    write: impl Future<Output = Result<(), WsError>>,
) -> Result<(), End> {
    let mut write = std::pin::pin!(write);
    let first = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    let done = match first {
        Poll::Ready(done) => done,
        Poll::Pending => match timeout(send_timeout, write).await {
            Ok(done) => done,
            Err(_elapsed) => {
                tracing::info!("client does not read its replies; closing");
                return Err(End::slow_reader());
            }
        },
    };
    done.map_err(classify)
}

/// Sorts an error from the socket into an expected ending or a protocol failure.
fn classify(error: WsError) -> End {
    use hyper_tungstenite::tungstenite::error::ProtocolError;
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed => End::Finished,
        WsError::Io(error) if is_disconnect(&error) => {
            tracing::debug!(%error, "client disconnected");
            End::Finished
        }
        // A rule of permessage-deflate, or masking under it, broken (see `deflate_stream`).
        WsError::Io(error) if Violation::of(&error).is_some() => {
            let violation = Violation::of(&error).expect("checked by the guard");
            End::Fail(violation.code, violation.reason.to_owned())
        }
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            tracing::debug!("client went away without a close frame");
            End::Finished
        }
        WsError::Protocol(
            ProtocolError::SendAfterClosing | ProtocolError::ReceivedAfterClosing,
        ) => End::Finished,
        WsError::Utf8(error) => End::Fail(CloseCode::Invalid, format!("invalid UTF-8: {error}")),
        WsError::Capacity(error) => End::Fail(CloseCode::Size, error.to_string()),
        WsError::Protocol(error) => End::Fail(CloseCode::Protocol, error.to_string()),
        WsError::WriteBufferFull(_) => End::slow_reader(),
        WsError::Io(error) => {
            tracing::warn!(%error, "socket error");
            End::Finished
        }
        error @ (WsError::Tls(_)
        | WsError::Url(_)
        | WsError::Http(_)
        | WsError::HttpFormat(_)
        | WsError::AttackAttempt) => {
            tracing::warn!(%error, "unexpected WebSocket error");
            End::Fail(CloseCode::Error, "internal error".to_owned())
        }
    }
}

/// A close frame is a control frame: at most 125 bytes, 2 of them the code. Error texts are
/// not bounded, so they are cut at a character boundary.
fn truncate_reason(mut reason: String) -> String {
    const MAX_REASON: usize = 123;
    if reason.len() > MAX_REASON {
        let cut = (0..=MAX_REASON)
            .rev()
            .find(|&at| reason.is_char_boundary(at))
            .unwrap_or(0);
        reason.truncate(cut);
    }
    reason
}

fn is_disconnect(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

fn log_client_close(frame: Option<&CloseFrame>) {
    match frame {
        Some(frame) => tracing::info!(
            code = u16::from(frame.code),
            reason = %frame.reason,
            "client closed the connection"
        ),
        None => tracing::info!("client closed the connection without a code"),
    }
}

/// Sends a close frame and waits (bounded) for the client's close in reply, so the server
/// ends the TCP connection only after the client has seen the code.
async fn close_gracefully<S: Stream>(
    ws: &mut Socket<S>,
    code: CloseCode,
    reason: &'static str,
    deadline: Instant,
) {
    let handshake = async {
        ws.close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
        .await?;
        // Data frames still in flight are discarded; the stream ends at the client's close.
        while let Some(message) = ws.next().await {
            message?;
        }
        Ok::<(), WsError>(())
    };
    match timeout_at(deadline, handshake).await {
        Ok(Ok(())) | Err(_) => {}
        Ok(Err(error)) => tracing::debug!(%error, "close handshake cut short"),
    }
}

/// After a protocol error the frame stream cannot be trusted: read and discard raw bytes until
/// the client closes TCP or the deadline passes.
async fn linger<S: Stream>(ws: &mut Socket<S>, deadline: Instant) {
    let stream = ws.get_mut();
    let mut sink = [0u8; 1024];
    let discard = async { while stream.read(&mut sink).await.is_ok_and(|read| read > 0) {} };
    let _ = timeout_at(deadline, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_in_a_control_frame() {
        assert_eq!(truncate_reason("short".into()), "short");
        let long = "é".repeat(100);
        let cut = truncate_reason(long);
        assert!(
            cut.len() <= 123 && cut.chars().all(|c| c == 'é'),
            "{}",
            cut.len()
        );
    }
}
