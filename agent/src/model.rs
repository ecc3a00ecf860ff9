//! Plain domain types the agent's readers produce: container identity and metric samples.
//! Nothing here knows the wire format; `ship` alone converts these to protobuf.

use std::fmt;

/// A Docker container id: 64 lowercase hex characters. Not to be confused with its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// Accepts only a full 64-hex id, so that a name or a short id never passes for one.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            .then(|| ContainerId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One reading of one metric. `labels` holds only the labels the reader itself knows (`cpu`, `mode`,
/// `interface`, `device`, `mountpoint`, ...); identity labels (host, container, service, ...) are added
/// by the caller.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Sample {
    pub fn new(name: &'static str, value: f64) -> Self {
        Sample { name, labels: Vec::new(), value }
    }

    pub fn with(name: &'static str, labels: Vec<(&'static str, String)>, value: f64) -> Self {
        Sample { name, labels, value }
    }
}

/// A metric or label name made at run time (from a kernel file's field names, say) as the
/// `&'static str` that [`Sample`] holds. Each distinct name is allocated once and kept for the
/// process's life, so only bounded sets may pass through here: the fields of one kernel's
/// `/proc/net/netstat`, never values or anything a container chooses.
pub fn intern(name: &str) -> &'static str {
    intern_impl(name, None).expect("unbounded")
}

/// [`intern`] for names from outside the agent (textfiles): a name not yet kept counts against
/// `used`, and past `max` such names there is none.
pub fn intern_within(name: &str, used: &std::sync::atomic::AtomicUsize, max: usize) -> Option<&'static str> {
    intern_impl(name, Some((used, max)))
}

fn intern_impl(name: &str, bound: Option<(&std::sync::atomic::AtomicUsize, usize)>) -> Option<&'static str> {
    use std::collections::HashSet;
    use std::sync::atomic::Ordering;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(name) {
        return Some(n);
    }
    if let Some((used, max)) = bound {
        // Under the lock: no two callers pass the bound together.
        if used.load(Ordering::Relaxed) >= max {
            return None;
        }
        used.fetch_add(1, Ordering::Relaxed);
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    Some(leaked)
}
