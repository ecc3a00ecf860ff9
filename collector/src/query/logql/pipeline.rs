//! A log query and its pipeline, applied to one line at a time: line filters, the `json`, `logfmt`
//! and `regexp` parsers, label filters, `line_format`, `drop` and `keep`. Pure: no store, no IO.

use std::borrow::Cow;

use crate::model::{LabelSet, Matcher};

/// The label a stage sets when it cannot do its work on a line, as Loki does.
pub const ERROR_LABEL: &str = "__error__";

#[derive(Debug)]
pub struct LogQuery {
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

#[derive(Debug)]
pub enum LineFilter {
    Contains(String),
    NotContains(String),
    /// The regex, and a byte string every match contains (empty when none is known).
    Matches(regex::Regex, Vec<u8>),
    NotMatches(regex::Regex),
}

/// The longest byte string every match of `pattern` starts with, from the regex's own prefix
/// literals: every match begins with one of them, so it contains what they all begin with. Lets a
/// `|~` skip chunks as `|=` does; shorter than 3 bytes it would skip almost nothing.
pub(super) fn required_prefix(pattern: &str) -> Vec<u8> {
    let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else { return Vec::new() };
    let seq = regex_syntax::hir::literal::Extractor::new().extract(&hir);
    let Some(lits) = seq.literals() else { return Vec::new() };
    let mut common: &[u8] = lits.first().map_or(&[], |l| l.as_bytes());
    for l in lits {
        let n = common.iter().zip(l.as_bytes()).take_while(|(a, b)| a == b).count();
        common = &common[..n];
    }
    if common.len() < 3 {
        return Vec::new();
    }
    common.to_vec()
}

impl LineFilter {
    #[inline]
    pub fn keeps(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(s) => line.contains(s.as_str()),
            LineFilter::NotContains(s) => !line.contains(s.as_str()),
            LineFilter::Matches(r, _) => r.is_match(line),
            LineFilter::NotMatches(r) => !r.is_match(line),
        }
    }
}

/// One step of a log pipeline, applied to each line in order.
#[derive(Debug)]
pub enum Stage {
    Line(LineFilter),
    Json,
    Logfmt,
    Regexp(regex::Regex),
    Labels(LabelFilter),
    LineFormat(Vec<TemplatePart>),
    /// Labels to remove: by name, or only where the value matches.
    Drop(Vec<(String, Option<Matcher>)>),
    Keep(Vec<String>),
}

/// `| name op value`, combined with `and`, `or` (and `,` for `and`).
#[derive(Debug)]
pub enum LabelFilter {
    Text(Matcher),
    Number { name: String, op: CmpOp, value: f64 },
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    Label(String),
    Line,
}

/// A line after the pipeline: its labels (borrowed when no stage changed them) and its text.
pub struct Processed<'a> {
    pub labels: Cow<'a, LabelSet>,
    pub line: Cow<'a, str>,
}

impl LogQuery {
    /// How deep the pipeline nests: 1, plus the deepest label filter's `and`/`or` chain (which
    /// needs no brackets to grow deep). Recursive: called on a query thread.
    pub fn depth(&self) -> usize {
        let filter_depth = |f: &LabelFilter| -> usize {
            fn d(f: &LabelFilter) -> usize {
                match f {
                    LabelFilter::Text(_) | LabelFilter::Number { .. } => 1,
                    LabelFilter::And(a, b) | LabelFilter::Or(a, b) => 1 + d(a).max(d(b)),
                }
            }
            d(f)
        };
        1 + self
            .stages
            .iter()
            .map(|s| match s {
                Stage::Labels(f) => filter_depth(f),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// Whether the pipeline only filters lines (no stage changes labels or text): results keep the
    /// stored streams as they are.
    pub fn filters_only(&self) -> bool {
        self.stages.iter().all(|s| matches!(s, Stage::Line(_)))
    }

    /// The line filters before any other stage: they may be checked on raw stored text before a line
    /// is even split out (they are all the query needs when `filters_only`).
    pub fn leading_filters(&self) -> impl Iterator<Item = &LineFilter> {
        self.stages.iter().map_while(|s| match s {
            Stage::Line(f) => Some(f),
            _ => None,
        })
    }

    /// Byte strings every kept line contains (from the leading `|=` and `|~` filters): a chunk
    /// without one of them holds no line of the result.
    pub fn needles(&self) -> Vec<&[u8]> {
        self.leading_filters()
            .filter_map(|f| match f {
                LineFilter::Contains(s) if !s.is_empty() => Some(s.as_bytes()),
                LineFilter::Matches(_, required) if !required.is_empty() => Some(required.as_slice()),
                _ => None,
            })
            .collect()
    }

    /// Whether a line passes the pipeline's line filters (for pipelines that are `filters_only`).
    #[inline]
    pub fn keeps(&self, line: &str) -> bool {
        self.leading_filters().all(|f| f.keeps(line))
    }

    /// Runs the pipeline over one line of a stream labelled `labels`; `None` when a stage drops it.
    pub fn process<'a>(&self, labels: &'a LabelSet, line: &'a str) -> Option<Processed<'a>> {
        let mut labels = Cow::Borrowed(labels);
        let mut line = Cow::Borrowed(line);
        for stage in &self.stages {
            match stage {
                Stage::Line(f) => {
                    if !f.keeps(&line) {
                        return None;
                    }
                }
                Stage::Json => {
                    let mut extracted = Vec::new();
                    if json_labels(&line, &mut extracted).is_err() {
                        labels.to_mut().set(ERROR_LABEL, "JSONParserErr");
                    }
                    add_extracted(labels.to_mut(), extracted);
                }
                Stage::Logfmt => {
                    let mut extracted = Vec::new();
                    if logfmt_labels(&line, &mut extracted).is_err() {
                        labels.to_mut().set(ERROR_LABEL, "LogfmtParserErr");
                    }
                    add_extracted(labels.to_mut(), extracted);
                }
                Stage::Regexp(re) => {
                    if let Some(caps) = re.captures(&line) {
                        let extracted = re
                            .capture_names()
                            .flatten()
                            .filter_map(|n| caps.name(n).map(|m| (n.to_string(), m.as_str().to_string())))
                            .collect();
                        add_extracted(labels.to_mut(), extracted);
                    }
                }
                Stage::Labels(f) => match f.eval(&labels) {
                    Ok(true) => {}
                    Ok(false) => return None,
                    // A value that is not a number: the line stays, marked, as Loki does.
                    Err(()) => labels.to_mut().set(ERROR_LABEL, "LabelFilterErr"),
                },
                Stage::LineFormat(parts) => {
                    let mut out = String::with_capacity(line.len());
                    for p in parts {
                        match p {
                            TemplatePart::Text(t) => out.push_str(t),
                            TemplatePart::Label(n) => out.push_str(labels.get(n).unwrap_or("")),
                            TemplatePart::Line => out.push_str(&line),
                        }
                    }
                    line = Cow::Owned(out);
                }
                Stage::Drop(names) => {
                    for (n, m) in names {
                        if labels.get(n).is_some() && m.as_ref().is_none_or(|m| m.matches_labels(&labels)) {
                            labels.to_mut().remove(n);
                        }
                    }
                }
                Stage::Keep(names) => {
                    if labels.iter().any(|(k, _)| !names.iter().any(|n| n == k)) {
                        labels = Cow::Owned(labels.filtered(|k| names.iter().any(|n| n == k)));
                    }
                }
            }
        }
        Some(Processed { labels, line })
    }
}

impl LabelFilter {
    /// `Err` when a numeric comparison meets a value that is not a number.
    fn eval(&self, labels: &LabelSet) -> Result<bool, ()> {
        match self {
            LabelFilter::Text(m) => Ok(m.matches_labels(labels)),
            LabelFilter::Number { name, op, value } => {
                let Some(v) = labels.get(name) else { return Ok(false) };
                let v = parse_number(v).ok_or(())?;
                Ok(match op {
                    CmpOp::Eq => v == *value,
                    CmpOp::Ne => v != *value,
                    CmpOp::Gt => v > *value,
                    CmpOp::Ge => v >= *value,
                    CmpOp::Lt => v < *value,
                    CmpOp::Le => v <= *value,
                })
            }
            LabelFilter::And(a, b) => Ok(a.eval(labels)? && b.eval(labels)?),
            LabelFilter::Or(a, b) => Ok(a.eval(labels)? || b.eval(labels)?),
        }
    }
}

/// A number as label filters read one: plain (`500`, `1.5e3`), a duration in seconds (`250ms`,
/// `1m30s`) or a byte size (`20MB`, `1KiB`).
pub(super) fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    parse_duration_secs(s).or_else(|| parse_bytes(s))
}

/// Go's duration syntax: a sequence of decimal numbers with units ns, us, µs, ms, s, m, h.
fn parse_duration_secs(s: &str) -> Option<f64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += v * scale;
        rest = &rest[u..];
    }
    Some(if neg { -total } else { total })
}

fn parse_bytes(s: &str) -> Option<f64> {
    let n = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let v: f64 = s[..n].parse().ok()?;
    let scale = match s[n..].trim() {
        "B" | "b" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" | "Ki" => 1024.0,
        "MiB" | "Mi" => 1024.0 * 1024.0,
        "GiB" | "Gi" => 1024.0 * 1024.0 * 1024.0,
        "TiB" | "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(v * scale)
}

/// Adds parsed labels; a name the stream already has gets the suffix `_extracted`, as in Loki.
fn add_extracted(labels: &mut LabelSet, extracted: Vec<(String, String)>) {
    for (k, v) in extracted {
        if labels.get(&k).is_some() && k != ERROR_LABEL {
            labels.set(&format!("{k}_extracted"), &v);
        } else {
            labels.set(&k, &v);
        }
    }
}

/// A label name made of what a parser found: characters outside `[a-zA-Z0-9_]` become `_`, and a
/// leading digit gets a `_` in front.
fn sanitize(key: &str) -> String {
    let mut out: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Every scalar of a JSON object as a label; nested objects join their keys with `_`, arrays are
/// skipped (Loki's `| json` without parameters).
fn json_labels(line: &str, out: &mut Vec<(String, String)>) -> Result<(), ()> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|_| ())?;
    let serde_json::Value::Object(map) = v else { return Err(()) };
    fn walk(prefix: &str, map: &serde_json::Map<String, serde_json::Value>, out: &mut Vec<(String, String)>) {
        for (k, v) in map {
            let key = if prefix.is_empty() { sanitize(k) } else { format!("{prefix}_{}", sanitize(k)) };
            match v {
                serde_json::Value::Object(inner) => walk(&key, inner, out),
                serde_json::Value::Array(_) => {}
                serde_json::Value::String(s) => out.push((key, s.clone())),
                serde_json::Value::Null => out.push((key, String::new())),
                other => out.push((key, other.to_string())),
            }
        }
    }
    walk("", &map, out);
    Ok(())
}

/// `key=value key2="quoted \"value\"" flag` pairs; a key without `=` has an empty value.
fn logfmt_labels(line: &str, out: &mut Vec<(String, String)>) -> Result<(), ()> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] <= b' ' {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] > b' ' && b[i] != b'=' && b[i] != b'"' {
            i += 1;
        }
        if i == start {
            return Err(());
        }
        let key = sanitize(&line[start..i]);
        if i == b.len() || b[i] != b'=' {
            if i < b.len() && b[i] == b'"' {
                return Err(());
            }
            out.push((key, String::new()));
            continue;
        }
        i += 1;
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut value = String::new();
            let mut closed = false;
            let mut chars = line[i..].char_indices();
            while let Some((k, c)) = chars.next() {
                match c {
                    '"' => {
                        i += k + 1;
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, 'r')) => value.push('\r'),
                        Some((_, c)) => value.push(c),
                        None => return Err(()),
                    },
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(());
            }
            out.push((key, value));
        } else {
            let vs = i;
            while i < b.len() && b[i] > b' ' {
                i += 1;
            }
            out.push((key, line[vs..i].to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::logql::eval::TopLines;
    use crate::query::logql::parse;

    fn run(q: &str, labels: &[(&str, &str)], line: &str) -> Option<(Vec<(String, String)>, String)> {
        let q = parse(q).unwrap();
        let labels = LabelSet::from_pairs(labels.iter().copied());
        q.process(&labels, line)
            .map(|p| (p.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), p.line.into_owned()))
    }

    #[test]
    fn a_regex_filter_lends_the_chunk_skipper_what_every_match_contains() {
        let needles = |q: &str| -> Vec<String> {
            parse(q).unwrap().needles().iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect()
        };
        assert_eq!(needles(r#"{s="x"} |~ "needle-7f3[a-z]""#), ["needle-7f3"]);
        assert_eq!(needles(r#"{s="x"} |~ "timeout after \d+ms""#), ["timeout after "]);
        assert_eq!(needles(r#"{s="x"} |= "GET" |~ "^status=5\d\d""#), ["GET", "status=5"]);
        assert!(needles(r#"{s="x"} |~ "(?i)error""#).is_empty(), "case folded: no byte string is certain");
        assert!(needles(r#"{s="x"} |~ "error|fatal""#).is_empty());
        assert!(needles(r#"{s="x"} |~ ".*x""#).is_empty());
        assert!(needles(r#"{s="x"} |~ "ab""#).is_empty(), "too short to be worth a pass");
        assert!(needles(r#"{s="x"} | json |~ "needle""#).is_empty(), "only filters before any parser");
        // Whatever the regex, a line it matches contains the needle.
        let q = parse(r#"{s="x"} |~ "conn(ection)? (reset|refused)""#).unwrap();
        let needle = String::from_utf8(q.needles()[0].to_vec()).unwrap();
        for line in ["connection reset", "a conn refused b", "conn reset"] {
            assert!(q.keeps(line) && line.contains(&needle), "{line} / {needle}");
        }
    }

    proptest::proptest! {
        /// Regexes built from pieces with a sample each: a line made of the samples (between any
        /// text) matches, and must contain the needle the regex lends the chunk skipper.
        #[test]
        fn a_line_a_regex_matches_contains_its_needle(
            pieces in proptest::collection::vec(0usize..9, 1..6),
            before in "[a-z ]{0,8}",
            after in "[a-z ]{0,8}",
        ) {
            const PIECES: [(&str, &str); 9] = [
                ("needle", "needle"), ("-7f3", "-7f3"), ("[a-z]", "q"), ("\\d+", "42"), ("(ab|cd)", "cd"),
                ("x?", ""), ("(?i:err)", "ErR"), (" at ", " at "), ("(reset|refused)", "refused"),
            ];
            let pattern: String = pieces.iter().map(|&i| PIECES[i].0).collect();
            let line = format!("{before}{}{after}", pieces.iter().map(|&i| PIECES[i].1).collect::<String>());
            let q = parse(&format!("{{s=\"x\"}} |~ `{pattern}`")).unwrap();
            proptest::prop_assert!(q.keeps(&line), "{} does not match {}", pattern, line);
            for needle in q.needles() {
                proptest::prop_assert!(
                    memchr::memmem::find(line.as_bytes(), needle).is_some(),
                    "{} lent {:?}, not in {}", pattern, String::from_utf8_lossy(needle), line
                );
            }
        }
    }

    #[test]
    fn top_lines_keep_the_first_in_either_direction_and_merge_like_one_reader() {
        let q = parse(r#"{a="b"} |= "x""#).unwrap();
        let labels = LabelSet::from_pairs([("a", "b")]);
        // Times 0..20 with two lines at time 7, written as order 7 and 100; "no" lines fail the filter.
        let lines: Vec<(i64, u64, String)> = (0..20)
            .map(|t| (t, t as u64, format!("x {t}")))
            .chain([(7, 100, "x 7 again".to_string()), (30, 30, "no".to_string())])
            .collect();
        for forward in [false, true] {
            let mut one = TopLines::new(&q, forward, 5);
            let (mut a, mut b) = (TopLines::new(&q, forward, 5), TopLines::new(&q, forward, 5));
            for (i, (t, order, line)) in lines.iter().enumerate() {
                one.add(&labels, *t, *order, line);
                if i % 2 == 0 { &mut a } else { &mut b }.add(&labels, *t, *order, line);
            }
            a.merge(b);
            let (whole, merged) = (one.into_streams(), a.into_streams());
            assert_eq!(whole, merged);
            let texts: Vec<&str> = whole[0].1.iter().map(|(_, l)| l.as_str()).collect();
            if forward {
                assert_eq!(texts, ["x 0", "x 1", "x 2", "x 3", "x 4"]);
            } else {
                assert_eq!(texts, ["x 19", "x 18", "x 17", "x 16", "x 15"]);
            }
        }
        let mut around_seven = TopLines::new(&q, true, 9);
        for (t, order, line) in &lines {
            around_seven.add(&labels, *t, *order, line);
        }
        let texts: Vec<String> = around_seven.into_streams()[0].1.iter().map(|(_, l)| l.clone()).collect();
        assert_eq!(&texts[7..], ["x 7", "x 7 again"], "equal times keep the order written");
    }

    #[test]
    fn selectors_and_line_filters_parse_and_filter() {
        let q =
            parse(r#"{service="api", stream=~"std(out|err)"} |= "error" != `debug` |~ "5\\d\\d" !~ "health""#).unwrap();
        assert_eq!(q.matchers.len(), 2);
        assert!(q.filters_only());
        assert!(q.keeps("GET /x 503 error"));
        assert!(!q.keeps("GET /x 503 error debug"));
        assert!(!q.keeps("GET /x 200 error"));
        assert!(!q.keeps("GET /healthz 500 error"));
    }

    #[test]
    fn json_extracts_nested_fields_and_label_filters_compare_them() {
        let line =
            r#"{"level":"error","status":503,"took":"1.5s","req":{"path":"/x","id":7},"tags":[1],"service":"s"}"#;
        let (labels, text) = run(r#"{app="a"} | json"#, &[("app", "a"), ("service", "api")], line).unwrap();
        let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("level"), Some("error"));
        assert_eq!(get("status"), Some("503"));
        assert_eq!(get("req_path"), Some("/x"));
        assert_eq!(get("req_id"), Some("7"));
        assert_eq!(get("tags"), None, "arrays are skipped");
        assert_eq!(get("service"), Some("api"), "a stream label is not overwritten");
        assert_eq!(get("service_extracted"), Some("s"));
        assert_eq!(text, line);
        assert!(run(r#"{app="a"} | json | status >= 500 and level="error""#, &[("app", "a")], line).is_some());
        assert!(run(r#"{app="a"} | json | status < 500 or level!="error""#, &[("app", "a")], line).is_none());
        assert!(run(r#"{app="a"} | json | took > 1s, took < 2000ms"#, &[("app", "a")], line).is_some());
        assert!(run(r#"{app="a"} | json | level=~"err.*" | req_path="/y""#, &[("app", "a")], line).is_none());
    }

    #[test]
    fn a_line_that_is_not_json_is_kept_and_marked_and_drop_removes_the_mark() {
        let (labels, _) = run(r#"{app="a"} | json"#, &[("app", "a")], "plain text").unwrap();
        assert!(labels.contains(&("__error__".into(), "JSONParserErr".into())));
        let (labels, _) = run(r#"{app="a"} | json | drop __error__"#, &[("app", "a")], "plain text").unwrap();
        assert_eq!(labels, [("app".to_string(), "a".to_string())]);
        assert!(run(r#"{app="a"} | json | __error__="""#, &[("app", "a")], "plain").is_none());
    }

    #[test]
    fn logfmt_reads_quoted_values_and_bare_keys() {
        let line = r#"ts=2024-01-01 level=warn msg="slow \"query\" here" dur=250ms cached"#;
        let (labels, _) = run(r#"{app="a"} | logfmt | dur > 200ms"#, &[("app", "a")], line).unwrap();
        let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("msg").as_deref(), Some(r#"slow "query" here"#));
        assert_eq!(get("level").as_deref(), Some("warn"));
        assert_eq!(get("cached"), None, "a bare key has an empty value, which is no label");
        let (labels, _) = run(r#"{app="a"} | logfmt"#, &[("app", "a")], r#"a="unterminated"#).unwrap();
        assert!(labels.contains(&("__error__".into(), "LogfmtParserErr".into())));
    }

    #[test]
    fn line_format_rewrites_the_line_and_later_filters_see_the_new_text() {
        let line = r#"{"level":"info","msg":"hello"}"#;
        let (_, text) =
            run(r#"{app="a"} | json | line_format "{{.level}}: {{ .msg }} {{.missing}}""#, &[("app", "a")], line)
                .unwrap();
        assert_eq!(text, "info: hello ");
        assert!(run(r#"{app="a"} | json | line_format "{{.msg}}" |= "{""#, &[("app", "a")], line).is_none());
        assert!(parse(r#"{a="b"} | line_format "{{ .x | upper }}""#).unwrap_err().msg.contains("not evaluated"));
    }

    #[test]
    fn regexp_keep_and_numeric_errors() {
        let (labels, _) =
            run(r#"{app="a"} | regexp "(?P<method>\\w+) (?P<path>\\S+)" | keep method"#, &[("app", "a")], "GET /x 200")
                .unwrap();
        assert_eq!(labels, [("method".to_string(), "GET".to_string())]);
        let (labels, _) = run(r#"{app="a"} | logfmt | n > 5"#, &[("app", "a")], "n=abc").unwrap();
        assert!(labels.contains(&("__error__".into(), "LabelFilterErr".into())));
        assert!(run(r#"{app="a"} | logfmt | size > 1KiB"#, &[("app", "a")], "size=2048").is_some());
    }

    #[test]
    fn errors_name_the_column() {
        assert_eq!(parse(r#"{service="api" |= "x""#).unwrap_err().col, 16);
        assert_eq!(parse(r#"{service="api"} | unwrap x"#).unwrap_err().col, 19);
        assert_eq!(parse(r#"{service="api"} | status >"#).unwrap_err().col, 27);
        assert_eq!(parse(r#"{service="api"} | status > "x""#).unwrap_err().col, 28);
        assert_eq!(parse(r#"{service=~"("}"#).unwrap_err().col, 11);
        assert!(parse(r#"{service=~".*"}"#).unwrap_err().msg.contains("at least one matcher"));
        assert!(parse("service").unwrap_err().msg.contains("stream selector"));
        assert!(parse(r#"{a="b"} | drop __error__, x |= "y""#).is_ok());
        assert!(parse(r#"{a="b"} | json | level="x" |= "y" | logfmt | line_format "{{.a}}""#).is_ok());
    }
}
