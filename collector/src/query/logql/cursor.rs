//! The text cursor both LogQL parsers move over a query: whitespace, tokens, names, numbers and
//! strings, and errors at a 1-based column in Loki's words. Knows nothing of what it parses.

/// A parse error at a 1-based column, in Loki's words (`parse error at line 1, col 5: ...`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("parse error at line 1, col {col}: {msg}")]
pub struct ParseError {
    pub col: usize,
    pub msg: String,
}

/// A position in a query's text; both parsers (log and metric queries) move it.
pub(super) struct Cursor<'a> {
    pub(super) s: &'a str,
    pub(super) i: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(s: &'a str) -> Self {
        Cursor { s, i: 0 }
    }
    pub(super) fn ws(&mut self) {
        let rest = &self.s[self.i..];
        self.i += rest.len() - rest.trim_start().len();
    }
    pub(super) fn col(&self, at: usize) -> usize {
        self.s[..at].chars().count() + 1
    }
    pub(super) fn err<T>(&self, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { col: self.col(self.i), msg: msg.into() })
    }
    pub(super) fn peek(&mut self, tok: &str) -> bool {
        self.ws();
        self.s[self.i..].starts_with(tok)
    }
    pub(super) fn eat(&mut self, tok: &str) -> bool {
        if self.peek(tok) {
            self.i += tok.len();
            true
        } else {
            false
        }
    }
    /// A keyword: `tok` not followed by a name character.
    pub(super) fn eat_word(&mut self, tok: &str) -> bool {
        self.ws();
        let rest = &self.s[self.i..];
        if rest.starts_with(tok) && !rest[tok.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            self.i += tok.len();
            true
        } else {
            false
        }
    }
    pub(super) fn ident(&mut self) -> Result<&'a str, ParseError> {
        self.ws();
        let rest = &self.s[self.i..];
        let n = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if n == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
            return self.err("expected a label name");
        }
        self.i += n;
        Ok(&rest[..n])
    }
    /// A "double-quoted" (with escapes) or `backquoted` (raw) string.
    pub(super) fn string(&mut self) -> Result<String, ParseError> {
        self.ws();
        let rest = &self.s[self.i..];
        if let Some(raw) = rest.strip_prefix('`') {
            let Some(end) = raw.find('`') else { return self.err("unterminated raw string") };
            self.i += end + 2;
            return Ok(raw[..end].to_string());
        }
        if !rest.starts_with('"') {
            return self.err("expected a quoted string");
        }
        let mut out = String::new();
        let mut chars = rest[1..].char_indices();
        while let Some((k, c)) = chars.next() {
            match c {
                '"' => {
                    self.i += k + 2;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((
                        _,
                        c @ ('\\' | '"' | '\'' | '.' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^'
                        | '$' | 'd' | 'w' | 's' | 'b' | 'S' | 'W' | 'D'),
                    )) => {
                        // Regex escapes pass through for =~ and |~; quotes and backslashes unescape.
                        if matches!(c, '\\' | '"' | '\'') {
                            out.push(c);
                        } else {
                            out.push('\\');
                            out.push(c);
                        }
                    }
                    _ => return self.err("invalid escape in string"),
                },
                c => out.push(c),
            }
        }
        self.err("unterminated string")
    }
    /// A run of name characters, possibly empty.
    pub(super) fn word(&mut self) -> &'a str {
        self.ws();
        let rest = &self.s[self.i..];
        let n = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        self.i += n;
        &rest[..n]
    }
    pub(super) fn number(&mut self) -> Result<f64, ParseError> {
        self.ws();
        let rest = &self.s[self.i..];
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e')).unwrap_or(rest.len());
        match rest[..n].parse::<f64>() {
            Ok(v) if n > 0 => {
                self.i += n;
                Ok(v)
            }
            _ => self.err("expected a number"),
        }
    }
    pub(super) fn expect(&mut self, t: &str) -> Result<(), ParseError> {
        if self.eat(t) {
            Ok(())
        } else {
            self.err(format!("expected {t:?}"))
        }
    }
}
