//! The deployment rows of `cargo xtask bench`: this server as it runs in production, metrics
//! served (`--metrics-addr`), over plain TCP and over TLS (`--tls-cert`, a certificate made
//! here), paired by round. Counting is always on in the server; these rows show what serving
//! the metrics and TLS add on top.

use serde_json::Value;

use crate::bench::{Pinning, median_of, number, paired_ratio, row};
use crate::process::ServerProcess;
use crate::{Result, target_dir, tools};

/// Scenarios: name, what, load-generator arguments.
const SCENARIOS: [(&str, &str, &[&str]); 2] = [
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

const KINDS: [&str; 2] = ["metrics", "metrics+TLS"];

pub fn deployment(pinning: &Pinning, reps: usize, seconds: f64) -> Result<(String, Vec<Value>)> {
    let release = target_dir().join("release");
    let dir = target_dir().join("bench/tls");
    std::fs::create_dir_all(&dir)?;
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    let mut runs = Vec::new();
    for (scenario, what, loadgen_args) in SCENARIOS {
        tools::announce(&format!(
            "{scenario} with metrics served, plain and TLS: {what} ({reps} rounds)"
        ));
        for rep in 0..reps {
            for turn in 0..KINDS.len() {
                let kind = KINDS[(rep + turn) % KINDS.len()];
                let tls = kind.ends_with("TLS");
                let mut command = pinning.on_server(&release.join("server"));
                command.args([
                    "--addr",
                    "127.0.0.1:0",
                    "--log",
                    "warn",
                    "--metrics-addr",
                    "127.0.0.1:0",
                ]);
                if tls {
                    command
                        .arg("--tls-cert")
                        .arg(&cert)
                        .arg("--tls-key")
                        .arg(&key);
                }
                let server = ServerProcess::spawn(&mut command, kind)?;
                let mut loadgen = pinning.on_client(&release.join("loadgen"));
                loadgen
                    .args(["--addr", &server.addr, "--pid", &server.pid().to_string()])
                    .args(["--duration", &seconds.to_string()])
                    .args(loadgen_args);
                if tls {
                    loadgen.arg("--tls-ca").arg(&cert);
                }
                let output = loadgen.output()?;
                drop(server);
                if !output.status.success() {
                    return Err(format!(
                        "loadgen failed for {scenario} ({kind}): {}",
                        String::from_utf8_lossy(&output.stderr)
                    )
                    .into());
                }
                let mut run: Value = serde_json::from_slice(&output.stdout)?;
                run["scenario"] = format!("{scenario} ({kind})").into();
                run["server"] = kind.into();
                run["round"] = rep.into();
                runs.push((scenario, run));
            }
        }
    }
    let mut out = format!(
        "\n| this server, metrics served ({reps} rounds) | setup | round trips/s | server CPU µs/round trip | TLS / plain, paired: round trips/s | CPU |\n|---|---|---:|---:|---:|---:|\n"
    );
    for (scenario, _, _) in SCENARIOS {
        let of = |kind: &str| -> Vec<Value> {
            runs.iter()
                .filter(|(name, run)| *name == scenario && run["server"] == kind)
                .map(|(_, run)| run.clone())
                .collect()
        };
        let plain = of(KINDS[0]);
        for kind in KINDS {
            let mine = of(kind);
            out.push_str(&row([
                scenario.to_owned(),
                kind.to_owned(),
                number(median_of(&mine, "round_trips_per_sec"), 0),
                number(median_of(&mine, "server_cpu_us_per_round_trip"), 2),
                number(paired_ratio(&mine, &plain, "round_trips_per_sec"), 2),
                number(
                    paired_ratio(&mine, &plain, "server_cpu_us_per_round_trip"),
                    2,
                ),
            ]));
        }
    }
    Ok((out, runs.into_iter().map(|(_, run)| run).collect()))
}
