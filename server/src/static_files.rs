//! Static files from the static directory, through tower-http's `ServeDir`.
//!
//! `ServeDir` does the HTTP: MIME types, `ETag`/`Last-Modified` with `304`, `HEAD`, byte
//! ranges, `..` refused, and the `.br`/`.gz` copies that `cargo xtask build-client` writes next
//! to every compressible file, chosen by `Accept-Encoding` (with `Vary`). Nothing is compressed
//! per request. This module adds only what is the application's to decide: NUL and backslashes
//! refused, no symlink leading out of the directory, `charset=utf-8`, `Cache-Control`, and one
//! 404 for every miss.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue, IF_RANGE, RANGE};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tower::ServiceExt;
use tower_http::services::ServeDir;
use tower_http::services::fs::Backend;

use crate::http::{Body, not_found};

/// HTML always revalidates, so a rebuilt client is picked up on the next load.
const HTML_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
/// A file without a content hash in its name (the sources, a client built without hashes):
/// cached but revalidated (cheap: `304` by `ETag`), so files that change together do.
const ASSET_CACHE: HeaderValue = HeaderValue::from_static("public, max-age=0, must-revalidate");
/// A file named by its content's hash (`/pkg/style.0123456789abcdef.css`, written by
/// `cargo xtask build-client`): it never changes, so a warm load asks nothing for it.
const HASHED_CACHE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
/// The page `cargo xtask build-client` writes, naming the hashed files; served for `/` when
/// it exists, else the static directory's own `index.html` (the source).
const BUILT_INDEX: &str = "pkg/index.html";

/// The encodings the build writes copies for, by file suffix; `ServeDir` looks for the same.
const COPY_SUFFIXES: [&str; 2] = ["br", "gz"];

/// The static directory, ready to serve.
#[derive(Debug, Clone)]
pub(crate) struct StaticFiles {
    serve_dir: ServeDir<tower_http::services::fs::DefaultServeDirFallback, ContainedBackend>,
}

impl StaticFiles {
    /// Opens the static directory; fails if it does not exist or is not a directory. Warns
    /// about compressed copies that do not hold their file: browsers would be sent old content.
    pub(crate) fn open(dir: &Path) -> io::Result<StaticFiles> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        for stale in stale_copies(&root) {
            tracing::warn!(
                copy = %stale.display(),
                "compressed copy does not match its file and would be sent instead of it: \
                 run `cargo xtask build-client`, or delete the copy"
            );
        }
        let backend = ContainedBackend {
            root: Arc::from(root.as_path()),
        };
        let serve_dir = ServeDir::with_backend(&root, backend)
            .append_index_html_on_directories(true)
            // Several ranges in one request get the whole file (RFC 9110 lets a server ignore
            // `Range`), not `416`, which says they cannot be satisfied.
            .ignore_multi_range_requests(true)
            .precompressed_br()
            .precompressed_gzip();
        Ok(StaticFiles { serve_dir })
    }

    /// Answers a `GET` or `HEAD` for a file.
    pub(crate) async fn serve(&self, request: Request<Incoming>) -> Response<Body> {
        // A file request's body is never read: only its head goes on.
        let (mut head, _body) = request.into_parts();
        let suffix_range = keep_only_ranges_served_right(&mut head.headers);
        let path = head.uri.path();
        if !is_plain_path(path) {
            return not_found();
        }
        let hashed = is_hashed(path);
        // The built page where there is one, else the source page: asked for first, with no
        // look of its own at the disk (a build while the server runs is picked up).
        let built = matches!(path, "/" | "/index.html")
            .then(|| {
                let query = head.uri.query().map(|query| format!("?{query}"));
                format!("/{BUILT_INDEX}{}", query.unwrap_or_default())
                    .parse()
                    .ok()
            })
            .flatten();
        let mut response = None;
        if let Some(uri) = built {
            let mut built_head = head.clone();
            built_head.uri = uri;
            let found = self.file(Request::from_parts(built_head, ())).await;
            if found.status() != StatusCode::NOT_FOUND {
                response = Some(found);
            }
        }
        let response = match response {
            Some(response) => response,
            None => {
                let whole = suffix_range.then(|| {
                    let mut whole = head.clone();
                    whole.headers.remove(RANGE);
                    whole
                });
                let response = self.file(Request::from_parts(head, ())).await;
                match whole {
                    // A suffix longer than the file means the whole file (RFC 9110 14.1.3),
                    // which `ServeDir` refuses with 416.
                    Some(whole) if response.status() == StatusCode::RANGE_NOT_SATISFIABLE => {
                        self.file(Request::from_parts(whole, ())).await
                    }
                    _ => response,
                }
            }
        };
        // `ServeDir`'s 404 has an empty body; every 404 of this server says what happened.
        if response.status() == StatusCode::NOT_FOUND {
            return not_found();
        }
        let mut response = response.map(|body| body.map_err(Into::into).boxed_unsync());
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        if let Some(with_charset) = content_type.as_ref().and_then(utf8_charset) {
            response.headers_mut().insert(CONTENT_TYPE, with_charset);
        }
        if response.status().is_success() || response.status().is_redirection() {
            let is_html = content_type
                .as_ref()
                .is_some_and(|value| value.as_bytes().starts_with(b"text/html"));
            let policy = match (is_html, hashed) {
                (true, _) => HTML_CACHE,
                (false, true) => HASHED_CACHE,
                (false, false) => ASSET_CACHE,
            };
            response.headers_mut().insert(CACHE_CONTROL, policy);
        }
        response
    }
}

impl StaticFiles {
    /// `ServeDir`'s answer for `request`.
    async fn file(
        &self,
        request: Request<()>,
    ) -> Response<tower_http::services::fs::ServeFileSystemResponseBody> {
        match self.serve_dir.clone().oneshot(request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        }
    }
}

/// Takes out a `Range` that `ServeDir` would answer wrongly, which RFC 9110 lets a server
/// ignore (section 14.2) and so serve the whole file: any `Range` beside `If-Range`, which
/// `ServeDir` does not evaluate (a resumed download must never be spliced from two versions
/// of a file, section 13.1.5; the files here are small enough to send again whole), and one
/// `ServeDir`'s parser does not take (a unit other than `bytes`, among others: it answered
/// 416). Returns whether what is left is one suffix range (`bytes=-N`).
fn keep_only_ranges_served_right(headers: &mut HeaderMap) -> bool {
    let Some(range) = headers.get(RANGE) else {
        return false;
    };
    // What `ServeDir` cannot parse (another unit, `Bytes=`, `bytes=0-9,`, leading zeros) it
    // answers 416, which says the range is outside the file.
    let parsed = range
        .to_str()
        .is_ok_and(|range| http_range_header::parse_range_header(range).is_ok());
    if headers.contains_key(IF_RANGE) || !parsed {
        headers.remove(RANGE);
        return false;
    }
    let spec = &range.as_bytes()[6..];
    let spec = spec.trim_ascii();
    spec.first() == Some(&b'-') && !spec.contains(&b',')
}

/// `ServeDir` refuses `..` (also percent-encoded) but hands NUL and backslashes to the file
/// system; they never name a file we serve. Nor does a path that starts with an empty segment
/// (`//pkg`): `ServeDir` would redirect it to `//pkg/`, which a browser reads as the host
/// `pkg`.
///
/// Nor does a hidden file or directory (a segment starting with `.`: `.env`, `.git/config`,
/// the `.gitignore` wasm-pack writes), which a static directory kept in a repository or
/// built in place may hold, except `.well-known` (RFC 8615: `security.txt`, ACME challenges).
fn is_plain_path(path: &str) -> bool {
    !path.starts_with("//")
        && percent_decode_str(path).decode_utf8().is_ok_and(|decoded| {
            !decoded.contains(['\0', '\\'])
                && !decoded
                    .split('/')
                    .any(|segment| segment.starts_with('.') && segment != ".well-known")
        })
}

/// Whether `path` names a file by its content's hash: under `/pkg/`, with a last-but-one
/// dot-separated part of 16 lowercase hex digits (`/pkg/web_client.0123456789abcdef.js`).
fn is_hashed(path: &str) -> bool {
    let Some(name) = path.strip_prefix("/pkg/") else {
        return false;
    };
    let mut parts = name.rsplit('.');
    let (Some(_extension), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    hash.len() == 16
        && hash
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        && !name.contains('/')
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

/// `ServeDir`'s file access. Like tokio's own backend, except that:
/// - a path which resolves outside the static root (through a symlink) does not exist.
///   `ServeDir` has no such option, and every path it touches (the file, its compressed
///   copies, `index.html`) passes through here;
/// - each call is one trip to the blocking pool, not several: opening checks the path, opens,
///   reads the metadata and (for files up to [`READ_WHOLE_UP_TO`]) the content in one go.
///   tokio's backend takes a trip for each of those and for every read, and so served
///   `index.html` at about 4,000 requests/s on one core, a tenth of nginx.
#[derive(Debug, Clone)]
struct ContainedBackend {
    /// Canonical static root.
    root: Arc<Path>,
}

/// Files up to this size are read whole when opened (every file this project ships is).
const READ_WHOLE_UP_TO: u64 = 256 * 1024;

type BoxFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

/// The path with every symlink resolved, if it stays under `root`. A name longer than the file
/// system takes names no file either: not found, as any other (`ServeDir` answers other errors
/// 500, a fault of the server's, which any client could raise at will).
fn contained(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let real = path.canonicalize().map_err(|error| {
        if error.kind() == io::ErrorKind::InvalidFilename {
            io::Error::new(io::ErrorKind::NotFound, error)
        } else {
            error
        }
    })?;
    if real.starts_with(root) {
        Ok(real)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "resolves outside the static directory",
        ))
    }
}

/// Runs blocking file work on tokio's blocking pool.
fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> BoxFuture<T> {
    Box::pin(async move {
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|join_error| Err(io::Error::other(join_error)))
    })
}

impl Backend for ContainedBackend {
    type File = OpenFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = BoxFuture<OpenFile>;
    type MetadataFuture = BoxFuture<std::fs::Metadata>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let root = Arc::clone(&self.root);
        blocking(move || {
            use std::io::Read;
            let mut file = std::fs::File::open(contained(&root, &path)?)?;
            let metadata = file.metadata()?;
            let content = if metadata.len() <= READ_WHOLE_UP_TO {
                let mut bytes = Vec::with_capacity(metadata.len() as usize);
                (&mut file).take(metadata.len()).read_to_end(&mut bytes)?;
                Content::Memory(io::Cursor::new(bytes))
            } else {
                Content::Disk(tokio::fs::File::from_std(file))
            };
            Ok(OpenFile { content, metadata })
        })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let root = Arc::clone(&self.root);
        blocking(move || contained(&root, &path)?.metadata())
    }
}

/// An opened file with the metadata read when it was opened.
#[derive(Debug)]
struct OpenFile {
    content: Content,
    metadata: std::fs::Metadata,
}

#[derive(Debug)]
enum Content {
    Memory(io::Cursor<Vec<u8>>),
    Disk(tokio::fs::File),
}

impl AsyncRead for OpenFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().content {
            Content::Memory(bytes) => Pin::new(bytes).poll_read(cx, buf),
            Content::Disk(file) => Pin::new(file).poll_read(cx, buf),
        }
    }
}

impl AsyncSeek for OpenFile {
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        match &mut self.get_mut().content {
            Content::Memory(bytes) => Pin::new(bytes).start_seek(position),
            Content::Disk(file) => Pin::new(file).start_seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match &mut self.get_mut().content {
            Content::Memory(bytes) => Pin::new(bytes).poll_complete(cx),
            Content::Disk(file) => Pin::new(file).poll_complete(cx),
        }
    }
}

impl tower_http::services::fs::File for OpenFile {
    type Metadata = std::fs::Metadata;
    type MetadataFuture<'a> = std::future::Ready<io::Result<std::fs::Metadata>>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        std::future::ready(Ok(self.metadata.clone()))
    }
}

/// Compressed copies (`X.br`, `X.gz`) under `root` that do not hold the file `X` beside them
/// (symlinks are not followed; unreadable entries are skipped). Only copies older than their
/// file are decompressed to be sure: a `cp -r` of a good build leaves copies older than their
/// files, with the right content.
fn stale_copies(root: &Path) -> Vec<PathBuf> {
    let modified = |path: &Path| {
        path.symlink_metadata()
            .and_then(|meta| meta.modified())
            .ok()
    };
    let mut stale = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                dirs.push(path);
                continue;
            }
            let Some(suffix) = path.extension().and_then(|suffix| suffix.to_str()) else {
                continue;
            };
            let original = path.with_extension("");
            let suspect = COPY_SUFFIXES.contains(&suffix) && modified(&path) < modified(&original);
            if suspect && !holds(&path, suffix, &original) {
                stale.push(path);
            }
        }
    }
    stale
}

/// Whether the compressed `copy` decompresses to exactly the content of `original`.
fn holds(copy: &Path, suffix: &str, original: &Path) -> bool {
    use std::io::Read;
    let (Ok(compressed), Ok(expected)) = (std::fs::read(copy), std::fs::read(original)) else {
        return false;
    };
    let reader: Box<dyn Read> = match suffix {
        "gz" => Box::new(flate2::read::GzDecoder::new(&compressed[..])),
        _ => Box::new(brotli_decompressor::Decompressor::new(
            &compressed[..],
            4096,
        )),
    };
    // One byte more than the file is enough to tell; never more (a copy could be a bomb).
    let mut content = Vec::with_capacity(expected.len() + 1);
    let limit = expected.len() as u64 + 1;
    reader.take(limit).read_to_end(&mut content).is_ok() && content == expected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_gets_a_charset_and_nothing_else_does() {
        let charset = |value: &'static str| utf8_charset(&HeaderValue::from_static(value));
        assert_eq!(
            charset("text/css"),
            Some(HeaderValue::from_static("text/css; charset=utf-8"))
        );
        assert_eq!(
            charset("image/svg+xml"),
            Some(HeaderValue::from_static("image/svg+xml; charset=utf-8"))
        );
        assert_eq!(charset("application/wasm"), None);
        assert_eq!(charset("text/plain; charset=latin1"), None);
    }

    #[test]
    fn only_files_named_by_their_hash_under_pkg_are_immutable() {
        for hashed in [
            "/pkg/web_client.0123456789abcdef.js",
            "/pkg/web_client_bg.fedcba9876543210.wasm",
            "/pkg/style.00000000000000aa.css",
        ] {
            assert!(is_hashed(hashed), "{hashed}");
        }
        for plain in [
            "/pkg/web_client.js",
            "/pkg/index.html",
            "/style.0123456789abcdef.css",
            "/pkg/web_client.0123456789ABCDEF.js",
            "/pkg/web_client.0123456789abcde.js",
            "/pkg/a/b.0123456789abcdef.js",
            "/pkg/0123456789abcdef",
        ] {
            assert!(!is_hashed(plain), "{plain}");
        }
    }

    #[test]
    fn a_copy_older_than_its_file_is_found_unless_it_holds_it() {
        let dir = std::env::temp_dir().join(format!("stale-copies-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("pkg")).expect("mkdir");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let write = |name: &str, aged: bool| {
            let path = dir.join(name);
            std::fs::write(&path, name).expect("write");
            if aged {
                let file = std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .expect("open");
                file.set_modified(old).expect("set mtime");
            }
        };
        write("index.html", false);
        write("index.html.br", true);
        write("pkg/app.js", true);
        write("pkg/app.js.gz", false);
        write("notes.gz", true);
        // Older than its file, but holding exactly that file: a copy made by `cp -r`.
        write("style.css", false);
        let gzip = |content: &[u8]| {
            use std::io::Write;
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Default::default());
            encoder.write_all(content).expect("gzip");
            encoder.finish().expect("gzip")
        };
        std::fs::write(dir.join("style.css.gz"), gzip(b"style.css")).expect("write");
        std::fs::File::options()
            .write(true)
            .open(dir.join("style.css.gz"))
            .and_then(|file| file.set_modified(old))
            .expect("set mtime");
        assert_eq!(stale_copies(&dir), [dir.join("index.html.br")]);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
