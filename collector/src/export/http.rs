//! The exporters' HTTP client: TLS (a CA file or the system's roots, a client certificate), the
//! target's authentication and headers, and one request sent with Prometheus's retry rule: 5xx,
//! 429 and network errors are retried with backoff until they succeed, other 4xx are final.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::TargetConfig;

/// `tls` of a target.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// CA certificates (PEM) the receiver's certificate must chain to; the system's when unset.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM), for receivers that want one.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Where Debian, Fedora/RHEL and Alpine keep the system's CA bundle.
const SYSTEM_ROOTS: [&str; 3] =
    ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: holds no PEM certificate", path.display());
    Ok(certs)
}

fn tls_config(tls: Option<&ClientTls>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match tls.and_then(|t| t.ca_file.as_deref()) {
        Some(ca) => {
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
            }
        }
        None => {
            if let Some(bundle) = SYSTEM_ROOTS.iter().map(Path::new).find(|p| p.exists()) {
                roots.add_parsable_certificates(read_certs(bundle)?);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match tls.map(|t| (&t.cert_file, &t.key_file)) {
        Some((Some(cert), Some(key))) => {
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            builder.with_client_auth_cert(read_certs(cert)?, key)?
        }
        Some((None, None)) | None => builder.with_no_client_auth(),
        Some(_) => anyhow::bail!("tls: cert_file and key_file go together"),
    };
    Ok(config)
}

/// A target's client and the headers every request carries (auth, extra headers).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub url: String,
    headers: reqwest::header::HeaderMap,
}

impl Client {
    /// Reads the target's files (token, password, certificates) now, so a bad one fails the start.
    pub fn new(t: &TargetConfig, content_type: &str, extra: &[(&str, &str)]) -> anyhow::Result<Client> {
        use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
        let name = t.name();
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| anyhow::anyhow!("export target {name}: {}: {e}", p.display()))
        };
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_str(content_type)?);
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_str(&format!("lookout-collector/{}", env!("CARGO_PKG_VERSION")))?,
        );
        for (k, v) in extra {
            headers.insert(HeaderName::from_bytes(k.as_bytes())?, HeaderValue::from_str(v)?);
        }
        for (k, v) in &t.headers {
            let value =
                HeaderValue::from_str(v).map_err(|e| anyhow::anyhow!("export target {name}: header {k}: {e}"))?;
            headers.insert(
                HeaderName::from_bytes(k.as_bytes())
                    .map_err(|e| anyhow::anyhow!("export target {name}: header {k}: {e}"))?,
                value,
            );
        }
        if let Some(f) = &t.bearer_token_file {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", read(f)?))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        if let Some(b) = &t.basic_auth {
            use base64::Engine;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", b.username, read(&b.password_file)?));
            let mut v = HeaderValue::from_str(&format!("Basic {token}"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let tls = tls_config(t.tls.as_ref()).map_err(|e| anyhow::anyhow!("export target {name}: tls: {e}"))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(t.timeout.unwrap_or(Duration::from_secs(30)))
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(t.queue.max_shards)
            .build()?;
        Ok(Client { http, url: t.url.clone(), headers })
    }

    /// Sends `body` until the receiver takes it or refuses it for good; `None` when `stop` ended
    /// the retries first. Every retry is counted in `retries` and the failure told to `failed`.
    pub async fn send(
        &self,
        body: Vec<u8>,
        backoff: (Duration, Duration),
        stop: &CancellationToken,
        mut failed: impl FnMut(&str),
    ) -> Option<Sent> {
        let body = bytes::Bytes::from(body);
        let mut wait = backoff.0;
        loop {
            let attempt = self.http.post(&self.url).headers(self.headers.clone()).body(body.clone()).send();
            // A stop lets the request in flight finish for a moment (so it is not sent twice after
            // the restart), then gives it up.
            let outcome = tokio::select! {
                r = attempt => r,
                _ = async { stop.cancelled().await; tokio::time::sleep(Duration::from_secs(2)).await } => return None,
            };
            let retry_after = match outcome {
                Ok(r) if r.status().is_success() => return Some(Sent::Delivered),
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    let after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    failed(&format!("{} answered {status}: {}", self.url, text.trim()));
                    after
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    return Some(Sent::Refused(format!("{} answered {status}: {}", self.url, text.trim())));
                }
                Err(e) => {
                    failed(&format!("{}: {}", self.url, error_chain(&e)));
                    None
                }
            };
            let pause = retry_after.map_or(wait, |a| a.min(backoff.1).max(wait));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => return None,
            }
            wait = (wait * 2).min(backoff.1);
        }
    }
}

/// How a request ended.
#[derive(Debug)]
pub enum Sent {
    Delivered,
    /// A 4xx other than 429: the receiver will never take it; with its answer.
    Refused(String),
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
