//! What a `cargo xtask test` run started must be gone when it ends: every browser, driver,
//! server, proxy and Redis. Every command xtask starts carries [`MARKER`] in its environment
//! (`tools::command`), and every process those start inherits it, so a process the run left
//! behind is found by its environment even after its parent died and init adopted it (how 7
//! headless Chromiums once outlived a run). At the end of the run they are listed, killed, and
//! the run fails naming them.

use std::path::Path;
use std::time::{Duration, Instant};

/// The environment variable every process of this run carries.
pub const MARKER: &str = "CHAT_XTASK_RUN";

/// This run's value of [`MARKER`]: xtask's process id and start time, unique on the machine.
pub fn run_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("{}-{started}", std::process::id())
    })
}

/// A process of this run still alive: its id and command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: u32,
    pub command: String,
}

/// Processes (other than xtask itself) whose environment carries this run's marker.
fn find(proc_dir: &Path, id: &str) -> Vec<Leftover> {
    let wanted = format!("{MARKER}={id}");
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir(proc_dir) else {
        return Vec::new();
    };
    let mut found: Vec<Leftover> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let dir = proc_dir.join(pid.to_string());
            // Unreadable (gone, or another user's) or empty (a zombie): not running.
            let environ = std::fs::read(dir.join("environ")).ok()?;
            environ
                .split(|&byte| byte == 0)
                .any(|variable| variable == wanted.as_bytes())
                .then(|| Leftover {
                    pid,
                    command: std::fs::read(dir.join("cmdline"))
                        .map(|bytes| {
                            String::from_utf8_lossy(&bytes)
                                .replace('\0', " ")
                                .trim()
                                .to_owned()
                        })
                        .unwrap_or_default(),
                })
        })
        .collect();
    found.sort_by_key(|leftover| leftover.pid);
    found
}

/// What this run left running, after giving processes that are ending a moment (up to 3 s)
/// to finish; those still there are killed (SIGKILL) and returned.
pub fn sweep() -> Vec<Leftover> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let found = find(Path::new("/proc"), run_id());
        if found.is_empty() || Instant::now() >= deadline {
            for leftover in &found {
                // kill(1): xtask needs no libc binding for one signal.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &leftover.pid.to_string()])
                    .status();
            }
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process carrying `id`, there once this returns: it says so only after its exec, when
    /// its environment is its own (between fork and exec it still shows the parent's).
    fn marked(id: &str) -> std::process::Child {
        use std::io::BufRead;
        let mut child = std::process::Command::new("sh")
            .args(["-c", "echo started; exec sleep 30"])
            .env(MARKER, id)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().expect("piped"))
            .read_line(&mut line)
            .expect("started");
        assert_eq!(line, "started\n");
        child
    }

    #[test]
    fn a_child_of_this_run_is_found_and_one_of_another_is_not() {
        let mine = marked("test-run");
        let other = marked("test-run-other");
        let found = find(Path::new("/proc"), "test-run");
        let pids: Vec<u32> = found.iter().map(|leftover| leftover.pid).collect();
        assert_eq!(pids, [mine.id()], "{found:?}");
        assert!(!found[0].command.is_empty());
        for mut child in [mine, other] {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(find(Path::new("/proc"), "test-run").is_empty());
    }
}
