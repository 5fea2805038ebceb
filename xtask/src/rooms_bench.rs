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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use crate::bench::{Pinning, median, median_of, number, row};
use crate::process::ServerProcess;
use crate::{Result, target_dir, tools, workspace_root};

/// A server as this section runs it, and what the generator does differently for it.
struct Contender {
    name: &'static str,
    binary: PathBuf,
    args: Vec<String>,
    fanout_args: Vec<String>,
    /// It prints `skipped N` on stderr when it exits (the broadcast reference does).
    reports_skipped: bool,
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
];

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
        },
        Contender {
            name: REFERENCE,
            binary: release.join("ref-broadcast"),
            args: vec![],
            fanout_args: vec![],
            reports_skipped: true,
        },
        Contender {
            name: COMPRESSED,
            binary: release.join("server"),
            args: [ours, vec!["--compression".into()]].concat(),
            fanout_args: vec!["--deflate".into()],
            reports_skipped: false,
        },
    ]
}

pub fn rooms(pinning: &Pinning, reps: usize, seconds: f64) -> Result<(String, Vec<Value>)> {
    let contenders = contenders();
    let release = target_dir().join("release");
    let stderr_path = target_dir().join("bench/rooms-server.stderr");
    std::fs::create_dir_all(target_dir().join("bench"))?;
    let mut runs: Vec<Value> = Vec::new();
    for scenario in SCENARIOS {
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
                let mut run = match run_once(
                    pinning,
                    &release,
                    contender,
                    scenario,
                    seconds,
                    &stderr_path,
                ) {
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
    release: &std::path::Path,
    contender: &Contender,
    scenario: &Scenario,
    seconds: f64,
    stderr_path: &std::path::Path,
) -> Result<Value> {
    let mut command = pinning.on_server(&contender.binary);
    command.current_dir(workspace_root()).args(&contender.args);
    if contender.reports_skipped {
        command.stderr(std::fs::File::create(stderr_path)?);
    } else {
        command.stderr(Stdio::null());
    }
    let server = ServerProcess::spawn(&mut command, contender.name)?;
    let output = pinning
        .on_client(&release.join("fanout"))
        .args(["--addr", &server.addr, "--pid", &server.pid().to_string()])
        .args(["--duration", &seconds.to_string()])
        .args(scenario.fanout_args)
        .args(&contender.fanout_args)
        .output()?;
    // Stopping the reference makes it print what it skipped.
    drop(server);
    if !output.status.success() {
        let words = String::from_utf8_lossy(&output.stderr);
        let words = words.trim().trim_start_matches("Error: ");
        return Err(format!("fanout failed: {words}").into());
    }
    let mut run: Value = serde_json::from_slice(&output.stdout)?;
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

fn render(runs: &[Value], reps: usize, seconds: f64) -> String {
    let of = |scenario: &Scenario, name: &str| -> Vec<&Value> {
        runs.iter()
            .filter(|run| {
                run["scenario"] == format!("rooms-{}", scenario.name).as_str()
                    && run["server"] == name
                    && run.get("error").is_none()
            })
            .collect()
    };
    let median_cell = |measured: &[&Value], key: &str, digits: usize| {
        let owned: Vec<Value> = measured.iter().map(|run| (*run).clone()).collect();
        number(median_of(&owned, key), digits)
    };
    let mut out = format!(
        "\nRooms fan-out: medians of {reps} rounds of {seconds} s (after 1 s of warm-up; then up to 2 s for the last deliveries). \
         Offered: publishes sent while measuring x members. Missing: deliveries of acknowledged publishes that never came \
         (skipped, queued past the drain, or lost with a closed member). The reference's own count of what its receivers skipped \
         covers the whole run. CPU per delivery counts deliveries to members only; the publishers' own copies and acks are work both servers do on top. \
         A generator CPU share near 1.0 means the generator set the pace.\n\n"
    );
    out.push_str("| rooms scenario | server | deliveries/s | offered/s | missing | skipped (server's count) | members closed | server CPU µs/delivery | p50 ms | p99 ms | generator CPU share |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for scenario in SCENARIOS {
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
    for scenario in SCENARIOS {
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
