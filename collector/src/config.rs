//! The collector's configuration file (`/etc/lookout/collector.toml`): serde structs, defaults in one
//! place, and `validate` that lists every problem with its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::decide::restart::{RestartConfig, RestartPolicy};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// `[log]`: level and format of the collector's own log.
    #[serde(default)]
    pub log: lookout_daemon::logging::LogConfig,
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "defaults::http_listen")]
    pub http_listen: SocketAddr,
    #[serde(default = "defaults::grpc_listen")]
    pub grpc_listen: SocketAddr,
    #[serde(default = "defaults::retention", with = "humantime_serde")]
    pub retention: Duration,
    /// Sample chunks beyond this many MiB are deleted, oldest first (0: no size limit); with
    /// `[logs] max_mib` it keeps the store within a disk budget.
    #[serde(default)]
    pub retention_size_mib: u64,
    /// Who may connect: agents (scope `agent`, with the hosts each may speak for) and HTTP clients
    /// (`read`, `write`, `admin`), as SHA-256 hashes of their tokens, one a line (docs/security.md).
    /// Required when either listener is beyond loopback.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// Listen beyond loopback without any credentials. For a trusted network only; logged at start.
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub ingest: IngestConfig,
    /// `[http]`: the HTTP API's listener settings beyond its address (`[http.tls]`).
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub logs: LogsConfig,
    /// `[query]`: what one PromQL or LogQL query may cost.
    #[serde(default)]
    pub query: crate::query::QueryLimits,
    #[serde(default)]
    pub restart: RestartConfig,
    /// `[gates]`: how releases are judged (`[gates.default]`, `[[gates.services]]`).
    #[serde(default)]
    pub gates: crate::decide::gate::spec::GatesConfig,
    /// `[[autoscale]]`: per service, a target and the HPA rule; decisions go to a webhook.
    #[serde(default)]
    pub autoscale: Vec<crate::decide::scale::AutoscalePolicy>,
    /// `[export]`: remote-write and Loki push targets the collector forwards to.
    #[serde(default)]
    pub export: crate::export::ExportConfig,
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
    /// No longer read: tokens are kept as hashes in `tokens_file`; a config that still has them is
    /// refused with what to do.
    #[serde(default)]
    pub tokens: Option<Vec<String>>,
    /// `[ingest.tls]`: TLS for the agents' gRPC, and with `client_ca` their certificates.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `[http.tls]`: TLS for the HTTP API, and with `client_ca` client certificates.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
}

mod defaults {
    use super::*;
    pub fn data_dir() -> PathBuf {
        PathBuf::from("/var/lib/lookout/collector")
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
        problems.extend(self.query.validate("query"));
        problems.extend(self.export.validate());
        problems.extend(self.log.validate("log"));
        let check = crate::run::gate::check_query;
        problems.extend(self.gates.validate(&check));
        for (i, p) in self.autoscale.iter().enumerate() {
            problems.extend(p.validate(&format!("autoscale[{i}]"), &check));
            if self.autoscale[..i].iter().any(|q| q.service == p.service) {
                problems.push(format!("autoscale[{i}].service: {:?} has a policy already", p.service));
            }
        }
        if self.ingest.tokens.is_some() {
            problems.push(
                "ingest.tokens: tokens are no longer kept in the config; put their SHA-256 hashes in the file tokens_file names (`lookout token hash --name NAME --scope agent --hosts '*'` prints the line for a token you have; docs/security.md)"
                    .to_string(),
            );
        }
        let ports = [
            ("grpc_listen", self.grpc_listen, "ingest.tls", &self.ingest.tls),
            ("http_listen", self.http_listen, "http.tls", &self.http.tls),
        ];
        for (key, addr, tls_key, tls) in ports {
            if self.insecure || addr.ip().is_loopback() {
                continue;
            }
            let client_certs = tls.as_ref().is_some_and(|t| t.client_ca.is_some());
            if self.tokens_file.is_none() && !client_certs {
                problems.push(format!(
                    "tokens_file: required when {key} ({addr}) is not a loopback address, so that only your agents and clients get in (or {tls_key}.client_ca; insecure = true listens without credentials)"
                ));
            }
            if tls.is_none() {
                problems.push(format!(
                    "{tls_key}: required when {key} ({addr}) is not a loopback address, so that tokens and data do not cross the network in the clear (insecure = true allows it)"
                ));
            }
        }
        for (key, tls) in [("ingest.tls", &self.ingest.tls), ("http.tls", &self.http.tls)] {
            if let Some(t) = tls {
                if let Err(e) = crate::tls::server_config(t, &[]) {
                    problems.push(format!("{key}: {e}"));
                }
            }
        }
        if let Some(path) = &self.tokens_file {
            if let Err(e) = crate::auth::Tokens::load(path) {
                problems.push(format!("tokens_file: {e}"));
            }
        }
        let policies = std::iter::once(("restart.default".to_string(), &self.restart.default))
            .chain(self.restart.policies.iter().enumerate().map(|(i, p)| (format!("restart.policies[{i}]"), p)));
        for (key, p) in policies {
            if let Err(e) = p.max_unavailable_of(1) {
                problems.push(format!("{key}.max_unavailable: {e}"));
            }
            if p.max_restarts == 0 {
                problems.push(format!("{key}.max_restarts: must be at least 1"));
            }
            if p.backoff.is_zero() || p.backoff > p.backoff_max {
                problems.push(format!("{key}.backoff: must be above 0 and at most backoff_max"));
            }
            if key.starts_with("restart.policies") && p.service.as_deref().is_none_or(str::is_empty) {
                problems.push(format!("{key}.service: required (the service this policy is for)"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_default_to_the_documented_values_and_name_bad_keys() {
        let d = RestartPolicy::default();
        assert_eq!(
            (d.backoff, d.backoff_max, d.reset_after),
            (Duration::from_secs(10), Duration::from_secs(300), Duration::from_secs(600))
        );
        assert_eq!((d.max_restarts, d.window, d.max_unavailable_of(10)), (5, Duration::from_secs(1800), Ok(1)));
        assert_eq!(d.backoff_after(1), Duration::from_secs(10));
        assert_eq!(d.backoff_after(3), Duration::from_secs(40));
        assert_eq!(d.backoff_after(9), Duration::from_secs(300));
        let p = RestartPolicy { max_unavailable: "25%".into(), ..RestartPolicy::default() };
        assert_eq!((p.max_unavailable_of(8), p.max_unavailable_of(2)), (Ok(2), Ok(1)));
        let err = CollectorConfig::parse(
            Path::new("c.toml"),
            "[restart]\n[[restart.policies]]\nmax_unavailable = \"many\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("restart.policies[0].max_unavailable: \"many\" is neither"), "{err}");
        assert!(err.contains("restart.policies[0].service: required"), "{err}");
    }

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
    fn a_listener_beyond_loopback_without_credentials_is_refused_and_tokens_in_the_config_are_moved() {
        let parse = |t: &str| CollectorConfig::parse(Path::new("c.toml"), t);
        let err = parse("grpc_listen = \"0.0.0.0:9471\"\n").unwrap_err().to_string();
        assert!(err.contains("tokens_file: required when grpc_listen (0.0.0.0:9471)"), "{err}");
        let err = parse("http_listen = \"[::]:9470\"\n").unwrap_err().to_string();
        assert!(err.contains("tokens_file: required when http_listen ([::]:9470)"), "{err}");
        assert!(parse("http_listen = \"0.0.0.0:9470\"\ninsecure = true\n").is_ok());
        let err = parse("http_listen = \"0.0.0.0:9470\"\ntokens_file = \"/nonexistent\"\n").unwrap_err().to_string();
        assert!(err.contains("http.tls: required when http_listen (0.0.0.0:9470)"), "{err}");
        let err = parse("[ingest.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingest.tls: cannot read /nonexistent/c.pem"), "{err}");
        let err = parse("[ingest]\ntokens = [\"0123456789abcdef\"]\n").unwrap_err().to_string();
        assert!(err.contains("ingest.tokens: tokens are no longer kept in the config"), "{err}");
        let err = parse("tokens_file = \"/nonexistent/tokens\"\n").unwrap_err().to_string();
        assert!(err.contains("tokens_file: cannot read /nonexistent/tokens"), "{err}");
    }

    #[test]
    fn bad_gate_and_autoscale_settings_name_their_keys() {
        let text = r#"
[[gates.services]]
window = "10s"
interval = "1m"
[[gates.services.checks]]
name = "p99"
query = "histogram_quantile(0.99, "
max = 0.3

[[autoscale]]
service = "api"
metric = "query"
target = 0
tolerance = 1.5
"#;
        let err = CollectorConfig::parse(Path::new("c.toml"), text).unwrap_err().to_string();
        for want in [
            "gates.services[0].service: needed",
            "gates.services[0].checks[0].query: ",
            "gates.services[0].window: must be at least the interval (1m)",
            "autoscale[0].target: must be above 0",
            "autoscale[0].tolerance: must be at least 0 and below 1",
            "autoscale[0].query: needed for metric = \"query\"",
        ] {
            assert!(err.contains(want), "{want:?} missing from {err}");
        }
    }

    #[test]
    fn the_packaged_export_example_is_valid_once_uncommented() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/collector.toml");
        let text = std::fs::read_to_string(file).unwrap();
        let start = text.find("# [export]").expect("the example has an [export] section");
        let uncommented: String = text[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").or_else(|| l.strip_prefix('#')).unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect();
        let cfg = CollectorConfig::parse(Path::new(file), &uncommented).expect("the export example is valid");
        assert_eq!((cfg.export.remote_write.len(), cfg.export.loki.len()), (1, 1));
        assert_eq!(cfg.export.remote_write[0].name(), "central");
        assert_eq!(cfg.export.remote_write[0].queue, crate::export::QueueConfig::default());
    }

    #[test]
    fn bad_export_targets_are_named_with_their_key() {
        let text = r#"
[[export.remote_write]]
url = "ftp://x/api/v1/write"
match = ['rate(x[5m])']
external_labels = { "bad-name" = "x" }
queue = { max_shards = 0 }
[[export.loki]]
url = "not a url"
format = "xml"
match = ['{a="b"} |= "x"']
"#;
        let err = CollectorConfig::parse(Path::new("c.toml"), text).unwrap_err().to_string();
        for want in [
            "export.remote_write[0].url: scheme \"ftp\"",
            "export.remote_write[0].match[0]: \"rate(x[5m])\" is not a series selector",
            "export.remote_write[0].external_labels: \"bad-name\"",
            "export.remote_write[0].queue: max_per_send and max_shards must be at least 1",
            "export.loki[0].url: \"not a url\"",
            "export.loki[0].format: \"xml\"",
            "export.loki[0].match[0]: ",
        ] {
            assert!(err.contains(want), "{want:?} missing from {err}");
        }
    }

    #[test]
    fn packaged_example_config_parses() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/collector.toml");
        let cfg = CollectorConfig::load(Path::new(file)).expect("packaged collector.toml is valid");
        assert_eq!(cfg.http_listen, defaults::http_listen());
        // The example shows the defaults: it parses to what no [query] section gives.
        let q = &cfg.query;
        let d = crate::query::QueryLimits::default();
        assert_eq!(
            (q.timeout, q.max_samples, q.max_points_per_series, q.max_concurrency, q.max_queued, q.max_depth),
            (d.timeout, d.max_samples, d.max_points_per_series, d.max_concurrency, d.max_queued, d.max_depth)
        );
        assert_eq!(
            (q.max_query_bytes, q.max_entries_limit_per_query, q.max_query_length),
            (d.max_query_bytes, d.max_entries_limit_per_query, d.max_query_length)
        );
    }
}
