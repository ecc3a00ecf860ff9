//! The log query parser: a stream selector, then line filters, parsers, label filters,
//! `line_format`, `drop` and `keep`, into a `LogQuery`. Errors name the column.

use super::cursor::{Cursor, ParseError};
use super::pipeline::{parse_number, required_prefix, CmpOp, LabelFilter, LineFilter, LogQuery, Stage, TemplatePart};
use crate::model::Matcher;

impl<'a> Cursor<'a> {
    fn regex(&mut self, at: usize, s: &str) -> Result<regex::Regex, ParseError> {
        regex::Regex::new(s).map_err(|e| ParseError { col: self.col(at), msg: format!("invalid regex {s:?}: {e}") })
    }
    fn matcher(&mut self, name: &str, op: &str) -> Result<Matcher, ParseError> {
        self.ws();
        let at = self.i;
        let value = self.string()?;
        Matcher::new(name, op, &value)
            .map_err(|e| ParseError { col: self.col(at), msg: format!("invalid regex {value:?}: {e}") })
    }

    fn label_filter_or(&mut self) -> Result<LabelFilter, ParseError> {
        let mut f = self.label_filter_and()?;
        while self.eat_word("or") {
            f = LabelFilter::Or(Box::new(f), Box::new(self.label_filter_and()?));
        }
        Ok(f)
    }
    fn label_filter_and(&mut self) -> Result<LabelFilter, ParseError> {
        let mut f = self.label_filter_atom()?;
        loop {
            if self.eat_word("and") || self.eat(",") {
                f = LabelFilter::And(Box::new(f), Box::new(self.label_filter_atom()?));
            } else if self.peek_label_filter_start() {
                // `| a="x" b="y"`: Loki reads juxtaposition as `and` too.
                f = LabelFilter::And(Box::new(f), Box::new(self.label_filter_atom()?));
            } else {
                return Ok(f);
            }
        }
    }
    fn peek_label_filter_start(&mut self) -> bool {
        self.ws();
        let rest = &self.s[self.i..];
        rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') && !rest.starts_with("or ")
    }
    fn label_filter_atom(&mut self) -> Result<LabelFilter, ParseError> {
        if self.eat("(") {
            let f = self.label_filter_or()?;
            if !self.eat(")") {
                return self.err("expected ) after the label filter");
            }
            return Ok(f);
        }
        let name = self.ident()?.to_string();
        self.ws();
        let op = ["=~", "!~", "==", "!=", ">=", "<=", ">", "<", "="].into_iter().find(|op| self.eat(op));
        let Some(op) = op else {
            return self.err(format!("expected a comparison (=, !=, =~, !~, >, >=, <, <=, ==) after {name}"));
        };
        self.ws();
        if self.s[self.i..].starts_with(['"', '`']) {
            if !matches!(op, "=" | "!=" | "=~" | "!~") {
                return self.err(format!("{op} compares numbers, durations or byte sizes, not strings"));
            }
            return Ok(LabelFilter::Text(self.matcher(&name, op)?));
        }
        let rest = &self.s[self.i..];
        let n = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | 'µ')))
            .unwrap_or(rest.len());
        let Some(value) = parse_number(&rest[..n]) else {
            return self.err(format!("expected a quoted string, a number, a duration or a byte size after {name}{op}"));
        };
        self.i += n;
        let op = match op {
            "=" | "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            _ => return self.err(format!("{op} compares strings, not numbers")),
        };
        Ok(LabelFilter::Number { name, op, value })
    }
}

/// Go template text as `line_format` takes it, the part evaluated here: text, `{{.label}}` and
/// `{{__line__}}`.
fn template(s: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(TemplatePart::Text(rest[..open].to_string()));
        }
        let Some(close) = rest[open..].find("}}") else { return Err("unclosed {{ in the template".into()) };
        let action = rest[open + 2..open + close].trim().trim_start_matches('-').trim_end_matches('-').trim();
        if action == "__line__" {
            parts.push(TemplatePart::Line);
        } else if let Some(name) = action
            .strip_prefix('.')
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            parts.push(TemplatePart::Label(name.to_string()));
        } else {
            return Err(format!(
                "template action {{{{{action}}}}} is not evaluated: line_format takes text, {{{{.label}}}} and {{{{__line__}}}}"
            ));
        }
        rest = &rest[open + close + 2..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_string()));
    }
    Ok(parts)
}

pub fn parse(query: &str) -> Result<LogQuery, ParseError> {
    let mut c = Cursor::new(query);
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
        matchers.push(c.matcher(name, op)?);
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
    let mut stages = Vec::new();
    loop {
        c.ws();
        if c.i == query.len() {
            break;
        }
        let op = ["|=", "!=", "|~", "!~"].into_iter().find(|op| c.eat(op));
        if let Some(op) = op {
            c.ws();
            let at = c.i;
            let s = c.string()?;
            stages.push(Stage::Line(match op {
                "|=" => LineFilter::Contains(s),
                "!=" => LineFilter::NotContains(s),
                "|~" => LineFilter::Matches(c.regex(at, &s)?, required_prefix(&s)),
                _ => LineFilter::NotMatches(c.regex(at, &s)?),
            }));
            continue;
        }
        if !c.eat("|") {
            return c.err("expected a line filter (|=, !=, |~, !~) or a pipeline stage (| json, | logfmt, | label=\"value\", ...)");
        }
        c.ws();
        let at = c.i;
        if c.eat_word("json") {
            c.ws();
            if c.s[c.i..].starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_') {
                return c.err("json with parameters is not evaluated: use | json and label filters");
            }
            stages.push(Stage::Json);
        } else if c.eat_word("logfmt") {
            stages.push(Stage::Logfmt);
        } else if c.eat_word("regexp") {
            c.ws();
            let at = c.i;
            let s = c.string()?;
            let re = c.regex(at, &s)?;
            if re.capture_names().flatten().next().is_none() {
                return Err(ParseError {
                    col: c.col(at),
                    msg: "regexp needs at least one named group (?P<name>...)".into(),
                });
            }
            stages.push(Stage::Regexp(re));
        } else if c.eat_word("line_format") {
            c.ws();
            let at = c.i;
            let s = c.string()?;
            stages.push(Stage::LineFormat(template(&s).map_err(|msg| ParseError { col: c.col(at), msg })?));
        } else if c.eat_word("drop") {
            let mut names = Vec::new();
            loop {
                let name = c.ident()?.to_string();
                let m = if c.peek("=") || c.peek("!=") {
                    let op = ["=~", "!~", "!=", "="].into_iter().find(|op| c.eat(op)).unwrap_or("=");
                    Some(c.matcher(&name, op)?)
                } else {
                    None
                };
                names.push((name, m));
                if !c.eat(",") {
                    break;
                }
            }
            stages.push(Stage::Drop(names));
        } else if c.eat_word("keep") {
            let mut names = Vec::new();
            loop {
                names.push(c.ident()?.to_string());
                if !c.eat(",") {
                    break;
                }
            }
            stages.push(Stage::Keep(names));
        } else if ["unwrap", "label_format", "pattern", "decolorize", "unpack"]
            .iter()
            .any(|w| c.s[c.i..].starts_with(w))
        {
            let word = c.s[c.i..].split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).next().unwrap_or("");
            return Err(ParseError { col: c.col(at), msg: format!("the {word} stage is not evaluated") });
        } else {
            stages.push(Stage::Labels(c.label_filter_or()?));
        }
    }
    Ok(LogQuery { matchers, stages })
}
