//! The worker's per-realm queues, in the worker's file beside the inbox: the events taken from the inbox
//! (`worker_events`), each realm's state (`worker_realms`: when it was last heard from,
//! its failures and when it may be tried again, the last error) and the dead letters
//! (`worker_dead`: events given up on after too many failed tries, with the reason).
//!
//! Moving a notification's events into these queues and moving the position in the inbox
//! past it (`worker_position`) is one transaction, so a crash in between neither loses
//! nor doubles an event.

use crate::payload::Event;
use ledgerhook_domain::{Operation, Timestamp};
use sqlx::{Row, SqlitePool};

/// One queued event and its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Queued {
    pub(crate) seq: i64,
    pub(crate) event: Event,
    pub(crate) received_at: i64,
}

/// One realm's state, as [`crate::worker::Worker::status`] shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RealmRow {
    pub(crate) realm_id: String,
    pub(crate) heard_at: Option<i64>,
    pub(crate) failures: i64,
    pub(crate) retry_at: i64,
    pub(crate) last_error: Option<String>,
    pub(crate) depth: i64,
    pub(crate) dead: i64,
    pub(crate) oldest_received: Option<i64>,
}

/// A dead letter: an event given up on, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event.
    pub event: Event,
    /// When it arrived, Unix milliseconds.
    pub received_at: i64,
    /// The last error before it was given up on.
    pub reason: String,
    /// When it was given up on, Unix milliseconds.
    pub dead_at: i64,
}

const EVENT_COLUMNS: &str =
    "realm_id, entity, entity_id, operation, last_updated, deleted_id, event_id, received_at";

/// The queues, over the inbox's pool.
pub(crate) struct Queues {
    pool: SqlitePool,
}

fn event_of(row: &sqlx::sqlite::SqliteRow) -> Result<(Event, i64), sqlx::Error> {
    let operation: String = row.try_get("operation")?;
    Ok((
        Event {
            realm_id: row.try_get("realm_id")?,
            entity: row.try_get("entity")?,
            entity_id: row.try_get("entity_id")?,
            operation: Operation::parse(&operation).unwrap_or(Operation::Update),
            last_updated: Timestamp(row.try_get("last_updated")?),
            deleted_id: row.try_get("deleted_id")?,
            event_id: row.try_get("event_id")?,
        },
        row.try_get("received_at")?,
    ))
}

async fn insert_event(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
    event: &Event,
    received_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {table} ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
    ))
    .bind(&event.realm_id)
    .bind(&event.entity)
    .bind(&event.entity_id)
    .bind(event.operation.as_str())
    .bind(event.last_updated.millis())
    .bind(&event.deleted_id)
    .bind(&event.event_id)
    .bind(received_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Queues {
    /// Creates the tables if they are missing.
    pub(crate) async fn open(pool: SqlitePool) -> Result<Queues, sqlx::Error> {
        for sql in [
            "CREATE TABLE IF NOT EXISTS worker_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, realm_id TEXT NOT NULL, \
             entity TEXT NOT NULL, entity_id TEXT NOT NULL, operation TEXT NOT NULL, last_updated INTEGER NOT NULL, \
             deleted_id TEXT, event_id TEXT, received_at INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS worker_events_realm ON worker_events (realm_id, seq)",
            // A CloudEvent is queued once, whichever notification carried it.
            "CREATE UNIQUE INDEX IF NOT EXISTS worker_events_once ON worker_events (event_id) WHERE event_id IS NOT NULL",
            "CREATE TABLE IF NOT EXISTS worker_realms (realm_id TEXT PRIMARY KEY, heard_at INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS worker_position (id INTEGER PRIMARY KEY, taken_through INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS worker_dead (seq INTEGER PRIMARY KEY AUTOINCREMENT, realm_id TEXT NOT NULL, \
             entity TEXT NOT NULL, entity_id TEXT NOT NULL, operation TEXT NOT NULL, last_updated INTEGER NOT NULL, \
             deleted_id TEXT, event_id TEXT, received_at INTEGER NOT NULL, reason TEXT NOT NULL, dead_at INTEGER NOT NULL)",
        ] {
            sqlx::query(sql).execute(&pool).await?;
        }
        // Columns added after the first release.
        for (column, kind) in [
            ("failures", "INTEGER NOT NULL DEFAULT 0"),
            ("retry_at", "INTEGER NOT NULL DEFAULT 0"),
            ("last_error", "TEXT"),
        ] {
            let present: bool = sqlx::query_scalar(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('worker_realms') WHERE name = ?",
            )
            .bind(column)
            .fetch_one(&pool)
            .await?;
            if !present {
                sqlx::query(&format!("ALTER TABLE worker_realms ADD COLUMN {column} {kind}"))
                    .execute(&pool)
                    .await?;
            }
        }
        Ok(Queues { pool })
    }

    /// Queues the events of inbox entries and moves the position past them, in one
    /// transaction. Answers how many events were queued.
    pub(crate) async fn take(&self, entries: &[(i64, Vec<Event>, i64)]) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut queued = 0;
        for (_, events, received_at) in entries {
            for event in events {
                insert_event(&mut tx, "worker_events", event, *received_at).await?;
                queued += 1;
            }
        }
        let through = entries.iter().map(|(seq, _, _)| *seq).max().unwrap_or(0);
        sqlx::query(
            "INSERT INTO worker_position (id, taken_through) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET taken_through = MAX(worker_position.taken_through, excluded.taken_through)",
        )
        .bind(through)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(queued)
    }

    /// The last inbox position taken in, if the worker has taken any.
    pub(crate) async fn taken_through(&self) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT taken_through FROM worker_position WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
    }

    /// Realms with queued events that may be tried at `now`.
    pub(crate) async fn due_realms(&self, now: i64) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT DISTINCT e.realm_id FROM worker_events e LEFT JOIN worker_realms r ON r.realm_id = e.realm_id \
             WHERE COALESCE(r.retry_at, 0) <= ? ORDER BY e.realm_id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
    }

    /// The oldest `limit` queued events of `realm_id`.
    pub(crate) async fn events(&self, realm_id: &str, limit: u32) -> Result<Vec<Queued>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT seq, {EVENT_COLUMNS} FROM worker_events WHERE realm_id = ? ORDER BY seq LIMIT ?"
        ))
        .bind(realm_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let (event, received_at) = event_of(row)?;
                Ok(Queued {
                    seq: row.try_get("seq")?,
                    event,
                    received_at,
                })
            })
            .collect()
    }

    /// When `realm_id` was last heard from (the arrival of its newest processed event).
    pub(crate) async fn heard_at(&self, realm_id: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT heard_at FROM worker_realms WHERE realm_id = ?")
            .bind(realm_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// A round of `realm_id` succeeded: its events through `through` are done, it was
    /// heard at `heard_at`, and its failures are forgotten.
    pub(crate) async fn succeeded(
        &self,
        realm_id: &str,
        through: i64,
        heard_at: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM worker_events WHERE realm_id = ? AND seq <= ?")
            .bind(realm_id)
            .bind(through)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO worker_realms (realm_id, heard_at, failures, retry_at, last_error) VALUES (?, ?, 0, 0, NULL) \
             ON CONFLICT (realm_id) DO UPDATE SET heard_at = MAX(worker_realms.heard_at, excluded.heard_at), \
             failures = 0, retry_at = 0, last_error = NULL",
        )
        .bind(realm_id)
        .bind(heard_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// A round of `realm_id` failed with `error`: counts the failure and answers how
    /// many there have been in a row.
    pub(crate) async fn failed(
        &self,
        realm_id: &str,
        error: &str,
        retry_at: i64,
    ) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "INSERT INTO worker_realms (realm_id, heard_at, failures, retry_at, last_error) VALUES (?, 0, 1, ?, ?) \
             ON CONFLICT (realm_id) DO UPDATE SET failures = worker_realms.failures + 1, \
             retry_at = excluded.retry_at, last_error = excluded.last_error RETURNING failures",
        )
        .bind(realm_id)
        .bind(retry_at)
        .bind(error)
        .fetch_one(&self.pool)
        .await
    }

    /// Sets when `realm_id` may be tried again.
    pub(crate) async fn failed_until(&self, realm_id: &str, retry_at: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE worker_realms SET retry_at = ? WHERE realm_id = ?")
            .bind(retry_at)
            .bind(realm_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives up on `realm_id`'s events through `through`: they become dead letters with
    /// `reason`, and the realm starts afresh with its later events.
    pub(crate) async fn bury(
        &self,
        realm_id: &str,
        through: i64,
        reason: &str,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO worker_dead ({EVENT_COLUMNS}, reason, dead_at) SELECT {EVENT_COLUMNS}, ?, ? \
             FROM worker_events WHERE realm_id = ? AND seq <= ? ORDER BY seq"
        ))
        .bind(reason)
        .bind(now)
        .bind(realm_id)
        .bind(through)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM worker_events WHERE realm_id = ? AND seq <= ?")
            .bind(realm_id)
            .bind(through)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE worker_realms SET failures = 0, retry_at = 0 WHERE realm_id = ?")
            .bind(realm_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// The dead letters, oldest first.
    pub(crate) async fn dead_letters(&self) -> Result<Vec<DeadLetter>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS}, reason, dead_at FROM worker_dead ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let (event, received_at) = event_of(row)?;
                Ok(DeadLetter {
                    event,
                    received_at,
                    reason: row.try_get("reason")?,
                    dead_at: row.try_get("dead_at")?,
                })
            })
            .collect()
    }

    /// Queues the dead letters (of `realm_id`, or all) again; answers how many.
    pub(crate) async fn revive(&self, realm_id: Option<&str>) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let filter = "(? IS NULL OR realm_id = ?)";
        // A CloudEvent that was queued again since keeps its newer place.
        sqlx::query(&format!(
            "INSERT INTO worker_events ({EVENT_COLUMNS}) SELECT {EVENT_COLUMNS} FROM worker_dead \
             WHERE {filter} ORDER BY seq ON CONFLICT DO NOTHING"
        ))
        .bind(realm_id)
        .bind(realm_id)
        .execute(&mut *tx)
        .await?;
        let revived = sqlx::query(&format!("DELETE FROM worker_dead WHERE {filter}"))
            .bind(realm_id)
            .bind(realm_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(&format!(
            "UPDATE worker_realms SET failures = 0, retry_at = 0 WHERE {filter}"
        ))
        .bind(realm_id)
        .bind(realm_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(revived)
    }

    /// Every realm known to the queues, with its state.
    pub(crate) async fn realms(&self) -> Result<Vec<RealmRow>, sqlx::Error> {
        let rows = sqlx::query(
            "WITH names AS (SELECT realm_id FROM worker_realms UNION SELECT realm_id FROM worker_events \
             UNION SELECT realm_id FROM worker_dead) \
             SELECT n.realm_id, r.heard_at, COALESCE(r.failures, 0) AS failures, COALESCE(r.retry_at, 0) AS retry_at, \
             r.last_error, (SELECT COUNT(*) FROM worker_events e WHERE e.realm_id = n.realm_id) AS depth, \
             (SELECT MIN(received_at) FROM worker_events e WHERE e.realm_id = n.realm_id) AS oldest_received, \
             (SELECT COUNT(*) FROM worker_dead d WHERE d.realm_id = n.realm_id) AS dead \
             FROM names n LEFT JOIN worker_realms r ON r.realm_id = n.realm_id ORDER BY n.realm_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RealmRow {
                    realm_id: row.try_get("realm_id")?,
                    heard_at: row.try_get::<Option<i64>, _>("heard_at")?.filter(|h| *h > 0),
                    failures: row.try_get("failures")?,
                    retry_at: row.try_get("retry_at")?,
                    last_error: row.try_get("last_error")?,
                    depth: row.try_get("depth")?,
                    dead: row.try_get("dead")?,
                    oldest_received: row.try_get("oldest_received")?,
                })
            })
            .collect()
    }
}
