//! The agent's disk spool: every sealed batch (its log lines left out: the log files are their own
//! buffer) as a record in segment files under the state dir, so a killed agent or a long outage loses
//! nothing that was sealed; bounded in bytes by dropping the oldest segment, which is reported.
//!
//! A record is `len u32 | crc32 u32 | seq u64 | first_ms i64 | last_ms i64 | deflate(Batch)`, little
//! endian; the CRC covers everything after it. A torn or corrupt record ends its segment: it and what
//! follows are cut off and counted, the records before it are kept. The format is our own because it
//! is a handful of lines over flate2 and crc32fast, and replay must read it at disk speed.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use lookout_proto::v1::Batch;
use prost::Message;

const HEADER: usize = 4 + 4 + 8 + 8 + 8;
/// The file holding the highest seq the collector acknowledged, so that numbering goes on past it
/// after a restart even when every segment was released.
const ACKED_FILE: &str = "acked";
/// The file holding what is added to every stored seq (see `Spool::shift`).
const SHIFT_FILE: &str = "shift";

/// Where one record lives, and what it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    segment: u64,
    offset: u64,
    len: u32,
}

/// Batches the spool gave up to stay within its bound: the collector is told, so the gap shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Lost {
    pub batches: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

impl Lost {
    pub fn add(&mut self, first_ms: i64, last_ms: i64) {
        if self.batches == 0 {
            (self.first_ms, self.last_ms) = (first_ms, last_ms);
        } else {
            self.first_ms = self.first_ms.min(first_ms);
            self.last_ms = self.last_ms.max(last_ms);
        }
        self.batches += 1;
    }
}

struct Segment {
    /// The seq of its first record: also its file name.
    id: u64,
    bytes: u64,
    last_seq: u64,
    first_ms: i64,
}

/// What opening a spool found.
pub struct Opened {
    pub spool: Spool,
    /// The records not yet acknowledged, oldest first.
    pub records: Vec<Record>,
    /// Records cut off because they were torn or corrupt (a crash mid-write).
    pub torn: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    active: Option<File>,
    bytes: u64,
    acked: u64,
    highest: u64,
    shift: u64,
}

fn read_number(path: &Path) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Replaces a small file whole (write, then rename), so it is never seen half written.
fn write_number(dir: &Path, name: &str, n: u64) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, n.to_string())?;
    std::fs::rename(&tmp, dir.join(name))
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, at most `max_bytes` on disk.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Opened> {
        std::fs::create_dir_all(dir)?;
        let acked = read_number(&dir.join(ACKED_FILE));
        let shift = read_number(&dir.join(SHIFT_FILE));
        let mut ids: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        ids.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            // Small enough that dropping one loses little, large enough to keep the files few.
            segment_bytes: (max_bytes / 16).clamp(64 << 10, 64 << 20),
            segments: VecDeque::new(),
            active: None,
            bytes: 0,
            acked,
            highest: acked,
            shift,
        };
        let (mut records, mut torn) = (Vec::new(), 0);
        for id in ids {
            let path = spool.path(id);
            let (found, good_len, cut) = scan(&path, id, shift)?;
            torn += cut;
            if cut > 0 {
                OpenOptions::new().write(true).open(&path)?.set_len(good_len)?;
            }
            let Some(last) = found.last() else {
                std::fs::remove_file(&path)?;
                continue;
            };
            if last.seq <= acked {
                // Acknowledged before the restart: nothing in it is needed.
                std::fs::remove_file(&path)?;
                continue;
            }
            spool.highest = spool.highest.max(last.seq);
            spool.bytes += good_len;
            spool.segments.push_back(Segment { id, bytes: good_len, last_seq: last.seq, first_ms: found[0].first_ms });
            records.extend(found.into_iter().filter(|r| r.seq > acked));
        }
        Ok(Opened { spool, records, torn })
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    /// The highest seq the spool has seen, acknowledged or not: numbering goes on after it.
    pub fn highest_seq(&self) -> u64 {
        self.highest
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The sample time of the oldest record still held.
    pub fn oldest_ms(&self) -> Option<i64> {
        self.segments.front().map(|s| s.first_ms)
    }

    /// A record for an encoded `Batch`, compressed (so that callers can do it outside a lock);
    /// `append` gives it its seq.
    pub fn encode(first_ms: i64, last_ms: i64, batch: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; HEADER];
        let mut z = DeflateEncoder::new(out, flate2::Compression::fast());
        z.write_all(batch).expect("writing to a Vec cannot fail");
        out = z.finish().expect("writing to a Vec cannot fail");
        let len = (out.len() - HEADER) as u32;
        out[0..4].copy_from_slice(&len.to_le_bytes());
        out[16..24].copy_from_slice(&first_ms.to_le_bytes());
        out[24..32].copy_from_slice(&last_ms.to_le_bytes());
        out
    }

    /// Numbers ever after are `shift` higher than the stored ones: for a collector that has committed
    /// numbers this agent never gave (its spool outlived the agent's state elsewhere, or a cloned
    /// host), so that what is spooled is not taken for what it already has.
    pub fn shift(&mut self, by: u64) -> std::io::Result<()> {
        write_number(&self.dir, SHIFT_FILE, self.shift + by)?;
        self.shift += by;
        self.highest += by;
        for s in &mut self.segments {
            s.last_seq += by;
        }
        Ok(())
    }

    /// Appends a record from `encode` as `seq`; returns where it is, and the segments dropped (oldest
    /// first, as first and last seq) to stay within the bound. Their records still queued are lost.
    pub fn append(&mut self, seq: u64, record: &mut [u8]) -> std::io::Result<(Record, Vec<(u64, u64)>)> {
        let stored = seq - self.shift;
        record[8..16].copy_from_slice(&stored.to_le_bytes());
        let crc = crc32fast::hash(&record[8..]);
        record[4..8].copy_from_slice(&crc.to_le_bytes());
        let record = &*record;
        let first_ms = i64::from_le_bytes(record[16..24].try_into().expect("8 bytes"));
        let last_ms = i64::from_le_bytes(record[24..32].try_into().expect("8 bytes"));
        let len = (record.len() - HEADER) as u32;
        let roll = self.segments.back().is_none_or(|s| s.bytes + record.len() as u64 > self.segment_bytes);
        if roll || self.active.is_none() {
            if let Some(f) = self.active.take() {
                // A full segment is made durable once; the records in the page cache already survive
                // a killed process.
                let _ = f.sync_data();
            }
            if roll {
                self.segments.push_back(Segment { id: stored, bytes: 0, last_seq: seq, first_ms });
            }
            let id = self.segments.back().expect("pushed above").id;
            self.active = Some(OpenOptions::new().create(true).append(true).open(self.path(id))?);
        }
        let mut dropped = Vec::new();
        // Past the bound the oldest segments go, never the one being written.
        while self.bytes + record.len() as u64 > self.max_bytes && self.segments.len() > 1 {
            let old = self.segments.pop_front().expect("more than one");
            std::fs::remove_file(self.path(old.id))?;
            self.bytes -= old.bytes;
            dropped.push((old.id + self.shift, old.last_seq));
        }
        let seg = self.segments.back_mut().expect("one exists");
        let offset = seg.bytes;
        self.active.as_mut().expect("opened above").write_all(record)?;
        seg.bytes += record.len() as u64;
        seg.last_seq = seq;
        self.bytes += record.len() as u64;
        self.highest = self.highest.max(seq);
        Ok((Record { seq, first_ms, last_ms, segment: seg.id, offset, len }, dropped))
    }

    /// The encoded batch a record holds.
    pub fn read(&self, r: &Record) -> std::io::Result<Vec<u8>> {
        let mut f = File::open(self.path(r.segment))?;
        f.seek(SeekFrom::Start(r.offset))?;
        let mut buf = vec![0u8; HEADER + r.len as usize];
        f.read_exact(&mut buf)?;
        decode(&buf).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "spool record is corrupt"))
    }

    /// The collector has committed everything up to `seq`: segments wholly at or below it go.
    pub fn release(&mut self, seq: u64) -> std::io::Result<()> {
        if seq <= self.acked {
            return Ok(());
        }
        self.acked = seq;
        self.highest = self.highest.max(seq);
        // Written before any segment goes, so a restart never numbers at or below it.
        write_number(&self.dir, ACKED_FILE, seq)?;
        while let Some(s) = self.segments.front() {
            let whole = s.last_seq <= seq;
            let is_active = self.segments.len() == 1;
            // The segment being written goes too once it is all acknowledged, so an idle spool is empty.
            if !whole {
                break;
            }
            let s = self.segments.pop_front().expect("front exists");
            if is_active {
                self.active = None;
            }
            std::fs::remove_file(self.path(s.id))?;
            self.bytes -= s.bytes;
        }
        Ok(())
    }
}

/// The records of one segment file, how many bytes of it are whole, and how many records were cut.
fn scan(path: &Path, segment: u64, shift: u64) -> std::io::Result<(Vec<Record>, u64, u64)> {
    let data = std::fs::read(path)?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let Some(head) = data.get(at..at + HEADER) else { break };
        let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
        let Some(whole) = data.get(at..at + HEADER + len) else { break };
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        if crc32fast::hash(&whole[8..]) != crc {
            break;
        }
        records.push(Record {
            seq: u64::from_le_bytes(head[8..16].try_into().expect("8 bytes")) + shift,
            first_ms: i64::from_le_bytes(head[16..24].try_into().expect("8 bytes")),
            last_ms: i64::from_le_bytes(head[24..32].try_into().expect("8 bytes")),
            segment,
            offset: at as u64,
            len: len as u32,
        });
        at += HEADER + len;
    }
    // One torn write leaves one partial record; anything after a corrupt one cannot be trusted.
    let cut = u64::from(at < data.len());
    Ok((records, at as u64, cut))
}

/// A whole record's encoded batch, or `None` when it is not one (its CRC, its compression or the
/// batch itself is broken: the collector must never be sent what it cannot decode).
pub fn decode(record: &[u8]) -> Option<Vec<u8>> {
    let head = record.get(..HEADER)?;
    let len = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
    let whole = record.get(..HEADER + len)?;
    if crc32fast::hash(&whole[8..]) != u32::from_le_bytes(head[4..8].try_into().ok()?) {
        return None;
    }
    let mut raw = Vec::new();
    // A batch is at most tens of MiB; a record claiming more is not ours.
    DeflateDecoder::new(&whole[HEADER..]).take(256 << 20).read_to_end(&mut raw).ok()?;
    Batch::decode(raw.as_slice()).ok()?;
    Some(raw)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lookout_proto::v1::ContainerEvent;

    /// Text that does not compress, so records have the size the test needs.
    pub(crate) fn noise(seed: u64, len: usize) -> String {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (b'!' + (x % 94) as u8) as char
            })
            .collect()
    }

    fn batch(n: u64) -> Vec<u8> {
        let event = ContainerEvent { container_id: format!("c{n}"), ..Default::default() };
        Batch { container_events: vec![event], ..Default::default() }.encode_to_vec()
    }

    fn put(s: &mut Spool, seq: u64) -> Vec<(u64, u64)> {
        s.append(seq, &mut Spool::encode(seq as i64 * 1000, seq as i64 * 1000 + 999, &batch(seq))).unwrap().1
    }

    #[test]
    fn records_survive_a_reopen_in_order_and_acknowledged_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap().spool;
        for seq in 1..=5 {
            put(&mut s, seq);
        }
        s.release(2).unwrap();
        drop(s);
        let o = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(o.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(o.spool.read(&o.records[1]).unwrap(), batch(4));
        assert_eq!(o.torn, 0);
        assert_eq!(o.spool.highest_seq(), 5);
    }

    #[test]
    fn a_torn_last_record_is_cut_and_counted_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap().spool;
        for seq in 1..=3 {
            put(&mut s, seq);
        }
        drop(s);
        let seg = std::fs::read_dir(dir.path()).unwrap().flatten().find(|e| e.path().extension().is_some()).unwrap();
        let len = seg.metadata().unwrap().len();
        OpenOptions::new().write(true).open(seg.path()).unwrap().set_len(len - 3).unwrap();
        let o = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(o.torn, 1);
        assert_eq!(o.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
        let mut s = o.spool;
        put(&mut s, 4);
        drop(s);
        let o = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((o.torn, o.records.len()), (0, 3), "a record written after the cut is whole");
    }

    #[test]
    fn past_its_bound_the_oldest_segment_goes_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 200 << 10).unwrap().spool;
        assert_eq!(s.segment_bytes, 64 << 10);
        let big = |seq: u64| {
            let text = noise(seq, 20_000);
            let event = ContainerEvent { container_id: text, ..Default::default() };
            Spool::encode(
                seq as i64,
                seq as i64,
                &Batch { container_events: vec![event], ..Default::default() }.encode_to_vec(),
            )
        };
        let mut dropped = Vec::new();
        for seq in 1..=40 {
            dropped.extend(s.append(seq, &mut big(seq)).unwrap().1);
        }
        assert!(s.bytes() <= 200 << 10, "{}", s.bytes());
        assert!(!dropped.is_empty());
        assert_eq!(dropped[0].0, 1, "the oldest segment goes first");
        let o = Spool::open(dir.path(), 200 << 10).unwrap();
        let first_kept = o.records[0].seq;
        assert_eq!(first_kept, dropped.last().unwrap().1 + 1, "everything after the last dropped segment is kept");
        assert_eq!(o.records.last().unwrap().seq, 40);
    }

    #[test]
    fn releasing_everything_leaves_an_empty_spool_that_still_numbers_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap().spool;
        put(&mut s, 7);
        s.release(7).unwrap();
        assert_eq!(s.bytes(), 0);
        put(&mut s, 8);
        s.release(8).unwrap();
        drop(s);
        let o = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(o.records.is_empty());
        assert_eq!(o.spool.highest_seq(), 8);
    }

    #[test]
    fn a_shift_renumbers_what_is_held_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap().spool;
        put(&mut s, 1);
        put(&mut s, 2);
        s.shift(100).unwrap();
        put(&mut s, 103);
        s.release(101).unwrap();
        drop(s);
        let o = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(o.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![102, 103]);
        assert_eq!(o.spool.read(&o.records[0]).unwrap(), batch(2));
    }

    #[test]
    fn garbage_is_not_a_record() {
        assert!(decode(&[0xff; 64]).is_none());
        assert!(decode(&[]).is_none());
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap().spool;
        let mut r = Spool::encode(0, 0, &batch(1));
        s.append(1, &mut r).unwrap();
        assert_eq!(decode(&r), Some(batch(1)));
        let last = r.len() - 1;
        r[last] ^= 1;
        assert!(decode(&r).is_none());
        // Whole and checksummed, but not a batch: never handed on to be sent.
        let mut r = Spool::encode(0, 0, &[0xff, 0xff, 0xff]);
        s.append(2, &mut r).unwrap();
        assert!(decode(&r).is_none());
    }
}
