//! The page: the only module that knows element ids (they are in `static/index.html`).
//! Text always goes in as text (`textContent`), never as HTML.

use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::JsCast;
use web_sys::{
    Document, Element, HtmlButtonElement, HtmlElement, HtmlInputElement, VisibilityState,
};

use crate::outbox::Waiting;
use crate::status::Status;
use crate::transcript::Entry;

const LOG_ID: &str = "log";
const FORM_ID: &str = "composer";
const INPUT_ID: &str = "message";
const STATUS_ID: &str = "status";
const QUEUED_ID: &str = "queued";
const RECONNECT_ID: &str = "reconnect";
/// The `elementtiming` name of the conversation's lines.
const LOG_LINE_TIMING: &str = "log-line";

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
        })
    }

    /// Appends a line to the log, removes `evicted` old ones, and keeps the newest in view.
    pub fn append(&self, entry: &Entry, evicted: usize) {
        for _ in 0..evicted {
            if let Some(oldest) = self.log.first_element_child() {
                oldest.remove();
            }
        }
        let Ok(line) = self.document.create_element("li") else {
            return;
        };
        line.set_class_name(entry.speaker.class());
        // Element Timing: the browser records when each line was first painted, for real-user
        // monitoring and the page-load benchmark (navigation to "Greetings!" on screen).
        let _ = line.set_attribute("elementtiming", LOG_LINE_TIMING);
        line.set_text_content(Some(&entry.to_string()));
        let _ = self.log.append_child(&line);
        self.log.set_scroll_top(self.log.scroll_height());
    }

    pub fn set_status(&self, status: &Status) {
        self.status.set_text_content(Some(&status.to_string()));
        let _ = self.status.set_attribute("data-status", status.key());
        self.reconnect
            .set_hidden(!matches!(status, Status::Closed { .. }));
    }

    /// Keeps the connection's `WebSocket.extensions` on the status line (`data-extensions`),
    /// for whoever inspects the page.
    pub fn show_extensions(&self, extensions: &str) {
        let _ = self.status.set_attribute("data-extensions", extensions);
    }

    /// Shows how many messages wait, and for what (nothing when none do).
    pub fn set_waiting(&self, waiting: Waiting) {
        self.queued.set_text_content(Some(&waiting.to_string()));
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

    /// Calls `on_online` when the browser says the network is back.
    pub fn on_online(&self, mut on_online: impl FnMut() + 'static) -> Option<EventListener> {
        let window = self.document.default_view()?;
        Some(EventListener::new(&window, "online", move |_| on_online()))
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
