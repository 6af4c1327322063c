//! Delivery over real HTTPS to a recording receiver: retries on schedule, drop and
//! blacklist, held and inactive, ordering, timeouts, concurrency per realm, test sends,
//! and the notifications API.

use crate::support::{minutes_ago, Company, TestServer, OPERATOR};
use ledgerhook_delivery::signature::{intuit_signature, standard_signature};
use ledgerhook_store::notifications::NotificationStatus;
use ledgerhook_testkit::on_both_backends;
use ledgerhook_testkit::receiver::{self, Pki, Receiver, Recorded};
use ledgerhook_testkit::Kind;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

on_both_backends!(
    a_failing_endpoint_gets_the_scheduled_attempts_then_is_blacklisted,
    best_effort_ordering_does_not_wait_for_a_retry,
    strict_ordering_waits_for_the_older_notification,
    a_stream_waiting_for_a_retry_is_not_due_before_it,
    a_long_attempt_parks_its_stream_until_it_ends,
    a_notification_dropped_during_its_attempt_stays_dropped,
    releasing_one_stream_keeps_the_others_leased,
    a_claim_round_says_when_its_limit_cut_it_short,
    a_timeout_counts_as_a_failure,
    one_attempt_in_flight_per_realm_while_realms_run_in_parallel,
    a_busy_realm_is_sent_ahead_once_each_then_released,
    a_test_send_is_signed_and_listed,
    rotation_signs_with_both_secrets_during_the_grace_only,
    retention_removes_old_notifications,
    notifications_can_be_listed_read_redelivered_and_recovered,
);

/// A server delivering to loopback with the test CA trusted and a zero sandbox window.
async fn delivery_server(
    kind: Kind,
    pki: &Pki,
    tweak: impl FnOnce(&mut ledgerhook_server::Config),
) -> Option<(TestServer, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path());
    let server = TestServer::start_with(kind, |c| {
        c.allow_private_networks = true;
        c.ca_file = Some(ca);
        c.sandbox_batch_window = Duration::ZERO;
        tweak(c);
    })
    .await?;
    Some((server, dir))
}

/// A sandbox company whose app's configuration points at `receiver`; answers the
/// company and the app's creation answer (with its secrets).
async fn subscribed(server: &TestServer, receiver: &Receiver, extra: Value) -> (Company, Value) {
    let realm_id = server.realm("sandbox").await;
    let app = server.app("Receiver app").await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    let grant = server.connect(&app_id, &realm_id).await;
    let mut body = json!({"url": receiver.url("https", "/hook"), "entities": "*"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    server.configure(&app_id, "sandbox", body).await;
    let company = Company {
        realm_id,
        app_id,
        access_token: grant["access_token"].as_str().unwrap().to_owned(),
    };
    (company, app)
}

/// The company's realm and `more` new sandbox realms, all connected to its app.
async fn with_more_realms(server: &TestServer, company: &Company, more: usize) -> Vec<String> {
    let mut realms = vec![company.realm_id.clone()];
    for _ in 0..more {
        let realm = server.realm("sandbox").await;
        server.connect(&company.app_id, &realm).await;
        realms.push(realm);
    }
    realms
}

async fn ingest_one(server: &TestServer, realm_id: &str, id: &str) {
    let events =
        json!([{"name": "Customer", "id": id, "operation": "Update", "lastUpdated": minutes_ago(1)}]);
    assert_eq!(server.ingest(realm_id, &events).await.0, 202);
}

fn entity_ids(request: &Recorded) -> Vec<String> {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    body["eventNotifications"][0]["dataChangeEvent"]["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn config_state(server: &TestServer, app_id: &str) -> Value {
    server
        .get(&format!("/api/v1/apps/{app_id}/webhooks/sandbox"))
        .await
        .1
}

async fn wait_for_state(server: &TestServer, app_id: &str, state: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let config = config_state(server, app_id).await;
        if config["state"] == state || Instant::now() > deadline {
            return config;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn a_failing_endpoint_gets_the_scheduled_attempts_then_is_blacklisted(kind: Kind) {
    let pki = receiver::pki();
    // The classic 20, 30, 50 minutes at time-scale 1200: 1 s, 1.5 s, 2.5 s; inactive
    // after 1 h: 3 s.
    let Some((server, _dir)) = delivery_server(kind, &pki, |c| {
        c.time_scale = 1200.0;
        c.inactive_after = Duration::from_secs(3600);
    })
    .await
    else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    hook.set(500, Duration::ZERO);
    let (company, _) = subscribed(&server, &hook, json!({})).await;
    ingest_one(&server, &company.realm_id, "1").await;

    let seen = hook.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 4, "initial attempt and three retries");
    // A retry is never early, and comes within 10% + 50 ms of its time. A commit can
    // stall on a shared disk (several hundred milliseconds have been seen), so one of
    // the three may be up to 600 ms later than that, but not two: a schedule off by 20%
    // still fails.
    let expected = [1000.0, 1500.0, 2500.0];
    let gaps: Vec<f64> = seen
        .windows(2)
        .map(|pair| pair[1].started.duration_since(pair[0].finished).as_secs_f64() * 1000.0)
        .collect();
    let mut on_time = 0;
    for (i, (wait, gap)) in expected.iter().zip(&gaps).enumerate() {
        let tolerance = wait * 0.10 + 50.0;
        assert!(
            *gap >= wait - 50.0 && *gap <= wait + tolerance + 600.0,
            "retry {} came after {gap:.0} ms, expected {wait} ms (all gaps: {gaps:.0?})",
            i + 1
        );
        on_time += usize::from(*gap <= wait + tolerance);
    }
    assert!(
        on_time >= 2,
        "more than one retry was late: gaps {gaps:.0?} ms, expected {expected:?}"
    );
    assert!(
        seen.iter().all(|r| r.body == seen[0].body),
        "a retry changed the body"
    );
    let ids: Vec<&str> = seen.iter().map(|r| r.header("webhook-id").unwrap()).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "webhook-id changed across retries: {ids:?}"
    );

    let config = wait_for_state(&server, &company.app_id, "blacklisted", Duration::from_secs(2)).await;
    assert_eq!(config["state"], "blacklisted");
    assert_eq!(config["last_error"], "HTTP 500");
    let (_, list) = server
        .get(&format!("/api/v1/apps/{}/notifications", company.app_id))
        .await;
    assert_eq!(list["data"][0]["status"], "dropped");
    assert_eq!(list["data"][0]["attempts"], 4);

    // Later notifications are held and nothing more is sent.
    hook.set(200, Duration::ZERO);
    ingest_one(&server, &company.realm_id, "2").await;
    ingest_one(&server, &company.realm_id, "3").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(hook.hits(), 4, "a request was made after the drop");
    let (_, held) = server
        .get(&format!(
            "/api/v1/apps/{}/notifications?status=held",
            company.app_id
        ))
        .await;
    assert_eq!(held["data"].as_array().unwrap().len(), 2);

    let config = wait_for_state(&server, &company.app_id, "inactive", Duration::from_secs(6)).await;
    assert_eq!(config["state"], "inactive", "not inactive after inactive-after");

    // Reactivation delivers the held notifications, oldest first.
    let (status, _) = server
        .post(
            &format!("/api/v1/apps/{}/webhooks/sandbox/reactivate", company.app_id),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let seen = hook.wait_for(6, Duration::from_secs(5)).await;
    assert_eq!(seen.len(), 6);
    assert_eq!(entity_ids(&seen[4]), ["2"]);
    assert_eq!(entity_ids(&seen[5]), ["3"]);
}

async fn ordering_case(kind: Kind, ordering: &str) -> Option<Vec<(Vec<String>, u16)>> {
    let pki = receiver::pki();
    let (server, _dir) = delivery_server(kind, &pki, |c| c.time_scale = 1200.0).await?;
    let hook = receiver::start(Some(pki.signed.clone())).await;
    hook.set(500, Duration::ZERO);
    let (company, _) = subscribed(&server, &hook, json!({"ordering": ordering})).await;
    ingest_one(&server, &company.realm_id, "older").await;
    assert_eq!(hook.wait_for(1, Duration::from_secs(5)).await.len(), 1);
    hook.set(200, Duration::ZERO);
    ingest_one(&server, &company.realm_id, "newer").await;
    let seen = hook.wait_for(3, Duration::from_secs(5)).await;
    Some(seen.iter().map(|r| (entity_ids(r), r.status)).collect())
}

async fn best_effort_ordering_does_not_wait_for_a_retry(kind: Kind) {
    let Some(seen) = ordering_case(kind, "best-effort").await else {
        return;
    };
    let order: Vec<(&str, u16)> = seen.iter().map(|(ids, s)| (ids[0].as_str(), *s)).collect();
    assert_eq!(order, [("older", 500), ("newer", 200), ("older", 200)]);
}

async fn strict_ordering_waits_for_the_older_notification(kind: Kind) {
    let Some(seen) = ordering_case(kind, "strict").await else {
        return;
    };
    let order: Vec<(&str, u16)> = seen.iter().map(|(ids, s)| (ids[0].as_str(), *s)).collect();
    assert_eq!(order, [("older", 500), ("older", 200), ("newer", 200)]);
}

async fn a_stream_waiting_for_a_retry_is_not_due_before_it(kind: Kind) {
    let pki = receiver::pki();
    // The first retry (20 minutes) at time-scale 1200: 1 s.
    let Some((server, _dir)) = delivery_server(kind, &pki, |c| c.time_scale = 1200.0).await else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    hook.set(500, Duration::from_millis(300));
    let (company, _) = subscribed(&server, &hook, json!({"ordering": "strict"})).await;
    ingest_one(&server, &company.realm_id, "older").await;
    // Made while the older one's attempt is in flight: due at once, then held back.
    ingest_one(&server, &company.realm_id, "middle").await;
    assert_eq!(hook.wait_for(1, Duration::from_secs(5)).await.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    let retry_at = loop {
        let stored = server.stored_notifications(&company.app_id).await;
        if stored[0].status == NotificationStatus::Retrying {
            break stored[0].next_attempt_at.unwrap();
        }
        assert!(Instant::now() < deadline, "no retry scheduled: {stored:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Made while the stream waits for the retry.
    ingest_one(&server, &company.realm_id, "newer").await;
    let stored = server.stored_notifications(&company.app_id).await;
    assert_eq!(stored.len(), 3);
    for waiting in &stored[1..] {
        assert_eq!(waiting.status, NotificationStatus::Pending);
        // Behind the retry: no due time of its own until the older one is delivered.
        assert_eq!(
            waiting.next_attempt_at, None,
            "due {:?} while the older one waits for its retry at {retry_at:?}",
            waiting.next_attempt_at
        );
    }
    hook.set(200, Duration::ZERO);
    let seen = hook.wait_for(4, Duration::from_secs(5)).await;
    let order: Vec<(String, u16)> = seen
        .iter()
        .map(|r| (entity_ids(r)[0].clone(), r.status))
        .collect();
    let expected = [("older", 500), ("older", 200), ("middle", 200), ("newer", 200)];
    assert_eq!(order, expected.map(|(id, s)| (id.to_owned(), s)));
}

async fn a_long_attempt_parks_its_stream_until_it_ends(kind: Kind) {
    let pki = receiver::pki();
    // Leases last 2 × 2 s + 5 s = 9 s.
    let Some((server, _dir)) =
        delivery_server(kind, &pki, |c| c.delivery_timeout = Duration::from_secs(2)).await
    else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    hook.set(200, Duration::from_millis(1500));
    let (company, _) = subscribed(&server, &hook, json!({})).await;
    let started = Instant::now();
    ingest_one(&server, &company.realm_id, "first").await;
    // The first attempt is in flight; the second notification cannot be claimed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    ingest_one(&server, &company.realm_id, "second").await;
    // Past the first parking (250 ms) and the second (750 ms), before the answer.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let stored = server.stored_notifications(&company.app_id).await;
    assert_eq!(stored.len(), 2);
    let soon = ledgerhook_domain::Timestamp::now().millis() + 5_000;
    for parked in &stored {
        assert_eq!(parked.status, NotificationStatus::Pending);
        let due = parked.next_attempt_at.unwrap().millis();
        assert!(
            due > soon,
            "{} is due at {due}, not parked until the lease ends",
            parked.id
        );
    }
    // When the answer is recorded the rest of the stream is due at once, not at the
    // lease's end.
    let seen = hook.wait_for(2, Duration::from_secs(8)).await;
    let order: Vec<String> = seen.iter().map(|r| entity_ids(r)[0].clone()).collect();
    assert_eq!(order, ["first", "second"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the second notification waited for the lease: {:?}",
        started.elapsed()
    );
}

async fn a_notification_dropped_during_its_attempt_stays_dropped(kind: Kind) {
    let pki = receiver::pki();
    let Some((server, _dir)) = delivery_server(kind, &pki, |_| {}).await else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    hook.set(500, Duration::from_millis(800));
    let (company, _) = subscribed(&server, &hook, json!({})).await;
    ingest_one(&server, &company.realm_id, "1").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let path = format!("/api/v1/apps/{}/webhooks/sandbox", company.app_id);
    let (status, _) = server.call(Method::DELETE, &path, Some(OPERATOR), None).await;
    assert_eq!(status, 204);
    // The failed attempt is recorded after the deletion: it must not queue a retry.
    assert_eq!(hook.wait_for(1, Duration::from_secs(5)).await.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    let stored = loop {
        let stored = server.stored_notifications(&company.app_id).await;
        if stored[0].attempt_count == 1 || Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(stored[0].attempt_count, 1);
    assert_eq!(stored[0].status, NotificationStatus::Dropped);
    assert_eq!(stored[0].next_attempt_at, None);
}

/// An attempt that cannot run releases its own stream's lease only (`release_stream`):
/// the other streams in flight keep theirs.
/// The claim loop looks again at once only after a round its limit cut short, so the
/// store must say so; what the endpoint's in-flight limit keeps back stays claimable.
async fn a_claim_round_says_when_its_limit_cut_it_short(kind: Kind) {
    let pki = receiver::pki();
    let Some((server, _dir)) = delivery_server(kind, &pki, |c| c.max_in_flight_per_endpoint = 1).await else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    hook.set(200, Duration::from_millis(1500));
    let (company, _) = subscribed(&server, &hook, json!({})).await;
    let realms = with_more_realms(&server, &company, 5).await;
    for (i, realm) in realms.iter().enumerate() {
        ingest_one(&server, realm, &i.to_string()).await;
    }
    // One attempt holds the endpoint's only permit; the other realms wait.
    assert_eq!(hook.wait_for(1, Duration::from_secs(3)).await.len(), 1);
    let claimable = |limit| {
        server.state.store.claimable(
            ledgerhook_domain::Timestamp::now(),
            ledgerhook_domain::Ordering::BestEffort,
            limit,
        )
    };
    // Claiming ahead takes a few more; what remains due is more than one.
    let all = claimable(10).await.unwrap();
    let due = all.candidates.len();
    assert!(due >= 2, "only {due} due: {:?}", all.candidates);
    assert!(
        !all.more,
        "{due} due were read under a limit of ten, yet more is said to be due"
    );
    let cut = claimable(due as u32 - 1).await.unwrap();
    assert_eq!(cut.candidates.len(), due - 1);
    assert!(
        cut.more,
        "{} of {due} due were read, yet no more is said to be due",
        due - 1
    );
    // One permit, 0.5 s each: all six are sent, one after another.
    hook.set(200, Duration::from_millis(500));
    let seen = hook.wait_for(6, Duration::from_secs(10)).await;
    let mut sent: Vec<String> = seen.iter().map(|r| entity_ids(r)[0].clone()).collect();
    sent.sort();
    assert_eq!(sent, ["0", "1", "2", "3", "4", "5"]);
}

async fn releasing_one_stream_keeps_the_others_leased(kind: Kind) {
    let pki = receiver::pki();
    let Some((server, _dir)) = delivery_server(kind, &pki, |_| {}).await else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    hook.set(200, Duration::from_millis(1000));
    let (company, _) = subscribed(&server, &hook, json!({})).await;
    let other = server.realm("sandbox").await;
    server.connect(&company.app_id, &other).await;
    ingest_one(&server, &company.realm_id, "a").await;
    ingest_one(&server, &other, "b").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let config_id = server.stored_notifications(&company.app_id).await[0]
        .config_id
        .unwrap();
    let owner = server.state.dispatcher.owner().to_owned();
    let store = &server.state.store;
    store
        .release_stream(&owner, config_id, &company.realm_id)
        .await
        .unwrap();
    // As the dispatcher's error path does: release, then wake the claiming loop.
    server.state.wake_dispatcher.notify_one();
    let claimable = store
        .claimable(
            ledgerhook_domain::Timestamp::now(),
            ledgerhook_domain::Ordering::BestEffort,
            10,
        )
        .await
        .unwrap()
        .candidates;
    assert!(
        claimable.iter().all(|c| c.realm_id != other),
        "the other stream lost its lease: {claimable:?}"
    );
    // The released stream's notification is claimed again at once (a second request
    // while the first is still open); the other one is sent once.
    let seen = hook.wait_for(4, Duration::from_secs(3)).await;
    let sent = |id: &str| seen.iter().filter(|r| entity_ids(r)[0] == id).count();
    assert_eq!((sent("a"), sent("b")), (2, 1));
}

async fn a_timeout_counts_as_a_failure(kind: Kind) {
    let pki = receiver::pki();
    let Some((server, _dir)) =
        delivery_server(kind, &pki, |c| c.delivery_timeout = Duration::from_millis(300)).await
    else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    hook.set(200, Duration::from_millis(1000));
    let (company, _) = subscribed(&server, &hook, json!({})).await;
    ingest_one(&server, &company.realm_id, "1").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let list = loop {
        let (_, list) = server
            .get(&format!("/api/v1/apps/{}/notifications", company.app_id))
            .await;
        if list["data"][0]["attempts"] == 1 || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(list["data"][0]["status"], "retrying");
    let id = list["data"][0]["id"].as_str().unwrap();
    let (_, one) = server
        .get(&format!("/api/v1/apps/{}/notifications/{id}", company.app_id))
        .await;
    let attempt = &one["attempts"][0];
    assert_eq!(attempt["outcome"], "timeout");
    assert_eq!(attempt["status_code"], Value::Null);
    assert!(attempt["duration_ms"].as_i64().unwrap() < 900, "{attempt}");
}

async fn one_attempt_in_flight_per_realm_while_realms_run_in_parallel(kind: Kind) {
    let pki = receiver::pki();
    let Some((server, _dir)) = delivery_server(kind, &pki, |_| {}).await else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    hook.set(200, Duration::from_millis(150));
    let (company, _) = subscribed(&server, &hook, json!({})).await;
    let realms = with_more_realms(&server, &company, 2).await;
    for i in 0..4 {
        for realm in &realms {
            ingest_one(&server, realm, &format!("{i}")).await;
        }
    }
    let seen = hook.wait_for(12, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 12);
    let realm_of = |r: &Recorded| -> String {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        body["eventNotifications"][0]["realmId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut overlapping_realms = false;
    for (i, a) in seen.iter().enumerate() {
        for b in &seen[i + 1..] {
            let overlap = a.started < b.finished && b.started < a.finished;
            if overlap && realm_of(a) == realm_of(b) {
                panic!("two requests of realm {} overlapped", realm_of(a));
            }
            overlapping_realms |= overlap;
        }
    }
    assert!(
        overlapping_realms,
        "realms were delivered one after another, not in parallel"
    );
}

/// One busy realm under best-effort ordering: its queued notifications go out one after
/// another without a commit between two (never two at once), each is delivered and
/// recorded once, and the stream is released afterwards.
async fn a_busy_realm_is_sent_ahead_once_each_then_released(kind: Kind) {
    let pki = receiver::pki();
    let Some((server, _dir)) = delivery_server(kind, &pki, |_| {}).await else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    // Slow enough that the realm's notifications queue up behind the first.
    hook.set(200, Duration::from_millis(30));
    let (company, _) = subscribed(&server, &hook, json!({"ordering": "best-effort"})).await;
    for i in 0..40 {
        ingest_one(&server, &company.realm_id, &format!("{i}")).await;
    }
    let seen = hook.wait_for(40, Duration::from_secs(20)).await;
    let mut ids: Vec<String> = seen.iter().map(|r| entity_ids(r)[0].clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((seen.len(), ids.len()), (40, 40), "each delivered once");
    for (i, a) in seen.iter().enumerate() {
        for b in &seen[i + 1..] {
            assert!(
                !(a.started < b.finished && b.started < a.finished),
                "two requests of the realm overlapped"
            );
        }
    }
    // Every result was recorded: delivered after one attempt each.
    let base = format!("/api/v1/apps/{}/notifications", company.app_id);
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivered = loop {
        let (_, list) = server.get(&format!("{base}?status=delivered&limit=100")).await;
        let data = list["data"].as_array().cloned().unwrap_or_default();
        if data.len() == 40 || Instant::now() > deadline {
            break data;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivered.len(), 40);
    assert!(delivered.iter().all(|n| n["attempts"] == 1), "{delivered:?}");
    // The stream was released: the next change goes out at once.
    hook.set(200, Duration::ZERO);
    ingest_one(&server, &company.realm_id, "after").await;
    assert_eq!(hook.wait_for(41, Duration::from_secs(5)).await.len(), 41);
}

async fn a_test_send_is_signed_and_listed(kind: Kind) {
    let pki = receiver::pki();
    let Some((server, _dir)) = delivery_server(kind, &pki, |_| {}).await else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    let (company, app) = subscribed(&server, &hook, json!({})).await;
    let path = format!("/api/v1/apps/{}/webhooks/sandbox/test", company.app_id);
    let (status, answer) = server.post(&path, &json!({"realm_id": company.realm_id})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["attempt"]["outcome"], "success");
    assert_eq!(answer["attempt"]["status_code"], 200);
    let request = &hook.requests()[0];
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body["eventNotifications"][0]["realmId"],
        company.realm_id.as_str()
    );
    assert_eq!(
        body["eventNotifications"][0]["dataChangeEvent"]["entities"][0]["operation"],
        "Create"
    );
    let verifier = app["verifier_token"].as_str().unwrap();
    assert_eq!(
        request.header("intuit-signature").unwrap(),
        intuit_signature(verifier, &request.body)
    );
    let id = request.header("webhook-id").unwrap();
    assert_eq!(id, answer["notification_id"].as_str().unwrap());
    let timestamp: i64 = request.header("webhook-timestamp").unwrap().parse().unwrap();
    let expected = standard_signature(
        app["signing_secret"].as_str().unwrap(),
        id,
        timestamp,
        &request.body,
    )
    .unwrap();
    assert_eq!(request.header("webhook-signature").unwrap(), expected);
    assert_eq!(
        request.header("content-type").unwrap(),
        "application/json; charset=utf-8"
    );
    assert_eq!(
        request.header("intuit-notification-schema-version").unwrap(),
        "0.1"
    );
    assert!(request.header("user-agent").unwrap().starts_with("ledgerhook/"));
    let (_, list) = server
        .get(&format!("/api/v1/apps/{}/notifications", company.app_id))
        .await;
    assert_eq!(list["data"][0]["test"], true);
    assert_eq!(list["data"][0]["status"], "delivered");
    // Without a realm the sample is for realm "0".
    let (_, answer) = server.post(&path, &json!({})).await;
    assert_eq!(answer["attempt"]["outcome"], "success");
    let body: Value = serde_json::from_slice(&hook.requests()[1].body).unwrap();
    assert_eq!(body["eventNotifications"][0]["realmId"], "0");

    // Both sends are counted in the metrics.
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("ledgerhook_attempts_total{outcome=\"success\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("ledgerhook_notifications{status=\"delivered\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("ledgerhook_webhook_configurations{state=\"active\"} 1"),
        "{text}"
    );
}

async fn notifications_can_be_listed_read_redelivered_and_recovered(kind: Kind) {
    let pki = receiver::pki();
    let Some((server, _dir)) = delivery_server(kind, &pki, |c| {
        c.retry_schedule = vec![Duration::from_millis(100)];
    })
    .await
    else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    hook.set(503, Duration::ZERO);
    let (company, _) = subscribed(&server, &hook, json!({})).await;
    let since = ledgerhook_domain::Timestamp::now().to_rfc3339();
    ingest_one(&server, &company.realm_id, "1").await;
    wait_for_state(&server, &company.app_id, "blacklisted", Duration::from_secs(5)).await;
    let base = format!("/api/v1/apps/{}/notifications", company.app_id);
    let (_, list) = server
        .get(&format!(
            "{base}?status=dropped&environment=sandbox&realm={}",
            company.realm_id
        ))
        .await;
    let item = &list["data"][0];
    // A time range: nothing made before `since`, this one before a minute from now; a
    // malformed bound is a 400 that names it.
    let (_, before) = server.get(&format!("{base}?until={since}")).await;
    assert_eq!(before["data"], json!([]), "made before {since}: {before}");
    let later = (chrono::Utc::now() + chrono::Duration::minutes(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (_, range) = server
        .get(&format!("{base}?status=dropped&since={since}&until={later}"))
        .await;
    assert_eq!(range["data"][0]["id"], item["id"], "{range}");
    let (status, error) = server.get(&format!("{base}?until=yesterday")).await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("until"),
        "{error}"
    );
    let keys: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
    for key in [
        "id",
        "environment",
        "realm_id",
        "status",
        "format",
        "test",
        "created_at",
        "attempts",
        "next_attempt_at",
    ] {
        assert!(keys.contains(&key), "{key} missing from {item}");
    }
    let id = item["id"].as_str().unwrap().to_owned();
    let (_, one) = server.get(&format!("{base}/{id}")).await;
    assert_eq!(
        one["payload"].as_str().unwrap().as_bytes(),
        hook.requests()[0].body.as_slice()
    );
    let attempts = one["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1]["number"], 2);
    assert_eq!(attempts[1]["outcome"], "http");
    assert_eq!(attempts[1]["status_code"], 503);
    assert_eq!(attempts[1]["response_body"], "status 503");
    // Each attempt shows the headers its request carried: what the receiver got.
    for (attempt, received) in attempts.iter().zip(hook.requests()) {
        let shown = attempt["request_headers"].as_object().expect("request_headers");
        for name in [
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "intuit-signature",
            "content-type",
        ] {
            assert_eq!(
                shown[name].as_str(),
                received.headers.get(name).map(String::as_str),
                "{name} of attempt {}",
                attempt["number"]
            );
        }
    }

    // Redelivery sends now and does not touch the configuration's state.
    hook.set(200, Duration::ZERO);
    let (status, answer) = server.post(&format!("{base}/{id}/redeliver"), &json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "delivered");
    assert_eq!(
        config_state(&server, &company.app_id).await["state"],
        "blacklisted"
    );

    // Recover queues again what was not delivered since a time.
    let (status, _) = server
        .post(
            &format!("/api/v1/apps/{}/webhooks/sandbox/reactivate", company.app_id),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    hook.set(500, Duration::ZERO);
    ingest_one(&server, &company.realm_id, "2").await;
    wait_for_state(&server, &company.app_id, "blacklisted", Duration::from_secs(5)).await;
    server
        .post(
            &format!("/api/v1/apps/{}/webhooks/sandbox/reactivate", company.app_id),
            &json!({}),
        )
        .await;
    hook.set(200, Duration::ZERO);
    let hits = hook.hits();
    let (status, answer) = server
        .post(
            &format!("/api/v1/apps/{}/webhooks/sandbox/recover", company.app_id),
            &json!({"since": since}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        answer["queued"], 1,
        "only the dropped notification is not delivered: {answer}"
    );
    let seen = hook.wait_for(hits + 1, Duration::from_secs(5)).await;
    assert_eq!(entity_ids(seen.last().unwrap()), ["2"]);

    // Bad input.
    let (status, _) = server.get(&format!("{base}?status=lost")).await;
    assert_eq!(status, 400);
    let (status, _) = server.get(&format!("{base}/ntf_missing")).await;
    assert_eq!(status, 404);
    let (status, _) = server
        .call(
            Method::POST,
            &format!("/api/v1/apps/{}/webhooks/sandbox/recover", company.app_id),
            Some(OPERATOR),
            Some(&json!({"since": "whenever"})),
        )
        .await;
    assert_eq!(status, 400);
}

/// The real schedule at `time-scale 60`: the first classic retry, 20 minutes, takes 20 s.
/// (SQLite only: the scheduling code is the same on both backends and this test waits.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_scale_60_makes_the_20_minute_retry_take_20_seconds() {
    let pki = receiver::pki();
    let Some((server, _dir)) = delivery_server(Kind::Sqlite, &pki, |c| c.time_scale = 60.0).await else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    hook.set(500, Duration::ZERO);
    let (company, _) = subscribed(&server, &hook, json!({})).await;
    ingest_one(&server, &company.realm_id, "1").await;
    assert_eq!(hook.wait_for(1, Duration::from_secs(5)).await.len(), 1);
    hook.set(200, Duration::ZERO);
    let seen = hook.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(seen.len(), 2, "no retry within 30 s");
    let gap = seen[1].started.duration_since(seen[0].finished).as_secs_f64();
    assert!((gap - 20.0).abs() <= 2.05, "the retry came after {gap:.2} s");
    // The attempt is recorded once its answer is in: moments after the receiver saw it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let (_, list) = server
            .get(&format!("/api/v1/apps/{}/notifications", company.app_id))
            .await;
        if list["data"][0]["status"] == "delivered" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not delivered: {list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// p99 of event→delivery latency for `samples` single-event requests to `hook`.
async fn healthy_p99(server: &TestServer, hook: &Receiver, realm_id: &str, samples: usize) -> Duration {
    let mut latencies = Vec::with_capacity(samples);
    let before = hook.hits();
    for i in 0..samples {
        let sent = Instant::now();
        ingest_one(server, realm_id, &format!("h{i}")).await;
        let seen = hook.wait_for(before + i + 1, Duration::from_secs(5)).await;
        assert_eq!(
            seen.len(),
            before + i + 1,
            "healthy notification {i} not delivered"
        );
        latencies.push(seen[before + i].started.duration_since(sent));
    }
    latencies.sort();
    latencies[(samples * 99 / 100).min(samples - 1)]
}

/// A healthy endpoint keeps its latency while 100 endpoints never answer. Each dead
/// attempt holds its slot for the whole 3 s `delivery-timeout`, so any head-of-line
/// blocking would show up as seconds; the bound is 1.25× running alone plus 100 ms for the
/// scheduling noise of a 2-core machine running the rest of the suite in parallel. The
/// strict 1.25× comparison is the isolation benchmark's (docs/benchmarks.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_that_never_answer_do_not_delay_a_healthy_one() {
    let pki = receiver::pki();
    let Some((server, _dir)) = delivery_server(Kind::Sqlite, &pki, |c| c.allow_http = true).await else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    let (healthy, _) = subscribed(&server, &hook, json!({})).await;
    healthy_p99(&server, &hook, &healthy.realm_id, 10).await; // warm-up: connection, caches
    let alone = healthy_p99(&server, &hook, &healthy.realm_id, 60).await;

    let hole = receiver::black_hole().await;
    let dead_realm = server.realm("sandbox").await;
    for i in 0..100 {
        let app = server.app(&format!("Dead {i}")).await;
        let app_id = app["id"].as_str().unwrap();
        server.connect(app_id, &dead_realm).await;
        let url = format!("http://127.0.0.1:{hole}/dead/{i}");
        server
            .configure(app_id, "sandbox", json!({"url": url, "entities": "*"}))
            .await;
    }
    ingest_one(&server, &dead_realm, "dead").await;
    // Wait until the 100 attempts hang in the black hole.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let crowded = healthy_p99(&server, &hook, &healthy.realm_id, 60).await;
    let bound = alone.mul_f64(1.25) + Duration::from_millis(100);
    eprintln!("healthy p99 alone {alone:?}, with 100 dead endpoints {crowded:?}");
    assert!(
        crowded <= bound,
        "p99 alone {alone:?}, with 100 dead endpoints {crowded:?} (bound {bound:?})"
    );
}

async fn rotation_signs_with_both_secrets_during_the_grace_only(kind: Kind) {
    let pki = receiver::pki();
    let Some((server, _dir)) = delivery_server(kind, &pki, |_| {}).await else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    let (company, app) = subscribed(&server, &hook, json!({})).await;
    let srv = &server;
    let rotate = |name: &'static str, grace: &'static str| {
        let path = format!("/api/v1/apps/{}/secrets/{name}/rotate", company.app_id);
        async move { srv.post(&path, &json!({"grace": grace})).await.1 }
    };
    let new_secret = rotate("signing_secret", "1h").await["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_token = rotate("verifier_token", "1h").await["verifier_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The dispatcher caches stored secrets for up to a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let test = format!("/api/v1/apps/{}/webhooks/sandbox/test", company.app_id);
    server.post(&test, &json!({})).await;
    let request = &hook.requests()[0];
    let id = request.header("webhook-id").unwrap();
    let ts: i64 = request.header("webhook-timestamp").unwrap().parse().unwrap();
    let signatures: Vec<&str> = request.header("webhook-signature").unwrap().split(' ').collect();
    let old = standard_signature(app["signing_secret"].as_str().unwrap(), id, ts, &request.body).unwrap();
    let new = standard_signature(&new_secret, id, ts, &request.body).unwrap();
    assert_eq!(signatures.len(), 2);
    assert!(signatures.contains(&old.as_str()) && signatures.contains(&new.as_str()));
    let old_token = app["verifier_token"].as_str().unwrap();
    assert_eq!(
        request.header("intuit-signature").unwrap(),
        intuit_signature(old_token, &request.body)
    );

    // A rotation without grace switches both at once.
    let newest_secret = rotate("signing_secret", "0s").await["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let newest_token = rotate("verifier_token", "0s").await["verifier_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(newest_token, new_token);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server.post(&test, &json!({})).await;
    let request = &hook.requests()[1];
    let id = request.header("webhook-id").unwrap();
    let ts: i64 = request.header("webhook-timestamp").unwrap().parse().unwrap();
    assert_eq!(
        request.header("webhook-signature").unwrap(),
        standard_signature(&newest_secret, id, ts, &request.body).unwrap()
    );
    assert_eq!(
        request.header("intuit-signature").unwrap(),
        intuit_signature(&newest_token, &request.body)
    );
}

async fn retention_removes_old_notifications(kind: Kind) {
    let pki = receiver::pki();
    // retention 1 h at time-scale 3600: one second.
    let Some((server, _dir)) = delivery_server(kind, &pki, |c| {
        c.time_scale = 3600.0;
        c.retention = Duration::from_secs(3600);
        c.inactive_after = Duration::from_secs(3600);
    })
    .await
    else {
        return;
    };
    let hook = receiver::start(Some(pki.signed.clone())).await;
    let (company, _) = subscribed(&server, &hook, json!({})).await;
    ingest_one(&server, &company.realm_id, "1").await;
    hook.wait_for(1, Duration::from_secs(5)).await;
    let base = format!("/api/v1/apps/{}/notifications", company.app_id);
    let (_, list) = server.get(&base).await;
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(server.get(&format!("{base}/{id}")).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.get(&format!("{base}/{id}")).await.0 == 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server.get(&format!("{base}/{id}")).await.0,
        404,
        "retention did not remove the notification"
    );
    assert_eq!(server.get(&base).await.1["data"], json!([]));
}
