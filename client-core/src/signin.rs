//! Signing in to a server that wants tokens (`--auth-key`), as both clients do it: the `auth`
//! frame that goes first on every connection, when to refresh the token (at about 80% of its
//! life, on the same connection), and what each of the server's identity closes means.

use std::time::Duration;

use room_protocol::ClientFrame;
use room_protocol::bounds::close;

/// The first frame on a connection to a server that wants tokens, and a refresh later.
pub fn auth_frame(token: &str) -> String {
    serde_json::to_string(&ClientFrame::Auth {
        token: token.to_owned(),
    })
    .expect("an auth frame is a plain string")
}

/// Share of a token's remaining life after which it is refreshed: early enough that a slow
/// token source still answers before `exp`, late enough not to ask it often.
const REFRESH_AT: f64 = 0.8;

/// Shortest wait before a refresh: a token that lives a second or less is refreshed after it
/// (and the server's 4408 then says why), not in a loop.
const MIN_REFRESH_DELAY: Duration = Duration::from_secs(1);

/// How long after `authed` to refresh a token that expires at `expires_ms` (ms since the Unix
/// epoch), seen at `now_ms`.
pub fn refresh_delay(now_ms: u64, expires_ms: u64) -> Duration {
    let left = expires_ms.saturating_sub(now_ms);
    // `left` is at most a few years in ms: exact in f64.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let at = (left as f64 * REFRESH_AT) as u64;
    Duration::from_millis(at).max(MIN_REFRESH_DELAY)
}

/// What a close from a server that wants tokens means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityClose {
    /// 4408: the token expired; get a new one and reconnect with the positions kept.
    Expired,
    /// 4401 or 4429: trying again as it is would be refused again. Said in these words.
    Refused(String),
}

/// The meaning of close `code` (with `reason`) for identity, if it is one of its codes.
pub fn identity_close(code: u16, reason: &str) -> Option<IdentityClose> {
    let why = if reason.is_empty() {
        "no reason given"
    } else {
        reason
    };
    match code {
        close::TOKEN_EXPIRED => Some(IdentityClose::Expired),
        close::UNAUTHORIZED => Some(IdentityClose::Refused(format!(
            "The server refused the token ({why}): sign in again with another."
        ))),
        close::TOO_MANY_CONNECTIONS => Some(IdentityClose::Refused(format!(
            "The server refused this connection ({why})."
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_frame_is_what_the_server_reads() {
        assert_eq!(auth_frame("a.b.c"), r#"{"type":"auth","token":"a.b.c"}"#);
        assert_eq!(
            room_protocol::frames::parse_client(&auth_frame("x\"y")),
            Ok(ClientFrame::Auth {
                token: "x\"y".into()
            })
        );
    }

    #[test]
    fn a_token_is_refreshed_at_four_fifths_of_its_life_and_never_in_a_loop() {
        assert_eq!(refresh_delay(0, 100_000), Duration::from_secs(80));
        assert_eq!(refresh_delay(50_000, 100_000), Duration::from_secs(40));
        assert_eq!(refresh_delay(100_000, 100_500), MIN_REFRESH_DELAY);
        assert_eq!(refresh_delay(200_000, 100_000), MIN_REFRESH_DELAY);
    }

    #[test]
    fn expired_means_a_new_token_and_refused_means_stop() {
        assert_eq!(
            identity_close(4408, "token expired"),
            Some(IdentityClose::Expired)
        );
        let Some(IdentityClose::Refused(words)) = identity_close(4401, "bad signature") else {
            panic!("refused");
        };
        assert!(words.contains("bad signature"), "{words}");
        assert!(matches!(
            identity_close(4429, ""),
            Some(IdentityClose::Refused(_))
        ));
        for code in [1000, 1001, 1006, 1008, 4000] {
            assert_eq!(identity_close(code, "x"), None, "{code}");
        }
    }
}
