//! Counters of this process, exposed at `/metrics` in Prometheus' text format. Gauges
//! that live in the database (queue depth, configuration states) are read at scrape
//! time by the server.

use crate::outbound::Outcome;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const OUTCOMES: [Outcome; 7] = [
    Outcome::Success,
    Outcome::Http,
    Outcome::Timeout,
    Outcome::Connect,
    Outcome::Tls,
    Outcome::Redirect,
    Outcome::Refused,
];

/// Upper bounds of the attempt-duration histogram's buckets, in seconds (`+Inf` after).
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Configurations whose failures are counted by name; failures of any further ones are
/// counted together under `app_id="other"` (bounded cardinality).
pub const MAX_CONFIGURATION_SERIES: usize = 200;

/// One outcome's attempt durations.
#[derive(Default)]
struct Histogram {
    /// Count per bucket (not cumulative), then the `+Inf` bucket.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    millis: AtomicU64,
}

/// Process-wide counters; cheap to update from any task.
#[derive(Default)]
pub struct Metrics {
    attempts: [Histogram; 7],
    failures: Mutex<HashMap<(String, String), u64>>,
    /// Change events accepted by ingestion.
    pub events_ingested: AtomicU64,
    /// Ingestion requests committed.
    pub ingest_requests: AtomicU64,
    /// Notifications made by the aggregator.
    pub notifications_made: AtomicU64,
}

impl Metrics {
    /// Counts one attempt of (app, environment)'s configuration.
    pub fn attempt(&self, outcome: Outcome, duration_ms: i64, app_id: &str, environment: &str) {
        let index = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        let histogram = &self.attempts[index];
        let seconds = duration_ms.max(0) as f64 / 1000.0;
        let bucket = BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(BUCKETS.len());
        histogram.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        histogram
            .millis
            .fetch_add(duration_ms.max(0) as u64, Ordering::Relaxed);
        if outcome != Outcome::Success {
            let mut failures = self.failures.lock().expect("failure counts");
            let key = (app_id.to_owned(), environment.to_owned());
            let key = if failures.contains_key(&key) || failures.len() < MAX_CONFIGURATION_SERIES {
                key
            } else {
                ("other".to_owned(), "other".to_owned())
            };
            *failures.entry(key).or_default() += 1;
        }
    }

    /// The counters in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP ledgerhook_attempts_total Delivery attempts made by this process, by outcome.\n",
        );
        out.push_str("# TYPE ledgerhook_attempts_total counter\n");
        let count = |h: &Histogram| h.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum::<u64>();
        for (outcome, histogram) in OUTCOMES.iter().zip(&self.attempts) {
            out.push_str(&format!(
                "ledgerhook_attempts_total{{outcome=\"{}\"}} {}\n",
                outcome.as_str(),
                count(histogram)
            ));
        }
        out.push_str(
            "# HELP ledgerhook_attempt_duration_seconds Duration of delivery attempts, by outcome.\n",
        );
        out.push_str("# TYPE ledgerhook_attempt_duration_seconds histogram\n");
        let mut total_millis = 0;
        for (outcome, histogram) in OUTCOMES.iter().zip(&self.attempts) {
            let outcome = outcome.as_str();
            let mut cumulative = 0;
            for (i, bucket) in histogram.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
                out.push_str(&format!(
                    "ledgerhook_attempt_duration_seconds_bucket{{outcome=\"{outcome}\",le=\"{le}\"}} {cumulative}\n"
                ));
            }
            let millis = histogram.millis.load(Ordering::Relaxed);
            total_millis += millis;
            out.push_str(&format!(
                "ledgerhook_attempt_duration_seconds_sum{{outcome=\"{outcome}\"}} {}\n",
                millis as f64 / 1000.0
            ));
            out.push_str(&format!(
                "ledgerhook_attempt_duration_seconds_count{{outcome=\"{outcome}\"}} {cumulative}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP ledgerhook_configuration_failures_total Failed delivery attempts per configuration (at most {MAX_CONFIGURATION_SERIES} series; the rest under app_id=\"other\").\n"
        ));
        out.push_str("# TYPE ledgerhook_configuration_failures_total counter\n");
        let mut failures: Vec<((String, String), u64)> = self
            .failures
            .lock()
            .expect("failure counts")
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        failures.sort();
        for ((app_id, environment), n) in failures {
            out.push_str(&format!(
                "ledgerhook_configuration_failures_total{{app_id=\"{app_id}\",environment=\"{environment}\"}} {n}\n"
            ));
        }
        let counters = [
            (
                "ledgerhook_attempt_duration_seconds_total",
                "Time spent in delivery attempts.",
                total_millis as f64 / 1000.0,
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
    fn renders_every_outcome_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.attempt(Outcome::Timeout, 3000, "app_1", "sandbox");
        metrics.attempt(Outcome::Success, 7, "app_1", "sandbox");
        let text = metrics.render();
        assert!(text.contains("ledgerhook_attempts_total{outcome=\"timeout\"} 1"));
        assert!(text.contains("ledgerhook_attempts_total{outcome=\"success\"} 1"));
        assert!(text.contains("ledgerhook_attempt_duration_seconds_total 3.007"));
        assert!(text.contains("ledgerhook_attempt_duration_seconds_bucket{outcome=\"timeout\",le=\"2.5\"} 0"));
        assert!(text.contains("ledgerhook_attempt_duration_seconds_bucket{outcome=\"timeout\",le=\"5\"} 1"));
        assert!(
            text.contains("ledgerhook_attempt_duration_seconds_bucket{outcome=\"timeout\",le=\"+Inf\"} 1")
        );
        assert!(
            text.contains("ledgerhook_attempt_duration_seconds_bucket{outcome=\"success\",le=\"0.01\"} 1")
        );
        assert!(text.contains("ledgerhook_attempt_duration_seconds_count{outcome=\"success\"} 1"));
        assert!(text
            .contains("ledgerhook_configuration_failures_total{app_id=\"app_1\",environment=\"sandbox\"} 1"));
    }

    #[test]
    fn failures_per_configuration_are_bounded() {
        let metrics = Metrics::default();
        for i in 0..MAX_CONFIGURATION_SERIES + 50 {
            metrics.attempt(Outcome::Http, 1, &format!("app_{i}"), "production");
        }
        let text = metrics.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("ledgerhook_configuration_failures_total{"))
            .count();
        assert_eq!(series, MAX_CONFIGURATION_SERIES + 1);
        assert!(text
            .contains("ledgerhook_configuration_failures_total{app_id=\"other\",environment=\"other\"} 50"));
    }
}
