//! HTTP requests: routing, the WebSocket handshake checks, and plain answers.
//!
//! | route | answer |
//! |---|---|
//! | `GET /subscriptions`, `/echo`, `/mirror` | WebSocket upgrade (or 400/403/405/426/503) |
//! | `GET /rooms?name=NAME` | WebSocket upgrade to the rooms protocol (400 for a bad `NAME`) |
//! | `GET /greet/{name}` | `Greetings {name}!` |
//! | `GET /auth/config` | `{"tokens":B,"devSignIn":B}`: whether `/rooms` wants an `auth` frame, and whether `POST /auth/token` signs here |
//! | `POST /auth/token` | with `--dev-sign-in`: form field `name` → `{"token":JWT}` (400 for a bad name, 403 from another origin); else 404 |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 while it accepts work; 503 from the moment shutdown starts, and while the rooms' Redis is unreachable |
//! | `GET`/`HEAD` anything else | a static file, or 404 |

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_tungstenite::tungstenite::handshake::derive_accept_key;
use percent_encoding::percent_decode_str;

use crate::Shared;
use crate::deflate::{self, Agreement};
use crate::outgoing::Compression;
use crate::rooms::Member;
use crate::session::{self, Talk};
use room_protocol::names;
use rules::App;

/// The routes that upgrade to a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// One of the rules apps.
    App(App),
    /// `/rooms`: the rooms protocol.
    Rooms,
}

impl Endpoint {
    const ROOMS_PATH: &'static str = "/rooms";

    fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            Endpoint::ROOMS_PATH => Some(Endpoint::Rooms),
            _ => App::from_path(path).map(Endpoint::App),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::App(app) => app.path(),
            Endpoint::Rooms => Endpoint::ROOMS_PATH,
        }
    }
}

/// A TCP connection's place under the connection cap, shared by the connection task and a
/// WebSocket session started from it: the place frees when both have ended.
pub(crate) type ConnectionSlot = Arc<tokio::sync::OwnedSemaphorePermit>;

/// The body of every response: files stream, everything else is one buffer.
pub(crate) type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Answers one request. Never fails: every problem is an HTTP status. `S` is the stream the
/// connection runs on, which a WebSocket session takes back from hyper.
pub(crate) async fn handle<S: session::Stream>(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    slot: ConnectionSlot,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path();
    let response = if let Some(endpoint) = Endpoint::from_path(path) {
        // The handshake checks Host itself (stricter: one, not empty), and counts its
        // refusals.
        upgrade::<S>(request, endpoint, &shared, slot)
    } else if let Some(problem) = target_problem(&request) {
        text(StatusCode::BAD_REQUEST, problem)
    } else if let Some(probe) = Probe::from_path(path) {
        probe.answer(request.method(), &shared)
    } else if path == "/auth/config" {
        auth_config(request.method(), &shared)
    } else if path == "/auth/token" {
        dev_token(request, &shared).await
    } else if let Some(encoded_name) = path.strip_prefix("/greet/") {
        greet(request.method(), encoded_name)
    } else if matches!(*request.method(), Method::GET | Method::HEAD) {
        shared.static_files.serve(request).await
    } else {
        method_not_allowed("GET, HEAD")
    };
    let mut response = response;
    shared.security_headers.apply(response.headers_mut());
    shared.metrics.responded(response.status());
    Ok(response)
}

/// What RFC 9112 says a server must answer 400 to, which hyper lets through: a target in
/// authority form (`example.com:80`, for CONNECT only, section 3.2.3; `ServeDir` answered it
/// 500), and in HTTP/1.1 no `Host`, several, or one that is not a host and port (section 3.2).
fn target_problem<B>(request: &Request<B>) -> Option<&'static str> {
    let uri = request.uri();
    if uri.scheme().is_none() && uri.authority().is_some() {
        return Some("A request target is a path, such as /index.html.\n");
    }
    // Any request with two Hosts or an invalid one; only HTTP/1.0 may have none.
    match Field::of(request.headers(), header::HOST) {
        Field::Once(host) if host.is_empty() || is_host(host.as_bytes()) => None,
        Field::Absent if request.version() < Version::HTTP_11 => None,
        Field::Once(_) | Field::Absent | Field::Repeated => Some(
            "A request needs exactly one Host header (HTTP/1.0 may have none), a host and port.\n",
        ),
    }
}

/// Whether a `Host` value is a host and optional port (a URI authority without user info).
fn is_host(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok_and(|authority| !authority.as_str().contains('@'))
}

/// Headers every response carries: a Content-Security-Policy that allows exactly what the
/// page uses (its own scripts, styles and images, wasm compilation, its own WebSocket and
/// the `--connect-src` sources; no inline script, no plugins, no framing, no form posts),
/// `nosniff`, and no `Referer` sent from the page. Built once at start.
#[derive(Debug, Clone)]
pub(crate) struct SecurityHeaders {
    content_security_policy: HeaderValue,
}

impl SecurityHeaders {
    /// `connect_src` are extra `connect-src` sources, checked to be single sources by the
    /// configuration parser.
    pub(crate) fn new(
        connect_src: &[String],
    ) -> Result<SecurityHeaders, header::InvalidHeaderValue> {
        let connect = std::iter::once("'self'")
            .chain(connect_src.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let policy = format!(
            "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
             img-src 'self'; connect-src {connect}; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'"
        );
        Ok(SecurityHeaders {
            content_security_policy: HeaderValue::from_str(&policy)?,
        })
    }

    fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            self.content_security_policy.clone(),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
}

/// The metrics listener's answer: `GET /metrics` in the Prometheus text format, 404 else.
pub(crate) fn metrics_response(method: &Method, path: &str, shared: &Shared) -> Response<Body> {
    match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let mut response = Response::new(full_body(shared.metrics.render().into()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        _ => not_found(),
    }
}

/// The health checks a supervisor or load balancer polls. Cheap, and never logged.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// `/healthz`: the process runs and answers.
    Health,
    /// `/readyz`: the server takes new work; 503 from the moment shutdown starts.
    Ready,
}

impl Probe {
    fn from_path(path: &str) -> Option<Probe> {
        match path {
            "/healthz" => Some(Probe::Health),
            "/readyz" => Some(Probe::Ready),
            _ => None,
        }
    }

    fn answer(self, method: &Method, shared: &Shared) -> Response<Body> {
        if !matches!(*method, Method::GET | Method::HEAD) {
            return method_not_allowed("GET, HEAD");
        }
        let mut response = match self {
            Probe::Health => text(StatusCode::OK, "ok\n"),
            Probe::Ready if shared.draining.is_cancelled() => {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            }
            // An instance whose Redis is out of reach cannot serve rooms, the product's shared
            // state: it leaves the balancer whole (pages and apps too), so a page never lands
            // where its room cannot follow it. The body says why, for whoever reads it.
            Probe::Ready => match shared.rooms.redis_reachable() {
                None => text(StatusCode::OK, "ready\n"),
                Some(true) => text(StatusCode::OK, "ready\nredis: reachable\n"),
                Some(false) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "rooms engine unreachable\nredis: unreachable\n",
                ),
            },
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// `GET /greet/{name}`: the name is percent-decoded; it must be one non-empty path segment.
fn greet(method: &Method, encoded_name: &str) -> Response<Body> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return method_not_allowed("GET, HEAD");
    }
    if encoded_name.is_empty() || encoded_name.contains('/') {
        return not_found();
    }
    match percent_decode_str(encoded_name).decode_utf8() {
        Ok(name) => text(StatusCode::OK, format!("Greetings {name}!")),
        Err(_) => text(
            StatusCode::BAD_REQUEST,
            "The name is not valid UTF-8 once decoded.\n",
        ),
    }
}

/// Checks the handshake, then answers `101` and starts the session once hyper hands over the
/// connection (of type `S`).
fn upgrade<S: session::Stream>(
    mut request: Request<Incoming>,
    endpoint: Endpoint,
    shared: &Arc<Shared>,
    slot: ConnectionSlot,
) -> Response<Body> {
    let path = endpoint.path();
    let accept = match check_handshake(&request, &shared.config.allowed_origins) {
        Ok(key) => derive_accept_key(key),
        Err(refusal) => {
            let response = refusal.into_response(path);
            shared.metrics.handshake_refused(response.status());
            return response;
        }
    };
    let compression = if shared.config.compression {
        deflate::negotiate(request.headers().get_all(header::SEC_WEBSOCKET_EXTENSIONS))
    } else {
        None
    };
    let talk = match endpoint {
        Endpoint::App(app) => Talk::App(app),
        Endpoint::Rooms if shared.auth.is_some() => {
            if has_name(request.uri().query()) {
                let response = text(
                    StatusCode::BAD_REQUEST,
                    "This server names people from their tokens: open /rooms without ?name= \
                     and send {\"type\":\"auth\",\"token\":...} first.\n",
                );
                shared.metrics.handshake_refused(response.status());
                return response;
            }
            Talk::Room(Box::new(Member::new(
                None,
                shared.auth.clone(),
                Arc::clone(&shared.rooms),
                shared.member_limits,
                Compression::of(compression),
            )))
        }
        Endpoint::Rooms => match display_name(request.uri().query()) {
            Some(name) => Talk::Room(Box::new(Member::new(
                Some(name),
                None,
                Arc::clone(&shared.rooms),
                shared.member_limits,
                Compression::of(compression),
            ))),
            None => {
                let response = text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "/rooms needs ?name=NAME: a display name of 1 to {} characters, {}.\n",
                        names::MAX_DISPLAY_NAME,
                        names::DISPLAY_NAME_RULES
                    ),
                );
                shared.metrics.handshake_refused(response.status());
                return response;
            }
        },
    };
    // Checked last, so that a bad request never holds a permit.
    let Ok(permit) = shared.sessions.clone().try_acquire_owned() else {
        tracing::warn!(
            limit = shared.config.max_connections,
            "connection limit reached; 503"
        );
        let mut response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many WebSocket connections; try again later.\n",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        shared.metrics.handshake_refused(response.status());
        return response;
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tracing::debug!(path, "upgrading to WebSocket");
    let config = shared.websocket_config;
    let context = session::SessionContext {
        talk,
        timing: shared.session_timing(),
        shutdown: shared.shutdown.clone(),
        metrics: shared.metrics.session(path, compression.is_some()),
        compression,
    };
    let session = async move {
        // Held for the life of the session: the session slot frees when the task ends, and
        // the TCP connection's slot too (hyper's connection task ends at the upgrade).
        let _permits = (permit, slot);
        match on_upgrade.await {
            Ok(upgraded) => session::run_upgraded::<S>(upgraded, config, context).await,
            Err(error) => tracing::debug!(%error, "upgrade did not complete"),
        }
        tracing::debug!("session ended");
    };
    shared
        .tracker
        .spawn(tracing::Instrument::in_current_span(session));
    switching_protocols(accept, compression)
}

/// The `101` that completes the handshake (RFC 6455, section 4.2.2).
fn switching_protocols(accept: String, compression: Option<Agreement>) -> Response<Body> {
    let mut response = Response::new(full_body(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let accept = HeaderValue::try_from(accept).expect("base64 is a valid header value");
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(agreement) = compression {
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, agreement.response());
    }
    response
}

/// Why the server refuses a WebSocket handshake; each reason has its own status and line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Not `GET`, `HEAD` included (405 with `Allow: GET`): a `HEAD` never upgrades.
    Method,
    /// A plain HTTP request on a WebSocket route (426 with `Upgrade: websocket`).
    NotUpgrade,
    /// An upgrade asked for in HTTP/1.0 (400). RFC 6455 (4.2.1, item 1) asks for HTTP/1.1 or
    /// higher. Not 426 with `Upgrade: websocket`: that asks for the very upgrade the client
    /// just tried; what it lacks is HTTP/1.1, and 400 is what 4.2.1 says a handshake it does
    /// not satisfy gets.
    HttpVersion,
    /// No `Host`, an empty one, or several (400): RFC 6455 4.2.1 item 2, and RFC 9112 3.2
    /// for any HTTP/1.1 request. The origin check compares against it.
    Host,
    /// A header RFC 6455 (11.3.1, 11.3.5) allows once in a request, sent more than once (400).
    Repeated(&'static str),
    /// `Sec-WebSocket-Version` other than 13 (426 with `Sec-WebSocket-Version: 13`).
    Version,
    /// No `Sec-WebSocket-Key` (400).
    MissingKey,
    /// A `Sec-WebSocket-Key` that is not the base64 of 16 bytes (400; RFC 6455 4.2.1 item 5).
    MalformedKey,
    /// A browser page from another site (403).
    Origin,
}

impl Refusal {
    fn into_response(self, path: &'static str) -> Response<Body> {
        match self {
            Refusal::Method => {
                let mut response = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{path} is a WebSocket endpoint: a handshake is a GET request.\n"),
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET"));
                response
            }
            Refusal::NotUpgrade => {
                let mut response = text(
                    StatusCode::UPGRADE_REQUIRED,
                    format!(
                        "{path} is a WebSocket endpoint: connect with a WebSocket client \
                         (ws://HOST{path}), not a plain HTTP request.\n"
                    ),
                );
                let headers = response.headers_mut();
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                response
            }
            Refusal::Version => {
                let mut response = text(
                    StatusCode::UPGRADE_REQUIRED,
                    "Unsupported Sec-WebSocket-Version: this server speaks 13 (RFC 6455).\n",
                );
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
                response
            }
            Refusal::HttpVersion => text(
                StatusCode::BAD_REQUEST,
                "A WebSocket handshake needs HTTP/1.1; this request is HTTP/1.0.\n",
            ),
            Refusal::Host => text(
                StatusCode::BAD_REQUEST,
                "A WebSocket handshake needs exactly one Host header.\n",
            ),
            Refusal::Repeated(name) => text(
                StatusCode::BAD_REQUEST,
                format!("{name} may appear only once in a WebSocket handshake.\n"),
            ),
            Refusal::MissingKey => text(
                StatusCode::BAD_REQUEST,
                "Missing Sec-WebSocket-Key header.\n",
            ),
            Refusal::MalformedKey => text(
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Key must be 16 bytes in base64 (24 characters ending in ==).\n",
            ),
            Refusal::Origin => text(
                StatusCode::FORBIDDEN,
                "This origin may not open WebSockets here (see --allowed-origin).\n",
            ),
        }
    }
}

/// Whether the query has a `name` parameter at all.
fn has_name(query: Option<&str>) -> bool {
    query
        .is_some_and(|query| form_urlencoded::parse(query.as_bytes()).any(|(key, _)| key == "name"))
}

/// The display name of a `/rooms` member: the `name` parameter of the query, valid by
/// [`names::is_display_name`], and given once.
fn display_name(query: Option<&str>) -> Option<String> {
    one_name(query?.as_bytes())
}

/// The one `name` of a form (a query, or a sign-in form's body), if it is given exactly once,
/// decodes to UTF-8 and is a display name. `form_urlencoded` alone would take `%ff` as `�`:
/// a name nobody typed, which the server would then show to everyone.
fn one_name(form: &[u8]) -> Option<String> {
    let mut names = form.split(|&byte| byte == b'&').filter_map(|pair| {
        let mut parts = pair.splitn(2, |&byte| byte == b'=');
        let (key, value) = (parts.next()?, parts.next().unwrap_or_default());
        (form_decode(key).as_deref() == Some("name")).then(|| form_decode(value))
    });
    let name = names.next()??;
    (names.next().is_none() && names::is_display_name(&name)).then_some(name)
}

/// One key or value of a form: `+` is a space, `%XX` a byte, and the bytes must be UTF-8.
fn form_decode(encoded: &[u8]) -> Option<String> {
    let spaced: Vec<u8> = encoded
        .iter()
        .map(|&byte| if byte == b'+' { b' ' } else { byte })
        .collect();
    percent_encoding::percent_decode(&spaced)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

/// Everything that must hold before the server agrees to upgrade (RFC 6455, section 4.2.1),
/// checked in order; on success, the client's key, from which the `101` derives its accept.
fn check_handshake<'request, B>(
    request: &'request Request<B>,
    allowed_origins: &[String],
) -> Result<&'request [u8], Refusal> {
    let headers = request.headers();
    if request.method() != Method::GET {
        return Err(Refusal::Method);
    }
    if !hyper_tungstenite::is_upgrade_request(request) {
        return Err(Refusal::NotUpgrade);
    }
    // hyper serves HTTP/1.0 and 1.1 only: HTTP/2 is not enabled (see `serve_http`).
    if request.version() < Version::HTTP_11 {
        return Err(Refusal::HttpVersion);
    }
    match Field::of(headers, header::HOST) {
        Field::Once(host) if !host.is_empty() && is_host(host.as_bytes()) => {}
        Field::Once(_) | Field::Absent | Field::Repeated => return Err(Refusal::Host),
    }
    match Field::of(headers, header::SEC_WEBSOCKET_VERSION) {
        Field::Once(version) if version == "13" => {}
        Field::Once(_) | Field::Absent => return Err(Refusal::Version),
        Field::Repeated => return Err(Refusal::Repeated("Sec-WebSocket-Version")),
    }
    let key = match Field::of(headers, header::SEC_WEBSOCKET_KEY) {
        // hyper already strips the white space around a value (it is not part of the value,
        // RFC 9110 5.5); trimming again keeps that true whatever parses the request.
        Field::Once(key) => key.as_bytes().trim_ascii(),
        Field::Absent => return Err(Refusal::MissingKey),
        Field::Repeated => return Err(Refusal::Repeated("Sec-WebSocket-Key")),
    };
    if key.is_empty() {
        return Err(Refusal::MissingKey);
    }
    if !is_sixteen_bytes_of_base64(key) {
        return Err(Refusal::MalformedKey);
    }
    // A browser sends one `Origin`: two are no browser's, and the second could hide behind
    // the first.
    if let Field::Repeated = Field::of(headers, header::ORIGIN) {
        return Err(Refusal::Repeated("Origin"));
    }
    if let Some(origin) = headers.get(header::ORIGIN)
        && !origin_allowed(origin, headers, allowed_origins)
    {
        tracing::warn!(
            origin = ?origin,
            host = ?headers.get(header::HOST),
            "refused a WebSocket from a foreign origin; 403. Behind a proxy, forward the \
             Host with its port (nginx: proxy_set_header Host $http_host), or allow the \
             origin with --allowed-origin"
        );
        return Err(Refusal::Origin);
    }
    Ok(key)
}

/// A header a handshake may carry at most once, as the request has it.
#[derive(Debug, Clone, Copy)]
enum Field<'request> {
    Absent,
    Once(&'request HeaderValue),
    Repeated,
}

impl<'request> Field<'request> {
    fn of(headers: &'request HeaderMap, name: header::HeaderName) -> Field<'request> {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Field::Absent,
            (Some(value), None) => Field::Once(value),
            (Some(_), Some(_)) => Field::Repeated,
        }
    }
}

/// Whether `key` is what RFC 6455 (4.2.1, item 5) asks of `Sec-WebSocket-Key`: 16 bytes in
/// base64 (RFC 4648, section 4: the standard alphabet with its padding, so 24 characters).
/// Decoded with `data-encoding`, the base64 tungstenite itself uses, which is strict: it also
/// refuses a non-canonical last character, which no client that encodes 16 random bytes
/// produces.
fn is_sixteen_bytes_of_base64(key: &[u8]) -> bool {
    key.len() == 24
        && data_encoding::BASE64
            .decode(key)
            .is_ok_and(|bytes| bytes.len() == 16)
}

/// A browser always sends `Origin`; it must be the server's own host (as the client addressed
/// it) or in the allow-list. This stops other sites from opening sockets with a visitor's
/// cookies (cross-site WebSocket hijacking). Non-browser clients send no `Origin` at all.
fn origin_allowed(origin: &HeaderValue, headers: &HeaderMap, allowed: &[String]) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed
        .iter()
        .any(|entry| entry == "*" || entry.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    // A page's origin, as a browser sends it: `http` or `https`, then the host.
    let origin_host = origin
        .split_once("://")
        .filter(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
        })
        .map(|(_, authority)| authority);
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    matches!((origin_host, host), (Some(origin_host), Some(host)) if origin_host.eq_ignore_ascii_case(host))
}

/// Longest `POST /auth/token` body: a form with one display name.
const MAX_SIGN_IN_BODY: usize = 1024;

/// `GET /auth/config`: what the page needs to know before it opens `/rooms`.
fn auth_config(method: &Method, shared: &Shared) -> Response<Body> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return method_not_allowed("GET, HEAD");
    }
    let (tokens, dev) = shared
        .auth
        .as_ref()
        .map_or((false, false), |auth| (true, auth.dev_sign_in()));
    json(
        StatusCode::OK,
        format!(r#"{{"tokens":{tokens},"devSignIn":{dev}}}"#),
    )
}

/// `POST /auth/token` with `--dev-sign-in`: a token for the form's `name`. Only from the
/// server's own pages (a browser's `Origin` must be this host): another site cannot sign its
/// visitors in.
async fn dev_token(request: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let Some(auth) = shared.auth.as_ref().filter(|auth| auth.dev_sign_in()) else {
        return text(
            StatusCode::NOT_FOUND,
            "This server signs no tokens (--dev-sign-in is off): the app's own backend does.\n",
        );
    };
    if request.method() != Method::POST {
        return method_not_allowed("POST");
    }
    let two_origins = matches!(
        Field::of(request.headers(), header::ORIGIN),
        Field::Repeated
    );
    if let Some(origin) = request.headers().get(header::ORIGIN)
        && (two_origins
            || !origin_allowed(origin, request.headers(), &shared.config.allowed_origins))
    {
        return text(
            StatusCode::FORBIDDEN,
            "Sign-in is for this server's own pages.\n",
        );
    }
    // Bounded in time as the headers are: a body sent a byte at a time holds no slot long.
    let read = http_body_util::Limited::new(request.into_body(), MAX_SIGN_IN_BODY).collect();
    let body = match tokio::time::timeout(shared.config.header_timeout, read).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(_)) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "A sign-in form is a name, nothing more.\n",
            );
        }
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "The sign-in form came too slowly.\n",
            );
        }
    };
    let name = match one_name(&body) {
        Some(name) => name,
        None => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "Sign in with one name: 1 to {} characters, {}.\n",
                    names::MAX_DISPLAY_NAME,
                    names::DISPLAY_NAME_RULES
                ),
            );
        }
    };
    match auth.dev_token(&name, crate::rooms::wall_ms()) {
        Some(token) => json(StatusCode::OK, format!(r#"{{"token":"{token}"}}"#)),
        None => not_found(),
    }
}

/// A JSON response nobody caches (it says who someone is, or how this server is set up now).
fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full_body(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A short text response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full_body(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(crate) fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "Not found.\n")
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A whole-buffer body as [`Body`].
fn full_body(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with_host(host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_str(host).expect("valid header"),
        );
        headers
    }

    /// Header lines to remove (`None`) or add (`Some`).
    type Changes<'a> = &'a [(&'a str, Option<&'a str>)];

    /// A handshake request with the standard headers, `changes` applied in order: a value
    /// of `None` removes every line of that header, `Some` adds one more line.
    fn handshake(version: Version, changes: Changes) -> Request<()> {
        let mut request = Request::builder()
            .method(Method::GET)
            .version(version)
            .uri("/echo")
            .body(())
            .expect("a valid request");
        let headers = request.headers_mut();
        for (name, value) in [
            ("host", "127.0.0.1:8080"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        for (name, value) in changes {
            let name = header::HeaderName::from_bytes(name.as_bytes()).expect("a header name");
            match value {
                None => {
                    headers.remove(&name);
                }
                Some(value) => {
                    headers.append(name, HeaderValue::from_str(value).expect("a header value"));
                }
            }
        }
        request
    }

    #[test]
    fn handshakes_are_checked_as_rfc_6455_asks() {
        let key = "sec-websocket-key";
        let cases: &[(Changes, Result<&[u8], Refusal>)] = &[
            (&[], Ok(b"dGhlIHNhbXBsZSBub25jZQ==")),
            (
                &[(key, None), (key, Some("AAAAAAAAAAAAAAAAAAAAAA=="))],
                Ok(b"AAAAAAAAAAAAAAAAAAAAAA=="),
            ),
            (
                &[(key, None), (key, Some(" AAAAAAAAAAAAAAAAAAAAAA==\t"))],
                Ok(b"AAAAAAAAAAAAAAAAAAAAAA=="),
            ),
            (&[(key, None)], Err(Refusal::MissingKey)),
            (&[(key, None), (key, Some(""))], Err(Refusal::MissingKey)),
            (
                &[(key, None), (key, Some("hello"))],
                Err(Refusal::MalformedKey),
            ),
            // 15 and 17 bytes, 16 without padding, URL-safe alphabet, a non-canonical end.
            (
                &[(key, None), (key, Some("AAAAAAAAAAAAAAAAAAAA"))],
                Err(Refusal::MalformedKey),
            ),
            (
                &[(key, None), (key, Some("AAAAAAAAAAAAAAAAAAAAAAA="))],
                Err(Refusal::MalformedKey),
            ),
            (
                &[(key, None), (key, Some("AAAAAAAAAAAAAAAAAAAAAA"))],
                Err(Refusal::MalformedKey),
            ),
            (
                &[(key, None), (key, Some("-_AAAAAAAAAAAAAAAAAAAA=="))],
                Err(Refusal::MalformedKey),
            ),
            (
                &[(key, None), (key, Some("AAAAAAAAAAAAAAAAAAAAAB=="))],
                Err(Refusal::MalformedKey),
            ),
            (
                &[(key, Some("dGhlIHNhbXBsZSBub25jZQ=="))],
                Err(Refusal::Repeated("Sec-WebSocket-Key")),
            ),
            (
                &[(key, Some("AAAAAAAAAAAAAAAAAAAAAA=="))],
                Err(Refusal::Repeated("Sec-WebSocket-Key")),
            ),
            (
                &[("sec-websocket-version", Some("13"))],
                Err(Refusal::Repeated("Sec-WebSocket-Version")),
            ),
            (
                &[
                    ("sec-websocket-version", None),
                    ("sec-websocket-version", Some("8")),
                ],
                Err(Refusal::Version),
            ),
            (&[("host", None)], Err(Refusal::Host)),
            (&[("host", None), ("host", Some(""))], Err(Refusal::Host)),
            (&[("host", Some("elsewhere.example"))], Err(Refusal::Host)),
            (&[("upgrade", None)], Err(Refusal::NotUpgrade)),
        ];
        for (changes, expected) in cases {
            let request = handshake(Version::HTTP_11, changes);
            assert_eq!(check_handshake(&request, &[]), *expected, "{changes:?}");
        }
        let request = handshake(Version::HTTP_10, &[]);
        assert_eq!(check_handshake(&request, &[]), Err(Refusal::HttpVersion));
        let mut request = handshake(Version::HTTP_11, &[]);
        *request.method_mut() = Method::HEAD;
        assert_eq!(check_handshake(&request, &[]), Err(Refusal::Method));
    }

    #[test]
    fn origin_is_allowed_when_same_host_or_listed() {
        let headers = headers_with_host("127.0.0.1:8080");
        let check = |origin: &str, allowed: &[&str]| {
            let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
            origin_allowed(
                &HeaderValue::from_str(origin).expect("valid"),
                &headers,
                &allowed,
            )
        };
        assert!(check("http://127.0.0.1:8080", &[]));
        assert!(check("https://127.0.0.1:8080", &[]));
        assert!(!check("http://127.0.0.1:9090", &[]));
        assert!(!check("https://evil.example", &[]));
        assert!(!check("null", &[]));
        assert!(check("https://app.example", &["https://app.example"]));
        assert!(check("https://APP.example", &["https://app.example"]));
        assert!(check("https://evil.example", &["*"]));
    }
}
