//! Counters of this process, exposed at `/metrics` in Prometheus' text format. Gauges
//! that live in the database (queue depth, configuration states) are read at scrape
//! time by the server.

use crate::outbound::Outcome;
use std::sync::atomic::{AtomicU64, Ordering};

const OUTCOMES: [Outcome; 7] = [
    Outcome::Success,
    Outcome::Http,
    Outcome::Timeout,
    Outcome::Connect,
    Outcome::Tls,
    Outcome::Redirect,
    Outcome::Refused,
];

/// Process-wide counters; cheap to update from any task.
#[derive(Default)]
pub struct Metrics {
    attempts: [AtomicU64; 7],
    attempt_millis: AtomicU64,
    /// Change events accepted by ingestion.
    pub events_ingested: AtomicU64,
    /// Ingestion requests committed.
    pub ingest_requests: AtomicU64,
    /// Notifications made by the aggregator.
    pub notifications_made: AtomicU64,
}

impl Metrics {
    /// Counts one attempt.
    pub fn attempt(&self, outcome: Outcome, duration_ms: i64) {
        let index = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        self.attempts[index].fetch_add(1, Ordering::Relaxed);
        self.attempt_millis
            .fetch_add(duration_ms.max(0) as u64, Ordering::Relaxed);
    }

    /// The counters in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP ledgerhook_attempts_total Delivery attempts made by this process, by outcome.\n",
        );
        out.push_str("# TYPE ledgerhook_attempts_total counter\n");
        for (outcome, count) in OUTCOMES.iter().zip(&self.attempts) {
            out.push_str(&format!(
                "ledgerhook_attempts_total{{outcome=\"{}\"}} {}\n",
                outcome.as_str(),
                count.load(Ordering::Relaxed)
            ));
        }
        let counters = [
            (
                "ledgerhook_attempt_duration_seconds_total",
                "Time spent in delivery attempts.",
                self.attempt_millis.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            (
                "ledgerhook_events_ingested_total",
                "Change events accepted by ingestion.",
                self.events_ingested.load(Ordering::Relaxed) as f64,
            ),
            (
                "ledgerhook_ingest_requests_total",
                "Ingestion requests committed.",
                self.ingest_requests.load(Ordering::Relaxed) as f64,
            ),
            (
                "ledgerhook_notifications_made_total",
                "Notifications made by the aggregator.",
                self.notifications_made.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, help, value) in counters {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_outcome() {
        let metrics = Metrics::default();
        metrics.attempt(Outcome::Timeout, 3000);
        let text = metrics.render();
        assert!(text.contains("ledgerhook_attempts_total{outcome=\"timeout\"} 1"));
        assert!(text.contains("ledgerhook_attempts_total{outcome=\"success\"} 0"));
        assert!(text.contains("ledgerhook_attempt_duration_seconds_total 3"));
    }
}
