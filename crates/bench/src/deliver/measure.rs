//! One scenario's runs against one target, drained and summed up as medians; the
//! scenario's name in the side-by-side tables.

use super::*;

/// The scenario's name in the tables.
pub(super) fn scenario(args: &Args) -> String {
    let load = match args.rate {
        Some(rate) => format!("paced {rate}/s"),
        None => format!("saturation, {} clients", args.clients),
    };
    let load = if args.batch > 1 {
        format!("{load}, {} events per request", args.batch)
    } else {
        load
    };
    if args.endpoints > 1 {
        format!("{load}, fan-out to {} endpoints", args.endpoints)
    } else {
        load
    }
}

/// Medians over a target's runs.
pub(super) struct Figures {
    pub(super) rate: f64,
    /// Events delivered per second, from the first request sent to the last delivery.
    pub(super) events_rate: f64,
    pub(super) p50: f64,
    pub(super) p99: f64,
    /// CPU milliseconds per delivery, the server's and PostgreSQL's together (Ledgerhook
    /// only: `None` for Svix, whose Redis and workers are not sampled).
    cpu_ms: Option<f64>,
    lost: u64,
    duplicates: u64,
}

impl Figures {
    pub(super) fn json(&self) -> Value {
        json!({"deliveries_per_s": self.rate, "events_per_s": self.events_rate, "p50_ms": self.p50, "p99_ms": self.p99, "cpu_ms_per_delivery": self.cpu_ms, "lost": self.lost, "duplicates": self.duplicates})
    }
}

/// `--runs` runs of the load against `target`, each drained; prints each run and answers
/// the medians. With `--check`, fails when an acknowledged event was not delivered (to
/// every endpoint) or one was delivered twice. With the `server` process's id, also the
/// CPU time it and PostgreSQL's processes spent from the load's start to the drain's
/// end, per delivery.
pub(super) async fn measure(
    args: &Args,
    client: &reqwest::Client,
    target: &Target,
    receiver: &mut ReceiverProcess,
    capacity: f64,
    label: &str,
    server: Option<u32>,
) -> anyhow::Result<Figures> {
    let (mut rates, mut events_rates) = (Vec::new(), Vec::new());
    let (mut p50s, mut p99s, mut cpu_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lost, mut duplicates) = (0, 0);
    let parties = server.map(|server| Parties {
        server,
        receiver: receiver.pid(),
    });
    for run in 0..args.runs.max(1) {
        receiver.command("reset")?;
        let started = Instant::now();
        let before = parties.map(|p| p.sample());
        let (acknowledged, _) =
            load_batches(client, target, args.clients, args.duration, args.rate, args.batch).await;
        let expected = acknowledged * args.endpoints.max(1) as u64;
        let stats = drain(receiver, expected).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let requests = stats["requests"].as_f64().unwrap_or(0.0);
        let span = stats["span_ms"].as_f64().unwrap_or(0.0) / 1000.0;
        let delivered = stats["events"].as_u64().unwrap_or(0);
        let doubled = stats["duplicates"].as_u64().unwrap_or(0);
        lost += expected.saturating_sub(delivered.saturating_sub(doubled));
        duplicates += doubled;
        let cpu = parties
            .zip(before)
            .map(|(p, before)| before.until(&p.sample()).server_and_database() * 1000.0 / requests.max(1.0));
        println!(
            "{label} run {run}: events acknowledged={acknowledged} delivered={delivered} notifications={requests} duplicates={doubled} \
             connections={} notifications/s={:.0} ({:.0}% of receiver capacity) events/s end-to-end={:.0} latency p50={:.1}ms p99={:.1}ms{}",
            stats["connections"],
            requests / span.max(1e-9),
            100.0 * requests / span.max(1e-9) / capacity,
            delivered as f64 / elapsed,
            stats["p50_ms"].as_f64().unwrap_or(0.0),
            stats["p99_ms"].as_f64().unwrap_or(0.0),
            cpu.map(|ms| format!(" cpu/delivery={ms:.2}ms")).unwrap_or_default(),
        );
        cpu_ms.extend(cpu);
        rates.push(requests / span.max(1e-9));
        events_rates.push(delivered as f64 / elapsed);
        p50s.push(stats["p50_ms"].as_f64().unwrap_or(0.0));
        p99s.push(stats["p99_ms"].as_f64().unwrap_or(0.0));
    }
    let figures = Figures {
        rate: median(rates),
        events_rate: median(events_rates),
        p50: median(p50s),
        p99: median(p99s),
        cpu_ms: (!cpu_ms.is_empty()).then(|| median(cpu_ms)),
        lost,
        duplicates,
    };
    if args.runs > 1 {
        println!(
            "{label} median of {} runs: notifications/s={:.0} events/s end-to-end={:.0} p50={:.1}ms p99={:.1}ms",
            args.runs, figures.rate, figures.events_rate, figures.p50, figures.p99
        );
    }
    let mut report = crate::report::Report::new(format!(
        "{}, {label}, {} realms, window {}",
        scenario(args),
        args.realms,
        args.window
    ));
    report
        .number("deliveries_per_s", "deliveries/s (median)", figures.rate, 0)
        .number(
            "events_per_s",
            "events delivered/s, first request to last delivery (median)",
            figures.events_rate,
            0,
        )
        .number("p50_ms", "p50 event→delivery, ms (median)", figures.p50, 1)
        .number("p99_ms", "p99 event→delivery, ms (median)", figures.p99, 1);
    if let Some(ms) = figures.cpu_ms {
        report.number(
            "cpu_ms_per_delivery",
            "CPU per delivery, server + PostgreSQL processes, ms (median)",
            ms,
            2,
        );
    }
    report
        .number("runs", "runs", args.runs.max(1) as f64, 0)
        .number("lost", "acknowledged deliveries missing", figures.lost as f64, 0)
        .number(
            "duplicates",
            "deliveries made twice",
            figures.duplicates as f64,
            0,
        );
    report.emit()?;
    if args.check && figures.cpu_ms.is_some_and(|ms| ms <= 0.0) {
        bail!("{label}: the server's CPU time could not be read (/proc)");
    }
    if args.check && (figures.lost > 0 || figures.duplicates > 0) {
        bail!(
            "{label}: {} acknowledged deliveries missing, {} duplicated",
            figures.lost,
            figures.duplicates
        );
    }
    Ok(figures)
}
