//! The one check every JSON body passes before anything reads it: well-formed, every string
//! decodable (a lone `\ud800` escape is not), no object with the same key twice, no key that
//! serde_json reserves ([`RESERVED_KEY`]), and no deeper than [`MAX_DEPTH`]. What passes can be parsed again later, with the same result, by every
//! part that reads it (an event-type schema, a filter, a template, the API showing it): nothing
//! is stored that some later parse would fail on and read as `null`.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;

/// Deepest nesting of objects and arrays accepted (serde_json's own parser stops at 128).
pub const MAX_DEPTH: usize = 100;

/// The key serde_json gives its raw values (`serde_json::raw::TOKEN`, private). An object whose
/// first key it is would be read by every later parse as the JSON *inside* its string value — a
/// different value from the one checked and stored — or fail to parse at all (found by the intake
/// fuzz target), so it is refused in any object, in any place.
pub const RESERVED_KEY: &str = "$serde_json::private::RawValue";

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonFault {
    /// Not JSON at all (a 400): the parser's message.
    Malformed(String),
    /// JSON, but not usable (a 422): the path of the value at fault and why.
    Unusable { path: String, message: String },
}

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Checks `bytes` (see the module documentation).
pub fn check(bytes: &[u8]) -> Result<(), JsonFault> {
    // Plainly first: tracking the path of every value costs on every body, and only a fault
    // needs it, so only a fault walks the body again with it.
    DEPTH.with(|d| d.set(0));
    let mut plain = serde_json::Deserializer::from_slice(bytes);
    let fine = <Checked as de::Deserialize>::deserialize(&mut plain).is_ok() && plain.end().is_ok();
    DEPTH.with(|d| d.set(0));
    if fine {
        return Ok(());
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = serde_path_to_error::deserialize::<_, Checked>(&mut de)
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            match inner.classify() {
                serde_json::error::Category::Data => {
                    let message = inner.to_string();
                    let position = format!(" at line {} column {}", inner.line(), inner.column());
                    let message = message.strip_suffix(&position).unwrap_or(&message);
                    let mut path = if path == "." { String::new() } else { path };
                    // A duplicate or reserved key is found at its object: name the key itself.
                    if let Some(key) = message.strip_prefix("the key `").and_then(|r| {
                        r.split_once("` appears twice")
                            .or_else(|| r.split_once("` is reserved"))
                            .map(|(k, _)| k)
                    }) {
                        path = crate::validation::join_path(&path, key);
                    }
                    JsonFault::Unusable {
                        path,
                        message: message.to_owned(),
                    }
                }
                _ => JsonFault::Malformed(inner.to_string()),
            }
        })
        .and_then(|_| de.end().map_err(|e| JsonFault::Malformed(e.to_string())));
    DEPTH.with(|d| d.set(0));
    result
}

/// Any JSON value, walked (not kept).
struct Checked;

impl<'de> de::Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Walk)
    }
}

struct Walk;

/// Enters one level of nesting, refusing past [`MAX_DEPTH`]; the guard leaves it.
fn enter<E: de::Error>() -> Result<Level, E> {
    let depth = DEPTH.with(|d| {
        let n = d.get() + 1;
        d.set(n);
        n
    });
    let level = Level;
    if depth > MAX_DEPTH {
        return Err(E::custom(format_args!(
            "is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(level)
}

struct Level;

impl Drop for Level {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// A key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct K;
        impl<'de> Visitor<'de> for K {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(K)
    }
}

/// The value under a key, checked.
struct Value;

impl<'de> DeserializeSeed<'de> for Value {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Walk).map(|_| ())
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    // Strings are decoded (not skipped): a lone surrogate escape fails here.
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_string<E>(self, _: String) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let _level = enter()?;
        while seq.next_element_seed(Value)?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let _level = enter()?;
        // Most objects are small: their keys stay on the stack, compared one by one; a larger
        // object moves them to a set.
        const SMALL: usize = 16;
        let mut small: [Option<Cow<'de, str>>; SMALL] = Default::default();
        let mut len = 0;
        let mut many: Option<std::collections::HashSet<Cow<'de, str>>> = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let duplicate = match &mut many {
                Some(set) => !set.insert(key.clone()),
                None if len == SMALL => {
                    let mut set: std::collections::HashSet<_> =
                        small.iter_mut().filter_map(Option::take).collect();
                    let dup = !set.insert(key.clone());
                    many = Some(set);
                    dup
                }
                None => {
                    let dup = small[..len].iter().flatten().any(|k| *k == key);
                    small[len] = Some(key.clone());
                    len += 1;
                    dup
                }
            };
            if duplicate {
                return Err(de::Error::custom(format_args!(
                    "the key `{key}` appears twice in one object"
                )));
            }
            if key == RESERVED_KEY {
                return Err(de::Error::custom(format_args!(
                    "the key `{key}` is reserved (serde_json would read the object as raw JSON)"
                )));
            }
            map.next_value_seed(Value)?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unusable(text: &str) -> (String, String) {
        match check(text.as_bytes()) {
            Err(JsonFault::Unusable { path, message }) => (path, message),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn good_json_passes() {
        for ok in [
            r#"{"a": [1, 2.5, "x\u00e9\ud83d\ude00", null, true], "b": {"c": {}}}"#,
            "[]",
            "\"s\"",
            r#"{"a": 1, "A": 2}"#,
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
        }
        let wide: String = format!(
            "{{{}}}",
            (0..100)
                .map(|i| format!("\"k{i}\": {i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(check(wide.as_bytes()), Ok(()));
    }

    #[test]
    fn duplicate_keys_are_named_with_their_path() {
        let (path, message) = unusable(r#"{"name": "a", "data": {"x": {"k": 1, "k": 2}}}"#);
        assert_eq!(path, "data.x.k");
        assert!(message.contains("`k` appears twice"), "{message}");
        let (path, _) = unusable(r#"{"name": "a", "name": "b"}"#);
        assert_eq!(path, "name");
        let many: String = format!(
            "{{{}, \"k7\": 0}}",
            (0..50)
                .map(|i| format!("\"k{i}\": {i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(unusable(&many).0, "k7");
        let (path, _) = unusable(r#"[{"a": 1}, {"b": 1, "b": 1}]"#);
        assert_eq!(path, "[1].b");
    }

    #[test]
    fn serde_jsons_raw_value_key_is_refused_anywhere() {
        // First in its object, it would be read later as the JSON inside the string ([1,2]).
        let (path, message) =
            unusable(r#"{"name": "a", "data": {"$serde_json::private::RawValue": "[1,2]"}}"#);
        assert_eq!(path, "data.$serde_json::private::RawValue");
        assert!(message.contains("is reserved"), "{message}");
        // Or fail to parse at all.
        let (path, _) = unusable(r#"[{"$serde_json::private::RawValue": [1]}]"#);
        assert_eq!(path, "[0].$serde_json::private::RawValue");
        // Not first, it would parse, but it is refused the same.
        assert!(check(br#"{"a": 1, "$serde_json::private::RawValue": "x"}"#).is_err());
        assert_eq!(check(br#"{"$serde_json::private::rawvalue": "x"}"#), Ok(()));
    }

    #[test]
    fn depth_is_bounded_below_the_parsers_own_limit() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(check(ok.as_bytes()), Ok(()));
        let deep = format!(
            "{{\"data\": {}{}}}",
            "[".repeat(MAX_DEPTH + 30),
            "]".repeat(MAX_DEPTH + 30)
        );
        let (path, message) = unusable(&deep);
        assert!(path.starts_with("data[0]"), "{path}");
        assert!(message.contains("deeper than 100"), "{message}");
        // The depth counter is back at zero for the next body.
        assert_eq!(check(ok.as_bytes()), Ok(()));
    }

    #[test]
    fn what_later_parses_would_fail_on_is_refused_now() {
        assert!(matches!(
            check(br#"{"s": "\ud800"}"#),
            Err(JsonFault::Malformed(_))
        ));
        assert!(matches!(
            check(b"{\"a\": 1} x"),
            Err(JsonFault::Malformed(_))
        ));
        assert!(matches!(check(b"{\"a\": }"), Err(JsonFault::Malformed(_))));
    }
}
