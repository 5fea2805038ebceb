//! The room view on a server that wants tokens, in headless Chromium: pages that sign in with
//! `--dev-sign-in` and see each other under their tokens' names, whatever a page sends; a
//! token that expires while the page is open, refreshed on the same connection with nothing
//! lost, and a token service that is down for a refresh (4408, a new token, a reconnect with
//! the positions); a token URL that refuses, said once and not asked again until Reconnect.
//!
//! What the page asks of the network is recorded in the page itself
//! ([`Browser::record_requests`]): the token requests, the WebSockets, their close codes.
//!
//! Ignored by a plain `cargo test`, like `browser.rs`: it needs Chromium, chromedriver and the
//! built client.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::{Browser, built_static_dir};
use crate::rooms_browser::{lines, messages, shown_twice, wait_for_message};
use crate::support::TestServer;

/// A browser recording its requests, on `path` of `addr`, once the room is open.
async fn open_page(addr: SocketAddr, path: &str) -> Browser {
    let page = Browser::start().await;
    page.record_requests().await;
    page.client()
        .goto(&format!("http://{addr}{path}"))
        .await
        .expect("page loads");
    page.wait_for_status("open").await;
    page.watch_for_errors().await;
    page
}

/// The page's token requests (`POST`s) so far, and how each was answered.
async fn token_posts(page: &Browser) -> Vec<Value> {
    let (fetches, _, _) = page.requests().await;
    fetches
        .into_iter()
        .filter(|(method, _, _)| method == "POST")
        .map(|(_, _, status)| status)
        .collect()
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn two_pages_sign_in_as_two_people_and_neither_can_speak_as_the_other() {
    let server = TestServer::start_with_dir(&built_static_dir(), &["--dev-sign-in"]).await;
    let ana = open_page(server.addr, "/?room=lobby&name=Ana").await;
    let bo = open_page(server.addr, "/?room=lobby&name=Bo").await;
    ana.type_message("hello from Ana").await;
    wait_for_message(&bo, "Ana", "hello from Ana").await;
    wait_for_message(&ana, "Ana", "hello from Ana").await;
    bo.type_message("hello from Bo").await;
    wait_for_message(&ana, "Bo", "hello from Bo").await;
    for page in [&ana, &bo] {
        // One token each, and the page asked whether the server wants one first.
        let (fetches, sockets, _) = page.requests().await;
        let asked: Vec<(&str, &str)> = fetches
            .iter()
            .filter(|(_, path, _)| path.starts_with("/auth/"))
            .map(|(method, path, _)| (method.as_str(), path.as_str()))
            .collect();
        assert_eq!(
            asked,
            [("GET", "/auth/config"), ("POST", "/auth/token")],
            "{fetches:?}"
        );
        assert_eq!(sockets, 1);
    }

    // Bo's page tries to speak as Ana three ways: a name in the URL, a publish before any
    // token, and a publish under its own token that claims Ana's name and user id.
    let tried = bo
        .client()
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const base = 'ws://' + location.host + '/rooms', results = {};
             const closed = socket => new Promise(resolve =>
               socket.addEventListener('close', event => resolve([event.code, event.reason])));
             (async () => {
               results.named = await closed(new WebSocket(base + '?name=Ana'));
               const bare = new WebSocket(base);
               bare.onopen = () => bare.send(JSON.stringify(
                 { type: 'publish', room: 'lobby', id: 'forged-1', text: 'bare forgery', from: 'Ana' }));
               results.bare = await closed(bare);
               const answer = await fetch('/auth/token',
                 { method: 'POST', body: new URLSearchParams({ name: 'Bo' }) });
               const { token } = await answer.json();
               const signed = new WebSocket(base);
               signed.onopen = () => {
                 signed.send(JSON.stringify({ type: 'auth', token }));
                 signed.send(JSON.stringify({ type: 'join', room: 'lobby' }));
                 signed.send(JSON.stringify({ type: 'publish', room: 'lobby', id: 'forged-2',
                   text: 'signed forgery', from: 'Ana', name: 'Ana', user: 'dev-0123456789abcdef' }));
               };
               results.signed = await new Promise(resolve => signed.onmessage = event => {
                 const frame = JSON.parse(event.data);
                 if (frame.type === 'ack' || frame.type === 'error') resolve(frame.type);
               });
               signed.close(1000);
               done(results);
             })().catch(error => done({ error: String(error) }));",
            vec![],
        )
        .await
        .expect("the script runs");
    // The handshake with a name is refused (400): the browser says 1006.
    assert_eq!(tried["named"][0], json!(1006), "{tried}");
    assert_eq!(
        tried["bare"],
        json!([4401, "the first frame must be auth"]),
        "{tried}"
    );
    assert_eq!(tried["signed"], json!("ack"), "{tried}");
    // The signed forgery reaches Ana under Bo's name; the bare one reaches nobody.
    wait_for_message(&ana, "Bo", "signed forgery").await;
    let shown = messages(&ana).await;
    assert!(
        !shown
            .iter()
            .any(|(author, text)| author == "Ana" && text.contains("forgery")),
        "{shown:?}"
    );
    assert!(
        !shown.iter().any(|(_, text)| text == "bare forgery"),
        "{shown:?}"
    );
    for page in [&ana, &bo] {
        assert_eq!(shown_twice(page).await, Vec::<String>::new());
        page.assert_no_errors().await;
        page.assert_no_csp_violations().await;
    }
    // The title says who the page is, as the token names it.
    let title = ana.run("return document.title").await;
    assert_eq!(title, json!("Room lobby · Ana"));
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_token_that_expires_while_the_page_is_open_is_refreshed_on_the_same_connection() {
    // Tokens of 3 s: refreshed about every 2.4 s.
    let server = TestServer::start_with_dir(
        &built_static_dir(),
        &["--dev-sign-in", "--dev-token-ttl", "3s"],
    )
    .await;
    let ana = open_page(server.addr, "/?room=tea&name=Ana").await;
    let bo = open_page(server.addr, "/?room=tea&name=Bo").await;
    ana.record_status_changes().await;
    // A message before each refresh, until three refreshes are done: past three expiries.
    let mut typed = Vec::new();
    for refreshes in 1..=3 {
        let text = format!("before refresh {refreshes}");
        ana.type_message(&text).await;
        typed.push(("Ana".to_owned(), text));
        ana.wait_until(&format!("refresh {refreshes}"), async || {
            let posts = token_posts(&ana).await;
            (posts.len() > refreshes && posts.iter().all(|status| status == &json!(200)))
                .then_some(())
        })
        .await;
    }
    ana.type_message("after the refreshes").await;
    typed.push(("Ana".to_owned(), "after the refreshes".to_owned()));
    wait_for_message(&ana, "Ana", "after the refreshes").await;
    wait_for_message(&bo, "Ana", "after the refreshes").await;
    assert_eq!(messages(&bo).await, typed, "bo saw each once, in order");
    let (_, sockets, closes) = ana.requests().await;
    assert_eq!(
        (sockets, closes),
        (1, vec![]),
        "one connection, never closed"
    );
    let changes = ana.status_changes().await;
    assert!(
        changes.iter().all(|(key, _, _)| key == "open"),
        "the page stayed connected: {changes:?}"
    );
    let undelivered: Vec<_> = lines(&ana)
        .await
        .into_iter()
        .filter(|line| {
            line.state
                .as_deref()
                .is_some_and(|state| state != "delivered")
        })
        .collect();
    assert!(undelivered.is_empty(), "{undelivered:?}");

    // The token service is down when the next refresh is due: the server closes 4408 at
    // expiry, and the page gets a new token and comes back with its position; what was
    // typed meanwhile arrives once.
    ana.run("window.__failPosts = 1").await;
    ana.wait_until("the refresh that fails", async || {
        token_posts(&ana)
            .await
            .contains(&json!("failed"))
            .then_some(())
    })
    .await;
    ana.type_message("while the token service is down").await;
    bo.type_message("Bo while Ana's token runs out").await;
    ana.wait_until("4408 and a new connection", async || {
        let (_, sockets, closes) = ana.requests().await;
        (closes.first() == Some(&4408) && sockets == 2).then_some(())
    })
    .await;
    ana.wait_for_status("open").await;
    ana.type_message("after the new token").await;
    for (author, text) in [
        ("Ana", "while the token service is down"),
        ("Bo", "Bo while Ana's token runs out"),
        ("Ana", "after the new token"),
    ] {
        wait_for_message(&ana, author, text).await;
        wait_for_message(&bo, author, text).await;
    }
    for page in [&ana, &bo] {
        assert_eq!(shown_twice(page).await, Vec::<String>::new());
        assert_eq!(page.text_of("queued").await, "");
        page.assert_no_errors().await;
        page.assert_no_csp_violations().await;
    }
    // The one close was the server's 4408, and one reconnect followed.
    let (_, sockets, closes) = ana.requests().await;
    assert_eq!((sockets, closes), (2, vec![4408]));
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_refusing_token_url_is_said_once_and_not_asked_again_until_reconnect() {
    let keys = tempfile::tempdir().expect("a temporary directory");
    let key = keys.path().join("hmac");
    std::fs::write(&key, "a secret of the browser tests, 40 bytes.").expect("written");
    // Tokens wanted, but this server signs none: its /auth/token answers 404, as a page
    // pointed at a backend that is not there would be.
    let server = TestServer::start_with_dir(
        &built_static_dir(),
        &["--auth-key", &key.display().to_string()],
    )
    .await;
    let page = Browser::start().await;
    page.record_requests().await;
    page.client()
        .goto(&format!("http://{}/?room=lobby", server.addr))
        .await
        .expect("page loads");
    let status = page.wait_for_status("signed-out").await;
    assert!(status.contains("HTTP 404"), "{status}");
    page.watch_for_errors().await;
    page.type_message("typed while signed out").await;
    // An app's backend that refuses (401: not logged in), on a second page.
    let refused = Browser::start().await;
    refused
        .devtools(
            "Page.addScriptToEvaluateOnNewDocument",
            // In a scope of its own: the recorder below declares its own `realFetch`.
            json!({ "source": "(() => { const realFetch = window.fetch;
                window.fetch = function (url, init) {
                  if (new URL(String(url), location.href).pathname === '/auth/token') {
                    return Promise.resolve(new Response('log in first', { status: 401 }));
                  }
                  return realFetch.apply(this, arguments);
                }; })();" }),
        )
        .await;
    refused.record_requests().await;
    refused
        .client()
        .goto(&format!("http://{}/?room=lobby", server.addr))
        .await
        .expect("page loads");
    let status = refused.wait_for_status("signed-out").await;
    assert!(status.contains("HTTP 401: log in first"), "{status}");
    // Long enough for several attempts of a page that would retry (its first waits are
    // under a second): none comes, on either page.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let said = |lines: &[crate::rooms_browser::Line]| {
        lines
            .iter()
            .filter(|line| line.whole.starts_with("Cannot sign in:"))
            .count()
    };
    assert_eq!(
        said(&lines(&refused).await),
        1,
        "{:?}",
        lines(&refused).await
    );
    assert_eq!(token_posts(&refused).await, [json!(401)]);
    assert_eq!(refused.requests().await.1, 0, "no socket without a token");
    assert_eq!(said(&lines(&page).await), 1, "{:?}", lines(&page).await);
    assert_eq!(token_posts(&page).await, [json!(404)]);
    let (_, sockets, _) = page.requests().await;
    assert_eq!(sockets, 0, "no socket without a token");
    assert_eq!(page.status().await.0, "signed-out");
    assert!(
        page.text_of("queued").await.starts_with('1'),
        "what was typed waits"
    );

    // Reconnect asks once more, and is refused once more.
    page.element("reconnect")
        .await
        .click()
        .await
        .expect("press Reconnect");
    page.wait_until("the second refusal", async || {
        (said(&lines(&page).await) == 2).then_some(())
    })
    .await;
    assert_eq!(token_posts(&page).await, [json!(404), json!(404)]);
    page.wait_for_status("signed-out").await;
    page.assert_no_errors().await;
    page.assert_no_csp_violations().await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_page_past_its_users_connection_cap_says_so_once_and_waits_for_reconnect() {
    let server = TestServer::start_with_dir(
        &built_static_dir(),
        &["--dev-sign-in", "--max-connections-per-user", "1"],
    )
    .await;
    let first = open_page(server.addr, "/?room=lobby&name=Ana").await;
    // The same name is the same user: one connection too many.
    let second = Browser::start().await;
    second.record_requests().await;
    second
        .client()
        .goto(&format!("http://{}/?room=lobby&name=Ana", server.addr))
        .await
        .expect("page loads");
    let status = second.wait_for_status("signed-out").await;
    assert!(status.contains("4429"), "{status}");
    second.watch_for_errors().await;
    // Long enough for several attempts of a page that would retry: none comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let told = |lines: &[crate::rooms_browser::Line]| {
        lines
            .iter()
            .filter(|line| line.whole.contains("too many connections for this user"))
            .count()
    };
    assert_eq!(told(&lines(&second).await), 1, "{:?}", lines(&second).await);
    let (_, sockets, closes) = second.requests().await;
    assert_eq!((sockets, closes), (1, vec![4429]));

    // The first page goes; Reconnect then signs in, with a new token. The slot is freed
    // when the server sees the first connection end, a moment later: a press before that is
    // refused again (and said again), each with one token request.
    drop(first);
    let mut presses = 0;
    second
        .wait_until("signed in once the slot is free", async || {
            let (key, _) = second.status().await;
            if key == "signed-out" {
                presses += 1;
                second
                    .element("reconnect")
                    .await
                    .click()
                    .await
                    .expect("press Reconnect");
            }
            (key == "open").then_some(())
        })
        .await;
    assert_eq!(token_posts(&second).await.len(), presses + 1);
    second.type_message("Ana on her second page").await;
    wait_for_message(&second, "Ana", "Ana on her second page").await;
    second.assert_no_errors().await;
}
