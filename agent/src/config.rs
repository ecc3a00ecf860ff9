//! The agent's configuration file (`/etc/lookout/agent.toml`): serde structs, defaults in one place,
//! and `validate` that lists every problem with its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The `host` label; the machine's hostname when absent.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "defaults::collectors")]
    pub collectors: Vec<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default = "defaults::interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "defaults::state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "defaults::metrics_listen")]
    pub metrics_listen: SocketAddr,
    #[serde(default = "defaults::docker_socket")]
    pub docker_socket: String,
    #[serde(default = "defaults::cgroup_root")]
    pub cgroup_root: PathBuf,
    #[serde(default = "defaults::proc_root")]
    pub proc_root: PathBuf,
    #[serde(default)]
    pub labels: LabelsConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub logs: LogsConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// Container labels that pass through onto that container's series.
    #[serde(default)]
    pub include: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    #[serde(default = "defaults::queue_mib")]
    pub max_mib: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { max_mib: defaults::queue_mib() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Read containers' json-file logs and ship their lines.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// MiB of lines sent but not yet acknowledged, at most; beyond it the log files are the buffer.
    #[serde(default = "defaults::logs_in_flight_mib")]
    pub in_flight_mib: u64,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig { enabled: true, in_flight_mib: defaults::logs_in_flight_mib() }
    }
}

mod defaults {
    use super::*;
    pub fn collectors() -> Vec<String> {
        vec!["http://127.0.0.1:9471".into()]
    }
    pub fn interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn state_dir() -> PathBuf {
        PathBuf::from("/var/lib/lookout/agent")
    }
    pub fn metrics_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9472))
    }
    pub fn docker_socket() -> String {
        "/var/run/docker.sock".into()
    }
    pub fn cgroup_root() -> PathBuf {
        PathBuf::from("/sys/fs/cgroup")
    }
    pub fn proc_root() -> PathBuf {
        PathBuf::from("/proc")
    }
    pub fn queue_mib() -> u64 {
        64
    }
    pub fn yes() -> bool {
        true
    }
    pub fn logs_in_flight_mib() -> u64 {
        16
    }
}

impl Default for AgentConfig {
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

impl AgentConfig {
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read { file: file.into(), source })?;
        Self::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        // toml's message names the line, the column and the key, and for an unknown key what is allowed.
        let cfg: AgentConfig = toml::from_str(text)
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
        if self.interval < Duration::from_secs(1) {
            problems.push(format!("interval: must be at least 1s (got {})", humantime::format_duration(self.interval)));
        }
        if self.collectors.is_empty() {
            problems.push("collectors: at least one collector address is required".into());
        }
        for (i, c) in self.collectors.iter().enumerate() {
            if !(c.starts_with("http://") || c.starts_with("https://")) {
                problems.push(format!("collectors[{i}]: {c:?} must start with http:// or https://"));
            }
        }
        if self.host.as_deref().is_some_and(str::is_empty) {
            problems.push("host: must not be empty (leave it out to use the hostname)".into());
        }
        if self.queue.max_mib == 0 {
            problems.push("queue.max_mib: must be at least 1".into());
        }
        problems
    }

    /// The configured host name, else the machine's.
    pub fn host_name(&self) -> String {
        self.host.clone().unwrap_or_else(|| {
            hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "localhost".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err =
            AgentConfig::parse(Path::new("/etc/lookout/agent.toml"), "interval = \"5s\"\n\n[labels]\ninclde = []\n")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("/etc/lookout/agent.toml: "), "{err}");
        assert!(err.contains("line 4") && err.contains("inclde") && err.contains("include"), "{err}");
    }

    #[test]
    fn interval_below_one_second_is_refused_with_its_key() {
        let err = AgentConfig::parse(Path::new("a.toml"), "interval = \"500ms\"\n").unwrap_err().to_string();
        assert!(err.contains("interval: must be at least 1s"), "{err}");
    }

    #[test]
    fn bad_duration_names_line_and_key() {
        let err = AgentConfig::parse(Path::new("a.toml"), "interval = \"often\"\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("interval"), "{err}");
    }

    #[test]
    fn packaged_example_config_parses() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/agent.toml");
        let cfg = AgentConfig::load(Path::new(file)).expect("packaged agent.toml is valid");
        assert_eq!(cfg.interval, Duration::from_secs(10));
    }
}
