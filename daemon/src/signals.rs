//! The signals a daemon answers: SIGTERM or SIGINT stops it cleanly (a second one ends it at
//! once), SIGHUP asks it to reload. Knows nothing of what stopping or reloading means.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Exit status after a second stop signal: 128 + SIGTERM, as a shell reports a killed process.
pub const FORCED_EXIT: i32 = 143;

/// Cancels `stop` at the first SIGTERM or SIGINT; at a second one during the stop, exits at once.
/// Spawned on the runtime: returns immediately.
pub fn stop_on_signals(stop: CancellationToken) {
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install the SIGTERM and SIGINT handlers; stop with SIGKILL");
            return;
        }
    };
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = stop.cancelled() => return,
        };
        tracing::info!(signal = first, "stopping; a second signal stops at once");
        stop.cancel();
        let second = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(signal = second, "second signal during the stop: exiting at once");
        std::process::exit(FORCED_EXIT);
    });
}

/// A stream of SIGHUPs, or `None` where the handler cannot be installed (logged).
pub fn hangups() -> Option<tokio::signal::unix::Signal> {
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler; reloads need a restart");
            None
        }
    }
}

/// On every SIGHUP: reads `file` again, checks it with `check` (which returns the `[log] level` it
/// sets), applies what can change while running (the log level) and says in one line what
/// changed, what it applied and what needs a restart. A file that does not load is reported and
/// the running config kept. Spawned on the runtime: returns immediately.
pub fn reload_on_hangup(
    file: std::path::PathBuf,
    log: crate::logging::LogHandle,
    check: impl Fn(&std::path::Path, &str) -> Result<Option<String>, String> + Send + 'static,
) {
    let Some(mut hup) = hangups() else { return };
    let mut current = std::fs::read_to_string(&file).unwrap_or_default();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(file = %file.display(), error = %e, "reload: cannot read the config; keeping the running one");
                    continue;
                }
            };
            let level = match check(&file, &text) {
                Ok(level) => level,
                Err(e) => {
                    tracing::error!(error = %e, "reload: the config does not load; keeping the running one");
                    continue;
                }
            };
            let changed = changed_keys(&current, &text).unwrap_or_default();
            let mut applied = Vec::new();
            if changed.iter().any(|k| k == "log.level") {
                match log.set_level(level.as_deref().unwrap_or("info")) {
                    Ok(what) => applied.push(what),
                    Err(e) => tracing::error!(error = %e, "reload: log level not applied"),
                }
            }
            let restart: Vec<&String> = changed.iter().filter(|k| *k != "log.level").collect();
            tracing::info!(
                file = %file.display(),
                changed = ?changed,
                applied = ?applied,
                needs_restart = ?restart,
                "reloaded the config{}",
                if changed.is_empty() { ": nothing changed" } else { "" }
            );
            current = text;
        }
    });
}

/// The top-level keys (and `[section]` keys one level down) whose values differ between two
/// config files, for a reload's "what changed" line.
pub fn changed_keys(old: &str, new: &str) -> Result<Vec<String>, String> {
    let parse = |t: &str| t.parse::<toml::Table>().map_err(|e| e.to_string());
    let (old, new) = (parse(old)?, parse(new)?);
    let mut keys: Vec<String> = Vec::new();
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for k in names {
        match (old.get(k), new.get(k)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                let inner: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                keys.extend(inner.into_iter().filter(|i| a.get(*i) != b.get(*i)).map(|i| format!("{k}.{i}")));
            }
            (a, b) if a != b => keys.push(k.clone()),
            _ => {}
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_name_sections_and_their_keys() {
        let old = "data_dir = \"/a\"\n[log]\nlevel = \"info\"\n[query]\ntimeout = \"2m\"\n";
        let new = "data_dir = \"/a\"\n[log]\nlevel = \"debug\"\n[query]\ntimeout = \"1m\"\nmax_depth = 5\n";
        assert_eq!(
            changed_keys(old, new).unwrap(),
            vec!["log.level".to_string(), "query.max_depth".into(), "query.timeout".into()]
        );
        assert_eq!(changed_keys(old, old).unwrap(), Vec::<String>::new());
        assert!(changed_keys(old, "[log").is_err());
    }
}
