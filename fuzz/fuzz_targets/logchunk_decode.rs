//! Any bytes given to the log chunk decoder, in either layout: an error or lines, never a panic; what
//! decodes re-encodes to something that decodes to the same lines, and a needle filter keeps a subset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_collector::query::logql::LinePrefilter;
use lookout_collector::store::codecs;

fuzz_target!(|data: &[u8]| {
    let mut lines = Vec::new();
    if codecs::decode_lines(data, &mut lines).is_ok() {
        let again = codecs::encode_lines(&lines);
        let mut back = Vec::new();
        codecs::decode_lines(&again, &mut back).expect("our own encoding decodes");
        assert_eq!(back, lines);
        let mut some = Vec::new();
        let filter = LinePrefilter { needles: vec![b"e"], keep: Some(&|l: &str| l.contains('e')), budget: None };
        codecs::decode_lines_where(&again, i64::MIN..=i64::MAX, &filter, &mut some).expect("our own encoding decodes");
        assert_eq!(some, lines.iter().filter(|l| l.line.contains('e')).cloned().collect::<Vec<_>>());
    }
});
