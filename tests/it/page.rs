//! The page as a person sees and hears it, in real Chromium: every control on screen at phone
//! widths (320 px up, and at twice the default font size) with nothing to scroll sideways,
//! text contrast of at least 4.5:1 (WCAG AA) in the light and the dark theme, text sized from
//! the browser's default font size, and a status line whose drawn dot screen readers are not
//! given. Screenshots in `target/e2e`.
//!
//! Phone widths, the colour scheme and the default font size are set through the DevTools
//! protocol, through chromedriver's `goog/cdp/execute`, on one browser:
//! `Emulation.setDeviceMetricsOverride` (a phone's viewport), `Emulation.setEmulatedMedia`
//! (`prefers-color-scheme`, as the system theme sets it) and `Page.setFontSizes` (the same
//! setting as the browser's font size in its settings page, `webkit.webprefs.default_font_size`).

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::actions::{InputSource, MouseActions, PointerAction};
use fantoccini::{Client, Locator};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::browser::built_static_dir;
use crate::support::TestServer;

/// The WebDriver code for the Enter key.
const ENTER: &str = "\u{E007}";

/// Chromium's default font size, in CSS pixels.
const DEFAULT_FONT_PX: u32 = 16;

/// WCAG 2 AA's least contrast for text.
const LEAST_TEXT_CONTRAST: f64 = 4.5;

/// Phone widths in CSS pixels (the smallest still sold, and two common ones), with the
/// default font size: the smallest width again at 200 %.
const PHONES: [(u32, u32); 4] = [
    (320, DEFAULT_FONT_PX),
    (375, DEFAULT_FONT_PX),
    (414, DEFAULT_FONT_PX),
    (320, 2 * DEFAULT_FONT_PX),
];

/// A phone screen's height in CSS pixels (the 320 px wide ones are 568 high).
const PHONE_HEIGHT: u32 = 568;

/// The release server serving the built client, and one headless browser for it.
struct Page {
    server: TestServer,
    browser: headless::Browser,
}

impl Page {
    async fn start() -> Page {
        Page::start_with(&[]).await
    }

    /// [`Page::start`] with a server started with `server_args`.
    async fn start_with(server_args: &[&str]) -> Page {
        let server = TestServer::start_with_dir(&built_static_dir(), server_args).await;
        let browser = headless::Browser::start()
            .await
            .unwrap_or_else(|error| panic!("the browser starts: {error}"));
        Page { server, browser }
    }

    fn client(&self) -> &Client {
        &self.browser.client
    }

    /// Loads `path_and_query` of the server.
    async fn open(&self, path_and_query: &str) {
        let url = format!("http://{}{path_and_query}", self.server.addr);
        self.client().goto(&url).await.expect("the page loads");
    }

    /// One DevTools protocol command; it must succeed.
    async fn devtools(&self, method: &str, params: Value) -> Value {
        self.browser
            .devtools(method, params)
            .await
            .unwrap_or_else(|error| panic!("DevTools {method}: {error}"))
    }

    /// The viewport of a phone `width` CSS pixels wide (a touch screen, one CSS pixel per
    /// device pixel, the page's `<meta name="viewport">` honoured).
    async fn emulate_phone(&self, width: u32) {
        let metrics = json!({
            "width": width, "height": PHONE_HEIGHT, "deviceScaleFactor": 1, "mobile": true
        });
        self.devtools("Emulation.setDeviceMetricsOverride", metrics)
            .await;
    }

    /// The browser's default font size, as a reader sets it in the browser's settings.
    async fn set_default_font_size(&self, pixels: u32) {
        let sizes = json!({ "fontSizes": { "standard": pixels, "fixed": pixels * 13 / 16 } });
        self.devtools("Page.setFontSizes", sizes).await;
    }

    /// The system theme: `light` or `dark`.
    async fn emulate_color_scheme(&self, scheme: &str) {
        let media = json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] });
        self.devtools("Emulation.setEmulatedMedia", media).await;
    }

    /// Runs `script` (with `arguments[0]` = `argument`) on the page.
    async fn script(&self, script: &str, argument: Value) -> Value {
        self.client()
            .execute(script, vec![argument])
            .await
            .unwrap_or_else(|error| panic!("the script runs: {error}\n{script}"))
    }

    /// `data-status` and the text of the status line.
    async fn status(&self) -> (String, String) {
        let script = "const s = document.getElementById('status'); \
                      return [s.dataset.status, s.textContent]";
        serde_json::from_value(self.script(script, Value::Null).await).expect("two strings")
    }

    /// Waits (at most 20 s) for the status line to say `key`; returns its text.
    async fn wait_for_status(&self, key: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (current, text) = self.status().await;
            if current == key {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for status {key}; it says {current}: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most 20 s) until `selector` matches an element: the page draws its lines at
    /// the next animation frame, after the status changed.
    async fn wait_for_element(&self, selector: &str) {
        let script = "return document.querySelector(arguments[0]) !== null";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.script(script, json!(selector)).await != json!(true) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {selector}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into the message input and presses Enter, as a person would.
    async fn type_message(&self, text: &str) {
        let input = self.element("message").await;
        input
            .send_keys(&format!("{text}{ENTER}"))
            .await
            .expect("typing works");
    }

    /// The element with this id; it must exist.
    async fn element(&self, id: &str) -> fantoccini::elements::Element {
        let found = self.client().find(Locator::Id(id)).await;
        found.unwrap_or_else(|error| panic!("no #{id} on the page: {error}"))
    }

    /// Moves the mouse pointer onto the element, so it is hovered.
    async fn hover(&self, id: &str) {
        let element = self.element(id).await;
        let onto = PointerAction::MoveToElement {
            element,
            duration: Some(Duration::from_millis(10)),
            x: 0.0,
            y: 0.0,
        };
        let actions = MouseActions::new("mouse".into()).then(onto);
        self.client()
            .perform_actions(actions)
            .await
            .expect("the pointer moves");
    }

    /// Moves the mouse pointer away from every control (to the page's top left corner).
    async fn unhover(&self) {
        let away = PointerAction::MoveTo {
            duration: Some(Duration::from_millis(10)),
            x: 0.0,
            y: 0.0,
        };
        let actions = MouseActions::new("mouse".into()).then(away);
        self.client()
            .perform_actions(actions)
            .await
            .expect("the pointer moves");
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client().screenshot().await.expect("screenshot");
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/e2e"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), png).expect("write screenshot");
    }

    async fn close(self) {
        self.browser
            .close()
            .await
            .expect("the browser session closes");
    }
}

/// Returns `[viewport width, problems]` for the elements with the ids in `arguments[0]`:
/// each must be shown, lie within the viewport's width, and (but the input, whose text
/// scrolls) hold its own content; the page itself must not be wider than the viewport.
const ON_SCREEN: &str = r#"
const root = document.documentElement;
const viewport = root.clientWidth;
const problems = [];
if (root.scrollWidth > viewport) {
  problems.push(`the page is ${root.scrollWidth} px wide in a ${viewport} px viewport`);
}
for (const id of arguments[0]) {
  const element = document.getElementById(id);
  if (!element) { problems.push(`no #${id}`); continue; }
  const box = element.getBoundingClientRect();
  if (element.hidden || box.width === 0 || box.height === 0) {
    problems.push(`#${id} is not shown`);
    continue;
  }
  if (box.left < 0 || box.right > viewport) {
    problems.push(`#${id} spans ${box.left}..${box.right} px of ${viewport}`);
  }
  if (id !== "message" && element.scrollWidth > element.clientWidth) {
    problems.push(`#${id} is cut: its content is ${element.scrollWidth} px in ${element.clientWidth}`);
  }
}
return [viewport, problems];
"#;

/// What [`ON_SCREEN`] finds wrong, each prefixed with `what`, for a viewport `width` wide.
async fn off_screen(page: &Page, what: &str, width: u32, ids: &[&str]) -> Vec<String> {
    let (viewport, problems): (u32, Vec<String>) =
        serde_json::from_value(page.script(ON_SCREEN, json!(ids)).await)
            .expect("a width and a list");
    assert_eq!(viewport, width, "{what}: the emulated viewport");
    problems
        .into_iter()
        .map(|problem| format!("{what}: {problem}"))
        .collect()
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn on_phones_every_control_is_on_screen_and_nothing_scrolls_sideways() {
    let page = Page::start().await;
    // An address the page refuses, with a long word in it: the status repeats it.
    let unknown_address = format!("ws://127.0.0.1:9/{}", "nowhere".repeat(24));
    let mut problems = Vec::new();
    for (width, font_px) in PHONES {
        page.emulate_phone(width).await;
        page.set_default_font_size(font_px).await;
        let name = format!("{width} px wide, {font_px} px font");
        let screenshot = format!("phone-{width}-font-{font_px}");

        // After `end` the server closes and the page offers Reconnect beside Send.
        page.open("/").await;
        page.wait_for_status("open").await;
        page.type_message("end").await;
        page.wait_for_status("closed").await;
        let controls = ["status", "message", "send", "reconnect"];
        problems.extend(off_screen(&page, &format!("{name}, closed"), width, &controls).await);
        page.screenshot(&format!("{screenshot}-closed.png")).await;
        // With a large font the controls may lie below the fold: scrolled to, they show whole.
        page.script(SCROLL_TO_CONTROLS, Value::Null).await;
        page.screenshot(&format!("{screenshot}-closed-scrolled.png"))
            .await;

        // "Cannot connect: ..." with a long address wraps within the width.
        page.open(&format!("/?ws={unknown_address}")).await;
        let text = page.wait_for_status("failed").await;
        assert!(text.contains(&unknown_address), "{text}");
        let controls = ["status", "message", "send"];
        let what = format!("{name}, cannot connect");
        problems.extend(off_screen(&page, &what, width, &controls).await);
        let lines = page.script(STATUS_LINES, Value::Null).await.as_f64();
        if !lines.is_some_and(|lines| lines >= 2.0) {
            problems.push(format!("{what}: the long status is on {lines:?} lines"));
        }
        page.screenshot(&format!("{screenshot}-cannot-connect.png"))
            .await;
    }
    assert!(problems.is_empty(), "{problems:#?}");
    page.close().await;
}

/// Scrolls the page so that the bottom of the form is at the bottom of the viewport.
const SCROLL_TO_CONTROLS: &str =
    "document.getElementById('composer').scrollIntoView({ block: 'end' })";

/// How many lines the status line takes.
const STATUS_LINES: &str = "const status = document.getElementById('status'); \
    return status.getBoundingClientRect().height / parseFloat(getComputedStyle(status).lineHeight)";

/// Returns `[label, text colour, background colour]` (each `[r, g, b]`, 0-255) for every
/// `[label, selector, pseudo-element or null]` in `arguments[0]`, or, when it is null, for
/// every element shown with text of its own: the background is the first opaque one behind
/// the element, with the translucent ones above it blended in.
const COLOURS: &str = r#"
const rgba = text => {
  const match = /rgba?\(([^)]*)\)/.exec(text);
  if (!match) throw new Error(`not an sRGB colour: ${text}`);
  const parts = match[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
  return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
};
const over = (top, bottom) => [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
const background = element => {
  const layers = [];
  for (let at = element; at; at = at.parentElement) {
    const colour = rgba(getComputedStyle(at).backgroundColor);
    if (colour[3] > 0) layers.push(colour);
    if (colour[3] >= 1) break;
  }
  // Nothing opaque at all: the canvas, white (the page always paints its own).
  return layers.reduceRight((below, layer) => over(layer, below), [255, 255, 255, 1]);
};
const measure = (label, element, pseudo) => {
  const behind = background(element);
  const text = over(rgba(getComputedStyle(element, pseudo).color), behind);
  return [label, text.slice(0, 3), behind.slice(0, 3)];
};
if (arguments[0] === null) {
  const hasText = element => Array.from(element.childNodes)
    .some(node => node.nodeType === Node.TEXT_NODE && node.textContent.trim() !== "");
  const shown = element => element.getClientRects().length > 0
    && getComputedStyle(element).visibility === "visible";
  const name = element => element.localName + (element.id ? `#${element.id}` : "")
    + Array.from(element.classList, name => `.${name}`).join("")
    + ` "${element.textContent.trim().slice(0, 30)}"`;
  return Array.from(document.body.querySelectorAll("*"))
    .filter(element => hasText(element) && shown(element))
    .map(element => measure(name(element), element, null));
}
return arguments[0].map(([label, selector, pseudo]) => {
  const element = document.querySelector(selector);
  if (!element) throw new Error(`nothing matches ${selector}`);
  return measure(label, element, pseudo);
});
"#;

/// Lines of the kinds the conversation shows in other states (a resent message, a notice)
/// and the start-up problem line, so that their colours are measured too.
const ADD_SAMPLE_LINES: &str = r#"
const log = document.getElementById("log");
for (const [kind, text] of [["you again", "You: a resent message"], ["notice", "A notice"]]) {
  const line = document.createElement("li");
  line.className = kind;
  line.textContent = text;
  log.append(line);
}
const problem = document.createElement("p");
problem.className = "problem";
problem.textContent = "A problem";
document.querySelector("main").append(problem);
"#;

/// WCAG 2's relative luminance of an sRGB colour.
fn luminance(colour: [f64; 3]) -> f64 {
    let linear = |channel: f64| {
        let channel = channel / 255.0;
        if channel <= 0.04045 {
            channel / 12.92
        } else {
            ((channel + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * linear(colour[0]) + 0.7152 * linear(colour[1]) + 0.0722 * linear(colour[2])
}

/// WCAG 2's contrast ratio, 1 to 21.
fn contrast(first: [f64; 3], second: [f64; 3]) -> f64 {
    let (first, second) = (luminance(first), luminance(second));
    (first.max(second) + 0.05) / (first.min(second) + 0.05)
}

#[test]
fn contrast_is_computed_as_wcag_says() {
    assert!((contrast([0.0; 3], [255.0; 3]) - 21.0).abs() < 1e-9);
    assert!((contrast([255.0; 3], [255.0; 3]) - 1.0).abs() < 1e-9);
    // White on the dark theme's old Send button, as the issue measured it.
    let ratio = contrast([255.0; 3], [0x6e as f64, 0xa0 as f64, 0xff as f64]);
    assert!((ratio - 2.58).abs() < 0.01, "{ratio}");
}

/// Measures the colours of `targets` (`[label, selector, pseudo]`) on the page.
async fn colours(page: &Page, targets: Value) -> Vec<(String, [f64; 3], [f64; 3])> {
    serde_json::from_value(page.script(COLOURS, targets).await).expect("labelled colour pairs")
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn every_text_contrasts_at_least_4_5_to_1_in_the_light_and_the_dark_theme() {
    let page = Page::start().await;
    let mut too_faint = Vec::new();
    for scheme in ["light", "dark"] {
        page.emulate_color_scheme(scheme).await;
        page.open("/").await;
        page.wait_for_status("open").await;
        let dark = page
            .script(
                "return matchMedia('(prefers-color-scheme: dark)').matches",
                Value::Null,
            )
            .await;
        assert_eq!(dark, json!(scheme == "dark"), "the theme is emulated");
        page.type_message("hello").await;
        let script = "return document.querySelectorAll('#log li.server').length";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while page.script(script, Value::Null).await.as_u64() < Some(10) {
            assert!(tokio::time::Instant::now() < deadline, "no answers");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        page.script(ADD_SAMPLE_LINES, Value::Null).await;
        page.screenshot(&format!("contrast-{scheme}-open.png"))
            .await;

        let mut measured = colours(
            &page,
            json!([
                ["heading", "h1", null],
                ["status", "#status", null],
                ["your line", "#log li.you", null],
                ["your resent line", "#log li.again", null],
                ["the server's line", "#log li.server", null],
                ["a notice", "#log li.notice", null],
                ["the waiting count", "#queued", null],
                ["a problem", ".problem", null],
                ["typed text", "#message", null],
                ["the placeholder", "#message", "::placeholder"],
                ["Send", "#send", null],
            ]),
        )
        .await;
        // Whatever else the page shows with text of its own.
        measured.extend(colours(&page, Value::Null).await);
        // The dot before the status, in the colour of each state.
        for state in [
            "connecting",
            "open",
            "reconnecting",
            "closed",
            "failed",
            "signed-out",
        ] {
            let label = format!("the status dot when {state}");
            let targets = json!([[label, "#status", "::before"]]);
            // Measured with the state set, as the page shows it.
            let script = format!(
                "const s = document.getElementById('status'), was = s.dataset.status; \
                 s.dataset.status = {state:?}; \
                 const measured = (() => {{ {COLOURS} }})(); \
                 s.dataset.status = was; return measured"
            );
            let pairs: Vec<(String, [f64; 3], [f64; 3])> =
                serde_json::from_value(page.script(&script, targets).await).expect("pairs");
            measured.extend(pairs);
        }
        page.hover("send").await;
        let hovered = page.script(
            "return document.getElementById('send').matches(':hover')",
            Value::Null,
        );
        assert_eq!(hovered.await, json!(true), "Send is hovered");
        measured.extend(colours(&page, json!([["Send hovered", "#send", null]])).await);
        page.unhover().await;

        // `end`: the server closes and Reconnect is offered.
        page.type_message("end").await;
        page.wait_for_status("closed").await;
        measured.extend(colours(&page, json!([["Reconnect", "#reconnect", null]])).await);
        measured.extend(colours(&page, Value::Null).await);
        page.hover("reconnect").await;
        let hovered = page.script(
            "return document.getElementById('reconnect').matches(':hover')",
            Value::Null,
        );
        assert_eq!(hovered.await, json!(true), "Reconnect is hovered");
        measured.extend(colours(&page, json!([["Reconnect hovered", "#reconnect", null]])).await);
        page.screenshot(&format!("contrast-{scheme}-closed-reconnect-hovered.png"))
            .await;
        page.unhover().await;

        // Disabled buttons (the page may disable them while it cannot send) stay readable.
        let disable = "for (const id of ['send', 'reconnect']) document.getElementById(id).disabled = arguments[0]";
        page.script(disable, json!(true)).await;
        measured.extend(
            colours(
                &page,
                json!([
                    ["Send disabled", "#send", null],
                    ["Reconnect disabled", "#reconnect", null]
                ]),
            )
            .await,
        );
        page.screenshot(&format!("contrast-{scheme}-disabled.png"))
            .await;
        page.script(disable, json!(false)).await;

        // Each label once (the sweep meets every "Server: hello" line), lowest first.
        let mut seen = std::collections::HashSet::new();
        measured.retain(|(label, _, _)| seen.insert(label.clone()));
        let mut ratios: Vec<(f64, String)> = measured
            .into_iter()
            .map(|(label, text, background)| {
                let ratio = contrast(text, background);
                (
                    ratio,
                    format!("{scheme}: {label}: {ratio:.2}:1 ({text:?} on {background:?})"),
                )
            })
            .collect();
        ratios.sort_by(|first, second| first.0.total_cmp(&second.0));
        for (ratio, line) in ratios {
            eprintln!("{line}");
            if ratio < LEAST_TEXT_CONTRAST {
                too_faint.push(line);
            }
        }
    }
    assert!(
        too_faint.is_empty(),
        "under {LEAST_TEXT_CONTRAST}:1: {too_faint:#?}"
    );
    page.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn the_room_view_contrasts_at_least_4_5_to_1_in_the_light_and_the_dark_theme() {
    // Texts over 16 bytes are refused by the server, so a refused line can be shown.
    let page = Page::start_with(&["--max-text-bytes", "16"]).await;
    let mut bo = page.server.connect("/rooms?name=bo").await;
    bo.send(Message::text(r#"{"type":"join","room":"contrast"}"#))
        .await
        .expect("join sent");
    let mut too_faint = Vec::new();
    for scheme in ["light", "dark"] {
        page.emulate_color_scheme(scheme).await;
        page.open("/?room=contrast&name=ana").await;
        page.wait_for_status("open").await;
        page.type_message("hello").await;
        page.type_message("a text over sixteen bytes").await;
        let publish = json!({
            "type": "publish", "room": "contrast", "id": format!("bo-{scheme}"), "text": "hi ana"
        });
        bo.send(Message::text(publish.to_string()))
            .await
            .expect("publish sent");
        let ready = "return document.querySelector('#log li.own[data-state=delivered]') !== null \
            && document.querySelector('#log li.given-up') !== null \
            && document.querySelector('#log li.message:not(.own)') !== null";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while page.script(ready, Value::Null).await != json!(true) {
            assert!(tokio::time::Instant::now() < deadline, "the room lines");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        page.screenshot(&format!("contrast-{scheme}-room.png"))
            .await;
        let mut measured = colours(
            &page,
            json!([
                ["an author", "#log li.message .author", null],
                ["a time", "#log li.message .time", null],
                ["someone's text", "#log li.message:not(.own) .text", null],
                ["one's own text", "#log li.own .text", null],
                [
                    "edit and send again",
                    "#log li.given-up button.resend",
                    null
                ],
                ["a refused state", "#log li.given-up .state", null],
            ]),
        )
        .await;
        measured.extend(colours(&page, Value::Null).await);
        for (label, text, background) in measured {
            let ratio = contrast(text, background);
            let line = format!("{scheme}: {label}: {ratio:.2}:1 ({text:?} on {background:?})");
            eprintln!("{line}");
            if ratio < LEAST_TEXT_CONTRAST {
                too_faint.push(line);
            }
        }
    }
    assert!(
        too_faint.is_empty(),
        "under {LEAST_TEXT_CONTRAST}:1: {too_faint:#?}"
    );
    page.close().await;
}

/// The computed font size, in CSS pixels, of the first match of each selector in
/// `arguments[0]`.
const FONT_SIZES: &str = "return arguments[0].map(selector => \
    parseFloat(getComputedStyle(document.querySelector(selector)).fontSize))";

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn the_text_follows_the_browsers_font_size_setting() {
    let page = Page::start().await;
    let selectors = json!([
        "html", "h1", "#status", "#log li", "#queued", "#message", "#send"
    ]);
    let mut sizes = Vec::new();
    for font_px in [DEFAULT_FONT_PX, 3 * DEFAULT_FONT_PX / 2] {
        page.set_default_font_size(font_px).await;
        page.open("/").await;
        page.wait_for_status("open").await;
        page.wait_for_element("#log li").await;
        let measured: Vec<f64> =
            serde_json::from_value(page.script(FONT_SIZES, selectors.clone()).await)
                .expect("sizes");
        page.screenshot(&format!("font-{font_px}px.png")).await;
        sizes.push(measured);
    }
    assert_eq!(sizes[0][0], f64::from(DEFAULT_FONT_PX), "the default size");
    for ((selector, default), larger) in selectors
        .as_array()
        .expect("a list")
        .iter()
        .zip(&sizes[0])
        .zip(&sizes[1])
    {
        let ratio = larger / default;
        assert!(
            (ratio - 1.5).abs() < 0.05,
            "{selector} is {default} px at a {DEFAULT_FONT_PX} px default and {larger} px at 150 %"
        );
    }
    page.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built client: run `cargo xtask test`"]
async fn screen_readers_get_the_status_in_words_without_the_drawn_dot() {
    let page = Page::start().await;
    page.open("/").await;
    let status = page.wait_for_status("open").await;
    let tree = page
        .devtools("Accessibility.getFullAXTree", json!({}))
        .await;
    let nodes = tree["nodes"].as_array().expect("a list of nodes");
    let by_id = |id: &Value| nodes.iter().find(|node| node["nodeId"] == *id);
    let status_node = nodes
        .iter()
        .find(|node| node["role"]["value"] == "status")
        .unwrap_or_else(|| panic!("no status in the accessibility tree: {tree:#}"));
    // What a screen reader reads for the status: its name and the text of everything in it.
    let mut spoken = Vec::new();
    let mut pending = vec![status_node];
    while let Some(node) = pending.pop() {
        if node["ignored"] != json!(true)
            && let Some(name) = node["name"]["value"].as_str()
        {
            spoken.push(name.to_owned());
        }
        let children = node["childIds"].as_array().into_iter().flatten();
        pending.extend(children.filter_map(by_id));
    }
    assert!(
        spoken.iter().any(|text| text.contains(&status)),
        "the status says {status:?}; the tree has {spoken:?}"
    );
    assert!(
        spoken.iter().all(|text| !text.contains('●')),
        "the dot is spoken: {spoken:?}"
    );
    // Still drawn for those who see it.
    let script = "return getComputedStyle(document.getElementById('status'), '::before').content";
    let drawn = page.script(script, Value::Null).await;
    assert!(
        drawn.as_str().is_some_and(|content| content.contains('●')),
        "the dot is drawn: {drawn}"
    );
    page.close().await;
}
