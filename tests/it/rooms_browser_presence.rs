//! The room view's presence, typing and recent history in headless Chromium: two pages see
//! each other in the presence line and each other typing; a third page that comes in sees the
//! room's recent history above a line that says where it ends; a page that closes leaves the
//! others' presence within a second.
//!
//! Ignored by a plain `cargo test`, like `browser.rs`: it needs Chromium, chromedriver and the
//! built client.

use std::time::Duration;

use crate::browser::built_static_dir;
use crate::rooms_browser::{lines, open_room, wait_for_message};
use crate::support::TestServer;

/// The page's presence line.
async fn presence_line(page: &crate::browser::Browser) -> String {
    page.text_of("presence").await
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn pages_see_who_is_here_who_types_and_what_was_said_before_they_came() {
    let server = TestServer::start_with_dir(&built_static_dir(), &[]).await;
    let ana = open_room(server.addr, "porch", "ana").await;
    let bo = open_room(server.addr, "porch", "bo").await;
    for page in [&ana, &bo] {
        page.wait_until("both in the presence line", async || {
            (presence_line(page).await == "Here (2): ana, bo").then_some(())
        })
        .await;
    }
    // Typing (no Enter yet) shows on the other page, not one's own.
    let input = ana.element("message").await;
    input.send_keys("hel").await.expect("types");
    bo.wait_until("ana typing", async || {
        presence_line(&bo)
            .await
            .ends_with("ana is typing…")
            .then_some(())
    })
    .await;
    assert!(!presence_line(&ana).await.contains("typing"));
    input
        .send_keys("lo from the porch\u{E007}")
        .await
        .expect("sends");
    wait_for_message(&bo, "ana", "hello from the porch").await;
    // The message ends the typing.
    assert_eq!(presence_line(&bo).await, "Here (2): ana, bo");
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
            .any(|line| line.contains("hello from the porch"))
            && before.iter().any(|line| line.contains("hi ana")),
        "{shown:?}"
    );
    ana.type_message("welcome cy").await;
    wait_for_message(&cy, "ana", "welcome cy").await;
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

    // Bo closes his tab: gone from Ana's presence within a second.
    ana.wait_until("three here", async || {
        (presence_line(&ana).await == "Here (3): ana, bo, cy").then_some(())
    })
    .await;
    let closed = tokio::time::Instant::now();
    bo.client().close_window().await.expect("the tab closes");
    ana.wait_until("bo gone", async || {
        (presence_line(&ana).await == "Here (2): ana, cy").then_some(())
    })
    .await;
    assert!(
        closed.elapsed() < Duration::from_secs(1),
        "gone after {:?}",
        closed.elapsed()
    );
    for page in [&ana, &cy] {
        page.assert_no_errors().await;
        page.assert_no_csp_violations().await;
    }
    ana.screenshot("rooms-presence-ana.png").await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn the_front_page_leads_into_a_room_and_remembers_the_name() {
    const ENTER: &str = "\u{E007}";
    let server = TestServer::start_with_dir(&built_static_dir(), &[]).await;
    let page = crate::browser::Browser::start().await;
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
