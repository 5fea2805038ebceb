//! The connection's state as the user sees it, and what to do after a close.

use std::fmt;
use std::time::Duration;

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Connecting,
    /// Connected; `compressed` when the server agreed to permessage-deflate.
    Open {
        compressed: bool,
    },
    /// Waiting to try again, `seconds` from now.
    Reconnecting {
        seconds: u32,
    },
    /// Closed for good, until the user asks to reconnect.
    Closed {
        code: u16,
        reason: String,
    },
    /// The page cannot connect at all (its settings are wrong); retrying would not help.
    Failed {
        reason: String,
    },
    /// The sign-in refused a token (the token URL said 401/403, or the server closed 4401 or
    /// 4429): nothing is asked again until the user says so.
    SignedOut {
        reason: String,
    },
    /// The browser says it is offline: whatever the socket does, nothing is "Connected".
    Offline,
}

impl Status {
    /// A machine-readable name, used as a CSS class and a `data-status` attribute.
    pub fn key(&self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Open { .. } => "open",
            Status::Reconnecting { .. } => "reconnecting",
            Status::Closed { .. } => "closed",
            Status::Failed { .. } => "failed",
            Status::SignedOut { .. } => "signed-out",
            Status::Offline => "offline",
        }
    }

    /// The status split in two: what a screen reader announces when it changes, and a detail
    /// that changes on its own (the countdown) and is shown but not announced, so a live region
    /// speaks once per state instead of once a second.
    pub fn announced_and_detail(&self) -> (String, String) {
        match self {
            Status::Reconnecting { seconds } => {
                ("Reconnecting".to_owned(), format!(" in {seconds} s…"))
            }
            other => (other.to_string(), String::new()),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Connecting => f.write_str("Connecting…"),
            Status::Open { compressed: false } => f.write_str("Connected"),
            Status::Open { compressed: true } => f.write_str("Connected (compressed)"),
            Status::Reconnecting { seconds } => write!(f, "Reconnecting in {seconds} s…"),
            Status::Closed { code, reason } if reason.is_empty() => write!(f, "Closed ({code})"),
            Status::Closed { code, reason } => write!(f, "Closed ({code}: {reason})"),
            Status::Failed { reason } => write!(f, "Cannot connect: {reason}"),
            Status::SignedOut { reason } => write!(f, "Not signed in: {reason}"),
            Status::Offline => f.write_str("Offline: waiting for the network"),
        }
    }
}

/// The close code the client sends when the server stops answering (4000-4999 are for
/// applications).
pub const NO_REPLY: u16 = 4000;

/// The close reason sent with [`NO_REPLY`], and the line the conversation shows.
pub fn no_reply_reason(timeout: Duration) -> String {
    format!("no answer from the server for {}", seconds(timeout))
}

/// A line for the conversation when the client gives up on a hung server.
pub fn no_reply_notice(timeout: Duration) -> String {
    format!(
        "The server has not answered for {}: the client closed the connection ({NO_REPLY}) and \
         reconnects. Unanswered messages will be sent again.",
        seconds(timeout)
    )
}

/// The reason for giving up on a connection that did not open in time.
pub fn open_timeout_reason(timeout: Duration) -> String {
    format!(
        "the server did not accept the connection within {}",
        seconds(timeout)
    )
}

/// "5 s", "2.5 s". Integer arithmetic: formatting an `f64` would add 10 KiB (gzip) of float
/// printing code to the wasm for this one line.
pub fn seconds(duration: Duration) -> String {
    // u64, not `as_millis()`'s u128, whose formatting and division are large in wasm too.
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let (whole, fraction) = (millis / 1000, millis % 1000);
    if fraction == 0 {
        format!("{whole} s")
    } else {
        let fraction = format!("{fraction:03}");
        format!("{whole}.{} s", fraction.trim_end_matches('0'))
    }
}

/// What follows a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterClose {
    /// The server ended the conversation on purpose (1000, after `end`): stay closed and offer
    /// a Reconnect button.
    StayClosed,
    /// Anything else (restart 1001, network loss 1006, ...): reconnect with backoff.
    Reconnect,
}

/// Normal closure means the server meant it, and so does a refused token or one connection too
/// many for the user (4401, 4429: the same again would be refused again); every other ending
/// (a token that expired, 4408, included: it reconnects with a new one) is a fault to recover
/// from.
pub fn after_close(code: u16) -> AfterClose {
    use room_protocol::bounds::close;
    match code {
        1000 | close::UNAUTHORIZED | close::TOO_MANY_CONNECTIONS => AfterClose::StayClosed,
        _ => AfterClose::Reconnect,
    }
}

/// The reason shown when the browser could not open a socket at all: it fires `error` (and
/// sometimes no `close`) without saying why, so the page names the usual causes.
pub fn not_opened_reason() -> &'static str {
    "the browser could not open the connection (the server is down or unreachable, or this \
     page's Content-Security-Policy does not allow the address; the browser console says which)"
}

/// The one line per outage that says the page cannot reach the server and keeps trying.
pub fn cannot_connect_notice(url: &str, reason: &str) -> String {
    format!(
        "Cannot connect to {url}: {reason}. The page keeps trying, less often as time goes on; \
         messages typed meanwhile wait and go out once connected."
    )
}

/// A line for the conversation about a close the user caused and can avoid; `None` for the
/// rest (the status line shows every code and reason). The server's limit may be lower than
/// the one the client checks (`--max-message-size`), so a 1009 can still happen.
pub fn close_notice(code: u16, reason: &str) -> Option<String> {
    const MESSAGE_TOO_BIG: u16 = 1009;
    (code == MESSAGE_TOO_BIG).then(|| {
        let detail = if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        };
        format!("The server refused a message as too large and closed the connection{detail}.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_message_too_big_gets_a_notice() {
        assert_eq!(
            close_notice(1009, "Message too long: 70000 > 65536").as_deref(),
            Some(
                "The server refused a message as too large and closed the connection \
                 (Message too long: 70000 > 65536)."
            )
        );
        assert!(close_notice(1009, "").is_some_and(|text| text.ends_with("connection.")));
        for code in [1000, 1001, 1006, 1008, 1011] {
            assert_eq!(close_notice(code, "x"), None, "{code}");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(Status::Connecting.to_string(), "Connecting…");
        assert_eq!(Status::Open { compressed: false }.to_string(), "Connected");
        assert_eq!(
            Status::Open { compressed: true }.to_string(),
            "Connected (compressed)"
        );
        assert_eq!(
            Status::Reconnecting { seconds: 3 }.to_string(),
            "Reconnecting in 3 s…"
        );
        let closed = Status::Closed {
            code: 1000,
            reason: String::new(),
        };
        assert_eq!(closed.to_string(), "Closed (1000)");
        let closed = Status::Closed {
            code: 1008,
            reason: "too slow".into(),
        };
        assert_eq!(closed.to_string(), "Closed (1008: too slow)");
        assert_eq!(closed.key(), "closed");
    }

    #[test]
    fn a_hung_server_is_explained() {
        let timeout = Duration::from_millis(2500);
        assert_eq!(
            no_reply_reason(timeout),
            "no answer from the server for 2.5 s"
        );
        assert!(
            no_reply_reason(Duration::from_secs(60)).len() <= 123,
            "fits a close frame"
        );
        assert_eq!(
            no_reply_notice(Duration::from_secs(5)),
            "The server has not answered for 5 s: the client closed the connection (4000) and \
             reconnects. Unanswered messages will be sent again."
        );
        let failed = Status::Failed {
            reason: "bad URL".into(),
        };
        assert_eq!(failed.to_string(), "Cannot connect: bad URL");
        assert_eq!(failed.key(), "failed");
    }

    #[test]
    fn the_countdown_is_shown_but_only_the_state_is_announced() {
        let parts = |seconds| Status::Reconnecting { seconds }.announced_and_detail();
        assert_eq!(parts(3), ("Reconnecting".to_owned(), " in 3 s…".to_owned()));
        assert_eq!(parts(3).0, parts(2).0, "a tick changes nothing announced");
        let (announced, detail) = parts(3);
        assert_eq!(
            announced + &detail,
            Status::Reconnecting { seconds: 3 }.to_string()
        );
        assert_eq!(
            Status::Offline.announced_and_detail(),
            ("Offline: waiting for the network".to_owned(), String::new())
        );
        assert_eq!(Status::Offline.key(), "offline");
    }

    #[test]
    fn a_failed_attempt_names_the_address_and_the_likely_causes() {
        let notice = cannot_connect_notice("ws://b:2/subscriptions", not_opened_reason());
        assert!(
            notice.starts_with("Cannot connect to ws://b:2/subscriptions: "),
            "{notice}"
        );
        assert!(notice.contains("Content-Security-Policy"), "{notice}");
        assert!(notice.contains("keeps trying"), "{notice}");
    }

    #[test]
    fn only_a_normal_close_stays_closed() {
        assert_eq!(after_close(1000), AfterClose::StayClosed);
        for code in [1001, 1006, 1008, 1011, 4000] {
            assert_eq!(after_close(code), AfterClose::Reconnect, "{code}");
        }
    }
}
