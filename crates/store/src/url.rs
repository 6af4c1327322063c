//! The `database-url` setting, parsed once into what it names: a SQLite file or a
//! PostgreSQL server. Everything after start works with [`DatabaseUrl`], never the text.

use crate::Backend;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A validated `database-url`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH` (a query string after `?` is allowed and ignored).
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The URL as given.
        url: String,
    },
    /// `postgres://…` or `postgresql://…`, handed to the driver as given.
    Postgres(String),
}

/// Why a `database-url` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDatabaseUrl {
    /// `sqlite://` without a path.
    #[error("sqlite:// needs a file path, e.g. sqlite://ledgerhook.db")]
    NoSqlitePath,
    /// Neither SQLite nor PostgreSQL.
    #[error("unsupported database URL \"{0}\": use sqlite://PATH or postgres://…")]
    Unsupported(String),
}

impl FromStr for DatabaseUrl {
    type Err = BadDatabaseUrl;

    fn from_str(text: &str) -> Result<DatabaseUrl, BadDatabaseUrl> {
        if let Some(rest) = text.strip_prefix("sqlite://") {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(BadDatabaseUrl::NoSqlitePath);
            }
            return Ok(DatabaseUrl::Sqlite {
                path: PathBuf::from(path),
                url: text.to_owned(),
            });
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(text.to_owned()));
        }
        // Never echo what might be a URL with a password in it: only its scheme.
        let scheme = text.split_once("://").map_or(text, |(scheme, _)| scheme);
        Err(BadDatabaseUrl::Unsupported(format!("{scheme}://…")))
    }
}

impl DatabaseUrl {
    /// The URL as given.
    pub fn as_str(&self) -> &str {
        match self {
            DatabaseUrl::Sqlite { url, .. } => url,
            DatabaseUrl::Postgres(url) => url,
        }
    }

    /// The backend it names.
    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Sqlite { .. } => Backend::Sqlite,
            DatabaseUrl::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite file, if it is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            DatabaseUrl::Sqlite { path, .. } => Some(path),
            DatabaseUrl::Postgres(_) => None,
        }
    }
}

/// Shows the URL without a password (`postgres://user:***@host/db`).
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.as_str();
        let redacted = match (text.find("://"), text.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let credentials = &text[scheme_end + 3..at];
                match credentials.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &text[..scheme_end + 3], &text[at..]),
                    None => text.to_owned(),
                }
            }
            _ => text.to_owned(),
        };
        write!(f, "DatabaseUrl({redacted:?})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_backend_once() {
        let sqlite: DatabaseUrl = "sqlite:///tmp/x.db?mode=rwc".parse().unwrap();
        assert_eq!(sqlite.sqlite_path(), Some(Path::new("/tmp/x.db")));
        assert_eq!(sqlite.backend(), Backend::Sqlite);
        assert_eq!(sqlite.as_str(), "sqlite:///tmp/x.db?mode=rwc");
        let relative: DatabaseUrl = "sqlite://ledgerhook.db".parse().unwrap();
        assert_eq!(relative.sqlite_path(), Some(Path::new("ledgerhook.db")));
        for pg in ["postgres://h/db", "postgresql://u@h:5432/db?sslmode=disable"] {
            let url: DatabaseUrl = pg.parse().unwrap();
            assert_eq!(
                (url.backend(), url.as_str(), url.sqlite_path()),
                (Backend::Postgres, pg, None)
            );
        }
    }

    #[test]
    fn refusals_say_what_to_write_and_hide_the_rest() {
        assert_eq!(
            "sqlite://".parse::<DatabaseUrl>(),
            Err(BadDatabaseUrl::NoSqlitePath)
        );
        assert_eq!(
            "sqlite://?mode=rwc".parse::<DatabaseUrl>(),
            Err(BadDatabaseUrl::NoSqlitePath)
        );
        let err = "mysql://root:hunter2@h/db".parse::<DatabaseUrl>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported database URL \"mysql://…\": use sqlite://PATH or postgres://…"
        );
        assert!("ledgerhook.db".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let url: DatabaseUrl = "postgres://app:hunter2@db:5432/lh".parse().unwrap();
        assert_eq!(
            format!("{url:?}"),
            "DatabaseUrl(\"postgres://app:***@db:5432/lh\")"
        );
    }
}
