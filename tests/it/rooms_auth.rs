//! Identities (`--auth-key`) against the real binary: every refusal closes 4401 with its
//! reason, grants by exact name and prefix, read-only rooms, a refresh that keeps the
//! connection and drops a room no longer granted, 4408 on time, key rotation, the per-user
//! cap, dedup by user, no token in the logs at trace level, `server token`, `--dev-sign-in`,
//! and the same through two instances on one Redis.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use data_encoding::BASE64URL_NOPAD;
use futures_util::SinkExt;
use jsonwebtoken::{Algorithm, EncodingKey};
use room_protocol::{ErrorCode, ServerFrame};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::rooms::{Member, publish};
use crate::support::{
    PATIENCE, Redis, RespReply, TestServer, expect_close, http_post_form, http_request,
    next_message, server_binary,
};

/// The HMAC secret most tests sign with (40 bytes).
const SECRET: &str = "the identities tests' secret, 40 bytes..";
/// A second secret, for rotation.
const SECOND_SECRET: &str = "the rotation tests' other secret, 41 bytes";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/auth")
        .join(name)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Key files in a directory that lives as long as the test: `hmac` (with the trailing
/// newline an editor leaves), `hmac2`, `short`, and the Ed25519 public key `ed25519.pub`.
pub(crate) struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    pub(crate) fn new() -> Keys {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("hmac"), format!("{SECRET}\n")).expect("written");
        std::fs::write(dir.path().join("hmac2"), SECOND_SECRET).expect("written");
        std::fs::write(dir.path().join("short"), "31 bytes is one byte too short\n")
            .expect("written");
        std::fs::copy(
            fixture("ed25519-public.pem"),
            dir.path().join("ed25519.pub"),
        )
        .expect("copied");
        Keys { dir }
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// A compact JWT of these JSON texts, signed with `key` by `algorithm` (any header may be
/// given, so tokens a server must refuse can be made).
fn jwt(header: &str, claims: &str, key: &EncodingKey, algorithm: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(header.as_bytes()),
        BASE64URL_NOPAD.encode(claims.as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, algorithm).expect("signs");
    format!("{message}.{signature}")
}

fn hmac(secret: &str) -> EncodingKey {
    EncodingKey::from_secret(secret.as_bytes()).expect("an HMAC key")
}

/// An HS256 token of `claims`, signed with [`SECRET`].
pub(crate) fn hs256(claims: &Value) -> String {
    jwt(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims.to_string(),
        &hmac(SECRET),
        Algorithm::HS256,
    )
}

/// Claims for `sub`, living `ttl` seconds, granting `rooms`.
pub(crate) fn claims(sub: &str, name: Option<&str>, rooms: Value, ttl: u64) -> Value {
    let mut claims = json!({"sub": sub, "exp": now_secs() + ttl, "rooms": rooms});
    if let Some(name) = name {
        claims["name"] = json!(name);
    }
    claims
}

pub(crate) async fn start(keys: &Keys, extra: &[&str]) -> TestServer {
    let hmac = keys.path("hmac");
    let mut args = vec!["--auth-key", hmac.as_str()];
    args.extend_from_slice(extra);
    TestServer::start(&args).await
}

/// Opens `/rooms` (no name: the token gives it) and sends `token` in an `auth` frame.
async fn send_token(server: &TestServer, token: &str) -> Member {
    let client = server.connect("/rooms").await;
    let mut member = Member { client };
    member.send(json!({"type": "auth", "token": token})).await;
    member
}

/// Signs in with `token` and returns the member and its `authed` frame's fields.
pub(crate) async fn sign_in(server: &TestServer, token: &str) -> (Member, (String, String, u64)) {
    let mut member = send_token(server, token).await;
    match member.next().await {
        ServerFrame::Authed {
            user,
            name,
            expires,
        } => (member, (user, name, expires)),
        other => panic!("expected authed, got {other:?}"),
    }
}

async fn expect_4401(member: &mut Member) -> String {
    let (code, reason) = expect_close(&mut member.client).await;
    assert_eq!(code, 4401, "{reason}");
    reason
}

#[tokio::test]
async fn every_refused_token_closes_4401_with_a_reason_and_never_the_token() {
    let keys = Keys::new();
    let server = start(&keys, &[]).await;
    let ed_key = keys.path("ed25519.pub");
    let ed_server = TestServer::start(&["--auth-key", &ed_key]).await;
    let good = |extra: Value| {
        let mut claims = claims("ana", None, json!({"lobby": "write"}), 60);
        claims.as_object_mut().expect("an object").extend(
            extra
                .as_object()
                .expect("an object")
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        claims
    };
    let without = |claim: &str| {
        let mut claims = good(json!({}));
        claims.as_object_mut().expect("an object").remove(claim);
        claims
    };
    let public_pem = std::fs::read(fixture("ed25519-public.pem")).expect("the fixture");
    let none = format!(
        "{}.{}.",
        BASE64URL_NOPAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        BASE64URL_NOPAD.encode(good(json!({})).to_string().as_bytes())
    );
    let cases: Vec<(&TestServer, String, &str)> = vec![
        (&server, none, "algorithm not allowed"),
        (
            &server,
            jwt(
                r#"{"alg":"HS512"}"#,
                &good(json!({})).to_string(),
                &hmac(SECRET),
                Algorithm::HS512,
            ),
            "algorithm not allowed",
        ),
        // The confusion attack: HS256 keyed with the Ed25519 public key's own bytes.
        (
            &ed_server,
            jwt(
                r#"{"alg":"HS256"}"#,
                &good(json!({})).to_string(),
                &EncodingKey::from_secret(&public_pem).expect("key"),
                Algorithm::HS256,
            ),
            "algorithm not allowed",
        ),
        (
            &server,
            jwt(
                r#"{"alg":"HS256"}"#,
                &good(json!({})).to_string(),
                &hmac("some other secret that is long enough"),
                Algorithm::HS256,
            ),
            "bad signature",
        ),
        (
            &server,
            hs256(&good(json!({"exp": now_secs() - 1}))),
            "token expired",
        ),
        (
            &server,
            hs256(&good(json!({"nbf": now_secs() + 60}))),
            "token not yet valid",
        ),
        (&server, hs256(&without("sub")), "missing claim: sub"),
        (&server, hs256(&without("exp")), "missing claim: exp"),
        (&server, hs256(&without("rooms")), "missing claim: rooms"),
        (&server, "not-a-token".to_owned(), "malformed token"),
        (&server, "a.b!.c".to_owned(), "malformed token"),
        (
            &server,
            hs256(&good(json!({"padding": "x".repeat(9_000)}))),
            "token too long",
        ),
    ];
    for (server, token, reason) in cases {
        let mut member = send_token(server, &token).await;
        let said = expect_4401(&mut member).await;
        assert_eq!(said, reason, "for {reason}");
        let signature = token.rsplit('.').next().expect("a part");
        assert!(
            signature.is_empty() || !said.contains(signature),
            "the reason holds the token"
        );
    }
    // `nbf` up to 5 s ahead is the leeway for a backend's clock: accepted.
    sign_in(&server, &hs256(&good(json!({"nbf": now_secs() + 3})))).await;
}

#[tokio::test]
async fn anything_but_auth_first_or_nothing_in_time_closes_4401() {
    let keys = Keys::new();
    let server = start(&keys, &["--auth-timeout", "1"]).await;

    let mut joins_first = Member {
        client: server.connect("/rooms").await,
    };
    joins_first
        .send(json!({"type": "join", "room": "lobby"}))
        .await;
    assert_eq!(
        expect_4401(&mut joins_first).await,
        "the first frame must be auth"
    );

    let mut garbage_first = Member {
        client: server.connect("/rooms").await,
    };
    garbage_first
        .client
        .send(Message::text("not json"))
        .await
        .expect("sent");
    assert_eq!(
        expect_4401(&mut garbage_first).await,
        "the first frame must be auth"
    );

    let mut binary_first = Member {
        client: server.connect("/rooms").await,
    };
    binary_first
        .client
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .expect("sent");
    assert_eq!(
        expect_4401(&mut binary_first).await,
        "the first frame must be auth"
    );

    // Silent: closed once --auth-timeout has passed, not before, and not much after.
    let opened = tokio::time::Instant::now();
    let mut silent = Member {
        client: server.connect("/rooms").await,
    };
    let reason = expect_4401(&mut silent).await;
    let waited = opened.elapsed();
    assert!(reason.starts_with("no auth frame in time"), "{reason}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );

    // A name in the URL is refused: the token names the person.
    let reply = server
        .request(
            "GET",
            "/rooms?name=ana",
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        )
        .await;
    assert_eq!(reply.status, 400);
    let body = String::from_utf8_lossy(&reply.body);
    assert!(body.contains("tokens"), "{body}");
}

#[tokio::test]
async fn grants_by_exact_name_and_prefix_and_read_only_rooms() {
    let keys = Keys::new();
    let server = start(&keys, &[]).await;
    let rooms = json!({"lobby": "write", "news": "read", "team-42.*": "write"});
    let (mut ana, (user, name, expires)) =
        sign_in(&server, &hs256(&claims("ana", Some("Ana"), rooms, 60))).await;
    assert_eq!((user.as_str(), name.as_str()), ("ana", "Ana"));
    assert!(expires > now_ms() && expires <= now_ms() + 61_000);

    for room in ["lobby", "news", "team-42.chat"] {
        ana.join(room, None).await;
    }
    for room in ["team-42", "team-420", "elsewhere"] {
        ana.send(json!({"type": "join", "room": room})).await;
        let (named, _) = ana.expect_error(ErrorCode::Forbidden).await;
        assert_eq!(named.as_deref(), Some(room));
    }
    // Read-only: the publish is refused, the connection stays, and the room still reads.
    ana.send(publish("news", "n1", "hello")).await;
    let (room, id) = ana.expect_error(ErrorCode::Forbidden).await;
    assert_eq!((room.as_deref(), id.as_deref()), (Some("news"), Some("n1")));

    let (mut editor, _) = sign_in(
        &server,
        &hs256(&claims("ed", Some("Editor"), json!({"news": "write"}), 60)),
    )
    .await;
    editor.join("news", None).await;
    editor.send(publish("news", "n1", "headline")).await;
    // Who said it: the token's sub as `user`, its name as `from`, whatever the client sends.
    match ana.next().await {
        ServerFrame::Message {
            room,
            user,
            from,
            text,
            ..
        } => {
            assert_eq!(room, "news");
            assert_eq!((user.as_str(), from.as_str()), ("ed", "Editor"));
            assert_eq!(text, "headline");
        }
        other => panic!("expected the message, got {other:?}"),
    }
    ana.send(publish("team-42.chat", "t1", "mine")).await;
    let got = ana.messages(1).await;
    assert_eq!(got[0].1, "t1");
}

#[tokio::test]
async fn a_refresh_keeps_the_connection_and_leaves_rooms_no_longer_granted() {
    let keys = Keys::new();
    let server = start(&keys, &[]).await;
    let both = json!({"lobby": "write", "news": "read"});
    let (mut ana, _) = sign_in(&server, &hs256(&claims("ana", None, both, 60))).await;
    ana.join("lobby", None).await;
    ana.join("news", None).await;

    let renewed = claims("ana", Some("Ana B."), json!({"lobby": "write"}), 120);
    let new_exp = renewed["exp"].as_u64().expect("a number") * 1000;
    ana.send(json!({"type": "auth", "token": hs256(&renewed)}))
        .await;
    assert_eq!(
        ana.next().await,
        ServerFrame::Authed {
            user: "ana".into(),
            name: "Ana B.".into(),
            expires: new_exp,
        }
    );
    assert_eq!(
        ana.next().await,
        ServerFrame::Left {
            room: "news".into(),
            reason: Some("forbidden".into()),
        }
    );
    ana.send(json!({"type": "join", "room": "news"})).await;
    ana.expect_error(ErrorCode::Forbidden).await;
    // Still the same connection, in lobby, under the new name.
    ana.send(publish("lobby", "after", "still here")).await;
    loop {
        match ana.next().await {
            ServerFrame::Message { from, id, .. } => {
                assert_eq!((from.as_str(), id.as_str()), ("Ana B.", "after"));
                break;
            }
            ServerFrame::Ack { .. } => {}
            other => panic!("expected the message, got {other:?}"),
        }
    }

    // A refresh for someone else ends the connection.
    let other = claims("bo", None, json!({"lobby": "write"}), 60);
    ana.send(json!({"type": "auth", "token": hs256(&other)}))
        .await;
    let reason = loop {
        match tokio::time::timeout(PATIENCE, futures_util::StreamExt::next(&mut ana.client))
            .await
            .expect("the server answers")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 4401);
                break frame.reason.to_string();
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert!(reason.contains("same user"), "{reason}");
}

#[tokio::test]
async fn a_token_that_expires_closes_4408_on_time_and_a_refreshed_one_does_not() {
    let keys = Keys::new();
    let server = start(&keys, &[]).await;
    let short = claims("ana", None, json!({"lobby": "write"}), 2);
    let exp_ms = short["exp"].as_u64().expect("a number") * 1000;
    let (mut expiring, _) = sign_in(&server, &hs256(&short)).await;
    let (mut refreshed, _) = sign_in(&server, &hs256(&short)).await;
    refreshed
        .send(json!({"type": "auth", "token": hs256(&claims("ana", None, json!({"lobby": "write"}), 60))}))
        .await;
    assert!(matches!(refreshed.next().await, ServerFrame::Authed { .. }));
    refreshed.join("lobby", None).await;

    let (code, reason) = expect_close(&mut expiring.client).await;
    let closed_at = now_ms();
    assert_eq!((code, reason.as_str()), (4408, "token expired"));
    assert!(
        closed_at + 50 >= exp_ms && closed_at <= exp_ms + 2_000,
        "closed {} ms from exp",
        closed_at as i64 - exp_ms as i64
    );
    // The refreshed connection outlives the first token.
    refreshed.send(publish("lobby", "m1", "alive")).await;
    assert_eq!(refreshed.messages(1).await[0].1, "m1");
}

#[tokio::test]
async fn two_keys_rotate_hmac_and_ed25519_each_with_its_own_algorithm() {
    let keys = Keys::new();
    let (hmac2, ed) = (keys.path("hmac2"), keys.path("ed25519.pub"));
    let server = start(&keys, &["--auth-key", &hmac2, "--auth-key", &ed]).await;
    let body = claims("ana", None, json!({"*": "write"}), 60).to_string();
    let header = r#"{"alg":"HS256"}"#;
    sign_in(
        &server,
        &jwt(header, &body, &hmac(SECRET), Algorithm::HS256),
    )
    .await;
    sign_in(
        &server,
        &jwt(header, &body, &hmac(SECOND_SECRET), Algorithm::HS256),
    )
    .await;
    let private = |name: &str| {
        EncodingKey::from_ed_pem(&std::fs::read(fixture(name)).expect("fixture")).expect("key")
    };
    let eddsa = r#"{"alg":"EdDSA"}"#;
    sign_in(
        &server,
        &jwt(
            eddsa,
            &body,
            &private("ed25519-private.pem"),
            Algorithm::EdDSA,
        ),
    )
    .await;
    let mut stranger = send_token(
        &server,
        &jwt(
            eddsa,
            &body,
            &private("other-ed25519-private.pem"),
            Algorithm::EdDSA,
        ),
    )
    .await;
    assert_eq!(expect_4401(&mut stranger).await, "bad signature");
}

#[tokio::test]
async fn one_user_holds_at_most_its_connections_and_a_closed_one_frees_its_place() {
    let keys = Keys::new();
    let server = start(&keys, &["--max-connections-per-user", "2"]).await;
    let token = hs256(&claims("ana", None, json!({"*": "write"}), 60));
    let (mut first, _) = sign_in(&server, &token).await;
    let (_second, _) = sign_in(&server, &token).await;
    // Past the cap, many times over: each is refused, and nobody else is affected.
    for _ in 0..5 {
        let mut third = send_token(&server, &token).await;
        let (code, reason) = expect_close(&mut third.client).await;
        assert_eq!(code, 4429, "{reason}");
        assert!(reason.contains("too many connections"), "{reason}");
    }
    sign_in(
        &server,
        &hs256(&claims("bo", None, json!({"*": "write"}), 60)),
    )
    .await;
    // One closes: its place is free once the server has ended its session.
    first.client.close(None).await.expect("closes");
    while futures_util::StreamExt::next(&mut first.client)
        .await
        .is_some()
    {}
    let (third, _) = sign_in_when_free(&server, &token).await;
    // One goes without a word (its TCP connection dropped): its place comes back too.
    drop(third);
    sign_in_when_free(&server, &token).await;
}

/// Signs in with `token` once the server has let go of a connection of the same user that
/// ended (refused 4429 until then; at most [`PATIENCE`]).
async fn sign_in_when_free(server: &TestServer, token: &str) -> (Member, String) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut again = send_token(server, token).await;
        match next_message(&mut again.client).await {
            Message::Text(text) => {
                assert!(text.contains(r#""type":"authed""#), "{text}");
                return (again, text.to_string());
            }
            Message::Close(Some(frame)) if u16::from(frame.code) == 4429 => {
                // The server has not dropped the ended session yet: ask again.
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the ended connection's place never came back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn refreshes_come_no_faster_than_joins() {
    let keys = Keys::new();
    let server = start(&keys, &["--join-rate", "1", "--join-burst", "2"]).await;
    let token = hs256(&claims("ana", None, json!({"lobby": "write"}), 60));
    let (mut member, _) = sign_in(&server, &token).await;
    const SENT: usize = 10;
    for _ in 0..SENT {
        member.send(json!({"type": "auth", "token": token})).await;
    }
    let (mut authed, mut limited) = (0, 0);
    for _ in 0..SENT {
        match member.next().await {
            ServerFrame::Authed { .. } => authed += 1,
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message,
                ..
            } => {
                assert!(message.contains("refreshing"), "{message}");
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The burst of 2, and at most a few more should the sending take seconds.
    assert!((2..=4).contains(&authed), "{authed} refreshes taken");
    assert_eq!(authed + limited, SENT);
    // The connection stays and works.
    member.send(json!({"type": "join", "room": "lobby"})).await;
    assert!(matches!(
        member.next().await,
        ServerFrame::Joined { .. } | ServerFrame::Error { .. }
    ));
}

#[tokio::test]
async fn a_sign_in_form_sent_a_byte_at_a_time_is_cut_off_at_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(&["--dev-sign-in", "--header-timeout", "1"]).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connects");
    stream
        .write_all(
            b"POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: \
              application/x-www-form-urlencoded\r\nContent-Length: 20\r\n\r\nna",
        )
        .await
        .expect("writes");
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed in time")
        .expect("reads");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn with_tokens_one_users_id_never_swallows_anothers_message() {
    let keys = Keys::new();
    let server = start(&keys, &[]).await;
    let grant = || json!({"lobby": "write"});
    let (mut ana, _) = sign_in(&server, &hs256(&claims("ana", None, grant(), 60))).await;
    let (mut bo, _) = sign_in(&server, &hs256(&claims("bo", None, grant(), 60))).await;
    let (mut reader, _) = sign_in(&server, &hs256(&claims("cy", None, grant(), 60))).await;
    for member in [&mut ana, &mut bo, &mut reader] {
        member.join("lobby", None).await;
    }
    ana.send(publish("lobby", "same-id", "from ana")).await;
    let ana_offset = loop {
        if let ServerFrame::Ack { offset, .. } = ana.next().await {
            break offset;
        }
    };
    bo.send(publish("lobby", "same-id", "from bo")).await;
    let got = reader.messages(2).await;
    assert_eq!(
        got.iter().map(|(offset, _)| *offset).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(ana_offset, 1);
    // The same user's resend, even from a new connection, is still recognised.
    drop(ana);
    let (mut ana_again, _) = sign_in(&server, &hs256(&claims("ana", None, grant(), 60))).await;
    ana_again.join("lobby", None).await;
    ana_again
        .send(publish("lobby", "same-id", "from ana"))
        .await;
    loop {
        match ana_again.next().await {
            ServerFrame::Ack { id, offset, .. } if id == "same-id" => {
                assert_eq!(offset, 1, "acked at its first offset");
                break;
            }
            ServerFrame::Message { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    reader.send(publish("lobby", "marker", "after")).await;
    let next = reader.messages(1).await;
    assert_eq!(
        next[0],
        (3, "marker".to_owned()),
        "the resend was not broadcast"
    );
}

#[tokio::test]
async fn no_token_or_key_reaches_the_logs_even_at_trace_level() {
    let keys = Keys::new();
    let server = start(&keys, &["--log", "trace"]).await;
    let token = hs256(&claims("ana", None, json!({"lobby": "write"}), 60));
    let (mut ana, _) = sign_in(&server, &token).await;
    ana.send(json!({"type": "auth", "token": token})).await;
    assert!(matches!(ana.next().await, ServerFrame::Authed { .. }));
    let refused = jwt(
        r#"{"alg":"HS256"}"#,
        &claims("bo", None, json!({}), 60).to_string(),
        &hmac("a wrong secret, thirty-two bytes or more"),
        Algorithm::HS256,
    );
    let mut bo = send_token(&server, &refused).await;
    expect_4401(&mut bo).await;
    ana.join("lobby", None).await;
    server.wait_for_log("bad signature").await;
    let logs = server.logs();
    for (what, secret) in [
        (
            "a token's signature",
            token.rsplit('.').next().expect("a part"),
        ),
        ("a token's claims", token.split('.').nth(1).expect("a part")),
        (
            "a refused token",
            refused.rsplit('.').next().expect("a part"),
        ),
        ("the key", SECRET),
    ] {
        assert!(!logs.contains(secret), "{what} is in the logs");
    }
}

#[tokio::test]
async fn server_token_mints_what_the_server_accepts_and_refuses_a_short_secret() {
    let keys = Keys::new();
    let server = start(&keys, &[]).await;
    let mint = |key: String, extra: &[&str]| {
        let mut command = std::process::Command::new(server_binary());
        command.args(["token", "--auth-key", &key, "--sub", "ana"]);
        command.args(extra);
        command.output().expect("the binary runs")
    };
    let made = mint(
        keys.path("hmac"),
        &[
            "--name",
            "Ana",
            "--room",
            "lobby=write",
            "--room",
            "news.*=read",
            "--ttl",
            "10m",
        ],
    );
    assert!(made.status.success(), "{made:?}");
    let token = String::from_utf8(made.stdout).expect("UTF-8");
    let (mut ana, (user, name, expires)) = sign_in(&server, token.trim()).await;
    assert_eq!((user.as_str(), name.as_str()), ("ana", "Ana"));
    let ttl = expires.saturating_sub(now_ms());
    assert!((595_000..=600_000).contains(&ttl), "lives {ttl} ms");
    ana.join("news.today", None).await;
    ana.send(publish("news.today", "x", "no")).await;
    ana.expect_error(ErrorCode::Forbidden).await;

    // EdDSA: signed with the private key, checked with the public one.
    let ed = keys.path("ed25519.pub");
    let ed_server = TestServer::start(&["--auth-key", &ed]).await;
    let private = fixture("ed25519-private.pem").display().to_string();
    let made = mint(private, &["--room", "*=read"]);
    assert!(made.status.success(), "{made:?}");
    sign_in(&ed_server, String::from_utf8_lossy(&made.stdout).trim()).await;

    // A short secret: exit 2, one line that says what to do.
    let made = mint(keys.path("short"), &["--room", "*=read"]);
    assert_eq!(made.status.code(), Some(2));
    let said = String::from_utf8_lossy(&made.stderr);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("at least 32"), "{said}");
    let started = std::process::Command::new(server_binary())
        .args(["--addr", "127.0.0.1:0", "--auth-key", &keys.path("short")])
        .output()
        .expect("the binary runs");
    assert_eq!(started.status.code(), Some(2));
    let said = String::from_utf8_lossy(&started.stderr);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("at least 32"), "{said}");
    // AUTH_KEY, comma-separated, is read like --auth-key given twice: its second key is the
    // short one, and the server refuses to start.
    let started = std::process::Command::new(server_binary())
        .args(["--addr", "127.0.0.1:0"])
        .env(
            "AUTH_KEY",
            format!("{},{}", keys.path("hmac"), keys.path("short")),
        )
        .output()
        .expect("the binary runs");
    assert_eq!(started.status.code(), Some(2), "{started:?}");
    assert!(String::from_utf8_lossy(&started.stderr).contains("at least 32"));
}

#[tokio::test]
async fn dev_sign_in_names_people_and_the_config_says_what_the_page_needs() {
    let open = TestServer::start(&[]).await;
    open.wait_for_log("rooms are open: anyone can join any room under any name; set --auth-key")
        .await;
    let config = http_request(open.addr, "GET", "/auth/config", &[]).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&config.body).expect("JSON"),
        json!({"tokens": false, "devSignIn": false})
    );
    let refused = http_post_form(open.addr, "/auth/token", &[], "name=Ana").await;
    assert_eq!(refused.status, 404);
    // In open mode an auth frame is refused and the connection stays.
    let mut anon = Member::connect(&open, "ana").await;
    anon.send(json!({"type": "auth", "token": "x.y.z"})).await;
    anon.expect_error(ErrorCode::BadRequest).await;
    anon.join("lobby", None).await;

    let server = TestServer::start(&["--dev-sign-in"]).await;
    server
        .wait_for_log("--dev-sign-in: POST /auth/token signs a token for any name")
        .await;
    assert!(
        !server.logs().contains("rooms are open"),
        "tokens: not open"
    );
    let config = http_request(server.addr, "GET", "/auth/config", &[]).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&config.body).expect("JSON"),
        json!({"tokens": true, "devSignIn": true})
    );
    assert_eq!(config.header("cache-control"), Some("no-store"));
    let token_for = |name: &'static str| {
        let addr = server.addr;
        async move {
            let reply = http_post_form(addr, "/auth/token", &[], &format!("name={name}")).await;
            assert_eq!(reply.status, 200, "{:?}", reply.body);
            let body: Value = serde_json::from_slice(&reply.body).expect("JSON");
            body["token"].as_str().expect("a token").to_owned()
        }
    };
    let (_, (ana, name, _)) = sign_in(&server, &token_for("Ana").await).await;
    assert_eq!(name, "Ana");
    assert!(ana.starts_with("dev-"), "{ana}");
    let (_, (ana_again, _, _)) = sign_in(&server, &token_for("Ana").await).await;
    let (_, (bo, _, _)) = sign_in(&server, &token_for("Bo").await).await;
    assert_eq!(ana, ana_again, "one name, one user");
    assert_ne!(ana, bo);

    for form in ["name=", "name=%ff", "name=Ana&name=Bo"] {
        let bad = http_post_form(server.addr, "/auth/token", &[], form).await;
        assert_eq!(bad.status, 400, "{form}");
    }
    let cross_site = http_post_form(
        server.addr,
        "/auth/token",
        &[("origin", "http://elsewhere.example")],
        "name=Ana",
    )
    .await;
    assert_eq!(cross_site.status, 403);
    // Two origins, the server's own first: no browser's request.
    let own = format!("http://{}", server.addr);
    let two_origins = http_post_form(
        server.addr,
        "/auth/token",
        &[
            ("origin", own.as_str()),
            ("origin", "http://elsewhere.example"),
        ],
        "name=Ana",
    )
    .await;
    assert_eq!(two_origins.status, 403);
    let huge = http_post_form(server.addr, "/auth/token", &[], &"name=a&".repeat(500)).await;
    assert_eq!(huge.status, 413);

    // --dev-rooms: the grants of every token it signs.
    let reader = TestServer::start(&["--dev-sign-in", "--dev-rooms", "news=read"]).await;
    let reply = http_post_form(reader.addr, "/auth/token", &[], "name=Cy").await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let body: Value = serde_json::from_slice(&reply.body).expect("JSON");
    let (mut cy, _) = sign_in(&reader, body["token"].as_str().expect("a token")).await;
    cy.join("news", None).await;
    cy.send(publish("news", "n1", "no")).await;
    cy.expect_error(ErrorCode::Forbidden).await;
    cy.send(json!({"type": "join", "room": "lobby"})).await;
    cy.expect_error(ErrorCode::Forbidden).await;
}

#[tokio::test]
async fn through_redis_a_token_is_good_on_every_instance_and_dedup_keys_hold_the_user() {
    let redis = Redis::start().await;
    let keys = Keys::new();
    let url = redis.url();
    let first = start(&keys, &["--redis-url", &url]).await;
    let second = start(&keys, &["--redis-url", &url]).await;
    let grant = || json!({"lobby": "write"});
    let ana_token = hs256(&claims("ana", Some("Ana"), grant(), 60));
    let (mut ana, _) = sign_in(&first, &ana_token).await;
    let (mut bo, _) = sign_in(&second, &hs256(&claims("bo", None, grant(), 60))).await;
    let (mut reader, _) = sign_in(&second, &ana_token).await;
    for member in [&mut ana, &mut bo, &mut reader] {
        member.join("lobby", None).await;
    }
    ana.send(publish("lobby", "same-id", "one")).await;
    bo.send(publish("lobby", "same-id", "two")).await;
    let mut authors = Vec::new();
    while authors.len() < 2 {
        match reader.next().await {
            ServerFrame::Message { user, from, .. } => authors.push((user, from)),
            other => panic!("expected a message, got {other:?}"),
        }
    }
    authors.sort();
    assert_eq!(
        authors,
        [
            ("ana".to_owned(), "Ana".to_owned()),
            ("bo".to_owned(), "bo".to_owned())
        ]
    );
    let RespReply::Array(Some(keys)) = redis.command(&["KEYS", "rooms:{lobby}:*id:*"]).await else {
        panic!("KEYS answers an array");
    };
    let mut listed: Vec<String> = keys
        .into_iter()
        .map(|key| match key {
            RespReply::Bulk(Some(bytes)) => String::from_utf8(bytes).expect("UTF-8"),
            other => panic!("a key, not {other:?}"),
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "rooms:{lobby}:uid:2:bo:same-id",
            "rooms:{lobby}:uid:3:ana:same-id"
        ]
    );

    // Grants hold on every instance: read-only is read-only, and a refresh that no longer
    // grants a room leaves it.
    let (mut cy, _) = sign_in(
        &first,
        &hs256(&claims("cy", None, json!({"lobby": "read"}), 60)),
    )
    .await;
    cy.join("lobby", None).await;
    cy.send(publish("lobby", "cy-1", "no")).await;
    cy.expect_error(ErrorCode::Forbidden).await;
    let renewed = claims("bo", None, json!({"elsewhere": "write"}), 120);
    bo.send(json!({"type": "auth", "token": hs256(&renewed)}))
        .await;
    loop {
        match bo.next().await {
            ServerFrame::Left { room, reason } => {
                assert_eq!(
                    (room.as_str(), reason.as_deref()),
                    ("lobby", Some("forbidden"))
                );
                break;
            }
            ServerFrame::Authed { .. } | ServerFrame::Message { .. } | ServerFrame::Ack { .. } => {}
            other => panic!("expected lobby left, got {other:?}"),
        }
    }
    bo.send(json!({"type": "join", "room": "lobby"})).await;
    bo.expect_error(ErrorCode::Forbidden).await;
}
