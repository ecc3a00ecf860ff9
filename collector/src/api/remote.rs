//! `POST /api/v1/write`: Prometheus remote-write 1.0 in, answered as Prometheus's receiver answers.
//! 204 when all was stored; 400 for a bad body or refused samples, after storing every valid series.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::ingest::remote_write;

pub async fn write(State(s): State<AppState>, body: Bytes) -> Response {
    s.metrics.remote_write_requests.inc();
    let decoded = match remote_write::decode(&body) {
        Ok(d) => d,
        Err(e) => {
            s.metrics.remote_write_rejected.inc();
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let (samples, invalid, problem) = (decoded.samples, decoded.invalid_series, decoded.first_problem);
    let store = s.store.clone();
    let now = crate::clock::now_ms();
    let outcome = match tokio::task::spawn_blocking(move || store.append_unsequenced(now, decoded.groups)).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            s.metrics.commit_failed("a remote-write request", &e, s.store.free_bytes());
            // 5xx: the sender retries, as it should when nothing was stored.
            return (StatusCode::INTERNAL_SERVER_ERROR, "storage error; see the collector's log\n").into_response();
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    s.metrics.record_batch(&outcome);
    s.metrics.invalid_series.inc_by(invalid);
    // A resend of samples already stored (same timestamp) is not an error; older ones are, and a 400
    // tells the sender not to retry them.
    if invalid == 0 && outcome.out_of_order == 0 {
        return StatusCode::NO_CONTENT.into_response();
    }
    s.metrics.remote_write_rejected.inc();
    let mut msg = format!("stored {} of {samples} samples", outcome.samples);
    if outcome.out_of_order > 0 {
        msg.push_str(&format!("; out of order sample: {} older than their series' newest", outcome.out_of_order));
    }
    if invalid > 0 {
        msg.push_str(&format!("; {invalid} invalid series, first: {problem}"));
    }
    tracing::debug!(%msg, "remote-write request partly refused");
    (StatusCode::BAD_REQUEST, msg + "\n").into_response()
}
