//! The connection task, the shell of the core's [`Session`]: one WebSocket at a time, opened,
//! written and closed as the session says; the socket's frames, the lines read, the token
//! source's answers and the time fed to it; what it reports said on the [`Screen`] through the
//! [`View`]. It decides nothing about messages or timing itself. Every wait in it also ends on
//! SIGINT or SIGTERM ([`Signals`]).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use client_core::outbox::OUTBOX_CAPACITY;
use client_core::session::{Config, Effect, Fetch, Greeting, Lost, Millis, Session, Talk};
use client_core::signin::TokenAnswer;
use client_core::status::{NO_REPLY, Status};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::connect::{Connector, Socket};
use crate::input::Line;
use crate::screen::{Screen, StdoutGone};
use crate::signals::{Signal, Signals};
use crate::talk::View;
use crate::token::TokenSource;

/// How patient the client is.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Longest time without a connection, at start or after one was lost.
    pub connect: Duration,
    /// Longest wait for an answer (or for a handshake) before the server is taken for hung.
    pub reply: Duration,
}

/// Why the client stopped before its work was done; said in one line.
#[derive(Debug)]
pub enum Stop {
    /// No connection could be opened within the connect timeout.
    CannotConnect(String),
    /// The server closed the conversation (1000) with messages still unanswered.
    ClosedWithUnanswered(String),
    /// Standard output cannot be written (closed by its reader, `console-client | head -1`,
    /// or failing): the connection was closed (1000).
    StdoutGone(std::io::Error),
    /// A signal asked to stop: the connection was closed (1000) and a status line said how
    /// many messages were left.
    Signalled(Signal),
    /// No token to sign in with: the command failed, or the one given expired.
    NoToken(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::CannotConnect(why) | Stop::ClosedWithUnanswered(why) | Stop::NoToken(why) => {
                f.write_str(why)
            }
            Stop::StdoutGone(error) => write!(f, "cannot write to standard output: {error}"),
            Stop::Signalled(signal) => write!(f, "stopped by {}", signal.name()),
        }
    }
}

/// The session's clock: milliseconds since the run started.
#[derive(Debug, Clone, Copy)]
struct Clock {
    zero: Instant,
}

impl Clock {
    fn now(self) -> Millis {
        u64::try_from(self.zero.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn instant(self, at: Millis) -> Instant {
        self.zero + Duration::from_millis(at)
    }
}

/// Talks over `connector`'s URL until the input has ended and every message is answered or
/// failed, or the server ends the conversation; `Err` when it must stop before that. With
/// `tokens`, signs in first, refreshes before expiry and gets a new token after a 4408.
///
/// The shell of a [`Session`]: it opens the socket, sends and closes as the session says,
/// feeds it the socket's frames, the lines read, the token source's answers and the time, and
/// says on the screen what the session reports. It decides nothing about the conversation.
#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
pub async fn run(
    connector: &Connector,
    talk: Talk,
    view: &mut View,
    lines: &mut mpsc::Receiver<Line>,
    timeouts: Timeouts,
    tokens: Option<&TokenSource>,
    screen: &mut Screen,
    signals: &mut Signals,
) -> Result<(), Stop> {
    let clock = Clock {
        zero: Instant::now(),
    };
    let epoch_at_zero = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(0));
    let mut session = Session::new(
        talk,
        Config {
            reply_timeout: timeouts.reply,
            connect_timeout: Some(timeouts.connect),
            greeting: Greeting::First,
            epoch_at_zero,
            jitter,
        },
    );
    if let Some(source) = tokens {
        session.with_tokens(source.renewable());
    }
    let reply = timeouts.reply;
    let mut socket: Option<Socket> = None;
    // The socket being opened, and the token being fetched (for a refresh or not).
    let mut opening: Option<Pending<'_, Result<Socket, String>>> = None;
    let mut fetching: Option<(Fetch, Pending<'_, Result<String, String>>)> = None;
    // A send failed: nothing more goes out on this socket.
    let mut broken = false;
    let mut input_open = true;
    // The full queue was said since the outbox was last empty: once is enough.
    let mut said_full = false;
    // Before the first connection, only the final line if it never comes.
    let mut connected_before = false;
    // A connection was lost: say when the next one is tried.
    let mut reconnecting = false;
    // A token was fetched before: a fixed one cannot be fetched again.
    let mut signed = false;
    session.start(clock.now());
    loop {
        while let Some(effect) = session.poll() {
            match effect {
                Effect::Connect => {
                    if std::mem::take(&mut reconnecting) {
                        screen.status(&format!("Connecting to {}…", connector.url()));
                    }
                    opening = Some(Box::pin(connector.open()));
                }
                Effect::Send { text, report } => {
                    let Some(open) = socket.as_mut().filter(|_| !broken) else {
                        continue;
                    };
                    // A frozen server can hold a send for the whole reply timeout: a signal
                    // does not wait.
                    let sending = timeout(reply, open.send(Message::text(text)));
                    let failed = match unless_signalled(signals, sending).await {
                        Ok(Ok(Ok(()))) => {
                            if report {
                                session.sent(clock.now());
                            }
                            continue;
                        }
                        Ok(Ok(Err(error))) => error.to_string(),
                        // Possibly sent: tungstenite keeps what it could not write and
                        // flushes it before the close that follows, so the server may
                        // answer it. Counted as sent, it goes again as a resend, whose
                        // answers are not printed twice.
                        Ok(Err(_)) => {
                            if report {
                                session.sent(clock.now());
                            }
                            format!("the server took nothing for {}", seconds(reply))
                        }
                        Err(signal) => {
                            return Err(close_for_signal(
                                open,
                                signal,
                                session.left(),
                                timeouts,
                                screen,
                                signals,
                            )
                            .await);
                        }
                    };
                    screen.status(&format!("Sending failed: {failed}."));
                    broken = true;
                    session.send_failed(clock.now());
                }
                Effect::Close { code, reason } => {
                    opening = None;
                    if let Some(mut open) = socket.take() {
                        // Giving up on a hung server does not wait for its answer.
                        let patience = if code == NO_REPLY {
                            Duration::ZERO
                        } else {
                            reply
                        };
                        let closing = close(&mut open, CloseCode::from(code), &reason, patience);
                        if let Err(signal) = unless_signalled(signals, closing).await {
                            // The close is on its way: nothing to wait for.
                            screen.status(&interrupted_notice(signal, session.left()));
                            return Err(Stop::Signalled(signal));
                        }
                    }
                }
                Effect::Fetch(Fetch::Setup) => session.fetched(clock.now(), Ok(())),
                Effect::Fetch(kind) => {
                    let Some(source) = tokens else { continue };
                    // A fixed token is never refreshed (the session knows): after the server's
                    // 4408, it is the one asked for again.
                    if !source.renewable() && signed {
                        return Err(Stop::NoToken(
                            "the token expired: start again with a fresh --token".to_owned(),
                        ));
                    }
                    signed = true;
                    fetching = Some((kind, Box::pin(source.fetch(reply))));
                }
                Effect::Lost { why, retry_in } => {
                    socket = None;
                    opening = None;
                    // A refresh for the connection that is gone is of no use.
                    fetching = fetching.filter(|(kind, _)| *kind != Fetch::Refresh);
                    let after = reconnecting_in(retry_in);
                    match lost_words(&why) {
                        Said::Connection(what) => {
                            reconnecting = true;
                            screen.status(&format!("{what} {after}"));
                        }
                        Said::Attempt(error) if connected_before => {
                            screen.status(&format!("Cannot connect: {error}. {after}"));
                        }
                        Said::Attempt(_) => {}
                    }
                }
                Effect::GaveUp(why) => {
                    let (Said::Attempt(error) | Said::Connection(error)) = lost_words(&why);
                    return Err(Stop::CannotConnect(format!(
                        "cannot connect to {} within {}: {error}",
                        connector.url(),
                        seconds(timeouts.connect)
                    )));
                }
                Effect::Ended {
                    code, answered_end, ..
                } => {
                    let left = session.left();
                    if answered_end {
                        screen.status("The server ended the conversation (end).");
                        if left > 0 {
                            screen.status(&format!("{left} message(s) after end were not sent."));
                        }
                        return Ok(());
                    }
                    if left == 0 {
                        screen.status(&format!("The server closed the connection ({code})."));
                        return Ok(());
                    }
                    return Err(Stop::ClosedWithUnanswered(format!(
                        "the server closed the connection ({code}) with {left} message(s) unanswered"
                    )));
                }
                Effect::SignedOut { said, reason } => {
                    // The same token would be refused again.
                    screen.status(&said);
                    return Err(Stop::NoToken(format!(
                        "the server refused to sign in ({reason})"
                    )));
                }
                Effect::Finished => return Ok(()),
                shown => {
                    if let Err(StdoutGone(error)) = view.show(shown, screen) {
                        // Nobody reads the replies any more (`| head -1`), or they cannot be
                        // written: the conversation is over.
                        if let Some(mut open) = socket.take() {
                            let closing =
                                close(&mut open, CloseCode::Normal, "output closed", reply);
                            if let Err(signal) = unless_signalled(signals, closing).await {
                                screen.status(&interrupted_notice(signal, session.left()));
                                return Err(Stop::Signalled(signal));
                            }
                        }
                        return Err(Stop::StdoutGone(error));
                    }
                }
            }
        }
        said_full &= session.left() > 0;
        let take_lines = input_open && session.left() < OUTBOX_CAPACITY;
        let wake_at = session.timeout().map(|at| clock.instant(at));
        tokio::select! {
            // A signal first, so that no flood of frames delays it; then the server's frames:
            // an answer that arrives at the deadline still counts.
            biased;
            signal = signals.next() => {
                let left = session.left();
                return Err(match socket.as_mut() {
                    Some(open) => close_for_signal(open, signal, left, timeouts, screen, signals).await,
                    None => {
                        screen.status(&interrupted_notice(signal, left));
                        Stop::Signalled(signal)
                    }
                });
            }
            opened = async { opening.as_mut().expect("opening").as_mut().await }, if opening.is_some() => {
                opening = None;
                let now = clock.now();
                match opened {
                    Ok(open) => {
                        socket = Some(open);
                        broken = false;
                        connected_before = true;
                        screen.status(&format!("Connected to {}", connector.url()));
                        session.opened(now, false);
                    }
                    Err(error) => session.not_opened(now, Some(error)),
                }
            }
            message = async { socket.as_mut().expect("socket").next().await }, if socket.is_some() => {
                let now = clock.now();
                match message {
                    Some(Ok(Message::Text(text))) => session.text(now, text.as_str()),
                    Some(Ok(Message::Binary(data))) => session.binary(now, data.len()),
                    // tungstenite answers pings itself; a pong answers nothing of ours.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        let close = frame.map_or((1005, String::new()), |frame| {
                            (u16::from(frame.code), frame.reason.to_string())
                        });
                        if let Some(mut open) = socket.take() {
                            // tungstenite queued the answering close: send it, briefly.
                            let _ = timeout(reply, open.flush()).await;
                        }
                        session.closed(clock.now(), Ok(close));
                    }
                    Some(Err(error)) => {
                        socket = None;
                        session.closed(now, Err(format!("The connection broke: {error}.")));
                    }
                    None => {
                        socket = None;
                        session.closed(now, Err("The connection ended.".to_owned()));
                    }
                }
            }
            fetched = async { (&mut fetching.as_mut().expect("fetching").1).await }, if fetching.is_some() => {
                let kind = fetching.take().map(|(kind, _)| kind);
                let now = clock.now();
                match (kind, fetched) {
                    (_, Ok(token)) => session.token(now, TokenAnswer::Token(token)),
                    (Some(Fetch::Refresh), Err(error)) => {
                        screen.status(&format!(
                            "Cannot refresh the token: {error}. Asked again shortly, while it lasts."
                        ));
                        session.token(now, TokenAnswer::Unavailable(error));
                    }
                    // Nobody here can fix the command: stop, and say why.
                    (_, Err(error)) => return Err(Stop::NoToken(error)),
                }
            }
            line = lines.recv(), if take_lines => match line {
                Some(line) => {
                    view.take_line(&mut session, clock.now(), line, screen);
                    if session.left() >= OUTBOX_CAPACITY && !said_full {
                        said_full = true;
                        screen.status(&format!(
                            "Waiting for answers: {} messages wait, the most the queue holds; \
                             more input is read as answers make room.",
                            session.left()
                        ));
                    }
                }
                None => {
                    input_open = false;
                    session.input_ended(clock.now());
                }
            },
            () = sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {
                session.handle_timeout(clock.now());
            }
        }
    }
}

/// Something under way: a socket opening, a token fetched.
type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// What a [`Lost`] says, and whether it ended a connection or only an attempt.
enum Said {
    Connection(String),
    Attempt(String),
}

fn lost_words(why: &Lost) -> Said {
    match why {
        Lost::Closed { code, reason } => Said::Connection(closed_by_server(*code, reason)),
        Lost::Broken(words) => Said::Connection(words.clone()),
        Lost::NoReply(patience) => Said::Connection(format!(
            "No answer from the server for {}: closed ({NO_REPLY}); unanswered messages will be sent again.",
            seconds(*patience)
        )),
        Lost::NotOpened(words) => Said::Attempt(
            words
                .clone()
                .unwrap_or_else(|| "the connection did not open".to_owned()),
        ),
        Lost::OpenTimedOut { reason, .. } => Said::Attempt(reason.clone()),
        Lost::Unavailable(why) => Said::Attempt(why.clone()),
    }
}

/// `work`, unless a signal comes first.
async fn unless_signalled<T>(
    signals: &mut Signals,
    work: impl Future<Output = T>,
) -> Result<T, Signal> {
    tokio::select! {
        done = work => Ok(done),
        signal = signals.next() => Err(signal),
    }
}

/// A signal came while connected: said, then closed with 1000, waiting for the server's
/// answering close as long as a reply may take, unless a second signal comes.
async fn close_for_signal(
    socket: &mut Socket,
    signal: Signal,
    left: usize,
    timeouts: Timeouts,
    screen: &mut Screen,
    signals: &mut Signals,
) -> Stop {
    screen.status(&interrupted_notice(signal, left));
    let closing = close(socket, CloseCode::Normal, "interrupted", timeouts.reply);
    // A second signal ends the wait at once, even for a close the socket could not write.
    let _ = unless_signalled(signals, closing).await;
    Stop::Signalled(signal)
}

/// The one status line a signal gets.
fn interrupted_notice(signal: Signal, left: usize) -> String {
    format!(
        "Stopped by {}: {left} message(s) left unanswered.",
        signal.name()
    )
}

/// Sends a close and waits up to `patience` for the server's; a server that does not answer
/// is simply left.
async fn close(socket: &mut Socket, code: CloseCode, reason: &str, patience: Duration) {
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    let closing = async {
        // An error means the socket is gone already, which is what a close is for.
        let _ = socket.close(Some(frame)).await;
        while let Some(Ok(_)) = socket.next().await {}
    };
    // The close frame is written first in any case; the wait is only for the answer.
    let _ = timeout(patience.max(Duration::from_millis(100)), closing).await;
}

fn closed_by_server(code: u16, reason: &str) -> String {
    if reason.is_empty() {
        format!("The server closed the connection ({code}).")
    } else {
        format!("The server closed the connection ({code}: {reason}).")
    }
}

/// "Reconnecting in N s…", as the page says it.
fn reconnecting_in(delay: Duration) -> String {
    let seconds = u32::try_from(delay.as_millis().div_ceil(1000)).unwrap_or(u32::MAX);
    Status::Reconnecting { seconds }.to_string()
}

/// A random number in `[0, 1)` for the backoff's jitter; the middle of the window when the
/// system has no random numbers to give.
fn jitter() -> f64 {
    // The top 53 bits: every such fraction is an exact f64.
    getrandom::u64().map_or(0.5, |random| (random >> 11) as f64 / (1u64 << 53) as f64)
}

/// "10 s", "0.5 s".
fn seconds(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{} s", millis / 1000)
    } else {
        format!("{} s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_for_status_lines() {
        assert_eq!(seconds(Duration::from_secs(10)), "10 s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5 s");
        assert_eq!(
            reconnecting_in(Duration::from_millis(300)),
            "Reconnecting in 1 s…"
        );
        assert_eq!(reconnecting_in(Duration::ZERO), "Reconnecting in 0 s…");
        assert_eq!(
            closed_by_server(1001, ""),
            "The server closed the connection (1001)."
        );
        let jitters: Vec<f64> = (0..100).map(|_| jitter()).collect();
        assert!(jitters.iter().all(|j| (0.0..1.0).contains(j)));
    }
}
