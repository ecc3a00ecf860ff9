//! The log reader: follows every json-file container log on its own thread, hands tagged lines to
//! shipping with the checkpoints they reach, and saves a checkpoint only once the collector has it.
//! Flow control: at most `in_flight_bytes` of lines wait for acks; beyond that the files are the buffer.
//! File events (inotify through `notify`) say which logs to read; a slow poll is the safety net.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::assemble::{Assembler, Entry, Flags, Resume};
use super::checkpoint::Checkpoints;
use super::jsonfile::Stream;
use super::multiline::Rule;
use super::tail::{Event, Tailer};
use crate::clock::now_ns;
use crate::discover::{identity, Container, ContainerSet};
use crate::telemetry::AgentMetrics;

/// Lines read in one round from one container at most, so that a flood does not starve the others.
const ROUND_BYTES: usize = 256 * 1024;
/// How often every file is looked at when no file event came (events can be lost: a full inotify
/// queue, a file system without inotify); also how soon a new container's log is opened.
const SAFETY_POLL: Duration = Duration::from_millis(500);
/// How often files are looked at when file events are not available at all.
const POLL: Duration = Duration::from_millis(100);
/// Acknowledged checkpoints are written to the state dir at most this often.
const SAVE_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct LogReaderConfig {
    pub host: String,
    pub include_labels: Vec<String>,
    pub state_dir: PathBuf,
    /// Bytes of lines sent but not yet acknowledged, at most.
    pub in_flight_bytes: usize,
    /// Multiline joins by service or image, first match wins.
    pub multiline: Vec<crate::config::MultilineConfig>,
    /// Where `log_error_rate` probes read their counts; the reader counts watched containers' lines.
    pub error_rates: Arc<crate::probe::errors::ErrorRates>,
}

/// The multiline rule for a container, if one matches it.
fn rule_for(cfg: &[(crate::config::MultilineConfig, Arc<Rule>)], c: &Container) -> Option<Arc<Rule>> {
    let service = identity::service_of(c);
    cfg.iter().find(|(m, _)| m.matches(&service, &c.image)).map(|(_, r)| r.clone())
}

/// A stream's worth of lines for shipping.
#[derive(Debug, Default)]
pub struct TaggedStream {
    pub labels: Vec<(String, String)>,
    /// (time_ns, text, why the line is not exactly what the container wrote)
    pub lines: Vec<(i64, String, Flags)>,
}

/// What reaching the collector means for the reader: checkpoints that become safe, bytes released.
#[derive(Debug, Default)]
pub struct LogAck {
    pub checkpoints: Vec<(String, Resume)>,
    /// Containers no longer running whose logs were read to their end, with their log paths: a
    /// checkpoint goes once its file is gone (a stopped container may start again and write on).
    pub finished: Vec<(String, PathBuf)>,
    pub bytes: usize,
}

impl LogAck {
    /// Folds a later ack into this one (later checkpoints win).
    pub fn merge(&mut self, later: LogAck) {
        for (id, r) in later.checkpoints {
            match self.checkpoints.iter_mut().find(|(i, _)| *i == id) {
                Some(slot) => slot.1 = r,
                None => self.checkpoints.push((id, r)),
            }
        }
        self.finished.extend(later.finished);
        self.bytes += later.bytes;
    }
}

/// Lines and what their acknowledgement makes safe.
#[derive(Debug, Default)]
pub struct LogBatch {
    pub streams: Vec<TaggedStream>,
    pub ack: LogAck,
}

struct Followed {
    path: PathBuf,
    tailer: Tailer,
    asm: Assembler,
    labels: Vec<(String, String)>,
    /// Counts this container's lines for its `log_error_rate` probe, if it has one.
    error_rates: Arc<crate::probe::errors::ErrorRates>,
}

/// Runs until `shutdown`; `send` hands a batch to shipping (blocking while shipping is busy).
/// `containers` are the running containers, `stopped` this agent's stopped ones: a stopped
/// container's log is read to its end when the agent has read some of it before (a checkpoint) or
/// it stopped after the agent was last reading (it ran, unread, while the agent was away or waiting
/// for its collector).
#[allow(clippy::too_many_arguments)]
pub fn run(
    cfg: LogReaderConfig,
    containers: ContainerSet,
    stopped: ContainerSet,
    acks: std::sync::mpsc::Receiver<LogAck>,
    welcomes: std::sync::mpsc::Receiver<Vec<(String, Vec<u8>)>>,
    metrics: AgentMetrics,
    shutdown: CancellationToken,
    mut send: impl FnMut(LogBatch) -> bool,
) {
    // Before this run saves anything: a stopped container that finished after this may have lines
    // no agent read.
    let last_reading = Checkpoints::saved_at(&cfg.state_dir).unwrap_or_else(std::time::SystemTime::now);
    let last_reading = last_reading.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0) - 1.0;
    let mut saved = match Checkpoints::load(&cfg.state_dir) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "log checkpoints unreadable: logs are read from the start of what Docker keeps");
            Checkpoints::default()
        }
    };
    // Nothing is read before a collector has said where its committed lines end: the local checkpoint
    // is written after an ack, and a crash between the two would otherwise repeat those lines. (Lines
    // could not be delivered before a Welcome anyway; the files hold them meanwhile.)
    let from_collector = loop {
        match welcomes.recv_timeout(POLL) {
            Ok(r) => break r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !shutdown.is_cancelled() => continue,
            Err(_) => return,
        }
    };
    tracing::info!(positions = from_collector.len(), "the collector said where its log lines end; reading logs");
    for (source, state) in from_collector {
        match serde_json::from_slice::<Resume>(&state) {
            Ok(r) => {
                saved.containers.insert(source, r);
            }
            Err(e) => {
                tracing::warn!(container = %source, error = %e, "the collector's log position is unreadable; using the local one")
            }
        }
    }
    let rules: Vec<(crate::config::MultilineConfig, Arc<Rule>)> = cfg
        .multiline
        .iter()
        .map(|m| {
            let rule = Rule {
                start: m.start.0.clone(),
                max_lines: m.max_lines,
                max_bytes: m.max_kib * 1024,
                max_wait_ns: m.max_wait.as_nanos() as i64,
            };
            (m.clone(), Arc::new(rule))
        })
        .collect();
    let mut followed: HashMap<String, Followed> = HashMap::new();
    // Where the reading of a container that stopped ended, until the collector has acknowledged it:
    // if the container starts again first, reading goes on from here, not from the last
    // acknowledged position (which would send the lines in flight twice).
    let mut left: HashMap<String, Resume> = HashMap::new();
    let mut reported: std::collections::HashSet<String> = Default::default();
    // Stopped containers whose logs this run has read to their end (until they start again).
    let mut done: std::collections::HashSet<String> = Default::default();
    let mut in_flight = 0usize;
    let (wake_tx, wake) = std::sync::mpsc::channel::<PathBuf>();
    let mut watcher = match notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        // Opens and closes say nothing new, and the reader's own opens of a log would otherwise wake
        // it again and again (a loop that keeps a core busy at the end of every file).
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        for p in ev.paths {
            let _ = wake_tx.send(p);
        }
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "no file events (inotify): logs are polled every {POLL:?}");
            None
        }
    };
    // Containers to read now: their directory had an event, or the last read was cut by a budget.
    let mut dirty: std::collections::HashSet<String> = Default::default();
    // A followed log's directory to its container (an event names a file in it).
    let mut by_dir: HashMap<PathBuf, String> = HashMap::new();
    let mut last_full = std::time::Instant::now();
    let mut early_ack: Option<LogAck> = None;
    let mut unsaved = false;
    let mut last_save = std::time::Instant::now();
    let mut seen_containers = usize::MAX;
    while !shutdown.is_cancelled() {
        // Acknowledged: those checkpoints are safe now.
        let mut changed = false;
        while let Some(ack) = early_ack.take().or_else(|| acks.try_recv().ok()) {
            in_flight = in_flight.saturating_sub(ack.bytes);
            for (id, r) in ack.checkpoints {
                saved.containers.insert(id, r);
                changed = true;
            }
            for (id, path) in ack.finished {
                // Acknowledged up to where its reading ended (a stop after a quick restart leaves a
                // later end, kept until its own acknowledgement).
                if left.get(&id).is_some_and(|end| saved.containers.get(&id) == Some(end)) {
                    left.remove(&id);
                }
                if !path.exists() {
                    left.remove(&id);
                    changed |= saved.containers.remove(&id).is_some();
                }
            }
        }
        // Saved at most once a second: each save is two fsyncs, and the collector's Welcome (which
        // wins over this file) already holds every acknowledged position.
        unsaved |= changed;
        if unsaved && last_save.elapsed() >= SAVE_EVERY {
            unsaved = false;
            last_save = std::time::Instant::now();
            if let Err(e) = saved.save(&cfg.state_dir) {
                tracing::warn!(error = %e, "cannot save log checkpoints; lines may be read again after a restart");
            }
        }

        let current: Vec<Arc<Container>> =
            containers.read().expect("container set poisoned").values().cloned().collect();
        if current.len() != seen_containers {
            seen_containers = current.len();
            tracing::debug!(containers = seen_containers, followed = followed.len(), "containers to read");
        }
        for c in &current {
            done.remove(c.id.as_str());
        }
        // Stopped ones with lines still to read are opened and, not running, read to their end at once.
        let unfinished: Vec<Arc<Container>> = stopped
            .read()
            .expect("container set poisoned")
            .values()
            .filter(|c| {
                let id = c.id.as_str();
                !done.contains(id)
                    && !followed.contains_key(id)
                    && (saved.containers.contains_key(id)
                        || left.contains_key(id)
                        || c.finished_at.is_some_and(|t| t >= last_reading))
            })
            .cloned()
            .collect();
        for c in current.iter().chain(&unfinished) {
            let id = c.id.as_str().to_string();
            if followed.contains_key(&id) {
                continue;
            }
            let Some(path) = c.log_path.as_ref().filter(|_| c.log_driver == "json-file") else {
                if reported.insert(id.clone()) {
                    tracing::info!(container = %c.name, driver = %c.log_driver, "log driver is not json-file: its logs are not read");
                }
                continue;
            };
            let resume = left.remove(&id).or_else(|| saved.containers.get(&id).cloned());
            tracing::debug!(container = %c.name, path = %path.display(), from = ?resume.as_ref().map(|r| r.position.offset), "following the log");
            match Tailer::open(path, resume.as_ref().map(|r| r.position)) {
                Ok((tailer, events)) => {
                    for e in events {
                        log_event(&c.name, &e);
                    }
                    let rule = rule_for(&rules, c);
                    let asm = match resume.as_ref() {
                        Some(r) => Assembler::resume(r, rule, now_ns()),
                        None => Assembler::new(rule),
                    };
                    let labels = identity::identity_labels(&cfg.host, c, &cfg.include_labels);
                    if let (Some(w), Some(dir)) = (watcher.as_mut(), path.parent()) {
                        use notify::Watcher;
                        if let Err(e) = w.watch(dir, notify::RecursiveMode::NonRecursive) {
                            tracing::debug!(container = %c.name, error = %e, "no file events for this log; polled");
                        }
                    }
                    dirty.insert(id.clone());
                    if let Some(dir) = path.parent() {
                        by_dir.insert(dir.to_path_buf(), id.clone());
                    }
                    let error_rates = cfg.error_rates.clone();
                    followed.insert(id, Followed { path: path.clone(), tailer, asm, labels, error_rates });
                }
                Err(e) => {
                    tracing::warn!(container = %c.name, path = %path.display(), error = %e, "cannot open the log")
                }
            }
        }
        let gone: Vec<String> =
            followed.keys().filter(|id| !current.iter().any(|c| c.id.as_str() == id.as_str())).cloned().collect();

        // Which logs to look at: those with file events, all of them now and then.
        while let Ok(p) = wake.try_recv() {
            mark(&by_dir, &p, &mut dirty);
        }
        if watcher.is_none() || last_full.elapsed() >= SAFETY_POLL {
            dirty.extend(followed.keys().cloned());
            last_full = std::time::Instant::now();
        }
        let mut batch = LogBatch::default();
        let now = now_ns();
        if in_flight < cfg.in_flight_bytes {
            for (id, f) in followed.iter_mut() {
                let finishing = gone.contains(id);
                let joined_due = f.asm.due_at().is_some_and(|t| t <= now);
                if !finishing && !joined_due && !dirty.contains(id) {
                    continue;
                }
                let budget = if finishing { usize::MAX } else { ROUND_BYTES };
                if !read_one(id, f, budget, finishing, now, &mut batch, &metrics) {
                    dirty.remove(id);
                }
            }
        }
        for id in &gone {
            if in_flight < cfg.in_flight_bytes {
                if let Some(f) = followed.remove(id) {
                    dirty.remove(id);
                    if let Some(end) = f.asm.checkpoint() {
                        left.insert(id.clone(), end);
                    }
                    if let Some(dir) = f.path.parent() {
                        by_dir.remove(dir);
                        if let Some(w) = watcher.as_mut() {
                            use notify::Watcher;
                            let _ = w.unwatch(dir);
                        }
                    }
                    batch.ack.finished.push((id.clone(), f.path));
                    done.insert(id.clone());
                }
            }
        }
        if batch.streams.is_empty() && batch.ack.finished.is_empty() {
            if in_flight >= cfg.in_flight_bytes {
                // The files are the buffer until the collector acknowledges something.
                match acks.recv_timeout(SAFETY_POLL) {
                    Ok(a) => early_ack = Some(a),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else if watcher.is_some() {
                // Until the next full look, or until a multiline entry in hand is due.
                let due = followed.values().filter_map(|f| f.asm.due_at()).min();
                let until_due = due.map_or(SAFETY_POLL, |t| Duration::from_nanos((t - now_ns()).max(0) as u64));
                let wait = SAFETY_POLL.saturating_sub(last_full.elapsed()).min(until_due);
                if let Ok(p) = wake.recv_timeout(wait) {
                    mark(&by_dir, &p, &mut dirty);
                }
            } else {
                std::thread::sleep(POLL);
            }
            continue;
        }
        in_flight += batch.ack.bytes;
        if !send(batch) {
            break;
        }
    }
    // Acks that arrived since the last save are not left behind.
    while let Ok(ack) = acks.try_recv() {
        for (id, r) in ack.checkpoints {
            saved.containers.insert(id, r);
            unsaved = true;
        }
    }
    if unsaved {
        if let Err(e) = saved.save(&cfg.state_dir) {
            tracing::warn!(error = %e, "cannot save log checkpoints; lines may be read again after a restart");
        }
    }
}

/// Marks the container whose log directory `event_path` is in (or is) as having something to read.
fn mark(
    by_dir: &HashMap<PathBuf, String>,
    event_path: &std::path::Path,
    dirty: &mut std::collections::HashSet<String>,
) {
    let id = event_path.parent().and_then(|d| by_dir.get(d)).or_else(|| by_dir.get(event_path));
    if let Some(id) = id {
        if !dirty.contains(id) {
            dirty.insert(id.clone());
        }
    }
}

/// Reads one container's new lines into `batch`; `finishing` reads to the end and flushes lines
/// still being joined (the container is gone). Whether any line was read.
fn read_one(
    id: &str,
    f: &mut Followed,
    budget: usize,
    finishing: bool,
    now_ns: i64,
    batch: &mut LogBatch,
    metrics: &AgentMetrics,
) -> bool {
    let mut entries: Vec<Entry> = Vec::new();
    let mut read_any = false;
    loop {
        match f.tailer.read(budget.min(1 << 20)) {
            Ok((lines, events)) => {
                for e in events {
                    log_event(id, &e);
                }
                if lines.is_empty() {
                    break;
                }
                read_any = true;
                for l in &lines {
                    f.asm.push(l, now_ns, &mut entries);
                }
                if !finishing {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(container = id, error = %e, "reading the log failed; retrying");
                break;
            }
        }
    }
    if finishing {
        f.asm.flush(&mut entries);
    } else {
        f.asm.tick(now_ns, &mut entries);
    }
    if entries.is_empty() {
        return read_any;
    }
    f.error_rates.count(id, entries.iter().map(|e| (e.time_ns, e.text.as_str())));
    let mut by_stream: [TaggedStream; 2] = Default::default();
    for e in entries {
        let slot = usize::from(e.stream == Stream::Stderr);
        batch.ack.bytes += e.text.len() + 16;
        metrics.log_lines.inc();
        by_stream[slot].lines.push((e.time_ns, e.text, e.flags));
    }
    for (slot, mut s) in by_stream.into_iter().enumerate() {
        if s.lines.is_empty() {
            continue;
        }
        s.labels = f.labels.clone();
        s.labels.push(("stream".into(), if slot == 0 { "stdout" } else { "stderr" }.into()));
        batch.streams.push(s);
    }
    if let Some(cp) = f.asm.checkpoint() {
        batch.ack.checkpoints.push((id.to_string(), cp));
    }
    read_any
}

fn log_event(container: &str, e: &Event) {
    match e {
        Event::CheckpointLost => tracing::warn!(
            container,
            "the log's checkpointed file is gone (rotated out while the agent was away): lines in between are lost"
        ),
        Event::ResumedRotated(p) => tracing::info!(container, file = %p.display(), "resuming in a rotated log file"),
        Event::Rotated | Event::Truncated => tracing::debug!(container, event = ?e, "log file changed"),
    }
}
