//! `cargo xtask bench storm`: a reconnect storm (issue 24, section 4), measured by the `storm`
//! generator. Two instances of this server on one redis-server; 5,000 members in 50 rooms on
//! the first, publishers on the second publishing into every room; the generator kills the
//! first (SIGKILL) and every member comes back on the second with its position, after the
//! clients' backoff delay: full jitter (what the clients do) or, to see what jitter is for,
//! the whole window for everyone (all arrive together, as clients without jitter would).
//!
//! Pinning as in the rooms rows through Redis: both instances and redis-server on core 0, the
//! generator on core 1. Every round runs both modes back to back, their order rotated, and
//! the ratios are paired by round (these machines drift ±25% between rounds).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::bench::{Pinning, median, row};
use crate::process::{RedisProcess, ServerProcess};
use crate::{Result, target_dir, tools, workspace_root};

/// How the members come back.
struct Mode {
    name: &'static str,
    storm_args: &'static [&'static str],
}

const JITTER: &str = "full jitter";
const NO_JITTER: &str = "no jitter";

const MODES: [Mode; 2] = [
    Mode {
        name: JITTER,
        storm_args: &[],
    },
    Mode {
        name: NO_JITTER,
        storm_args: &["--no-jitter"],
    },
];

/// The storm's shape, given to the generator (its defaults, said here so the table can).
const SHAPE: [&str; 10] = [
    "--members",
    "5000",
    "--rooms",
    "50",
    "--publishers",
    "5",
    "--rate",
    "2",
    "--flow",
    "2",
];

/// The instances' flags beyond the address: rate limits out of the way (5,000 joins within a
/// second is the point), a history that holds every message of the run, queues for a replay.
const INSTANCE_FLAGS: [&str; 16] = [
    "--log",
    "warn",
    "--publish-rate",
    "1000000",
    "--publish-burst",
    "1000000",
    "--join-rate",
    "1000000",
    "--join-burst",
    "1000000",
    "--room-history",
    "100000",
    "--room-history-bytes",
    "67108864",
    "--room-queue-bytes",
    "1048576",
];

pub fn storm(pinning: &Pinning, reps: usize) -> Result<(String, Vec<Value>)> {
    let release = target_dir().join("release");
    let redis_server = tools::ensure_redis()?;
    std::fs::create_dir_all(target_dir().join("bench"))?;
    tools::announce(&format!(
        "storm: 5,000 members in 50 rooms killed on one instance, back on the other, with and without jitter ({reps} rounds)"
    ));
    let mut runs = Vec::new();
    for round in 0..reps {
        for turn in 0..MODES.len() {
            let mode = &MODES[(round + turn) % MODES.len()];
            let mut run = match run_once(pinning, &release, &redis_server, mode) {
                Ok(run) => run,
                Err(error) => {
                    let error = error.to_string();
                    tools::announce(&format!("storm, {}: not measured: {error}", mode.name));
                    serde_json::json!({ "error": error })
                }
            };
            run["scenario"] = "storm".into();
            run["mode"] = mode.name.into();
            run["round"] = round.into();
            runs.push(run);
        }
    }
    Ok((render(&runs, reps), runs))
}

/// One storm on two fresh instances and a fresh redis-server.
fn run_once(pinning: &Pinning, release: &Path, redis_server: &Path, mode: &Mode) -> Result<Value> {
    let redis = RedisProcess::spawn(pinning.on_server(redis_server))?;
    let static_dir = workspace_root().join("static");
    let mut instances = Vec::new();
    for index in 0..2 {
        let stderr_path = target_dir().join(format!("bench/storm-instance-{index}.stderr"));
        let mut command = pinning.on_server(&release.join("server"));
        command
            .current_dir(workspace_root())
            .args(["--addr", "127.0.0.1:0", "--static-dir"])
            .arg(&static_dir)
            .args(INSTANCE_FLAGS)
            .arg("--redis-url")
            .arg(redis.url())
            .stderr(std::fs::File::create(&stderr_path)?);
        let instance = ServerProcess::spawn(&mut command, "an instance")?;
        instance.wait_ready(Duration::from_secs(10))?;
        instances.push(instance);
    }
    let (doomed, survivor) = (&instances[0], &instances[1]);
    let output = pinning
        .on_client(&release.join("storm"))
        .args(["--doomed", &doomed.addr])
        .args(["--doomed-pid", &doomed.pid().to_string()])
        .args(["--survivor", &survivor.addr])
        .args(["--survivor-pid", &survivor.pid().to_string()])
        .args(["--redis-pid", &redis.pid().to_string()])
        .args(SHAPE)
        .args(mode.storm_args)
        .output()?;
    // The survivor first, so it never sees Redis vanish under it; the killed one is reaped.
    drop(instances);
    drop(redis);
    if !output.status.success() {
        let words = String::from_utf8_lossy(&output.stderr);
        return Err(format!("storm failed: {}", words.trim()).into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The runs of `mode` that were measured.
fn of_mode<'a>(runs: &'a [Value], mode: &str) -> Vec<&'a Value> {
    runs.iter()
        .filter(|run| run["mode"] == mode && run.get("error").is_none())
        .collect()
}

/// `median (min–max)` of `key` over `runs`, with `digits` decimals, or `-`.
pub(crate) fn spread(runs: &[&Value], key: &str, digits: usize) -> String {
    let values: Vec<f64> = runs.iter().filter_map(|run| run[key].as_f64()).collect();
    if values.is_empty() {
        return "-".to_owned();
    }
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let middle = median(values);
    if values_equal(low, high) {
        format!("{middle:.digits$}")
    } else {
        format!("{middle:.digits$} ({low:.digits$}–{high:.digits$})")
    }
}

fn values_equal(a: f64, b: f64) -> bool {
    (a - b).abs() < f64::EPSILON
}

/// `median (min–max)` over rounds of `no_jitter[key] / jitter[key]`, or `-`.
fn paired(no_jitter: &[&Value], jitter: &[&Value], key: &str) -> String {
    let ratios: Vec<f64> = no_jitter
        .iter()
        .filter_map(|run| {
            let other = jitter.iter().find(|other| other["round"] == run["round"])?;
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

fn render(runs: &[Value], reps: usize) -> String {
    let mut out = format!(
        "\nReconnect storm: 5,000 members in 50 rooms on one instance, 5 publishers on the other publishing 2 a second into \
         every room (10,000 deliveries/s); after 2 s the generator kills the first instance (SIGKILL) and every member comes \
         back on the second with its position, after its backoff delay (`client_core::backoff`, first window 0.5 s: a random \
         part of it with full jitter, all of it for everyone without). Medians of {reps} rounds (range). Back: `joined` with \
         `recovered: true`, counted from the kill. Last attempt: from the start of the attempt that succeeded to its \
         `joined`. Peaks: the busiest 100 ms, per second. CPU from the kill until the last member was back, average and \
         busiest 100 ms, in cores. Listen overflows: the kernel's count (the whole machine's) of connections dropped \
         because a listen queue was full, during the storm. Both instances and redis-server on core 0, the generator on \
         core 1.\n\n"
    );
    out.push_str("| storm | last member back ms | back p50 ms | back p99 ms | last attempt p50 ms | last attempt p99 ms | last attempt max ms | peak attempts/s | peak joins/s | survivor CPU s | survivor cores (avg) | survivor cores (busiest) | redis-server CPU s | redis-server cores (busiest) | listen overflows | attempts failed | joins held | not recovered | gaps | duplicates | incomplete | generator cores |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for mode in &MODES {
        let measured = of_mode(runs, mode.name);
        if measured.is_empty() {
            continue;
        }
        let cell = |key: &str, digits: usize| spread(&measured, key, digits);
        out.push_str(&row([
            mode.name.to_owned(),
            cell("back_max_ms", 0),
            cell("back_p50_ms", 0),
            cell("back_p99_ms", 0),
            cell("attempt_p50_ms", 0),
            cell("attempt_p99_ms", 0),
            cell("attempt_max_ms", 0),
            cell("peak_attempts_per_sec", 0),
            cell("peak_joins_per_sec", 0),
            cell("survivor_cpu_s", 2),
            cell("survivor_cores", 2),
            cell("survivor_peak_cores", 2),
            cell("redis_cpu_s", 2),
            cell("redis_peak_cores", 2),
            cell("listen_overflows", 0),
            cell("failed_attempts", 0),
            cell("held_joins", 0),
            cell("not_recovered", 0),
            cell("gaps", 0),
            cell("duplicates", 0),
            cell("incomplete", 0),
            cell("generator_cores", 2),
        ]));
    }
    let (no_jitter, jitter) = (of_mode(runs, NO_JITTER), of_mode(runs, JITTER));
    if !no_jitter.is_empty() && !jitter.is_empty() {
        out.push_str(
            "\n| storm, no jitter / full jitter, paired by round: median (range) | last member back | peak attempts/s | peak joins/s | survivor cores (busiest) | last attempt p99 |\n|---|---:|---:|---:|---:|---:|\n",
        );
        out.push_str(&row([
            "no jitter / full jitter".to_owned(),
            paired(&no_jitter, &jitter, "back_max_ms"),
            paired(&no_jitter, &jitter, "peak_attempts_per_sec"),
            paired(&no_jitter, &jitter, "peak_joins_per_sec"),
            paired(&no_jitter, &jitter, "survivor_peak_cores"),
            paired(&no_jitter, &jitter, "attempt_p99_ms"),
        ]));
    }
    for run in runs {
        if let (Some(mode), Some(error)) = (run["mode"].as_str(), run["error"].as_str()) {
            out.push_str(&format!(
                "\n**{mode}, round {} not measured**: {error}\n",
                run["round"]
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: &str, round: usize, back_max_ms: f64, peak_joins: f64) -> Value {
        serde_json::json!({
            "scenario": "storm", "mode": mode, "round": round,
            "back_max_ms": back_max_ms, "peak_joins_per_sec": peak_joins,
            "not_recovered": 0, "gaps": 0,
        })
    }

    #[test]
    fn both_modes_show_medians_with_ranges_and_ratios_paired_by_round() {
        let runs = [
            run(JITTER, 0, 700.0, 10_000.0),
            run(NO_JITTER, 0, 1400.0, 30_000.0),
            run(NO_JITTER, 1, 900.0, 20_000.0),
            run(JITTER, 1, 600.0, 10_000.0),
            run(JITTER, 2, 800.0, 12_000.0),
            serde_json::json!({"error": "storm failed: no", "mode": NO_JITTER, "round": 2}),
        ];
        let table = render(&runs, 3);
        assert!(
            table.contains("| full jitter | 700 (600–800) | - |"),
            "{table}"
        );
        // The failed round leaves two; their median is the mean of both.
        assert!(
            table.contains("| no jitter | 1150 (900–1400) | - |"),
            "{table}"
        );
        // Nothing wrong in any round: one number, no range.
        assert!(table.contains("| 0 | 0 | - |"), "{table}");
        // Per round 2.0 and 1.5 (round 2 has no pair): not 1150/700.
        assert!(
            table.contains("| no jitter / full jitter | 1.75 (1.50–2.00) | - | 2.50 (2.00–3.00) |"),
            "{table}"
        );
        assert!(
            table.contains("**no jitter, round 2 not measured**: storm failed: no"),
            "{table}"
        );
    }
}
