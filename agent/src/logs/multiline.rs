//! Multiline join for a service's logs (stack traces): a line matching the start pattern opens an
//! entry, the lines after it attach, bounded in lines, bytes and time; the entry in hand is checkpointed.

use regex::Regex;

use super::assemble::{Entry, Flags};
use super::jsonfile::Stream;

/// How one service's lines join.
#[derive(Clone, Debug)]
pub struct Rule {
    /// A line that matches opens a new entry; any other line belongs to the entry before it.
    pub start: Regex,
    /// An entry holds at most this many lines; the next line opens a new entry.
    pub max_lines: u32,
    /// An entry holds at most this many bytes (lines joined with `\n`).
    pub max_bytes: usize,
    /// A line written (by Docker's clock) more than this after the entry's last line opens a new
    /// entry, and an entry that got no line for this long (by the agent's clock) is handed out.
    pub max_wait_ns: i64,
}

/// An entry being joined, as a checkpoint keeps it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinedLine {
    pub stream: Stream,
    pub text: String,
    /// Docker's time of its first line: the entry's time.
    pub time_ns: i64,
    /// Docker's time of its last line.
    pub last_ns: i64,
    pub lines: u32,
    pub replaced: bool,
}

struct Joined {
    line: JoinedLine,
    /// The agent's clock when the last line attached.
    touched_ns: i64,
}

/// Joins one container's entries by its rule; without a rule, entries pass straight through.
#[derive(Default)]
pub struct Joiner {
    rule: Option<std::sync::Arc<Rule>>,
    open: [Option<Joined>; 2],
}

fn slot(s: Stream) -> usize {
    usize::from(s == Stream::Stderr)
}

impl Joiner {
    pub fn new(rule: Option<std::sync::Arc<Rule>>) -> Joiner {
        Joiner { rule, open: [None, None] }
    }

    /// Goes on from a checkpoint's entries in hand; without a rule (the config changed) they are
    /// handed out at the next `tick`.
    pub fn resume(rule: Option<std::sync::Arc<Rule>>, joined: &[JoinedLine], now_ns: i64) -> Joiner {
        let mut j = Joiner::new(rule);
        for l in joined {
            j.open[slot(l.stream)] = Some(Joined { line: l.clone(), touched_ns: now_ns });
        }
        j
    }

    /// Takes one complete entry; entries that are complete now go to `out`. `now_ns` is the agent's clock.
    pub fn push(&mut self, e: Entry, now_ns: i64, out: &mut Vec<Entry>) {
        let s = slot(e.stream);
        let Some(rule) = self.rule.as_deref() else {
            hand_out(&mut self.open[s], false, out);
            out.push(e);
            return;
        };
        if e.flags.corrupt || e.flags.truncated {
            // A broken record or a piece of an overlong line stands alone.
            hand_out(&mut self.open[s], false, out);
            out.push(e);
            return;
        }
        if let Some(o) = &mut self.open[s] {
            let continues = e.time_ns - o.line.last_ns <= rule.max_wait_ns && !rule.start.is_match(&e.text);
            if continues && o.line.lines < rule.max_lines && o.line.text.len() + 1 + e.text.len() <= rule.max_bytes {
                o.line.text.push('\n');
                o.line.text.push_str(&e.text);
                o.line.lines += 1;
                o.line.last_ns = o.line.last_ns.max(e.time_ns);
                o.line.replaced |= e.flags.replaced;
                o.touched_ns = now_ns;
                return;
            }
            // A bound cut the entry: the rest follows in further entries, as for an overlong line.
            hand_out(&mut self.open[s], continues, out);
        }
        self.open[s] = Some(Joined {
            line: JoinedLine {
                stream: e.stream,
                text: e.text,
                time_ns: e.time_ns,
                last_ns: e.time_ns,
                lines: 1,
                replaced: e.flags.replaced,
            },
            touched_ns: now_ns,
        });
    }

    /// Hands out entries that got no line for the rule's `max_wait`.
    pub fn tick(&mut self, now_ns: i64, out: &mut Vec<Entry>) {
        for o in &mut self.open {
            let due = match (&self.rule, o.as_ref()) {
                (Some(rule), Some(j)) => now_ns - j.touched_ns >= rule.max_wait_ns,
                (None, Some(_)) => true,
                (_, None) => false,
            };
            if due {
                hand_out(o, false, out);
            }
        }
    }

    /// When the next entry in hand is due (agent clock, ns), if any.
    pub fn due_at(&self) -> Option<i64> {
        let wait = self.rule.as_ref().map_or(0, |r| r.max_wait_ns);
        self.open.iter().flatten().map(|j| j.touched_ns + wait).min()
    }

    /// Hands out everything in hand (the container is gone).
    pub fn flush(&mut self, out: &mut Vec<Entry>) {
        for o in &mut self.open {
            hand_out(o, false, out);
        }
    }

    /// The entries in hand, for a checkpoint.
    pub fn in_hand(&self) -> Vec<JoinedLine> {
        self.open.iter().flatten().map(|j| j.line.clone()).collect()
    }
}

fn hand_out(o: &mut Option<Joined>, cut: bool, out: &mut Vec<Entry>) {
    if let Some(j) = o.take() {
        let flags = Flags { truncated: cut, replaced: j.line.replaced, corrupt: false };
        out.push(Entry { text: j.line.text, stream: j.line.stream, time_ns: j.line.time_ns, flags });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const SEC: i64 = 1_000_000_000;

    fn rule() -> Arc<Rule> {
        Arc::new(Rule {
            start: Regex::new(r"^\d{4}-\d\d-\d\d ").unwrap(),
            max_lines: 4,
            max_bytes: 200,
            max_wait_ns: SEC,
        })
    }

    fn entry(text: &str, t: i64) -> Entry {
        Entry { text: text.into(), stream: Stream::Stdout, time_ns: t, flags: Flags::default() }
    }

    fn texts(out: &[Entry]) -> Vec<&str> {
        out.iter().map(|e| e.text.as_str()).collect()
    }

    #[test]
    fn a_stack_trace_is_one_entry_dated_by_its_first_line() {
        let mut j = Joiner::new(Some(rule()));
        let mut out = Vec::new();
        j.push(entry("2026-11-23 ERROR boom", 10), 0, &mut out);
        j.push(entry("java.lang.IllegalStateException: x", 11), 0, &mut out);
        j.push(entry("\tat a.b(C.java:1)", 12), 0, &mut out);
        assert!(out.is_empty(), "the entry waits for its end");
        j.push(entry("2026-11-23 INFO next", 13), 0, &mut out);
        assert_eq!(texts(&out), ["2026-11-23 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.b(C.java:1)"]);
        assert_eq!(out[0].time_ns, 10);
        j.flush(&mut out);
        assert_eq!(texts(&out)[1], "2026-11-23 INFO next");
    }

    #[test]
    fn bounds_cut_an_entry_and_flag_it() {
        let mut j = Joiner::new(Some(rule()));
        let mut out = Vec::new();
        j.push(entry("2026-11-23 start", 0), 0, &mut out);
        for i in 0..5 {
            j.push(entry(&format!("  more {i}"), 1), 0, &mut out);
        }
        j.flush(&mut out);
        assert_eq!(texts(&out), ["2026-11-23 start\n  more 0\n  more 1\n  more 2", "  more 3\n  more 4"]);
        assert!(out[0].flags.truncated && !out[1].flags.truncated);

        let mut out = Vec::new();
        j.push(entry("2026-11-23 start", 0), 0, &mut out);
        j.push(entry(&"x".repeat(190), 1), 0, &mut out);
        assert_eq!(out.len(), 1, "over max_bytes the line opens its own entry");
    }

    #[test]
    fn a_line_written_long_after_does_not_attach() {
        let mut j = Joiner::new(Some(rule()));
        let mut out = Vec::new();
        j.push(entry("2026-11-23 start", 0), 0, &mut out);
        j.push(entry("  late", 5 * SEC), 0, &mut out);
        assert_eq!(texts(&out), ["2026-11-23 start"]);
        assert!(!out[0].flags.truncated);
    }

    #[test]
    fn an_idle_entry_is_handed_out_after_max_wait() {
        let mut j = Joiner::new(Some(rule()));
        let mut out = Vec::new();
        j.push(entry("2026-11-23 start", 0), 100, &mut out);
        assert_eq!(j.due_at(), Some(100 + SEC));
        j.tick(100 + SEC - 1, &mut out);
        assert!(out.is_empty());
        j.tick(100 + SEC, &mut out);
        assert_eq!(texts(&out), ["2026-11-23 start"]);
        assert_eq!(j.due_at(), None);
    }

    #[test]
    fn streams_join_apart_and_broken_records_stand_alone() {
        let mut j = Joiner::new(Some(rule()));
        let mut out = Vec::new();
        j.push(entry("2026-11-23 out", 0), 0, &mut out);
        j.push(Entry { stream: Stream::Stderr, ..entry("2026-11-23 err", 0) }, 0, &mut out);
        j.push(Entry { stream: Stream::Stderr, ..entry("  err more", 0) }, 0, &mut out);
        j.push(entry("  out more", 0), 0, &mut out);
        j.push(Entry { flags: Flags { corrupt: true, ..Flags::default() }, ..entry("{\"log\":", 0) }, 0, &mut out);
        j.flush(&mut out);
        assert_eq!(texts(&out), ["2026-11-23 out\n  out more", "{\"log\":", "2026-11-23 err\n  err more"]);
    }

    #[test]
    fn a_resumed_joiner_finishes_the_entry_in_hand() {
        let mut j = Joiner::new(Some(rule()));
        let mut out = Vec::new();
        j.push(entry("2026-11-23 start", 0), 0, &mut out);
        j.push(entry("  one", 1), 0, &mut out);
        let hand = j.in_hand();
        let mut k = Joiner::resume(Some(rule()), &hand, 50);
        k.push(entry("  two", 2), 50, &mut out);
        k.push(entry("2026-11-23 next", 3), 50, &mut out);
        assert_eq!(texts(&out), ["2026-11-23 start\n  one\n  two"]);
        // Without a rule any more, what was in hand goes out at the next tick.
        let mut l = Joiner::resume(None, &hand, 50);
        l.tick(50, &mut out);
        assert_eq!(texts(&out)[1], "2026-11-23 start\n  one");
    }

    #[test]
    fn without_a_rule_entries_pass_straight_through() {
        let mut j = Joiner::default();
        let mut out = Vec::new();
        j.push(entry("  indented", 0), 0, &mut out);
        assert_eq!(texts(&out), ["  indented"]);
        assert_eq!(j.due_at(), None);
    }
}
