//! `cargo xtask bench`: the project's server side by side with reference servers, in one run.
//!
//! Each server runs pinned to core 0 and the load generator (or wrk) to core 1, one pair at a
//! time; every scenario is repeated `BENCH_REPS` times (default 3) with the servers' order
//! rotated, and the table shows medians with the ratio to the best. Raw runs go to
//! `target/bench/results.jsonl`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::ServerProcess;
use crate::rooms_bench::RoomsRows;
use crate::tools::{self, announce, cargo, command};
use crate::{Result, run, target_dir, workspace_root};

/// A server under test: a name and the command line that starts it on a free port.
struct ServerKind {
    name: &'static str,
    binary: PathBuf,
    args: Vec<String>,
}

/// One load-generator scenario.
struct Scenario {
    name: &'static str,
    what: &'static str,
    loadgen_args: &'static [&'static str],
}

// One scenario a line reads as the table it is.
#[rustfmt::skip]
const SCENARIOS: &[Scenario] = &[
    Scenario { name: "echo-32B", what: "standard shape: /mirror, 100 connections x 1 in flight, 32 B",
        loadgen_args: &["--path", "/mirror", "--connections", "100", "--size", "32"] },
    Scenario { name: "echo-16KiB", what: "standard shape: /mirror, 100 connections x 1 in flight, 16 KiB",
        loadgen_args: &["--path", "/mirror", "--connections", "100", "--size", "16384"] },
    Scenario { name: "echo-32B-pipelined", what: "pipelined (favours batching servers): /mirror, 100 connections x 4 in flight, 32 B",
        loadgen_args: &["--path", "/mirror", "--connections", "100", "--in-flight", "4", "--size", "32"] },
    Scenario { name: "latency-1conn", what: "/mirror, 1 connection, 32 B, one at a time",
        loadgen_args: &["--path", "/mirror", "--connections", "1", "--size", "32"] },
    Scenario { name: "open-40k", what: "/mirror, 100 connections, 40,000 msg/s in total, 32 B",
        loadgen_args: &["--path", "/mirror", "--connections", "100", "--size", "32", "--rate", "40000"] },
    Scenario { name: "app-10x", what: "/subscriptions, 100 connections x 1 in flight, each message answered 10 times",
        loadgen_args: &["--path", "/subscriptions", "--skip", "1", "--replies", "10", "--connections", "100", "--size", "32"] },
    Scenario { name: "idle-10k", what: "10,000 idle WebSockets: server RSS per connection",
        loadgen_args: &["--path", "/mirror", "--connections", "10000", "--idle"] },
    Scenario { name: "idle-1k-after-8KiB", what: "1,000 WebSockets idle after one 8 KiB message (10 replies of 8 KiB)",
        loadgen_args: &["--path", "/subscriptions", "--skip", "1", "--replies", "10", "--connections", "1000", "--idle", "--after-one-message", "--size", "8192"] },
];

impl Scenario {
    /// Memory scenarios: connections held open, RSS per connection reported.
    fn is_idle(&self) -> bool {
        self.loadgen_args.contains(&"--idle")
    }
}

/// Which part of the benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    All,
    /// Only the echo rows, the standard shape first (this server against fastwebsockets and
    /// tokio-tungstenite), with the start-up time.
    Echo,
    /// Only the static-file rows (wrk against nginx).
    Static,
    /// Only the page-load rows (headless Chromium).
    PageLoad,
    /// Only the rows with metrics served, plain and over TLS.
    Deployment,
    /// Only the rows with permessage-deflate against without.
    Compression,
    /// Only the instructions per message under callgrind.
    Instructions,
    /// Only the instructions per delivery in the paced rooms rows under callgrind.
    RoomsInstructions,
    /// Only the rooms fan-out rows (`/rooms` against the tokio `broadcast` reference, and
    /// through Redis against the embedded engine).
    Rooms,
    /// Only the rooms rows through Redis.
    RoomsRedis,
    /// Only the reconnect storm (5,000 members of a killed instance back on another).
    Storm,
    /// Only the presence join storm (1,000 members into one room within a second).
    Presence,
}

pub fn bench(section: Section) -> Result<()> {
    let reps: usize = env_number("BENCH_REPS", 3);
    let seconds: f64 = env_number("BENCH_SECONDS", 3.0);
    // The rooms rows never load the page: no need to build the web client for them alone.
    if !matches!(
        section,
        Section::Echo
            | Section::Rooms
            | Section::RoomsRedis
            | Section::RoomsInstructions
            | Section::Storm
            | Section::Presence
    ) {
        crate::build_client(false)?;
    }
    announce("building the server, load generator and reference servers (release)");
    run(command(cargo()).args([
        "build",
        "--release",
        "--package",
        "server",
        "--package",
        "bench",
    ]))?;
    let release = target_dir().join("release");
    let static_dir = workspace_root().join("static");
    let servers = [
        ServerKind {
            name: "server",
            binary: release.join("server"),
            args: vec![
                "--log".into(),
                "warn".into(),
                "--static-dir".into(),
                path_arg(&static_dir),
            ],
        },
        ServerKind {
            name: "fastwebsockets",
            binary: release.join("ref-fastwebsockets"),
            args: vec![],
        },
        ServerKind {
            name: "fastwebsockets-batch",
            binary: release.join("ref-fastwebsockets"),
            args: vec!["--batch".into()],
        },
        ServerKind {
            name: "tungstenite-naive",
            binary: release.join("ref-tungstenite"),
            args: vec![],
        },
    ];
    let pinning = Pinning::detect();
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut jsonl = std::fs::File::create(out_dir.join("results.jsonl"))?;
    // scenario -> server -> runs
    let mut results: BTreeMap<&str, BTreeMap<&str, Vec<Value>>> = BTreeMap::new();

    let scenarios = if matches!(section, Section::All | Section::Echo) {
        SCENARIOS
    } else {
        &[]
    };
    for scenario in scenarios {
        announce(&format!(
            "{}: {} ({reps} rounds)",
            scenario.name, scenario.what
        ));
        for rep in 0..reps {
            for offset in 0..servers.len() {
                let server = &servers[(rep + offset) % servers.len()];
                let running = start(&pinning, server)?;
                let mut loadgen = pinning.on_client(&release.join("loadgen"));
                loadgen
                    .args(["--addr", &running.addr, "--pid", &running.pid().to_string()])
                    .args(["--duration", &seconds.to_string()])
                    .args(scenario.loadgen_args);
                let output = loadgen.output()?;
                drop(running);
                if !output.status.success() {
                    return Err(format!(
                        "loadgen failed for {} on {}: {}",
                        scenario.name,
                        server.name,
                        String::from_utf8_lossy(&output.stderr)
                    )
                    .into());
                }
                let mut line: Value = serde_json::from_slice(&output.stdout)?;
                line["scenario"] = scenario.name.into();
                line["server"] = server.name.into();
                line["round"] = rep.into();
                writeln!(jsonl, "{line}")?;
                results
                    .entry(scenario.name)
                    .or_default()
                    .entry(server.name)
                    .or_default()
                    .push(line);
            }
        }
    }

    let statics = match section {
        Section::All | Section::Static => {
            static_files(&pinning, &servers[0], &static_dir, reps, seconds)?
        }
        _ => Vec::new(),
    };
    let (page_load_table, page_loads) = match section {
        Section::All | Section::PageLoad => crate::page_load::page_load(&pinning, reps)?,
        _ => (String::new(), Vec::new()),
    };
    let (deployment_table, deployment_runs) = match section {
        Section::All | Section::Deployment => {
            crate::variants_bench::deployment(&pinning, reps, seconds)?
        }
        _ => (String::new(), Vec::new()),
    };
    let (compression_table, compression_runs) = match section {
        Section::All | Section::Compression => {
            crate::variants_bench::compression(&pinning, reps, seconds)?
        }
        _ => (String::new(), Vec::new()),
    };
    let (instructions_table, instruction_runs) = match section {
        Section::All | Section::Instructions => crate::instructions::instructions(&release)?,
        Section::RoomsInstructions => crate::rooms_bench::rooms_instructions(&pinning, &release)?,
        _ => (String::new(), Vec::new()),
    };
    let (rooms_table, rooms_runs) = match section {
        Section::All | Section::Rooms => {
            crate::rooms_bench::rooms(&pinning, reps, seconds, RoomsRows::All)?
        }
        Section::RoomsRedis => {
            crate::rooms_bench::rooms(&pinning, reps, seconds, RoomsRows::ThroughRedis)?
        }
        _ => (String::new(), Vec::new()),
    };
    let (storm_table, storm_runs) = match section {
        Section::All | Section::Storm => crate::storm_bench::storm(&pinning, reps)?,
        _ => (String::new(), Vec::new()),
    };
    let (presence_table, presence_runs) = match section {
        Section::All | Section::Presence => crate::presence_bench::presence(&pinning, reps)?,
        _ => (String::new(), Vec::new()),
    };
    for line in statics
        .iter()
        .chain(&page_loads)
        .chain(&deployment_runs)
        .chain(&compression_runs)
        .chain(&instruction_runs)
        .chain(&rooms_runs)
        .chain(&storm_runs)
        .chain(&presence_runs)
    {
        writeln!(jsonl, "{line}")?;
    }
    let echo_table = match section {
        Section::All | Section::Echo => {
            let start_ms = start_up_ms(&servers[0], 9)?;
            writeln!(
                jsonl,
                "{}",
                serde_json::json!({"scenario": "start-up", "server": "server", "ms": start_ms})
            )?;
            render_table(&results, start_ms, &servers, &pinning, reps, seconds)
        }
        _ => String::new(),
    };
    let table = match section {
        Section::All => {
            echo_table
                + &instructions_table
                + &rooms_table
                + &storm_table
                + &presence_table
                + &deployment_table
                + &compression_table
                + &static_table(&statics)
                + &page_load_table
        }
        Section::Echo => echo_table,
        Section::Static => static_table(&statics),
        Section::PageLoad => page_load_table,
        Section::Deployment => deployment_table,
        Section::Compression => compression_table,
        Section::Instructions | Section::RoomsInstructions => instructions_table,
        Section::Rooms | Section::RoomsRedis => rooms_table,
        Section::Storm => storm_table,
        Section::Presence => presence_table,
    };
    std::fs::write(out_dir.join("results.md"), &table)?;
    println!("\n{table}");
    announce(&format!(
        "raw runs in {}",
        out_dir.join("results.jsonl").display()
    ));
    Ok(())
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Server on core 0, client on core 1, when the machine has two cores and `taskset`.
pub(crate) struct Pinning {
    pub(crate) enabled: bool,
}

impl Pinning {
    pub(crate) fn detect() -> Pinning {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let enabled = cores >= 2 && tools::which("taskset").is_some();
        if !enabled {
            announce("not pinning to cores (needs 2 cores and taskset): numbers will be noisier");
        }
        Pinning { enabled }
    }

    fn on_core(&self, core: &str, program: &Path) -> Command {
        if self.enabled {
            let mut command = command("taskset");
            command.args(["-c", core]).arg(program);
            command
        } else {
            command(program)
        }
    }

    pub(crate) fn on_server(&self, program: &Path) -> Command {
        self.on_core("0", program)
    }

    pub(crate) fn on_client(&self, program: &Path) -> Command {
        self.on_core("1", program)
    }
}

/// Starts a server under test pinned to the server core; it stops when dropped (the reference
/// servers simply die on SIGTERM, so their exit status is not checked).
fn start(pinning: &Pinning, server: &ServerKind) -> Result<ServerProcess> {
    let mut command = pinning.on_server(&server.binary);
    command
        .current_dir(workspace_root())
        .args(&server.args)
        .stderr(Stdio::null());
    ServerProcess::spawn(&mut command, server.name)
}

/// What wrk asks for: scenario, path, and the `Accept-Encoding` it sends. wrk sends none by
/// default (both servers then send the file as it is); browsers send `gzip, deflate, br`.
const STATIC_TARGETS: &[(&str, &str, Option<&str>)] = &[
    ("static-index", "/", None),
    ("static-wasm", "/pkg/web_client_bg.wasm", None),
    (
        "static-wasm-browser",
        "/pkg/web_client_bg.wasm",
        Some("gzip, deflate, br"),
    ),
];

/// wrk against the server and nginx for `/` and the `.wasm`; `None` rows when a tool is missing.
fn static_files(
    pinning: &Pinning,
    server: &ServerKind,
    static_dir: &Path,
    reps: usize,
    seconds: f64,
) -> Result<Vec<Value>> {
    let (wrk, nginx) = tools::ensure_wrk_and_nginx()?;
    announce(&format!("static files: wrk vs nginx ({reps} rounds)"));
    let mut lines = Vec::new();
    for rep in 0..reps {
        for turn in 0..2 {
            let use_nginx = (rep + turn) % 2 == 1;
            let (name, addr, mut guard): (&str, String, Box<dyn FnMut()>) = if use_nginx {
                let nginx = Nginx::start(pinning, &nginx, static_dir)?;
                let addr = nginx.addr.clone();
                let mut nginx = Some(nginx);
                ("nginx", addr, Box::new(move || drop(nginx.take())))
            } else {
                let running = start(pinning, server)?;
                let addr = running.addr.clone();
                let mut running = Some(running);
                ("server", addr, Box::new(move || drop(running.take())))
            };
            for &(target, path, accept_encoding) in STATIC_TARGETS {
                let mut wrk = pinning.on_client(&wrk);
                wrk.args(["-t1", "-c32", &format!("-d{}s", seconds.ceil() as u64)]);
                if let Some(encodings) = accept_encoding {
                    wrk.args(["-H", &format!("Accept-Encoding: {encodings}")]);
                }
                let output = wrk.arg(format!("http://{addr}{path}")).output()?;
                let text = String::from_utf8_lossy(&output.stdout);
                let per_second = text
                    .lines()
                    .find_map(|line| line.strip_prefix("Requests/sec:"))
                    .and_then(|value| value.trim().parse::<f64>().ok())
                    .ok_or_else(|| format!("wrk printed no rate: {text}"))?;
                lines.push(serde_json::json!({
                    "scenario": target, "server": name, "round": rep, "requests_per_sec": per_second.round()
                }));
            }
            guard();
        }
    }
    Ok(lines)
}

/// nginx serving the same directory, one worker, in a private prefix under target/bench, as
/// its users would set it up for static files: `sendfile`, `open_file_cache`, and
/// `gzip_static` sending the same `.gz` copies the server has (nginx has no brotli built in).
struct Nginx {
    child: Child,
    addr: String,
}

impl Nginx {
    fn start(pinning: &Pinning, nginx: &Path, static_dir: &Path) -> Result<Nginx> {
        let prefix = target_dir().join("bench/nginx");
        std::fs::create_dir_all(prefix.join("tmp"))?;
        // nginx cannot listen on port 0: borrow a free port from the kernel for it. Another
        // program could take it in between; the bench then fails loudly and can be re-run.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let tmp = path_arg(&prefix.join("tmp"));
        let config = format!(
            "worker_processes 1; daemon off; master_process off; pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  include /etc/nginx/mime.types; access_log off; sendfile on; tcp_nopush on; etag on;
  gzip_static on; gzip on; gzip_types application/wasm application/javascript text/css;
  open_file_cache max=1000 inactive=60s; open_file_cache_valid 30s;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{ listen {addr}; root {root}; }}
}}
",
            prefix = path_arg(&prefix),
            root = path_arg(static_dir),
        );
        let config_path = prefix.join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let child = pinning
            .on_server(nginx)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // nginx prints nothing when ready: wait until it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                return Err("nginx did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Nginx { child, addr })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Milliseconds from spawning the server to its `Listening on` line: the median of `runs`.
fn start_up_ms(server: &ServerKind, runs: usize) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let running = start(&Pinning { enabled: false }, server)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        drop(running);
    }
    Ok((median(times) * 10.0).round() / 10.0)
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub(crate) fn median_of(runs: &[Value], key: &str) -> Option<f64> {
    let values: Vec<f64> = runs.iter().filter_map(|run| run[key].as_f64()).collect();
    (!values.is_empty()).then(|| median(values))
}

/// The median over rounds of `ours[key] / theirs[key]`, pairing runs of the same round. The
/// servers of one round run back to back, so this cancels the slow drifts of a shared VM that
/// a ratio of two medians keeps (p99 at 40k msg/s moved from 0.6 to 13 ms between rounds for
/// every server alike).
pub(crate) fn paired_ratio(ours: &[Value], theirs: &[Value], key: &str) -> Option<f64> {
    let ratios: Vec<f64> = ours
        .iter()
        .filter_map(|run| {
            let other = theirs.iter().find(|other| other["round"] == run["round"])?;
            Some(run[key].as_f64()? / other[key].as_f64()?)
        })
        .collect();
    (!ratios.is_empty()).then(|| median(ratios))
}

/// A number with `digits` decimals, or `-` when there is none.
pub(crate) fn number(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.digits$}"))
}

/// The static-file rows: this server and nginx, requests/s and the ratio paired by round.
fn static_table(statics: &[Value]) -> String {
    if statics.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    out.push_str(
        "\n| static files (wrk, 32 connections) | server | requests/s | ratio to nginx, paired by round |\n",
    );
    out.push_str("|---|---|---:|---:|\n");
    for &(target, _, _) in STATIC_TARGETS {
        let runs = |name: &str| -> Vec<Value> {
            statics
                .iter()
                .filter(|line| line["scenario"] == target && line["server"] == name)
                .cloned()
                .collect()
        };
        let (server_runs, nginx_runs) = (runs("server"), runs("nginx"));
        for (name, mine) in [("server", &server_runs), ("nginx", &nginx_runs)] {
            if let Some(value) = median_of(mine, "requests_per_sec") {
                out.push_str(&row([
                    target.to_owned(),
                    name.to_owned(),
                    number(Some(value), 0),
                    number(paired_ratio(mine, &nginx_runs, "requests_per_sec"), 2),
                ]));
            }
        }
    }
    out
}

/// One markdown table row.
pub(crate) fn row<const N: usize>(cells: [String; N]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// This server against each reference, round by round (see [`paired_ratio`]).
fn paired_table(
    results: &BTreeMap<&str, BTreeMap<&str, Vec<Value>>>,
    servers: &[ServerKind],
) -> String {
    let Some((ours, references)) = servers.split_first() else {
        return String::new();
    };
    let mut out = format!(
        "\n| {} / reference, paired by round | scenario | round trips/s | server CPU per round trip (lower is better) | p99 (lower is better) |\n|---|---|---:|---:|---:|\n",
        ours.name
    );
    for reference in references {
        for scenario in SCENARIOS.iter().filter(|s| !s.is_idle()) {
            let runs = |name: &str| results.get(scenario.name).and_then(|by| by.get(name));
            let (Some(mine), Some(theirs)) = (runs(ours.name), runs(reference.name)) else {
                continue;
            };
            let ratio = |key: &str| number(paired_ratio(mine, theirs, key), 2);
            out.push_str(&row([
                reference.name.to_owned(),
                scenario.name.to_owned(),
                ratio("round_trips_per_sec"),
                ratio("server_cpu_us_per_round_trip"),
                ratio("p99_us"),
            ]));
        }
    }
    out
}

fn render_table(
    results: &BTreeMap<&str, BTreeMap<&str, Vec<Value>>>,
    start_ms: f64,
    servers: &[ServerKind],
    pinning: &Pinning,
    reps: usize,
    seconds: f64,
) -> String {
    let mut out = String::new();
    let pinned = if pinning.enabled {
        "server on core 0, load on core 1"
    } else {
        "not pinned"
    };
    out.push_str(&format!(
        "Medians of {reps} rounds of {seconds} s each ({pinned}); ratio = this server / best.\n\n"
    ));
    out.push_str("| scenario | server | round trips/s | ratio | p50 µs | p99 µs | p99.9 µs | server CPU µs/round trip | ratio (lower is better) |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for scenario in SCENARIOS.iter().filter(|s| !s.is_idle()) {
        let Some(by_server) = results.get(scenario.name) else {
            continue;
        };
        let rate = |name: &str| {
            by_server
                .get(name)
                .and_then(|runs| median_of(runs, "round_trips_per_sec"))
        };
        let cpu = |name: &str| {
            by_server
                .get(name)
                .and_then(|runs| median_of(runs, "server_cpu_us_per_round_trip"))
        };
        let best_rate = servers
            .iter()
            .filter_map(|s| rate(s.name))
            .fold(0.0, f64::max);
        let best_cpu = servers
            .iter()
            .filter_map(|s| cpu(s.name))
            .fold(f64::INFINITY, f64::min);
        for server in servers {
            let Some(runs) = by_server.get(server.name) else {
                continue;
            };
            let cell = |key: &str| number(median_of(runs, key), 0);
            out.push_str(&row([
                scenario.name.to_owned(),
                server.name.to_owned(),
                cell("round_trips_per_sec"),
                number(rate(server.name).map(|r| r / best_rate), 2),
                cell("p50_us"),
                cell("p99_us"),
                cell("p999_us"),
                number(cpu(server.name), 2),
                number(cpu(server.name).map(|c| c / best_cpu), 2),
            ]));
        }
    }
    out.push_str(&paired_table(results, servers));
    out.push_str(
        "\n| idle WebSockets | server | connections | server RSS KiB | RSS per connection KiB |\n",
    );
    out.push_str("|---|---|---:|---:|---:|\n");
    for scenario in SCENARIOS.iter().filter(|s| s.is_idle()) {
        let Some(by_server) = results.get(scenario.name) else {
            continue;
        };
        for server in servers {
            let Some(runs) = by_server.get(server.name) else {
                continue;
            };
            let cell = |key: &str, digits| number(median_of(runs, key), digits);
            out.push_str(&row([
                scenario.name.to_owned(),
                server.name.to_owned(),
                cell("connections", 0),
                cell("server_rss_kib", 0),
                cell("rss_per_connection_kib", 1),
            ]));
        }
    }
    out.push_str(&format!(
        "\nServer start to listening: {start_ms} ms (median of 9).\n"
    ));
    out
}
