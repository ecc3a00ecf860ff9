//! The agent's configuration file (`/etc/lookout/agent.toml`): serde structs, defaults in one place,
//! and `validate` that lists every problem with its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `[log]`: level and format of the agent's own log.
    #[serde(default)]
    pub log: lookout_daemon::logging::LogConfig,
    /// The `host` label; the machine's hostname when absent.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "defaults::collectors")]
    pub collectors: Vec<String>,
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the token (its first line), kept out of this config; wins over `token`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// `[tls]`: speak TLS to the collectors (their URLs start with https://).
    #[serde(default)]
    pub tls: Option<crate::ship::ClientTls>,
    #[serde(default = "defaults::interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How often each container's writable layer and own volumes are walked for
    /// `container_fs_usage_bytes` (cAdvisor's default: 1m), and its processes' open files counted for
    /// `container_file_descriptors` and `container_sockets`.
    #[serde(default = "defaults::fs_usage_refresh", with = "humantime_serde")]
    pub fs_usage_refresh: Duration,
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
    /// `[node]`: what the host's node_exporter families leave out.
    #[serde(default)]
    pub node: NodeConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    /// `[discover]`: which containers are this agent's (label and name filters).
    #[serde(default)]
    pub discover: crate::discover::Filter,
    #[serde(default)]
    pub logs: LogsConfig,
    /// Probes for containers without `lookout.probe.*` labels, by service or image; first match wins.
    #[serde(default)]
    pub probes: Vec<ProbeRule>,
}

/// `[[probes]]`: the `lookout.probe.*` settings (without the prefix) for the containers of a service
/// or image, e.g. `service = "api"`, `http = ":8080/healthz"`, `interval = "10s"`, `retries = 3`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProbeRule {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(flatten)]
    pub values: std::collections::BTreeMap<String, toml::Value>,
}

impl ProbeRule {
    pub fn matches(&self, service: &str, image: &str) -> bool {
        selects(self.service.as_deref(), self.image.as_deref(), service, image)
    }

    /// The settings as label values (`retries = 3` reads as `"3"`).
    pub fn settings(&self) -> std::collections::BTreeMap<String, String> {
        self.values
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect()
    }
}

/// Whether a rule naming `service` and/or `image` (with or without its tag) selects a container.
fn selects(rule_service: Option<&str>, rule_image: Option<&str>, service: &str, image: &str) -> bool {
    let service_ok = rule_service.is_none_or(|s| s == service);
    let image_ok = rule_image.is_none_or(|i| {
        i == image
            || i == image.split('@').next().unwrap_or(image)
            || i == crate::discover::identity::split_image(image).0
    });
    service_ok && image_ok
}

/// `[node]`: the host's node_exporter families.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Interfaces left out of `node_network_*` (node_exporter's netdev `device-exclude` and netclass
    /// `ignored-devices`). By default the host ends of containers' veths, as kube-prometheus runs
    /// node_exporter: each is one container's traffic, which `container_network_*` already carries
    /// under the container's name, and 100 containers would add 3,600 host series. `""` keeps all.
    #[serde(default = "defaults::net_device_exclude")]
    pub net_device_exclude: Pattern,
    /// node_exporter's `--collector.textfile.directory`: the `*.prom` files there (Prometheus's
    /// text format, written by cron jobs and scripts) are read every interval. None by default.
    #[serde(default)]
    pub textfile_directory: Option<PathBuf>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig { net_device_exclude: defaults::net_device_exclude(), textfile_directory: None }
    }
}

impl NodeConfig {
    /// The exclusion as the readers take it: `None` keeps every interface.
    pub fn net_device_exclude(&self) -> Option<regex::Regex> {
        let r = &self.net_device_exclude.0;
        (!r.as_str().is_empty()).then(|| r.clone())
    }
}

/// `[labels]`: what the series carry beside the identity labels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// Container labels that pass through onto that container's series (as themselves and as
    /// cAdvisor's `container_label_<key>`).
    #[serde(default)]
    pub include: Vec<String>,
    /// The `job` of the host's series, as a scrape of node_exporter gives it.
    #[serde(default = "defaults::host_job")]
    pub host_job: String,
    /// The `job` of container series, as a scrape of cAdvisor gives it.
    #[serde(default = "defaults::container_job")]
    pub container_job: String,
    /// The `instance` of every series; `{host}` stands for the host label.
    #[serde(default = "defaults::instance")]
    pub instance: String,
}

impl Default for LabelsConfig {
    fn default() -> Self {
        LabelsConfig {
            include: Vec::new(),
            host_job: defaults::host_job(),
            container_job: defaults::container_job(),
            instance: defaults::instance(),
        }
    }
}

impl LabelsConfig {
    pub fn scrape(&self) -> crate::discover::ScrapeLabels {
        crate::discover::ScrapeLabels {
            host_job: self.host_job.clone(),
            container_job: self.container_job.clone(),
            instance: self.instance.clone(),
        }
    }
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

/// `[spool]`: every sealed batch is also kept on disk until the collector acknowledges it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// The most MiB on disk; past it the oldest segment is dropped (and reported). 0: no spool.
    #[serde(default = "defaults::spool_mib")]
    pub max_mib: u64,
    /// Where the segment files live; `state_dir/spool` when absent.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig { max_mib: defaults::spool_mib(), dir: None }
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
    /// Multiline joins (stack traces), by service or image; the first rule that matches a container wins.
    #[serde(default)]
    pub multiline: Vec<MultilineConfig>,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig { enabled: true, in_flight_mib: defaults::logs_in_flight_mib(), multiline: Vec::new() }
    }
}

/// `[[logs.multiline]]`: lines of a service's containers join into entries that begin with `start`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// The containers' `service` label (exactly).
    #[serde(default)]
    pub service: Option<String>,
    /// The containers' image, with or without its tag (`shop/api` or `shop/api:1.4`).
    #[serde(default)]
    pub image: Option<String>,
    /// A line matching this regular expression opens a new entry; other lines attach to the one before.
    pub start: Pattern,
    #[serde(default = "defaults::multiline_max_lines")]
    pub max_lines: u32,
    /// KiB in one entry at most (256 at the most).
    #[serde(default = "defaults::multiline_max_kib")]
    pub max_kib: usize,
    /// An entry that got no line for this long is sent; a line written longer after the last opens a new one.
    #[serde(default = "defaults::multiline_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
}

impl MultilineConfig {
    /// Whether a container of `service` running `image` joins by this rule.
    pub fn matches(&self, service: &str, image: &str) -> bool {
        let service_ok = self.service.as_deref().is_none_or(|s| s == service);
        let image_ok = self.image.as_deref().is_none_or(|i| {
            i == image
                || i == image.split('@').next().unwrap_or(image)
                || i == crate::discover::identity::split_image(image).0
        });
        service_ok && image_ok
    }
}

/// A regular expression, compiled as the config is read so that a bad one names its line and key.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s).map(Pattern).map_err(serde::de::Error::custom)
    }
}

mod defaults {
    use super::*;
    pub fn net_device_exclude() -> Pattern {
        Pattern(regex::Regex::new("^veth").expect("a valid pattern"))
    }
    pub fn fs_usage_refresh() -> Duration {
        Duration::from_secs(60)
    }
    pub fn host_job() -> String {
        "node".into()
    }
    pub fn container_job() -> String {
        "cadvisor".into()
    }
    pub fn instance() -> String {
        "{host}".into()
    }
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
    pub fn spool_mib() -> u64 {
        1024
    }
    pub fn yes() -> bool {
        true
    }
    pub fn logs_in_flight_mib() -> u64 {
        8
    }
    pub fn multiline_max_lines() -> u32 {
        500
    }
    pub fn multiline_max_kib() -> usize {
        256
    }
    pub fn multiline_max_wait() -> Duration {
        Duration::from_secs(1)
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
        let mut problems = self.log.validate("log");
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
        if let Some(tls) = &self.tls {
            if let Some((i, c)) = self.collectors.iter().enumerate().find(|(_, c)| !c.starts_with("https://")) {
                problems.push(format!("collectors[{i}]: {c:?} must start with https:// when [tls] is set"));
            }
            if tls.cert.is_some() != tls.key.is_some() {
                problems.push("tls: cert and key go together (the agent's client certificate)".into());
            }
        }
        if self.host.as_deref().is_some_and(str::is_empty) {
            problems.push("host: must not be empty (leave it out to use the hostname)".into());
        }
        for (key, v) in [
            ("labels.host_job", &self.labels.host_job),
            ("labels.container_job", &self.labels.container_job),
            ("labels.instance", &self.labels.instance),
        ] {
            if v.is_empty() {
                problems.push(format!("{key}: must not be empty"));
            }
        }
        let d = &self.discover;
        for (key, rules) in [
            ("include_labels", &d.include_labels),
            ("exclude_labels", &d.exclude_labels),
            ("include_names", &d.include_names),
            ("exclude_names", &d.exclude_names),
        ] {
            if let Some(i) = rules.iter().position(|r| r.is_empty() || r.starts_with('=')) {
                problems.push(format!(
                    "discover.{key}[{i}]: a label (`key` or `key=value`) or a name pattern, not {:?}",
                    rules[i]
                ));
            }
        }
        if self.queue.max_mib == 0 {
            problems.push("queue.max_mib: must be at least 1".into());
        }
        for (i, r) in self.probes.iter().enumerate() {
            if r.service.is_none() && r.image.is_none() {
                problems.push(format!("probes[{i}]: needs `service` or `image` to say which containers it probes"));
            }
            for p in crate::probe::spec::plan(&r.settings(), Some(Duration::from_secs(30))).problems {
                let p = p.strip_prefix(crate::probe::spec::LABEL_PREFIX).unwrap_or(&p);
                problems.push(format!("probes[{i}].{p}"));
            }
        }
        for (i, m) in self.logs.multiline.iter().enumerate() {
            let key = format!("logs.multiline[{i}]");
            if m.service.is_none() && m.image.is_none() {
                problems.push(format!("{key}: needs `service` or `image` to say whose lines it joins"));
            }
            if m.max_lines == 0 {
                problems.push(format!("{key}.max_lines: must be at least 1"));
            }
            if !(1..=256).contains(&m.max_kib) {
                problems.push(format!("{key}.max_kib: must be 1 to 256 (got {})", m.max_kib));
            }
            if m.max_wait < Duration::from_millis(100) {
                problems.push(format!("{key}.max_wait: must be at least 100ms"));
            }
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
    fn a_bad_multiline_pattern_names_line_and_key() {
        let text = "[logs]\n\n[[logs.multiline]]\nservice = \"api\"\nstart = '^(\\d+'\n";
        let err = AgentConfig::parse(Path::new("a.toml"), text).unwrap_err().to_string();
        assert!(err.contains("line 5") && err.contains("start") && err.contains("unclosed group"), "{err}");
        let err = AgentConfig::parse(Path::new("a.toml"), "[[logs.multiline]]\nstart = '^x'\nmax_kib = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("logs.multiline[0]: needs `service` or `image`"), "{err}");
        assert!(err.contains("logs.multiline[0].max_kib: must be 1 to 256 (got 0)"), "{err}");
    }

    #[test]
    fn a_multiline_rule_matches_by_service_or_image_with_or_without_tag() {
        let text = "[[logs.multiline]]\nimage = \"shop/api\"\nstart = '^x'\n[[logs.multiline]]\nservice = \"db\"\nstart = '^y'\n";
        let cfg = AgentConfig::parse(Path::new("a.toml"), text).unwrap();
        let m = &cfg.logs.multiline;
        assert!(m[0].matches("whatever", "shop/api:1.4") && m[0].matches("x", "shop/api"));
        assert!(!m[0].matches("api", "shop/api-v2:1"));
        assert!(m[1].matches("db", "postgres:16") && !m[1].matches("dbx", "postgres:16"));
        assert_eq!((m[0].max_lines, m[0].max_kib, m[0].max_wait), (500, 256, Duration::from_secs(1)));
    }

    #[test]
    fn probe_rules_use_the_label_settings_and_name_a_bad_one() {
        let text = "[[probes]]\nservice = \"api\"\nhttp = \":8080/healthz\"\nretries = 2\n";
        let cfg = AgentConfig::parse(Path::new("a.toml"), text).unwrap();
        assert!(cfg.probes[0].matches("api", "shop/api:1"));
        assert_eq!(cfg.probes[0].settings()["retries"], "2");
        let err =
            AgentConfig::parse(Path::new("a.toml"), "[[probes]]\nimage = \"x\"\ninterval = \"soon\"\nhttp = \":80\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("probes[0].interval=\"soon\": not a duration"), "{err}");
    }

    #[test]
    fn container_veths_are_left_out_unless_the_pattern_is_emptied() {
        let default = AgentConfig::parse(Path::new("a.toml"), "").unwrap().node.net_device_exclude().unwrap();
        assert!(default.is_match("veth03013e5") && !default.is_match("eth0") && !default.is_match("docker0"));
        let all = AgentConfig::parse(Path::new("a.toml"), "[node]\nnet_device_exclude = \"\"\n").unwrap();
        assert!(all.node.net_device_exclude().is_none());
        let err = AgentConfig::parse(Path::new("a.toml"), "[node]\nnet_device_exclude = \"^(veth\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("net_device_exclude"), "{err}");
    }

    #[test]
    fn packaged_example_config_parses() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/agent.toml");
        let cfg = AgentConfig::load(Path::new(file)).expect("packaged agent.toml is valid");
        assert_eq!(cfg.interval, Duration::from_secs(10));
    }
}
