//! History written straight into the server's database, as retention would keep it:
//! `count` change events and as many delivered notifications (one event each, as at
//! window 0) with one successful attempt each, copied in SQL from the first real
//! notification, attempt and change event, spread over the app's realms round-robin,
//! one every `spacing_ms` milliseconds ending at `newest_ms`. Ingesting that history
//! would take hours; copying it takes minutes.

use ledgerhook_testkit::Kind;
use sqlx::Connection;

/// Where and when the copies go.
pub struct History {
    /// Rows of each table.
    pub count: u64,
    /// `created_at` / `accepted_at` of the newest copy, in milliseconds.
    pub newest_ms: i64,
    /// Milliseconds between two copies.
    pub spacing_ms: i64,
    /// The copies' ids start with this (unique per seeding).
    pub tag: String,
}

/// The statements that copy `history` (numbers 1..=count in `n`).
fn statements(kind: Kind, history: &History) -> [String; 3] {
    let History {
        count,
        newest_ms,
        spacing_ms,
        tag,
    } = history;
    let numbers = match kind {
        Kind::Sqlite => {
            format!("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})")
        }
        Kind::Postgres => format!("WITH n(i) AS (SELECT generate_series(1, {count})::BIGINT)"),
    };
    // The realms numbered 0…R-1, and how many there are.
    let realms = "(SELECT id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS k FROM realms) r, \
                  (SELECT COUNT(*) AS total FROM realms) rc";
    let at = format!("{newest_ms} - ({count} - i) * {spacing_ms}");
    let notifications = format!(
        "{numbers} INSERT INTO notifications (id, config_id, app_id, environment, realm_id, format, status, test, \
           payload, event_count, created_at, next_attempt_at, attempt_count, first_attempt_at) \
         SELECT 'ntf_{tag}_' || i, t.config_id, t.app_id, t.environment, r.id, t.format, 'delivered', 0, \
           t.payload, t.event_count, {at}, NULL, 1, {at} \
         FROM n, {realms}, (SELECT * FROM notifications ORDER BY seq LIMIT 1) t \
         WHERE r.k = i % rc.total"
    );
    let attempts = format!(
        "INSERT INTO attempts (notification_seq, number, started_at, duration_ms, outcome, status_code, \
           error, response_body, request_headers) \
         SELECT n.seq, 1, n.created_at, 3, 'success', 200, NULL, 'ok', a.request_headers \
         FROM notifications n, (SELECT * FROM attempts ORDER BY notification_seq LIMIT 1) a \
         WHERE n.id LIKE 'ntf\\_{tag}\\_%' ESCAPE '\\'"
    );
    let events = format!(
        "{numbers} INSERT INTO change_events (realm_id, entity, entity_id, operation, last_updated, deleted_id, accepted_at) \
         SELECT r.id, e.entity, '{tag}-' || i, e.operation, {at}, NULL, {at} \
         FROM n, {realms}, (SELECT * FROM change_events ORDER BY seq LIMIT 1) e \
         WHERE r.k = i % rc.total"
    );
    [notifications, attempts, events]
}

/// Copies `history` into the database at `url`; afterwards, on PostgreSQL, the tables are
/// vacuumed and analysed (`VACUUM ANALYZE`: what autovacuum would otherwise start on its
/// own after such an insert, in the middle of the measurements; on SQLite the server's
/// statements name their indexes).
pub async fn copy(kind: Kind, url: &str, history: &History) -> anyhow::Result<()> {
    let mut statements = statements(kind, history).to_vec();
    if kind == Kind::Postgres {
        statements
            .extend(["notifications", "attempts", "change_events"].map(|t| format!("VACUUM ANALYZE {t}")));
    }
    execute(kind, url, &statements).await
}

/// Runs `statements` in order on a connection of their own to the database at `url`
/// (beside the server's; SQLite waits up to 60 s for its writer).
pub async fn execute(kind: Kind, url: &str, statements: &[String]) -> anyhow::Result<()> {
    match kind {
        Kind::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&sqlite_url(url, "")).await?;
            sqlx::query("PRAGMA busy_timeout = 60000")
                .execute(&mut conn)
                .await?;
            for sql in statements {
                sqlx::query(sql).execute(&mut conn).await?;
            }
        }
        Kind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            for sql in statements {
                sqlx::query(sql).execute(&mut conn).await?;
            }
        }
    }
    Ok(())
}

/// sqlx's URL of the SQLite file behind the server's `url`, with `query` (`?mode=ro`).
fn sqlite_url(url: &str, query: &str) -> String {
    let path = url.trim_start_matches("sqlite://");
    let path = path.split('?').next().unwrap_or(path);
    format!("sqlite://{path}{query}")
}

/// Notifications in the database created before `bound` (milliseconds): an index range
/// (`notifications_by_age`), cheap enough to poll while the server works.
pub async fn older_than(kind: Kind, url: &str, bound: i64) -> anyhow::Result<i64> {
    let sql = "SELECT COUNT(*) FROM notifications WHERE created_at < $1";
    let count: i64 = match kind {
        Kind::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&sqlite_url(url, "?mode=ro")).await?;
            sqlx::query_scalar(sql).bind(bound).fetch_one(&mut conn).await?
        }
        Kind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::query_scalar(sql).bind(bound).fetch_one(&mut conn).await?
        }
    };
    Ok(count)
}
