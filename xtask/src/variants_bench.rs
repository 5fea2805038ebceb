//! Rows of `cargo xtask bench` that compare this server with itself, run another way, paired by
//! round against the first way:
//!
//! - deployment: metrics served (`--metrics-addr`), over plain TCP and over TLS (`--tls-cert`,
//!   a certificate made here). Counting is always on in the server; these rows show what
//!   serving the metrics and TLS add on top.
//! - compression: `--compression` against none, with chat-like JSON messages (which compress
//!   as real traffic does) sent compressed by the load generator, as Chromium sends them.

use serde_json::Value;

use crate::bench::{Pinning, median_of, number, paired_ratio};
use crate::process::ServerProcess;
use crate::{Result, target_dir, tools};

/// One way of running the server, and what the load generator does differently for it.
struct Variant {
    name: &'static str,
    server_args: Vec<String>,
    loadgen_args: Vec<String>,
}

/// A scenario: name, what it is, load-generator arguments.
type Scenario = (&'static str, &'static str, &'static [&'static str]);

/// A column: heading, the key of the load generator's JSON, decimals, and whether the table
/// also shows it as a ratio to the first variant, paired by round.
type Column = (&'static str, &'static str, usize, bool);

const DEPLOYMENT_SCENARIOS: [Scenario; 2] = [
    (
        "echo-32B",
        "/mirror, 100 connections x 1 in flight, 32 B",
        &["--path", "/mirror", "--connections", "100", "--size", "32"],
    ),
    (
        "app-10x",
        "/subscriptions, 100 connections, each message answered 10 times",
        &[
            "--path",
            "/subscriptions",
            "--skip",
            "1",
            "--replies",
            "10",
            "--connections",
            "100",
            "--size",
            "32",
        ],
    ),
];

const DEPLOYMENT_COLUMNS: [Column; 2] = [
    ("round trips/s", "round_trips_per_sec", 0, true),
    (
        "server CPU µs/round trip",
        "server_cpu_us_per_round_trip",
        2,
        true,
    ),
];

pub fn deployment(pinning: &Pinning, reps: usize, seconds: f64) -> Result<(String, Vec<Value>)> {
    let dir = target_dir().join("bench/tls");
    std::fs::create_dir_all(&dir)?;
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    let metrics = ["--metrics-addr", "127.0.0.1:0"].map(String::from);
    let path = |path: &std::path::Path| path.to_string_lossy().into_owned();
    let variants = [
        Variant {
            name: "metrics",
            server_args: metrics.to_vec(),
            loadgen_args: vec![],
        },
        Variant {
            name: "metrics+TLS",
            server_args: [
                &metrics[..],
                &[
                    "--tls-cert".into(),
                    path(&cert),
                    "--tls-key".into(),
                    path(&key),
                ],
            ]
            .concat(),
            loadgen_args: vec!["--tls-ca".into(), path(&cert)],
        },
    ];
    compare(
        pinning,
        reps,
        seconds,
        "this server, metrics served",
        &DEPLOYMENT_SCENARIOS,
        &variants,
        &DEPLOYMENT_COLUMNS,
    )
}

const COMPRESSION_SCENARIOS: [Scenario; 4] = [
    (
        "app-10x-chat-256B",
        "/subscriptions, 100 connections, a 256 B chat message answered 10 times",
        &[
            "--chat",
            "--path",
            "/subscriptions",
            "--skip",
            "1",
            "--replies",
            "10",
            "--connections",
            "100",
            "--size",
            "256",
        ],
    ),
    (
        "echo-chat-16KiB",
        "/mirror, 100 connections x 1 in flight, 16 KiB of chat JSON",
        &[
            "--chat",
            "--path",
            "/mirror",
            "--connections",
            "100",
            "--size",
            "16384",
        ],
    ),
    (
        "idle-10k",
        "10,000 idle WebSockets",
        &["--path", "/mirror", "--connections", "10000", "--idle"],
    ),
    (
        "idle-1k-after-chat-8KiB",
        "1,000 WebSockets idle after one 8 KiB chat message (10 replies)",
        &[
            "--chat",
            "--path",
            "/subscriptions",
            "--skip",
            "1",
            "--replies",
            "10",
            "--connections",
            "1000",
            "--idle",
            "--after-one-message",
            "--size",
            "8192",
        ],
    ),
];

const COMPRESSION_COLUMNS: [Column; 4] = [
    ("round trips/s", "round_trips_per_sec", 0, false),
    (
        "server CPU µs/round trip",
        "server_cpu_us_per_round_trip",
        2,
        true,
    ),
    (
        "bytes on the wire/round trip",
        "wire_bytes_per_round_trip",
        0,
        true,
    ),
    ("server KiB/connection", "rss_per_connection_kib", 1, true),
];

pub fn compression(pinning: &Pinning, reps: usize, seconds: f64) -> Result<(String, Vec<Value>)> {
    let variants = [
        Variant {
            name: "off",
            server_args: vec![],
            loadgen_args: vec![],
        },
        Variant {
            name: "--compression",
            server_args: vec!["--compression".into()],
            loadgen_args: vec!["--deflate".into()],
        },
    ];
    compare(
        pinning,
        reps,
        seconds,
        "this server, permessage-deflate",
        &COMPRESSION_SCENARIOS,
        &variants,
        &COMPRESSION_COLUMNS,
    )
}

/// Runs every scenario against every variant, `reps` rounds with the order rotated, and
/// renders the table.
fn compare(
    pinning: &Pinning,
    reps: usize,
    seconds: f64,
    title: &str,
    scenarios: &[Scenario],
    variants: &[Variant],
    columns: &[Column],
) -> Result<(String, Vec<Value>)> {
    let release = target_dir().join("release");
    let mut runs = Vec::new();
    for &(scenario, what, loadgen_args) in scenarios {
        tools::announce(&format!("{title}, {scenario}: {what} ({reps} rounds)"));
        for rep in 0..reps {
            for turn in 0..variants.len() {
                let variant = &variants[(rep + turn) % variants.len()];
                let mut command = pinning.on_server(&release.join("server"));
                command
                    .args(["--addr", "127.0.0.1:0", "--log", "warn"])
                    .args(&variant.server_args);
                let server = ServerProcess::spawn(&mut command, variant.name)?;
                let mut loadgen = pinning.on_client(&release.join("loadgen"));
                loadgen
                    .args(["--addr", &server.addr, "--pid", &server.pid().to_string()])
                    .args(["--duration", &seconds.to_string()])
                    .args(loadgen_args)
                    .args(&variant.loadgen_args);
                let output = loadgen.output()?;
                drop(server);
                if !output.status.success() {
                    return Err(format!(
                        "loadgen failed for {scenario} ({}): {}",
                        variant.name,
                        String::from_utf8_lossy(&output.stderr)
                    )
                    .into());
                }
                let mut run: Value = serde_json::from_slice(&output.stdout)?;
                run["scenario"] = format!("{scenario} ({})", variant.name).into();
                run["server"] = variant.name.into();
                run["round"] = rep.into();
                runs.push((scenario, run));
            }
        }
    }
    let first = variants.first().map_or("", |variant| variant.name);
    let paired: Vec<_> = columns.iter().filter(|column| column.3).collect();
    let mut out = format!("\n| {title} ({reps} rounds) | setup |");
    for (heading, ..) in columns {
        out.push_str(&format!(" {heading} |"));
    }
    for (heading, ..) in &paired {
        out.push_str(&format!(" / {first}, paired: {heading} |"));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---:|".repeat(columns.len() + paired.len()));
    out.push('\n');
    for &(scenario, ..) in scenarios {
        let of = |name: &str| -> Vec<Value> {
            runs.iter()
                .filter(|(candidate, run)| *candidate == scenario && run["server"] == name)
                .map(|(_, run)| run.clone())
                .collect()
        };
        let baseline = of(first);
        for variant in variants {
            let mine = of(variant.name);
            let mut cells = vec![scenario.to_owned(), variant.name.to_owned()];
            for &(_, key, digits, _) in columns {
                cells.push(number(median_of(&mine, key), digits));
            }
            for &&(_, key, _, _) in &paired {
                cells.push(number(paired_ratio(&mine, &baseline, key), 2));
            }
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
    }
    Ok((out, runs.into_iter().map(|(_, run)| run).collect()))
}
