//! `ledgerhook-bench ack`: how fast the receiver SDK's endpoint acknowledges. Starts
//! `ledgerhook mirror` (the SDK's handler, its durable inbox and its worker, in their
//! own process) and sends it signed notifications at a fixed rate from a fixed number of
//! concurrent clients over loopback HTTP with keep-alive; each answer's latency is
//! measured from the moment the request was due to be sent, so a slow answer that
//! delays the next request counts against it.
//!
//! `ledgerhook-bench ack --ledgerhook target/release/ledgerhook --rate 500 --concurrency 8 --duration 10 --runs 3`

use crate::report::median;
use anyhow::{bail, Context};
use ledgerhook_domain::Timestamp;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VERIFIER: &str = "bench-verifier-token";

/// Options of `ledgerhook-bench ack`.
#[derive(clap::Args)]
pub struct Args {
    /// The `ledgerhook` binary whose `mirror` is measured.
    #[arg(long, default_value = "target/release/ledgerhook")]
    ledgerhook: PathBuf,
    /// Notifications per second, over all clients.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Concurrent clients (each with its own keep-alive connection).
    #[arg(long, default_value_t = 8)]
    concurrency: u32,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Runs (each on a fresh inbox); the medians of the runs are printed last.
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// A running mirror, killed on drop.
struct Mirror {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_mirror(binary: &PathBuf) -> anyhow::Result<Mirror> {
    let dir = tempfile::tempdir()?;
    // Realm 1 is configured (so the mirror starts); the load is for realm 2, which has
    // no token, so the worker applies it without calling CDC.
    let mut child = Command::new(binary)
        .args(["mirror", "--server", "http://127.0.0.1:9", "--realm", "1=unused"])
        .args(["--verifier-token", VERIFIER, "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .env("LEDGERHOOK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(line) = lines.next().transpose()? else {
            bail!("the mirror exited before listening");
        };
        if let Some(url) = line.strip_prefix("ledgerhook: listening on ") {
            std::thread::spawn(move || for _ in lines {});
            return Ok(Mirror {
                child,
                url: url.to_owned(),
                _dir: dir,
            });
        }
    }
    bail!("the mirror did not listen within 20 s")
}

/// One run: latencies in milliseconds, and the answers that were not `200`.
async fn run_once(args: &Args, url: &str) -> anyhow::Result<(Vec<f64>, usize)> {
    let total = u64::from(args.rate) * args.duration;
    let interval = Duration::from_secs_f64(f64::from(args.concurrency) / f64::from(args.rate));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for client_index in 0..u64::from(args.concurrency) {
        let http = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
        let url = url.to_owned();
        let concurrency = u64::from(args.concurrency);
        clients.spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0;
            let mut n = client_index;
            let mut slot = 0u32;
            // Bounded by count and by time.
            while n < total && started.elapsed() < Duration::from_secs(600) {
                let due =
                    started + interval * slot + interval.mul_f64(client_index as f64 / concurrency as f64);
                tokio::time::sleep_until(due.into()).await;
                let body = json!({"eventNotifications": [{"realmId": "2", "dataChangeEvent": {"entities": [
                    {"name": "Customer", "id": n.to_string(), "operation": "Create",
                     "lastUpdated": Timestamp::now().to_rfc3339()}]}}]})
                .to_string();
                let signature = ledgerhook_signing::intuit_signature(VERIFIER, body.as_bytes());
                let answer = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("intuit-signature", signature)
                    .header("webhook-id", format!("ack-{n}"))
                    .body(body)
                    .send()
                    .await;
                latencies.push(due.elapsed().as_secs_f64() * 1000.0);
                if !answer.is_ok_and(|r| r.status() == 200) {
                    refused += 1;
                }
                n += concurrency;
                slot += 1;
            }
            (latencies, refused)
        });
    }
    let mut latencies = Vec::new();
    let mut refused = 0;
    while let Some(done) = clients.join_next().await {
        let (mine, theirs) = done?;
        latencies.extend(mine);
        refused += theirs;
    }
    latencies.sort_by(f64::total_cmp);
    Ok((latencies, refused))
}

/// Runs the benchmark and prints one JSON line per run and one with the medians.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let (mut p50s, mut p99s, mut maxes) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let mirror = start_mirror(&args.ledgerhook)?;
        let (latencies, refused) = run_once(&args, &mirror.url).await?;
        let (p50, p90, p99) = (
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.90),
            percentile(&latencies, 0.99),
        );
        let max = latencies.last().copied().unwrap_or(0.0);
        println!(
            "{}",
            json!({"run": run, "requests": latencies.len(), "not_200": refused,
                   "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max})
        );
        anyhow::ensure!(
            refused == 0,
            "{refused} notifications were not acknowledged with 200"
        );
        p50s.push(p50);
        p99s.push(p99);
        maxes.push(max);
    }
    let mut report = crate::report::Report::new(format!(
        "receiver SDK acknowledgement, {}/s, concurrency {}",
        args.rate, args.concurrency
    ));
    report
        .number("runs", "runs", args.runs as f64, 0)
        .number("p50_ms", "p50, ms (median of runs)", median(p50s), 2)
        .number("p99_ms", "p99, ms (median of runs)", median(p99s), 2)
        .number("max_ms", "max, ms (median of runs)", median(maxes), 2);
    report.emit()
}
