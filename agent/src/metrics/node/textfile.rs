//! node_exporter's textfile collector: the samples of the `*.prom` files that cron jobs and scripts
//! write into one directory (Prometheus's text format), each file's mtime, and whether any failed.
//!
//! The parser is the agent's own: the text format parser on crates.io (`prometheus-parse`) folds
//! histograms into values, passes over lines it cannot read and gives no line numbers, where a file
//! with one bad line must be refused whole, saying which line and why, as node_exporter refuses it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;

use crate::model::{intern_within, Sample};

/// A file larger than this is refused (no hand-written metrics file comes close; a runaway script's
/// output must not become the agent's memory).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Metric and label names the textfiles may add to the agent's interned names, for the process's
/// life: a script that puts a timestamp in a name would otherwise grow the agent without bound.
pub const MAX_NAMES: usize = 10_000;

/// Labels the agent sets on every host series: a file's own are renamed `exported_<name>`, as a
/// Prometheus scrape without `honor_labels` renames them.
const IDENTITY: [&str; 3] = ["host", "job", "instance"];

/// A sample's labels, sorted by name.
pub type Labels = Vec<(String, String)>;

/// One sample line of a textfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Why a file was refused: its line (1-based) and what is wrong there.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct ParseError {
    pub line: usize,
    pub why: String,
}

fn metric_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn label_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (!first && c.is_ascii_digit())
}

/// The longest prefix of `s` that is a name under `ok`, and the rest.
fn take_name(s: &str, ok: fn(char, bool) -> bool) -> (&str, &str) {
    let end = s.char_indices().find(|&(i, c)| !ok(c, i == 0)).map_or(s.len(), |(i, _)| i);
    s.split_at(end)
}

/// Parses a whole file of Prometheus's text format (0.0.4): `# HELP` and `# TYPE` lines, comments,
/// and `name{label="value",...} value` lines. Client-side timestamps are refused, as node_exporter
/// refuses them in textfiles; so are a label named twice and a series given twice.
pub fn parse(text: &str) -> Result<Vec<Parsed>, ParseError> {
    let mut out = Vec::new();
    let mut seen: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let err = |why: String| ParseError { line: i + 1, why };
        let line = raw.trim_matches([' ', '\t', '\r']);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            match words.first() {
                Some(&"HELP") | Some(&"TYPE") if words.len() < 2 => {
                    return Err(err(format!("{} without a metric name", words[0])))
                }
                Some(&kind @ ("HELP" | "TYPE")) => {
                    if !take_name(words[1], metric_name_char).1.is_empty() || words[1].is_empty() {
                        return Err(err(format!("{kind} of an invalid metric name {:?}", words[1])));
                    }
                    if kind == "TYPE"
                        && !matches!(words.get(2), Some(&("counter" | "gauge" | "histogram" | "summary" | "untyped")))
                    {
                        return Err(err(format!("unknown metric type {:?}", words.get(2).unwrap_or(&""))));
                    }
                }
                _ => {} // a comment
            }
            continue;
        }
        let (name, rest) = take_name(line, metric_name_char);
        if name.is_empty() {
            return Err(err(format!("expected a metric name, found {:?}", first_chars(line))));
        }
        let (mut labels, rest) = match rest.strip_prefix('{') {
            Some(body) => parse_labels(body).map_err(err)?,
            None => (Vec::new(), rest),
        };
        if !rest.starts_with([' ', '\t']) {
            return Err(err(format!("expected a space and a value after {name}, found {:?}", first_chars(rest))));
        }
        let mut fields = rest.split([' ', '\t']).filter(|f| !f.is_empty());
        let value = fields.next().ok_or_else(|| err(format!("{name} has no value")))?;
        let value = parse_value(value).ok_or_else(|| err(format!("{value:?} is not a number")))?;
        if fields.next().is_some() {
            return Err(err("client-side timestamps are not supported in textfiles".into()));
        }
        labels.sort();
        if labels.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(err(format!("{name} names a label twice")));
        }
        if !seen.insert((name.to_string(), labels.clone())) {
            return Err(err(format!("{name} with these labels is given twice")));
        }
        out.push(Parsed { name: name.to_string(), labels, value });
    }
    Ok(out)
}

fn first_chars(s: &str) -> String {
    s.chars().take(20).collect()
}

/// A value as Go's `ParseFloat` (which Prometheus's parser uses) reads the usual spellings: decimals,
/// exponents, and `NaN`, `Inf`, `Infinity` in any case with an optional sign, as Rust's parser does.
fn parse_value(s: &str) -> Option<f64> {
    s.parse().ok()
}

/// The labels after `{` up to `}`, and what follows the `}`.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let (name, rest) = take_name(s, label_name_char);
        if name.is_empty() {
            return Err(format!("expected a label name or '}}', found {:?}", first_chars(s)));
        }
        let rest = rest.trim_start_matches([' ', '\t']);
        let rest = rest.strip_prefix('=').ok_or_else(|| format!("expected '=' after label {name}"))?;
        let rest = rest.trim_start_matches([' ', '\t']);
        let mut chars =
            rest.strip_prefix('"').ok_or_else(|| format!("expected '\"' to open label {name}'s value"))?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {name}'s value is not closed")),
                Some((i, '"')) => break i + 1,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("invalid escape {:?} in label {name}'s value", other.map(|(_, c)| c))),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        s = rest[end + 1..].trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {name}, found {:?}", first_chars(s)));
        }
    }
}

/// How many of [`MAX_NAMES`] the textfiles have used.
static NAMES_USED: AtomicUsize = AtomicUsize::new(0);

/// Reads every `*.prom` file directly in `dir` (in name order) into `out`, with
/// `node_textfile_mtime_seconds{file}` for each file read and `node_textfile_scrape_error` (1 when a
/// file or the directory could not be read). A refused file adds none of its samples and is
/// returned with its error. No directory configured: only `node_textfile_scrape_error 0`.
pub fn read(dir: Option<&Path>, out: &mut Vec<Sample>) -> Vec<(PathBuf, String)> {
    let mut problems = Vec::new();
    if let Some(dir) = dir {
        match std::fs::read_dir(dir) {
            Err(e) => problems.push((dir.to_path_buf(), format!("reading the directory: {e}"))),
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "prom"))
                    .collect();
                files.sort();
                let mut seen = HashSet::new();
                for path in files {
                    match read_file(&path, &mut seen) {
                        Ok((samples, mtime)) => {
                            out.extend(samples);
                            let file = vec![("file", path.display().to_string())];
                            out.push(Sample::with("node_textfile_mtime_seconds", file, mtime));
                        }
                        Err(why) => problems.push((path, why)),
                    }
                }
            }
        }
    }
    out.push(Sample::new("node_textfile_scrape_error", if problems.is_empty() { 0.0 } else { 1.0 }));
    problems
}

/// One file's samples and mtime (seconds), or why it was refused. `seen` holds the series of the
/// files before it: a series two files give is refused in the second.
fn read_file(path: &Path, seen: &mut HashSet<(String, Vec<(String, String)>)>) -> Result<(Vec<Sample>, f64), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("{} bytes, over the {MAX_FILE_BYTES} a textfile may have", meta.len()));
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(&bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let parsed = parse(text).map_err(|e| e.to_string())?;
    if let Some(p) = parsed.iter().find(|p| seen.contains(&(p.name.clone(), p.labels.clone()))) {
        return Err(format!("{} with the same labels is also in an earlier file", p.name));
    }
    let mut samples = Vec::with_capacity(parsed.len());
    for p in &parsed {
        let name = intern_within(&p.name, &NAMES_USED, MAX_NAMES).ok_or_else(too_many_names)?;
        let mut labels = Vec::with_capacity(p.labels.len());
        for (k, v) in &p.labels {
            let k = if IDENTITY.contains(&k.as_str()) { format!("exported_{k}") } else { k.clone() };
            labels.push((intern_within(&k, &NAMES_USED, MAX_NAMES).ok_or_else(too_many_names)?, v.clone()));
        }
        samples.push(Sample::with(name, labels, p.value));
    }
    seen.extend(parsed.into_iter().map(|p| (p.name, p.labels)));
    Ok((samples, mtime))
}

fn too_many_names() -> String {
    format!("the textfiles have used the {MAX_NAMES} metric and label names the agent keeps for them")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_scripts_write() {
        let text = "# HELP backup_last_success_seconds When the backup last succeeded.\n\
                    # TYPE backup_last_success_seconds gauge\n\
                    backup_last_success_seconds 1.7e9\n\
                    \n\
                    # a comment\n\
                    backup_bytes{target=\"s3\", kind=\"full\",} 12345\n\
                    job_up{job=\"nightly\",note=\"a \\\"quoted\\\" \\\\ and\\nnewline\"} +Inf\n\
                    job_nan NaN\n\
                    job_down -inf\n";
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 5);
        assert_eq!(p[4].value, f64::NEG_INFINITY);
        assert_eq!(p[0], Parsed { name: "backup_last_success_seconds".into(), labels: vec![], value: 1.7e9 });
        assert_eq!(p[1].labels, vec![("kind".into(), "full".into()), ("target".into(), "s3".into())]);
        assert_eq!(p[2].labels[1].1, "a \"quoted\" \\ and\nnewline");
        assert_eq!(p[2].value, f64::INFINITY);
        assert!(p[3].value.is_nan());
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number_and_why() {
        let cases = [
            ("ok 1\n1bad 2\n", 2, "expected a metric name"),
            ("x{a=\"1\"} 1 1700000000000\n", 1, "timestamps"),
            ("x{a=\"1\",a=\"2\"} 1\n", 1, "twice"),
            ("x 1\nx 2\n", 2, "given twice"),
            ("x{a=\"1} 1\n", 1, "not closed"),
            ("x{a=\"\\t\"} 1\n", 1, "invalid escape"),
            ("x{a=1} 1\n", 1, "'\"'"),
            ("x one\n", 1, "not a number"),
            ("x\n", 1, "expected a space and a value"),
            ("# TYPE x gauges\n", 1, "unknown metric type"),
            ("x{a=\"1\" b=\"2\"} 1\n", 1, "expected ',' or '}'"),
        ];
        for (text, line, why) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.why.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_directory_of_files_gives_their_samples_mtimes_and_the_error_flag() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.prom"), "cron_ok{job=\"backup\"} 1\n").unwrap();
        std::fs::write(dir.path().join("b.prom"), "broken{\n").unwrap();
        std::fs::write(dir.path().join("c.prom"), "cron_ok{job=\"backup\"} 2\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not read\n").unwrap();
        let mut out = Vec::new();
        let problems = read(Some(dir.path()), &mut out);
        let names: Vec<&str> = out.iter().map(|s| s.name).collect();
        assert_eq!(names, ["cron_ok", "node_textfile_mtime_seconds", "node_textfile_scrape_error"]);
        // The file's own `job` is renamed, as a scrape renames it.
        assert_eq!(out[0].labels, vec![("exported_job", "backup".to_string())]);
        assert_eq!(out[1].labels[0].1, dir.path().join("a.prom").display().to_string());
        assert!(out[1].value > 1.7e9);
        assert_eq!(out[2].value, 1.0);
        let refused: Vec<String> =
            problems.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(refused, ["b.prom", "c.prom"], "{problems:?}");

        std::fs::remove_file(dir.path().join("b.prom")).unwrap();
        std::fs::remove_file(dir.path().join("c.prom")).unwrap();
        let mut out = Vec::new();
        assert!(read(Some(dir.path()), &mut out).is_empty());
        assert_eq!(out.last().unwrap().value, 0.0);
        let mut out = Vec::new();
        assert_eq!(read(Some(&dir.path().join("missing")), &mut out).len(), 1);
        assert_eq!(out.last().unwrap().value, 1.0);
        let mut out = Vec::new();
        assert!(read(None, &mut out).is_empty());
        assert_eq!(out.len(), 1);
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}"
    }

    proptest! {
        /// Whatever the bytes, the parser answers (no panic), and what it writes back reads the same.
        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn written_samples_read_back(samples in proptest::collection::vec(
            (name(), proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "\\PC{0,12}", 0..4), -1e12f64..1e12),
            0..8,
        )) {
            let mut text = String::new();
            let mut want = Vec::new();
            let mut seen = HashSet::new();
            for (name, labels, value) in samples {
                let labels: Vec<(String, String)> = labels.into_iter().collect();
                if !seen.insert((name.clone(), labels.clone())) {
                    continue;
                }
                let body: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
                    .collect();
                text.push_str(&format!("{name}{{{}}} {value:e}\n", body.join(",")));
                want.push(Parsed { name, labels, value });
            }
            prop_assert_eq!(parse(&text).unwrap(), want);
        }
    }
}
