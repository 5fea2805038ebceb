//! The page: the only module that knows element ids (they are in `static/index.html`), and the
//! window around it (its events, `sessionStorage`, the console). Text always goes in as text
//! (`textContent`), never as HTML; in a room, each name and text in an isolating `<bdi>` of
//! its own, with the characters [`client_core::shown`] picks shown as their code.
//!
//! New lines are drawn in batches: each is made at once (so it can be marked before it is
//! drawn) and goes into the log at the next animation frame with the others of that frame, in
//! one insertion, with one look at whether the reader was at the bottom (only then does the
//! view follow; otherwise a "new messages" button appears). A hidden tab, which gets no frames,
//! is drawn by a timer instead. Screen readers hear the frame's live lines once, from a
//! region of their own: a replay of the room's history is drawn, not read out.

use std::cell::RefCell;
use std::rc::Rc;

use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{
    BeforeUnloadEvent, Document, Element, HtmlButtonElement, HtmlElement, HtmlFormElement,
    HtmlTextAreaElement, KeyboardEvent, Storage, VisibilityState, Window,
};

use client_core::outbox::MessageId;
use client_core::shown::{self, Piece};
use client_core::status::Status;
use client_core::transcript::{Entry, Speaker};

const LOG_ID: &str = "log";
const FORM_ID: &str = "composer";
const INPUT_ID: &str = "message";
const STATUS_ID: &str = "status";
const QUEUED_ID: &str = "queued";
const RECONNECT_ID: &str = "reconnect";
const HINT_ID: &str = "hint";
/// Who is in the room (the room view only): a `<details>`, its `<summary>`, and the list.
const PEOPLE_ID: &str = "people";
const PEOPLE_COUNT_ID: &str = "people-count";
const MEMBERS_ID: &str = "members";
/// Who is typing (the room view only).
const TYPING_ID: &str = "typing";
/// The button that appears when lines arrived below a reader who scrolled up.
const JUMP_ID: &str = "jump";
/// Where screen readers are told of new lines.
const ANNOUNCE_ID: &str = "announce";
/// Announcements kept in the region (older ones were read out already).
const ANNOUNCEMENTS_KEPT: u32 = 3;
/// Lines announced at most per frame; past it, how many more came.
const ANNOUNCED_PER_FRAME: usize = 5;
/// The key code of a key pressed while an input method composes.
const IME_KEY_CODE: u32 = 229;
/// How close (CSS pixels) to the bottom counts as at the bottom.
const BOTTOM_SLACK: i32 = 8;
/// A hidden tab gets no animation frames: its lines are drawn by a timer after this long.
const HIDDEN_FLUSH_MILLIS: i32 = 250;
/// Lines of one author closer than this (ms) are grouped under one name.
const GROUP_MILLIS: u64 = 5 * 60 * 1000;
/// The attribute with a room line's author (and whether it is one's own), for grouping.
const AUTHOR_ATTRIBUTE: &str = "data-author";
/// The attribute with a room line's time (ms since the epoch), for grouping.
const AT_ATTRIBUTE: &str = "data-at";
/// The attribute with an own line's state: `sending`, `delivered` or `refused`.
const STATE_ATTRIBUTE: &str = "data-state";
/// The `sessionStorage` key of the saved outbox.
pub const OUTBOX_KEY: &str = "web-client.outbox";
/// A copy kept for a reload is at most this long (UTF-8 bytes, about as many UTF-16 units as
/// the storage counts): well under the 5 MB a browser gives a tab, with room for the rest.
pub const MAX_SAVED_CHARS: usize = 1024 * 1024;

/// The `sessionStorage` key an earlier version of the page saved a room's state under (no
/// owner in it): read once to offer its waiting messages back, then removed.
pub fn earlier_room_key(room: &str) -> String {
    format!("web-client.room:{room}")
}

/// The `sessionStorage` key of a room's saved state: per owner (server and name) and room,
/// so a tab reloaded under another name finds nothing of the other's.
pub fn room_key(owner: &str, room: &str) -> String {
    format!("web-client.room:{owner}|{room}")
}
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
    form: HtmlFormElement,
    input: HtmlTextAreaElement,
    status: Element,
    queued: Element,
    reconnect: HtmlButtonElement,
    hint: Element,
    people: HtmlElement,
    people_count: Element,
    members: Element,
    typing: HtmlElement,
    jump: HtmlButtonElement,
    announce: Element,
    /// Inside the status: the part that changes every second and is not announced.
    status_detail: Element,
    /// What waits to be drawn, and what is drawn that the page must remember.
    drawn: Rc<RefCell<Drawn>>,
}

/// The page's own state: lines waiting for the next frame, the title, who is listed.
#[derive(Debug, Default)]
struct Drawn {
    /// Lines made and not yet in the log, oldest first, each with what screen readers are to
    /// hear of it.
    lines: Vec<(Element, Option<String>)>,
    /// One of them is one's own: the view goes to the bottom, wherever the reader was.
    own: bool,
    /// The reader scrolled up from the bottom (said by the log's scroll events, so a log
    /// that shrank under a growing composer still follows).
    unstuck: bool,
    /// A frame (and the hidden tab's timer) has been asked for.
    scheduled: bool,
    /// The title without its unread count.
    title: String,
    /// The count and whether it is capped, and the names in the member list, as drawn.
    people: (u64, bool),
    members: Vec<String>,
}

/// What [`Page::on_log`] watches, for as long as it is held.
#[derive(Debug)]
pub struct LogWatch {
    _listeners: Vec<EventListener>,
    resize: Option<(web_sys::ResizeObserver, Closure<dyn FnMut()>)>,
}

impl Drop for LogWatch {
    fn drop(&mut self) {
        if let Some((observer, _)) = &self.resize {
            observer.disconnect();
        }
    }
}

/// An own line's state, as [`Page::set_room_state`] shows it.
#[derive(Debug, Clone, Copy)]
pub enum OwnState<'a> {
    Sending,
    /// Quiet: the line shows nothing more.
    Delivered,
    /// Why it was refused, and a button to edit it and send it again.
    Refused(&'a str),
}

impl OwnState<'_> {
    fn key(self) -> &'static str {
        match self {
            OwnState::Sending => "sending",
            OwnState::Delivered => "delivered",
            OwnState::Refused(_) => "refused",
        }
    }

    fn shown(self) -> &'static str {
        match self {
            OwnState::Sending => "sending",
            OwnState::Delivered | OwnState::Refused(_) => "",
        }
    }
}

impl Page {
    /// Finds every element; names the first one missing.
    pub fn find(document: &Document) -> Result<Page, String> {
        let element = |id: &str| {
            document
                .get_element_by_id(id)
                .ok_or_else(|| format!("the page has no #{id} element"))
        };
        let of_kind = |id: &str, kind: &str| format!("#{id} is not a <{kind}>");
        Ok(Page {
            document: document.clone(),
            log: element(LOG_ID)?,
            form: element(FORM_ID)?
                .dyn_into()
                .map_err(|_| of_kind(FORM_ID, "form"))?,
            input: element(INPUT_ID)?
                .dyn_into()
                .map_err(|_| of_kind(INPUT_ID, "textarea"))?,
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
            people: element(PEOPLE_ID)?
                .dyn_into()
                .map_err(|_| of_kind(PEOPLE_ID, "details"))?,
            people_count: element(PEOPLE_COUNT_ID)?,
            members: element(MEMBERS_ID)?,
            typing: element(TYPING_ID)?
                .dyn_into()
                .map_err(|_| of_kind(TYPING_ID, "p"))?,
            jump: element(JUMP_ID)?
                .dyn_into()
                .map_err(|_| of_kind(JUMP_ID, "button"))?,
            announce: element(ANNOUNCE_ID)?,
            status_detail: {
                let detail = document
                    .create_element("span")
                    .map_err(|_| "cannot create a <span>".to_owned())?;
                // Hidden from the accessibility tree: its changes are not announced.
                let _ = detail.set_attribute("aria-hidden", "true");
                detail
            },
            drawn: Rc::default(),
        })
    }

    /// Appends a line to the log (at the next frame) and removes `evicted` old ones.
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
        let lines = self.lines_of(&id.0.to_string());
        for line in &lines {
            let text = line.text_content().unwrap_or_default();
            let marked = format!("{text} ({outcome})");
            line.set_text_content(Some(&marked));
            let _ = line.class_list().add_1("given-up");
            self.say(&[marked]);
        }
        !lines.is_empty()
    }

    /// The lines, drawn or waiting to be, that show message `id`.
    fn lines_of(&self, id: &str) -> Vec<Element> {
        // Compared here, not in a selector: a restored id may hold quotes.
        self.lines_where(&format!("[{MESSAGE_ATTRIBUTE}]"), |line| {
            line.get_attribute(MESSAGE_ATTRIBUTE).as_deref() == Some(id)
        })
    }

    /// The lines matching `selector`, drawn or waiting to be, that `keep` keeps.
    fn lines_where(&self, selector: &str, keep: impl Fn(&Element) -> bool) -> Vec<Element> {
        let mut found = Vec::new();
        if let Ok(lines) = self.log.query_selector_all(selector) {
            for index in 0..lines.length() {
                if let Some(line) = lines
                    .item(index)
                    .and_then(|node| node.dyn_into::<Element>().ok())
                {
                    found.push(line);
                }
            }
        }
        for (line, _) in &self.drawn.borrow().lines {
            if line.matches(selector).unwrap_or(false) {
                found.push(line.clone());
            }
        }
        found.retain(keep);
        found
    }

    fn append_line(&self, entry: &Entry, evicted: usize) -> Option<Element> {
        let line = self.document.create_element("li").ok()?;
        line.set_class_name(entry.speaker.class());
        // Element Timing: the browser records when each line was first painted, for real-user
        // monitoring and the page-load benchmark (navigation to "Greetings!" on screen).
        let _ = line.set_attribute("elementtiming", LOG_LINE_TIMING);
        let text = entry.to_string();
        line.set_text_content(Some(&text));
        // One's own lines are not read back to the person who typed them.
        let own = matches!(entry.speaker, Speaker::You | Speaker::YouAgain);
        self.add_line(line.clone(), evicted, (!own).then_some(text), own);
        Some(line)
    }

    /// Puts `line` in the next frame's batch, after removing `evicted` of the oldest lines
    /// (drawn or not, with what was to be said of them).
    fn add_line(&self, line: Element, evicted: usize, said: Option<String>, own: bool) {
        let mut drawn = self.drawn.borrow_mut();
        for _ in 0..evicted {
            match self.log.first_element_child() {
                Some(oldest) => {
                    oldest.remove();
                    // The new first line heads its group.
                    if let Some(first) = self.log.first_element_child() {
                        let _ = first.class_list().remove_1("continued");
                    }
                }
                None if !drawn.lines.is_empty() => drop(drawn.lines.remove(0)),
                None => break,
            }
        }
        drawn.lines.push((line, said));
        drawn.own |= own;
        if drawn.scheduled {
            return;
        }
        drawn.scheduled = true;
        drop(drawn);
        self.schedule_flush();
    }

    /// Asks for [`Page::flush`] at the next animation frame, and by a timer for a hidden
    /// tab (which gets no frames); whichever comes first draws, the other finds nothing.
    fn schedule_flush(&self) {
        let Some(window) = self.window() else {
            return self.flush();
        };
        let page = self.clone();
        let frame = Closure::once_into_js(move || page.flush());
        if window
            .request_animation_frame(frame.unchecked_ref())
            .is_err()
        {
            return self.flush();
        }
        let page = self.clone();
        let timer = Closure::once_into_js(move || page.flush());
        let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(
            timer.unchecked_ref(),
            HIDDEN_FLUSH_MILLIS,
        );
    }

    /// Draws what waits: every line in one insertion; the view follows only a reader who was
    /// at the bottom (or who just sent a line), others get the "new messages" button; screen
    /// readers hear the live lines once.
    pub fn flush(&self) {
        let (lines, own, unstuck) = {
            let mut drawn = self.drawn.borrow_mut();
            drawn.scheduled = false;
            (
                std::mem::take(&mut drawn.lines),
                std::mem::take(&mut drawn.own),
                drawn.unstuck,
            )
        };
        if lines.is_empty() {
            return;
        }
        let batch = self.document.create_document_fragment();
        let mut said = Vec::new();
        for (line, words) in lines {
            let _ = batch.append_child(&line);
            said.extend(words);
        }
        let _ = self.log.append_child(&batch);
        if own || !unstuck {
            self.to_bottom();
        } else {
            self.jump.set_hidden(false);
        }
        self.say(&said);
    }

    /// Whether the log shows its last line (or has nothing to scroll).
    fn at_bottom(&self) -> bool {
        self.log.scroll_top() + self.log.client_height() >= self.log.scroll_height() - BOTTOM_SLACK
    }

    /// Shows the last line: the reader is at the bottom again, and followed.
    fn to_bottom(&self) {
        self.log.set_scroll_top(self.log.scroll_height());
        self.jump.set_hidden(true);
        self.drawn.borrow_mut().unstuck = false;
    }

    /// Tells screen readers `said` (one frame's lines) at once, in one announcement.
    fn say(&self, said: &[String]) {
        if said.is_empty() {
            return;
        }
        let mut words = said
            .iter()
            .take(ANNOUNCED_PER_FRAME)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        if said.len() > ANNOUNCED_PER_FRAME {
            words.push_str(&format!(
                "\nand {} more lines",
                said.len() - ANNOUNCED_PER_FRAME
            ));
        }
        let Ok(announcement) = self.document.create_element("p") else {
            return;
        };
        announcement.set_text_content(Some(&words));
        let _ = self.announce.append_child(&announcement);
        while self.announce.child_element_count() > ANNOUNCEMENTS_KEPT {
            if let Some(oldest) = self.announce.first_element_child() {
                oldest.remove();
            }
        }
    }

    /// Appends a message of a room: author, time, text and, for one's own, its state, each in
    /// a `<bdi>` of its own (as text, never HTML), which isolates it: a bidi override or an
    /// isolate in a text reorders nothing outside it, and a name in Arabic or Hebrew does not
    /// pull the time across the line. `id` ties the line to an own publish, so
    /// [`Page::set_room_state`] can change its state later. A line that follows one of the
    /// same author within minutes is grouped with it (its name is drawn once).
    pub fn append_room_line(&self, line: &RoomLine<'_>, evicted: usize) {
        let Ok(item) = self.document.create_element("li") else {
            return;
        };
        item.set_class_name(if line.own { "message own" } else { "message" });
        let _ = item.set_attribute("elementtiming", LOG_LINE_TIMING);
        if let Some(id) = line.id {
            let _ = item.set_attribute(MESSAGE_ATTRIBUTE, id);
        }
        let author = format!("{}:{}", u8::from(line.own), line.author);
        let previous = self
            .drawn
            .borrow()
            .lines
            .last()
            .map(|(line, _)| line.clone())
            .or_else(|| self.log.last_element_child());
        let grouped = follows(previous.as_ref(), &author, line.at);
        if grouped {
            let _ = item.class_list().add_1("continued");
        }
        let _ = item.set_attribute(AUTHOR_ATTRIBUTE, &author);
        let _ = item.set_attribute(AT_ATTRIBUTE, &line.at.to_string());
        let state = line.state.map(OwnState::shown);
        if let Some(state) = line.state {
            let _ = item.set_attribute(STATE_ATTRIBUTE, state.key());
        }
        let parts = [
            ("author", Some(line.author)),
            ("time", Some(line.time)),
            ("text", Some(line.text)),
            ("state", state),
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
            if class == "author" {
                // The author and the space after it, in one `.by` that a grouped line does
                // not draw (screen readers and a copy still have both).
                let Ok(by) = self.document.create_element("span") else {
                    continue;
                };
                by.set_class_name("by");
                let _ = by.append_child(&part);
                let _ = by.append_with_str_1(" ");
                let _ = item.append_child(&by);
                continue;
            }
            // Spaces between the other parts, so the line reads (and copies) as words.
            if class != "time" {
                let _ = item.append_with_str_1(" ");
            }
            let _ = item.append_child(&part);
        }
        let said = line
            .announce
            .then(|| format!("{}: {}", line.author, line.text));
        self.add_line(item, evicted, said, line.own);
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

    /// Sets the state of the line of own publish `id`: *sending*, quiet once delivered, or
    /// why it was refused with a button to edit and send it again; `false` if the line is
    /// gone.
    pub fn set_room_state(&self, id: &str, state: OwnState<'_>) -> bool {
        let lines = self.lines_of(id);
        for line in &lines {
            let _ = line.set_attribute(STATE_ATTRIBUTE, state.key());
            let Ok(Some(part)) = line.query_selector(".state") else {
                continue;
            };
            part.set_text_content(Some(state.shown()));
            if let OwnState::Refused(reason) = state {
                let _ = line.class_list().add_1("given-up");
                part.set_text_content(Some(reason));
                if let Ok(button) = self.document.create_element("button") {
                    button.set_class_name("resend");
                    let _ = button.set_attribute("type", "button");
                    button.set_text_content(Some("Edit and send again"));
                    let _ = line.append_child(&button);
                }
                self.say(&[format!("Not sent: {reason}")]);
            }
        }
        !lines.is_empty()
    }

    /// Takes the "edit and send again" button off the line of publish `id` (its text is no
    /// longer kept).
    pub fn drop_resend(&self, id: &str) {
        for line in self.lines_of(id) {
            if let Ok(Some(button)) = line.query_selector("button.resend") {
                button.remove();
            }
        }
    }

    /// Shows the server's time on the line of own publish `id` (it showed this clock's).
    pub fn set_room_time(&self, id: &str, time: &str, at: u64) {
        for line in self.lines_of(id) {
            let _ = line.set_attribute(AT_ATTRIBUTE, &at.to_string());
            if let Ok(Some(part)) = line.query_selector(".time") {
                part.set_text_content(Some(time));
            }
        }
    }

    /// Takes the line of own publish `id` away (its text went back to the composer); the line
    /// after it is grouped anew with the one now before it.
    pub fn remove_line(&self, id: &str) {
        for line in self.lines_of(id) {
            let next = line.next_element_sibling();
            let waiting = {
                let mut drawn = self.drawn.borrow_mut();
                let at = drawn.lines.iter().position(|(waiting, _)| *waiting == line);
                at.map(|at| {
                    drawn.lines.remove(at);
                    drawn.lines.get(at).map(|(next, _)| next.clone())
                })
            };
            line.remove();
            // The line that followed, drawn or waiting.
            let next = match waiting {
                Some(next) => next,
                None => next.or_else(|| {
                    self.drawn
                        .borrow()
                        .lines
                        .first()
                        .map(|(line, _)| line.clone())
                }),
            };
            if let Some(next) = next {
                self.regroup(&next);
            }
        }
    }

    /// Groups `line` with the one before it, drawn or waiting, or not.
    fn regroup(&self, line: &Element) {
        let previous = line.previous_element_sibling().or_else(|| {
            let drawn = self.drawn.borrow();
            let at = drawn
                .lines
                .iter()
                .position(|(waiting, _)| waiting == line)?;
            match at.checked_sub(1) {
                Some(before) => Some(drawn.lines[before].0.clone()),
                None => self.log.last_element_child(),
            }
        });
        let author = line.get_attribute(AUTHOR_ATTRIBUTE).unwrap_or_default();
        let at = line
            .get_attribute(AT_ATTRIBUTE)
            .and_then(|at| at.parse::<u64>().ok())
            .unwrap_or_default();
        let grouped = !author.is_empty() && follows(previous.as_ref(), &author, at);
        let _ = line.class_list().toggle_with_force("continued", grouped);
    }

    /// Puts `new` as the author of one's own lines (drawn or waiting) that show `old`: the
    /// server said who the user is (a token's name) after the page showed them.
    pub fn rename_own(&self, old: &str, new: &str) {
        let (was, now) = (format!("1:{old}"), format!("1:{new}"));
        // A refused line keeps its author: restored from a reload, it may be another's.
        let lines = self.lines_where("li.own", |line| {
            line.get_attribute(AUTHOR_ATTRIBUTE).as_deref() == Some(was.as_str())
                && line.get_attribute(STATE_ATTRIBUTE).as_deref() != Some("refused")
        });
        for line in lines {
            let _ = line.set_attribute(AUTHOR_ATTRIBUTE, &now);
            if let Ok(Some(author)) = line.query_selector(".author") {
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
        let title = format!("{heading} · {name}");
        let unread = self.document.title().strip_prefix('(').and_then(|rest| {
            let (count, _) = rest.split_once(") ")?;
            count.parse::<u32>().ok()
        });
        self.drawn.borrow_mut().title = title;
        self.set_unread(unread.unwrap_or(0));
        self.input
            .set_placeholder(&format!("Message to {room}, as {name}"));
        self.typing.set_hidden(false);
    }

    /// Puts the number of lines that arrived while the tab was hidden before the title (none:
    /// the title alone).
    pub fn set_unread(&self, unread: u32) {
        let drawn = self.drawn.borrow();
        let title = if unread == 0 {
            drawn.title.clone()
        } else {
            format!("({unread}) {}", drawn.title)
        };
        if self.document.title() != title {
            self.document.set_title(&title);
        }
    }

    /// Whether the tab is hidden (another tab in front, the window minimised).
    pub fn is_hidden(&self) -> bool {
        self.document.visibility_state() == VisibilityState::Hidden
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
        // Offline too: the browser's word for it is sometimes wrong, and the person can try.
        self.reconnect.set_hidden(!matches!(
            status,
            Status::Closed { .. } | Status::SignedOut { .. } | Status::Offline
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

    /// Shows who is in the room: the count with the names after it in the summary, everyone
    /// in the list (past the server's cap, the count alone); nobody hides it. Each name is
    /// isolated and shown as names in the log are.
    pub fn set_people(&self, count: u64, capped: bool, names: &[String]) {
        self.people.set_hidden(count == 0);
        let names = if capped { &[][..] } else { names };
        {
            let mut drawn = self.drawn.borrow_mut();
            if drawn.people == (count, capped) && drawn.members == names {
                return;
            }
            drawn.people = (count, capped);
            drawn.members = names.to_vec();
        }
        self.people_count
            .set_text_content(Some(&format!("{count} here")));
        // The names after the count show while the list is closed (the stylesheet hides
        // them when it is open).
        if let Ok(preview) = self.document.create_element("span") {
            preview.set_class_name("preview");
            for (index, name) in names.iter().enumerate() {
                let _ = preview.append_with_str_1(if index == 0 { ": " } else { ", " });
                if let Ok(part) = self.document.create_element("bdi") {
                    self.append_shown(&part, name);
                    let _ = preview.append_child(&part);
                }
            }
            let _ = self.people_count.append_child(&preview);
        }
        self.members.set_text_content(None);
        for name in names {
            if let Ok(item) = self.document.create_element("li") {
                self.append_shown(&item, name);
                let _ = self.members.append_child(&item);
            }
        }
    }

    /// Shows who is typing, or nothing.
    pub fn set_typing(&self, text: &str) {
        if self.typing.text_content().as_deref() != Some(text) {
            self.typing.set_text_content(Some(text));
        }
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

    /// Whether no hint shows under the input.
    pub fn hint_is_empty(&self) -> bool {
        self.hint.text_content().unwrap_or_default().is_empty()
    }

    pub fn input_value(&self) -> String {
        self.input.value()
    }

    pub fn clear_input(&self) {
        self.input.set_value("");
    }

    /// Calls `on_send` when the form is submitted: Enter in the composer (Shift+Enter breaks
    /// the line; the Enter that ends an IME composition only ends it: `isComposing`, or
    /// WebKit's key code 229 for the Enter that follows `compositionend`), or the Send button.
    pub fn on_submit(&self, on_send: impl FnMut() + 'static) -> Vec<EventListener> {
        let options = EventListenerOptions::enable_prevent_default();
        let form = self.form.clone();
        let on_send = Rc::new(RefCell::new(on_send));
        let on_enter = Rc::clone(&on_send);
        vec![
            EventListener::new_with_options(&self.form, "submit", options, move |event| {
                // The page must not navigate: the message goes over the socket.
                event.prevent_default();
                (on_send.borrow_mut())();
            }),
            EventListener::new_with_options(&self.input, "keydown", options, move |event| {
                let Some(key) = event.dyn_ref::<KeyboardEvent>() else {
                    return;
                };
                let composing = key.is_composing() || key.key_code() == IME_KEY_CODE;
                if key.key() == "Enter" && !key.shift_key() && !composing {
                    event.prevent_default();
                    // `requestSubmit` is missing from older browsers (Safari before 16).
                    if form.request_submit().is_err() {
                        (on_enter.borrow_mut())();
                    }
                }
            }),
        ]
    }

    /// The log's own controls: the "new messages" button (to the bottom; it goes when the
    /// reader gets there anyway), each refused line's "edit and send again", which calls
    /// `on_resend` with the line's publish id, and a reader at the bottom kept there when the
    /// log changes size (a composer that grows, the member list opened).
    pub fn on_log(&self, mut on_resend: impl FnMut(String) + 'static) -> LogWatch {
        let page = self.clone();
        let scrolled = self.clone();
        let clicked = self.clone();
        let resized = self.clone();
        let on_resize = Closure::<dyn FnMut()>::new(move || {
            if !resized.drawn.borrow().unstuck {
                resized.to_bottom();
            }
        });
        let resize = web_sys::ResizeObserver::new(on_resize.as_ref().unchecked_ref())
            .ok()
            .map(|observer| {
                observer.observe(&self.log);
                (observer, on_resize)
            });
        let listeners = vec![
            EventListener::new(&self.jump, "click", move |_| {
                page.to_bottom();
                page.focus_input();
            }),
            EventListener::new(&self.log, "scroll", move |_| {
                let at_bottom = scrolled.at_bottom();
                scrolled.drawn.borrow_mut().unstuck = !at_bottom;
                if at_bottom && !scrolled.jump.hidden() {
                    scrolled.jump.set_hidden(true);
                }
            }),
            EventListener::new(&self.log, "click", move |event| {
                let line = event
                    .target()
                    .and_then(|target| target.dyn_into::<Element>().ok())
                    .filter(|target| target.class_list().contains("resend"))
                    .and_then(|button| button.closest("li").ok().flatten());
                if let Some(id) = line.and_then(|line| line.get_attribute(MESSAGE_ATTRIBUTE)) {
                    clicked.focus_input();
                    on_resend(id);
                }
            }),
        ];
        LogWatch {
            _listeners: listeners,
            resize,
        }
    }

    /// Puts `text` in the composer, after what is there already (on a line of its own).
    pub fn put_in_input(&self, text: &str) {
        let value = self.input.value();
        if value.is_empty() {
            self.input.set_value(text);
        } else {
            self.input.set_value(&format!("{value}\n{text}"));
        }
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

    /// Asks the browser to confirm leaving the page while `must_confirm` says so. Held only
    /// while something waits: a `beforeunload` listener keeps the page out of the
    /// back-forward cache.
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

    /// What this tab saved under `key` before a reload, if anything.
    pub fn saved(&self, key: &str) -> Option<String> {
        self.session_storage()?.get_item(key).ok().flatten()
    }

    /// Keeps `copy` under `key` for a reload (`None` forgets it). A copy past
    /// [`MAX_SAVED_CHARS`] or one the storage refuses (full, or blocked) is not kept, and the
    /// older one is removed with it: a reload must never find an outdated state (it would send
    /// again what was answered and lose what came since). `Err` says why.
    pub fn keep(&self, key: &str, copy: Option<&str>) -> Result<(), String> {
        let Some(storage) = self.session_storage() else {
            return Err(
                "this browser keeps nothing for this tab (sessionStorage is blocked)".into(),
            );
        };
        let Some(copy) = copy else {
            let _ = storage.remove_item(key);
            return Ok(());
        };
        let kept = if copy.len() > MAX_SAVED_CHARS {
            Err(format!(
                "it is larger than the {} KiB this page keeps",
                MAX_SAVED_CHARS / 1024
            ))
        } else {
            storage
                .set_item(key, copy)
                .map_err(|_| "the browser's storage for this tab is full".to_owned())
        };
        if kept.is_err() {
            let _ = storage.remove_item(key);
        }
        kept
    }

    /// Calls `on_hide` when the page is being left (`pagehide`) or goes to the background
    /// (hidden: a phone may then discard it without a `pagehide`): the moments to save.
    pub fn on_hide(&self, on_hide: impl FnMut() + 'static) -> Vec<EventListener> {
        let Some(window) = self.window() else {
            return Vec::new();
        };
        let on_hide = Rc::new(RefCell::new(on_hide));
        let on_hidden = Rc::clone(&on_hide);
        let document = self.document.clone();
        vec![
            EventListener::new(&window, "pagehide", move |_| (on_hide.borrow_mut())()),
            EventListener::new(&self.document, "visibilitychange", move |_| {
                if document.visibility_state() == VisibilityState::Hidden {
                    (on_hidden.borrow_mut())();
                }
            }),
        ]
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
    /// The time, ms since the epoch (for grouping).
    pub at: u64,
    pub text: &'a str,
    /// For one's own publishes: its state.
    pub state: Option<OwnState<'a>>,
    pub id: Option<&'a str>,
    pub own: bool,
    /// Screen readers hear it (a live line of someone else).
    pub announce: bool,
}

/// Whether a line of `author` at `at` (ms) continues the group of `previous`: a message line
/// of the same author (and own-ness) within [`GROUP_MILLIS`].
fn follows(previous: Option<&Element>, author: &str, at: u64) -> bool {
    previous.is_some_and(|previous| {
        let previous_at = previous
            .get_attribute(AT_ATTRIBUTE)
            .and_then(|at| at.parse::<u64>().ok());
        previous.get_attribute(AUTHOR_ATTRIBUTE).as_deref() == Some(author)
            && previous_at.is_some_and(|previous_at| at.abs_diff(previous_at) < GROUP_MILLIS)
    })
}

/// A warning on the browser console.
pub fn warn(text: &str) {
    web_sys::console::warn_1(&text.into());
}
