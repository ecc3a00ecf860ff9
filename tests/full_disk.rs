//! A full disk under the collector: its database on a 3 MiB tmpfs of the test's own, fed by a real
//! agent tailing a container that writes incompressible numbered lines. The collector stops
//! acknowledging and says why, keeps answering queries, and once the file system is grown every
//! line the agent held arrives exactly once.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).output();
        let out = out.expect("mount runs (util-linux)");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (the test needs root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    fn grow(&self, size: &str) {
        let st = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status().unwrap();
        assert!(st.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::blocking::get(format!("{base}/metrics")).and_then(|r| r.text()).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The numbers of the container's stored lines, and whether its last line is there.
fn numbers(base: &str, container: &str, from: i64, to: i64) -> (Vec<usize>, bool) {
    let re = regex::Regex::new(r"^n=(\d{6}) [A-Za-z0-9+/=]+$").unwrap();
    let (mut out, mut finished) = (Vec::new(), false);
    let mut start = from;
    while start < to {
        let end = (start + 1_000_000_000).min(to);
        let body: Value = reqwest::blocking::Client::new()
            .post(format!("{base}/loki/api/v1/query_range"))
            .form(&[
                ("query", format!(r#"{{container="{container}"}}"#)),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("limit", "5000".into()),
                ("direction", "forward".into()),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let mut lines: Vec<(i64, String)> = Vec::new();
        for st in body["data"]["result"].as_array().unwrap() {
            for v in st["values"].as_array().unwrap() {
                lines.push((v[0].as_str().unwrap().parse().unwrap(), v[1].as_str().unwrap().to_string()));
            }
        }
        assert!(lines.len() < 5000, "a read window was full");
        lines.sort_by_key(|l| l.0);
        for (_, text) in lines {
            if text == "finished" {
                finished = true;
            } else {
                let m = re.captures(&text).unwrap_or_else(|| panic!("a line the container did not write: {text}"));
                out.push(m[1].parse().unwrap());
            }
        }
        start = end;
    }
    (out, finished)
}

#[test]
fn a_full_disk_stops_acknowledging_and_every_held_line_arrives_once_when_there_is_room_again() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("c");
    // The collector's database (`c/db`) lives on the small file system; its config and log do not.
    let fs = Tmpfs::mount(&cdir.join("db"), "3m");
    let (http, grpc) = (free_addr(), free_addr());
    let collector = Lookout::collector_with(&cdir, http, grpc, "");
    let base = collector.url();
    let from = now_ns() - 1_000_000_000;
    // About 180 bytes of base64 noise per line: 12,000 lines are 2.2 MB that barely compress.
    let n = 12_000;
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do printf 'n=%06d %s\\n' $i \"$(head -c 132 /dev/urandom | base64 | tr -d '\\n')\"; \
         i=$((i+1)); done; echo finished; sleep 3600"
    );
    let c = TestContainer::run("fulldisk", &["--label", "lookout.service=filler"], &["sh", "-c", &script]);
    let adir = dir.path().join("a");
    std::fs::create_dir_all(&adir).unwrap();
    let mut agent = spawn_agent(&adir, grpc, "");

    eventually(Duration::from_secs(180), "the store failing to commit", || {
        (metric(&base, "lookout_collector_commit_errors_total") > 0.0).then_some(())
    });
    // Full: queries still answer from what is stored.
    let (stored, _) = numbers(&base, &c.name, from, now_ns() + 1_000_000_000);
    assert!(!stored.is_empty(), "lines stored before the disk filled are readable");
    let v = api(&base, "/api/v1/query", &[("query", "1+1"), ("time", "4")]);
    assert_eq!(v["result"][1], "2");
    let log = collector.log();
    assert!(log.contains("cannot commit a batch") && log.contains("free_on_data_fs"), "the collector says why: {log}");
    assert_eq!(log.matches("cannot commit a batch").count(), 1, "said once a minute, not per retry: {log}");
    eprintln!(
        "full with {} lines stored: {}",
        stored.len(),
        log.lines().find(|l| l.contains("cannot commit")).unwrap_or("")
    );

    // Room again: everything the agent held arrives, once.
    fs.grow("256m");
    eventually(Duration::from_secs(240), "the container's last line", || {
        numbers(&base, &c.name, from, now_ns() + 1_000_000_000).1.then_some(())
    });
    let (nums, _) = numbers(&base, &c.name, from, now_ns() + 1_000_000_000);
    let mut seen = vec![0u32; n];
    for &i in &nums {
        seen[i] += 1;
    }
    let missing: Vec<usize> = (0..n).filter(|&i| seen[i] == 0).collect();
    let repeated: Vec<usize> = (0..n).filter(|&i| seen[i] > 1).collect();
    assert!(
        missing.is_empty() && repeated.is_empty(),
        "every number once after the disk filled: missing {} (first {:?}), repeated {} (first {:?})",
        missing.len(),
        &missing[..missing.len().min(10)],
        repeated.len(),
        &repeated[..repeated.len().min(10)]
    );
    let _ = agent.kill();
    let _ = agent.wait();
    drop(collector);
}
