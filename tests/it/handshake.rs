//! The WebSocket handshake as RFC 6455 section 4.2.1 asks: malformed keys, repeated headers,
//! no Host, HTTP/1.0, HEAD; and flags out of range refused at start.
//!
//! Requests are written by hand on raw TCP so that every header line is ours: a client
//! library would fix what these tests break. "No session" is read from the server's own
//! metrics (`chat_websocket_sessions_opened_total`), and "not upgraded" from the same
//! connection answering a plain HTTP request afterwards.

use std::net::SocketAddr;
use std::process::Stdio;

use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::deployment::scrape;
use crate::support::{
    PATIENCE, RawClient, TEXT, TestServer, next_text, served_dir, server_binary, static_fixture,
};

/// The key from RFC 6455 (section 1.3) and the accept it gives there.
const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Sixteen zero bytes in base64, and their accept (SHA-1 and base64 worked out by Python's
/// `hashlib`, not by the server's code).
const ZERO_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAA==";
const ZERO_ACCEPT: &str = "ICX+Yqv66kxgM0FcWaLWlFLwTAI=";

/// The header lines of a good handshake to `addr`, with key `key`.
fn handshake_lines(addr: SocketAddr, key: &str) -> Vec<String> {
    vec![
        format!("Host: {addr}"),
        "Connection: Upgrade".into(),
        "Upgrade: websocket".into(),
        "Sec-WebSocket-Version: 13".into(),
        format!("Sec-WebSocket-Key: {key}"),
    ]
}

/// A request head: `request_line` and then `lines`, exactly as given.
pub(crate) fn request(request_line: &str, lines: &[String]) -> String {
    let mut request = format!("{request_line}\r\n");
    for line in lines {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

/// A response as it came back on a raw connection, which stays open for more.
pub(crate) struct RawReply {
    stream: TcpStream,
    /// The status line and header lines, as sent.
    head: String,
    body: String,
}

impl RawReply {
    pub(crate) fn status_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    /// The value of header `name` (case-insensitive), if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// A refusal: `status_line`, a one-line body containing `reason` (none for `HEAD`).
    pub(crate) fn assert_refused(&self, status_line: &str, reason: &str) {
        assert_eq!(self.status_line(), status_line, "{}", self.head);
        assert!(self.body.contains(reason), "{reason:?} in {:?}", self.body);
        if !self.body.is_empty() {
            assert!(self.body.ends_with('\n'), "{:?}", self.body);
            assert_eq!(self.body.lines().count(), 1, "one line: {:?}", self.body);
        }
    }

    /// The connection was not upgraded: it still answers a plain HTTP request.
    pub(crate) async fn assert_still_http(self, addr: SocketAddr) {
        let probe = request("GET /healthz HTTP/1.1", &[format!("Host: {addr}")]);
        let reply = exchange_on(self.stream, &probe).await;
        assert_eq!(
            reply.head.lines().next(),
            Some("HTTP/1.1 200 OK"),
            "the connection still speaks HTTP: {}",
            reply.head
        );
    }
}

/// Sends `request` on a new connection to `addr` and reads the answer.
pub(crate) async fn exchange(addr: SocketAddr, request: &str) -> RawReply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    exchange_on(stream, request).await
}

/// Sends `request` on `stream` and reads the response head byte by byte (so nothing after
/// it is consumed), then the body its `Content-Length` announces, except after a `HEAD` or
/// a `101`.
async fn exchange_on(mut stream: TcpStream, request: &str) -> RawReply {
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(PATIENCE, stream.read_u8())
            .await
            .expect("answered promptly")
            .unwrap_or_else(|error| {
                panic!(
                    "the connection ended after {:?}: {error}",
                    String::from_utf8_lossy(&head)
                )
            });
        head.push(byte);
    }
    let head = String::from_utf8(head).expect("an ASCII head");
    let mut reply = RawReply {
        stream,
        head,
        body: String::new(),
    };
    let has_body = !request.starts_with("HEAD ") && !reply.status_line().contains(" 101 ");
    let length: usize = match reply.header("content-length") {
        Some(length) if has_body => length.parse().expect("a numeric Content-Length"),
        _ => 0,
    };
    let mut body = vec![0; length];
    tokio::time::timeout(PATIENCE, reply.stream.read_exact(&mut body))
        .await
        .expect("the body arrives promptly")
        .expect("the whole body");
    reply.body = String::from_utf8(body).expect("a UTF-8 body");
    reply
}

/// The sum of every sample of the metric lines starting with `prefix`.
fn metric(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(_, value)| value.parse::<u64>().expect("a counter"))
        .sum()
}

/// Sessions the server ever opened, every app together.
async fn sessions_opened(server: &TestServer) -> u64 {
    metric(
        &scrape(server).await,
        "chat_websocket_sessions_opened_total{",
    )
}

/// Handshakes the server refused with `status`.
async fn refused(server: &TestServer, status: u16) -> u64 {
    metric(
        &scrape(server).await,
        &format!("chat_websocket_handshakes_refused_total{{status=\"{status}\"}}"),
    )
}

/// A `101` with the accept RFC 6455 derives from the key, then a round trip on `/mirror`.
async fn assert_upgraded_and_mirrors(reply: RawReply, accept: &str) {
    assert_eq!(
        reply.status_line(),
        "HTTP/1.1 101 Switching Protocols",
        "{}",
        reply.head
    );
    assert_eq!(reply.header("sec-websocket-accept"), Some(accept));
    let mut client = RawClient {
        stream: reply.stream,
    };
    client.send(TEXT, b"mirror me").await;
    assert_eq!(
        client.read_frame().await,
        Some((TEXT, b"mirror me".to_vec()))
    );
}

#[tokio::test]
async fn keys_that_are_not_16_bytes_of_base64_get_400_and_no_session() {
    let server = TestServer::start(&["--metrics-addr", "127.0.0.1:0"]).await;
    let addr = server.addr;
    let malformed = [
        "hello",
        // 15 and 17 bytes.
        "AAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAA=",
        // 16 bytes, but without the padding base64 (RFC 4648, section 4) has.
        "AAAAAAAAAAAAAAAAAAAAAA",
        // 16 bytes in the URL-safe alphabet, which is not base64's.
        "-_AAAAAAAAAAAAAAAAAAAA==",
        // 16 bytes of base64 twice.
        "AAAAAAAAAAAAAAAAAAAAAA==AAAAAAAAAAAAAAAAAAAAAA==",
    ];
    for key in malformed {
        let reply = exchange(
            addr,
            &request("GET /mirror HTTP/1.1", &handshake_lines(addr, key)),
        )
        .await;
        reply.assert_refused("HTTP/1.1 400 Bad Request", "Sec-WebSocket-Key");
        reply.assert_still_http(addr).await;
    }
    assert_eq!(sessions_opened(&server).await, 0);
    assert_eq!(refused(&server, 400).await, malformed.len() as u64);

    // Good keys still upgrade. White space around a header value is not part of it (RFC 9110,
    // section 5.5), so a key with some is the same key and gets the same accept.
    for (key, accept) in [
        (RFC_KEY, RFC_ACCEPT),
        (ZERO_KEY, ZERO_ACCEPT),
        (" \tdGhlIHNhbXBsZSBub25jZQ== \t", RFC_ACCEPT),
    ] {
        let reply = exchange(
            addr,
            &request("GET /mirror HTTP/1.1", &handshake_lines(addr, key)),
        )
        .await;
        assert_upgraded_and_mirrors(reply, accept).await;
    }
    assert_eq!(sessions_opened(&server).await, 3);
}

#[tokio::test]
async fn repeated_key_or_version_headers_get_400_and_no_session() {
    let server = TestServer::start(&["--metrics-addr", "127.0.0.1:0"]).await;
    let addr = server.addr;
    let cases = [
        (format!("Sec-WebSocket-Key: {RFC_KEY}"), "Sec-WebSocket-Key"),
        (
            format!("Sec-WebSocket-Key: {ZERO_KEY}"),
            "Sec-WebSocket-Key",
        ),
        (
            "Sec-WebSocket-Version: 13".to_owned(),
            "Sec-WebSocket-Version",
        ),
    ];
    for (extra_line, header) in &cases {
        let mut lines = handshake_lines(addr, RFC_KEY);
        lines.push(extra_line.clone());
        let reply = exchange(addr, &request("GET /echo HTTP/1.1", &lines)).await;
        reply.assert_refused("HTTP/1.1 400 Bad Request", header);
        assert!(reply.body.contains("only once"), "{}", reply.body);
        reply.assert_still_http(addr).await;
    }
    assert_eq!(sessions_opened(&server).await, 0);
    assert_eq!(refused(&server, 400).await, cases.len() as u64);
}

#[tokio::test]
async fn a_handshake_without_exactly_one_host_gets_400_and_no_session() {
    // hyper itself lets an HTTP/1.1 request without Host through (this server answered it
    // with 101): the check is the handshake's.
    let server = TestServer::start(&["--metrics-addr", "127.0.0.1:0"]).await;
    let addr = server.addr;
    let without_host: Vec<String> = handshake_lines(addr, RFC_KEY)
        .into_iter()
        .filter(|line| !line.starts_with("Host:"))
        .collect();
    let with_hosts = |hosts: &[&str]| {
        let mut lines = without_host.clone();
        lines.extend(hosts.iter().map(|host| format!("Host: {host}")));
        lines
    };
    let cases = [
        without_host.clone(),
        with_hosts(&[""]),
        with_hosts(&[&addr.to_string(), &addr.to_string()]),
        with_hosts(&[&addr.to_string(), "elsewhere.example"]),
        // One, but no host and port.
        with_hosts(&["a b"]),
        with_hosts(&["user@elsewhere.example"]),
    ];
    for lines in &cases {
        let reply = exchange(addr, &request("GET /subscriptions HTTP/1.1", lines)).await;
        reply.assert_refused("HTTP/1.1 400 Bad Request", "Host");
        reply.assert_still_http(addr).await;
    }
    assert_eq!(sessions_opened(&server).await, 0);
    assert_eq!(refused(&server, 400).await, cases.len() as u64);
}

#[tokio::test]
async fn an_http_1_0_upgrade_gets_400_and_no_session() {
    let server = TestServer::start(&["--metrics-addr", "127.0.0.1:0"]).await;
    let addr = server.addr;
    for path in ["/subscriptions", "/echo", "/mirror"] {
        let reply = exchange(
            addr,
            &request(
                &format!("GET {path} HTTP/1.0"),
                &handshake_lines(addr, RFC_KEY),
            ),
        )
        .await;
        reply.assert_refused("HTTP/1.0 400 Bad Request", "HTTP/1.1");
    }
    assert_eq!(sessions_opened(&server).await, 0);
    assert_eq!(refused(&server, 400).await, 3);
}

#[tokio::test]
async fn head_on_websocket_routes_gets_405_and_never_upgrades() {
    let server = TestServer::start(&["--metrics-addr", "127.0.0.1:0"]).await;
    let addr = server.addr;
    for path in ["/subscriptions", "/echo", "/mirror"] {
        for lines in [
            handshake_lines(addr, RFC_KEY),
            vec![format!("Host: {addr}")],
        ] {
            let reply = exchange(addr, &request(&format!("HEAD {path} HTTP/1.1"), &lines)).await;
            reply.assert_refused("HTTP/1.1 405 Method Not Allowed", "");
            assert_eq!(reply.header("allow"), Some("GET"), "{}", reply.head);
            assert_eq!(reply.header("sec-websocket-accept"), None);
            reply.assert_still_http(addr).await;
        }
    }
    assert_eq!(sessions_opened(&server).await, 0);
    assert_eq!(refused(&server, 405).await, 6);
}

/// Runs the binary with `args` and `env`, which must make it give up at start.
async fn start_failure(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let fixture = static_fixture();
    let output = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new(server_binary())
            .args(["--addr", "127.0.0.1:0", "--static-dir"])
            .arg(served_dir(&fixture))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("the server started with {args:?} {env:?} instead of refusing"))
    .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

/// A refusal at start: exit 2, one line on stderr, naming `flag`.
fn assert_one_line_exit_2((code, stderr): (Option<i32>, String), flag: &str, what: &str) {
    assert_eq!(code, Some(2), "{what}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr:?}");
    assert!(stderr.contains(flag), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
}

/// Every duration flag, its largest value, and one just past it.
const DURATION_FLAGS: [(&str, &str, &str); 5] = [
    ("--ping-interval", "86400", "86401"),
    ("--header-timeout", "3600", "3601"),
    ("--send-timeout", "3600", "3601"),
    ("--shutdown-delay", "3600", "3601"),
    ("--shutdown-grace", "3600", "3601"),
];

#[tokio::test]
async fn duration_flags_stop_at_their_maximum_which_still_serves_sessions() {
    for (flag, max, past_max) in DURATION_FLAGS {
        for past in [past_max, "1e19"] {
            let failure = start_failure(&[flag, past], &[]).await;
            assert_one_line_exit_2(failure, flag, &format!("{flag} {past}"));
        }
        // The largest value allowed must not be one that breaks every session (1e19 s made
        // each session panic on its first ping deadline): a full round trip works.
        let server = TestServer::start(&[flag, max]).await;
        let mut client = server.connect("/echo").await;
        client.send(Message::text("hello")).await.expect("send");
        for _ in 0..10 {
            assert_eq!(next_text(&mut client).await, "hello", "{flag} {max}");
        }
        let reply = server.request("GET", "/healthz", &[]).await;
        assert_eq!(reply.status, http::StatusCode::OK, "{flag} {max}");
    }
    // The same through the environment.
    let failure = start_failure(&[], &[("PING_INTERVAL", "1e19")]).await;
    assert_one_line_exit_2(failure, "--ping-interval", "PING_INTERVAL=1e19");
}

#[tokio::test]
async fn max_message_size_stops_at_256_mib_which_still_serves_sessions() {
    for past in ["268435457", "4294967295"] {
        let failure = start_failure(&["--max-message-size", past], &[]).await;
        assert_one_line_exit_2(failure, "--max-message-size", past);
    }
    let server = TestServer::start(&["--max-message-size", "268435456"]).await;
    let mut client = server.connect("/mirror").await;
    let large = "x".repeat(1 << 20);
    client
        .send(Message::text(large.clone()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut client).await, large);
}

#[tokio::test]
async fn every_flag_error_is_one_line_and_exit_2() {
    for (args, flag) in [
        (&["--pingg", "3"][..], "--pingg"),
        (&["--tls-cert", "/no/cert.pem"][..], "--tls-key"),
        (&["--log-format", "xml"][..], "--log-format"),
        (&["--max-connections", "0"][..], "--max-connections"),
        // Each within its range, not together: a publish of that text would not fit.
        (&["--max-text-bytes", "1048576"][..], "--max-text-bytes"),
        (
            &["--max-text-bytes", "1000", "--max-message-size", "8047"][..],
            "--max-message-size 8048",
        ),
    ] {
        let failure = start_failure(args, &[]).await;
        assert_one_line_exit_2(failure, flag, &format!("{args:?}"));
    }
}
