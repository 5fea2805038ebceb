//! Signing in to a server that wants tokens (`--auth-key`), as both clients do it: the `auth`
//! frame that goes first on every connection, when to refresh the token (at about 80% of its
//! life, on the same connection), and what each of the server's identity closes means.

use std::time::Duration;

use room_protocol::ClientFrame;
use room_protocol::bounds::{MAX_TOKEN_BYTES, close};
use serde::Deserialize;

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

/// Whether a server's `/rooms` wants tokens, as its `GET /auth/config` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No `--auth-key`: names come from `?name=`.
    Open,
    /// `--auth-key`: the first frame is `auth`; `dev_sign_in` when the server signs tokens
    /// itself at `/auth/token` (`--dev-sign-in`).
    Tokens { dev_sign_in: bool },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthConfig {
    tokens: bool,
    #[serde(default)]
    dev_sign_in: bool,
}

/// What `GET /auth/config` answered with `status` and `body`. A 404 is a server (or a proxy)
/// without the route, whose rooms are open; `Err` says what was wrong, and is worth asking
/// again (a restarting server, a proxy's 502).
pub fn auth_mode(status: u16, body: &str) -> Result<AuthMode, String> {
    match status {
        200 => match serde_json::from_str::<AuthConfig>(body) {
            Ok(AuthConfig { tokens: false, .. }) => Ok(AuthMode::Open),
            Ok(AuthConfig {
                tokens: true,
                dev_sign_in,
            }) => Ok(AuthMode::Tokens { dev_sign_in }),
            Err(_) => Err("its /auth/config is not the JSON this page reads".to_owned()),
        },
        404 => Ok(AuthMode::Open),
        status => Err(format!("its /auth/config answered HTTP {status}")),
    }
}

/// What a token URL's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAnswer {
    /// A token to sign in with.
    Token(String),
    /// Asking again would be refused again (401, 403, another 4xx, an answer that is not a
    /// token): said once in these words, and nothing more until the user acts.
    Refused(String),
    /// Worth asking again later (5xx, or no answer at all): these words say why.
    Unavailable(String),
}

/// Longest token URL answer read: a token at its limit in a small JSON object.
pub const MAX_TOKEN_ANSWER_BYTES: usize = MAX_TOKEN_BYTES + 1024;

#[derive(Deserialize)]
struct Issued {
    token: String,
}

/// What a token URL answered with `status` and `body` (`{"token":"JWT"}` on success; a
/// refusal's body, when it is short text, is quoted to the user).
pub fn token_answer(status: u16, body: &str) -> TokenAnswer {
    match status {
        200..=299 => {
            if body.len() > MAX_TOKEN_ANSWER_BYTES {
                return TokenAnswer::Refused(format!(
                    "the sign-in answer is {} bytes, more than a token of at most {MAX_TOKEN_BYTES}",
                    body.len()
                ));
            }
            match serde_json::from_str::<Issued>(body) {
                Ok(Issued { token })
                    if !token.is_empty()
                        && token.len() <= MAX_TOKEN_BYTES
                        && token.bytes().all(|byte| byte.is_ascii_graphic()) =>
                {
                    TokenAnswer::Token(token)
                }
                // Never quoted: it may be a token, malformed.
                _ => TokenAnswer::Refused(
                    r#"the sign-in did not answer {"token":"..."} with a token of at most 8 KiB"#
                        .to_owned(),
                ),
            }
        }
        400..=499 => {
            let said = said(body);
            let what = match status {
                401 | 403 => "refused to sign you in",
                404 => "is not there",
                _ => "refused the request",
            };
            TokenAnswer::Refused(if said.is_empty() {
                format!("the sign-in {what} (HTTP {status})")
            } else {
                format!("the sign-in {what} (HTTP {status}: {said})")
            })
        }
        status => TokenAnswer::Unavailable(format!("the sign-in answered HTTP {status}")),
    }
}

/// A refusal's body as a short phrase to quote: its first line, when it is short plain text
/// (not an HTML error page), without a trailing period.
fn said(body: &str) -> String {
    const LONGEST: usize = 200;
    let line = body.lines().next().unwrap_or_default().trim();
    if line.len() > LONGEST || line.starts_with('<') || line.starts_with('{') {
        return String::new();
    }
    line.trim_end_matches('.').to_owned()
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

    #[test]
    fn the_server_says_whether_it_wants_tokens() {
        assert_eq!(
            auth_mode(200, r#"{"tokens":false,"devSignIn":false}"#),
            Ok(AuthMode::Open)
        );
        assert_eq!(
            auth_mode(200, r#"{"tokens":true,"devSignIn":true}"#),
            Ok(AuthMode::Tokens { dev_sign_in: true })
        );
        assert_eq!(
            auth_mode(200, r#"{"tokens":true,"later":1}"#),
            Ok(AuthMode::Tokens { dev_sign_in: false })
        );
        assert_eq!(auth_mode(404, "Not found."), Ok(AuthMode::Open));
        assert!(auth_mode(200, "<html>").is_err());
        assert!(auth_mode(502, "").expect_err("502").contains("502"));
    }

    #[test]
    fn a_token_url_answers_a_token_a_refusal_or_later() {
        assert_eq!(
            token_answer(200, r#"{"token":"a.b.c"}"#),
            TokenAnswer::Token("a.b.c".into())
        );
        let long = format!(r#"{{"token":"{}"}}"#, "a".repeat(MAX_TOKEN_BYTES + 1));
        for bad in [
            r#"{"token":""}"#,
            r#"{"token":"a b"}"#,
            r#"{"jwt":"a.b.c"}"#,
            "a.b.c",
            long.as_str(),
        ] {
            let TokenAnswer::Refused(words) = token_answer(200, bad) else {
                panic!("{bad} is refused");
            };
            assert!(
                !words.contains("a.b.c") && !words.contains("aaaa"),
                "{words}"
            );
        }
        assert_eq!(
            token_answer(403, "Sign-in is for this server's own pages.\n"),
            TokenAnswer::Refused(
                "the sign-in refused to sign you in (HTTP 403: Sign-in is for this server's own pages)"
                    .into()
            )
        );
        assert_eq!(
            token_answer(401, "<html><body>login</body></html>"),
            TokenAnswer::Refused("the sign-in refused to sign you in (HTTP 401)".into())
        );
        assert!(
            matches!(token_answer(404, ""), TokenAnswer::Refused(words) if words.contains("not there"))
        );
        assert!(
            matches!(token_answer(400, "Sign in with one name."), TokenAnswer::Refused(words) if words.contains("one name"))
        );
        assert_eq!(
            token_answer(503, "busy"),
            TokenAnswer::Unavailable("the sign-in answered HTTP 503".into())
        );
    }
}
