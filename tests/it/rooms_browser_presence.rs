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
