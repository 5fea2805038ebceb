//! A server process started by xtask (the project's server or a benchmark reference): spawned,
//! its `Listening on http://ADDR/` line read to learn the port, stopped with SIGTERM. And the
//! redis-server that instances of it share, on a unix socket in a directory of its own.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::Result;

/// A running server; ended (SIGTERM, then SIGKILL after 5 s) when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
}

impl ServerProcess {
    /// Spawns `command` and waits for its first stdout line, which must name the address.
    pub fn spawn(command: &mut Command, name: &str) -> Result<ServerProcess> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        // `Metrics on …` may come first; `Listening on http(s)://ADDR/` comes last.
        let mut line = String::new();
        let addr = loop {
            line.clear();
            stdout.read_line(&mut line)?;
            if line.starts_with("Metrics on ") {
                continue;
            }
            break line
                .trim()
                .strip_prefix("Listening on http://")
                .or_else(|| line.trim().strip_prefix("Listening on https://"))
                .map(|rest| rest.trim_end_matches('/').to_owned());
        };
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name} did not start: {line:?}").into());
        };
        // Keep draining stdout so the server never blocks on (or dies of) a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Ok(ServerProcess { child, addr })
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `GET /readyz` answers 200: an instance on Redis prints its address before
    /// its Redis link is up (it starts even while Redis is unreachable), and `/readyz` is what
    /// says it takes work. Asked every 10 ms for at most `within`.
    pub fn wait_ready(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match readyz(&self.addr) {
                Ok(status) if status.starts_with("HTTP/1.1 200") => return Ok(()),
                Ok(status) => last = status,
                Err(error) => last = error.to_string(),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("not ready within {within:?}: {}", last.trim()).into())
    }

    /// SIGTERM, then wait: the server must exit successfully.
    pub fn stop(mut self) -> Result<()> {
        match self.terminate() {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("the server exited with {status}").into()),
            None => Err("the server did not stop within 5 s of SIGTERM".into()),
        }
    }

    /// Sends SIGTERM and waits up to 5 s; kills the process if it is still there.
    fn terminate(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The status line and body of `GET /readyz`.
fn readyz(addr: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default();
    Ok(format!("{status} {body}"))
}

/// A redis-server without persistence on a unix socket in a fresh directory under the
/// system's temporary one; killed, and the directory removed, when dropped.
#[derive(Debug)]
pub struct RedisProcess {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl RedisProcess {
    /// Starts `command` (redis-server, perhaps behind taskset) and waits for its
    /// `Ready to accept connections` line.
    pub fn spawn(mut command: Command) -> Result<RedisProcess> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xtask-redis-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        // A directory left by an earlier xtask of the same process id holds nothing to keep.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("redis.sock");
        let mut child = command
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
            ])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let redis = RedisProcess { child, dir, socket };
        // Read on a thread that keeps draining afterwards (redis-server must never block on a
        // full pipe), so that waiting for the line can be bounded.
        let (said_tx, said_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut said = Vec::new();
            let mut lines = stdout.lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                // "Ready to accept connections" (TCP) or "The server is now ready to accept
                // connections at PATH" (a unix socket alone), depending on the version.
                if line
                    .to_ascii_lowercase()
                    .contains("ready to accept connections")
                {
                    let _ = said_tx.send(Ok(()));
                    lines.for_each(drop);
                    return;
                }
                said.push(line.trim().to_owned());
            }
            let _ = said_tx.send(Err(said.join(" / ")));
        });
        match said_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(redis),
            // Dropping it stops what is left of it and removes the directory.
            Ok(Err(said)) => Err(format!("redis-server did not start: {said}").into()),
            Err(_) => Err("redis-server said nothing of being ready within 10 s".into()),
        }
    }

    /// The URL an instance is given (`--redis-url`).
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its process id (`taskset` execs it, so this is redis-server's own).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        // Nothing to save (`--save ""`, no append-only file): a kill is a clean end.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
