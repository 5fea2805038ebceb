//! End to end in a real headless Chromium, driven through chromedriver: the page served by the
//! release server, typed into with real key events. This also proves the release wasm (after
//! wasm-opt) loads in a browser, which `wasm-pack test` cannot.
//!
//! Needs Chromium, chromedriver and the built client, so the tests are ignored by a plain
//! `cargo test`; `cargo xtask test` installs and builds all three and runs them.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::support::{Nginx, TestCertificate, TestServer};

/// The WebDriver code for the Enter key.
const ENTER: &str = "\u{E007}";

/// The repository's `static/` (or `$STATIC_DIR`), which must hold the built client.
fn built_static_dir() -> PathBuf {
    let dir = std::env::var_os("STATIC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../static")));
    assert!(
        dir.join("pkg/web_client_bg.wasm").exists(),
        "the web client is not built in {dir:?}: run `cargo xtask build-client`"
    );
    dir
}

/// The shared headless browser, with what these tests ask of the page.
struct Browser {
    headless: headless::Browser,
}

impl Browser {
    async fn start() -> Browser {
        Browser::start_with_args(&[]).await
    }

    async fn start_with_args(extra_args: &[&str]) -> Browser {
        let headless = headless::Browser::start_with_args(extra_args)
            .await
            .unwrap_or_else(|error| panic!("the browser starts: {error}"));
        Browser { headless }
    }

    async fn log_lines(&self) -> Vec<String> {
        let script =
            "return Array.from(document.querySelectorAll('#log li'), li => li.textContent)";
        let value = self
            .client()
            .execute(script, vec![])
            .await
            .expect("script runs");
        serde_json::from_value(value).expect("a list of strings")
    }

    async fn status(&self) -> (String, String) {
        let script =
            "const s = document.getElementById('status'); return [s.dataset.status, s.textContent]";
        let value = self
            .client()
            .execute(script, vec![])
            .await
            .expect("script runs");
        serde_json::from_value(value).expect("two strings")
    }

    async fn wait_for_status(&self, key: &str) -> String {
        self.wait_until(&format!("status {key}"), async || {
            let (current, text) = self.status().await;
            (current == key).then_some(text)
        })
        .await
    }

    /// Polls `check` until it returns `Some` (at most 20 s): the page changes on its own time.
    async fn wait_until<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; log: {:?}",
                    self.log_lines().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The element with this id; it must exist.
    async fn element(&self, id: &str) -> fantoccini::elements::Element {
        let locator = Locator::Id(id);
        let found = self.client().find(locator).await;
        found.unwrap_or_else(|error| panic!("no #{id} on the page: {error}"))
    }

    /// Types `text` into the message input and presses Enter, as a person would.
    async fn type_message(&self, text: &str) {
        let input = self.element("message").await;
        input
            .send_keys(&format!("{text}{ENTER}"))
            .await
            .expect("typing works");
    }

    /// Types `text` and waits until the conversation shows `answers` copies of it from the
    /// server.
    async fn type_and_wait_for_answers(&self, text: &str, answers: usize) {
        self.type_message(text).await;
        let line = format!("Server: {text}");
        self.wait_until(&format!("{answers} answers to {text}"), async || {
            (count(&self.log_lines().await, &line) == answers).then_some(())
        })
        .await;
    }

    /// Records from here on what would reach the console as an error.
    async fn watch_for_errors(&self) {
        let watch = "window.__errors = []; \
            addEventListener('error', e => __errors.push(String(e.message || e.type))); \
            addEventListener('unhandledrejection', e => __errors.push(String(e.reason)));";
        self.client()
            .execute(watch, vec![])
            .await
            .expect("script runs");
    }

    /// The WebDriver client of the shared browser.
    fn client(&self) -> &Client {
        &self.headless.client
    }

    async fn console(&self) -> Vec<(String, String)> {
        self.headless
            .console()
            .await
            .unwrap_or_else(|error| panic!("chromedriver returns the browser log: {error}"))
    }

    /// No Content-Security-Policy violation was logged.
    async fn assert_no_csp_violations(&self) -> Vec<(String, String)> {
        let console = self.console().await;
        let violations: Vec<_> = console
            .iter()
            .filter(|(_, message)| message.contains("Content Security Policy"))
            .collect();
        assert!(violations.is_empty(), "CSP violations: {violations:?}");
        console
    }

    /// Nothing threw on the page since [`Browser::watch_for_errors`].
    async fn assert_no_errors(&self) {
        let errors = self
            .client()
            .execute("return window.__errors", vec![])
            .await
            .expect("runs");
        assert_eq!(errors, json!([]), "errors on the page");
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client().screenshot().await.expect("screenshot");
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/e2e"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), png).expect("write screenshot");
    }
}

/// The release server serving the built client, and a browser on `path_and_query` of it.
async fn open_page(path_and_query: &str) -> (TestServer, Browser) {
    open_page_of(&[], path_and_query).await
}

/// Like [`open_page`], with a server started with `server_args`.
async fn open_page_of(server_args: &[&str], path_and_query: &str) -> (TestServer, Browser) {
    let server = TestServer::start_with_dir(&built_static_dir(), server_args).await;
    let browser = Browser::start().await;
    browser
        .client()
        .goto(&format!("http://{}{path_and_query}", server.addr))
        .await
        .expect("page loads");
    (server, browser)
}

fn count(lines: &[String], line: &str) -> usize {
    lines.iter().filter(|candidate| *candidate == line).count()
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_conversation_in_a_real_browser() {
    let (_server, browser) = open_page("/").await;
    browser.watch_for_errors().await;
    // Compression is off unless the server is asked for it.
    assert_eq!(browser.wait_for_status("open").await, "Connected");

    browser.type_message("foo").await;
    browser.type_message("hello").await;
    let input = browser.element("message").await;
    assert_eq!(
        input.prop("value").await.expect("value").as_deref(),
        Some(""),
        "input clears"
    );
    let lines = browser
        .wait_until("ten hellos", async || {
            let lines = browser.log_lines().await;
            (count(&lines, "Server: hello") == 10).then_some(lines)
        })
        .await;
    assert_eq!(lines[0], "Server: Greetings!");
    assert_eq!(count(&lines, "You: foo"), 1);
    assert_eq!(count(&lines, "Server: bar"), 1);
    assert_eq!(count(&lines, "You: hello"), 1);
    browser.screenshot("conversation.png").await;

    // A normal session leaves the console clean: every resource the page loaded (the favicon
    // too) answered below 400, and nothing threw.
    let script = "return performance.getEntriesByType('resource')
        .concat(performance.getEntriesByType('navigation'))
        .map(e => [e.name, e.responseStatus])";
    let loaded = browser
        .client()
        .execute(script, vec![])
        .await
        .expect("script runs");
    let loaded: Vec<(String, u16)> = serde_json::from_value(loaded).expect("name, status pairs");
    assert!(
        loaded
            .iter()
            .any(|(name, _)| name.ends_with("/favicon.svg")),
        "{loaded:?}"
    );
    assert!(
        loaded.iter().any(|(name, _)| name.ends_with(".wasm")),
        "{loaded:?}"
    );
    for (name, status) in &loaded {
        assert!(*status < 400, "{name} answered {status}");
    }
    browser.assert_no_errors().await;
    // The console is clean from the first byte: no CSP violation, nothing failed to load, no
    // preload left unused (which would mean the wasm was fetched twice).
    let console = browser.assert_no_csp_violations().await;
    let problems: Vec<_> = console
        .iter()
        .filter(|(level, message)| level == "SEVERE" || message.contains("preload"))
        .collect();
    assert!(problems.is_empty(), "console: {problems:?}");

    browser.type_message("end").await;
    let status = browser.wait_for_status("closed").await;
    assert!(
        status.contains("1000"),
        "status shows the close code: {status}"
    );
    let reconnect = browser.element("reconnect").await;
    assert!(
        reconnect.is_displayed().await.expect("displayed"),
        "Reconnect is offered"
    );
    assert_eq!(count(&browser.log_lines().await, "You: end"), 1);
    browser.screenshot("closed.png").await;

    // The Reconnect button (pressed with the keyboard) opens a new session.
    reconnect.send_keys(ENTER).await.expect("press Reconnect");
    browser.wait_for_status("open").await;
    browser
        .wait_until("a second greeting", async || {
            (count(&browser.log_lines().await, "Server: Greetings!") == 2).then_some(())
        })
        .await;
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn with_compression_the_browser_negotiates_permessage_deflate_and_talks_through_it() {
    let (_server, browser) = open_page_of(&["--compression"], "/").await;
    browser.watch_for_errors().await;
    assert_eq!(
        browser.wait_for_status("open").await,
        "Connected (compressed)"
    );
    let script = "return document.getElementById('status').dataset.extensions";
    let extensions = browser
        .client()
        .execute(script, vec![])
        .await
        .expect("script runs");
    assert_eq!(
        extensions.as_str(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        "the page's WebSocket.extensions"
    );
    // Chromium compresses what it sends; the server compresses replies of 128 bytes or more.
    let long = "a message long enough to be compressed on the way back, ".repeat(4);
    let long = long.trim_end();
    browser.type_message("foo").await;
    browser.type_and_wait_for_answers(long, 10).await;
    browser.type_and_wait_for_answers("short one", 10).await;
    let lines = browser.log_lines().await;
    assert_eq!(lines[0], "Server: Greetings!");
    assert_eq!(count(&lines, "Server: bar"), 1);
    browser.assert_no_errors().await;
    browser.assert_no_csp_violations().await;
    browser.screenshot("compressed.png").await;
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn messages_typed_while_the_server_is_down_are_delivered_once_after_restart() {
    let (mut server, browser) = open_page("/").await;
    let (static_dir, addr) = (built_static_dir(), server.addr.to_string());
    browser.wait_for_status("open").await;

    server.signal("TERM");
    assert!(server.wait().await.success());
    browser.wait_for_status("reconnecting").await;
    browser.type_message("first").await;
    browser.type_message("second").await;
    let queued = browser.element("queued").await;
    assert_eq!(
        queued.text().await.expect("text"),
        "2 messages waiting to be sent"
    );
    browser.screenshot("reconnecting.png").await;

    // Same port again, as a restarted deployment would be.
    let _restarted = TestServer::start_with_dir(&static_dir, &["--addr", &addr]).await;
    let lines = browser
        .wait_until("both messages answered", async || {
            let lines = browser.log_lines().await;
            let done =
                count(&lines, "Server: first") == 10 && count(&lines, "Server: second") == 10;
            done.then_some(lines)
        })
        .await;
    assert_eq!(count(&lines, "You: first"), 1, "{lines:?}");
    assert_eq!(count(&lines, "You: second"), 1, "{lines:?}");
    let first = lines.iter().position(|line| line == "You: first");
    let second = lines.iter().position(|line| line == "You: second");
    assert!(first < second, "sent in the order typed: {lines:?}");
    assert_eq!(
        count(&lines, "Server: Greetings!"),
        2,
        "one greeting per connection"
    );
    assert_eq!(
        queued.text().await.expect("text"),
        "",
        "the queue is empty again"
    );
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn nothing_typed_is_lost_when_the_server_hangs_then_dies_then_comes_back() {
    const REPLY_TIMEOUT_SECONDS: u64 = 2;
    let (mut server, browser) =
        open_page(&format!("/?reply-timeout={REPLY_TIMEOUT_SECONDS}")).await;
    let (static_dir, addr) = (built_static_dir(), server.addr.to_string());
    browser.watch_for_errors().await;
    browser.wait_for_status("open").await;
    browser.type_and_wait_for_answers("one", 10).await;

    // The server hangs: the browser takes the messages into a socket nobody reads.
    server.signal("STOP");
    let hung_at = tokio::time::Instant::now();
    browser.type_message("two").await;
    browser.type_message("three").await;
    let notice = format!("The server has not answered for {REPLY_TIMEOUT_SECONDS} s");
    browser
        .wait_until("the hang noticed", async || {
            let lines = browser.log_lines().await;
            lines
                .iter()
                .any(|line| line.starts_with(&notice))
                .then_some(())
        })
        .await;
    let noticed_after = hung_at.elapsed();
    assert!(
        noticed_after <= Duration::from_secs(REPLY_TIMEOUT_SECONDS + 1),
        "the hang was noticed after {noticed_after:?}"
    );
    browser.screenshot("hung.png").await;
    browser.type_message("four").await;

    // The server dies; the page keeps what was typed while it is down.
    server.signal("KILL");
    server.wait().await;
    browser.type_message("five").await;

    // Same port again, as a restarted deployment would be.
    let _restarted = TestServer::start_with_dir(&static_dir, &["--addr", &addr]).await;
    let typed = ["two", "three", "four", "five"];
    let lines = browser
        .wait_until("every message answered", async || {
            let lines = browser.log_lines().await;
            typed
                .iter()
                .all(|text| count(&lines, &format!("Server: {text}")) >= 10)
                .then_some(lines)
        })
        .await;
    for text in typed {
        assert_eq!(
            count(&lines, &format!("Server: {text}")),
            10,
            "{text} answered exactly ten times: {lines:?}"
        );
    }
    // Answered in the order typed: each message's first answer comes after the previous
    // message's last.
    let first = |line: String| lines.iter().position(|l| *l == line);
    let last = |line: String| lines.iter().rposition(|l| *l == line);
    for pair in typed.windows(2) {
        assert!(
            last(format!("Server: {}", pair[0])) < first(format!("Server: {}", pair[1])),
            "{} before {}: {lines:?}",
            pair[0],
            pair[1]
        );
    }
    // Those the hung server swallowed were sent again, and the page says so.
    for text in ["two", "three"] {
        assert!(
            first(format!("You (sent again): {text}")).is_some(),
            "{lines:?}"
        );
    }
    let queued = browser.element("queued").await;
    assert_eq!(queued.text().await.expect("text"), "", "nothing waits");
    browser.assert_no_errors().await;
    browser.assert_no_csp_violations().await;
    browser.screenshot("recovered.png").await;
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs nginx, Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn behind_nginx_the_page_moves_to_the_other_instance_when_its_instance_dies() {
    let static_dir = built_static_dir();
    // Upgrades are logged at debug: that tells which instance holds the page's socket.
    let debug = ["--log", "info,server=debug"];
    let mut first = TestServer::start_with_dir(&static_dir, &debug).await;
    let mut second = TestServer::start_with_dir(&static_dir, &debug).await;
    // The shipped file, with the instances and the port of this test put in: its upstream's
    // `server` lines, in order, and its `listen` line.
    let port = Nginx::free_port();
    let shipped = crate::deployment::shipped_nginx_conf();
    let mut instances = [first.addr, second.addr].into_iter();
    let config: Vec<String> = shipped
        .lines()
        .map(|line| match line.trim_start().strip_prefix("server ") {
            Some(rest) if rest.contains("max_fails") => {
                let instance = instances.next().expect("two upstream servers in the file");
                let options = rest.split_once(' ').map_or("", |(_, options)| options);
                format!("    server {instance} {options}")
            }
            _ if line.trim() == "listen 80;" => format!("    listen 127.0.0.1:{port};"),
            _ => line.to_owned(),
        })
        .collect();
    assert!(
        instances.next().is_none(),
        "deploy/nginx.conf lists two instances"
    );
    let config = config.join("\n");
    assert!(
        config.contains(&format!("listen 127.0.0.1:{port};")),
        "{config}"
    );
    let nginx = Nginx::start(&config, port).await;

    let browser = Browser::start().await;
    browser
        .client()
        .goto(&format!("http://{}/?reply-timeout=2", nginx.addr))
        .await
        .expect("page loads");
    browser.watch_for_errors().await;
    browser.wait_for_status("open").await;
    browser.type_and_wait_for_answers("one", 10).await;
    const UPGRADED: &str = "upgrading to WebSocket";
    let (holder, other) = if first.logs().contains(UPGRADED) {
        (&mut first, &second)
    } else {
        (&mut second, &first)
    };
    assert!(!other.logs().contains(UPGRADED), "one socket, one instance");

    holder.signal("KILL");
    holder.wait().await;
    browser.type_message("two").await;
    let lines = browser
        .wait_until("two answered by the other instance", async || {
            let lines = browser.log_lines().await;
            (count(&lines, "Server: two") == 10).then_some(lines)
        })
        .await;
    assert_eq!(count(&lines, "Server: Greetings!"), 2, "{lines:?}");
    assert!(other.logs().contains(UPGRADED), "{}", other.logs());
    let queued = browser.element("queued").await;
    assert_eq!(queued.text().await.expect("text"), "", "nothing waits");
    browser.assert_no_errors().await;
    browser.assert_no_csp_violations().await;
    assert!(
        !nginx.error_log().contains("[emerg]"),
        "{}",
        nginx.error_log()
    );
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn over_https_the_page_talks_over_wss() {
    let certificate = TestCertificate::new();
    let server = TestServer::start_with_dir(
        &built_static_dir(),
        &[
            "--tls-cert",
            &certificate.cert_path(),
            "--tls-key",
            &certificate.key_path(),
        ],
    )
    .await;
    assert!(server.tls);
    // The certificate is the test's own: Chromium is told to accept it.
    let browser = Browser::start_with_args(&["--ignore-certificate-errors"]).await;
    browser
        .client()
        .goto(&format!("https://{}/", server.addr))
        .await
        .expect("page loads");
    browser.watch_for_errors().await;
    browser.wait_for_status("open").await;
    let scheme = browser
        .client()
        .execute("return location.protocol", vec![])
        .await
        .expect("script runs");
    assert_eq!(scheme, json!("https:"));
    browser.type_message("foo").await;
    browser
        .wait_until("bar over wss", async || {
            (count(&browser.log_lines().await, "Server: bar") == 1).then_some(())
        })
        .await;
    // That answer came over wss: a page served over https cannot open a ws: socket (mixed
    // content), and the server speaks nothing but TLS on its port.
    browser.assert_no_errors().await;
    browser.assert_no_csp_violations().await;
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}
