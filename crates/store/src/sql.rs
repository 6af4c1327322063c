//! Statements whose length depends on the data — multi-row `VALUES` lists and `OR`
//! chains of keys — with parameters in each backend's positional form.
//!
//! The pipeline's hot statements work on whole rounds (every window closing, every
//! stream claimed, every attempt recorded together), so that a round costs a fixed
//! number of round trips to the database however many rows it holds.

use crate::Backend;

/// Rows per multi-row statement, well under both backends' parameter limits (SQLite
/// 32,766, PostgreSQL 65,535) for rows of up to a dozen parameters.
pub(crate) const ROWS_PER_STATEMENT: usize = 200;

/// Hands out placeholders in order. SQLite gets anonymous `?`: it resolves a numbered
/// name with a linear search per parameter, which makes binding a statement of a
/// thousand `$N` parameters quadratic. PostgreSQL gets `$1`, `$2`, …
pub(crate) struct Params {
    backend: Backend,
    count: usize,
}

impl Params {
    /// Placeholders for a new statement.
    pub(crate) fn new(backend: Backend) -> Params {
        Params { backend, count: 0 }
    }

    /// The next parameter.
    pub(crate) fn next(&mut self) -> String {
        self.count += 1;
        match self.backend {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${}", self.count),
        }
    }

    /// `(p, p, …)`: one row of `columns` parameters.
    pub(crate) fn row(&mut self, columns: usize) -> String {
        let params: Vec<String> = (0..columns).map(|_| self.next()).collect();
        format!("({})", params.join(", "))
    }

    /// `(p, …), (p, …)`: `rows` rows of `columns` parameters.
    pub(crate) fn rows(&mut self, rows: usize, columns: usize) -> String {
        let rows: Vec<String> = (0..rows).map(|_| self.row(columns)).collect();
        rows.join(", ")
    }

    /// `(a = p AND b = p) OR (…)`: a condition matching any of `rows` keys, where
    /// `condition` writes one key's test from its placeholders. Each term can use an
    /// index on its own, which a row-value `IN` list does not on every backend.
    pub(crate) fn any_of(&mut self, rows: usize, condition: impl Fn(&mut Params) -> String) -> String {
        let terms: Vec<String> = (0..rows).map(|_| format!("({})", condition(self))).collect();
        format!("({})", terms.join(" OR "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_every_parameter_in_order() {
        let mut p = Params::new(Backend::Postgres);
        assert_eq!(p.rows(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(p.next(), "$5");
        let mut p = Params::new(Backend::Sqlite);
        assert_eq!(p.rows(2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn chains_keys_with_or() {
        let mut p = Params::new(Backend::Postgres);
        let sql = p.any_of(2, |p| format!("a = {} AND b = {}", p.next(), p.next()));
        assert_eq!(sql, "((a = $1 AND b = $2) OR (a = $3 AND b = $4))");
    }
}
