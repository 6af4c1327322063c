//! The scale curve: the same loads against databases that already hold 10⁴ … 10⁷ change
//! events with their notifications and attempts (copied in, see `seed.rs`), one fresh
//! server and database per size:
//!
//! - delivery at saturation: `--clients` single-event clients for `--duration`, drained
//!   (deliveries/s, p99 event→delivery);
//! - ingestion: 16 clients × 100 events per request for `--duration` (events/s, request
//!   p99), drained;
//! - paced delivery at `--rate` events/s (p99 event→delivery);
//! - with `--purge N`, at the last size: N more notifications (with attempts) and N
//!   change events past `retention`, purged by the server's janitor while paced delivery
//!   runs; p99 over that run against the paced p99 without it.
//!
//! `ledgerhook-bench scale --backend sqlite --sizes 10000,100000,1000000,10000000 --purge 1000000`

pub(crate) mod seed;

use crate::deliver::{drain, load, load_counted, subscribe, ReceiverProcess, Target};
use crate::report::{grouped, Report};
use crate::server::{Backend, BenchServer, OPERATOR};
use anyhow::ensure;
use ledgerhook_domain::Timestamp;
use ledgerhook_testkit::Kind;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of `ledgerhook-bench scale`.
#[derive(clap::Args)]
pub struct Args {
    /// Database backend of the server under test.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// The change events (and as many notifications and attempts) already in the
    /// database, one size per run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<u64>,
    /// Realms connected to the app.
    #[arg(long, default_value_t = 1000)]
    realms: usize,
    /// Clients of the saturation load.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds of each load.
    #[arg(long, default_value_t = 8.0)]
    duration: f64,
    /// Events per second of the paced load.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Rows to purge while delivering, at the last size (0: no purge phase).
    #[arg(long, default_value_t = 0)]
    purge: u64,
    /// The `ledgerhook` binary.
    #[arg(long, default_value = "target/release/ledgerhook")]
    ledgerhook: PathBuf,
}

/// The figures of one size.
struct Figures {
    size: u64,
    seed_seconds: f64,
    deliveries_per_s: f64,
    delivery_p99_ms: f64,
    ingest_events_per_s: f64,
    ingest_p99_ms: f64,
    paced_p99_ms: f64,
    purge: Option<Purge>,
}

/// The purge phase's figures.
struct Purge {
    rows: u64,
    refused: u64,
    seconds: f64,
    p99_ms: f64,
    left: i64,
}

/// The retention the server runs with: the default, so the history (newest now, one
/// every 10 ms) is kept and only the purge phase's rows are past it.
const RETENTION_MS: i64 = 30 * 86_400_000;

/// Runs every size and reports the curve.
pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(!args.sizes.is_empty(), "--sizes needs at least one size");
    let mut curve = Vec::new();
    for (i, &size) in args.sizes.iter().enumerate() {
        let purge = (i + 1 == args.sizes.len())
            .then_some(args.purge)
            .filter(|&p| p > 0);
        curve.push(one_size(&args, size, purge).await?);
    }
    report(&args, &curve)
}

async fn one_size(args: &Args, size: u64, purge: Option<u64>) -> anyhow::Result<Figures> {
    let kind = args.backend.kind();
    let mut receiver = ReceiverProcess::start()?;
    let mut server_args = receiver.server_args("0")?;
    // The janitor looks every tenth of the shorter of `inactive-after` and `retention`:
    // every 2 s here (no configuration is blacklisted, so only retention applies).
    server_args.extend(["--inactive-after", "20s"].map(String::from));
    let server = BenchServer::start(&args.ledgerhook, kind, &server_args).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .build()?;
    let hook = receiver.hook();
    let realms = subscribe(&client, &server.base, &hook, args.realms).await?;
    let target = Target::Ledgerhook {
        base: server.base.clone(),
        realms: realms.clone(),
    };
    // One real notification, attempt and change event for the copies to start from.
    load(&client, &target, 1, 0.2, Some(5.0)).await;
    drain(&mut receiver, 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let seeding = Instant::now();
    let history = seed::History {
        count: size,
        newest_ms: Timestamp::now().millis(),
        spacing_ms: 10,
        tag: "hist".to_owned(),
    };
    seed::copy(kind, &server.database.url, &history).await?;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    eprintln!(
        "scale: {} rows of each table copied in {seed_seconds:.1} s",
        grouped(size as f64, 0)
    );
    // Warm the caches the copy went around.
    load(&client, &target, args.clients, 2.0, None).await;
    let warmed = receiver.command("stats")?["requests"].as_u64().unwrap_or(0);
    drain(&mut receiver, warmed).await?;

    let saturation = measured(&mut receiver, &client, &target, args.clients, args.duration, None).await?;
    let (ingest_events_per_s, ingest_p99_ms) =
        ingest(&mut receiver, &client, &server.base, &realms, args.duration).await?;
    let paced = measured(&mut receiver, &client, &target, 8, args.duration, Some(args.rate)).await?;
    let purge = match purge {
        Some(rows) => Some(
            purge_while_delivering(
                args,
                kind,
                &server,
                &mut receiver,
                &client,
                &target,
                rows,
                seed_seconds / size.max(1) as f64,
            )
            .await?,
        ),
        None => None,
    };
    let figures = Figures {
        size,
        seed_seconds,
        deliveries_per_s: saturation.0,
        delivery_p99_ms: saturation.1,
        ingest_events_per_s,
        ingest_p99_ms,
        paced_p99_ms: paced.1,
        purge,
    };
    eprintln!(
        "scale: {}: {:.0} deliveries/s (p99 {:.1} ms), ingestion {:.0} events/s (p99 {:.1} ms), paced p99 {:.1} ms",
        grouped(size as f64, 0),
        figures.deliveries_per_s,
        figures.delivery_p99_ms,
        figures.ingest_events_per_s,
        figures.ingest_p99_ms,
        figures.paced_p99_ms
    );
    Ok(figures)
}

/// One load, drained: deliveries/s over the receiver's span and the p99 event→delivery.
async fn measured(
    receiver: &mut ReceiverProcess,
    client: &reqwest::Client,
    target: &Target,
    clients: usize,
    duration: f64,
    rate: Option<f64>,
) -> anyhow::Result<(f64, f64)> {
    receiver.command("reset")?;
    let acknowledged = load(client, target, clients, duration, rate).await;
    let stats = drain(receiver, acknowledged).await?;
    let delivered = stats["events"].as_u64().unwrap_or(0);
    ensure!(
        delivered >= acknowledged && stats["duplicates"].as_u64() == Some(0),
        "{acknowledged} acknowledged, {delivered} delivered, {} duplicates",
        stats["duplicates"]
    );
    let span = stats["span_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    let requests = stats["requests"].as_f64().unwrap_or(0.0);
    Ok((requests / span.max(1e-9), stats["p99_ms"].as_f64().unwrap_or(0.0)))
}

/// 16 clients sending 100 events per request for `duration`: events/s and the requests'
/// p99 in ms; then drained.
async fn ingest(
    receiver: &mut ReceiverProcess,
    client: &reqwest::Client,
    base: &str,
    realms: &[String],
    duration: f64,
) -> anyhow::Result<(f64, f64)> {
    receiver.command("reset")?;
    let end = Instant::now() + Duration::from_secs_f64(duration);
    let started = Instant::now();
    let accepted = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..16usize {
        let (client, base, realms) = (client.clone(), base.to_owned(), realms.to_vec());
        let (accepted, latencies) = (accepted.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < end && n < 1_000_000 {
                let at = Timestamp::now().to_rfc3339();
                let events: Vec<Value> = (0..100)
                    .map(|k| json!({"name": "Customer", "id": format!("i{c}-{n}-{k}"), "operation": "Update", "lastUpdated": at}))
                    .collect();
                let realm = &realms[(c + n * 16) % realms.len()];
                let sent = Instant::now();
                let answer = client
                    .post(format!("{base}/api/v1/realms/{realm}/events"))
                    .bearer_auth(OPERATOR)
                    .json(&events)
                    .send()
                    .await;
                if answer.is_ok_and(|r| r.status().is_success()) {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    latencies.lock().unwrap().push(sent.elapsed().as_secs_f64() * 1000.0);
                }
                n += 1;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let requests = accepted.load(Ordering::Relaxed);
    drain(receiver, requests * 100).await?;
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies.get(latencies.len() * 99 / 100).copied().unwrap_or(0.0);
    Ok((requests as f64 * 100.0 / seconds, p99))
}

/// Copies `rows` more of each table, timed to pass `retention` a few seconds after the
/// copy ends (from the history's copy speed, `seconds_per_row`), then delivers at
/// `--rate` while the janitor purges them and `--duration` longer; answers the p99 over
/// that run and how long the purge took (from the first row gone to the last, polled
/// every 250 ms).
#[allow(clippy::too_many_arguments)]
async fn purge_while_delivering(
    args: &Args,
    kind: Kind,
    server: &BenchServer,
    receiver: &mut ReceiverProcess,
    client: &reqwest::Client,
    target: &Target,
    rows: u64,
    seconds_per_row: f64,
) -> anyhow::Result<Purge> {
    let copy_estimate = Duration::from_secs_f64(rows as f64 * seconds_per_row * 2.0 + 10.0);
    let expiry = Timestamp::now().millis() + copy_estimate.as_millis() as i64;
    let old = seed::History {
        count: rows,
        newest_ms: expiry - RETENTION_MS,
        spacing_ms: 0,
        tag: "old".to_owned(),
    };
    let bound = old.newest_ms + 1;
    seed::copy(kind, &server.database.url, &old).await?;
    let before = seed::older_than(kind, &server.database.url, bound).await?;
    ensure!(
        before == rows as i64,
        "the purge started before the copy ended ({before} of {rows} left): the copy was slower than estimated"
    );
    let wait = (expiry - Timestamp::now().millis()).max(0) as f64 / 1000.0;
    eprintln!(
        "scale: {} rows to purge, past retention in {wait:.1} s",
        grouped(rows as f64, 0)
    );
    // Poll the rows left while the load runs.
    let url = server.database.url.clone();
    let watcher = tokio::spawn(async move {
        let (mut first_gone, mut all_gone) = (None, None);
        let started = Instant::now();
        let mut left = i64::MAX;
        while started.elapsed() < Duration::from_secs(600) {
            left = seed::older_than(kind, &url, bound).await.unwrap_or(left);
            if left < rows as i64 && first_gone.is_none() {
                first_gone = Some(Instant::now());
            }
            if left == 0 {
                all_gone = Some(Instant::now());
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (first_gone, all_gone, left)
    });
    receiver.command("reset")?;
    // Paced load in slices of 2 s until the purge is over and `--duration` more has
    // passed (at most 15 minutes); the p99 covers the whole of it.
    let started = Instant::now();
    let (mut acknowledged, mut refused) = (0, 0);
    let mut over = None;
    while started.elapsed() < Duration::from_secs(900) {
        let (ok, not) = load_counted(client, target, 8, 2.0, Some(args.rate)).await;
        acknowledged += ok;
        refused += not;
        if watcher.is_finished() {
            let over = *over.get_or_insert_with(Instant::now);
            if over.elapsed().as_secs_f64() >= args.duration && started.elapsed().as_secs_f64() > wait {
                break;
            }
        }
    }
    let stats = drain(receiver, acknowledged).await?;
    let (first_gone, all_gone, left) = watcher.await?;
    let seconds = match (first_gone, all_gone) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
        _ => f64::NAN,
    };
    Ok(Purge {
        rows,
        refused,
        seconds,
        p99_ms: stats["p99_ms"].as_f64().unwrap_or(0.0),
        left,
    })
}

fn report(args: &Args, curve: &[Figures]) -> anyhow::Result<()> {
    let backend = args.backend.name();
    let first = &curve[0];
    for figures in curve {
        let mut report = Report::new(format!(
            "scale, {backend}, {} change events with their notifications and attempts",
            grouped(figures.size as f64, 0)
        ));
        report
            .number(
                "size",
                "rows of each table before the run",
                figures.size as f64,
                0,
            )
            .number("seed_seconds", "copy time, s", figures.seed_seconds, 1)
            .number(
                "deliveries_per_s",
                &format!("deliveries/s, {} clients", args.clients),
                figures.deliveries_per_s,
                0,
            )
            .number(
                "delivery_p99_ms",
                "  its p99 event→delivery, ms",
                figures.delivery_p99_ms,
                1,
            )
            .number(
                "ingest_events_per_s",
                "ingestion, 100 events/request, events/s",
                figures.ingest_events_per_s,
                0,
            )
            .number("ingest_p99_ms", "  its request p99, ms", figures.ingest_p99_ms, 1)
            .number(
                "paced_p99_ms",
                &format!("paced {}/s, p99 event→delivery, ms", args.rate),
                figures.paced_p99_ms,
                1,
            )
            .number(
                "deliveries_vs_smallest",
                "deliveries/s ÷ the smallest size's",
                figures.deliveries_per_s / first.deliveries_per_s.max(1e-9),
                2,
            )
            .number(
                "ingest_vs_smallest",
                "ingestion ÷ the smallest size's",
                figures.ingest_events_per_s / first.ingest_events_per_s.max(1e-9),
                2,
            )
            .number(
                "paced_p99_vs_smallest",
                "paced p99 ÷ the smallest size's",
                figures.paced_p99_ms / first.paced_p99_ms.max(1e-9),
                2,
            );
        if let Some(purge) = &figures.purge {
            report
                .number(
                    "purge_rows",
                    "purged while delivering: notifications (+ attempts, + change events)",
                    purge.rows as f64,
                    0,
                )
                .number("purge_seconds", "  first row gone → last, s", purge.seconds, 1)
                .number(
                    "purge_p99_ms",
                    &format!("  paced {}/s p99 over that run, ms", args.rate),
                    purge.p99_ms,
                    1,
                )
                .number(
                    "purge_p99_vs_paced",
                    "  ÷ the paced p99 without it",
                    purge.p99_ms / figures.paced_p99_ms.max(1e-9),
                    2,
                )
                .number(
                    "purge_refused",
                    "  ingestion requests refused or unanswered meanwhile",
                    purge.refused as f64,
                    0,
                )
                .number(
                    "purge_left",
                    "  rows past retention left at the end",
                    purge.left as f64,
                    0,
                );
        }
        report.emit()?;
    }
    Ok(())
}
