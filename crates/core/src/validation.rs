//! Validation failures that name the field at fault, as a dotted path into the request
//! (`config.url`, `events[2]`). The API turns an [`Invalid`] into a 422 problem+json.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One or more field errors; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
pub struct Invalid(pub Vec<FieldError>);

impl Invalid {
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError::new(field, message)])
    }

    /// Prefixes every field path, e.g. `config` + `url` → `config.url`, `events[2]` + `name` →
    /// `events[2].name`.
    pub fn within(mut self, prefix: &str) -> Self {
        for e in &mut self.0 {
            e.field = if e.field.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{}", e.field)
            };
        }
        self
    }
}

/// Collects field errors while checking a request, then yields `Ok` or all of them at once.
#[derive(Debug, Default)]
pub struct Errors(Vec<FieldError>);

impl Errors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn extend(&mut self, invalid: Invalid) {
        self.0.extend(invalid.0);
    }

    pub fn finish(self) -> Result<(), Invalid> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Invalid(self.0))
        }
    }
}

/// The field error for what serde said about a value at `path` (a serde_path_to_error path,
/// relative to the value; `.` or empty for the value itself): a missing or unknown field is
/// named itself, not its parent, and an unknown one gets the closest valid name when one is
/// close ("did you mean `filter`?").
pub fn serde_field_error(path: &str, message: &str) -> FieldError {
    let mut field = if path == "." { "" } else { path }.to_owned();
    let named = |rest: &str| rest.split('`').next().unwrap_or_default().to_owned();
    if let Some(rest) = message.strip_prefix("missing field `") {
        field = join_path(&field, &named(rest));
        return FieldError::new(field, message);
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let unknown = named(rest);
        // serde_path_to_error already names the unknown field itself; a plain error does not.
        let last = field.rsplit(['.', '[']).next().unwrap_or_default();
        if last != unknown {
            field = join_path(&field, &unknown);
        }
        let valid: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
        let mut text = format!("is not a field here; expected one of {}", quoted(&valid));
        if let Some(v) = closest(&unknown, &valid) {
            text = format!(
                "is not a field here; did you mean `{v}`? (expected one of {})",
                quoted(&valid)
            );
        }
        if valid.is_empty() {
            text = "is not a field here".to_owned();
        }
        return FieldError::new(field, text);
    }
    FieldError::new(field, plain_types(message))
}

/// The valid name closest to `unknown`, when one is close enough to be what was meant.
pub fn closest<'a>(unknown: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|v| (strsim::damerau_levenshtein(unknown, v), *v))
        .filter(|(d, v)| *d <= (v.len() / 3).max(2))
        .min()
        .map(|(_, v)| v)
}

/// serde's messages in words a user knows: `expected f64` → `expected a number`, `expected u32`
/// → `expected a whole number from 0 to 4294967295`.
pub fn plain_types(message: &str) -> String {
    const WORDS: [(&str, &str); 12] = [
        ("f64", "a number"),
        ("f32", "a number"),
        ("u8", "a whole number from 0 to 255"),
        ("u16", "a whole number from 0 to 65535"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u64", "a whole number from 0"),
        ("usize", "a whole number from 0"),
        ("i8", "a whole number"),
        ("i16", "a whole number"),
        ("i32", "a whole number"),
        ("i64", "a whole number"),
        ("isize", "a whole number"),
    ];
    let Some(at) = message.rfind("expected ") else {
        return message.to_owned();
    };
    let (head, tail) = message.split_at(at + "expected ".len());
    let word_end = tail
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(tail.len());
    match WORDS.iter().find(|(rust, _)| *rust == &tail[..word_end]) {
        Some((_, words)) => format!("{head}{words}{}", &tail[word_end..]),
        None => message.to_owned(),
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A 422 for `message` about the field at `path` (a serde_path_to_error path) below `prefix`
/// (an unknown field named with the closest valid one).
pub fn invalid_at(prefix: &str, path: String, message: &str) -> Invalid {
    let mut e = serde_field_error(&path, message);
    e.field = join_path(prefix, &e.field);
    Invalid(vec![e])
}

/// Reads a `T` out of `value`; a value of the wrong shape is a 422 naming the field, as a path
/// below `prefix` (empty for none).
pub fn typed<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    prefix: &str,
) -> Result<T, Invalid> {
    // serde reads a struct from an array of its fields in order too; no API takes that form.
    if !value.is_object() {
        return Err(Invalid::one(prefix, "must be a JSON object"));
    }
    // An integral number written with a fraction (`15627.0`) is an integer to JSON Schema, and
    // so to the API description; serde refuses it for an integer field. Such numbers are made
    // integers first (a copy is made only when there is one).
    let integral;
    let value = if has_integral_float(value) {
        let mut copy = value.clone();
        integral_floats_to_integers(&mut copy);
        integral = copy;
        &integral
    } else {
        value
    };
    serde_path_to_error::deserialize(value)
        .map_err(|e| invalid_at(prefix, e.path().to_string(), &e.inner().to_string()))
}

/// The largest integer a double holds exactly.
const EXACT: f64 = 9_007_199_254_740_992.0;

fn integral_float(n: &serde_json::Number) -> Option<i64> {
    let x = n.as_f64().filter(|_| n.is_f64())?;
    (x.fract() == 0.0 && x.abs() <= EXACT).then_some(x as i64)
}

fn has_integral_float(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) => integral_float(n).is_some(),
        Value::Array(a) => a.iter().any(has_integral_float),
        Value::Object(m) => m.values().any(has_integral_float),
        _ => false,
    }
}

fn integral_floats_to_integers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) => {
            if let Some(i) = integral_float(n) {
                *v = Value::from(i);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(m) => m.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// `a` + `b` → `a.b`; `a` + `[1]` → `a[1]`.
pub fn join_path(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_numbers_read_as_integers_and_fractions_do_not() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct T {
            n: u32,
            list: Vec<i64>,
        }
        let t: T = typed(&serde_json::json!({"n": 15627.0, "list": [1.0, -2e3]}), "").unwrap();
        assert_eq!(
            t,
            T {
                n: 15627,
                list: vec![1, -2000]
            }
        );
        let e = typed::<T>(&serde_json::json!({"n": 1.5, "list": []}), "").unwrap_err();
        assert_eq!(e.0[0].field, "n", "{e:?}");
        let e = typed::<T>(&serde_json::json!({"n": 1e300, "list": []}), "").unwrap_err();
        assert_eq!(e.0[0].field, "n", "{e:?}");
    }

    #[test]
    fn rust_type_names_become_words() {
        assert_eq!(
            plain_types("invalid type: string \"30\", expected f64"),
            "invalid type: string \"30\", expected a number"
        );
        assert_eq!(
            plain_types("invalid value: integer `-1`, expected u32"),
            "invalid value: integer `-1`, expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            plain_types("invalid type: string \"x\", expected a boolean"),
            "invalid type: string \"x\", expected a boolean"
        );
        let e = serde_field_error("timeout_ms", "invalid type: string \"5\", expected u32");
        assert!(e
            .message
            .ends_with("expected a whole number from 0 to 4294967295"));
        assert_eq!(closest("listn", &["listen", "database"]), Some("listen"));
        assert_eq!(closest("zzz", &["listen"]), None);
    }

    #[test]
    fn unknown_fields_are_named_with_the_closest_valid_one() {
        let e = serde_field_error(
            ".",
            "unknown field `filters`, expected one of `name`, `service`, `filter`, `events`",
        );
        assert_eq!(e.field, "filters");
        assert!(
            e.message.contains("did you mean `filter`?"),
            "{}",
            e.message
        );
        let e = serde_field_error("retry", "unknown field `zzz`, expected `schedule_s`");
        assert_eq!(e.field, "retry.zzz");
        let e = serde_field_error("retry.zzz", "unknown field `zzz`, expected `schedule_s`");
        assert_eq!(e.field, "retry.zzz");
        assert!(!e.message.contains("did you mean"), "{}", e.message);
        assert!(e.message.contains("`schedule_s`"), "{}", e.message);
        let e = serde_field_error("config", "missing field `url`");
        assert_eq!(e.field, "config.url");
        let e = serde_field_error("a[2]", "invalid type: string \"x\", expected u32");
        assert_eq!(e.field, "a[2]");
    }
}
