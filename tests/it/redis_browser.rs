//! Rooms across instances in headless Chromium, deployed as the README says: two instances on
//! one Redis behind the shipped `deploy/nginx.conf`. Two pages in one room, each held by a
//! different instance (read from each instance's `/metrics`); the instance of one page is
//! killed with SIGKILL, the page moves to the other through nginx, and both pages end with
//! the same conversation, each message once, with nothing lost and no gap.
//!
//! Ignored by a plain `cargo test`, like `browser.rs`: it needs redis-server, nginx,
//! Chromium, chromedriver and the built client.

use std::time::Duration;

use tokio::time::Instant;

use crate::browser::{Browser, built_static_dir};
use crate::rooms_browser::{
    GAP_LINE, Line, lines, messages, open_room, shown, shown_twice, wait_for_message,
};
use crate::support::{Nginx, PATIENCE, Redis, TestServer, http_request, metric_value};

/// Rooms sessions open on `server` now, from its `/metrics`.
async fn rooms_sessions(server: &TestServer) -> u64 {
    let text = server.metrics().await;
    // The app label is the path, as for the other apps.
    ["/rooms", "rooms"]
        .iter()
        .filter_map(|app| {
            metric_value(
                &text,
                &format!("chat_websocket_sessions_open{{app=\"{app}\"}}"),
            )
        })
        .sum::<f64>() as u64
}

/// Waits until `check` holds for the rooms sessions open on each of `servers`, in order.
async fn wait_for_sessions(
    servers: &[&TestServer],
    what: &str,
    check: impl Fn(&[u64]) -> bool,
) -> Vec<u64> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut counts = Vec::new();
        for server in servers {
            counts.push(rooms_sessions(server).await);
        }
        if check(&counts) {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: sessions open {counts:?}"
        );
        // The count changes when the server gets to it: there is no event to wait for.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
#[ignore = "needs redis-server, nginx, Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn behind_nginx_two_pages_on_two_instances_one_killed_the_page_moves_and_both_keep_one_conversation()
 {
    let static_dir = built_static_dir();
    let redis = Redis::start().await;
    let url = redis.url();
    let args = ["--redis-url", url.as_str(), "--metrics-addr", "127.0.0.1:0"];
    let mut first = TestServer::start_with_dir(&static_dir, &args).await;
    let mut second = TestServer::start_with_dir(&static_dir, &args).await;
    // Both linked to Redis (ready) before any page comes, as a balancer would wait.
    for server in [&first, &second] {
        server.wait_for_readiness(http::StatusCode::OK).await;
    }
    let port = Nginx::free_port();
    let config = crate::deployment::shipped_nginx_conf_for(&[first.addr, second.addr], port);
    let nginx = Nginx::start(&config, port).await;

    let ana = open_room(nginx.addr, "lobby", "ana").await;
    let counts = wait_for_sessions(&[&first, &second], "ana's socket", |counts| {
        counts.iter().sum::<u64>() == 1
    })
    .await;
    let ana_on_first = counts[0] == 1;
    let mut bo = open_room(nginx.addr, "lobby", "bo").await;
    // nginx hands requests to the instances in turn, and a page load is several requests: bo's
    // socket may land where ana's is. Then bo's browser goes (a page navigated away may keep
    // its socket in the back-forward cache), one more request moves the turn on, and bo
    // comes again.
    let mut attempts = 0;
    loop {
        let counts = wait_for_sessions(&[&first, &second], "bo's socket", |counts| {
            counts.iter().sum::<u64>() == 2
        })
        .await;
        if counts == [1, 1] {
            eprintln!("bo's socket on the other instance after {attempts} moves");
            break;
        }
        attempts += 1;
        assert!(
            attempts < 8,
            "bo's socket never landed on the other instance"
        );
        close(bo).await;
        wait_for_sessions(&[&first, &second], "bo gone", |counts| {
            counts.iter().sum::<u64>() == 1
        })
        .await;
        let turn = http_request(nginx.addr, "GET", "/healthz", &[]).await;
        assert_eq!(turn.status, http::StatusCode::OK);
        bo = open_room(nginx.addr, "lobby", "bo").await;
    }

    ana.type_message("hello from ana").await;
    wait_for_message(&bo, "ana", "hello from ana").await;
    bo.type_message("hi ana, bo on the other instance").await;
    for page in [&ana, &bo] {
        wait_for_message(page, "ana", "hello from ana").await;
        wait_for_message(page, "bo", "hi ana, bo on the other instance").await;
    }

    ana.record_status_changes().await;
    // ana's instance dies without a word.
    let (doomed, survivor) = if ana_on_first {
        (&mut first, &second)
    } else {
        (&mut second, &first)
    };
    doomed.signal("KILL");
    let _ = doomed.wait().await;
    // Both type while ana's page is moving: what bo types goes out at once, what ana types
    // waits in her page's outbox until it is back (unless it already is).
    bo.type_message("typed while the other moves").await;
    wait_for_message(&bo, "bo", "typed while the other moves").await;
    ana.type_message("typed while moving").await;
    // The page moved to the surviving instance through nginx.
    wait_for_sessions(&[survivor], "both pages on the survivor", |counts| {
        counts == [2]
    })
    .await;
    for page in [&ana, &bo] {
        wait_for_message(page, "ana", "typed while moving").await;
        wait_for_message(page, "bo", "typed while the other moves").await;
    }
    // ana's page noticed: it was cut off, and connected again.
    let statuses: Vec<String> = ana
        .status_changes()
        .await
        .into_iter()
        .map(|(status, _, _)| status)
        .collect();
    assert!(
        statuses.iter().any(|status| status == "reconnecting")
            && statuses.last().map(String::as_str) == Some("open"),
        "{statuses:?}"
    );
    ana.type_message("after the move, from the page that moved")
        .await;
    wait_for_message(&bo, "ana", "after the move, from the page that moved").await;
    bo.type_message("after the move, from the page that stayed")
        .await;
    for page in [&ana, &bo] {
        wait_for_message(page, "bo", "after the move, from the page that stayed").await;
    }
    ana.screenshot("redis-rooms-ana-moved.png").await;
    bo.screenshot("redis-rooms-bo-stayed.png").await;

    let texts = [
        "hello from ana",
        "hi ana, bo on the other instance",
        "typed while the other moves",
        "typed while moving",
        "after the move, from the page that moved",
        "after the move, from the page that stayed",
    ];
    for (page, name) in [(&ana, "ana"), (&bo, "bo")] {
        assert_eq!(shown_twice(page).await, Vec::<String>::new(), "{name}");
        for text in texts {
            assert_eq!(shown(page, text).await, 1, "{name}: {text}");
        }
        // The history was shared: the page that moved recovered everything, so no page says
        // that something could not be recovered.
        let lines = lines(page).await;
        assert!(
            !lines.iter().any(|line| line.whole == GAP_LINE),
            "{name}: {lines:?}"
        );
        let undelivered: Vec<&Line> = lines
            .iter()
            .filter(|line| {
                line.state
                    .as_deref()
                    .is_some_and(|state| state != "delivered")
            })
            .collect();
        assert!(undelivered.is_empty(), "{name}: {undelivered:?}");
        assert_eq!(page.text_of("queued").await, "", "{name}: nothing waits");
        page.assert_no_errors().await;
        page.assert_no_csp_violations().await;
    }
    // The same conversation on both pages: the same messages, and the same order from the
    // move on. (Before that, a line typed while cut off stands where it was typed.)
    let mut on_ana = messages(&ana).await;
    let mut on_bo = messages(&bo).await;
    let tail = |messages: &[(String, String)]| messages[messages.len() - 2..].to_vec();
    assert_eq!(tail(&on_ana), tail(&on_bo));
    on_ana.sort();
    on_bo.sort();
    assert_eq!(on_ana, on_bo);
    assert_eq!(on_ana.len(), texts.len());
    assert!(
        !nginx.error_log().contains("[emerg]"),
        "{}",
        nginx.error_log()
    );
    for page in [ana, bo] {
        close(page).await;
    }
}

async fn close(page: Browser) {
    page.client().clone().close().await.expect("session closes");
}
