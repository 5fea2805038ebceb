//! `cargo xtask bench presence`: a presence join storm (issue 26), measured by the
//! `presence-storm` generator: 1,000 members join one room within a second, each asking for
//! presence; on one instance (the embedded engine), and spread over two instances on one
//! redis-server. The reference is arithmetic: a server that sends every member a diff for
//! every join sends n(n-1)/2 frames (499,500 for 1,000).
//!
//! Pinning as in the rooms rows: the server (both instances and redis-server) on core 0, the
//! generator on core 1.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::bench::Pinning;
use crate::process::{RedisProcess, ServerProcess};
use crate::{Result, target_dir, tools, workspace_root};

const MEMBERS: &str = "1000";

/// Rate limits out of the way: a thousand joins within a second is the point.
const INSTANCE_FLAGS: [&str; 6] = [
    "--log",
    "warn",
    "--join-rate",
    "1000000",
    "--join-burst",
    "1000000",
];

pub fn presence(pinning: &Pinning, reps: usize) -> Result<(String, Vec<Value>)> {
    let release = target_dir().join("release");
    let redis_server = tools::ensure_redis()?;
    std::fs::create_dir_all(target_dir().join("bench"))?;
    tools::announce(&format!(
        "presence: {MEMBERS} members join one room within a second, each following presence ({reps} rounds)"
    ));
    let mut runs = Vec::new();
    for round in 0..reps {
        for through_redis in [false, true] {
            let engine = if through_redis { "redis" } else { "embedded" };
            let mut run = match run_once(pinning, &release, &redis_server, through_redis) {
                Ok(run) => run,
                Err(error) => {
                    let error = error.to_string();
                    tools::announce(&format!("presence, {engine}: not measured: {error}"));
                    serde_json::json!({ "error": error })
                }
            };
            run["scenario"] = "presence-storm".into();
            run["engine"] = engine.into();
            run["round"] = round.into();
            runs.push(run);
        }
    }
    Ok((render(&runs, reps), runs))
}

fn run_once(
    pinning: &Pinning,
    release: &Path,
    redis_server: &Path,
    through_redis: bool,
) -> Result<Value> {
    let redis = if through_redis {
        Some(RedisProcess::spawn(pinning.on_server(redis_server))?)
    } else {
        None
    };
    let static_dir = workspace_root().join("static");
    let mut instances = Vec::new();
    for index in 0..if through_redis { 2 } else { 1 } {
        let stderr_path = target_dir().join(format!("bench/presence-instance-{index}.stderr"));
        let mut command = pinning.on_server(&release.join("server"));
        command
            .current_dir(workspace_root())
            .args(["--addr", "127.0.0.1:0", "--static-dir"])
            .arg(&static_dir)
            .args(INSTANCE_FLAGS)
            .stderr(std::fs::File::create(&stderr_path)?);
        if let Some(redis) = &redis {
            command.arg("--redis-url").arg(redis.url());
        }
        let instance = ServerProcess::spawn(&mut command, "an instance")?;
        instance.wait_ready(Duration::from_secs(10))?;
        instances.push(instance);
    }
    let mut generator = pinning.on_client(&release.join("presence-storm"));
    generator.args(["--members", MEMBERS]);
    for instance in &instances {
        generator
            .args(["--addr", &instance.addr])
            .args(["--pid", &instance.pid().to_string()]);
    }
    if let Some(redis) = &redis {
        generator.args(["--pid", &redis.pid().to_string()]);
    }
    let output = generator.output()?;
    drop(instances);
    drop(redis);
    if !output.status.success() {
        let words = String::from_utf8_lossy(&output.stderr);
        return Err(format!("presence-storm failed: {}", words.trim()).into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// `median (min–max)` of `key` over the measured runs of `engine`, with `digits` decimals.
fn spread(runs: &[Value], engine: &str, key: &str, digits: usize) -> String {
    let measured: Vec<&Value> = runs
        .iter()
        .filter(|run| run["engine"] == engine && run.get("error").is_none())
        .collect();
    crate::storm_bench::spread(&measured, key, digits)
}

fn render(runs: &[Value], reps: usize) -> String {
    let mut out = format!(
        "\nPresence join storm: {MEMBERS} members join one room within a second (evenly spread), each \
         with `presence: true`, open mode. Medians of {reps} rounds (range). Frames and bytes: every \
         presence frame every member got until it knew the whole room (the snapshot after its \
         `joined` and the changes after it). Full list: from the first join until the last member \
         knew all {MEMBERS}. CPU: the server processes (both instances and redis-server through \
         Redis) over the same span, in seconds. The reference is arithmetic: a server that sends \
         every member a diff for every join sends n(n-1)/2 = 499,500 frames. Server processes on \
         core 0, the generator on core 1.\n\n\
         | engine | presence frames | per member (mean) | per member (most) | bytes | full list ms | server CPU s | naive frames |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for engine in ["embedded", "redis"] {
        out += &format!(
            "| {engine} | {} | {} | {} | {} | {} | {} | 499,500 |\n",
            spread(runs, engine, "frames", 0),
            spread(runs, engine, "frames_per_member", 1),
            spread(runs, engine, "most_frames_per_member", 0),
            spread(runs, engine, "bytes", 0),
            spread(runs, engine, "full_list_ms", 0),
            spread(runs, engine, "server_cpu_s", 2),
        );
    }
    out
}
