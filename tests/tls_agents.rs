//! A real agent process ships metrics and a container's log lines to a real collector process over
//! mutual TLS, known by its certificate; an agent that trusts another CA is refused, and both sides
//! say why.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use support::*;

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A certificate for `name` signed by `ca`, written as `<file>.pem` and `<file>.key`.
fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, name: &str, dir: &Path, file: &str) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.signed_by(&key, ca).unwrap();
    (write(dir, &format!("{file}.pem"), &cert.pem()), write(dir, &format!("{file}.key"), &key.serialize_pem()))
}

#[test]
fn an_agent_over_mutual_tls_ships_metrics_and_logs_and_a_stranger_is_refused() {
    let _serial = serial();
    ensure_image();
    let dir = tempfile::tempdir().unwrap();
    let (site, other) = (ca("site CA"), ca("another CA"));
    let ca_file = write(dir.path(), "ca.pem", &site.as_ref().pem());
    let other_ca = write(dir.path(), "other-ca.pem", &other.as_ref().pem());
    let (cert, key) = leaf(&site, "localhost", dir.path(), "collector");
    let (http, grpc) = (free_addr(), free_addr());
    let collector = Lookout::collector_with(
        &dir.path().join("c"),
        http,
        grpc,
        &format!(
            "[ingest.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
            cert.display(),
            key.display(),
            ca_file.display()
        ),
    );
    let c = TestContainer::run(
        "tlslogs",
        &["--label", "lookout.service=tlssvc"],
        &["sh", "-c", "while true; do echo over tls; sleep 1; done"],
    );
    let url = format!("https://localhost:{}", grpc.port());
    let agent_dir = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let (friend, stranger) = (agent_dir("friend"), agent_dir("stranger"));
    let (fc, fk) = leaf(&site, "tls-host", dir.path(), "tls-host");
    let mut with = spawn_agent_to(
        &friend,
        &url,
        &format!(
            "host = \"tls-host\"\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            ca_file.display(),
            fc.display(),
            fk.display()
        ),
    );
    let (sc, sk) = leaf(&site, "other-host", dir.path(), "other-host");
    let mut without = spawn_agent_to(
        &stranger,
        &url,
        &format!(
            "host = \"other-host\"\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            other_ca.display(),
            sc.display(),
            sk.display()
        ),
    );
    let started = std::time::Instant::now();
    let base = collector.url();
    eventually(Duration::from_secs(20), "the agent's samples over TLS", || {
        (!instant(&base, "node_load1{host=\"tls-host\"}").is_empty()).then_some(())
    });
    eventually(Duration::from_secs(30), "the container's lines over TLS", || {
        let r = api(
            &base,
            "/loki/api/v1/query_range",
            &[("query", &format!("{{container=\"{}\"}}", c.name)), ("limit", "5")],
        );
        r["result"].as_array().is_some_and(|a| !a.is_empty()).then_some(())
    });
    assert!(instant(&base, "node_load1{host=\"other-host\"}").is_empty());
    // Long enough for several retries (backoff from 200 ms, doubling).
    if let Some(rest) = Duration::from_secs(10).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    for a in [&mut with, &mut without] {
        let _ = a.kill();
        let _ = a.wait();
    }
    let log = std::fs::read_to_string(stranger.join("agent.log")).unwrap();
    assert!(
        log.contains("invalid peer certificate") && log.contains("UnknownIssuer"),
        "the refused agent says why:\n{log}"
    );
    assert!(log.contains("not signed by the CA in [tls] ca (unknown CA)"), "in words it can act on:\n{log}");
    assert_eq!(log.matches("cannot reach the collector").count(), 1, "once, not once per retry:\n{log}");
    let log = collector.log();
    assert!(log.contains("a TLS handshake was refused"), "and so does the collector:\n{log}");
}
