//! A server process started by xtask (the project's server or a benchmark reference): spawned,
//! its `Listening on http://ADDR/` line read to learn the port, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
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
