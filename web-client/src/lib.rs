//! The browser client: an input field feeds a bounded queue; a background task sends the
//! queue over a WebSocket to `/subscriptions`, or, with `?room=&name=`, to a room of
//! `/rooms` (signed in with a token from the token URL when the server wants one); replies
//! and the room's messages are rendered in the page.
//!
//! What decides (outbox, backoff, settings, the room's positions, status, the saved outbox) is
//! the crate `client-core`, shared with the console client and tested natively with
//! `cargo test`. This crate keeps what touches the page and the browser's socket: `url` reads
//! the page's location and query, `dom` alone knows element ids, `socket` alone knows
//! gloo-net, `signin` alone makes HTTP requests, and `app` wires them to the core.

pub mod url;

#[cfg(target_arch = "wasm32")]
pub mod app;
#[cfg(target_arch = "wasm32")]
pub mod dom;
#[cfg(target_arch = "wasm32")]
pub mod enter;
#[cfg(target_arch = "wasm32")]
pub mod signin;
#[cfg(target_arch = "wasm32")]
pub mod socket;

#[cfg(target_arch = "wasm32")]
mod entry {
    use wasm_bindgen::prelude::*;

    use crate::app::Client;
    use crate::dom::Page;
    use crate::url::{RoomQuery, View, settings_for_page, view_for_page};

    /// Starts the client on the current page. Called by `index.html` once the module loaded.
    #[wasm_bindgen]
    pub fn start() -> Result<(), JsError> {
        console_error_panic_hook::set_once();
        let window = web_sys::window().ok_or_else(|| JsError::new("no window"))?;
        let document = window
            .document()
            .ok_or_else(|| JsError::new("no document"))?;
        let page = Page::find(&document).map_err(|error| JsError::new(&error))?;
        let location = window.location();
        let protocol = location.protocol().unwrap_or_default();
        let host = location.host().unwrap_or_default();
        let params = location
            .search()
            .ok()
            .and_then(|search| web_sys::UrlSearchParams::new_with_str(&search).ok());
        let param = |name: &str| params.as_ref().and_then(|params| params.get(name));
        let settings = settings_for_page(
            &protocol,
            &host,
            param("ws").as_deref(),
            param("reply-timeout").as_deref(),
            param("max-message-size").as_deref(),
        );
        let (room, name, reply_timeout, token_url) = (
            param("room"),
            param("name"),
            param("reply-timeout"),
            param("token-url"),
        );
        let query = RoomQuery {
            room: room.as_deref(),
            name: name.as_deref(),
            reply_timeout: reply_timeout.as_deref(),
            token_url: token_url.as_deref(),
        };
        let view = view_for_page(&protocol, &host, query);
        // Bad settings are shown on the page by the client itself, which keeps the form's
        // listeners: the form must never submit natively.
        // The client runs for the life of the page: its handle is not needed to stop it.
        crate::enter::start(&document, matches!(view, View::Subscriptions));
        let _running = match view {
            View::Subscriptions => Client::start(page, settings),
            View::Room(settings) => Client::start_room(page, settings),
        };
        Ok(())
    }
}
