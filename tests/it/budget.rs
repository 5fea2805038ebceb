//! Instruction budgets: the release server's user-space instructions per message, counted by
//! `valgrind --tool=callgrind`, must stay under a stated figure. A count of instructions does
//! not depend on the machine's load, so this is a check and not a timed test; the budgets sit
//! about 30% above what the build measured (BENCHMARKS.md), far enough for another CPU's
//! `memcpy` or a valgrind release, close enough to catch what once went unseen for a week:
//! logging that never printed made every message cost four times its instructions.
//!
//! The figure is marginal, as `cargo xtask bench instructions` counts it: the difference
//! between a run of `FEW` and one of `MANY` messages, over the difference, which cancels
//! start-up, handshakes and shutdown.

use std::path::{Path, PathBuf};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use room_protocol::ServerFrame;

use crate::rooms::{Member, UNLIMITED, publish};
use crate::support::{Launch, PATIENCE, TestServer, served_dir, static_fixture};

/// `/mirror`, one 32 B message in flight on each of 100 connections (the standard shape):
/// 5,809 per message on 2026-12-08 (`--log warn`, release).
const MIRROR_32B_BUDGET: f64 = 7_500.0;

/// One room of 10 readers and its publisher, one publish in flight, every message written as
/// it comes (`--room-flush-interval 0`, so how many leave together does not depend on how
/// fast the server runs): 4,823-5,008 per delivery on 2026-12-08 (release).
const ROOM_DELIVERY_BUDGET: f64 = 6_500.0;
const READERS: usize = 10;
const FEW_PUBLISHES: usize = 200;
const MANY_PUBLISHES: usize = 2_000;

const CONNECTIONS: usize = 100;
const FEW: usize = 2_000;
const MANY: usize = 20_000;

/// valgrind, named by `$VALGRIND` (`cargo xtask test` installs it).
fn valgrind() -> String {
    std::env::var("VALGRIND").unwrap_or_else(|_| "valgrind".into())
}

/// The budgets are for the release build, which `cargo xtask test` names in `$SERVER_BIN`.
fn release_server() {
    let named = std::env::var_os("SERVER_BIN").map(PathBuf::from);
    assert!(
        named
            .as_deref()
            .is_some_and(|path| path.components().any(|part| part.as_os_str() == "release")),
        "instruction budgets are for the release server: set SERVER_BIN to it (cargo xtask test does), not {named:?}"
    );
}

/// The total user-space instructions of a callgrind run (its `summary:` line).
fn instructions_in(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|error| panic!("callgrind wrote no {}: {error}", file.display()));
    text.lines()
        .find_map(|line| line.strip_prefix("summary: "))
        .and_then(|total| total.trim().parse().ok())
        .unwrap_or_else(|| panic!("no summary line in {}", file.display()))
}

/// Runs the server under callgrind, sends `messages` 32 B messages to `/mirror` over
/// `CONNECTIONS` connections, one in flight on each, checks every echo, stops the server with
/// SIGTERM and returns its instruction count.
async fn mirror_run(messages: usize, out_dir: &Path) -> u64 {
    let out_file = out_dir.join(format!("mirror-{messages}.out"));
    let (mut server, _static_dir) = under_callgrind(&out_file, &["--log", "warn"]).await;
    let payload = "x".repeat(32);
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(server.connect("/mirror").await);
    }
    let per_connection = messages / CONNECTIONS;
    let clients = connections.into_iter().map(|mut ws| {
        let payload = payload.clone();
        tokio::spawn(async move {
            for _ in 0..per_connection {
                ws.send(Message::text(payload.clone())).await.expect("send");
                // Under callgrind the server runs tens of times slower than natively.
                let echo = tokio::time::timeout(PATIENCE * 3, ws.next())
                    .await
                    .expect("an echo within the patience")
                    .expect("the connection stays open")
                    .expect("a frame");
                assert_eq!(echo, Message::text(payload.clone()));
            }
            let _ = ws.close(None).await;
        })
    });
    for client in clients.collect::<Vec<_>>() {
        client.await.expect("the client task ends");
    }
    stop(&mut server, &out_file).await
}

/// The server under callgrind, writing to `out_file`, with its static directory.
async fn under_callgrind(out_file: &Path, args: &[&str]) -> (TestServer, tempfile::TempDir) {
    let static_dir = static_fixture();
    let launch = Launch {
        under: vec![
            valgrind(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}", out_file.display()),
        ],
        // The count grows with tokio's workers (4,691 per room delivery with 1, 5,805 with
        // 32): as many as CI's 2 cores, whatever the machine.
        env: &[
            ("JOIN_RATE", "1000000"),
            ("JOIN_BURST", "1000000"),
            ("TOKIO_WORKER_THREADS", "2"),
        ],
        ..Launch::default()
    };
    let server = TestServer::launch(&served_dir(&static_dir), args, launch).await;
    (server, static_dir)
}

/// Stops the server with SIGTERM and returns the instructions callgrind counted.
async fn stop(server: &mut TestServer, out_file: &Path) -> u64 {
    server.signal("TERM");
    let status = server.wait().await;
    assert!(
        status.success(),
        "the server under callgrind exited with {status}"
    );
    instructions_in(out_file)
}

/// Runs the server under callgrind; `READERS` members and a publisher join one room; the
/// publisher publishes `publishes` 64 B texts one at a time (the next once its own message
/// came back), every reader checks it receives each once, in order. Returns the count.
async fn room_run(publishes: usize, out_dir: &Path) -> u64 {
    let out_file = out_dir.join(format!("room-{publishes}.out"));
    let args = [
        &["--log", "warn", "--room-flush-interval", "0"][..],
        &UNLIMITED[..],
    ]
    .concat();
    let (mut server, _static_dir) = under_callgrind(&out_file, &args).await;
    let mut readers = Vec::new();
    for n in 0..READERS {
        let mut reader = Member::connect(&server, &format!("reader{n}")).await;
        reader.join("budget", None).await;
        readers.push(reader);
    }
    let mut publisher = Member::connect(&server, "publisher").await;
    publisher.join("budget", None).await;
    let readers = readers.into_iter().map(|mut reader| {
        tokio::spawn(async move {
            let offsets: Vec<u64> = reader
                .messages(publishes)
                .await
                .into_iter()
                .map(|(offset, _)| offset)
                .collect();
            assert_eq!(offsets, (1..=publishes as u64).collect::<Vec<_>>());
        })
    });
    let readers: Vec<_> = readers.collect();
    let text = "x".repeat(64);
    for n in 0..publishes {
        publisher
            .send(publish("budget", &n.to_string(), &text))
            .await;
        let (mut acked, mut echoed) = (false, false);
        while !(acked && echoed) {
            match publisher.next().await {
                ServerFrame::Ack { .. } => acked = true,
                ServerFrame::Message { .. } => echoed = true,
                other => panic!("expected the ack and the message, got {other:?}"),
            }
        }
    }
    for reader in readers {
        reader
            .await
            .expect("every reader got every message once, in order");
    }
    stop(&mut server, &out_file).await
}

#[tokio::test]
#[ignore = "needs valgrind and the release server: run `cargo xtask test`"]
async fn the_plain_path_stays_within_its_instruction_budget() {
    release_server();
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    let few = mirror_run(FEW, out_dir.path()).await;
    let many = mirror_run(MANY, out_dir.path()).await;
    let per_message = many.saturating_sub(few) as f64 / (MANY - FEW) as f64;
    assert_within_budget(
        "/mirror, per 32 B message",
        per_message,
        1_000.0,
        MIRROR_32B_BUDGET,
        "cargo xtask bench instructions",
    );
}

#[tokio::test]
#[ignore = "needs valgrind and the release server: run `cargo xtask test`"]
async fn a_room_delivery_stays_within_its_instruction_budget() {
    release_server();
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    let few = room_run(FEW_PUBLISHES, out_dir.path()).await;
    let many = room_run(MANY_PUBLISHES, out_dir.path()).await;
    // Each publish reaches every reader and the publisher itself.
    let deliveries = ((MANY_PUBLISHES - FEW_PUBLISHES) * (READERS + 1)) as f64;
    let per_delivery = many.saturating_sub(few) as f64 / deliveries;
    assert_within_budget(
        &format!("one room of {READERS}, per delivery"),
        per_delivery,
        500.0,
        ROOM_DELIVERY_BUDGET,
        "cargo xtask bench instructions rooms",
    );
}

/// Says the figure, then checks it: above `floor` (a run that counted nothing would pass any
/// budget) and at most `budget`, naming the benchmark that profiles it.
fn assert_within_budget(what: &str, per_unit: f64, floor: f64, budget: f64, bench: &str) {
    eprintln!("{what}: {per_unit:.0} instructions (budget {budget:.0})");
    assert!(
        per_unit > floor,
        "{what}: {per_unit:.0} instructions cannot be right"
    );
    assert!(
        per_unit <= budget,
        "{what}: {per_unit:.0} instructions, over the budget of {budget:.0}: profile it (`{bench}`, then `callgrind_annotate`) before raising the budget"
    );
}
