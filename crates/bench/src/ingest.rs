//! The ingestion benchmark: `clients` concurrent keep-alive HTTP clients each send
//! requests of `batch` events with `data-bytes` of entity body, for `duration` or until
//! `max-requests`, whichever comes first.

use crate::server::{Backend, BenchServer, OPERATOR};
use anyhow::{ensure, Context};
use ledgerhook_domain::Timestamp;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `ledgerhook-bench ingest`.
#[derive(clap::Args)]
pub struct Args {
    /// Database backend of the server under test.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Bytes of `data` per event.
    #[arg(long, default_value_t = 200)]
    data_bytes: usize,
    /// How long to load (seconds).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up before measuring (seconds).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Upper bound of requests, whatever the duration.
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// The `ledgerhook` binary to start.
    #[arg(long, default_value = "target/release/ledgerhook")]
    ledgerhook: PathBuf,
    /// Extra settings passed to `ledgerhook serve`.
    #[arg(last = true)]
    server_args: Vec<String>,
}

async fn setup_realm(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let realm: Value = client
        .post(format!("{base}/api/v1/realms"))
        .bearer_auth(OPERATOR)
        .json(&json!({"name": "Bench Co", "environment": "production"}))
        .send()
        .await?
        .json()
        .await?;
    Ok(realm["id"].as_str().context("realm id")?.to_owned())
}

/// One request body of `batch` events for client `client`, request `n`.
fn request_body(client: usize, n: u64, batch: usize, filler: &str) -> Vec<u8> {
    let now = Timestamp::now().to_rfc3339();
    let events: Vec<Value> = (0..batch)
        .map(|i| {
            json!({"name": "Customer", "id": format!("{client}-{}", (n as usize * batch + i) % 50_000),
                   "operation": "Update", "lastUpdated": now, "data": {"DisplayName": "Bench", "Notes": filler}})
        })
        .collect();
    serde_json::to_vec(&events).expect("serialise")
}

struct Totals {
    requests: AtomicU64,
    errors: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u64>>,
}

/// Runs the benchmark and prints the figures.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let kind = args.backend.kind();
    let server = BenchServer::start(&args.ledgerhook, kind, &args.server_args).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let realm = setup_realm(&client, &server.base).await?;
    let url = format!("{}/api/v1/realms/{realm}/events", server.base);
    // `data` is {"DisplayName":"Bench","Notes":"…"}: pad Notes to reach data-bytes.
    let filler = "x".repeat(args.data_bytes.saturating_sub(36));

    let totals = Arc::new(Totals {
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        latencies_us: std::sync::Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let warmup = Duration::from_secs_f64(args.warmup);
    let end = started + warmup + Duration::from_secs_f64(args.duration);
    let budget = Arc::new(AtomicU64::new(args.max_requests));
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (client, url, totals, budget, filler) = (
            client.clone(),
            url.clone(),
            totals.clone(),
            budget.clone(),
            filler.clone(),
        );
        let batch = args.batch;
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut latencies = Vec::new();
            while Instant::now() < end && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
                let body = request_body(c, n, batch, &filler);
                n += 1;
                let sent = Instant::now();
                let ok = match client.post(&url).bearer_auth(OPERATOR).body(body).send().await {
                    Ok(response) => response.status() == 202,
                    Err(_) => false,
                };
                if sent < started + warmup {
                    continue;
                }
                if ok {
                    totals.requests.fetch_add(1, Ordering::Relaxed);
                    latencies.push(sent.elapsed().as_micros() as u64);
                } else {
                    totals.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            totals.latencies_us.lock().expect("lock").extend(latencies);
        }));
    }
    for task in tasks {
        task.await?;
    }
    let measured = started.elapsed().saturating_sub(warmup).as_secs_f64();
    let requests = totals.requests.load(Ordering::Relaxed);
    let errors = totals.errors.load(Ordering::Relaxed);
    ensure!(errors == 0, "{errors} requests failed");
    let mut latencies = totals.latencies_us.lock().expect("lock").clone();
    latencies.sort_unstable();
    let pct = |p: usize| latencies.get(latencies.len() * p / 100).copied().unwrap_or(0) as f64 / 1000.0;
    let fsync = server
        .database
        .sqlite_path
        .as_ref()
        .and_then(|p| p.parent())
        .map(|dir| crate::fsync::measure(dir, 100).map(|r| r.to_string()))
        .transpose()?
        .unwrap_or_else(|| "fsync: see PostgreSQL's data directory".to_owned());
    println!(
        "backend={} clients={} batch={} data_bytes={} measured={measured:.1}s requests={requests} \
         requests/s={:.0} events/s={:.0} latency p50={:.2}ms p99={:.2}ms; {fsync}",
        args.backend.name(),
        args.clients,
        args.batch,
        args.data_bytes,
        requests as f64 / measured,
        (requests * args.batch as u64) as f64 / measured,
        pct(50),
        pct(99),
    );
    let mut report = crate::report::Report::new(format!(
        "ingestion, {}, {} clients, {} events per request",
        args.backend.name(),
        args.clients,
        args.batch
    ));
    report
        .number("requests_per_s", "requests/s", requests as f64 / measured, 0)
        .number(
            "events_per_s",
            "events/s",
            (requests * args.batch as u64) as f64 / measured,
            0,
        )
        .number("p50_ms", "request p50, ms", pct(50), 2)
        .number("p99_ms", "request p99, ms", pct(99), 2);
    report.emit()
}
