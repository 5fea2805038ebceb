//! Running for real: logs that cannot stall the server, the open-file limit, metrics, a
//! reverse proxy in front of several instances, TLS.

use std::time::Instant;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Launch, PATIENCE, TestServer, next_text, served_dir, static_fixture};

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
    assert!(
        started.elapsed() < PATIENCE,
        "300 sessions took {:?}",
        started.elapsed()
    );
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
        assert!(object["level"].is_string() && object["fields"].is_object(), "{line}");
    }
}
