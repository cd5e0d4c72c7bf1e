//! The event-type catalogue: a name, a description, examples, and optionally a JSON Schema
//! (2020-12) that published events' `data` must satisfy.
//!
//! [`EventTypeCache`] holds a validator per schema, compiled once when the catalogue is loaded,
//! and is refreshed like the subscription index (after a local write, and when the
//! `event_types` revision moves).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use posthorn_core::time::{now_ms, Millis};
use serde_json::Value;
use sqlx::any::AnyRow;

use crate::{get, Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct EventType {
    pub name: String,
    pub description: Option<String>,
    pub schema: Option<Value>,
    pub examples: Vec<Value>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

fn from_row(row: &AnyRow) -> Result<EventType> {
    let parse = |s: &str| {
        serde_json::from_str::<Value>(s)
            .map_err(|e| StoreError::Corrupt(format!("event type: {e}")))
    };
    let schema = match get::<Option<String>>(row, "schema")? {
        Some(s) => Some(parse(&s)?),
        None => None,
    };
    let examples = match parse(&get::<String>(row, "examples")?)? {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    Ok(EventType {
        name: get(row, "name")?,
        description: get(row, "description")?,
        schema,
        examples,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

const COLUMNS: &str = "name, description, schema, examples, created_at, updated_at";

impl Store {
    /// Creates or replaces an event type; returns it as stored.
    pub async fn put_event_type(
        &self,
        name: &str,
        description: Option<&str>,
        schema: Option<&Value>,
        examples: &[Value],
    ) -> Result<EventType> {
        let now = now_ms();
        write_tx!(self, |tx| {
            let row = sqlx::query(&format!(
                "INSERT INTO event_types ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (name) DO UPDATE SET description = $2, schema = $3, examples = $4, \
             updated_at = $5 RETURNING {COLUMNS}"
            ))
            .bind(name)
            .bind(description)
            .bind(schema.map(Value::to_string))
            .bind(Value::Array(examples.to_vec()).to_string())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("UPDATE revisions SET value = value + 1 WHERE name = 'event_types'")
                .execute(&mut *tx)
                .await?;
            Store::notify_changed(self.0.backend, &mut *tx).await?;
            tx.commit().await?;
            from_row(&row)
        })
    }

    pub async fn event_type(&self, name: &str) -> Result<Option<EventType>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM event_types WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.0.read)
        .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// Every event type, newest first.
    pub async fn event_types(&self) -> Result<Vec<EventType>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM event_types ORDER BY created_at DESC, name DESC"
        ))
        .fetch_all(&self.0.read)
        .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn delete_event_type(&self, name: &str) -> Result<bool> {
        write_tx!(self, |tx| {
            let n = sqlx::query("DELETE FROM event_types WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("UPDATE revisions SET value = value + 1 WHERE name = 'event_types'")
                .execute(&mut *tx)
                .await?;
            Store::notify_changed(self.0.backend, &mut *tx).await?;
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    /// The value of a revision counter.
    pub async fn revision(&self, name: &str) -> Result<i64> {
        let row = sqlx::query("SELECT value FROM revisions WHERE name = $1")
            .bind(name)
            .fetch_one(&self.0.read)
            .await?;
        get(&row, "value")
    }
}

/// Why a value is not a JSON Schema (2020-12).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSchema(String);

/// Compiles a schema as JSON Schema 2020-12; `Err` says why it is not one.
pub fn compile_schema(schema: &Value) -> std::result::Result<jsonschema::Validator, InvalidSchema> {
    jsonschema::draft202012::new(schema).map_err(|e| InvalidSchema(e.to_string()))
}

/// Every failure of `data` against `validator`, each with its field path below `prefix`
/// (`data.feed.title`, `data.users[0].mail`).
pub fn schema_errors(
    validator: &jsonschema::Validator,
    data: &Value,
    prefix: &str,
) -> Vec<(String, String)> {
    validator
        .iter_errors(data)
        .map(|e| {
            (
                field_path(prefix, e.instance_path().as_str(), data),
                e.to_string(),
            )
        })
        .collect()
}

/// A JSON pointer as a dotted path, with `[i]` where the value at that point is an array.
fn field_path(prefix: &str, pointer: &str, data: &Value) -> String {
    let mut out = prefix.to_owned();
    let mut at = Some(data);
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        match at {
            Some(Value::Array(a)) => {
                out.push_str(&format!("[{seg}]"));
                at = seg.parse::<usize>().ok().and_then(|i| a.get(i));
            }
            other => {
                out.push('.');
                out.push_str(&seg);
                at = other.and_then(|v| v.get(&seg));
            }
        }
    }
    out
}

struct Catalogue {
    revision: i64,
    validators: HashMap<String, Arc<jsonschema::Validator>>,
}

/// The compiled schemas of every event type that has one.
#[derive(Clone)]
pub struct EventTypeCache {
    current: Arc<RwLock<Arc<Catalogue>>>,
    store: Store,
}

impl EventTypeCache {
    pub async fn load(store: Store) -> Result<Self> {
        let cache = Self {
            current: Arc::new(RwLock::new(Arc::new(Catalogue {
                revision: i64::MIN,
                validators: HashMap::new(),
            }))),
            store,
        };
        cache.refresh().await?;
        Ok(cache)
    }

    pub async fn refresh(&self) -> Result<()> {
        let revision = self.store.revision("event_types").await?;
        let mut validators = HashMap::new();
        for t in self.store.event_types().await? {
            let Some(schema) = &t.schema else { continue };
            match compile_schema(schema) {
                Ok(v) => {
                    validators.insert(t.name, Arc::new(v));
                }
                Err(e) => {
                    tracing::error!(event_type = %t.name, error = %e, "stored schema does not compile")
                }
            }
        }
        let next = Arc::new(Catalogue {
            revision,
            validators,
        });
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if next.revision >= current.revision {
            *current = next;
        }
        Ok(())
    }

    /// The revision this cache reflects.
    pub fn revision(&self) -> i64 {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .revision
    }

    /// Reloads whenever another process changes the catalogue (polled every `every`).
    pub fn watch(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let (known, reload) = (self.clone(), self.clone());
        crate::watch_revision(
            self.store.clone(),
            "event_types",
            every,
            move || known.revision(),
            move || {
                let cache = reload.clone();
                async move { cache.refresh().await }
            },
        )
    }

    /// The validator of `name`'s schema, if it has one.
    pub fn validator(&self, name: &str) -> Option<Arc<jsonschema::Validator>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .validators
            .get(name)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn failures_name_the_field() {
        let schema = json!({"type": "object", "required": ["feed"], "properties": {
            "feed": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
            "users": {"type": "array", "items": {"type": "object", "properties": {"mail": {"type": "string"}}}}}});
        let v = compile_schema(&schema).unwrap();
        let errors = schema_errors(
            &v,
            &json!({"feed": {"title": 3}, "users": [{"mail": "a"}, {"mail": 1}]}),
            "data",
        );
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["data.feed.title", "data.users[1].mail"]);
        let errors = schema_errors(&v, &json!({}), "data");
        assert_eq!(errors[0].0, "data");
        assert!(errors[0].1.contains("feed"));
        assert!(compile_schema(&json!({"type": "nonsense"})).is_err());
    }
}
