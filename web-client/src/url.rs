//! Where the client connects: `/subscriptions` on the page's own host, `wss:` under `https:`,
//! unless the page's `?ws=` query parameter names another WebSocket URL (for development).

/// The path of the WebSocket app the page talks to.
pub const SUBSCRIPTIONS_PATH: &str = "/subscriptions";

/// The WebSocket URL for a page at `protocol//host` (as `location.protocol` and
/// `location.host` give them), or the override when one is given.
pub fn subscriptions_url(
    protocol: &str,
    host: &str,
    override_url: Option<&str>,
) -> Result<String, String> {
    if let Some(url) = override_url {
        return if url.starts_with("ws://") || url.starts_with("wss://") {
            Ok(url.to_owned())
        } else {
            Err(format!("?ws= must be a ws:// or wss:// URL, not {url:?}"))
        };
    }
    let scheme = match protocol {
        "https:" => "wss",
        "http:" => "ws",
        other => return Err(format!("cannot derive a WebSocket URL from a {other} page")),
    };
    if host.is_empty() {
        return Err("the page has no host".to_owned());
    }
    Ok(format!("{scheme}://{host}{SUBSCRIPTIONS_PATH}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_from_the_page_location() {
        assert_eq!(
            subscriptions_url("http:", "127.0.0.1:8080", None).as_deref(),
            Ok("ws://127.0.0.1:8080/subscriptions")
        );
        assert_eq!(
            subscriptions_url("https:", "chat.example", None).as_deref(),
            Ok("wss://chat.example/subscriptions")
        );
        assert!(subscriptions_url("file:", "", None).is_err());
    }

    #[test]
    fn honours_a_websocket_override_only() {
        assert_eq!(
            subscriptions_url("http:", "a:1", Some("ws://b:2/echo")).as_deref(),
            Ok("ws://b:2/echo")
        );
        assert!(subscriptions_url("http:", "a:1", Some("javascript:alert(1)")).is_err());
    }
}
