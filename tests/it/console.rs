//! The console client (`console-client`), the real binary against the real server: lines piped
//! in, replies on stdout exactly as many times as the rules say, status on stderr, and the exit
//! code a script relies on. Through an outage (SIGSTOP, then SIGKILL and a restart on the same
//! port), over `wss://` with a private CA, against nothing at all, past the message limit, and
//! in a room with a second client. Stopped by SIGINT and SIGTERM, by a reader that closes the
//! pipe, and never fooled into printing two lines (or a terminal escape) for one message.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rules::{GREETING, REPEAT_COUNT};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::browser::Proxy;
use crate::support::{PATIENCE, TestServer, next_text};

/// The console client under test: `$CONSOLE_CLIENT_BIN` (set by `cargo xtask test` to the
/// release build), else the debug build, built once here if needed.
fn console_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("CONSOLE_CLIENT_BIN") {
            return PathBuf::from(path);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--package", "console-client"])
            .current_dir(&workspace)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the console client failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        target.join("debug").join("console-client")
    })
}

/// A running console client, its three streams in the test's hands; killed when dropped.
struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `None` once the test closed it, as a reader that goes away does.
    stdout: Option<Lines<BufReader<ChildStdout>>>,
    /// Standard error's lines as they come, and all of them so far.
    stderr_rx: mpsc::UnboundedReceiver<String>,
    stderr: Vec<String>,
    /// How many of `stderr` [`Console::wait_for_status`] has looked at.
    status_read: usize,
}

/// How a console client ended.
#[derive(Debug)]
struct Ended {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

impl Console {
    fn start(args: &[&str]) -> Console {
        Console::start_with(args, &[], Stdio::piped())
    }

    /// Started with `env` set and `stdin` (piped: the test writes it; null: `</dev/null`).
    fn start_with(args: &[&str], env: &[(&str, &str)], stdin: Stdio) -> Console {
        let mut child = Command::new(console_binary())
            .args(args)
            .envs(env.iter().copied())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the console client starts");
        let stdin = child.stdin.take();
        let stdout = Some(BufReader::new(child.stdout.take().expect("piped stdout")).lines());
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let (stderr_tx, stderr_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                if stderr_tx.send(line).is_err() {
                    break;
                }
            }
        });
        Console {
            child,
            stdin,
            stdout,
            stderr_rx,
            stderr: Vec::new(),
            status_read: 0,
        }
    }

    /// Writes `text` to standard input as it is (lines end with `\n` only where `text` has one).
    async fn type_text(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("standard input is open");
        stdin
            .write_all(text.as_bytes())
            .await
            .expect("write to stdin");
        stdin.flush().await.expect("flush stdin");
    }

    /// Ends standard input, as the end of a pipe does.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Closes standard output's reading end, as `head -1` does once it has its line.
    fn close_stdout(&mut self) {
        self.stdout = None;
    }

    /// Sends `signal` (e.g. `INT`) to the client, as `kill -INT` does.
    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the client is running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Every status line so far, for an assertion's message.
    fn stderr_so_far(&mut self) -> &[String] {
        while let Ok(line) = self.stderr_rx.try_recv() {
            self.stderr.push(line);
        }
        &self.stderr
    }

    /// The next line on standard output.
    async fn next_line(&mut self) -> String {
        let stdout = self.stdout.as_mut().expect("stdout is open");
        let line = tokio::time::timeout(PATIENCE, stdout.next_line()).await;
        match line {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!("stdout ended; stderr: {:?}", self.stderr_so_far()),
            Ok(Err(error)) => panic!("stdout: {error}; stderr: {:?}", self.stderr_so_far()),
            Err(_) => panic!(
                "no line on stdout in time; stderr: {:?}",
                self.stderr_so_far()
            ),
        }
    }

    /// The next `count` lines on standard output.
    async fn next_lines(&mut self, count: usize) -> Vec<String> {
        let mut lines = Vec::with_capacity(count);
        for _ in 0..count {
            lines.push(self.next_line().await);
        }
        lines
    }

    /// Waits for a status line containing `needle`; returns it.
    async fn wait_for_status(&mut self, needle: &str) -> String {
        loop {
            self.stderr_so_far();
            while let Some(line) = self.stderr.get(self.status_read) {
                self.status_read += 1;
                if line.contains(needle) {
                    return line.clone();
                }
            }
            let line = tokio::time::timeout(PATIENCE, self.stderr_rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no status line with {needle:?} in time; stderr: {:?}",
                        self.stderr
                    )
                })
                .unwrap_or_else(|| panic!("stderr ended before {needle:?}: {:?}", self.stderr));
            self.stderr.push(line);
        }
    }

    /// Waits (at most `patience`) for the client to exit; everything it printed after what was
    /// read already.
    async fn ended(mut self, patience: Duration) -> Ended {
        let Ok(status) = tokio::time::timeout(patience, self.child.wait()).await else {
            panic!(
                "the client did not exit in time; stderr: {:?}",
                self.stderr_so_far()
            )
        };
        let status = status.expect("wait works");
        let mut stdout = Vec::new();
        if let Some(mut open) = self.stdout.take() {
            while let Some(line) = open.next_line().await.expect("stdout is readable") {
                stdout.push(line);
            }
        }
        while let Some(line) = self.stderr_rx.recv().await {
            self.stderr.push(line);
        }
        Ended {
            status,
            stdout,
            stderr: self.stderr,
        }
    }
}

/// `text` repeated `times` times, as lines.
fn copies(text: &str, times: usize) -> Vec<String> {
    vec![text.to_owned(); times]
}

/// The lines a server should send for `messages` typed into `/subscriptions`, greeting first.
fn answers_to(messages: &[&str]) -> Vec<String> {
    let mut lines = vec![GREETING.to_owned()];
    for message in messages {
        lines.extend(copies(message, REPEAT_COUNT));
    }
    lines
}

#[tokio::test]
async fn piped_lines_are_answered_and_the_close_for_end_ends_it() {
    let server = TestServer::start(&[]).await;
    let mut client = Console::start(&[&server.ws_url("/subscriptions")]);
    client.type_text("foo\nhello\nend\n").await;
    // Standard input stays open: the server's close for `end` alone ends the client.
    let ended = client.ended(PATIENCE).await;
    let mut expected = vec![GREETING.to_owned(), "bar".to_owned()];
    expected.extend(copies("hello", REPEAT_COUNT));
    assert_eq!(ended.stdout, expected, "stderr: {:?}", ended.stderr);
    assert!(ended.status.success(), "{ended:?}");
    assert!(
        ended
            .stderr
            .iter()
            .any(|line| line.contains("ended the conversation")),
        "{ended:?}"
    );
}

#[tokio::test]
async fn lines_past_the_queue_bound_wait_in_the_pipe_and_every_one_is_answered() {
    // The server freezes after the first answer; 250 lines, two and a half times the queue of
    // 100, are piped meanwhile. The client takes 100 and stops reading; once the server goes
    // on, it reads the rest as answers make room and exits 0 after the last line's ten.
    let server = TestServer::start(&[]).await;
    let mut client = Console::start(&[&server.ws_url("/subscriptions"), "--reply-timeout", "60"]);
    client.type_text("first\n").await;
    assert_eq!(
        client.next_lines(1 + REPEAT_COUNT).await,
        answers_to(&["first"])
    );
    server.signal("STOP");
    let messages: Vec<String> = (0..250).map(|n| format!("line {n}")).collect();
    client.type_text(&(messages.join("\n") + "\n")).await;
    client.close_stdin();
    let full = client.wait_for_status("the most the queue holds").await;
    assert!(full.contains("100 messages"), "{full}");
    server.signal("CONT");
    let ended = client.ended(PATIENCE * 3).await;
    let mut expected = Vec::new();
    for message in &messages {
        expected.extend(copies(message, REPEAT_COUNT));
    }
    assert_eq!(
        ended.stdout.len(),
        250 * REPEAT_COUNT,
        "stderr: {:?}",
        ended.stderr
    );
    assert!(
        ended.stdout == expected,
        "answers out of order or miscounted"
    );
    assert!(ended.status.success(), "{:?}", ended.stderr);
    assert!(
        !ended.stderr.iter().any(|line| line.starts_with("Refused")),
        "{:?}",
        ended.stderr
    );
}

#[tokio::test]
async fn a_stopped_then_restarted_server_still_answers_every_line_exactly_ten_times_in_order() {
    let mut server = TestServer::start(&[]).await;
    let addr = server.addr;
    // Three seconds without an answer is a hung server even for a debug build on a loaded
    // machine; one second was not (it once took a busy server for a hung one).
    let mut client = Console::start(&[
        &server.ws_url("/subscriptions"),
        "--reply-timeout",
        "3",
        "--connect-timeout",
        "60",
    ]);
    client.type_text("one\n").await;
    let first = client.next_lines(1 + REPEAT_COUNT).await;
    assert_eq!(
        first,
        answers_to(&["one"]),
        "stderr: {:?}",
        client.stderr_so_far()
    );

    // The server freezes: it holds the connection and reads nothing. Lines keep coming.
    server.signal("STOP");
    client.type_text("two\nthree\n").await;
    client.wait_for_status("No answer from the server").await;
    client.wait_for_status("Reconnecting in").await;
    // Killed while stopped, and a new one on the same port, as a supervisor would restart it.
    server.signal("KILL");
    let _ = server.wait().await;
    let _restarted = TestServer::start(&["--addr", &addr.to_string()]).await;
    client.type_text("four\n").await;
    client.close_stdin();
    let ended = client.ended(PATIENCE * 4).await;
    let mut expected = copies("two", REPEAT_COUNT);
    expected.extend(copies("three", REPEAT_COUNT));
    expected.extend(copies("four", REPEAT_COUNT));
    // The new connection's greeting is not printed again: stdout is one conversation.
    assert_eq!(ended.stdout, expected, "stderr: {:?}", ended.stderr);
    assert!(ended.status.success(), "{ended:?}");
    assert!(
        ended
            .stderr
            .iter()
            .any(|line| line.starts_with("Sent again: \"two\"")),
        "the unanswered lines went out again: {:?}",
        ended.stderr
    );
}

#[tokio::test]
async fn an_answer_cut_mid_way_is_completed_and_each_copy_printed_once() {
    // The connection is cut after the greeting and 5 of the 10 copies: the client sends the
    // line again on a new connection and prints only the 5 copies it had not printed.
    let server = TestServer::start(&[]).await;
    let proxy = Proxy::start(server.addr).await;
    proxy.cut_next_websocket_after(1 + 5);
    let url = format!("ws://{}/subscriptions", proxy.addr);
    let mut client = Console::start(&[&url]);
    client.type_text("hello\n").await;
    client.close_stdin();
    let ended = client.ended(PATIENCE).await;
    assert_eq!(
        ended.stdout,
        answers_to(&["hello"]),
        "stderr: {:?}",
        ended.stderr
    );
    assert!(ended.status.success(), "{ended:?}");
    assert!(
        ended
            .stderr
            .iter()
            .any(|line| line == "Sent again: \"hello\""),
        "{:?}",
        ended.stderr
    );
}

/// A private CA and a server certificate for 127.0.0.1 signed by it, as PEM files.
struct PrivateCa {
    dir: tempfile::TempDir,
}

impl PrivateCa {
    fn new() -> PrivateCa {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "console-client test CA");
        let ca_key = rcgen::KeyPair::generate().expect("a CA key");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("a CA");
        let server_key = rcgen::KeyPair::generate().expect("a server key");
        let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&server_key, &*ca)
            .expect("a server certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, pem: String| {
            std::fs::write(dir.path().join(name), pem).expect("write");
        };
        write("ca.pem", ca.pem());
        write("server.pem", server_cert.pem());
        write("server-key.pem", server_key.serialize_pem());
        PrivateCa { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

#[tokio::test]
async fn wss_with_a_private_ca_given_by_ca_cert() {
    let ca = PrivateCa::new();
    let (cert, key) = (ca.path("server.pem"), ca.path("server-key.pem"));
    let server = TestServer::start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    assert!(server.tls);
    let url = format!("wss://{}/subscriptions", server.addr);

    let mut client = Console::start(&[&url, "--ca-cert", &ca.path("ca.pem")]);
    client.type_text("hello over tls\n").await;
    client.close_stdin();
    let ended = client.ended(PATIENCE).await;
    assert_eq!(
        ended.stdout,
        answers_to(&["hello over tls"]),
        "{:?}",
        ended.stderr
    );
    assert!(ended.status.success(), "{ended:?}");

    // Without the CA the server's certificate is not trusted: nothing is sent, one line says so.
    let mut untrusting = Console::start(&[&url, "--connect-timeout", "1"]);
    untrusting.type_text("hello\n").await;
    let ended = untrusting.ended(PATIENCE).await;
    assert_eq!(ended.status.code(), Some(1), "{ended:?}");
    assert!(ended.stdout.is_empty(), "{ended:?}");
    assert_eq!(ended.stderr.len(), 1, "{ended:?}");
    assert!(ended.stderr[0].contains("certificate"), "{ended:?}");
}

#[tokio::test]
async fn nothing_listening_is_one_line_and_a_failure_within_the_connect_timeout() {
    // A socket bound to a port but never listening: the kernel refuses every connection to
    // it (only listening sockets take a SYN), and no other program can take the port while
    // it is held, so the refusal is certain.
    let held = tokio::net::TcpSocket::new_v4().expect("a socket");
    held.bind("127.0.0.1:0".parse().expect("an address"))
        .expect("a free port");
    let port = held.local_addr().expect("its address").port();
    let url = format!("ws://127.0.0.1:{port}/subscriptions");
    let started = Instant::now();
    let mut client = Console::start(&[&url, "--connect-timeout", "1.5"]);
    client.type_text("hello\n").await;
    let ended = client.ended(PATIENCE).await;
    let took = started.elapsed();
    assert_eq!(ended.status.code(), Some(1), "{ended:?}");
    assert!(ended.stdout.is_empty(), "{ended:?}");
    assert_eq!(
        ended.stderr,
        [format!(
            "console-client: cannot connect to {url} within 1.5 s: Connection refused (os error 111)"
        )]
    );
    // It kept trying for the whole timeout, and stopped once it was over (3 s of margin for a
    // loaded machine; PATIENCE alone would let a client that ignores the timeout pass).
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < Duration::from_millis(1500 + 3000), "{took:?}");
    drop(held);
}

#[tokio::test]
async fn a_line_over_the_limit_is_refused_the_next_is_answered_and_the_exit_says_so() {
    let server = TestServer::start(&["--max-message-size", "1000"]).await;
    let url = server.ws_url("/subscriptions");
    let too_long = "x".repeat(1001);

    // The client is told the server's limit: the line never leaves it.
    let mut told = Console::start(&[&url, "--max-message-size", "1000"]);
    told.type_text(&format!("{}\n{too_long}\nnext\n", "y".repeat(1000)))
        .await;
    told.close_stdin();
    let ended = told.ended(PATIENCE).await;
    let mut expected = answers_to(&[&"y".repeat(1000)]);
    expected.extend(copies("next", REPEAT_COUNT));
    assert_eq!(ended.stdout, expected, "{:?}", ended.stderr);
    assert_eq!(ended.status.code(), Some(1), "{ended:?}");
    assert!(
        ended.stderr.contains(
            &"Refused: a line of 1001 bytes is longer than the 1000 the server takes \
              (--max-message-size)."
                .to_owned()
        ),
        "{ended:?}"
    );
    assert_eq!(
        ended.stderr.last().map(String::as_str),
        Some("console-client: 1 message(s) failed (see above)")
    );
    assert_eq!(
        ended
            .stderr
            .iter()
            .filter(|line| line.starts_with("Connected"))
            .count(),
        1,
        "refused here, so the server never closed: {ended:?}"
    );

    // Not told: the server refuses it (1009), the client says so, reconnects, and goes on.
    let mut untold = Console::start(&[&url]);
    untold.type_text(&format!("{too_long}\nnext\n")).await;
    untold.close_stdin();
    let ended = untold.ended(PATIENCE).await;
    assert_eq!(ended.stdout, answers_to(&["next"]), "{:?}", ended.stderr);
    assert_eq!(ended.status.code(), Some(1), "{ended:?}");
    assert!(
        ended
            .stderr
            .iter()
            .any(|line| line.ends_with(": refused: too long for this server.")),
        "{ended:?}"
    );
}

#[tokio::test]
async fn two_console_clients_in_a_room_see_each_others_lines() {
    let server = TestServer::start(&[]).await;
    let url = server.ws_url("/subscriptions");
    let mut ana = Console::start(&[&url, "--room", "lobby", "--name", "ana"]);
    let mut bo = Console::start(&[&url, "--room", "lobby", "--name", "bo"]);
    ana.wait_for_status("Joined room lobby as ana").await;
    bo.wait_for_status("Joined room lobby as bo").await;

    ana.type_text("hello from ana\n").await;
    assert_eq!(
        ana.next_line().await,
        "ana: hello from ana",
        "own line once delivered"
    );
    assert_eq!(bo.next_line().await, "ana: hello from ana");
    bo.type_text("hi ana\n").await;
    assert_eq!(bo.next_line().await, "bo: hi ana");
    assert_eq!(ana.next_line().await, "bo: hi ana");

    ana.close_stdin();
    bo.close_stdin();
    for client in [ana, bo] {
        let ended = client.ended(PATIENCE).await;
        assert!(ended.status.success(), "{ended:?}");
        assert!(
            ended.stdout.is_empty(),
            "each message shown once: {ended:?}"
        );
    }
}

#[tokio::test]
async fn room_clients_rejoin_a_restarted_server_and_what_was_typed_meanwhile_arrives_once() {
    let mut server = TestServer::start(&[]).await;
    let addr = server.addr;
    let url = server.ws_url("/subscriptions");
    let mut ana = Console::start(&[&url, "--room", "lobby", "--name", "ana"]);
    let mut bo = Console::start(&[&url, "--room", "lobby", "--name", "bo"]);
    ana.wait_for_status("Joined room lobby as ana").await;
    bo.wait_for_status("Joined room lobby as bo").await;
    ana.type_text("before\n").await;
    assert_eq!(ana.next_line().await, "ana: before");
    assert_eq!(bo.next_line().await, "ana: before");

    // The server dies without a word; ana types while it is down.
    server.signal("KILL");
    let _ = server.wait().await;
    ana.type_text("while down\n").await;
    // Same port again: a new engine, a new epoch. Both join again from where they were.
    let _restarted = TestServer::start(&["--addr", &addr.to_string()]).await;
    ana.wait_for_status("Joined room lobby as ana").await;
    bo.wait_for_status("Joined room lobby as bo").await;
    assert_eq!(bo.next_line().await, "ana: while down");
    assert_eq!(ana.next_line().await, "ana: while down");
    bo.type_text("after\n").await;
    assert_eq!(bo.next_line().await, "bo: after");
    assert_eq!(ana.next_line().await, "bo: after");

    ana.close_stdin();
    bo.close_stdin();
    for client in [ana, bo] {
        let ended = client.ended(PATIENCE).await;
        assert!(ended.status.success(), "{ended:?}");
        assert!(
            ended.stdout.is_empty(),
            "each message shown once: {ended:?}"
        );
    }
}

/// A second client in the room, on a raw WebSocket: it sends any text, as anyone could.
async fn raw_room_member(server: &TestServer, name: &str, room: &str) -> crate::support::Client {
    let mut member = server.connect(&format!("/rooms?name={name}")).await;
    let join = json!({"type": "join", "room": room});
    member
        .send(Message::text(join.to_string()))
        .await
        .expect("join sent");
    let joined = next_text(&mut member).await;
    assert!(joined.contains("\"joined\""), "{joined}");
    member
}

#[tokio::test]
async fn room_messages_with_line_breaks_or_escape_sequences_are_one_escaped_line_each() {
    let server = TestServer::start(&[]).await;
    let url = server.ws_url("/subscriptions");
    let mut ana = Console::start(&[&url, "--room", "lobby", "--name", "ana"]);
    ana.wait_for_status("Joined room lobby as ana").await;
    let mut eve = raw_room_member(&server, "eve", "lobby").await;
    // A forged second line under bo's name, a carriage return that would overwrite the line
    // in a terminal, and an escape sequence that would retitle it.
    let texts = [
        "hi\nbo: I agree",
        "fine\rbo: agreed too",
        "\x1b]0;pwned\x07",
    ];
    for (n, text) in texts.iter().enumerate() {
        let publish =
            json!({"type": "publish", "room": "lobby", "id": format!("m{n}"), "text": text});
        eve.send(Message::text(publish.to_string()))
            .await
            .expect("publish sent");
    }
    let lines = ana.next_lines(texts.len()).await;
    assert_eq!(
        lines,
        [
            r"eve: hi\nbo: I agree",
            r"eve: fine\rbo: agreed too",
            r"eve: \u{1b}]0;pwned\u{7}",
        ],
        "stderr: {:?}",
        ana.stderr_so_far()
    );
    ana.close_stdin();
    let ended = ana.ended(PATIENCE).await;
    assert!(ended.status.success(), "{ended:?}");
    assert!(ended.stdout.is_empty(), "one line per message: {ended:?}");
    let all = lines.iter().chain(&ended.stdout);
    assert!(
        all.clone()
            .all(|line| !line.starts_with("bo:") && !line.contains(['\x1b', '\r', '\x07'])),
        "{lines:?}"
    );
}

#[tokio::test]
async fn app_replies_into_a_pipe_keep_one_line_each_and_the_rest_as_received() {
    // The decision for app mode: into a pipe (as here), only `\n` and `\r` are escaped, so one
    // reply stays one line and everything else is exactly as received; a terminal gets every
    // control character escaped (unit-tested in the client's `screen` module).
    let server = TestServer::start(&[]).await;
    let mut client = Console::start(&[&server.ws_url("/subscriptions")]);
    client.type_text("a\rb\nbold \x1b[1mtext\x1b[0m\n").await;
    client.close_stdin();
    let ended = client.ended(PATIENCE).await;
    let mut expected = vec![GREETING.to_owned()];
    expected.extend(copies(r"a\rb", REPEAT_COUNT));
    expected.extend(copies("bold \x1b[1mtext\x1b[0m", REPEAT_COUNT));
    assert_eq!(ended.stdout, expected, "stderr: {:?}", ended.stderr);
    assert!(ended.status.success(), "{ended:?}");
}

#[tokio::test]
async fn sigint_closes_with_1000_says_what_was_left_and_exits_130() {
    let server = TestServer::start(&[]).await;
    let mut client = Console::start(&[&server.ws_url("/subscriptions")]);
    // Standard input stays open, as in a terminal; the greeting says the connection is up.
    assert_eq!(client.next_line().await, GREETING);
    client.signal("INT");
    server
        .wait_for_log("client closed the connection code=1000 reason=interrupted")
        .await;
    let ended = client.ended(PATIENCE).await;
    assert_eq!(ended.status.code(), Some(130), "{ended:?}");
    assert!(ended.stdout.is_empty(), "{ended:?}");
    assert!(
        ended
            .stderr
            .contains(&"Stopped by SIGINT: 0 message(s) left unanswered.".to_owned()),
        "{ended:?}"
    );
}

#[tokio::test]
async fn sigterm_closes_with_1000_and_a_second_signal_does_not_wait_for_the_answer() {
    // A server that greets, takes every frame and answers nothing, not even the close: it
    // hands each frame to the test, and stops reading once the close came.
    let (url, accepted) = hand_made_server().await;
    let (heard_tx, mut heard_rx) = mpsc::unbounded_channel();
    let _server = tokio::spawn(async move {
        let mut socket = accepted.await;
        socket.send(Message::text(GREETING)).await.expect("greet");
        while let Some(Ok(message)) = socket.next().await {
            let closed = message.is_close();
            let _ = heard_tx.send(message);
            if closed {
                // Reading on would send tungstenite's answering close.
                std::future::pending::<()>().await;
            }
        }
    });
    let mut heard = async || {
        tokio::time::timeout(PATIENCE, heard_rx.recv())
            .await
            .expect("a frame in time")
            .expect("the server runs")
    };
    // A reply timeout far longer than the test's patience: only the second signal can end the
    // wait for the server's answering close.
    let mut client = Console::start(&[&url, "--reply-timeout", "600"]);
    assert_eq!(client.next_line().await, GREETING);
    client.type_text("never answered\n").await;
    assert_eq!(heard().await, Message::text("never answered"));
    client.signal("TERM");
    client
        .wait_for_status("Stopped by SIGTERM: 1 message(s) left unanswered.")
        .await;
    match heard().await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1000);
            assert_eq!(frame.reason.as_str(), "interrupted");
        }
        other => panic!("expected a close, got {other:?}"),
    }
    client.signal("TERM");
    let ended = client.ended(PATIENCE).await;
    assert_eq!(ended.status.code(), Some(143), "{ended:?}");
    assert!(ended.stdout.is_empty(), "{ended:?}");
}

#[tokio::test]
async fn a_reader_that_closes_the_pipe_gets_a_quiet_exit_0_and_the_server_a_close_1000() {
    // `console-client | head -1`: the reader takes the greeting and goes away.
    let server = TestServer::start(&[]).await;
    let mut client = Console::start(&[&server.ws_url("/subscriptions")]);
    assert_eq!(client.next_line().await, GREETING);
    // The next reply cannot be written.
    client.close_stdout();
    client.type_text("hello\n").await;
    server
        .wait_for_log("client closed the connection code=1000 reason=output closed")
        .await;
    let ended = client.ended(PATIENCE).await;
    assert_eq!(ended.status.code(), Some(0), "{ended:?}");
    assert!(
        !ended
            .stderr
            .iter()
            .any(|line| line.contains("console-client:") || line.contains("Broken pipe")),
        "quiet: {ended:?}"
    );
}

#[tokio::test]
async fn with_nothing_to_send_the_greeting_is_still_printed_every_time() {
    let server = TestServer::start(&[]).await;
    let url = server.ws_url("/subscriptions");
    // The input ends at once (`</dev/null`), before the greeting can have come: five runs, as
    // closing too early lost it only some of the time.
    for run in 0..5 {
        let client = Console::start_with(&[&url], &[], Stdio::null());
        let ended = client.ended(PATIENCE).await;
        assert_eq!(ended.stdout, [GREETING], "run {run}: {ended:?}");
        assert!(ended.status.success(), "run {run}: {ended:?}");
    }
}

#[tokio::test]
async fn with_nothing_to_send_a_greeting_that_comes_late_is_still_printed_before_the_close() {
    // A server that takes its time to greet: the input has long ended when the greeting comes,
    // and the client must not have closed by then. It says which close it got, and when.
    let (url, accepted) = hand_made_server().await;
    let server = tokio::spawn(async move {
        let mut socket = accepted.await;
        // The delay is the behaviour under test (a slow greeting), not a wait for readiness.
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The client may have closed already: then the greeting cannot be sent.
        let greeted = socket.send(Message::text(GREETING)).await.is_ok();
        let mut heard = Vec::new();
        while let Some(Ok(message)) = socket.next().await {
            heard.push(message);
        }
        (greeted, heard)
    });
    let client = Console::start_with(&[&url], &[], Stdio::null());
    let ended = client.ended(PATIENCE).await;
    let (greeted, heard) = tokio::time::timeout(PATIENCE, server)
        .await
        .expect("the server's connection ends")
        .expect("the server task");
    assert_eq!(ended.stdout, [GREETING], "{ended:?}");
    assert!(ended.status.success(), "{ended:?}");
    assert!(greeted, "the client closed before the greeting");
    assert!(
        matches!(heard.as_slice(), [Message::Close(Some(frame))] if u16::from(frame.code) == 1000),
        "the client closed with 1000 after the greeting: {heard:?}"
    );
}

#[tokio::test]
async fn in_a_room_max_message_size_bounds_the_text() {
    let server = TestServer::start(&[]).await;
    let url = server.ws_url("/subscriptions");
    let mut ana = Console::start(&[
        &url,
        "--room",
        "lobby",
        "--name",
        "ana",
        "--max-message-size",
        "10",
    ]);
    ana.wait_for_status("Joined room lobby as ana").await;
    ana.type_text("0123456789\n0123456789A\n").await;
    ana.close_stdin();
    let ended = ana.ended(PATIENCE).await;
    assert_eq!(ended.stdout, ["ana: 0123456789"], "{ended:?}");
    assert!(
        ended.stderr.contains(
            &"Refused: a line of 11 bytes is longer than the 10 a room message may have."
                .to_owned()
        ),
        "{ended:?}"
    );
    assert_eq!(ended.status.code(), Some(1), "{ended:?}");
}

#[tokio::test]
async fn a_ca_file_from_the_environment_does_not_stop_plain_ws() {
    // CONSOLE_CLIENT_CA_CERT set once for every run, here a file that is not even there: a
    // ws:// URL has nothing to trust and does not read it.
    let server = TestServer::start(&[]).await;
    let env = [("CONSOLE_CLIENT_CA_CERT", "/nowhere/ca.pem")];
    let mut client = Console::start_with(&[&server.ws_url("/subscriptions")], &env, Stdio::piped());
    client.type_text("hello\n").await;
    client.close_stdin();
    let ended = client.ended(PATIENCE).await;
    assert_eq!(ended.stdout, answers_to(&["hello"]), "{ended:?}");
    assert!(ended.status.success(), "{ended:?}");
}

#[tokio::test]
async fn wss_to_a_plain_server_asks_whether_it_speaks_tls() {
    let server = TestServer::start(&[]).await;
    let url = format!("wss://{}/subscriptions", server.addr);
    let client = Console::start_with(&[&url, "--connect-timeout", "1"], &[], Stdio::null());
    let ended = client.ended(PATIENCE).await;
    assert_eq!(ended.status.code(), Some(1), "{ended:?}");
    assert_eq!(ended.stderr.len(), 1, "{ended:?}");
    assert!(
        ended.stderr[0].starts_with(&format!(
            "console-client: cannot connect to {url} within 1 s: TLS: "
        )) && ended.stderr[0].ends_with(" (is the server speaking TLS?)"),
        "{ended:?}"
    );
}

#[tokio::test]
async fn a_close_reason_from_the_server_stays_on_its_one_status_line() {
    // A server whose close reason holds a line break and an escape sequence: the status line
    // that quotes it stays one line, with nothing for the terminal to act on.
    let (url, accepted) = hand_made_server().await;
    let _server = tokio::spawn(async move {
        let mut socket = accepted.await;
        socket.send(Message::text(GREETING)).await.expect("greet");
        let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 1001.into(),
            reason: "restart\nforged: line \x1b]0;x\x07".into(),
        };
        let _ = socket.close(Some(close)).await;
        // Kept open (and the listener with it) until the test ends: the client's reconnection
        // waits in the backlog.
        std::future::pending::<()>().await;
    });
    let mut client = Console::start(&[&url]);
    assert_eq!(client.next_line().await, GREETING);
    let line = client
        .wait_for_status("The server closed the connection (1001")
        .await;
    assert!(
        line.starts_with(r"The server closed the connection (1001: restart\nforged: line \u{1b}]0;x\u{7}). Reconnecting in"),
        "{line:?}"
    );
    let stderr = client.stderr_so_far();
    assert!(
        stderr
            .iter()
            .all(|line| !line.starts_with("forged") && !line.contains('\x1b')),
        "{stderr:?}"
    );
}

/// A server written by hand for one connection, on a free port: the URL to give the client, and
/// the socket once the client has connected and shaken hands.
async fn hand_made_server() -> (
    String,
    impl Future<Output = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "ws://{}/subscriptions",
        listener.local_addr().expect("addr")
    );
    let accepted = async move {
        let (tcp, _) = listener.accept().await.expect("the client connects");
        tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake")
    };
    (url, accepted)
}

/// A server that wants tokens, its key file, and how to mint a token with `server token`.
struct Signed {
    server: TestServer,
    key: tempfile::TempDir,
}

impl Signed {
    async fn start() -> Signed {
        let key = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(
            key.path().join("key"),
            "a console test's secret of 32+ bytes\n",
        )
        .expect("written");
        let path = key.path().join("key").display().to_string();
        let server = TestServer::start(&["--auth-key", &path]).await;
        Signed { server, key }
    }

    /// The `server token` command line for `sub`, as a shell would run it.
    fn mint_command(&self, sub: &str, name: &str, ttl: &str) -> String {
        format!(
            "'{}' token --auth-key '{}' --sub {sub} --name {name} --room lobby=write --ttl {ttl}",
            crate::support::server_binary().display(),
            self.key.path().join("key").display()
        )
    }

    fn mint(&self, sub: &str, name: &str, ttl: &str) -> String {
        let output = std::process::Command::new("sh")
            .args(["-c", &self.mint_command(sub, name, ttl)])
            .output()
            .expect("the server binary runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned()
    }
}

#[tokio::test]
async fn with_a_token_or_a_token_command_the_room_knows_each_by_their_tokens_name() {
    let signed = Signed::start().await;
    let url = signed.server.ws_url("/subscriptions");
    let token = signed.mint("ana", "Ana", "1h");
    // The token from the environment, as the help advises (a command line is visible to all).
    let mut ana = Console::start_with(
        &[&url, "--room", "lobby"],
        &[("ROOMS_TOKEN", &token)],
        Stdio::piped(),
    );
    let command = signed.mint_command("bo", "Bo", "1h");
    let mut bo = Console::start(&[&url, "--room", "lobby", "--token-command", &command]);
    ana.wait_for_status("Joined room lobby as Ana").await;
    bo.wait_for_status("Joined room lobby as Bo").await;
    ana.type_text("hello from ana\n").await;
    assert_eq!(ana.next_line().await, "Ana: hello from ana");
    assert_eq!(bo.next_line().await, "Ana: hello from ana");
    bo.type_text("hi\n").await;
    assert_eq!(ana.next_line().await, "Bo: hi");
    assert_eq!(bo.next_line().await, "Bo: hi");
    ana.close_stdin();
    bo.close_stdin();
    for client in [ana, bo] {
        let ended = client.ended(PATIENCE).await;
        assert!(ended.status.success(), "{ended:?}");
        let all = ended.stderr.join("\n");
        assert!(!all.contains(&token), "the token reached stderr");
    }
}

#[tokio::test]
async fn a_token_command_refreshes_before_expiry_and_a_fixed_token_that_expires_stops() {
    let signed = Signed::start().await;
    let url = signed.server.ws_url("/subscriptions");
    // A 3 s token, refreshed at about 80% of its life on the same connection.
    let command = signed.mint_command("ana", "Ana", "3s");
    let mut ana = Console::start(&[&url, "--room", "lobby", "--token-command", &command]);
    let fixed = signed.mint("bo", "Bo", "2s");
    let mut bo = Console::start(&[&url, "--room", "lobby", "--token", &fixed]);
    ana.wait_for_status("Joined room lobby as Ana").await;
    bo.wait_for_status("Joined room lobby as Bo").await;
    // The fixed token expires: the server closes 4408 and the client stops, saying why.
    let ended = bo.ended(PATIENCE).await;
    assert_eq!(ended.status.code(), Some(1), "{ended:?}");
    let said = ended.stderr.join("\n");
    assert!(said.contains("4408"), "{said}");
    assert!(said.contains("fresh --token"), "{said}");
    // Past the first token's life, the refreshed client is still on its first connection.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ana.type_text("after the first token\n").await;
    assert_eq!(ana.next_line().await, "Ana: after the first token");
    ana.close_stdin();
    let ended = ana.ended(PATIENCE).await;
    assert!(ended.status.success(), "{ended:?}");
    let connected = ended
        .stderr
        .iter()
        .filter(|line| line.starts_with("Connected to"))
        .count();
    assert_eq!(connected, 1, "one connection: {:?}", ended.stderr);
    assert!(
        !ended.stderr.iter().any(|line| line.contains("4408")),
        "{:?}",
        ended.stderr
    );
}

#[tokio::test]
async fn a_token_command_whose_refresh_fails_gets_a_new_token_after_4408_and_loses_nothing() {
    let signed = Signed::start().await;
    let url = signed.server.ws_url("/subscriptions");
    // The command's second run (the refresh) fails; the first and third mint a 3 s token.
    let runs = tempfile::tempdir().expect("a temporary directory");
    let count = runs.path().join("runs");
    let command = format!(
        "n=$(cat '{count}' 2>/dev/null || echo 0); n=$((n + 1)); echo $n > '{count}'; \
         if [ $n -eq 2 ]; then exit 1; fi; {}",
        signed.mint_command("ana", "Ana", "3s"),
        count = count.display()
    );
    let mut ana = Console::start(&[&url, "--room", "lobby", "--token-command", &command]);
    ana.wait_for_status("Joined room lobby as Ana").await;
    ana.type_text("before the expiry\n").await;
    assert_eq!(ana.next_line().await, "Ana: before the expiry");
    ana.wait_for_status("Cannot refresh the token").await;
    // The token runs out: the server closes 4408, a new token is run for, and the client
    // joins again from its position.
    ana.wait_for_status("4408").await;
    ana.wait_for_status("Connected to").await;
    ana.wait_for_status("Joined room lobby as Ana").await;
    ana.type_text("after the expiry\n").await;
    // Nothing printed twice: the next line is the new one.
    assert_eq!(ana.next_line().await, "Ana: after the expiry");
    ana.close_stdin();
    let ended = ana.ended(PATIENCE).await;
    assert!(ended.status.success(), "{ended:?}");
    assert_eq!(
        std::fs::read_to_string(&count).expect("counted").trim(),
        "3",
        "one failed refresh, one new token"
    );
}

#[tokio::test]
async fn a_refused_token_is_said_once_and_the_client_stops_without_retrying() {
    let signed = Signed::start().await;
    let url = signed.server.ws_url("/subscriptions");
    let mut bad = Console::start(&[&url, "--room", "lobby", "--token", "not.a.token"]);
    bad.type_text("lost?\n").await;
    let ended = bad.ended(PATIENCE).await;
    assert_eq!(ended.status.code(), Some(1), "{ended:?}");
    let said = ended.stderr.join("\n");
    assert!(
        said.contains("refused the token (malformed token)"),
        "{said}"
    );
    assert_eq!(
        ended
            .stderr
            .iter()
            .filter(|line| line.starts_with("Connected to"))
            .count(),
        1,
        "no retry: {said}"
    );
}

#[tokio::test]
async fn in_a_room_the_history_who_is_here_and_who_types_are_said() {
    let server = TestServer::start(&[]).await;
    let url = server.ws_url("/subscriptions");
    // Said before Ana comes in, by Bo, whom the room's presence has announced (his own
    // presence frames say so: the snapshot after his join, then the change naming him).
    let mut bo = crate::rooms::Member::connect(&server, "bo").await;
    bo.send(json!({"type": "join", "room": "lobby", "presence": true}))
        .await;
    for _ in 0..3 {
        bo.next().await;
    }
    bo.send(crate::rooms::publish("lobby", "b1", "said before"))
        .await;
    bo.messages(1).await;
    let mut ana = Console::start(&[
        &url,
        "--room",
        "lobby",
        "--name",
        "ana",
        "--history",
        "10",
        "--presence",
        "--typing",
    ]);
    assert_eq!(ana.next_line().await, "bo: said before", "the history");
    ana.wait_for_status("In lobby: ana, bo (2)").await;
    bo.send(json!({"type": "typing", "room": "lobby"})).await;
    ana.wait_for_status("bo is typing").await;
    drop(bo);
    ana.wait_for_status("bo left lobby").await;
    ana.close_stdin();
    let ended = ana.ended(PATIENCE).await;
    assert!(ended.status.success(), "{ended:?}");
    assert!(ended.stdout.is_empty(), "nothing twice: {ended:?}");
    // Without the flags, none of it.
    let mut quiet = Console::start(&[&url, "--room", "lobby", "--name", "cy"]);
    quiet.wait_for_status("Joined room lobby as cy").await;
    quiet.close_stdin();
    let ended = quiet.ended(PATIENCE).await;
    assert!(
        ended.stdout.is_empty()
            && !ended
                .stderr
                .iter()
                .any(|line| line.starts_with("In lobby") || line.contains("typing")),
        "{ended:?}"
    );
}
