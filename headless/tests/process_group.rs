//! No Chromium outlives its `Browser`, even when nothing could end its session: the driver
//! killed first (the way 7 headless Chromiums once outlived a `cargo xtask test`, adopted by
//! init), or the process holding the `Browser` killed outright, so that no destructor runs.
//! The processes of a browser are found by its process group in `/proc`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use headless::Browser;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Longest wait for a browser to start, or for its processes to be gone.
const PATIENCE: Duration = Duration::from_secs(30);

/// Set for the copy of this test binary that only holds a browser until it is killed.
const OWNER_ENV: &str = "HEADLESS_TEST_BROWSER_OWNER";
/// What that copy prints once its browser runs, before the group's id.
const GROUP_LINE: &str = "browser process group ";

/// A live (not zombie) process: its id and command line.
#[derive(Debug)]
struct Member {
    pid: u32,
    command: String,
}

/// The live processes of process group `group`, from `/proc/PID/stat`.
fn members(group: u32) -> Vec<Member> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid pgrp ...`: the name may hold spaces and parentheses.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let pgrp = fields.nth(1)?.parse::<u32>().ok()?;
            (pgrp == group && state != "Z" && state != "X").then(|| Member {
                pid,
                command: std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Whether Chromium itself (not only chromedriver) runs in `group`: chromedriver gives it a
/// profile of its own.
fn runs_chromium(group: u32) -> bool {
    members(group)
        .iter()
        .any(|member| member.command.contains("--user-data-dir="))
}

/// Waits (bounded) until `group` has no live process; otherwise kills what is left, so this
/// test leaves nothing either, and fails naming it.
async fn assert_group_ends(group: u32, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = members(group);
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
            panic!("{what}: these outlived it by {PATIENCE:?}: {left:#?}");
        }
        // Processes dying: no event to wait on for processes that are not our children.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
#[ignore = "needs Chromium and chromedriver: run `cargo xtask test`"]
async fn a_browser_whose_driver_died_first_still_quits_when_dropped() {
    let browser = Browser::start().await.expect("the browser starts");
    let group = browser.process_group();
    assert!(runs_chromium(group), "{:#?}", members(group));
    let driver = members(group)
        .into_iter()
        .find(|member| member.command.split(' ').any(|arg| arg == "--port=0"))
        .unwrap_or_else(|| panic!("chromedriver in {:#?}", members(group)));
    // The driver gone, the drop cannot end the session: only the group can end Chromium.
    let status = std::process::Command::new("kill")
        .args(["-KILL", &driver.pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    drop(browser);
    assert_group_ends(group, "a browser dropped after its driver died").await;
}

#[tokio::test]
#[ignore = "needs Chromium and chromedriver: run `cargo xtask test`"]
async fn a_browser_whose_owner_is_killed_quits() {
    let executable = std::env::current_exe().expect("this test binary");
    let mut owner = tokio::process::Command::new(executable)
        .args(["owner_of_a_browser", "--exact", "--ignored", "--nocapture"])
        .env(OWNER_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the owner starts");
    let mut lines = BufReader::new(owner.stdout.take().expect("piped stdout")).lines();
    let group = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.expect("stdout is readable") {
            if let Some(group) = line.strip_prefix(GROUP_LINE) {
                return group.parse::<u32>().expect("a process group id");
            }
        }
        panic!("the owner ended without a browser");
    })
    .await
    .expect("the owner's browser starts promptly");
    assert!(runs_chromium(group), "{:#?}", members(group));

    // SIGKILL: no destructor, no session ended; what a killed test process leaves.
    owner.start_kill().expect("kill the owner");
    owner.wait().await.expect("wait for the owner");
    assert_group_ends(group, "a browser whose owner was killed").await;
}

#[tokio::test]
#[ignore = "needs Chromium and chromedriver: run `cargo xtask test`"]
async fn a_dropped_browser_leaves_no_files() {
    let browser = Browser::start().await.expect("the browser starts");
    browser
        .client
        .goto("data:text/html,<p>files</p>")
        .await
        .expect("a page loads");
    let files = browser.temporary_directory().to_owned();
    let held = std::fs::read_dir(&files)
        .map(|entries| entries.count())
        .unwrap_or(0);
    // chromedriver's profile and Chromium's singleton socket are made in it.
    assert!(held > 0, "nothing in {}", files.display());
    let group = browser.process_group();
    drop(browser);
    assert_group_ends(group, "a dropped browser").await;
    assert!(!files.exists(), "{} outlived its browser", files.display());
}

/// Not a test of its own: the process [`a_browser_whose_owner_is_killed_quits`] starts (with
/// [`OWNER_ENV`] set) holds a browser here until it is killed. Run without it, it does nothing.
#[tokio::test]
#[ignore = "needs Chromium and chromedriver: run `cargo xtask test`"]
async fn owner_of_a_browser() {
    if std::env::var_os(OWNER_ENV).is_none() {
        return;
    }
    let browser = Browser::start().await.expect("the browser starts");
    println!("{GROUP_LINE}{}", browser.process_group());
    std::future::pending::<()>().await;
}
