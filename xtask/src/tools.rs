//! Installs, on first use and with progress shown, what a machine with only Rust lacks: the
//! wasm target, wasm-pack, the wasm-bindgen CLI (at the exact version in Cargo.lock), wasm-opt
//! (npm's binaryen), Chromium and chromedriver, nginx and redis-server. Each check is cheap
//! when the tool is present.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{Result, run, workspace_root};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// npm's binaryen: Debian's `binaryen` (108) emits modules Chromium refuses to load.
const BINARYEN_VERSION: &str = "132.0.0";

/// `PATH` for every command xtask starts: `cargo install`'s bin folder and the project's npm
/// tools first, so tools installed a moment ago are found even if the shell's `PATH` lacks them.
fn tool_path() -> &'static OsString {
    static PATH: OnceLock<OsString> = OnceLock::new();
    PATH.get_or_init(|| {
        let mut paths = vec![cargo_bin_dir(), tools_dir().join("node_modules/.bin")];
        if let Some(current) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&current));
        }
        std::env::join_paths(paths).unwrap_or_default()
    })
}

/// A command for `program`, found on the extended `PATH` and run with it, marked as this run's
/// (`leftovers`), with the run's own `TMPDIR` in a `test` run.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let program = program.as_ref();
    let resolved = program
        .to_str()
        .and_then(which)
        .unwrap_or_else(|| PathBuf::from(program));
    let mut command = Command::new(resolved);
    command
        .env("PATH", tool_path())
        .env(crate::leftovers::MARKER, crate::leftovers::run_id());
    if let Some(tmp) = crate::leftovers::run_tmp() {
        command.env("TMPDIR", tmp);
    }
    command
}

fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
        .join("bin")
}

/// Where project-local tools (npm packages) are installed: inside `target/`, so `cargo clean`
/// removes them and nothing outside the checkout changes.
pub fn tools_dir() -> PathBuf {
    workspace_root().join("target").join("tools")
}

/// True if `program args` runs and exits successfully.
fn works(program: &str, args: &[&str]) -> bool {
    command(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = command(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn ensure_wasm_target() -> Result<()> {
    let installed = output_of("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        return Ok(());
    }
    if !works("rustup", &["--version"]) {
        return Err(format!(
            "the {WASM_TARGET} target is needed and rustup is not available: install it with your Rust distribution"
        )
        .into());
    }
    announce(&format!("installing the {WASM_TARGET} target (seconds)"));
    run(command("rustup").args(["target", "add", WASM_TARGET]))
}

pub fn ensure_wasm_pack() -> Result<()> {
    if works("wasm-pack", &["--version"]) {
        return Ok(());
    }
    announce("installing wasm-pack (cargo install wasm-pack --locked, about 2 minutes, once)");
    run(command(cargo()).args(["install", "wasm-pack", "--locked"]))
}

/// The wasm-bindgen CLI must match the `wasm-bindgen` crate in Cargo.lock exactly.
pub fn ensure_wasm_bindgen_cli() -> Result<()> {
    let version = locked_version("wasm-bindgen")?;
    let installed = output_of("wasm-bindgen", &["--version"]).unwrap_or_default();
    if installed.split_whitespace().nth(1) == Some(version.as_str()) {
        return Ok(());
    }
    announce(&format!(
        "installing wasm-bindgen-cli {version} to match Cargo.lock (about 5 minutes, once)"
    ));
    // Not `--locked`: its lock file pins a dependency version the registry no longer serves.
    run(command(cargo()).args([
        "install",
        "wasm-bindgen-cli",
        "--version",
        &format!("={version}"),
    ]))
}

/// The path of npm's wasm-opt, installing binaryen into `target/tools` if npm is there.
/// `None` (with a note) when npm is missing: the client then ships unoptimised but works.
pub fn ensure_wasm_opt() -> Option<PathBuf> {
    let wasm_opt = tools_dir().join("node_modules/.bin/wasm-opt");
    if wasm_opt.exists() {
        return Some(wasm_opt);
    }
    if !works("npm", &["--version"]) {
        eprintln!("xtask: npm not found, so wasm-opt is skipped (the client works, only larger)");
        return None;
    }
    announce(&format!(
        "installing wasm-opt (npm binaryen@{BINARYEN_VERSION}) into target/tools"
    ));
    let dir = tools_dir();
    let installed = std::fs::create_dir_all(&dir).is_ok()
        && command("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(format!("binaryen@{BINARYEN_VERSION}"))
            .status()
            .is_ok_and(|status| status.success());
    if installed && wasm_opt.exists() {
        Some(wasm_opt)
    } else {
        eprintln!("xtask: installing binaryen failed, so wasm-opt is skipped");
        None
    }
}

/// Chromium and chromedriver for the browser tests: `(chromium, chromedriver)`.
/// `$CHROMIUM` and `$CHROMEDRIVER` name other binaries.
pub fn ensure_chromium() -> Result<(PathBuf, PathBuf)> {
    let from_env = |name: &str| std::env::var(name).ok().and_then(|path| which(&path));
    if let (Some(chromium), Some(driver)) = (from_env("CHROMIUM"), from_env("CHROMEDRIVER")) {
        return Ok((chromium, driver));
    }
    if find_chromium().is_none() || which("chromedriver").is_none() {
        let why = "the browser tests need Chromium and chromedriver";
        apt_install(&["chromium", "chromium-driver"], why)?;
    }
    match (find_chromium(), which("chromedriver")) {
        (Some(chromium), Some(driver)) => Ok((chromium, driver)),
        _ => Err("Chromium or chromedriver is still missing after installing them".into()),
    }
}

/// valgrind, for the instruction counts of the benchmark.
pub fn ensure_valgrind() -> Result<PathBuf> {
    if which("valgrind").is_none() {
        apt_install(&["valgrind"], "the instruction counts need valgrind")?;
    }
    which("valgrind").ok_or_else(|| "valgrind is still missing after installing it".into())
}

/// nginx for the reverse-proxy end-to-end test.
pub fn ensure_nginx() -> Result<PathBuf> {
    let nginx = || which("nginx").or_else(|| which("/usr/sbin/nginx"));
    if nginx().is_none() {
        apt_install(&["nginx-light"], "the reverse-proxy test needs nginx")?;
    }
    nginx().ok_or_else(|| "nginx is still missing after installing it".into())
}

/// redis-server for the tests of rooms across instances and the benchmark's rows through
/// Redis (Debian's package brings redis-cli too). Each test and each benchmark run starts its
/// own on a unix socket; the system service is not used.
pub fn ensure_redis() -> Result<PathBuf> {
    let redis = || which("redis-server").or_else(|| which("/usr/bin/redis-server"));
    if redis().is_none() {
        apt_install(
            &["redis-server"],
            "the rooms-across-instances tests and benchmark rows need redis-server",
        )?;
    }
    redis().ok_or_else(|| "redis-server is still missing after installing it".into())
}

/// wrk and nginx for the static-file rows of the benchmark: `(wrk, nginx)`.
pub fn ensure_wrk_and_nginx() -> Result<(PathBuf, PathBuf)> {
    // Debian puts nginx in /usr/sbin, which a non-root PATH often lacks.
    let nginx = || which("nginx").or_else(|| which("/usr/sbin/nginx"));
    if which("wrk").is_none() || nginx().is_none() {
        apt_install(
            &["wrk", "nginx"],
            "the static-file benchmark needs wrk and nginx",
        )?;
    }
    match (which("wrk"), nginx()) {
        (Some(wrk), Some(nginx)) => Ok((wrk, nginx)),
        _ => Err("wrk or nginx is still missing after installing them".into()),
    }
}

/// Installs Debian packages when running as root; otherwise says the one line to run.
fn apt_install(packages: &[&str], why: &str) -> Result<()> {
    let line = format!("apt-get install -y {}", packages.join(" "));
    let is_root = output_of("id", &["-u"]).is_some_and(|uid| uid.trim() == "0");
    if !is_root || !works("apt-get", &["--version"]) {
        return Err(format!("{why}; install them with: sudo {line}").into());
    }
    announce(&format!(
        "installing {} (apt-get, about a minute, once)",
        packages.join(", ")
    ));
    run(command("apt-get").args(["update", "-q"]))?;
    run(command("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn find_chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(which)
}

/// The first `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name)).filter(|path| is_executable(path));
    }
    std::env::split_paths(tool_path())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The version of `package` recorded in Cargo.lock.
fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{package}\"")
            && let Some(version) = lines
                .next()
                .and_then(|next| next.strip_prefix("version = "))
        {
            return Ok(version.trim_matches('"').to_owned());
        }
    }
    Err(format!("{package} is not in Cargo.lock").into())
}

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

pub fn announce(what: &str) {
    eprintln!("xtask: {what}");
}
