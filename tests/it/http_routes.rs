//! Plain HTTP answers: `/greet/{name}`, refused handshakes, 404 and 405.

use http::StatusCode;

use crate::support::TestServer;

const UPGRADE: &[(&str, &str)] = &[
    ("connection", "Upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

fn upgrade_with(
    changes: &[(&'static str, Option<&'static str>)],
) -> Vec<(&'static str, &'static str)> {
    let mut headers: Vec<_> = UPGRADE.to_vec();
    for (name, value) in changes {
        headers.retain(|(existing, _)| existing != name);
        if let Some(value) = value {
            headers.push((name, value));
        }
    }
    headers
}

#[tokio::test]
async fn greet_answers_with_the_decoded_name() {
    let server = TestServer::start(&[]).await;
    for (path, expected) in [
        ("/greet/World", "Greetings World!"),
        ("/greet/W%C3%B6rld%20%F0%9F%91%8B", "Greetings Wörld 👋!"),
        ("/greet/a%2Fb", "Greetings a/b!"),
    ] {
        let reply = server.request("GET", path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(reply.body, expected, "{path}");
    }
}

#[tokio::test]
async fn greet_refuses_bad_names_and_methods() {
    let server = TestServer::start(&[]).await;
    assert_eq!(
        server.request("GET", "/greet/", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.request("GET", "/greet/a/b", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.request("GET", "/greet/%FF", &[]).await.status,
        StatusCode::BAD_REQUEST
    );
    let reply = server.request("DELETE", "/greet/World", &[]).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn websocket_routes_without_upgrade_get_426_with_instructions() {
    let server = TestServer::start(&[]).await;
    for path in ["/subscriptions", "/echo", "/mirror"] {
        let reply = server.request("GET", path, &[]).await;
        assert_eq!(reply.status, StatusCode::UPGRADE_REQUIRED, "{path}");
        assert_eq!(reply.header("upgrade"), Some("websocket"));
        let body = String::from_utf8_lossy(&reply.body);
        assert!(body.contains("WebSocket client"), "{body}");
        assert_eq!(body.trim().lines().count(), 1, "one line: {body}");
    }
}

#[tokio::test]
async fn handshake_problems_get_their_own_status() {
    let server = TestServer::start(&[]).await;
    let reply = server
        .request(
            "GET",
            "/subscriptions",
            &upgrade_with(&[("sec-websocket-key", None)]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&reply.body).contains("Sec-WebSocket-Key"));

    let reply = server
        .request(
            "GET",
            "/subscriptions",
            &upgrade_with(&[("sec-websocket-version", Some("8"))]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UPGRADE_REQUIRED);
    assert_eq!(reply.header("sec-websocket-version"), Some("13"));

    for method in ["POST", "PUT"] {
        let reply = server.request(method, "/subscriptions", UPGRADE).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.header("allow"), Some("GET"));
    }
}

#[tokio::test]
async fn foreign_origins_are_refused_and_own_or_listed_ones_accepted() {
    let server = TestServer::start(&["--allowed-origin", "https://app.example"]).await;
    let own = format!("http://{}", server.addr);
    let own_host_other_scheme = format!("evil://{}", server.addr);
    let cases = [
        (Some("https://evil.example"), StatusCode::FORBIDDEN),
        (Some("null"), StatusCode::FORBIDDEN),
        // The server's host, but no page's origin: only http and https are.
        (Some(own_host_other_scheme.as_str()), StatusCode::FORBIDDEN),
        (Some(own.as_str()), StatusCode::SWITCHING_PROTOCOLS),
        (Some("https://app.example"), StatusCode::SWITCHING_PROTOCOLS),
        (None, StatusCode::SWITCHING_PROTOCOLS),
    ];
    for (origin, expected) in cases {
        let mut headers = UPGRADE.to_vec();
        if let Some(origin) = origin {
            headers.push(("origin", origin));
        }
        let reply = server.request("GET", "/subscriptions", &headers).await;
        assert_eq!(reply.status, expected, "origin {origin:?}");
    }
    // Two origins are no browser's, whichever comes first.
    let mut headers = UPGRADE.to_vec();
    headers.extend([("origin", own.as_str()), ("origin", "https://evil.example")]);
    let reply = server.request("GET", "/subscriptions", &headers).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    server
        .wait_for_log("refused a WebSocket from a foreign origin")
        .await;
    assert!(
        server.logs().contains("evil.example"),
        "the refused origin is logged"
    );
    let logs = server.logs();
    assert!(
        logs.contains("proxy_set_header Host $http_host") && logs.contains("--allowed-origin"),
        "the refusal says how to fix it: {logs}"
    );
}

#[tokio::test]
async fn unknown_paths_get_404_and_other_methods_405() {
    let server = TestServer::start(&[]).await;
    // A missing file, a path no file could have, and a route's malformed path: one answer.
    for path in ["/no/such/file.txt", "/a%00b", "/greet/"] {
        let reply = server.request("GET", path, &[]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.body, "Not found.\n", "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{path}"
        );
    }
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/index.html", "/healthz", "/readyz"] {
            let reply = server.request(method, path, &[]).await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method} {path}");
        }
    }
}

/// A method, a path and request headers.
type Request = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let server = TestServer::start(&[]).await;
    let policy = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
                  img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                  frame-ancestors 'none'";
    let requests: [Request; 6] = [
        ("GET", "/", &[]),
        ("GET", "/pkg/app.js", &[("accept-encoding", "br")]),
        ("GET", "/missing", &[]),
        ("GET", "/greet/you", &[]),
        ("GET", "/subscriptions", &[]),
        ("POST", "/", &[]),
    ];
    for (method, path, headers) in requests {
        let reply = server.request(method, path, headers).await;
        assert_eq!(
            reply.header("content-security-policy"),
            Some(policy),
            "{method} {path}"
        );
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{method} {path}"
        );
        assert_eq!(
            reply.header("referrer-policy"),
            Some("no-referrer"),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn connect_sources_widen_only_connect_src() {
    let server = TestServer::start(&[
        "--connect-src",
        "ws://other-server.example",
        "--connect-src=wss://chat.example",
    ])
    .await;
    let reply = server.request("GET", "/", &[]).await;
    let policy = reply.header("content-security-policy").unwrap_or_default();
    assert!(
        policy.contains("; connect-src 'self' ws://other-server.example wss://chat.example;"),
        "{policy}"
    );
    assert!(
        policy.contains("script-src 'self' 'wasm-unsafe-eval';"),
        "{policy}"
    );
}

#[tokio::test]
async fn requests_rfc_9112_refuses_get_400_and_paths_that_name_no_file_404() {
    use crate::handshake::{exchange, request};
    let server = TestServer::start(&[]).await;
    let addr = server.addr;
    let host = format!("Host: {addr}");
    // RFC 9112 3.2: an HTTP/1.1 request without Host, with two, or with one that is not a
    // host and port; 3.2.3: a target in authority form, which is for CONNECT only.
    for (request_line, lines) in [
        ("GET /style.css HTTP/1.1", vec![]),
        (
            "GET /style.css HTTP/1.1",
            vec![host.clone(), "Host: elsewhere.example".into()],
        ),
        ("GET /style.css HTTP/1.1", vec!["Host: a b".into()]),
        (
            "GET /style.css HTTP/1.1",
            vec!["Host: user@example.com".into()],
        ),
        ("GET example.com:80 HTTP/1.1", vec![host.clone()]),
        // HTTP/1.0 may send no Host, but never two or an invalid one.
        (
            "GET /style.css HTTP/1.0",
            vec!["Host: a".into(), "Host: b".into()],
        ),
        ("GET /style.css HTTP/1.0", vec!["Host: a b".into()]),
    ] {
        let reply = exchange(addr, &request(request_line, &lines)).await;
        assert_eq!(
            reply.status_line().split(' ').nth(1),
            Some("400"),
            "{request_line} {lines:?}"
        );
        reply.assert_refused(reply.status_line(), "");
    }
    // HTTP/1.0 has no Host to require; an empty Host is what a target without authority has.
    for (request_line, lines, status_line) in [
        ("GET /style.css HTTP/1.0", vec![], "HTTP/1.0 200 OK"),
        (
            "GET /style.css HTTP/1.1",
            vec!["Host:".to_owned()],
            "HTTP/1.1 200 OK",
        ),
        (
            "GET /style.css HTTP/1.1",
            vec!["Host: [::1]:8080".to_owned()],
            "HTTP/1.1 200 OK",
        ),
    ] {
        let reply = exchange(addr, &request(request_line, &lines)).await;
        assert_eq!(reply.status_line(), status_line, "{lines:?}");
    }
    // Hidden files are not served, whatever the static directory holds; `.well-known` is.
    let served_dir = server.static_dir().expect("the fixture");
    std::fs::create_dir_all(served_dir.join(".well-known")).expect("mkdir");
    std::fs::write(
        served_dir.join(".well-known/security.txt"),
        "Contact: mailto:security@example.com\n",
    )
    .expect("write");
    std::fs::write(served_dir.join(".env"), "SECRET=1\n").expect("write");
    std::fs::write(served_dir.join("pkg/.gitignore"), "*\n").expect("write");
    let well_known = exchange(
        addr,
        &request(
            "GET /.well-known/security.txt HTTP/1.1",
            std::slice::from_ref(&host),
        ),
    )
    .await;
    assert_eq!(well_known.status_line(), "HTTP/1.1 200 OK");
    // Paths that name no file: a name longer than a file system takes (was 500), a path
    // that starts with an empty segment, which `ServeDir` redirected to `//pkg/` (a browser
    // reads that as the host `pkg`), and hidden files.
    for path in [
        format!("/{}", "a".repeat(256)),
        format!("/pkg/{}.js", "a".repeat(300)),
        "//pkg".into(),
        "//style.css".into(),
        "/.env".into(),
        "/%2eenv".into(),
        "/pkg/.gitignore".into(),
    ] {
        let reply = exchange(
            addr,
            &request(&format!("GET {path} HTTP/1.1"), std::slice::from_ref(&host)),
        )
        .await;
        assert_eq!(reply.status_line(), "HTTP/1.1 404 Not Found", "{path}");
        assert_eq!(reply.header("location"), None, "{path}");
    }
}
