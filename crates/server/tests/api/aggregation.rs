//! Aggregation: windows per (configuration, realm), early close, filters, connections,
//! environments, payload formats, ordering and held notifications.

use crate::support::{legacy_events, minutes_ago, payload_json, Company, TestServer};
use ledgerhook_domain::{ConfigState, Environment, Timestamp};
use ledgerhook_store::notifications::NotificationStatus;
use ledgerhook_testkit::on_both_backends;
use ledgerhook_testkit::Kind;
use serde_json::{json, Value};
use std::time::Duration;

/// A loopback port nothing listens on: attempts fail fast and never leave the machine.
const HOOK: &str = "http://127.0.0.1:9/hook";

on_both_backends!(
    one_notification_per_configuration_and_realm_per_window,
    a_window_closes_early_at_batch_max_events,
    only_subscribed_changes_are_gathered,
    unconnected_realms_and_changes_before_the_connection_get_nothing,
    sandbox_and_production_use_their_own_windows,
    events_are_ordered_by_last_updated_without_duplicates,
    cloudevents_bodies_have_the_documented_shape,
    a_zero_window_makes_one_notification_per_commit,
    a_zero_window_splits_a_request_at_batch_max_events,
    blacklisted_configurations_hold_and_inactive_ones_gather_nothing,
);

fn change(name: &str, id: &str, operation: &str, minutes: i64) -> Value {
    json!({"name": name, "id": id, "operation": operation, "lastUpdated": minutes_ago(minutes)})
}

/// A server whose sandbox window is `window` and production window 1 h.
async fn server_with_window(kind: Kind, window: Duration) -> Option<TestServer> {
    TestServer::start_with(kind, |c| {
        c.allow_http = true;
        c.allow_private_networks = true;
        c.sandbox_batch_window = window;
        c.batch_window = Duration::from_secs(3600);
    })
    .await
}

async fn one_notification_per_configuration_and_realm_per_window(kind: Kind) {
    let Some(server) = server_with_window(kind, Duration::from_millis(400)).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let second_realm = server.realm("sandbox").await;
    server.connect(&company.app_id, &second_realm).await;
    server
        .configure(&company.app_id, "sandbox", json!({"url": HOOK, "entities": "*"}))
        .await;
    for i in 0..3 {
        let events = json!([change("Customer", &i.to_string(), "Create", 5)]);
        assert_eq!(server.ingest(&company.realm_id, &events).await.0, 202);
    }
    assert_eq!(
        server
            .ingest(
                &second_realm,
                &json!([
                    change("Invoice", "1", "Create", 5),
                    change("Invoice", "2", "Create", 5)
                ])
            )
            .await
            .0,
        202
    );
    let made = server
        .wait_for_notifications(&company.app_id, 2, Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let made_later = server.stored_notifications(&company.app_id).await;
    assert_eq!(
        made_later.len(),
        2,
        "expected one notification per realm, got {made_later:?}"
    );
    assert_eq!(made.len(), 2);
    let first = made.iter().find(|n| n.realm_id == company.realm_id).unwrap();
    let second = made.iter().find(|n| n.realm_id == second_realm).unwrap();
    assert_eq!(legacy_events(first).len(), 3);
    assert_eq!(legacy_events(second).len(), 2);
    assert!(matches!(
        first.status,
        NotificationStatus::Pending | NotificationStatus::Retrying
    ));
    assert_eq!(first.environment, Environment::Sandbox);
    assert_eq!(
        payload_json(first)["eventNotifications"][0]["realmId"],
        company.realm_id.as_str()
    );
}

async fn a_window_closes_early_at_batch_max_events(kind: Kind) {
    let Some(server) = TestServer::start_with(kind, |c| {
        c.allow_http = true;
        c.allow_private_networks = true;
        c.sandbox_batch_window = Duration::from_secs(3600);
        c.batch_max_events = 3;
    })
    .await
    else {
        return;
    };
    let company = server.company("sandbox").await;
    server
        .configure(&company.app_id, "sandbox", json!({"url": HOOK, "entities": "*"}))
        .await;
    let events: Vec<Value> = (0..7)
        .map(|i| change("Customer", &i.to_string(), "Update", 5))
        .collect();
    assert_eq!(
        server.ingest(&company.realm_id, &Value::Array(events)).await.0,
        202
    );
    let made = server
        .wait_for_notifications(&company.app_id, 2, Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let made = if made.len() == 2 {
        server.stored_notifications(&company.app_id).await
    } else {
        made
    };
    assert_eq!(
        made.len(),
        2,
        "two full windows close at once; the seventh event waits for its window"
    );
    let ids: Vec<Vec<String>> = made
        .iter()
        .map(|n| legacy_events(n).into_iter().map(|e| e.1).collect())
        .collect();
    assert_eq!(ids, [vec!["0", "1", "2"], vec!["3", "4", "5"]]);
}

async fn only_subscribed_changes_are_gathered(kind: Kind) {
    let Some(server) = server_with_window(kind, Duration::from_millis(200)).await else {
        return;
    };
    let company = server.company("sandbox").await;
    server
        .configure(
            &company.app_id,
            "sandbox",
            json!({"url": HOOK, "entities": {"Customer": ["Create"], "Invoice": "*"}}),
        )
        .await;
    let events = json!([
        change("Customer", "1", "Update", 6),
        change("Customer", "2", "Create", 5),
        change("Bill", "3", "Create", 4),
        change("Invoice", "4", "Void", 3),
    ]);
    assert_eq!(server.ingest(&company.realm_id, &events).await.0, 202);
    let made = server
        .wait_for_notifications(&company.app_id, 1, Duration::from_secs(5))
        .await;
    assert_eq!(made.len(), 1);
    let got: Vec<(String, String)> = legacy_events(&made[0])
        .into_iter()
        .map(|(n, _, op)| (n, op))
        .collect();
    assert_eq!(
        got,
        [
            ("Customer".to_owned(), "Create".to_owned()),
            ("Invoice".to_owned(), "Void".to_owned())
        ]
    );
}

async fn unconnected_realms_and_changes_before_the_connection_get_nothing(kind: Kind) {
    let Some(server) = server_with_window(kind, Duration::from_millis(100)).await else {
        return;
    };
    let app = server.app("Late").await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    server
        .configure(&app_id, "sandbox", json!({"url": HOOK, "entities": "*"}))
        .await;
    let realm = server.realm("sandbox").await;
    let unconnected = server.realm("sandbox").await;
    assert_eq!(
        server
            .ingest(&realm, &json!([change("Customer", "before", "Create", 5)]))
            .await
            .0,
        202
    );
    server.connect(&app_id, &realm).await;
    assert_eq!(
        server
            .ingest(
                &unconnected,
                &json!([change("Customer", "elsewhere", "Create", 5)])
            )
            .await
            .0,
        202
    );
    assert_eq!(
        server
            .ingest(&realm, &json!([change("Customer", "after", "Create", 5)]))
            .await
            .0,
        202
    );
    server
        .wait_for_notifications(&app_id, 1, Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let made = server.stored_notifications(&app_id).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(
        legacy_events(&made[0]),
        [("Customer".to_owned(), "after".to_owned(), "Create".to_owned())]
    );
}

async fn sandbox_and_production_use_their_own_windows(kind: Kind) {
    let Some(server) = TestServer::start_with(kind, |c| {
        c.allow_http = true;
        c.allow_private_networks = true;
        c.sandbox_batch_window = Duration::from_millis(100);
        c.batch_window = Duration::from_secs(60);
        c.time_scale = 30.0; // a 60 s production window takes 2 s
    })
    .await
    else {
        return;
    };
    let app = server.app("Both").await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    let sandbox = server.realm("sandbox").await;
    let production = server.realm("production").await;
    for realm in [&sandbox, &production] {
        server.connect(&app_id, realm).await;
    }
    for env in ["sandbox", "production"] {
        server
            .configure(&app_id, env, json!({"url": HOOK, "entities": "*"}))
            .await;
    }
    let started = std::time::Instant::now();
    for realm in [&sandbox, &production] {
        assert_eq!(
            server
                .ingest(realm, &json!([change("Customer", "1", "Create", 5)]))
                .await
                .0,
            202
        );
    }
    let first = server
        .wait_for_notifications(&app_id, 1, Duration::from_secs(5))
        .await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].realm_id, sandbox);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "sandbox took {:?}",
        started.elapsed()
    );
    let both = server
        .wait_for_notifications(&app_id, 2, Duration::from_secs(10))
        .await;
    let waited = started.elapsed();
    assert_eq!(both.len(), 2);
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(5),
        "production took {waited:?}"
    );
}

async fn events_are_ordered_by_last_updated_without_duplicates(kind: Kind) {
    let Some(server) = server_with_window(kind, Duration::from_millis(300)).await else {
        return;
    };
    let company = server.company("sandbox").await;
    server
        .configure(&company.app_id, "sandbox", json!({"url": HOOK, "entities": "*"}))
        .await;
    let at = |m: i64| minutes_ago(m);
    let events = json!([
        {"name": "Customer", "id": "3", "operation": "Update", "lastUpdated": at(1)},
        {"name": "Customer", "id": "1", "operation": "Update", "lastUpdated": at(9)},
        {"name": "Customer", "id": "2", "operation": "Update", "lastUpdated": at(5)},
    ]);
    assert_eq!(server.ingest(&company.realm_id, &events).await.0, 202);
    // The same change again (a repeat of id 2), and a tie with id 2's time.
    let repeat = json!([
        {"name": "Customer", "id": "2", "operation": "Update", "lastUpdated": events[2]["lastUpdated"]},
        {"name": "Invoice", "id": "7", "operation": "Create", "lastUpdated": events[2]["lastUpdated"]},
    ]);
    assert_eq!(server.ingest(&company.realm_id, &repeat).await.0, 202);
    let made = server
        .wait_for_notifications(&company.app_id, 1, Duration::from_secs(5))
        .await;
    let ids: Vec<String> = legacy_events(&made[0]).into_iter().map(|e| e.1).collect();
    assert_eq!(ids, ["1", "2", "7", "3"]);
    assert_eq!(made[0].event_count, 4);
}

async fn cloudevents_bodies_have_the_documented_shape(kind: Kind) {
    let Some(server) = server_with_window(kind, Duration::from_millis(100)).await else {
        return;
    };
    let company: Company = server.company("sandbox").await;
    server
        .configure(
            &company.app_id,
            "sandbox",
            json!({"url": HOOK, "entities": "*", "format": "cloudevents"}),
        )
        .await;
    let merge = json!([{"name": "Customer", "id": "12", "operation": "Merge", "deletedId": "57", "lastUpdated": minutes_ago(2)}]);
    assert_eq!(server.ingest(&company.realm_id, &merge).await.0, 202);
    let made = server
        .wait_for_notifications(&company.app_id, 1, Duration::from_secs(5))
        .await;
    let body = payload_json(&made[0]);
    let event = &body.as_array().unwrap()[0];
    let keys: Vec<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "specversion",
            "id",
            "source",
            "type",
            "datacontenttype",
            "time",
            "intuitentityid",
            "intuitaccountid",
            "data"
        ]
    );
    assert_eq!(event["type"], "qbo.customer.merged.v1");
    assert_eq!(event["source"], format!("ledgerhook.{}", company.app_id));
    assert_eq!(event["intuitaccountid"], company.realm_id.as_str());
    assert_eq!(event["data"], json!({"deletedid": "57"}));
    assert_eq!(made[0].format, ledgerhook_domain::PayloadFormat::CloudEvents);
}

async fn a_zero_window_makes_one_notification_per_commit(kind: Kind) {
    let Some(server) = server_with_window(kind, Duration::from_secs(3600)).await else {
        return;
    };
    let company = server.company("sandbox").await;
    server
        .configure(
            &company.app_id,
            "sandbox",
            json!({"url": HOOK, "entities": "*", "batch_window": "0s"}),
        )
        .await;
    for i in 0..3 {
        let events = json!([
            change("Customer", &format!("{i}a"), "Create", 5),
            change("Customer", &format!("{i}b"), "Create", 5)
        ]);
        assert_eq!(server.ingest(&company.realm_id, &events).await.0, 202);
        server
            .wait_for_notifications(&company.app_id, i + 1, Duration::from_secs(5))
            .await;
    }
    let made = server.stored_notifications(&company.app_id).await;
    assert_eq!(made.len(), 3);
    assert!(made.iter().all(|n| n.event_count == 2));

    // Commits faster than windows close still make one notification each.
    let mut requests = Vec::new();
    let (server, company) = (&server, &company);
    for i in 0..8 {
        let events = json!([change("Invoice", &format!("burst{i}"), "Create", 5)]);
        requests.push(async move { server.ingest(&company.realm_id, &events).await.0 });
    }
    for status in futures_join_all(requests).await {
        assert_eq!(status, 202);
    }
    let made = server
        .wait_for_notifications(&company.app_id, 11, Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let made_later = server.stored_notifications(&company.app_id).await;
    assert_eq!(made_later.len(), 11, "{made:?}");
    assert!(made_later.iter().all(|n| n.event_count <= 2));
}

async fn a_zero_window_splits_a_request_at_batch_max_events(kind: Kind) {
    let Some(server) = TestServer::start_with(kind, |c| {
        c.allow_http = true;
        c.allow_private_networks = true;
        c.sandbox_batch_window = Duration::ZERO;
        c.batch_max_events = 3;
    })
    .await
    else {
        return;
    };
    let company = server.company("sandbox").await;
    let other_app = server.company("sandbox").await;
    server.connect(&other_app.app_id, &company.realm_id).await;
    for app in [&company.app_id, &other_app.app_id] {
        server
            .configure(
                app,
                "sandbox",
                json!({"url": HOOK, "entities": {"Customer": "*"}}),
            )
            .await;
    }
    let mut events: Vec<Value> = (0..7)
        .map(|i| change("Customer", &i.to_string(), "Update", 10 - i))
        .collect();
    events.push(change("Invoice", "not-subscribed", "Create", 1));
    assert_eq!(
        server.ingest(&company.realm_id, &Value::Array(events)).await.0,
        202
    );
    for app in [&company.app_id, &other_app.app_id] {
        // Made in the ingestion commit itself: no window to wait for.
        let made = server.stored_notifications(app).await;
        let mut ids: Vec<(i64, Vec<String>)> = made
            .iter()
            .map(|n| (n.seq, legacy_events(n).into_iter().map(|e| e.1).collect()))
            .collect();
        ids.sort();
        let ids: Vec<Vec<String>> = ids.into_iter().map(|(_, ids)| ids).collect();
        assert_eq!(
            ids,
            [vec!["0", "1", "2"], vec!["3", "4", "5"], vec!["6"]],
            "app {app}"
        );
    }
}

/// Runs futures concurrently on this task and collects their outputs in order.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, future) in pinned.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => outputs[i] = Some(out),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

async fn blacklisted_configurations_hold_and_inactive_ones_gather_nothing(kind: Kind) {
    let Some(server) = server_with_window(kind, Duration::from_millis(100)).await else {
        return;
    };
    let company = server.company("sandbox").await;
    server
        .configure(&company.app_id, "sandbox", json!({"url": HOOK, "entities": "*"}))
        .await;
    let store = &server.state.store;
    store
        .set_config_state(
            &company.app_id,
            Environment::Sandbox,
            ConfigState::Blacklisted,
            None,
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        server
            .ingest(&company.realm_id, &json!([change("Customer", "1", "Create", 5)]))
            .await
            .0,
        202
    );
    let made = server
        .wait_for_notifications(&company.app_id, 1, Duration::from_secs(5))
        .await;
    assert_eq!(made[0].status, NotificationStatus::Held);
    assert_eq!(made[0].next_attempt_at, None);

    store
        .set_config_state(
            &company.app_id,
            Environment::Sandbox,
            ConfigState::Inactive,
            None,
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        server
            .ingest(&company.realm_id, &json!([change("Customer", "2", "Create", 5)]))
            .await
            .0,
        202
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        server.stored_notifications(&company.app_id).await.len(),
        1,
        "an inactive configuration gathered"
    );

    // Reactivation releases the held notification.
    let (status, _) = server
        .post(
            &format!("/api/v1/apps/{}/webhooks/sandbox/reactivate", company.app_id),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let made = server.stored_notifications(&company.app_id).await;
    assert_ne!(made[0].status, NotificationStatus::Held);
}
