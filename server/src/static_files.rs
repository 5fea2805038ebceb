//! Static files from the static directory, through tower-http's `ServeDir`.
//!
//! `ServeDir` brings MIME types, `ETag`/`Last-Modified` with `304`, `HEAD` and ranges, and the
//! `Compression` layer gzip/brotli by `Accept-Encoding`: all maintained code we do not write
//! again. Files come from memory through [`CachedBackend`] (see `file_cache.rs` for why), which
//! also refuses symlinks that lead outside the directory. This module adds what is left to the
//! application: refusing NUL and backslashes, `charset=utf-8`, and `Cache-Control`.

use std::io;
use std::path::{Path, PathBuf};

use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{Extensions, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use tower::ServiceExt;
use tower_http::compression::Compression;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::services::ServeDir;

use crate::file_cache::{CachedBackend, MAX_CACHED_FILE};
use crate::http::{Body, full_body, not_found};

/// HTML always revalidates, so a rebuilt client is picked up on the next load.
const HTML_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
/// wasm-pack's output names carry no content hash, so the glue JS and the `.wasm` must change
/// together: every asset is cached but revalidated (cheap: `304` by `ETag`).
const ASSET_CACHE: HeaderValue = HeaderValue::from_static("public, max-age=0, must-revalidate");

/// The static directory, ready to serve.
#[derive(Clone)]
pub(crate) struct StaticFiles {
    /// Canonical root; `CachedBackend` keeps every file served under it.
    root: PathBuf,
    backend: CachedBackend,
}

impl std::fmt::Debug for StaticFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticFiles")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl StaticFiles {
    /// Opens the static directory; fails if it does not exist or is not a directory.
    pub(crate) fn open(dir: &Path) -> io::Result<StaticFiles> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        let backend = CachedBackend::new(root.clone());
        Ok(StaticFiles { root, backend })
    }

    /// Answers a `GET` or `HEAD` for a file.
    pub(crate) async fn serve(&self, request: Request<Incoming>) -> Response<Body> {
        if !Self::is_plain_path(request.uri().path()) {
            return not_found();
        }
        let is_get = request.method() == Method::GET;
        // A `ServeDir` per request costs what cloning a shared one did (it owns its root
        // path), and lets the backend keep what it learns during the request.
        let (backend, scope) = self.backend.for_request(request.uri().path());
        let serve_dir = ServeDir::with_backend(&self.root, backend)
            .append_index_html_on_directories(true)
            // Compressed copies made once per file version (`compressed.rs`); `Compression`
            // below is left for the files too large to hold in memory.
            .precompressed_br()
            .precompressed_gzip();
        // Files held in memory come compressed already, or are not worth compressing.
        let compression = Compression::new(serve_dir)
            .compress_when(DefaultPredicate::new().and(not_held_in_memory as ResponsePredicate));
        let response = match compression.oneshot(request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        };
        // `ServeDir`'s 404 has an empty body; every 404 of this server says what happened.
        if response.status() == StatusCode::NOT_FOUND {
            return not_found();
        }
        let whole_file = scope.take_opened().filter(|content| {
            is_get
                && response.status() == StatusCode::OK
                && header_length(response.headers()) == Some(content.len())
        });
        let mut response = match whole_file {
            // The whole file or its stored compressed copy, as opened (a body compressed on
            // the fly has no `Content-Length`, so it never matches): send the cached bytes
            // themselves. `ServeDir`'s reader would copy them into fresh 64 KiB buffers on
            // every request; sending them as they are took the wasm file from 29k to 39k
            // requests/s.
            Some(content) => response.map(|_| full_body(content)),
            None => response.map(|body| body.map_err(Into::into).boxed_unsync()),
        };
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        let is_html = content_type
            .as_ref()
            .is_some_and(|value| value.as_bytes().starts_with(b"text/html"));
        if let Some(with_charset) = content_type.as_ref().and_then(utf8_charset) {
            response.headers_mut().insert(CONTENT_TYPE, with_charset);
        }
        if response.status().is_success() || response.status().is_redirection() {
            let policy = if is_html { HTML_CACHE } else { ASSET_CACHE };
            response.headers_mut().insert(CACHE_CONTROL, policy);
        }
        response
    }

    /// `ServeDir` refuses `..` (also percent-encoded) but hands NUL and backslashes to the
    /// file system; they never name a file we serve. Symlinks that lead outside the root are
    /// refused by [`CachedBackend`] when it loads a file.
    fn is_plain_path(path: &str) -> bool {
        percent_decode_str(path)
            .decode_utf8()
            .is_ok_and(|decoded| !decoded.contains(['\0', '\\']))
    }
}

/// A response predicate for `Compression`, as a plain function.
type ResponsePredicate = fn(StatusCode, Version, &HeaderMap, &Extensions) -> bool;

/// Whether a response is a file too large to be held (and compressed once) in memory.
fn not_held_in_memory(_: StatusCode, _: Version, headers: &HeaderMap, _: &Extensions) -> bool {
    header_length(headers).is_none_or(|length| length as u64 > MAX_CACHED_FILE)
}

/// The `Content-Length` a response declares, if any.
fn header_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Every text file this project ships is UTF-8; `mime_guess` names no charset, so browsers
/// would guess. Returns the `text/*` type with `charset=utf-8`, or `None` to leave it as is.
fn utf8_charset(content_type: &HeaderValue) -> Option<HeaderValue> {
    let value = content_type.to_str().ok()?;
    let is_text = value.starts_with("text/") || value == "image/svg+xml";
    if !is_text || value.contains("charset") {
        return None;
    }
    HeaderValue::from_str(&format!("{value}; charset=utf-8")).ok()
}
