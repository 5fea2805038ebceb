//! The client in a real browser (`wasm-pack test --headless --chrome web-client`, run by
//! `cargo xtask test`): DOM rendering, status, the input -> queue -> socket path, and a
//! conversation over a real WebSocket with the real server, whose URL `cargo xtask test`
//! passes at compile time in `WS_TEST_URL`.

#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use client_core::status::Status;
use client_core::transcript::{Entry, Speaker, Transcript};
use gloo_timers::future::sleep;
use rules::App;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_client::app::{Client, Running};
use web_client::dom::Page;
use web_client::socket::{Socket, SocketEvent};
use web_client::url::{Settings, settings_for_url};
use web_sys::{Document, HtmlButtonElement, HtmlTextAreaElement};

wasm_bindgen_test_configure!(run_in_browser);

/// The real page markup, so the tests and `index.html` cannot disagree about element ids.
const INDEX_HTML: &str = include_str!("../../static/index.html");

/// `option_env!`, not `env!`, so the crate still compiles (and clippy runs) without a server;
/// a test that needs one then fails with instructions instead of passing.
fn ws_test_url() -> &'static str {
    match option_env!("WS_TEST_URL") {
        Some(url) => url,
        None => panic!(
            "WS_TEST_URL must name a running server's /subscriptions: run `cargo xtask test`"
        ),
    }
}

fn document() -> Document {
    web_sys::window()
        .and_then(|window| window.document())
        .expect("a document")
}

/// Puts a fresh copy of the `<main>` of `index.html` into a fixture container (the body also
/// holds the test runner's own output, which must stay) and finds the page's elements.
fn fresh_page() -> (Document, Page) {
    const FIXTURE_ID: &str = "fixture";
    let document = document();
    let start = INDEX_HTML.find("<main>").expect("index.html has <main>");
    let end = INDEX_HTML.find("</main>").expect("index.html has </main>") + "</main>".len();
    let fixture = document.get_element_by_id(FIXTURE_ID).unwrap_or_else(|| {
        let fixture = document.create_element("div").expect("create a div");
        fixture.set_id(FIXTURE_ID);
        document
            .body()
            .expect("a body")
            .append_child(&fixture)
            .expect("append");
        fixture
    });
    fixture.set_inner_html(&INDEX_HTML[start..end]);
    // Every test's client starts with an empty outbox: what an earlier one saved for a
    // reload is not this test's.
    if let Some(storage) =
        web_sys::window().and_then(|window| window.session_storage().ok().flatten())
    {
        storage.clear().expect("sessionStorage clears");
    }
    let page = Page::find(&document).expect("every element the client needs is in index.html");
    (document, page)
}

/// The message input and the Send button.
fn composer(document: &Document) -> (HtmlTextAreaElement, HtmlButtonElement) {
    let input = document
        .get_element_by_id("message")
        .expect("#message")
        .dyn_into()
        .expect("input");
    let send = document
        .get_element_by_id("send")
        .expect("#send")
        .dyn_into()
        .expect("button");
    (input, send)
}

fn log_lines(document: &Document) -> Vec<String> {
    let log = document.get_element_by_id("log").expect("#log");
    std::iter::successors(log.first_element_child(), |line| {
        line.next_element_sibling()
    })
    .map(|line| line.text_content().unwrap_or_default())
    .collect()
}

/// Waits (at most 5 s) until the log satisfies `done`.
async fn wait_for_log(document: &Document, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    wait_for_log_within(document, Duration::from_secs(5), done).await
}

/// Waits (at most `limit`) until the log satisfies `done`.
async fn wait_for_log_within(
    document: &Document,
    limit: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    for _ in 0..limit.as_millis() / 20 {
        let lines = log_lines(document);
        if done(&lines) {
            return lines;
        }
        sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the log never reached the expected state: {:?}",
        log_lines(document)
    );
}

/// A client on a fresh page with `settings`, talking to the real server, once its greeting
/// arrived.
async fn greeted_client_with(
    settings: Settings,
) -> (Document, HtmlTextAreaElement, HtmlButtonElement, Running) {
    let (document, page) = fresh_page();
    let running = Client::start(page, Ok(settings));
    let (input, send) = composer(&document);
    wait_for_log(&document, |lines| {
        lines.iter().any(|l| l == "Server: Greetings!")
    })
    .await;
    (document, input, send, running)
}

/// [`greeted_client_with`] the page's usual settings.
async fn greeted_client() -> (Document, HtmlTextAreaElement, HtmlButtonElement, Running) {
    greeted_client_with(settings_for_url(ws_test_url()).expect("valid settings")).await
}

#[wasm_bindgen_test]
fn replies_are_rendered_as_text_never_as_html() {
    let (document, page) = fresh_page();
    let hostile = "<img src=x onerror=alert(1)><b>bold</b>";
    page.append(
        &Entry {
            speaker: Speaker::Server,
            text: hostile.to_owned(),
        },
        0,
    );
    page.flush();
    let log = document.get_element_by_id("log").expect("#log");
    let line = log.first_element_child().expect("one line");
    assert_eq!(
        line.text_content().as_deref(),
        Some(format!("Server: {hostile}").as_str())
    );
    assert_eq!(
        line.child_element_count(),
        0,
        "markup was parsed: {}",
        line.inner_html()
    );
    assert_eq!(line.class_name(), "server");
}

#[wasm_bindgen_test]
fn the_log_keeps_only_the_newest_lines() {
    let (document, page) = fresh_page();
    let mut transcript = Transcript::with_capacity(50);
    for n in 0..120 {
        let entry = Entry {
            speaker: Speaker::Server,
            text: n.to_string(),
        };
        let evicted = transcript.push();
        page.append(&entry, evicted);
        // Drawn now and then, as frames come: the bound holds across both.
        if n % 7 == 0 {
            page.flush();
        }
    }
    page.flush();
    let lines = log_lines(&document);
    assert_eq!(lines.len(), 50);
    assert_eq!(lines.first().map(String::as_str), Some("Server: 70"));
    assert_eq!(lines.last().map(String::as_str), Some("Server: 119"));
}

#[wasm_bindgen_test]
fn status_changes_show_text_state_and_the_reconnect_button() {
    let (document, page) = fresh_page();
    let status = document.get_element_by_id("status").expect("#status");
    let reconnect: HtmlButtonElement = document
        .get_element_by_id("reconnect")
        .expect("#reconnect")
        .dyn_into()
        .expect("button");
    let cases = [
        (Status::Connecting, "connecting", "Connecting…", true),
        (
            Status::Open { compressed: false },
            "open",
            "Connected",
            true,
        ),
        (
            Status::Open { compressed: true },
            "open",
            "Connected (compressed)",
            true,
        ),
        (
            Status::Reconnecting { seconds: 4 },
            "reconnecting",
            "Reconnecting in 4 s…",
            true,
        ),
        (
            Status::Closed {
                code: 1000,
                reason: String::new(),
            },
            "closed",
            "Closed (1000)",
            false,
        ),
        // Offline offers Reconnect too: the browser's word for it is sometimes wrong.
        (
            Status::Offline,
            "offline",
            "Offline: waiting for the network",
            false,
        ),
    ];
    for (state, key, text, hidden) in cases {
        page.set_status(&state);
        assert_eq!(status.get_attribute("data-status").as_deref(), Some(key));
        assert_eq!(status.text_content().as_deref(), Some(text));
        assert_eq!(reconnect.hidden(), hidden, "{state:?}");
    }
}

#[wasm_bindgen_test]
async fn submitting_the_form_queues_sends_and_renders_the_conversation() {
    let (document, page) = fresh_page();
    let running = Client::start(page, settings_for_url(ws_test_url()));
    let (input, send) = composer(&document);

    // Typed before the socket is open: it waits in the queue and goes out once, in order.
    input.set_value("foo");
    send.click();
    assert_eq!(
        input.value(),
        "",
        "the input clears once the message is queued"
    );
    input.set_value("");
    send.click();
    input.set_value("bar");
    send.click();

    let lines = wait_for_log(&document, |lines| lines.len() >= 5).await;
    // Queued messages leave the moment the socket opens, so they may be logged before the
    // greeting arrives; each side's own order is what must hold.
    let side = |prefix: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|line| line.starts_with(prefix))
            .cloned()
            .collect()
    };
    assert_eq!(side("You: "), ["You: foo", "You: bar"], "{lines:?}");
    assert_eq!(
        side("Server: "),
        ["Server: Greetings!", "Server: bar", "Server: foo"]
    );
    assert_eq!(lines.len(), 5, "nothing else was logged: {lines:?}");
    let status = document.get_element_by_id("status").expect("#status");
    assert_eq!(status.get_attribute("data-status").as_deref(), Some("open"));
    running.stop().await;
}

#[wasm_bindgen_test]
async fn a_message_longer_than_the_server_accepts_stays_in_the_input_with_a_notice() {
    let (document, input, send, running) = greeted_client().await;

    // 32,769 characters, well under the input's maxlength of 65,536 UTF-16 units, but 65,538
    // bytes of UTF-8: the server would close with 1009 and the message would be lost.
    let too_long = "é".repeat(32_769);
    input.set_value(&too_long);
    send.click();
    assert_eq!(input.value(), too_long, "the text stays in the input");

    // The socket is still open and nothing was sent: the next message is answered normally.
    input.set_value("foo");
    send.click();
    let lines = wait_for_log(&document, |lines| lines.iter().any(|l| l == "Server: bar")).await;
    assert_eq!(
        lines,
        [
            "Server: Greetings!",
            "This message is 65538 bytes; the server accepts at most 65536. It was kept in the \
             input: shorten it and send again.",
            "You: foo",
            "Server: bar",
        ]
    );
    running.stop().await;
}

#[wasm_bindgen_test]
async fn a_real_socket_talks_to_the_real_server() {
    let mut socket = Socket::open(ws_test_url()).expect("a valid URL");
    assert!(socket.opened().await, "the socket opens");
    assert_eq!(
        socket.next_event().await,
        SocketEvent::Text("Greetings!".into())
    );
    assert!(socket.send_text("foo"));
    assert_eq!(socket.next_event().await, SocketEvent::Text("bar".into()));
    assert!(socket.send_text("hello"));
    for _ in 0..10 {
        assert_eq!(socket.next_event().await, SocketEvent::Text("hello".into()));
    }
    assert!(socket.send_text("end"));
    match socket.next_event().await {
        SocketEvent::Closed { code, .. } => assert_eq!(code, 1000),
        other => panic!("expected the server's close, got {other:?}"),
    }
    assert!(
        !socket.send_text("too late"),
        "a closed socket refuses to send"
    );
}

#[wasm_bindgen_test]
async fn a_message_the_server_never_answered_is_sent_again_on_the_next_connection() {
    let (document, input, send, running) = greeted_client().await;

    // Both leave in one go: the server closes on `end` and never reads `hello`.
    input.set_value("end");
    send.click();
    input.set_value("hello");
    send.click();
    let status = document.get_element_by_id("status").expect("#status");
    for _ in 0..250 {
        if status.get_attribute("data-status").as_deref() == Some("closed") {
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status.get_attribute("data-status").as_deref(),
        Some("closed")
    );
    let queued = document.get_element_by_id("queued").expect("#queued");
    assert_eq!(
        queued.text_content().as_deref(),
        Some(
            "1 message waiting to be sent: the server ended the conversation, press Reconnect \
             to send"
        ),
        "the unanswered message is still kept, and the page says what it needs"
    );

    let reconnect: HtmlButtonElement = document
        .get_element_by_id("reconnect")
        .expect("#reconnect")
        .dyn_into()
        .expect("button");
    reconnect.click();
    let lines = wait_for_log(&document, |lines| {
        lines.iter().filter(|l| *l == "Server: hello").count() == 10
    })
    .await;
    let position = |line: &str| lines.iter().position(|l| l == line);
    assert!(position("You: hello").is_some(), "{lines:?}");
    assert!(
        position("You: hello") < position("You (sent again): hello"),
        "marked when sent again: {lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("Server: Greetings!"))
            .count(),
        2
    );
    assert_eq!(queued.text_content().as_deref(), Some(""));
    running.stop().await;
}

#[wasm_bindgen_test]
async fn bad_settings_are_explained_and_the_form_still_queues() {
    let (document, page) = fresh_page();
    let running = Client::start(page, settings_for_url("ws://127.0.0.1:1/nowhere"));
    let (input, send) = composer(&document);
    let lines = wait_for_log(&document, |lines| !lines.is_empty()).await;
    assert!(
        lines[0].starts_with("Cannot connect: ?ws= must lead to one of /subscriptions"),
        "{lines:?}"
    );
    let status = document.get_element_by_id("status").expect("#status");
    assert_eq!(
        status.get_attribute("data-status").as_deref(),
        Some("failed")
    );
    // Submitting does not navigate (the test page would be gone); the message waits.
    input.set_value("kept");
    send.click();
    assert_eq!(input.value(), "");
    let queued = document.get_element_by_id("queued").expect("#queued");
    assert_eq!(
        queued.text_content().as_deref(),
        Some("1 message waiting to be sent")
    );
    running.stop().await;
}

/// The status element's `data-status`.
fn status_key(document: &Document) -> Option<String> {
    document
        .get_element_by_id("status")
        .and_then(|status| status.get_attribute("data-status"))
}

#[wasm_bindgen_test]
async fn a_stopped_client_closes_its_socket_and_ends() {
    let (document, _input, _send, running) = greeted_client().await;
    assert_eq!(status_key(&document).as_deref(), Some("open"));
    // `stop` returns once the task has ended: it closed its socket and removed its listeners,
    // so the next test's page is the only one talking.
    let (input, _send) = composer(&document);
    let hint = document.get_element_by_id("hint").expect("#hint");
    let too_long = "a".repeat(70_000);
    let edited = || {
        input.set_value(&too_long);
        let event = web_sys::Event::new("input").expect("an event");
        input.dispatch_event(&event).expect("dispatched");
    };
    edited();
    assert!(
        hint.text_content()
            .is_some_and(|text| text.contains("70000 bytes")),
        "a running client checks the input"
    );
    running.stop().await;
    // The submit listener is gone too, so the test never submits the form (it would navigate).
    hint.set_text_content(None);
    edited();
    assert_eq!(
        hint.text_content().as_deref(),
        Some(""),
        "no listener is left once stopped"
    );
}

#[wasm_bindgen_test]
async fn a_message_the_server_refuses_as_too_long_is_marked_and_the_next_one_is_answered() {
    // The page believes the server takes a megabyte; this one takes its default 64 KiB.
    let mut settings = settings_for_url(ws_test_url()).expect("valid settings");
    settings.max_message_bytes = 1024 * 1024;
    let (document, input, send, running) = greeted_client_with(settings).await;

    let too_long = "a".repeat(70_000);
    input.set_value(&too_long);
    send.click();
    let refused = format!("You: {too_long} (refused: too long for this server)");
    wait_for_log_within(&document, Duration::from_secs(10), |lines| {
        lines.contains(&refused)
    })
    .await;
    // Out of the outbox: it is not sent again, and what follows is answered.
    input.set_value("foo");
    send.click();
    let lines = wait_for_log_within(&document, Duration::from_secs(10), |lines| {
        lines.iter().any(|l| l == "Server: bar")
    })
    .await;
    assert!(
        !lines.iter().any(|l| l.starts_with("You (sent again): aaa")),
        "the refused message was sent again"
    );
    let queued = document.get_element_by_id("queued").expect("#queued");
    assert_eq!(queued.text_content().as_deref(), Some(""));
    running.stop().await;
}

#[wasm_bindgen_test]
async fn a_message_never_answered_fails_after_three_tries_and_the_next_one_is_answered() {
    // The page expects /echo's answers from /subscriptions: "foo" gets "bar", never the ten
    // copies of "foo" the page waits for, so each connection ends by the reply timeout.
    let mut settings = settings_for_url(ws_test_url()).expect("valid settings");
    settings.app = App::Echo;
    settings.reply_timeout = Duration::from_millis(300);
    let (document, input, send, running) = greeted_client_with(settings).await;

    input.set_value("foo");
    send.click();
    let failed = "You: foo (failed: no answer after 3 tries)";
    let lines = wait_for_log_within(&document, Duration::from_secs(20), |lines| {
        lines.iter().any(|l| l == failed)
    })
    .await;
    let again = "You (sent again): foo (failed: no answer after 3 tries)";
    assert_eq!(
        lines.iter().filter(|l| *l == again).count(),
        2,
        "sent three times in all: {lines:?}"
    );
    input.set_value("hello");
    send.click();
    wait_for_log_within(&document, Duration::from_secs(20), |lines| {
        lines.iter().filter(|l| *l == "Server: hello").count() == 10
    })
    .await;
    let queued = document.get_element_by_id("queued").expect("#queued");
    assert_eq!(queued.text_content().as_deref(), Some(""));
    assert!(
        !log_lines(&document)
            .iter()
            .any(|l| l == "You (sent again): foo"),
        "foo is not sent a fourth time"
    );
    running.stop().await;
}

#[wasm_bindgen_test]
fn a_copy_past_the_saved_bound_is_not_kept_and_takes_the_older_one_with_it() {
    let (_document, page) = fresh_page();
    let key = "web-client.test-bound";
    let at_bound = "x".repeat(web_client::dom::MAX_SAVED_CHARS);
    assert_eq!(page.keep(key, Some(&at_bound)), Ok(()));
    assert_eq!(page.saved(key).map(|kept| kept.len()), Some(at_bound.len()));
    let past = "x".repeat(web_client::dom::MAX_SAVED_CHARS + 1);
    let refused = page.keep(key, Some(&past)).expect_err("past the bound");
    assert!(refused.contains("KiB"), "{refused}");
    assert_eq!(page.saved(key), None, "the older copy went too");
}
