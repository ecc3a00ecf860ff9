//! Store behaviour against real SQLite files in a temporary directory.

use super::*;
use crate::model::{Matcher, SeriesData};
use chunk::CHUNK_TARGET_SAMPLES;

fn labels(name: &str, container: &str) -> LabelSet {
    LabelSet::from_pairs([("__name__", name), ("container", container)])
}

fn samples(ts: impl IntoIterator<Item = i64>, f: impl Fn(i64) -> f64) -> Samples {
    let ts: Vec<i64> = ts.into_iter().collect();
    let values = ts.iter().map(|&t| f(t)).collect();
    Samples { ts, values }
}

fn all(store: &Store, name: &str) -> Vec<SeriesData> {
    store.select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX).expect("select")
}

#[test]
fn appended_samples_are_read_back_across_chunk_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    // Two and a half chunks' worth in batches of 7: crosses two chunk seals mid-batch.
    let n = CHUNK_TARGET_SAMPLES as i64 * 5 / 2;
    let mut seq = 0;
    for start in (0..n).step_by(7) {
        seq += 1;
        let s = samples((start..(start + 7).min(n)).map(|i| i * 10_000), |t| t as f64 / 1e3);
        store.append("a1", "h", seq, 0, vec![(labels("cpu", "web"), s)]).unwrap();
    }
    let got = all(&store, "cpu");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples.ts, (0..n).map(|i| i * 10_000).collect::<Vec<_>>());
    assert_eq!(got[0].samples.values[n as usize - 1], (n - 1) as f64 * 10.0);
    let part = store.select(&[Matcher::equal("__name__", "cpu")], 1_000_000, 1_500_000).unwrap();
    assert_eq!(part[0].samples.ts, (100..=150).map(|i| i * 10_000).collect::<Vec<_>>());
}

#[test]
fn a_batch_seq_at_or_below_the_committed_one_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let b = |t| vec![(labels("m", "c"), samples([t], |_| 1.0))];
    assert!(!store.append("a1", "h", 5, 0, b(1000)).unwrap().duplicate);
    assert!(store.append("a1", "h", 5, 0, b(2000)).unwrap().duplicate);
    assert!(store.append("a1", "h", 4, 0, b(3000)).unwrap().duplicate);
    // Another agent has its own sequence.
    assert!(!store.append("a2", "h", 1, 0, b(4000)).unwrap().duplicate);
    assert_eq!(all(&store, "m")[0].samples.ts, vec![1000, 4000]);
    assert_eq!(store.committed_seq("a1"), 5);
}

#[test]
fn samples_not_newer_than_the_series_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    store.append("a", "h", 1, 0, vec![(labels("m", "c"), samples([10, 20], |_| 1.0))]).unwrap();
    let out = store.append("a", "h", 2, 0, vec![(labels("m", "c"), samples([15, 20, 30], |_| 2.0))]).unwrap();
    assert_eq!((out.samples, out.out_of_order, out.same_timestamp), (1, 1, 1));
    assert_eq!(all(&store, "m")[0].samples.ts, vec![10, 20, 30]);
}

#[test]
fn reopening_keeps_every_acknowledged_sample() {
    let dir = tempfile::tempdir().unwrap();
    let want: Vec<i64> = (0..CHUNK_TARGET_SAMPLES as i64 * 4 + 17).map(|i| i * 10_000).collect();
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        for (seq, chunk) in want.chunks(13).enumerate() {
            let batch = vec![
                (labels("cpu", "a"), samples(chunk.iter().copied(), |t| t as f64)),
                (labels("cpu", "b"), samples(chunk.iter().copied(), |t| -(t as f64))),
            ];
            store.append("agent", "h", seq as u64 + 1, 0, batch).unwrap();
            if seq == 20 {
                store.checkpoint().unwrap(); // a snapshot in the middle, then more head log
            }
        }
        // Dropped without a final checkpoint, as a crash would leave it.
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let got = all(&store, "cpu");
    assert_eq!(got.len(), 2);
    for s in &got {
        assert_eq!(s.samples.ts, want);
    }
    assert_eq!(store.committed_seq("agent"), want.chunks(13).count() as u64);
    // And it keeps going where it stopped.
    let next = want.last().unwrap() + 10_000;
    store.append("agent", "h", 100, 0, vec![(labels("cpu", "a"), samples([next], |_| 1.0))]).unwrap();
    assert_eq!(all(&store, "cpu")[0].samples.ts.last(), Some(&next));
}

#[test]
fn retention_by_size_deletes_the_oldest_chunks_until_the_rest_fit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    // Ten sealed chunks of random-ish values (so each takes real bytes) and one open sample.
    let c = CHUNK_TARGET_SAMPLES as i64;
    let s = samples((0..10 * c + 1).map(|i| i * 10_000), |t| ((t / 10_000) * 7919 % 1013) as f64 / 7.0);
    store.append("a", "h", 1, 0, vec![(labels("m", "c"), s)]).unwrap();
    let total = store.disk_usage().unwrap().chunk_bytes;
    drop(store);
    // A budget of a little over four chunks keeps the four newest.
    let opts = StoreOptions { max_bytes: total * 42 / 100, ..StoreOptions::default() };
    let store = Store::open(dir.path(), opts).unwrap();
    let deleted = store.enforce_retention(10 * c * 10_000).unwrap();
    assert_eq!(deleted, 6, "the six oldest of ten equal chunks go");
    assert!(store.disk_usage().unwrap().chunk_bytes <= total * 42 / 100);
    let got = all(&store, "m");
    assert_eq!(got[0].samples.ts.first(), Some(&(6 * c * 10_000)), "the newest stay, the head with them");
    assert_eq!(got[0].samples.ts.len() as i64, 4 * c + 1);
}

#[test]
fn retention_deletes_whole_chunks_older_than_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions { retention: Duration::from_secs(3600), ..StoreOptions::default() };
    let store = Store::open(dir.path(), opts).unwrap();
    // Three sealed chunks and one open sample.
    let c = CHUNK_TARGET_SAMPLES as i64;
    let s = samples((0..3 * c + 1).map(|i| i * 10_000), |t| t as f64);
    store.append("a", "h", 1, 0, vec![(labels("m", "c"), s)]).unwrap();
    // The cutoff falls just after the first chunk's last sample, inside the second chunk.
    let deleted = store.enforce_retention(3_600_000 + c * 10_000 + 1).unwrap();
    assert_eq!(deleted, 1, "only the first chunk ends before the cutoff");
    let got = all(&store, "m");
    assert_eq!(got[0].samples.ts.first(), Some(&(c * 10_000)));
    assert_eq!(got[0].samples.ts.len() as i64, 2 * c + 1);
}
