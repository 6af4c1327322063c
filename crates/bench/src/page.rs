//! The notification-list benchmark: a server whose database holds `notifications`
//! notifications of one app (a real one made by the pipeline, copied in SQL to save the
//! hours ingestion would take), then timed `GET /api/v1/apps/{app}/notifications` pages
//! of 100 — the first page, a page deep in the history by cursor, and pages filtered by
//! status, realm, both, and a time range. Each query is repeated `repeats` times.
//!
//! `ledgerhook-bench page --backend sqlite --notifications 1000000`

use crate::deliver::{call, subscribe_app};
use crate::server::{loopback_args, Backend, BenchServer, OPERATOR};
use anyhow::{ensure, Context};
use ledgerhook_domain::Timestamp;
use ledgerhook_testkit::{receiver, Kind};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `ledgerhook-bench page`.
#[derive(clap::Args)]
pub struct Args {
    /// Database backend of the server under test.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// Notifications in the database.
    #[arg(long, default_value_t = 1_000_000)]
    notifications: u64,
    /// Realms they are spread over.
    #[arg(long, default_value_t = 1_000)]
    realms: u64,
    /// Times each page is loaded.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// Notifications per page.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Run `ANALYZE` after seeding (SQLite's planner otherwise has no statistics; the
    /// server's queries do not depend on them).
    #[arg(long)]
    analyze: bool,
    /// The `ledgerhook` binary to start.
    #[arg(long, default_value = "target/release/ledgerhook")]
    ledgerhook: PathBuf,
}

/// Copies the app's one notification (and its attempt) `count` times: every 100th
/// `dropped`, the rest `delivered`; realms `bench-0` … spread round-robin; one
/// notification every 10 ms up to now. Then, if `refresh`, the planner's statistics are
/// brought up to date (`ANALYZE`, which PostgreSQL's autovacuum would run on its own).
async fn seed(kind: Kind, url: &str, count: u64, realms: u64, refresh: bool) -> anyhow::Result<()> {
    let now = Timestamp::now().millis();
    let numbers = match kind {
        Kind::Sqlite => {
            format!("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})")
        }
        Kind::Postgres => format!("WITH n(i) AS (SELECT generate_series(1, {count})::BIGINT)"),
    };
    let insert = format!(
        "{numbers} INSERT INTO notifications (id, config_id, app_id, environment, realm_id, format, status, test, \
           payload, event_count, created_at, next_attempt_at, attempt_count, first_attempt_at) \
         SELECT 'ntf_seed_' || i, t.config_id, t.app_id, t.environment, 'bench-' || (i % {realms}), t.format, \
           CASE WHEN i % 100 = 0 THEN 'dropped' ELSE 'delivered' END, 0, t.payload, t.event_count, \
           {now} - ({count} - i) * 10, NULL, 1, {now} - ({count} - i) * 10 \
         FROM n, (SELECT * FROM notifications ORDER BY seq LIMIT 1) t"
    );
    let attempts =
        "INSERT INTO attempts (notification_seq, number, started_at, duration_ms, outcome, status_code, \
           error, response_body, request_headers) \
         SELECT n.seq, 1, n.created_at, 3, 'success', 200, NULL, 'ok', a.request_headers \
         FROM notifications n, (SELECT * FROM attempts LIMIT 1) a WHERE n.id LIKE 'ntf_seed_%'";
    let mut statements = vec![insert, attempts.to_owned()];
    if refresh {
        // What PostgreSQL's autovacuum does on its own after a bulk insert.
        statements.push("ANALYZE".to_owned());
    }
    crate::scale::seed::execute(kind, url, &statements).await
}

/// `[p50, p95, max]` in milliseconds.
fn summary(mut millis: Vec<f64>) -> [f64; 3] {
    millis.sort_by(f64::total_cmp);
    let at = |p: f64| millis[((millis.len() - 1) as f64 * p).round() as usize];
    [at(0.5), at(0.95), at(1.0)]
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let kind = args.backend.kind();
    let server_args = loopback_args("0");
    let server = BenchServer::start(&args.ledgerhook, kind, &server_args).await?;
    let hook = receiver::start(None).await;
    let client = reqwest::Client::new();
    let (app_id, realms) = subscribe_app(&client, &server.base, &hook.url("http", "/hook"), 1).await?;
    call(
        &client,
        reqwest::Method::POST,
        format!("{}/api/v1/realms/{}/events", server.base, realms[0]),
        json!([{"name": "Customer", "id": "1", "operation": "Create"}]),
    )
    .await?;
    hook.wait_for(1, Duration::from_secs(10)).await;
    // The attempt's record lands just after the answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seeding = Instant::now();
    seed(
        kind,
        &server.database.url,
        args.notifications,
        args.realms,
        args.analyze,
    )
    .await?;
    println!(
        "backend={} notifications={} realms={} seeded in {:.1}s",
        args.backend.name(),
        args.notifications + 1,
        args.realms,
        seeding.elapsed().as_secs_f64()
    );
    let base = format!(
        "{}/api/v1/apps/{app_id}/notifications?limit={}",
        server.base, args.limit
    );
    // Seeded notifications are 10 ms apart, the newest now: the middle is this far back.
    let half_back = i64::try_from(args.notifications / 2)? * 10;
    let middle = Timestamp(Timestamp::now().millis() - half_back).to_rfc3339();
    let since = Timestamp(Timestamp::now().millis() - 3_600_000).to_rfc3339();
    let until = format!("{base}&until={middle}");
    let cursor = next_cursor(&client, &until).await?;
    let pages = [
        ("first page", base.clone()),
        ("until halfway back (time range)", until.clone()),
        ("a page halfway back (cursor)", format!("{base}&cursor={cursor}")),
        ("status=dropped", format!("{base}&status=dropped")),
        ("realm=bench-7", format!("{base}&realm=bench-7")),
        (
            "status=dropped&realm=bench-0",
            format!("{base}&status=dropped&realm=bench-0"),
        ),
        (
            "since an hour ago, status=dropped",
            format!("{base}&since={since}&status=dropped"),
        ),
    ];
    let mut report = crate::report::Report::new(format!(
        "notification pages of {}, {}, {} notifications",
        args.limit,
        args.backend.name(),
        args.notifications + 1
    ));
    println!("| page of {} | p50 | p95 | max |", args.limit);
    println!("|---|---|---|---|");
    for (name, url) in pages {
        let mut millis = Vec::with_capacity(args.repeats);
        for _ in 0..args.repeats.max(1) {
            let started = Instant::now();
            let page = get(&client, &url).await?;
            millis.push(started.elapsed().as_secs_f64() * 1000.0);
            let rows = page["data"].as_array().map_or(0, Vec::len);
            ensure!(rows > 0, "{name}: an empty page");
        }
        let [p50, p95, max] = summary(millis);
        println!("| {name} | {p50:.1} ms | {p95:.1} ms | {max:.1} ms |");
        report.figure(
            name,
            name,
            json!({"p50_ms": p50, "p95_ms": p95, "max_ms": max}),
            format!("{p50:.1} / {p95:.1} / {max:.1} ms"),
        );
    }
    report.emit()
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let response = client.get(url).bearer_auth(OPERATOR).send().await?;
    ensure!(response.status().is_success(), "{url}: {}", response.status());
    Ok(response.json().await?)
}

/// The cursor of the page after `url`'s first.
async fn next_cursor(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let first = get(client, url).await?;
    Ok(first["next_cursor"]
        .as_str()
        .context("more than one page")?
        .to_owned())
}
