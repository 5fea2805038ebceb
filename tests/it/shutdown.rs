//! Process lifecycle: start-up errors are one clear line; SIGTERM closes sessions with 1001;
//! health and readiness probes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{PATIENCE, TestServer, expect_close, next_text, server_binary};

#[tokio::test]
async fn sigterm_sends_1001_to_every_session_and_exits_0() {
    let mut server = TestServer::start(&["--shutdown-grace", "5"]).await;
    let mut subscriptions = server.connect_subscriptions().await;
    let mut mirror = server.connect("/mirror").await;
    mirror.send(Message::text("ping?")).await.expect("send");
    assert_eq!(next_text(&mut mirror).await, "ping?");

    server.signal("TERM");
    for client in [&mut subscriptions, &mut mirror] {
        let (code, reason) = expect_close(client).await;
        assert_eq!(code, 1001, "{reason}");
    }
    let status = server.wait().await;
    assert!(status.success(), "exit status {status}");
    assert!(server.logs().contains("shutting down"));
}

#[tokio::test]
async fn readyz_turns_503_when_shutdown_starts_while_everything_else_still_works() {
    // The checks below must all fit inside the delay, on a busy machine too: 5 s leaves them
    // seconds to spare. The close is then checked to come no earlier than the delay.
    let delay = Duration::from_secs(5);
    let mut server = TestServer::start(&["--shutdown-delay", "5"]).await;
    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let reply = server.request("GET", path, &[]).await;
        assert_eq!(reply.status, http::StatusCode::OK, "{path}");
        assert_eq!(reply.body, body, "{path}");
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{path}");
    }
    let mut client = server.connect_subscriptions().await;

    let signalled = Instant::now();
    server.signal("TERM");
    server.wait_for_log("draining").await;
    let ready = server.request("GET", "/readyz", &[]).await;
    assert_eq!(ready.status, http::StatusCode::SERVICE_UNAVAILABLE);
    let health = server.request("GET", "/healthz", &[]).await;
    assert_eq!(
        health.status,
        http::StatusCode::OK,
        "the process still runs"
    );
    // While draining, open sessions, new sessions and new requests are served as usual.
    client.send(Message::text("foo")).await.expect("send");
    assert_eq!(next_text(&mut client).await, "bar");
    let mut late = server.connect_subscriptions().await;
    late.send(Message::text("bar")).await.expect("send");
    assert_eq!(next_text(&mut late).await, "foo");
    assert_eq!(
        server.request("GET", "/", &[]).await.status,
        http::StatusCode::OK
    );
    let checked = signalled.elapsed();
    assert!(
        checked < delay,
        "the checks took {checked:?}, longer than the delay: they proved nothing"
    );

    for session in [&mut client, &mut late] {
        let (code, _) = expect_close(session).await;
        assert_eq!(code, 1001, "then the sessions close");
    }
    // The server's delay starts when it gets the signal, after `signalled`: a close sooner
    // than the delay after it is a delay cut short.
    let closed = signalled.elapsed();
    assert!(closed >= delay, "closed {closed:?} after the signal");
    assert!(server.wait().await.success());
}

#[tokio::test]
async fn probes_are_never_logged_while_other_requests_are() {
    // At the most verbose level, where the server does log requests (a WebSocket upgrade
    // names its route): a probe logged at any level would show here.
    let server = TestServer::start(&["--log", "trace"]).await;
    for method in ["GET", "HEAD"] {
        for path in ["/healthz", "/readyz"] {
            let reply = server.request(method, path, &[]).await;
            assert_eq!(reply.status, http::StatusCode::OK, "{method} {path}");
        }
    }
    let mut client = server.connect("/echo").await;
    client.send(Message::text("FOO")).await.expect("send");
    assert_eq!(next_text(&mut client).await, "BAR");
    // Lines arrive in the order they were logged: once the upgrade's line is here, a line
    // logged for the probes before it would be too.
    server.wait_for_log("/echo").await;
    let logs = server.logs();
    assert!(
        !logs.contains("/healthz") && !logs.contains("/readyz"),
        "probes are not logged: {logs}"
    );
}

#[tokio::test]
async fn sigterm_exits_within_the_grace_period_when_a_client_never_answers_the_close() {
    // The session gives up on a silent client after its own linger (a second), well inside a
    // grace period that is long enough that a busy machine cannot confuse the two.
    let grace = Duration::from_secs(8);
    let mut server = TestServer::start(&["--shutdown-grace", "8"]).await;
    // A client that completes the handshake and is never polled again, so it never answers
    // the server's close.
    let _silent = server.connect_subscriptions().await;
    let started = Instant::now();
    server.signal("TERM");
    let status = server.wait().await;
    assert!(status.success(), "exit status {status}");
    let logs = server.logs();
    assert!(
        !logs.contains("grace period over"),
        "the session held shutdown for the whole grace period: {logs}"
    );
    assert!(started.elapsed() < grace, "took {:?}", started.elapsed());
}

#[tokio::test]
async fn sigterm_as_soon_as_the_url_is_printed_is_a_graceful_shutdown() {
    // Scripts send SIGTERM as soon as they have read the URL. A handler installed only when
    // the server first waits for signals leaves a window in which the default action kills
    // the process (exit by signal, no close frames); under load that window was hit. Several
    // rounds, because one rarely lands in it.
    for _ in 0..20 {
        let mut server = TestServer::start(&[]).await;
        server.signal("TERM");
        let status = server.wait().await;
        assert!(status.success(), "exit status {status}");
    }
}

/// Runs the binary with `args`, expecting it to fail at start-up.
async fn start_failure(args: &[&str]) -> (i32, String) {
    let output = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new(server_binary())
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the server gives up promptly")
    .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), stderr)
}

#[tokio::test]
async fn start_up_errors_are_one_clear_line_and_a_failure_exit() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    let fixture = crate::support::static_fixture();
    let static_dir = crate::support::served_dir(&fixture);
    let static_dir = static_dir.to_str().expect("utf-8 path");
    let cases: [(&[&str], &str); 7] = [
        (
            &["--addr", &taken_addr, "--static-dir", static_dir],
            "cannot listen on",
        ),
        (
            &["--addr", "127.0.0.1:0", "--static-dir", "/no/such/dir"],
            "static directory",
        ),
        (&["--max-message-size", "lots"], "invalid value"),
        (&["--ping-interval=-3"], "invalid value"),
        (
            &["--connect-src", "ws://a; script-src *"],
            "is not one CSP source",
        ),
        (
            &[
                "--static-dir",
                static_dir,
                "--tls-cert",
                "/no/cert.pem",
                "--tls-key",
                "/no/key.pem",
            ],
            "TLS: certificate /no/cert.pem",
        ),
        (&["--tls-cert", "/no/cert.pem"], "--tls-key"),
    ];
    for (args, expected) in cases {
        let (code, stderr) = start_failure(args).await;
        assert_ne!(code, 0, "{args:?} must fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
}
