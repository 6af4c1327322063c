//! The delivery pipeline's storage on both backends: window closing, claims, lease
//! expiry, parking, recording, and the cascades of a delete.

use ledgerhook_domain::{EntitySelection, Environment, Operation, Ordering, PayloadFormat, Timestamp};
use ledgerhook_store::ingest::{IngestRequest, NewEvent};
use ledgerhook_store::model::{App, ConfigInput, Realm, WebhookConfig};
use ledgerhook_store::notifications::{NewNotification, NotificationStatus};
use ledgerhook_store::queue::{AttemptRecord, AttemptResult, Candidate, Decision, Parking};
use ledgerhook_store::windows::{ClosingWindow, WindowPolicy};
use ledgerhook_store::Store;
use ledgerhook_testkit::{on_both_backends, Kind, TestDatabase};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

on_both_backends!(
    a_window_closes_when_due_into_one_notification,
    a_claim_takes_the_stream_until_its_lease_ends,
    recording_delivers_retries_and_frees_the_stream,
    parking_moves_a_streams_due_rows_to_the_lease_end_and_back,
    deleting_an_app_or_realm_cascades_and_drops_undelivered_work,
    a_delivered_stream_continues_with_its_next_due_notification,
    retention_purges_in_batches_and_keeps_undelivered_work,
    a_strict_stream_behind_a_retry_is_released_one_at_a_time,
    a_best_effort_stream_hands_over_its_next_due_notifications,
    streams_recorded_together_each_continue_with_their_own_next,
);

/// A realm with one connected app whose sandbox configuration wants everything.
struct Fixture {
    store: Store,
    realm_id: String,
    app_id: String,
    config: WebhookConfig,
    db: TestDatabase,
}

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn at(offset_ms: i64) -> Timestamp {
    Timestamp(T0.millis() + offset_ms)
}

fn policy(window_ms: i64) -> WindowPolicy {
    WindowPolicy {
        sandbox_ms: window_ms,
        production_ms: 60_000,
        max_events: 1000,
        time_scale: 1.0,
        default_ordering: Ordering::Strict,
    }
}

/// Renders a window as one notification whose body names its event ids.
fn render(window: &ClosingWindow<'_>) -> Vec<NewNotification> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let ids: Vec<&str> = window.events.iter().map(|e| e.entity_id.as_str()).collect();
    vec![NewNotification {
        id: format!("ntf_test_{}", NEXT.fetch_add(1, AtomicOrdering::Relaxed)),
        payload: ids.join(",").into_bytes(),
        event_count: window.events.len(),
    }]
}

async fn fixture(kind: Kind) -> Option<Fixture> {
    let db = TestDatabase::new(kind).await?;
    let store = super::open(&db).await;
    let realm = Realm {
        id: "9130000000000001".into(),
        name: "Test Co".into(),
        environment: Environment::Sandbox,
        created_at: T0,
    };
    store.insert_realm(&realm).await.unwrap();
    let app = App {
        id: "app_pipeline".into(),
        name: "Pipeline".into(),
        client_id: "client".into(),
        client_secret_hash: "secret-hash".into(),
        api_key_hash: "key-hash".into(),
        redirect_uris: vec![],
        created_at: T0,
    };
    store
        .insert_app(&app, "verifier", "whsec_c2VjcmV0")
        .await
        .unwrap();
    store.connect(&app.id, &realm.id, &[], T0).await.unwrap();
    let input = ConfigInput {
        url: "https://hooks.test/in".into(),
        entities: EntitySelection::All,
        format: PayloadFormat::Legacy,
        batch_window_ms: None,
        ordering: None,
        faults: None,
    };
    let config = store
        .put_config(&app.id, Environment::Sandbox, &input, T0)
        .await
        .unwrap();
    Some(Fixture {
        store,
        realm_id: realm.id,
        app_id: app.id,
        config,
        db,
    })
}

impl Fixture {
    /// Ingests one request of Customer updates with these ids at `now`.
    async fn ingest(&self, ids: &[&str], policy: &WindowPolicy, now: Timestamp) -> usize {
        let events = ids
            .iter()
            .map(|id| NewEvent {
                entity: "Customer",
                entity_id: (*id).to_owned(),
                operation: Operation::Update,
                last_updated: now,
                deleted_id: None,
                data: None,
                tombstone: false,
            })
            .collect();
        let request = IngestRequest {
            realm_id: self.realm_id.clone(),
            events,
            idempotency: None,
            precondition: None,
        };
        let (_, fanned) = self.store.ingest(&[request], policy, render, now).await.unwrap();
        fanned.notifications_made
    }

    /// Claims one candidate for `owner` until `until` (what it won is not looked at).
    async fn claim_one(&self, candidate: &Candidate, owner: &str, now: Timestamp, until: Timestamp) {
        self.store
            .claim(std::slice::from_ref(candidate), owner, now, until)
            .await
            .unwrap();
    }

    async fn claimable(&self, now: Timestamp) -> Vec<Candidate> {
        self.store
            .claimable(now, Ordering::Strict, 100)
            .await
            .unwrap()
            .candidates
    }

    async fn status(&self, seq: i64) -> (NotificationStatus, Option<Timestamp>) {
        let state = self
            .store
            .delivery_state(seq)
            .await
            .unwrap()
            .expect("notification");
        (state.notification.status, state.notification.next_attempt_at)
    }

    fn result(
        &self,
        candidate: &Candidate,
        decision: Decision,
        owner: &str,
        now: Timestamp,
    ) -> AttemptResult {
        AttemptResult {
            seq: candidate.seq,
            config_id: Some(self.config.id),
            realm_id: self.realm_id.clone(),
            attempt: AttemptRecord {
                number: 0,
                started_at: now,
                duration_ms: 12,
                outcome: "http_error".into(),
                status_code: Some(500),
                error: Some("HTTP 500".into()),
                response_body: Some("down".into()),
                request_headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("webhook-id".into(), format!("msg_{}", candidate.seq)),
                ],
            },
            decision,
            owner: Some(owner.into()),
            strict: true,
            retried: false,
            parked_until: None,
            continue_until: None,
            holds_stream: false,
        }
    }
}

async fn a_window_closes_when_due_into_one_notification(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    let policy = policy(1000);
    assert_eq!(
        f.ingest(&["1", "2"], &policy, at(0)).await,
        0,
        "a 1 s window makes nothing at once"
    );
    assert_eq!(f.store.next_window_due().await.unwrap(), Some(at(1000)));

    let early = f
        .store
        .close_due_windows(&policy, at(999), 10, render)
        .await
        .unwrap();
    assert_eq!((early.windows, early.notifications), (0, 0));
    let closed = f
        .store
        .close_due_windows(&policy, at(1000), 10, render)
        .await
        .unwrap();
    assert_eq!((closed.windows, closed.notifications), (1, 1));
    assert_eq!(
        f.store.next_window_due().await.unwrap(),
        None,
        "the window is gone"
    );

    let candidates = f.claimable(at(1000)).await;
    assert_eq!(candidates.len(), 1);
    let state = f.store.delivery_state(candidates[0].seq).await.unwrap().unwrap();
    assert_eq!(state.notification.payload, b"1,2");
    assert_eq!(state.notification.event_count, 2);
    assert_eq!(state.notification.status, NotificationStatus::Pending);
}

async fn a_claim_takes_the_stream_until_its_lease_ends(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    let policy = policy(0);
    assert_eq!(
        f.ingest(&["1"], &policy, at(0)).await,
        1,
        "a 0 s window makes a notification at once"
    );
    let candidates = f.claimable(at(0)).await;
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0].url, "https://hooks.test/in");

    let won = f
        .store
        .claim(&candidates, "node-a", at(0), at(5000))
        .await
        .unwrap();
    assert!(won[0].is_some(), "the first claim wins");
    assert!(
        f.claimable(at(10)).await.is_empty(),
        "a leased stream is not claimable"
    );
    let lost = f
        .store
        .claim(&candidates, "node-b", at(10), at(5010))
        .await
        .unwrap();
    assert!(lost[0].is_none(), "a second owner does not get a leased stream");

    // node-a dies: at the lease's end the stream is free for another node.
    assert_eq!(f.store.next_attempt_due(at(10)).await.unwrap(), Some(at(5000)));
    let again = f.claimable(at(5001)).await;
    assert_eq!(again.len(), 1, "the lease expired");
    let won = f
        .store
        .claim(&again, "node-b", at(5001), at(10_000))
        .await
        .unwrap();
    assert!(won[0].is_some());
}

async fn recording_delivers_retries_and_frees_the_stream(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    let policy = policy(0);
    f.ingest(&["1"], &policy, at(0)).await;
    f.ingest(&["2"], &policy, at(1)).await;
    let first = f.claimable(at(1)).await.remove(0);
    f.claim_one(&first, "node-a", at(1), at(5000)).await;

    // A failure with a next wait: retrying, due then, the attempt kept, the lease freed.
    let retry = f.result(&first, Decision::Retry(at(20_000)), "node-a", at(2));
    f.store.record_attempts(&[retry], at(3)).await.unwrap();
    assert_eq!(
        f.status(first.seq).await,
        (NotificationStatus::Retrying, Some(at(20_000)))
    );
    let attempts = f.store.attempts(first.seq).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!((attempts[0].number, attempts[0].status_code), (1, Some(500)));
    assert_eq!(
        attempts[0].request_headers,
        vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("webhook-id".to_owned(), format!("msg_{}", first.seq)),
        ],
        "the request's headers are kept in order"
    );
    assert!(
        f.claimable(at(100)).await.is_empty(),
        "strict order: the stream's next notification waits for the retry"
    );

    // The retry succeeds: delivered, and the stream's next notification is due at once.
    let retried = f.claimable(at(20_000)).await.remove(0);
    assert_eq!(retried.seq, first.seq);
    f.claim_one(&retried, "node-a", at(20_000), at(25_000)).await;
    let mut delivered = f.result(&retried, Decision::Delivered, "node-a", at(20_001));
    delivered.retried = true;
    f.store.record_attempts(&[delivered], at(20_002)).await.unwrap();
    assert_eq!(f.status(first.seq).await.0, NotificationStatus::Delivered);
    assert_eq!(f.store.attempts(first.seq).await.unwrap().len(), 2);
    let next = f.claimable(at(20_003)).await;
    assert_eq!(next.len(), 1, "the lease was released with the result");
    assert_ne!(next[0].seq, first.seq);
}

async fn parking_moves_a_streams_due_rows_to_the_lease_end_and_back(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    // Best-effort: the second is due at once, behind the first's lease (under strict
    // ordering it would wait behind the first, out of the due part of the queue).
    let policy = WindowPolicy {
        default_ordering: Ordering::BestEffort,
        ..policy(0)
    };
    f.ingest(&["1"], &policy, at(0)).await;
    f.ingest(&["2"], &policy, at(1)).await;
    let first = f.claimable(at(1)).await.remove(0);
    f.claim_one(&first, "node-a", at(1), at(9000)).await;
    let second_seq = {
        let list = f
            .store
            .notifications(
                &ledgerhook_store::notifications::NotificationFilter {
                    app_id: Some(f.app_id.clone()),
                    ..Default::default()
                },
                10,
            )
            .await
            .unwrap();
        list.iter().map(|n| n.seq).max().unwrap()
    };

    let parking = Parking {
        config_id: f.config.id,
        realm_id: f.realm_id.clone(),
        from_seq: first.seq,
        until: at(9000),
    };
    f.store.record_round(&[parking], &[], at(300)).await.unwrap();
    assert_eq!(
        f.status(second_seq).await.1,
        Some(at(9000)),
        "parked until the lease ends"
    );

    // The attempt ends: what it parked is due at once again, in the same transaction.
    let mut delivered = f.result(&first, Decision::Delivered, "node-a", at(400));
    delivered.parked_until = Some(at(9000));
    f.store.record_attempts(&[delivered], at(500)).await.unwrap();
    let (_, due) = f.status(second_seq).await;
    assert!(due.is_some_and(|d| d <= at(500)), "unparked: due {due:?}");
    let next = f.claimable(at(500)).await;
    assert_eq!(next.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![second_seq]);
}

async fn deleting_an_app_or_realm_cascades_and_drops_undelivered_work(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.ingest(&["1"], &policy(0), at(0)).await;
    f.ingest(&["2"], &policy(60_000), at(1)).await;
    assert!(f.store.next_window_due().await.unwrap().is_some());
    let seq = f.claimable(at(1)).await.remove(0).seq;

    assert!(f.store.delete_app(&f.app_id).await.unwrap());
    assert_eq!(
        f.status(seq).await.0,
        NotificationStatus::Dropped,
        "kept as history, dropped"
    );
    assert!(f.store.app(&f.app_id).await.unwrap().is_none());
    assert!(f
        .store
        .config(&f.app_id, Environment::Sandbox)
        .await
        .unwrap()
        .is_none());
    assert!(f
        .store
        .connection(&f.app_id, &f.realm_id)
        .await
        .unwrap()
        .is_none());
    assert!(f
        .store
        .secret(&f.app_id, ledgerhook_store::model::SecretName::SigningSecret)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        f.store.next_window_due().await.unwrap(),
        None,
        "its window went with it"
    );

    assert_eq!(
        f.store
            .changed_entities(&f.realm_id, &["Customer"], Timestamp(0), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    // The keys hold: nothing can point at the app any more.
    assert!(
        f.store.connect(&f.app_id, &f.realm_id, &[], at(2)).await.is_err(),
        "a connection of a deleted app is refused by its foreign key"
    );

    assert!(f.store.delete_realm(&f.realm_id).await.unwrap());
    assert!(
        f.store
            .changed_entities(&f.realm_id, &["Customer"], Timestamp(0), 10)
            .await
            .unwrap()
            .is_empty(),
        "its entities went with it"
    );
    assert!(f
        .store
        .entity_state(&f.realm_id, "Customer", "1")
        .await
        .unwrap()
        .is_none());
}

async fn a_delivered_stream_continues_with_its_next_due_notification(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    let policy = policy(0);
    for (n, id) in ["1", "2", "3"].iter().enumerate() {
        f.ingest(&[id], &policy, at(n as i64)).await;
    }
    let first = f.claimable(at(10)).await.remove(0);
    f.claim_one(&first, "node-a", at(10), at(5000)).await;

    // Delivered, asking to continue: the next notification comes back, its lease kept.
    let mut delivered = f.result(&first, Decision::Delivered, "node-a", at(11));
    delivered.continue_until = Some(at(9000));
    let next = f.store.record_round(&[], &[delivered], at(12)).await.unwrap();
    let next = next[0].clone().expect("the stream continues");
    assert!(next.candidate.seq > first.seq);
    assert_eq!(next.state.notification.seq, next.candidate.seq);
    assert!(next.then.is_empty(), "a strict stream is never sent ahead");
    assert_eq!(next.until, at(9000));
    assert_eq!(f.status(first.seq).await.0, NotificationStatus::Delivered);
    assert!(
        f.claimable(at(8999)).await.is_empty(),
        "the stream's lease is kept until the new end"
    );
    assert_eq!(f.claimable(at(9000)).await.len(), 1, "and ends then");

    // A failure never continues, and under strict ordering holds the rest back.
    let failed = f.result(&next.candidate, Decision::Retry(at(60_000)), "node-a", at(13));
    let none = f.store.record_round(&[], &[failed], at(14)).await.unwrap();
    assert!(none[0].is_none());
    assert!(
        f.claimable(at(20)).await.is_empty(),
        "strict: the third waits for the retry"
    );

    // The retry delivered, asking to continue: the third comes back; delivering that,
    // nothing else is due and the stream is released.
    let retried = f.claimable(at(60_000)).await.remove(0);
    assert_eq!(retried.seq, next.candidate.seq);
    f.claim_one(&retried, "node-a", at(60_000), at(65_000)).await;
    let mut again = f.result(&retried, Decision::Delivered, "node-a", at(60_001));
    again.retried = true;
    again.continue_until = Some(at(69_000));
    let third = f.store.record_round(&[], &[again], at(60_002)).await.unwrap()[0]
        .clone()
        .expect("the third continues the stream");
    let mut last = f.result(&third.candidate, Decision::Delivered, "node-a", at(60_003));
    last.continue_until = Some(at(69_000));
    let after = f.store.record_round(&[], &[last], at(60_004)).await.unwrap();
    assert!(after[0].is_none(), "nothing else is due");
    f.ingest(&["4"], &policy, at(60_005)).await;
    assert_eq!(f.claimable(at(60_006)).await.len(), 1, "the stream was released");
}

async fn retention_purges_in_batches_and_keeps_undelivered_work(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    let policy = policy(0);
    for n in 0..7 {
        f.ingest(&[&n.to_string()], &policy, at(n)).await;
    }
    // The first five are delivered, one at a time (strict order); two stay pending.
    let mut delivered = Vec::new();
    for n in 0..5 {
        let head = f.claimable(at(100 + n)).await.remove(0);
        f.claim_one(&head, "node-a", at(100 + n), at(5000)).await;
        let result = f.result(&head, Decision::Delivered, "node-a", at(100 + n));
        f.store.record_round(&[], &[result], at(100 + n)).await.unwrap();
        delivered.push(head.seq);
    }

    // Batches of two: what is older than the cutoff goes, however many batches it takes.
    let removed = f.store.purge_in_batches(at(3), at(3), 2).await.unwrap();
    assert_eq!(
        removed,
        3 + 3,
        "the three oldest notifications and their three events"
    );
    for &seq in &delivered[..3] {
        assert!(
            f.store.delivery_state(seq).await.unwrap().is_none(),
            "{seq} was purged"
        );
    }
    assert!(
        f.store.delivery_state(delivered[3]).await.unwrap().is_some(),
        "newer than the cutoff: kept"
    );

    let removed = f.store.purge_in_batches(at(1000), at(1000), 2).await.unwrap();
    assert_eq!(
        removed,
        2 + 4,
        "the other two delivered notifications and the other four events"
    );
    let pending = f.claimable(at(1000)).await;
    assert_eq!(
        pending.len(),
        1,
        "the two pending notifications are kept (strict: the head is due)"
    );
    assert_eq!(f.status(pending[0].seq).await.0, NotificationStatus::Pending);
    assert_eq!(
        f.store.purge(at(1000), at(1000)).await.unwrap(),
        0,
        "nothing is left to purge"
    );
}

async fn a_strict_stream_behind_a_retry_is_released_one_at_a_time(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    let policy = policy(0);
    for n in 0..4 {
        f.ingest(&[&n.to_string()], &policy, at(n)).await;
    }
    let head = f.claimable(at(10)).await.remove(0);
    f.claim_one(&head, "node-a", at(10), at(5000)).await;
    let failed = f.result(&head, Decision::Retry(at(60_000)), "node-a", at(11));
    f.store.record_round(&[], &[failed], at(12)).await.unwrap();
    let filter = ledgerhook_store::notifications::NotificationFilter {
        app_id: Some(f.app_id.clone()),
        ..Default::default()
    };
    let mut behind: Vec<i64> = f
        .store
        .notifications(&filter, 10)
        .await
        .unwrap()
        .iter()
        .map(|n| n.seq)
        .filter(|&seq| seq != head.seq)
        .collect();
    behind.sort_unstable();
    assert_eq!(behind.len(), 3);
    for &seq in &behind {
        assert_eq!(
            f.status(seq).await,
            (NotificationStatus::Pending, None),
            "waits behind the retry, with no due time of its own"
        );
    }
    assert!(
        f.claimable(at(59_999)).await.is_empty(),
        "nothing is due before the retry"
    );
    // A notification made now waits behind it too.
    f.ingest(&["4"], &policy, at(100)).await;
    assert!(f.claimable(at(59_999)).await.is_empty(), "made behind the retry");

    // The retry is delivered: only the next one becomes due, then each delivery the next.
    let retried = f.claimable(at(60_000)).await;
    assert_eq!(retried.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![head.seq]);
    f.claim_one(&retried[0], "node-a", at(60_000), at(65_000)).await;
    let mut delivered = f.result(&retried[0], Decision::Delivered, "node-a", at(60_001));
    delivered.retried = true;
    f.store.record_round(&[], &[delivered], at(60_002)).await.unwrap();
    for (i, &seq) in behind.iter().enumerate() {
        let due = f.claimable(at(60_010 + i as i64)).await;
        assert_eq!(
            due.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![seq],
            "one due at a time, in order"
        );
        assert_eq!(
            f.status(behind[behind.len() - 1]).await.1.is_none(),
            i + 1 < behind.len()
        );
        f.claim_one(&due[0], "node-a", at(60_010 + i as i64), at(65_000))
            .await;
        let result = f.result(&due[0], Decision::Delivered, "node-a", at(60_011 + i as i64));
        f.store
            .record_round(&[], &[result], at(60_011 + i as i64))
            .await
            .unwrap();
    }
    assert_eq!(
        f.claimable(at(61_000)).await.len(),
        1,
        "the one made behind the retry comes last"
    );
}

/// On PostgreSQL, another transaction that changes the same rows in the other order (as
/// deleting a configuration does while its attempts are recorded) deadlocks with the
/// recording; the database rolls the recording back, and it runs again: the attempt is
/// recorded once, not lost.
#[tokio::test]
async fn recording_runs_again_after_a_deadlock() {
    use sqlx::Connection;
    let Some(f) = fixture(Kind::Postgres).await else {
        return;
    };
    f.ingest(&["1"], &policy(0), at(0)).await;
    let head = f.claimable(at(10)).await.remove(0);
    f.claim_one(&head, "node-a", at(10), at(5000)).await;
    // The other transaction holds the configuration's row, which recording a failure
    // updates (its last error) after the notification's row.
    let mut other = sqlx::PgConnection::connect(&f.db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("UPDATE webhook_configs SET last_error = 'held' WHERE id = $1")
        .bind(f.config.id)
        .execute(&mut other)
        .await
        .unwrap();
    let failed = f.result(&head, Decision::Retry(at(60_000)), "node-a", at(11));
    let store = f.store.clone();
    let recording = tokio::spawn(async move { store.record_round(&[], &[failed], at(12)).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Now it takes the notification's row: a cycle. The recording waited first, so its
    // deadlock check runs first and rolls it back.
    sqlx::query("UPDATE notifications SET attempt_count = attempt_count WHERE seq = $1")
        .bind(head.seq)
        .execute(&mut other)
        .await
        .expect("the other transaction is not the one rolled back");
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    recording
        .await
        .unwrap()
        .expect("the recording ran again after the deadlock");
    let attempts = f.store.attempts(head.seq).await.unwrap();
    assert_eq!(attempts.len(), 1, "recorded once");
    assert_eq!(
        f.status(head.seq).await,
        (NotificationStatus::Retrying, Some(at(60_000)))
    );
}

/// Under best-effort ordering a continuation hands over the stream's next due
/// notifications too; results recorded while the next is already being sent keep the
/// stream leased and do not continue it.
async fn a_best_effort_stream_hands_over_its_next_due_notifications(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    let policy = WindowPolicy {
        default_ordering: Ordering::BestEffort,
        ..policy(0)
    };
    for n in 0..5 {
        f.ingest(&[&n.to_string()], &policy, at(n)).await;
    }
    let best_effort = |now| f.store.claimable(now, Ordering::BestEffort, 100);
    let first = best_effort(at(10)).await.unwrap().candidates.remove(0);
    f.claim_one(&first, "node-a", at(10), at(5000)).await;
    let mut delivered = f.result(&first, Decision::Delivered, "node-a", at(11));
    (delivered.strict, delivered.continue_until) = (false, Some(at(9000)));
    let next = f.store.record_round(&[], &[delivered], at(12)).await.unwrap()[0]
        .clone()
        .expect("the stream continues");
    let ahead: Vec<i64> = next.then.iter().map(|s| s.notification.seq).collect();
    assert_eq!(ahead.len(), 3, "the rest of the stream, after the next one");
    assert!(ahead.windows(2).all(|w| w[0] < w[1]) && ahead[0] > next.candidate.seq);

    // The next one's result, recorded while the one after it is being sent.
    let mut sent = f.result(&next.candidate, Decision::Delivered, "node-a", at(13));
    (sent.strict, sent.holds_stream) = (false, true);
    let none = f.store.record_round(&[], &[sent], at(14)).await.unwrap();
    assert!(none[0].is_none(), "it does not continue the stream");
    assert_eq!(
        f.status(next.candidate.seq).await.0,
        NotificationStatus::Delivered
    );
    assert!(
        best_effort(at(8999)).await.unwrap().candidates.is_empty(),
        "the stream stays leased"
    );

    // The last one sent ahead, asking to continue: the one after it comes back.
    let third = Candidate {
        seq: ahead[0],
        ..next.candidate.clone()
    };
    let mut last = f.result(&third, Decision::Delivered, "node-a", at(15));
    (last.strict, last.continue_until) = (false, Some(at(9500)));
    let after = f.store.record_round(&[], &[last], at(16)).await.unwrap()[0]
        .clone()
        .expect("the stream continues after the ones sent ahead");
    assert_eq!(after.candidate.seq, ahead[1]);
    assert_eq!(
        after.then.iter().map(|s| s.notification.seq).collect::<Vec<_>>(),
        vec![ahead[2]]
    );
}

async fn streams_recorded_together_each_continue_with_their_own_next(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    // A second realm recorded beside the first, and a third, never claimed, whose
    // notifications sit between theirs: a lookup that mixed streams would find them.
    let [other, idle] = ["9130000000000002", "9130000000000003"].map(|id| Realm {
        id: id.into(),
        name: format!("Co {id}"),
        environment: Environment::Sandbox,
        created_at: T0,
    });
    for realm in [&other, &idle] {
        f.store.insert_realm(realm).await.unwrap();
        f.store.connect(&f.app_id, &realm.id, &[], T0).await.unwrap();
    }
    let policy = WindowPolicy {
        default_ordering: Ordering::BestEffort,
        ..policy(0)
    };
    // Three notifications in each realm, made in turn.
    for n in 0..3 {
        for realm in [&f.realm_id, &other.id, &idle.id] {
            let request = IngestRequest {
                realm_id: realm.clone(),
                events: vec![NewEvent {
                    entity: "Customer",
                    entity_id: format!("{realm}-{n}"),
                    operation: Operation::Update,
                    last_updated: at(n),
                    deleted_id: None,
                    data: None,
                    tombstone: false,
                }],
                idempotency: None,
                precondition: None,
            };
            f.store.ingest(&[request], &policy, render, at(n)).await.unwrap();
        }
    }
    let heads = f
        .store
        .claimable(at(10), Ordering::BestEffort, 100)
        .await
        .unwrap()
        .candidates;
    assert_eq!(heads.len(), 3, "one head per stream");
    let heads: Vec<Candidate> = heads.into_iter().filter(|h| h.realm_id != idle.id).collect();
    f.store.claim(&heads, "node-a", at(10), at(5000)).await.unwrap();

    // Best-effort: both results in one round; each stream hands over its own rest.
    let results: Vec<AttemptResult> = heads
        .iter()
        .map(|head| {
            let mut r = f.result(head, Decision::Delivered, "node-a", at(11));
            r.realm_id = head.realm_id.clone();
            (r.strict, r.continue_until) = (false, Some(at(9000)));
            r
        })
        .collect();
    let nexts = f.store.record_round(&[], &results, at(12)).await.unwrap();
    for (head, next) in heads.iter().zip(&nexts) {
        let next = next.clone().expect("each stream continues");
        assert_eq!(next.candidate.realm_id, head.realm_id);
        assert_eq!(realm_of(&f.store, next.candidate.seq).await, head.realm_id);
        assert!(next.candidate.seq > head.seq);
        assert_eq!(next.then.len(), 1, "the stream's third, sent ahead");
        assert_eq!(
            realm_of(&f.store, next.then[0].notification.seq).await,
            head.realm_id
        );
    }

    // Strict results for the seconds, again together: each stream's third comes back.
    let results: Vec<AttemptResult> = nexts
        .iter()
        .map(|next| {
            let next = next.as_ref().unwrap();
            let mut r = f.result(&next.candidate, Decision::Delivered, "node-a", at(13));
            r.realm_id = next.candidate.realm_id.clone();
            r.continue_until = Some(at(9000));
            r
        })
        .collect();
    let thirds = f.store.record_round(&[], &results, at(14)).await.unwrap();
    for (next, third) in nexts.iter().zip(&thirds) {
        let (next, third) = (next.as_ref().unwrap(), third.as_ref().expect("each continues"));
        assert_eq!(third.candidate.seq, next.then[0].notification.seq);
        assert_eq!(
            realm_of(&f.store, third.candidate.seq).await,
            next.candidate.realm_id
        );
    }
}

/// The realm of notification `seq`.
async fn realm_of(store: &Store, seq: i64) -> String {
    store
        .delivery_state(seq)
        .await
        .unwrap()
        .expect("notification")
        .notification
        .realm_id
}
