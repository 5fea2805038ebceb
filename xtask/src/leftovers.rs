//! What a `cargo xtask test` run started must be gone when it ends: every browser, driver,
//! server, proxy and Redis. [`sweep`] finds what is left two ways, lists it, and kills it; the
//! run then fails naming it (`Leftovers`).
//!
//! - **By descent.** [`adopt_orphans`] makes xtask the child subreaper of everything it
//!   starts: a process whose parent dies is adopted by xtask instead of init, so whatever the
//!   run started stays below xtask in the process tree, however it was orphaned (how 7 headless
//!   Chromiums once outlived a run, their test process gone). This finds also what rewrote its
//!   environment: redis-server, nginx and Chromium's renderers write their process title over
//!   it, so `/proc/PID/environ` no longer says what they inherited.
//! - **By mark.** Every command xtask starts carries [`MARKER`] in its environment
//!   (`tools::command`), and every process those start inherits it: this finds what left the
//!   tree (a process adopted by another subreaper), and works where there is no subreaper.
//!
//! Files too: every command of a `test` run gets a `TMPDIR` of the run's own ([`use_run_tmp`]),
//! which [`remove_run_tmp`] removes once the processes are gone,
//! saying how much was left in it (what a killed test, or a browser that did not quit, leaves
//! in `/tmp` otherwise stays there for good).
//!
//! An adopted process that exits stays a zombie of xtask until xtask exits (xtask cannot tell
//! it from the children it waits for itself, so it reaps none): a zombie is not running and
//! counts as gone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// The environment variable every process of this run carries.
pub const MARKER: &str = "CHAT_XTASK_RUN";

/// How long processes that are ending get before they count as left.
const GRACE: Duration = Duration::from_secs(3);
/// Rounds of kill-and-look-again: a dying parent may still start a child.
const KILL_ROUNDS: usize = 20;

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

static RUN_TMP: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Gives every command started from now on (`tools::command`) `TMPDIR` = a directory of this
/// run's own, made here: `xtask-PID` in the system's temporary directory. A short path, as
/// unix sockets need (108 bytes): Chromium's singleton socket lies three directories down.
pub fn use_run_tmp() -> std::io::Result<()> {
    let dir = std::env::temp_dir().join(format!("xtask-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _ = RUN_TMP.set(dir);
    Ok(())
}

/// This run's `TMPDIR`, once [`use_run_tmp`] made it.
pub fn run_tmp() -> Option<&'static Path> {
    RUN_TMP.get().map(|dir| dir.as_path())
}

/// Removes this run's `TMPDIR` (call it after [`sweep`]); returns what was left in it, as
/// entries directly in it and bytes in all, if anything was.
pub fn remove_run_tmp() -> std::io::Result<Option<(usize, u64)>> {
    let Some(dir) = run_tmp() else {
        return Ok(None);
    };
    let entries = std::fs::read_dir(dir)?.count();
    let bytes = size_of(dir);
    std::fs::remove_dir_all(dir)?;
    Ok((entries > 0).then_some((entries, bytes)))
}

/// Bytes of the files under `path` (what cannot be read counts as nothing).
fn size_of(path: &Path) -> u64 {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !metadata.is_dir() {
        return metadata.len();
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| size_of(&entry.path()))
        .sum()
}

/// Makes this process the child subreaper of its descendants (Linux): orphans are adopted
/// here instead of by init, and [`sweep`] finds them below this process.
pub fn adopt_orphans() -> std::io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(())
}

/// A process of this run still alive: its id and command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: u32,
    pub command: String,
}

/// What a run left running (all killed by now), as the error that fails the run.
#[derive(Debug)]
pub struct Leftovers(pub Vec<Leftover>);

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the run left {} processes running (now killed):",
            self.0.len()
        )?;
        for leftover in &self.0 {
            write!(f, "\n  {} {}", leftover.pid, leftover.command)?;
        }
        Ok(())
    }
}

impl std::error::Error for Leftovers {}

/// One live process from `/proc/PID/stat`: zombies (exited, not yet reaped) are left out.
#[derive(Debug, Clone, Copy)]
struct Process {
    pid: u32,
    parent: u32,
}

fn processes(proc_dir: &Path) -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir(proc_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            // Gone meanwhile: not running.
            let stat = std::fs::read_to_string(proc_dir.join(pid.to_string()).join("stat")).ok()?;
            // `pid (comm) state ppid ...`: the name may hold spaces and parentheses.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let parent = fields.next()?.parse().ok()?;
            (state != "Z" && state != "X").then_some(Process { pid, parent })
        })
        .collect()
}

/// Live processes below `root` in the process tree (not `root` itself).
fn descendants(proc_dir: &Path, root: u32) -> BTreeSet<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for process in processes(proc_dir) {
        children
            .entry(process.parent)
            .or_default()
            .push(process.pid);
    }
    let mut found = BTreeSet::new();
    let mut to_visit = vec![root];
    while let Some(pid) = to_visit.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if found.insert(child) {
                to_visit.push(child);
            }
        }
    }
    found
}

/// Live processes (other than this one) whose environment carries [`MARKER`] set to `id`.
fn marked(proc_dir: &Path, id: &str) -> BTreeSet<u32> {
    let wanted = format!("{MARKER}={id}");
    let me = std::process::id();
    processes(proc_dir)
        .into_iter()
        .map(|process| process.pid)
        .filter(|&pid| pid != me)
        .filter(|pid| {
            // Unreadable (gone, or another user's): not one of ours.
            std::fs::read(proc_dir.join(pid.to_string()).join("environ")).is_ok_and(|environ| {
                environ
                    .split(|&byte| byte == 0)
                    .any(|variable| variable == wanted.as_bytes())
            })
        })
        .collect()
}

/// What is left of this run: below this process, or carrying this run's mark.
fn find(proc_dir: &Path) -> Vec<Leftover> {
    let mut pids = descendants(proc_dir, std::process::id());
    pids.extend(marked(proc_dir, run_id()));
    pids.into_iter()
        .map(|pid| Leftover {
            pid,
            command: command_line(proc_dir, pid),
        })
        .collect()
}

fn command_line(proc_dir: &Path, pid: u32) -> String {
    std::fs::read(proc_dir.join(pid.to_string()).join("cmdline"))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// What this run left running, after giving processes that are ending a moment ([`GRACE`]);
/// those still there are killed (SIGKILL), and looked for again until none is left, and
/// returned. Call it once every command of the run has ended.
pub fn sweep() -> Vec<Leftover> {
    let proc_dir = Path::new("/proc");
    let deadline = Instant::now() + GRACE;
    while !find(proc_dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut killed: Vec<Leftover> = Vec::new();
    for _ in 0..KILL_ROUNDS {
        let found = find(proc_dir);
        if found.is_empty() {
            break;
        }
        for leftover in found {
            if let Some(pid) = rustix::process::Pid::from_raw(leftover.pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            if !killed.iter().any(|known| known.pid == leftover.pid) {
                killed.push(leftover);
            }
        }
        // SIGKILL takes effect at once but not synchronously: let the processes end.
        std::thread::sleep(Duration::from_millis(50));
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// A process carrying `id`, there once this returns: it says so only after its exec, when
    /// its environment is its own (between fork and exec it still shows the parent's).
    fn marked_child(id: &str) -> std::process::Child {
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
        let mine = marked_child("test-run");
        let other = marked_child("test-run-other");
        let found = marked(Path::new("/proc"), "test-run");
        assert_eq!(found.into_iter().collect::<Vec<_>>(), [mine.id()]);
        for mut child in [mine, other] {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(marked(Path::new("/proc"), "test-run").is_empty());
    }

    /// An orphan with no mark in its environment (as redis-server's is once it set its
    /// process title) is found below this process once this process adopts orphans, and a
    /// process elsewhere in the tree is not.
    #[test]
    fn an_orphan_without_the_mark_is_found_below_its_adopter() {
        adopt_orphans().expect("PR_SET_CHILD_SUBREAPER");
        // The shell starts `sleep` in the background, says its id and exits: `sleep` is
        // orphaned, and adopted here.
        let output = std::process::Command::new("sh")
            .args(["-c", "sleep 30 </dev/null >/dev/null 2>&1 & echo $!"])
            .env_remove(MARKER)
            .output()
            .expect("sh");
        let orphan: u32 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("the orphan's pid");
        let proc_dir = Path::new("/proc");
        let found = descendants(proc_dir, std::process::id());
        let pid = rustix::process::Pid::from_raw(orphan as i32).expect("a pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        // Adopted, so this process reaps it.
        let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        assert!(found.contains(&orphan), "{orphan} not in {found:?}");
        assert!(!marked(proc_dir, run_id()).contains(&orphan));
        assert!(!descendants(proc_dir, std::process::id()).contains(&orphan));
        // Init's children are not below this process.
        assert!(!descendants(proc_dir, std::process::id()).contains(&1));
    }

    #[test]
    fn the_report_names_every_process_left() {
        let report = Leftovers(vec![
            Leftover {
                pid: 7,
                command: "/usr/lib/chromium/chromium --headless".into(),
            },
            Leftover {
                pid: 9,
                command: "redis-server *:0".into(),
            },
        ])
        .to_string();
        assert_eq!(
            report,
            "the run left 2 processes running (now killed):\n  7 /usr/lib/chromium/chromium \
             --headless\n  9 redis-server *:0"
        );
    }
}
