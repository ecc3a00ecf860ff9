//! Log output: one line per event on stderr, plain text (colour only on a terminal, never with
//! `NO_COLOR`) or JSON; the level from `RUST_LOG`, else the config, else `info`, and changeable
//! while running (SIGHUP). Never decides what is logged.

use std::io::IsTerminal;

use serde::Deserialize;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-12-02T13:08:47.123Z  INFO target: message key=value`.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields.message` and the fields.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not a log format (text or json)")),
        }
    }
}

/// `[log]` of agent.toml and collector.toml.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`info`) or a filter in `RUST_LOG`'s syntax (`info,lookout_collector::ingest=debug`);
    /// `RUST_LOG`, when set, wins.
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub format: Option<LogFormat>,
}

impl LogConfig {
    /// Every problem with its key, under `at` (`log`).
    pub fn validate(&self, at: &str) -> Vec<String> {
        match &self.level {
            Some(l) if EnvFilter::try_new(l).is_err() => {
                vec![format!("{at}.level: {l:?} is not a level or a RUST_LOG filter")]
            }
            _ => Vec::new(),
        }
    }
}

/// Changes the level of the installed logger.
#[derive(Clone)]
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

impl LogHandle {
    /// Sets the filter to `level` (a level or a RUST_LOG filter). Returns what was done, for the
    /// reload's log line; with `RUST_LOG` set, the environment keeps precedence.
    pub fn set_level(&self, level: &str) -> Result<String, String> {
        if self.from_env {
            return Ok("log level kept: RUST_LOG is set and wins over the config".into());
        }
        let filter = EnvFilter::try_new(level).map_err(|e| format!("log level {level:?}: {e}"))?;
        self.filter.reload(filter).map_err(|e| format!("log level: {e}"))?;
        Ok(format!("log level is now {level:?}"))
    }
}

/// Whether colour escapes may be written: only to a terminal, and never with `NO_COLOR` set (to
/// anything but the empty string, as no-color.org says).
pub fn use_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the process's logger on stderr. `level` is used when `RUST_LOG` is not set.
pub fn init(level: &str, format: LogFormat) -> LogHandle {
    let env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let from_env = env.is_some();
    let filter = env
        .as_deref()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let output = match format {
        LogFormat::Text => {
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(use_colour()).boxed()
        }
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .boxed(),
    };
    // A second init in one process (tests) keeps the first logger.
    let _ = tracing_subscriber::registry().with(filter).with(output).try_init();
    LogHandle { filter: handle, from_env }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_levels_are_checked() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
        let ok = LogConfig { level: Some("info,lookout_collector=debug".into()), format: None };
        assert!(ok.validate("log").is_empty());
        let bad = LogConfig { level: Some("lookout=loud".into()), format: None };
        assert_eq!(bad.validate("log").len(), 1, "{:?}", bad.validate("log"));
    }
}
