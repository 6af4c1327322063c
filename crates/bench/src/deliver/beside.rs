//! The slow-neighbour benchmark (`--slow N`): the healthy endpoint's latency at `--rate`
//! alone, then with N endpoints beside it that receive every event too and answer each
//! request only after `--slow-after` seconds. Against Ledgerhook and, with `--svix`,
//! against the Svix server in the same run, with the same load generator and receiver.
//!
//! On Ledgerhook a slow endpoint is another app whose configuration sends to the
//! receiver's `/after/MS/i`, connected to the same realms; on Svix, another endpoint of
//! the one app. The receiver leaves `/after/…` out of its figures, so they are the healthy
//! endpoint's alone. The slow endpoints are added for the second phase of each run and
//! removed after it; the next run starts once their open requests have been answered.

use super::*;

/// The slow-neighbour mode (`--slow`): Ledgerhook's healthy realms (the first 50), then
/// the same against Svix when `--svix` is given; one report with both.
pub(super) async fn slow_neighbours(
    args: &Args,
    client: &reqwest::Client,
    server: BenchServer,
    receiver: &mut ReceiverProcess,
    realms: &[String],
) -> anyhow::Result<()> {
    let healthy = &realms[..realms.len().min(50)];
    let target = Target::Ledgerhook {
        base: server.base.clone(),
        realms: healthy.to_vec(),
    };
    let side = Side::Ledgerhook {
        client,
        base: &server.base,
        realms: healthy,
    };
    let label = format!("ledgerhook {}", args.backend.name());
    let ours = beside(args, client, &target, &side, receiver, &label).await?;
    drop(server);
    let theirs = match peer::run_sh(&args.svix)? {
        Some(run_sh) => {
            let svix = SvixServer::start(&run_sh, &receiver.ca).await?;
            let app = svix.app_with_endpoints(&[receiver.hook()]).await?;
            let target = Target::Svix {
                base: svix.base.clone(),
                token: svix.token.clone(),
                app: app.clone(),
            };
            let side = Side::Svix {
                svix: &svix,
                app: &app,
            };
            Some(beside(args, client, &target, &side, receiver, "svix").await?)
        }
        None => None,
    };
    report(args, ours, theirs)
}

/// Where the slow endpoints are added and removed.
pub(super) enum Side<'a> {
    /// Another app per endpoint, connected to `realms`.
    Ledgerhook {
        client: &'a reqwest::Client,
        base: &'a str,
        realms: &'a [String],
    },
    /// Another endpoint of `app`.
    Svix { svix: &'a SvixServer, app: &'a str },
}

impl Side<'_> {
    /// An endpoint for each of `urls`; answers what [`Side::remove`] takes.
    async fn add(&self, urls: &[String]) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::with_capacity(urls.len());
        for url in urls {
            ids.push(match self {
                Side::Ledgerhook { client, base, realms } => fan_out_to(client, base, url, realms).await?,
                Side::Svix { svix, app } => svix.add_endpoint(app, url).await?,
            });
        }
        Ok(ids)
    }

    /// Removes the endpoints [`Side::add`] made.
    async fn remove(&self, ids: Vec<String>) -> anyhow::Result<()> {
        for id in ids {
            match self {
                Side::Ledgerhook { client, base, .. } => {
                    client
                        .delete(format!("{base}/api/v1/apps/{id}/webhooks/sandbox"))
                        .bearer_auth(OPERATOR)
                        .send()
                        .await?
                        .error_for_status()?;
                }
                Side::Svix { svix, app } => svix.delete_endpoint(app, &id).await?,
            }
        }
        Ok(())
    }
}

/// Medians of one target's runs: the healthy endpoint alone and beside the slow ones.
#[derive(Clone, Copy, Default)]
pub(super) struct Beside {
    alone_p99: f64,
    beside_p50: f64,
    beside_p99: f64,
    /// Healthy events not delivered within the drain's deadline, all runs.
    undelivered: u64,
    /// Healthy notifications delivered twice, all runs.
    duplicates: u64,
}

/// The slow endpoints' URLs on `receiver`.
pub(super) fn slow_urls(args: &Args, receiver: &ReceiverProcess) -> Vec<String> {
    let millis = (args.slow_after * 1000.0).round() as u64;
    (1..=args.slow)
        .map(|i| format!("https://127.0.0.1:{}/after/{millis}/{i}", receiver.port))
        .collect()
}

/// `--runs` runs against `target`: healthy latency at `--rate` alone, then beside the slow
/// endpoints added on `side`; prints each run, answers the medians.
pub(super) async fn beside(
    args: &Args,
    client: &reqwest::Client,
    target: &Target,
    side: &Side<'_>,
    receiver: &mut ReceiverProcess,
    label: &str,
) -> anyhow::Result<Beside> {
    let rate = args.rate.unwrap_or(200.0);
    let urls = slow_urls(args, receiver);
    let settle = Duration::from_secs_f64(args.slow_after + 2.0);
    let warm = load(client, target, args.clients, 1.0, Some(rate)).await;
    drain(receiver, warm).await?;
    let p = |stats: &Value, key: &str| stats[key].as_f64().unwrap_or(0.0);
    let (mut alone_p99s, mut beside_p50s, mut beside_p99s) = (Vec::new(), Vec::new(), Vec::new());
    let (mut undelivered, mut duplicates) = (0, 0);
    for run in 0..args.runs.max(1) {
        receiver.command("reset")?;
        let sent = load(client, target, args.clients, args.duration, Some(rate)).await;
        let alone = drain(receiver, sent).await?;
        let ids = side.add(&urls).await?;
        receiver.command("reset")?;
        let sent = load(client, target, args.clients, args.duration, Some(rate)).await;
        let crowded = drain(receiver, sent).await?;
        side.remove(ids).await?;
        tokio::time::sleep(settle).await;
        let missing = sent.saturating_sub(crowded["events"].as_u64().unwrap_or(0));
        undelivered += missing;
        let doubled = alone["duplicates"].as_u64().unwrap_or(0) + crowded["duplicates"].as_u64().unwrap_or(0);
        duplicates += doubled;
        println!(
            "{label} run {run}: healthy p50/p99 alone {:.1}/{:.1} ms, beside {} endpoints answering after {} s {:.1}/{:.1} ms; \
             {missing} of {sent} not delivered within the deadline, {doubled} delivered twice; slow requests answered {}",
            p(&alone, "p50_ms"),
            p(&alone, "p99_ms"),
            args.slow,
            args.slow_after,
            p(&crowded, "p50_ms"),
            p(&crowded, "p99_ms"),
            crowded["slow"],
        );
        alone_p99s.push(p(&alone, "p99_ms"));
        beside_p50s.push(p(&crowded, "p50_ms"));
        beside_p99s.push(p(&crowded, "p99_ms"));
    }
    Ok(Beside {
        alone_p99: median(alone_p99s),
        beside_p50: median(beside_p50s),
        beside_p99: median(beside_p99s),
        undelivered,
        duplicates,
    })
}

/// The result: one side, or both with the ratios (Svix's figure over Ledgerhook's).
pub(super) fn report(args: &Args, ours: Beside, theirs: Option<Beside>) -> anyhow::Result<()> {
    let mut report = crate::report::Report::new(format!(
        "healthy endpoint beside {} answering after {} s, {}, {:.0} events/s, {} realms, median of {} runs",
        args.slow,
        args.slow_after,
        args.backend.name(),
        args.rate.unwrap_or(200.0),
        args.realms.min(50),
        args.runs.max(1)
    ));
    let sides = [("ledgerhook", Some(ours)), ("svix", theirs)];
    for (name, figures) in sides {
        let Some(f) = figures else { continue };
        report
            .number(
                &format!("{name}_alone_p99_ms"),
                &format!("{name}: healthy p99 alone, ms"),
                f.alone_p99,
                1,
            )
            .number(
                &format!("{name}_beside_p50_ms"),
                &format!("{name}: healthy p50 beside, ms"),
                f.beside_p50,
                1,
            )
            .number(
                &format!("{name}_beside_p99_ms"),
                &format!("{name}: healthy p99 beside, ms"),
                f.beside_p99,
                1,
            )
            .number(
                &format!("{name}_undelivered"),
                &format!("{name}: healthy events not delivered within 120 s"),
                f.undelivered as f64,
                0,
            )
            .number(
                &format!("{name}_duplicates"),
                &format!("{name}: healthy notifications delivered twice"),
                f.duplicates as f64,
                0,
            );
    }
    if let Some(theirs) = theirs {
        report.number(
            "ratio_beside_p99",
            "Svix's p99 beside ÷ Ledgerhook's",
            theirs.beside_p99 / ours.beside_p99.max(1e-9),
            1,
        );
    }
    report.emit()?;
    if args.check && (ours.undelivered > 0 || ours.duplicates > 0) {
        bail!(
            "{} healthy events not delivered, {} delivered twice",
            ours.undelivered,
            ours.duplicates
        );
    }
    Ok(())
}
