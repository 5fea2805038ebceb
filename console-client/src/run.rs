//! The connection task: one WebSocket at a time, from connecting to its end, then reconnecting
//! with the core's full-jitter backoff. It moves lines from the input to the [`Talk`], frames
//! between the talk and the socket, and decides nothing about messages itself. Every wait in it
//! also ends on SIGINT or SIGTERM ([`Signals`]).

use std::future::Future;
use std::time::Duration;

use client_core::backoff::Backoff;
use client_core::room::RETRY_AFTER_MILLIS;
use client_core::status::{NO_REPLY, Status, no_reply_reason};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::connect::{Connector, Socket};
use crate::input::Line;
use crate::screen::{Screen, StdoutGone};
use crate::signals::{Signal, Signals};
use crate::talk::{CloseHeard, Heard, Talk};
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

/// The lines typed or piped, and whether more may come.
#[derive(Debug)]
struct Input<'a> {
    lines: &'a mut mpsc::Receiver<Line>,
    /// Standard input has not ended yet.
    open: bool,
}

/// How one connection ended.
#[derive(Debug)]
enum Ending {
    /// The input ended and every message has its answer (or failed): closed with 1000.
    Done,
    /// The server ended the conversation (1000).
    Ended { answered_end: bool, code: u16 },
    /// Anything else: reconnect. The words say what happened.
    Lost(String),
    /// Standard output is gone: closed with 1000.
    StdoutGone(std::io::Error),
    /// A signal came: closed with 1000 (or not waited for, after a second signal).
    Signalled(Signal),
}

/// Talks over `connector`'s URL until the input has ended and every message is answered or
/// failed, or the server ends the conversation; `Err` when it must stop before that. With
/// `tokens`, signs in first, refreshes before expiry and gets a new token after a 4408.
pub async fn run(
    connector: &Connector,
    talk: &mut impl Talk,
    lines: &mut mpsc::Receiver<Line>,
    timeouts: Timeouts,
    tokens: Option<&TokenSource>,
    screen: &mut Screen,
    signals: &mut Signals,
) -> Result<(), Stop> {
    let mut backoff = Backoff::default();
    let mut input = Input { lines, open: true };
    let mut outage_since = Instant::now();
    let mut connected_before = false;
    // Why the last attempt failed: an attempt cut short by the connect timeout says nothing
    // new, and the one line then names the real cause.
    let mut last_error: Option<String> = None;
    let mut signed = false;
    loop {
        if let Some(source) = tokens
            && (!signed || talk.token_expired())
        {
            if signed && !source.renewable() {
                return Err(Stop::NoToken(
                    "the token expired: start again with a fresh --token".to_owned(),
                ));
            }
            let fetched = unless_signalled(signals, source.fetch(timeouts.reply))
                .await
                .map_err(|signal| interrupted(signal, &*talk, screen))?;
            talk.sign_in(fetched.map_err(Stop::NoToken)?);
            signed = true;
        }
        let attempt = connect(connector, timeouts, outage_since);
        let attempt = unless_signalled(signals, attempt).await;
        let socket = match attempt.map_err(|signal| interrupted(signal, &*talk, screen))? {
            Ok(socket) => socket,
            Err(Failure { error, cut_short }) => {
                let error = match (cut_short, last_error.take()) {
                    (true, Some(last)) => last,
                    _ => error,
                };
                let left = timeouts.connect.saturating_sub(outage_since.elapsed());
                if left.is_zero() {
                    return Err(Stop::CannotConnect(format!(
                        "cannot connect to {} within {}: {error}",
                        connector.url(),
                        seconds(timeouts.connect)
                    )));
                }
                let delay = backoff.next_delay(jitter()).min(left);
                // Before the first connection, only the final line if it never comes.
                if connected_before {
                    screen.status(&format!("Cannot connect: {error}. {}", reconnecting(delay)));
                }
                last_error = Some(error);
                unless_signalled(signals, sleep(delay))
                    .await
                    .map_err(|signal| interrupted(signal, &*talk, screen))?;
                continue;
            }
        };
        last_error = None;
        connected_before = true;
        screen.status(&format!("Connected to {}", connector.url()));
        let ending = converse(
            socket,
            talk,
            &mut input,
            &mut backoff,
            timeouts,
            tokens.filter(|source| source.renewable()),
            screen,
            signals,
        )
        .await;
        // Stopping now: what the talk would say about the connection's end (a message given
        // up after its last try) is not so, and nobody may be reading.
        if !matches!(ending, Ending::StdoutGone(_) | Ending::Signalled(_)) {
            talk.closed(screen);
        }
        match ending {
            Ending::Done => return Ok(()),
            Ending::StdoutGone(error) => return Err(Stop::StdoutGone(error)),
            Ending::Signalled(signal) => return Err(Stop::Signalled(signal)),
            Ending::Ended {
                answered_end: true, ..
            } => {
                screen.status("The server ended the conversation (end).");
                let left = talk.left();
                if left > 0 {
                    screen.status(&format!("{left} message(s) after end were not sent."));
                }
                return Ok(());
            }
            Ending::Ended {
                answered_end: false,
                code,
            } if client_core::signin::identity_close(code, "").is_some() => {
                // Said already in the server's words; the same token would be refused again.
                return Err(Stop::NoToken(format!(
                    "the server refused to sign in ({code})"
                )));
            }
            Ending::Ended {
                answered_end: false,
                code,
            } => {
                let left = talk.left();
                if left == 0 {
                    screen.status(&format!("The server closed the connection ({code})."));
                    return Ok(());
                }
                return Err(Stop::ClosedWithUnanswered(format!(
                    "the server closed the connection ({code}) with {left} message(s) unanswered"
                )));
            }
            Ending::Lost(what) => {
                if !input.open && talk.left() == 0 {
                    return Ok(());
                }
                outage_since = Instant::now();
                // The connect timeout counts from here: a wait as long as the backoff's widest
                // window would use it all up before the first attempt.
                let delay = backoff.next_delay(jitter()).min(timeouts.connect / 2);
                screen.status(&format!("{what} {}", reconnecting(delay)));
                unless_signalled(signals, sleep(delay))
                    .await
                    .map_err(|signal| interrupted(signal, &*talk, screen))?;
                screen.status(&format!("Connecting to {}…", connector.url()));
            }
        }
    }
}

/// A failed attempt to connect.
#[derive(Debug)]
struct Failure {
    error: String,
    /// The connect timeout ran out during the attempt, before the reply timeout would have.
    cut_short: bool,
}

/// One attempt to open the socket, bounded by the reply timeout (a hung server accepts TCP
/// and never answers the handshake) and by what is left of the connect timeout.
async fn connect(
    connector: &Connector,
    timeouts: Timeouts,
    outage_since: Instant,
) -> Result<Socket, Failure> {
    let left = timeouts.connect.saturating_sub(outage_since.elapsed());
    let bound = left.min(timeouts.reply);
    match timeout(bound, connector.open()).await {
        Ok(opened) => opened.map_err(|error| Failure {
            error,
            cut_short: false,
        }),
        Err(_) => Err(Failure {
            error: format!("no answer to the handshake within {}", seconds(bound)),
            cut_short: bound < timeouts.reply,
        }),
    }
}

/// One connection, from opening to its end. While a message waits for its answer and no
/// frame arrives for the reply timeout, the server is taken for hung and the client closes.
/// With `renew`, the token is refreshed on the connection when the talk says it is due.
#[allow(clippy::too_many_arguments)]
async fn converse(
    mut socket: Socket,
    talk: &mut impl Talk,
    input: &mut Input<'_>,
    backoff: &mut Backoff,
    timeouts: Timeouts,
    renew: Option<&TokenSource>,
    screen: &mut Screen,
    signals: &mut Signals,
) -> Ending {
    talk.opened();
    let opened_at = Instant::now();
    // When the oldest unanswered message last saw progress: it was sent, or a frame came.
    let mut progress_at = Instant::now();
    // When sending may go on after the server asked to wait.
    let mut retry_at: Option<Instant> = None;
    // A send failed: the socket is going; what it still has to read (a close with its code)
    // says why, within the reply timeout.
    let mut broken_at: Option<Instant> = None;
    // The full queue was said since the outbox was last empty: once is enough.
    let mut said_full = false;
    loop {
        if broken_at.is_none() {
            // A frozen server can hold a send for the whole reply timeout: a signal does not wait.
            let sending = send_waiting(&mut socket, talk, screen, timeouts.reply);
            match unless_signalled(signals, sending).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    screen.status(&format!("Sending failed: {error}."));
                    broken_at = Some(Instant::now());
                }
                Err(signal) => {
                    let left = talk.left();
                    return close_for_signal(&mut socket, signal, left, timeouts, screen, signals)
                        .await;
                }
            }
        }
        said_full &= talk.left() > 0;
        let finished = !input.open && talk.left() == 0 && broken_at.is_none();
        // A greeting the app promises is printed even when the input ended before it came
        // (`</dev/null`); a server that does not send it within the reply timeout is left
        // without it, as nothing was asked of it.
        let greeting_by = opened_at + timeouts.reply;
        if finished && (!talk.owes_greeting() || Instant::now() >= greeting_by) {
            let closing = close(&mut socket, CloseCode::Normal, "done", timeouts.reply);
            return match unless_signalled(signals, closing).await {
                Ok(()) => Ending::Done,
                Err(signal) => {
                    // The close is on its way: nothing to wait for.
                    screen.status(&interrupted_notice(signal, 0));
                    Ending::Signalled(signal)
                }
            };
        }
        let deadline = match broken_at {
            Some(at) => Some(at + timeouts.reply),
            None if finished => Some(greeting_by),
            None => talk.awaiting_reply().then(|| progress_at + timeouts.reply),
        };
        let take_lines = input.open && !talk.is_full() && broken_at.is_none();
        let refresh_at = renew.and(talk.refresh_at());
        tokio::select! {
            // A signal first, so that no flood of frames delays it; then the server's frames:
            // an answer that arrives at the deadline still counts.
            biased;
            signal = signals.next() => {
                let left = talk.left();
                return close_for_signal(&mut socket, signal, left, timeouts, screen, signals).await;
            }
            message = socket.next() => {
                let now = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => {
                        progress_at = now;
                        match talk.received(text.as_str(), screen) {
                            Ok(Heard::Nothing) => {}
                            Ok(Heard::Answered) => backoff.reset(),
                            Ok(Heard::Wait) => {
                                retry_at = Some(now + Duration::from_millis(RETRY_AFTER_MILLIS.into()));
                            }
                            // Nobody reads the replies any more (`| head -1`), or they
                            // cannot be written: the conversation is over.
                            Err(StdoutGone(error)) => {
                                let closing = close(&mut socket, CloseCode::Normal, "output closed", timeouts.reply);
                                return match unless_signalled(signals, closing).await {
                                    Ok(()) => Ending::StdoutGone(error),
                                    Err(signal) => {
                                        screen.status(&interrupted_notice(signal, talk.left()));
                                        Ending::Signalled(signal)
                                    }
                                };
                            }
                        }
                    }
                    Some(Ok(Message::Binary(data))) => {
                        progress_at = now;
                        screen.status(&format!("The server sent {} bytes of binary data.", data.len()));
                    }
                    // tungstenite answers pings itself; a pong answers nothing of ours.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame.map_or((1005, String::new()), |frame| {
                            (u16::from(frame.code), frame.reason.to_string())
                        });
                        // tungstenite queued the answering close: send it, briefly.
                        let _ = timeout(timeouts.reply, socket.flush()).await;
                        return match talk.close_received(code, &reason, screen) {
                            CloseHeard::Ended { answered_end } => Ending::Ended { answered_end, code },
                            CloseHeard::Reconnect => Ending::Lost(closed_by_server(code, &reason)),
                        };
                    }
                    Some(Err(error)) => return Ending::Lost(format!("The connection broke: {error}.")),
                    None => return Ending::Lost("The connection ended.".to_owned()),
                }
            }
            line = input.lines.recv(), if take_lines => match line {
                Some(line) => {
                    if !talk.awaiting_reply() {
                        progress_at = Instant::now();
                    }
                    talk.take_line(line, screen);
                    if talk.is_full() && !said_full {
                        said_full = true;
                        screen.status(&format!(
                            "Waiting for answers: {} messages wait, the most the queue holds; \
                             more input is read as answers make room.",
                            talk.left()
                        ));
                    }
                }
                None => input.open = false,
            },
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                if broken_at.is_some() {
                    return Ending::Lost("The connection broke.".to_owned());
                }
                if finished {
                    // The greeting did not come in time: closed at the top of the loop.
                    continue;
                }
                close(&mut socket, CloseCode::Library(NO_REPLY), &no_reply_reason(timeouts.reply), Duration::ZERO).await;
                return Ending::Lost(format!(
                    "No answer from the server for {}: closed ({NO_REPLY}); unanswered messages will be sent again.",
                    seconds(timeouts.reply)
                ));
            }
            () = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                retry_at = None;
                progress_at = Instant::now();
                talk.resume();
            }
            () = sleep_until(refresh_at.unwrap_or_else(Instant::now)), if refresh_at.is_some() => {
                let Some(source) = renew else { continue };
                match unless_signalled(signals, source.fetch(timeouts.reply)).await {
                    // Sent at the top of the loop, before anything else waiting.
                    Ok(Ok(token)) => talk.sign_in(token),
                    Ok(Err(error)) => {
                        screen.status(&format!(
                            "Cannot refresh the token: {error}. Another is asked for when this one expires."
                        ));
                        talk.refresh_failed();
                    }
                    Err(signal) => {
                        let left = talk.left();
                        return close_for_signal(&mut socket, signal, left, timeouts, screen, signals).await;
                    }
                }
            }
        }
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
) -> Ending {
    screen.status(&interrupted_notice(signal, left));
    let closing = close(socket, CloseCode::Normal, "interrupted", timeouts.reply);
    // A second signal ends the wait at once, even for a close the socket could not write.
    let _ = unless_signalled(signals, closing).await;
    Ending::Signalled(signal)
}

/// A signal came while no connection was open: said, and the reason to stop.
fn interrupted(signal: Signal, talk: &impl Talk, screen: &mut Screen) -> Stop {
    screen.status(&interrupted_notice(signal, talk.left()));
    Stop::Signalled(signal)
}

/// The one status line a signal gets.
fn interrupted_notice(signal: Signal, left: usize) -> String {
    format!(
        "Stopped by {}: {left} message(s) left unanswered.",
        signal.name()
    )
}

/// Sends what the talk offers, in order, each bounded by the reply timeout.
async fn send_waiting(
    socket: &mut Socket,
    talk: &mut impl Talk,
    screen: &mut Screen,
    patience: Duration,
) -> Result<(), String> {
    while let Some(frame) = talk.next_frame() {
        match timeout(patience, socket.send(Message::text(frame.text.clone()))).await {
            Ok(Ok(())) => talk.sent(frame, screen),
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => {
                // Possibly sent: tungstenite keeps what it could not write and flushes it
                // before the close that follows, so the server may answer it. Counted as
                // sent, it goes again as a resend, whose answers are not printed twice.
                talk.sent(frame, screen);
                return Err(format!("the server took nothing for {}", seconds(patience)));
            }
        }
    }
    Ok(())
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
fn reconnecting(delay: Duration) -> String {
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
            reconnecting(Duration::from_millis(300)),
            "Reconnecting in 1 s…"
        );
        assert_eq!(reconnecting(Duration::ZERO), "Reconnecting in 0 s…");
        assert_eq!(
            closed_by_server(1001, ""),
            "The server closed the connection (1001)."
        );
        let jitters: Vec<f64> = (0..100).map(|_| jitter()).collect();
        assert!(jitters.iter().all(|j| (0.0..1.0).contains(j)));
    }
}
