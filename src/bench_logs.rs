//! `lookout bench logread`: the agent's log reading path (tail, parse, join) on a json-file log of
//! 100-byte lines, beside the machine's limits: reading the file (`cat > /dev/null`) and serde_json.

use std::io::Write;
use std::time::Instant;

use lookout_agent::logs::assemble::Assembler;
use lookout_agent::logs::tail::Tailer;

pub fn run(lines: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("bench-json.log");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for i in 0..lines {
            // 100 bytes of text, as the target states, in dockerd's record shape.
            let text = format!(
                "{i:010} GET /api/v1/items?page=3 200 12.5ms user=alice trace=4bf92f3577b34da6a3ce929d0e0e4736"
            );
            let text = &text[..100.min(text.len())];
            writeln!(
                f,
                r#"{{"log":"{text}\n","stream":"stdout","time":"2026-11-23T12:00:{:02}.{:09}Z"}}"#,
                i / 1_000_000 % 60,
                i % 1_000_000_000
            )?;
        }
    }
    let bytes = std::fs::metadata(&path)?.len();
    println!("logread: {lines} records of 100-byte lines, {:.1} MB json-file (page cache warm)", bytes as f64 / 1e6);
    // Warm the page cache, then the limits.
    std::io::copy(&mut std::fs::File::open(&path)?, &mut std::io::sink())?;

    let t = Instant::now();
    std::io::copy(&mut std::fs::File::open(&path)?, &mut std::io::sink())?;
    report("read the file (cat > /dev/null)", lines, t);

    let data = std::fs::read(&path)?;
    let t = Instant::now();
    let mut n = 0usize;
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line)?;
        n += v["log"].as_str().map_or(0, str::len);
    }
    std::hint::black_box(n);
    report("serde_json::Value parse of each line, from memory", lines, t);

    let t = Instant::now();
    let (mut tailer, _) = Tailer::open(&path, None)?;
    let mut asm = Assembler::default();
    let mut entries = Vec::new();
    let mut count = 0;
    loop {
        let (raw, _) = tailer.read(4 << 20)?;
        if raw.is_empty() {
            break;
        }
        for r in &raw {
            asm.push(r, 0, &mut entries);
        }
        count += entries.len();
        entries.clear();
    }
    anyhow::ensure!(count == lines, "read {count} entries of {lines}");
    report("lookout: tail + parse + join into entries", lines, t);
    Ok(())
}

fn report(what: &str, lines: usize, t: Instant) {
    let s = t.elapsed().as_secs_f64();
    println!("  {what}: {:.2} M lines/s ({s:.3} s)", lines as f64 / s / 1e6);
}
