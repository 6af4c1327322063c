//! Test support: every test gets a database of its own.
//!
//! - [`TestDatabase::sqlite`]: a fresh file in a temporary directory.
//! - [`TestDatabase::postgres`]: a fresh database on the server named by
//!   `LEDGERHOOK_TEST_DATABASE_URL`, dropped afterwards. Without that variable the test
//!   is skipped with a message, unless `LEDGERHOOK_TEST_REQUIRE_POSTGRES=1`, under which
//!   a skip is a failure (CI sets both).
//! - [`receiver`]: a recording webhook receiver over HTTP or HTTPS, with certificates.

pub mod receiver;

use rand::Rng;
use std::path::PathBuf;

/// The variable naming the PostgreSQL server for tests.
pub const DATABASE_URL_VAR: &str = "LEDGERHOOK_TEST_DATABASE_URL";
/// The variable that turns a PostgreSQL skip into a failure.
pub const REQUIRE_POSTGRES_VAR: &str = "LEDGERHOOK_TEST_REQUIRE_POSTGRES";

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// A database that exists for one test.
pub struct TestDatabase {
    /// The `database-url` to give Ledgerhook.
    pub url: String,
    /// Which backend.
    pub kind: Kind,
    /// The SQLite file, for tests that look at it.
    pub sqlite_path: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    drop_pg: Option<(String, String)>,
}

impl TestDatabase {
    /// A fresh SQLite database file.
    pub fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("create temp dir");
        let path = dir.path().join("ledgerhook.db");
        TestDatabase {
            url: format!("sqlite://{}", path.display()),
            kind: Kind::Sqlite,
            sqlite_path: Some(path),
            _dir: Some(dir),
            drop_pg: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a message) when no server is
    /// configured. Panics when PostgreSQL is required but not configured.
    pub async fn postgres() -> Option<TestDatabase> {
        let admin_url = postgres_admin_url()?;
        let name = format!("lh_test_{:016x}", rand::thread_rng().gen::<u64>());
        let mut conn = connect_admin(&admin_url).await;
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("CREATE DATABASE for the test");
        let url = replace_database(&admin_url, &name);
        Some(TestDatabase {
            url,
            kind: Kind::Postgres,
            sqlite_path: None,
            _dir: None,
            drop_pg: Some((admin_url, name)),
        })
    }

    /// A fresh database of the given kind (`None`: PostgreSQL skipped, see
    /// [`TestDatabase::postgres`]).
    pub async fn new(kind: Kind) -> Option<TestDatabase> {
        match kind {
            Kind::Sqlite => Some(TestDatabase::sqlite()),
            Kind::Postgres => TestDatabase::postgres().await,
        }
    }
}

/// The PostgreSQL URL for tests, or `None` after printing why the test is skipped.
/// Panics when `LEDGERHOOK_TEST_REQUIRE_POSTGRES=1` and the URL is unset.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var(REQUIRE_POSTGRES_VAR).as_deref() == Ok("1") {
                panic!(
                    "{REQUIRE_POSTGRES_VAR}=1 but {DATABASE_URL_VAR} is not set: PostgreSQL tests must run"
                );
            }
            eprintln!("skipping PostgreSQL test: {DATABASE_URL_VAR} is not set");
            None
        }
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {DATABASE_URL_VAR} ({url}): {e}"))
}

/// `postgres://h:5432/test?x` with the database name replaced.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{name}{query}")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.drop_pg.take() else {
            return;
        };
        // Drop runs outside async; use a runtime of its own on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    let mut conn = connect_admin(&admin_url).await;
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::Executor::execute(&mut conn, sql.as_str()).await;
                });
            }
        })
        .join();
    }
}

/// Declares `mod NAME { sqlite, postgres }` running `NAME(kind)` on each backend, each a
/// Tokio test on two worker threads (the server's background tasks run beside the test).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Kind::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::Kind::Postgres).await;
            }
        }
    )*};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database("postgres://h/test?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://h", "x"), "postgres://h/x");
    }
}
