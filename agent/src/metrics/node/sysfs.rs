//! Reading sysfs attributes for the collectors under `/sys`: one small value per file, where a file
//! that is absent or refuses to be read means "no value" rather than an error.

use std::io::Read;
use std::path::{Path, PathBuf};

/// A value that did not parse: the file and what it held, for the host reader's errors.
#[derive(Debug, PartialEq)]
pub struct Bad {
    pub path: PathBuf,
    pub text: String,
}

/// The first 128 bytes of an attribute (what node_exporter reads of one, in a single `read`), as
/// text; `None` if the file is absent or refuses to be read (EACCES for a root-only file, ENODATA
/// for a disabled thermal zone, EISDIR for a directory).
pub fn attr(path: &Path) -> Option<String> {
    let mut buf = [0u8; 128];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut buf)).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// An attribute holding one integer (surrounding whitespace allowed); `None` if it is absent, or
/// present but not a number, which is noted in `bad` with what it held.
pub fn number(path: &Path, bad: &mut Vec<Bad>) -> Option<i64> {
    let text = attr(path)?;
    let v = text.trim().parse::<i64>().ok();
    if v.is_none() {
        bad.push(Bad { path: path.to_path_buf(), text: text.trim().to_string() });
    }
    v
}

/// Writes a tree of attribute files under `root` (path relative to it, content), for fixtures.
#[cfg(test)]
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (rel, content) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("a file below root")).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

/// The entries of `dir` named `prefix` then digits, as (digits, path), in name order; none if `dir`
/// is absent.
pub fn numbered(dir: &Path, prefix: &str) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix(prefix)?;
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| (n.to_string(), e.path()))
        })
        .collect();
    found.sort();
    found
}
