//! LogQL log queries, the subset evaluated so far: a stream selector and line filters
//! (`{service="api"} |= "error" != "debug" |~ "5.." !~ "health"`). Errors name the column.

use crate::model::Matcher;

#[derive(Debug)]
pub struct LogQuery {
    pub matchers: Vec<Matcher>,
    pub filters: Vec<LineFilter>,
}

#[derive(Debug)]
pub enum LineFilter {
    Contains(String),
    NotContains(String),
    Matches(regex::Regex),
    NotMatches(regex::Regex),
}

impl LineFilter {
    pub fn keeps(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(s) => line.contains(s.as_str()),
            LineFilter::NotContains(s) => !line.contains(s.as_str()),
            LineFilter::Matches(r) => r.is_match(line),
            LineFilter::NotMatches(r) => !r.is_match(line),
        }
    }
}

impl LogQuery {
    pub fn keeps(&self, line: &str) -> bool {
        self.filters.iter().all(|f| f.keeps(line))
    }
}

/// A parse error at a 1-based column, in Loki's words (`parse error at line 1, col 5: ...`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("parse error at line 1, col {col}: {msg}")]
pub struct ParseError {
    pub col: usize,
    pub msg: String,
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while self.s[self.i..].starts_with(|c: char| c.is_whitespace()) {
            self.i += self.s[self.i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { col: self.s[..self.i].chars().count() + 1, msg: msg.into() })
    }
    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(tok) {
            self.i += tok.len();
            true
        } else {
            false
        }
    }
    fn ident(&mut self) -> Result<&'a str, ParseError> {
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
    fn string(&mut self) -> Result<String, ParseError> {
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
                        | '$' | 'd' | 'w' | 's' | 'b'),
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
}

pub fn parse(query: &str) -> Result<LogQuery, ParseError> {
    let mut c = Cursor { s: query, i: 0 };
    if !c.eat("{") {
        return c.err("a log query starts with a stream selector {label=\"value\"}");
    }
    let mut matchers = Vec::new();
    loop {
        if c.eat("}") {
            break;
        }
        let name = c.ident()?;
        c.ws();
        let op = ["=~", "!~", "!=", "="].into_iter().find(|op| c.eat(op));
        let Some(op) = op else { return c.err(format!("expected =, !=, =~ or !~ after {name}")) };
        let at = c.i;
        let value = c.string()?;
        let m = Matcher::new(name, op, &value).map_err(|e| ParseError {
            col: query[..at].chars().count() + 1,
            msg: format!("invalid regex {value:?}: {e}"),
        })?;
        matchers.push(m);
        if c.eat(",") {
            continue;
        }
        if !c.eat("}") {
            return c.err("expected , or } in the stream selector");
        }
        break;
    }
    if matchers.iter().all(|m| m.matches("")) {
        return Err(ParseError {
            col: 1,
            msg: "queries require at least one matcher that does not match the empty string".into(),
        });
    }
    let mut filters = Vec::new();
    loop {
        c.ws();
        if c.i == query.len() {
            break;
        }
        // `| drop __error__` (Grafana's log volume query): no parser here sets error labels, so it
        // drops nothing.
        let save = c.i;
        if c.eat("|") && c.ident().ok() == Some("drop") {
            loop {
                c.ident()?;
                if !c.eat(",") {
                    break;
                }
            }
            continue;
        }
        c.i = save;
        let op = ["|=", "!=", "|~", "!~"].into_iter().find(|op| c.eat(op));
        let Some(op) = op else {
            return c.err("expected a line filter (|=, !=, |~, !~); parsers and metric queries are not evaluated yet");
        };
        let at = c.i;
        let s = c.string()?;
        let re = |s: &str| {
            regex::Regex::new(s).map_err(|e| ParseError {
                col: query[..at].chars().count() + 1,
                msg: format!("invalid regex {s:?}: {e}"),
            })
        };
        filters.push(match op {
            "|=" => LineFilter::Contains(s),
            "!=" => LineFilter::NotContains(s),
            "|~" => LineFilter::Matches(re(&s)?),
            _ => LineFilter::NotMatches(re(&s)?),
        });
    }
    Ok(LogQuery { matchers, filters })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_line_filters_parse_and_filter() {
        let q =
            parse(r#"{service="api", stream=~"std(out|err)"} |= "error" != `debug` |~ "5\\d\\d" !~ "health""#).unwrap();
        assert_eq!(q.matchers.len(), 2);
        assert!(q.keeps("GET /x 503 error"));
        assert!(!q.keeps("GET /x 503 error debug"));
        assert!(!q.keeps("GET /x 200 error"));
        assert!(!q.keeps("GET /healthz 500 error"));
    }

    #[test]
    fn errors_name_the_column() {
        assert_eq!(parse(r#"{service="api" |= "x""#).unwrap_err().col, 16);
        assert_eq!(parse(r#"{service="api"} | json"#).unwrap_err().col, 17);
        assert_eq!(parse(r#"{service=~"("}"#).unwrap_err().col, 11);
        assert!(parse(r#"{service=~".*"}"#).unwrap_err().msg.contains("at least one matcher"));
        assert!(parse("service").unwrap_err().msg.contains("stream selector"));
        assert!(parse(r#"{a="b"} | drop __error__, x |= "y""#).is_ok());
    }
}
