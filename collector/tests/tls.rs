//! TLS on real sockets with certificates made here: agents over mutual TLS, each way a handshake
//! is refused (unknown CA, expired, name mismatch, no client certificate) said on both sides, the
//! agent's identity taken from its certificate, and certificates rotated under an open stream.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lookout_collector::model::Matcher;
use lookout_collector::tls::{describe, Reloading, TlsConfig};
use lookout_proto::v1::{
    agent_message, ingest_client::IngestClient, AgentMessage, Batch, Hello, Label, SeriesGroup, SeriesSamples,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `names` signed by `ca`, and its key, as PEM.
fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str], expired: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    if let Some(n) = names.first() {
        p.distinguished_name.push(DnType::CommonName, *n);
    }
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    (p.signed_by(&key, ca).unwrap().pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A rustls client config trusting `ca_pem`, presenting `identity` when given.
fn client(ca_pem: &str, identity: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap();
    let b = b.with_root_certificates(roots);
    Arc::new(match identity {
        Some((cert, key)) => b
            .with_client_auth_cert(
                rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()).map(|c| c.unwrap()).collect(),
                rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// One handshake over loopback: the client's error (if any) and the server's, as the collector says it.
async fn handshake(
    server: &Reloading,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> (Option<String>, Option<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = server.acceptor();
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match acceptor.accept(tcp).await {
            Ok(mut s) => {
                // A TLS 1.3 server learns of a bad client certificate only when it reads.
                let mut b = [0u8; 1];
                match s.read(&mut b).await {
                    Err(e) => Some(describe(&e)),
                    Ok(_) => {
                        let _ = s.write_all(b"y").await;
                        let _ = s.shutdown().await;
                        None
                    }
                }
            }
            Err(e) => Some(describe(&e)),
        }
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let client_err = match connector.connect(name, tcp).await {
        Ok(mut s) => {
            let _ = s.write_all(b"x").await;
            let _ = s.flush().await;
            let mut b = [0u8; 1];
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
                Ok(Ok(1)) => None,
                Ok(Ok(_)) => Some("closed before answering".into()),
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("no answer in 5 s".into()),
            }
        }
        Err(e) => Some(e.to_string()),
    };
    (client_err, srv.await.unwrap())
}

#[tokio::test]
async fn each_refused_handshake_is_said_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let (site, other) = (ca("site CA"), ca("another CA"));
    let site_pem = site.as_ref().pem();
    let server = leaf(&site, &["localhost"], false);
    let cfg = TlsConfig {
        cert: write(dir.path(), "c.pem", &server.0),
        key: write(dir.path(), "k.pem", &server.1),
        client_ca: Some(write(dir.path(), "ca.pem", &site_pem)),
    };
    let tls = Reloading::load(cfg, &[b"h2"], "test").unwrap();
    let agent = leaf(&site, &["web-01"], false);

    let (c, s) = handshake(&tls, client(&site_pem, Some(&agent)), "localhost").await;
    assert_eq!((c, s), (None, None), "mutual TLS with the site's certificates");

    let (c, s) = handshake(&tls, client(&other.as_ref().pem(), Some(&agent)), "localhost").await;
    assert!(c.unwrap().contains("UnknownIssuer"), "the agent does not trust a collector of another CA");
    assert!(s.unwrap().contains("does not trust this collector's certificate"));

    let (c, s) = handshake(&tls, client(&site_pem, Some(&leaf(&other, &["web-01"], false))), "localhost").await;
    assert!(c.is_some());
    assert!(s.unwrap().contains("not signed by client_ca (unknown CA)"));

    let (c, s) = handshake(&tls, client(&site_pem, Some(&leaf(&site, &["web-01"], true))), "localhost").await;
    assert!(c.is_some());
    assert!(s.unwrap().contains("has expired"));

    let (c, s) = handshake(&tls, client(&site_pem, None), "localhost").await;
    assert!(c.is_some());
    assert!(s.unwrap().contains("sent no client certificate"));

    let (c, s) = handshake(&tls, client(&site_pem, Some(&agent)), "collector.example").await;
    let c = c.unwrap();
    assert!(c.contains("not valid for name"), "the collector's certificate is for localhost only: {c}");
    assert!(s.unwrap().contains("does not trust this collector's certificate"));
}

fn label(name: &str, value: &str) -> Label {
    Label { name: name.into(), value: value.into() }
}

fn batch(seq: u64, host: &str) -> AgentMessage {
    let series = SeriesSamples {
        labels: vec![label("__name__", "node_load1")],
        timestamps_ms: vec![lookout_collector::clock::now_ms() + seq as i64],
        values: vec![0.5],
    };
    let group = SeriesGroup { labels: vec![label("host", host)], series: vec![series] };
    AgentMessage { msg: Some(agent_message::Msg::Batch(Batch { seq, groups: vec![group], ..Default::default() })) }
}

fn hello(host: &str) -> AgentMessage {
    AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            agent_id: format!("agent-{host}"),
            host: host.into(),
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_over_mutual_tls_are_known_by_their_certificate_and_rotation_keeps_streams_open() {
    let dir = tempfile::tempdir().unwrap();
    let site = ca("site CA");
    let site_pem = site.as_ref().pem();
    let first = leaf(&site, &["localhost"], false);
    let (cert, key) = (write(dir.path(), "c.pem", &first.0), write(dir.path(), "k.pem", &first.1));
    let ca_file = write(dir.path(), "ca.pem", &site_pem);
    let cfg: lookout_collector::CollectorConfig = toml::from_str(&format!(
        "data_dir = \"{}\"\nhttp_listen = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n\
         [ingest.tls]\ncert = \"{c}\"\nkey = \"{k}\"\nclient_ca = \"{ca}\"\n\
         [http.tls]\ncert = \"{c}\"\nkey = \"{k}\"\n",
        dir.path().join("db").display(),
        c = cert.display(),
        k = key.display(),
        ca = ca_file.display()
    ))
    .unwrap();
    let stop = CancellationToken::new();
    let running = lookout_collector::start(cfg, stop.clone()).await.unwrap();

    let agent = leaf(&site, &["web-01"], false);
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&site_pem))
        .identity(tonic::transport::Identity::from_pem(&agent.0, &agent.1))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", running.grpc_addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = IngestClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(hello("web-01")).await.unwrap();
    tx.send(batch(1, "web-01")).await.unwrap();
    let mut answers = grpc.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let _welcome = answers.message().await.unwrap().expect("welcome");
    assert!(format!("{:?}", answers.message().await.unwrap()).contains("Ack"));

    // The certificate says web-01: saying host db-01 is refused.
    let (tx2, rx2) = tokio::sync::mpsc::channel(8);
    tx2.send(hello("db-01")).await.unwrap();
    let refused = match grpc.clone().stream(tokio_stream::wrappers::ReceiverStream::new(rx2)).await {
        Err(s) => s,
        Ok(r) => r.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert_eq!(refused.message(), "the client certificate is for web-01, not for host \"db-01\"");

    // Rotation: new files in place; the open stream goes on, a new connection gets the new certificate.
    let second = leaf(&site, &["localhost"], false);
    std::fs::write(&cert, &second.0).unwrap();
    std::fs::write(&key, &second.1).unwrap();
    let presented = |addr: std::net::SocketAddr| {
        let cfg = client(&site_pem, Some(&agent));
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let s = tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await.unwrap();
            s.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec()
        }
    };
    let second_der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(second.0.as_bytes()).unwrap().as_ref().to_vec()
    };
    let mut rotated = false;
    for _ in 0..40 {
        if presented(running.grpc_addr).await == second_der && presented(running.http_addr).await == second_der {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(rotated, "new connections present the new certificate within the 5 s look at the files");
    tx.send(batch(2, "web-01")).await.unwrap();
    assert!(format!("{:?}", answers.message().await.unwrap()).contains("Ack"), "the stream opened before stays up");

    // The HTTP API over TLS.
    let tcp = tokio::net::TcpStream::connect(running.http_addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(client(&site_pem, None)).connect(name, tcp).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"), "{answer}");

    assert_eq!(running.store.series(&[Matcher::equal("host", "web-01")]).len(), 1);
    drop(tx);
    stop.cancel();
    running.done.await.unwrap().unwrap();
}

/// One HTTP/1.1 request over TLS on its own connection; the status code and the body.
async fn https(
    addr: std::net::SocketAddr,
    client: Arc<rustls::ClientConfig>,
    request: &str,
    bearer: Option<&str>,
) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(client).connect(name, tcp).await.unwrap();
    let (method, path) = request.split_once(' ').unwrap();
    let auth = bearer.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let body = if method == "POST" { "{}" } else { "" };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer).await;
    let status = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_knows_a_client_by_its_certificate_and_follows_the_tokens_file() {
    let dir = tempfile::tempdir().unwrap();
    let site = ca("site CA");
    let site_pem = site.as_ref().pem();
    let server = leaf(&site, &["localhost"], false);
    let ci_token = "ci-token-0123456789-abcdefghijklmnop";
    let tokens = write(
        dir.path(),
        "tokens",
        &format!("grafana read -\nci admin {}\n", lookout_collector::auth::hash_hex(ci_token)),
    );
    let cfg: lookout_collector::CollectorConfig = toml::from_str(&format!(
        "data_dir = \"{}\"\nhttp_listen = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\ntokens_file = \"{}\"\n[http.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        dir.path().join("db").display(),
        tokens.display(),
        write(dir.path(), "c.pem", &server.0).display(),
        write(dir.path(), "k.pem", &server.1).display(),
        write(dir.path(), "ca.pem", &site_pem).display(),
    ))
    .unwrap();
    let stop = CancellationToken::new();
    let running = lookout_collector::start(cfg, stop.clone()).await.unwrap();
    let addr = running.http_addr;
    let grafana = client(&site_pem, Some(&leaf(&site, &["grafana"], false)));
    let stranger = client(&site_pem, Some(&leaf(&site, &["stranger"], false)));

    let (status, _) = https(addr, grafana.clone(), "GET /api/v1/labels", None).await;
    assert_eq!(status, 200, "a certificate named like a read entry reads");
    let (status, body) = https(addr, grafana.clone(), "POST /api/v1/gates", None).await;
    assert_eq!(status, 403, "and may not start a gate: {body}");
    assert!(body.contains("grafana has scope read; /api/v1/gates needs admin"), "{body}");
    let (status, body) = https(addr, stranger.clone(), "GET /api/v1/labels", None).await;
    assert_eq!(status, 403, "a certificate of the site's CA with no entry: {body}");
    assert!(body.contains("the client certificate for stranger names no entry of the tokens file"), "{body}");
    let (status, body) = https(addr, stranger.clone(), "POST /api/v1/gates", Some(ci_token)).await;
    assert_eq!(status, 400, "a token shown with the certificate is what counts (past auth, a bad gate): {body}");

    // The file changes: grafana's entry goes, the stranger gets one. No restart, no signal.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&tokens, "stranger read -\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (g, _) = https(addr, grafana.clone(), "GET /api/v1/labels", None).await;
        let (s, _) = https(addr, stranger.clone(), "GET /api/v1/labels", None).await;
        if (g, s) == (403, 200) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the tokens file was not followed: grafana {g}, stranger {s}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, _) = https(addr, stranger, "POST /api/v1/gates", Some(ci_token)).await;
    assert_eq!(status, 401, "a token removed from the file is refused");
    stop.cancel();
    running.done.await.unwrap().unwrap();
}
