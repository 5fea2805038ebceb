//! The `server` binary: parse flags, set up logging, bind, print the URL, run until a signal.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use server::config::{Command, LogFormat};
use server::{Config, Server, display_url};
use tokio::net::TcpListener;
use tracing::Level;
use tracing_log::{AsLog, LogTracer};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(error) => return refuse_flags(&error),
    };
    if let Some(Command::Token(args)) = &config.command {
        return match server::auth::mint(args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(line) => {
                eprintln!("error: {line}");
                ExitCode::from(2)
            }
        };
    }
    let filter = match EnvFilter::try_new(&config.log_filter) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("error: invalid log filter {:?}: {error}", config.log_filter);
            return ExitCode::from(2);
        }
    };
    // Lines go to a thread of their own through a bounded queue: a slow or stuck stderr
    // (a full pipe, a stalled log shipper) drops lines instead of stalling the workers that
    // serve connections. The guard flushes what is queued when `main` returns.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking(std::io::stderr());
    // tungstenite's trace lines hold whole messages, and a rooms message may be an `auth`
    // frame: its token must never reach a log, whatever the filter asks for.
    let no_payloads = filter_fn(|meta| {
        !(*meta.level() == Level::TRACE && meta.target().starts_with("tungstenite"))
    });
    // Crates that log through `log` (tungstenite, rustls) reach the filter only at the levels
    // it can let through: `log`'s own level check (one atomic load) stops the rest. Set here
    // from the filter itself, not left to `init()`, which takes the subscriber's level hint:
    // a per-layer `filter_fn` (it gives none) once made that TRACE, and every frame
    // tungstenite read or wrote made trace and debug calls that went all the way to the filter
    // to be refused: three quarters of the instructions of a message (callgrind).
    let log_level = filter
        .max_level_hint()
        .unwrap_or(LevelFilter::TRACE)
        .as_log();
    // Both filters are global, not the layer's own: what they refuse is off for the whole
    // subscriber, so a span they disable (the connection's, below `info`) is never recorded
    // in the registry nor entered on every poll of its task.
    let logs = tracing_subscriber::fmt::layer().with_writer(writer);
    let filtered = tracing_subscriber::registry()
        .with(filter)
        .with(no_payloads);
    let installed = match config.log_format {
        LogFormat::Text => tracing::subscriber::set_global_default(
            filtered.with(logs.with_ansi(std::io::stderr().is_terminal())),
        ),
        LogFormat::Json => tracing::subscriber::set_global_default(filtered.with(logs.json())),
    };
    installed.expect("the only logger main installs");
    LogTracer::builder()
        .with_max_level(log_level)
        .init()
        .expect("the only `log` logger main installs");

    // Each connection is a file descriptor; the usual soft limit of 1024 would cap the server
    // far below --max-connections. Raise it to the hard limit, as servers commonly do.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < u64::from(config.max_connections) + 64 => tracing::warn!(
            limit,
            max_connections = config.max_connections,
            "the open-file limit is below --max-connections; raise it (ulimit -n)"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }

    let (addr, metrics_addr) = (config.addr, config.metrics_addr);
    let server = match Server::new(config) {
        Ok(server) => server,
        Err(error @ (server::StartError::Auth(_) | server::StartError::Flags(_))) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match listen(addr) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on {addr}: {error} (choose another with --addr)");
            return ExitCode::FAILURE;
        }
    };
    let local_addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            eprintln!("error: cannot read the listening address: {error}");
            return ExitCode::FAILURE;
        }
    };
    let metrics_listener = match metrics_addr {
        Some(addr) => match listen(addr).and_then(|listener| {
            let local = listener.local_addr()?;
            Ok((listener, local))
        }) {
            Ok((listener, local)) => Some((listener, local)),
            Err(error) => {
                eprintln!(
                    "error: cannot listen on {addr} for metrics: {error} (choose another with --metrics-addr)"
                );
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let signals = match Signals::watch() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: cannot watch for Ctrl-C and SIGTERM: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some((_, metrics_local)) = &metrics_listener {
        println!("Metrics on {}metrics", display_url(*metrics_local, false));
    }
    // Scripts and tests read this line to learn the port when `--addr` ends in `:0`; it comes
    // last, once everything is ready.
    println!("Listening on {}", display_url(local_addr, server.is_tls()));

    let metrics_listener = metrics_listener.map(|(listener, _)| listener);
    server
        .run(listener, metrics_listener, signals.shutdown())
        .await;
    ExitCode::SUCCESS
}

/// A bad flag or environment variable: one line on stderr and exit 2, so that a supervisor's
/// log shows the reason on the line it keeps (clap's own report adds a usage block and a
/// hint over several lines). The line is clap's message up to its first blank line, joined:
/// `error: invalid value '1e19' for '--ping-interval <PING_INTERVAL>': ...`, or the flags
/// that are missing. `--help` and `--version` print as clap prints them.
fn refuse_flags(error: &clap::Error) -> ExitCode {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        error.exit();
    }
    let message = error.to_string();
    let line = message
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("{line}");
    ExitCode::from(2)
}

/// Ctrl-C and SIGTERM, watched from before the URL is printed: a script that sends SIGTERM
/// as soon as it has read the URL gets a graceful shutdown, not a process killed by the
/// default action (tokio installs a handler only when a stream is created).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn watch() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Resolves at the next Ctrl-C or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }

    /// Resolves at the first signal; a second one exits at once.
    async fn shutdown(mut self) {
        self.next().await;
        tracing::info!("signal received; shutting down (send it again to exit at once)");
        tokio::spawn(async move {
            self.next().await;
            eprintln!("second signal: exiting now");
            std::process::exit(130);
        });
    }
}

/// Connections the kernel keeps waiting for `accept`: a reconnect storm (thousands of pages
/// back at once after an instance died) must not overflow it. tokio's `TcpListener::bind`
/// asks for 128, which a storm of 5,000 overflowed (dropped connections wait about a second
/// for the retransmit); the kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with a backlog of [`LISTEN_BACKLOG`] (address reuse as tokio's `bind`
/// sets it).
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
