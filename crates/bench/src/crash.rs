//! Crash trials: `trials` times on a fresh database, load a server with ingestion (so
//! that delivery runs under load too, at window 0), SIGKILL it at a random moment, start
//! it again on the same database, and check that every acknowledged event reaches the
//! receiver and that no notification (`webhook-id`) ever arrived with two different
//! bodies. Redeliveries of the same bytes are allowed (at-least-once) and counted.
//!
//! `ledgerhook-bench crash --backend sqlite --trials 20`

use crate::deliver::subscribe;
use crate::server::{loopback_args, Backend, BenchServer, OPERATOR};
use anyhow::bail;
use ledgerhook_testkit::receiver;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of `ledgerhook-bench crash`.
#[derive(clap::Args)]
pub struct Args {
    /// Database backend of the server under test.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// Kill-and-restart trials, each on a fresh database.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Concurrent ingestion clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Realms the events are spread over.
    #[arg(long, default_value_t = 20)]
    realms: usize,
    /// The kill comes between 0.3 s and this many seconds into the load.
    #[arg(long, default_value_t = 3.0)]
    max_kill_after: f64,
    /// How long to wait after the restart for every acknowledged event (seconds).
    #[arg(long, default_value_t = 60.0)]
    drain_timeout: f64,
    /// Seed of the kill moments.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The `ledgerhook` binary to start.
    #[arg(long, default_value = "target/release/ledgerhook")]
    ledgerhook: PathBuf,
}

/// What one trial saw.
struct Trial {
    kill_after: Duration,
    acknowledged: usize,
    unanswered: usize,
    delivered: usize,
    lost: usize,
    redelivered: usize,
    two_bodies: usize,
    drained_in: Duration,
}

/// The entity ids of the events in a delivered legacy payload.
fn entity_ids(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    value["eventNotifications"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| {
            n["dataChangeEvent"]["entities"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

/// Ingestion from `clients` tasks until `stop`: one event per request, each with its own
/// id; answers the ids acknowledged (`202`) and the number of requests left unanswered.
async fn load(
    base: String,
    realms: Arc<Vec<String>>,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> (HashSet<String>, usize) {
    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let unanswered = Arc::new(Mutex::new(0usize));
    let mut tasks = Vec::new();
    for client_number in 0..clients {
        let (base, realms, stop) = (base.clone(), realms.clone(), stop.clone());
        let (acknowledged, unanswered) = (acknowledged.clone(), unanswered.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let mut n = 0usize;
            // Bounded: the load stops at the kill (a few seconds) or after 200,000 requests.
            while !stop.load(Ordering::Relaxed) && n < 200_000 {
                let id = format!("c{client_number}-{n}");
                let realm = &realms[n % realms.len()];
                n += 1;
                let answer = client
                    .post(format!("{base}/api/v1/realms/{realm}/events"))
                    .bearer_auth(OPERATOR)
                    .json(&json!([{"name": "Customer", "id": id, "operation": "Create"}]))
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status() == 202 => {
                        acknowledged.lock().unwrap().insert(id);
                    }
                    Ok(_) => *unanswered.lock().unwrap() += 1,
                    Err(_) => {
                        *unanswered.lock().unwrap() += 1;
                        // The server is gone: stop this client.
                        break;
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let unanswered = *unanswered.lock().unwrap();
    (acknowledged, unanswered)
}

async fn trial(args: &Args, kill_after: Duration) -> anyhow::Result<Trial> {
    let server_args = loopback_args("0");
    let mut server = BenchServer::start(&args.ledgerhook, args.backend.kind(), &server_args).await?;
    let hook = receiver::start(None).await;
    let client = reqwest::Client::new();
    let realms = Arc::new(subscribe(&client, &server.base, &hook.url("http", "/hook"), args.realms).await?);
    let stop = Arc::new(AtomicBool::new(false));
    let loading = tokio::spawn(load(server.base.clone(), realms, args.clients, stop.clone()));
    tokio::time::sleep(kill_after).await;
    server.kill()?;
    stop.store(true, Ordering::Relaxed);
    let (acknowledged, unanswered) = loading.await?;
    let restarted = Instant::now();
    server.restart()?;
    let deadline = restarted + Duration::from_secs_f64(args.drain_timeout);
    loop {
        let seen: HashSet<String> = hook.requests().iter().flat_map(|r| entity_ids(&r.body)).collect();
        let missing = acknowledged.difference(&seen).count();
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_in = restarted.elapsed();
    // Give a redelivery still in flight a moment to land before judging bodies.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = hook.requests();
    let mut bodies: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for request in &requests {
        let id = request.headers.get("webhook-id").cloned().unwrap_or_default();
        bodies.entry(id).or_default().push(request.body.clone());
    }
    let two_bodies = bodies.values().filter(|b| b.iter().any(|x| x != &b[0])).count();
    let redelivered = bodies.values().map(|b| b.len() - 1).sum();
    let seen: HashSet<String> = requests.iter().flat_map(|r| entity_ids(&r.body)).collect();
    Ok(Trial {
        kill_after,
        acknowledged: acknowledged.len(),
        unanswered,
        delivered: acknowledged.intersection(&seen).count(),
        lost: acknowledged.difference(&seen).count(),
        redelivered,
        two_bodies,
        drained_in,
    })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let backend = args.backend.name();
    println!(
        "backend={backend} trials={} clients={} realms={} seed={}",
        args.trials, args.clients, args.realms, args.seed
    );
    println!("| trial | killed after | acknowledged | unanswered | delivered | lost | redelivered | two bodies | drained in |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let (mut lost, mut two_bodies, mut acknowledged, mut redelivered) = (0, 0, 0, 0);
    let mut drains = Vec::new();
    for number in 1..=args.trials {
        let kill_after = Duration::from_secs_f64(rng.gen_range(0.3..args.max_kill_after.max(0.31)));
        let t = trial(&args, kill_after).await?;
        println!(
            "| {number} | {:.2} s | {} | {} | {} | {} | {} | {} | {:.1} s |",
            t.kill_after.as_secs_f64(),
            t.acknowledged,
            t.unanswered,
            t.delivered,
            t.lost,
            t.redelivered,
            t.two_bodies,
            t.drained_in.as_secs_f64()
        );
        lost += t.lost;
        two_bodies += t.two_bodies;
        acknowledged += t.acknowledged;
        redelivered += t.redelivered;
        drains.push(t.drained_in.as_secs_f64());
    }
    drains.sort_by(f64::total_cmp);
    let summary = json!({
        "backend": backend,
        "trials": args.trials,
        "acknowledged": acknowledged,
        "lost": lost,
        "two_bodies": two_bodies,
        "redelivered": redelivered,
        "drain_max_s": drains.last().copied().unwrap_or(0.0),
    });
    println!("{summary}");
    let mut report = crate::report::Report::new(format!("kill -9 trials, {backend}"));
    report
        .number("trials", "trials", args.trials as f64, 0)
        .number("acknowledged", "events acknowledged", acknowledged as f64, 0)
        .number("lost", "acknowledged events lost", lost as f64, 0)
        .number(
            "two_bodies",
            "notifications with two bodies",
            two_bodies as f64,
            0,
        )
        .number(
            "redelivered",
            "redeliveries of the same bytes",
            redelivered as f64,
            0,
        )
        .number(
            "drain_max_s",
            "slowest drain after a restart, s",
            drains.last().copied().unwrap_or(0.0),
            1,
        );
    report.emit()?;
    if lost > 0 || two_bodies > 0 {
        bail!("{lost} acknowledged events lost, {two_bodies} notifications with two bodies");
    }
    Ok(())
}
