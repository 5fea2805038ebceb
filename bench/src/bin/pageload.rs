//! Page load in headless Chromium: from navigation to "Server: Greetings!" painted (the
//! line's Element Timing `renderTime`, which the page records itself), once with a fresh
//! profile (cold) and then `--warm` more times in the same browser (HTTP and code caches
//! warm). Prints one JSON line: `{"cold_ms": …, "warm_ms": […]}`.
//!
//! Started by `cargo xtask bench`, which gives each run a fresh server.

use clap::Parser;

/// The line both pages paint once the server's greeting arrives.
const GREETING_LINE: &str = "Server: Greetings!";

#[derive(Debug, Parser)]
struct Args {
    /// The page to load.
    #[arg(long)]
    url: String,
    /// Loads after the first one, in the same browser.
    #[arg(long, default_value_t = 3)]
    warm: usize,
    /// Also print, to stderr, when each resource of every load started and ended, when the
    /// document became interactive, and any `performance.mark` the page made (add some to a
    /// copy of the page to see where its time goes).
    #[arg(long)]
    timeline: bool,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let browser = headless::Browser::start().await?;
    let cold = greeting_painted_ms(&browser, &args.url).await?;
    print_timeline(&browser, args.timeline).await?;
    let mut warm = Vec::with_capacity(args.warm);
    for _ in 0..args.warm {
        warm.push(greeting_painted_ms(&browser, &args.url).await?);
        print_timeline(&browser, args.timeline).await?;
    }
    browser.close().await?;
    println!(
        "{}",
        serde_json::json!({ "cold_ms": cold, "warm_ms": warm })
    );
    Ok(())
}

/// Navigates to `url` and returns when the greeting line was painted, in milliseconds since
/// the navigation started.
async fn greeting_painted_ms(browser: &headless::Browser, url: &str) -> Result<f64, Error> {
    browser.client.goto(url).await?;
    // Element Timing entries are buffered from the start of the page, so the observer sees
    // the greeting even if it was painted before this script ran.
    let script = format!(
        "const done = arguments[arguments.length - 1];
         const greeting = (entries) => entries.find(
           (entry) => entry.element && entry.element.textContent === {line:?});
         new PerformanceObserver((list, observer) => {{
           const entry = greeting(list.getEntries());
           if (entry) {{ observer.disconnect(); done(entry.renderTime || entry.loadTime); }}
         }}).observe({{ type: 'element', buffered: true }});
         setTimeout(() => done(null), 10000);",
        line = GREETING_LINE
    );
    let painted = browser.client.execute_async(&script, vec![]).await?;
    painted
        .as_f64()
        .ok_or_else(|| format!("{GREETING_LINE:?} was not painted within 10 s of {url}").into())
}

/// Each resource of the current page: start, response start and end, in milliseconds since
/// navigation, and its status (`304` for a revalidated copy).
async fn print_timeline(browser: &headless::Browser, enabled: bool) -> Result<(), Error> {
    if !enabled {
        return Ok(());
    }
    let script = "return performance.getEntriesByType('navigation')
        .concat(performance.getEntriesByType('resource'))
        .map(e => [e.name, Math.round(e.startTime), Math.round(e.responseStart),
                   Math.round(e.responseEnd), e.responseStatus, e.transferSize])
        .concat(performance.getEntriesByType('navigation')
            .map(e => ['domInteractive', Math.round(e.domInteractive)]))
        .concat(performance.getEntriesByType('mark').map(e => [e.name, Math.round(e.startTime)]))";
    let entries = browser.client.execute(script, vec![]).await?;
    eprintln!("{entries}");
    Ok(())
}
