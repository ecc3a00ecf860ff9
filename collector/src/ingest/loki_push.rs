//! Loki's push API in: JSON or snappy protobuf bodies (optionally gzip- or deflate-encoded) become
//! log streams, each line checked as Loki's distributor checks it with its default limits.
//!
//! Wire types stop here; `api` answers the request and the store commits what this returns. What
//! Loki refuses, this refuses with Loki's message; the rest of the request is still stored.

use std::collections::BTreeMap;
use std::fmt;

use lookout_proto::loki::PushRequest;
use prost::Message;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use super::body::{decode_content, media_type, unsnappy, BodyError};
use super::convert::valid_label_name;
use crate::model::logs::{LogLine, LogStreamIn};
use crate::model::LabelSet;

/// Largest request body accepted as it arrives.
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// Loki's `max_line_size` default: a longer line is refused.
pub const MAX_LINE_BYTES: usize = 256 * 1024;
/// Loki's `max_label_names_per_series` default.
pub const MAX_LABEL_NAMES: usize = 15;
/// Loki's `reject_old_samples_max_age` default: a week.
pub const MAX_AGE_NS: i64 = 7 * 24 * 3600 * 1_000_000_000;
/// Loki's `creation_grace_period` default: ten minutes into the future.
pub const GRACE_NS: i64 = 10 * 60 * 1_000_000_000;
/// Loki 3's out-of-order window (half its `max_chunk_age` of 2 h): a line up to an hour older than
/// its stream's newest is accepted.
pub const OUT_OF_ORDER_WINDOW_NS: i64 = 3600 * 1_000_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("unsupported Content-Type {0:?}: send application/json or application/x-protobuf")]
    ContentType(String),
    #[error("body is not a Loki push request in JSON: {0}")]
    Json(String),
    #[error("body is not a Loki PushRequest (snappy protobuf): {0}")]
    Protobuf(String),
}

/// A decoded push: the streams to store, and what Loki would have refused.
#[derive(Debug, Default)]
pub struct Decoded {
    pub streams: Vec<LogStreamIn>,
    pub lines: u64,
    /// Lines refused (bad stream labels, too long, too old, too new).
    pub refused: u64,
    /// The first refusal in Loki's words, for the 400 answer.
    pub first_problem: Option<String>,
    /// Entries that carried structured metadata, which is accepted and not kept.
    pub with_metadata: u64,
}

/// Decodes a push body as `content_type` and `content_encoding` say, checking every line against
/// `now_ns` as Loki checks it.
pub fn decode(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    now_ns: i64,
) -> Result<Decoded, PushError> {
    let body = decode_content(body, content_encoding)?;
    let kind = media_type(content_type);
    let mut out = Decoded::default();
    match kind.as_deref() {
        Some("application/json") => {
            // Invalid UTF-8 becomes U+FFFD, as Go's JSON decoder (Loki's) makes it; a valid body is not copied.
            let text = String::from_utf8_lossy(&body);
            let req: JsonPush = serde_json::from_str(&text).map_err(|e| PushError::Json(e.to_string()))?;
            for s in req.streams {
                let labels: Result<LabelSet, String> =
                    check_labels(s.stream.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                out.add(labels, s.values.into_iter().map(|e| (e.time_ns, e.line, e.metadata)), now_ns);
            }
        }
        // Loki takes a body without a Content-Type as protobuf.
        None | Some("application/x-protobuf") | Some("") => {
            let raw = unsnappy(&body)?;
            let req = PushRequest::decode(raw.as_slice()).map_err(|e| PushError::Protobuf(e.to_string()))?;
            for s in req.streams {
                let labels = parse_labels(&s.labels);
                let entries = s.entries.into_iter().map(|e| {
                    let ts = e
                        .timestamp
                        .map_or(0, |t| t.seconds.saturating_mul(1_000_000_000).saturating_add(i64::from(t.nanos)));
                    let line = match String::from_utf8(e.line) {
                        Ok(s) => s,
                        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    };
                    (ts, line, !e.structured_metadata.is_empty())
                });
                out.add(labels, entries, now_ns);
            }
        }
        Some(other) => return Err(PushError::ContentType(other.to_string())),
    }
    Ok(out)
}

impl Decoded {
    fn add(
        &mut self,
        labels: Result<LabelSet, String>,
        entries: impl ExactSizeIterator<Item = (i64, String, bool)>,
        now_ns: i64,
    ) {
        if entries.len() == 0 {
            return;
        }
        let labels = match labels {
            Ok(l) => l,
            Err(problem) => {
                self.refuse(entries.len() as u64, || problem);
                return;
            }
        };
        let mut lines = Vec::with_capacity(entries.len());
        for (time_ns, line, metadata) in entries {
            self.with_metadata += u64::from(metadata);
            if line.len() > MAX_LINE_BYTES {
                self.refuse(1, || {
                    format!(
                        "max entry size '{MAX_LINE_BYTES}' bytes exceeded for stream '{labels}' while adding an entry with length '{}' bytes",
                        line.len()
                    )
                });
            } else if time_ns < now_ns.saturating_sub(MAX_AGE_NS) {
                self.refuse(1, || {
                    format!(
                        "entry for stream '{labels}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                        rfc3339(time_ns),
                        rfc3339(now_ns - MAX_AGE_NS)
                    )
                });
            } else if time_ns > now_ns.saturating_add(GRACE_NS) {
                self.refuse(1, || format!("entry for stream '{labels}' has timestamp too new: {}", rfc3339(time_ns)));
            } else {
                lines.push(LogLine { time_ns, line });
            }
        }
        self.lines += lines.len() as u64;
        if !lines.is_empty() {
            self.streams.push(LogStreamIn { labels, lines });
        }
    }

    fn refuse(&mut self, n: u64, problem: impl FnOnce() -> String) {
        self.refused += n;
        if self.first_problem.is_none() {
            self.first_problem = Some(problem());
        }
    }
}

/// Encodes streams as a push body, as a Loki client sends it: `PushRequest` protobuf in a snappy
/// block (`json: false`), or Loki's JSON. For the Loki exporter and for tests.
pub fn encode(streams: &[(&LabelSet, &[LogLine])], json: bool) -> Vec<u8> {
    if json {
        let streams: Vec<serde_json::Value> = streams
            .iter()
            .map(|(labels, lines)| {
                let stream: serde_json::Map<String, serde_json::Value> =
                    labels.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect();
                let values: Vec<[String; 2]> = lines.iter().map(|l| [l.time_ns.to_string(), l.line.clone()]).collect();
                serde_json::json!({ "stream": stream, "values": values })
            })
            .collect();
        return serde_json::to_vec(&serde_json::json!({ "streams": streams })).expect("JSON values serialize");
    }
    use lookout_proto::loki::{Entry, Stream, Timestamp};
    let streams = streams
        .iter()
        .map(|(labels, lines)| Stream {
            labels: labels.to_string(),
            entries: lines
                .iter()
                .map(|l| Entry {
                    timestamp: Some(Timestamp {
                        seconds: l.time_ns.div_euclid(1_000_000_000),
                        nanos: l.time_ns.rem_euclid(1_000_000_000) as i32,
                    }),
                    line: l.line.clone().into_bytes(),
                    structured_metadata: Vec::new(),
                })
                .collect(),
            hash: 0,
        })
        .collect();
    let raw = PushRequest { streams }.encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).expect("snappy compresses any input below 4 GiB")
}

/// A time as Loki writes it in its messages (RFC 3339, UTC).
pub fn rfc3339(time_ns: i64) -> String {
    let t = std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::from_nanos(time_ns.max(0) as u64))
        .unwrap_or(std::time::UNIX_EPOCH);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// A stream's labels as Loki checks them: at least one, valid names, no name twice, at most 15.
fn check_labels<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Result<LabelSet, String> {
    let labels = LabelSet::from_pairs(pairs.clone().filter(|(_, v)| !v.is_empty()));
    if labels.is_empty() {
        return Err("error at least one label pair is required per stream".to_string());
    }
    if let Some((name, _)) = pairs.clone().find(|(n, _)| !valid_label_name(n)) {
        return Err(format!("error parsing labels '{labels}': invalid label name {name:?}"));
    }
    if labels.len() != pairs.clone().filter(|(_, v)| !v.is_empty()).count() {
        return Err(format!("error parsing labels '{labels}': duplicate label name"));
    }
    if labels.len() > MAX_LABEL_NAMES {
        return Err(format!("entry for stream '{labels}' has {} label names; limit {MAX_LABEL_NAMES}", labels.len()));
    }
    Ok(labels)
}

/// Parses a protobuf stream's labels, `{name="value", ...}` in Prometheus's text form (Go escapes
/// in the values), through the LogQL selector parser: only `=` matchers are labels.
fn parse_labels(text: &str) -> Result<LabelSet, String> {
    let problem = |detail: String| format!("error parsing labels '{text}': {detail}");
    let q = crate::query::logql::parse(text).map_err(|e| problem(e.to_string()))?;
    if !q.stages.is_empty() {
        return Err(problem("labels only, in braces".to_string()));
    }
    if q.matchers.iter().any(|m| !matches!(m.op, crate::model::MatchOp::Equal)) {
        return Err(problem("labels are name=\"value\"".to_string()));
    }
    check_labels(q.matchers.iter().map(|m| (m.name.as_str(), m.value.as_str())))
}

#[derive(Deserialize)]
struct JsonPush {
    #[serde(default)]
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<JsonEntry>,
}

/// `["<unix ns as a string>", "<line>"]`, or with a third element, the structured metadata.
struct JsonEntry {
    time_ns: i64,
    line: String,
    metadata: bool,
}

impl<'de> Deserialize<'de> for JsonEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an entry [\"<unix epoch in nanoseconds>\", \"<log line>\", {structured metadata}]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonEntry, A::Error> {
                let ts: NanosText = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let line: String = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let metadata = seq.next_element::<BTreeMap<String, String>>()?;
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(4, &self));
                }
                Ok(JsonEntry { time_ns: ts.0, line, metadata: metadata.is_some_and(|m| !m.is_empty()) })
            }
        }
        d.deserialize_seq(V)
    }
}

/// Nanoseconds since the epoch, as Loki's JSON carries them: a string of digits.
struct NanosText(i64);

impl<'de> Deserialize<'de> for NanosText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NanosText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a timestamp in nanoseconds since the epoch, as a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NanosText, E> {
                v.parse::<i64>()
                    .map(NanosText)
                    .map_err(|_| E::custom(format!("timestamp {v:?} is not an integer of nanoseconds")))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000_000_000_000;

    fn json(body: &str) -> Decoded {
        decode(body.as_bytes(), Some("application/json"), None, NOW).unwrap()
    }

    #[test]
    fn json_streams_become_stored_lines_with_their_labels() {
        let d = json(&format!(
            r#"{{"streams":[{{"stream":{{"app":"web","env":"prod"}},"values":[["{NOW}","one"],["{}","two",{{"trace_id":"abc"}}]]}},
                {{"stream":{{"app":"idle"}},"values":[]}}]}}"#,
            NOW + 1
        ));
        assert_eq!(d.streams.len(), 1, "an empty stream stores nothing");
        let s = &d.streams[0];
        assert_eq!(s.labels, LabelSet::from_pairs([("app", "web"), ("env", "prod")]));
        assert_eq!(
            s.lines,
            vec![LogLine { time_ns: NOW, line: "one".into() }, LogLine { time_ns: NOW + 1, line: "two".into() }]
        );
        assert_eq!((d.lines, d.refused, d.with_metadata), (2, 0, 1));
    }

    #[test]
    fn lines_loki_refuses_are_refused_in_its_words_and_the_rest_kept() {
        let long = "x".repeat(1 << 20);
        let d = json(&format!(
            r#"{{"streams":[{{"stream":{{"app":"web"}},"values":[["{NOW}","{long}"],["{NOW}","ok"],["1","ancient"],["{}","future"]]}},
                {{"stream":{{}},"values":[["{NOW}","nameless"]]}}]}}"#,
            NOW + 3_600_000_000_000
        ));
        assert_eq!((d.lines, d.refused), (1, 4));
        assert_eq!(
            d.first_problem.unwrap(),
            "max entry size '262144' bytes exceeded for stream '{app=\"web\"}' while adding an entry with length '1048576' bytes"
        );
        let old =
            json(&format!(r#"{{"streams":[{{"stream":{{"a":"b"}},"values":[["{}","x"]]}}]}}"#, NOW - MAX_AGE_NS - 1));
        assert!(old.first_problem.unwrap().starts_with("entry for stream '{a=\"b\"}' has timestamp too old: "));
        let nameless = json(&format!(r#"{{"streams":[{{"stream":{{}},"values":[["{NOW}","x"]]}}]}}"#));
        assert_eq!(nameless.first_problem.unwrap(), "error at least one label pair is required per stream");
    }

    #[test]
    fn invalid_utf8_is_replaced_as_loki_replaces_it() {
        let mut body = format!(r#"{{"streams":[{{"stream":{{"a":"b"}},"values":[["{NOW}","bad "#).into_bytes();
        body.extend_from_slice(b"\xff\xfe end\"]]}]}");
        let d = decode(&body, Some("application/json; charset=utf-8"), None, NOW).unwrap();
        assert_eq!(d.streams[0].lines[0].line, "bad \u{fffd}\u{fffd} end");
    }

    #[test]
    fn bad_bodies_are_errors_that_say_what_was_expected() {
        assert!(matches!(decode(b"{", Some("application/json"), None, NOW), Err(PushError::Json(_))));
        let e =
            decode(br#"{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}"#, Some("application/json"), None, NOW);
        assert!(matches!(e, Err(PushError::Json(m)) if m.contains("nanoseconds")), "a number is not Loki's timestamp");
        assert!(matches!(decode(b"x", Some("text/plain"), None, NOW), Err(PushError::ContentType(_))));
        assert!(matches!(
            decode(b"x", Some("application/x-protobuf"), None, NOW),
            Err(PushError::Body(BodyError::Compression { .. }))
        ));
        assert!(matches!(decode(b"x", None, Some("br"), NOW), Err(PushError::Body(BodyError::Encoding(_)))));
        assert!(matches!(
            decode(b"x", Some("application/json"), Some("gzip"), NOW),
            Err(PushError::Body(BodyError::Compression { .. }))
        ));
    }

    fn protobuf(labels: &str, lines: &[(i64, &[u8])]) -> Vec<u8> {
        use lookout_proto::loki::{Entry, Stream, Timestamp};
        let entries = lines
            .iter()
            .map(|(t, l)| Entry {
                timestamp: Some(Timestamp { seconds: t / 1_000_000_000, nanos: (t % 1_000_000_000) as i32 }),
                line: l.to_vec(),
                structured_metadata: vec![],
            })
            .collect();
        let raw = PushRequest { streams: vec![Stream { labels: labels.into(), entries, hash: 0 }] }.encode_to_vec();
        snap::raw::Encoder::new().compress_vec(&raw).unwrap()
    }

    #[test]
    fn protobuf_pushes_parse_their_label_text_and_keep_nanoseconds() {
        let body = protobuf(r#"{job="varlogs", path="/var/log/a \"b\""}"#, &[(NOW + 7, b"line"), (NOW + 8, b"\xffx")]);
        let d = decode(&body, Some("application/x-protobuf"), None, NOW).unwrap();
        let s = &d.streams[0];
        assert_eq!(s.labels, LabelSet::from_pairs([("job", "varlogs"), ("path", "/var/log/a \"b\"")]));
        assert_eq!(s.lines[0], LogLine { time_ns: NOW + 7, line: "line".into() });
        assert_eq!(s.lines[1].line, "\u{fffd}x");
        for bad in [r#"{job=~"x"}"#, "job=\"x\"", r#"{job="x"} |= "y""#, r#"{1x="y"}"#] {
            let d = decode(&protobuf(bad, &[(NOW, b"l")]), None, None, NOW).unwrap();
            assert_eq!((d.lines, d.refused), (0, 1), "{bad}");
            assert!(d.first_problem.unwrap().starts_with("error parsing labels"), "{bad}");
        }
    }

    #[test]
    fn what_encode_writes_decodes_to_the_same_streams() {
        let labels = LabelSet::from_pairs([("app", "web"), ("path", "a \"b\" \\ c")]);
        let lines = vec![LogLine { time_ns: NOW - 5, line: "x".into() }, LogLine { time_ns: NOW, line: "ü y".into() }];
        for (json, ct) in [(false, "application/x-protobuf"), (true, "application/json")] {
            let d = decode(&encode(&[(&labels, &lines)], json), Some(ct), None, NOW).unwrap();
            assert_eq!(d.streams, vec![LogStreamIn { labels: labels.clone(), lines: lines.clone() }], "json: {json}");
        }
    }

    #[test]
    fn gzip_and_deflate_bodies_are_unwrapped_first() {
        use std::io::Write;
        let body = format!(r#"{{"streams":[{{"stream":{{"a":"b"}},"values":[["{NOW}","zipped"]]}}]}}"#);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(body.as_bytes()).unwrap();
        let d = decode(&gz.finish().unwrap(), Some("application/json"), Some("gzip"), NOW).unwrap();
        assert_eq!(d.streams[0].lines[0].line, "zipped");
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&protobuf(r#"{a="b"}"#, &[(NOW, b"deflated")])).unwrap();
        let d = decode(&z.finish().unwrap(), Some("application/x-protobuf"), Some("deflate"), NOW).unwrap();
        assert_eq!(d.streams[0].lines[0].line, "deflated");
    }

    proptest! {
        #[test]
        fn no_body_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), kind in 0..3usize) {
            let ct = [Some("application/json"), Some("application/x-protobuf"), None][kind];
            let _ = decode(&bytes, ct, None, NOW);
            let _ = decode(&bytes, ct, Some("gzip"), NOW);
        }

        #[test]
        fn any_label_text_is_parsed_or_refused(text in "\\PC{0,40}") {
            let _ = parse_labels(&text);
        }
    }
}
