//! The reader on real files in a temporary directory: which logs it reads when, file events or not.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;
use crate::model::ContainerId;

/// A reader following one container whose json-file log is `log`, its batches' lines on the
/// returned channel. It stops when the token is cancelled.
fn follow(state: &Path, log: &Path) -> (mpsc::Receiver<String>, CancellationToken, mpsc::Sender<LogAck>) {
    let container =
        Container { log_path: Some(log.to_path_buf()), ..crate::discover::identity::tests::container("busybox", &[]) };
    let containers: ContainerSet = Default::default();
    let id = ContainerId::parse(container.id.as_str()).unwrap();
    containers.write().unwrap().insert(id, Arc::new(container));
    let cfg = LogReaderConfig {
        host: "h".into(),
        include_labels: Vec::new(),
        state_dir: state.to_path_buf(),
        in_flight_bytes: 1 << 20,
        multiline: Vec::new(),
        error_rates: Default::default(),
    };
    let (ack_tx, acks) = mpsc::channel();
    let (welcome_tx, welcomes) = mpsc::channel();
    welcome_tx.send(Vec::new()).unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let metrics = AgentMetrics::register(&mut Default::default());
    std::thread::spawn(move || {
        let _welcomes_stay_open = welcome_tx;
        run(cfg, containers, Default::default(), acks, welcomes, metrics, stop, |batch| {
            batch.streams.iter().flat_map(|s| &s.lines).all(|(_, text, _)| lines_tx.send(text.clone()).is_ok())
        })
    });
    (lines, shutdown, ack_tx)
}

fn append(log: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    writeln!(f, r#"{{"log":"{text}\n","stream":"stdout","time":"2026-12-07T10:00:00.000000000Z"}}"#).unwrap();
}

/// Waits for `text` at most `within`.
fn arrives(lines: &mpsc::Receiver<String>, text: &str, within: Duration) -> Result<(), String> {
    let t = Instant::now();
    while let Some(left) = within.checked_sub(t.elapsed()) {
        match lines.recv_timeout(left) {
            Ok(l) if l == text => return Ok(()),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Err(format!("{text:?} was not read within {within:?}"))
}

fn log_in(dir: &Path) -> PathBuf {
    dir.join(format!("{}-json.log", "a".repeat(64)))
}

#[test]
fn a_line_is_read_on_its_file_event_not_at_the_next_full_look() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("containers");
    std::fs::create_dir(&dir).unwrap();
    let log = log_in(&dir);
    append(&log, "before");
    let (lines, stop, _acks) = follow(tmp.path(), &log);
    arrives(&lines, "before", Duration::from_secs(5)).unwrap();
    // Quiet for a while, so that only an event can make the reader look before the full look.
    std::thread::sleep(Duration::from_secs(1));
    append(&log, "after");
    arrives(&lines, "after", FULL_LOOK / 2).unwrap();
    // Docker's rotation: the file is renamed and a new one begins.
    std::fs::rename(&log, dir.join(format!("{}-json.log.1", "a".repeat(64)))).unwrap();
    append(&log, "rotated");
    arrives(&lines, "rotated", FULL_LOOK / 2).unwrap();
    stop.cancel();
}

#[test]
fn a_log_whose_directory_cannot_be_watched_is_read_every_look() {
    let tmp = tempfile::tempdir().unwrap();
    // The directory does not exist when the reader starts following, so no watch can be set on it.
    let dir = tmp.path().join("later");
    let log = log_in(&dir);
    let (lines, stop, _acks) = follow(tmp.path(), &log);
    std::thread::sleep(LOOK_AGAIN * 2);
    std::fs::create_dir(&dir).unwrap();
    append(&log, "first");
    arrives(&lines, "first", FULL_LOOK / 2).unwrap();
    append(&log, "second");
    arrives(&lines, "second", FULL_LOOK / 2).unwrap();
    stop.cancel();
}
