//! QuickBooks' query language, the subset client libraries send (SPEC §6):
//!
//! ```text
//! query      = "select" projection "from" ENTITY [where] [order] [start] [max]
//! projection = "*" ["," FIELD]… | "count(*)" | FIELD ["," FIELD]…
//! where      = "where" condition ["and" condition]…
//! condition  = FIELD ("=" | "<" | ">" | "<=" | ">=") value
//!            | FIELD "in" "(" value ["," value]… ")"
//!            | FIELD "like" STRING
//! order      = ("orderby" | "order" "by") FIELD ["asc" | "desc"] ["," FIELD ["asc" | "desc"]]…
//! start      = "startposition" NUMBER
//! max        = "maxresults" NUMBER
//! value      = STRING | NUMBER | "true" | "false"
//! ```
//!
//! Keywords and field names are case-insensitive; a field may be dotted
//! (`MetaData.LastUpdatedTime`). Strings are in single quotes, with `\'` or `''` for a
//! quote. A lexer turns the text into tokens and a recursive-descent parser follows the
//! grammar; whatever it does not cover (`or`, parentheses around conditions, joins,
//! `!=`, …) is a [`QueryError`] that names the unsupported part.

mod lex;

use lex::{lex, Token};

/// The most results one query answers (`maxresults` is capped to it).
pub const MAX_RESULTS: u32 = 1000;
/// Results per page when the query has no `maxresults`.
pub const DEFAULT_RESULTS: u32 = 100;

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// What to answer.
    pub projection: Projection,
    /// The entity name as written (the caller resolves it).
    pub entity: String,
    /// Conditions, all of which must hold.
    pub conditions: Vec<Condition>,
    /// Sort keys, first first.
    pub order: Vec<SortKey>,
    /// `startposition`, 1-based.
    pub start: u32,
    /// `maxresults`, capped at [`MAX_RESULTS`].
    pub max: u32,
}

/// The `select` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Projection {
    /// `*`, with any extra fields named after it (`*, Sku`): every field.
    All,
    /// `count(*)`: the number of matches only.
    Count,
    /// These fields (and `Id`, which every answer carries).
    Fields(Vec<String>),
}

/// One `Field Op Value` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The field, possibly dotted.
    pub field: String,
    /// The comparison.
    pub op: Comparison,
}

/// A comparison with its operand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `=`.
    Eq(Value),
    /// `<`.
    Lt(Value),
    /// `>`.
    Gt(Value),
    /// `<=`.
    Le(Value),
    /// `>=`.
    Ge(Value),
    /// `in (…)`.
    In(Vec<Value>),
    /// `like '…'` with `%` as the wildcard.
    Like(String),
}

/// A literal of the query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A quoted string.
    Text(String),
    /// A number, as written.
    Number(String),
    /// `true` or `false`.
    Bool(bool),
}

/// One `orderby` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortKey {
    /// The field, possibly dotted.
    pub field: String,
    /// `desc`.
    pub descending: bool,
}

/// Why a query was refused: what part is unsupported or malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        let found = self.keyword(word);
        if found {
            self.at += 1;
        }
        found
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), QueryError> {
        if self.eat_keyword(word) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("\"{word}\"")))
        }
    }

    fn unexpected(&self, wanted: &str) -> QueryError {
        match self.peek() {
            Some(token) => QueryError(format!("expected {wanted} but found {token}")),
            None => QueryError(format!("expected {wanted} but the query ended")),
        }
    }

    fn field(&mut self) -> Result<String, QueryError> {
        match self.peek() {
            Some(Token::Word(w)) if !is_keyword(w) && is_field(w) => {
                let w = w.clone();
                self.at += 1;
                Ok(w)
            }
            _ => Err(self.unexpected("a field name")),
        }
    }

    fn number(&mut self, what: &str) -> Result<u32, QueryError> {
        match self.next() {
            Some(Token::Word(w)) => w
                .parse::<u32>()
                .map_err(|_| QueryError(format!("{what} must be a whole number, not {w}"))),
            Some(other) => Err(QueryError(format!("{what} must be a whole number, not {other}"))),
            None => Err(QueryError(format!("{what} needs a number"))),
        }
    }

    fn value(&mut self) -> Result<Value, QueryError> {
        match self.next() {
            Some(Token::Text(t)) => Ok(Value::Text(t)),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            Some(Token::Word(w)) if w.parse::<f64>().is_ok() => Ok(Value::Number(w)),
            Some(other) => Err(QueryError(format!(
                "a value must be a quoted string, a number, true or false, not {other}"
            ))),
            None => Err(QueryError("a condition needs a value".into())),
        }
    }

    fn projection(&mut self) -> Result<Projection, QueryError> {
        if self.eat_keyword("count") {
            if self.eat_symbol("(") && self.eat_symbol("*") && self.eat_symbol(")") {
                return Ok(Projection::Count);
            }
            return Err(QueryError("only count(*) is supported".into()));
        }
        if self.eat_symbol("*") {
            // `*, Sku`: every field anyway.
            while self.eat_symbol(",") {
                self.field()?;
            }
            return Ok(Projection::All);
        }
        let mut fields = vec![self.field()?];
        while self.eat_symbol(",") {
            fields.push(self.field()?);
        }
        Ok(Projection::Fields(fields))
    }

    fn condition(&mut self) -> Result<Condition, QueryError> {
        let field = self.field()?;
        let op = match self.next() {
            Some(Token::Symbol("=")) => Comparison::Eq(self.value()?),
            Some(Token::Symbol("<")) => Comparison::Lt(self.value()?),
            Some(Token::Symbol(">")) => Comparison::Gt(self.value()?),
            Some(Token::Symbol("<=")) => Comparison::Le(self.value()?),
            Some(Token::Symbol(">=")) => Comparison::Ge(self.value()?),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("in") => {
                if !self.eat_symbol("(") {
                    return Err(self.unexpected("( after in"));
                }
                let mut values = vec![self.value()?];
                while self.eat_symbol(",") {
                    values.push(self.value()?);
                }
                if !self.eat_symbol(")") {
                    return Err(self.unexpected(") closing the in list"));
                }
                Comparison::In(values)
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("like") => match self.next() {
                Some(Token::Text(pattern)) => Comparison::Like(pattern),
                _ => return Err(QueryError("like needs a quoted pattern".into())),
            },
            Some(Token::Symbol(s @ ("!=" | "<>"))) => {
                return Err(QueryError(format!("the operator {s} is not supported")))
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("not") => {
                return Err(QueryError("not is not supported".into()))
            }
            Some(other) => return Err(QueryError(format!("unsupported operator {other}"))),
            None => return Err(QueryError(format!("the condition on {field} has no operator"))),
        };
        Ok(Condition { field, op })
    }

    fn order(&mut self) -> Result<Vec<SortKey>, QueryError> {
        let mut keys = Vec::new();
        loop {
            let field = self.field()?;
            let descending = if self.eat_keyword("desc") {
                true
            } else {
                self.eat_keyword("asc");
                false
            };
            keys.push(SortKey { field, descending });
            if !self.eat_symbol(",") {
                return Ok(keys);
            }
        }
    }

    fn query(&mut self) -> Result<Query, QueryError> {
        self.expect_keyword("select")?;
        let projection = self.projection()?;
        self.expect_keyword("from")?;
        let entity = self.field()?;
        if self.eat_symbol(",") || self.keyword("join") {
            return Err(QueryError("joins are not supported: query one entity".into()));
        }
        let mut query = Query {
            projection,
            entity,
            conditions: Vec::new(),
            order: Vec::new(),
            start: 1,
            max: DEFAULT_RESULTS,
        };
        if self.eat_keyword("where") {
            query.conditions.push(self.condition()?);
            loop {
                if self.eat_keyword("and") {
                    query.conditions.push(self.condition()?);
                } else if self.keyword("or") {
                    return Err(QueryError(
                        "or is not supported: use in (…) or separate queries".into(),
                    ));
                } else {
                    break;
                }
            }
        }
        if self.eat_keyword("orderby") || (self.keyword("order") && self.order_by()) {
            query.order = self.order()?;
        }
        if self.eat_keyword("startposition") {
            query.start = self.number("startposition")?.max(1);
        }
        if self.eat_keyword("maxresults") {
            query.max = self.number("maxresults")?.clamp(1, MAX_RESULTS);
        }
        match self.peek() {
            None => Ok(query),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("or") => Err(QueryError(
                "or is not supported: use in (…) or separate queries".into(),
            )),
            Some(token) => Err(QueryError(format!("unsupported {token} after the query"))),
        }
    }

    /// `order by` in two words.
    fn order_by(&mut self) -> bool {
        let two =
            matches!(self.tokens.get(self.at + 1), Some(Token::Word(w)) if w.eq_ignore_ascii_case("by"));
        if two {
            self.at += 2;
        }
        two
    }
}

const KEYWORDS: [&str; 10] = [
    "select",
    "from",
    "where",
    "and",
    "or",
    "orderby",
    "startposition",
    "maxresults",
    "asc",
    "desc",
];

fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

fn is_field(word: &str) -> bool {
    word.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && word.split('.').all(|part| !part.is_empty())
}

/// Parses `text` as a query.
pub fn parse(text: &str) -> Result<Query, QueryError> {
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return Err(QueryError("the query is empty".into()));
    }
    Parser { tokens, at: 0 }.query()
}

/// Whether `text` matches `like` `pattern` (`%` any run of characters), ignoring case.
pub fn like(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let text: Vec<char> = text.to_lowercase().chars().collect();
    // Dynamic programming over (pattern, text) prefixes; both are short.
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for p in &pattern {
        let mut next = vec![false; text.len() + 1];
        if *p == '%' {
            let mut any = false;
            for i in 0..=text.len() {
                any |= row[i];
                next[i] = any;
            }
        } else {
            for i in 0..text.len() {
                next[i + 1] = row[i] && text[i] == *p;
            }
        }
        row = next;
    }
    row[text.len()]
}

#[cfg(test)]
mod tests;
