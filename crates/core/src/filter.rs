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
//! literal    = string | number | "true" | "false" | "null"
//! ```
//!
//! Keywords are case-insensitive. Paths resolve inside the event's `data`. A comparison with a
//! missing path is false (`!=` included), so `not (…)` of it is true. A number and a string that
//! is a decimal number compare as numbers. A filter is parsed once, when it is saved ([`Filter::parse`]),
//! and evaluated per event without allocation on the common paths ([`Filter::matches`]).

use std::fmt;

use serde_json::Value;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventField {
    Name,
    Id,
    Origin,
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Var(String),
    Str(String),
    Num(f64),
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Var(s) => format!("'${s}'"),
            Tok::Str(_) => "a string".into(),
            Tok::Num(n) => format!("the number {n}"),
            Tok::Op(o) => format!("'{o}'"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Comma => "','".into(),
            Tok::Dot => "'.'".into(),
            Tok::End => "the end of the filter".into(),
        }
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
}

/// Longest filter accepted, in characters; bounds parse time and nesting.
pub const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 64;

fn err<T>(column: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        column,
        message: message.into(),
    })
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ',' => Some(Tok::Comma),
            '.' if !chars.get(i + 1).is_some_and(char::is_ascii_digit) => Some(Tok::Dot),
            '=' => Some(Tok::Op("=")),
            _ => None,
        };
        if let Some(t) = single {
            out.push((t, col));
            i += 1;
            continue;
        }
        match c {
            '!' | '<' | '>' => {
                let eq = chars.get(i + 1) == Some(&'=');
                let op = match (c, eq) {
                    ('!', true) => "!=",
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('<', false) => "<",
                    ('>', false) => ">",
                    _ => {
                        return err(
                            col,
                            "expected '!=' ('!' alone is not an operator; use 'not')",
                        )
                    }
                };
                out.push((Tok::Op(op), col));
                i += if eq { 2 } else { 1 };
            }
            '"' | '\'' => {
                let (s, next) = lex_string(&chars, i)?;
                out.push((Tok::Str(s), col));
                i = next;
            }
            '$' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && is_ident_char(chars[j]) {
                    j += 1;
                }
                if j == start {
                    return err(col + 1, "expected a name after '$' ($event)");
                }
                out.push((Tok::Var(chars[start..j].iter().collect()), col));
                i = j;
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => {
                let start = i;
                let mut j = i;
                if chars[j] == '-' {
                    j += 1;
                }
                while j < chars.len()
                    && (chars[j].is_ascii_digit()
                        || chars[j] == '.'
                        || chars[j] == 'e'
                        || chars[j] == 'E'
                        || ((chars[j] == '+' || chars[j] == '-')
                            && matches!(chars[j - 1], 'e' | 'E')))
                {
                    j += 1;
                }
                let text: String = chars[start..j].iter().collect();
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() && text != "-" => out.push((Tok::Num(n), col)),
                    _ => return err(col, format!("'{text}' is not a number")),
                }
                i = j;
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                out.push((Tok::Ident(chars[start..i].iter().collect()), col));
            }
            other => return err(col, format!("unexpected character '{other}'")),
        }
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), ParseError> {
    let quote = chars[start];
    let mut s = String::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return err(start + 1, format!("this string has no closing {quote}"));
        };
        match c {
            c if c == quote => return Ok((s, i + 1)),
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return err(i + 1, "expected an escaped character after '\\'");
                };
                match e {
                    '"' | '\'' | '\\' | '/' => s.push(e),
                    'n' => s.push('\n'),
                    't' => s.push('\t'),
                    'r' => s.push('\r'),
                    'b' => s.push('\u{8}'),
                    'f' => s.push('\u{c}'),
                    'u' => {
                        let hex: String =
                            chars.get(i + 2..i + 6).unwrap_or_default().iter().collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == 4)
                            .and_then(char::from_u32);
                        match code {
                            Some(ch) => s.push(ch),
                            None => {
                                return err(
                                    i + 1,
                                    "expected \\u followed by 4 hex digits of a character",
                                )
                            }
                        }
                        i += 4;
                    }
                    other => return err(i + 1, format!("unknown escape '\\{other}'")),
                }
                i += 2;
            }
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
}

const OPERATORS: &str = "a comparison (=, !=, <, <=, >, >=, in, not in, contains, startswith)";

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn col(&self) -> usize {
        self.toks[self.pos].1
    }

    fn next(&mut self) -> (Tok, usize) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn expected<T>(&self, what: &str) -> Result<T, ParseError> {
        err(
            self.col(),
            format!("expected {what}, found {}", self.peek().describe()),
        )
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(self.col(), "the filter nests too deeply");
        }
        let mut left = self.and()?;
        while self.peek().keyword("or") {
            self.next();
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not()?;
        while self.peek().keyword("and") {
            self.next();
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.peek().keyword("not") {
            self.next();
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return err(self.col(), "the filter nests too deeply");
            }
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Tok::LParen => {
                self.next();
                let e = self.or()?;
                if *self.peek() != Tok::RParen {
                    return self.expected("')' or 'and', 'or'");
                }
                self.next();
                Ok(e)
            }
            t if t.keyword("exists") => {
                self.next();
                match self.operand()? {
                    Operand::Path(p) => Ok(Expr::Exists(p)),
                    Operand::Literal(_) => {
                        err(self.toks[self.pos - 1].1, "expected a path after 'exists'")
                    }
                }
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let left = self.operand()?;
        let op = match self.peek() {
            Tok::Op("=") => Op::Eq,
            Tok::Op("!=") => Op::Ne,
            Tok::Op("<") => Op::Lt,
            Tok::Op("<=") => Op::Le,
            Tok::Op(">") => Op::Gt,
            Tok::Op(">=") => Op::Ge,
            t if t.keyword("contains") => Op::Contains,
            t if t.keyword("startswith") => Op::StartsWith,
            t if t.keyword("in") => {
                self.next();
                return self.in_list(left, false);
            }
            t if t.keyword("not") => {
                self.next();
                if !self.peek().keyword("in") {
                    return self.expected("'in' after 'not'");
                }
                self.next();
                return self.in_list(left, true);
            }
            _ => return self.expected(OPERATORS),
        };
        self.next();
        let right = self.operand()?;
        Ok(Expr::Compare(left, op, right))
    }

    fn in_list(&mut self, operand: Operand, negated: bool) -> Result<Expr, ParseError> {
        if *self.peek() != Tok::LBracket {
            return self.expected("'[' to open the list");
        }
        self.next();
        let mut list = Vec::new();
        if *self.peek() == Tok::RBracket {
            self.next();
            return Ok(Expr::In {
                operand,
                list,
                negated,
            });
        }
        loop {
            list.push(self.literal()?);
            match self.peek() {
                Tok::Comma => {
                    self.next();
                }
                Tok::RBracket => {
                    self.next();
                    return Ok(Expr::In {
                        operand,
                        list,
                        negated,
                    });
                }
                _ => return self.expected("',' or ']'"),
            }
        }
    }

    fn literal(&mut self) -> Result<Value, ParseError> {
        match self.operand()? {
            Operand::Literal(v) => Ok(v),
            Operand::Path(_) => err(
                self.toks[self.pos - 1].1,
                "expected a literal (string, number, true, false, null) in the list",
            ),
        }
    }

    fn operand(&mut self) -> Result<Operand, ParseError> {
        let (tok, col) = self.next();
        match tok {
            Tok::Str(s) => Ok(Operand::Literal(Value::String(s))),
            Tok::Num(n) => Ok(Operand::Literal(number(n))),
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => {
                Ok(Operand::Literal(Value::Bool(true)))
            }
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => {
                Ok(Operand::Literal(Value::Bool(false)))
            }
            Tok::Ident(s) if s.eq_ignore_ascii_case("null") => Ok(Operand::Literal(Value::Null)),
            Tok::Ident(s)
                if ["and", "or", "not", "in", "contains", "startswith", "exists"]
                    .iter()
                    .any(|k| s.eq_ignore_ascii_case(k)) =>
            {
                err(
                    col,
                    format!("expected a path or a value, found the keyword '{s}'"),
                )
            }
            Tok::Ident(s) => {
                let mut segments = vec![Segment::Key(s)];
                loop {
                    match self.peek() {
                        Tok::Dot => {
                            self.next();
                            match self.next() {
                                (Tok::Ident(k), _) => segments.push(Segment::Key(k)),
                                (Tok::Num(n), _) if n.fract() == 0.0 && n >= 0.0 => {
                                    segments.push(Segment::Key((n as u64).to_string()))
                                }
                                (t, c) => {
                                    return err(
                                        c,
                                        format!(
                                            "expected a name after '.', found {}",
                                            t.describe()
                                        ),
                                    )
                                }
                            }
                        }
                        Tok::LBracket => {
                            self.next();
                            match self.next() {
                                (Tok::Num(n), _) if n.fract() == 0.0 && (0.0..1e9).contains(&n) => {
                                    segments.push(Segment::Index(n as usize))
                                }
                                (t, c) => {
                                    return err(
                                        c,
                                        format!(
                                            "expected an array index (0, 1, …), found {}",
                                            t.describe()
                                        ),
                                    )
                                }
                            }
                            if *self.peek() != Tok::RBracket {
                                return self.expected("']'");
                            }
                            self.next();
                        }
                        _ => return Ok(Operand::Path(Path::Data(segments))),
                    }
                }
            }
            Tok::Var(v) => {
                if v != "event" {
                    return err(col, format!("unknown variable '${v}'; expected $event"));
                }
                if *self.peek() != Tok::Dot {
                    return self.expected("'.' after $event");
                }
                self.next();
                let field = match self.next() {
                    (Tok::Ident(f), _) if f == "name" => EventField::Name,
                    (Tok::Ident(f), _) if f == "id" => EventField::Id,
                    (Tok::Ident(f), _) if f == "origin" => EventField::Origin,
                    (t, c) => {
                        return err(
                            c,
                            format!(
                                "expected name, id or origin after '$event.', found {}",
                                t.describe()
                            ),
                        )
                    }
                };
                Ok(Operand::Path(Path::Event(field)))
            }
            other => err(
                col,
                format!("expected a path or a value, found {}", other.describe()),
            ),
        }
    }
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.007e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

impl Filter {
    pub fn parse(src: &str) -> Result<Self, ParseError> {
        if src.chars().count() > MAX_LEN {
            return err(
                MAX_LEN + 1,
                format!("a filter is at most {MAX_LEN} characters"),
            );
        }
        let toks = lex(src)?;
        let mut p = Parser {
            toks,
            pos: 0,
            depth: 0,
        };
        if *p.peek() == Tok::End {
            return err(1, "expected an expression, found an empty filter");
        }
        let expr = p.or()?;
        if *p.peek() != Tok::End {
            return p.expected("'and', 'or' or the end of the filter");
        }
        Ok(Self { expr })
    }

    pub fn matches(&self, event: &EventView<'_>) -> bool {
        eval(&self.expr, event)
    }
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
        let path = format!(
            "{}/../../../shared/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn check(filter: &str, name: &str, data: &Value) -> bool {
        let f = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        f.matches(&EventView {
            name,
            id: "evt_1",
            origin: Some("studio"),
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
            ("$evt.name = 1", 1, "unknown variable"),
            ("$event.tenant = 1", 8, "expected name, id or origin"),
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
                f.matches(&EventView { name: "n", id: "i", origin: None, data: &data });
            }
        }

        /// Nor does any sequence of the language's own tokens, which reaches deeper into the parser.
        #[test]
        fn no_token_soup_panics(tokens in proptest::collection::vec(proptest::sample::select(PIECES), 0..24)) {
            let src = tokens.join(" ");
            let data = json!({"a": 1, "b": {"c": "x"}, "x": [1, 2]});
            if let Ok(f) = Filter::parse(&src) {
                f.matches(&EventView { name: "n", id: "i", origin: None, data: &data });
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
}
