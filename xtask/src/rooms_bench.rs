//! `cargo xtask bench rooms`: fan-out through one room of `GET /rooms`, this server side by side
//! with `ref-broadcast` (axum chat's pattern: a tokio `broadcast` channel per room, a send per
//! message per member), measured by the `fanout` load generator.
//!
//! As in the other sections: each server pinned to core 0 and the generator to core 1, every
//! scenario `BENCH_REPS` rounds with the order rotated, ratios paired by round. Because these
//! machines drift by ±25% between runs, the paired ratios are shown as the median with the
//! range over rounds. Rows that favour this server's design say so in their description.
//!
//! A server that cannot run a scenario (this server before its `/rooms` route exists, say) is
//! reported as not measured, with the generator's words, and the other rows still run.
//!
//! The rows through Redis run the same fan-out with two instances of this server sharing one
//! redis-server (on a unix socket in a directory of its own, without persistence), members and
//! publishers spread over both, against the embedded engine under the same load in the same
//! round. Two instances and Redis cannot each have a core of their own on two cores: all three
//! share core 0, the core the embedded server has alone, and the generator keeps core 1, so
//! the comparison is of work on the same server-side core, and the rows say so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::bench::{Pinning, median, median_of, number, row};
use crate::process::{RedisProcess, ServerProcess};
use crate::{Result, target_dir, tools, workspace_root};

/// How a contender runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deployment {
    /// One process, rooms in it.
    Alone,
    /// Two instances given one redis-server with `--redis-url`.
    TwoInstancesOnRedis,
}

/// Which rooms rows to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomsRows {
    All,
    /// Only the rows through Redis (`cargo xtask bench rooms redis`).
    ThroughRedis,
}

/// A server as this section runs it, and what the generator does differently for it.
struct Contender {
    name: &'static str,
    binary: PathBuf,
    args: Vec<String>,
    fanout_args: Vec<String>,
    /// It prints `skipped N` on stderr when it exits (the broadcast reference does).
    reports_skipped: bool,
    deployment: Deployment,
}

/// One fan-out scenario: which contenders run it (the first is the one ratios are of, the
/// second the one they are to).
struct Scenario {
    name: &'static str,
    what: &'static str,
    fanout_args: &'static [&'static str],
    contenders: [&'static str; 2],
}

const OURS: &str = "server";
const REFERENCE: &str = "broadcast";
const COMPRESSED: &str = "server --compression";
const ON_REDIS: &str = "2 x server on redis";

// One scenario a line reads as the table it is.
#[rustfmt::skip]
const SCENARIOS: &[Scenario] = &[
    Scenario { name: "fanout-10-64B", what: "standard shape: 1 room, 10 members, 1 publisher closed loop, 64 B texts",
        fanout_args: &["--members", "10", "--size", "64"], contenders: [OURS, REFERENCE] },
    Scenario { name: "fanout-10-1KiB", what: "standard shape: 1 room, 10 members, 1 publisher closed loop, 1 KiB texts",
        fanout_args: &["--members", "10", "--size", "1024"], contenders: [OURS, REFERENCE] },
    Scenario { name: "fanout-100-64B", what: "standard shape: 1 room, 100 members, 1 publisher closed loop, 64 B texts",
        fanout_args: &["--members", "100", "--size", "64"], contenders: [OURS, REFERENCE] },
    Scenario { name: "fanout-100-1KiB", what: "standard shape: 1 room, 100 members, 1 publisher closed loop, 1 KiB texts",
        fanout_args: &["--members", "100", "--size", "1024"], contenders: [OURS, REFERENCE] },
    Scenario { name: "fanout-1000-64B", what: "standard shape: 1 room, 1,000 members, 1 publisher closed loop, 64 B texts",
        fanout_args: &["--members", "1000", "--size", "64"], contenders: [OURS, REFERENCE] },
    Scenario { name: "fanout-1000-1KiB", what: "standard shape: 1 room, 1,000 members, 1 publisher closed loop, 1 KiB texts",
        fanout_args: &["--members", "1000", "--size", "1024"], contenders: [OURS, REFERENCE] },
    Scenario { name: "fanout-100-1KiB-deflate", what: "this server with permessage-deflate negotiated by every member against without: 100 members, 1 KiB chat-like texts",
        fanout_args: &["--members", "100", "--size", "1024"], contenders: [COMPRESSED, OURS] },
    Scenario { name: "saturate-1000x40", what: "saturating (favours servers that write a member's queue in one write): 1,000 members, 40 publishers at 18/s each, 720,000 deliveries/s offered, 64 B",
        fanout_args: &["--members", "1000", "--publishers", "40", "--rate", "18", "--size", "64"], contenders: [OURS, REFERENCE] },
    Scenario { name: "redis-fanout-10-64B", what: "through Redis, 2 instances and redis-server on core 0: 1 room, 10 members split over both, 2 closed-loop publishers (one on each), 64 B texts; the embedded engine under the same load",
        fanout_args: &["--members", "10", "--publishers", "2", "--size", "64"], contenders: [ON_REDIS, OURS] },
    Scenario { name: "redis-fanout-10-1KiB", what: "through Redis, 2 instances and redis-server on core 0: 1 room, 10 members split over both, 2 closed-loop publishers (one on each), 1 KiB texts; the embedded engine under the same load",
        fanout_args: &["--members", "10", "--publishers", "2", "--size", "1024"], contenders: [ON_REDIS, OURS] },
    Scenario { name: "redis-fanout-100-64B", what: "through Redis, 2 instances and redis-server on core 0: 1 room, 100 members split over both, 2 closed-loop publishers (one on each), 64 B texts; the embedded engine under the same load",
        fanout_args: &["--members", "100", "--publishers", "2", "--size", "64"], contenders: [ON_REDIS, OURS] },
    Scenario { name: "redis-fanout-100-1KiB", what: "through Redis, 2 instances and redis-server on core 0: 1 room, 100 members split over both, 2 closed-loop publishers (one on each), 1 KiB texts; the embedded engine under the same load",
        fanout_args: &["--members", "100", "--publishers", "2", "--size", "1024"], contenders: [ON_REDIS, OURS] },
    Scenario { name: "redis-fanout-1000-64B", what: "through Redis, 2 instances and redis-server on core 0: 1 room, 1,000 members split over both, 2 closed-loop publishers (one on each), 64 B texts; the embedded engine under the same load",
        fanout_args: &["--members", "1000", "--publishers", "2", "--size", "64"], contenders: [ON_REDIS, OURS] },
    Scenario { name: "redis-fanout-1000-1KiB", what: "through Redis, 2 instances and redis-server on core 0: 1 room, 1,000 members split over both, 2 closed-loop publishers (one on each), 1 KiB texts; the embedded engine under the same load",
        fanout_args: &["--members", "1000", "--publishers", "2", "--size", "1024"], contenders: [ON_REDIS, OURS] },
    Scenario { name: "redis-paced-1000-64B", what: "through Redis, 2 instances and redis-server on core 0, paced: 1,000 members split over both, 2 publishers (one on each) at 25/s, 50,000 deliveries/s offered to both engines alike, 64 B: CPU per delivery at the same work, which closed-loop rows cannot show when one engine runs faster and so batches more",
        fanout_args: &["--members", "1000", "--publishers", "2", "--rate", "25", "--size", "64"], contenders: [ON_REDIS, OURS] },
    Scenario { name: "redis-saturate-1000x40", what: "through Redis, 2 instances and redis-server on core 0, saturating: 1,000 members split over both, 40 publishers (20 on each) at 18/s, 720,000 deliveries/s offered, 64 B; the embedded engine under the same load",
        fanout_args: &["--members", "1000", "--publishers", "40", "--rate", "18", "--size", "64"], contenders: [ON_REDIS, OURS] },
];

impl Scenario {
    /// Rows of two instances on Redis beside the embedded engine.
    fn is_through_redis(&self) -> bool {
        self.contenders.contains(&ON_REDIS)
    }
}

/// Instances in the rows through Redis.
const INSTANCES_ON_REDIS: usize = 2;

fn contenders() -> Vec<Contender> {
    let release = target_dir().join("release");
    let static_dir = workspace_root().join("static");
    // Publish limits far above what one closed-loop publisher reaches: the rows measure
    // fan-out, not the rate limit (20/s with bursts of 40 by default).
    let ours = [
        "--addr",
        "127.0.0.1:0",
        "--log",
        "warn",
        "--publish-rate",
        "1000000",
        "--publish-burst",
        "1000000",
        "--static-dir",
    ]
    .map(String::from)
    .into_iter()
    .chain([static_dir.to_string_lossy().into_owned()])
    .collect::<Vec<_>>();
    vec![
        Contender {
            name: OURS,
            binary: release.join("server"),
            args: ours.clone(),
            fanout_args: vec![],
            reports_skipped: false,
            deployment: Deployment::Alone,
        },
        Contender {
            name: REFERENCE,
            binary: release.join("ref-broadcast"),
            args: vec![],
            fanout_args: vec![],
            reports_skipped: true,
            deployment: Deployment::Alone,
        },
        Contender {
            name: COMPRESSED,
            binary: release.join("server"),
            args: [ours.clone(), vec!["--compression".into()]].concat(),
            fanout_args: vec!["--deflate".into()],
            reports_skipped: false,
            deployment: Deployment::Alone,
        },
        Contender {
            name: ON_REDIS,
            binary: release.join("server"),
            args: ours,
            fanout_args: vec![],
            reports_skipped: false,
            deployment: Deployment::TwoInstancesOnRedis,
        },
    ]
}

/// The rows `rows` asks for, narrowed to the names containing `$BENCH_ROOMS_ROWS` when set
/// (`BENCH_ROOMS_ROWS=redis-fanout-100` for a quick look at two rows).
fn chosen(rows: RoomsRows) -> Vec<&'static Scenario> {
    let filter = std::env::var("BENCH_ROOMS_ROWS").unwrap_or_default();
    SCENARIOS
        .iter()
        .filter(|scenario| rows == RoomsRows::All || scenario.is_through_redis())
        .filter(|scenario| scenario.name.contains(filter.as_str()))
        .collect()
}

pub fn rooms(
    pinning: &Pinning,
    reps: usize,
    seconds: f64,
    rows: RoomsRows,
) -> Result<(String, Vec<Value>)> {
    let contenders = contenders();
    let release = target_dir().join("release");
    let stderr_path = target_dir().join("bench/rooms-server.stderr");
    std::fs::create_dir_all(target_dir().join("bench"))?;
    let scenarios = chosen(rows);
    // Installed (or found) once; when it cannot be, the rows through Redis say why.
    let redis_server = if scenarios.iter().any(|scenario| scenario.is_through_redis()) {
        tools::ensure_redis().map_err(|error| error.to_string())
    } else {
        Err("not needed".to_owned())
    };
    let mut runs: Vec<Value> = Vec::new();
    for scenario in scenarios {
        tools::announce(&format!(
            "rooms, {}: {} ({reps} rounds)",
            scenario.name, scenario.what
        ));
        let mine: Vec<&Contender> = scenario
            .contenders
            .iter()
            .filter_map(|name| contenders.iter().find(|c| c.name == *name))
            .collect();
        for rep in 0..reps {
            for turn in 0..mine.len() {
                let contender = mine[(rep + turn) % mine.len()];
                let outcome = match contender.deployment {
                    Deployment::Alone => run_once(
                        pinning,
                        &release,
                        contender,
                        scenario,
                        seconds,
                        &stderr_path,
                    ),
                    Deployment::TwoInstancesOnRedis => redis_server
                        .as_deref()
                        .map_err(|error| error.clone().into())
                        .and_then(|redis_server| {
                            run_on_redis(
                                pinning,
                                &release,
                                redis_server,
                                contender,
                                scenario,
                                seconds,
                            )
                        }),
                };
                let mut run = match outcome {
                    Ok(run) => run,
                    Err(error) => {
                        let error = error.to_string();
                        tools::announce(&format!(
                            "rooms, {}: {} not measured: {error}",
                            scenario.name, contender.name
                        ));
                        serde_json::json!({ "error": error })
                    }
                };
                run["scenario"] = format!("rooms-{}", scenario.name).into();
                run["server"] = contender.name.into();
                run["round"] = rep.into();
                runs.push(run);
            }
        }
    }
    Ok((render(&runs, reps, seconds), runs))
}

/// One run of the generator against a fresh server.
fn run_once(
    pinning: &Pinning,
    release: &Path,
    contender: &Contender,
    scenario: &Scenario,
    seconds: f64,
    stderr_path: &Path,
) -> Result<Value> {
    let mut command = pinning.on_server(&contender.binary);
    command.current_dir(workspace_root()).args(&contender.args);
    if contender.reports_skipped {
        command.stderr(std::fs::File::create(stderr_path)?);
    } else {
        command.stderr(Stdio::null());
    }
    let server = ServerProcess::spawn(&mut command, contender.name)?;
    let generated = fanout(
        pinning,
        release,
        &["--addr", &server.addr, "--pid", &server.pid().to_string()],
        contender,
        scenario,
        seconds,
    );
    // Stopping the reference makes it print what it skipped.
    drop(server);
    let mut run = generated?;
    if contender.reports_skipped {
        let printed = std::fs::read_to_string(stderr_path).unwrap_or_default();
        run["server_skipped"] = printed
            .lines()
            .find_map(|line| line.strip_prefix("skipped "))
            .and_then(|count| count.trim().parse::<u64>().ok())
            .map_or(Value::Null, Value::from);
    }
    Ok(run)
}

/// One run of the generator against two fresh instances on a fresh redis-server, all three
/// pinned to the server core.
fn run_on_redis(
    pinning: &Pinning,
    release: &Path,
    redis_server: &Path,
    contender: &Contender,
    scenario: &Scenario,
    seconds: f64,
) -> Result<Value> {
    let redis = RedisProcess::spawn(pinning.on_server(redis_server))?;
    let mut instances = Vec::with_capacity(INSTANCES_ON_REDIS);
    for index in 0..INSTANCES_ON_REDIS {
        let stderr_path = target_dir().join(format!("bench/rooms-redis-instance-{index}.stderr"));
        let mut command = pinning.on_server(&contender.binary);
        command
            .current_dir(workspace_root())
            .args(&contender.args)
            .arg("--redis-url")
            .arg(redis.url())
            .stderr(std::fs::File::create(&stderr_path)?);
        let instance = ServerProcess::spawn(&mut command, contender.name)
            .map_err(|error| with_what_it_said(&error.to_string(), &stderr_path))?;
        instances.push((instance, stderr_path));
    }
    let mut generator_args: Vec<String> = Vec::new();
    for (instance, stderr_path) in &instances {
        instance
            .wait_ready(Duration::from_secs(10))
            .map_err(|error| with_what_it_said(&format!("an instance {error}"), stderr_path))?;
        generator_args.extend([
            "--addr".to_owned(),
            instance.addr.clone(),
            "--pid".to_owned(),
            instance.pid().to_string(),
        ]);
    }
    generator_args.push("--redis-socket".to_owned());
    generator_args.push(redis.socket().to_string_lossy().into_owned());
    let generated = fanout(
        pinning,
        release,
        &generator_args,
        contender,
        scenario,
        seconds,
    );
    // The instances go first, so none of them sees Redis vanish under it.
    drop(instances);
    drop(redis);
    generated
}

/// `error`, followed by the first lines the process wrote to `stderr_path` (the server's own
/// reason, such as a flag it does not know).
fn with_what_it_said(error: &str, stderr_path: &Path) -> Box<dyn std::error::Error> {
    let said = std::fs::read_to_string(stderr_path).unwrap_or_default();
    let said: Vec<&str> = said
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .take(3)
        .collect();
    if said.is_empty() {
        error.into()
    } else {
        format!("{error} (it said: {})", said.join(" / ")).into()
    }
}

/// Runs the generator with `addresses` (its `--addr`, `--pid` and `--redis-socket`) and the
/// scenario's load; its JSON line, with the total CPU per delivery of the server side added.
fn fanout(
    pinning: &Pinning,
    release: &Path,
    addresses: &[impl AsRef<std::ffi::OsStr>],
    contender: &Contender,
    scenario: &Scenario,
    seconds: f64,
) -> Result<Value> {
    let output = pinning
        .on_client(&release.join("fanout"))
        .args(addresses)
        .args(["--duration", &seconds.to_string()])
        .args(scenario.fanout_args)
        .args(&contender.fanout_args)
        .output()?;
    if !output.status.success() {
        let words = String::from_utf8_lossy(&output.stderr);
        let words = words.trim().trim_start_matches("Error: ");
        return Err(format!("fanout failed: {words}").into());
    }
    let mut run: Value = serde_json::from_slice(&output.stdout)?;
    run["total_cpu_us_per_delivery"] = total_cpu(&run).map_or(Value::Null, Value::from);
    Ok(run)
}

/// The server side's CPU per delivery: the server's (or the instances', summed), plus
/// Redis's when there is one.
fn total_cpu(run: &Value) -> Option<f64> {
    let server = run["server_cpu_us_per_delivery"].as_f64()?;
    let total = match run.get("redis_cpu_us_per_delivery") {
        None => server,
        Some(redis) => server + redis.as_f64()?,
    };
    Some((total * 100.0).round() / 100.0)
}

/// `median (min–max)` of `mine[key] / theirs[key]` paired by round, or `-`.
fn paired_range(mine: &[&Value], theirs: &[&Value], key: &str) -> String {
    let ratios: Vec<f64> = mine
        .iter()
        .filter_map(|run| {
            let other = theirs.iter().find(|other| other["round"] == run["round"])?;
            Some(run[key].as_f64()? / other[key].as_f64()?)
        })
        .filter(|ratio| ratio.is_finite())
        .collect();
    if ratios.is_empty() {
        return "-".to_owned();
    }
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.2} ({low:.2}–{high:.2})", median(ratios))
}

/// The measured runs of `name` in `scenario`.
fn measured<'a>(runs: &'a [Value], scenario: &Scenario, name: &str) -> Vec<&'a Value> {
    runs.iter()
        .filter(|run| {
            run["scenario"] == format!("rooms-{}", scenario.name).as_str()
                && run["server"] == name
                && run.get("error").is_none()
        })
        .collect()
}

/// The median of `key` over `runs` with `digits` decimals, or `-`.
fn median_cell(runs: &[&Value], key: &str, digits: usize) -> String {
    let owned: Vec<Value> = runs.iter().map(|run| (*run).clone()).collect();
    number(median_of(&owned, key), digits)
}

/// Whether any run, measured or not, belongs to one of these scenarios.
fn any_run_of<'a>(runs: &[Value], mut scenarios: impl Iterator<Item = &'a Scenario>) -> bool {
    scenarios.any(|scenario| {
        runs.iter()
            .any(|run| run["scenario"] == format!("rooms-{}", scenario.name).as_str())
    })
}

fn render(runs: &[Value], reps: usize, seconds: f64) -> String {
    let mut out = String::new();
    if any_run_of(runs, SCENARIOS.iter().filter(|s| !s.is_through_redis())) {
        out.push_str(&render_alone(runs, reps, seconds));
    }
    if any_run_of(runs, SCENARIOS.iter().filter(|s| s.is_through_redis())) {
        out.push_str(&render_on_redis(runs, reps, seconds));
    }
    // Failures, once per server and reason, with the scenarios they hit.
    let mut failures: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for run in runs {
        if let (Some(server), Some(error), Some(scenario)) = (
            run["server"].as_str(),
            run["error"].as_str(),
            run["scenario"].as_str(),
        ) {
            let scenarios = failures.entry((server, error)).or_default();
            if !scenarios.contains(&scenario) {
                scenarios.push(scenario);
            }
        }
    }
    for ((server, error), scenarios) in failures {
        out.push_str(&format!(
            "\n**{server} not measured** in {}: {error}\n",
            scenarios.join(", ")
        ));
    }
    out
}

/// The rows of one process against another: this server, the reference, compression.
fn render_alone(runs: &[Value], reps: usize, seconds: f64) -> String {
    let of = |scenario: &Scenario, name: &str| measured(runs, scenario, name);
    let mut out = format!(
        "\nRooms fan-out: medians of {reps} rounds of {seconds} s (after 1 s of warm-up; then up to 2 s for the last deliveries). \
         Offered: publishes sent while measuring x members. Missing: deliveries of acknowledged publishes that never came \
         (skipped, queued past the drain, or lost with a closed member). The reference's own count of what its receivers skipped \
         covers the whole run. CPU per delivery counts deliveries to members only; the publishers' own copies and acks are work both servers do on top. \
         A generator CPU share near 1.0 means the generator set the pace.\n\n"
    );
    out.push_str("| rooms scenario | server | deliveries/s | offered/s | missing | skipped (server's count) | members closed | server CPU µs/delivery | p50 ms | p99 ms | generator CPU share |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let scenarios = || SCENARIOS.iter().filter(|s| !s.is_through_redis());
    for scenario in scenarios() {
        for name in scenario.contenders {
            let measured = of(scenario, name);
            if measured.is_empty() {
                continue;
            }
            out.push_str(&row([
                scenario.name.to_owned(),
                name.to_owned(),
                median_cell(&measured, "deliveries_per_sec", 0),
                median_cell(&measured, "offered_per_sec", 0),
                median_cell(&measured, "missing", 0),
                median_cell(&measured, "server_skipped", 0),
                median_cell(&measured, "closed_members", 0),
                median_cell(&measured, "server_cpu_us_per_delivery", 2),
                median_cell(&measured, "p50_ms", 2),
                median_cell(&measured, "p99_ms", 2),
                median_cell(&measured, "generator_cpu_share", 2),
            ]));
        }
    }
    out.push_str(
        "\n| rooms, paired by round: median (range) | scenario | server CPU per delivery (lower is better) | deliveries/s | p99 (lower is better) |\n|---|---|---:|---:|---:|\n",
    );
    for scenario in scenarios() {
        let [first, second] = scenario.contenders;
        let (mine, theirs) = (of(scenario, first), of(scenario, second));
        if mine.is_empty() || theirs.is_empty() {
            continue;
        }
        out.push_str(&row([
            format!("{first} / {second}"),
            scenario.name.to_owned(),
            paired_range(&mine, &theirs, "server_cpu_us_per_delivery"),
            paired_range(&mine, &theirs, "deliveries_per_sec"),
            paired_range(&mine, &theirs, "p99_ms"),
        ]));
    }
    out.push_str(
        "\nTargets (issue 18): CPU per delivery at most 1.0x the broadcast reference at 100 and 1,000 members; \
         with compression, at most 1.5x the uncompressed; saturating: every delivery made, none skipped.\n",
    );
    out
}

/// The rows through Redis beside the embedded engine, with what Redis did per publish.
fn render_on_redis(runs: &[Value], reps: usize, seconds: f64) -> String {
    let of = |scenario: &Scenario, name: &str| measured(runs, scenario, name);
    let scenarios = || SCENARIOS.iter().filter(|s| s.is_through_redis());
    let mut out = format!(
        "\nRooms through Redis: medians of {reps} rounds of {seconds} s. `{ON_REDIS}`: two instances of this server given one \
         redis-server (unix socket, no persistence) with `--redis-url`; members, then publishers, spread over them in turn, so \
         half the members are on the other instance than any one publisher. `{OURS}`: the embedded engine, one process, the same \
         load, in the same round. Pinning: both instances and redis-server share core 0, the core the embedded server has alone; \
         the generator has core 1. On two cores this is the only split that gives both sides the same CPU, so these rows compare \
         work per core, not a deployment scaled out over more machines. Instances CPU: both instances summed; total: instances plus \
         redis-server. Redis commands per publish count the commands the script runs as well as the script call (EVALSHA) itself; \
         the generator's own INFO is left out; per publish sent while measuring, exact to within the publishes in flight at \
         the two readings (one per closed-loop publisher). Gaps and duplicates: offsets a member saw skipped or twice.\n\n"
    );
    out.push_str("| rooms through Redis | engine | deliveries/s | offered/s | missing | gaps | duplicates | members closed | instances CPU µs/delivery | redis-server CPU µs/delivery | total CPU µs/delivery | p50 ms | p99 ms | EVALSHA/publish | Redis commands/publish | generator CPU share |\n");
    out.push_str(
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for scenario in scenarios() {
        for name in scenario.contenders {
            let measured = of(scenario, name);
            if measured.is_empty() {
                continue;
            }
            out.push_str(&row([
                scenario.name.to_owned(),
                name.to_owned(),
                median_cell(&measured, "deliveries_per_sec", 0),
                median_cell(&measured, "offered_per_sec", 0),
                median_cell(&measured, "missing", 0),
                median_cell(&measured, "gaps", 0),
                median_cell(&measured, "duplicates", 0),
                median_cell(&measured, "closed_members", 0),
                median_cell(&measured, "server_cpu_us_per_delivery", 2),
                median_cell(&measured, "redis_cpu_us_per_delivery", 2),
                median_cell(&measured, "total_cpu_us_per_delivery", 2),
                median_cell(&measured, "p50_ms", 2),
                median_cell(&measured, "p99_ms", 2),
                median_cell(&measured, "redis_evalsha_per_publish", 3),
                median_cell(&measured, "redis_commands_per_publish", 2),
                median_cell(&measured, "generator_cpu_share", 2),
            ]));
        }
    }
    let mut paired = String::new();
    for scenario in scenarios() {
        let [first, second] = scenario.contenders;
        let (mine, theirs) = (of(scenario, first), of(scenario, second));
        if mine.is_empty() || theirs.is_empty() {
            continue;
        }
        paired.push_str(&row([
            format!("{first} / {second}"),
            scenario.name.to_owned(),
            paired_range(&mine, &theirs, "deliveries_per_sec"),
            paired_range(&mine, &theirs, "total_cpu_us_per_delivery"),
            paired_range(&mine, &theirs, "p50_ms"),
            paired_range(&mine, &theirs, "p99_ms"),
        ]));
    }
    if !paired.is_empty() {
        out.push_str(
            "\n| rooms, Redis / embedded, paired by round: median (range) | scenario | deliveries/s | total CPU per delivery (lower is better) | p50 (lower is better) | p99 (lower is better) |\n|---|---|---:|---:|---:|---:|\n",
        );
        out.push_str(&paired);
    }
    // What Redis ran, command by command, in the first measured round of each row.
    let mut breakdown = String::new();
    for scenario in scenarios() {
        let Some(first) = of(scenario, ON_REDIS).into_iter().next() else {
            continue;
        };
        let Some(commands) = first["redis_commands"].as_object() else {
            continue;
        };
        let listed: Vec<String> = commands
            .iter()
            .filter_map(|(name, calls)| {
                let calls = calls.as_f64()?;
                // Two decimals, unless that would round a command that ran away.
                Some(if calls >= 0.01 {
                    format!("{name} {calls:.2}")
                } else {
                    format!("{name} {calls:.4}")
                })
            })
            .collect();
        breakdown.push_str(&format!("- {}: {}\n", scenario.name, listed.join(", ")));
    }
    if !breakdown.is_empty() {
        out.push_str(
            "\nCommands Redis ran per publish while measuring (the first measured round of each row; those the script runs included):\n\n",
        );
        out.push_str(&breakdown);
    }
    out.push_str(
        "\nTargets (issue 19): through Redis, deliveries/s at least 0.8x the embedded engine on the same rows; \
         exactly 1 EVALSHA per publish.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: &str, server: &str, round: usize, cpu: f64) -> Value {
        serde_json::json!({
            "scenario": format!("rooms-{scenario}"), "server": server, "round": round,
            "server_cpu_us_per_delivery": cpu, "deliveries_per_sec": 1000.0 / cpu, "p99_ms": cpu,
        })
    }

    #[test]
    fn ratios_pair_runs_of_the_same_round_and_show_their_range() {
        let ours = [
            run("s", OURS, 0, 2.0),
            run("s", OURS, 1, 3.0),
            run("s", OURS, 2, 9.0),
        ];
        let theirs = [
            run("s", REFERENCE, 2, 10.0),
            run("s", REFERENCE, 0, 4.0),
            run("s", REFERENCE, 1, 4.0),
        ];
        let (ours, theirs): (Vec<&Value>, Vec<&Value>) =
            (ours.iter().collect(), theirs.iter().collect());
        // Per round: 2/4, 3/4, 9/10; paired against the wrong round it would read otherwise.
        assert_eq!(
            paired_range(&ours, &theirs, "server_cpu_us_per_delivery"),
            "0.75 (0.50–0.90)"
        );
        assert_eq!(paired_range(&ours, &[], "server_cpu_us_per_delivery"), "-");
    }

    #[test]
    fn rows_through_redis_get_their_own_table_paired_with_the_embedded_engine_by_round() {
        let on_redis = |round: usize, rate: f64| {
            let mut run = serde_json::json!({
                "scenario": "rooms-redis-fanout-100-64B", "server": ON_REDIS, "round": round,
                "deliveries_per_sec": rate, "server_cpu_us_per_delivery": 3.0,
                "redis_cpu_us_per_delivery": 0.5, "redis_evalsha_per_publish": 1.0,
                "redis_commands_per_publish": 6.0, "p50_ms": 1.0, "p99_ms": 4.0,
                "redis_commands": { "evalsha": 1.0, "ping": 0.0029, "publish": 1.0, "xadd": 1.0 },
            });
            run["total_cpu_us_per_delivery"] = total_cpu(&run).map_or(Value::Null, Value::from);
            run
        };
        let embedded = |round: usize, rate: f64| {
            let mut run = serde_json::json!({
                "scenario": "rooms-redis-fanout-100-64B", "server": OURS, "round": round,
                "deliveries_per_sec": rate, "server_cpu_us_per_delivery": 2.5,
                "p50_ms": 0.5, "p99_ms": 2.0,
            });
            run["total_cpu_us_per_delivery"] = total_cpu(&run).map_or(Value::Null, Value::from);
            run
        };
        let runs = [
            on_redis(0, 80.0),
            embedded(0, 100.0),
            on_redis(1, 60.0),
            embedded(1, 50.0),
            on_redis(2, 90.0),
            embedded(2, 200.0),
        ];
        let table = render(&runs, 3, 3.0);
        // Only Redis rows ran: no table of the others.
        assert!(!table.contains("| rooms scenario |"), "{table}");
        // Instances 3.0 plus Redis 0.5 per delivery; the embedded engine has no Redis.
        assert!(
            table.contains(
                "| redis-fanout-100-64B | 2 x server on redis | 80 | - | - | - | - | - | 3.00 | 0.50 | 3.50 | 1.00 | 4.00 | 1.000 | 6.00 | - |"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "| redis-fanout-100-64B | server | 100 | - | - | - | - | - | 2.50 | - | 2.50 |"
            ),
            "{table}"
        );
        // Per round 0.8, 1.2, 0.45: the median of ratios, not 80/100 of the medians.
        assert!(
            table.contains(
                "| 2 x server on redis / server | redis-fanout-100-64B | 0.80 (0.45–1.20) | 1.40 (1.40–1.40) |"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "- redis-fanout-100-64B: evalsha 1.00, ping 0.0029, publish 1.00, xadd 1.00\n"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_server_that_fails_is_named_once_with_its_reason_and_the_others_still_show() {
        let refused = "fanout failed: the server refused the WebSocket upgrade of GET /rooms (HTTP/1.1 404 Not Found)";
        let mut runs = Vec::new();
        for round in 0..3 {
            for scenario in ["fanout-10-64B", "fanout-100-64B"] {
                runs.push(run(scenario, REFERENCE, round, 4.0));
                runs.push(serde_json::json!({
                    "error": refused, "scenario": format!("rooms-{scenario}"), "server": OURS, "round": round,
                }));
            }
        }
        let table = render(&runs, 3, 3.0);
        assert!(
            table.contains("| fanout-10-64B | broadcast | 250 |"),
            "{table}"
        );
        assert_eq!(
            table.matches("**server not measured**").count(),
            1,
            "{table}"
        );
        assert!(
            table.contains("in rooms-fanout-10-64B, rooms-fanout-100-64B: fanout failed"),
            "{table}"
        );
        // No ratio rows without both sides.
        assert!(!table.contains("| server / broadcast |"), "{table}");

        let measured: Vec<Value> = (0..3)
            .flat_map(|round| {
                [
                    run("fanout-100-64B", OURS, round, 2.0),
                    run("fanout-100-64B", REFERENCE, round, 4.0),
                ]
            })
            .collect();
        let table = render(&measured, 3, 3.0);
        assert!(
            table.contains("| server / broadcast | fanout-100-64B | 0.50 (0.50–0.50) |"),
            "{table}"
        );
    }
}
