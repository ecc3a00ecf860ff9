//! Raw json-file lines to log entries: Docker's 16 KiB pieces joined per stream, sizes bounded,
//! broken records kept (flagged), and the position a checkpoint may safely record.

use super::jsonfile::{self, Stream};
use super::multiline::{JoinedLine, Joiner, Rule};
use super::tail::{Position, RawLine};

/// An entry longer than this is handed out in pieces of this size, each flagged `truncated`.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// Why an entry is not exactly what the container wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// Part of a line longer than `MAX_ENTRY_BYTES`; the rest follows in further entries.
    pub truncated: bool,
    /// The container wrote bytes that were not UTF-8; they read as U+FFFD.
    pub replaced: bool,
    /// The record was not valid json-file (a crash mid-write, another writer): its raw bytes,
    /// lossily decoded, stand as the line.
    pub corrupt: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub text: String,
    pub stream: Stream,
    pub time_ns: i64,
    pub flags: Flags,
}

/// Joins records into entries for one container's log.
#[derive(Default)]
pub struct Assembler {
    /// A line in progress per stream, with where its first piece started.
    open: [Option<Open>; 2],
    /// End of the last raw line consumed.
    last: Option<Position>,
    /// Parse problems seen, for the caller's counters and a log line.
    pub corrupt_records: u64,
    /// The service's multiline join, after Docker's pieces are joined.
    joiner: Joiner,
}

struct Open {
    text: String,
    time_ns: i64,
    replaced: bool,
}

/// A checkpoint's worth of an assembler: resume reading at `position` with `open` lines in progress.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resume {
    pub position: Position,
    pub open: Vec<OpenLine>,
    /// Multiline entries in hand (their lines are behind `position` too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joined: Vec<JoinedLine>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenLine {
    pub stream: Stream,
    pub text: String,
    pub time_ns: i64,
    pub replaced: bool,
}

fn slot(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Assembler {
    /// An assembler that also joins lines by a service's multiline rule.
    pub fn new(rule: Option<std::sync::Arc<Rule>>) -> Assembler {
        Assembler { joiner: Joiner::new(rule), ..Assembler::default() }
    }

    /// Feeds one raw line; complete entries are appended to `out`. `now_ns` dates a corrupt record.
    pub fn push(&mut self, raw: &RawLine, now_ns: i64, out: &mut Vec<Entry>) {
        self.last = Some(raw.end);
        if raw.cut {
            // A record longer than the tailer's bound is not one dockerd wrote (it cuts at 16 KiB):
            // keep its bytes as a corrupt entry rather than holding it whole.
            self.corrupt_records += 1;
            let text = String::from_utf8_lossy(&raw.bytes).into_owned();
            let flags = Flags { truncated: true, corrupt: true, ..Flags::default() };
            self.joiner.push(Entry { text, stream: Stream::Stdout, time_ns: now_ns, flags }, now_ns, out);
            return;
        }
        if raw.bytes.is_empty() {
            return;
        }
        let rec = match jsonfile::parse(&raw.bytes) {
            Ok(r) => r,
            Err(_) => {
                self.corrupt_records += 1;
                let text = String::from_utf8_lossy(&raw.bytes).into_owned();
                let flags = Flags { corrupt: true, ..Flags::default() };
                self.joiner.push(Entry { text, stream: Stream::Stdout, time_ns: now_ns, flags }, now_ns, out);
                return;
            }
        };
        let s = slot(rec.stream);
        let open =
            self.open[s].get_or_insert_with(|| Open { text: String::new(), time_ns: rec.time_ns, replaced: false });
        open.replaced |= rec.replaced;
        let mut piece: &str = &rec.text;
        // Bound the entry: hand out full-size pieces as they fill.
        while open.text.len() + piece.len() > MAX_ENTRY_BYTES {
            let mut room = MAX_ENTRY_BYTES - open.text.len();
            while !piece.is_char_boundary(room) {
                room -= 1;
            }
            open.text.push_str(&piece[..room]);
            piece = &piece[room..];
            let text = std::mem::take(&mut open.text);
            let flags = Flags { truncated: true, replaced: open.replaced, corrupt: false };
            self.joiner.push(Entry { text, stream: rec.stream, time_ns: open.time_ns, flags }, now_ns, out);
        }
        open.text.push_str(piece);
        if !rec.partial {
            let o = self.open[s].take().expect("opened above");
            let flags = Flags { replaced: o.replaced, ..Flags::default() };
            self.joiner.push(Entry { text: o.text, stream: rec.stream, time_ns: o.time_ns, flags }, now_ns, out);
        }
    }

    /// Hands out multiline entries that waited long enough for more lines.
    pub fn tick(&mut self, now_ns: i64, out: &mut Vec<Entry>) {
        self.joiner.tick(now_ns, out);
    }

    /// When `tick` has something to hand out (agent clock, ns), if ever.
    pub fn due_at(&self) -> Option<i64> {
        self.joiner.due_at()
    }

    /// What a restart needs to go on exactly here: the end of the last raw line read, and the lines
    /// still being joined (their pieces are behind that position, so they travel in the checkpoint).
    /// `None` while nothing has been read.
    pub fn checkpoint(&self) -> Option<Resume> {
        let position = self.last?;
        let open = self
            .open
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let o = o.as_ref()?;
                Some(OpenLine {
                    stream: if i == 0 { Stream::Stdout } else { Stream::Stderr },
                    text: o.text.clone(),
                    time_ns: o.time_ns,
                    replaced: o.replaced,
                })
            })
            .collect();
        Some(Resume { position, open, joined: self.joiner.in_hand() })
    }

    /// An assembler that goes on from a checkpoint, joining by `rule` from now on.
    pub fn resume(r: &Resume, rule: Option<std::sync::Arc<Rule>>, now_ns: i64) -> Assembler {
        let joiner = Joiner::resume(rule, &r.joined, now_ns);
        let mut a = Assembler { last: Some(r.position), joiner, ..Assembler::default() };
        for o in &r.open {
            a.open[slot(o.stream)] = Some(Open { text: o.text.clone(), time_ns: o.time_ns, replaced: o.replaced });
        }
        a
    }

    /// Hands out whatever is still being joined (the container is gone; no more pieces will come).
    pub fn flush(&mut self, out: &mut Vec<Entry>) {
        for (i, o) in self.open.iter_mut().enumerate() {
            if let Some(o) = o.take() {
                let stream = if i == 0 { Stream::Stdout } else { Stream::Stderr };
                let flags = Flags { replaced: o.replaced, ..Flags::default() };
                self.joiner.push(Entry { text: o.text, stream, time_ns: o.time_ns, flags }, 0, out);
            }
        }
        self.joiner.flush(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::tail::FileId;

    fn raw(json: &str, offset: u64) -> RawLine {
        let file = FileId { dev: 1, ino: 2, fingerprint: 3, fingerprint_len: 4 };
        RawLine { bytes: json.as_bytes().to_vec(), end: Position { file, offset }, cut: false }
    }

    fn rec(text: &str, stream: &str) -> String {
        format!(
            r#"{{"log":{},"stream":"{stream}","time":"2026-11-23T12:00:00.5Z"}}"#,
            serde_json::to_string(text).unwrap()
        )
    }

    #[test]
    fn pieces_join_per_stream_even_when_streams_interleave() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        a.push(&raw(&rec("out-part1 ", "stdout"), 10), 0, &mut out);
        a.push(&raw(&rec("err whole\n", "stderr"), 20), 0, &mut out);
        a.push(&raw(&rec("out-part2\n", "stdout"), 30), 0, &mut out);
        let got: Vec<(&str, Stream)> = out.iter().map(|e| (e.text.as_str(), e.stream)).collect();
        assert_eq!(got, [("err whole", Stream::Stderr), ("out-part1 out-part2", Stream::Stdout)]);
        assert_eq!(out[1].time_ns, 1_795_435_200_500_000_000, "an entry is dated by its first piece");
    }

    #[test]
    fn a_checkpoint_carries_the_line_in_progress_so_nothing_repeats() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        a.push(&raw(&rec("first half ", "stdout"), 10), 0, &mut out);
        a.push(&raw(&rec("other\n", "stderr"), 20), 0, &mut out);
        let cp = a.checkpoint().unwrap();
        assert_eq!(cp.position.offset, 20);
        // A restart resumes after the stderr line with the stdout half in hand.
        let mut b = Assembler::resume(&cp, None, 0);
        let mut out2 = Vec::new();
        b.push(&raw(&rec("second half\n", "stdout"), 30), 0, &mut out2);
        assert_eq!(out2.len(), 1);
        assert_eq!(out2[0].text, "first half second half");
    }

    #[test]
    fn an_endless_line_is_handed_out_in_bounded_pieces() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let piece = "é".repeat(8 * 1024); // 16 KiB, as dockerd cuts
        let n = (MAX_ENTRY_BYTES / piece.len()) * 2 + 1;
        for i in 0..n {
            a.push(&raw(&rec(&piece, "stdout"), i as u64), 0, &mut out);
        }
        a.push(&raw(&rec("end\n", "stdout"), n as u64), 0, &mut out);
        assert!(out.iter().all(|e| e.text.len() <= MAX_ENTRY_BYTES));
        assert!(out[..out.len() - 1].iter().all(|e| e.flags.truncated));
        let joined: String = out.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(joined, format!("{}end", piece.repeat(n)), "nothing lost at the cuts, characters whole");
    }

    #[test]
    fn broken_records_are_kept_and_flagged() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        a.push(&raw(r#"{"log":"cut by a cra"#, 10), 42, &mut out);
        // dockerd writes bytes that are not UTF-8 as the escape \ufffd.
        a.push(&raw(r#"{"log":"bad \ufffd\n","stream":"stderr","time":"2026-11-23T12:00:00Z"}"#, 20), 0, &mut out);
        assert_eq!(out[0].text, r#"{"log":"cut by a cra"#);
        assert_eq!((out[0].flags.corrupt, out[0].time_ns), (true, 42));
        assert!(out[1].flags.replaced && !out[1].flags.corrupt);
        assert_eq!(a.corrupt_records, 1);
    }
}
