//! The collector's configuration file (`/etc/lookout/collector.toml`): serde structs, defaults in one
//! place, and `validate` that lists every problem with its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "defaults::http_listen")]
    pub http_listen: SocketAddr,
    #[serde(default = "defaults::grpc_listen")]
    pub grpc_listen: SocketAddr,
    #[serde(default = "defaults::retention", with = "humantime_serde")]
    pub retention: Duration,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub logs: LogsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Log chunks whose newest line is older than this are deleted.
    #[serde(default = "defaults::retention", with = "humantime_serde")]
    pub retention: Duration,
    /// Stored log chunks beyond this many MiB are deleted, oldest first; 0 for no limit.
    #[serde(default)]
    pub max_mib: u64,
    /// A stream's lines are sealed into a compressed chunk at 256 KiB or at this age.
    #[serde(default = "defaults::chunk_max_age", with = "humantime_serde")]
    pub chunk_max_age: Duration,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig { retention: defaults::retention(), max_mib: 0, chunk_max_age: defaults::chunk_max_age() }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Bearer tokens agents may present. Empty means no authentication, which is allowed only when
    /// the gRPC listener is on a loopback address.
    #[serde(default)]
    pub tokens: Vec<String>,
}

mod defaults {
    use super::*;
    pub fn data_dir() -> PathBuf {
        PathBuf::from("/var/lib/lookout")
    }
    pub fn http_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9470))
    }
    pub fn grpc_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9471))
    }
    pub fn retention() -> Duration {
        Duration::from_secs(15 * 24 * 3600)
    }
    pub fn chunk_max_age() -> Duration {
        Duration::from_secs(3600)
    }
}

impl Default for CollectorConfig {
    fn default() -> Self {
        toml::from_str("").expect("the empty config is valid")
    }
}

/// A config problem: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: {}", .problems.join("; "))]
    Invalid { file: PathBuf, problems: Vec<String> },
}

impl CollectorConfig {
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read { file: file.into(), source })?;
        Self::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        // toml's message names the line, the column and the key, and for an unknown key what is allowed.
        let cfg: CollectorConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { file: file.into(), message: e.to_string().trim_end().to_string() })?;
        let problems = cfg.validate();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid { file: file.into(), problems })
        }
    }

    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.retention < Duration::from_secs(3600) {
            problems.push("retention: must be at least 1h".to_string());
        }
        if self.logs.retention < Duration::from_secs(3600) {
            problems.push("logs.retention: must be at least 1h".to_string());
        }
        if self.logs.chunk_max_age < Duration::from_secs(10) {
            problems.push("logs.chunk_max_age: must be at least 10s".to_string());
        }
        if self.ingest.tokens.is_empty() && !self.grpc_listen.ip().is_loopback() {
            problems.push(format!(
                "ingest.tokens: required when grpc_listen ({}) is not a loopback address, so that only your agents can write",
                self.grpc_listen
            ));
        }
        if let Some(i) = self.ingest.tokens.iter().position(|t| t.len() < 16) {
            problems.push(format!("ingest.tokens[{i}]: must be at least 16 characters"));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_file_line_and_allowed_keys() {
        let err =
            CollectorConfig::parse(Path::new("/etc/lookout/collector.toml"), "data_dir = \"/x\"\nretenshun = \"1d\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("/etc/lookout/collector.toml: "), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("retenshun"), "{err}");
        assert!(err.contains("retention"), "lists what is allowed: {err}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = CollectorConfig::parse(Path::new("c.toml"), "retention = \"fortnight\"\n").unwrap_err().to_string();
        assert!(err.contains("retention") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn public_grpc_listener_without_tokens_is_refused() {
        let err =
            CollectorConfig::parse(Path::new("c.toml"), "grpc_listen = \"0.0.0.0:9471\"\n").unwrap_err().to_string();
        assert!(err.contains("ingest.tokens"), "{err}");
    }

    #[test]
    fn packaged_example_config_parses() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/collector.toml");
        let cfg = CollectorConfig::load(Path::new(file)).expect("packaged collector.toml is valid");
        assert_eq!(cfg.http_listen, defaults::http_listen());
    }
}
