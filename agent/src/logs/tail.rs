//! Follows one container's json-file log through Docker's rotations: byte-exact positions, file
//! identity by device, inode and a fingerprint of the first bytes, and resumption from a checkpoint.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How many leading bytes identify a file beside its inode: Docker reuses inodes for new files
/// (an inode alone would make a new file look like an old one already read).
const FINGERPRINT_BYTES: usize = 256;

/// A raw line longer than this is cut into pieces of this size, each marked `cut`; nothing ever
/// holds a whole over-long line in memory.
pub const MAX_RAW_LINE: usize = 256 * 1024;

/// A file's identity: the same bytes at the same place, whatever its name is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// FNV-1a of the first `FINGERPRINT_BYTES` bytes, and how many there were when it was taken.
    pub fingerprint: u64,
    pub fingerprint_len: u32,
}

impl FileId {
    fn of(file: &mut File) -> std::io::Result<FileId> {
        let meta = file.metadata()?;
        let mut head = [0u8; FINGERPRINT_BYTES];
        let n = read_at_most(file, 0, &mut head)?;
        Ok(FileId { dev: meta.dev(), ino: meta.ino(), fingerprint: fnv1a(&head[..n]), fingerprint_len: n as u32 })
    }

    /// Whether `file` is this file: same inode and, over the bytes this id fingerprinted, the same
    /// content (a file only grows at the end, so those bytes never change).
    fn matches(&self, file: &mut File) -> std::io::Result<bool> {
        let meta = file.metadata()?;
        if meta.dev() != self.dev || meta.ino() != self.ino {
            return Ok(false);
        }
        let mut head = vec![0u8; self.fingerprint_len as usize];
        let n = read_at_most(file, 0, &mut head)?;
        Ok(n == head.len() && fnv1a(&head) == self.fingerprint)
    }
}

fn read_at_most(file: &mut File, at: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    file.seek(SeekFrom::Start(at))?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| (h ^ c as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Where reading stands: the file and the offset just past the last line handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub file: FileId,
    pub offset: u64,
}

/// One raw line of the file (without `\n`) and the position just past it.
#[derive(Debug, PartialEq, Eq)]
pub struct RawLine {
    pub bytes: Vec<u8>,
    /// Resume here to read what follows this line.
    pub end: Position,
    /// A piece of a line longer than `MAX_RAW_LINE`; more pieces follow.
    pub cut: bool,
}

/// What happened to the file since the last read, for the caller to report.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The file was renamed away and a new one took its name; the old one was read to its end first.
    Rotated,
    /// The file became shorter than what was read: read again from the start.
    Truncated,
    /// The checkpointed file was found under a rotated name (`<log>.1` ...) and is read from there.
    ResumedRotated(PathBuf),
    /// The checkpointed file is gone (rotated out of `max-file`): reading starts at the oldest file left.
    CheckpointLost,
}

/// Reads one container's log path: follows it across rotation and truncation, never skips or repeats.
pub struct Tailer {
    path: PathBuf,
    /// Files still to read before the live one, oldest first (after a restart behind rotations).
    backlog: Vec<PathBuf>,
    file: Option<(File, FileId)>,
    /// Bytes read past the last complete line.
    pending: Vec<u8>,
    /// Offset of `pending`'s first byte (= the end of the last line handed out).
    offset: u64,
    buf: Vec<u8>,
}

impl Tailer {
    /// Starts at `from` when given (a checkpoint), else at the beginning of the oldest file Docker
    /// still keeps for this log, so a container's first lines are never skipped.
    pub fn open(path: &Path, from: Option<Position>) -> std::io::Result<(Tailer, Vec<Event>)> {
        let mut t = Tailer {
            path: path.to_path_buf(),
            backlog: Vec::new(),
            file: None,
            pending: Vec::new(),
            offset: 0,
            buf: Vec::new(),
        };
        let mut events = Vec::new();
        let rotated = rotated_siblings(path); // newest first: .1, .2, ...
        match from {
            None => {
                t.backlog = rotated.into_iter().rev().collect();
            }
            Some(pos) => {
                let mut found = None;
                if let Ok(mut f) = File::open(path) {
                    if pos.file.matches(&mut f)? {
                        found = Some((f, None));
                    }
                }
                if found.is_none() {
                    for (i, p) in rotated.iter().enumerate() {
                        if let Ok(mut f) = File::open(p) {
                            if pos.file.matches(&mut f)? {
                                // Newer rotated files (.i-1 ... .1), then the live one.
                                t.backlog = rotated[..i].iter().rev().cloned().collect();
                                found = Some((f, Some(p.clone())));
                                break;
                            }
                        }
                    }
                }
                match found {
                    Some((f, rotated_name)) => {
                        if let Some(p) = rotated_name {
                            events.push(Event::ResumedRotated(p));
                        }
                        t.file = Some((f, pos.file));
                        t.offset = pos.offset;
                    }
                    None => {
                        events.push(Event::CheckpointLost);
                        t.backlog = rotated.into_iter().rev().collect();
                    }
                }
            }
        }
        Ok((t, events))
    }

    /// The position after the last line handed out (what a checkpoint records once acknowledged).
    pub fn position(&self) -> Option<Position> {
        self.file.as_ref().map(|(_, id)| Position { file: *id, offset: self.offset })
    }

    /// Reads up to about `budget` bytes of complete lines. Returns them with what happened to the
    /// file on the way; an empty result means nothing new (for now).
    pub fn read(&mut self, budget: usize) -> std::io::Result<(Vec<RawLine>, Vec<Event>)> {
        let mut lines = Vec::new();
        let mut events = Vec::new();
        let mut used = 0;
        loop {
            if self.file.is_none() && !self.open_next()? {
                return Ok((lines, events));
            }
            // Read what the open file has.
            let got = self.fill(&mut lines, budget.saturating_sub(used))?;
            used += got;
            if used >= budget {
                return Ok((lines, events));
            }
            if got > 0 {
                continue;
            }
            // At the end of the open file: is it still the file at `path`?
            if !self.backlog.is_empty() {
                self.finish_file(&mut lines);
                continue;
            }
            let (file, id) = self.file.as_mut().expect("open above");
            let size = file.metadata()?.len();
            if size < self.offset + self.pending.len() as u64 {
                events.push(Event::Truncated);
                self.pending.clear();
                self.offset = 0;
                *id = FileId::of(file)?;
                continue;
            }
            // The path still names the open file when device and inode agree: an inode cannot be
            // reused while this descriptor holds it. (A stat, not an open: no file event.)
            match std::fs::metadata(&self.path) {
                Ok(live) => {
                    if live.dev() == id.dev && live.ino() == id.ino {
                        return Ok((lines, events));
                    }
                    // Rotated: the old file was read to its end through its descriptor just now
                    // (a last read after the rename catches what was written in between).
                    let got = self.fill(&mut lines, usize::MAX)?;
                    if got > 0 {
                        continue;
                    }
                    events.push(Event::Rotated);
                    self.finish_file(&mut lines);
                }
                // The container is gone (or not yet there): stay on what is open.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((lines, events)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Leaves the open file: a trailing line without `\n` there will never be finished, so it is
    /// handed out as it is.
    fn finish_file(&mut self, lines: &mut Vec<RawLine>) {
        if !self.pending.is_empty() {
            let id = self.file.as_ref().expect("a file is open").1;
            self.offset += self.pending.len() as u64;
            lines.push(RawLine {
                bytes: std::mem::take(&mut self.pending),
                end: Position { file: id, offset: self.offset },
                cut: false,
            });
        }
        self.file = None;
    }

    /// Opens the next file: the oldest of the backlog, else the live path from its start.
    fn open_next(&mut self) -> std::io::Result<bool> {
        let path = if self.backlog.is_empty() { self.path.clone() } else { self.backlog.remove(0) };
        match File::open(&path) {
            Ok(mut f) => {
                let id = FileId::of(&mut f)?;
                self.file = Some((f, id));
                self.offset = 0;
                self.pending.clear();
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(!self.backlog.is_empty() && self.open_next()?),
            Err(e) => Err(e),
        }
    }

    /// Reads from the open file at the current position, splitting complete lines off. Returns the
    /// bytes read.
    fn fill(&mut self, lines: &mut Vec<RawLine>, budget: usize) -> std::io::Result<usize> {
        let (file, id) = self.file.as_mut().expect("a file is open");
        let id = *id;
        file.seek(SeekFrom::Start(self.offset + self.pending.len() as u64))?;
        let mut total = 0;
        // Until a file gives its first bytes, read into a small stack buffer: a container that never
        // logs then never holds the 64 KiB one (6.5 MB of an agent's memory for 100 quiet containers).
        let mut first = [0u8; 4096];
        while total < budget {
            let quiet = self.buf.is_empty();
            let n = if quiet { file.read(&mut first)? } else { file.read(&mut self.buf)? };
            if n == 0 {
                break;
            }
            total += n;
            let mut chunk = if quiet { &first[..n] } else { &self.buf[..n] };
            while let Some(nl) = memchr::memchr(b'\n', chunk) {
                let mut bytes = std::mem::take(&mut self.pending);
                bytes.extend_from_slice(&chunk[..nl]);
                // What came before the newline in this chunk may take the line past the bound.
                while bytes.len() > MAX_RAW_LINE {
                    let rest = bytes.split_off(MAX_RAW_LINE);
                    let piece = std::mem::replace(&mut bytes, rest);
                    self.offset += piece.len() as u64;
                    lines.push(RawLine { bytes: piece, end: Position { file: id, offset: self.offset }, cut: true });
                }
                self.offset += bytes.len() as u64 + 1;
                chunk = &chunk[nl + 1..];
                lines.push(RawLine { bytes, end: Position { file: id, offset: self.offset }, cut: false });
            }
            self.pending.extend_from_slice(chunk);
            while self.pending.len() >= MAX_RAW_LINE {
                let rest = self.pending.split_off(MAX_RAW_LINE);
                let piece = std::mem::replace(&mut self.pending, rest);
                self.offset += piece.len() as u64;
                lines.push(RawLine { bytes: piece, end: Position { file: id, offset: self.offset }, cut: true });
            }
            if quiet {
                self.buf = vec![0u8; 64 * 1024];
            }
        }
        // A young file's fingerprint covers what it had when opened; take it again as the file grows
        // (the leading bytes never change, so the longer fingerprint still names the same file).
        if let Some((file, id)) = self.file.as_mut() {
            if total > 0 && (id.fingerprint_len as usize) < FINGERPRINT_BYTES {
                *id = FileId::of(file)?;
            }
        }
        Ok(total)
    }
}

/// `<path>.1`, `<path>.2`, ... that exist, newest (`.1`) first, as Docker's json-file names them.
fn rotated_siblings(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for i in 1.. {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{i}"));
        let p = PathBuf::from(p);
        if !p.exists() {
            break;
        }
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    fn texts(lines: &[RawLine]) -> Vec<String> {
        lines.iter().map(|l| String::from_utf8_lossy(&l.bytes).to_string()).collect()
    }

    fn numbered(from: usize, to: usize) -> String {
        (from..to).map(|i| format!("line {i:04} padding to make the file longer than a fingerprint\n")).collect()
    }

    #[test]
    fn looking_for_more_at_the_end_of_a_file_does_not_open_it() {
        // An open of a watched log is a file event; a reader woken by its own opens would spin.
        use notify::Watcher;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c-json.log");
        append(&log, &numbered(0, 10));
        let (mut t, _) = Tailer::open(&log, None).unwrap();
        assert_eq!(t.read(1 << 20).unwrap().0.len(), 10);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut w = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            let _ = tx.send(e.map(|e| (e.kind, e.paths)));
        })
        .unwrap();
        w.watch(dir.path(), notify::RecursiveMode::NonRecursive).unwrap();
        for _ in 0..50 {
            assert!(t.read(1 << 20).unwrap().0.is_empty());
        }
        // A marker file's creation closes the count: every event before it came from the reads.
        std::fs::write(dir.path().join("marker"), b"").unwrap();
        let mut opens = 0;
        loop {
            let (kind, paths) =
                rx.recv_timeout(std::time::Duration::from_secs(5)).expect("the marker's event").unwrap();
            match kind {
                notify::EventKind::Create(_) => break,
                notify::EventKind::Access(notify::event::AccessKind::Open(_)) if paths.contains(&log) => opens += 1,
                _ => {}
            }
        }
        assert_eq!(opens, 0, "50 reads at the end of the file opened it {opens} times");
    }

    #[test]
    fn a_line_is_handed_out_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c-json.log");
        append(&log, "one\ntw");
        let (mut t, ev) = Tailer::open(&log, None).unwrap();
        assert!(ev.is_empty());
        let (lines, _) = t.read(1 << 20).unwrap();
        assert_eq!(texts(&lines), ["one"]);
        assert_eq!(lines[0].end.offset, 4);
        append(&log, "o\nthree\n");
        let (lines, _) = t.read(1 << 20).unwrap();
        assert_eq!(texts(&lines), ["two", "three"]);
        assert_eq!(t.position().unwrap().offset, 14);
        assert!(t.read(1 << 20).unwrap().0.is_empty());
    }

    #[test]
    fn rotation_by_rename_finishes_the_old_file_then_reads_the_new_one_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c-json.log");
        append(&log, &numbered(0, 10));
        let (mut t, _) = Tailer::open(&log, None).unwrap();
        assert_eq!(t.read(1 << 20).unwrap().0.len(), 10);
        // Written after our read, then rotated away as dockerd does: rename, new file.
        append(&log, &numbered(10, 15));
        std::fs::rename(&log, dir.path().join("c-json.log.1")).unwrap();
        append(&log, &numbered(15, 20));
        let (lines, events) = t.read(1 << 20).unwrap();
        assert_eq!(events, [Event::Rotated]);
        assert_eq!(texts(&lines), numbered(10, 20).lines().collect::<Vec<_>>());
    }

    #[test]
    fn a_checkpoint_resumes_across_two_rotations_without_loss_or_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c-json.log");
        append(&log, &numbered(0, 10));
        let (mut t, _) = Tailer::open(&log, None).unwrap();
        let (lines, _) = t.read(1 << 20).unwrap();
        let checkpoint = lines[5].end; // acknowledged up to line 5
        drop(t);
        // While the agent is away: two rotations (max-file=3).
        append(&log, &numbered(10, 12));
        std::fs::rename(&log, dir.path().join("c-json.log.1")).unwrap();
        append(&log, &numbered(12, 20));
        std::fs::rename(dir.path().join("c-json.log.1"), dir.path().join("c-json.log.2")).unwrap();
        std::fs::rename(&log, dir.path().join("c-json.log.1")).unwrap();
        append(&log, &numbered(20, 25));

        let (mut t, events) = Tailer::open(&log, Some(checkpoint)).unwrap();
        assert_eq!(events, [Event::ResumedRotated(dir.path().join("c-json.log.2"))]);
        let mut all = Vec::new();
        loop {
            let (lines, _) = t.read(100).unwrap();
            if lines.is_empty() {
                break;
            }
            all.extend(texts(&lines));
        }
        assert_eq!(all, numbered(6, 25).lines().collect::<Vec<_>>());
    }

    #[test]
    fn a_truncated_file_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c-json.log");
        append(&log, &numbered(0, 10));
        let (mut t, _) = Tailer::open(&log, None).unwrap();
        t.read(1 << 20).unwrap();
        std::fs::OpenOptions::new().write(true).truncate(true).open(&log).unwrap();
        append(&log, "after\n");
        let (lines, events) = t.read(1 << 20).unwrap();
        assert_eq!(events, [Event::Truncated]);
        assert_eq!(texts(&lines), ["after"]);
    }

    #[test]
    fn a_checkpoint_for_other_content_under_the_same_inode_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c-json.log");
        append(&log, &numbered(0, 10));
        let (mut t, _) = Tailer::open(&log, None).unwrap();
        let (lines, _) = t.read(1 << 20).unwrap();
        let checkpoint = lines[8].end;
        // Same inode, new content: what inode reuse looks like to a reader.
        std::fs::write(&log, numbered(100, 110)).unwrap();
        let (mut t, events) = Tailer::open(&log, Some(checkpoint)).unwrap();
        assert_eq!(events, [Event::CheckpointLost]);
        assert_eq!(texts(&t.read(1 << 20).unwrap().0), numbered(100, 110).lines().collect::<Vec<_>>());
    }

    #[test]
    fn an_over_long_line_comes_in_bounded_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c-json.log");
        let long = "x".repeat(MAX_RAW_LINE * 2 + 10);
        append(&log, &format!("{long}\nshort\n"));
        let (mut t, _) = Tailer::open(&log, None).unwrap();
        let (lines, _) = t.read(1 << 30).unwrap();
        let sizes: Vec<(usize, bool)> = lines.iter().map(|l| (l.bytes.len(), l.cut)).collect();
        assert_eq!(sizes, [(MAX_RAW_LINE, true), (MAX_RAW_LINE, true), (10, false), (5, false)]);
        assert_eq!(lines.last().unwrap().end.offset, long.len() as u64 + 1 + 6);
    }

    #[test]
    fn a_line_past_the_bound_ending_inside_a_read_is_cut_too() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c-json.log");
        let long = "y".repeat(MAX_RAW_LINE + 100);
        append(&log, &format!("{long}\nshort\n"));
        let (mut t, _) = Tailer::open(&log, None).unwrap();
        let (lines, _) = t.read(1 << 30).unwrap();
        let sizes: Vec<(usize, bool)> = lines.iter().map(|l| (l.bytes.len(), l.cut)).collect();
        assert_eq!(sizes, [(MAX_RAW_LINE, true), (100, false), (5, false)]);
        assert_eq!(lines[0].end.offset, MAX_RAW_LINE as u64);
        assert_eq!(lines.last().unwrap().end.offset, long.len() as u64 + 1 + 6);
    }
}
