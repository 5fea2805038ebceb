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
//! `BENCH_BASELINE_SERVER=/path/to/server` adds a second build of this server (another
//! commit's, say) beside every contender that runs this one: `before`, `before --compression`,
//! `2 x before on redis`, in the same rounds and order rotation, so before and after are paired
//! by round like any other two servers. Each binary is given only the flags it lists in its
//! `--help` among those that are optional here (a build from before `--join-rate` existed
//! would exit 2 on it); the flags that shape the comparison (queue and history bytes) are
//! given to both explicitly, so a change of their defaults does not pass for a change of the
//! engine.
//!
//! The rows through Redis run the same fan-out with two instances of this server sharing one
//! redis-server (on a unix socket in a directory of its own, without persistence), members and
//! publishers spread over both, against the embedded engine under the same load in the same
//! round. Two instances and Redis cannot each have a core of their own on two cores: all three
//! share core 0, the core the embedded server has alone, and the generator keeps core 1, so
//! the comparison is of work on the same server-side core, and the rows say so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::bench::{Pinning, median, median_of, number, row};
use crate::instructions::instructions_in;
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
#[derive(Clone)]
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
const BEFORE: &str = "before";
const BEFORE_COMPRESSED: &str = "before --compression";
const BEFORE_ON_REDIS: &str = "2 x before on redis";

/// Each contender that runs this server, and its twin that runs `$BENCH_BASELINE_SERVER` the
/// same way.
const TWINS: [(&str, &str); 3] = [
    (OURS, BEFORE),
    (COMPRESSED, BEFORE_COMPRESSED),
    (ON_REDIS, BEFORE_ON_REDIS),
];

/// The baseline build's twin of `name`, if `name` runs this server.
fn twin(name: &str) -> Option<&'static str> {
    TWINS
        .iter()
        .find_map(|&(ours, before)| (ours == name).then_some(before))
}

/// Room queue and history bytes given to every build of this server: the defaults went from
/// 1 MiB and 256 KiB to 64 KiB each at the hub's introduction, and a row must compare engines,
/// not defaults. 1 MiB of queue also keeps the saturating row's members from being closed as
/// too slow by a queue the generator's one core can momentarily leave unread.
const ROOM_QUEUE_BYTES: &str = "1048576";
const ROOM_HISTORY_BYTES: &str = "262144";

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
    Scenario { name: "paced-100x10-64B", what: "paced, as chats run: 100 rooms of 10 members, one publisher in each at 15/s (open loop), 15,000 deliveries/s offered, 64 B texts",
        fanout_args: &["--rooms", "100", "--members", "1000", "--publishers", "100", "--rate", "15", "--size", "64"], contenders: [OURS, REFERENCE] },
    Scenario { name: "paced-100-64B", what: "paced: 1 room of 100 members, 10 publishers at 15/s each (150 publishes/s, open loop), 15,000 deliveries/s offered, 64 B texts",
        fanout_args: &["--members", "100", "--publishers", "10", "--rate", "15", "--size", "64"], contenders: [OURS, REFERENCE] },
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

    /// Who runs it: its two contenders, then the baseline's twins of those that run this
    /// server (when there is a baseline).
    fn lineup(&self, with_baseline: bool) -> Vec<&'static str> {
        let twins = self.contenders.iter().filter_map(|&name| twin(name));
        self.contenders
            .iter()
            .copied()
            .chain(twins.filter(|_| with_baseline))
            .collect()
    }

    /// The ratios shown, of the contenders in `present` (those that ran): the row's own pair;
    /// with a baseline, the same pair for the baseline build (its twin over the other's twin,
    /// or over the other itself when that one is a reference), then each build of this server
    /// over its twin, after over before.
    fn ratio_pairs(&self, present: &[&str]) -> Vec<(&'static str, &'static str)> {
        let [first, second] = self.contenders;
        let has = |name: &str| present.contains(&name);
        let mut pairs = vec![(first, second)];
        if let Some(first_twin) = twin(first).filter(|name| has(name)) {
            let second_twin = twin(second).filter(|name| has(name)).unwrap_or(second);
            pairs.push((first_twin, second_twin));
        }
        for name in self.contenders {
            if let Some(before) = twin(name).filter(|name| has(name)) {
                pairs.push((name, before));
            }
        }
        pairs.retain(|&(mine, theirs)| has(mine) && has(theirs));
        pairs
    }
}

/// Instances in the rows through Redis.
const INSTANCES_ON_REDIS: usize = 2;

/// Every contender: the reference, this server three ways, and with `baseline` the same
/// three ways for that build.
fn contenders(baseline: Option<&Path>) -> Vec<Contender> {
    let release = target_dir().join("release");
    let ours = release.join("server");
    let reference = Contender {
        name: REFERENCE,
        binary: release.join("ref-broadcast"),
        args: vec![],
        fanout_args: vec![],
        reports_skipped: true,
        deployment: Deployment::Alone,
    };
    let mut all = vec![reference];
    all.extend(server_contenders(&ours, [OURS, COMPRESSED, ON_REDIS]));
    if let Some(baseline) = baseline {
        all.extend(server_contenders(
            baseline,
            [BEFORE, BEFORE_COMPRESSED, BEFORE_ON_REDIS],
        ));
    }
    all
}

/// `binary` alone, with `--compression`, and as two instances on Redis, under `names`.
fn server_contenders(binary: &Path, names: [&'static str; 3]) -> [Contender; 3] {
    let args = server_args(&help_of(binary));
    let [alone, compressed, on_redis] = names;
    let contender = |name, args: Vec<String>, fanout_args: Vec<String>, deployment| Contender {
        name,
        binary: binary.to_owned(),
        args,
        fanout_args,
        reports_skipped: false,
        deployment,
    };
    [
        contender(alone, args.clone(), vec![], Deployment::Alone),
        contender(
            compressed,
            [args.clone(), vec!["--compression".into()]].concat(),
            vec!["--deflate".into()],
            Deployment::Alone,
        ),
        contender(on_redis, args, vec![], Deployment::TwoInstancesOnRedis),
    ]
}

/// What `binary --help` prints (empty when it cannot be run: the run then says why).
fn help_of(binary: &Path) -> String {
    std::process::Command::new(binary)
        .arg("--help")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

/// The flags a build of this server is started with, given the `--help` it prints: limits far
/// above what the generator reaches, so the rows measure fan-out, not the limits; the queue
/// and history bytes explicit; and the join limit only for a build that has one (an older
/// build exits 2 on a flag it does not know).
fn server_args(help: &str) -> Vec<String> {
    let static_dir = workspace_root().join("static");
    let mut args: Vec<String> = [
        "--addr",
        "127.0.0.1:0",
        "--log",
        "warn",
        // 20/s with bursts of 40 by default.
        "--publish-rate",
        "1000000",
        "--publish-burst",
        "1000000",
        "--room-queue-bytes",
        ROOM_QUEUE_BYTES,
        "--room-history-bytes",
        ROOM_HISTORY_BYTES,
    ]
    .map(String::from)
    .into();
    // 10/s with bursts of 20 by default, per connection.
    if help.contains("--join-rate") {
        args.extend(["--join-rate", "1000000", "--join-burst", "1000000"].map(String::from));
    }
    args.push("--static-dir".into());
    args.push(static_dir.to_string_lossy().into_owned());
    args
}

/// `$BENCH_BASELINE_SERVER`: a second build of this server to run beside this one.
fn baseline() -> Result<Option<PathBuf>> {
    match std::env::var_os("BENCH_BASELINE_SERVER") {
        None => Ok(None),
        Some(path) if path.is_empty() => Ok(None),
        Some(path) => {
            let path = PathBuf::from(path);
            if path.is_file() {
                Ok(Some(path))
            } else {
                Err(format!(
                    "BENCH_BASELINE_SERVER={} is not a file (build it first: cargo build --release -p server)",
                    path.display()
                )
                .into())
            }
        }
    }
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
    let baseline = baseline()?;
    if let Some(baseline) = &baseline {
        tools::announce(&format!(
            "rooms: `{BEFORE}` is {} (BENCH_BASELINE_SERVER), beside every build of this server",
            baseline.display()
        ));
    }
    let contenders = contenders(baseline.as_deref());
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
            .lineup(baseline.is_some())
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
    command
        .current_dir(workspace_root())
        .args(&contender.args)
        .stderr(std::fs::File::create(stderr_path)?);
    let server = ServerProcess::spawn(&mut command, contender.name)
        .map_err(|error| with_what_it_said(&error.to_string(), stderr_path))?;
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

/// The paced rows counted under callgrind, at a twentieth of their rate: a server under
/// callgrind runs some 50 times slower, and must still keep up for the count to be of the same
/// work (one delivery per wake-up, as at the full rate, where a room's messages are 6.7 ms
/// apart or more and a member's queue never holds two).
#[rustfmt::skip]
const INSTRUCTION_ROWS: &[(&str, &str, &[&str])] = &[
    ("paced-100x10-64B", "100 rooms of 10, one publisher each at 0.75/s",
        &["--rooms", "100", "--members", "1000", "--publishers", "100", "--rate", "0.75", "--size", "64"]),
    ("paced-100-64B", "1 room of 100, 10 publishers at 0.75/s each",
        &["--members", "100", "--publishers", "10", "--rate", "0.75", "--size", "64"]),
];

/// Seconds of publishing in the two runs whose difference is counted.
const INSTRUCTION_SECONDS: [u32; 2] = [2, 12];

/// `cargo xtask bench instructions rooms`: user-space instructions per delivery under
/// `valgrind --tool=callgrind` in the paced rows, this server (and the baseline, with
/// `BENCH_BASELINE_SERVER`) and the broadcast reference. Marginal: the difference between a
/// run of 2 s and one of 12 s of publishing, over the difference in deliveries the members
/// counted, which cancels start-up, the thousand handshakes and joins, and shutdown. The
/// publishers' acks and own copies are in the count, as they are in CPU per delivery.
pub fn rooms_instructions(pinning: &Pinning, release: &Path) -> Result<(String, Vec<Value>)> {
    let valgrind = tools::ensure_valgrind()?;
    let baseline = baseline()?;
    let mut servers: Vec<(&str, PathBuf, Vec<String>)> = Vec::new();
    let ours = release.join("server");
    servers.push((OURS, ours.clone(), server_args(&help_of(&ours))));
    if let Some(baseline) = baseline {
        let args = server_args(&help_of(&baseline));
        servers.push((BEFORE, baseline, args));
    }
    servers.push((REFERENCE, release.join("ref-broadcast"), vec![]));
    let out_dir = target_dir().join("bench/callgrind");
    std::fs::create_dir_all(&out_dir)?;
    let mut runs = Vec::new();
    for (row_name, what, fanout_args) in INSTRUCTION_ROWS {
        tools::announce(&format!(
            "rooms, instructions per delivery under callgrind, {row_name}: {what}"
        ));
        for (name, binary, args) in &servers {
            let mut counted = Vec::new();
            for seconds in INSTRUCTION_SECONDS {
                let out_file = out_dir.join(format!(
                    "rooms-{row_name}-{}-{seconds}s.out",
                    name.replace(' ', "_")
                ));
                let _ = std::fs::remove_file(&out_file);
                let stderr_path = target_dir().join("bench/rooms-callgrind.stderr");
                let mut server = pinning.on_server(&valgrind);
                server
                    .current_dir(workspace_root())
                    .arg("--tool=callgrind")
                    .arg(format!("--callgrind-out-file={}", out_file.display()))
                    .arg(binary)
                    .args(args)
                    .stderr(std::fs::File::create(&stderr_path)?);
                let running = ServerProcess::spawn(&mut server, name)
                    .map_err(|error| with_what_it_said(&error.to_string(), &stderr_path))?;
                let output = pinning
                    .on_client(&release.join("fanout"))
                    .args(["--addr", &running.addr])
                    .args(["--warmup", "0", "--drain", "5"])
                    .args(["--duration", &seconds.to_string()])
                    .args(*fanout_args)
                    .output()?;
                // SIGTERM: both end, and callgrind writes its file.
                drop(running);
                if !output.status.success() {
                    return Err(format!(
                        "fanout failed under callgrind for {name}: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    )
                    .into());
                }
                let run: Value = serde_json::from_slice(&output.stdout)?;
                let deliveries = run["deliveries_whole_run"]
                    .as_u64()
                    .ok_or("fanout reported no deliveries_whole_run")?;
                let missing = run["missing"].as_u64().unwrap_or(0);
                counted.push((instructions_in(&out_file)?, deliveries, missing));
            }
            let [
                (few, few_deliveries, few_missing),
                (many, many_deliveries, many_missing),
            ] = counted[..]
            else {
                unreachable!("one count per run length");
            };
            let per_delivery = marginal(few, few_deliveries, many, many_deliveries);
            runs.push(serde_json::json!({
                "scenario": format!("rooms-instructions-{row_name}"),
                "server": name,
                "instructions": [few, many],
                "deliveries": [few_deliveries, many_deliveries],
                "missing": few_missing + many_missing,
                "instructions_per_delivery": per_delivery.map(f64::round),
            }));
        }
    }
    Ok((render_instructions(&runs), runs))
}

/// Instructions per delivery between two runs, or `None` when the longer run delivered no
/// more than the shorter one.
fn marginal(few: u64, few_deliveries: u64, many: u64, many_deliveries: u64) -> Option<f64> {
    (many_deliveries > few_deliveries)
        .then(|| (many as f64 - few as f64) / (many_deliveries - few_deliveries) as f64)
}

fn render_instructions(runs: &[Value]) -> String {
    let per_delivery = |row: &str, name: &str| {
        runs.iter()
            .find(|run| {
                run["scenario"] == format!("rooms-instructions-{row}").as_str()
                    && run["server"] == name
            })
            .and_then(|run| run["instructions_per_delivery"].as_f64())
    };
    let missing = |row: &str| {
        runs.iter()
            .filter(|run| run["scenario"] == format!("rooms-instructions-{row}").as_str())
            .filter_map(|run| run["missing"].as_u64())
            .sum::<u64>()
    };
    let [few, many] = INSTRUCTION_SECONDS;
    let mut out = format!(
        "\n| user-space instructions per delivery (callgrind; marginal, {few} s to {many} s of publishing at 1/20 of the row's rate; acks and publishers' copies included) | row | {OURS} | {BEFORE} | {REFERENCE} | {OURS} / {REFERENCE} | {BEFORE} / {REFERENCE} | {OURS} / {BEFORE} | missing (all runs) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for (row_name, what, _) in INSTRUCTION_ROWS {
        let (ours, before, reference) = (
            per_delivery(row_name, OURS),
            per_delivery(row_name, BEFORE),
            per_delivery(row_name, REFERENCE),
        );
        let ratio = |a: Option<f64>, b: Option<f64>| number(a.zip(b).map(|(a, b)| a / b), 2);
        out.push_str(&row([
            (*what).to_owned(),
            (*row_name).to_owned(),
            number(ours, 0),
            number(before, 0),
            number(reference, 0),
            ratio(ours, reference),
            ratio(before, reference),
            ratio(ours, before),
            missing(row_name).to_string(),
        ]));
    }
    out
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

/// The contenders of `scenario` that have a run in `runs` (measured or not), in lineup order.
fn present(runs: &[Value], scenario: &Scenario) -> Vec<&'static str> {
    scenario
        .lineup(true)
        .into_iter()
        .filter(|name| {
            runs.iter().any(|run| {
                run["scenario"] == format!("rooms-{}", scenario.name).as_str()
                    && run["server"] == *name
            })
        })
        .collect()
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
         Offered: publishes sent while measuring x the members of their room. Missing: deliveries of acknowledged publishes that never came \
         (skipped, queued past the drain, or lost with a closed member); duplicates: offsets a member saw twice or out of order. \
         The reference's own count of what its receivers skipped \
         covers the whole run. CPU per delivery counts deliveries to members only; the publishers' own copies and acks are work both servers do on top. \
         A generator CPU share near 1.0 means the generator set the pace. \
         Every build of this server runs with `--room-queue-bytes {ROOM_QUEUE_BYTES} --room-history-bytes {ROOM_HISTORY_BYTES}`.{}\n\n",
        baseline_note(runs)
    );
    out.push_str("| rooms scenario | server | deliveries/s | offered/s | missing | duplicates | skipped (server's count) | members closed | server CPU µs/delivery | p50 ms | p99 ms | generator CPU share |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let scenarios = || SCENARIOS.iter().filter(|s| !s.is_through_redis());
    for scenario in scenarios() {
        for name in present(runs, scenario) {
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
                median_cell(&measured, "duplicates", 0),
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
        "\n| rooms, paired by round: median (range) | scenario | server CPU per delivery (lower is better) | deliveries/s | p50 (lower is better) | p99 (lower is better) |\n|---|---|---:|---:|---:|---:|\n",
    );
    for scenario in scenarios() {
        for (first, second) in scenario.ratio_pairs(&present(runs, scenario)) {
            let (mine, theirs) = (of(scenario, first), of(scenario, second));
            if mine.is_empty() || theirs.is_empty() {
                continue;
            }
            out.push_str(&row([
                format!("{first} / {second}"),
                scenario.name.to_owned(),
                paired_range(&mine, &theirs, "server_cpu_us_per_delivery"),
                paired_range(&mine, &theirs, "deliveries_per_sec"),
                paired_range(&mine, &theirs, "p50_ms"),
                paired_range(&mine, &theirs, "p99_ms"),
            ]));
        }
    }
    out.push_str(
        "\nTargets (issue 18): CPU per delivery at most 1.0x the broadcast reference at 100 and 1,000 members; \
         with compression, at most 1.5x the uncompressed; saturating: every delivery made, none skipped.\n",
    );
    out
}

/// What the tables say of the baseline build, when one ran.
fn baseline_note(runs: &[Value]) -> String {
    let baseline_ran = runs
        .iter()
        .any(|run| TWINS.iter().any(|&(_, before)| run["server"] == before));
    if baseline_ran {
        format!(
            " `{BEFORE}`: the build of this server named by `BENCH_BASELINE_SERVER`, started the same way (the same queue and \
             history bytes; only flags it lacks left out), in the same rounds with the order rotated: `{OURS} / {BEFORE}` is after over before."
        )
    } else {
        String::new()
    }
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
         the two readings (one per closed-loop publisher). Gaps and duplicates: offsets a member saw skipped or twice.{}\n\n",
        baseline_note(runs)
    );
    out.push_str("| rooms through Redis | engine | deliveries/s | offered/s | missing | gaps | duplicates | members closed | instances CPU µs/delivery | redis-server CPU µs/delivery | total CPU µs/delivery | p50 ms | p99 ms | EVALSHA/publish | Redis commands/publish | generator CPU share |\n");
    out.push_str(
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for scenario in scenarios() {
        for name in present(runs, scenario) {
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
        for (first, second) in scenario.ratio_pairs(&present(runs, scenario)) {
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
    }
    if !paired.is_empty() {
        out.push_str(
            "\n| rooms, paired by round: median (range) (Redis / embedded, and after / before) | scenario | deliveries/s | total CPU per delivery (lower is better) | p50 (lower is better) | p99 (lower is better) |\n|---|---|---:|---:|---:|---:|\n",
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

    #[test]
    fn a_baseline_runs_beside_every_build_of_this_server_and_is_paired_after_over_before() {
        let scenario = |name: &str| {
            SCENARIOS
                .iter()
                .find(|scenario| scenario.name == name)
                .expect("a scenario of that name")
        };
        let alone = scenario("paced-100x10-64B");
        assert_eq!(alone.lineup(false), [OURS, REFERENCE]);
        assert_eq!(alone.lineup(true), [OURS, REFERENCE, BEFORE]);
        assert_eq!(
            alone.ratio_pairs(&[OURS, REFERENCE, BEFORE]),
            [(OURS, REFERENCE), (BEFORE, REFERENCE), (OURS, BEFORE)]
        );
        // Without a baseline, only the row's own pair.
        assert_eq!(alone.ratio_pairs(&[OURS, REFERENCE]), [(OURS, REFERENCE)]);
        let deflate = scenario("fanout-100-1KiB-deflate");
        assert_eq!(
            deflate.ratio_pairs(&deflate.lineup(true)),
            [
                (COMPRESSED, OURS),
                (BEFORE_COMPRESSED, BEFORE),
                (COMPRESSED, BEFORE_COMPRESSED),
                (OURS, BEFORE)
            ]
        );
        let redis = scenario("redis-paced-1000-64B");
        assert_eq!(
            redis.lineup(true),
            [ON_REDIS, OURS, BEFORE_ON_REDIS, BEFORE]
        );
        assert_eq!(
            redis.ratio_pairs(&redis.lineup(true)),
            [
                (ON_REDIS, OURS),
                (BEFORE_ON_REDIS, BEFORE),
                (ON_REDIS, BEFORE_ON_REDIS),
                (OURS, BEFORE)
            ]
        );

        // Rendered: the baseline's rows, and its ratios paired by round.
        let mut runs = Vec::new();
        for round in 0..3 {
            runs.push(run("paced-100x10-64B", OURS, round, 2.0 + round as f64));
            runs.push(run("paced-100x10-64B", REFERENCE, round, 4.0));
            runs.push(run("paced-100x10-64B", BEFORE, round, 4.0 + round as f64));
        }
        let table = render(&runs, 3, 3.0);
        assert!(
            table.contains("| paced-100x10-64B | before | 200 |"),
            "{table}"
        );
        assert!(
            table.contains("`before`: the build of this server named by `BENCH_BASELINE_SERVER`"),
            "{table}"
        );
        // After over before per round: 2/4, 3/5, 4/6.
        assert!(
            table.contains("| server / before | paced-100x10-64B | 0.60 (0.50–0.67) |"),
            "{table}"
        );
        assert!(
            table.contains("| before / broadcast | paced-100x10-64B | 1.25 (1.00–1.50) |"),
            "{table}"
        );
    }

    #[test]
    fn the_join_limit_is_lifted_only_for_a_build_that_has_one() {
        let has = |args: &[String], flag: &str| args.iter().any(|arg| arg == flag);
        let after = server_args("  --join-rate <JOIN_RATE>\n  --join-burst <JOIN_BURST>\n");
        let before = server_args("  --publish-rate <PUBLISH_RATE>\n");
        assert!(has(&after, "--join-rate") && has(&after, "--join-burst"));
        assert!(!has(&before, "--join-rate") && !has(&before, "--join-burst"));
        // Both get the same queue and history bytes, whatever their defaults.
        for args in [&after, &before] {
            let value_of = |flag: &str| {
                let at = args.iter().position(|arg| arg == flag).expect("given");
                args[at + 1].clone()
            };
            assert_eq!(value_of("--room-queue-bytes"), ROOM_QUEUE_BYTES);
            assert_eq!(value_of("--room-history-bytes"), ROOM_HISTORY_BYTES);
        }
    }

    #[test]
    fn instructions_per_delivery_are_the_difference_of_two_runs_over_their_deliveries() {
        // Start-up and joins (1,000,000) cancel: 10,000 more deliveries for 150,000,000 more.
        assert_eq!(
            marginal(31_000_000, 1_500, 181_000_000, 11_500),
            Some(15_000.0)
        );
        assert_eq!(marginal(5, 10, 9, 10), None);
        let counted = |row: &str, server: &str, per_delivery: f64| {
            serde_json::json!({
                "scenario": format!("rooms-instructions-{row}"), "server": server,
                "instructions_per_delivery": per_delivery, "missing": 0,
            })
        };
        let runs = [
            counted("paced-100-64B", OURS, 12_000.0),
            counted("paced-100-64B", BEFORE, 15_000.0),
            counted("paced-100-64B", REFERENCE, 10_000.0),
            counted("paced-100x10-64B", OURS, 20_000.0),
            counted("paced-100x10-64B", REFERENCE, 10_000.0),
        ];
        let table = render_instructions(&runs);
        assert!(
            table.contains("| paced-100-64B | 12000 | 15000 | 10000 | 1.20 | 1.50 | 0.80 | 0 |"),
            "{table}"
        );
        // Without a baseline its cells are empty, not zero.
        assert!(
            table.contains("| paced-100x10-64B | 20000 | - | 10000 | 2.00 | - | - | 0 |"),
            "{table}"
        );
    }
}
