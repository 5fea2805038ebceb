//! The page-load rows of `cargo xtask bench`: in headless Chromium, the time from navigation
//! to "Server: Greetings!" painted, for the real page and for a plain page that opens the same
//! WebSocket from ten lines of JavaScript (`bench/fixtures/`, served by the same server from a
//! copy of `static/`; the server never ships it). Each round gives each page a fresh server
//! and a fresh browser profile: one cold load, then warm loads in the same browser.
//!
//! `BENCH_BASELINE_STATIC=DIR` adds a third page, `before`: the built site in `DIR` (another
//! checkout's `static/`, with its `pkg/`), so a change to the page is measured against the
//! page before it in the same rounds.

use serde_json::Value;

use crate::bench::{Pinning, median, median_of, number, paired_ratio, row};
use crate::process::ServerProcess;
use crate::{Result, precompress, target_dir, tools, workspace_root};

/// Warm loads after the cold one, in each round.
const WARM_LOADS: usize = 3;

/// The page every other is compared with.
const PLAIN_PAGE: &str = "plain page";

/// Runs `reps` rounds; returns the markdown table and the raw runs.
pub fn page_load(pinning: &Pinning, reps: usize) -> Result<(String, Vec<Value>)> {
    let (chromium, chromedriver) = tools::ensure_chromium()?;
    let release = target_dir().join("release");
    let site = target_dir().join("bench/page-load");
    prepare_site(&workspace_root().join("static"), &site)?;
    // Each page: its name, the site serving it and its path there.
    let mut pages = vec![
        ("this page", site.clone(), "/"),
        (PLAIN_PAGE, site.clone(), "/plain.html"),
    ];
    if let Some(before) = std::env::var_os("BENCH_BASELINE_STATIC") {
        let baseline = target_dir().join("bench/page-load-before");
        prepare_site(std::path::Path::new(&before), &baseline)?;
        pages.push(("before", baseline, "/"));
    }
    crate::tools::announce(&format!(
        "page load: navigation to the greeting painted, this page vs a plain page ({reps} rounds)"
    ));
    let mut runs = Vec::new();
    for rep in 0..reps {
        for turn in 0..pages.len() {
            let (page, site, path) = &pages[(rep + turn) % pages.len()];
            let page = *page;
            let mut command = pinning.on_server(&release.join("server"));
            command
                .args(["--addr", "127.0.0.1:0", "--log", "warn", "--static-dir"])
                .arg(site);
            let server = ServerProcess::spawn(&mut command, "the server")?;
            let output = pinning
                .on_client(&release.join("pageload"))
                .args(["--url", &format!("http://{}{path}", server.addr)])
                .args(["--warm", &WARM_LOADS.to_string()])
                .env("CHROMIUM", &chromium)
                .env("CHROMEDRIVER", &chromedriver)
                .output()?;
            server.stop()?;
            if !output.status.success() {
                return Err(format!(
                    "pageload failed for {page}: {}",
                    String::from_utf8_lossy(&output.stderr)
                )
                .into());
            }
            let mut run: Value = serde_json::from_slice(&output.stdout)?;
            let warm: Vec<f64> = run["warm_ms"]
                .as_array()
                .map(|loads| loads.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            run["warm_median_ms"] = (!warm.is_empty()).then(|| median(warm)).into();
            run["scenario"] = "page-load".into();
            run["server"] = page.into();
            run["round"] = rep.into();
            runs.push(run);
        }
    }
    let names: Vec<&str> = pages.iter().map(|(name, ..)| *name).collect();
    Ok((table(&runs, reps, &names), runs))
}

/// A copy of `from` (a built `static/`) with the plain page beside it, compressed the way the
/// build does.
fn prepare_site(from: &std::path::Path, site: &std::path::Path) -> Result<()> {
    if site.exists() {
        std::fs::remove_dir_all(site)?;
    }
    copy_dir(from, site)?;
    for name in ["plain.html", "plain.js"] {
        std::fs::copy(
            workspace_root().join("bench/fixtures").join(name),
            site.join(name),
        )?;
    }
    precompress::precompress(site)?;
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn table(runs: &[Value], reps: usize, pages: &[&str]) -> String {
    let by_page = |page: &str| -> Vec<Value> {
        runs.iter()
            .filter(|run| run["server"] == page)
            .cloned()
            .collect()
    };
    let plain = by_page(PLAIN_PAGE);
    let mut out = format!(
        "\n| page load (headless Chromium, {reps} rounds, {WARM_LOADS} warm loads each) | page | navigation to greeting painted, cold ms | warm ms | cold / plain page, paired by round | warm / plain page, paired |\n|---|---|---:|---:|---:|---:|\n"
    );
    for page in pages {
        let mine = by_page(page);
        out.push_str(&row([
            "page-load".to_owned(),
            (*page).to_owned(),
            number(median_of(&mine, "cold_ms"), 0),
            number(median_of(&mine, "warm_median_ms"), 0),
            number(paired_ratio(&mine, &plain, "cold_ms"), 2),
            number(paired_ratio(&mine, &plain, "warm_median_ms"), 2),
        ]));
    }
    let before = by_page("before");
    if !before.is_empty() {
        let mine = by_page(pages[0]);
        out.push_str(&row([
            "page-load".to_owned(),
            "this page / before, paired by round".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            number(paired_ratio(&mine, &before, "cold_ms"), 2),
            number(paired_ratio(&mine, &before, "warm_median_ms"), 2),
        ]));
    }
    out
}
