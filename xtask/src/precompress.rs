//! Compressed copies of the static files, made at build time: `X.br` (brotli, best quality)
//! and `X.gz` (gzip, best level) beside every compressible file `X`, for the server's
//! `ServeDir` to send by `Accept-Encoding`. Nothing is then compressed per request, and the
//! first visitor after a deploy waits for nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Result;

/// Brotli's best quality: for the 76 KiB wasm file about 150 ms, once per build.
const BROTLI_QUALITY: u32 = 11;
/// Brotli's window (log2 bytes): 4 MiB, as large as any file this project ships.
const BROTLI_WINDOW: u32 = 22;

/// What [`precompress`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Copies written.
    pub written: usize,
    /// Copies already newer than their file, left as they were.
    pub fresh: usize,
}

/// Writes the missing or out-of-date copies for every compressible file under `dir`. A copy
/// that would not be smaller than its file is not kept (an old one is removed), so the file is
/// sent as it is.
pub fn precompress(dir: &Path) -> Result<Summary> {
    let mut summary = Summary::default();
    for file in files_under(dir)? {
        if !is_compressible(&file) {
            continue;
        }
        let content = std::fs::read(&file)?;
        let modified = std::fs::metadata(&file)?.modified()?;
        for (suffix, compress) in [("br", brotli as fn(&[u8]) -> Result<Vec<u8>>), ("gz", gzip)] {
            let copy = PathBuf::from(format!("{}.{suffix}", file.display()));
            let copy_modified = std::fs::metadata(&copy)
                .and_then(|meta| meta.modified())
                .ok();
            if copy_modified.is_some_and(|copy_modified| copy_modified >= modified) {
                summary.fresh += 1;
                continue;
            }
            let compressed = compress(&content)?;
            if compressed.len() < content.len() {
                crate::hashed::replace_file(&copy, &compressed)?;
                summary.written += 1;
            } else if copy_modified.is_some() {
                std::fs::remove_file(&copy)?;
            }
        }
    }
    Ok(summary)
}

/// Regular files under `dir`, recursively; symlinks are not followed.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Text, scripts, JSON, SVG and wasm: the kinds of file that shrink. Images, fonts and
/// archives are compressed already, and the copies themselves are never compressed again.
fn is_compressible(path: &Path) -> bool {
    const SUFFIXES: [&str; 12] = [
        "html",
        "htm",
        "css",
        "js",
        "mjs",
        "json",
        "map",
        "svg",
        "wasm",
        "txt",
        "xml",
        "webmanifest",
    ];
    path.extension()
        .and_then(|suffix| suffix.to_str())
        .is_some_and(|suffix| SUFFIXES.contains(&suffix.to_ascii_lowercase().as_str()))
}

fn brotli(content: &[u8]) -> Result<Vec<u8>> {
    let mut output = Vec::new();
    let mut writer =
        brotli::CompressorWriter::new(&mut output, 64 * 1024, BROTLI_QUALITY, BROTLI_WINDOW);
    writer.write_all(content)?;
    writer.flush()?;
    drop(writer);
    Ok(output)
}

fn gzip(content: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(content)?;
    Ok(encoder.finish()?)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("precompress-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pkg")).expect("mkdir");
        dir
    }

    #[test]
    fn copies_decode_to_the_file_and_only_compressible_files_get_them() {
        let dir = temp_dir("decode");
        let script = "export const greeting = 'hello, hello, hello';\n".repeat(50);
        std::fs::write(dir.join("pkg/app.js"), &script).expect("write");
        std::fs::write(dir.join("image.png"), [0x89, b'P', b'N', b'G'].repeat(100)).expect("write");
        std::fs::write(dir.join("tiny.css"), "a{}").expect("write");

        let summary = precompress(&dir).expect("compresses");
        assert_eq!(
            summary,
            Summary {
                written: 2,
                fresh: 0
            }
        );
        let mut from_gzip = String::new();
        flate2::read::GzDecoder::new(&std::fs::read(dir.join("pkg/app.js.gz")).expect("gz")[..])
            .read_to_string(&mut from_gzip)
            .expect("gzip");
        assert_eq!(from_gzip, script);
        let mut from_brotli = String::new();
        let br = std::fs::read(dir.join("pkg/app.js.br")).expect("br");
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_string(&mut from_brotli)
            .expect("brotli");
        assert_eq!(from_brotli, script);
        assert!(
            !dir.join("image.png.gz").exists(),
            "PNG is compressed already"
        );
        assert!(
            !dir.join("tiny.css.br").exists(),
            "a copy no smaller than its file is not kept"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn fresh_copies_are_kept_and_a_rebuilt_file_gets_new_ones() {
        let dir = temp_dir("fresh");
        let file = dir.join("index.html");
        std::fs::write(&file, "<p>first</p>\n".repeat(20)).expect("write");
        precompress(&dir).expect("compresses");
        assert_eq!(
            precompress(&dir).expect("again"),
            Summary {
                written: 0,
                fresh: 2
            },
            "nothing to redo"
        );
        // A rebuilt file: newer than its copies.
        std::fs::write(&file, "<p>second</p>\n".repeat(20)).expect("rewrite");
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(later))
            .expect("set mtime");
        assert_eq!(precompress(&dir).expect("again").written, 2);
        let mut decoded = String::new();
        flate2::read::GzDecoder::new(&std::fs::read(dir.join("index.html.gz")).expect("gz")[..])
            .read_to_string(&mut decoded)
            .expect("gzip");
        assert!(decoded.starts_with("<p>second</p>"));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
