//! Every timing rule with a fake clock: the time is an argument, so each test says exactly
//! when things happen.

use super::*;
use crate::room::test_frames::{ack, error, joined};
use room_protocol::{ErrorCode, ServerFrame};
use rules::{App, GREETING};

const REPLY: Duration = Duration::from_secs(5);
/// The shell's clock's zero on the calendar.
const EPOCH: u64 = 1_764_400_000_000;
const ROOM: &str = "lobby";

fn config(greeting: Greeting) -> Config {
    Config {
        reply_timeout: REPLY,
        connect_timeout: None,
        greeting,
        epoch_at_zero: EPOCH,
        // The top of the window: each delay is the whole window, less a hair.
        jitter: || 0.999_999,
    }
}

fn app(greeting: Greeting) -> Session {
    Session::new(
        Talk::App(Outbox::new(App::Subscriptions, 1024)),
        config(greeting),
    )
}

fn room() -> Session {
    Session::new(Talk::Room(Room::new(ROOM)), config(Greeting::Every))
}

/// What the session asks, carried out as a shell whose socket takes every frame at once.
fn drain(session: &mut Session) -> Vec<Effect> {
    let mut effects = Vec::new();
    while let Some(effect) = session.poll() {
        let written = matches!(effect, Effect::Send { report: true, .. });
        effects.push(effect);
        if written {
            // The time of the write matters to nothing these tests check.
            session.sent(0);
        }
    }
    effects
}

fn sends(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn closes(effects: &[Effect]) -> Vec<u16> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Close { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

fn lost(effects: &[Effect]) -> Option<(Lost, Duration)> {
    effects.iter().find_map(|effect| match effect {
        Effect::Lost { why, retry_in } => Some((why.clone(), *retry_in)),
        _ => None,
    })
}

/// The connection was lost at `at`: what that did is drained, and the wait waited out
/// (`handle_timeout` at its end); the time then.
fn wait_out(session: &mut Session, at: Millis) -> Millis {
    let (_, retry_in) = lost(&drain(session)).expect("the connection is lost");
    let then = at + millis(retry_in);
    session.handle_timeout(then);
    then
}

/// Started and opened at `at`; what that did.
fn connect(session: &mut Session, at: Millis) -> Vec<Effect> {
    session.start(at);
    session.handle_timeout(at);
    let mut effects = drain(session);
    assert!(effects.contains(&Effect::Connect), "{effects:?}");
    session.opened(at, false);
    effects.extend(drain(session));
    effects
}

fn authed(expires: u64) -> String {
    ServerFrame::Authed {
        user: "ana".into(),
        name: "Ana".into(),
        expires,
    }
    .to_json()
}

fn id(n: u8) -> String {
    room::message_id(&[n; 16])
}

#[test]
fn an_app_conversation_sends_what_is_typed_and_shows_the_answers() {
    let mut session = app(Greeting::Every);
    let effects = connect(&mut session, 0);
    assert!(sends(&effects).is_empty());
    session.text(10, GREETING);
    assert_eq!(drain(&mut session), [Effect::Reply(GREETING.into())]);
    session.push(20, "foo".into()).expect("queued");
    let effects = drain(&mut session);
    assert_eq!(sends(&effects), ["foo"]);
    assert!(matches!(&effects[1], Effect::Sent { again: false, .. }));
    assert_eq!(session.timeout(), Some(20 + 5_000), "the reply deadline");
    session.text(30, "bar");
    assert_eq!(drain(&mut session), [Effect::Reply("bar".into())]);
    assert_eq!(session.timeout(), None, "nothing is owed");
    assert_eq!(session.status(30), Status::Open { compressed: false });
}

#[test]
fn the_greeting_is_a_setting_every_connection_or_the_first_only() {
    for (greeting, shown_again) in [(Greeting::Every, true), (Greeting::First, false)] {
        let mut session = app(greeting);
        connect(&mut session, 0);
        session.text(1, GREETING);
        assert_eq!(drain(&mut session), [Effect::Reply(GREETING.into())]);
        session.closed(2, Ok((1001, "restart".into())));
        let (why, retry_in) = lost(&drain(&mut session)).expect("the connection is lost");
        assert_eq!(
            why,
            Lost::Closed {
                code: 1001,
                reason: "restart".into()
            }
        );
        let at = 2 + millis(retry_in);
        session.handle_timeout(at);
        assert_eq!(drain(&mut session), [Effect::Connect]);
        session.opened(at, false);
        session.text(at + 1, GREETING);
        let again = drain(&mut session) == [Effect::Reply(GREETING.into())];
        assert_eq!(again, shown_again, "{greeting:?}");
    }
}

#[test]
fn a_silent_server_is_closed_at_the_reply_deadline_counted_from_the_last_progress() {
    let mut session = app(Greeting::Every);
    connect(&mut session, 0);
    session.push(1_000, "hello".into()).expect("queued");
    drain(&mut session);
    // Three of the ten copies: progress, the deadline moves.
    for at in [2_000, 3_000, 4_000] {
        session.text(at, "hello");
    }
    drain(&mut session);
    assert_eq!(session.timeout(), Some(9_000));
    session.handle_timeout(8_999);
    assert!(drain(&mut session).is_empty(), "not before");
    session.handle_timeout(9_000);
    let effects = drain(&mut session);
    assert_eq!(closes(&effects), [NO_REPLY]);
    assert_eq!(
        lost(&effects).expect("the connection is lost").0,
        Lost::NoReply(REPLY)
    );
    assert_eq!(session.status(9_000), Status::Reconnecting { seconds: 1 });
}

#[test]
fn a_message_typed_while_nothing_is_owed_starts_the_deadline_from_when_it_goes() {
    let mut session = app(Greeting::Every);
    connect(&mut session, 0);
    session.text(1, GREETING);
    drain(&mut session);
    session.push(60_000, "hello".into()).expect("queued");
    drain(&mut session);
    assert_eq!(session.timeout(), Some(65_000), "not from the greeting");
}

#[test]
fn the_reply_deadline_counts_from_the_resend_after_rate_limited_not_from_the_refusal() {
    // A reply timeout shorter than the pause: the page once closed itself here (4000),
    // counting the deadline from the `rate_limited` frame.
    let mut session = room();
    session.config.reply_timeout = Duration::from_millis(800);
    connect(&mut session, 0);
    session.text(10, &joined("E", 0, true));
    drain(&mut session);
    session.publish(100, id(1), "one".into()).expect("queued");
    assert_eq!(sends(&drain(&mut session)).len(), 1);
    session.text(200, &error(ErrorCode::RateLimited, Some(&id(1))));
    assert!(drain(&mut session).is_empty(), "kept, nothing shown");
    assert_eq!(
        session.timeout(),
        Some(1_200),
        "the pause, no deadline during it"
    );
    // Where a deadline counted from the refusal would fall.
    session.handle_timeout(1_000);
    assert!(drain(&mut session).is_empty());
    session.handle_timeout(1_200);
    let effects = drain(&mut session);
    assert!(closes(&effects).is_empty(), "{effects:?}");
    assert_eq!(sends(&effects).len(), 1, "sent again after the pause");
    assert_eq!(session.timeout(), Some(2_000), "counted from the resend");
    session.text(1_900, &ack(&id(1), 1));
    assert!(matches!(
        drain(&mut session)[..],
        [Effect::Room(room::Event::Delivered { .. })]
    ));
    assert_eq!(session.timeout(), None);
}

#[test]
fn joins_and_the_token_go_before_any_publish() {
    let mut session = room();
    session.with_tokens(true);
    session.publish(0, id(1), "early".into()).expect("queued");
    session.start(0);
    assert_eq!(drain(&mut session), [Effect::Fetch(Fetch::Token)]);
    session.token(5, TokenAnswer::Token("T".into()));
    assert_eq!(drain(&mut session), [Effect::Connect]);
    session.opened(10, false);
    let sent = sends(&drain(&mut session));
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], auth_frame("T"));
    assert!(sent[1].contains(r#""type":"join""#), "{}", sent[1]);
    assert_eq!(
        session.timeout(),
        Some(10 + 5_000),
        "the join is owed an answer"
    );
    session.text(20, &joined("E", 0, true));
    let effects = drain(&mut session);
    assert_eq!(effects[0], Effect::Room(room::Event::Joined));
    assert!(sends(&effects)[0].contains("early"), "{effects:?}");
}

#[test]
fn a_socket_that_does_not_open_in_time_is_abandoned_and_tried_again() {
    let mut session = app(Greeting::Every);
    session.start(0);
    assert_eq!(drain(&mut session), [Effect::Connect]);
    assert_eq!(session.timeout(), Some(5_000));
    session.handle_timeout(5_000);
    let effects = drain(&mut session);
    assert_eq!(closes(&effects), [NO_REPLY]);
    let (why, retry_in) = lost(&effects).expect("the connection is lost");
    assert_eq!(
        why,
        Lost::OpenTimedOut {
            reason: open_timeout_reason(REPLY),
            cut_short: false
        }
    );
    assert_eq!(retry_in, Duration::from_micros(499_999));
    session.handle_timeout(5_000 + 500);
    assert_eq!(drain(&mut session), [Effect::Connect]);
}

#[test]
fn with_a_connect_timeout_the_session_gives_up_naming_the_real_cause() {
    let mut session = app(Greeting::First);
    session.config.connect_timeout = Some(Duration::from_millis(1_500));
    session.start(0);
    drain(&mut session);
    session.not_opened(100, Some("Connection refused".into()));
    let (_, retry_in) = lost(&drain(&mut session)).expect("the connection is lost");
    assert_eq!(retry_in, Duration::from_micros(499_999));
    let again = 100 + millis(retry_in);
    session.handle_timeout(again);
    assert_eq!(drain(&mut session), [Effect::Connect]);
    // The attempt may last only what is left of the 1.5 s.
    assert_eq!(session.timeout(), Some(1_500));
    session.handle_timeout(1_500);
    let effects = drain(&mut session);
    assert_eq!(
        effects.last(),
        Some(&Effect::GaveUp(Lost::NotOpened(Some(
            "Connection refused".into()
        ))))
    );
    assert!(session.is_done());
}

#[test]
fn the_backoff_grows_with_failures_and_starts_over_only_after_an_answer() {
    let mut session = app(Greeting::Every);
    session.start(0);
    let mut now = 0;
    let mut delays = Vec::new();
    let fail = |session: &mut Session, now: &mut Millis, answer: bool| {
        session.handle_timeout(*now);
        drain(session);
        session.opened(*now, false);
        if answer {
            session.push(*now, "foo".into()).expect("queued");
            drain(session);
            session.text(*now, "bar");
        }
        session.closed(*now, Err("reset".into()));
        let (_, retry_in) = lost(&drain(session)).expect("the connection is lost");
        *now += millis(retry_in) + 1;
        (retry_in.as_millis() + 1) as u64
    };
    for _ in 0..3 {
        delays.push(fail(&mut session, &mut now, false));
    }
    // An answer starts it over; connections that open and close without one do not.
    delays.push(fail(&mut session, &mut now, true));
    delays.push(fail(&mut session, &mut now, false));
    assert_eq!(delays, [500, 1_000, 2_000, 500, 1_000]);
}

#[test]
fn what_a_close_means() {
    // The answer to `end`: stays closed until asked.
    let mut session = app(Greeting::Every);
    connect(&mut session, 0);
    session.push(1, "end".into()).expect("queued");
    drain(&mut session);
    session.closed(2, Ok((1000, String::new())));
    let effects = drain(&mut session);
    assert_eq!(
        effects,
        [Effect::Ended {
            code: 1000,
            reason: String::new(),
            answered_end: true
        }]
    );
    assert!(session.is_closed());
    assert_eq!(session.timeout(), None);
    session.reconnect(3);
    assert_eq!(drain(&mut session), [Effect::Connect]);

    // Too big: the message is given up, the user told, and the session reconnects.
    let mut session = app(Greeting::Every);
    connect(&mut session, 0);
    session.push(1, "x".repeat(100)).expect("queued");
    drain(&mut session);
    session.closed(2, Ok((1009, "too big".into())));
    let effects = drain(&mut session);
    assert!(matches!(effects[0], Effect::GivenUp(_)), "{effects:?}");
    assert!(lost(&effects).is_some());

    // A restart: reconnect.
    let mut session = app(Greeting::Every);
    connect(&mut session, 0);
    session.closed(2, Ok((1001, String::new())));
    assert!(lost(&drain(&mut session)).is_some());
}

#[test]
fn an_expired_token_is_replaced_and_a_refused_one_stops_until_asked() {
    let mut session = room();
    session.with_tokens(true);
    session.start(0);
    drain(&mut session);
    session.token(0, TokenAnswer::Token("T".into()));
    drain(&mut session);
    session.opened(0, false);
    drain(&mut session);
    session.closed(10, Ok((4408, "token expired".into())));
    wait_out(&mut session, 10);
    assert_eq!(
        drain(&mut session),
        [Effect::Fetch(Fetch::Token)],
        "a new token first"
    );
    session.token(600, TokenAnswer::Token("U".into()));
    session.opened(600, false);
    assert_eq!(sends(&drain(&mut session))[0], auth_frame("U"));

    session.closed(700, Ok((4401, "bad signature".into())));
    let effects = drain(&mut session);
    assert!(
        matches!(&effects[..], [Effect::SignedOut { .. }]),
        "{effects:?}"
    );
    assert_eq!(session.status(700).key(), "signed-out");
    assert_eq!(session.timeout(), None, "nothing is tried");
    session.reconnect(800);
    assert_eq!(drain(&mut session), [Effect::Fetch(Fetch::Token)]);
}

#[test]
fn the_token_is_refreshed_on_the_open_connection_at_four_fifths_of_its_life() {
    let mut session = room();
    session.with_tokens(true);
    session.start(0);
    session.token(0, TokenAnswer::Token("T".into()));
    session.opened(0, false);
    session.text(0, &joined("E", 0, true));
    session.text(1_000, &authed(EPOCH + 1_000 + 100_000));
    drain(&mut session);
    assert_eq!(session.timeout(), Some(1_000 + 80_000));
    session.handle_timeout(81_000);
    assert_eq!(drain(&mut session), [Effect::Fetch(Fetch::Refresh)]);
    assert_eq!(session.timeout(), None, "asked once");
    // The token source is down: asked again 5 s later, while the token lasts.
    session.token(82_000, TokenAnswer::Unavailable("502".into()));
    assert_eq!(session.timeout(), Some(87_000));
    session.handle_timeout(87_000);
    assert_eq!(drain(&mut session), [Effect::Fetch(Fetch::Refresh)]);
    session.token(88_000, TokenAnswer::Token("U".into()));
    assert_eq!(
        sends(&drain(&mut session)),
        [auth_frame("U")],
        "on the same connection"
    );
    assert!(session.is_connected());
    // The new token expires at 101,000: refreshed at 80% of what is left.
    session.text(88_000, &authed(EPOCH + 101_000));
    drain(&mut session);
    assert_eq!(session.timeout(), Some(88_000 + 10_400));
    session.handle_timeout(98_400);
    assert_eq!(drain(&mut session), [Effect::Fetch(Fetch::Refresh)]);
    // Down again, too near the expiry for another try in 5 s: nothing more is asked, and
    // the server's 4408 will say so.
    session.token(98_500, TokenAnswer::Unavailable("502".into()));
    assert_eq!(session.timeout(), None);
    assert!(session.is_connected());
}

#[test]
fn a_token_that_cannot_be_renewed_is_not_refreshed() {
    let mut session = room();
    session.with_tokens(false);
    session.start(0);
    session.token(0, TokenAnswer::Token("T".into()));
    session.opened(0, false);
    session.text(0, &joined("E", 0, true));
    session.text(1_000, &authed(EPOCH + 1_000 + 100_000));
    drain(&mut session);
    assert_eq!(session.timeout(), None, "no refresh: 4408 ends it");
}

#[test]
fn a_token_about_to_expire_is_replaced_before_the_next_connection() {
    let mut session = room();
    session.with_tokens(true);
    session.start(0);
    session.token(0, TokenAnswer::Token("T".into()));
    session.opened(0, false);
    // Expires 6 s from now; the connection drops 2 s later.
    session.text(0, &authed(EPOCH + 6_000));
    drain(&mut session);
    session.closed(2_000, Err("reset".into()));
    wait_out(&mut session, 2_000);
    assert_eq!(
        drain(&mut session),
        [Effect::Fetch(Fetch::Token)],
        "under 5 s left"
    );
}

#[test]
fn the_console_finishes_once_everything_is_answered_and_the_greeting_came() {
    let mut session = app(Greeting::First);
    connect(&mut session, 0);
    session.push(1, "foo".into()).expect("queued");
    session.input_ended(2);
    assert!(closes(&drain(&mut session)).is_empty(), "foo is unanswered");
    session.text(3, GREETING);
    session.text(4, "bar");
    let effects = drain(&mut session);
    assert_eq!(closes(&effects), [1000]);
    assert_eq!(effects.last(), Some(&Effect::Finished));

    // Nothing typed (`</dev/null`): the greeting is waited for as long as a reply may take.
    let mut session = app(Greeting::First);
    connect(&mut session, 0);
    session.input_ended(1);
    assert!(drain(&mut session).is_empty());
    assert_eq!(session.timeout(), Some(5_000));
    session.handle_timeout(5_000);
    assert_eq!(
        closes(&drain(&mut session)),
        [1000],
        "a server that never greets"
    );
}

#[test]
fn offline_waits_for_the_network_but_not_forever() {
    let mut session = app(Greeting::Every);
    session.network(0, false);
    session.start(0);
    assert!(drain(&mut session).is_empty());
    assert_eq!(session.status(0), Status::Offline);
    assert_eq!(session.timeout(), Some(millis(MAX_WINDOW)), "tried anyway");
    session.network(10, true);
    assert_eq!(drain(&mut session), [Effect::Connect]);

    // The browser may be wrong: past the longest backoff it tries anyway.
    let mut session = app(Greeting::Every);
    session.network(0, false);
    session.start(0);
    session.handle_timeout(millis(MAX_WINDOW));
    assert_eq!(drain(&mut session), [Effect::Connect]);
}

#[test]
fn typing_is_told_at_most_once_per_interval() {
    let mut session = room();
    connect(&mut session, 0);
    session.typed(1);
    assert!(
        drain(&mut session).is_empty(),
        "not before the room is joined"
    );
    session.text(2, &joined("E", 0, true));
    drain(&mut session);
    let mut told = Vec::new();
    for at in (0..=4_000).step_by(500) {
        session.typed(10 + at);
        if !drain(&mut session).is_empty() {
            told.push(at);
        }
    }
    assert_eq!(told, [0, 2_000, 4_000]);
}

#[test]
fn a_burst_past_the_outbox_is_refused_not_lost() {
    let mut session = room();
    connect(&mut session, 0);
    session.text(1, &joined("E", 0, true));
    let refused = (0..1_000u16)
        .filter(|n| {
            let random = [
                (n % 256) as u8,
                (n / 256) as u8,
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                9,
                10,
                11,
                12,
                13,
                14,
            ];
            session
                .publish(2, room::message_id(&random), format!("m{n}"))
                .is_err()
        })
        .count();
    assert_eq!(refused, 1_000 - room::ROOM_OUTBOX_CAPACITY);
    assert_eq!(session.left(), room::ROOM_OUTBOX_CAPACITY);
    // One in flight at a time, in the order typed.
    let sent = sends(&drain(&mut session));
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("\"m0\""), "{}", sent[0]);
}

#[test]
fn one_message_is_written_at_a_time_and_one_never_written_is_no_try() {
    let mut session = app(Greeting::Every);
    connect(&mut session, 0);
    session.push(1, "one".into()).expect("queued");
    session.push(2, "two".into()).expect("queued");
    let handed: Vec<Effect> = std::iter::from_fn(|| session.poll()).collect();
    assert_eq!(
        sends(&handed),
        ["one"],
        "the next waits for this one's write"
    );
    assert_eq!(
        session.timeout(),
        None,
        "nothing is owed before it is written"
    );
    let mut now = 3;
    for _ in 0..5 {
        // The socket breaks before the message is written.
        session.closed(now, Err("reset".into()));
        let effects = drain(&mut session);
        assert!(
            !effects
                .iter()
                .any(|effect| matches!(effect, Effect::GivenUp(_))),
            "never written: no try counted: {effects:?}"
        );
        let (_, retry_in) = lost(&effects).expect("lost");
        now += millis(retry_in) + 1;
        session.handle_timeout(now);
        assert_eq!(drain(&mut session), [Effect::Connect]);
        session.opened(now, false);
        let handed: Vec<Effect> = std::iter::from_fn(|| session.poll()).collect();
        assert_eq!(sends(&handed), ["one"]);
    }
    // Written at last: said as sent, the first time, not "again"; then the next.
    session.sent(now);
    let effects = drain(&mut session);
    assert_eq!(
        effects[0],
        Effect::Sent {
            id: MessageId(0),
            text: "one".into(),
            again: false
        }
    );
    assert_eq!(sends(&effects), ["two"]);
}

#[test]
fn a_failed_send_is_taken_for_a_broken_connection_after_the_reply_timeout() {
    let mut session = app(Greeting::Every);
    connect(&mut session, 0);
    session.push(10, "one".into()).expect("queued");
    assert_eq!(sends(&drain(&mut session)), ["one"]);
    session.push(20, "two".into()).expect("queued");
    // Handed to the shell, whose write fails.
    let handed: Vec<Effect> = std::iter::from_fn(|| session.poll()).collect();
    assert_eq!(sends(&handed), ["two"]);
    session.send_failed(30);
    // Answers still count, but nothing more goes out on this socket.
    session.text(40, "one");
    session.push(50, "three".into()).expect("queued");
    assert!(sends(&drain(&mut session)).is_empty());
    assert_eq!(
        session.timeout(),
        Some(30 + 5_000),
        "its close, within the reply timeout"
    );
    session.handle_timeout(5_030);
    let effects = drain(&mut session);
    assert!(
        matches!(lost(&effects), Some((Lost::Broken(_), _))),
        "{effects:?}"
    );
}

#[test]
fn after_a_lost_connection_the_wait_leaves_half_the_connect_timeout_to_connect() {
    let mut session = app(Greeting::First);
    session.config.connect_timeout = Some(Duration::from_millis(600));
    connect(&mut session, 0);
    session.closed(10, Err("reset".into()));
    let (_, retry_in) = lost(&drain(&mut session)).expect("lost");
    assert_eq!(
        retry_in,
        Duration::from_millis(300),
        "not the backoff's 500"
    );
}

#[test]
fn a_wait_ends_at_once_when_the_tab_shows_or_the_network_comes_back() {
    let mut session = app(Greeting::Every);
    connect(&mut session, 0);
    session.closed(10, Err("reset".into()));
    drain(&mut session);
    assert!(matches!(session.status(10), Status::Reconnecting { .. }));
    session.visible(20);
    assert_eq!(drain(&mut session), [Effect::Connect]);
    session.not_opened(30, None);
    drain(&mut session);
    assert!(matches!(session.status(30), Status::Reconnecting { .. }));
    session.network(40, true);
    assert_eq!(drain(&mut session), [Effect::Connect]);
}

#[test]
fn reconnect_after_the_server_ended_it_starts_the_backoff_over() {
    let mut session = app(Greeting::Every);
    session.start(0);
    let mut now = 0;
    for _ in 0..4 {
        session.handle_timeout(now);
        drain(&mut session);
        session.not_opened(now, None);
        let (_, retry_in) = lost(&drain(&mut session)).expect("lost");
        now += millis(retry_in) + 1;
    }
    session.handle_timeout(now);
    drain(&mut session);
    session.opened(now, false);
    session.closed(now, Ok((1000, String::new())));
    assert!(session.is_closed());
    drain(&mut session);
    session.reconnect(now);
    drain(&mut session);
    session.not_opened(now, None);
    let (_, retry_in) = lost(&drain(&mut session)).expect("lost");
    assert_eq!(
        retry_in,
        Duration::from_micros(499_999),
        "the first window again"
    );
}

#[test]
fn binary_data_is_progress_too() {
    let mut session = app(Greeting::Every);
    connect(&mut session, 0);
    session.push(0, "hello".into()).expect("queued");
    drain(&mut session);
    session.binary(3_000, 10);
    assert_eq!(drain(&mut session), [Effect::Binary(10)]);
    assert_eq!(session.timeout(), Some(8_000));
}

#[test]
fn the_console_does_not_wait_for_a_greeting_it_will_not_show() {
    let mut session = app(Greeting::First);
    connect(&mut session, 0);
    session.text(1, GREETING);
    session.closed(2, Ok((1001, String::new())));
    let at = wait_out(&mut session, 2);
    session.opened(at, false);
    session.input_ended(at + 1);
    assert_eq!(
        closes(&drain(&mut session)),
        [1000],
        "the second greeting is not printed: nothing to wait for"
    );
}

#[test]
fn input_that_ends_while_no_connection_is_open_does_not_finish_before_one_opens() {
    let mut session = app(Greeting::First);
    session.config.connect_timeout = Some(Duration::from_secs(2));
    session.start(0);
    drain(&mut session);
    session.not_opened(10, Some("refused".into()));
    drain(&mut session);
    session.input_ended(20);
    assert!(drain(&mut session).is_empty(), "still trying");
    assert!(!session.is_done());
}

#[test]
fn a_remembered_setup_that_fails_its_first_attempt_is_asked_for_again_at_once() {
    // Remembered "open": the server now refuses that URL.
    let mut session =
        Session::new(Talk::Room(Room::new(ROOM)), config(Greeting::Every)).preparing();
    session.start(0);
    assert_eq!(drain(&mut session), [Effect::Fetch(Fetch::Setup)]);
    session.fetched_from_memory(0);
    assert_eq!(drain(&mut session), [Effect::Connect]);
    session.not_opened(10, None);
    assert_eq!(
        drain(&mut session),
        [Effect::Fetch(Fetch::Setup)],
        "no failure said, no wait"
    );
    // The real answer: tokens.
    session.with_tokens(true);
    session.fetched(20, Ok(()));
    assert_eq!(drain(&mut session), [Effect::Fetch(Fetch::Token)]);

    // Remembered "tokens": the server now takes none, and its token URL is not there.
    let mut session =
        Session::new(Talk::Room(Room::new(ROOM)), config(Greeting::Every)).preparing();
    session.with_tokens(true);
    session.start(0);
    drain(&mut session);
    session.fetched_from_memory(0);
    assert_eq!(drain(&mut session), [Effect::Fetch(Fetch::Token)]);
    session.token(10, TokenAnswer::Refused("is not there (HTTP 404)".into()));
    assert_eq!(
        drain(&mut session),
        [Effect::Fetch(Fetch::Setup)],
        "not signed out"
    );
    session.without_tokens();
    session.fetched(20, Ok(()));
    assert_eq!(drain(&mut session), [Effect::Connect]);
    // Borne out by a connection: later failures are failures.
    session.opened(30, false);
    drain(&mut session);
    session.closed(40, Err("reset".into()));
    assert!(lost(&drain(&mut session)).is_some());
    let mut session =
        Session::new(Talk::Room(Room::new(ROOM)), config(Greeting::Every)).preparing();
    session.start(0);
    drain(&mut session);
    session.fetched_from_memory(0);
    drain(&mut session);
    session.opened(10, false);
    drain(&mut session);
    session.closed(20, Err("reset".into()));
    let at = wait_out(&mut session, 20);
    session.not_opened(at + 10, None);
    assert!(
        lost(&drain(&mut session)).is_some(),
        "a failure, not a new setup"
    );
}

#[test]
fn only_what_a_reload_needs_marks_the_saved_state_changed() {
    let changes = [
        room::Event::Show {
            from: "ann".into(),
            text: "hi".into(),
            time: 1,
            earlier: false,
        },
        room::Event::Delivered {
            id: "1".into(),
            time: None,
        },
        room::Event::Stamped {
            id: "1".into(),
            time: 1,
        },
        room::Event::Refused {
            id: "1".into(),
            reason: "too long".into(),
            text: "hi".into(),
        },
        room::Event::Gap { rejoin: None },
        room::Event::Joined,
        room::Event::CaughtUp { missed: vec![] },
    ];
    for event in changes {
        assert!(
            Effect::Room(event.clone()).changes_saved_state(),
            "{event:?}"
        );
    }
    let passing = [
        room::Event::Presence {
            joined: vec!["ann".into()],
            left: vec![],
            everyone: None,
            count: 1,
            capped: false,
        },
        room::Event::Typing {
            user: "ann".into(),
            name: "Ann".into(),
        },
        room::Event::Notice("hello".into()),
    ];
    for event in passing {
        assert!(
            !Effect::Room(event.clone()).changes_saved_state(),
            "{event:?}"
        );
    }
    for effect in [
        Effect::Connect,
        Effect::Reply("bar".into()),
        Effect::Notice("hello".into()),
        Effect::Finished,
    ] {
        assert!(!effect.changes_saved_state(), "{effect:?}");
    }
}
