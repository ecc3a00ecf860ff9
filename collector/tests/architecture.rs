//! The Architecture Invariants a build cannot check, checked on the source text. `decide/` is
//! pure: no path under it names the store, the query engines, the shells, the API, ingest,
//! outbound delivery, the clock, an async runtime, HTTP, SQLite, threads, files or sockets.

use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &[
    "crate::store",
    "crate::query",
    "crate::run",
    "crate::api",
    "crate::ingest",
    "crate::export",
    "crate::commands",
    "crate::clock",
    "crate::app",
    "tokio",
    "reqwest",
    "rusqlite",
    "SystemTime::now",
    "Instant::now",
    "std::thread",
    "std::fs",
    "std::net",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("decide/ is readable") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The paths a line of code names: a `use crate::{a, b::c}` names `crate::a` and `crate::b::c`.
fn paths(code: &str) -> Vec<String> {
    let mut out = vec![code.to_string()];
    if let Some((head, rest)) = code.split_once("::{") {
        let head = head.rsplit(|c: char| c.is_whitespace() || c == '(').next().unwrap_or(head);
        let inner = rest.split('}').next().unwrap_or("");
        out.extend(inner.split(',').map(|p| format!("{head}::{}", p.trim())));
    }
    out
}

#[test]
fn nothing_under_decide_reaches_io_the_store_the_engines_or_the_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/decide");
    let mut all = Vec::new();
    files(&root, &mut all);
    assert!(all.len() >= 8, "decide/ has its files: {all:?}");
    let mut found = Vec::new();
    for f in &all {
        let text = std::fs::read_to_string(f).expect("a source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for p in paths(code) {
                if let Some(bad) = FORBIDDEN.iter().find(|b| p.contains(*b)) {
                    found.push(format!("{}:{}: {bad} in {:?}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "decide/ must stay pure:\n{}", found.join("\n"));
}

#[test]
fn the_scan_sees_grouped_imports() {
    assert!(paths("use crate::{model, store::Store};").iter().any(|p| p == "crate::store::Store"));
    assert!(paths("    let x = tokio::spawn(f);").iter().any(|p| p.contains("tokio")));
}
