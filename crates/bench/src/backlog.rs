//! The backlog benchmark: an endpoint that goes down while `--events` events (a million
//! by default) are accepted for it, then comes back. Three phases on one server and one
//! database, the server's RSS sampled every 100 ms throughout:
//!
//! 1. steady: `--steady` seconds of load with the endpoint up, drained — the steady
//!    delivery rate of this notification size;
//! 2. outage: the receiver answers `503`; `--events` events are ingested in requests of
//!    `--batch` events, spread over `--realms` realms. Each stream's first notification
//!    fails and waits for its retry (`--retry-every`, repeated so that nothing is dropped
//!    within the run); under strict ordering the rest wait behind it;
//! 3. drain: the receiver answers `200` again; every notification is delivered at its
//!    stream's next retry. Measured: the drain rate against the steady one, and that
//!    every acknowledged event arrived exactly once.
//!
//! `ledgerhook-bench backlog --backend sqlite --events 1000000 --realms 1000`

use crate::deliver::{subscribe_app, ReceiverProcess};
use crate::memory::RssWatch;
use crate::report::{grouped, Report};
use crate::server::{Backend, BenchServer, OPERATOR};
use anyhow::bail;
use ledgerhook_domain::Timestamp;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Options of `ledgerhook-bench backlog`.
#[derive(clap::Args)]
pub struct Args {
    /// Database backend of the server under test.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// Events accepted while the endpoint is down.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Realms connected to the app (requests go to each in turn).
    #[arg(long, default_value_t = 1000)]
    realms: usize,
    /// Events per ingestion request: one notification each at window 0.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Concurrent ingestion clients (in both phases of load: enough to saturate
    /// delivery in the steady one).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of the steady phase before the outage.
    #[arg(long, default_value_t = 10.0)]
    steady: f64,
    /// The configuration's ordering: `strict` (later notifications wait behind a
    /// retrying one) or `best-effort` (every notification is tried, and retried, on its
    /// own).
    #[arg(long, default_value = "strict")]
    ordering: String,
    /// The retry wait while the endpoint is down (the schedule repeats it 360 times).
    #[arg(long, default_value = "5s")]
    retry_every: String,
    /// Seconds to wait for the drain before giving up.
    #[arg(long, default_value_t = 1800)]
    drain_timeout: u64,
    /// The `ledgerhook` binary.
    #[arg(long, default_value = "target/release/ledgerhook")]
    ledgerhook: PathBuf,
}

/// Where requests go: the server and its realms.
struct Ingestion<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    realms: &'a [String],
    batch: usize,
}

impl Ingestion<'_> {
    /// `clients` clients send requests of `batch` events until `events` events were
    /// acknowledged or `until` passed; answers the requests and events acknowledged.
    async fn run(&self, clients: usize, events: u64, until: Instant) -> (u64, u64) {
        let requests_wanted = events.div_ceil(self.batch as u64);
        let next = Arc::new(AtomicU64::new(0));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (client, next, acknowledged) = (self.client.clone(), next.clone(), acknowledged.clone());
            let (base, realms, batch) = (self.base.to_owned(), self.realms.to_vec(), self.batch);
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests_wanted || Instant::now() >= until {
                        return;
                    }
                    let body = batch_of(c, n, batch);
                    let realm = &realms[n as usize % realms.len()];
                    let sent = client
                        .post(format!("{base}/api/v1/realms/{realm}/events"))
                        .bearer_auth(OPERATOR)
                        .json(&body)
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status().is_success()) {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        let requests = acknowledged.load(Ordering::Relaxed);
        (requests, requests * self.batch as u64)
    }
}

/// `batch` `Customer` updates, each id unique and ending in its send time in µs (the
/// receiver's latency reads it).
fn batch_of(client: usize, n: u64, batch: usize) -> Value {
    let sent = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let at = Timestamp(sent.as_millis() as i64).to_rfc3339();
    let micros = sent.as_micros();
    Value::Array(
        (0..batch)
            .map(|k| json!({"name": "Customer", "id": format!("b{client}.{n}.{k}-{micros}"), "operation": "Update", "lastUpdated": at}))
            .collect(),
    )
}

/// Polls the receiver until `requests` were answered `2xx` or `timeout` passed, printing
/// progress every 5 s; answers the count reached.
async fn wait_for_ok(
    receiver: &mut ReceiverProcess,
    requests: u64,
    timeout: Duration,
    rss: &RssWatch,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut shown = Instant::now();
    loop {
        let ok = receiver.command("ok")?["ok"].as_u64().unwrap_or(0);
        if ok >= requests || start.elapsed() > timeout {
            return Ok(ok);
        }
        if shown.elapsed() > Duration::from_secs(5) {
            shown = Instant::now();
            eprintln!(
                "backlog: drain {:.0} s: {} of {} notifications delivered, server RSS {:.0} MiB",
                start.elapsed().as_secs_f64(),
                grouped(ok as f64, 0),
                grouped(requests as f64, 0),
                crate::memory::status_kib(rss.pid(), "VmRSS").unwrap_or(0) as f64 / 1024.0
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs the three phases and reports them.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.batch == 0 || args.realms == 0 || args.clients == 0 {
        bail!("--batch, --realms and --clients must be at least 1");
    }
    let mut receiver = ReceiverProcess::start()?;
    let mut server_args = receiver.server_args("0")?;
    let schedule = vec![args.retry_every.as_str(); 360].join(",");
    server_args.extend(["--retry-schedule".to_owned(), schedule]);
    let server = BenchServer::start(&args.ledgerhook, args.backend.kind(), &server_args).await?;
    let rss = RssWatch::start(server.pid());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .build()?;
    let hook = receiver.hook();
    let (app, realms) = subscribe_app(&client, &server.base, &hook, args.realms).await?;
    crate::deliver::call(
        &client,
        reqwest::Method::PUT,
        format!("{}/api/v1/apps/{app}/webhooks/sandbox", server.base),
        json!({"url": hook, "entities": "*", "ordering": args.ordering}),
    )
    .await?;
    let ingestion = Ingestion {
        client: &client,
        base: &server.base,
        realms: &realms,
        batch: args.batch,
    };
    let backend = args.backend.name();
    eprintln!(
        "backlog: {backend}, {} realms, {} events per request, ordering {}",
        args.realms, args.batch, args.ordering
    );

    // 1. Steady: the endpoint up.
    receiver.command("reset")?;
    rss.take_peak_mib();
    let until = Instant::now() + Duration::from_secs_f64(args.steady);
    let (steady_requests, _) = ingestion.run(args.clients, u64::MAX, until).await;
    wait_for_ok(&mut receiver, steady_requests, Duration::from_secs(300), &rss).await?;
    let steady = receiver.command("stats")?;
    let steady_rate = rate(&steady);
    let steady_rss = rss.take_peak_mib();
    eprintln!(
        "backlog: steady: {} notifications at {steady_rate:.0}/s, p99 {:.1} ms",
        steady["requests"], steady["p99_ms"]
    );

    // 2. Outage: the endpoint answers 503 while the backlog is accepted.
    receiver.command("answer 503")?;
    receiver.command("reset")?;
    let started = Instant::now();
    let (requests, events) = ingestion
        .run(
            args.clients,
            args.events,
            Instant::now() + Duration::from_secs(3600),
        )
        .await;
    let ingest_seconds = started.elapsed().as_secs_f64();
    let outage_rss = rss.take_peak_mib();
    eprintln!(
        "backlog: outage: {} events in {} requests accepted in {ingest_seconds:.1} s, server RSS peak {outage_rss:.0} MiB",
        grouped(events as f64, 0),
        grouped(requests as f64, 0)
    );

    // 3. Drain: the endpoint is back.
    receiver.command("answer 200")?;
    let up = Instant::now();
    let timeout = Duration::from_secs(args.drain_timeout);
    let ok = wait_for_ok(&mut receiver, requests, timeout, &rss).await?;
    let drain_seconds = up.elapsed().as_secs_f64();
    let drain_rss = rss.take_peak_mib();
    // Let a late duplicate show itself before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let drained = receiver.command("stats")?;
    let delivered = drained["events"].as_u64().unwrap_or(0);
    let duplicates = drained["duplicates"].as_u64().unwrap_or(0);
    let lost = events.saturating_sub(delivered.saturating_sub(duplicates * args.batch as u64));
    let drain_rate = rate(&drained);

    let mut report = Report::new(format!(
        "backlog of {} events, {backend}, {} realms, {} events per notification, {}",
        grouped(args.events as f64, 0),
        args.realms,
        args.batch,
        args.ordering
    ));
    report
        .number(
            "steady_notifications_per_s",
            "steady delivery, notifications/s",
            steady_rate,
            0,
        )
        .number(
            "steady_p99_ms",
            "steady p99, ms",
            steady["p99_ms"].as_f64().unwrap_or(0.0),
            1,
        )
        .number(
            "events_accepted",
            "events accepted during the outage",
            events as f64,
            0,
        )
        .number(
            "ingest_events_per_s",
            "ingestion during the outage, events/s",
            events as f64 / ingest_seconds,
            0,
        )
        .number(
            "notifications",
            "notifications delivered after the outage",
            ok as f64,
            0,
        )
        .number(
            "drain_notifications_per_s",
            "drain, notifications/s",
            drain_rate,
            0,
        )
        .number(
            "drain_events_per_s",
            "drain, events/s",
            drain_rate * args.batch as f64,
            0,
        )
        .number(
            "drain_vs_steady",
            "drain ÷ steady",
            drain_rate / steady_rate.max(1e-9),
            2,
        )
        .number(
            "drain_seconds",
            "endpoint up → last delivery, s",
            drain_seconds,
            1,
        )
        .number("rss_steady_mib", "server RSS peak, steady, MiB", steady_rss, 0)
        .number("rss_outage_mib", "server RSS peak, outage, MiB", outage_rss, 0)
        .number("rss_drain_mib", "server RSS peak, drain, MiB", drain_rss, 0)
        .number(
            "rss_lifetime_peak_mib",
            "server RSS high-water mark (VmHWM), MiB",
            rss.lifetime_peak_mib(),
            0,
        )
        .number("lost", "events lost", lost as f64, 0)
        .number(
            "duplicates",
            "notifications delivered twice",
            duplicates as f64,
            0,
        );
    report.emit()?;
    if lost > 0 || duplicates > 0 || ok < requests {
        bail!("{lost} events lost, {duplicates} notifications delivered twice, {ok} of {requests} delivered");
    }
    Ok(())
}

/// Notifications per second over the receiver's span of `2xx` answers.
fn rate(stats: &Value) -> f64 {
    let requests = stats["requests"].as_f64().unwrap_or(0.0);
    let span = stats["span_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    requests / span.max(1e-9)
}
