//! Any bytes as the contents of a cgroup or /proc stat file: parsed or reported, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_agent::metrics::parse;

fuzz_target!(|data: &[u8]| {
    for r in parse::parse_flat_keyed(data) {
        let _ = r;
    }
    let _ = parse::parse_single_u64(data);
    let _ = parse::parse_u64_or_max(data);
    let _ = parse::parse_cpu_max(data);
    let _ = parse::parse_pressure(data);
    let _ = parse::sum_blkio_read_write(data);
    let _ = parse::sum_nested_keyed(data, b"rbytes", b"wbytes");
    for r in parse::parse_net_dev(data) {
        let _ = r;
    }
});
