//! TLS for the collector's two listeners: a rustls server config from PEM files (certificate chain,
//! key, and the CA that signs client certificates), re-read when the files change or on SIGHUP
//! without touching open connections; handshakes done off the accept loop, failures said once per
//! peer address in words an operator can act on. The crypto is rustls's; none is written here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// `[ingest.tls]` or `[http.tls]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate this CA (PEM, one or more) signed.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("{path} holds no {what}")]
    Empty { path: PathBuf, what: &'static str },
    #[error("the certificate {cert} and the key {key} do not make a server identity: {detail}")]
    Identity { cert: PathBuf, key: PathBuf, detail: String },
    #[error("client_ca {path}: {detail}")]
    ClientCa { path: PathBuf, detail: String },
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = |e: rustls::pki_types::pem::Error| TlsError::File { path: path.into(), detail: e.to_string() };
    let certs = CertificateDer::pem_file_iter(path).map_err(file)?.collect::<Result<Vec<_>, _>>().map_err(file)?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: path.into(), what: "PEM certificate" });
    }
    Ok(certs)
}

/// The rustls server config `cfg` describes, speaking `alpn` (`h2` for gRPC; `h2` and `http/1.1`
/// for HTTP).
pub fn server_config(cfg: &TlsConfig, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&cfg.cert)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .map_err(|e| TlsError::File { path: cfg.key.clone(), detail: e.to_string() })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let builder = match &cfg.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| TlsError::ClientCa { path: ca.clone(), detail: e.to_string() })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa { path: ca.clone(), detail: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| TlsError::Identity {
        cert: cfg.cert.clone(),
        key: cfg.key.clone(),
        detail: e.to_string(),
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A server config that follows its files: each new connection gets the config as it is now.
pub struct Reloading {
    files: TlsConfig,
    alpn: Vec<Vec<u8>>,
    what: &'static str,
    current: RwLock<Arc<rustls::ServerConfig>>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl Reloading {
    pub fn load(files: TlsConfig, alpn: &[&[u8]], what: &'static str) -> Result<Arc<Reloading>, TlsError> {
        let config = server_config(&files, alpn)?;
        let stamps = Mutex::new(stamps(&files));
        Ok(Arc::new(Reloading {
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            what,
            current: RwLock::new(Arc::new(config)),
            stamps,
            files,
        }))
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().expect("tls config lock poisoned").clone())
    }

    /// Reads the files again and, if they make a config, uses it for every connection from now on;
    /// a bad file keeps the config in use and says why.
    pub fn reload(&self) {
        let alpn: Vec<&[u8]> = self.alpn.iter().map(Vec::as_slice).collect();
        match server_config(&self.files, &alpn) {
            Ok(c) => {
                *self.current.write().expect("tls config lock poisoned") = Arc::new(c);
                tracing::info!(listener = self.what, cert = %self.files.cert.display(), "TLS certificate and key re-read; new connections use them");
            }
            Err(e) => {
                tracing::error!(listener = self.what, error = %e, "TLS files not re-read; the previous certificate stays in use")
            }
        }
    }

    /// Reloads when any file's modification time changed since the last look.
    pub fn reload_if_changed(&self) {
        let now = stamps(&self.files);
        let changed = {
            let mut s = self.stamps.lock().expect("tls stamps lock poisoned");
            let changed = *s != now;
            *s = now;
            changed
        };
        if changed {
            self.reload();
        }
    }
}

fn stamps(f: &TlsConfig) -> Vec<Option<SystemTime>> {
    [Some(&f.cert), Some(&f.key), f.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// What a failed handshake means, for the log line.
pub fn describe(e: &std::io::Error) -> String {
    let text = e.to_string();
    let hint = if text.contains("UnknownIssuer") || text.contains("unknown issuer") {
        "its certificate is not signed by client_ca (unknown CA)"
    } else if text.contains("Expired") || text.contains("expired") {
        "its certificate has expired (or is not valid yet)"
    } else if text.contains("peer sent no certificates") || text.contains("NoCertificatesPresented") {
        "it sent no client certificate, and client_ca asks for one"
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        "the certificate is not valid for the name asked for"
    } else if text.contains("UnknownCA") || text.contains("unknown ca") || text.contains("BadCertificate") {
        "it does not trust this collector's certificate (unknown CA or name mismatch on its side)"
    } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
        "it does not speak TLS (a plaintext client?)"
    } else {
        "the TLS handshake failed"
    };
    format!("{hint}: {text}")
}

/// Accepts TCP connections and completes TLS handshakes off the accept loop (at most 10 s each),
/// yielding finished streams; a peer whose handshake fails is logged once per address.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Reloading>,
    shutdown: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let told: Arc<Mutex<HashSet<std::net::IpAddr>>> = Default::default();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(listener = tls.what, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (acceptor, tx, told, what) = (tls.acceptor(), tx.clone(), told.clone(), tls.what);
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        let mut told = told.lock().expect("told lock poisoned");
                        if told.len() > 4096 {
                            told.clear();
                        }
                        if told.insert(peer.ip()) {
                            tracing::warn!(listener = what, %peer, reason = %describe(&e), "a TLS handshake was refused (said once per address)");
                        }
                    }
                    Err(_) => tracing::debug!(listener = what, %peer, "a TLS handshake did not finish within 10s"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The HTTP API's listener under TLS: connections arrive with their handshakes done.
pub struct Listener {
    streams: tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>>,
    local: std::net::SocketAddr,
}

impl Listener {
    pub fn new(listener: TcpListener, tls: Arc<Reloading>, shutdown: CancellationToken) -> std::io::Result<Listener> {
        let local = listener.local_addr()?;
        Ok(Listener { streams: incoming(listener, tls, shutdown), local })
    }
}

impl axum::serve::Listener for Listener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use tokio_stream::StreamExt;
        loop {
            match self.streams.next().await {
                Some(Ok(s)) => {
                    let peer = s.get_ref().0.peer_addr().unwrap_or(self.local);
                    return (s, peer);
                }
                Some(Err(_)) => continue,
                // The accept loop ended (the collector is stopping): no more connections.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The host names a client certificate speaks for: its DNS subject alternative names, else its
/// subject's common name.
pub fn cert_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_string)));
    }
    names
}
