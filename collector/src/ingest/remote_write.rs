//! Prometheus remote-write 1.0 in: a snappy-compressed protobuf `WriteRequest` becomes series groups.
//! Wire types stop here; `api` answers the HTTP request and the store commits what this returns.

use lookout_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;

use crate::model::{LabelSet, Samples, METRIC_NAME};
use crate::store::SeriesGroup;

use super::convert::{valid_label_name, valid_metric_name};

/// Largest request body accepted, compressed; Prometheus sends far less (500–2,000 samples a request).
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// Largest decompressed body: a snappy header may claim anything, so it is checked before allocating.
const MAX_DECODED_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RemoteWriteError {
    #[error("body is not snappy-compressed (block format): {0}")]
    Snappy(String),
    #[error("decompressed body of {0} bytes exceeds the limit of {MAX_DECODED_BYTES}")]
    TooLarge(usize),
    #[error("body is not a remote-write WriteRequest: {0}")]
    Protobuf(String),
}

/// A decoded request: every valid series, and what was wrong with the others.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One group per series; remote-write shares no labels between series.
    pub groups: Vec<SeriesGroup>,
    pub samples: u64,
    pub invalid_series: u64,
    /// The first invalid series and why, for the error answer and the log line.
    pub first_problem: String,
}

pub fn decode(body: &[u8]) -> Result<Decoded, RemoteWriteError> {
    let len = snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    if len > MAX_DECODED_BYTES {
        return Err(RemoteWriteError::TooLarge(len));
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    let req = WriteRequest::decode(raw.as_slice()).map_err(|e| RemoteWriteError::Protobuf(e.to_string()))?;

    let mut out = Decoded { groups: Vec::with_capacity(req.timeseries.len()), ..Decoded::default() };
    for ts in req.timeseries {
        if ts.samples.is_empty() {
            // Histogram-only or exemplar-only series carry nothing this store keeps.
            continue;
        }
        match check(&ts.labels) {
            Ok(()) => {
                // An empty value is the same as no label, as in Prometheus.
                let labels = ts.labels.into_iter().filter(|l| !l.value.is_empty()).map(|l| (l.name, l.value));
                let mut samples = Samples::default();
                samples.ts.reserve(ts.samples.len());
                samples.values.reserve(ts.samples.len());
                for s in ts.samples {
                    samples.ts.push(s.timestamp);
                    samples.values.push(s.value);
                }
                out.samples += samples.ts.len() as u64;
                out.groups
                    .push(SeriesGroup { common: LabelSet::from_pairs(labels), series: vec![(Vec::new(), samples)] });
            }
            Err(problem) => {
                if out.invalid_series == 0 {
                    out.first_problem = format!("{problem} in series {}", describe(&ts.labels));
                }
                out.invalid_series += 1;
            }
        }
    }
    Ok(out)
}

/// Encodes series as a remote-write 1.0 request body (protobuf, snappy block), as any sender does.
pub fn encode(series: &[(LabelSet, Samples)]) -> Vec<u8> {
    let timeseries = series
        .iter()
        .map(|(labels, samples)| TimeSeries {
            labels: labels
                .iter()
                .map(|(name, value)| Label { name: name.to_string(), value: value.to_string() })
                .collect(),
            samples: samples
                .ts
                .iter()
                .zip(&samples.values)
                .map(|(&timestamp, &value)| Sample { value, timestamp })
                .collect(),
        })
        .collect();
    let raw = WriteRequest { timeseries, metadata: vec![] }.encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).expect("snappy compresses any input below 4 GiB")
}

/// A `WriteRequest` written field by field, for the exporter: a series' labels are encoded once and
/// kept by the caller, each `TimeSeries` is its cached labels plus its samples. Builds the same bytes
/// prost would (checked in the tests) without a `TimeSeries` and its strings per sample, which is
/// most of the cost at hundreds of thousands of samples a second.
#[derive(Default)]
pub struct RequestWriter {
    buf: Vec<u8>,
    scratch: Vec<u8>,
    pub samples: u64,
}

/// A series' labels as the `labels` fields of a `TimeSeries` (sorted by name, as the spec wants).
pub fn encode_series_labels(labels: &LabelSet) -> Vec<u8> {
    let mut out = Vec::new();
    let mut label = Vec::new();
    for (name, value) in labels.iter() {
        label.clear();
        put_bytes(&mut label, 0x0a, name.as_bytes());
        put_bytes(&mut label, 0x12, value.as_bytes());
        put_bytes(&mut out, 0x0a, &label);
    }
    out
}

impl RequestWriter {
    /// Adds one `TimeSeries`: the labels from `encode_series_labels` and these samples.
    pub fn push(&mut self, labels: &[u8], ts: &[i64], values: &[f64]) {
        self.scratch.clear();
        self.scratch.extend_from_slice(labels);
        let mut sample = [0u8; 20];
        for (&t, &v) in ts.iter().zip(values) {
            // Sample { double value = 1; int64 timestamp = 2; }
            sample[0] = 0x09;
            sample[1..9].copy_from_slice(&v.to_bits().to_le_bytes());
            sample[9] = 0x10;
            let n = 10 + write_uvarint(&mut sample[10..], t as u64);
            put_bytes(&mut self.scratch, 0x12, &sample[..n]);
        }
        self.samples += ts.len() as u64;
        put_bytes(&mut self.buf, 0x0a, &self.scratch);
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The request body, snappy-compressed; the writer starts over.
    pub fn finish(&mut self) -> Vec<u8> {
        self.samples = 0;
        let body = snap::raw::Encoder::new().compress_vec(&self.buf).expect("snappy compresses any input below 4 GiB");
        self.buf.clear();
        body
    }
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    let mut len = [0u8; 10];
    let n = write_uvarint(&mut len, bytes.len() as u64);
    out.extend_from_slice(&len[..n]);
    out.extend_from_slice(bytes);
}

fn write_uvarint(out: &mut [u8], mut v: u64) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        out[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    out[i] = v as u8;
    i + 1
}

fn check(labels: &[Label]) -> Result<(), String> {
    match labels.iter().find(|l| l.name == METRIC_NAME) {
        None => return Err("no __name__ label".into()),
        Some(l) if !valid_metric_name(&l.value) => return Err(format!("invalid metric name {:?}", l.value)),
        Some(_) => {}
    }
    if let Some(l) = labels.iter().find(|l| !valid_label_name(&l.name)) {
        return Err(format!("invalid label name {:?}", l.name));
    }
    let mut names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("duplicate label name {:?}", w[0]));
    }
    Ok(())
}

/// `{a="b", ...}` for messages; long label sets are cut.
fn describe(labels: &[Label]) -> String {
    let mut s = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        if s.len() > 200 {
            s.push_str("...");
            break;
        }
        s.push_str(&format!("{}={:?}", l.name, l.value));
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_writer_writes_what_prost_writes() {
        let a = LabelSet::from_pairs([("__name__", "up"), ("job", "node"), ("instance", "h:9100")]);
        let b = LabelSet::from_pairs([("__name__", "x"), ("v", "é\"")]);
        let series = [
            (a.clone(), Samples { ts: vec![1, 1_700_000_000_000], values: vec![1.0, f64::NAN] }),
            (b.clone(), Samples { ts: vec![-5], values: vec![0.0] }),
        ];
        let mut w = RequestWriter::default();
        for (l, s) in &series {
            w.push(&encode_series_labels(l), &s.ts, &s.values);
        }
        assert_eq!(w.samples, 3);
        let ours = snap::raw::Decoder::new().decompress_vec(&w.finish()).unwrap();
        let want = WriteRequest::decode(snap::raw::Decoder::new().decompress_vec(&encode(&series)).unwrap().as_slice())
            .unwrap();
        let got = WriteRequest::decode(ours.as_slice()).unwrap();
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        assert!(w.is_empty(), "finish starts over");
    }

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
            samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
        }
    }

    fn body(ts: Vec<TimeSeries>) -> Vec<u8> {
        let raw = WriteRequest { timeseries: ts, metadata: vec![] }.encode_to_vec();
        snap::raw::Encoder::new().compress_vec(&raw).unwrap()
    }

    #[test]
    fn valid_series_are_kept_and_invalid_ones_named() {
        let d = decode(&body(vec![
            series(&[("__name__", "http_requests_total"), ("code", "200"), ("path", "")], &[(1000, 1.0), (2000, 2.0)]),
            series(&[("code", "500")], &[(1000, 1.0)]),
            series(&[("__name__", "x"), ("bad-name", "v")], &[(1000, 1.0)]),
            series(&[("__name__", "y"), ("a", "1"), ("a", "2")], &[(1000, 1.0)]),
        ]))
        .unwrap();
        assert_eq!(d.groups.len(), 1);
        assert_eq!(d.samples, 2);
        assert_eq!(d.invalid_series, 3);
        assert_eq!(d.first_problem, r#"no __name__ label in series {code="500"}"#);
        let g = &d.groups[0];
        // The empty `path` is dropped: in Prometheus an empty value means no label.
        assert_eq!(g.common, LabelSet::from_pairs([("__name__", "http_requests_total"), ("code", "200")]));
        assert_eq!(g.series[0].1.ts, vec![1000, 2000]);
    }

    #[test]
    fn a_body_that_is_not_snappy_or_not_protobuf_is_refused() {
        assert!(matches!(decode(b"\xff\xff\xff\xff\xff\xff\xff"), Err(RemoteWriteError::Snappy(_))));
        let not_proto = snap::raw::Encoder::new().compress_vec(b"\x0a\xff\xff\xff\xff\x0f").unwrap();
        assert!(matches!(decode(&not_proto), Err(RemoteWriteError::Protobuf(_))));
        // A header claiming 512 MiB is refused before anything is allocated.
        assert!(matches!(decode(b"\x80\x80\x80\x80\x02"), Err(RemoteWriteError::TooLarge(_))));
    }

    #[test]
    fn stale_markers_pass_through_bit_exact() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let d = decode(&body(vec![series(&[("__name__", "up")], &[(1000, 1.0), (2000, stale)])])).unwrap();
        assert_eq!(d.groups[0].series[0].1.values[1].to_bits(), 0x7ff0_0000_0000_0002);
    }
}
