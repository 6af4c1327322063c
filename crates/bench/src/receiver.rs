//! `ledgerhook-bench receiver`: the benchmark's webhook receiver, a process of its own.
//! HTTPS with keep-alive (certificates made at start; the CA is written to `--ca-out`);
//! it prints `port N` on stdout, then answers commands on stdin: `stats` prints a JSON
//! line (requests, events, event→delivery latency p50/p99 in ms; only requests answered
//! `2xx` count), `reset` forgets what was seen, `answer N` answers status `N` from now on
//! (an endpoint that is down: `answer 503`), `ok` prints `{"ok": n}`, the requests
//! answered `2xx` since the reset (cheap to poll), end of input stops it. Requests to
//! `/after/MS/…` (the slow endpoints of `deliver --slow`, answered after MS milliseconds)
//! are not in the figures of `stats`: only counted, as `slow`.

use ledgerhook_testkit::receiver::{self, Receiver};
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Options of `ledgerhook-bench receiver`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write the CA certificate (PEM) the server must trust.
    #[arg(long)]
    ca_out: PathBuf,
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// When the load generator sent `entity`, in microseconds: the last part of its id, or
/// else its `lastUpdated`.
fn sent_micros(entity: &Value) -> Option<i64> {
    let from_id = entity["id"]
        .as_str()
        .and_then(|id| id.rsplit('-').next()?.parse::<i64>().ok());
    from_id
        .filter(|&micros| micros > 1_000_000_000_000_000)
        .or_else(|| {
            let at = ledgerhook_domain::Timestamp::parse(entity["lastUpdated"].as_str()?).ok()?;
            Some(at.millis() * 1000)
        })
}

/// Requests and events seen after the first `skip` requests, with latencies.
fn stats(hook: &Receiver, skip: usize) -> Value {
    let now_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64;
    let now = Instant::now();
    let all = hook.requests();
    let since = &all[skip.min(all.len())..];
    let is_slow = |path: &str| path.starts_with("/after/");
    let slow = since.iter().filter(|r| is_slow(&r.path)).count();
    let seen: Vec<_> = since
        .iter()
        .filter(|r| (200..300).contains(&r.status) && !is_slow(&r.path))
        .collect();
    let mut latencies = Vec::new();
    let mut timeline = Vec::new();
    let mut events = 0usize;
    for request in &seen {
        let arrived = now_wall - now.duration_since(request.started).as_micros() as i64;
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            continue;
        };
        let Some(entities) = body["eventNotifications"][0]["dataChangeEvent"]["entities"].as_array() else {
            continue;
        };
        // The notification id starts with its creation time in milliseconds.
        let made = request
            .headers
            .get("webhook-id")
            .and_then(|id| i64::from_str_radix(id.get(4..16)?, 16).ok())
            .map(|ms| ms * 1000);
        for entity in entities {
            events += 1;
            if let Some(sent) = sent_micros(entity) {
                let latency = arrived - sent;
                latencies.push(latency as f64 / 1000.0);
                let before_made = made.map_or(0, |made| made - sent);
                timeline.push((latency / 1000, (arrived / 1000) % 1_000_000, before_made / 1000));
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    timeline.sort_unstable_by(|a, b| b.cmp(a));
    timeline.truncate(20);
    timeline.sort_unstable_by_key(|&(_, arrived, _)| arrived);
    // "total(event→made)ms@arrival": arrival in milliseconds of the wall clock, modulo 10⁶.
    let slowest: Vec<String> = timeline
        .iter()
        .map(|(l, o, m)| format!("{l}({m})ms@{o}"))
        .collect();
    let span_ms = match (seen.first(), seen.last()) {
        (Some(a), Some(b)) => b.started.duration_since(a.started).as_secs_f64() * 1000.0,
        _ => 0.0,
    };
    // A notification is its id at its endpoint (Svix gives a message one id for every
    // endpoint; it names it `svix-id` unless it sends the unbranded headers).
    let distinct: std::collections::HashSet<(&str, &str)> = seen
        .iter()
        .filter_map(|r| {
            let id = r.headers.get("webhook-id").or_else(|| r.headers.get("svix-id"))?;
            Some((r.path.as_str(), id.as_str()))
        })
        .collect();
    json!({"requests": seen.len(), "duplicates": seen.len() - distinct.len(), "events": events, "span_ms": span_ms,
           "connections": hook.connections(), "slow": slow,
           "p50_ms": percentile(&latencies, 50), "p99_ms": percentile(&latencies, 99), "slowest": slowest})
}

/// Runs the receiver until its standard input ends.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let pki = receiver::pki();
    std::fs::write(&args.ca_out, &pki.ca_pem)?;
    let hook = receiver::start(Some(pki.signed.clone())).await;
    println!("port {}", hook.port);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    let mut skip = 0;
    while let Some(command) = rx.recv().await {
        match command.trim() {
            "stats" => println!("{}", stats(&hook, skip)),
            "reset" => {
                skip = hook.hits();
                println!("{{}}");
            }
            "ok" => println!("{}", json!({"ok": hook.successes_since(skip)})),
            answer if answer.starts_with("answer ") => match answer["answer ".len()..].parse::<u16>() {
                Ok(status) => {
                    hook.set(status, std::time::Duration::ZERO);
                    println!("{}", json!({"status": status}));
                }
                Err(_) => println!("{{\"error\":\"answer needs a status code\"}}"),
            },
            _ => println!("{{\"error\":\"unknown command\"}}"),
        }
    }
    Ok(())
}
