//! Integration tests: the real `server` binary on port 0, real sockets, real clients.
//!
//! One test binary (faster to link, one place for helpers); each module covers one surface.

mod browser;
mod budget;
mod bursts;
mod compression;
mod console;
mod deployment;
mod handshake;
mod hardening;
mod http_routes;
mod page;
mod redis_bounds;
mod redis_browser;
mod redis_proxy;
mod redis_rooms;
mod redis_storm;
mod rooms;
mod rooms_auth;
mod rooms_bounds;
mod rooms_browser;
mod rooms_browser_auth;
mod rooms_browser_presence;
mod rooms_browser_storage;
mod rooms_memory;
mod rooms_names;
mod rooms_pacing;
mod rooms_presence;
mod shutdown;
mod static_files;
mod support;
mod websocket;
