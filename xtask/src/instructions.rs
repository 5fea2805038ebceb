//! The instruction counts of `cargo xtask bench`: user-space instructions per message under
//! `valgrind --tool=callgrind`, this server and the fastwebsockets reference. Wall-clock
//! figures on these machines move ±25% between rounds; a count of instructions does not
//! depend on load. The figure is marginal, the difference between a run of 2,000 and one of
//! 20,000 messages divided by 18,000, which cancels start-up and handshakes.

use std::path::Path;

use serde_json::Value;

use crate::bench::{number, row};
use crate::process::ServerProcess;
use crate::tools::{self, announce, command};
use crate::{Result, target_dir, workspace_root};

/// Message counts of the two runs.
const FEW: u64 = 2_000;
const MANY: u64 = 20_000;
/// Payload sizes: the standard shape's two.
const SIZES: [usize; 2] = [32, 16_384];

pub fn instructions(release: &Path) -> Result<(String, Vec<Value>)> {
    let valgrind = tools::ensure_valgrind()?;
    let static_dir = workspace_root().join("static");
    let servers: [(&str, &Path, Vec<String>); 2] = [
        (
            "server",
            &release.join("server"),
            vec![
                "--addr".into(),
                "127.0.0.1:0".into(),
                "--log".into(),
                "warn".into(),
                "--static-dir".into(),
                static_dir.display().to_string(),
            ],
        ),
        (
            "fastwebsockets",
            &release.join("ref-fastwebsockets"),
            vec![],
        ),
    ];
    announce("instructions per message under callgrind (about a minute)");
    let out_dir = target_dir().join("bench/callgrind");
    std::fs::create_dir_all(&out_dir)?;
    let mut runs = Vec::new();
    for size in SIZES {
        for (name, binary, args) in &servers {
            let mut totals = Vec::new();
            for messages in [FEW, MANY] {
                let out_file = out_dir.join(format!("{name}-{size}-{messages}.out"));
                let _ = std::fs::remove_file(&out_file);
                let mut server = command(&valgrind);
                server
                    .arg("--tool=callgrind")
                    .arg(format!("--callgrind-out-file={}", out_file.display()))
                    .arg(binary)
                    .args(args)
                    .stderr(std::process::Stdio::null());
                let running = ServerProcess::spawn(&mut server, name)?;
                let output = command(release.join("loadgen"))
                    .args(["--addr", &running.addr, "--path", "/mirror"])
                    .args(["--connections", "100", "--size", &size.to_string()])
                    .args(["--messages", &messages.to_string()])
                    .output()?;
                // SIGTERM: the server exits, the reference dies; callgrind writes either way.
                drop(running);
                if !output.status.success() {
                    return Err(format!(
                        "loadgen failed under callgrind for {name}: {}",
                        String::from_utf8_lossy(&output.stderr)
                    )
                    .into());
                }
                totals.push(instructions_in(&out_file)?);
            }
            let per_message = (totals[1] - totals[0]) as f64 / (MANY - FEW) as f64;
            runs.push(serde_json::json!({
                "scenario": format!("instructions-{size}B"),
                "server": name,
                "instructions_per_message": per_message.round(),
            }));
        }
    }
    let per_message = |size: usize, name: &str| {
        runs.iter()
            .find(|run| run["scenario"] == format!("instructions-{size}B") && run["server"] == name)
            .and_then(|run| run["instructions_per_message"].as_f64())
    };
    let mut table = format!(
        "\n| user-space instructions per message (callgrind; marginal, {FEW} to {MANY} messages; /mirror, 100 connections x 1 in flight) | this server | fastwebsockets | ratio |\n|---|---:|---:|---:|\n"
    );
    for size in SIZES {
        let (ours, theirs) = (
            per_message(size, "server"),
            per_message(size, "fastwebsockets"),
        );
        table.push_str(&row([
            format!("echo {size} B"),
            number(ours, 0),
            number(theirs, 0),
            number(ours.zip(theirs).map(|(a, b)| a / b), 2),
        ]));
    }
    Ok((table, runs))
}

/// The total instruction count callgrind wrote (its `summary:` line).
pub(crate) fn instructions_in(file: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| format!("callgrind wrote no {}: {error}", file.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("summary: "))
        .and_then(|total| total.trim().parse().ok())
        .ok_or_else(|| format!("no summary line in {}", file.display()).into())
}
