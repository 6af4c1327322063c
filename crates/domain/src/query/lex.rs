//! The query language's tokens: words (keywords, field names, numbers), quoted strings
//! (`\'` and `''` for a quote) and symbols.

use super::QueryError;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Token {
    Word(String),
    Text(String),
    Symbol(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => write!(f, "{w}"),
            Token::Text(t) => write!(f, "'{t}'"),
            Token::Symbol(s) => write!(f, "{s}"),
        }
    }
}

pub(super) fn lex(text: &str) -> Result<Vec<Token>, QueryError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '\'' => {
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err(QueryError("a string is not closed with '".into())),
                        Some('\\') => match chars.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err(QueryError("a string is not closed with '".into())),
                        },
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        Some('\'') => break,
                        Some(other) => value.push(other),
                    }
                }
                out.push(Token::Text(value));
            }
            '<' | '>' => {
                let symbol = match (c, chars.peek()) {
                    ('<', Some('=')) => "<=",
                    ('>', Some('=')) => ">=",
                    ('<', Some('>')) => "<>",
                    ('<', _) => "<",
                    _ => ">",
                };
                if symbol.len() == 2 {
                    chars.next();
                }
                out.push(Token::Symbol(symbol));
            }
            '!' if chars.peek() == Some(&'=') => {
                chars.next();
                out.push(Token::Symbol("!="));
            }
            '=' => out.push(Token::Symbol("=")),
            ',' => out.push(Token::Symbol(",")),
            '(' => out.push(Token::Symbol("(")),
            ')' => out.push(Token::Symbol(")")),
            '*' => out.push(Token::Symbol("*")),
            c if c.is_alphanumeric() || "_.-+:".contains(c) => {
                let mut word = c.to_string();
                while let Some(&next) = chars.peek() {
                    if next.is_alphanumeric() || "_.-+:".contains(next) {
                        word.push(next);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(word));
            }
            other => return Err(QueryError(format!("unsupported character {other:?}"))),
        }
    }
    Ok(out)
}
