//! What shippers and SDKs push: Loki's `POST /loki/api/v1/push` and OTLP/HTTP's `POST /v1/metrics`
//! and `/v1/logs`, decoded in `ingest`, committed to the store, answered as Loki and OTLP answer.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::ingest::{loki_push, otlp};
use crate::store::{AppendOutcome, StoreError};

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Commits off the async threads; a failed commit is a 5xx, so the pusher keeps its data and retries.
async fn commit(
    s: &AppState,
    what: &'static str,
    f: impl FnOnce(&crate::store::Store) -> Result<AppendOutcome, StoreError> + Send + 'static,
) -> Result<AppendOutcome, Response> {
    let store = s.store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(o)) => {
            s.metrics.record_batch(&o);
            Ok(o)
        }
        Ok(Err(e)) => {
            s.metrics.commit_failed(what, &e, s.store.free_bytes());
            Err((StatusCode::INTERNAL_SERVER_ERROR, "storage error; see the collector's log\n").into_response())
        }
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()),
    }
}

/// Loki's push: 204 when every line was stored; 400 with Loki's message for the first line refused
/// (after storing every other), as Loki's distributor answers.
pub async fn loki(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let now_ns = crate::clock::now_ms().saturating_mul(1_000_000);
    let decoded = match loki_push::decode(
        &body,
        header_str(&headers, header::CONTENT_TYPE),
        header_str(&headers, header::CONTENT_ENCODING),
        now_ns,
    ) {
        Ok(d) => d,
        Err(e) => {
            s.metrics.pushed("loki", 0);
            let status = match e {
                loki_push::PushError::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::BAD_REQUEST,
            };
            return (status, format!("{e}\n")).into_response();
        }
    };
    let (mut refused, mut problem) = (decoded.refused, decoded.first_problem);
    if !decoded.streams.is_empty() {
        let streams = decoded.streams;
        let outcome = match commit(&s, "a Loki push", move |st| {
            st.append_pushed_logs(now_ns / 1_000_000, streams, loki_push::OUT_OF_ORDER_WINDOW_NS)
        })
        .await
        {
            Ok(o) => o,
            Err(r) => return r,
        };
        refused += outcome.log_lines_behind;
        if let (None, Some(b)) = (&problem, outcome.first_behind) {
            problem = Some(format!(
                "entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {} for stream '{}'",
                loki_push::rfc3339(b.time_ns),
                loki_push::rfc3339(b.oldest_acceptable_ns),
                b.labels
            ));
        }
    }
    s.metrics.pushed("loki", refused);
    match problem {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(p) => {
            tracing::debug!(refused, problem = %p, "Loki push partly refused");
            let msg = if refused > 1 { format!("{p} (and {} more lines refused)\n", refused - 1) } else { p + "\n" };
            (StatusCode::BAD_REQUEST, msg).into_response()
        }
    }
}

fn otlp_error(e: otlp::OtlpError) -> Response {
    let status = match e {
        otlp::OtlpError::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, format!("{e}\n")).into_response()
}

/// An OTLP answer: 200 with the export response in protobuf, a partial success when some was refused.
fn otlp_ok(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
}

pub async fn otlp_metrics(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let decoded = match otlp::decode_metrics(
        &body,
        header_str(&headers, header::CONTENT_TYPE),
        header_str(&headers, header::CONTENT_ENCODING),
    ) {
        Ok(d) => d,
        Err(e) => {
            s.metrics.pushed("otlp_metrics", 0);
            return otlp_error(e);
        }
    };
    let (mut refused, mut problem) = (decoded.refused, decoded.first_problem);
    if !decoded.groups.is_empty() {
        let groups = decoded.groups;
        let now = crate::clock::now_ms();
        match commit(&s, "an OTLP metrics export", move |st| st.append_unsequenced(now, groups)).await {
            Ok(o) => {
                if o.out_of_order > 0 {
                    refused += o.out_of_order;
                    problem.get_or_insert_with(|| format!("{} points older than their series' newest", o.out_of_order));
                }
            }
            Err(r) => return r,
        }
    }
    s.metrics.pushed("otlp_metrics", refused);
    otlp_ok(otlp::metrics_response(refused, problem))
}

pub async fn otlp_logs(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let now_ns = crate::clock::now_ms().saturating_mul(1_000_000);
    let decoded = match otlp::decode_logs(
        &body,
        header_str(&headers, header::CONTENT_TYPE),
        header_str(&headers, header::CONTENT_ENCODING),
        now_ns,
    ) {
        Ok(d) => d,
        Err(e) => {
            s.metrics.pushed("otlp_logs", 0);
            return otlp_error(e);
        }
    };
    let (mut refused, mut problem) = (decoded.refused, decoded.first_problem);
    if !decoded.streams.is_empty() {
        let streams = decoded.streams;
        match commit(&s, "an OTLP logs export", move |st| {
            st.append_pushed_logs(now_ns / 1_000_000, streams, loki_push::OUT_OF_ORDER_WINDOW_NS)
        })
        .await
        {
            Ok(o) => {
                if o.log_lines_behind > 0 {
                    refused += o.log_lines_behind;
                    problem.get_or_insert_with(|| {
                        format!("{} records more than an hour behind their stream's newest", o.log_lines_behind)
                    });
                }
            }
            Err(r) => return r,
        }
    }
    s.metrics.pushed("otlp_logs", refused);
    otlp_ok(otlp::logs_response(refused, problem))
}
