//! Log checkpoints on disk: per container, where reading resumes after what the collector has
//! acknowledged. Written whole and atomically (temporary file, fsync, rename, fsync of the directory).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::assemble::Resume;

const FILE: &str = "logs.checkpoint.json";

/// Container id → where its log resumes.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoints {
    pub containers: BTreeMap<String, Resume>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a checkpoint file ({source}); move it away to start over")]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

impl Checkpoints {
    /// Reads the state dir's checkpoints; none yet is an empty set.
    pub fn load(state_dir: &Path) -> Result<Checkpoints, CheckpointError> {
        let path = state_dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checkpoints::default()),
            Err(source) => Err(CheckpointError::Io { path, source }),
        }
    }

    /// When the state dir's checkpoints were last written: the last moment an agent here is known to
    /// have been reading.
    pub fn saved_at(state_dir: &Path) -> Option<std::time::SystemTime> {
        std::fs::metadata(state_dir.join(FILE)).and_then(|m| m.modified()).ok()
    }

    /// Replaces the file atomically: after a crash at any moment it holds either the old or the new set.
    pub fn save(&self, state_dir: &Path) -> Result<(), CheckpointError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Io { path, source }
        };
        std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
        let path = state_dir.join(FILE);
        let tmp = state_dir.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec(self).expect("checkpoints serialize");
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(state_dir).and_then(|d| d.sync_all()).map_err(io(state_dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::assemble::OpenLine;
    use crate::logs::jsonfile::Stream;
    use crate::logs::multiline::JoinedLine;
    use crate::logs::tail::{FileId, Position};

    #[test]
    fn checkpoints_survive_a_save_and_load_with_lines_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoints::load(dir.path()).unwrap(), Checkpoints::default());
        let mut c = Checkpoints::default();
        c.containers.insert(
            "abc".into(),
            Resume {
                position: Position {
                    file: FileId { dev: 1, ino: 2, fingerprint: 3, fingerprint_len: 256 },
                    offset: 99,
                },
                open: vec![OpenLine {
                    stream: Stream::Stderr,
                    text: "half \"a\" line".into(),
                    time_ns: 5,
                    replaced: true,
                }],
                joined: vec![JoinedLine {
                    stream: Stream::Stdout,
                    text: "2026-11-23 ERROR x\n\tat a.b(C.java:1)".into(),
                    time_ns: 4,
                    last_ns: 5,
                    lines: 2,
                    replaced: false,
                }],
            },
        );
        c.save(dir.path()).unwrap();
        assert_eq!(Checkpoints::load(dir.path()).unwrap(), c);
        assert!(!dir.path().join("logs.checkpoint.json.tmp").exists());
    }

    #[test]
    fn a_damaged_file_is_a_clear_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{\"containers\": {\"x\": ").unwrap();
        let e = Checkpoints::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("logs.checkpoint.json is not a checkpoint file"), "{e}");
    }
}
