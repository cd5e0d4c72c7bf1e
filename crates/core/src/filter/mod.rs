//! The filter language: an expression over an event that decides whether a subscription gets it.
//!
//! ```text
//! expr       = or
//! or         = and { "or" and }
//! and        = not { "and" not }
//! not        = "not" not | primary
//! primary    = "(" expr ")" | "exists" path | comparison
//! comparison = operand ( "=" | "!=" | "<" | "<=" | ">" | ">=" | "contains" | "startswith" ) operand
//!            | operand [ "not" ] "in" "[" [ literal { "," literal } ] "]"
//! operand    = path | literal
//! path       = ident { "." ident | "[" digits "]" } | "$event" "." ( "name" | "id" | "origin" )
//!            | "$event" "." "attributes" ( "." ident | "[" string "]" )
//!            | "$event" "." "data" { "." ident | "[" digits "]" }
//! literal    = string | number | "true" | "false" | "null"
//! ```
//!
//! Keywords are case-insensitive. Paths resolve inside the event's `data`; `$event.attributes.K`
//! (or `$event.attributes["user_uuid:…"]` for any name) reads the event's routing attribute `K`. A comparison with a
//! missing path is false (`!=` included), so `not (…)` of it is true. A number and a string that
//! is a decimal number compare as numbers. A filter is parsed once, when it is saved ([`Filter::parse`]),
//! and evaluated per event without allocation on the common paths ([`Filter::matches`]).

use std::fmt;

use serde_json::Value;

mod parse;

pub use parse::MAX_LEN;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
    data_prefix: Option<usize>,
}

/// What a filter that reads `data.…` is told when it is written: paths start inside the data.
pub const DATA_PREFIX_HINT: &str = "paths start inside the event's data: `data.x` reads a field \
    named data inside it. Write `x` (or `$event.data.x`); if the data really has a field named \
    data, write `$event.data.data.x`";

/// Why a filter does not parse: the 1-based column (in characters) and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// What a filter is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    pub name: &'a str,
    pub id: &'a str,
    pub origin: Option<&'a str>,
    /// The routing attributes beside the data ([`crate::event::Attributes`]).
    pub attributes: &'a crate::event::Attributes,
    pub data: &'a Value,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Exists(Path),
    Compare(Operand, Op, Operand),
    In {
        operand: Operand,
        list: Vec<Value>,
        negated: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    StartsWith,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(Path),
    Literal(Value),
}

#[derive(Debug, Clone, PartialEq)]
enum Path {
    Data(Vec<Segment>),
    Event(EventField),
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EventField {
    Name,
    Id,
    Origin,
    /// A routing attribute, by name.
    Attribute(String),
}

// ---------------------------------------------------------------------------------------------
// Lexer

impl Filter {
    /// Parses a filter (at most [`MAX_LEN`] characters); the error says where and what was
    /// expected there.
    pub fn parse(src: &str) -> Result<Self, ParseError> {
        parse::parse(src).map(|p| Self {
            expr: p.expr,
            data_prefix: p.data_prefix,
        })
    }

    /// Where the filter reads a field named `data` at the top of the event's data
    /// (`data.feed.title`), as one does who thinks of the delivered envelope: the mistake a
    /// writer is warned of ([`DATA_PREFIX_HINT`]). `$event.data.data.…` says it on purpose.
    pub fn data_prefix(&self) -> Option<usize> {
        self.data_prefix
    }

    /// What a writer of this filter is told when it reads `data.…`: the column and what to
    /// write instead; `None` for every other filter.
    pub fn data_prefix_hint(&self) -> Option<String> {
        self.data_prefix
            .map(|column| format!("column {column}: {DATA_PREFIX_HINT}"))
    }

    pub fn matches(&self, event: &EventView<'_>) -> bool {
        eval(&self.expr, event)
    }
}

/// The longest ordering key kept as it is, in bytes; a longer one is kept as its SHA-256.
pub const MAX_KEY_BYTES: usize = 256;

/// A path of the filter language that names an event's ordering key (`order.id`,
/// `$event.attributes.customer`): what a subscription with `ordered: "key"` orders by.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPath(Path);

impl KeyPath {
    /// Parses a path as the filter language writes one.
    pub fn parse(src: &str) -> Result<Self, ParseError> {
        const LEAD: &str = "exists ";
        let not_a_path = || ParseError {
            column: 1,
            message: "must be one path, such as order.id or $event.attributes.customer".into(),
        };
        if src.trim().is_empty() {
            return Err(not_a_path());
        }
        let filter = Filter::parse(&format!("{LEAD}{src}")).map_err(|e| ParseError {
            column: e.column.saturating_sub(LEAD.len()).max(1),
            message: e.message,
        })?;
        match filter.expr {
            Expr::Exists(path) => Ok(Self(path)),
            _ => Err(not_a_path()),
        }
    }

    /// The key of `event`: a string as it is, any other value as its JSON text; `None` when the
    /// path is missing or null. A key longer than [`MAX_KEY_BYTES`] is its SHA-256, in hex.
    pub fn key(&self, event: &EventView<'_>) -> Option<String> {
        let key = match resolve_path(&self.0, event)? {
            V::Str(s) => s.to_owned(),
            V::Json(Value::String(s)) => s.clone(),
            V::Null | V::Json(Value::Null) => return None,
            V::Json(other) => other.to_string(),
        };
        Some(bounded_key(key))
    }
}

/// `key` as kept: itself up to [`MAX_KEY_BYTES`], else `sha256:` and its digest in hex.
pub fn bounded_key(key: String) -> String {
    if key.len() <= MAX_KEY_BYTES {
        return key;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// A value an operand resolved to, borrowed: evaluation allocates nothing.
#[derive(Clone, Copy)]
enum V<'a> {
    Json(&'a Value),
    Str(&'a str),
    Null,
}

impl<'a> V<'a> {
    fn str(self) -> Option<&'a str> {
        match self {
            V::Str(s) => Some(s),
            V::Json(Value::String(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    fn is_number(self) -> bool {
        matches!(self, V::Json(Value::Number(_)))
    }

    fn is_null(self) -> bool {
        matches!(self, V::Null | V::Json(Value::Null))
    }

    /// A number, or a string that is a decimal number.
    fn number(self) -> Option<f64> {
        match self {
            V::Json(Value::Number(n)) => n.as_f64(),
            other => decimal(other.str()?),
        }
    }
}

fn resolve<'a>(operand: &'a Operand, event: &EventView<'a>) -> Option<V<'a>> {
    match operand {
        Operand::Literal(v) => Some(V::Json(v)),
        Operand::Path(p) => resolve_path(p, event),
    }
}

fn resolve_path<'a>(path: &'a Path, event: &EventView<'a>) -> Option<V<'a>> {
    match path {
        Path::Event(f) => Some(match f {
            EventField::Name => V::Str(event.name),
            EventField::Id => V::Str(event.id),
            EventField::Origin => event.origin.map_or(V::Null, V::Str),
            EventField::Attribute(k) => V::Str(event.attributes.get(k)?),
        }),
        Path::Data(segments) => {
            let mut v = event.data;
            for s in segments {
                v = match (s, v) {
                    (Segment::Key(k), Value::Object(m)) => m.get(k)?,
                    (Segment::Index(i), Value::Array(a)) => a.get(*i)?,
                    _ => return None,
                };
            }
            Some(V::Json(v))
        }
    }
}

fn decimal(s: &str) -> Option<f64> {
    let t = s.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    let ok = !digits.is_empty()
        && digits.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        && digits.bytes().filter(|c| *c == b'.').count() <= 1
        && digits.bytes().any(|c| c.is_ascii_digit());
    if ok {
        t.parse().ok()
    } else {
        None
    }
}

/// Equality with the number/string rule.
fn equal(a: V<'_>, b: V<'_>) -> bool {
    if a.is_number() || b.is_number() {
        return match (a.number(), b.number()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        };
    }
    if let (Some(x), Some(y)) = (a.str(), b.str()) {
        return x == y;
    }
    match (a, b) {
        (V::Json(x), V::Json(y)) => x == y,
        _ => a.is_null() && b.is_null(),
    }
}

fn order(a: V<'_>, b: V<'_>) -> Option<std::cmp::Ordering> {
    if a.is_number() || b.is_number() {
        return a.number()?.partial_cmp(&b.number()?);
    }
    Some(a.str()?.cmp(b.str()?))
}

fn compare(a: V<'_>, op: Op, b: V<'_>) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => equal(a, b),
        Op::Ne => !equal(a, b),
        Op::Lt => order(a, b) == Some(Less),
        Op::Le => matches!(order(a, b), Some(Less | Equal)),
        Op::Gt => order(a, b) == Some(Greater),
        Op::Ge => matches!(order(a, b), Some(Greater | Equal)),
        Op::Contains => match (a, b.str()) {
            (V::Json(Value::Array(items)), _) => items.iter().any(|i| equal(V::Json(i), b)),
            (h, Some(n)) => h.str().is_some_and(|h| h.contains(n)),
            _ => false,
        },
        Op::StartsWith => match (a.str(), b.str()) {
            (Some(h), Some(n)) => h.starts_with(n),
            _ => false,
        },
    }
}

fn eval(expr: &Expr, event: &EventView<'_>) -> bool {
    match expr {
        Expr::Or(a, b) => eval(a, event) || eval(b, event),
        Expr::And(a, b) => eval(a, event) && eval(b, event),
        Expr::Not(e) => !eval(e, event),
        Expr::Exists(p) => resolve_path(p, event).is_some(),
        Expr::Compare(l, op, r) => {
            let (Some(a), Some(b)) = (resolve(l, event), resolve(r, event)) else {
                return false;
            };
            compare(a, *op, b)
        }
        Expr::In {
            operand,
            list,
            negated,
        } => {
            let Some(v) = resolve(operand, event) else {
                return false;
            };
            list.iter().any(|item| equal(v, V::Json(item))) != *negated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn check(filter: &str, name: &str, data: &Value) -> bool {
        let f = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        let attributes = crate::event::Attributes::from([
            ("survey".to_owned(), "1".to_owned()),
            ("user_uuid:u-1".to_owned(), "true".to_owned()),
        ]);
        f.matches(&EventView {
            name,
            id: "evt_1",
            origin: Some("studio"),
            attributes: &attributes,
            data,
        })
    }

    #[test]
    fn the_ftrack_examples_select_the_right_events() {
        let task = fixture("ftrack-task-create.json");
        let version = fixture("ftrack-assetversion-status.json");
        let created = r#"entity.entity_type = "Task" and entity.operation = "create""#;
        let status = r#"entity.entity_type = "AssetVersion" and entity.operation = "update" and entity.new.status_id != entity.old.status_id and entity.new.status_id = "a0b1-pending-approval""#;
        assert!(check(created, "ftrack.entity", &task["data"]));
        assert!(!check(created, "ftrack.entity", &version["data"]));
        assert!(check(status, "ftrack.entity", &version["data"]));
        assert!(!check(status, "ftrack.entity", &task["data"]));
        // Same status: no change, no match.
        let mut same = version["data"].clone();
        same["entity"]["old"]["status_id"] = json!("a0b1-pending-approval");
        assert!(!check(status, "ftrack.entity", &same));
    }

    #[test]
    fn the_fixtures_answer_every_operator() {
        let feed = fixture("phraseanet-new-feed-entry.json")["data"].clone();
        let survey = fixture("fluidsurveys-response-complete.json")["data"].clone();
        let table: &[(&str, &Value, bool)] = &[
            (r#"feed.title = "Cannes Festival""#, &feed, true),
            (r#"feed.title != "Cannes Festival""#, &feed, false),
            (r#"users[0].mail = "bradley72@yahoo.com""#, &feed, true),
            (r#"users[1].firstname startswith "Johna""#, &feed, true),
            (r#"users[2].mail = "x""#, &feed, false),
            (r#"feed.description contains "cannes""#, &feed, true),
            (r#"feed.is_public = false"#, &feed, true),
            (r#"users_were_notified = true"#, &feed, false),
            (r#"exists entry.author.email"#, &feed, true),
            (r#"exists entry.author.phone"#, &feed, false),
            (r#"not exists entry.author.phone"#, &feed, true),
            (r#"survey = "1""#, &survey, true),
            (r#"survey = 1"#, &survey, true),
            (r#"id > 200 and id <= 276"#, &survey, true),
            (r#"id < 276"#, &survey, false),
            (r#"id >= "276""#, &survey, true),
            (r#"language in ["fr", "en"]"#, &survey, true),
            (r#"language not in ["fr", "en"]"#, &survey, false),
            (r#"collector in [1, 2]"#, &survey, true),
            (r#"score = 0.0"#, &survey, true),
            (r#"invite_email = null"#, &survey, false),
            (r#"$event.name = "response_complete""#, &survey, true),
            (r#"$event.id startswith "evt_""#, &survey, true),
            (r#"$event.origin = 'studio'"#, &survey, true),
            (r#"$event.attributes.survey = 1"#, &survey, true),
            (r#"$event.attributes.survey = "2""#, &survey, false),
            (
                r#"$event.attributes["user_uuid:u-1"] = true"#,
                &survey,
                false,
            ),
            (
                r#"$event.attributes["user_uuid:u-1"] = "true""#,
                &survey,
                true,
            ),
            (
                r#"exists $event.attributes["user_uuid:u-1"]"#,
                &survey,
                true,
            ),
            (
                r#"exists $event.attributes["user_uuid:u-2"]"#,
                &survey,
                false,
            ),
            (r#"$event.attributes.collector != "1""#, &survey, false),
            (
                r#"survey_name < "m4" and survey_name > "m2""#,
                &survey,
                true,
            ),
        ];
        for (filter, data, want) in table {
            assert_eq!(check(filter, "response_complete", data), *want, "{filter}");
        }
    }

    #[test]
    fn a_missing_path_makes_every_comparison_false() {
        let d = json!({"a": 1, "s": "x", "n": null, "list": [1, "two"]});
        for f in [
            "missing = 1",
            "missing != 1",
            "missing < 1",
            "missing in [1]",
            "missing not in [1]",
            "missing contains 'x'",
            "a = missing",
            "missing != missing",
            "a.b = 1",
            "list[5] = 1",
        ] {
            assert!(!check(f, "e", &d), "{f}");
        }
        assert!(check("not (missing = 1)", "e", &d));
        assert!(check("not missing != 1", "e", &d));
        assert!(check("n = null", "e", &d));
        assert!(check("exists n", "e", &d));
        assert!(check(
            "list contains 1 and list contains 'two' and list[1] = 'two'",
            "e",
            &d
        ));
        assert!(!check("s = 1", "e", &d));
        assert!(check("s != 1", "e", &d));
        assert!(!check("s < 1", "e", &d));
        assert!(check("a = '1.0'", "e", &d));
        assert!(!check("a = '1x'", "e", &d));
        assert!(!check("a = true", "e", &d));
    }

    #[test]
    fn precedence_is_comparison_not_and_or() {
        let d = json!({"a": 1, "b": 2});
        assert!(check("a = 1 or a = 2 and b = 3", "e", &d)); // a=1 or (a=2 and b=3)
        assert!(!check("(a = 1 or a = 2) and b = 3", "e", &d));
        assert!(check("NOT a = 2 AND b = 2", "e", &d)); // (not a=2) and b=2
        assert!(!check("not (a = 1 and b = 2)", "e", &d));
        assert!(check("not not a = 1", "e", &d));
        assert!(check("a = 1 Or b = 9", "e", &d));
    }

    #[test]
    fn strings_take_escapes_and_unicode() {
        let d = json!({"q": "say \"hi\"\n", "u": "café ☕", "s": "it's"});
        assert!(check(r#"q = "say \"hi\"\n""#, "e", &d));
        assert!(check(r#"u = "caf\u00e9 ☕""#, "e", &d));
        assert!(check(r#"u startswith 'café'"#, "e", &d));
        assert!(check(r#"s = 'it\'s'"#, "e", &d));
        let d = json!({"名前": "値"});
        assert!(check("名前 = '値'", "e", &d));
    }

    #[test]
    fn errors_name_the_column_and_what_was_expected() {
        for (src, column, needle) in [
            ("a =", 4, "expected a path or a value"),
            ("a = 1 and", 10, "expected a path or a value"),
            ("a 1", 3, "expected a comparison"),
            ("(a = 1", 7, "expected ')'"),
            ("a = 'open", 5, "no closing '"),
            ("a in 1", 6, "expected '['"),
            ("a in [1 2]", 9, "expected ',' or ']'"),
            ("a not 1", 7, "expected 'in' after 'not'"),
            ("é = 1 ) ", 7, "expected 'and', 'or' or the end"),
            ("a = 1 # 2", 7, "unexpected character '#'"),
            ("a == 1", 3, "'==' is written '=' in a filter"),
            ("a = 1 && b = 2", 7, "'&&' is written 'and' in a filter"),
            ("a = 1 || b = 2", 7, "'||' is written 'or' in a filter"),
            ("$evt.name = 1", 1, "unknown variable"),
            (
                "$event.tenant = 1",
                8,
                "expected name, id, origin, data or attributes",
            ),
            ("a[x] = 1", 3, "expected an array index"),
            ("", 1, "empty filter"),
            ("a = \"\\q\"", 6, "unknown escape"),
            ("a ! b", 3, "'!' alone"),
            ("exists 'x'", 8, "expected a path after 'exists'"),
        ] {
            let e = Filter::parse(src).expect_err(src);
            assert_eq!(e.column, column, "{src}: {e}");
            assert!(e.message.contains(needle), "{src}: {e}");
        }
    }

    #[test]
    fn event_data_reads_the_data_and_a_data_prefix_is_noted() {
        let data = json!({"feed": {"title": "x"}, "data": {"k": 1}});
        let event = EventView {
            name: "n",
            id: "evt_1",
            origin: None,
            attributes: &crate::event::Attributes::default(),
            data: &data,
        };
        for (src, matches, prefix) in [
            (r#"feed.title = "x""#, true, None),
            (r#"$event.data.feed.title = "x""#, true, None),
            (r#"data.feed.title = "x""#, false, Some(1)),
            (r#"$event.data.data.k = 1"#, true, None),
            (r#"feed.title = "x" and data.k = 1"#, true, Some(22)),
            (r#"exists $event.data"#, true, None),
            // A field named data that is not the start of a path is no mistake.
            (r#"feed.data = 1"#, false, None),
            (r#"data = 1"#, false, None),
        ] {
            let f = Filter::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(f.matches(&event), matches, "{src}");
            assert_eq!(f.data_prefix(), prefix, "{src}");
        }
    }

    const PIECES: &[&str] = &[
        "a",
        "b.c",
        "x[0]",
        "x[",
        "]",
        "(",
        ")",
        "=",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "in",
        "not",
        "and",
        "or",
        "[",
        ",",
        "contains",
        "startswith",
        "exists",
        "'s'",
        "\"q\\\"\"",
        "\"\\u12",
        "1",
        "-2.5",
        "1e400",
        "true",
        "null",
        "$event.name",
        "$",
        ".",
        "é",
        " ",
        "\\",
        "'",
        "9999999999999999999",
    ];

    proptest::proptest! {
        /// No string makes the parser or the evaluator panic.
        #[test]
        fn no_string_panics(src in "\\PC{0,80}") {
            let data = json!({"a": 1, "b": {"c": "x"}, "x": [1, 2]});
            if let Ok(f) = Filter::parse(&src) {
                f.matches(&EventView { name: "n", id: "i", origin: None, attributes: &Default::default(), data: &data });
            }
        }

        /// Nor does any sequence of the language's own tokens, which reaches deeper into the parser.
        #[test]
        fn no_token_soup_panics(tokens in proptest::collection::vec(proptest::sample::select(PIECES), 0..24)) {
            let src = tokens.join(" ");
            let data = json!({"a": 1, "b": {"c": "x"}, "x": [1, 2]});
            if let Ok(f) = Filter::parse(&src) {
                f.matches(&EventView { name: "n", id: "i", origin: None, attributes: &Default::default(), data: &data });
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{}a = 1{}", "(".repeat(500), ")".repeat(500));
        assert!(Filter::parse(&deep).is_err());
        let nots = format!("{}a = 1", "not ".repeat(500));
        assert!(Filter::parse(&nots).is_err());
    }

    #[test]
    fn key_paths_read_one_value_as_the_ordering_key() {
        let data = json!({"order": {"id": 42, "ref": "A-1", "none": null, "tags": ["x"]}});
        let mut attributes = crate::event::Attributes::new();
        attributes.insert("customer".into(), "c-7".into());
        let view = EventView {
            name: "order.paid",
            id: "evt_1",
            origin: None,
            attributes: &attributes,
            data: &data,
        };
        let key = |p: &str| KeyPath::parse(p).unwrap().key(&view);
        assert_eq!(key("order.id").as_deref(), Some("42"));
        assert_eq!(key("order.ref").as_deref(), Some("A-1"));
        assert_eq!(key("order.tags").as_deref(), Some("[\"x\"]"));
        assert_eq!(key("$event.attributes.customer").as_deref(), Some("c-7"));
        assert_eq!(key("order.none"), None);
        assert_eq!(key("order.missing"), None);
        for bad in ["", "order.id = 1", "order.id or x", "order..id"] {
            assert!(KeyPath::parse(bad).is_err(), "{bad}");
        }
        let long = bounded_key("k".repeat(MAX_KEY_BYTES + 1));
        assert!(long.starts_with("sha256:") && long.len() == 71, "{long}");
        assert_eq!(bounded_key("k".repeat(MAX_KEY_BYTES)).len(), MAX_KEY_BYTES);
    }
}
