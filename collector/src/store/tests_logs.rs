//! Log streams in the store: what is committed reads back in order, survives reopening, is sealed
//! into chunks by size, and a batch's seq keeps a resent batch from repeating lines.

use super::logs::CHUNK_RAW_BYTES;
use super::*;
use crate::model::logs::{LogLine, LogStreamIn};
use crate::model::Matcher;
use crate::query::logql::LogQueryable;

fn stream(container: &str, lines: impl IntoIterator<Item = (i64, String)>) -> LogStreamIn {
    LogStreamIn {
        labels: LabelSet::from_pairs([("container", container), ("stream", "stdout")]),
        lines: lines.into_iter().map(|(time_ns, line)| LogLine { time_ns, line }).collect(),
    }
}

fn logs(streams: Vec<LogStreamIn>) -> LogBatchIn {
    LogBatchIn { streams, resume: Vec::new(), window_ns: None }
}

fn read_all(store: &Store, container: &str) -> Vec<LogLine> {
    let m = [Matcher::equal("container", container)];
    let out = store.select_logs(&m, i64::MIN, i64::MAX).unwrap();
    assert!(out.len() <= 1);
    out.into_iter().flat_map(|s| s.lines).collect()
}

#[test]
fn lines_read_back_in_time_order_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let b1 = vec![stream("web", [(20, "b".to_string()), (10, "a".to_string())]), stream("db", [(5, "x".into())])];
        let out = store.append_batch("agent", "h", 1, 0, Vec::new(), logs(b1)).unwrap();
        assert_eq!(out.log_lines, 3);
        store.append_batch("agent", "h", 2, 0, Vec::new(), logs(vec![stream("web", [(30, "c".into())])])).unwrap();
        // A resent batch (same seq) adds nothing.
        let dup =
            store.append_batch("agent", "h", 2, 0, Vec::new(), logs(vec![stream("web", [(30, "c".into())])])).unwrap();
        assert!(dup.duplicate);
        let texts: Vec<String> = read_all(&store, "web").into_iter().map(|l| l.line).collect();
        assert_eq!(texts, ["a", "b", "c"]);
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let texts: Vec<String> = read_all(&store, "web").into_iter().map(|l| l.line).collect();
    assert_eq!(texts, ["a", "b", "c"]);
    assert_eq!(store.log_label_values("container"), ["db", "web"]);
    // The time range is start-inclusive, end-exclusive, as Loki's.
    let m = [Matcher::equal("container", "web")];
    let lines: Vec<i64> = store.select_logs(&m, 10, 30).unwrap()[0].lines.iter().map(|l| l.time_ns).collect();
    assert_eq!(lines, [10, 20]);
}

#[test]
fn a_full_head_is_sealed_into_a_chunk_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let line = "y".repeat(1000);
    let per_batch = 50; // 50 KB a batch: the head fills in six
    let batches = 20;
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        for b in 0..batches {
            let lines =
                (0..per_batch).map(|i| ((b * per_batch + i) as i64, format!("{:06} {line}", b * per_batch + i)));
            store.append_batch("a", "h", b as u64 + 1, 0, Vec::new(), logs(vec![stream("web", lines)])).unwrap();
        }
        let conn = store.reader().unwrap();
        let chunks: i64 = conn.query_row("SELECT count(*) FROM log_chunks", [], |r| r.get(0)).unwrap();
        // A batch is 50 × 1,007 bytes: five fit under 256 KiB, the sixth seals all six into a chunk.
        assert!(5 * per_batch * 1007 < CHUNK_RAW_BYTES && 6 * per_batch * 1007 >= CHUNK_RAW_BYTES);
        assert_eq!(chunks, 3, "batches 6, 12 and 18 sealed a chunk; two batches are in the head");
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let got: Vec<usize> = read_all(&store, "web").iter().map(|l| l.line[..6].parse().unwrap()).collect();
    assert_eq!(got, (0..batches * per_batch).collect::<Vec<_>>());
}

#[test]
fn log_positions_commit_with_their_batch_and_a_resent_batch_does_not_move_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let batch = |state: &[u8]| LogBatchIn {
        streams: vec![stream("web", [(1, "x".to_string())])],
        resume: vec![("c1".to_string(), state.to_vec())],
        window_ns: None,
    };
    store.append_batch("a", "h", 1, 0, Vec::new(), batch(b"one")).unwrap();
    store.append_batch("a", "h", 2, 0, Vec::new(), batch(b"two")).unwrap();
    store.append_batch("a", "h", 2, 0, Vec::new(), batch(b"stale resend")).unwrap();
    assert_eq!(store.log_resume("a").unwrap(), [("c1".to_string(), b"two".to_vec())]);
    assert!(store.log_resume("other").unwrap().is_empty());
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.log_resume("a").unwrap(), [("c1".to_string(), b"two".to_vec())]);
}

#[test]
fn a_quiet_head_is_sealed_by_age_and_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3_600_000_000_000i64;
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let old = vec![stream("quiet", [(0, "a".to_string()), (1, "b".to_string())]), stream("busy", [(hour, "x".into())])];
    store.append_batch("a", "h", 1, 0, Vec::new(), logs(old)).unwrap();
    assert_eq!(store.seal_old_log_heads(hour - 1).unwrap(), 0, "not an hour old yet");
    assert_eq!(store.seal_old_log_heads(hour + 5).unwrap(), 1, "only the quiet stream's head");
    let conn = store.reader().unwrap();
    let (chunks, heads): (i64, i64) = conn
        .query_row("SELECT (SELECT count(*) FROM log_chunks), (SELECT count(*) FROM log_head)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((chunks, heads), (1, 1));
    store.append_batch("a", "h", 2, 0, Vec::new(), logs(vec![stream("quiet", [(hour, "c".to_string())])])).unwrap();
    let texts: Vec<String> = read_all(&store, "quiet").into_iter().map(|l| l.line).collect();
    assert_eq!(texts, ["a", "b", "c"]);
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let texts: Vec<String> = read_all(&store, "quiet").into_iter().map(|l| l.line).collect();
    assert_eq!(texts, ["a", "b", "c"], "after reopening too");
}

#[test]
fn the_log_size_limit_deletes_the_oldest_chunks_first() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions { log_max_bytes: 200_000, ..StoreOptions::default() };
    let store = Store::open(dir.path(), opts).unwrap();
    // Lines that do not compress (pseudo-random hex), 300 KB a batch: each batch seals one chunk.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = || {
        (0..30)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{x:016x}")
            })
            .collect::<String>()
    };
    let now_ms = 10_000;
    for b in 0..6i64 {
        let lines: Vec<(i64, String)> = (0..625).map(|i| ((b * 1000 + i) * 1_000_000, noise())).collect();
        store.append_batch("a", "h", b as u64 + 1, now_ms, Vec::new(), logs(vec![stream("web", lines)])).unwrap();
    }
    let conn = store.reader().unwrap();
    let sizes = |conn: &Connection| -> (i64, i64) {
        conn.query_row("SELECT count(*), coalesce(sum(length(data)), 0) FROM log_chunks", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    assert!(sizes(&conn).1 > 600_000, "{:?}", sizes(&conn));
    store.enforce_retention(now_ms).unwrap();
    let (chunks, bytes) = sizes(&conn);
    assert!(bytes <= 200_000 && chunks >= 1, "{chunks} chunks, {bytes} bytes");
    let first = read_all(&store, "web")[0].time_ns;
    assert!(first >= 3_000_000_000, "the oldest batches went first: the first line left is at {first}");
}
