//! node_exporter's `os` and `selinux` collectors: the distribution from `os-release` as
//! `node_os_info` and `node_os_version`, and whether SELinux is on.

use crate::model::Sample;

/// `node_os_info`'s labels, each from the os-release key of the same name in capitals.
const INFO_KEYS: [&str; 12] = [
    "build_id",
    "id",
    "id_like",
    "image_id",
    "image_version",
    "name",
    "pretty_name",
    "variant",
    "variant_id",
    "version",
    "version_codename",
    "version_id",
];

/// One os-release value: unquoted, or in single or double quotes with `\` escapes.
fn unquote(v: &str) -> String {
    let v = v.trim();
    let inner = match v.as_bytes() {
        [q @ (b'"' | b'\''), .., last] if last == q && v.len() >= 2 => &v[1..v.len() - 1],
        _ => v,
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// The two families from an os-release file; lines that are not `KEY=value` are skipped, as the
/// format says.
pub fn parse(text: &str, out: &mut Vec<Sample>) {
    let mut values: std::collections::HashMap<String, String> = Default::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            values.insert(k.trim().to_ascii_lowercase(), unquote(v));
        }
    }
    let get = |k: &str| values.get(k).cloned().unwrap_or_default();
    let labels = INFO_KEYS.iter().map(|&k| (k, get(k))).collect();
    out.push(Sample::with("node_os_info", labels, 1.0));
    // node_exporter's major.minor: the leading digits, a dot and the digits after it.
    let id = get("version_id");
    let end = id.find(|c: char| !c.is_ascii_digit()).unwrap_or(id.len());
    let minor = id[end..].strip_prefix('.').map(|r| r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len()));
    let major_minor = &id[..end + minor.map_or(0, |m| m + 1)];
    let version = major_minor.parse::<f64>().unwrap_or(0.0);
    let labels = vec![("id", get("id")), ("id_like", get("id_like")), ("name", get("name"))];
    out.push(Sample::with("node_os_version", labels, version));
}

/// `node_selinux_enabled`: 1 where selinuxfs is mounted under the sys root. (node_exporter adds the
/// configured and current modes on such hosts; lookout does not read them.)
pub fn selinux(sys_root: &std::path::Path) -> Sample {
    let on = sys_root.join("fs/selinux/enforce").exists();
    Sample::new("node_selinux_enabled", if on { 1.0 } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label<'a>(s: &'a Sample, k: &str) -> &'a str {
        s.labels.iter().find(|l| l.0 == k).map(|l| l.1.as_str()).unwrap()
    }

    #[test]
    fn real_os_release() {
        let text = std::fs::read_to_string(crate::metrics::testdata().join("etc/os-release")).unwrap();
        let mut out = Vec::new();
        parse(&text, &mut out);
        assert_eq!(out[0].name, "node_os_info");
        assert_eq!(out[0].labels.len(), 12);
        assert_eq!(label(&out[0], "pretty_name"), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(label(&out[0], "version_codename"), "bookworm");
        assert_eq!(label(&out[0], "build_id"), "");
        assert_eq!((out[1].name, out[1].value), ("node_os_version", 12.0));
        assert_eq!(label(&out[1], "id"), "debian");
    }

    #[test]
    fn versions_quotes_and_junk() {
        let mut out = Vec::new();
        parse(
            "# comment\nNAME='Ubuntu'\nVERSION_ID=\"22.04.3\"\nnot a pair\nID=ubuntu\nPRETTY_NAME=\"a \\\"b\\\"\"\n",
            &mut out,
        );
        assert_eq!(out[1].value, 22.04);
        assert_eq!(label(&out[0], "name"), "Ubuntu");
        assert_eq!(label(&out[0], "pretty_name"), "a \"b\"");
        out.clear();
        parse("VERSION_ID=rolling\n", &mut out);
        assert_eq!(out[1].value, 0.0);
    }
}
