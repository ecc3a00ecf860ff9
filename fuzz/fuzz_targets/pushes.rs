//! Any body given to the Loki push and OTLP decoders, raw, snappy-wrapped or as JSON: an error or
//! streams and series, never a panic; what the Loki decoder keeps re-encodes to the same streams.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_collector::ingest::{loki_push, otlp};

const NOW: i64 = 1_800_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let snappy = snap::raw::Encoder::new().compress_vec(data).unwrap_or_default();
    for (body, ct) in [(data, "application/json"), (&snappy[..], "application/x-protobuf")] {
        if let Ok(d) = loki_push::decode(body, Some(ct), None, NOW) {
            let streams: Vec<_> = d.streams.iter().map(|s| (&s.labels, s.lines.as_slice())).collect();
            for json in [false, true] {
                let again = loki_push::decode(&loki_push::encode(&streams, json), Some(if json { "application/json" } else { "application/x-protobuf" }), None, NOW)
                    .expect("our own encoding decodes");
                assert_eq!(again.lines, d.lines);
            }
        }
    }
    let _ = otlp::decode_metrics(data, None, None);
    let _ = otlp::decode_logs(data, None, None, NOW);
});
