//! Integration tests: the real `server` binary on port 0, real sockets, real clients.
//!
//! One test binary (faster to link, one place for helpers); each module covers one surface.

mod browser;
mod compression;
mod deployment;
mod hardening;
mod http_routes;
mod shutdown;
mod static_files;
mod support;
mod websocket;
