//! The server as a library: [`Server::new`] checks the configuration and opens the static
//! directory, then [`Server::run`] serves HTTP and WebSockets on a bound listener until a
//! shutdown future resolves. `main.rs` only parses flags, binds, and handles signals.

pub mod auth;
pub mod config;
mod deflate;
mod deflate_stream;
mod gate;
mod http;
mod metrics;
mod outgoing;
mod read_ahead;
mod rooms;
mod session;
mod static_files;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_tungstenite::tungstenite::protocol::WebSocketConfig;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use config::Config;
use http::SecurityHeaders;
use metrics::Metrics;
use session::SessionTiming;
use static_files::StaticFiles;

/// Per-connection read buffer of tungstenite. Its default (128 KiB, allocated up front) would
/// cost 1.3 GiB for 10,000 idle sockets. It is only the most tungstenite takes per call, not a
/// limit, and since `ReadAhead` serves those calls from memory it no longer sets how many
/// system calls a large message needs. Measured with `cargo xtask bench`: 2 KiB gives 5.9 KiB
/// per idle socket (4 KiB: 8.1), and 16 KiB echo was no slower than with 4 KiB.
const READ_BUFFER_SIZE: usize = 2 * 1024;
/// Frames are gathered up to this size before a write; `flush` writes the rest. A batch of
/// replies therefore leaves in few syscalls.
const WRITE_BUFFER_SIZE: usize = 16 * 1024;
/// Most request headers hyper accepts; more get `431`.
const MAX_HEADERS: usize = 64;
/// Largest request head in bytes; a larger one gets `431`.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "static directory {path:?} cannot be served: {source} \
         (run from the repository root, or pass --static-dir)"
    )]
    StaticDir {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("--redis-url: {0}")]
    Redis(String),
    /// A key of `--auth-key` (or `--dev-sign-in`) cannot be used: a flag error (exit 2).
    #[error("{0}")]
    Auth(String),
    #[error("--connect-src cannot go into a Content-Security-Policy header: {0}")]
    ConnectSrc(#[from] ::http::header::InvalidHeaderValue),
    /// Flags that each pass but not together: a flag error (exit 2).
    #[error("{0}")]
    Flags(String),
}

/// Bytes of a publish frame besides its text, at most: a room name of 64 characters, each
/// written as an escape (`\u0072`, 6 bytes), an id of 64 characters outside the BMP, each an
/// escaped surrogate pair (12 bytes), the type and the punctuation: 384 + 768 + 41.
const PUBLISH_FRAME_OVERHEAD: u64 = 2048;

/// The longest text of a publish: `--max-text-bytes`, which must fit in `--max-message-size`
/// however its text is written (JSON writes a control character as `\u001b`, 6 bytes for
/// 1), or else the protocol's default, lowered to fit. Otherwise a text the server would take
/// is cut off at the socket (close 1009) instead of being refused as `too_long` with the
/// connection kept.
fn text_limit(config: &Config) -> Result<usize, StartError> {
    let fits = |text: u64| 6 * text + PUBLISH_FRAME_OVERHEAD <= u64::from(config.max_message_size);
    match config.max_text_bytes {
        Some(text) if fits(u64::from(text)) => Ok(text as usize),
        Some(text) => Err(StartError::Flags(format!(
            "--max-text-bytes {text} needs --max-message-size {} at least (now {}): a publish \
             of that text written as JSON, where a control character takes 6 bytes",
            6 * u64::from(text) + PUBLISH_FRAME_OVERHEAD,
            config.max_message_size
        ))),
        None => {
            let default = room_protocol::bounds::MAX_TEXT_BYTES as u64;
            let room =
                u64::from(config.max_message_size).saturating_sub(PUBLISH_FRAME_OVERHEAD) / 6;
            if room < default {
                tracing::warn!(
                    max_text_bytes = room,
                    "rooms: texts of a publish are limited to what --max-message-size holds"
                );
            }
            Ok(default.min(room) as usize)
        }
    }
}

/// State every connection shares.
#[derive(Debug)]
struct Shared {
    config: Config,
    static_files: StaticFiles,
    security_headers: SecurityHeaders,
    /// Set with `--tls-cert` and `--tls-key`: every connection starts with a TLS handshake.
    tls: Option<Tls>,
    metrics: Metrics,
    websocket_config: WebSocketConfig,
    /// One permit per open WebSocket session (`--max-connections`).
    sessions: Arc<Semaphore>,
    /// One permit per open TCP connection, below the open-file limit.
    connections: Arc<Semaphore>,
    /// Every connection and session task, so shutdown can wait for them.
    tracker: TaskTracker,
    /// Cancelled when shutdown starts: `/readyz` answers 503 from then on.
    draining: CancellationToken,
    /// Cancelled once connections are to close (after `--shutdown-delay`); connections and
    /// sessions watch it.
    shutdown: CancellationToken,
    /// The rooms every `/rooms` session joins and publishes to.
    rooms: Arc<rooms::Engine>,
    /// What bounds one `/rooms` connection.
    member_limits: rooms::MemberLimits,
    /// With `--auth-key` (or `--dev-sign-in`): tokens decide who a `/rooms` connection is.
    auth: Option<Arc<auth::Auth>>,
}

impl Shared {
    fn session_timing(&self) -> SessionTiming {
        SessionTiming {
            ping_interval: self.config.ping_interval,
            send_timeout: self.config.send_timeout,
            room_flush_interval: Duration::from_millis(self.config.room_flush_interval),
        }
    }
}

/// A server ready to run: its configuration checked and its static directory open.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// Opens the static directory and prepares the shared state; fails before anything is
    /// bound or printed.
    pub fn new(config: Config) -> Result<Server, StartError> {
        // First: a key that cannot be used, or flags that do not go together, are flag errors
        // (exit 2), whatever else is wrong.
        let auth = auth::Auth::from_config(&config).map_err(StartError::Auth)?;
        let max_text_bytes = text_limit(&config)?;
        let static_files =
            StaticFiles::open(&config.static_dir).map_err(|source| StartError::StaticDir {
                path: config.static_dir.clone(),
                source,
            })?;
        let security_headers = SecurityHeaders::new(&config.connect_src)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Tls(tls_acceptor(cert, key)?)),
            _ => None,
        };
        let max_message_size = config.max_message_size as usize;
        let websocket_config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_SIZE)
            .write_buffer_size(WRITE_BUFFER_SIZE)
            // Bounds what a client that does not read can make us hold: one batch of the
            // largest replies, with room for the control frames that go with it.
            .max_write_buffer_size(WRITE_BUFFER_SIZE + 11 * (max_message_size + 14))
            .max_message_size(Some(max_message_size))
            .max_frame_size(Some(max_message_size));
        match &auth {
            None => tracing::warn!(
                "rooms are open: anyone can join any room under any name; set --auth-key"
            ),
            Some(auth) if auth.dev_sign_in() => tracing::warn!(
                "--dev-sign-in: POST /auth/token signs a token for any name (anyone can be \
                 anyone); for trying it out only"
            ),
            Some(_) => {}
        }
        let metrics = Metrics::new();
        let rooms = match &config.redis_url {
            Some(url) => rooms::Engine::redis(url, room_settings(&config), metrics.rooms())
                .map_err(|error| StartError::Redis(error.to_string()))?,
            None => rooms::Engine::embedded(room_settings(&config), metrics.rooms()),
        };
        let member_limits = rooms::MemberLimits {
            max_rooms: config.max_rooms_per_connection as usize,
            max_text_bytes,
            publish_rate: config.publish_rate,
            publish_burst: config.publish_burst,
            join_rate: config.join_rate,
            join_burst: config.join_burst,
            queue_bytes: config.room_queue_bytes as usize,
            hold_bytes: hold_bytes(&config),
        };
        let shared = Arc::new(Shared {
            rooms,
            member_limits,
            auth,
            sessions: Arc::new(Semaphore::new(config.max_connections as usize)),
            connections: Arc::new(Semaphore::new(connection_cap())),
            static_files,
            security_headers,
            tls,
            metrics,
            websocket_config,
            tracker: TaskTracker::new(),
            draining: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            config,
        });
        Ok(Server { shared })
    }

    /// Whether the server speaks HTTPS (`--tls-cert`, `--tls-key`).
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// Serves on `listener` until `shutdown` resolves, answers `/readyz` with 503 from then
    /// on, keeps serving for `--shutdown-delay`, then stops accepting, sends close `1001` to
    /// every WebSocket, and waits for connections to end (at most `--shutdown-grace`).
    pub async fn run(
        self,
        listener: TcpListener,
        metrics_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) {
        let shared = self.shared;
        shared.rooms.start(&shared.tracker, shared.shutdown.clone());
        if let Some(metrics_listener) = metrics_listener {
            let metrics = serve_metrics(metrics_listener, Arc::clone(&shared));
            shared.tracker.spawn(metrics);
        }
        let stop_accepting = async {
            shutdown.await;
            shared.draining.cancel();
            let delay = shared.config.shutdown_delay;
            if !delay.is_zero() {
                tracing::info!(?delay, "draining: readiness answers 503 until closing");
                tokio::time::sleep(delay).await;
            }
        };
        tokio::pin!(stop_accepting);
        let mut failures = AcceptFailures::default();
        let mut capped = false;
        loop {
            // A place under the cap first: at the cap, new connections wait in the kernel's
            // listen queue instead of taking file descriptors the process does not have.
            let slot = match Arc::clone(&shared.connections).try_acquire_owned() {
                Ok(slot) => {
                    capped = false;
                    slot
                }
                Err(_) => {
                    if !capped {
                        tracing::warn!(
                            cap = connection_cap(),
                            "at the connection cap (the open-file limit); new connections wait"
                        );
                        capped = true;
                    }
                    tokio::select! {
                        slot = Arc::clone(&shared.connections).acquire_owned() => {
                            slot.expect("the connection semaphore is never closed")
                        }
                        () = &mut stop_accepting => break,
                    }
                }
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut stop_accepting => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    failures.succeeded();
                    let span = tracing::info_span!("conn", %peer);
                    let connection =
                        serve_connection(stream, Arc::clone(&shared), slot).instrument(span);
                    shared.tracker.spawn(connection);
                }
                // Out of file descriptors or memory, or a connection reset before accept: the
                // listener itself is fine. Back off so that the failure cannot spin a core.
                Err(error) => {
                    let pause = failures.failed(&error);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = &mut stop_accepting => break,
                    }
                }
            }
        }

        drop(listener);
        let open = shared.tracker.len();
        tracing::info!(open, "shutting down: closing connections");
        shared.shutdown.cancel();
        shared.tracker.close();
        if tokio::time::timeout(shared.config.shutdown_grace, shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                still_open = shared.tracker.len(),
                "grace period over; dropping the remaining connections"
            );
        }
        tracing::info!("stopped");
    }
}

/// The bounds of every room, from the flags.
fn room_settings(config: &Config) -> rooms::RoomSettings {
    rooms::RoomSettings {
        history_messages: config.room_history as usize,
        history_bytes: config.room_history_bytes as usize,
        history_ttl_ms: millis(config.room_history_ttl),
        max_rooms: config.max_rooms as usize,
        dedup_window_ms: millis(config.dedup_window),
        dedup_max_ids: config.dedup_max_ids as usize,
        presence_max_members: config.presence_max_members as usize,
        presence_ttl_ms: millis(config.presence_ttl),
    }
}

/// What a member's queue may hold back for its flush interval: a gap read pushes up to a
/// whole history at once, which must still fit beside it (`MemberQueue` caps it at half).
fn hold_bytes(config: &Config) -> usize {
    let messages = config.room_history as usize;
    let history = match messages {
        0 => 0,
        _ => config.room_history_bytes as usize + messages * rooms::QUEUED_OVERHEAD,
    };
    (config.room_queue_bytes as usize).saturating_sub(history)
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

/// The metrics listener: `GET /metrics` and nothing else, until connections close at
/// shutdown (it keeps answering while the server drains).
async fn serve_metrics(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "metrics accept failed");
                    tokio::time::sleep(AcceptFailures::FIRST_PAUSE).await;
                    continue;
                }
            },
            () = shared.shutdown.cancelled() => return,
        };
        let service = {
            let shared = Arc::clone(&shared);
            service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let response =
                    http::metrics_response(request.method(), request.uri().path(), &shared);
                std::future::ready(Ok::<_, std::convert::Infallible>(response))
            })
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(shared.config.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let shutdown = shared.shutdown.clone();
        shared.tracker.spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

/// File descriptors kept free for everything but client connections: standard streams, the
/// listeners, the runtime's own, static files being read, the log writer.
const RESERVED_FDS: u64 = 32;

/// Most TCP connections at once: the open-file limit (as `main` raised it) less the reserve.
fn connection_cap() -> usize {
    let (soft_limit, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    usize::try_from(soft_limit.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX)
}

/// Consecutive accept failures: the pause before the next try (5 ms, doubling up to a
/// second), and one log line per episode rather than one per attempt.
#[derive(Debug, Default)]
struct AcceptFailures {
    count: u32,
}

impl AcceptFailures {
    const FIRST_PAUSE: Duration = Duration::from_millis(5);
    const LONGEST_PAUSE: Duration = Duration::from_secs(1);

    fn failed(&mut self, error: &io::Error) -> Duration {
        if self.count == 0 {
            tracing::warn!(%error, "accept failing; backing off until it works again");
        }
        self.count = self.count.saturating_add(1);
        Self::pause_after(self.count)
    }

    fn succeeded(&mut self) {
        if self.count > 0 {
            tracing::info!(failures = self.count, "accepting again");
        }
        self.count = 0;
    }

    fn pause_after(failures: u32) -> Duration {
        Self::FIRST_PAUSE
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(Self::LONGEST_PAUSE)
    }
}

/// The TLS acceptor (rustls's has no `Debug`).
#[derive(Clone)]
struct Tls(TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// The TLS configuration from PEM files: the certificate chain and its private key.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| StartError::Tls(format!("certificate {}: {error}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| StartError::Tls(format!("key {}: {error}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|error| StartError::Tls(error.to_string()))?;
    // HTTP/1.1 only: WebSockets upgrade over it (RFC 8441's HTTP/2 WebSockets are not served).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// One TCP connection: the TLS handshake when configured, then HTTP/1.1 with upgrades, until
/// it ends or the server shuts down.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, slot: OwnedSemaphorePermit) {
    // Replies are batched by the session itself; Nagle would only add latency.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    match shared.tls.clone() {
        None => serve_http(stream, shared, slot).await,
        // Boxed: a connection task is as large as its largest state, and rustls's would make
        // every plain connection (and, through the allocator, every idle socket) larger.
        Some(Tls(acceptor)) => Box::pin(serve_tls(stream, acceptor, shared, slot)).await,
    }
}

/// The TLS handshake (after checking that the client starts one), then HTTP over TLS.
async fn serve_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    slot: OwnedSemaphorePermit,
) {
    // Bounded like request headers: a client that says nothing is not kept forever.
    let limit = shared.config.header_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout(limit, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => return refuse_plain_http(stream).await,
        Ok(Ok(_) | Err(_)) => return,
        Err(_) => {
            tracing::info!("no TLS handshake within the header timeout; connection closed");
            return;
        }
    }
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve_http(tls, shared, slot).await,
        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
        Err(_) => tracing::info!("TLS handshake too slow; connection closed"),
    }
}

/// Plain HTTP sent to the TLS port: a plain-text 400 that says what to do, instead of a
/// connection that dies without a word.
async fn refuse_plain_http(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BODY: &str = "This port speaks HTTPS only: use an https:// address.\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    tracing::debug!("plain HTTP on the TLS port; 400");
    // Read what the client sent (its request head, mostly) so that closing does not reset
    // the connection under the answer.
    let mut request = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut request)).await;
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// HTTP/1.1 with upgrades over `stream`, until it ends or the server shuts down. Generic over
/// the stream so that a WebSocket session takes back exactly the type it is: a plain TCP
/// session holds no TLS state, and no stream type exists that the session code does not know.
async fn serve_http<S: session::Stream>(
    stream: S,
    shared: Arc<Shared>,
    slot: OwnedSemaphorePermit,
) {
    let slot: http::ConnectionSlot = Arc::new(slot);
    let service = {
        let shared = Arc::clone(&shared);
        service_fn(move |request| {
            http::handle::<S>(request, Arc::clone(&shared), Arc::clone(&slot)).in_current_span()
        })
    };
    let connection = http1::Builder::new()
        // hyper enforces the header timeout only when it has a timer.
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shared.shutdown.cancelled() => {
            // Finish the request in flight, then close; an upgrade still completes and the
            // session sees the shutdown itself.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        if error.is_timeout() {
            tracing::info!("request headers too slow; connection closed");
        } else if error.is_incomplete_message() || error.is_closed() {
            tracing::debug!(%error, "client went away mid-request");
        } else {
            tracing::debug!(%error, "connection error");
        }
    }
}

/// The address to print for people: `0.0.0.0` and `::` are not addresses a browser can open.
pub fn display_url(addr: SocketAddr, tls: bool) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}:{}/", addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_queue_at_its_hold_limit_still_takes_a_whole_history() {
        use crate::outgoing::{Compression, QueuedText};
        use clap::Parser;
        use hyper_tungstenite::tungstenite::Utf8Bytes;
        use rooms::{Hold, MemberQueue, QUEUED_OVERHEAD};
        let config = Config::try_parse_from(["server"]).expect("the defaults");
        let (limit, history) = (
            config.room_queue_bytes as usize,
            config.room_history as usize,
        );
        // A history at its bounds: as many messages as it keeps, as many bytes as it keeps.
        let history_frame = "h".repeat(config.room_history_bytes as usize / history);
        let push_history = |queue: &MemberQueue| {
            (0..history).all(|_| {
                queue.push_room(&QueuedText::shared(Utf8Bytes::from(history_frame.as_str())))
            })
        };
        let small = QueuedText::shared(Utf8Bytes::from("x".repeat(100)));
        // Held up to the hold limit, then a gap read's whole history: nothing overflows.
        for (hold, fits) in [(hold_bytes(&config), true), (limit / 2, false)] {
            let queue = MemberQueue::new(limit, hold, Compression::PLAIN);
            assert!(queue.push_room(&small));
            assert_eq!(queue.hold(), Hold::Held);
            while queue.room_bytes() + 100 + QUEUED_OVERHEAD <= hold {
                assert!(queue.push_room(&small));
            }
            assert_eq!(push_history(&queue), fits, "hold limit {hold} of {limit}");
        }
    }

    #[test]
    fn accept_pauses_double_from_5_ms_up_to_a_second() {
        let pauses: Vec<u128> = (1..=10)
            .map(|n| AcceptFailures::pause_after(n).as_millis())
            .collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(AcceptFailures::pause_after(u32::MAX).as_millis(), 1000);
    }

    /// A WebSocket session runs on whatever stream the connection code is given: here an
    /// in-memory pipe, neither TCP nor TLS, through the `serve_http` the listeners use.
    #[tokio::test]
    async fn a_websocket_session_runs_on_any_stream_the_connection_is_given() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let patience = Duration::from_secs(10);
        let static_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let config =
            <Config as clap::Parser>::try_parse_from(["server", "--static-dir", static_dir])
                .expect("valid flags");
        let shared = Server::new(config).expect("the server starts").shared;
        let slot = Arc::clone(&shared.connections)
            .try_acquire_owned()
            .expect("a free connection slot");
        let (mut client, server_side) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve_http(server_side, Arc::clone(&shared), slot));
        // The handshake and a masked frame in one write: the frame reaches the session through
        // hyper's read buffer.
        let mut request = b"GET /mirror HTTP/1.1\r\nHost: pipe\r\nConnection: Upgrade\r\n\
            Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .to_vec();
        let mask = [1, 2, 3, 4];
        let masked = |payload: &[u8]| -> Vec<u8> {
            payload
                .iter()
                .enumerate()
                .map(|(index, byte)| byte ^ mask[index % 4])
                .collect()
        };
        request.extend([0x81, 0x80 | 5]);
        request.extend(mask);
        request.extend(masked(b"hello"));
        client.write_all(&request).await.expect("write");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(patience, client.read_u8()).await;
            head.push(byte.expect("answered").expect("a response head"));
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
        let mut echoed = [0u8; 7];
        let read = tokio::time::timeout(patience, client.read_exact(&mut echoed)).await;
        read.expect("echoed").expect("a frame");
        assert_eq!(&echoed, b"\x81\x05hello");
        let mut close = vec![0x88, 0x80 | 2];
        close.extend(mask);
        close.extend(masked(&1000u16.to_be_bytes()));
        client.write_all(&close).await.expect("write");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(patience, client.read_to_end(&mut rest)).await;
        read.expect("the session ends").expect("read");
        assert_eq!(rest, [0x88, 2, 0x03, 0xe8], "the close reply, then the end");
    }
}
