//! A headless Chromium with a fresh profile, driven through chromedriver on a port the
//! driver picks itself: [`Browser::start`], and the browser console ([`Browser::console`]),
//! which fantoccini does not offer.
//!
//! `$CHROMEDRIVER` and `$CHROMIUM` name the binaries (default: `chromedriver` on `PATH` and
//! the browser it finds).
//!
//! No browser outlives its `Browser`: dropped, it ends its WebDriver session (Chromium quits),
//! and chromedriver with every Chromium process sits in a [`ProcessGroup`] that is killed whole
//! once the `Browser` is gone, or once the process that held it is, however it ended (a
//! panic, a timeout, a SIGKILL).
//!
//! Nor do its files: chromedriver and Chromium run with `TMPDIR` set to a directory of the
//! `Browser`'s own, where chromedriver makes the profile (about 20 MB once a page has run) and
//! Chromium its singleton socket, removed once the group is dead. Left to `/tmp`, every test
//! left a directory there, and a browser that did not quit in time its whole profile: 607
//! directories and 527 MB after a day of test runs.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest wait for chromedriver to start.
const DRIVER_START: Duration = Duration::from_secs(20);
/// Chromedrivers started before giving up.
const DRIVER_ATTEMPTS: u32 = 3;

/// Why the browser did not start.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A chromedriver with one headless Chromium session; both end when this is dropped, the
/// session first (chromedriver then quits Chromium), then the process group of both, so no
/// browser outlives a test, whether it ended well or panicked.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    /// Where chromedriver listens, and the session's id: what the drop needs to end it.
    port: u16,
    session: Option<String>,
    /// Dropped after `_driver`: whatever the session's end left (a Chromium that did not quit
    /// in time, a driver that could not be asked) dies with the group.
    _driver: Child,
    group: ProcessGroup,
    /// chromedriver's and Chromium's `TMPDIR`: removed after `group` is killed.
    _tmp: BrowserFiles,
}

/// The browser's temporary directory, removed when dropped. A process of the group killed
/// just before may have had a file write in flight: the removal is tried again a few times
/// (`TempDir` alone gives up silently at the first error).
#[derive(Debug)]
struct BrowserFiles(Option<tempfile::TempDir>);

impl Drop for BrowserFiles {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else { return };
        let path = dir.path().to_owned();
        if dir.close().is_ok() {
            return;
        }
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(25));
            if std::fs::remove_dir_all(&path).is_ok() || !path.exists() {
                return;
            }
        }
        eprintln!("headless: could not remove {}", path.display());
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a new, empty profile, keeping its
    /// console log.
    pub async fn start() -> Result<Browser, Error> {
        Browser::start_with_args(&[]).await
    }

    /// [`Browser::start`] with more Chromium flags (`--ignore-certificate-errors` for a
    /// server with a certificate made by the test).
    pub async fn start_with_args(extra_args: &[&str]) -> Result<Browser, Error> {
        let driver_path = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        // Rarely (twice in many hundred starts on these machines) chromedriver exits before it
        // says it listens; a fresh one then starts. A few tries, each bounded, and the last
        // one's words in the error.
        // Made before the group, so dropped after it on an early return too.
        let tmp = tempfile::Builder::new()
            .prefix("browser.")
            .tempdir()
            .map_err(|error| format!("cannot make the browser's temporary directory: {error}"))?;
        let group = ProcessGroup::start()?;
        let mut attempt = 1;
        let (driver, port) = loop {
            match start_driver(&driver_path, &group, tmp.path()).await {
                Ok(started) => break started,
                Err(error) if attempt < DRIVER_ATTEMPTS => {
                    eprintln!("headless: chromedriver attempt {attempt}: {error}; trying again");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };

        let mut chrome_options = json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic", "--window-size=1000,700"
            ]
        });
        if let Some(args) = chrome_options["args"].as_array_mut() {
            args.extend(extra_args.iter().map(|arg| json!(arg)));
        }
        if let Ok(binary) = std::env::var("CHROMIUM") {
            chrome_options["binary"] = json!(binary);
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), chrome_options);
        // Keep the console (CSP violations, failed loads, unused preloads are logged there).
        capabilities.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await?;
        let session = client.session_id().await?;
        Ok(Browser {
            client,
            port,
            session,
            _driver: driver,
            group,
            _tmp: BrowserFiles(Some(tmp)),
        })
    }

    /// The process group of chromedriver and every Chromium process it started (Chromium's
    /// crash handlers leave it, and quit with the browser).
    pub fn process_group(&self) -> u32 {
        self.group.id
    }

    /// chromedriver's and Chromium's `TMPDIR`, removed when the `Browser` is dropped.
    pub fn temporary_directory(&self) -> &std::path::Path {
        self._tmp
            .0
            .as_ref()
            .map_or(std::path::Path::new(""), |dir| dir.path())
    }

    /// Ends the session (Chromium quits), then the driver.
    pub async fn close(mut self) -> Result<(), Error> {
        self.session = None;
        self.client.clone().close().await?;
        Ok(())
    }

    /// The browser console since the last call, as `(level, message)`: chromedriver's log
    /// endpoint sees what happened during page load, before any script of ours ran.
    pub async fn console(&self) -> Result<Vec<(String, String)>, Error> {
        let entries = self
            .client
            .issue_cmd(ChromedriverPost {
                path: "se/log",
                body: r#"{"type":"browser"}"#.to_owned(),
            })
            .await?;
        let entries: Vec<serde_json::Value> = serde_json::from_value(entries)?;
        Ok(entries
            .into_iter()
            .map(|entry| {
                let field = |name: &str| entry[name].as_str().unwrap_or_default().to_owned();
                (field("level"), field("message"))
            })
            .collect())
    }
}

impl Browser {
    /// Runs one Chrome DevTools Protocol command on the page (`Emulation.setEmulatedMedia`,
    /// `Accessibility.getFullAXTree`, ...) through chromedriver's `goog/cdp/execute`, and
    /// returns its result. What a command changes lasts for the session, across navigations.
    pub async fn devtools(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        let command = ChromedriverPost {
            path: "goog/cdp/execute",
            body: json!({ "cmd": method, "params": params }).to_string(),
        };
        Ok(self.client.issue_cmd(command).await?)
    }
}

/// A chromedriver extension fantoccini has no call for: `POST /session/{id}/{path}` with a JSON
/// body (`se/log` for the browser console, `goog/cdp/execute` for a DevTools command).
#[derive(Debug)]
struct ChromedriverPost {
    path: &'static str,
    body: String,
}

impl fantoccini::wd::WebDriverCompatibleCommand for ChromedriverPost {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.clone()))
    }
}

impl Drop for Browser {
    /// Ends the session before the driver goes (killing chromedriver alone leaves Chromium
    /// running, adopted by init). A drop cannot wait on the runtime, so this is a plain
    /// blocking `DELETE /session/{id}` to chromedriver, another process, bounded in time.
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(SESSION_END));
        let _ = stream.set_write_timeout(Some(SESSION_END));
        let request = format!(
            "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            // The answer comes once Chromium has quit.
            let _ = stream.read_to_end(&mut Vec::new());
        }
    }
}

/// Longest wait for chromedriver to end a session when a `Browser` is dropped.
const SESSION_END: Duration = Duration::from_secs(10);

/// A process group of its own for chromedriver and the Chromium it starts (Chromium's
/// processes stay in their parent's group), killed whole (SIGKILL) when this is dropped or
/// when the process holding it ends, however it ends: killing chromedriver alone leaves
/// Chromium running, adopted by init, and a test process killed by a timeout or a signal runs
/// no `Drop`.
///
/// The group's leader is a shell that waits for the end of its standard input and then kills
/// its group. Only this process holds the other end of that pipe (Rust opens pipes
/// close-on-exec), and the kernel closes it when this process exits, so the group goes even
/// when no destructor runs. A group of its own also means the terminal's Ctrl-C no longer
/// reaches Chromium directly: it ends the test process, which closes the pipe.
#[derive(Debug)]
struct ProcessGroup {
    id: u32,
    /// The leader, never waited for while the group is in use: not reaped, its process id
    /// (the group's) cannot be taken by another process, so the kill in `drop` reaches this
    /// group and no other, even if everything in it has died.
    _leader: Child,
    /// The leader's standard input: dropping it is the signal.
    _lifeline: tokio::process::ChildStdin,
}

/// Kills the group now, so that nothing of it writes into the browser's temporary directory
/// while it is removed (the leader's own kill, once it reads the end of its input, comes later).
impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(id) = i32::try_from(self.id)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            // Already gone when the session's end let everything exit: nothing to do.
            let _ = rustix::process::kill_process_group(id, rustix::process::Signal::KILL);
        }
    }
}

impl ProcessGroup {
    fn start() -> Result<ProcessGroup, Error> {
        let mut leader = Command::new("sh")
            .args(["-c", "read -r line; kill -KILL 0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|error| format!("cannot start sh: {error}"))?;
        let id = leader.id().ok_or("the group's leader exited at once")?;
        let lifeline = leader.stdin.take().ok_or("no stdin")?;
        Ok(ProcessGroup {
            id,
            // Reaped in the background once dropped, after the group's kill.
            _leader: leader,
            _lifeline: lifeline,
        })
    }
}

/// Starts chromedriver on a port it picks, in `group`, with `tmp` as its and Chromium's
/// `TMPDIR`: the process and the port, once it says it listens.
async fn start_driver(
    driver_path: &str,
    group: &ProcessGroup,
    tmp: &std::path::Path,
) -> Result<(Child, u16), Error> {
    let group_id = i32::try_from(group.id).map_err(|_| "process group id out of range")?;
    let mut driver = Command::new(driver_path)
        .arg("--port=0")
        .env("TMPDIR", tmp)
        .process_group(group_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("cannot start {driver_path}: {error}"))?;
    let mut lines = BufReader::new(driver.stdout.take().ok_or("no stdout")?).lines();
    let mut stderr = driver.stderr.take().ok_or("no stderr")?;
    let mut said = Vec::new();
    let port = tokio::time::timeout(DRIVER_START, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                return Ok(rest.trim_end_matches('.').parse::<u16>()?);
            }
            said.push(line);
        }
        let mut errors = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut errors).await;
        Err::<u16, Error>(
            format!(
                "chromedriver exited without starting: {} {}",
                said.join(" / "),
                errors.trim()
            )
            .into(),
        )
    })
    .await
    .map_err(|_| "chromedriver did not start in time")??;
    // Keep reading so chromedriver never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
    });
    Ok((driver, port))
}
