//! The connection's state as the user sees it, and what to do after a close.

use std::fmt;

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Open,
    /// Waiting to try again, `seconds` from now.
    Reconnecting {
        seconds: u32,
    },
    /// Closed for good, until the user asks to reconnect.
    Closed {
        code: u16,
        reason: String,
    },
}

impl Status {
    /// A machine-readable name, used as a CSS class and a `data-status` attribute.
    pub fn key(&self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Open => "open",
            Status::Reconnecting { .. } => "reconnecting",
            Status::Closed { .. } => "closed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Connecting => f.write_str("Connecting…"),
            Status::Open => f.write_str("Connected"),
            Status::Reconnecting { seconds } => write!(f, "Reconnecting in {seconds} s…"),
            Status::Closed { code, reason } if reason.is_empty() => write!(f, "Closed ({code})"),
            Status::Closed { code, reason } => write!(f, "Closed ({code}: {reason})"),
        }
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

/// Normal closure means the server meant it; every other ending is a fault to recover from.
pub fn after_close(code: u16) -> AfterClose {
    if code == 1000 {
        AfterClose::StayClosed
    } else {
        AfterClose::Reconnect
    }
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
        assert_eq!(Status::Open.to_string(), "Connected");
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
    fn only_a_normal_close_stays_closed() {
        assert_eq!(after_close(1000), AfterClose::StayClosed);
        for code in [1001, 1006, 1008, 1011, 4000] {
            assert_eq!(after_close(code), AfterClose::Reconnect, "{code}");
        }
    }
}
