//! The room page as people use it, in headless Chromium: pages entered through the front
//! page's form see each other in the member list and typing, a line typed over two lines
//! arrives as two, a third page sees the recent history above a line that says where it ends,
//! a page that closes leaves the others' list within a second; a reader who scrolled up is
//! not pulled down (a button says what came), lines come in one insertion per frame and screen
//! readers hear live lines, not the replay; a hidden tab counts what it missed in its title; a
//! refused line goes back to the composer; own lines take the server's time; the front page
//! asks no name when the server's tokens give it; and the page at 320 px and on a desktop, in
//! both themes, is photographed for a person to look at.
//!
//! Ignored by a plain `cargo test`, like `browser.rs`: it needs Chromium, chromedriver and the
//! built client.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::{Browser, built_static_dir};
use crate::rooms::{Member, publish};
use crate::rooms_browser::{lines, open_room, wait_for_message};
use crate::support::TestServer;

/// The WebDriver codes for Enter, Shift, and the release of every held modifier.
const ENTER: &str = "\u{E007}";
const SHIFT: &str = "\u{E008}";
const RELEASE: &str = "\u{E000}";

/// The names in the page's member list, in its order.
async fn members(page: &Browser) -> Vec<String> {
    let names = page
        .run("return Array.from(document.querySelectorAll('#members li'), li => li.textContent)")
        .await;
    serde_json::from_value(names).expect("names")
}

/// Waits until the member list names exactly `expected` (and the summary counts them).
async fn wait_for_members(page: &Browser, expected: &[&str]) {
    page.wait_until(&format!("the member list {expected:?}"), async || {
        let summary = page.text_of("people-count").await;
        (members(page).await == expected
            && summary.starts_with(&format!("{} here", expected.len())))
        .then_some(())
    })
    .await;
}

/// A page that went to `/`, filled in the entry form and pressed Enter: the room view.
async fn enter_through_form(addr: SocketAddr, room: &str, name: &str) -> Browser {
    let page = Browser::start().await;
    page.client()
        .goto(&format!("http://{addr}/"))
        .await
        .expect("page loads");
    page.wait_for_status("open").await;
    page.element("enter-name")
        .await
        .send_keys(name)
        .await
        .expect("types");
    page.element("enter-room")
        .await
        .send_keys(&format!("{room}{ENTER}"))
        .await
        .expect("types");
    page.wait_until("the room view", async || {
        let url = page.client().current_url().await.ok()?;
        url.query()?
            .starts_with(&format!("room={room}&"))
            .then_some(())
    })
    .await;
    page.wait_for_status("open").await;
    page.watch_for_errors().await;
    page
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn pages_see_who_is_here_who_types_and_what_was_said_before_they_came() {
    let server = TestServer::start_with_dir(&built_static_dir(), &[]).await;
    let ana = enter_through_form(server.addr, "porch", "ana").await;
    let bo = enter_through_form(server.addr, "porch", "bo").await;
    for page in [&ana, &bo] {
        wait_for_members(page, &["ana", "bo"]).await;
    }
    // Typing (no Enter yet) shows on the other page, not one's own.
    let input = ana.element("message").await;
    input.send_keys("hel").await.expect("types");
    bo.wait_until("ana typing", async || {
        (bo.text_of("typing").await == "ana is typing…").then_some(())
    })
    .await;
    assert_eq!(ana.text_of("typing").await, "");
    // Shift+Enter breaks the line; Enter sends both lines as one message.
    input
        .send_keys(&format!("lo{SHIFT}{ENTER}{RELEASE}from the porch{ENTER}"))
        .await
        .expect("sends");
    wait_for_message(&bo, "ana", "hello\nfrom the porch").await;
    assert_eq!(
        ana.run("return document.getElementById('message').value")
            .await,
        json!(""),
        "the composer is empty once it sent"
    );
    // The message ends the typing.
    assert_eq!(bo.text_of("typing").await, "");
    bo.type_message("hi ana").await;
    wait_for_message(&ana, "bo", "hi ana").await;

    // A third page comes in: the recent history, then the line, then what happens now.
    let cy = open_room(server.addr, "porch", "cy").await;
    wait_for_message(&cy, "bo", "hi ana").await;
    let shown: Vec<String> = lines(&cy)
        .await
        .into_iter()
        .map(|line| line.whole)
        .collect();
    let end = shown
        .iter()
        .position(|line| line == client_core::room::HISTORY_END)
        .unwrap_or_else(|| panic!("the line where history ends: {shown:?}"));
    let before = &shown[..end];
    assert!(
        before
            .iter()
            .any(|line| line.contains("hello\nfrom the porch"))
            && before.iter().any(|line| line.contains("hi ana")),
        "{shown:?}"
    );
    // The replay was drawn, not read out.
    let heard = cy.text_of("announce").await;
    assert!(
        !heard.contains("hi ana") && !heard.contains("from the porch"),
        "the history was announced: {heard:?}"
    );
    ana.type_message("welcome cy").await;
    wait_for_message(&cy, "ana", "welcome cy").await;
    cy.wait_until("the live line announced", async || {
        cy.text_of("announce")
            .await
            .contains("ana: welcome cy")
            .then_some(())
    })
    .await;
    let shown: Vec<String> = lines(&cy)
        .await
        .into_iter()
        .map(|line| line.whole)
        .collect();
    let welcome = shown
        .iter()
        .position(|line| line.contains("welcome cy"))
        .expect("shown");
    assert!(welcome > end, "live after the line: {shown:?}");

    // Bo closes his tab: gone from Ana's list within a second.
    wait_for_members(&ana, &["ana", "bo", "cy"]).await;
    let closed = tokio::time::Instant::now();
    bo.client().close_window().await.expect("the tab closes");
    wait_for_members(&ana, &["ana", "cy"]).await;
    assert!(
        closed.elapsed() < Duration::from_secs(1),
        "gone after {:?}",
        closed.elapsed()
    );
    for page in [&ana, &cy] {
        page.assert_no_errors().await;
        page.assert_no_csp_violations().await;
    }
}

/// Counts, from now on, the insertions into the log (`window.__insertions`) and the lines
/// they brought (`window.__inserted`).
const COUNT_INSERTIONS: &str = "window.__insertions = 0; window.__inserted = 0;
    new MutationObserver(records => {
        for (const record of records) {
            const added = Array.from(record.addedNodes).filter(node => node.nodeName === 'LI');
            if (added.length) { window.__insertions += 1; window.__inserted += added.length; }
        }
    }).observe(document.getElementById('log'), { childList: true });";

/// The log's scroll state: `[scrollTop, at the bottom, the jump button shown]`.
const SCROLL_STATE: &str = "const log = document.getElementById('log');
    return [log.scrollTop, log.scrollTop + log.clientHeight >= log.scrollHeight - 8,
            !document.getElementById('jump').hidden];";

async fn scroll_state(page: &Browser) -> (f64, bool, bool) {
    serde_json::from_value(page.run(SCROLL_STATE).await).expect("scroll state")
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_reader_who_scrolled_up_stays_put_and_lines_come_one_insertion_per_frame() {
    const BURST: usize = 200;
    let server = TestServer::start_with_dir(
        &built_static_dir(),
        &["--publish-rate", "1000", "--publish-burst", "1000"],
    )
    .await;
    let ana = open_room(server.addr, "hall", "ana").await;
    let mut bo = Member::connect(&server, "bo").await;
    bo.join("hall", None).await;
    ana.run(COUNT_INSERTIONS).await;
    bo.send_all((0..BURST).map(|n| publish("hall", &format!("b{n}"), &format!("line {n}"))))
        .await;
    ana.wait_until("the burst shown", async || {
        let shown = crate::rooms_browser::messages(&ana).await;
        (shown.len() == BURST).then_some(())
    })
    .await;
    let (insertions, inserted): (u64, u64) = serde_json::from_value(
        ana.run("return [window.__insertions, window.__inserted]")
            .await,
    )
    .expect("counts");
    assert_eq!(inserted, BURST as u64, "every line once");
    assert!(
        insertions * 4 <= BURST as u64,
        "{insertions} insertions for {BURST} lines: not batched per frame"
    );
    // A screen reader hears each frame's lines as one announcement, a few lines and a count.
    let heard = ana.text_of("announce").await;
    assert!(heard.contains("bo: line"), "{heard:?}");
    let kept = ana
        .run("return document.querySelectorAll('#announce > *').length")
        .await;
    assert!(kept.as_u64().is_some_and(|kept| kept <= 3), "{kept}");

    // The reader was at the bottom: the view followed.
    let (_, at_bottom, jump) = scroll_state(&ana).await;
    assert!(at_bottom && !jump, "followed the burst");
    // Scrolled up to read: a new line moves nothing, and the button says it came.
    ana.run("document.getElementById('log').scrollTop = 0")
        .await;
    bo.send(publish("hall", "later", "while you read")).await;
    wait_for_message(&ana, "bo", "while you read").await;
    ana.wait_until("the jump button", async || {
        let (top, _, jump) = scroll_state(&ana).await;
        assert!(top < 1.0, "the view moved to {top}");
        jump.then_some(())
    })
    .await;
    ana.screenshot("room-new-messages.png").await;
    // The page itself does not scroll: the log does.
    assert_eq!(
        ana.run("return document.documentElement.scrollHeight <= innerHeight")
            .await,
        json!(true),
        "the page scrolls"
    );
    ana.element("jump").await.click().await.expect("clicks");
    let (_, at_bottom, jump) = scroll_state(&ana).await;
    assert!(at_bottom && !jump, "at the bottom, the button gone");
    // At the bottom again, the view follows again.
    bo.send(publish("hall", "last", "the last line")).await;
    wait_for_message(&ana, "bo", "the last line").await;
    ana.wait_until("followed", async || {
        let (_, at_bottom, jump) = scroll_state(&ana).await;
        (at_bottom && !jump).then_some(())
    })
    .await;
    // The composer grows under a reader at the bottom (three lines typed, not sent): the log
    // shrinks, and the view still follows.
    let input = ana.element("message").await;
    input
        .send_keys(&format!("one{SHIFT}{ENTER}two{SHIFT}{ENTER}three{RELEASE}"))
        .await
        .expect("types");
    bo.send(publish("hall", "grown", "under a grown composer"))
        .await;
    wait_for_message(&ana, "bo", "under a grown composer").await;
    ana.wait_until("followed under a grown composer", async || {
        let (_, at_bottom, jump) = scroll_state(&ana).await;
        (at_bottom && !jump).then_some(())
    })
    .await;
    ana.run("document.getElementById('message').value = ''")
        .await;
    // Sending one's own line from anywhere shows it.
    ana.run("document.getElementById('log').scrollTop = 0")
        .await;
    ana.type_message("mine").await;
    wait_for_message(&ana, "ana", "mine").await;
    let (_, at_bottom, _) = scroll_state(&ana).await;
    assert!(at_bottom, "one's own line is shown");
    assert!(
        !ana.text_of("announce").await.contains("mine"),
        "one's own line read back"
    );
    ana.assert_no_errors().await;
}

/// The title of the page's tab as the browser lists its targets (it reads a background tab
/// without bringing it to the front).
async fn tab_title(page: &Browser, url: &str) -> String {
    let targets = page.devtools("Target.getTargets", json!({})).await;
    targets["targetInfos"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|target| target["url"] == url)
        .and_then(|target| target["title"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_hidden_tab_counts_what_it_missed_in_its_title() {
    let server = TestServer::start_with_dir(&built_static_dir(), &[]).await;
    let ana = open_room(server.addr, "den", "ana").await;
    let url = ana.client().current_url().await.expect("url").to_string();
    let mut bo = Member::connect(&server, "bo").await;
    bo.join("den", None).await;
    bo.send(publish("den", "seen", "seen at once")).await;
    wait_for_message(&ana, "bo", "seen at once").await;
    assert_eq!(tab_title(&ana, &url).await, "Room den · ana");
    // Message lines put in the log while the tab is hidden, counted in a title of their
    // own (the only thing of a hidden tab the test can read): it gets no animation frames,
    // so its lines are drawn by a timer.
    ana.run(
        "window.__drawnHidden = 0;
         new MutationObserver(records => {
           for (const record of records) for (const node of record.addedNodes) {
             if (node.nodeType === 1 && node.matches('li.message') && document.hidden) {
               __drawnHidden++;
             }
           }
           if (__drawnHidden > 0) document.title = 'drawn while hidden: ' + __drawnHidden;
         }).observe(document.getElementById('log'), { childList: true, subtree: true })",
    )
    .await;
    // Another tab in front: the room's tab is hidden.
    let room_tab = ana.client().window().await.expect("this tab");
    let other = ana.client().new_window(true).await.expect("a new tab");
    ana.client()
        .switch_to_window(other.handle)
        .await
        .expect("switches");
    for n in 0..3 {
        bo.send(publish("den", &format!("u{n}"), &format!("unread {n}")))
            .await;
    }
    ana.wait_until("three unread in the title", async || {
        let title = tab_title(&ana, &url).await;
        (title == "(3) Room den · ana" || title.starts_with("drawn")).then_some(())
    })
    .await;
    ana.wait_until("the three lines drawn while hidden", async || {
        (tab_title(&ana, &url).await == "drawn while hidden: 3").then_some(())
    })
    .await;
    // Back in front: the count goes.
    ana.client()
        .switch_to_window(room_tab)
        .await
        .expect("switches back");
    ana.wait_until("the title alone", async || {
        (ana.run("return document.title").await == "Room den · ana").then_some(())
    })
    .await;
    wait_for_message(&ana, "bo", "unread 2").await;
}

/// The time (`data-at`, ms) of the message line that shows `text`.
async fn line_time(page: &Browser, text: &str) -> Value {
    page.run(&format!(
        "const line = Array.from(document.querySelectorAll('#log li.message'))
             .find(li => li.querySelector('.text').textContent === {text:?});
         return line ? line.dataset.at : null"
    ))
    .await
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_refused_line_goes_back_to_the_composer_and_own_lines_take_the_servers_time() {
    // Texts over 16 bytes are refused by the server (the page allows more).
    let server = TestServer::start_with_dir(&built_static_dir(), &["--max-text-bytes", "16"]).await;
    let ana = open_room(server.addr, "desk", "ana").await;
    let bo = open_room(server.addr, "desk", "bo").await;
    ana.type_message("short one").await;
    wait_for_message(&bo, "ana", "short one").await;
    // The time on Ana's own line is the one the server gave the message, as Bo sees it.
    let server_time = line_time(&bo, "short one").await;
    assert!(server_time.is_string(), "{server_time}");
    ana.wait_until("the server's time on one's own line", async || {
        (line_time(&ana, "short one").await == server_time).then_some(())
    })
    .await;
    // Two lines of one author, close together: one name for both.
    ana.type_message("second").await;
    wait_for_message(&bo, "ana", "second").await;
    let continued = bo
        .run("return Array.from(document.querySelectorAll('#log li.message'), li => li.classList.contains('continued'))")
        .await;
    assert_eq!(continued, json!([false, true]), "grouped under one name");

    // Bo's line between: Ana's next line heads a group of its own.
    bo.type_message("bo's turn").await;
    wait_for_message(&ana, "bo", "bo's turn").await;
    ana.type_message("a text over sixteen bytes").await;
    ana.type_message("after").await;
    wait_for_message(&ana, "ana", "after").await;
    ana.wait_until("refused, with a way back", async || {
        let line = lines(&ana)
            .await
            .into_iter()
            .find(|line| line.text.as_deref() == Some("a text over sixteen bytes"))?;
        (line.class.contains("given-up")
            && line.state.as_deref() == Some("refused: too long for this server"))
        .then_some(())
    })
    .await;
    let groups = "return Array.from(document.querySelectorAll('#log li.message'),
        li => [li.querySelector('.text').textContent, li.classList.contains('continued')])";
    assert_eq!(
        ana.run(groups).await,
        json!([
            ["short one", false],
            ["second", true],
            ["bo's turn", false],
            ["a text over sixteen bytes", false],
            ["after", true]
        ])
    );
    assert!(
        ana.text_of("announce")
            .await
            .contains("Not sent: refused: too long for this server"),
        "the refusal is announced"
    );
    ana.run("document.querySelector('#log li.given-up button.resend').click()")
        .await;
    // Its line gone, "after" follows Bo's line: it heads a group, under Ana's name.
    assert_eq!(
        ana.run(groups).await,
        json!([
            ["short one", false],
            ["second", true],
            ["bo's turn", false],
            ["after", false]
        ])
    );
    assert_eq!(
        ana.text_of("hint").await,
        "It was refused: too long for this server."
    );
    assert_eq!(
        ana.run("return document.getElementById('message').value")
            .await,
        json!("a text over sixteen bytes"),
        "the text is back in the composer"
    );
    assert!(
        !lines(&ana)
            .await
            .iter()
            .any(|line| line.text.as_deref() == Some("a text over sixteen bytes")),
        "and its line is gone"
    );
    // Edited to fit, it goes.
    ana.run(
        "const input = document.getElementById('message'); input.focus(); input.select();
         document.execCommand('insertText', false, 'a shorter text')",
    )
    .await;
    ana.element("message")
        .await
        .send_keys(ENTER)
        .await
        .expect("sends");
    wait_for_message(&bo, "ana", "a shorter text").await;
    wait_for_message(&ana, "ana", "a shorter text").await;
    for page in [&ana, &bo] {
        page.assert_no_errors().await;
    }
}

/// Submits `texts` from the composer one after the other, as fast as a script can.
async fn submit_all(page: &Browser, texts: &[String]) {
    let script = "const input = document.getElementById('message');
        const form = document.getElementById('composer');
        for (const text of arguments[0]) { input.value = text; form.requestSubmit(); }";
    page.client()
        .execute(script, vec![json!(texts)])
        .await
        .expect("submits");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn past_a_hundred_refusals_only_the_oldest_line_loses_its_way_back() {
    // The page keeps the texts of the last 100 refused publishes (the outbox's capacity) for
    // "Edit and send again"; one more, and the oldest line's button goes, not its line.
    let server = TestServer::start_with_dir(&built_static_dir(), &["--max-text-bytes", "16"]).await;
    let ana = open_room(server.addr, "desk", "ana").await;
    let texts: Vec<String> = (0..101)
        .map(|n| format!("too long for it, {n:03}"))
        .collect();
    let refused = async |count: usize| {
        ana.wait_until(&format!("{count} refused"), async || {
            let given_up = ana
                .run("return document.querySelectorAll('#log li.given-up').length")
                .await;
            (given_up == json!(count)).then_some(())
        })
        .await;
    };
    // Two bursts: the outbox holds 100 at once.
    submit_all(&ana, &texts[..60]).await;
    refused(60).await;
    submit_all(&ana, &texts[60..]).await;
    refused(101).await;
    let buttons: Vec<(String, bool)> = serde_json::from_value(
        ana.run(
            "return Array.from(document.querySelectorAll('#log li.given-up'),
                li => [li.querySelector('.text').textContent, li.querySelector('button.resend') !== null])",
        )
        .await,
    )
    .expect("lines");
    let texts_shown: Vec<&str> = buttons.iter().map(|(text, _)| text.as_str()).collect();
    assert_eq!(
        texts_shown,
        texts.iter().map(String::as_str).collect::<Vec<_>>(),
        "every line stays"
    );
    let without: Vec<&str> = buttons
        .iter()
        .filter(|(_, button)| !button)
        .map(|(text, _)| text.as_str())
        .collect();
    assert_eq!(
        without,
        [texts[0].as_str()],
        "only the oldest lost its button"
    );
    // The oldest kept still works.
    ana.run("document.querySelectorAll('#log li.given-up button.resend')[0].click()")
        .await;
    assert_eq!(
        ana.run("return document.getElementById('message').value")
            .await,
        json!(texts[1]),
    );
    ana.assert_no_errors().await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn the_front_page_leads_into_a_room_and_remembers_the_name() {
    let server = TestServer::start_with_dir(&built_static_dir(), &[]).await;
    let page = Browser::start().await;
    page.client()
        .goto(&format!("http://{}/", server.addr))
        .await
        .expect("page loads");
    // The demo is there as before, the form under it.
    page.wait_for_status("open").await;
    page.watch_for_errors().await;
    let room = page.element("enter-room").await;
    let name = page.element("enter-name").await;
    name.send_keys("Zoë").await.expect("types");
    room.send_keys(&format!("a b{ENTER}")).await.expect("types");
    page.wait_until("the form says what is wrong", async || {
        page.text_of("enter-hint")
            .await
            .starts_with("A room name")
            .then_some(())
    })
    .await;
    room.clear().await.expect("clears");
    room.send_keys(&format!("porch{ENTER}"))
        .await
        .expect("types");
    page.wait_until("the room view", async || {
        let url = page.client().current_url().await.ok()?;
        (url.query() == Some("room=porch&name=Zo%C3%AB")).then_some(())
    })
    .await;
    page.wait_for_status("open").await;
    assert_eq!(page.run("return document.title").await, "Room porch · Zoë");
    // The next visit to `/` has the name already.
    page.client()
        .goto(&format!("http://{}/", server.addr))
        .await
        .expect("page loads");
    page.wait_for_status("open").await;
    let remembered = page
        .run("return document.getElementById('enter-name').value")
        .await;
    assert_eq!(remembered, "Zoë");
    page.assert_no_csp_violations().await;
}

/// Whether the entry form's name field (and its label) is shown.
async fn asks_a_name(page: &Browser) -> Value {
    page.run(
        "const field = document.getElementById('enter-name');
         const label = document.querySelector('label[for=enter-name]');
         return [field.hidden, label.hidden, getComputedStyle(field).display !== 'none']",
    )
    .await
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn the_front_page_asks_no_name_when_the_servers_tokens_give_it() {
    let keys = tempfile::tempdir().expect("a temporary directory");
    let key = keys.path().join("hmac");
    std::fs::write(&key, "a secret of the browser tests, 40 bytes.").expect("written");
    let key = key.display().to_string();
    // An app's own sign-in names the person: no name field.
    let server =
        TestServer::start_with_dir(&built_static_dir(), &["--auth-key", key.as_str()]).await;
    let page = Browser::start().await;
    page.client()
        .goto(&format!("http://{}/", server.addr))
        .await
        .expect("page loads");
    page.wait_for_status("open").await;
    // Nothing is asked until the form is used.
    assert_eq!(asks_a_name(&page).await, json!([false, false, true]));
    page.element("enter-room")
        .await
        .click()
        .await
        .expect("clicks");
    page.wait_until("the name field gone", async || {
        (asks_a_name(&page).await == json!([true, true, false])).then_some(())
    })
    .await;
    // `--dev-sign-in` makes a token for the name given: it asks.
    let dev = TestServer::start_with_dir(
        &built_static_dir(),
        &["--auth-key", key.as_str(), "--dev-sign-in"],
    )
    .await;
    page.client()
        .goto(&format!("http://{}/", dev.addr))
        .await
        .expect("page loads");
    page.wait_for_status("open").await;
    page.element("enter-room")
        .await
        .click()
        .await
        .expect("clicks");
    page.wait_until("/auth/config answered", async || {
        let asked = page
            .run("return performance.getEntriesByType('resource').some(e => e.name.endsWith('/auth/config') && e.responseEnd > 0)")
            .await;
        (asked == json!(true)).then_some(())
    })
    .await;
    assert_eq!(asks_a_name(&page).await, json!([false, false, true]));
}

/// Sets the viewport's width (CSS pixels) and the colour scheme the page sees.
async fn emulate(page: &Browser, width: u32, scheme: &str) {
    page.devtools(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": width, "height": 720, "deviceScaleFactor": 1, "mobile": width < 500}),
    )
    .await;
    page.devtools(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
    )
    .await;
}

/// Whether anything on the page is wider or taller than the viewport (the page scrolls; its
/// log should).
const OVERFLOWS: &str = "const page = document.documentElement;
    return page.scrollWidth > innerWidth || page.scrollHeight > innerHeight";

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn the_room_page_at_320_px_and_on_a_desktop_in_both_themes_is_photographed() {
    let server = TestServer::start_with_dir(&built_static_dir(), &["--max-text-bytes", "40"]).await;
    let mut bo = Member::connect(&server, "bo").await;
    bo.join("studio", None).await;
    bo.send_all([
        publish("studio", "h1", "Morning! Who has the slides?"),
        publish("studio", "h2", "I pushed a draft last night"),
        publish("studio", "h3", "two lines:\nthe second one"),
    ])
    .await;
    let ana = open_room(server.addr, "studio", "ana").await;
    wait_for_message(&ana, "bo", "two lines:\nthe second one").await;
    ana.type_message("I have them").await;
    wait_for_message(&ana, "ana", "I have them").await;
    ana.type_message("and a line far too long for this server to take")
        .await;
    ana.wait_until("the refused line", async || {
        (ana.run("return document.querySelector('#log li.given-up') !== null")
            .await
            == json!(true))
        .then_some(())
    })
    .await;
    bo.send(json!({"type": "typing", "room": "studio"})).await;
    ana.wait_until("bo typing", async || {
        (!ana.text_of("typing").await.is_empty()).then_some(())
    })
    .await;
    ana.run("document.getElementById('people').open = true")
        .await;
    for (width, label) in [(320, "320px"), (1280, "desktop")] {
        for scheme in ["light", "dark"] {
            emulate(&ana, width, scheme).await;
            assert_eq!(
                ana.run(OVERFLOWS).await,
                json!(false),
                "{label} {scheme}: larger than the screen"
            );
            ana.screenshot(&format!("room-{label}-{scheme}.png")).await;
        }
    }
    ana.assert_no_errors().await;
}
