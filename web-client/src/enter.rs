//! The entry form on `/`: a room, and a name (remembered in `localStorage` for the next
//! visit; not asked on a server whose tokens name the person), leading to the room view. The
//! page's CSP forbids native form submission (`form-action 'none'`), so the form is read here
//! and the page goes to the link [`room_link`] makes, or says which field is wrong.

use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::JsCast;
use web_sys::{Document, HtmlElement, HtmlFormElement, HtmlInputElement};

use crate::signin::fetch_mode;
use crate::url::{AuthMode, room_link};

/// Where the server says whether it wants tokens, on the page's own origin.
const AUTH_CONFIG: &str = "/auth/config";
/// How long to wait for it before leaving the name field as it is.
const AUTH_CONFIG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `localStorage` key of the name last entered.
const NAME_KEY: &str = "web-client.name";

/// Shows the form and handles it for the life of the page; `show: false` (the room view)
/// leaves it hidden. A page without the form (an older one) does nothing.
pub fn start(document: &Document, show: bool) {
    let element = |id: &str| document.get_element_by_id(id);
    let (Some(form), Some(room), Some(name), Some(hint)) = (
        element("enter").and_then(|form| form.dyn_into::<HtmlFormElement>().ok()),
        element("enter-room").and_then(|input| input.dyn_into::<HtmlInputElement>().ok()),
        element("enter-name").and_then(|input| input.dyn_into::<HtmlInputElement>().ok()),
        element("enter-hint"),
    ) else {
        return;
    };
    if !show {
        return;
    }
    form.set_hidden(false);
    // A server whose tokens name the person (an app's own sign-in): no name to ask for (the
    // field goes, its label with it). `--dev-sign-in` makes a token for the name given, so
    // it asks; so does no answer, where an empty name is fine too. Asked when the form is
    // first used, not at load: a warm reload of the page asks the server for the page alone.
    let asked = std::cell::Cell::new(false);
    let ask = {
        let name = name.clone();
        let label = document
            .query_selector("label[for=enter-name]")
            .ok()
            .flatten();
        move || {
            if asked.replace(true) {
                return;
            }
            let (name, label) = (name.clone(), label.clone());
            wasm_bindgen_futures::spawn_local(async move {
                if let Ok(AuthMode::Tokens { dev_sign_in: false }) =
                    fetch_mode(AUTH_CONFIG, AUTH_CONFIG_TIMEOUT).await
                {
                    name.set_hidden(true);
                    name.set_value("");
                    if let Some(label) =
                        label.and_then(|label| label.dyn_into::<HtmlElement>().ok())
                    {
                        label.set_hidden(true);
                    }
                }
            });
        }
    };
    EventListener::new(&form, "focusin", move |_| ask()).forget();
    let storage = document
        .default_view()
        .and_then(|window| window.local_storage().ok().flatten());
    if let Some(saved) = storage
        .as_ref()
        .and_then(|storage| storage.get_item(NAME_KEY).ok().flatten())
    {
        name.set_value(&saved);
    }
    let options = EventListenerOptions::enable_prevent_default();
    let listener = EventListener::new_with_options(&form, "submit", options, move |event| {
        event.prevent_default();
        match room_link(&room.value(), &name.value()) {
            Ok(link) => {
                hint.set_text_content(None);
                if let Some(storage) = &storage {
                    let entered = name.value();
                    // Refused (privacy settings, full): the next visit asks again, no more.
                    let _ = if entered.trim().is_empty() {
                        storage.remove_item(NAME_KEY)
                    } else {
                        storage.set_item(NAME_KEY, entered.trim())
                    };
                }
                if let Some(window) = web_sys::window() {
                    let _ = window.location().assign(&link);
                }
            }
            Err(why) => hint.set_text_content(Some(&format!("{why}."))),
        }
    });
    // For the life of the page, as the form is.
    listener.forget();
}
