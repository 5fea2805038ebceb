//! The page: the only module that knows element ids (they are in `static/index.html`), and the
//! window around it (its events, `sessionStorage`, the console). Text always goes in as text
//! (`textContent`), never as HTML; in a room, each name and text in an isolating `<bdi>` of
//! its own, with the characters [`client_core::shown`] picks shown as their code.

use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::JsCast;
use web_sys::{
    BeforeUnloadEvent, Document, Element, HtmlButtonElement, HtmlElement, HtmlInputElement,
    Storage, VisibilityState, Window,
};

use client_core::outbox::MessageId;
use client_core::shown::{self, Piece};
use client_core::status::Status;
use client_core::transcript::Entry;

const LOG_ID: &str = "log";
const FORM_ID: &str = "composer";
const INPUT_ID: &str = "message";
const STATUS_ID: &str = "status";
const QUEUED_ID: &str = "queued";
const RECONNECT_ID: &str = "reconnect";
const HINT_ID: &str = "hint";
/// Who is in the room and who is typing (the room view only).
const PRESENCE_ID: &str = "presence";
/// The `sessionStorage` key of the saved outbox.
const OUTBOX_KEY: &str = "web-client.outbox";
/// The `sessionStorage` key of a room's saved state is this followed by the room's name.
const ROOM_KEY_PREFIX: &str = "web-client.room:";
/// The attribute that ties a line of the log to the message it shows.
const MESSAGE_ATTRIBUTE: &str = "data-message";
/// The `elementtiming` name of the conversation's lines.
const LOG_LINE_TIMING: &str = "log-line";
/// The tooltip of a character shown as its code.
const MARKER_TITLE: &str = "A character that would reorder or break this text, shown as its code";

/// The elements the client drives.
#[derive(Debug, Clone)]
pub struct Page {
    document: Document,
    log: Element,
    form: Element,
    input: HtmlInputElement,
    status: Element,
    queued: Element,
    reconnect: HtmlButtonElement,
    hint: Element,
    /// Who is here, in the room view; absent from an older page.
    presence: Option<Element>,
    /// Inside the status: the part that changes every second and is not announced.
    status_detail: Element,
}

impl Page {
    /// Finds every element; names the first one missing.
    pub fn find(document: &Document) -> Result<Page, String> {
        let element = |id: &str| {
            document
                .get_element_by_id(id)
                .ok_or_else(|| format!("the page has no #{id} element"))
        };
        Ok(Page {
            document: document.clone(),
            log: element(LOG_ID)?,
            form: element(FORM_ID)?,
            input: element(INPUT_ID)?
                .dyn_into()
                .map_err(|_| format!("#{INPUT_ID} is not an <input>"))?,
            status: element(STATUS_ID)?,
            queued: element(QUEUED_ID)?,
            reconnect: element(RECONNECT_ID)?
                .dyn_into()
                .map_err(|_| format!("#{RECONNECT_ID} is not a <button>"))?,
            hint: {
                let hint = element(HINT_ID)?;
                let _ = element(INPUT_ID)?.set_attribute("aria-describedby", HINT_ID);
                hint
            },
            presence: document.get_element_by_id(PRESENCE_ID),
            status_detail: {
                let detail = document
                    .create_element("span")
                    .map_err(|_| "cannot create a <span>".to_owned())?;
                // Hidden from the accessibility tree: its changes are not announced.
                let _ = detail.set_attribute("aria-hidden", "true");
                detail
            },
        })
    }

    /// Appends a line to the log, removes `evicted` old ones, and keeps the newest in view.
    pub fn append(&self, entry: &Entry, evicted: usize) {
        self.append_line(entry, evicted);
    }

    /// [`Page::append`] for a line that shows message `id`, so it can be marked later.
    pub fn append_message(&self, entry: &Entry, evicted: usize, id: MessageId) {
        if let Some(line) = self.append_line(entry, evicted) {
            let _ = line.set_attribute(MESSAGE_ATTRIBUTE, &id.0.to_string());
        }
    }

    /// Adds `outcome` to every line that shows message `id`; `false` if none is left.
    pub fn mark_message(&self, id: MessageId, outcome: &str) -> bool {
        let selector = format!("[{MESSAGE_ATTRIBUTE}=\"{}\"]", id.0);
        let Ok(lines) = self.log.query_selector_all(&selector) else {
            return false;
        };
        for index in 0..lines.length() {
            let Some(line) = lines.item(index) else {
                continue;
            };
            let text = line.text_content().unwrap_or_default();
            line.set_text_content(Some(&format!("{text} ({outcome})")));
            if let Ok(line) = line.dyn_into::<Element>() {
                let _ = line.class_list().add_1("given-up");
            }
        }
        lines.length() > 0
    }

    fn append_line(&self, entry: &Entry, evicted: usize) -> Option<Element> {
        for _ in 0..evicted {
            if let Some(oldest) = self.log.first_element_child() {
                oldest.remove();
            }
        }
        let line = self.document.create_element("li").ok()?;
        line.set_class_name(entry.speaker.class());
        // Element Timing: the browser records when each line was first painted, for real-user
        // monitoring and the page-load benchmark (navigation to "Greetings!" on screen).
        let _ = line.set_attribute("elementtiming", LOG_LINE_TIMING);
        line.set_text_content(Some(&entry.to_string()));
        let _ = self.log.append_child(&line);
        self.log.set_scroll_top(self.log.scroll_height());
        Some(line)
    }

    /// Appends a message of a room: author, time, text and, for one's own, its state, each in
    /// a `<bdi>` of its own (as text, never HTML), which isolates it: a bidi override or an
    /// isolate in a text reorders nothing outside it, and a name in Arabic or Hebrew does not
    /// pull the time across the line. `id` ties the line to an own publish, so
    /// [`Page::set_room_state`] can change its state later.
    pub fn append_room_line(&self, line: &RoomLine<'_>, evicted: usize) {
        for _ in 0..evicted {
            if let Some(oldest) = self.log.first_element_child() {
                oldest.remove();
            }
        }
        let Ok(item) = self.document.create_element("li") else {
            return;
        };
        item.set_class_name(if line.own { "message own" } else { "message" });
        let _ = item.set_attribute("elementtiming", LOG_LINE_TIMING);
        if let Some(id) = line.id {
            let _ = item.set_attribute(MESSAGE_ATTRIBUTE, id);
        }
        let parts = [
            ("author", Some(line.author)),
            ("time", Some(line.time)),
            ("text", Some(line.text)),
            ("state", line.state),
        ];
        for (class, text) in parts {
            let Some(text) = text else {
                continue;
            };
            // `<bdi>`: `unicode-bidi: isolate` and `dir="auto"` without needing the stylesheet.
            let Ok(part) = self.document.create_element("bdi") else {
                continue;
            };
            part.set_class_name(class);
            self.append_shown(&part, text);
            // Spaces between the parts, so the line reads (and copies) as words.
            if item.first_child().is_some() {
                let _ = item.append_with_str_1(" ");
            }
            let _ = item.append_child(&part);
        }
        let _ = self.log.append_child(&item);
        self.log.set_scroll_top(self.log.scroll_height());
    }

    /// Appends `text` to `part` as the page shows words from others: as text, with each character
    /// that would reorder or break it shown as its code (`U+202E`) in a marker of its own.
    fn append_shown(&self, part: &Element, text: &str) {
        for piece in shown::pieces(text) {
            match piece {
                Piece::Text(run) => {
                    let _ = part.append_with_str_1(run);
                }
                Piece::Marked(c) => {
                    let Ok(marker) = self.document.create_element("bdi") else {
                        continue;
                    };
                    marker.set_class_name("marker");
                    // The code reads left to right inside right-to-left text too.
                    let _ = marker.set_attribute("dir", "ltr");
                    let _ = marker.set_attribute("title", MARKER_TITLE);
                    marker.set_text_content(Some(&shown::marker(c)));
                    let _ = part.append_child(&marker);
                }
            }
        }
    }

    /// Sets the state shown on the line of own publish `id` (`delivered`, or why it was
    /// refused, which also marks the line); `false` if the line is gone.
    pub fn set_room_state(&self, id: &str, state: &str, refused: bool) -> bool {
        let Ok(lines) = self
            .log
            .query_selector_all(&format!("[{MESSAGE_ATTRIBUTE}]"))
        else {
            return false;
        };
        let mut found = false;
        for index in 0..lines.length() {
            let Some(line) = lines
                .item(index)
                .and_then(|node| node.dyn_into::<Element>().ok())
            else {
                continue;
            };
            // Compared here, not in the selector: a restored id may hold quotes.
            if line.get_attribute(MESSAGE_ATTRIBUTE).as_deref() != Some(id) {
                continue;
            }
            found = true;
            if let Ok(Some(span)) = line.query_selector(".state") {
                span.set_text_content(Some(state));
            }
            if refused {
                let _ = line.class_list().add_1("given-up");
            }
        }
        found
    }

    /// Puts `new` as the author of one's own lines that show `old`: the server said who the
    /// user is (a token's name) after the page showed them.
    pub fn rename_own(&self, old: &str, new: &str) {
        let Ok(authors) = self.document.query_selector_all("#log li.own .author") else {
            return;
        };
        for index in 0..authors.length() {
            if let Some(author) = authors
                .item(index)
                .and_then(|node| node.dyn_into::<Element>().ok())
                && author.text_content().as_deref() == Some(old)
            {
                // Shown as every name is: with its disruptive characters as their codes.
                author.set_text_content(None);
                self.append_shown(&author, new);
            }
        }
    }

    /// Names the room in the heading, the title and the input, so the page says where one
    /// is writing.
    pub fn show_room(&self, room: &str, name: &str) {
        let heading = format!("Room {room}");
        if let Ok(Some(h1)) = self.document.query_selector("h1") {
            h1.set_text_content(Some(&heading));
        }
        self.document.set_title(&format!("{heading} · {name}"));
        self.input
            .set_placeholder(&format!("Message to {room}, as {name}"));
    }

    /// 16 bytes from `crypto.getRandomValues`, for a message id; `None` if the browser
    /// refuses.
    pub fn random_bytes(&self) -> Option<[u8; 16]> {
        let crypto = self.window()?.crypto().ok()?;
        let mut bytes = [0_u8; 16];
        crypto.get_random_values_with_u8_array(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Shows `status`. The status is a live region: its announced part is rewritten only when
    /// it changes, and the countdown lives in a child hidden from screen readers, so they
    /// hear "Reconnecting" once instead of every second.
    pub fn set_status(&self, status: &Status) {
        let (announced, detail) = status.announced_and_detail();
        let same_state = self.status.get_attribute("data-status").as_deref() == Some(status.key())
            && self
                .status
                .first_child()
                .and_then(|node| node.text_content())
                == Some(announced.clone())
            && self.status_detail.parent_node().is_some();
        if !same_state {
            self.status.set_text_content(Some(&announced));
            let _ = self.status.append_child(&self.status_detail);
        }
        if self.status_detail.text_content().as_deref() != Some(detail.as_str()) {
            self.status_detail.set_text_content(Some(&detail));
        }
        let _ = self.status.set_attribute("data-status", status.key());
        self.reconnect.set_hidden(!matches!(
            status,
            Status::Closed { .. } | Status::SignedOut { .. }
        ));
    }

    /// Keeps the connection's `WebSocket.extensions` on the status line (`data-extensions`),
    /// for whoever inspects the page.
    pub fn show_extensions(&self, extensions: &str) {
        let _ = self.status.set_attribute("data-extensions", extensions);
    }

    /// Shows how many messages wait, and for what (nothing when none do).
    pub fn set_waiting(&self, waiting: &str) {
        if self.queued.text_content().as_deref() != Some(waiting) {
            self.queued.set_text_content(Some(waiting));
        }
    }

    /// Shows who is in the room and who is typing (nothing hides the line).
    pub fn set_presence(&self, text: Option<&str>) {
        let Some(line) = &self.presence else {
            return;
        };
        let text = text.unwrap_or_default();
        if line.text_content().as_deref() != Some(text) {
            line.set_text_content(Some(text));
        }
        let _ = line
            .class_list()
            .toggle_with_force("empty", text.is_empty());
    }

    /// Shows a hint under the input (why it cannot be sent as it is), or clears it; the input
    /// is marked invalid while there is one.
    pub fn set_hint(&self, hint: Option<&str>) {
        let text = hint.unwrap_or_default();
        if self.hint.text_content().as_deref() != Some(text) {
            self.hint.set_text_content(Some(text));
        }
        let input: &Element = self.input.as_ref();
        let _ = match hint {
            Some(_) => input.set_attribute("aria-invalid", "true"),
            None => input.remove_attribute("aria-invalid"),
        };
    }

    pub fn input_value(&self) -> String {
        self.input.value()
    }

    pub fn clear_input(&self) {
        self.input.set_value("");
    }

    /// Calls `on_send` when the form is submitted (Enter or the Send button).
    pub fn on_submit(&self, mut on_send: impl FnMut() + 'static) -> EventListener {
        let options = EventListenerOptions::enable_prevent_default();
        EventListener::new_with_options(&self.form, "submit", options, move |event| {
            // The page must not navigate: the message goes over the socket.
            event.prevent_default();
            on_send();
        })
    }

    /// Calls `on_click` when the Reconnect button is pressed.
    pub fn on_reconnect(&self, mut on_click: impl FnMut() + 'static) -> EventListener {
        EventListener::new(&self.reconnect, "click", move |_| on_click())
    }

    /// Calls `on_edit` whenever the input's text changes (typing, pasting, dropping).
    pub fn on_input(&self, mut on_edit: impl FnMut() + 'static) -> EventListener {
        EventListener::new(&self.input, "input", move |_| on_edit())
    }

    /// Calls `on_online` when the browser says the network is back.
    pub fn on_online(&self, mut on_online: impl FnMut() + 'static) -> Option<EventListener> {
        let window = self.window()?;
        Some(EventListener::new(&window, "online", move |_| on_online()))
    }

    /// Calls `on_offline` when the browser says the network is gone.
    pub fn on_offline(&self, mut on_offline: impl FnMut() + 'static) -> Option<EventListener> {
        let window = self.window()?;
        Some(EventListener::new(&window, "offline", move |_| {
            on_offline()
        }))
    }

    /// Asks the browser to confirm leaving the page while `must_confirm` says so.
    pub fn on_leave(&self, must_confirm: impl Fn() -> bool + 'static) -> Option<EventListener> {
        let window = self.window()?;
        let options = EventListenerOptions::enable_prevent_default();
        Some(EventListener::new_with_options(
            &window,
            "beforeunload",
            options,
            move |event| {
                if must_confirm() {
                    event.prevent_default();
                    // Older browsers ask only when a return value is set.
                    if let Some(event) = event.dyn_ref::<BeforeUnloadEvent>() {
                        event.set_return_value("Messages are still waiting to be sent.");
                    }
                }
            },
        ))
    }

    /// Whether the browser believes it is online (`navigator.onLine`).
    pub fn is_online(&self) -> bool {
        self.window()
            .is_none_or(|window| window.navigator().on_line())
    }

    fn window(&self) -> Option<Window> {
        self.document.default_view()
    }

    fn session_storage(&self) -> Option<Storage> {
        // Absent or refused (privacy settings): the page works, only a reload forgets.
        self.window()?.session_storage().ok().flatten()
    }

    /// The outbox this tab saved before a reload, if any.
    pub fn saved_outbox(&self) -> Option<String> {
        self.session_storage()?.get_item(OUTBOX_KEY).ok().flatten()
    }

    /// Saves the outbox for a reload; `None` forgets it. A full or refused storage is
    /// reported once per failure on the console: the page goes on without it.
    pub fn save_outbox(&self, saved: Option<&str>) {
        let Some(storage) = self.session_storage() else {
            return;
        };
        let result = match saved {
            Some(saved) => storage.set_item(OUTBOX_KEY, saved),
            None => storage.remove_item(OUTBOX_KEY),
        };
        if result.is_err() {
            warn(
                "the waiting messages could not be saved for a reload (sessionStorage refused them)",
            );
        }
    }

    /// What this tab saved for `room` before a reload, if anything.
    pub fn saved_room(&self, room: &str) -> Option<String> {
        self.session_storage()?
            .get_item(&format!("{ROOM_KEY_PREFIX}{room}"))
            .ok()
            .flatten()
    }

    /// Saves a room's state for a reload; `None` forgets it.
    pub fn save_room(&self, room: &str, saved: Option<&str>) {
        let Some(storage) = self.session_storage() else {
            return;
        };
        let key = format!("{ROOM_KEY_PREFIX}{room}");
        let result = match saved {
            Some(saved) => storage.set_item(&key, saved),
            None => storage.remove_item(&key),
        };
        if result.is_err() {
            warn("the room could not be saved for a reload (sessionStorage refused it)");
        }
    }

    /// Calls `on_visible` when the tab, hidden until now, becomes visible.
    pub fn on_visible(&self, mut on_visible: impl FnMut() + 'static) -> EventListener {
        let document = self.document.clone();
        EventListener::new(&self.document, "visibilitychange", move |_| {
            if document.visibility_state() == VisibilityState::Visible {
                on_visible();
            }
        })
    }

    /// Moves keyboard focus to the message input.
    pub fn focus_input(&self) {
        let input: &HtmlElement = self.input.as_ref();
        let _ = input.focus();
    }
}

/// One message line of a room, as [`Page::append_room_line`] shows it.
#[derive(Debug, Clone, Copy)]
pub struct RoomLine<'a> {
    pub author: &'a str,
    pub time: &'a str,
    pub text: &'a str,
    /// For one's own publishes: `sending`, `delivered`, or why it was refused.
    pub state: Option<&'a str>,
    pub id: Option<&'a str>,
    pub own: bool,
}

/// A warning on the browser console.
pub fn warn(text: &str) {
    web_sys::console::warn_1(&text.into());
}
