//! Files named by their content's hash, so a warm load asks the server for the HTML alone.
//!
//! After wasm-pack and wasm-opt, [`write`] copies every file the page loads into
//! `static/pkg/` under a name that holds the first 16 hex digits of its SHA-256
//! (`style.0123456789abcdef.css`), rewriting the names each one holds of the others first
//! (the glue names the `.wasm`, the start script names the glue and the `.wasm`), and writes
//! `static/pkg/index.html`: `static/index.html` with every name replaced. The server serves
//! that page for `/` and the hashed files as `immutable` for a year. The sources in
//! `static/` stay as they are (and keep working unhashed, revalidated, before any build).
//!
//! A page loaded before a rebuild keeps loading its own files: the previous build's hashed
//! files are kept (listed in `static/pkg/hashed-builds`), older ones removed, so a deploy
//! never pairs new wasm with old glue.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::Result;

/// The list of each build's hashed files, the newest last, one build a line.
const BUILDS: &str = "hashed-builds";
/// Builds whose files are kept: this one and the one before.
const KEPT_BUILDS: usize = 2;

/// The first 16 hex digits of `bytes`' SHA-256.
fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `name` (`style.css`) with `hash` before its extension (`style.<hash>.css`).
fn hashed_name(name: &str, hash: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, extension)) => format!("{stem}.{hash}.{extension}"),
        None => format!("{name}.{hash}"),
    }
}

/// `text` with `from` replaced by `to`; an error if `from` is not in it (the file changed
/// shape, and a name left unhashed would load a file that may not match).
fn replaced(text: &str, from: &str, to: &str, what: &str) -> Result<String> {
    if !text.contains(from) {
        return Err(format!("{what} no longer holds {from:?}: update xtask/src/hashed.rs").into());
    }
    Ok(text.replace(from, to))
}

/// The hashed files written, by their path on the site (`/pkg/style.<hash>.css`).
#[derive(Debug, Default)]
struct Written {
    /// `(path on the site of the source, path on the site of the hashed copy)`.
    names: Vec<(String, String)>,
    /// File names in `pkg/`.
    files: Vec<String>,
}

impl Written {
    /// Writes `content` into `pkg` as `name` with its hash (unless a file of that name, the
    /// same content, is there: a page may be loading it); returns its path on the site.
    fn add(&mut self, pkg: &Path, source: &str, name: &str, content: &[u8]) -> Result<String> {
        let file = hashed_name(name, &hash(content));
        if !pkg.join(&file).is_file() {
            replace_file(&pkg.join(&file), content)?;
        }
        let path = format!("/pkg/{file}");
        self.names.push((source.to_owned(), path.clone()));
        self.files.push(file);
        Ok(path)
    }
}

/// Writes the hashed copies and `pkg/index.html`, keeps the previous build's copies and
/// removes older ones. Returns the hashed files' names.
pub fn write(static_dir: &Path) -> Result<Vec<String>> {
    let pkg = static_dir.join("pkg");
    let read = |path: PathBuf| -> Result<String> {
        std::fs::read_to_string(&path)
            .map_err(|error| format!("{}: {error}", path.display()).into())
    };
    let mut written = Written::default();
    let wasm = std::fs::read(pkg.join("web_client_bg.wasm"))?;
    let wasm_path = written.add(&pkg, "/pkg/web_client_bg.wasm", "web_client_bg.wasm", &wasm)?;
    let wasm_file = wasm_path.trim_start_matches("/pkg/");
    // wasm-bindgen's `--target web` glue finds the `.wasm` beside itself by this name.
    let glue = replaced(
        &read(pkg.join("web_client.js"))?,
        "'web_client_bg.wasm'",
        &format!("'{wasm_file}'"),
        "the wasm-bindgen glue",
    )?;
    let glue_path = written.add(&pkg, "/pkg/web_client.js", "web_client.js", glue.as_bytes())?;
    // The start script names the glue, and the wasm it compiles while the glue loads.
    let start = replaced(
        &read(static_dir.join("start.js"))?,
        "\"/pkg/web_client.js\"",
        &format!("\"{glue_path}\""),
        "static/start.js",
    )?;
    let start = replaced(
        &start,
        "\"/pkg/web_client_bg.wasm\"",
        &format!("\"{wasm_path}\""),
        "static/start.js",
    )?;
    written.add(&pkg, "/start.js", "start.js", start.as_bytes())?;
    for name in ["style.css", "favicon.svg"] {
        let content = std::fs::read(static_dir.join(name))?;
        written.add(&pkg, &format!("/{name}"), name, &content)?;
    }
    let mut page = read(static_dir.join("index.html"))?;
    for (source, hashed) in &written.names {
        // Quoted, so `/start.js` never matches inside another name.
        page = replaced(
            &page,
            &format!("\"{source}\""),
            &format!("\"{hashed}\""),
            "static/index.html",
        )?;
    }
    replace_file(&pkg.join("index.html"), page.as_bytes())?;
    keep_two_builds(&pkg, &written.files)?;
    Ok(written.files)
}

/// Records this build's files and removes the hashed files of builds before the previous one
/// (with their compressed copies).
fn keep_two_builds(pkg: &Path, files: &[String]) -> Result<()> {
    let list = pkg.join(BUILDS);
    let mut builds: Vec<String> = std::fs::read_to_string(&list)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let this = files.join(" ");
    if builds.last() != Some(&this) {
        builds.push(this);
    }
    let first_kept = builds.len().saturating_sub(KEPT_BUILDS);
    let kept: Vec<&str> = builds[first_kept..]
        .iter()
        .flat_map(|build| build.split(' '))
        .collect();
    for entry in std::fs::read_dir(pkg)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let file = name
            .strip_suffix(".br")
            .or_else(|| name.strip_suffix(".gz"))
            .unwrap_or(&name);
        if is_hashed(file) && !kept.contains(&file) {
            std::fs::remove_file(pkg.join(&name))?;
        }
    }
    replace_file(&list, (builds[first_kept..].join("\n") + "\n").as_bytes())?;
    Ok(())
}

/// Writes `content` to `path` through a temporary file beside it and a rename, so a server
/// serving `path` meanwhile sends the old file or the new one, never a part of either (a
/// hashed file is cached for a year: a truncated one would be too).
pub fn replace_file(path: &Path, content: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} names no file", path.display()))?;
    let temporary = path.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    std::fs::write(&temporary, content)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// Whether `name` is `stem.<16 hex>.extension`, as [`hashed_name`] makes them.
fn is_hashed(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let (Some(_), Some(hash), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    hash.len() == 16 && hash.bytes().all(|byte| byte.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A static directory as a build leaves it before hashing.
    fn built(dir: &Path, wasm: &[u8]) {
        let pkg = dir.join("pkg");
        std::fs::create_dir_all(&pkg).expect("mkdir");
        std::fs::write(pkg.join("web_client_bg.wasm"), wasm).expect("wasm");
        std::fs::write(
            pkg.join("web_client.js"),
            "module_or_path = new URL('web_client_bg.wasm', import.meta.url);",
        )
        .expect("glue");
        std::fs::write(
            dir.join("start.js"),
            concat!(
                "const compiled = WebAssembly.compileStreaming(fetch(\"/pkg/web_client_bg.wasm\"));",
                "const client = await import(\"/pkg/web_client.js\");"
            ),
        )
        .expect("start");
        std::fs::write(dir.join("style.css"), "body {}").expect("css");
        std::fs::write(dir.join("favicon.svg"), "<svg/>").expect("svg");
        std::fs::write(
            dir.join("index.html"),
            concat!(
                "<link rel=\"icon\" href=\"/favicon.svg\"><link rel=\"stylesheet\" href=\"/style.css\">",
                "<link rel=\"modulepreload\" href=\"/pkg/web_client.js\">",
                "<link rel=\"preload\" href=\"/pkg/web_client_bg.wasm\">",
                "<script type=\"module\" src=\"/start.js\"></script>"
            ),
        )
        .expect("html");
    }

    fn hashed_files(dir: &Path) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(dir.join("pkg"))
            .expect("pkg")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| is_hashed(name))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn every_name_is_hashed_and_each_file_names_the_others_by_their_hash() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        built(dir.path(), b"wasm one");
        let files = write(dir.path()).expect("written");
        assert_eq!(files.len(), 5, "{files:?}");
        let pkg = dir.path().join("pkg");
        let page = std::fs::read_to_string(pkg.join("index.html")).expect("page");
        for file in &files {
            if file.starts_with("web_client_bg.") || file.starts_with("web_client.") {
                assert!(page.contains(&format!("/pkg/{file}")), "{page}");
            }
        }
        assert!(
            !page.contains("\"/style.css\"") && !page.contains("\"/start.js\""),
            "{page}"
        );
        let wasm = files.iter().find(|f| f.ends_with(".wasm")).expect("wasm");
        let glue = files
            .iter()
            .find(|f| f.starts_with("web_client.") && f.ends_with(".js"))
            .expect("glue");
        let glue_text = std::fs::read_to_string(pkg.join(glue)).expect("glue");
        assert!(glue_text.contains(&format!("'{wasm}'")), "{glue_text}");
        let start = files
            .iter()
            .find(|f| f.starts_with("start."))
            .expect("start");
        let start_text = std::fs::read_to_string(pkg.join(start)).expect("start");
        assert!(
            start_text.contains(&format!("\"/pkg/{glue}\"")),
            "{start_text}"
        );
        assert!(
            start_text.contains(&format!("\"/pkg/{wasm}\"")),
            "{start_text}"
        );
        assert!(page.contains(&format!("/pkg/{start}")), "{page}");
        // Each name is its content's hash.
        assert_eq!(*wasm, hashed_name("web_client_bg.wasm", &hash(b"wasm one")));
    }

    #[test]
    fn the_previous_builds_files_stay_and_older_ones_go() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        built(dir.path(), b"first");
        let first = write(dir.path()).expect("first");
        // Compressed copies, as precompress writes them.
        for file in &first {
            std::fs::write(dir.path().join("pkg").join(format!("{file}.gz")), b"gz").expect("gz");
        }
        built(dir.path(), b"second");
        let second = write(dir.path()).expect("second");
        let on_disk = hashed_files(dir.path());
        for file in first.iter().chain(&second) {
            assert!(on_disk.contains(file), "{file} kept: {on_disk:?}");
        }
        // The same build again changes nothing, and rewrites no hashed file (a page may be
        // loading it).
        let wasm_path = dir
            .path()
            .join("pkg")
            .join(second.iter().find(|f| f.ends_with(".wasm")).expect("wasm"));
        let modified = std::fs::metadata(&wasm_path)
            .and_then(|meta| meta.modified())
            .expect("modified");
        assert_eq!(write(dir.path()).expect("again"), second);
        assert_eq!(
            std::fs::metadata(&wasm_path)
                .and_then(|meta| meta.modified())
                .expect("modified"),
            modified
        );
        built(dir.path(), b"third");
        let third = write(dir.path()).expect("third");
        let on_disk = hashed_files(dir.path());
        let wasm_of = |files: &[String]| {
            files
                .iter()
                .find(|f| f.ends_with(".wasm"))
                .cloned()
                .expect("wasm")
        };
        assert!(!on_disk.contains(&wasm_of(&first)), "{on_disk:?}");
        assert!(
            !dir.path()
                .join("pkg")
                .join(format!("{}.gz", wasm_of(&first)))
                .exists(),
            "its copy too"
        );
        assert!(on_disk.contains(&wasm_of(&second)) && on_disk.contains(&wasm_of(&third)));
    }

    #[test]
    fn a_page_that_no_longer_names_a_file_is_an_error() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        built(dir.path(), b"wasm");
        std::fs::write(dir.path().join("index.html"), "<p>no scripts</p>").expect("html");
        let error = write(dir.path()).expect_err("refused").to_string();
        assert!(error.contains("static/index.html"), "{error}");
    }
}
