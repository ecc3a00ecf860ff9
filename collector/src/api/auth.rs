//! Who may call which endpoint: every request but `/healthz` and `/readyz` shows a credential of the
//! scope its endpoint needs: `Authorization: Bearer <token>`, HTTP basic auth with the token's name
//! and the token (what Grafana's data sources send), or a client certificate (with `[http.tls]
//! client_ca`) whose name is an entry of the tokens file. 401 without credentials, 403 for the
//! wrong scope. Open when the collector has no tokens file (loopback only, or `insecure`).

use std::sync::Arc;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::auth::{Credential, Scope};

/// The names of the client certificate a connection's TLS handshake verified (its DNS subject
/// alternative names, else its CN), worked out once per connection.
#[derive(Clone, Debug, Default)]
pub struct ClientCert(pub Option<Arc<Vec<String>>>);

impl Connected<axum::serve::IncomingStream<'_, crate::tls::Listener>> for ClientCert {
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::Listener>) -> Self {
        let certs = stream.io().get_ref().1.peer_certificates();
        ClientCert(certs.and_then(|c| c.first()).map(|der| Arc::new(crate::tls::cert_names(der.as_ref()))))
    }
}

/// The scope an endpoint needs; `None` for the probes a load balancer or systemd calls.
pub fn scope_for(method: &Method, path: &str) -> Option<Scope> {
    match path {
        "/healthz" | "/readyz" => None,
        "/api/v1/write" | "/loki/api/v1/push" | "/v1/metrics" | "/v1/logs" => Some(Scope::Write),
        p if p.starts_with("/otlp/") || p.starts_with("/api/v1/otlp/") => Some(Scope::Write),
        p if p.starts_with("/api/v1/gates") && method != Method::GET && method != Method::HEAD => Some(Scope::Admin),
        _ => Some(Scope::Read),
    }
}

/// The token a request presents, and the name basic auth gave with it.
fn presented(req: &Request) -> Option<(Option<String>, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (kind, rest) = value.split_once(' ')?;
    if kind.eq_ignore_ascii_case("bearer") {
        return Some((None, rest.trim().to_string()));
    }
    if kind.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some((Some(user.to_string()), password.to_string()));
    }
    None
}

fn refuse(status: StatusCode, error_type: &str, message: String) -> Response {
    let body = serde_json::json!({"status": "error", "errorType": error_type, "error": message});
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        let h = r.headers_mut();
        h.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"lookout\""));
        h.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"lookout\", charset=\"UTF-8\""));
    }
    r
}

/// The middleware `router` puts in front of every route.
pub async fn require(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !s.tokens.required() {
        return next.run(req).await;
    }
    let Some(scope) = scope_for(req.method(), req.uri().path()) else { return next.run(req).await };
    let tokens = s.tokens.now();
    let cert = req.extensions().get::<ConnectInfo<ClientCert>>().and_then(|c| c.0 .0.clone());
    let c: &Credential = match (presented(&req), cert) {
        (Some((user, token)), _) => {
            let Some(c) = tokens.check(&token).filter(|c| user.as_deref().is_none_or(|u| u == c.name)) else {
                s.metrics.http_refused("token");
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "unknown token (or a basic auth name that is not the token's)".into(),
                );
            };
            c
        }
        (None, Some(names)) => {
            let Some(c) = tokens.by_names(&names) else {
                s.metrics.http_refused("certificate");
                return refuse(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "the client certificate for {} names no entry of the tokens file (add `{} {} -` to give it that scope)",
                        names.join(","),
                        names.first().map(String::as_str).unwrap_or("NAME"),
                        scope.as_str()
                    ),
                );
            };
            c
        }
        (None, None) => {
            s.metrics.http_refused("no_credentials");
            return refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "credentials needed: Authorization: Bearer <token>, or basic auth with the token's name and the token"
                    .into(),
            );
        }
    };
    if !c.allows(scope) {
        s.metrics.http_refused("scope");
        let has: Vec<&str> = c.scopes.iter().map(|s| s.as_str()).collect();
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{} has scope {}; {} needs {}", c.name, has.join(","), req.uri().path(), scope.as_str()),
        );
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_the_scope_of_what_they_do() {
        assert_eq!(scope_for(&Method::GET, "/healthz"), None);
        assert_eq!(scope_for(&Method::POST, "/api/v1/query"), Some(Scope::Read));
        assert_eq!(scope_for(&Method::GET, "/loki/api/v1/tail"), Some(Scope::Read));
        assert_eq!(scope_for(&Method::GET, "/metrics"), Some(Scope::Read));
        assert_eq!(scope_for(&Method::POST, "/api/v1/write"), Some(Scope::Write));
        for p in ["/loki/api/v1/push", "/v1/metrics", "/v1/logs", "/otlp/v1/logs", "/api/v1/otlp/v1/metrics"] {
            assert_eq!(scope_for(&Method::POST, p), Some(Scope::Write), "{p}");
        }
        assert_eq!(scope_for(&Method::POST, "/api/v1/gates"), Some(Scope::Admin));
        assert_eq!(scope_for(&Method::GET, "/api/v1/gates/g1"), Some(Scope::Read));
    }
}
