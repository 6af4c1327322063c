//! The delivery benchmarks. Three processes: this load generator, `ledgerhook serve`,
//! and the receiver (`ledgerhook-bench receiver`, HTTPS with keep-alive). The receiver's
//! raw capacity is measured first, in the same run.
//!
//! - throughput: `--realms` realms, single-event requests from `--clients` clients as
//!   fast as they go for `--duration`, then until everything is delivered;
//! - latency: the same at a fixed `--rate` of events per second (`--runs` runs, medians);
//! - isolation: `--dead N` endpoints that never answer beside the healthy one, latency
//!   at `--rate` alone and then with them;
//! - slow neighbours: `--slow N` endpoints answering after `--slow-after` seconds beside
//!   the healthy one, receiving every event too; side by side with Svix (`--svix`).

mod beside;
mod isolation;
mod measure;
mod peer;

use crate::cpu::Parties;
use crate::report::median;
use crate::server::{Backend, BenchServer, OPERATOR};
use anyhow::{bail, Context};
use isolation::isolation;
use ledgerhook_domain::Timestamp;
use measure::{measure, scenario};
use peer::SvixServer;
pub(crate) use peer::Target;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `ledgerhook-bench deliver`.
#[derive(clap::Args)]
pub struct Args {
    /// Database backend of the server under test.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// Realms connected to the app.
    #[arg(long, default_value_t = 1000)]
    realms: usize,
    /// `sandbox-batch-window` of the server (the realms are sandbox realms).
    #[arg(long, default_value = "0")]
    window: String,
    /// Concurrent ingestion clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Events per second (latency and isolation modes); none: as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// Events per ingestion request, each a different entity of the request's realm (with
    /// a window they are gathered into fewer notifications than events).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    batch: u64,
    /// Runs of the latency mode; medians are reported.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Endpoints that never answer (isolation mode).
    #[arg(long, default_value_t = 0)]
    dead: usize,
    /// Endpoints beside the healthy one, receiving every event too, that answer only
    /// after `--slow-after` seconds (slow-neighbour mode; with `--svix` side by side).
    #[arg(long, default_value_t = 0)]
    slow: usize,
    /// Seconds the `--slow` endpoints take to answer.
    #[arg(long, default_value_t = 10.0)]
    slow_after: f64,
    /// Fan-out: this many apps, each with its own endpoint on the one receiver host
    /// (`/hook/1`, `/hook/2`, …), all connected to the same realms; every event is
    /// delivered this many times.
    #[arg(long, default_value_t = 1)]
    endpoints: usize,
    /// The `ordering` of the (first) app's configuration, `strict` or `best-effort`;
    /// none: the configuration's default (best-effort for the legacy format).
    #[arg(long)]
    ordering: Option<String>,
    /// The `ledgerhook` binary.
    #[arg(long, default_value = "target/release/ledgerhook")]
    ledgerhook: PathBuf,
    /// Also run the scenario against the Svix server started by this `run.sh` (with the
    /// same load generator and receiver, after Ledgerhook), and print both side by side.
    #[arg(long)]
    svix: Option<PathBuf>,
    /// Fail when an acknowledged event was not delivered or was delivered twice, or
    /// when the server's CPU time could not be read (the smoke runs of `.ci/run`).
    #[arg(long)]
    check: bool,
}

/// The benchmark receiver, a child process driven through its standard input.
pub(crate) struct ReceiverProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Its HTTPS port on 127.0.0.1.
    pub(crate) port: u16,
    /// The CA certificate the server must trust.
    pub(crate) ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl ReceiverProcess {
    /// Starts it; answers once it listens.
    pub(crate) fn start() -> anyhow::Result<ReceiverProcess> {
        let dir = tempfile::tempdir()?;
        let ca = dir.path().join("ca.pem");
        let mut child = Command::new(std::env::current_exe()?)
            .args(["receiver", "--ca-out", ca.to_str().context("path")?])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("port ")
            .context("receiver did not start")?
            .parse()?;
        Ok(ReceiverProcess {
            child,
            stdin,
            stdout,
            port,
            ca,
            _dir: dir,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The settings of a server delivering here (see [`crate::server::loopback_args`]),
    /// trusting this receiver's CA.
    pub(crate) fn server_args(&self, window: &str) -> anyhow::Result<Vec<String>> {
        let mut args = crate::server::loopback_args(window);
        args.extend([
            "--ca-file".to_owned(),
            self.ca.to_str().context("path")?.to_owned(),
        ]);
        Ok(args)
    }

    /// The endpoint URL: `https://127.0.0.1:PORT/hook`.
    pub(crate) fn hook(&self) -> String {
        format!("https://127.0.0.1:{}/hook", self.port)
    }

    /// Sends one command (see `receiver.rs`) and answers its JSON line.
    pub(crate) fn command(&mut self, command: &str) -> anyhow::Result<Value> {
        writeln!(self.stdin, "{command}")?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }
}

impl Drop for ReceiverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests per second the receiver answers when loaded directly (32 connections, 3 s).
async fn raw_capacity(receiver: &ReceiverProcess) -> anyhow::Result<f64> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&receiver.ca)?)?;
    let client = reqwest::Client::builder().add_root_certificate(ca).build()?;
    let url = format!("https://127.0.0.1:{}/raw", receiver.port);
    let body = r#"{"eventNotifications":[{"realmId":"1","dataChangeEvent":{"entities":[]}}]}"#;
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, url, done) = (client.clone(), url.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                if client
                    .post(&url)
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / 3.0)
}

pub(crate) async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> anyhow::Result<Value> {
    let response = client
        .request(method, url)
        .bearer_auth(OPERATOR)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{status}: {value}");
    }
    Ok(value)
}

/// An app subscribed to `url`, connected to `realms` new sandbox realms; answers them.
pub(crate) async fn subscribe(
    client: &reqwest::Client,
    base: &str,
    url: &str,
    realms: usize,
) -> anyhow::Result<Vec<String>> {
    Ok(subscribe_app(client, base, url, realms).await?.1)
}

/// [`subscribe`], answering the app's id too.
pub(crate) async fn subscribe_app(
    client: &reqwest::Client,
    base: &str,
    url: &str,
    realms: usize,
) -> anyhow::Result<(String, Vec<String>)> {
    let app_id = subscribed_app(client, base, url, "Bench").await?;
    let mut ids = Vec::with_capacity(realms);
    for _ in 0..realms {
        let realm = call(
            client,
            reqwest::Method::POST,
            format!("{base}/api/v1/realms"),
            json!({"name": "R", "environment": "sandbox"}),
        )
        .await?;
        let id = realm["id"].as_str().context("realm id")?.to_owned();
        connect(client, base, &app_id, &id).await?;
        ids.push(id);
    }
    Ok((app_id, ids))
}

/// A new app named `name` whose sandbox configuration sends everything to `url`.
async fn subscribed_app(
    client: &reqwest::Client,
    base: &str,
    url: &str,
    name: &str,
) -> anyhow::Result<String> {
    use reqwest::Method;
    let app = call(
        client,
        Method::POST,
        format!("{base}/api/v1/apps"),
        json!({"name": name}),
    )
    .await?;
    let app_id = app["id"].as_str().context("app id")?.to_owned();
    call(
        client,
        Method::PUT,
        format!("{base}/api/v1/apps/{app_id}/webhooks/sandbox"),
        json!({"url": url, "entities": "*"}),
    )
    .await?;
    Ok(app_id)
}

/// Connects `app_id` to `realm`.
async fn connect(client: &reqwest::Client, base: &str, app_id: &str, realm: &str) -> anyhow::Result<()> {
    call(
        client,
        reqwest::Method::POST,
        format!("{base}/api/v1/apps/{app_id}/connections"),
        json!({"realm_id": realm}),
    )
    .await?;
    Ok(())
}

/// Another app subscribed to `url` and connected to the same `realms`; answers its id.
async fn fan_out_to(
    client: &reqwest::Client,
    base: &str,
    url: &str,
    realms: &[String],
) -> anyhow::Result<String> {
    let app_id = subscribed_app(client, base, url, "Fan-out").await?;
    for realm in realms {
        connect(client, base, &app_id, realm).await?;
    }
    Ok(app_id)
}

/// Sends single-event requests to `target` for `duration` (paced at `rate` when given);
/// answers the events acknowledged.
pub(crate) async fn load(
    client: &reqwest::Client,
    target: &Target,
    clients: usize,
    duration: f64,
    rate: Option<f64>,
) -> u64 {
    load_counted(client, target, clients, duration, rate).await.0
}

/// [`load`], answering the requests acknowledged and those refused or unanswered (a
/// refusal is not in the receiver's latency: it must be counted on its own).
pub(crate) async fn load_counted(
    client: &reqwest::Client,
    target: &Target,
    clients: usize,
    duration: f64,
    rate: Option<f64>,
) -> (u64, u64) {
    load_batches(client, target, clients, duration, rate, 1).await
}

/// [`load_counted`] with `batch` events per request (different entities of one realm),
/// `rate` still in events per second; answers the events acknowledged and the requests
/// refused or unanswered.
pub(crate) async fn load_batches(
    client: &reqwest::Client,
    target: &Target,
    clients: usize,
    duration: f64,
    rate: Option<f64>,
    batch: u64,
) -> (u64, u64) {
    let acknowledged = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(duration);
    let interval = rate.map(|r| Duration::from_secs_f64(clients as f64 * batch as f64 / r));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, target, acknowledged) = (client.clone(), target.clone(), acknowledged.clone());
        let refused = refused.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            let mut next = start
                + interval
                    .map(|i| i.mul_f64(c as f64 / clients as f64))
                    .unwrap_or_default();
            while Instant::now() < end && n < 10_000_000 {
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                }
                // The id carries the send time in microseconds: the receiver's latency is
                // finer than `lastUpdated`'s milliseconds.
                let sent = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let last_updated = Timestamp(sent.as_millis() as i64).to_rfc3339();
                let events: Vec<Value> = (0..batch)
                    .map(|i| {
                        json!({"name": "Customer", "id": format!("{c}-{n}-{i}-{}", sent.as_micros()),
                                    "operation": "Update", "lastUpdated": last_updated})
                    })
                    .collect();
                let request = target.request(&client, c, n, clients, &Value::Array(events));
                n += 1;
                match request.send().await {
                    Ok(r) if r.status().is_success() => acknowledged.fetch_add(batch, Ordering::Relaxed),
                    _ => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    (
        acknowledged.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    )
}

/// Waits until the receiver has seen `events` events (at most 120 s); answers its stats.
pub(crate) async fn drain(receiver: &mut ReceiverProcess, events: u64) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stats = receiver.command("stats")?;
        if stats["events"].as_u64().unwrap_or(0) >= events || Instant::now() > deadline {
            return Ok(stats);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the benchmark and prints the figures.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.batch > 1 && (args.dead > 0 || args.slow > 0) {
        bail!("--batch applies to the throughput and latency modes, not with --dead or --slow");
    }
    let mut receiver = ReceiverProcess::start()?;
    let capacity = raw_capacity(&receiver).await?;
    receiver.command("reset")?;
    let kind = args.backend.kind();
    let server = BenchServer::start(&args.ledgerhook, kind, &receiver.server_args(&args.window)?).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .build()?;
    let hook = receiver.hook();
    let (app, realms) = subscribe_app(&client, &server.base, &hook, args.realms).await?;
    if let Some(ordering) = &args.ordering {
        call(
            &client,
            reqwest::Method::PUT,
            format!("{}/api/v1/apps/{app}/webhooks/sandbox", server.base),
            json!({"url": hook, "entities": "*", "ordering": ordering}),
        )
        .await?;
    }
    for endpoint in 1..args.endpoints.max(1) {
        fan_out_to(&client, &server.base, &format!("{hook}/{endpoint}"), &realms).await?;
    }
    let backend = args.backend.name();
    println!(
        "backend={backend} realms={} window={} clients={} receiver raw capacity={capacity:.0} requests/s",
        args.realms, args.window, args.clients
    );

    if args.dead > 0 {
        return isolation(&args, &client, &server, &mut receiver, &realms).await;
    }
    if args.slow > 0 {
        return beside::slow_neighbours(&args, &client, server, &mut receiver, &realms).await;
    }
    let target = Target::Ledgerhook {
        base: server.base.clone(),
        realms: realms.clone(),
    };
    let ours = measure(
        &args,
        &client,
        &target,
        &mut receiver,
        capacity,
        &format!("ledgerhook {backend}"),
        Some(server.pid()),
    )
    .await?;
    drop(server);
    let Some(run_sh) = peer::run_sh(&args.svix)? else {
        return Ok(());
    };
    let svix = SvixServer::start(&run_sh, &receiver.ca).await?;
    let urls: Vec<String> = if args.endpoints > 1 {
        (1..=args.endpoints).map(|e| format!("{hook}/{e}")).collect()
    } else {
        vec![hook.clone()]
    };
    let app = svix.app_with_endpoints(&urls).await?;
    let target = Target::Svix {
        base: svix.base.clone(),
        token: svix.token.clone(),
        app,
    };
    let theirs = measure(&args, &client, &target, &mut receiver, capacity, "svix", None).await?;
    println!();
    println!("| {} | Svix | Ledgerhook {backend} | ratio |", scenario(&args));
    println!("|---|---|---|---|");
    let rows = [
        ("deliveries/s (median)", theirs.rate, ours.rate),
        ("p50 latency, ms (median)", theirs.p50, ours.p50),
        ("p99 latency, ms (median)", theirs.p99, ours.p99),
    ];
    for (name, svix, ledgerhook) in rows {
        let ratio = if name.starts_with("deliveries") {
            ledgerhook / svix.max(1e-9)
        } else {
            svix / ledgerhook.max(1e-9)
        };
        println!("| {name} | {svix:.1} | {ledgerhook:.1} | {ratio:.2}× |");
    }
    println!(
        "{}",
        json!({"scenario": scenario(&args), "backend": backend, "svix": theirs.json(), "ledgerhook": ours.json()})
    );
    Ok(())
}
