//! The file system under `ServeDir`, from memory: small files are read once and served from
//! RAM, rechecked against the disk at most once a second.
//!
//! Why: tower-http's default backend opens, stats and reads through tokio's blocking pool on
//! every request, several thread hops per file, which measured at 0.17x nginx's requests/s on
//! one core. `ServeDir` keeps every HTTP rule (ETag, 304, ranges, HEAD, MIME types); only file
//! access changes here. The containment check (no symlink may lead outside the static root)
//! runs when a file is loaded, so the hot path makes no system call at all. Compressed
//! copies of the files in memory are answered here too (`compressed.rs`).

use std::collections::HashMap;
use std::future::{Future, Ready, ready};
use std::io::{self, Cursor, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tower_http::services::fs::{Backend, File, Metadata};

use crate::compressed::{Encoding, Variants, is_compressible};

/// Files up to this size are kept in memory; larger ones stream from disk.
pub(crate) const MAX_CACHED_FILE: u64 = 4 * 1024 * 1024;
/// Most paths remembered; past it, files are still served, just not remembered.
const MAX_ENTRIES: usize = 1024;
/// How long a cached answer is trusted before the disk is asked again.
const REVALIDATE_AFTER: Duration = Duration::from_secs(1);

type BoxFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

/// `ServeDir`'s backend. Cheap to clone: every clone shares one cache.
#[derive(Debug, Clone)]
pub(crate) struct CachedBackend {
    inner: Arc<Inner>,
    /// What the backend of one request knows (see [`CachedBackend::for_request`]).
    request: Option<Arc<RequestScope>>,
}

/// One request's view of the backend.
#[derive(Debug, Default)]
pub(crate) struct RequestScope {
    /// The request names a `.br` or `.gz` file itself: such names are then files like any
    /// other, not the compressed copies `ServeDir` asks for when it negotiates an encoding.
    names_encoded_file: bool,
    /// The in-memory content last opened, for the caller to send as it is.
    opened: Mutex<Option<Bytes>>,
    /// Paths found missing: while it tries `X.br` and `X.gz`, `ServeDir` asks about `X` up to
    /// four times, and a miss is never cached, so each would be a trip to the disk.
    missing: Mutex<Vec<PathBuf>>,
}

impl RequestScope {
    /// The content of the last in-memory file opened for this request.
    pub(crate) fn take_opened(&self) -> Option<Bytes> {
        lock(&self.opened).take()
    }
}

#[derive(Debug)]
struct Inner {
    /// Canonical static root.
    root: PathBuf,
    entries: Mutex<HashMap<PathBuf, Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    checked: Instant,
    found: Found,
}

/// What a path turned out to be when last checked. Missing paths are never remembered, so
/// requests for random names cannot grow the cache.
#[derive(Debug, Clone)]
enum Found {
    File {
        content: Bytes,
        meta: FileMeta,
        /// Its compressed copies, made on demand; a new version of the file gets new ones.
        /// `None` when its type is not worth compressing (decided once, when it is loaded),
        /// or when the cache could not keep the file (past 1024 paths): copies made for it
        /// would be thrown away and made anew on every request.
        variants: Option<Arc<Variants>>,
    },
    Directory(FileMeta),
    /// Too large to keep: opened from disk on each request.
    Large {
        real_path: PathBuf,
        meta: FileMeta,
    },
}

impl Found {
    /// Whether both are the same version of the same file, as far as the disk says.
    fn same_version(&self, other: &Found) -> bool {
        match (self, other) {
            (Found::File { meta: a, .. }, Found::File { meta: b, .. }) => a == b,
            _ => false,
        }
    }

    /// The same answer, for a file the cache does not keep: no compressed copies.
    fn without_variants(self) -> Found {
        match self {
            Found::File { content, meta, .. } => Found::File {
                content,
                meta,
                variants: None,
            },
            other => other,
        }
    }

    fn meta(&self) -> FileMeta {
        match self {
            Found::File { meta, .. } | Found::Directory(meta) | Found::Large { meta, .. } => *meta,
        }
    }
}

/// What a name of the form `X.br` or `X.gz` turned out to be.
#[derive(Debug)]
enum Variant {
    /// A compressed copy of `X`, which is held in memory.
    Made(Bytes, FileMeta),
    /// `X` is held in memory but has no copy in this encoding (not worth compressing).
    None,
    /// Not such a name, or `X` is not held in memory: look the name up as it is.
    PlainName,
}

/// What `ServeDir` needs to know of a file: enough for `Last-Modified` and the `ETag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileMeta {
    is_dir: bool,
    modified: SystemTime,
    len: u64,
}

impl Metadata for FileMeta {
    fn is_dir(&self) -> bool {
        self.is_dir
    }

    fn modified(&self) -> io::Result<SystemTime> {
        Ok(self.modified)
    }

    fn len(&self) -> u64 {
        self.len
    }
}

impl CachedBackend {
    /// A backend for files under `root`, which must be canonical.
    pub(crate) fn new(root: PathBuf) -> CachedBackend {
        CachedBackend {
            inner: Arc::new(Inner {
                root,
                entries: Mutex::default(),
            }),
            request: None,
        }
    }

    /// A backend for one request for `uri_path`, sharing this one's cache. It tells what it
    /// opened (the caller can then send the cached bytes as the body instead of the copy
    /// `ServeDir`'s reader makes of them) and remembers misses for the rest of the request.
    pub(crate) fn for_request(&self, uri_path: &str) -> (CachedBackend, Arc<RequestScope>) {
        let scope = Arc::new(RequestScope {
            names_encoded_file: Encoding::split(Path::new(uri_path)).is_some(),
            ..RequestScope::default()
        });
        let backend = CachedBackend {
            inner: Arc::clone(&self.inner),
            request: Some(Arc::clone(&scope)),
        };
        (backend, scope)
    }

    /// [`CachedBackend::find`], answering paths this request already found missing without
    /// asking the disk again.
    async fn find_once(&self, path: PathBuf) -> io::Result<Found> {
        let Some(scope) = &self.request else {
            return self.find(path).await;
        };
        if lock(&scope.missing).contains(&path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let found = self.find(path.clone()).await;
        if found
            .as_ref()
            .is_err_and(|error| error.kind() == io::ErrorKind::NotFound)
        {
            lock(&scope.missing).push(path);
        }
        found
    }

    /// The cached answer for `path`, or a fresh look at the disk when it is older than
    /// [`REVALIDATE_AFTER`].
    async fn find(&self, path: PathBuf) -> io::Result<Found> {
        let previous = self.entries().get(&path).cloned();
        if let Some(entry) = &previous {
            if entry.checked.elapsed() < REVALIDATE_AFTER {
                return Ok(entry.found.clone());
            }
        }
        let root = self.inner.root.clone();
        let key = path.clone();
        let previous = previous.map(|entry| entry.found);
        let found = tokio::task::spawn_blocking(move || load(&root, &path, previous))
            .await
            .map_err(io::Error::other)?;
        let mut entries = self.entries();
        match found {
            Ok(found) => {
                // Requests that missed the cache together each loaded the file; they must
                // end up with one entry, or each would make its own compressed copies.
                let found = match entries.get(&key) {
                    Some(Entry {
                        found: existing, ..
                    }) if existing.same_version(&found) => existing.clone(),
                    _ => found,
                };
                if entries.len() < MAX_ENTRIES || entries.contains_key(&key) {
                    entries.insert(
                        key,
                        Entry {
                            checked: Instant::now(),
                            found: found.clone(),
                        },
                    );
                    Ok(found)
                } else {
                    Ok(found.without_variants())
                }
            }
            Err(error) => {
                entries.remove(&key);
                Err(error)
            }
        }
    }

    /// Answers `X.br` and `X.gz` when `ServeDir` asks for them to find a compressed copy of
    /// `X` (the request did not name such a file itself). When `X` is held in memory they are
    /// the server's own copies, and files by those names on disk are not looked at (nor looked
    /// for, which would cost a trip to the blocking pool on every request for an image); when
    /// `X` does not exist, neither do they.
    async fn find_variant(&self, path: &Path) -> io::Result<Variant> {
        let names_encoded_file = self
            .request
            .as_ref()
            .is_some_and(|scope| scope.names_encoded_file);
        let Some((encoding, original)) = Encoding::split(path).filter(|_| !names_encoded_file)
        else {
            return Ok(Variant::PlainName);
        };
        let (content, meta, variants) = match self.find_once(original).await {
            Ok(Found::File {
                content,
                meta,
                variants: Some(variants),
            }) => (content, meta, variants),
            // Held, but not worth compressing or not kept by the cache: sent as it is.
            Ok(Found::File { variants: None, .. }) => return Ok(Variant::None),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Variant::None),
            // Too large to hold, or a directory: a precompressed file on disk may stand next
            // to it, so the name is looked up as it is.
            _ => return Ok(Variant::PlainName),
        };
        Ok(match variants.get(encoding, &content).await? {
            Some(compressed) => {
                // `ServeDir` makes the `ETag` from length and date: the copy gets its own.
                let meta = FileMeta {
                    len: compressed.len() as u64,
                    ..meta
                };
                Variant::Made(compressed, meta)
            }
            None => Variant::None,
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Entry>> {
        lock(&self.inner.entries)
    }
}

/// A panic while holding one of these locks leaves the data consistent: every update is a
/// single insert, remove or replace.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Looks `path` up on disk, reusing `previous` content when the file has not changed.
fn load(root: &Path, path: &Path, previous: Option<Found>) -> io::Result<Found> {
    let real_path = path.canonicalize()?;
    if !real_path.starts_with(root) {
        tracing::warn!(
            ?path,
            "refused a file that resolves outside the static directory"
        );
        return Err(io::ErrorKind::NotFound.into());
    }
    let metadata = std::fs::metadata(&real_path)?;
    let meta = FileMeta {
        is_dir: metadata.is_dir(),
        modified: metadata.modified()?,
        len: metadata.len(),
    };
    if meta.is_dir {
        return Ok(Found::Directory(meta));
    }
    if meta.len > MAX_CACHED_FILE {
        return Ok(Found::Large { real_path, meta });
    }
    if let Some(Found::File {
        content,
        meta: old,
        variants,
    }) = previous
    {
        if old == meta {
            return Ok(Found::File {
                content,
                meta,
                variants,
            });
        }
    }
    let content = Bytes::from(std::fs::read(&real_path)?);
    // The length served must be the length read, even if the file changed in between.
    let meta = FileMeta {
        len: content.len() as u64,
        ..meta
    };
    Ok(Found::File {
        content,
        meta,
        variants: is_compressible(path).then(Arc::default),
    })
}

impl Backend for CachedBackend {
    type File = CachedFile;
    type Metadata = FileMeta;
    type OpenFuture = BoxFuture<CachedFile>;
    type MetadataFuture = BoxFuture<FileMeta>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let backend = self.clone();
        Box::pin(async move {
            let (content, meta) = match backend.find_variant(&path).await? {
                Variant::Made(content, meta) => (content, meta),
                Variant::None => return Err(io::ErrorKind::NotFound.into()),
                Variant::PlainName => match backend.find_once(path).await? {
                    Found::File { content, meta, .. } => (content, meta),
                    Found::Large { real_path, meta } => {
                        return Ok(CachedFile::Disk {
                            file: tokio::fs::File::open(real_path).await?,
                            meta,
                        });
                    }
                    Found::Directory(_) => return Err(io::Error::other("is a directory")),
                },
            };
            if let Some(scope) = &backend.request {
                *lock(&scope.opened) = Some(content.clone());
            }
            Ok(CachedFile::Memory {
                content: Cursor::new(content),
                meta,
            })
        })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let backend = self.clone();
        Box::pin(async move {
            match backend.find_variant(&path).await? {
                Variant::Made(_, meta) => Ok(meta),
                Variant::None => Err(io::ErrorKind::NotFound.into()),
                Variant::PlainName => backend.find_once(path).await.map(|found| found.meta()),
            }
        })
    }
}

/// An open file: bytes in memory, or a large file on disk.
#[derive(Debug)]
pub(crate) enum CachedFile {
    Memory {
        content: Cursor<Bytes>,
        meta: FileMeta,
    },
    Disk {
        file: tokio::fs::File,
        meta: FileMeta,
    },
}

impl AsyncRead for CachedFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            CachedFile::Memory { content, .. } => Pin::new(content).poll_read(cx, buf),
            CachedFile::Disk { file, .. } => Pin::new(file).poll_read(cx, buf),
        }
    }
}

impl AsyncSeek for CachedFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            CachedFile::Memory { content, .. } => Pin::new(content).start_seek(position),
            CachedFile::Disk { file, .. } => Pin::new(file).start_seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            CachedFile::Memory { content, .. } => Pin::new(content).poll_complete(cx),
            CachedFile::Disk { file, .. } => Pin::new(file).poll_complete(cx),
        }
    }
}

impl File for CachedFile {
    type Metadata = FileMeta;
    type MetadataFuture<'a> = Ready<io::Result<FileMeta>>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        match self {
            CachedFile::Memory { meta, .. } | CachedFile::Disk { meta, .. } => ready(Ok(*meta)),
        }
    }
}
