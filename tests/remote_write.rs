//! Remote-write in: what a Prometheus client pushes to `/api/v1/write` is queryable, and bad bodies
//! get the status codes Prometheus's own receiver answers, checked against Debian's Prometheus 2.42.

mod support;

use lookout_collector::ingest::remote_write;
use lookout_collector::model::{LabelSet, Samples};
use support::*;

fn series(name: &str, label: &str, points: &[(i64, f64)]) -> (LabelSet, Samples) {
    let labels = LabelSet::from_pairs([("__name__", name), ("handler", label)]);
    let samples = Samples { ts: points.iter().map(|p| p.0).collect(), values: points.iter().map(|p| p.1).collect() };
    (labels, samples)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn pushed_series_are_queryable_and_bad_bodies_answered_as_prometheus_does() {
    let prom = Prometheus::start();
    let dir = tempfile::tempdir().unwrap();
    let lookout = Lookout::collector(dir.path());
    let (ours, theirs) = (lookout.url(), prom.url());
    let t = now_ms() - 60_000;

    let first = remote_write::encode(&[series("app_requests_total", "/a", &[(t, 1.0), (t + 15_000, 5.0)])]);
    for base in [&ours, &theirs] {
        assert_eq!(remote_write(base, first.clone()).0, 204, "{base} accepts a valid request");
    }
    let r = instant(&ours, "app_requests_total");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["metric"]["handler"], "/a");
    assert_eq!(value(&r[0]), 5.0);

    // Bodies that are not snappy, or not a WriteRequest: 400 from both, so senders do not retry.
    let not_proto = snap_compress(b"\x0a\xff\xff\xff\xff\x0f");
    for (what, body) in [("not snappy", b"plain text, not snappy".to_vec()), ("not protobuf", not_proto)] {
        let (a, text) = remote_write(&ours, body.clone());
        let (b, _) = remote_write(&theirs, body);
        assert_eq!((a, b), (400, 400), "{what}: lookout said {a} ({text}), Prometheus {b}");
    }

    // A sample older than its series' newest beside a valid new series: 400 from both; lookout still
    // stores the valid series (Prometheus 2.42 rolls the whole request back).
    let mixed = remote_write::encode(&[
        series("app_requests_total", "/a", &[(t - 5_000, 9.0)]),
        series("app_requests_total", "/b", &[(t, 2.0)]),
    ]);
    let (a, text) = remote_write(&ours, mixed.clone());
    let (b, _) = remote_write(&theirs, mixed);
    assert_eq!((a, b), (400, 400), "out of order: lookout said {a} ({text}), Prometheus {b}");
    assert!(text.contains("out of order"), "the answer says why: {text}");
    let r = instant(&ours, r#"app_requests_total{handler="/b"}"#);
    assert_eq!(r.len(), 1, "the valid series of a partly refused request is stored");
    assert_eq!(value(&instant(&ours, r#"app_requests_total{handler="/a"}"#)[0]), 5.0, "the old sample changed nothing");

    // Sending a series' newest sample again (a sender's retry) is accepted by both.
    let resend = remote_write::encode(&[series("app_requests_total", "/a", &[(t + 15_000, 5.0)])]);
    for base in [&ours, &theirs] {
        assert_eq!(remote_write(base, resend.clone()).0, 204, "{base} accepts a resend");
    }
}

fn snap_compress(raw: &[u8]) -> Vec<u8> {
    // Frame the bytes as a snappy block of literals: length varint, then one literal chunk.
    let mut out = Vec::new();
    let mut n = raw.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    assert!(raw.len() <= 60);
    out.push(((raw.len() - 1) as u8) << 2);
    out.extend_from_slice(raw);
    out
}
