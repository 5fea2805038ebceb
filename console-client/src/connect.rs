//! Opening one WebSocket: TCP, then TLS for `wss://` (rustls, trusting the Mozilla roots and
//! any `--ca-cert`), then the handshake (tokio-tungstenite). The only module that knows how a
//! socket is made.

use std::path::Path;
use std::sync::Arc;

use client_core::settings::MAX_MESSAGE_SIZE_LIMIT;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Any byte stream a WebSocket can run on: plain TCP or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open WebSocket.
pub type Socket = WebSocketStream<Box<dyn Stream>>;

/// How to reach one URL: its host and port, and TLS when it is `wss://`.
#[derive(Clone)]
pub struct Connector {
    url: String,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Connector {
    /// A connector for `url`, trusting `ca_cert` (PEM) besides the public roots for `wss://`;
    /// a `ws://` URL has nothing to trust, so `ca_cert` is not even read (it may come from
    /// `CONSOLE_CLIENT_CA_CERT` set for every run). The error is one sentence for the user.
    pub fn new(url: &str, ca_cert: Option<&Path>) -> Result<Connector, String> {
        let uri: Uri = url
            .parse()
            .map_err(|error| format!("{url:?} is not a URL: {error}"))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(format!("{url:?} is not a ws:// or wss:// URL")),
        };
        let host = uri
            .host()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| format!("{url:?} names no host"))?;
        // `[::1]` in a URL, `::1` for a socket address and a certificate name.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tls = if secure {
            let name = ServerName::try_from(host.clone()).map_err(|error| {
                format!("{host:?} cannot be checked against a certificate: {error}")
            })?;
            Some((TlsConnector::from(Arc::new(tls_config(ca_cert)?)), name))
        } else {
            None
        };
        Ok(Connector {
            url: url.to_owned(),
            host,
            port,
            tls,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens the WebSocket. Not bounded in time: the caller bounds it.
    pub async fn open(&self) -> Result<Socket, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|error| error.to_string())?;
        // Lines are small and each goes out at once.
        tcp.set_nodelay(true).map_err(|error| error.to_string())?;
        let stream: Box<dyn Stream> = match &self.tls {
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|error| tls_failure(&error))?,
            ),
            None => Box::new(tcp),
        };
        // A reply is as long as the message it answers, which the client's limit (at most
        // 64 MiB, tungstenite's default message limit) keeps; the server may send it as one
        // frame, so frames get the same limit instead of tungstenite's 16 MiB.
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_SIZE_LIMIT))
            .max_frame_size(Some(MAX_MESSAGE_SIZE_LIMIT));
        let (socket, _response) =
            tokio_tungstenite::client_async_with_config(self.url.as_str(), stream, Some(config))
                .await
                .map_err(|error| error.to_string())?;
        Ok(socket)
    }
}

/// A failed TLS handshake in words. Anything but a certificate the client does not trust is
/// most often a plain `ws://` server answering the TLS hello with HTTP (or hanging up): that
/// is said, as the error alone (`received corrupt message`) does not say it.
fn tls_failure(error: &std::io::Error) -> String {
    let about_certificate = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|error| {
            matches!(
                error,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        });
    if about_certificate {
        format!("TLS: {error}")
    } else {
        format!("TLS: {error} (is the server speaking TLS?)")
    }
}

/// rustls with ring (the server's provider), the Mozilla roots, and the certificates in
/// `ca_cert`.
fn tls_config(ca_cert: Option<&Path>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .map_err(|error| format!("cannot read --ca-cert {}: {error}", path.display()))?;
        let mut added = 0;
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            let certificate = certificate.map_err(|error| {
                format!(
                    "--ca-cert {} is not PEM certificates: {error}",
                    path.display()
                )
            })?;
            roots.add(certificate).map_err(|error| {
                format!(
                    "--ca-cert {} holds an unusable certificate: {error}",
                    path.display()
                )
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(format!(
                "--ca-cert {} holds no PEM certificate",
                path.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_for_host_port_and_tls() {
        let plain = Connector::new("ws://127.0.0.1:9000/subscriptions", None).expect("valid");
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.tls.is_some()),
            ("127.0.0.1", 9000, false)
        );
        let secure = Connector::new("wss://chat.example/api/echo", None).expect("valid");
        assert_eq!(
            (secure.host.as_str(), secure.port, secure.tls.is_some()),
            ("chat.example", 443, true)
        );
        let six = Connector::new("ws://[::1]/echo", None).expect("valid");
        assert_eq!((six.host.as_str(), six.port), ("::1", 80));
        for bad in ["http://a/subscriptions", "ws:///x", "not a url"] {
            assert!(Connector::new(bad, None).is_err(), "{bad}");
        }
        // Plain ws:// has nothing to trust: a CA file (from the environment) is not read.
        let plain = Connector::new("ws://a/echo", Some(Path::new("/nowhere.pem"))).expect("plain");
        assert!(plain.tls.is_none());
        let error =
            Connector::new("wss://a/echo", Some(Path::new("/nowhere.pem"))).expect_err("missing");
        assert!(
            error.contains("cannot read --ca-cert /nowhere.pem"),
            "{error}"
        );
    }
}
