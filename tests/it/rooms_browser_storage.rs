//! What the room page keeps for a reload, in headless Chromium, tried as a person with a full
//! storage quota or a tab reloaded under another name would: a copy that can no longer be
//! kept current is removed and the person told (a reload would otherwise resend what was
//! answered and lose what came since); a saved room belongs to its server, name and room, and
//! is never sent under another name; a burst of messages is saved a few times, not once a
//! frame; and the page asks before being left only while something waits (a `beforeunload`
//! listener keeps a page out of the back-forward cache).
//!
//! Ignored by a plain `cargo test`, like `browser.rs`: it needs Chromium, chromedriver and the
//! built client.

use serde_json::json;

use crate::browser::{Browser, built_static_dir};
use crate::rooms::{Member, publish};
use crate::rooms_browser::{Proxy, lines, wait_for_message};
use crate::support::TestServer;

/// The keys of the rooms this tab saved.
const ROOM_KEYS: &str =
    "return Object.keys(sessionStorage).filter(key => key.startsWith('web-client.room:')).sort()";

async fn room_keys(page: &Browser) -> Vec<String> {
    serde_json::from_value(page.run(ROOM_KEYS).await).expect("keys")
}

/// Fills this tab's storage until less than a kilobyte is left, under the key `junk`.
const FILL_STORAGE: &str = "let junk = '';
    for (const size of [1 << 20, 1 << 16, 1 << 12, 1 << 10]) {
        for (;;) {
            try { sessionStorage.setItem('junk', junk + 'x'.repeat(size)); junk += 'x'.repeat(size); }
            catch (full) { break; }
        }
    }
    return junk.length";

/// A page on `proxy`'s room view.
async fn open_through(proxy: &Proxy, room: &str, name: &str) -> Browser {
    let page = Browser::start().await;
    page.client()
        .goto(&format!("http://{}/?room={room}&name={name}", proxy.addr))
        .await
        .expect("page loads");
    page.wait_for_status("open").await;
    page.watch_for_errors().await;
    page
}

/// What `room` says, `(author, text)` from its recent history on, until the message `last`,
/// as a member that joins it now reads it.
async fn said_until(member: &mut Member, room: &str, last: &str) -> Vec<(String, String)> {
    member
        .send(json!({"type": "join", "room": room, "history": 10}))
        .await;
    let mut said = Vec::new();
    loop {
        match member.next().await {
            room_protocol::ServerFrame::Message { from, text, .. } => {
                let done = text == last;
                said.push((from, text));
                if done {
                    return said;
                }
            }
            room_protocol::ServerFrame::Joined { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

/// Types `text` and waits until this tab's storage holds it, and each of `also`.
async fn type_until_saved(page: &Browser, text: &str, also: &[&str]) {
    page.type_message(text).await;
    page.wait_until("saved with the message", async || {
        let saved = page
            .run("return Object.values(sessionStorage).join()")
            .await;
        saved
            .as_str()
            .is_some_and(|saved| {
                saved.contains(text) && also.iter().all(|part| saved.contains(part))
            })
            .then_some(())
    })
    .await;
}

/// Whether some line of the page's log contains `text`.
async fn says(page: &Browser, text: &str) -> bool {
    lines(page)
        .await
        .iter()
        .any(|line| line.whole.contains(text))
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_copy_the_full_storage_cannot_keep_current_is_removed_and_the_person_told() {
    let server = TestServer::start_with_dir(&built_static_dir(), &[]).await;
    let proxy = Proxy::start(server.addr).await;
    let page = open_through(&proxy, "vault", "ana").await;
    page.wait_until("the room saved", async || {
        (room_keys(&page).await.len() == 1).then_some(())
    })
    .await;
    // Cut off: what is typed waits, and must be saved to survive a reload.
    proxy.refuse(true);
    page.wait_for_status("reconnecting").await;
    let filled = page.run(FILL_STORAGE).await;
    assert!(filled.as_u64() > Some(1 << 20), "{filled}");
    page.type_message(&"a long line ".repeat(200)).await;
    page.wait_until("the person told", async || {
        says(&page, "cannot be kept for a reload")
            .await
            .then_some(())
    })
    .await;
    assert!(
        says(&page, "would lose 1 message").await,
        "{:?}",
        page.log_lines().await
    );
    // The older copy (without this message) is gone: a reload starts clean rather than
    // from a state that misses it.
    assert_eq!(room_keys(&page).await, Vec::<String>::new());
    // Room again: the next save keeps everything, and says so.
    page.run("sessionStorage.removeItem('junk')").await;
    page.type_message("short").await;
    page.wait_until("kept again", async || {
        says(&page, "kept for a reload again").await.then_some(())
    })
    .await;
    // The notice may come from a save of the state before "short" (the page tries again to
    // save what it could not keep); the save after it keeps both.
    page.wait_until("both kept", async || {
        let kept = page
            .run("return (Object.entries(sessionStorage).find(([key]) => key.startsWith('web-client.room:')) || ['', ''])[1]")
            .await;
        kept.as_str()
            .is_some_and(|kept| kept.contains("a long line") && kept.contains("short"))
            .then_some(())
    })
    .await;
    proxy.refuse(false);
    wait_for_message(&page, "ana", "short").await;
    page.assert_no_errors().await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_tab_reloaded_under_another_name_never_sends_the_first_names_messages() {
    let server = TestServer::start_with_dir(&built_static_dir(), &[]).await;
    let proxy = Proxy::start(server.addr).await;
    let page = open_through(&proxy, "vault", "ana").await;
    proxy.refuse(true);
    page.wait_for_status("reconnecting").await;
    type_until_saved(&page, "from ana", &[]).await;
    // The same tab, now as bo (a reload with another `?name=`, a duplicated tab edited).
    page.client()
        .goto(&format!("http://{}/?room=vault&name=bo", proxy.addr))
        .await
        .expect("page loads");
    page.wait_until("bo's page", async || {
        (page.run("return document.title").await == json!("Room vault · bo")).then_some(())
    })
    .await;
    assert!(
        !says(&page, "from ana").await,
        "ana's message shown as bo's: {:?}",
        page.log_lines().await
    );
    proxy.refuse(false);
    page.wait_for_status("open").await;
    page.type_message("bo here").await;
    wait_for_message(&page, "bo", "bo here").await;
    let mut watcher = Member::connect(&server, "watcher").await;
    assert_eq!(
        said_until(&mut watcher, "vault", "bo here").await,
        [("bo".to_owned(), "bo here".to_owned())]
    );
    // Back as ana: her message goes, under her name.
    page.client()
        .goto(&format!("http://{}/?room=vault&name=ana", proxy.addr))
        .await
        .expect("page loads");
    page.watch_for_errors().await;
    wait_for_message(&page, "ana", "from ana").await;
    page.assert_no_errors().await;
}

/// The types of the listeners on `window`, as DevTools lists them.
async fn window_listeners(page: &Browser) -> Vec<String> {
    let window = page
        .devtools("Runtime.evaluate", json!({"expression": "window"}))
        .await;
    let object = window["result"]["objectId"].clone();
    let listeners = page
        .devtools("DOMDebugger.getEventListeners", json!({"objectId": object}))
        .await;
    listeners["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|listener| listener["type"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_burst_is_saved_a_few_times_and_leaving_is_questioned_only_while_something_waits() {
    const BURST: usize = 200;
    let server = TestServer::start_with_dir(
        &built_static_dir(),
        &["--publish-rate", "1000", "--publish-burst", "1000"],
    )
    .await;
    let proxy = Proxy::start(server.addr).await;
    let page = open_through(&proxy, "busy", "ana").await;
    let leaving = |listeners: &[String]| listeners.iter().any(|kind| kind == "beforeunload");
    assert!(
        !leaving(&window_listeners(&page).await),
        "nothing waits, yet leaving is questioned"
    );
    page.run(
        "window.__saves = 0;
         const setItem = Storage.prototype.setItem;
         Storage.prototype.setItem = function (key, value) {
             if (key.startsWith('web-client.room:')) window.__saves += 1;
             return setItem.call(this, key, value);
         };",
    )
    .await;
    let mut bo = Member::connect(&server, "bo").await;
    bo.join("busy", None).await;
    bo.send_all((0..BURST).map(|n| publish("busy", &format!("b{n}"), &format!("line {n}"))))
        .await;
    page.wait_until("the burst shown", async || {
        (crate::rooms_browser::messages(&page).await.len() == BURST).then_some(())
    })
    .await;
    let started = tokio::time::Instant::now();
    // The last save may wait for its interval.
    let saves = page
        .wait_until("the last save", async || {
            let saved = page
                .run("return Object.entries(sessionStorage).find(([key]) => key.startsWith('web-client.room:'))[1]")
                .await;
            let saved = saved.as_str().unwrap_or_default().to_owned();
            saved
                .contains(&format!("\"last\":{BURST}"))
                .then_some(())?;
            page.run("return window.__saves").await.as_u64()
        })
        .await;
    let took = started.elapsed();
    assert!(
        saves <= 10,
        "{saves} saves for {BURST} messages: saved once a frame, not a few times"
    );
    eprintln!("{saves} saves for {BURST} messages; the last within {took:?}");
    // Something waits: leaving is questioned; once delivered, no longer.
    proxy.refuse(true);
    page.wait_for_status("reconnecting").await;
    page.type_message("waiting").await;
    page.wait_until("leaving questioned", async || {
        leaving(&window_listeners(&page).await).then_some(())
    })
    .await;
    proxy.refuse(false);
    wait_for_message(&page, "ana", "waiting").await;
    page.wait_until("leaving free again", async || {
        (!leaving(&window_listeners(&page).await)).then_some(())
    })
    .await;
    page.assert_no_errors().await;
}

/// From the next page load on, the page's token URL answers with the token in
/// `localStorage["test-token"]`: an app's sign-in, which knows who is signed in there.
const TOKEN_FROM_THE_APP: &str = "const realFetch = window.fetch;
    window.fetch = function (url, init) {
      if (new URL(String(url), location.href).pathname === '/auth/token') {
        const token = localStorage.getItem('test-token');
        return Promise.resolve(new Response(JSON.stringify({ token }),
          { status: 200, headers: { 'content-type': 'application/json' } }));
      }
      return realFetch.apply(this, arguments);
    };";

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_reload_signed_in_as_someone_else_never_sends_the_first_users_messages() {
    use crate::rooms_auth::{Keys, claims, hs256};

    let keys = Keys::new();
    let hmac = keys.path("hmac");
    let server =
        TestServer::start_with_dir(&built_static_dir(), &["--auth-key", hmac.as_str()]).await;
    let proxy = Proxy::start(server.addr).await;
    let token = |sub: &str, name: &str| hs256(&claims(sub, Some(name), json!({"*": "write"}), 600));
    let page = Browser::start().await;
    page.devtools(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": TOKEN_FROM_THE_APP }),
    )
    .await;
    // Ana signed in to the app: the page (no `?name=`) gets her token.
    page.client()
        .goto(&format!("http://{}/", proxy.addr))
        .await
        .expect("page loads");
    page.run(&format!(
        "localStorage.setItem('test-token', {:?})",
        token("u-ana", "Ana")
    ))
    .await;
    page.client()
        .goto(&format!("http://{}/?room=vault", proxy.addr))
        .await
        .expect("page loads");
    page.wait_for_status("open").await;
    page.wait_until("signed in as Ana", async || {
        (page.run("return document.title").await == json!("Room vault · Ana")).then_some(())
    })
    .await;
    proxy.refuse(true);
    page.wait_for_status("reconnecting").await;
    type_until_saved(&page, "from ana", &["u-ana"]).await;
    // Ana signs out of the app and Bo signs in; the chat tab is reloaded.
    page.run(&format!(
        "localStorage.setItem('test-token', {:?})",
        token("u-bo", "Bo")
    ))
    .await;
    proxy.refuse(false);
    page.client().refresh().await.expect("reloads");
    page.wait_until("signed in as Bo", async || {
        (page.run("return document.title").await == json!("Room vault · Bo")).then_some(())
    })
    .await;
    page.watch_for_errors().await;
    // Ana's line is handed back, refused, under her name; nothing of hers went.
    page.wait_until("Ana's line refused", async || {
        lines(&page).await.iter().find(|line| {
            line.text.as_deref() == Some("from ana")
                && line.class.contains("given-up")
                && line.author.as_deref() != Some("Bo")
        })?;
        Some(())
    })
    .await;
    page.type_message("bo here").await;
    wait_for_message(&page, "Bo", "bo here").await;
    // A reader of the room, with a token of its own.
    let (mut watcher, _) = crate::rooms_auth::sign_in(&server, &token("u-watch", "Watch")).await;
    assert_eq!(
        said_until(&mut watcher, "vault", "bo here").await,
        [("Bo".to_owned(), "bo here".to_owned())]
    );
    page.assert_no_errors().await;
}

/// Waits until one's own line `text` says it was delivered.
async fn delivered(page: &Browser, text: &str) {
    page.wait_until(&format!("{text} delivered"), async || {
        lines(page)
            .await
            .iter()
            .any(|line| {
                line.text.as_deref() == Some(text) && line.state.as_deref() == Some("delivered")
            })
            .then_some(())
    })
    .await;
}

/// Reloads `page` and waits until the new page is connected.
async fn reload(page: &Browser) {
    page.reload_accepting_the_question().await;
    page.wait_for_status("open").await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn a_warm_reload_of_a_room_asks_for_the_page_alone_and_a_stale_mode_is_asked_again() {
    use crate::browser::{responses, responses_since};

    let server =
        TestServer::start_with_dir(&built_static_dir(), &["--metrics-addr", "127.0.0.1:0"]).await;
    let page = crate::rooms_browser::open_room(server.addr, "hall", "ana").await;
    let cold = responses(&server).await;
    reload(&page).await;
    page.type_message("after the reload").await;
    delivered(&page, "after the reload").await;
    assert_eq!(
        responses_since(&server, &cold).await,
        [("3xx".to_owned(), 1)],
        "the page's revalidation alone: whether the server wants tokens was remembered"
    );

    // The tab remembers tokens, but this server (restarted another way, say) wants none:
    // the page asks again instead of saying it cannot sign in.
    page.run("sessionStorage.setItem('web-client.auth-mode', 'tokens')")
        .await;
    reload(&page).await;
    page.watch_for_errors().await;
    page.type_message("open again").await;
    delivered(&page, "open again").await;
    assert!(
        !says(&page, "Cannot sign in").await,
        "{:?}",
        lines(&page).await
    );

    // The other way: remembered open, but this server wants tokens (its dev sign-in gives
    // them): the refused URL makes the page ask, and it signs in.
    let signed = TestServer::start_with_dir(&built_static_dir(), &["--dev-sign-in"]).await;
    let bo = crate::rooms_browser::open_room(signed.addr, "hall", "bo").await;
    bo.run("sessionStorage.setItem('web-client.auth-mode', 'open')")
        .await;
    reload(&bo).await;
    bo.watch_for_errors().await;
    bo.type_message("signed in again").await;
    delivered(&bo, "signed in again").await;
    assert!(!says(&bo, "Cannot connect").await, "{:?}", lines(&bo).await);
    bo.assert_no_errors().await;
    page.assert_no_errors().await;
}
