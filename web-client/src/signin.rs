//! The page's two sign-in requests, on its own origin: `GET /auth/config` (does the server want
//! tokens?) and `POST` to the token URL (a token, from the app's backend or the server's
//! `--dev-sign-in`). What the answers mean is `client_core::signin`'s; this module only asks,
//! each request bounded by the reply timeout and aborted past it. The token is never logged,
//! never put in a URL and never kept beyond the page's memory.

use std::time::Duration;

use futures::future::{self, Either};
use gloo_timers::future::TimeoutFuture;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, RequestCache, RequestCredentials, RequestInit, RequestRedirect, Response,
    ResponseType, UrlSearchParams,
};

use client_core::signin::{AuthMode, TokenAnswer, auth_mode, token_answer};
use client_core::status::seconds;

/// What the server says about tokens; `Err` (no answer, a 5xx) is worth asking again.
pub async fn fetch_mode(config_url: &str, timeout: Duration) -> Result<AuthMode, String> {
    let (status, body) = request(config_url, None, timeout).await?;
    auth_mode(status, &body)
}

/// A token from `token_url`, for the display name `name` when the page has one (the form
/// field `name`, which `--dev-sign-in` reads; an app's backend knows who is signed in).
pub async fn fetch_token(token_url: &str, name: Option<&str>, timeout: Duration) -> TokenAnswer {
    let form = match UrlSearchParams::new() {
        Ok(form) => form,
        Err(_) => return TokenAnswer::Refused("this browser cannot build a form".to_owned()),
    };
    if let Some(name) = name {
        form.append("name", name);
    }
    match request(token_url, Some(&form), timeout).await {
        Ok((status, body)) => token_answer(status, &body),
        Err(why) => TokenAnswer::Unavailable(why),
    }
}

/// `GET url`, or `POST` of `form`; the status and body, or why there is none.
async fn request(
    url: &str,
    form: Option<&UrlSearchParams>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let window = web_sys::window().ok_or_else(|| "no window".to_owned())?;
    let abort = AbortController::new().map_err(|_| "this browser cannot abort a request")?;
    let init = RequestInit::new();
    init.set_method(if form.is_some() { "POST" } else { "GET" });
    if let Some(form) = form {
        // Sent as application/x-www-form-urlencoded.
        init.set_body_opt_url_search_params(Some(form));
    }
    // The page's own origin, with its cookies: the app's session says who signs in.
    init.set_credentials(RequestCredentials::SameOrigin);
    init.set_cache(RequestCache::NoStore);
    // A redirect (a backend sending a signed-out user to its login page, often on another
    // origin) is an answer, not a failure to retry: it comes back as status 0.
    init.set_redirect(RequestRedirect::Manual);
    init.set_signal(Some(&abort.signal()));
    let asked = async {
        let response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
            .await
            .map_err(|_| format!("{url} could not be reached"))?;
        let response: Response = response
            .dyn_into()
            .map_err(|_| "the browser's fetch gave no response".to_owned())?;
        if response.type_() == ResponseType::Opaqueredirect {
            return Ok((0, String::new()));
        }
        let status = response.status();
        let text = response
            .text()
            .map_err(|_| format!("{url}'s answer could not be read"))?;
        let body = JsFuture::from(text)
            .await
            .map_err(|_| format!("{url}'s answer broke off"))?;
        Ok((status, body.as_string().unwrap_or_default()))
    };
    futures::pin_mut!(asked);
    let timer = TimeoutFuture::new(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
    match future::select(asked, timer).await {
        Either::Left((answer, _)) => answer,
        Either::Right(((), _)) => {
            abort.abort();
            Err(format!("{url} did not answer within {}", seconds(timeout)))
        }
    }
}
