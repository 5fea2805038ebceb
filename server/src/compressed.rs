//! Compressed copies of the files held in memory, made once per version of a file.
//!
//! Why: browsers always ask for `gzip, deflate, br`, and tower-http's `Compression` layer
//! compresses on every request: the 76 KiB wasm file cost 2 ms (brotli) to 4 ms (gzip) of CPU
//! per request, 240 to 540 requests/s on one core. `ServeDir` already knows how to serve
//! precompressed files (`PATH.br`, `PATH.gz`, with `Content-Encoding`, `Vary` and their own
//! `ETag`); `CachedBackend` answers those names with the copies made here.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::OnceCell;

/// Brotli quality for the stored copies: made once, so the smallest output is worth it
/// (11 is brotli's best: 141 ms for the 76 KiB wasm file, 27.7 KiB against 32.1 KiB from
/// the `Compression` layer's on-the-fly default).
const BROTLI_QUALITY: u32 = 11;
/// Above this size the best quality would keep the first visitor waiting for seconds; 9 is
/// about ten times faster for a few percent more bytes.
const BROTLI_BEST_UP_TO: usize = 256 * 1024;
const BROTLI_QUALITY_LARGE: u32 = 9;
/// Brotli window, 2^22 bytes: the library's default.
const BROTLI_WINDOW: u32 = 22;
/// Files smaller than this are sent as they are, as tower-http's `Compression` does.
const MIN_COMPRESSIBLE: usize = 32;

/// An encoding `ServeDir` asks for by file name (`precompressed_br`, `precompressed_gzip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    /// Splits `X.br` into `(Brotli, X)` and `X.gz` into `(Gzip, X)`.
    pub(crate) fn split(path: &Path) -> Option<(Encoding, PathBuf)> {
        let encoding = match path.extension()?.to_str()? {
            "br" => Encoding::Brotli,
            "gz" => Encoding::Gzip,
            _ => return None,
        };
        Some((encoding, path.with_extension("")))
    }

    fn compress(self, content: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Encoding::Brotli => {
                let mut output = Vec::with_capacity(content.len() / 3);
                let quality = if content.len() <= BROTLI_BEST_UP_TO {
                    BROTLI_QUALITY
                } else {
                    BROTLI_QUALITY_LARGE
                };
                let mut writer =
                    brotli::CompressorWriter::new(&mut output, 64 * 1024, quality, BROTLI_WINDOW);
                writer.write_all(content)?;
                writer.flush()?;
                drop(writer);
                Ok(output)
            }
            Encoding::Gzip => {
                let output = Vec::with_capacity(content.len() / 3);
                let mut encoder =
                    flate2::write::GzEncoder::new(output, flate2::Compression::best());
                encoder.write_all(content)?;
                encoder.finish()
            }
        }
    }
}

/// Whether a file's type is worth compressing (text, scripts, wasm, JSON, XML, SVG): by its
/// name, as `ServeDir` picks the `Content-Type`. Images, fonts and archives are compressed
/// already.
pub(crate) fn is_compressible(path: &Path) -> bool {
    let Some(mime) = mime_guess::from_path(path).first() else {
        return false;
    };
    match (mime.type_().as_str(), mime.subtype().as_str()) {
        ("text", _) => true,
        ("image", "svg") => true,
        ("application", subtype) => {
            matches!(subtype, "javascript" | "json" | "wasm" | "xml" | "manifest")
                || mime
                    .suffix()
                    .is_some_and(|suffix| suffix == "json" || suffix == "xml")
        }
        _ => false,
    }
}

/// The compressed copies of one version of one file, each made on first request. `None`
/// once made means compressing did not make it smaller.
#[derive(Debug, Default)]
pub(crate) struct Variants {
    brotli: OnceCell<Option<Bytes>>,
    gzip: OnceCell<Option<Bytes>>,
}

impl Variants {
    fn slot(&self, encoding: Encoding) -> &OnceCell<Option<Bytes>> {
        match encoding {
            Encoding::Brotli => &self.brotli,
            Encoding::Gzip => &self.gzip,
        }
    }

    /// The copy of `content` in `encoding`, made on the blocking pool the first time: brotli
    /// at its best quality takes tens of milliseconds for a 100 KiB file. Requests that come
    /// while it is being made wait for that one (asynchronously: a cold start with many
    /// browsers at once must not park a blocking thread per request).
    pub(crate) async fn get(
        &self,
        encoding: Encoding,
        content: &Bytes,
    ) -> io::Result<Option<Bytes>> {
        if content.len() < MIN_COMPRESSIBLE {
            return Ok(None);
        }
        let content = content.clone();
        let make = || async move {
            tokio::task::spawn_blocking(move || make(encoding, &content))
                .await
                .map_err(io::Error::other)
        };
        self.slot(encoding).get_or_try_init(make).await.cloned()
    }
}

/// Compresses `content`; `None` when that does not make it smaller.
fn make(encoding: Encoding, content: &[u8]) -> Option<Bytes> {
    let started = std::time::Instant::now();
    match encoding.compress(content) {
        Ok(compressed) if compressed.len() < content.len() => {
            tracing::debug!(
                ?encoding,
                from = content.len(),
                to = compressed.len(),
                ms = started.elapsed().as_millis() as u64,
                "compressed a static file"
            );
            Some(Bytes::from(compressed))
        }
        Ok(_) => None,
        Err(error) => {
            // Writing into memory does not fail; if it ever did, the file is still served,
            // uncompressed.
            tracing::warn!(%error, ?encoding, "could not compress a static file");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decompress(mut decoder: impl Read) -> Vec<u8> {
        let mut decoded = Vec::new();
        decoder.read_to_end(&mut decoded).expect("decodes");
        decoded
    }

    #[test]
    fn variant_names_split_into_encoding_and_file() {
        assert_eq!(
            Encoding::split(Path::new("/s/pkg/app.js.br")),
            Some((Encoding::Brotli, PathBuf::from("/s/pkg/app.js")))
        );
        assert_eq!(
            Encoding::split(Path::new("/s/a.wasm.gz")),
            Some((Encoding::Gzip, PathBuf::from("/s/a.wasm")))
        );
        assert_eq!(Encoding::split(Path::new("/s/app.js")), None);
        assert_eq!(Encoding::split(Path::new("/s/br")), None);
    }

    #[test]
    fn only_text_like_types_are_compressible() {
        for name in [
            "a.html", "a.css", "a.js", "a.mjs", "a.wasm", "a.json", "a.svg", "a.txt", "a.xml",
        ] {
            assert!(is_compressible(Path::new(name)), "{name}");
        }
        for name in [
            "a.png", "a.jpg", "a.woff2", "a.gz", "a.zip", "a.ico", "noext",
        ] {
            assert!(!is_compressible(Path::new(name)), "{name}");
        }
    }

    #[tokio::test]
    async fn copies_decompress_to_the_original_and_are_made_once() {
        let content = Bytes::from("hello compressed world ".repeat(200));
        let variants = Variants::default();
        let brotli = variants
            .get(Encoding::Brotli, &content)
            .await
            .expect("made")
            .expect("smaller");
        assert_eq!(
            decompress(brotli::Decompressor::new(&brotli[..], 4096)),
            content
        );
        let gzip = variants
            .get(Encoding::Gzip, &content)
            .await
            .expect("made")
            .expect("smaller");
        assert_eq!(decompress(flate2::read::GzDecoder::new(&gzip[..])), content);
        let again = variants.get(Encoding::Gzip, &content).await.expect("made");
        assert_eq!(
            again.expect("smaller").as_ptr(),
            gzip.as_ptr(),
            "the same copy"
        );
    }

    #[tokio::test]
    async fn concurrent_first_requests_share_one_copy() {
        let content = Bytes::from("share me ".repeat(5000));
        let variants = std::sync::Arc::new(Variants::default());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (variants, content) = (variants.clone(), content.clone());
            tasks.spawn(async move {
                let copy = variants.get(Encoding::Brotli, &content).await;
                copy.expect("made").expect("smaller").as_ptr() as usize
            });
        }
        let pointers: std::collections::HashSet<usize> =
            tasks.join_all().await.into_iter().collect();
        assert_eq!(pointers.len(), 1, "one copy made, every request got it");
    }

    #[tokio::test]
    async fn incompressible_or_tiny_content_has_no_copy() {
        let variants = Variants::default();
        let tiny = Bytes::from_static(b"hi");
        assert_eq!(variants.get(Encoding::Gzip, &tiny).await.expect("ok"), None);
        // Bytes with no pattern (xorshift) do not shrink.
        let mut state = 0x2545_f491_u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let noise = Bytes::from(noise);
        let variants = Variants::default();
        assert_eq!(
            variants.get(Encoding::Gzip, &noise).await.expect("ok"),
            None
        );
    }
}
