//! `cargo xtask`: the project's commands, in plain Rust (the cargo xtask pattern).
//!
//! - `serve [SERVER ARGS]`: build the web client, then run the server (release).
//! - `test`: every check and test: fmt, clippy (host and wasm), unit and integration tests,
//!   browser end-to-end tests, and the client's `wasm-pack test` in headless Chromium.
//! - `build-client [--dev]`: only the wasm client, into `static/pkg`.
//! - `bench`: the server side by side with fastwebsockets and tokio-tungstenite, and nginx;
//!   `bench rooms`: room fan-out against a tokio `broadcast` reference, and through Redis with
//!   two instances against the embedded engine (`bench rooms redis`: only those); `bench storm`:
//!   a reconnect storm, 5,000 members of a killed instance back on another, with and without
//!   jitter; `bench presence`: a presence join storm, 1,000 members into one room within a second.
//! - `conformance`: the Autobahn|Testsuite fuzzing client against `/mirror`.

mod bench;
mod hashed;
mod instructions;
mod leftovers;
mod page_load;
mod precompress;
mod presence_bench;
mod process;
mod rooms_bench;
mod storm_bench;
mod tools;
mod variants_bench;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use process::ServerProcess;
use tools::{announce, cargo, command};

pub type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  serve [ARGS]         build the web client, then run the server; ARGS go to the server
                       (e.g. cargo xtask serve --addr 127.0.0.1:3000)
  test                 run every check and test (installs what is missing)
  build-client [--dev] build only the wasm client into static/pkg
  bench [echo|static|page-load|deployment|compression|instructions [rooms]|rooms [redis]|storm|presence]
                       benchmark the server against reference servers (prints a table), or
                       only the echo (standard shape), static-file, page-load, metrics+TLS, permessage-deflate,
                       callgrind, or rooms fan-out rows (`rooms redis`: only those through
                       Redis; BENCH_ROOMS_ROWS=TEXT: only rooms rows whose name contains it;
                       `instructions rooms`: callgrind in the paced rooms rows;
                       BENCH_BASELINE_SERVER=PATH: another build of the server beside this
                       one in the rooms rows, as `before`; BENCH_BASELINE_STATIC=DIR:
                       another built static/ beside this one in the page-load rows), or the
                       reconnect storm (5,000 members back on a second instance), or the
                       presence join storm (1,000 members into one room within a second)
  conformance          run the Autobahn|Testsuite against /mirror: cases 1-7, 9 and 10,
                       and with --compression also 12 and 13 (permessage-deflate)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("test") => test(),
        Some("build-client") => build_client(args.get(1).is_some_and(|arg| arg == "--dev")),
        Some("bench") => match args.get(1).map(String::as_str) {
            None => bench::bench(bench::Section::All),
            Some("echo") => bench::bench(bench::Section::Echo),
            Some("static") => bench::bench(bench::Section::Static),
            Some("deployment") => bench::bench(bench::Section::Deployment),
            Some("compression") => bench::bench(bench::Section::Compression),
            Some("instructions") => match args.get(2).map(String::as_str) {
                None => bench::bench(bench::Section::Instructions),
                Some("rooms") => bench::bench(bench::Section::RoomsInstructions),
                Some(other) => {
                    Err(format!("unknown instructions rows `{other}`\n\n{USAGE}").into())
                }
            },
            Some("page-load") => bench::bench(bench::Section::PageLoad),
            Some("storm") => bench::bench(bench::Section::Storm),
            Some("presence") => bench::bench(bench::Section::Presence),
            Some("rooms") => match args.get(2).map(String::as_str) {
                None => bench::bench(bench::Section::Rooms),
                Some("redis") => bench::bench(bench::Section::RoomsRedis),
                Some(other) => Err(format!("unknown rooms rows `{other}`\n\n{USAGE}").into()),
            },
            Some(other) => Err(format!("unknown bench section `{other}`\n\n{USAGE}").into()),
        },
        Some("conformance") => build_server().and_then(|server_bin| conformance(&server_bin)),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}").into()),
        None => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask's manifest lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs a command to completion in the workspace root; a failure names the command.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command.current_dir(workspace_root()).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(command)).into())
    }
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Builds the client with wasm-pack into `static/pkg`, then shrinks it with wasm-opt.
pub fn build_client(dev: bool) -> Result<()> {
    tools::ensure_wasm_target()?;
    tools::ensure_wasm_pack()?;
    tools::ensure_wasm_bindgen_cli()?;
    announce(&format!(
        "building the web client ({})",
        if dev { "dev" } else { "release" }
    ));
    // `--mode no-install`: never let wasm-pack download a wasm-bindgen of its own; a version
    // mismatch is then a clear error. `--no-opt`: wasm-opt runs below, from npm's binaryen.
    // Release: the size-focused profile of the workspace's Cargo.toml.
    let profile: &[&str] = if dev {
        &["--dev"]
    } else {
        &["--profile", "wasm"]
    };
    run(command("wasm-pack")
        .args(["--log-level", "warn", "build", "web-client"])
        .args(profile)
        .args([
            "--target",
            "web",
            "--out-dir",
            "../static/pkg",
            "--out-name",
            "web_client",
            "--mode",
            "no-install",
            "--no-typescript",
            "--no-pack",
            "--no-opt",
        ]))?;
    let pkg = workspace_root().join("static/pkg");
    let wasm = pkg.join("web_client_bg.wasm");
    if !dev && let Some(wasm_opt) = tools::ensure_wasm_opt() {
        // The features rustc enables by default for wasm32-unknown-unknown.
        run(command(wasm_opt)
            .args(["-Oz", "--strip-debug", "--strip-producers"])
            .args([
                "--enable-bulk-memory",
                "--enable-mutable-globals",
                "--enable-nontrapping-float-to-int",
                "--enable-sign-ext",
                "--enable-multivalue",
                "--enable-reference-types",
            ])
            .arg(&wasm)
            .arg("-o")
            .arg(&wasm))?;
    }
    let static_dir = workspace_root().join("static");
    let hashed = hashed::write(&static_dir)?;
    announce(&format!(
        "{} files named by their hash and static/pkg/index.html naming them",
        hashed.len()
    ));
    let copies = precompress::precompress(&static_dir)?;
    announce(&format!(
        "compressed copies (.br, .gz) in static/: {} written, {} already up to date",
        copies.written, copies.fresh
    ));
    let js = pkg.join("web_client.js");
    let (wasm_raw, wasm_gz) = sizes(&wasm)?;
    let (js_raw, js_gz) = sizes(&js)?;
    announce(&format!(
        "client built: wasm {} ({} gzip), js {} ({} gzip), total {} gzip",
        kib(wasm_raw),
        kib(wasm_gz),
        kib(js_raw),
        kib(js_gz),
        kib(wasm_gz + js_gz)
    ));
    Ok(())
}

/// Raw and gzip sizes of a built file: the `.gz` copy `precompress` wrote beside it (best
/// level), so nothing is compressed twice; the raw size when no copy was worth keeping.
fn sizes(path: &Path) -> Result<(usize, usize)> {
    let raw = std::fs::metadata(path)?.len() as usize;
    let copy = PathBuf::from(format!("{}.gz", path.display()));
    let gzip = std::fs::metadata(copy).map_or(raw, |meta| meta.len() as usize);
    Ok((raw, gzip))
}

fn kib(bytes: usize) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// Builds the client, then replaces this process with the release server.
fn serve(server_args: &[String]) -> Result<()> {
    build_client(false)?;
    announce("starting the server (release build); Ctrl-C stops it");
    let mut server = command(cargo());
    server
        .current_dir(workspace_root())
        .args(["run", "--release", "--quiet", "--package", "server", "--"])
        .args(server_args);
    use std::os::unix::process::CommandExt;
    // `exec` so that Ctrl-C and SIGTERM reach the server directly and its exit code is ours.
    Err(server.exec().into())
}

/// Every check and test, cheapest first; then nothing the run started may be left running
/// (`leftovers`), whether the checks passed or not.
fn test() -> Result<()> {
    if let Err(error) = leftovers::adopt_orphans() {
        eprintln!(
            "warning: cannot adopt orphans ({error}): of what the run leaves, only processes \
             that keep their environment will be found"
        );
    }
    if let Err(error) = leftovers::use_run_tmp() {
        eprintln!(
            "warning: cannot make the run's TMPDIR ({error}): what the tests leave in /tmp stays there"
        );
    }
    let result = test_all();
    let left = leftovers::sweep();
    match leftovers::remove_run_tmp() {
        Ok(None) => {}
        Ok(Some((entries, bytes))) => eprintln!(
            "note: the tests left {entries} entries ({} KiB) in the run's TMPDIR; removed",
            bytes / 1024
        ),
        Err(error) => eprintln!("warning: cannot remove the run's TMPDIR: {error}"),
    }
    if left.is_empty() {
        return result;
    }
    let left = leftovers::Leftovers(left);
    match result {
        // The failed step is the run's error; what it left is said beside it.
        Err(error) => {
            eprintln!("{left}");
            Err(error)
        }
        Ok(()) => Err(left.into()),
    }
}

fn test_all() -> Result<()> {
    announce("checking formatting");
    run(command(cargo()).args(["fmt", "--all", "--check"]))?;
    announce("clippy (host)");
    run(command(cargo()).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    tools::ensure_wasm_target()?;
    announce("clippy (web client for wasm32)");
    run(command(cargo()).args([
        "clippy",
        "--package",
        "web-client",
        "--target",
        "wasm32-unknown-unknown",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;

    build_client(false)?;
    let server_bin = build_server()?;
    let console_client_bin = build_console_client()?;
    let (chromium, chromedriver) = tools::ensure_chromium()?;
    let nginx = tools::ensure_nginx()?;
    let redis = tools::ensure_redis()?;
    // The release server's instruction budgets (`tests/it/budget.rs`).
    let valgrind = tools::ensure_valgrind()?;

    announce("unit, integration and browser end-to-end tests");
    run(command(cargo())
        .args(["test", "--workspace", "--", "--include-ignored"])
        .env("SERVER_BIN", &server_bin)
        .env("CONSOLE_CLIENT_BIN", &console_client_bin)
        .env("CHROMEDRIVER", &chromedriver)
        .env("CHROMIUM", &chromium)
        .env("NGINX", &nginx)
        .env("REDIS_SERVER", &redis)
        .env("VALGRIND", &valgrind)
        .env("STATIC_DIR", workspace_root().join("static")))?;

    announce("web client tests in headless Chromium (wasm-pack test), against a real server");
    // The test page comes from wasm-bindgen's runner on a port of its own, a foreign origin
    // to the server: allow it here. The end-to-end tests load the page from the server itself
    // and keep the same-origin check on.
    let server = start_server(&server_bin, &["--allowed-origin", "*"])?;
    let ws_url = server.ws_url("/subscriptions");
    let wasm_tests = run(command("wasm-pack")
        .args([
            "--log-level",
            "warn",
            "test",
            "--headless",
            "--chrome",
            "--chromedriver",
        ])
        .arg(&chromedriver)
        .args(["--mode", "no-install", "web-client"])
        .env("WS_TEST_URL", ws_url)
        .env("CHROME_BIN", &chromium));
    server.stop()?;
    wasm_tests?;

    conformance(&server_bin)?;
    announce("all checks and tests passed");
    Ok(())
}

/// Builds the release server; returns its path.
fn build_server() -> Result<PathBuf> {
    announce("building the server (release)");
    run(command(cargo()).args(["build", "--release", "--package", "server"]))?;
    Ok(target_dir().join("release/server"))
}

/// Builds the release console client, which the integration tests run; returns its path.
fn build_console_client() -> Result<PathBuf> {
    announce("building the console client (release)");
    run(command(cargo()).args(["build", "--release", "--package", "console-client"]))?;
    Ok(target_dir().join("release/console-client"))
}

/// Autobahn|Testsuite's fuzzing client against `/mirror`, two runs side by side (the client is
/// single-threaded Python): cases 1-7, 9 and 10 against a server without compression, and the
/// same plus the permessage-deflate cases 12 and 13 against one with `--compression`. Fails on
/// any FAILED case.
fn conformance(server_bin: &Path) -> Result<()> {
    const CORE: &str = r#""1.*","2.*","3.*","4.*","5.*","6.*","7.*","9.*","10.*""#;
    announce("Autobahn|Testsuite against /mirror, compression off and on (installs wstest once)");
    let script = |name: &str| workspace_root().join("xtask/autobahn").join(name);
    // Installed once here, so the two runs do not both install it.
    run(command("sh").arg(script("setup.sh")))?;
    // Cases 9.* send messages of up to 16 MiB; the default 64 KiB limit would (rightly) close
    // them with 1009, which the suite counts as failures.
    let limit = ["--max-message-size", "16777216"];
    let runs = [
        ("compression-off", format!("[{CORE}]"), vec![]),
        (
            "compression-on",
            format!(r#"[{CORE},"12.*","13.*"]"#),
            vec!["--compression"],
        ),
    ];
    let mut started = Vec::new();
    for (agent, cases, flags) in runs {
        let server = start_server(server_bin, &[&limit[..], &flags[..]].concat())?;
        let reports = target_dir().join("autobahn").join(agent);
        let child = command("sh")
            .env("AUTOBAHN_AGENT", agent)
            .arg(script("run.sh"))
            .arg(server.ws_url("/mirror"))
            .arg(&reports)
            .arg(cases)
            .arg("[]")
            .current_dir(workspace_root())
            .spawn()?;
        started.push((server, reports, child));
    }
    let mut failures = Vec::new();
    for (server, reports, mut child) in started {
        let status = child.wait()?;
        server.stop()?;
        if !status.success() {
            failures.push(format!("{}", reports.join("reports/index.html").display()));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "Autobahn cases FAILED; reports in {}",
            failures.join(" and ")
        )
        .into())
    }
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The project's server on a free port (logging warnings only), for checks outside `cargo test`.
fn start_server(binary: &Path, extra_args: &[&str]) -> Result<ServerProcess> {
    let mut command = command(binary);
    command
        .current_dir(workspace_root())
        .args(["--addr", "127.0.0.1:0", "--log", "warn"])
        .args(extra_args);
    ServerProcess::spawn(&mut command, "the server")
}
