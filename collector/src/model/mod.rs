//! Plain data types shared by the store and the query engine: label sets and sample series.
//! No IO and no wire types here; `ingest` converts protobuf into these at its edge.

pub mod decision;
pub mod logs;

use std::fmt;
use std::hash::{Hash, Hasher};

/// The reserved label that carries a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// A series identity: label pairs sorted by name, names unique, including `__name__`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelSet(Vec<(String, String)>);

/// Hashes label pairs the same way whether they are owned (`LabelSet`) or borrowed (`LabelView`), so
/// a map keyed by `LabelSet` can be searched with a view that allocated no strings.
fn hash_pairs<'a, H: Hasher>(pairs: impl Iterator<Item = (&'a str, &'a str)>, h: &mut H) {
    let mut n = 0usize;
    for (k, v) in pairs {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xff);
        n += 1;
    }
    h.write_usize(n);
}

impl Hash for LabelSet {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_pairs(self.iter(), h);
    }
}

/// A label set borrowed from elsewhere (a group's labels plus one series' own), for looking up a
/// series that is probably known without building its owned `LabelSet`.
#[derive(Debug)]
pub struct LabelView<'a>(Vec<(&'a str, &'a str)>);

impl<'a> LabelView<'a> {
    /// `common`'s labels with `own` laid over them (an own label replaces a common one of the same
    /// name; an empty value removes it), in name order.
    pub fn merge(common: &'a LabelSet, own: &'a [(String, String)]) -> Self {
        let mut v: Vec<(&str, &str)> = Vec::with_capacity(common.len() + own.len());
        v.extend(common.iter());
        for (k, val) in own {
            match v.binary_search_by(|(n, _)| n.cmp(&k.as_str())) {
                Ok(i) => v[i].1 = val,
                Err(i) => v.insert(i, (k, val)),
            }
        }
        v.retain(|(_, val)| !val.is_empty());
        LabelView(v)
    }

    pub fn to_label_set(&self) -> LabelSet {
        LabelSet(self.0.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

impl Hash for LabelView<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_pairs(self.0.iter().copied(), h);
    }
}

impl hashbrown::Equivalent<LabelSet> for LabelView<'_> {
    fn equivalent(&self, key: &LabelSet) -> bool {
        self.0.len() == key.0.len() && self.0.iter().zip(&key.0).all(|((a, b), (c, d))| *a == c && *b == d)
    }
}

impl LabelSet {
    /// Builds a label set from pairs in any order; later duplicates of a name win and empty values are
    /// dropped, as Prometheus treats an empty label value as an absent label.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut v: Vec<(String, String)> = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        // Stable sort keeps input order among equal names, so the last one written wins after dedup.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
        for (k, val) in v {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = val,
                _ => out.push((k, val)),
            }
        }
        out.retain(|(_, v)| !v.is_empty());
        LabelSet(out)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)).ok().map(|i| self.0[i].1.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets (or with an empty value, removes) one label, keeping the order.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name.to_string(), value.to_string())),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.set(name, "");
    }

    /// The same labels without `__name__`, as PromQL functions and arithmetic return them.
    pub fn without_name(&self) -> LabelSet {
        LabelSet(self.0.iter().filter(|(k, _)| k != METRIC_NAME).cloned().collect())
    }

    /// Keeps only the labels `keep` says yes to.
    pub fn filtered(&self, mut keep: impl FnMut(&str) -> bool) -> LabelSet {
        LabelSet(self.0.iter().filter(|(k, _)| keep(k)).cloned().collect())
    }

    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.0
    }
}

impl fmt::Display for LabelSet {
    /// Prometheus's text form: `name{a="x", b="y"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.metric_name() {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// Samples of one series in time order: milliseconds since the epoch and values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    pub ts: Vec<i64>,
    pub values: Vec<f64>,
}

/// One series as a query sees it: its labels and its samples in the requested time range.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesData {
    pub labels: LabelSet,
    pub samples: Samples,
}

/// A sample value as Prometheus prints it (in JSON and in `count_values` labels): Go's
/// `strconv.FormatFloat(v, 'f', -1, 64)`, with `NaN`, `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    let mut s = String::new();
    write_value(&mut s, v);
    s
}

/// `format_value` appended to `out`, for encoders that write many values.
pub fn write_value(out: &mut String, v: f64) {
    use std::fmt::Write;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Rust's shortest round-trip form never uses an exponent, like Go's 'f' with precision -1.
        let _ = write!(out, "{v}");
    }
}

/// Stale marker: Prometheus's NaN with this exact bit pattern means "the series ended here".
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// How a label matcher compares: PromQL's `=`, `!=`, `=~`, `!~`.
#[derive(Clone, Debug)]
pub enum MatchOp {
    Equal,
    NotEqual,
    /// Fully anchored, as PromQL regexes are.
    Regex(regex::Regex),
    NotRegex(regex::Regex),
}

/// One label matcher of a selector. A label the series lacks compares as the empty string.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub op: MatchOp,
}

impl Matcher {
    pub fn equal(name: &str, value: &str) -> Self {
        Matcher { name: name.to_string(), value: value.to_string(), op: MatchOp::Equal }
    }

    /// Builds a matcher; regexes are anchored at both ends as Prometheus does.
    pub fn new(name: &str, op: &str, value: &str) -> Result<Self, regex::Error> {
        let anchored = || regex::Regex::new(&format!("^(?s:{value})$"));
        let op = match op {
            "=" => MatchOp::Equal,
            "!=" => MatchOp::NotEqual,
            "=~" => MatchOp::Regex(anchored()?),
            "!~" => MatchOp::NotRegex(anchored()?),
            other => return Err(regex::Error::Syntax(format!("unknown match operator {other:?}"))),
        };
        Ok(Matcher { name: name.to_string(), value: value.to_string(), op })
    }

    pub fn matches(&self, value: &str) -> bool {
        match &self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex(r) => r.is_match(value),
            MatchOp::NotRegex(r) => !r.is_match(value),
        }
    }

    /// Whether a series with these labels passes this matcher.
    pub fn matches_labels(&self, labels: &LabelSet) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_pairs_sorts_dedups_and_drops_empty_values() {
        let l = LabelSet::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![("a", "1"), ("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn a_view_hashes_and_compares_like_the_label_set_it_stands_for() {
        use std::hash::BuildHasher;
        let common = LabelSet::from_pairs([("host", "h"), ("job", "x"), ("zone", "")]);
        let own = vec![("__name__".to_string(), "up".to_string()), ("job".to_string(), "y".to_string())];
        let view = LabelView::merge(&common, &own);
        let owned = LabelSet::from_pairs([("__name__", "up"), ("host", "h"), ("job", "y")]);
        assert_eq!(view.to_label_set(), owned);
        let s = std::collections::hash_map::RandomState::new();
        assert_eq!(s.hash_one(&view), s.hash_one(&owned));
        assert!(hashbrown::Equivalent::equivalent(&view, &owned));
    }

    #[test]
    fn display_is_prometheus_text_form() {
        let l = LabelSet::from_pairs([("__name__", "up"), ("job", "x")]);
        assert_eq!(l.to_string(), "up{job=\"x\"}");
    }
}
