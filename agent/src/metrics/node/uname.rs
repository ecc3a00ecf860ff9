//! node_exporter's `uname` collector: `node_uname_info` (value 1) with the kernel's names as
//! labels, read from the proc root's `sys/kernel` files (what `uname(2)` answers) and, for
//! `machine`, the architecture this agent was built for.

use crate::model::Sample;

/// The `node_uname_info` sample from `sys/kernel/{ostype,osrelease,version,hostname,domainname}`
/// under `proc_root`; `None` when `ostype` is missing (not Linux's /proc).
pub fn read(proc_root: &std::path::Path) -> Option<Sample> {
    let read =
        |f: &str| std::fs::read_to_string(proc_root.join("sys/kernel").join(f)).ok().map(|s| s.trim_end().to_string());
    let sysname = read("ostype")?;
    let labels = vec![
        ("sysname", sysname),
        ("release", read("osrelease").unwrap_or_default()),
        ("version", read("version").unwrap_or_default()),
        ("machine", std::env::consts::ARCH.to_string()),
        ("nodename", read("hostname").unwrap_or_default()),
        ("domainname", read("domainname").unwrap_or_default()),
    ];
    Some(Sample::with("node_uname_info", labels, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labels_are_what_uname_says() {
        let s = read(std::path::Path::new("/proc")).expect("this host's /proc");
        let label = |k: &str| s.labels.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()).unwrap();
        let uname = |flag: &str| {
            let out = std::process::Command::new("uname").arg(flag).output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim_end().to_string()
        };
        assert_eq!(label("sysname"), uname("-s"));
        assert_eq!(label("release"), uname("-r"));
        assert_eq!(label("version"), uname("-v"));
        assert_eq!(label("machine"), uname("-m"));
        assert_eq!(label("nodename"), uname("-n"));
        assert_eq!(s.value, 1.0);
    }

    #[test]
    fn a_fixture_tree_gives_its_own_names() {
        let s = read(&crate::metrics::testdata().join("proc")).unwrap();
        assert!(s.labels.contains(&("release", "6.18.44-fc-v1147".to_string())), "{:?}", s.labels);
        assert!(s.labels.contains(&("nodename", "vm".to_string())));
        assert!(s.labels.contains(&("domainname", "(none)".to_string())));
        assert!(read(std::path::Path::new("/nonexistent")).is_none());
    }
}
