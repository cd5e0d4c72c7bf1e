//! Lists: `?limit=N` (default 50, at most 1000) and `?cursor=C`, answered as
//! `{"items":[…],"next_cursor":C|null}`, newest first.

use posthorn_core::Invalid;
pub use posthorn_wire::api::Page;
use serde::Serialize;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

/// The query string as ordered pairs: lists take repeated keys (`metadata=a:1&metadata=b:2`).
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn limit(&self) -> Result<usize, Invalid> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(Invalid::one(
                    "limit",
                    "must be a whole number from 1 to 1000",
                )),
            },
        }
    }

    pub fn cursor(&self) -> Option<&str> {
        self.get("cursor").filter(|c| !c.is_empty())
    }
}

/// Cuts a list fetched with `limit + 1` rows to `limit` and names the cursor of the next page.
pub fn paginate<T, R: Serialize>(
    mut rows: Vec<T>,
    limit: usize,
    cursor_of: impl Fn(&T) -> String,
    show: impl Fn(T) -> R,
) -> Page<R> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(&cursor_of)
    } else {
        None
    };
    Page {
        items: rows.into_iter().map(show).collect(),
        next_cursor,
    }
}
