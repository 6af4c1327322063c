//! What operators watch without the dashboard: attempt durations by outcome, the queue's
//! depth and the age of its oldest due notification, failures per configuration.

use crate::support::TestServer;
use ledgerhook_testkit::{receiver, Kind};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

async fn metrics(server: &TestServer) -> String {
    let (status, body) = server.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    body.as_str().unwrap().to_owned()
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("{series} not in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_durations_the_queue_and_failures_per_configuration() {
    let server = TestServer::start_with(Kind::Sqlite, |c| {
        c.allow_http = true;
        c.allow_private_networks = true;
        c.sandbox_batch_window = Duration::ZERO;
        c.max_in_flight_per_endpoint = 1;
    })
    .await
    .unwrap();
    let hook = receiver::start(None).await;
    hook.set(500, Duration::ZERO);
    let (realm, app) = server
        .app_delivering_to("Watched", &hook.url("http", "/hook"))
        .await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    let event = json!([{"name": "Customer", "id": "1", "operation": "Create"}]);
    assert_eq!(server.ingest(&realm, &event).await.0, StatusCode::ACCEPTED);
    hook.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = metrics(&server).await;
    assert_eq!(
        value(
            &text,
            "ledgerhook_attempt_duration_seconds_count{outcome=\"http\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "ledgerhook_attempt_duration_seconds_bucket{outcome=\"http\",le=\"+Inf\"}"
        ),
        1.0
    );
    let series =
        format!("ledgerhook_configuration_failures_total{{app_id=\"{app_id}\",environment=\"sandbox\"}}");
    assert_eq!(value(&text, &series), 1.0);
    // Retrying after 20 minutes: waiting, not yet due. (An attempt in flight parks its
    // notification until the attempt's lease ends, so it is not "due" either.)
    assert_eq!(value(&text, "ledgerhook_queue_depth"), 1.0);
    assert_eq!(value(&text, "ledgerhook_queue_oldest_due_age_seconds"), 0.0);
    // The whole exposition parses as Prometheus' text format, with the same values.
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let sample = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("{name} {label:?} not parsed"))
            .value
            .clone()
    };
    assert!(matches!(sample("ledgerhook_queue_depth", None), prometheus_parse::Value::Gauge(v) if v == 1.0));
    let attempts = sample("ledgerhook_attempts_total", Some(("outcome", "http")));
    assert!(
        matches!(attempts, prometheus_parse::Value::Counter(v) if v == 1.0),
        "{attempts:?}"
    );
    let histogram = sample("ledgerhook_attempt_duration_seconds", Some(("outcome", "http")));
    let prometheus_parse::Value::Histogram(buckets) = histogram else {
        panic!("not a histogram: {histogram:?}");
    };
    assert_eq!(buckets.last().map(|b| b.count), Some(1.0), "{buckets:?}");
}
