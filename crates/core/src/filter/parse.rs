//! The filter language's lexer and recursive-descent parser (the grammar is in the parent
//! module's documentation). Bounded: at most [`MAX_LEN`] characters and [`MAX_DEPTH`] levels of
//! nesting, so a hostile filter costs little to refuse.

use serde_json::Value;

use super::{EventField, Expr, Op, Operand, ParseError, Path, Segment};

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
        // What other languages write, answered with how this one writes it.
        let next = chars.get(i + 1).copied();
        match (c, next) {
            ('=', Some('=')) => return err(col, "'==' is written '=' in a filter"),
            ('&', _) => return err(col, "'&&' is written 'and' in a filter"),
            ('|', _) => return err(col, "'||' is written 'or' in a filter"),
            _ => {}
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
    /// The column of the first path written `data.…` (see [`Parsed::data_prefix`]).
    data_prefix: Option<usize>,
}

/// A filter's expression, and what its text says beyond it.
pub(super) struct Parsed {
    pub expr: Expr,
    /// The column of the first path that starts with a field named `data` (`data.feed.title`):
    /// paths start inside the event's data, so this reads `data` inside the data, which is
    /// seldom what was meant (the delivered envelope's `data` is the event's data itself).
    pub data_prefix: Option<usize>,
}

const OPERATORS: &str = "a comparison (=, !=, <, <=, >, >=, in, not in, contains, startswith)";

impl Parser {
    /// The rest of a path after its first segments: `.name`, `.0` and `[0]`, as many as follow.
    fn segments(&mut self, mut segments: Vec<Segment>) -> Result<Vec<Segment>, ParseError> {
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
                                format!("expected a name after '.', found {}", t.describe()),
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
                _ => return Ok(segments),
            }
        }
    }

    /// The name after `$event.attributes`: `.name` or `["any name"]`.
    fn attribute_name(&mut self) -> Result<String, ParseError> {
        match self.next() {
            (Tok::Dot, _) => match self.next() {
                (Tok::Ident(k), _) => Ok(k),
                (t, c) => err(
                    c,
                    format!(
                        "expected an attribute's name after '.', found {}",
                        t.describe()
                    ),
                ),
            },
            (Tok::LBracket, _) => {
                let name = match self.next() {
                    (Tok::Str(k), _) => k,
                    (t, c) => {
                        return err(
                            c,
                            format!(
                                "expected an attribute's name in quotes, found {}",
                                t.describe()
                            ),
                        )
                    }
                };
                if *self.peek() != Tok::RBracket {
                    return self.expected("']'");
                }
                self.next();
                Ok(name)
            }
            (t, c) => err(
                c,
                format!(
                    "expected '.' or '[' after $event.attributes, found {}",
                    t.describe()
                ),
            ),
        }
    }

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
                if s == "data" && matches!(self.peek(), Tok::Dot | Tok::LBracket) {
                    self.data_prefix.get_or_insert(col);
                }
                let segments = self.segments(vec![Segment::Key(s)])?;
                Ok(Operand::Path(Path::Data(segments)))
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
                    (Tok::Ident(f), _) if f == "attributes" => {
                        EventField::Attribute(self.attribute_name()?)
                    }
                    // The data itself, as the envelope delivered names it: `$event.data.a.b`
                    // is `a.b`.
                    (Tok::Ident(f), _) if f == "data" => {
                        return Ok(Operand::Path(Path::Data(self.segments(Vec::new())?)));
                    }
                    (t, c) => {
                        return err(
                            c,
                            format!(
                                "expected name, id, origin, data or attributes after '$event.', found {}",
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

/// The expression of a filter's text.
pub(super) fn parse(src: &str) -> Result<Parsed, ParseError> {
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
        data_prefix: None,
    };
    if *p.peek() == Tok::End {
        return err(1, "expected an expression, found an empty filter");
    }
    let expr = p.or()?;
    if *p.peek() != Tok::End {
        return p.expected("'and', 'or' or the end of the filter");
    }
    Ok(Parsed {
        expr,
        data_prefix: p.data_prefix,
    })
}
