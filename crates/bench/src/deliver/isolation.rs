//! The isolation benchmark: `--dead N` endpoints that never answer beside the healthy
//! one, latency at `--rate` alone and then with them.

use super::*;

/// A listener that accepts connections and never answers.
async fn black_hole() -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    Ok(port)
}

/// Endpoints that never answer, each an app of its own with one realm, kept busy by a
/// feeder: a new notification for each whenever its previous attempt has timed out (the
/// shipped `delivery-timeout` is 3 s), spread evenly.
struct DeadEndpoints {
    apps: Vec<String>,
    stop: Arc<AtomicU64>,
    feeder: tokio::task::JoinHandle<()>,
}

impl DeadEndpoints {
    async fn start(
        client: &reqwest::Client,
        base: &str,
        hole: u16,
        count: usize,
    ) -> anyhow::Result<DeadEndpoints> {
        let (mut apps, mut realms) = (Vec::new(), Vec::new());
        for i in 0..count {
            let url = format!("http://127.0.0.1:{hole}/dead/{i}");
            let (app, ids) = subscribe_app(client, base, &url, 1).await?;
            apps.push(app);
            realms.extend(ids);
        }
        let (base, client, stop) = (base.to_owned(), client.clone(), Arc::new(AtomicU64::new(0)));
        let feeder_stop = stop.clone();
        let feeder = tokio::spawn(async move {
            let pause = Duration::from_secs(3) / realms.len().max(1) as u32;
            // Bounded: stops when told, and after an hour at most.
            let end = Instant::now() + Duration::from_secs(3600);
            while feeder_stop.load(Ordering::Relaxed) == 0 && Instant::now() < end {
                for realm in &realms {
                    if feeder_stop.load(Ordering::Relaxed) != 0 {
                        return;
                    }
                    let events = json!([{"name": "Customer", "id": "dead", "operation": "Update"}]);
                    let _ = client
                        .post(format!("{base}/api/v1/realms/{realm}/events"))
                        .bearer_auth(OPERATOR)
                        .json(&events)
                        .send()
                        .await;
                    tokio::time::sleep(pause).await;
                }
            }
        });
        Ok(DeadEndpoints { apps, stop, feeder })
    }

    /// Stops feeding, lets the last attempts time out, and deletes the configurations.
    async fn remove(self, client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
        self.stop.store(1, Ordering::Relaxed);
        let _ = self.feeder.await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        for app in &self.apps {
            client
                .delete(format!("{base}/api/v1/apps/{app}/webhooks/sandbox"))
                .bearer_auth(OPERATOR)
                .send()
                .await?
                .error_for_status()?;
        }
        Ok(())
    }
}

/// Healthy latency at `--rate` alone, then with `--dead` endpoints that never answer,
/// `--runs` times in turn (the dead endpoints are made afresh for each run and deleted
/// after it); medians of the runs.
pub(super) async fn isolation(
    args: &Args,
    client: &reqwest::Client,
    server: &BenchServer,
    receiver: &mut ReceiverProcess,
    realms: &[String],
) -> anyhow::Result<()> {
    let rate = args.rate.unwrap_or(200.0);
    let healthy = &realms[..realms.len().min(50)];
    // One measured phase: the healthy realms at `rate` for `--duration`.
    let target = Target::Ledgerhook {
        base: server.base.clone(),
        realms: healthy.to_vec(),
    };
    let measure = || load(client, &target, args.clients, args.duration, Some(rate));
    // Warm up (connections, caches).
    let warm = load(client, &target, args.clients, 1.0, Some(rate)).await;
    drain(receiver, warm).await?;
    let hole = black_hole().await?;
    let parties = Parties {
        server: server.pid(),
        receiver: receiver.pid(),
    };
    let (mut alone_p99s, mut crowded_p99s) = (Vec::new(), Vec::new());
    for run in 0..args.runs.max(1) {
        receiver.command("reset")?;
        let before = parties.sample();
        let sent = measure().await;
        let alone = drain(receiver, sent).await?;
        let alone_cpu = before.until(&parties.sample());
        let dead = DeadEndpoints::start(client, &server.base, hole, args.dead).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        receiver.command("reset")?;
        let before = parties.sample();
        let sent = measure().await;
        let crowded = drain(receiver, sent).await?;
        let crowded_cpu = before.until(&parties.sample());
        dead.remove(client, &server.base).await?;
        let p = |stats: &Value, key: &str| stats[key].as_f64().unwrap_or(0.0);
        println!(
            "run {run}: healthy p50/p99 alone {:.1}/{:.1} ms, with {} dead endpoints {:.1}/{:.1} ms (ratio of p99 {:.2})",
            p(&alone, "p50_ms"),
            p(&alone, "p99_ms"),
            args.dead,
            p(&crowded, "p50_ms"),
            p(&crowded, "p99_ms"),
            p(&crowded, "p99_ms") / p(&alone, "p99_ms").max(1e-9),
        );
        println!(
            "  slowest alone (latency(event→made) ms@arrival): {}",
            alone["slowest"]
        );
        println!("  slowest crowded: {}", crowded["slowest"]);
        println!("  alone   {alone_cpu}\n  crowded {crowded_cpu}");
        alone_p99s.push(p(&alone, "p99_ms"));
        crowded_p99s.push(p(&crowded, "p99_ms"));
    }
    let (alone, crowded) = (median(alone_p99s), median(crowded_p99s));
    println!(
        "isolation at {rate:.0} events/s, median of {} runs: healthy p99 alone {alone:.1} ms, with {} dead endpoints {crowded:.1} ms (ratio {:.2})",
        args.runs.max(1),
        args.dead,
        crowded / alone.max(1e-9)
    );
    let mut report = crate::report::Report::new(format!(
        "isolation, {}, {rate:.0} events/s beside {} endpoints that never answer",
        args.backend.name(),
        args.dead
    ));
    report
        .number("healthy_p99_alone_ms", "healthy p99 alone, ms (median)", alone, 1)
        .number(
            "healthy_p99_crowded_ms",
            "healthy p99 beside them, ms (median)",
            crowded,
            1,
        )
        .number("ratio", "ratio", crowded / alone.max(1e-9), 2);
    report.emit()
}
