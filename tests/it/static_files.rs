//! Static files: MIME types, caching headers, revalidation, compressed copies, HEAD, traversal.

use std::io::Read;

use http::StatusCode;

use crate::support::{INDEX_HTML, LARGE_JS, TestServer};

/// A gzip body, decoded to text.
fn gunzip(body: &[u8]) -> String {
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut decoded)
        .expect("gzip");
    decoded
}

/// A brotli body, decoded to text.
fn unbrotli(body: &[u8]) -> String {
    let mut decoded = String::new();
    brotli::Decompressor::new(body, 4096)
        .read_to_string(&mut decoded)
        .expect("brotli");
    decoded
}

#[tokio::test]
async fn root_serves_index_html_without_caching() {
    let server = TestServer::start(&[]).await;
    let reply = server.request("GET", "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.header("cache-control"), Some("no-cache"));
    assert_eq!(reply.body, INDEX_HTML);
}

#[tokio::test]
async fn every_asset_type_gets_its_content_type_and_revalidated_caching() {
    let server = TestServer::start(&[]).await;
    let cases = [
        ("/index.html", "text/html; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/pkg/app.js", "text/javascript; charset=utf-8"),
        ("/pkg/app_bg.wasm", "application/wasm"),
        ("/data.json", "application/json"),
        ("/icon.svg", "image/svg+xml; charset=utf-8"),
        ("/image.png", "image/png"),
        ("/favicon.ico", "image/x-icon"),
    ];
    for (path, content_type) in cases {
        let reply = server.request("GET", path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        // HTML names the other files, whose names carry no content hash: both revalidate.
        let cache = if path.ends_with(".html") {
            "no-cache"
        } else {
            "public, max-age=0, must-revalidate"
        };
        assert_eq!(reply.header("cache-control"), Some(cache), "{path}");
        assert!(reply.header("etag").is_some(), "{path} has an ETag");
        assert!(
            reply.header("last-modified").is_some(),
            "{path} has Last-Modified"
        );
    }
}

#[tokio::test]
async fn revalidation_answers_304_by_etag_and_by_date() {
    let server = TestServer::start(&[]).await;
    let first = server.request("GET", "/pkg/app.js", &[]).await;
    let etag = first.header("etag").expect("ETag").to_owned();
    let modified = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();

    let by_etag = server
        .request("GET", "/pkg/app.js", &[("if-none-match", &etag)])
        .await;
    assert_eq!(by_etag.status, StatusCode::NOT_MODIFIED);
    assert!(by_etag.body.is_empty());

    let by_date = server
        .request("GET", "/pkg/app.js", &[("if-modified-since", &modified)])
        .await;
    assert_eq!(by_date.status, StatusCode::NOT_MODIFIED);

    let stale = server
        .request("GET", "/pkg/app.js", &[("if-none-match", "\"other\"")])
        .await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.body, LARGE_JS);
}

#[tokio::test]
async fn the_builds_compressed_copies_are_sent_by_accept_encoding() {
    let server = TestServer::start(&[]).await;
    let gzip = server
        .request("GET", "/pkg/app.js", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert!(gzip.body.len() < LARGE_JS.len());
    let decoded = gunzip(&gzip.body);
    assert_eq!(decoded, LARGE_JS);

    let brotli = server
        .request("GET", "/pkg/app.js", &[("accept-encoding", "br, gzip")])
        .await;
    assert_eq!(brotli.header("content-encoding"), Some("br"));
    let decoded = unbrotli(&brotli.body);
    assert_eq!(decoded, LARGE_JS);

    let plain = server.request("GET", "/pkg/app.js", &[]).await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, LARGE_JS);

    // The copies are files: sent with a length (not streamed), marked as varying by
    // encoding, each with its own ETag, which revalidates.
    for reply in [&gzip, &brotli] {
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str())
        );
        assert_eq!(reply.header("vary"), Some("accept-encoding"));
        assert_ne!(reply.header("etag"), plain.header("etag"));
    }
    let etag = brotli.header("etag").expect("ETag");
    let revalidated = server
        .request(
            "GET",
            "/pkg/app.js",
            &[("accept-encoding", "br"), ("if-none-match", etag)],
        )
        .await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);

    let image = server
        .request("GET", "/image.png", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(
        image.header("content-encoding"),
        None,
        "PNG is already compressed"
    );
}

#[tokio::test]
async fn nothing_is_compressed_per_request() {
    // A file the build made no copies for is sent as it is, whatever the browser accepts;
    // a copy asked for by its own name is a file like any other.
    let server = TestServer::start(&[]).await;
    let dir = server.static_dir().expect("fixture");
    let text = "plain notes, plain notes, plain notes, plain notes\n".repeat(10);
    std::fs::write(dir.join("notes.txt"), &text).expect("write");
    let negotiated = server
        .request(
            "GET",
            "/notes.txt",
            &[("accept-encoding", "gzip, deflate, br")],
        )
        .await;
    assert_eq!(negotiated.status, StatusCode::OK);
    assert_eq!(negotiated.header("content-encoding"), None);
    assert_eq!(negotiated.body, text);

    let by_name = server.request("GET", "/pkg/app.js.gz", &[]).await;
    assert_eq!(by_name.status, StatusCode::OK);
    assert_eq!(by_name.header("content-encoding"), None);
    assert_eq!(gunzip(&by_name.body), LARGE_JS);

    let missing = server
        .request("GET", "/missing.js", &[("accept-encoding", "gzip, br")])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_compressed_copy_that_does_not_match_its_file_is_reported_at_start() {
    let fixture = crate::support::static_fixture();
    let dir = crate::support::served_dir(&fixture);
    let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    // An old build's copy: older than its file, and another content.
    std::fs::write(
        dir.join("pkg/app.js.br"),
        crate::support::brotli(b"old build"),
    )
    .expect("write");
    std::fs::File::options()
        .write(true)
        .open(dir.join("pkg/app.js.br"))
        .and_then(|copy| copy.set_modified(long_ago))
        .expect("age the copy");
    // Copied in any order (as `cp -r` does): older, but the same content. Not reported.
    std::fs::File::options()
        .write(true)
        .open(dir.join("pkg/app.js.gz"))
        .and_then(|copy| copy.set_modified(long_ago))
        .expect("age the copy");
    let server = TestServer::start_with_dir(&dir, &[]).await;
    server
        .wait_for_log("compressed copy does not match its file")
        .await;
    let logs = server.logs();
    assert!(logs.contains("app.js.br"), "{logs}");
    assert!(
        !logs.contains("app.js.gz"),
        "the fresh copy is not reported: {logs}"
    );
}

#[tokio::test]
async fn range_requests_get_just_those_bytes() {
    let server = TestServer::start(&[]).await;
    let part = server
        .request("GET", "/pkg/app.js", &[("range", "bytes=10-19")])
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    let total = LARGE_JS.len();
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 10-19/{total}").as_str())
    );
    assert_eq!(part.body, &LARGE_JS.as_bytes()[10..20]);
    let tail = server
        .request("GET", "/pkg/app.js", &[("range", "bytes=-5")])
        .await;
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.body, &LARGE_JS.as_bytes()[total - 5..]);
    let beyond = server
        .request(
            "GET",
            "/pkg/app.js",
            &[("range", &format!("bytes={total}-"))],
        )
        .await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
}

/// Ranges `ServeDir` alone answered against RFC 9110 (a part spliced from another version, or
/// 416 for a range it merely cannot parse): each gets the whole file, which a server may send.
#[tokio::test]
async fn ranges_servedir_would_answer_wrongly_get_the_whole_file() {
    let server = TestServer::start(&[]).await;
    let total = LARGE_JS.len();
    let cases: [&[(&str, &str)]; 9] = [
        // 13.1.5: a validator that does not match (here, none could) must not get a part
        // of another version of the file spliced onto the one the client has.
        &[("range", "bytes=0-9"), ("if-range", "\"stale\"")],
        &[
            ("range", "bytes=0-9"),
            ("if-range", "Sat, 01 Jan 2000 00:00:00 GMT"),
        ],
        // 14.2: a unit the server does not know is ignored.
        &[("range", "items=0-5")],
        // Forms its parser does not take (the unit is case-insensitive, leading zeros and
        // spaces around commas are allowed, an empty element is ignored).
        &[("range", "Bytes=0-9")],
        &[("range", "bytes=007-9")],
        &[("range", "bytes=0-1 , 3-4")],
        &[("range", "bytes=0-9,")],
        // 14.2: a server may ignore Range; several ranges are not "unsatisfiable".
        &[("range", "bytes=0-0,5-9")],
        // 14.1.3: a suffix longer than the file means all of it.
        &[("range", "bytes=-100000000")],
    ];
    for headers in cases {
        let reply = server.request("GET", "/pkg/app.js", headers).await;
        assert!(
            reply.status == StatusCode::OK
                || (reply.status == StatusCode::PARTIAL_CONTENT
                    && reply.header("content-range")
                        == Some(format!("bytes 0-{}/{total}", total - 1).as_str())),
            "{headers:?}: {}",
            reply.status
        );
        assert_eq!(reply.body, LARGE_JS.as_bytes(), "{headers:?}");
    }
}

#[tokio::test]
async fn head_sends_the_headers_without_a_body() {
    let server = TestServer::start(&[]).await;
    let reply = server.request("HEAD", "/pkg/app.js", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        reply.header("content-length"),
        Some(LARGE_JS.len().to_string().as_str())
    );
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn paths_that_leave_the_static_directory_are_404() {
    let server = TestServer::start(&[]).await;
    let attacks = [
        "/../secret.txt",
        "/pkg/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/..%2fsecret.txt",
        "/..%2Fsecret.txt",
        "/pkg%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/pkg\\..\\..\\secret.txt",
        "/index.html%00.png",
        "/%00",
        "/leak.txt",
        "/parent/secret.txt",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
    ];
    for path in attacks {
        // Every one of them is a path a client can send as it is.
        let uri: http::Uri = path.parse().expect("a valid request target");
        let reply = server.request("GET", &uri.to_string(), &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path} must not be served"
        );
        let body = String::from_utf8_lossy(&reply.body);
        assert!(
            !body.contains("outside the static dir"),
            "{path} leaked the secret"
        );
        assert!(!body.contains("root:"), "{path} leaked /etc/passwd");
    }
}

#[tokio::test]
async fn a_file_changed_on_disk_is_served_fresh_at_once() {
    let server = TestServer::start(&[]).await;
    let file = server.static_dir().expect("fixture").join("style.css");
    let first = server.request("GET", "/style.css", &[]).await;
    let old_etag = first.header("etag").expect("ETag").to_owned();
    // A rebuilt asset, as `cargo xtask build-client` would leave it (a second later, so the
    // modification time, and with it the ETag, surely moves on).
    let new_css = "body { color: rebeccapurple; margin: 0; }\n".repeat(20);
    std::fs::write(&file, &new_css).expect("rewrite");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(later))
        .expect("set mtime");
    let reply = server.request("GET", "/style.css", &[]).await;
    assert_eq!(reply.body, new_css);
    assert_ne!(reply.header("etag"), Some(old_etag.as_str()), "a new ETag");
    let revalidated = server
        .request("GET", "/style.css", &[("if-none-match", &old_etag)])
        .await;
    assert_eq!(
        revalidated.status,
        StatusCode::OK,
        "the old ETag no longer matches"
    );
    std::fs::remove_file(&file).expect("remove");
    let deleted = server.request("GET", "/style.css", &[]).await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_built_page_is_served_for_the_root_and_files_named_by_their_hash_are_immutable() {
    let server = TestServer::start(&[]).await;
    let root = server.static_dir().expect("fixture");
    // Before a build: the source page.
    assert_eq!(server.request("GET", "/", &[]).await.body, INDEX_HTML);
    // What `cargo xtask build-client` writes: the page naming hashed files, and those files.
    const BUILT: &str = "<!doctype html><script src=\"/pkg/app.0123456789abcdef.js\"></script>\n";
    std::fs::write(root.join("pkg/index.html"), BUILT).expect("write");
    std::fs::write(root.join("pkg/app.0123456789abcdef.js"), "0;\n").expect("write");
    for path in ["/", "/index.html", "/?room=lobby&name=ana"] {
        let reply = server.request("GET", path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.body, BUILT, "{path}");
        assert_eq!(reply.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8")
        );
    }
    let hashed = server
        .request("GET", "/pkg/app.0123456789abcdef.js", &[])
        .await;
    assert_eq!(hashed.status, StatusCode::OK);
    assert_eq!(
        hashed.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    // A name without a hash revalidates, in /pkg/ too.
    for path in ["/pkg/app.js", "/style.css"] {
        let reply = server.request("GET", path, &[]).await;
        assert_eq!(
            reply.header("cache-control"),
            Some("public, max-age=0, must-revalidate"),
            "{path}"
        );
    }
}
