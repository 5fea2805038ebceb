//! Signing in to a server that wants tokens (`--auth-key`), as both clients do it: the `auth`
//! frame that goes first on every connection, when to refresh the token (at about 80% of its
//! life, on the same connection), and what each of the server's identity closes means.

use std::time::Duration;

use room_protocol::ClientFrame;
use room_protocol::bounds::{MAX_TOKEN_BYTES, close};
use room_protocol::json;

/// The first frame on a connection to a server that wants tokens, and a refresh later.
pub fn auth_frame(token: &str) -> String {
    ClientFrame::Auth {
        token: token.to_owned(),
    }
    .to_json()
}

/// Share of a token's remaining life after which it is refreshed (4/5): early enough that a
/// slow token source still answers before `exp`, late enough not to ask it often.
const REFRESH_AT_MULTIPLIER: u64 = 4;
const REFRESH_AT_DIVISOR: u64 = 5;

/// Shortest wait before a refresh: a token that lives a second or less is refreshed after it
/// (and the server's 4408 then says why), not in a loop.
const MIN_REFRESH_DELAY: Duration = Duration::from_secs(1);

/// How long after `authed` to refresh `token`, which the server says expires at `expires_ms`
/// (ms since the Unix epoch, by its clock), seen at `now_ms` (by this one). By this clock
/// when it agrees with the token's own life (`exp` - `iat`, the issuer's clock): then a token
/// handed out some time after it was made is refreshed in time too. When it does not (the
/// time left by it is none, or more than the token ever had), this clock is off, and the
/// token's life says instead, less the second `iat` may have been rounded down by: a client
/// whose clock is off by more than a token's life would otherwise refresh in a loop, or
/// after `exp`.
pub fn refresh_delay(token: &str, now_ms: u64, expires_ms: u64) -> Duration {
    let by_this_clock = Duration::from_millis(expires_ms.saturating_sub(now_ms));
    let left = match token_life(token) {
        Some(life) if by_this_clock.is_zero() || by_this_clock > life => {
            life.saturating_sub(Duration::from_secs(1))
        }
        _ => by_this_clock,
    };
    // Integer arithmetic: `Duration::mul_f64` would bring float formatting into the wasm.
    let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(millis / REFRESH_AT_DIVISOR * REFRESH_AT_MULTIPLIER)
        .max(MIN_REFRESH_DELAY)
}

/// `exp` - `iat` of a JWT's claims, when it has both: read, not verified (a client only
/// carries tokens; the server verifies them).
pub fn token_life(token: &str) -> Option<Duration> {
    // Whole seconds, as issuers write them: a fraction (allowed, rare) reads as no life, and
    // the clock decides. Integers only: parsing floats would add 10 KiB to the wasm.
    let payload = token.split('.').nth(1)?;
    let claims = json::parse(&String::from_utf8(base64url(payload)?).ok()?).ok()?;
    let seconds = |name: &str| claims.get(name)?.as_u64();
    let life = seconds("exp")?.checked_sub(seconds("iat")?)?;
    (life > 0).then(|| Duration::from_secs(life))
}

/// Decodes unpadded base64url. By hand: a crate for these ten lines would add to the wasm.
fn base64url(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0_u32, 0_u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(bytes)
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

/// What `GET /auth/config` answered with `status` and `body`. A 404 is a server (or a proxy)
/// without the route, whose rooms are open; `Err` says what was wrong, and is worth asking
/// again (a restarting server, a proxy's 502).
pub fn auth_mode(status: u16, body: &str) -> Result<AuthMode, String> {
    match status {
        200 => {
            // `{"tokens":B}`, with `"devSignIn":B` or not.
            let config = json::parse(body).ok();
            let tokens = config
                .as_ref()
                .and_then(|config| config.get("tokens")?.as_bool());
            let dev_sign_in = config
                .as_ref()
                .and_then(|config| match config.get("devSignIn") {
                    None => Some(false),
                    Some(value) => value.as_bool(),
                });
            match (tokens, dev_sign_in) {
                (Some(false), Some(_)) => Ok(AuthMode::Open),
                (Some(true), Some(dev_sign_in)) => Ok(AuthMode::Tokens { dev_sign_in }),
                _ => Err("its /auth/config is not the JSON this page reads".to_owned()),
            }
        }
        404 => Ok(AuthMode::Open),
        0 => Err("its /auth/config answered with a redirect".to_owned()),
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

/// What a token URL answered with `status` and `body` (`{"token":"JWT"}` on success; a
/// refusal's body, when it is short text, is quoted to the user).
pub fn token_answer(status: u16, body: &str) -> TokenAnswer {
    match status {
        // A redirect the page does not follow: a backend's way to a login page.
        0 => TokenAnswer::Refused(
            "the sign-in answered with a redirect (to a login page?): sign in to the app first"
                .to_owned(),
        ),
        200..=299 => {
            if body.len() > MAX_TOKEN_ANSWER_BYTES {
                return TokenAnswer::Refused(format!(
                    "the sign-in answer is {} bytes, more than a token of at most {MAX_TOKEN_BYTES}",
                    body.len()
                ));
            }
            let token = json::parse(body)
                .ok()
                .and_then(|mut answer| answer.take("token")?.into_string());
            match token {
                Some(token)
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

    /// A token with these claims (its header and signature are not read).
    fn token(claims: &str) -> String {
        let encoded: String = {
            const ALPHABET: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let bytes = claims.as_bytes();
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0_u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        };
        format!("eyJhbGciOiJIUzI1NiJ9.{encoded}.c2ln")
    }

    #[test]
    fn a_token_is_refreshed_at_four_fifths_of_its_life_and_never_in_a_loop() {
        // No `iat`: the time left by this clock.
        let plain = token(r#"{"sub":"ana","exp":100}"#);
        assert_eq!(refresh_delay(&plain, 0, 100_000), Duration::from_secs(80));
        assert_eq!(
            refresh_delay(&plain, 50_000, 100_000),
            Duration::from_secs(40)
        );
        assert_eq!(refresh_delay(&plain, 100_000, 100_500), MIN_REFRESH_DELAY);
        assert_eq!(refresh_delay(&plain, 200_000, 100_000), MIN_REFRESH_DELAY);
        assert_eq!(
            refresh_delay("not a token", 0, 10_000),
            Duration::from_secs(8)
        );
    }

    #[test]
    fn a_clock_off_by_more_than_a_tokens_life_changes_nothing() {
        // Issued for 10 minutes: a clock that agrees says how much is left (a token handed
        // out 5 minutes after it was made is refreshed after 4)...
        let issued = token(r#"{"sub":"ana","iat":1800000000,"exp":1800000600,"name":"Ä"}"#);
        assert_eq!(token_life(&issued), Some(Duration::from_secs(600)));
        let exp_ms = 1_800_000_600_000;
        assert_eq!(
            refresh_delay(&issued, exp_ms - 300_000, exp_ms),
            Duration::from_secs(240)
        );
        // ... one that is off (ahead by an hour, or behind by a day) is not believed: the
        // token's life, less a second for `iat`'s rounding, says when.
        for now_ms in [exp_ms + 3_600_000, exp_ms - 86_400_000] {
            assert_eq!(
                refresh_delay(&issued, now_ms, exp_ms),
                Duration::from_millis(479_200),
                "{now_ms}"
            );
        }
        for odd in [
            r#"{"iat":1800000600,"exp":1800000000}"#,
            r#"{"iat":"soon","exp":1800000000}"#,
            r#"{"exp":1800000000}"#,
        ] {
            assert_eq!(token_life(&token(odd)), None, "{odd}");
        }
        assert_eq!(base64url("a+b"), None);
        assert_eq!(base64url("SGk").as_deref(), Some(&b"Hi"[..]));
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
        assert!(
            matches!(token_answer(0, ""), TokenAnswer::Refused(words) if words.contains("redirect"))
        );
        assert!(auth_mode(0, "").is_err());
        assert_eq!(
            token_answer(503, "busy"),
            TokenAnswer::Unavailable("the sign-in answered HTTP 503".into())
        );
    }
}
