//! Any body given to the remote-write decoder, raw or snappy-framed: an error or series, never a panic;
//! what decodes re-encodes to a body that decodes to the same series.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_collector::ingest::remote_write;

fuzz_target!(|data: &[u8]| {
    // Half the inputs are wrapped in valid snappy so the protobuf decoder is reached too.
    let bodies = [data.to_vec(), snap::raw::Encoder::new().compress_vec(data).unwrap_or_default()];
    for body in bodies {
        if let Ok(d) = remote_write::decode(&body) {
            let series: Vec<_> =
                d.groups.iter().map(|g| (g.common.clone(), g.series[0].1.clone())).collect();
            let again = remote_write::decode(&remote_write::encode(&series)).expect("our own encoding decodes");
            assert_eq!(again.samples, d.samples);
            assert_eq!(again.invalid_series, 0);
            for (a, b) in again.groups.iter().zip(&d.groups) {
                assert_eq!(a.common, b.common);
                assert_eq!(a.series[0].1.ts, b.series[0].1.ts);
            }
        }
    }
});
