//! What the reference servers share: binding, announcing the address in the same
//! `Listening on http://ADDR/` line as the project's server (so xtask starts them alike), and
//! the accept loop; and what the load generators share: a process's CPU time.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// Binds `127.0.0.1:0` (or the address given as the first argument), prints the URL line, and
/// hands every accepted connection (with `TCP_NODELAY`, as the project's server sets it) to
/// `serve` on a task of its own. Runs until accepting fails.
pub async fn serve_forever<F, Fut>(serve: F) -> std::io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = TcpListener::bind(addr).await?;
    println!("Listening on http://{}/", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream));
    }
}

/// User + system CPU seconds from a `/proc/PID/stat` (fields 14 and 15, at USER_HZ = 100).
pub fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
