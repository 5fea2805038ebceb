//! End to end in a real headless Chromium, driven through chromedriver: the page served by the
//! release server, typed into with real key events. This also proves the release wasm (after
//! wasm-opt) loads in a browser, which `wasm-pack test` cannot.
//!
//! Needs Chromium, chromedriver and the built client, so the tests are ignored by a plain
//! `cargo test`; `cargo xtask test` installs and builds all three and runs them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::support::{Nginx, TestCertificate, TestServer};

/// The WebDriver code for the Enter key.
const ENTER: &str = "\u{E007}";

/// The repository's `static/` (or `$STATIC_DIR`), which must hold the built client.
pub(crate) fn built_static_dir() -> PathBuf {
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
pub(crate) struct Browser {
    headless: headless::Browser,
}

impl Browser {
    pub(crate) async fn start() -> Browser {
        Browser::start_with_args(&[]).await
    }

    pub(crate) async fn start_with_args(extra_args: &[&str]) -> Browser {
        let headless = headless::Browser::start_with_args(extra_args)
            .await
            .unwrap_or_else(|error| panic!("the browser starts: {error}"));
        Browser { headless }
    }

    /// Runs one DevTools command on the page (see [`headless::Browser::devtools`]).
    pub(crate) async fn devtools(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        self.headless
            .devtools(method, params)
            .await
            .unwrap_or_else(|error| panic!("{method}: {error}"))
    }

    pub(crate) async fn log_lines(&self) -> Vec<String> {
        let script =
            "return Array.from(document.querySelectorAll('#log li'), li => li.textContent)";
        let value = self
            .client()
            .execute(script, vec![])
            .await
            .expect("script runs");
        serde_json::from_value(value).expect("a list of strings")
    }

    pub(crate) async fn status(&self) -> (String, String) {
        let script =
            "const s = document.getElementById('status'); return [s.dataset.status, s.textContent]";
        let value = self
            .client()
            .execute(script, vec![])
            .await
            .expect("script runs");
        serde_json::from_value(value).expect("two strings")
    }

    pub(crate) async fn wait_for_status(&self, key: &str) -> String {
        self.wait_until(&format!("status {key}"), async || {
            let (current, text) = self.status().await;
            (current == key).then_some(text)
        })
        .await
    }

    /// Polls `check` until it returns `Some` (at most 20 s): the page changes on its own time.
    pub(crate) async fn wait_until<T>(
        &self,
        what: &str,
        mut check: impl AsyncFnMut() -> Option<T>,
    ) -> T {
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
    pub(crate) async fn element(&self, id: &str) -> fantoccini::elements::Element {
        let locator = Locator::Id(id);
        let found = self.client().find(locator).await;
        found.unwrap_or_else(|error| panic!("no #{id} on the page: {error}"))
    }

    /// Types `text` into the message input and presses Enter, as a person would.
    pub(crate) async fn type_message(&self, text: &str) {
        let input = self.element("message").await;
        input
            .send_keys(&format!("{text}{ENTER}"))
            .await
            .expect("typing works");
    }

    /// Types `text` and waits until the conversation shows `answers` copies of it from the
    /// server.
    pub(crate) async fn type_and_wait_for_answers(&self, text: &str, answers: usize) {
        self.type_message(text).await;
        let line = format!("Server: {text}");
        self.wait_until(&format!("{answers} answers to {text}"), async || {
            (count(&self.log_lines().await, &line) == answers).then_some(())
        })
        .await;
    }

    /// From the next page load on, records what the page asks of the network, in the page:
    /// each `fetch` as `[method, path, status]` in `window.__fetches` (`"failed"` when it
    /// never got an answer), the WebSockets it opens (`window.__sockets`) and each one's close
    /// code as the browser reported it (`window.__closes`). Setting `window.__failPosts = n` makes the next `n` POSTs
    /// fail as a network error would (a token service that is down), before they leave.
    pub(crate) async fn record_requests(&self) {
        let source = "window.__fetches = []; window.__sockets = 0; window.__closes = [];
            window.__failPosts = 0;
            const realFetch = window.fetch;
            window.fetch = function (url, init) {
              const method = (init && init.method) || 'GET';
              const entry = [method, new URL(String(url), location.href).pathname, null];
              __fetches.push(entry);
              if (method === 'POST' && __failPosts > 0) {
                __failPosts--; entry[2] = 'failed';
                return Promise.reject(new TypeError('Failed to fetch'));
              }
              return realFetch.apply(this, arguments).then(
                response => { entry[2] = response.status; return response; },
                error => { entry[2] = 'failed'; throw error; });
            };
            const RealSocket = window.WebSocket;
            window.WebSocket = class extends RealSocket {
              constructor(...args) {
                super(...args);
                __sockets++;
                // The browser's own closes: gloo-net dispatches a close of its own (1000,
                // client dropped) when it drops a socket, closed or not.
                this.addEventListener('close', event => event.isTrusted && __closes.push(event.code));
              }
            };";
        self.headless
            .devtools(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({ "source": source }),
            )
            .await
            .unwrap_or_else(|error| panic!("chromedriver runs the DevTools command: {error}"));
    }

    /// What [`Browser::record_requests`] saw: the fetches, the WebSockets opened, their
    /// close codes.
    pub(crate) async fn requests(&self) -> (Vec<(String, String, Value)>, u64, Vec<u16>) {
        let value = self
            .run("return [window.__fetches, window.__sockets, window.__closes]")
            .await;
        serde_json::from_value(value).expect("the recorded requests")
    }

    /// Records from here on what would reach the console as an error.
    pub(crate) async fn watch_for_errors(&self) {
        let watch = "window.__errors = []; \
            addEventListener('error', e => __errors.push(String(e.message || e.type))); \
            addEventListener('unhandledrejection', e => __errors.push(String(e.reason)));";
        self.client()
            .execute(watch, vec![])
            .await
            .expect("script runs");
    }

    /// The WebDriver client of the shared browser.
    pub(crate) fn client(&self) -> &Client {
        &self.headless.client
    }

    pub(crate) async fn console(&self) -> Vec<(String, String)> {
        self.headless
            .console()
            .await
            .unwrap_or_else(|error| panic!("chromedriver returns the browser log: {error}"))
    }

    /// No Content-Security-Policy violation was logged.
    pub(crate) async fn assert_no_csp_violations(&self) -> Vec<(String, String)> {
        let console = self.console().await;
        let violations: Vec<_> = console
            .iter()
            .filter(|(_, message)| message.contains("Content Security Policy"))
            .collect();
        assert!(violations.is_empty(), "CSP violations: {violations:?}");
        console
    }

    /// Nothing threw on the page since [`Browser::watch_for_errors`].
    pub(crate) async fn assert_no_errors(&self) {
        let errors = self
            .client()
            .execute("return window.__errors", vec![])
            .await
            .expect("runs");
        assert_eq!(errors, json!([]), "errors on the page");
    }

    /// Runs `script` on the page and returns its value.
    pub(crate) async fn run(&self, script: &str) -> serde_json::Value {
        self.client()
            .execute(script, vec![])
            .await
            .unwrap_or_else(|error| panic!("script runs: {error}: {script}"))
    }

    /// The text of the element with this id.
    pub(crate) async fn text_of(&self, id: &str) -> String {
        let value = self
            .run(&format!(
                "return document.getElementById('{id}').textContent"
            ))
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Turns the browser's network off or on through the DevTools protocol, as DevTools'
    /// "Offline" does (`navigator.onLine` and the `offline`/`online` events follow).
    pub(crate) async fn set_offline(&self, offline: bool) {
        let params = json!({
            "offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1
        });
        self.headless
            .devtools("Network.emulateNetworkConditions", params)
            .await
            .unwrap_or_else(|error| panic!("chromedriver runs the DevTools command: {error}"));
    }

    /// Records every change of the status line as `[data-status, announced, shown]`:
    /// `announced` is its text without what is hidden from screen readers (`aria-hidden`),
    /// which is what a live region speaks; `shown` is the whole text.
    pub(crate) async fn record_status_changes(&self) {
        self.run(
            "window.__statuses = [];
             const status = document.getElementById('status');
             const announced = node => node.nodeType === Node.TEXT_NODE ? node.textContent
               : (node.getAttribute && node.getAttribute('aria-hidden') === 'true') ? ''
               : Array.from(node.childNodes, announced).join('');
             const record = () => {
               const entry = [status.dataset.status, announced(status), status.textContent];
               const last = __statuses[__statuses.length - 1];
               if (!last || last.join('|') !== entry.join('|')) __statuses.push(entry);
             };
             record();
             new MutationObserver(record).observe(status,
               { subtree: true, childList: true, characterData: true, attributes: true });",
        )
        .await;
    }

    pub(crate) async fn status_changes(&self) -> Vec<(String, String, String)> {
        serde_json::from_value(self.run("return window.__statuses").await).expect("triples")
    }

    /// Reloads the page as a person would, accepting the "leave the page?" question if the
    /// page asks it; returns whether it asked.
    pub(crate) async fn reload_accepting_the_question(&self) -> bool {
        self.run("window.__before_reload = true; setTimeout(() => location.reload(), 0)")
            .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            // Asked first: any other command would dismiss the question (chromedriver's
            // default for an open prompt), which would cancel the reload.
            if self.client().get_alert_text().await.is_ok() {
                self.client()
                    .accept_alert()
                    .await
                    .expect("accept the question");
                return true;
            }
            let reloaded = self
                .client()
                .execute("return window.__before_reload === undefined", vec![])
                .await;
            if let Ok(serde_json::Value::Bool(true)) = reloaded {
                return false;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page neither reloaded nor asked"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn screenshot(&self, name: &str) {
        let png = self.client().screenshot().await.expect("screenshot");
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/e2e"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), png).expect("write screenshot");
    }
}

/// A TCP proxy between Chromium and the server, for the page as users meet it on real
/// networks: it forwards everything (so the page, served through it, talks to its own origin
/// and needs no CSP or origin flags), and on request cuts WebSocket connections after a number
/// of the server's frames, or refuses them, or cuts those that are open. The console client's
/// tests use it too.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    control: Arc<ProxyControl>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ProxyControl {
    /// Cut the next WebSocket connection after this many frames from the server.
    cut_next_after: Mutex<Option<usize>>,
    /// Cut every WebSocket connection after this many frames from the server.
    cut_every_after: Mutex<Option<usize>>,
    /// Close new WebSocket connections at once, as a server that is down would.
    refuse: AtomicBool,
    /// WebSocket connections seen, refused ones too.
    websockets: AtomicUsize,
    /// Bumped to cut every open WebSocket connection.
    cut_all: Mutex<Option<watch::Sender<u64>>>,
}

impl Proxy {
    pub(crate) async fn start(server: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let control = Arc::new(ProxyControl::default());
        let (cut_all, cut_all_rx) = watch::channel(0);
        *control.cut_all.lock().expect("lock") = Some(cut_all);
        let task = tokio::spawn({
            let control = Arc::clone(&control);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let control = Arc::clone(&control);
                    let cut_all = cut_all_rx.clone();
                    tokio::spawn(async move {
                        // A connection that breaks is what some tests ask for.
                        let _ = proxy_connection(client, server, &control, cut_all).await;
                    });
                }
            }
        });
        Proxy {
            addr,
            control,
            task,
        }
    }

    pub(crate) fn cut_next_websocket_after(&self, frames: usize) {
        *self.control.cut_next_after.lock().expect("lock") = Some(frames);
    }

    fn cut_every_websocket_after(&self, frames: Option<usize>) {
        *self.control.cut_every_after.lock().expect("lock") = frames;
    }

    /// Refuses new WebSocket connections (and cuts the open ones), or takes them again.
    fn refuse_websockets(&self, refuse: bool) {
        self.control.refuse.store(refuse, Ordering::SeqCst);
        if refuse && let Some(cut_all) = &*self.control.cut_all.lock().expect("lock") {
            cut_all.send_modify(|generation| *generation += 1);
        }
    }

    fn websocket_connections(&self) -> usize {
        self.control.websockets.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection through the [`Proxy`].
async fn proxy_connection(
    mut client: TcpStream,
    server: SocketAddr,
    control: &ProxyControl,
    mut cut_all: watch::Receiver<u64>,
) -> std::io::Result<()> {
    let head = read_http_head(&mut client).await?;
    let is_websocket = String::from_utf8_lossy(&head)
        .to_ascii_lowercase()
        .contains("upgrade: websocket");
    let mut upstream = TcpStream::connect(server).await?;
    upstream.write_all(&head).await?;
    if !is_websocket {
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        return Ok(());
    }
    control.websockets.fetch_add(1, Ordering::SeqCst);
    if control.refuse.load(Ordering::SeqCst) {
        return Ok(());
    }
    let cut_after = control
        .cut_next_after
        .lock()
        .expect("lock")
        .take()
        .or(*control.cut_every_after.lock().expect("lock"));
    cut_all.borrow_and_update();
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let upward = tokio::io::copy(&mut client_read, &mut upstream_write);
    let downward = async {
        let response = read_http_head(&mut upstream_read).await?;
        client_write.write_all(&response).await?;
        let Some(limit) = cut_after else {
            tokio::io::copy(&mut upstream_read, &mut client_write).await?;
            return Ok::<(), std::io::Error>(());
        };
        // Forward whole frames, then cut between two of them.
        let mut pending = Vec::new();
        let mut forwarded = 0;
        let mut buffer = [0u8; 16 * 1024];
        while forwarded < limit {
            while forwarded < limit {
                let Some(length) = server_frame_length(&pending) else {
                    break;
                };
                client_write.write_all(&pending[..length]).await?;
                pending.drain(..length);
                forwarded += 1;
            }
            if forwarded == limit {
                break;
            }
            let read = upstream_read.read(&mut buffer).await?;
            if read == 0 {
                return Ok(());
            }
            pending.extend_from_slice(&buffer[..read]);
        }
        Ok(())
    };
    tokio::select! {
        _ = upward => {}
        _ = downward => {}
        _ = cut_all.changed() => {}
    }
    Ok(())
}

/// Reads up to the end of an HTTP head (the blank line), and nothing after it.
async fn read_http_head(stream: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 {
            return Err(std::io::Error::other("an HTTP head over 64 KiB"));
        }
        let byte = stream.read_u8().await?;
        head.push(byte);
    }
    Ok(head)
}

/// The length of the first whole frame in `bytes` from the server (unmasked), if it is all
/// there. Written here, independent of the server's own frame code.
fn server_frame_length(bytes: &[u8]) -> Option<usize> {
    let second = *bytes.get(1)?;
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    let (header, payload) = match second & 0x7f {
        126 => (
            4,
            usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])),
        ),
        127 => {
            let length: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
            (10, usize::try_from(u64::from_be_bytes(length)).ok()?)
        }
        short => (2, usize::from(short)),
    };
    let total = header + mask + payload;
    (bytes.len() >= total).then_some(total)
}

/// The release server serving the built client, and a browser on `path_and_query` of it.
async fn open_page(path_and_query: &str) -> (TestServer, Browser) {
    open_page_of(&[], path_and_query).await
}

/// Like [`open_page`], with a server started with `server_args`.
async fn open_page_of(server_args: &[&str], path_and_query: &str) -> (TestServer, Browser) {
    open_site(&built_static_dir(), server_args, path_and_query).await
}

/// Like [`open_page_of`], with the server serving `static_dir`.
async fn open_site(
    static_dir: &std::path::Path,
    server_args: &[&str],
    path_and_query: &str,
) -> (TestServer, Browser) {
    let server = TestServer::start_with_dir(static_dir, server_args).await;
    let browser = Browser::start().await;
    browser
        .client()
        .goto(&format!("http://{}{path_and_query}", server.addr))
        .await
        .expect("page loads");
    (server, browser)
}

pub(crate) fn count(lines: &[String], line: &str) -> usize {
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
            .any(|(name, _)| name.contains("/favicon.") && name.ends_with(".svg")),
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
    // What this proves, with no upper bound a stalled machine could break: the page noticed
    // the hang by its own reply timeout. Not sooner (the bound below holds however slow the
    // machine is), and by nothing else: the server is still stopped, not killed, so no close
    // and no error could have ended the wait; `wait_until` bounds it from above (20 s).
    let noticed_after = hung_at.elapsed();
    assert!(
        noticed_after >= Duration::from_secs(REPLY_TIMEOUT_SECONDS),
        "the hang was noticed after {noticed_after:?}, before the reply timeout"
    );
    let lines = browser.log_lines().await;
    assert_eq!(
        count(&lines, "Server: two") + count(&lines, "Server: three"),
        0,
        "the stopped server answered nothing: {lines:?}"
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
    // The shipped file, with the instances and the port of this test put in.
    let port = Nginx::free_port();
    let config = crate::deployment::shipped_nginx_conf_for(&[first.addr, second.addr], port);
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

/// The server behind a [`Proxy`], and a browser on `path_and_query` of the page served through
/// the proxy: the page's own origin is the proxy's, so its socket goes through it too.
/// `configure` sets the proxy up before the page opens its first socket.
async fn open_page_through_proxy(
    path_and_query: &str,
    configure: impl FnOnce(&Proxy),
) -> (TestServer, Proxy, Browser) {
    let server = TestServer::start_with_dir(&built_static_dir(), &[]).await;
    let proxy = Proxy::start(server.addr).await;
    configure(&proxy);
    let browser = Browser::start().await;
    browser
        .client()
        .goto(&format!("http://{}{path_and_query}", proxy.addr))
        .await
        .expect("page loads");
    (server, proxy, browser)
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn an_answer_cut_in_the_middle_is_shown_exactly_ten_times_after_the_resend() {
    // The greeting, then five of hello's ten copies, then the connection breaks.
    let (_server, proxy, browser) =
        open_page_through_proxy("/", |proxy| proxy.cut_next_websocket_after(1 + 5)).await;
    browser.watch_for_errors().await;
    browser.wait_for_status("open").await;
    browser.type_message("hello").await;
    let lines = browser
        .wait_until("hello answered after the break", async || {
            let lines = browser.log_lines().await;
            let done = count(&lines, "Server: Greetings!") == 2
                && count(&lines, "Server: hello") >= 10
                && browser.text_of("queued").await.is_empty();
            done.then_some(lines)
        })
        .await;
    assert_eq!(count(&lines, "You: hello"), 1, "{lines:?}");
    assert_eq!(count(&lines, "You (sent again): hello"), 1, "{lines:?}");
    assert_eq!(
        count(&lines, "Server: hello"),
        10,
        "the five shown before the break are not shown again: {lines:?}"
    );
    assert!(proxy.websocket_connections() >= 2);
    browser.assert_no_errors().await;
    browser.screenshot("answer-cut-in-the-middle.png").await;
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_server_that_accepts_and_closes_at_once_is_not_hammered() {
    // Every connection gets its greeting and is cut right after: it opens, nothing is ever
    // answered.
    let (_server, proxy, browser) =
        open_page_through_proxy("/", |proxy| proxy.cut_every_websocket_after(Some(1))).await;
    browser.type_message("hello").await;
    browser
        .wait_until("the first connection", async || {
            (proxy.websocket_connections() >= 1).then_some(())
        })
        .await;
    // A measuring window, not a wait for readiness. Delays are drawn from windows of 0.5, 1,
    // 2, 4, 8, 16, 30 s when only an answer resets the backoff: ten connections in 8 s would
    // need nine delays adding up to under 8 s (odds below 1 in 10,000). Reset on every open,
    // every delay is under 0.5 s and ten connections take under 5 s.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let connections = proxy.websocket_connections();
    assert!(
        connections < 10,
        "{connections} connections in 8 s to a server that closes at once"
    );
    assert!(connections >= 2, "the page does retry: {connections}");
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn messages_waiting_or_unanswered_survive_a_reload_and_are_answered_once() {
    let (server, proxy, browser) = open_page_through_proxy("/?reply-timeout=30", |_| {}).await;
    browser.wait_for_status("open").await;
    browser.type_and_wait_for_answers("one", 10).await;

    // The server hangs: "two" goes out and is never answered.
    server.signal("STOP");
    browser.type_message("two").await;
    browser
        .wait_until("two sent", async || {
            (browser.text_of("queued").await == "1 message waiting for an answer").then_some(())
        })
        .await;
    // Then it is down: "three" waits to be sent.
    proxy.refuse_websockets(true);
    browser.wait_for_status("reconnecting").await;
    browser.type_message("three").await;
    server.signal("CONT");

    // Leaving now asks first.
    let asks = browser
        .run(
            "const event = new Event('beforeunload', { cancelable: true });
             dispatchEvent(event); return event.defaultPrevented",
        )
        .await;
    assert_eq!(
        asks,
        json!(true),
        "leaving with messages waiting asks first"
    );
    browser.reload_accepting_the_question().await;
    browser.watch_for_errors().await;
    browser
        .wait_until("the restored messages announced", async || {
            let lines = browser.log_lines().await;
            lines
                .iter()
                .any(|line| line.starts_with("2 messages typed before the page was reloaded"))
                .then_some(())
        })
        .await;
    browser.type_message("four").await;
    assert_eq!(
        browser.text_of("queued").await,
        "3 messages waiting to be sent"
    );

    // The server is back.
    proxy.refuse_websockets(false);
    let typed = ["two", "three", "four"];
    let lines = browser
        .wait_until("every message answered", async || {
            let lines = browser.log_lines().await;
            let done = typed
                .iter()
                .all(|text| count(&lines, &format!("Server: {text}")) >= 10)
                && browser.text_of("queued").await.is_empty();
            done.then_some(lines)
        })
        .await;
    for text in typed {
        assert_eq!(count(&lines, &format!("Server: {text}")), 10, "{lines:?}");
        assert_eq!(count(&lines, &format!("You: {text}")), 1, "{lines:?}");
    }
    let position = |line: &str| lines.iter().position(|l| l == line);
    assert!(
        position("You: two") < position("You: three")
            && position("You: three") < position("You: four"),
        "the restored ones first, in order: {lines:?}"
    );
    // Nothing waits: leaving no longer asks, and nothing is kept for a reload.
    let asks = browser
        .run(
            "const event = new Event('beforeunload', { cancelable: true });
             dispatchEvent(event); return event.defaultPrevented",
        )
        .await;
    assert_eq!(asks, json!(false));
    // Saved at most every 250 ms: the empty outbox's removal may follow the last answer.
    browser
        .wait_until("nothing kept", async || {
            (browser.run("return sessionStorage.length").await == json!(0)).then_some(())
        })
        .await;
    browser.assert_no_errors().await;
    browser.screenshot("restored-after-reload.png").await;
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_broken_saved_outbox_is_ignored_with_a_warning() {
    let (_server, browser) = open_page("/").await;
    browser.wait_for_status("open").await;
    browser
        .run("sessionStorage.setItem('web-client.outbox', 'not ours')")
        .await;
    assert!(
        !browser.reload_accepting_the_question().await,
        "nothing waits: leaving does not ask"
    );
    browser.wait_for_status("open").await;
    browser.watch_for_errors().await;
    browser.type_and_wait_for_answers("fine", 10).await;
    let console = browser.console().await;
    assert!(
        console
            .iter()
            .any(|(_, message)| message.contains("The saved messages were ignored")),
        "{console:?}"
    );
    browser.assert_no_errors().await;
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_pasted_text_over_the_limit_stays_whole_and_the_page_says_why() {
    let (_server, browser) = open_page("/").await;
    browser.wait_for_status("open").await;
    browser.watch_for_errors().await;
    // A paste as the browser's editing does it: `maxlength` would cut it to 65,536.
    let length = browser
        .run(
            "const input = document.getElementById('message'); input.focus();
             document.execCommand('insertText', false, 'a'.repeat(70000));
             return input.value.length",
        )
        .await;
    assert_eq!(length, json!(70000), "nothing was cut");
    let hint = browser.text_of("hint").await;
    assert!(
        hint.contains("70000 bytes") && hint.contains("65536"),
        "the page says why before sending: {hint:?}"
    );
    browser.type_message("").await;
    let length = browser
        .run("return document.getElementById('message').value.length")
        .await;
    assert_eq!(length, json!(70000), "still whole after Enter");
    // Characters are not bytes: 40,000 "é" are 80,000 bytes.
    browser
        .run(
            "const input = document.getElementById('message'); input.select();
             document.execCommand('insertText', false, 'é'.repeat(40000))",
        )
        .await;
    assert!(browser.text_of("hint").await.contains("80000 bytes"));
    browser.screenshot("pasted-too-long.png").await;
    let lines = browser.log_lines().await;
    assert!(
        !lines.iter().any(|line| line.starts_with("You:")),
        "nothing was sent: {lines:?}"
    );
    // Shortened, it goes, and the hint goes away.
    browser
        .run("document.getElementById('message').select(); document.execCommand('delete')")
        .await;
    assert_eq!(browser.text_of("hint").await, "");
    browser.type_and_wait_for_answers("short", 10).await;
    browser.assert_no_errors().await;
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_socket_the_csp_refuses_ends_with_a_reason_and_retries_saying_it_once() {
    // Nothing listens there, and the page's CSP (connect-src 'self') does not allow it:
    // Chromium fires `error` and never `close`.
    let elsewhere = format!(
        "ws://127.0.0.1:{}/subscriptions",
        crate::support::Nginx::free_port()
    );
    let (_server, browser) = open_page(&format!("/?ws={elsewhere}&reply-timeout=2")).await;
    browser.record_status_changes().await;
    // Each attempt is refused by the CSP, and Chromium says so on the console once per
    // attempt: three refusals are three attempts that ended (the page retried twice). The
    // browser log is drained by each read, so the count adds up across reads.
    let refusals = std::cell::Cell::new(0);
    browser
        .wait_until("three attempts the CSP refused", async || {
            let console = browser.console().await;
            let new = console
                .iter()
                .filter(|(_, message)| message.contains("Content Security Policy"))
                .filter(|(_, message)| message.contains(elsewhere.as_str()))
                .count();
            refusals.set(refusals.get() + new);
            (refusals.get() >= 3).then_some(())
        })
        .await;
    // Between the attempts the page waited, saying so.
    let changes = browser.status_changes().await;
    assert!(
        changes.iter().any(|change| change.0 == "reconnecting"),
        "{changes:?}"
    );
    let lines = browser.log_lines().await;
    let notices: Vec<_> = lines
        .iter()
        .filter(|line| line.starts_with("Cannot connect"))
        .collect();
    assert_eq!(notices.len(), 1, "once per outage: {lines:?}");
    assert!(notices[0].contains(&elsewhere), "{notices:?}");
    assert!(
        notices[0].contains("Content-Security-Policy"),
        "{notices:?}"
    );
    browser.screenshot("csp-refused.png").await;
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn the_countdown_is_shown_but_the_live_status_is_announced_once_per_state() {
    let (mut server, browser) = open_page("/").await;
    browser.wait_for_status("open").await;
    server.signal("KILL");
    server.wait().await;
    // Delays grow with each refused attempt; wait for one that counts down for seconds.
    browser
        .wait_until("a countdown of several seconds", async || {
            let (key, text) = browser.status().await;
            let seconds = text
                .strip_prefix("Reconnecting in ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|seconds| seconds.parse::<u32>().ok());
            (key == "reconnecting" && seconds.is_some_and(|seconds| seconds >= 3)).then_some(())
        })
        .await;
    browser.record_status_changes().await;
    browser
        .wait_until("the countdown to tick", async || {
            let changes = browser.status_changes().await;
            let ticks = changes
                .windows(2)
                .filter(|pair| pair[0].0 == "reconnecting" && pair[1].0 == "reconnecting")
                .count();
            (ticks >= 1).then_some(())
        })
        .await;
    let changes = browser.status_changes().await;
    for pair in changes.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(
            before.0 != after.0 || before.1 == after.1,
            "a tick changed what a screen reader announces: {changes:?}"
        );
    }
    browser.screenshot("countdown.png").await;
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn focus_returns_to_the_input_and_after_end_the_page_says_reconnect_is_needed() {
    let (_server, browser) = open_page("/").await;
    browser.wait_for_status("open").await;
    let active = "return document.activeElement && document.activeElement.id";
    // Send pressed with the mouse.
    let input = browser.element("message").await;
    input.send_keys("foo").await.expect("typing works");
    browser
        .element("send")
        .await
        .click()
        .await
        .expect("click Send");
    assert_eq!(browser.run(active).await, json!("message"), "after Send");

    browser.type_message("end").await;
    browser.wait_for_status("closed").await;
    browser.type_message("later").await;
    let queued = browser.text_of("queued").await;
    assert!(
        queued.contains("press Reconnect"),
        "a message typed after end says what it needs: {queued:?}"
    );
    browser.screenshot("after-end.png").await;
    browser
        .element("reconnect")
        .await
        .click()
        .await
        .expect("click Reconnect");
    browser.wait_for_status("open").await;
    assert_eq!(
        browser.run(active).await,
        json!("message"),
        "after Reconnect"
    );
    browser
        .wait_until("later answered", async || {
            (count(&browser.log_lines().await, "Server: later") == 10).then_some(())
        })
        .await;
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

/// A copy of the built site in a temporary directory, without the compressed copies (so an
/// edited file is served as edited), `pkg/` left out unless `with_client`.
fn copy_of_built_site(with_client: bool) -> tempfile::TempDir {
    fn copy(from: &std::path::Path, to: &std::path::Path, with_client: bool) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read the site") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if path.is_dir() {
                if with_client || name != "pkg" {
                    copy(&path, &to.join(&name), with_client);
                }
            } else if !name.ends_with(".br") && !name.ends_with(".gz") {
                std::fs::copy(&path, to.join(&name)).expect("copy");
            }
        }
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    copy(&built_static_dir(), dir.path(), with_client);
    dir
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_page_whose_wasm_comes_under_another_type_still_starts() {
    // The start script compiles the wasm while the glue loads (`compileStreaming`, which
    // wants `application/wasm`); a server or proxy that labels it otherwise must cost only
    // time. Here the wasm is renamed `.bin` (served as `application/octet-stream`).
    let site = copy_of_built_site(true);
    let pkg = site.path().join("pkg");
    let page = std::fs::read_to_string(pkg.join("index.html")).expect("the built page");
    let (wasm, start) = {
        let named = |prefix: &str, suffix: &str| {
            let at = page.find(prefix).expect("the page names the file");
            let end = page[at..].find(suffix).expect("its extension") + at + suffix.len();
            page[at..end].to_owned()
        };
        (named("web_client_bg.", ".wasm"), named("start.", ".js"))
    };
    let renamed = wasm.replace(".wasm", ".bin");
    std::fs::rename(pkg.join(&wasm), pkg.join(&renamed)).expect("rename");
    let glue = std::fs::read_to_string(pkg.join(&start))
        .expect("the start script")
        .split('"')
        .find(|part| part.starts_with("/pkg/web_client.") && part.ends_with(".js"))
        .expect("the start script names the glue")
        .trim_start_matches("/pkg/")
        .to_owned();
    for file in ["index.html", start.as_str(), glue.as_str()] {
        let text = std::fs::read_to_string(pkg.join(file)).expect("a text file");
        assert!(text.contains(&wasm), "{file} names the wasm");
        std::fs::write(pkg.join(file), text.replace(&wasm, &renamed)).expect("write");
    }
    let (_server, browser) = open_site(site.path(), &[], "/").await;
    browser.watch_for_errors().await;
    browser.wait_for_status("open").await;
    browser.type_and_wait_for_answers("octet", 10).await;
    browser.assert_no_errors().await;
    let script = format!(
        "return performance.getEntriesByType('resource')
            .filter(e => e.name.endsWith('/pkg/{renamed}')).length"
    );
    let fetched = browser.run(&script).await;
    assert!(
        fetched.as_u64().is_some_and(|count| count >= 1),
        "the wasm came from its new name: {fetched}"
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
async fn a_site_without_the_built_client_says_how_to_build_it() {
    let site = copy_of_built_site(false);
    let (_server, browser) = open_site(site.path(), &[], "/").await;
    let status = browser.wait_for_status("closed").await;
    assert_eq!(status, "The web client could not start.");
    let help = browser
        .run("return Array.from(document.querySelectorAll('.problem'), p => p.textContent)")
        .await;
    assert!(
        help.to_string().contains("has not been built yet")
            && help.to_string().contains("cargo xtask serve"),
        "{help}"
    );
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

/// The server's HTTP responses so far, by class (`2xx`, `3xx`, ...), from its metrics; the
/// WebSocket upgrades (`1xx`) left out.
pub(crate) async fn responses(server: &TestServer) -> std::collections::BTreeMap<String, u64> {
    let metrics = server.metrics().await;
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("chat_http_responses_total{class=\"")?;
            let (class, value) = rest.split_once("\"} ")?;
            let count = value.trim().parse::<f64>().ok()? as u64;
            (class != "1xx").then(|| (class.to_owned(), count))
        })
        .collect()
}

/// The server's HTTP responses since `before` (a [`responses`]), by class: the classes
/// that grew, and by how much.
pub(crate) async fn responses_since(
    server: &TestServer,
    before: &std::collections::BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    responses(server)
        .await
        .into_iter()
        .map(|(class, count)| {
            let grown = count - before.get(&class).copied().unwrap_or_default();
            (class, grown)
        })
        .filter(|(_, count)| *count > 0)
        .collect()
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_warm_reload_asks_the_server_for_the_page_alone() {
    let server =
        TestServer::start_with_dir(&built_static_dir(), &["--metrics-addr", "127.0.0.1:0"]).await;
    let browser = Browser::start().await;
    browser
        .client()
        .goto(&format!("http://{}/", server.addr))
        .await
        .expect("page loads");
    browser.wait_for_status("open").await;
    let cold = responses(&server).await;
    assert!(
        cold.get("2xx").copied().unwrap_or_default() >= 5,
        "the page and its files: {cold:?}"
    );
    // The page names its files by their hash.
    let names = browser
        .run("return Array.from(document.querySelectorAll('link[href], script[src]'), e => e.getAttribute('href') || e.getAttribute('src'))")
        .await;
    let names: Vec<String> = serde_json::from_value(names).expect("names");
    assert!(
        names.len() >= 5
            && names
                .iter()
                .all(|name| name.starts_with("/pkg/") && name.split('.').count() == 3),
        "{names:?}"
    );
    browser.run("window.__before_reload = true").await;
    browser.client().refresh().await.expect("reloads");
    browser
        .wait_until("the reloaded page", async || {
            let fresh = browser
                .run("return window.__before_reload === undefined")
                .await;
            (fresh == json!(true)).then_some(())
        })
        .await;
    browser.wait_for_status("open").await;
    browser.type_and_wait_for_answers("warm", 10).await;
    assert_eq!(
        responses_since(&server, &cold).await,
        [("3xx".to_owned(), 1)],
        "a warm reload asked for more than the page's revalidation"
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
async fn a_browser_that_wrongly_says_offline_does_not_strand_the_page() {
    let server = TestServer::start_with_dir(&built_static_dir(), &[]).await;
    let browser = Browser::start().await;
    // `navigator.onLine` says false from the start, and never changes: the network works.
    browser
        .devtools(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "Object.defineProperty(Navigator.prototype, 'onLine', { get: () => false });"}),
        )
        .await;
    browser
        .client()
        .goto(&format!("http://{}/", server.addr))
        .await
        .expect("page loads");
    browser.wait_for_status("offline").await;
    assert_eq!(browser.run("return navigator.onLine").await, json!(false));
    // The person can try anyway, and then it works.
    let reconnect = browser.element("reconnect").await;
    assert!(
        reconnect.is_displayed().await.expect("displayed"),
        "no way out of offline"
    );
    reconnect.click().await.expect("clicks");
    browser.wait_for_status("open").await;
    browser.type_and_wait_for_answers("through", 10).await;
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn connected_is_never_shown_while_the_browser_is_offline() {
    let (_server, browser) = open_page("/").await;
    browser.wait_for_status("open").await;
    browser.record_status_changes().await;
    browser.set_offline(true).await;
    let text = browser.wait_for_status("offline").await;
    assert!(!text.contains("Connected"), "{text}");
    assert_eq!(browser.run("return navigator.onLine").await, json!(false));
    browser.screenshot("offline.png").await;
    browser.set_offline(false).await;
    browser.wait_for_status("open").await;
    browser.type_and_wait_for_answers("back", 10).await;
    // From going offline to coming back, "Connected" was never on the status line.
    let changes = browser.status_changes().await;
    let offline_at = changes
        .iter()
        .position(|(key, _, _)| key == "offline")
        .expect("offline shown");
    let online_again = changes
        .iter()
        .rposition(|(key, _, _)| key != "open")
        .unwrap_or(offline_at);
    for (key, _, shown) in &changes[offline_at..=online_again] {
        assert!(key != "open" && !shown.contains("Connected"), "{changes:?}");
    }
    browser
        .client()
        .clone()
        .close()
        .await
        .expect("session closes");
}
