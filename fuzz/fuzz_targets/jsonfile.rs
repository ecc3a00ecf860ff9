//! Any bytes as json-file log lines through the record parser and the assembler: entries or flagged
//! corrupt entries, never a panic; no entry exceeds its bound; a checkpoint resumes to the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_agent::logs::assemble::{Assembler, MAX_ENTRY_BYTES};
use lookout_agent::logs::jsonfile;
use lookout_agent::logs::tail::{FileId, Position, RawLine};

fuzz_target!(|data: &[u8]| {
    let file = FileId { dev: 0, ino: 0, fingerprint: 0, fingerprint_len: 0 };
    let raws: Vec<RawLine> = data
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| RawLine { bytes: l.to_vec(), end: Position { file, offset: i as u64 }, cut: false })
        .collect();
    for r in &raws {
        let _ = jsonfile::parse(&r.bytes);
    }
    // Straight through, and again with a checkpoint taken halfway and resumed from.
    let mut whole = Vec::new();
    let mut a = Assembler::default();
    for r in &raws {
        a.push(r, 0, &mut whole);
    }
    assert!(whole.iter().all(|e| e.text.len() <= MAX_ENTRY_BYTES));
    let half = raws.len() / 2;
    let mut split = Vec::new();
    let mut a = Assembler::default();
    for r in &raws[..half] {
        a.push(r, 0, &mut split);
    }
    if let Some(cp) = a.checkpoint() {
        let mut b = Assembler::resume(&cp, None, 0);
        for r in &raws[half..] {
            b.push(r, 0, &mut split);
        }
        assert_eq!(whole, split);
    }
});
