//! The packages as a user gets them: `scripts/package`'s .debs and .rpms checked by lintian, rpmlint,
//! `rpm -K` and objdump (no glibc newer than 2.28), their units scored by `systemd-analyze security`,
//! then installed, upgraded after a config edit, removed and purged in a fresh Debian 12 that boots
//! systemd in a container, where the agent reports a container of this host's Docker.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

const VERSION: &str = "0.2.0";
const DEBIAN: &str = "lookout-test-debian:12-systemd";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A file of `dist/` named `prefix*suffix`; `scripts/package` makes them.
fn dist(prefix: &str, suffix: &str) -> PathBuf {
    dist_in(&repo().join("dist"), prefix, suffix)
}

fn dist_in(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let found = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).find(|p| {
        let name = p.file_name().unwrap().to_string_lossy();
        name.starts_with(prefix) && name.ends_with(suffix)
    });
    found.unwrap_or_else(|| panic!("no {prefix}*{suffix} in {}: run scripts/package first", dir.display()))
}

fn debs() -> Vec<PathBuf> {
    ["lookout_", "lookout-agent_", "lookout-collector_"].iter().map(|p| dist(p, "_amd64.deb")).collect()
}

fn rpms() -> Vec<PathBuf> {
    ["lookout-0", "lookout-agent-0", "lookout-collector-0"].iter().map(|p| dist(p, ".x86_64.rpm")).collect()
}

/// Runs a host command; its stdout and stderr together, and whether it succeeded.
fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} does not run ({e}): scripts/test installs it (apt-get install {cmd})"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The newest GLIBC_x.y a binary's dynamic symbols need.
fn glibc_needed(bin: &Path) -> (u32, u32) {
    let (ok, out) = sh("objdump", &["-T", bin.to_str().unwrap()]);
    assert!(ok, "objdump -T {}: {out}", bin.display());
    glibc_max(&out)
}

fn glibc_max(text: &str) -> (u32, u32) {
    text.split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let v: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .unwrap_or((0, 0))
}

#[test]
fn packages_pass_lintian_and_rpmlint_need_glibc_2_28_at_most_and_their_units_are_hardened() {
    let tmp = tempfile::tempdir().unwrap();
    for deb in debs() {
        let (ok, out) = sh("lintian", &["--fail-on", "error", "--tag-display-limit", "0", deb.to_str().unwrap()]);
        assert!(ok, "lintian {}:\n{out}", deb.display());
        let unpacked = tmp.path().join(deb.file_stem().unwrap());
        let (ok, out) = sh("dpkg-deb", &["-x", deb.to_str().unwrap(), unpacked.to_str().unwrap()]);
        assert!(ok, "{out}");
        for bin in std::fs::read_dir(unpacked.join("usr/bin")).into_iter().flatten().flatten() {
            let needed = glibc_needed(&bin.path());
            assert!(
                needed <= (2, 28),
                "{} needs GLIBC_{}.{}: RHEL 8 has 2.28",
                bin.path().display(),
                needed.0,
                needed.1
            );
            let (_, sections) = sh("objdump", &["-h", bin.path().to_str().unwrap()]);
            assert!(!sections.contains(".debug_info"), "{} is not stripped", bin.path().display());
        }
    }
    // The -dbgsym packages hold the .debug files only, as Debian's automatic ones do (whose doc
    // folder is the main package's): no changelog or copyright of their own, cargo-deb's priority.
    for ddeb in ["lookout-dbgsym_", "lookout-agent-dbgsym_", "lookout-collector-dbgsym_"].map(|p| dist(p, ".ddeb")) {
        let suppress = "no-changelog,no-copyright-file,unknown-priority";
        let (ok, out) = sh("lintian", &["--fail-on", "error", "--suppress-tags", suppress, ddeb.to_str().unwrap()]);
        assert!(ok, "lintian {}:\n{out}", ddeb.display());
        let (_, contents) = sh("dpkg-deb", &["-c", ddeb.to_str().unwrap()]);
        assert!(
            contents.lines().any(|l| l.contains("./usr/lib/debug/") && l.ends_with(".debug")),
            "{} holds no debug symbols:\n{contents}",
            ddeb.display()
        );
    }
    let agent = std::fs::metadata(dist("lookout-agent_", "_amd64.deb")).unwrap().len();
    assert!(agent < 10 << 20, "the agent's .deb is {agent} bytes; the target is under 10 MB");

    // The -debuginfo rpms: the .debug file the stripped binary's .gnu_debuglink names.
    for name in ["lookout", "lookout-agent", "lookout-collector"] {
        let rpm = dist(&format!("{name}-debuginfo-"), ".x86_64.rpm");
        let path = rpm.to_str().unwrap();
        let (ok, out) = sh("rpm", &["-K", "--nosignature", path]);
        assert!(ok && out.contains("digests OK"), "rpm -K {path}: {out}");
        let (_, files) = sh("rpm", &["-qpl", path]);
        assert_eq!(files.trim(), format!("/usr/lib/debug/usr/bin/{name}.debug"));
        let bin = repo().join("target/package/bin").join(name);
        let (_, link) = sh("readelf", &["--string-dump=.gnu_debuglink", bin.to_str().unwrap()]);
        assert!(link.contains(&format!("{name}.debug")), "{}: no debug link to {name}.debug:\n{link}", bin.display());
    }
    for rpm in rpms() {
        let path = rpm.to_str().unwrap();
        let (ok, out) = sh("rpm", &["-K", "--nosignature", path]);
        assert!(ok && out.contains("digests OK"), "rpm -K {path}: {out}");
        let (ok, requires) = sh("rpm", &["-qp", "--requires", path]);
        assert!(ok, "{requires}");
        let needed = glibc_max(&requires);
        assert!(((2, 2)..=(2, 28)).contains(&needed), "{path} requires GLIBC_{}.{}:\n{requires}", needed.0, needed.1);
        // rpmlint's errors that do not matter here, each with its reason.
        let allowed = [
            // Packages are signed by whoever publishes them, with their key, not by the build.
            "no-signature",
            // Header tags only rpmbuild's spec files carry; cargo-generate-rpm writes none of them.
            // Group is obsolete since RPM 4.14 (Fedora 28, RHEL 8); the changes are in README.md
            // and the .deb's changelog.
            "no-packager-tag",
            "no-group-tag",
            "no-buildhost-tag",
            "no-changelogname-tag",
            // On purpose: agent.toml may hold the collector's token inline.
            "non-readable /etc/lookout/agent.toml 640",
        ];
        let (_, lint) = sh("rpmlint", &[path]);
        let errors: Vec<&str> =
            lint.lines().filter(|l| l.contains(": E: ") && !allowed.iter().any(|a| l.contains(a))).collect();
        assert!(errors.is_empty(), "rpmlint {path}:\n{lint}");
    }

    for unit in ["lookout-agent.service", "lookout-collector.service"] {
        let file = repo().join("systemd").join(unit);
        let (_, out) = sh("systemd-analyze", &["security", "--offline=true", file.to_str().unwrap()]);
        let score: f64 = out
            .lines()
            .find_map(|l| l.split("Overall exposure level for").nth(1))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("systemd-analyze security {unit}: {out}"));
        assert!(score <= 3.0, "{unit} scores {score} (at most 3.0):\n{out}");
    }
}

/// A Debian 12 container booted with systemd, with this host's Docker socket and container logs, as
/// a host where lookout is installed; removed on drop.
struct Host {
    name: String,
}

impl Host {
    fn boot() -> Host {
        let (ok, out) = sh("sh", &[repo().join("scripts/build-debian-image").to_str().unwrap()]);
        assert!(ok, "scripts/build-debian-image: {out}");
        let name = format!("lookout-test-host-{}-{}", std::process::id(), rand_tag());
        let (ok, out) = sh(
            "docker",
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--hostname",
                "pkg-host",
                "--label",
                "lookout.test=1",
                // --privileged needs CAP_SYS_RESOURCE, which some virtual machines lack.
                "--cap-add",
                "ALL",
                "--cap-drop",
                "SYS_RESOURCE",
                "--tmpfs",
                "/run",
                "--tmpfs",
                "/run/lock",
                "-v",
                "/sys/fs/cgroup:/sys/fs/cgroup:ro",
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                "-v",
                "/var/lib/docker/containers:/var/lib/docker/containers:ro",
                DEBIAN,
            ],
        );
        assert!(ok, "docker run {DEBIAN}: {out}");
        let host = Host { name };
        eventually(Duration::from_secs(60), "systemd in the container to be up", || {
            let (_, state) = host.try_exec("systemctl is-system-running");
            matches!(state.trim(), "running" | "degraded").then_some(())
        });
        host
    }

    /// `sh -c script` in the container: stdout and stderr, and whether it succeeded.
    fn try_exec(&self, script: &str) -> (bool, String) {
        sh("docker", &["exec", &self.name, "sh", "-c", script])
    }

    fn run(&self, script: &str) -> String {
        let (ok, out) = self.try_exec(script);
        assert!(ok, "in the container: {script}\n{out}\n--- journal\n{}", self.journal());
        out
    }

    fn journal(&self) -> String {
        self.try_exec("journalctl --no-pager -n 60 -u lookout-agent -u lookout-collector").1
    }

    fn copy_in(&self, files: &[PathBuf], dir: &str) {
        self.run(&format!("mkdir -p {dir}"));
        for f in files {
            let (ok, out) = sh("docker", &["cp", f.to_str().unwrap(), &format!("{}:{dir}/", self.name)]);
            assert!(ok, "docker cp: {out}");
        }
    }

    fn active(&self, unit: &str) -> bool {
        self.try_exec(&format!("systemctl is-active {unit}")).1.trim() == "active"
    }

    fn main_pid(&self, unit: &str) -> String {
        self.run(&format!("systemctl show -p MainPID --value {unit}")).trim().to_string()
    }

    /// Waits until the collector inside answers a PromQL query for `container`'s memory.
    fn sees(&self, container: &str) {
        let q = format!("count(container_memory_usage_bytes{{container=\"{container}\"}})");
        eventually(Duration::from_secs(90), &format!("{container} in the installed collector"), || {
            let (ok, out) = self.try_exec(&format!("lookout query '{q}'"));
            (ok && out.contains('1')).then_some(())
        });
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.name]).output();
    }
}

fn rand_tag() -> String {
    format!("{:08x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos())
}

/// `deb` rebuilt as revision 2, with a line added to its default config: an upgrade whose conffile
/// changed, so dpkg must choose between the operator's edit and the new default.
fn next_revision(deb: &Path, dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    let (ok, out) = sh("dpkg-deb", &["-R", deb.to_str().unwrap(), tree.to_str().unwrap()]);
    assert!(ok, "{out}");
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap().replace(&format!("{VERSION}-1"), &format!("{VERSION}-2"));
    std::fs::write(&control, text).unwrap();
    for conf in ["etc/lookout/agent.toml", "etc/lookout/collector.toml"] {
        let p = tree.join(conf);
        if p.exists() {
            let mut text = std::fs::read_to_string(&p).unwrap();
            text.push_str("\n# A default that changed in revision 2.\n");
            std::fs::write(&p, text).unwrap();
        }
    }
    // md5sums follows the files.
    let (ok, sums) = sh("sh", &["-c", &format!("cd {} && find usr etc -type f | sort | xargs md5sum", tree.display())]);
    assert!(ok, "{sums}");
    std::fs::write(tree.join("DEBIAN/md5sums"), sums).unwrap();
    let out_deb =
        dir.join(deb.file_name().unwrap().to_string_lossy().replace(&format!("{VERSION}-1"), &format!("{VERSION}-2")));
    let (ok, out) = sh("dpkg-deb", &["--root-owner-group", "-b", tree.to_str().unwrap(), out_deb.to_str().unwrap()]);
    assert!(ok, "{out}");
    out_deb
}

#[test]
fn debs_install_start_upgrade_keeping_an_edit_remove_and_purge_under_systemd() {
    let _serial = serial();
    let workload = TestContainer::run("pkg-workload", &[], &["sleep", "600"]);
    let host = Host::boot();
    host.copy_in(&debs(), "/tmp/pkgs");
    host.run("apt-get install -y -q --no-install-recommends /tmp/pkgs/*.deb");
    for unit in ["lookout-agent", "lookout-collector"] {
        eventually(Duration::from_secs(30), &format!("{unit} active"), || host.active(unit).then_some(()));
        assert_eq!(host.run(&format!("systemctl is-enabled {unit}")).trim(), "enabled");
    }
    assert_eq!(host.run("stat -c %U:%G /var/lib/lookout/collector").trim(), "lookout:lookout");
    assert_eq!(host.run("stat -c %U /var/lib/lookout/agent").trim(), "root");
    assert_eq!(host.run("systemctl show -p User --value lookout-collector").trim(), "lookout");
    host.sees(&workload.name);

    // The operator edits both configs; revision 2 changes the defaults: the edits stay
    // (--force-confold, as a non-interactive upgrade must say), the new defaults land beside them,
    // and both services run the new package.
    host.run("echo '# edited on this host' >> /etc/lookout/agent.toml && echo '# edited on this host' >> /etc/lookout/collector.toml");
    let before = (host.main_pid("lookout-agent"), host.main_pid("lookout-collector"));
    let dir = tempfile::tempdir().unwrap();
    let next: Vec<PathBuf> = debs().iter().map(|d| next_revision(d, dir.path())).collect();
    host.copy_in(&next, "/tmp/next");
    host.run("apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold /tmp/next/*.deb");
    for (unit, pid) in [("lookout-agent", &before.0), ("lookout-collector", &before.1)] {
        eventually(Duration::from_secs(30), &format!("{unit} restarted"), || {
            (host.active(unit) && host.main_pid(unit) != *pid && host.main_pid(unit) != "0").then_some(())
        });
    }
    assert_eq!(host.run("dpkg-query -W -f '${Version}' lookout-agent"), format!("{VERSION}-2"));
    for conf in ["agent", "collector"] {
        let text = host.run(&format!("cat /etc/lookout/{conf}.toml"));
        assert!(text.contains("# edited on this host"), "{conf}.toml lost its edit in the upgrade");
        host.run(&format!("grep -q 'changed in revision 2' /etc/lookout/{conf}.toml.dpkg-dist"));
    }
    host.sees(&workload.name);

    // Remove: services stopped and off, config and data kept.
    host.run("apt-get remove -y -q lookout-agent lookout-collector lookout");
    for unit in ["lookout-agent", "lookout-collector"] {
        assert!(!host.active(unit), "{unit} still running after remove");
        let (_, enabled) = host.try_exec(&format!("systemctl is-enabled {unit}"));
        assert_ne!(enabled.trim(), "enabled", "{unit} still enabled after remove");
    }
    host.run("test ! -e /usr/bin/lookout-agent && test ! -e /usr/bin/lookout-collector && test ! -e /usr/bin/lookout");
    host.run("test -f /etc/lookout/agent.toml && test -f /etc/lookout/collector.toml");
    host.run("test -n \"$(ls /var/lib/lookout/collector)\" && test -n \"$(ls /var/lib/lookout/agent)\"");

    // Purge: config and data gone, and nothing else (the user stays, as Debian's daemons leave theirs).
    // `lookout` has no config: remove took all of it.
    host.run("apt-get purge -y -q lookout-agent lookout-collector");
    host.run("test ! -e /etc/lookout && test ! -e /var/lib/lookout");
    host.run("id lookout && test -d /etc/apt && test -S /var/run/docker.sock");
    let left = host.run("dpkg -l 'lookout*' 2>/dev/null | grep '^[a-z][a-z] ' || true");
    assert!(left.trim().is_empty(), "packages left after purge:\n{left}");
}

/// The agent's rpm as release 2 with a changed default config, made by cargo-generate-rpm as
/// `scripts/package` makes release 1.
fn next_release(dir: &Path) -> PathBuf {
    let conf = dir.join("agent.toml");
    let mut text = std::fs::read_to_string(repo().join("packaging/agent.toml")).unwrap();
    text.push_str("\n# A default that changed in release 2.\n");
    std::fs::write(&conf, text).unwrap();
    let r = repo().display();
    let overwrite = format!(
        r#"release = "2"
assets = [
    {{ source = "{r}/target/package/bin/lookout-agent", dest = "/usr/bin/lookout-agent", mode = "755" }},
    {{ source = "{conf}", dest = "/etc/lookout/agent.toml", mode = "640", config = "noreplace" }},
    {{ source = "{r}/systemd/lookout-agent.service", dest = "/usr/lib/systemd/system/lookout-agent.service", mode = "644" }},
]"#,
        conf = conf.display()
    );
    let out_dir = dir.join("rpm");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = Command::new("cargo")
        .current_dir(repo())
        .args(["generate-rpm", "-p", "agent", "--target", "x86_64-unknown-linux-gnu", "-s", &overwrite, "-o"])
        .arg(&out_dir)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo generate-rpm (scripts/package installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dist_in(&out_dir, "lookout-agent-", ".rpm")
}

#[test]
fn rpms_install_start_upgrade_keeping_an_edit_and_erase_under_systemd() {
    let _serial = serial();
    let workload = TestContainer::run("rpm-workload", &[], &["sleep", "600"]);
    let host = Host::boot();
    host.copy_in(&rpms(), "/tmp/pkgs");
    // Debian's rpm, with its database where RPM-based systems keep it; no dependency checks, as
    // Debian's libraries are not in an rpm database.
    let rpm = "rpm --dbpath /var/lib/rpm --nodeps";
    host.run(&format!("mkdir -p /var/lib/rpm && {rpm} -i /tmp/pkgs/*.rpm"));
    for unit in ["lookout-agent", "lookout-collector"] {
        eventually(Duration::from_secs(30), &format!("{unit} active"), || host.active(unit).then_some(()));
    }
    assert_eq!(host.run("stat -c %U /var/lib/lookout/collector").trim(), "lookout");
    host.sees(&workload.name);

    // Release 2 changes the default config; an upgrade after an edit keeps the edit and puts the new
    // default beside it as .rpmnew, and restarts the agent.
    host.run("echo '# edited on this host' >> /etc/lookout/agent.toml");
    let before = host.main_pid("lookout-agent");
    let dir = tempfile::tempdir().unwrap();
    host.copy_in(&[next_release(dir.path())], "/tmp/next");
    host.run(&format!("{rpm} -U /tmp/next/lookout-agent-*.rpm"));
    assert_eq!(host.run("rpm --dbpath /var/lib/rpm -q --qf '%{RELEASE}' lookout-agent"), "2");
    eventually(Duration::from_secs(30), "lookout-agent restarted", || {
        (host.active("lookout-agent") && host.main_pid("lookout-agent") != before).then_some(())
    });
    host.run("grep -q '# edited on this host' /etc/lookout/agent.toml");
    host.run("grep -q 'changed in release 2' /etc/lookout/agent.toml.rpmnew");
    host.sees(&workload.name);

    // Erase: stopped and disabled, config (as .rpmsave when edited) and data kept.
    host.run(&format!("{rpm} -e lookout-agent lookout-collector lookout"));
    for unit in ["lookout-agent", "lookout-collector"] {
        assert!(!host.active(unit), "{unit} still running after rpm -e");
    }
    // rpm keeps an edited config as .rpmsave and removes one left as shipped.
    host.run("test -e /etc/lookout/agent.toml.rpmsave");
    host.run("test -n \"$(ls /var/lib/lookout/collector)\"");
}
