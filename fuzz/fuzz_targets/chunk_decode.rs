//! Any bytes given to the chunk decoder: an error or samples, never a panic; what decodes re-encodes
//! to something that decodes to the same samples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_collector::store::codecs;

fuzz_target!(|data: &[u8]| {
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    if codecs::decode_samples(data, &mut ts, &mut vs).is_ok() {
        let again = codecs::encode_samples(&ts, &vs);
        let (mut ts2, mut vs2) = (Vec::new(), Vec::new());
        codecs::decode_samples(&again, &mut ts2, &mut vs2).expect("our own encoding decodes");
        assert_eq!(ts, ts2);
        assert!(vs.iter().zip(&vs2).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
});
