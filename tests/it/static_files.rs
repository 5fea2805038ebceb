//! Static files: MIME types, caching headers, revalidation, compression, HEAD, traversal.

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
    brotli_decompressor::Decompressor::new(body, 4096)
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
        let cache = reply.header("cache-control").unwrap_or_default();
        assert!(
            cache == "no-cache" || cache.contains("must-revalidate"),
            "{path}: {cache}"
        );
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
async fn compressible_files_are_sent_gzip_or_brotli_by_accept_encoding() {
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

    // The copies are made once and stored: sent with a length (not streamed), marked as
    // varying by encoding, each with its own ETag, which revalidates.
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
async fn a_gz_file_on_disk_is_served_when_asked_for_by_name() {
    // Next to a file held in memory, `X.gz` is what the server negotiates for `X`; asked
    // for by name, it is the file on disk like any other.
    let server = TestServer::start(&[]).await;
    let dir = server.static_dir().expect("fixture");
    let text = "plain notes, plain notes, plain notes, plain notes\n".repeat(10);
    std::fs::write(dir.join("notes.txt"), &text).expect("write");
    std::fs::write(dir.join("notes.txt.gz"), "not the server's copy").expect("write");
    let by_name = server.request("GET", "/notes.txt.gz", &[]).await;
    assert_eq!(by_name.status, StatusCode::OK);
    assert_eq!(by_name.body, "not the server's copy");
    let negotiated = server
        .request("GET", "/notes.txt", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(negotiated.header("content-encoding"), Some("gzip"));
    let decoded = gunzip(&negotiated.body);
    assert_eq!(decoded, text);
    let missing = server
        .request("GET", "/missing.js", &[("accept-encoding", "gzip, br")])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn browsers_arriving_together_share_one_compressed_copy() {
    let server = TestServer::start(&["--log", "info,server::compressed=debug"]).await;
    let dir = server.static_dir().expect("fixture");
    let script = "export const greeting = 'hello';\n".repeat(2000);
    std::fs::write(dir.join("fresh.js"), &script).expect("write");
    let requests = (0..20).map(|_| {
        server.request(
            "GET",
            "/fresh.js",
            &[("accept-encoding", "gzip, deflate, br")],
        )
    });
    for reply in futures_util::future::join_all(requests).await {
        assert_eq!(reply.header("content-encoding"), Some("br"));
    }
    server.wait_for_log("compressed a static file").await;
    let made = server.logs().matches("compressed a static file").count();
    assert_eq!(
        made, 1,
        "one brotli copy for 20 requests that came together"
    );
}

#[tokio::test]
async fn range_requests_get_just_those_bytes() {
    // Whole files are sent from memory as they are; a range must still be cut out of them.
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
        let Ok(uri) = path.parse::<http::Uri>() else {
            // A path hyper refuses to even send cannot reach the server either.
            continue;
        };
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
async fn a_file_changed_on_disk_is_served_fresh_within_about_a_second() {
    let server = TestServer::start(&[]).await;
    let file = server.static_dir().expect("fixture").join("style.css");
    let first = server.request("GET", "/style.css", &[]).await;
    let old_etag = first.header("etag").expect("ETag").to_owned();
    // A rebuilt asset, as `cargo xtask build-client` would leave it.
    // Long enough that its compressed copy is smaller, so one is made and stored.
    let new_css = "body { color: rebeccapurple; margin: 0; }\n".repeat(20);
    std::fs::write(&file, &new_css).expect("rewrite");
    let changed_at = std::time::Instant::now();
    loop {
        let reply = server.request("GET", "/style.css", &[]).await;
        if reply.body == new_css {
            assert_ne!(reply.header("etag"), Some(old_etag.as_str()), "a new ETag");
            let compressed = server
                .request("GET", "/style.css", &[("accept-encoding", "gzip")])
                .await;
            let decoded = gunzip(&compressed.body);
            assert_eq!(decoded, new_css, "a new copy");
            assert!(
                compressed.header("content-length").is_some(),
                "a stored copy"
            );
            let revalidated = server
                .request("GET", "/style.css", &[("if-none-match", &old_etag)])
                .await;
            assert_eq!(
                revalidated.status,
                StatusCode::OK,
                "the old ETag no longer matches"
            );
            break;
        }
        assert_eq!(
            reply.body, first.body,
            "either the old or the new file, never a mix"
        );
        assert!(
            changed_at.elapsed() < std::time::Duration::from_secs(3),
            "the change was not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Deleted files are not served from memory.
    std::fs::remove_file(&file).expect("remove");
    let deleted_at = std::time::Instant::now();
    while server.request("GET", "/style.css", &[]).await.status != StatusCode::NOT_FOUND {
        assert!(
            deleted_at.elapsed() < std::time::Duration::from_secs(3),
            "still served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
