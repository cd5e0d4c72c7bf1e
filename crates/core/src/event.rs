//! Events: what a platform tells Posthorn happened. An event has a name (`new_feed_entry`,
//! `ftrack.entity`), a JSON object of data, and the envelope fields around it.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::time::{to_rfc3339, Millis};
use crate::validation::Invalid;

/// Names reserved for the service's own events; clients cannot publish them.
pub const RESERVED_PREFIX: &str = "posthorn.";

/// A validated event name: 1–128 of `A-Za-z0-9_.:-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventName(String);

impl EventName {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if !is_valid_token(s) {
            return Err("must be 1 to 128 characters of A-Z a-z 0-9 _ . : -");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_reserved(&self) -> bool {
        self.0.starts_with(RESERVED_PREFIX)
    }
}

/// True when `s` is 1–128 characters of `A-Za-z0-9_.:-`: the charset of event names and of
/// client-chosen event ids.
pub fn is_valid_token(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// An event as stored and delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub name: String,
    pub data: Map<String, Value>,
    pub origin: Option<String>,
    pub tenant: Option<String>,
    pub occurred_at: Millis,
}

/// The default webhook body: `{"id","name","occurred_at","origin","data"}`.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    name: &'a str,
    occurred_at: String,
    origin: &'a Option<String>,
    data: &'a Map<String, Value>,
}

impl Event {
    /// The JSON envelope every subscriber receives by default, as bytes.
    pub fn envelope_json(&self) -> Vec<u8> {
        // Serializing a map of `Value`s cannot fail.
        serde_json::to_vec(&self.envelope()).unwrap_or_default()
    }

    /// The envelope as a JSON value (for templates and the attempt log).
    pub fn envelope_value(&self) -> Value {
        serde_json::to_value(self.envelope()).unwrap_or(Value::Null)
    }

    fn envelope(&self) -> Envelope<'_> {
        Envelope {
            id: &self.id,
            name: &self.name,
            occurred_at: to_rfc3339(self.occurred_at),
            origin: &self.origin,
            data: &self.data,
        }
    }
}

/// Checks the `data` of an event: it must be a JSON object.
pub fn validate_data(data: &Value) -> Result<(), Invalid> {
    if data.is_object() {
        Ok(())
    } else {
        Err(Invalid::one("data", "must be a JSON object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_charset() {
        for ok in ["new_feed_entry", "ftrack.entity", "a:b-c.d_e", "X"] {
            assert!(EventName::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in ["", "with space", "é", "a/b", long.as_str()] {
            assert!(EventName::parse(bad).is_err(), "{bad}");
        }
        assert!(EventName::parse(&"a".repeat(128)).is_ok());
        assert!(EventName::parse("posthorn.ping").unwrap().is_reserved());
    }

    #[test]
    fn envelope_has_the_contract_fields() {
        let e = Event {
            id: "evt_1".into(),
            name: "x".into(),
            data: serde_json::json!({"a": 1}).as_object().unwrap().clone(),
            origin: None,
            tenant: None,
            occurred_at: 0,
        };
        let v: Value = serde_json::from_slice(&e.envelope_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":"evt_1","name":"x","occurred_at":"1970-01-01T00:00:00.000Z","origin":null,"data":{"a":1}})
        );
    }
}

/// Well-formed JSON text without the whitespace between its tokens, borrowed when it has none:
/// published `data` is stored and delivered as the publisher wrote it, less the spacing, without
/// being parsed into a tree and printed again.
pub fn compact_json(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut in_string = false;
    let mut escaped = false;
    let mut out: Option<Vec<u8>> = None;
    for (i, &b) in bytes.iter().enumerate() {
        let keep = if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            true
        } else {
            if b == b'"' {
                in_string = true;
            }
            !matches!(b, b' ' | b'\n' | b'\r' | b'\t')
        };
        match (&mut out, keep) {
            (Some(o), true) => o.push(b),
            (None, false) => out = Some(bytes[..i].to_vec()),
            _ => {}
        }
    }
    match out {
        // Only ASCII whitespace between tokens was dropped: still UTF-8.
        Some(o) => {
            std::borrow::Cow::Owned(String::from_utf8(o).unwrap_or_else(|_| text.to_owned()))
        }
        None => std::borrow::Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod compact_tests {
    use super::compact_json;

    #[test]
    fn drops_spacing_between_tokens_only() {
        let text = "{ \"a b\" : [1, 2 ,\n\t{\"q\\\" x\": \"é \\\\\" }], \"n\": null }";
        let compact = compact_json(text);
        assert_eq!(compact, r#"{"a b":[1,2,{"q\" x":"é \\"}],"n":null}"#);
        let a: serde_json::Value = serde_json::from_str(text).unwrap();
        let b: serde_json::Value = serde_json::from_str(&compact).unwrap();
        assert_eq!(a, b);
        assert!(matches!(
            compact_json(r#"{"a":"x y"}"#),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
