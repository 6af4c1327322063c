//! The storage suite: every test runs once on SQLite and once on PostgreSQL.

use ledgerhook_store::{Backend, Store, StoreError, StoreOptions};
use ledgerhook_testkit::{Kind, TestDatabase};

use ledgerhook_testkit::on_both_backends;

on_both_backends!(
    opens_on_the_right_backend,
    migrations_are_idempotent_and_data_survives_reopen,
    init_meta_keeps_the_first_value,
);

async fn open(db: &TestDatabase) -> Store {
    Store::open(&StoreOptions::new(db.url.parse().expect("test database URL")))
        .await
        .expect("open store")
}

async fn opens_on_the_right_backend(kind: Kind) {
    let Some(db) = TestDatabase::new(kind).await else {
        return;
    };
    let store = open(&db).await;
    let expected = match kind {
        Kind::Sqlite => Backend::Sqlite,
        Kind::Postgres => Backend::Postgres,
    };
    assert_eq!(store.backend(), expected);
    store.ping().await.expect("ping");
}

async fn migrations_are_idempotent_and_data_survives_reopen(kind: Kind) {
    let Some(db) = TestDatabase::new(kind).await else {
        return;
    };
    let store = open(&db).await;
    store.set_meta("greeting", "hello").await.unwrap();
    store.set_meta("greeting", "hello again").await.unwrap();
    store.close().await;
    drop(store);
    let store = open(&db).await;
    assert_eq!(
        store.meta("greeting").await.unwrap().as_deref(),
        Some("hello again")
    );
    assert_eq!(store.meta("absent").await.unwrap(), None);
}

async fn init_meta_keeps_the_first_value(kind: Kind) {
    let Some(db) = TestDatabase::new(kind).await else {
        return;
    };
    let store = open(&db).await;
    assert!(store.init_meta("k", "first").await.unwrap());
    assert!(!store.init_meta("k", "second").await.unwrap());
    assert_eq!(store.meta("k").await.unwrap().as_deref(), Some("first"));
}

#[tokio::test]
async fn second_sqlite_store_on_the_same_file_is_refused() {
    let db = TestDatabase::sqlite();
    let _first = open(&db).await;
    let err = Store::open(&StoreOptions::new(db.url.parse().unwrap()))
        .await
        .err()
        .expect("second open must fail");
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("already in use by another ledgerhook process"),
        "{err}"
    );
}

#[tokio::test]
async fn sqlite_checkpoints_keep_the_wal_from_growing() {
    let db = TestDatabase::sqlite();
    let store = open(&db).await;
    let big = "x".repeat(100_000);
    // 120 commits of about 25 pages each: 12 MB of WAL if nothing copied it back.
    // The pauses let the checkpoints (every second) catch up.
    for i in 0..120 {
        store.set_meta(&format!("key{i}"), &big).await.unwrap();
        if i % 20 == 19 {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        }
    }
    let mut wal = db.sqlite_path.clone().unwrap().into_os_string();
    wal.push("-wal");
    let size = std::fs::metadata(&wal).unwrap().len();
    assert!(size < 8_000_000, "the WAL grew to {size} bytes");
    assert_eq!(store.meta("key119").await.unwrap().as_deref(), Some(big.as_str()));
}

#[tokio::test]
async fn sqlite_lock_is_released_when_the_store_is_dropped() {
    let db = TestDatabase::sqlite();
    let first = open(&db).await;
    first.close().await;
    drop(first);
    open(&db).await;
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    let err = "mysql://localhost/x"
        .parse::<ledgerhook_store::DatabaseUrl>()
        .unwrap_err();
    assert!(err.to_string().contains("unsupported database URL"), "{err}");
}

/// On PostgreSQL, work one store announces wakes the other stores' tasks, and not the
/// announcing store's own: its process wakes those directly.
#[tokio::test]
async fn announcements_wake_other_stores_but_not_their_own() {
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::{watch, Notify};

    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let (announcing, other) = (open(&db).await, open(&db).await);
    let (_stop, shutdown) = watch::channel(false);
    let listen = |store: &Store| {
        let (windows, notifications) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        store.spawn_listener(windows, notifications.clone(), shutdown.clone());
        notifications
    };
    let (own_wake, other_wake) = (listen(&announcing), listen(&other));
    let now = ledgerhook_domain::Timestamp::now();
    // Announce until the other store hears it (its listener may still be connecting).
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            announcing.recover(1, now, now).await.expect("recover announces");
            if tokio::time::timeout(Duration::from_millis(100), other_wake.notified())
                .await
                .is_ok()
            {
                break;
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "the other store never heard the announcement");
    // Delivered to every listener at the same commit: the announcing store's own listener
    // has had it as long, and must not have woken its tasks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let woke = tokio::time::timeout(Duration::from_millis(200), own_wake.notified()).await;
    assert!(woke.is_err(), "the announcing store woke itself");
}

mod pipeline;
