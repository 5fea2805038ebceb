//! Pieces the benchmark binaries share: how a reference server announces its address, in the
//! same `Listening on http://ADDR/` line as the project's server, so xtask starts them alike.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Binds `127.0.0.1:0` (or the address given as the first argument) and prints the URL line.
pub async fn bind_and_announce() -> std::io::Result<TcpListener> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = TcpListener::bind(addr).await?;
    println!("Listening on http://{}/", listener.local_addr()?);
    Ok(listener)
}
