//! Command-line flags and environment variables: every setting the server has, with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// A real-time WebSocket server with a Rust/wasm web client.
#[derive(Debug, Clone, Parser)]
#[command(name = "server", version, about)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port (the real one is printed).
    #[arg(long, env = "SERVER_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// PEM certificate chain: with `--tls-key`, the server speaks HTTPS and `wss:` (rustls)
    /// on `--addr` instead of plain HTTP.
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve `GET /metrics` (Prometheus text format) on this address, a listener of its own;
    /// off unless given. Port 0 picks a free port (printed as `Metrics on http://…/metrics`).
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Directory of static files served at `/` (index.html, the wasm client in pkg/).
    #[arg(long, env = "STATIC_DIR", default_value = "static")]
    pub static_dir: PathBuf,

    /// Log filter, in `tracing` syntax: `info`, `debug`, `server=debug,hyper=info`.
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    /// Log line format: `text` for people, `json` (one object a line) for log shippers.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Largest WebSocket message (and frame) accepted, in bytes; larger ones close with 1009.
    #[arg(long, env = "MAX_MESSAGE_SIZE", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_message_size: u32,

    /// Accept permessage-deflate (RFC 7692) when a client offers it, as every browser does:
    /// messages of 128 bytes or more are sent compressed. Off by default. No context takeover
    /// either way, so an idle connection costs no compression memory.
    #[arg(long, env = "COMPRESSION", value_parser = clap::builder::BoolishValueParser::new())]
    pub compression: bool,

    /// Most WebSocket sessions open at once; upgrades beyond it get 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Seconds between server pings; a client that has not answered by the next ping is closed.
    #[arg(long, env = "PING_INTERVAL", default_value = "30", value_parser = parse_seconds)]
    pub ping_interval: Duration,

    /// Seconds a client may take to send its request headers (slowloris guard).
    #[arg(long, env = "HEADER_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    pub header_timeout: Duration,

    /// Seconds a batch of replies may wait for a client that does not read before the
    /// connection is closed (1008).
    #[arg(long, env = "SEND_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    pub send_timeout: Duration,

    /// Browser origins allowed to open WebSockets besides the server's own host
    /// (repeatable, or comma-separated in the env var); `*` allows any.
    #[arg(
        long = "allowed-origin",
        env = "ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Extra sources the page may connect to, added to its Content-Security-Policy
    /// `connect-src` (repeatable, or comma-separated in the env var): for a page pointed at
    /// another server with `?ws=`, e.g. `ws://127.0.0.1:9000`.
    #[arg(
        long = "connect-src",
        env = "CONNECT_SRC",
        value_delimiter = ',',
        value_parser = parse_csp_source
    )]
    pub connect_src: Vec<String>,

    /// Seconds between Ctrl-C or SIGTERM and closing: `/readyz` answers 503 while everything
    /// else still works, so a load balancer stops sending new clients before the 1001s go out.
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = "0", value_parser = parse_seconds_or_zero)]
    pub shutdown_delay: Duration,

    /// Seconds to wait for open connections to close after Ctrl-C or SIGTERM.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10", value_parser = parse_seconds)]
    pub shutdown_grace: Duration,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Parses a number of seconds such as `30` or `0.25`.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("`{text}` must be a positive number of seconds"))
}

/// Parses a number of seconds that may be zero.
fn parse_seconds_or_zero(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(0.0) => Ok(Duration::ZERO),
        _ => parse_seconds(text),
    }
}

/// One CSP source expression: no white space, no `;` or `,` (which would start another
/// directive or policy), no quotes, printable ASCII.
fn parse_csp_source(text: &str) -> Result<String, String> {
    let fits = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && !matches!(byte, b';' | b',' | b'\''));
    if fits {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not one CSP source (like ws://host:port or https://host)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_fractions_and_reject_nonsense() {
        assert_eq!(parse_seconds("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
        assert!(parse_seconds("inf").is_err());
    }

    #[test]
    fn connect_sources_cannot_smuggle_directives() {
        assert_eq!(
            parse_csp_source("ws://127.0.0.1:9000"),
            Ok("ws://127.0.0.1:9000".into())
        );
        for bad in ["", "a b", "ws://x; script-src *", "'unsafe-inline'", "a\nb"] {
            assert!(parse_csp_source(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn origins_are_repeatable_and_comma_separated() {
        let config = Config::parse_from([
            "server",
            "--allowed-origin",
            "https://a.example",
            "--allowed-origin=https://b.example,https://c.example",
        ]);
        assert_eq!(
            config.allowed_origins,
            [
                "https://a.example",
                "https://b.example",
                "https://c.example"
            ]
        );
    }
}
