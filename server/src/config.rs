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

    /// Largest WebSocket message (and frame) accepted, in bytes, at most 268435456 (256 MiB);
    /// larger ones close with 1009.
    #[arg(long, env = "MAX_MESSAGE_SIZE", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_MESSAGE_SIZE)))]
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

    /// Seconds between server pings, at most 86400 (a day); a client that has not answered by
    /// the next ping is closed.
    #[arg(long, env = "PING_INTERVAL", default_value = "30",
          value_parser = seconds_at_most(MAX_INTERVAL))]
    pub ping_interval: Duration,

    /// Seconds a client may take to send its request headers (slowloris guard), at most 3600
    /// (an hour).
    #[arg(long, env = "HEADER_TIMEOUT", default_value = "10",
          value_parser = seconds_at_most(MAX_TIMEOUT))]
    pub header_timeout: Duration,

    /// Seconds a batch of replies may wait for a client that does not read before the
    /// connection is closed (1008), at most 3600 (an hour).
    #[arg(long, env = "SEND_TIMEOUT", default_value = "10",
          value_parser = seconds_at_most(MAX_TIMEOUT))]
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

    /// Seconds between Ctrl-C or SIGTERM and closing, at most 3600 (an hour): `/readyz`
    /// answers 503 while everything else still works, so a load balancer stops sending new
    /// clients before the 1001s go out.
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = "0",
          value_parser = seconds_or_zero_at_most(MAX_TIMEOUT))]
    pub shutdown_delay: Duration,

    /// Seconds to wait for open connections to close after Ctrl-C or SIGTERM, at most 3600
    /// (an hour).
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10",
          value_parser = seconds_at_most(MAX_TIMEOUT))]
    pub shutdown_grace: Duration,

    /// Rooms (`/rooms`): most messages a room's history keeps for clients that come back.
    #[arg(long, env = "ROOM_HISTORY", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub room_history: u32,

    /// Rooms: most bytes a room's history keeps (its messages' frames, as stored: a text of
    /// control characters takes six times its length), at most 64 MiB.
    #[arg(long, env = "ROOM_HISTORY_BYTES", default_value_t = 32 * 1024,
          value_parser = clap::value_parser!(u32).range(0..=64 * 1024 * 1024))]
    pub room_history_bytes: u32,

    /// Rooms: seconds a message stays in history, at most 86400 (a day).
    #[arg(long, env = "ROOM_HISTORY_TTL", default_value = "300",
          value_parser = seconds_at_most(MAX_INTERVAL))]
    pub room_history_ttl: Duration,

    /// Rooms: most rooms the server holds at once. Rooms kept only for their history make
    /// way for a room someone joins (the one longest without members goes first); a join
    /// past it, with every room occupied, gets `unavailable`.
    #[arg(long, env = "MAX_ROOMS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_rooms: u32,

    /// Rooms: most rooms one connection may be in (`too_many_rooms` past it).
    #[arg(long, env = "MAX_ROOMS_PER_CONNECTION", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub max_rooms_per_connection: u32,

    /// Rooms: publishes per second one connection may make on average (`rate_limited` past
    /// it), with bursts of `--publish-burst`.
    #[arg(long, env = "PUBLISH_RATE", default_value_t = room_protocol::bounds::PUBLISH_RATE,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub publish_rate: u32,

    /// Rooms: publishes one connection may make at once before `--publish-rate` applies.
    #[arg(long, env = "PUBLISH_BURST", default_value_t = room_protocol::bounds::PUBLISH_BURST,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub publish_burst: u32,

    /// Rooms: seconds a message id is remembered, so a publish sent again after a lost ack
    /// is acknowledged with its first offset instead of being broadcast twice; at most 86400.
    #[arg(long, env = "DEDUP_WINDOW", default_value = "300",
          value_parser = seconds_at_most(MAX_INTERVAL))]
    pub dedup_window: Duration,

    /// Rooms without Redis: most message ids remembered at once for dedup, across all rooms
    /// (a steady 333 publishes/s fill the default window); past it the oldest are forgotten
    /// early, with a warning and `chat_rooms_dedup_forgotten_total`.
    #[arg(long, env = "DEDUP_MAX_IDS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub dedup_max_ids: u32,

    /// Rooms: past this many users in a room, presence frames carry the count alone
    /// (`"capped": true`); back under it, everyone again.
    #[arg(long, env = "PRESENCE_MAX_MEMBERS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub presence_max_members: u32,

    /// Rooms across instances (Redis): seconds another instance's users stay in a room's
    /// presence unless it says so again (every third of this); the members of an instance
    /// that died leave every presence within it. From 3 to 3600.
    #[arg(long, env = "PRESENCE_TTL", default_value = "15",
          value_parser = presence_ttl)]
    pub presence_ttl: Duration,

    /// Rooms: joins and leaves per second one connection may make on average
    /// (`rate_limited` past it), with bursts of `--join-burst`.
    #[arg(long, env = "JOIN_RATE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub join_rate: u32,

    /// Rooms: joins and leaves one connection may make at once before `--join-rate` applies.
    #[arg(long, env = "JOIN_BURST", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub join_burst: u32,

    /// Rooms: bytes of room messages a connection may have waiting to be written before it
    /// is closed as too slow (1008), 64 bytes counted per message beside its text; from 16 KiB
    /// to 1 GiB. Keep it well above `--room-history-bytes`: a gap read after a pub/sub drop
    /// queues up to a whole history at once.
    #[arg(long, env = "ROOM_QUEUE_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(16 * 1024..=1024 * 1024 * 1024))]
    pub room_queue_bytes: u32,

    /// Rooms: milliseconds a busy member's room messages may wait, to leave together in one
    /// write (at most 1000; 0 writes each as it comes). The first after a quiet spell leaves at
    /// once; what follows within the interval leaves at its end, so a quiet room adds no
    /// latency and a busy one at most this. 16 ms is a display frame at 60 Hz: a page cannot
    /// show messages faster than that anyway.
    #[arg(long, env = "ROOM_FLUSH_INTERVAL", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub room_flush_interval: u64,

    /// Rooms: longest `text` of a publish in UTF-8 bytes (`too_long` past it); at most 1 MiB.
    /// `--max-message-size` must hold 6 times it and 2 KiB (the publish written as JSON, where
    /// a control character takes 6 bytes): given here, it is checked; by default 4096, lowered
    /// to fit a smaller `--max-message-size`.
    #[arg(long, env = "MAX_TEXT_BYTES",
          value_parser = clap::value_parser!(u32).range(1..=1024 * 1024))]
    pub max_text_bytes: Option<u32>,

    /// Rooms across instances: every instance given the same Redis shares its rooms
    /// (`redis://HOST:PORT/DB` or `unix:///path/to/redis.sock`). Without it, rooms live in
    /// this process alone.
    #[arg(long, env = "REDIS_URL", value_parser = redis_url)]
    pub redis_url: Option<String>,

    /// Rooms: who may join is decided by signed tokens (JWT) checked with this key: a file
    /// holding an HMAC secret (at least 32 bytes; HS256) or an Ed25519 public key in PEM
    /// (EdDSA). Give it twice while keys rotate (env: comma-separated). Without it, rooms are
    /// open: anyone may join any room under any name.
    #[arg(long = "auth-key", env = "AUTH_KEY", value_delimiter = ',')]
    pub auth_keys: Vec<PathBuf>,

    /// Rooms with tokens: seconds a new connection has to send its `auth` frame (else 4401).
    #[arg(long, env = "AUTH_TIMEOUT", default_value = "10",
          value_parser = seconds_at_most(MAX_TIMEOUT))]
    pub auth_timeout: Duration,

    /// Rooms with tokens: most connections one user (a token's `sub`) may hold on this
    /// instance; the next is closed with 4429.
    #[arg(long, env = "MAX_CONNECTIONS_PER_USER", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_user: u32,

    /// For trying tokens out only: the server answers `POST /auth/token` itself, with a
    /// token for whatever name the form gives (anyone can be anyone). Signs with the first
    /// HMAC `--auth-key`, or, without one, with a secret drawn at start.
    #[arg(long, env = "DEV_SIGN_IN", value_parser = clap::builder::BoolishValueParser::new())]
    pub dev_sign_in: bool,

    /// What `--dev-sign-in` tokens grant: `ROOM=read|write`, prefixes ending in `*`,
    /// comma-separated.
    #[arg(long, env = "DEV_ROOMS", default_value = "*=write", value_delimiter = ',',
          value_parser = grant)]
    pub dev_rooms: Vec<(String, crate::auth::Access)>,

    /// How long `--dev-sign-in` tokens live: seconds, or with a unit (`90s`, `10m`, `1h`);
    /// from 2 s, to watch pages refresh theirs (at about 80% of it), to a day.
    #[arg(long, env = "DEV_TOKEN_TTL", default_value = "1h", value_parser = dev_token_life)]
    pub dev_token_ttl: Duration,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the binary can do besides serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print a signed token, for operators and tests: HS256 with an HMAC secret, EdDSA with
    /// an Ed25519 private key in PEM.
    Token(TokenArgs),
}

/// `server token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The key to sign with: an HMAC secret file, or an Ed25519 private key in PEM.
    #[arg(long = "auth-key")]
    pub auth_key: PathBuf,
    /// The user id (`sub`).
    #[arg(long)]
    pub sub: String,
    /// The display name (`name`); others see `sub` without it.
    #[arg(long)]
    pub name: Option<String>,
    /// A grant, `ROOM=read` or `ROOM=write` (prefixes end in `*`); repeat for more.
    #[arg(long = "room", value_parser = grant, required = true)]
    pub rooms: Vec<(String, crate::auth::Access)>,
    /// How long the token lives: seconds, or with a unit (`90s`, `10m`, `1h`, `7d`).
    #[arg(long, default_value = "1h", value_parser = lifetime)]
    pub ttl: Duration,
}

/// A [`lifetime`] from 2 s (a page refreshes a token at 80% of its life, and not sooner than
/// a second after it got it) to a day.
fn dev_token_life(text: &str) -> Result<Duration, String> {
    let life = lifetime(text)?;
    if !(Duration::from_secs(2)..=Duration::from_secs(24 * 60 * 60)).contains(&life) {
        return Err("a dev sign-in token lives from 2 s to 1 day".to_owned());
    }
    Ok(life)
}

fn presence_ttl(text: &str) -> Result<Duration, String> {
    let ttl = seconds_at_most(Duration::from_secs(3600))(text)?;
    if ttl < Duration::from_secs(3) {
        return Err(
            "the presence TTL is 3 s at least: instances say theirs every third of it".to_owned(),
        );
    }
    Ok(ttl)
}

fn grant(text: &str) -> Result<(String, crate::auth::Access), String> {
    crate::auth::Grants::parse_flag(text)
}

/// `90`, `90s`, `10m`, `1h` or `7d`, at most a year. Four units: a crate would be more to read
/// than this.
fn lifetime(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return Err(format!("`{text}`: seconds, or a number and s, m, h or d")),
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(scale))
        .filter(|seconds| (1..=366 * 24 * 60 * 60).contains(seconds))
        .ok_or_else(|| format!("`{text}`: from 1 s to a year"))?;
    Ok(Duration::from_secs(seconds))
}

/// A URL the Redis client can connect to; checked at start, so a typo is one line and exit 2
/// rather than an instance that is never ready.
fn redis_url(text: &str) -> Result<String, String> {
    redis::Client::open(text)
        .map(|_| text.to_owned())
        .map_err(|error| format!("not a Redis URL ({error})"))
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Longest `--ping-interval`: a day. A ping a day still finds a dead peer eventually; far
/// longer ones once overflowed the clock arithmetic of every session (`1e19` made each one
/// panic while the server started as if fine).
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Longest timeout or shutdown wait (`--header-timeout`, `--send-timeout`, `--shutdown-delay`,
/// `--shutdown-grace`): an hour. Each bounds how long the server waits for someone; longer
/// is a typo rather than a policy, and far longer (`--header-timeout 1e19`) overflowed hyper's
/// deadline and reset every connection.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Largest `--max-message-size`: 256 MiB. tungstenite reserves a frame's whole claimed
/// length as soon as it has read the header, so this is what one 14-byte header can make a
/// session ask the allocator for; and the write-buffer cap `Server::new` derives from it,
/// `WRITE_BUFFER_SIZE + 11 * (size + 14)`, stays within 32 bits (the assertion below), where
/// the largest `u32` would overflow it and make every session panic.
pub const MAX_MESSAGE_SIZE: u32 = 256 * 1024 * 1024;

const _: () = assert!(
    crate::WRITE_BUFFER_SIZE as u64 + 11 * (MAX_MESSAGE_SIZE as u64 + 14) <= u32::MAX as u64
);

/// A parser for a positive number of seconds, such as `30` or `0.25`, up to `max`.
fn seconds_at_most(max: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |text| parse_seconds(text, max)
}

/// A parser for a number of seconds that may be zero, up to `max`.
fn seconds_or_zero_at_most(max: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |text| match text.trim().parse::<f64>() {
        Ok(0.0) => Ok(Duration::ZERO),
        _ => parse_seconds(text, max),
    }
}

/// Parses a positive number of seconds, such as `30` or `0.25`, up to `max`.
fn parse_seconds(text: &str, max: Duration) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if seconds > max.as_secs_f64() {
        return Err(format!(
            "`{text}` is more than {} seconds, the most allowed",
            max.as_secs()
        ));
    }
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("`{text}` must be a positive number of seconds"))
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
        let parse = seconds_at_most(MAX_TIMEOUT);
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse(" 2 "), Ok(Duration::from_secs(2)));
        for bad in ["0", "-0", "-1", "soon", "", "inf", "-inf", "NaN", "1e-12"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let parse_or_zero = seconds_or_zero_at_most(MAX_TIMEOUT);
        assert_eq!(parse_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(parse_or_zero("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_or_zero("-1").is_err());
    }

    type SecondsParser = dyn Fn(&str) -> Result<Duration, String>;

    #[test]
    fn seconds_stop_at_their_maximum() {
        for (max, at_max, past_max) in [
            (MAX_INTERVAL, "86400", "86400.001"),
            (MAX_TIMEOUT, "3600", "3600.001"),
        ] {
            let parsers: [&SecondsParser; 2] =
                [&seconds_at_most(max), &seconds_or_zero_at_most(max)];
            for parse in parsers {
                assert_eq!(parse(at_max), Ok(max));
                for past in [past_max, "1e19", "1e300", "inf"] {
                    let error = parse(past).expect_err(past);
                    assert!(
                        error.contains(&format!("more than {} seconds", max.as_secs())),
                        "{past}: {error}"
                    );
                }
            }
        }
    }

    /// Every duration flag and its largest value, as its help text states it.
    const DURATION_FLAGS: [(&str, Duration); 5] = [
        ("--ping-interval", MAX_INTERVAL),
        ("--header-timeout", MAX_TIMEOUT),
        ("--send-timeout", MAX_TIMEOUT),
        ("--shutdown-delay", MAX_TIMEOUT),
        ("--shutdown-grace", MAX_TIMEOUT),
    ];

    #[test]
    fn every_duration_flag_takes_its_maximum_and_refuses_more() {
        for (flag, max) in DURATION_FLAGS {
            let seconds = max.as_secs();
            let at_max = Config::try_parse_from(["server", flag, &seconds.to_string()])
                .unwrap_or_else(|error| panic!("{flag} {seconds}: {error}"));
            let parsed = match flag {
                "--ping-interval" => at_max.ping_interval,
                "--header-timeout" => at_max.header_timeout,
                "--send-timeout" => at_max.send_timeout,
                "--shutdown-delay" => at_max.shutdown_delay,
                _ => at_max.shutdown_grace,
            };
            assert_eq!(parsed, max, "{flag}");
            for past in [(seconds + 1).to_string(), "1e19".to_owned()] {
                let error = Config::try_parse_from(["server", flag, &past])
                    .expect_err("past the maximum")
                    .to_string();
                assert!(error.contains(flag), "{flag} {past}: {error}");
            }
        }
    }

    #[test]
    fn the_help_states_every_maximum() {
        use clap::CommandFactory;
        let command = Config::command();
        let help = |id: &str| {
            command
                .get_arguments()
                .find(|argument| argument.get_id() == id)
                .and_then(|argument| argument.get_long_help().or(argument.get_help()))
                .map(ToString::to_string)
                .unwrap_or_else(|| panic!("help for {id}"))
        };
        for (flag, max) in DURATION_FLAGS {
            let id = flag.trim_start_matches("--").replace('-', "_");
            let help = help(&id);
            assert!(
                help.contains(&format!("at most {}", max.as_secs())),
                "{flag}: {help}"
            );
        }
        let help = help("max_message_size");
        assert!(
            help.contains(&format!("at most {MAX_MESSAGE_SIZE}")),
            "{help}"
        );
    }

    #[test]
    fn message_size_stops_at_its_maximum() {
        let at_max = MAX_MESSAGE_SIZE.to_string();
        let config = Config::try_parse_from(["server", "--max-message-size", &at_max])
            .expect("the maximum is allowed");
        assert_eq!(config.max_message_size, MAX_MESSAGE_SIZE);
        for past in [(MAX_MESSAGE_SIZE + 1).to_string(), u32::MAX.to_string()] {
            let error = Config::try_parse_from(["server", "--max-message-size", &past])
                .expect_err("past the maximum")
                .to_string();
            assert!(error.contains("--max-message-size"), "{past}: {error}");
        }
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

    #[test]
    fn dev_tokens_live_from_two_seconds_to_a_day() {
        let parse = |ttl: &str| Config::try_parse_from(["server", "--dev-token-ttl", ttl]);
        assert_eq!(
            Config::parse_from(["server"]).dev_token_ttl,
            Duration::from_secs(3600)
        );
        assert_eq!(
            parse("2").map(|config| config.dev_token_ttl).ok(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse("1d").map(|config| config.dev_token_ttl).ok(),
            Some(Duration::from_secs(86_400))
        );
        for bad in ["1", "0", "25h", "2x", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
