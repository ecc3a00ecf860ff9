//! Who may call which endpoint: every request but `/healthz` and `/readyz` shows a token of the
//! scope its endpoint needs, as `Authorization: Bearer <token>` or HTTP basic auth with the token's
//! name and the token (what Grafana's data sources send). 401 without credentials, 403 for the
//! wrong scope. Open when the collector has no tokens (loopback only, or `insecure`).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::auth::Scope;

/// The scope an endpoint needs; `None` for the probes a load balancer or systemd calls.
pub fn scope_for(method: &Method, path: &str) -> Option<Scope> {
    match path {
        "/healthz" | "/readyz" => None,
        "/api/v1/write" | "/loki/api/v1/push" => Some(Scope::Write),
        p if p.starts_with("/otlp/") => Some(Scope::Write),
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
    if s.tokens.is_empty() {
        return next.run(req).await;
    }
    let Some(scope) = scope_for(req.method(), req.uri().path()) else { return next.run(req).await };
    let Some((user, token)) = presented(&req) else {
        s.metrics.http_refused("no_credentials");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "credentials needed: Authorization: Bearer <token>, or basic auth with the token's name and the token"
                .into(),
        );
    };
    let Some(c) = s.tokens.check(&token).filter(|c| user.as_deref().is_none_or(|u| u == c.name)) else {
        s.metrics.http_refused("token");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown token (or a basic auth name that is not the token's)".into(),
        );
    };
    if !c.allows(scope) {
        s.metrics.http_refused("scope");
        let has: Vec<&str> = c.scopes.iter().map(|s| s.as_str()).collect();
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token {} has scope {}; {} needs {}", c.name, has.join(","), req.uri().path(), scope.as_str()),
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
        assert_eq!(scope_for(&Method::POST, "/api/v1/gates"), Some(Scope::Admin));
        assert_eq!(scope_for(&Method::GET, "/api/v1/gates/g1"), Some(Scope::Read));
    }
}
