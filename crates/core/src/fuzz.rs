//! What the fuzz targets (`fuzz/`, run by `cargo fuzz`) check: one function per target, taking the
//! fuzzer's raw bytes and panicking when a property does not hold.
//!
//! They live here rather than in `fuzz/` so that `cargo test`, on the stable toolchain, replays every
//! input of the seed corpus and every crash ever found (`fuzz/corpus/`, `fuzz/regressions/`,
//! `tests/fuzz_corpus.rs`): a crash found is a test from then on.
//!
//! Each function is the same code production runs, under the same limits: filters through
//! [`Filter::parse`] (bounded length and nesting) and [`Filter::matches`]; templates through
//! [`Templates`] (fuel, output bound) — production adds, around this, a worker process with a memory
//! cap and a deadline (`posthorn_dispatch::sandbox`), which the fuzz runs mirror with libFuzzer's
//! own (`-malloc_limit_mb`, `-timeout`, see `fuzz/README.md`); form bodies through [`form_encode`];
//! intake through [`json::check`], the typed [`PublishRequest`], [`compact_json`] and the stored
//! event's envelope.

use serde_json::value::RawValue;
use serde_json::Value;

use crate::event::{compact_json, PublishRequest, StoredEvent};
use crate::filter::{EventView, Filter};
use crate::json;
use crate::shape::{form_encode, Templates, MAX_OUTPUT};
use crate::time::{parse_rfc3339, to_rfc3339};

/// The first part of `input` up to a NUL byte, and the rest (empty when there is none).
fn split(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == 0) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[]),
    }
}

/// JSON that passed the intake check, as a tree; `None` for what intake refuses.
fn checked(bytes: &[u8]) -> Option<Value> {
    json::check(bytes).ok()?;
    Some(
        serde_json::from_slice(bytes)
            .expect("what json::check accepts parses (else it would be read as null later)"),
    )
}

/// `filter NUL data`: a filter either parses or says where it stops (a column within the text);
/// one that parses evaluates over any data, the same way twice, without panicking.
pub fn filter(input: &[u8]) {
    let (src, data) = split(input);
    let Ok(src) = std::str::from_utf8(src) else {
        return;
    };
    let filter = match Filter::parse(src) {
        Ok(f) => f,
        Err(e) => {
            let len = src.chars().count();
            assert!(
                e.column >= 1 && e.column <= len.max(crate::filter::MAX_LEN) + 1,
                "column {} outside a filter of {len} characters: {e}",
                e.column
            );
            assert!(!e.message.is_empty());
            return;
        }
    };
    assert!(src.chars().count() <= crate::filter::MAX_LEN);
    let data = checked(data).unwrap_or_else(|| serde_json::json!({"n": 1, "s": "x"}));
    let view = EventView {
        name: "user_created",
        id: "evt_1",
        origin: Some("a1b2c3d4"),
        attributes: &crate::event::Attributes::from([("user_uuid:u1".into(), "true".into())]),
        data: &data,
    };
    let first = filter.matches(&view);
    assert_eq!(first, filter.matches(&view), "evaluation is deterministic");
}

/// `template NUL data`: a template either compiles or is refused with a reason; one that compiles
/// renders over an event carrying `data` (as the envelope and as wazo's data-only view), as a body
/// and as a URL, to an answer or an error — never a panic, never more than [`MAX_OUTPUT`] bytes.
pub fn template(input: &[u8]) {
    let (src, data) = split(input);
    let Ok(src) = std::str::from_utf8(src) else {
        return;
    };
    let data = checked(data).unwrap_or_else(|| serde_json::json!({"id": 12, "tags": ["a", "b"]}));
    let envelope = serde_json::json!({
        "id": "evt_1", "name": "user_created", "occurred_at": "2026-11-30T12:00:00.000Z",
        "origin": "a1b2c3d4", "data": data,
    });
    match Templates::parse(None, Some(src)) {
        Err((field, reason)) => {
            assert_eq!(field, "body");
            assert!(!reason.is_empty());
        }
        Ok(t) => {
            for event_is_data in [false, true] {
                if let Ok(body) = t.render_body(&envelope, event_is_data) {
                    assert!(body.len() <= MAX_OUTPUT, "a body of {} bytes", body.len());
                }
            }
        }
    }
    if let Ok(t) = Templates::parse(Some(src), None) {
        if let Ok(url) = t.render_url(&envelope, false) {
            assert!(url.len() <= MAX_OUTPUT);
        }
    }
}

/// JSON data: its form encoding decodes back to exactly one pair per scalar, in order, keyed by
/// its path (`a[b][0]`), valued by the scalar (strings as they are, `null` empty).
pub fn form(input: &[u8]) {
    let Some(data) = checked(input) else {
        return;
    };
    fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}[{k}]")
                    };
                    leaves(&key, v, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    leaves(&format!("{prefix}[{i}]"), v, out);
                }
            }
            Value::String(s) => out.push((prefix.to_owned(), s.clone())),
            Value::Null => out.push((prefix.to_owned(), String::new())),
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut expected = Vec::new();
    leaves("", &data, &mut expected);
    let encoded = form_encode(&data);
    assert!(encoded.is_ascii(), "a form body is ASCII");
    let decoded: Vec<(String, String)> = url::form_urlencoded::parse(encoded.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(decoded, expected);
}

/// A `POST /v1/events` body: what the intake check accepts is read the same by everything after it
/// — the typed request, each item of a batch, the compacted `data`, and the stored event's envelope
/// that templates, plugins and the API read back (never an error read as `null`).
pub fn intake(input: &[u8]) {
    let Some(body) = checked(input) else {
        return;
    };
    let items: Vec<&str> = match body {
        Value::Array(_) => serde_json::from_slice::<Vec<&RawValue>>(input)
            .expect("a checked array splits into its items")
            .into_iter()
            .map(RawValue::get)
            .collect(),
        Value::Object(_) => {
            vec![std::str::from_utf8(input).expect("checked JSON is UTF-8")]
        }
        _ => return,
    };
    for item in items {
        let Ok(req) = serde_json::from_str::<PublishRequest>(item) else {
            continue;
        };
        let data: Value =
            serde_json::from_str(req.data.get()).expect("checked data parses on its own");
        let compact = compact_json(req.data.get());
        let reread: Value = serde_json::from_str(&compact).expect("compacted data parses");
        assert_eq!(reread, data, "compacting changed the data");
        let occurred_at = req.occurred_at.as_deref().and_then(parse_rfc3339);
        if let Some(t) = occurred_at {
            let again = parse_rfc3339(&to_rfc3339(t));
            assert_eq!(again, Some(t), "a stored time reads back the same");
        }
        let event = StoredEvent {
            seq: 1,
            id: req.id.clone().unwrap_or_else(|| "evt_1".into()),
            publisher: crate::Principal::Admin,
            name: req.name.clone(),
            origin: req.origin.clone(),
            tenant: req.tenant.clone(),
            attributes: req.attributes.clone(),
            data: compact.into_owned(),
            occurred_at: occurred_at.unwrap_or(0),
            received_at: 0,
        };
        let envelope = event
            .envelope_value()
            .expect("the envelope of a stored event parses");
        assert_eq!(envelope["data"], data);
        assert_eq!(envelope["name"], Value::String(req.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_takes_nothing_and_anything() {
        for input in [&b""[..], b"\0", b"{", b"\xff\xfe", b"[1,2]\0{}"] {
            filter(input);
            template(input);
            form(input);
            intake(input);
        }
    }

    #[test]
    fn the_properties_hold_for_plain_inputs() {
        filter(b"data.n > 0 and name == \"user_created\"\0{\"n\": 2}");
        template(b"{{ event.data.id }}-{{ event_name }}\0{\"id\": 12}");
        form(br#"{"a": {"b": [1, null, "x y"]}, "c": true}"#);
        intake(br#"{"name": "user_created", "data": {"id": 12, "s": "a b"}, "occurred_at": "2026-11-30T12:00:00Z"}"#);
        intake(br#"[{"name": "a", "data": {}}, {"name": "b", "data": {"x": [1, {"y": 2}]}}]"#);
    }
}
