//! Starting the real server binary and talking to it: [`TestServer::start`], [`connect`],
//! [`next_text`], [`http_request`].
//!
//! The server is started with `--addr 127.0.0.1:0`; its first stdout line names the port it got,
//! so tests never pick ports and never sleep waiting for it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest wait for anything the server should do promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The server binary under test: `$SERVER_BIN` (set by `cargo xtask test` to the release
/// build), else the debug build, built once here if needed.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("SERVER_BIN") {
            return PathBuf::from(path);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--package", "server", "--bin", "server"])
            .current_dir(&workspace)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the server failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        target.join("debug").join("server")
    })
}

/// How [`TestServer::launch`] starts the binary.
#[derive(Debug, Default)]
pub struct Launch {
    /// Shell commands run before `exec`ing the server, e.g. `ulimit -n 64 &&`.
    pub shell_prefix: Option<&'static str>,
    /// Keep stderr as a pipe nobody reads: it fills up after 64 KiB.
    pub never_read_stderr: bool,
    /// Environment variables set for the server, e.g. settings a flag would also give.
    pub env: &'static [(&'static str, &'static str)],
    /// A program the server runs under, with its arguments (valgrind): it must exec the
    /// server in its own process, so the process id and signals stay the server's.
    pub under: Vec<String>,
}

/// A running server process, killed when dropped.
pub struct TestServer {
    child: Child,
    pub addr: SocketAddr,
    /// Whether it speaks TLS (`Listening on https://…`).
    pub tls: bool,
    /// Where it serves `/metrics`, when started with `--metrics-addr`.
    pub metrics_addr: Option<SocketAddr>,
    stderr: Arc<Mutex<String>>,
    _unread_stderr: Option<tokio::process::ChildStderr>,
    /// Keeps the static fixture alive as long as the server.
    _static_dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts the server on a free port with the standard static fixture and extra flags.
    pub async fn start(extra_args: &[&str]) -> TestServer {
        let static_dir = static_fixture();
        let mut server = TestServer::start_with_dir(&served_dir(&static_dir), extra_args).await;
        server._static_dir = Some(static_dir);
        server
    }

    /// Like [`TestServer::start`], with environment variables set for the server.
    pub async fn start_with_env(
        env: &'static [(&'static str, &'static str)],
        extra_args: &[&str],
    ) -> TestServer {
        let static_dir = static_fixture();
        let launch = Launch {
            env,
            ..Launch::default()
        };
        let mut server = TestServer::launch(&served_dir(&static_dir), extra_args, launch).await;
        server._static_dir = Some(static_dir);
        server
    }

    /// Starts the server serving `static_dir`, on a free port.
    pub async fn start_with_dir(static_dir: &Path, extra_args: &[&str]) -> TestServer {
        TestServer::launch(static_dir, extra_args, Launch::default()).await
    }

    /// Starts the server as `launch` says: under a shell prefix (`ulimit -n 64 &&`), or with
    /// a stderr nobody reads.
    pub async fn launch(static_dir: &Path, extra_args: &[&str], launch: Launch) -> TestServer {
        let addr_arg = extra_args
            .iter()
            .any(|arg| arg.starts_with("--addr"))
            .then_some(vec![])
            .unwrap_or_else(|| vec!["--addr", "127.0.0.1:0"]);
        let mut command = match launch.shell_prefix {
            None if !launch.under.is_empty() => {
                let mut command = Command::new(&launch.under[0]);
                command.args(&launch.under[1..]).arg(server_binary());
                command
            }
            // `$0` is the binary, `$@` its arguments: no quoting problems.
            Some(prefix) => {
                assert!(
                    launch.under.is_empty(),
                    "a shell prefix or a program to run under, not both"
                );
                let mut command = Command::new("sh");
                command
                    .arg("-c")
                    .arg(format!("{prefix} exec \"$0\" \"$@\""))
                    .arg(server_binary());
                command
            }
            None => Command::new(server_binary()),
        };
        let mut child = command
            .args(addr_arg)
            .arg("--static-dir")
            .arg(static_dir)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .envs(launch.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the server binary starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let unread_stderr = child.stderr.take().expect("piped stderr");
        let unread_stderr = if launch.never_read_stderr {
            Some(unread_stderr)
        } else {
            collect_lines(unread_stderr, Arc::clone(&stderr));
            None
        };
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut metrics_addr = None;
        let (addr, tls) = loop {
            let line = tokio::time::timeout(PATIENCE, stdout.next_line())
                .await
                .expect("the server prints its URL promptly")
                .expect("stdout is readable")
                .unwrap_or_else(|| {
                    panic!(
                        "the server exited before listening: {}",
                        stderr.lock().expect("lock")
                    )
                });
            if let Some(rest) = line.strip_prefix("Metrics on http://") {
                metrics_addr = rest.trim_end_matches("/metrics").parse().ok();
                continue;
            }
            let (rest, tls) = match line.strip_prefix("Listening on https://") {
                Some(rest) => (Some(rest), true),
                None => (line.strip_prefix("Listening on http://"), false),
            };
            let addr = rest
                .and_then(|rest| rest.trim_end_matches('/').parse().ok())
                .unwrap_or_else(|| panic!("unexpected line: {line:?}"));
            break (addr, tls);
        };
        TestServer {
            child,
            addr,
            tls,
            metrics_addr,
            stderr,
            _unread_stderr: unread_stderr,
            _static_dir: None,
        }
    }

    /// The static directory this server serves, when it was started with the fixture.
    pub fn static_dir(&self) -> Option<PathBuf> {
        self._static_dir.as_ref().map(served_dir)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Opens a WebSocket to `path`.
    pub async fn connect(&self, path: &str) -> Client {
        let (client, _response) = tokio::time::timeout(
            PATIENCE,
            tokio_tungstenite::connect_async(self.ws_url(path)),
        )
        .await
        .expect("the handshake completes promptly")
        .expect("the handshake succeeds");
        client
    }

    /// Opens `/subscriptions` and consumes the greeting.
    pub async fn connect_subscriptions(&self) -> Client {
        let mut client = self.connect("/subscriptions").await;
        assert_eq!(next_text(&mut client).await, "Greetings!");
        client
    }

    /// Sends a plain HTTP/1.1 request; the path goes out verbatim.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpReply {
        http_request(self.addr, method, path, headers).await
    }

    /// Sends `signal` (e.g. `TERM`) to the server process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the server is running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the server exits promptly")
            .expect("wait works")
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    /// The server's resident memory in KiB, from `/proc/PID/status`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// How many file descriptors the server has open.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("proc")
            .count()
    }

    /// Everything the server has logged so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Waits until the server has logged a line containing `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !self.logs().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server never logged {needle:?}; logs:\n{}",
                self.logs()
            );
            // Polling a log buffer, not waiting for readiness: there is no event to await.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn collect_lines(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<String>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = into.lock().expect("lock");
            log.push_str(&line);
            log.push('\n');
        }
    });
}

/// The next message, which must arrive within [`PATIENCE`].
pub async fn next_message<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WebSocketStream<S>,
) -> Message {
    tokio::time::timeout(PATIENCE, client.next())
        .await
        .expect("a message arrives promptly")
        .expect("the connection is still open")
        .expect("the message is valid")
}

/// The next message, which must be text.
pub async fn next_text<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WebSocketStream<S>,
) -> String {
    match next_message(client).await {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Reads until the server's close frame and returns its code and reason.
pub async fn expect_close<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WebSocketStream<S>,
) -> (u16, String) {
    loop {
        match next_message(client).await {
            Message::Close(Some(frame)) => return (frame.code.into(), frame.reason.to_string()),
            Message::Close(None) => return (1005, String::new()),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A whole HTTP response.
#[derive(Debug)]
pub struct HttpReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// One request on a fresh HTTP/1.1 connection, with the path sent exactly as given.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpReply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    exchange(
        addr,
        request.body(Empty::<Bytes>::new()).expect("valid request"),
    )
    .await
}

/// A `POST` of a form (`application/x-www-form-urlencoded`) on a fresh connection.
pub async fn http_post_form(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    form: &str,
) -> HttpReply {
    let mut request = Request::builder()
        .method("POST")
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = http_body_util::Full::new(Bytes::from(form.to_owned()));
    exchange(addr, request.body(body).expect("valid request")).await
}

/// Sends `request` on a fresh HTTP/1.1 connection and reads the whole response.
async fn exchange<B>(addr: SocketAddr, request: Request<B>) -> HttpReply
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .expect("the server answers promptly")
        .expect("a response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the body arrives").to_bytes();
    HttpReply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A static directory with one file of each type the server must label, and a symlink that
/// points outside it.
pub fn static_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("static");
    std::fs::create_dir_all(root.join("pkg")).expect("mkdir");
    let files: &[(&str, &[u8])] = &[
        ("index.html", INDEX_HTML.as_bytes()),
        ("style.css", b"body { color: #222; }\n"),
        ("pkg/app.js", LARGE_JS.as_bytes()),
        ("pkg/app_bg.wasm", b"\0asm\x01\0\0\0"),
        ("data.json", b"{\"ok\": true}\n"),
        ("icon.svg", b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n"),
        ("image.png", b"\x89PNG\r\n\x1a\n"),
        ("favicon.ico", b"\0\0\x01\0"),
    ];
    for (name, contents) in files {
        std::fs::write(root.join(name), contents).expect("write fixture");
    }
    // What `cargo xtask build-client` writes beside every compressible file it makes.
    std::fs::write(root.join("pkg/app.js.gz"), gzip(LARGE_JS.as_bytes())).expect("write");
    std::fs::write(root.join("pkg/app.js.br"), brotli(LARGE_JS.as_bytes())).expect("write");
    std::fs::write(dir.path().join("secret.txt"), "outside the static dir\n").expect("write");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak.txt"))
        .expect("symlink");
    std::os::unix::fs::symlink(dir.path(), root.join("parent")).expect("symlink");
    dir
}

pub fn gzip(content: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(content).expect("gzip");
    encoder.finish().expect("gzip")
}

pub fn brotli(content: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut output = Vec::new();
    let mut writer = brotli::CompressorWriter::new(&mut output, 4096, 11, 22);
    writer.write_all(content).expect("brotli");
    drop(writer);
    output
}

/// Where [`static_fixture`] puts the served directory: one level down, so that `..` from it
/// would reach `secret.txt`.
pub fn served_dir(fixture: &tempfile::TempDir) -> PathBuf {
    fixture.path().join("static")
}

pub const INDEX_HTML: &str = "<!doctype html><title>fixture</title><p>index</p>\n";

/// Large and repetitive enough that compression clearly pays.
pub const LARGE_JS: &str = concat!(
    "export function hello() { return 'hello world, hello world, hello world'; }\n",
    "export function hello2() { return 'hello world, hello world, hello world'; }\n",
    "export function hello3() { return 'hello world, hello world, hello world'; }\n",
    "export function hello4() { return 'hello world, hello world, hello world'; }\n",
    "export function hello5() { return 'hello world, hello world, hello world'; }\n",
);

/// Lets this test process open thousands of sockets (the soft limit is often 1024).
pub fn allow_many_sockets() {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the open-file limit");
}

/// A WebSocket client that writes frames byte by byte as told, to send what a polite client
/// library never would: unmasked frames, reserved bits, lies about lengths.
pub struct RawClient {
    pub stream: TcpStream,
}

/// Frame opcodes.
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

impl RawClient {
    /// Connects and completes the opening handshake on `path`.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawClient {
        RawClient::connect_sending(addr, path, &[]).await
    }

    /// Like [`RawClient::connect`], but `early` bytes (frames) go out in the same write as the
    /// handshake request, before the server has answered it.
    pub async fn connect_sending(addr: SocketAddr, path: &str, early: &[u8]) -> RawClient {
        let (client, head) = RawClient::handshake(addr, path, "", early).await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "handshake refused: {head}"
        );
        client
    }

    /// Sends the opening handshake with `extra_headers` (whole `Name: value\r\n` lines) and
    /// `early` bytes behind it; returns the client and the response head, whatever it is.
    pub async fn handshake(
        addr: SocketAddr,
        path: &str,
        extra_headers: &str,
        early: &[u8],
    ) -> (RawClient, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             {extra_headers}\r\n"
        );
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(early);
        stream.write_all(&bytes).await.expect("send handshake");
        // Read the response head byte by byte so no frame bytes are consumed with it.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(PATIENCE, stream.read_u8())
                .await
                .expect("handshake answered promptly")
                .expect("handshake response");
            head.push(byte);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        (RawClient { stream }, head)
    }

    /// Sends one frame: `first_byte` is FIN/RSV/opcode; `mask` of `None` sends it unmasked.
    pub async fn send_raw(&mut self, first_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) {
        use tokio::io::AsyncWriteExt;
        let frame = encode_frame(first_byte, payload.len() as u64, payload, mask);
        self.stream.write_all(&frame).await.expect("send frame");
    }

    /// Sends a final, masked frame.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.send_raw(0x80 | opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
            .await;
    }

    /// Reads one server frame: `(opcode, payload)`; `None` at end of stream.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let (first, payload) = self.read_frame_with_flags().await?;
        Some((first & 0x0f, payload))
    }

    /// Reads one server frame: `(first byte: FIN, RSV bits and opcode, payload)`.
    pub async fn read_frame_with_flags(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        let read = async {
            let first = self.stream.read_u8().await.ok()?;
            let second = self.stream.read_u8().await.ok()?;
            assert_eq!(second & 0x80, 0, "server frames are never masked");
            let length = match second & 0x7f {
                126 => u64::from(self.stream.read_u16().await.ok()?),
                127 => self.stream.read_u64().await.ok()?,
                short => u64::from(short),
            };
            let mut payload = vec![0; usize::try_from(length).expect("sane length")];
            self.stream.read_exact(&mut payload).await.ok()?;
            Some((first, payload))
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("a frame or EOF arrives promptly")
    }

    /// Skips data and ping frames until the close frame; returns its code.
    pub async fn read_close_code(&mut self) -> u16 {
        loop {
            match self.read_frame().await {
                Some((CLOSE, payload)) => {
                    assert!(payload.len() >= 2, "close frame without a code");
                    return u16::from_be_bytes([payload[0], payload[1]]);
                }
                Some(_) => continue,
                None => panic!("the connection ended without a close frame"),
            }
        }
    }

    /// Waits until the server closes TCP; returns how many bytes arrived before that.
    pub async fn read_to_end(&mut self) -> usize {
        use tokio::io::AsyncReadExt;
        let mut sink = vec![0u8; 64 * 1024];
        let mut total = 0;
        loop {
            match tokio::time::timeout(PATIENCE, self.stream.read(&mut sink)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return total,
                Ok(Ok(read)) => total += read,
                Err(_) => panic!("the server kept the connection open"),
            }
        }
    }
}

/// Encodes a frame whose header claims `claimed_length` (which may differ from the payload).
pub fn encode_frame(
    first_byte: u8,
    claimed_length: u64,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut frame = vec![first_byte];
    match claimed_length {
        0..=125 => frame.push(mask_bit | claimed_length as u8),
        126..=0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(claimed_length as u16).to_be_bytes());
        }
        _ => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&claimed_length.to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            frame.extend_from_slice(&key);
            frame.extend(
                payload
                    .iter()
                    .enumerate()
                    .map(|(index, byte)| byte ^ key[index % 4]),
            );
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

/// Real nginx with `http_config` inside its `http` block, in a private prefix (pid, logs and
/// temporary files), listening on `addr`; stopped when dropped. `$NGINX` names the binary.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    prefix: tempfile::TempDir,
}

impl Nginx {
    /// A free loopback port for nginx, which cannot listen on port 0 itself: the kernel picks
    /// it, and it is given back just before nginx takes it.
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port()
    }

    pub async fn start(http_config: &str, port: u16) -> Nginx {
        let prefix = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| prefix.path().join(name).display().to_string();
        let config = format!(
            "daemon off; master_process off; worker_processes 1;
pid {pid}; error_log {error_log} warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
{http_config}
}}
",
            pid = path("nginx.pid"),
            error_log = path("error.log"),
            tmp = prefix.path().display(),
        );
        let config_path = prefix.path().join("nginx.conf");
        std::fs::write(&config_path, config).expect("write nginx.conf");
        let binary = std::env::var("NGINX").unwrap_or_else(|_| "nginx".into());
        let child = Command::new(&binary)
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let nginx = Nginx {
            child,
            addr,
            prefix,
        };
        // nginx says nothing when it is ready: it is once it accepts a connection.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx did not start: {}",
                nginx.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A self-signed certificate for `127.0.0.1` and `localhost`, written as PEM files.
pub struct TestCertificate {
    pub dir: tempfile::TempDir,
    /// The certificate, DER, for a client to trust.
    pub der: Vec<u8>,
}

impl TestCertificate {
    pub fn new() -> TestCertificate {
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let made = rcgen::generate_simple_self_signed(names).expect("a certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("cert.pem"), made.cert.pem()).expect("write");
        std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem())
            .expect("write");
        TestCertificate {
            der: made.cert.der().to_vec(),
            dir,
        }
    }

    pub fn cert_path(&self) -> String {
        self.dir.path().join("cert.pem").display().to_string()
    }

    pub fn key_path(&self) -> String {
        self.dir.path().join("key.pem").display().to_string()
    }

    /// The server with the standard fixture, speaking TLS with this certificate.
    pub async fn start_server(&self, extra_args: &[&str]) -> TestServer {
        let (cert, key) = (self.cert_path(), self.key_path());
        let mut args = vec!["--tls-cert", &cert, "--tls-key", &key];
        args.extend_from_slice(extra_args);
        TestServer::start(&args).await
    }

    /// A TLS client that trusts only this certificate.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        use tokio_rustls::rustls;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from(self.der.clone()))
            .expect("a valid root");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
    }
}

// Helpers for tests that must be able to fail and must not flake on a loaded machine: peak
// memory, CPU time, and hand-made frames inside TLS.

impl TestServer {
    /// The most resident memory the server has had since it started, in KiB (`VmHWM`). A
    /// buffer allocated and freed between two looks at [`TestServer::rss_kib`] (large ones
    /// go back to the kernel when freed) still shows here.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// User plus system CPU time the server has used so far, all its threads together.
    pub fn cpu_time(&self) -> Duration {
        cpu_time_in(&format!("/proc/{}/stat", self.pid()))
    }
}

/// User plus system CPU time the calling thread has used so far.
pub fn this_thread_cpu_time() -> Duration {
    cpu_time_in("/proc/thread-self/stat")
}

/// User plus system CPU time from a `/proc/.../stat` file.
fn cpu_time_in(stat_path: &str) -> Duration {
    let stat = std::fs::read_to_string(stat_path).expect("proc");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // Linux reports in clock ticks of 1/100 s on every common configuration.
    Duration::from_millis(ticks * 10)
}

/// A [`RawClient`] inside TLS: hand-made frames over `wss:`.
pub struct RawTlsClient {
    pub stream: tokio_rustls::client::TlsStream<TcpStream>,
}

impl RawTlsClient {
    /// Completes TLS with a server started by `certificate`, then sends the opening
    /// handshake on `path` with `extra_headers` (whole `Name: value\r\n` lines) and `early`
    /// bytes (frames) in the same write; returns the client and the response head, whatever
    /// it is.
    pub async fn handshake(
        server: &TestServer,
        certificate: &TestCertificate,
        path: &str,
        extra_headers: &str,
        early: &[u8],
    ) -> (RawTlsClient, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = TcpStream::connect(server.addr).await.expect("connect");
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a name");
        let mut stream = tokio::time::timeout(PATIENCE, certificate.connector().connect(name, tcp))
            .await
            .expect("the TLS handshake completes promptly")
            .expect("the TLS handshake succeeds");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             {extra_headers}\r\n",
            server.addr
        );
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(early);
        stream.write_all(&bytes).await.expect("send handshake");
        stream.flush().await.expect("flush handshake");
        // Byte by byte, so no frame bytes are taken with the head.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(PATIENCE, stream.read_u8())
                .await
                .expect("handshake answered promptly")
                .expect("handshake response");
            head.push(byte);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        (RawTlsClient { stream }, head)
    }

    /// Sends one frame: `first_byte` is FIN/RSV/opcode; `mask` of `None` sends it unmasked.
    pub async fn send_raw(&mut self, first_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) {
        use tokio::io::AsyncWriteExt;
        let frame = encode_frame(first_byte, payload.len() as u64, payload, mask);
        self.stream.write_all(&frame).await.expect("send frame");
        // TLS holds written bytes until flushed.
        self.stream.flush().await.expect("flush frame");
    }

    /// Reads one server frame: `(first byte: FIN, RSV bits and opcode, payload)`; `None` at
    /// the end of the stream.
    pub async fn read_frame_with_flags(&mut self) -> Option<(u8, Vec<u8>)> {
        tokio::time::timeout(PATIENCE, read_server_frame(&mut self.stream))
            .await
            .expect("a frame or EOF arrives promptly")
    }
}

/// Reads one unmasked server frame from any stream: `(first byte, payload)`.
async fn read_server_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let first = stream.read_u8().await.ok()?;
    let second = stream.read_u8().await.ok()?;
    assert_eq!(second & 0x80, 0, "server frames are never masked");
    let length = match second & 0x7f {
        126 => u64::from(stream.read_u16().await.ok()?),
        127 => stream.read_u64().await.ok()?,
        short => u64::from(short),
    };
    let mut payload = vec![0; usize::try_from(length).expect("sane length")];
    stream.read_exact(&mut payload).await.ok()?;
    Some((first, payload))
}

/// A private `redis-server` for the rooms-across-instances tests: no TCP port (`--port 0`),
/// a unix socket in its own temporary directory, no persistence, so a [`Redis::restart`]
/// comes back empty as a real Redis without persistence would. Killed when dropped.
/// `$REDIS_SERVER` names the binary (`cargo xtask test` installs it).
pub struct Redis {
    child: Option<Child>,
    dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
}

impl Redis {
    pub async fn start() -> Redis {
        let mut redis = Redis {
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            log: Arc::new(Mutex::new(String::new())),
        };
        redis.launch().await;
        redis
    }

    /// The socket the server listens on.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The URL the chat server takes as `--redis-url`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket_path().display())
    }

    /// Everything redis-server has logged, all its runs together.
    pub fn logs(&self) -> String {
        self.log.lock().expect("lock").clone()
    }

    /// Kills redis-server (SIGKILL: no goodbye to its clients) and waits until it is gone.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("redis-server is running");
        child.start_kill().expect("kill redis-server");
        tokio::time::timeout(PATIENCE, child.wait())
            .await
            .expect("redis-server dies promptly")
            .expect("wait for redis-server");
    }

    /// Hangs redis-server (SIGSTOP): its connections stay open and take commands into their
    /// buffers, but nothing is answered until [`Redis::thaw`]. Commands of this fixture would
    /// wait for it too: send none meanwhile.
    pub fn freeze(&self) {
        self.send_signal("STOP");
    }

    /// Lets a frozen redis-server run again (SIGCONT): it answers what it took meanwhile.
    pub fn thaw(&self) {
        self.send_signal("CONT");
    }

    fn send_signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("redis-server is running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Starts redis-server again on the same socket, empty.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        // A killed server leaves its socket file behind.
        let _ = std::fs::remove_file(self.socket_path());
        self.launch().await;
    }

    async fn launch(&mut self) {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let mut child = Command::new(&binary)
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(self.socket_path())
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        let stderr = child.stderr.take().expect("piped stderr");
        collect_lines(stderr, Arc::clone(&self.log));
        // redis-server logs to stdout, and says when it accepts connections: read up to
        // that line, then keep draining it so it never blocks on a full pipe.
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let ready = tokio::time::timeout(PATIENCE, async {
            while let Ok(Some(line)) = stdout.next_line().await {
                // "Ready to accept connections" over TCP, "ready to accept connections at
                // PATH" on a unix socket alone.
                let ready = line
                    .to_ascii_lowercase()
                    .contains("ready to accept connections");
                self.log
                    .lock()
                    .expect("lock")
                    .push_str(&format!("{line}\n"));
                if ready {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "redis-server did not start: {}",
            self.logs()
        );
        collect_lines(stdout.into_inner(), Arc::clone(&self.log));
        self.child = Some(child);
        assert_eq!(
            self.command(&["PING"]).await,
            RespReply::Simple("PONG".into()),
            "redis-server answers"
        );
    }

    /// Runs one command on a fresh connection and returns the reply.
    pub async fn command(&self, args: &[&str]) -> RespReply {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let exchange = async {
            let mut stream = tokio::net::UnixStream::connect(self.socket_path()).await?;
            stream.write_all(&resp_command(args)).await?;
            let mut received = Vec::new();
            let mut buffer = [0_u8; 16 * 1024];
            loop {
                if let Some((reply, _)) = RespReply::parse(&received) {
                    return Ok::<RespReply, std::io::Error>(reply);
                }
                let read = stream.read(&mut buffer).await?;
                if read == 0 {
                    return Err(std::io::Error::other(
                        "redis closed the connection mid-reply",
                    ));
                }
                received.extend_from_slice(&buffer[..read]);
            }
        };
        tokio::time::timeout(PATIENCE, exchange)
            .await
            .unwrap_or_else(|_| panic!("redis answers {args:?} promptly"))
            .unwrap_or_else(|error| panic!("redis {args:?}: {error}"))
    }

    /// Runs a command whose reply is an integer.
    pub async fn integer(&self, args: &[&str]) -> i64 {
        match self.command(args).await {
            RespReply::Integer(value) => value,
            other => panic!("{args:?}: expected an integer, got {other:?}"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// A command as RESP: an array of bulk strings.
fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        bytes.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        bytes.extend_from_slice(arg.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespReply {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None` for the null array.
    Array(Option<Vec<RespReply>>),
}

impl RespReply {
    /// The reply at the start of `bytes` and its length, or `None` if it is not all there yet.
    /// Malformed input panics: it comes from the redis-server under test.
    fn parse(bytes: &[u8]) -> Option<(RespReply, usize)> {
        let line_end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
        let line = std::str::from_utf8(&bytes[1..line_end]).expect("a RESP line is text");
        let after_line = line_end + 2;
        let number = || line.parse::<i64>().expect("a RESP length or integer");
        match bytes[0] {
            b'+' => Some((RespReply::Simple(line.to_owned()), after_line)),
            b'-' => Some((RespReply::Error(line.to_owned()), after_line)),
            b':' => Some((RespReply::Integer(number()), after_line)),
            b'$' => match usize::try_from(number()) {
                Err(_) => Some((RespReply::Bulk(None), after_line)),
                Ok(length) => {
                    let end = after_line + length;
                    (bytes.len() >= end + 2).then(|| {
                        let data = bytes[after_line..end].to_vec();
                        (RespReply::Bulk(Some(data)), end + 2)
                    })
                }
            },
            b'*' => match usize::try_from(number()) {
                Err(_) => Some((RespReply::Array(None), after_line)),
                Ok(count) => {
                    let mut items = Vec::with_capacity(count);
                    let mut used = after_line;
                    for _ in 0..count {
                        let (item, length) = RespReply::parse(&bytes[used..])?;
                        items.push(item);
                        used += length;
                    }
                    Some((RespReply::Array(Some(items)), used))
                }
            },
            other => panic!("not a RESP reply: {:?}", other as char),
        }
    }
}

/// The value of the sample `name` (with its labels, exactly as exposed) in a Prometheus or
/// OpenMetrics text; `None` when it is not there.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (sample, value) = line.split_once(' ')?;
        (sample == name)
            .then(|| value.split(' ').next()?.parse().ok())
            .flatten()
    })
}

impl TestServer {
    /// `GET /readyz`: its status and body.
    pub async fn readiness(&self) -> (StatusCode, String) {
        let reply = self.request("GET", "/readyz", &[]).await;
        let body = String::from_utf8_lossy(&reply.body).into_owned();
        (reply.status, body)
    }

    /// Waits (at most [`PATIENCE`]) until `/readyz` answers `status`.
    pub async fn wait_for_readiness(&self, status: StatusCode) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (got, body) = self.readiness().await;
            if got == status {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz still answers {got} {body:?}, not {status}; logs:\n{}",
                self.logs()
            );
            // Polling a state that changes on the server's own time: there is no event.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its `/metrics` text; it must have been started with `--metrics-addr`.
    pub async fn metrics(&self) -> String {
        let addr = self.metrics_addr.expect("started with --metrics-addr");
        let reply = http_request(addr, "GET", "/metrics", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        String::from_utf8(reply.body.to_vec()).expect("UTF-8")
    }

    /// A counter or gauge from its `/metrics`, 0 when it is not there yet.
    pub async fn metric(&self, name: &str) -> u64 {
        metric_value(&self.metrics().await, name).unwrap_or(0.0) as u64
    }
}
