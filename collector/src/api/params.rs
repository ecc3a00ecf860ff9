//! Request parameters as Prometheus reads them: the URL's query string and a form-encoded POST body,
//! merged, with repeated keys kept (`match[]`). Times are RFC 3339 or Unix seconds; steps are Go-style
//! durations or float seconds.

use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;

use super::ApiError;

/// Largest form body accepted; Grafana's longest queries are a few KiB.
const MAX_FORM_BYTES: usize = 1 << 20;

pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> =
            req.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        let is_form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            // Reading stops at the limit, so an endless body costs no more than that.
            let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES).await.map_err(|e| {
                let over = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                    .any(|e| e.to_string().contains("length limit exceeded"));
                if over {
                    ApiError::TooLarge(format!("form body over the limit of {MAX_FORM_BYTES} bytes"))
                } else {
                    ApiError::BadData(format!("cannot read the request body: {e}"))
                }
            })?;
            pairs.extend(form_urlencoded::parse(&body).into_owned());
        }
        Ok(Params(pairs))
    }
}

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    pub fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::BadData(format!("parameter {key:?} is required")))
    }

    /// A time parameter in milliseconds, or `default` when absent.
    pub fn time_ms(&self, key: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => parse_time_ms(v).ok_or_else(|| {
                ApiError::BadData(format!("invalid parameter {key:?}: cannot parse {v:?} to a valid timestamp"))
            }),
        }
    }

    /// A duration parameter in milliseconds.
    pub fn duration_ms(&self, key: &str) -> Result<i64, ApiError> {
        let v = self.required(key)?;
        parse_duration_ms(v).ok_or_else(|| {
            ApiError::BadData(format!("invalid parameter {key:?}: cannot parse {v:?} to a valid duration"))
        })
    }
}

pub fn parse_time_ms(v: &str) -> Option<i64> {
    if let Ok(secs) = v.parse::<f64>() {
        return secs.is_finite().then(|| (secs * 1000.0).round() as i64);
    }
    let t = humantime::parse_rfc3339_weak(v).ok()?;
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => Some(d.as_millis() as i64),
        Err(e) => Some(-(e.duration().as_millis() as i64)),
    }
}

pub fn parse_duration_ms(v: &str) -> Option<i64> {
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).round() as i64);
    }
    promql_parser::util::parse_duration(v).ok().map(|d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_unix_seconds_or_rfc3339() {
        assert_eq!(parse_time_ms("4"), Some(4000));
        assert_eq!(parse_time_ms("1700000000.5"), Some(1_700_000_000_500));
        assert_eq!(parse_time_ms("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_time_ms("yesterday"), None);
    }

    #[test]
    fn durations_parse_as_seconds_or_go_style() {
        assert_eq!(parse_duration_ms("15"), Some(15_000));
        assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
        assert_eq!(parse_duration_ms("-1"), None);
    }
}
