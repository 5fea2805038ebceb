//! The WebSocket handshake as RFC 6455 section 4.2.1 asks: malformed keys, repeated headers,
//! no Host, HTTP/1.0, HEAD; and flags out of range refused at start.
