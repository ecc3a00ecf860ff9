//! Reading real Docker json-file logs: a container writes numbered lines (long ones, bytes that are
//! not UTF-8, empty ones) under Docker's own rotation while the reader is stopped and resumed from
//! its checkpoint as after a kill -9; every line must come back exactly once, in order.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lookout_agent::logs::assemble::{Assembler, Entry};
use lookout_agent::logs::checkpoint::Checkpoints;
use lookout_agent::logs::jsonfile::Stream;
use lookout_agent::logs::tail::{Event, Tailer};
use support::*;

fn log_path(id: &str) -> PathBuf {
    let out = Command::new("docker").args(["inspect", "-f", "{{.LogPath}}", id]).output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Reads for `dur`, saving a checkpoint after every read as an acknowledged batch would. Returns
/// what the tailer said when it resumed.
fn read_for(path: &Path, state: &Path, id: &str, dur: Duration, out: &mut Vec<Entry>) -> Vec<Event> {
    let mut cps = Checkpoints::load(state).unwrap();
    let resume = cps.containers.get(id).cloned();
    let (mut tailer, events) = Tailer::open(path, resume.as_ref().map(|r| r.position)).unwrap();
    let mut asm = resume.as_ref().map(|r| Assembler::resume(r, None, 0)).unwrap_or_default();
    let end = Instant::now() + dur;
    while Instant::now() < end {
        let (lines, _) = tailer.read(1 << 20).unwrap();
        for l in &lines {
            asm.push(l, 0, out);
        }
        if let Some(cp) = asm.checkpoint() {
            cps.containers.insert(id.to_string(), cp);
            cps.save(state).unwrap();
        }
        if lines.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    events
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
}

#[test]
fn every_line_is_read_once_across_docker_rotation_and_reader_restarts() {
    let _serial = serial();
    let state = tempfile::tempdir().unwrap();
    // 3,000 numbered lines of ~120 bytes (~600 KB of json-file) through files of 100 KB, five kept;
    // every 500th line is 40,000 bytes (dockerd cuts it into 16 KiB pieces), every 700th holds bytes
    // that are not UTF-8, every 900th is followed by an empty line.
    let script = r#"
        i=0
        while [ $i -lt 3000 ]; do
            if [ $((i % 500)) = 250 ]; then
                printf 'n=%05d long ' $i; head -c 40000 /dev/zero | tr '\0' 'L'; echo
            elif [ $((i % 700)) = 350 ]; then
                printf 'n=%05d bad \377\376 bytes\n' $i
            else
                printf 'n=%05d %0100d\n' $i $i
            fi
            if [ $((i % 900)) = 450 ]; then echo; fi
            if [ $((i % 50)) = 0 ]; then usleep 40000; fi
            i=$((i+1))
        done
        echo done >&2
        sleep 100000
    "#;
    let c = TestContainer::run(
        "logs",
        &["--log-driver", "json-file", "--log-opt", "max-size=100k", "--log-opt", "max-file=5"],
        &["sh", "-c", script],
    );
    let path = log_path(&c.id);
    let mut entries = Vec::new();
    let mut resumed_rotated = 0;
    // Read, stop (dropping all state but the checkpoint file) until Docker has rotated the file we
    // were in, and resume, until the writer is done.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !entries.iter().any(|e: &Entry| e.stream == Stream::Stderr && e.text == "done") {
        assert!(Instant::now() < deadline, "the container did not finish writing in 90 s");
        let events = read_for(&path, state.path(), &c.id, Duration::from_millis(300), &mut entries);
        resumed_rotated += events.iter().filter(|e| matches!(e, Event::ResumedRotated(_))).count();
        let before = inode(&path);
        let away = Instant::now() + Duration::from_secs(3);
        while inode(&path) == before && Instant::now() < away {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(resumed_rotated >= 2, "the reader resumed in rotated files ({resumed_rotated} times)");
    let rotated = (1..=4).filter(|i| Path::new(&format!("{}.{i}", path.display())).exists()).count();
    assert!(rotated >= 3, "Docker rotated the log ({rotated} rotated files)");

    let numbered: Vec<&Entry> = entries.iter().filter(|e| e.text.starts_with("n=")).collect();
    let numbers: Vec<usize> = numbered.iter().map(|e| e.text[2..7].parse().unwrap()).collect();
    assert_eq!(numbers, (0..3000).collect::<Vec<_>>(), "each line exactly once, in order");
    for e in &numbered {
        let n: usize = e.text[2..7].parse().unwrap();
        if n % 500 == 250 {
            assert_eq!(e.text.len(), 13 + 40_000, "line {n}: the 16 KiB pieces are joined into one entry");
        } else if n % 700 == 350 {
            assert!(e.flags.replaced && e.text.contains('\u{fffd}'), "line {n} is flagged: {:?}", e.text);
        } else {
            assert_eq!(e.text, format!("n={n:05} {n:0100}"));
        }
        assert_eq!(e.stream, Stream::Stdout);
        assert!(!e.flags.corrupt && !e.flags.truncated);
    }
    let empties = entries.iter().filter(|e| e.text.is_empty()).count();
    assert_eq!(empties, 3, "empty lines are entries too");
}
