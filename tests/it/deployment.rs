//! Running for real: logs that cannot stall the server, the open-file limit, metrics, a
//! reverse proxy in front of several instances, TLS.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    Launch, PATIENCE, TestCertificate, TestServer, expect_close, http_request, next_text,
    served_dir, static_fixture, this_thread_cpu_time,
};

#[tokio::test]
async fn a_stuck_log_reader_does_not_stall_the_server() {
    // stderr is a pipe nobody reads: it is full after 64 KiB. Debug logging writes several
    // lines per WebSocket session; a server that wrote them from its workers would block.
    let fixture = static_fixture();
    let launch = Launch {
        never_read_stderr: true,
        ..Launch::default()
    };
    let server = TestServer::launch(&served_dir(&fixture), &["--log", "debug"], launch).await;
    let started = Instant::now();
    for _ in 0..300 {
        let mut client = server.connect("/subscriptions").await;
        assert_eq!(next_text(&mut client).await, "Greetings!");
        client.send(Message::text("foo")).await.expect("send");
        assert_eq!(next_text(&mut client).await, "bar");
        client.close(None).await.expect("close");
    }
    // A writer that blocked for a while on each line, rather than for good, shows here.
    let took = started.elapsed();
    eprintln!("300 sessions with a stuck log reader took {took:?}");
    assert!(took < PATIENCE, "300 sessions took {took:?}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let server = TestServer::start(&["--log-format", "json"]).await;
    let mut client = server.connect("/subscriptions").await;
    assert_eq!(next_text(&mut client).await, "Greetings!");
    client.close(None).await.expect("close");
    server.wait_for_log("client closed the connection").await;
    let logs = server.logs();
    for line in logs.lines() {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
        assert!(
            object["level"].is_string() && object["fields"].is_object(),
            "{line}"
        );
    }
}

#[tokio::test]
async fn records_of_crates_that_log_through_log_follow_the_filter() {
    // tungstenite logs through `log`, not `tracing`: its debug line for a close frame shows
    // when the filter asks for its debug lines, and not at the default level, which the
    // server also gives `log` as its own maximum (so refused calls cost one level check).
    let close_and_wait = async |server: &TestServer| {
        let mut client = server.connect("/mirror").await;
        client.close(None).await.expect("close");
        expect_close(&mut client).await;
        server.wait_for_log("client closed the connection").await;
    };
    let debug = TestServer::start(&["--log", "info,server=debug,tungstenite=debug"]).await;
    close_and_wait(&debug).await;
    debug.wait_for_log("Received close frame").await;
    let info = TestServer::start(&["--log", "info,server=debug"]).await;
    close_and_wait(&info).await;
    let logs = info.logs();
    assert!(!logs.contains("Received close frame"), "{logs}");
}

#[tokio::test]
async fn a_flood_of_idle_connections_at_a_low_open_file_limit_neither_spins_nor_floods_the_log() {
    let fixture = static_fixture();
    let launch = Launch {
        shell_prefix: Some("ulimit -n 64 &&"),
        ..Launch::default()
    };
    let server = TestServer::launch(&served_dir(&fixture), &[], launch).await;
    // Far more connections than the server has descriptors for; none sends a request.
    let mut flood = Vec::new();
    for _ in 0..150 {
        flood.push(
            tokio::time::timeout(PATIENCE, TcpStream::connect(server.addr))
                .await
                .expect("the kernel queues the connection")
                .expect("connect"),
        );
    }
    // A measurement window, not a wait for readiness: how much CPU does the flood cost? A
    // fixed bound would break on a busy machine either way (a spinning server gets little of
    // a loaded core; tick sampling charges whole ticks), so the server is compared with one
    // thread of this test that never stops running meanwhile: a server that spins gets about
    // as much as that thread, an idle one next to nothing.
    let window = Duration::from_secs(3);
    let before = server.cpu_time();
    let busy = tokio::task::spawn_blocking(move || {
        let (started, cpu_before) = (Instant::now(), this_thread_cpu_time());
        let mut turns = 0u64;
        while started.elapsed() < window {
            turns = std::hint::black_box(turns.wrapping_add(1));
        }
        this_thread_cpu_time() - cpu_before
    })
    .await
    .expect("the busy thread");
    let spent = server.cpu_time() - before;
    eprintln!("flood: the server spent {spent:?} of CPU in {window:?}, a busy thread {busy:?}");
    assert!(
        busy >= Duration::from_millis(100),
        "the machine gave a busy thread only {busy:?} in {window:?}: nothing can be measured"
    );
    assert!(
        spent * 4 < busy,
        "the server spent {spent:?} of CPU in {window:?} while flooded, a busy thread {busy:?}"
    );
    let warnings = server
        .logs()
        .lines()
        .filter(|line| line.contains("WARN"))
        .count();
    assert!(warnings <= 3, "{}", server.logs());
    assert!(
        !server.logs().contains("accept failing"),
        "{}",
        server.logs()
    );

    // Once the flood is gone, the server serves again.
    drop(flood);
    let reply = tokio::time::timeout(PATIENCE, server.request("GET", "/healthz", &[]))
        .await
        .expect("served promptly after the flood");
    assert_eq!(reply.status, StatusCode::OK);
}

/// The metrics text, or panics.
pub(crate) async fn scrape(server: &TestServer) -> String {
    let addr = server.metrics_addr.expect("started with --metrics-addr");
    let reply = http_request(addr, "GET", "/metrics", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/openmetrics-text")),
        "{:?}",
        reply.header("content-type")
    );
    String::from_utf8(reply.body.to_vec()).expect("UTF-8")
}

#[tokio::test]
async fn metrics_count_sessions_messages_closes_refusals_and_responses() {
    let server = TestServer::start(&["--metrics-addr", "127.0.0.1:0"]).await;
    let mut client = server.connect_subscriptions().await;
    client.send(Message::text("hello")).await.expect("send");
    for _ in 0..10 {
        assert_eq!(next_text(&mut client).await, "hello");
    }
    client.send(Message::text("foo")).await.expect("send");
    assert_eq!(next_text(&mut client).await, "bar");
    let refused = server
        .request(
            "GET",
            "/subscriptions",
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("origin", "https://elsewhere.example"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        server.request("GET", "/missing", &[]).await.status,
        StatusCode::NOT_FOUND
    );

    let text = scrape(&server).await;
    for line in [
        "chat_websocket_sessions_open{app=\"/subscriptions\"} 1",
        "chat_websocket_sessions_opened_total{app=\"/subscriptions\"} 1",
        "chat_websocket_messages_received_total{app=\"/subscriptions\"} 2",
        // The greeting, ten copies of hello, and bar.
        "chat_websocket_messages_sent_total{app=\"/subscriptions\"} 12",
        "chat_websocket_handshakes_refused_total{status=\"403\"} 1",
        "chat_http_responses_total{class=\"1xx\"} 1",
        "chat_http_responses_total{class=\"4xx\"} 2",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }

    client.send(Message::text("end")).await.expect("send");
    assert_eq!(expect_close(&mut client).await.0, 1000);
    // The session ends a moment after its close frame went out.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = scrape(&server).await;
        if text.contains("chat_websocket_sessions_open{app=\"/subscriptions\"} 0") {
            assert!(
                text.contains("chat_websocket_close_codes_sent_total{code=\"1000\"} 1"),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session stays counted as open:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Only the metrics listener serves them.
    let main_port = server.request("GET", "/metrics", &[]).await;
    assert_eq!(main_port.status, StatusCode::NOT_FOUND);
}

/// The nginx configuration the repository ships, as users copy it.
pub fn shipped_nginx_conf() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nginx.conf"))
        .expect("deploy/nginx.conf")
}

/// The shipped file with `instances` put in its upstream's `server` lines, in order, and
/// nginx listening on `127.0.0.1:port` instead of port 80: the file as a user deploys it.
pub fn shipped_nginx_conf_for(instances: &[std::net::SocketAddr], port: u16) -> String {
    let mut instances = instances.iter();
    let config: Vec<String> = shipped_nginx_conf()
        .lines()
        .map(|line| match line.trim_start().strip_prefix("server ") {
            Some(rest) if rest.contains("max_fails") => {
                let instance = instances
                    .next()
                    .expect("as many instances as upstream servers");
                let options = rest.split_once(' ').map_or("", |(_, options)| options);
                format!("    server {instance} {options}")
            }
            _ if line.trim() == "listen 80;" => format!("    listen 127.0.0.1:{port};"),
            _ => line.to_owned(),
        })
        .collect();
    assert!(
        instances.next().is_none(),
        "deploy/nginx.conf lists fewer upstream servers than instances"
    );
    let config = config.join("\n");
    assert!(
        config.contains(&format!("listen 127.0.0.1:{port};")),
        "{config}"
    );
    config
}

#[test]
fn the_readme_shows_the_shipped_nginx_configuration() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let shown = format!("```nginx\n{}```", shipped_nginx_conf());
    assert!(
        readme.contains(&shown),
        "README.md must show deploy/nginx.conf exactly, in an nginx code block"
    );
}

/// A TLS connection to the server, trusting `certificate`.
async fn tls_connect(
    server: &TestServer,
    certificate: &TestCertificate,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a name");
    tokio::time::timeout(PATIENCE, certificate.connector().connect(name, tcp))
        .await
        .expect("the TLS handshake completes promptly")
        .expect("the TLS handshake succeeds")
}

#[tokio::test]
async fn with_a_certificate_the_server_speaks_https_and_wss_on_the_same_port() {
    let certificate = TestCertificate::new();
    let server = certificate.start_server(&[]).await;
    assert!(server.tls, "the printed URL says https://");

    // wss: the conversation works as over plain TCP.
    let tls = tls_connect(&server, &certificate).await;
    let url = format!("wss://127.0.0.1:{}/subscriptions", server.addr.port());
    let (mut client, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("the WebSocket handshake over TLS");
    assert_eq!(next_text(&mut client).await, "Greetings!");
    client.send(Message::text("hello")).await.expect("send");
    for _ in 0..10 {
        assert_eq!(next_text(&mut client).await, "hello");
    }
    client.send(Message::text("end")).await.expect("send");
    assert_eq!(expect_close(&mut client).await.0, 1000);

    // https: the page.
    let mut tls = tls_connect(&server, &certificate).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, tls.read_to_string(&mut answer))
        .await
        .expect("answered promptly")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_a_clear_400_and_silence_is_cut_off() {
    let certificate = TestCertificate::new();
    let server = certificate.start_server(&["--header-timeout", "1"]).await;
    let reply = tokio::time::timeout(PATIENCE, server.request("GET", "/", &[]))
        .await
        .expect("an answer, not a hang");
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&reply.body).contains("HTTPS only"),
        "{:?}",
        reply.body
    );
    // A client that connects and says nothing is closed after the header timeout. Timed from
    // before connecting: the server's timer starts later, so the wait cannot come out short.
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(PATIENCE, silent.read(&mut buffer))
        .await
        .expect("closed, not kept forever");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    // Not at once (it waited for a handshake), and far from the 10 s default.
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert_still_serving_tls(&server, &certificate).await;
}

async fn assert_still_serving_tls(server: &TestServer, certificate: &TestCertificate) {
    let tls = tls_connect(server, certificate).await;
    let url = format!("wss://127.0.0.1:{}/echo", server.addr.port());
    let (mut client, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("the WebSocket handshake over TLS");
    client.send(Message::text("FOO")).await.expect("send");
    assert_eq!(next_text(&mut client).await, "BAR");
}

/// A reconnect storm must not overflow the kernel's queue of connections waiting for
/// `accept` (tokio's default backlog of 128 dropped hundreds of a storm of 5,000, each then
/// waiting a second for the retransmit). At its descriptor cap the server stops accepting,
/// so whatever arrives then waits in that queue: 1,000 connections must all be let in.
#[tokio::test]
async fn a_burst_of_1_000_connections_at_the_cap_all_wait_in_the_kernels_queue() {
    crate::support::allow_many_sockets();
    let fixture = static_fixture();
    let launch = Launch {
        shell_prefix: Some("ulimit -n 64 &&"),
        ..Launch::default()
    };
    let server = TestServer::launch(&served_dir(&fixture), &[], launch).await;
    // Past the cap (32 below 64 descriptors) at once, then 1,000 more: all of them must be
    // established (the handshake completes in the kernel's queue), none left unanswered.
    let attempts = (0..1_100).map(|_| async {
        tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(server.addr)).await
    });
    let results = futures_util::future::join_all(attempts).await;
    let established = results
        .iter()
        .filter(|result| matches!(result, Ok(Ok(_))))
        .count();
    assert_eq!(
        established, 1_100,
        "{} of 1,100 connections were established within 3 s",
        established
    );
}
