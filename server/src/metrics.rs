//! Counters for `/metrics` (Prometheus text format, through `prometheus-client`): sessions
//! open, opened and opened with compression per app, messages received and sent per app,
//! close codes sent, refused handshakes by status, HTTP responses by status class; and for
//! rooms ([`RoomMetrics`]) publishes, deliveries, recoveries, gaps filled and Redis errors.
//!
//! A session takes its own handles once ([`Metrics::session`]), so counting a message is one
//! atomic add: no label lookup on the hot path.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveredLabels {
    recovered: &'static str,
}

/// The rooms engine's counters (the embedded engine and Redis alike); cloning shares them.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoomMetrics {
    publishes: Counter,
    deliveries: Counter,
    recoveries: Family<RecoveredLabels, Counter>,
    gaps_filled: Counter,
    redis_errors: Counter,
    dedup_forgotten: Counter,
    notices_dropped: Counter,
    /// 1 while the Redis link is up, 0 while it is down; 1 without Redis.
    redis_up: Gauge,
}

impl RoomMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "rooms_publishes",
            "Messages published into rooms (a duplicate id is not counted again)",
            self.publishes.clone(),
        );
        registry.register(
            "rooms_deliveries",
            "Room messages queued to members on this instance",
            self.deliveries.clone(),
        );
        registry.register(
            "rooms_recoveries",
            "Joins that asked to resume (`since`), by whether every missed message followed",
            self.recoveries.clone(),
        );
        registry.register(
            "rooms_gaps_filled",
            "Ranges of messages read from Redis's stream after pub/sub lost some or resubscribed",
            self.gaps_filled.clone(),
        );
        registry.register(
            "rooms_redis_errors",
            "Redis commands or connections that failed",
            self.redis_errors.clone(),
        );
        registry.register(
            "rooms_dedup_forgotten",
            "Message ids forgotten before the end of --dedup-window (over --dedup-max-ids)",
            self.dedup_forgotten.clone(),
        );
        registry.register(
            "rooms_notices_dropped",
            "Presence and typing notices to the other instances let go: too many waiting for Redis",
            self.notices_dropped.clone(),
        );
        registry.register(
            "rooms_redis_up",
            "Whether the rooms' Redis is reachable (1) or not (0); 1 without --redis-url",
            self.redis_up.clone(),
        );
    }

    pub(crate) fn published(&self) {
        self.publishes.inc();
    }

    pub(crate) fn delivered(&self, members: usize) {
        self.deliveries.inc_by(members as u64);
    }

    pub(crate) fn recovered(&self, recovered: bool) {
        let recovered = if recovered { "true" } else { "false" };
        self.recoveries
            .get_or_create(&RecoveredLabels { recovered })
            .inc();
    }

    pub(crate) fn gap_filled(&self) {
        self.gaps_filled.inc();
    }

    pub(crate) fn redis_error(&self) {
        self.redis_errors.inc();
    }

    pub(crate) fn dedup_forgotten(&self) {
        self.dedup_forgotten.inc();
    }

    #[cfg(test)]
    pub(crate) fn dedup_forgotten_count(&self) -> u64 {
        self.dedup_forgotten.get()
    }

    pub(crate) fn notice_dropped(&self) {
        self.notices_dropped.inc();
    }

    #[cfg(test)]
    pub(crate) fn notices_dropped_count(&self) -> u64 {
        self.notices_dropped.get()
    }

    pub(crate) fn redis_up(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }
}

/// Every metric the server keeps, and the registry that renders them.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    sessions_open: Family<AppLabels, Gauge>,
    sessions_opened: Family<AppLabels, Counter>,
    sessions_compressed: Family<AppLabels, Counter>,
    messages_received: Family<AppLabels, Counter>,
    messages_sent: Family<AppLabels, Counter>,
    close_codes_sent: Family<CodeLabels, Counter>,
    handshakes_refused: Family<StatusLabels, Counter>,
    http_responses: Family<ClassLabels, Counter>,
    rooms: RoomMetrics,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("chat");
        let sessions_open = Family::default();
        let sessions_opened = Family::default();
        let sessions_compressed = Family::default();
        let messages_received = Family::default();
        let messages_sent = Family::default();
        let close_codes_sent = Family::default();
        let handshakes_refused = Family::default();
        let http_responses = Family::default();
        registry.register(
            "websocket_sessions_open",
            "WebSocket sessions open now, per app",
            sessions_open.clone(),
        );
        registry.register(
            "websocket_sessions_opened",
            "WebSocket sessions opened, per app",
            sessions_opened.clone(),
        );
        registry.register(
            "websocket_sessions_compressed",
            "WebSocket sessions opened with permessage-deflate, per app",
            sessions_compressed.clone(),
        );
        registry.register(
            "websocket_messages_received",
            "Data messages received from clients, per app",
            messages_received.clone(),
        );
        registry.register(
            "websocket_messages_sent",
            "Data messages sent to clients (greetings and replies), per app",
            messages_sent.clone(),
        );
        registry.register(
            "websocket_close_codes_sent",
            "Close frames the server sent, by close code",
            close_codes_sent.clone(),
        );
        registry.register(
            "websocket_handshakes_refused",
            "WebSocket handshakes refused, by HTTP status",
            handshakes_refused.clone(),
        );
        registry.register(
            "http_responses",
            "HTTP responses, by status class (1xx for WebSocket upgrades)",
            http_responses.clone(),
        );
        let rooms = RoomMetrics::default();
        rooms.register(&mut registry);
        Metrics {
            rooms,
            registry,
            sessions_open,
            sessions_opened,
            sessions_compressed,
            messages_received,
            messages_sent,
            close_codes_sent,
            handshakes_refused,
            http_responses,
        }
    }

    /// A session on the WebSocket route `path` opened (with permessage-deflate if
    /// `compressed`): its handles, which count it as open until dropped.
    pub(crate) fn session(&self, path: &'static str, compressed: bool) -> SessionMetrics {
        let labels = AppLabels { app: path };
        self.sessions_opened.get_or_create(&labels).inc();
        if compressed {
            self.sessions_compressed.get_or_create(&labels).inc();
        }
        let open = self.sessions_open.get_or_create(&labels).clone();
        open.inc();
        SessionMetrics {
            received: self.messages_received.get_or_create(&labels).clone(),
            sent: self.messages_sent.get_or_create(&labels).clone(),
            close_codes_sent: self.close_codes_sent.clone(),
            open,
        }
    }

    /// The rooms engine's counters, for the engine to keep.
    pub(crate) fn rooms(&self) -> RoomMetrics {
        self.rooms.clone()
    }

    pub(crate) fn handshake_refused(&self, status: http::StatusCode) {
        let labels = StatusLabels {
            status: status.as_u16(),
        };
        self.handshakes_refused.get_or_create(&labels).inc();
    }

    pub(crate) fn responded(&self, status: http::StatusCode) {
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_responses
            .get_or_create(&ClassLabels { class })
            .inc();
    }

    /// Everything, in the Prometheus / OpenMetrics text format.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a `String` cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// One session's counters.
#[derive(Debug)]
pub(crate) struct SessionMetrics {
    received: Counter,
    sent: Counter,
    open: Gauge,
    close_codes_sent: Family<CodeLabels, Counter>,
}

impl SessionMetrics {
    pub(crate) fn received(&self) {
        self.received.inc();
    }

    pub(crate) fn sent(&self, messages: usize) {
        self.sent.inc_by(messages as u64);
    }

    pub(crate) fn closed_with(&self, code: u16) {
        self.close_codes_sent
            .get_or_create(&CodeLabels { code })
            .inc();
    }
}

impl Drop for SessionMetrics {
    fn drop(&mut self) {
        self.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules::App;

    #[test]
    fn a_session_is_counted_while_open_and_its_messages_by_app() {
        let metrics = Metrics::new();
        let session = metrics.session(App::Echo.path(), false);
        session.received();
        session.sent(10);
        session.closed_with(1000);
        metrics.handshake_refused(http::StatusCode::FORBIDDEN);
        metrics.responded(http::StatusCode::SWITCHING_PROTOCOLS);
        let rooms = metrics.rooms();
        rooms.published();
        rooms.delivered(3);
        rooms.recovered(false);
        let text = metrics.render();
        for line in [
            "chat_websocket_sessions_open{app=\"/echo\"} 1",
            "chat_websocket_sessions_opened_total{app=\"/echo\"} 1",
            "chat_websocket_messages_received_total{app=\"/echo\"} 1",
            "chat_websocket_messages_sent_total{app=\"/echo\"} 10",
            "chat_websocket_close_codes_sent_total{code=\"1000\"} 1",
            "chat_websocket_handshakes_refused_total{status=\"403\"} 1",
            "chat_http_responses_total{class=\"1xx\"} 1",
            "chat_rooms_publishes_total 1",
            "chat_rooms_deliveries_total 3",
            "chat_rooms_recoveries_total{recovered=\"false\"} 1",
            "chat_rooms_gaps_filled_total 0",
            "chat_rooms_redis_errors_total 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        drop(session);
        assert!(
            metrics
                .render()
                .contains("chat_websocket_sessions_open{app=\"/echo\"} 0")
        );
    }
}
