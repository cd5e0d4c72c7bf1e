//! The SQL both backends run, and where they differ: [`Backend`], multi-row statements (their
//! placeholders, their chunks and their cached texts), and reading a column.

use std::sync::Arc;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Rows per multi-row statement with `params` parameters a row: about 2,000 parameters on
    /// SQLite, 4,000 on PostgreSQL (which pays a round trip per statement). The SQL of such a
    /// statement goes through [`Backend::sql`].
    pub(crate) fn rows_per_statement(self, params: usize) -> usize {
        let budget = match self {
            Backend::Sqlite => 2000,
            Backend::Postgres => 4000,
        };
        (budget / params.max(1)).max(1)
    }

    /// The chunks in which multi-row statements of `params` parameters a row take `items`, in
    /// order: as many full statements ([`Backend::rows_per_statement`]) as fit, then the rest.
    ///
    /// On SQLite the rest goes by its binary digits, largest first (37 rows: 32, 4, 1). A
    /// statement's text then depends only on its row count, so every chunk runs one of a few
    /// statements, each prepared once and kept in the connection's statement cache (sqlx keeps
    /// 100 a connection); chunks as long as what came made a new statement of nearly every group
    /// commit, parsed and planned every time. A statement there is a call on the writer's thread.
    ///
    /// On PostgreSQL the rest is one statement: each is a round trip, which costs more than the
    /// preparing it saves, and a group that is one statement needs no transaction (see `events`).
    pub(crate) fn statement_chunks<T>(self, items: &[T], params: usize) -> StatementChunks<'_, T> {
        StatementChunks {
            rest: items,
            full: self.rows_per_statement(params),
            binary: self == Backend::Sqlite,
        }
    }

    /// The text of a multi-row statement as this backend runs it ([`Backend::sql`]), built by
    /// `build`. On SQLite it is kept, once per `name` and row count: with
    /// [`Backend::statement_chunks`] there are a few of each. (On PostgreSQL, with a statement of
    /// every row count, keeping them all could hold megabytes.)
    pub(crate) fn statement(
        self,
        name: &'static str,
        rows: usize,
        build: impl FnOnce() -> String,
    ) -> Arc<str> {
        if self == Backend::Postgres {
            return build().into();
        }
        type Texts = std::sync::Mutex<std::collections::HashMap<(&'static str, usize), Arc<str>>>;
        static TEXTS: std::sync::OnceLock<Texts> = std::sync::OnceLock::new();
        let texts = TEXTS.get_or_init(Texts::default);
        let key = (name, rows);
        if let Some(text) = texts.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return text.clone();
        }
        let text: Arc<str> = self.sql(build()).into();
        texts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert(text)
            .clone()
    }

    /// The conflict clause of a multi-row `INSERT` or `UPDATE` inside a group's transaction: `OR
    /// FAIL` on SQLite, nothing on PostgreSQL (which has no such clause).
    ///
    /// A multi-row write that may abort on a constraint (`NOT NULL`, a key) makes SQLite open a
    /// statement journal inside a transaction: before the statement first changes a page, it
    /// copies the whole page aside, so that an abort can undo that statement alone. That copying
    /// was about 9,000 instructions a delivery end to end (docs/benchmarks.md). `FAIL` stops at the
    /// failing row and keeps the rows before it instead, so no journal is kept, and the group
    /// never goes on after an error: its transaction is rolled back whole (`commit::write_group`).
    pub(crate) fn or_fail(self) -> &'static str {
        match self {
            Backend::Sqlite => " OR FAIL",
            Backend::Postgres => "",
        }
    }

    /// The statement as this backend should run it. On SQLite, `$1, $2, …` written once each in
    /// order become anonymous `?`: sqlx asks SQLite the name of every parameter it binds, and
    /// SQLite finds a named parameter's name by walking the list of all of them, so binding a
    /// statement of n named parameters costs n² — at 3,500 parameters, 40 % of the CPU of a batch
    /// publish (`sqlite3_bind_parameter_name`); anonymous ones have no list. Statements that
    /// number their parameters otherwise are left as they are (and must stay small).
    pub(crate) fn sql(self, sql: String) -> String {
        if self == Backend::Postgres {
            return sql;
        }
        let mut out = String::with_capacity(sql.len());
        let mut expected = 1usize;
        let mut rest = sql.as_str();
        while let Some(at) = rest.find('$') {
            let digits = rest[at + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if digits == 0 {
                out.push_str(&rest[..=at]);
                rest = &rest[at + 1..];
                continue;
            }
            if rest[at + 1..at + 1 + digits].parse::<usize>().ok() != Some(expected) {
                debug_assert!(false, "parameters out of order, left named: {sql}");
                return sql;
            }
            expected += 1;
            out.push_str(&rest[..at]);
            out.push('?');
            rest = &rest[at + 1 + digits..];
        }
        out.push_str(rest);
        out
    }
}

/// See [`Backend::statement_chunks`].
pub(crate) struct StatementChunks<'a, T> {
    rest: &'a [T],
    full: usize,
    binary: bool,
}

impl<'a, T> Iterator for StatementChunks<'a, T> {
    type Item = &'a [T];

    fn next(&mut self) -> Option<&'a [T]> {
        let len = self.rest.len();
        if len == 0 {
            return None;
        }
        // A full statement, else (binary) the largest power of two in what is left.
        let n = if len >= self.full {
            self.full
        } else if self.binary {
            1 << len.ilog2()
        } else {
            len
        };
        let (chunk, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(chunk)
    }
}

/// `($first, …), (…), …` — `rows` tuples of `per_row` consecutive placeholders each, every tuple
/// ending with `tail` (constants or shared placeholders, e.g. `, $1`), for multi-row statements.
pub(crate) fn value_rows(rows: usize, per_row: usize, first: usize, tail: &str) -> String {
    (0..rows)
        .map(|r| {
            let start = first + r * per_row;
            format!("({}{tail})", placeholders(start, per_row))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$start, $start+1, …` — `n` placeholders.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn get<'r, T>(row: &'r AnyRow, col: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(StoreError::from)
}

/// An id column: the database holds only ids Posthorn made.
pub(crate) fn get_id<K: posthorn_core::id::Kind>(
    row: &AnyRow,
    col: &str,
) -> Result<posthorn_core::id::Id<K>> {
    get::<String>(row, col).map(posthorn_core::id::Id::stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_from_the_start() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
    }

    #[test]
    fn statements_come_in_a_few_sizes() {
        let sizes = |n: usize, params| {
            let items = vec![0u8; n];
            Backend::Sqlite
                .statement_chunks(&items, params)
                .map(<[u8]>::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(0, 8), Vec::<usize>::new());
        assert_eq!(sizes(37, 8), [32, 4, 1]);
        assert_eq!(sizes(64, 8), [64]);
        // 250 rows of 8 parameters make a full statement on SQLite.
        assert_eq!(sizes(1000, 8), [250, 250, 250, 250]);
        assert_eq!(sizes(600, 8), [250, 250, 64, 32, 4]);
        // PostgreSQL: full statements of 500 rows, then the rest in one.
        let items = vec![0u8; 1037];
        let pg: Vec<usize> = Backend::Postgres
            .statement_chunks(&items, 8)
            .map(<[u8]>::len)
            .collect();
        assert_eq!(pg, [500, 500, 37]);
        let text = Backend::Sqlite.statement("test", 2, || "SELECT $1, $2".into());
        assert_eq!(&*text, "SELECT ?, ?");
        // Kept: the second build is not called.
        let again = Backend::Sqlite.statement("test", 2, || unreachable!());
        assert!(Arc::ptr_eq(&text, &again));
    }

    #[test]
    fn sqlite_gets_anonymous_parameters_in_order() {
        let sql = format!(
            "UPDATE t SET a = $1 WHERE b IN ({}) AND c = '$'",
            placeholders(2, 10)
        );
        assert_eq!(
            Backend::Sqlite.sql(sql.clone()),
            "UPDATE t SET a = ? WHERE b IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) AND c = '$'"
        );
        assert_eq!(Backend::Postgres.sql(sql.clone()), sql);
    }
}
