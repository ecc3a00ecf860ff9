//! Gate routes: `POST /api/v1/gates` starts one, `GET /api/v1/gates/{id}` and
//! `GET /api/v1/releases/{service}/{version}` answer pass, fail or wait with the evidence;
//! `GET /api/v1/services/{service}` and decision replays for `lookout status` and `lookout replay`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;
use crate::decide::gate::spec::GateRequest;
use crate::run::gate::StartError;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| format!("task failed: {e}"))
}

fn error(status: StatusCode, kind: &str, msg: impl Into<String>) -> Response {
    (status, Json(json!({"status": "error", "errorType": kind, "error": msg.into()}))).into_response()
}

/// `POST /api/v1/gates` with a JSON body; 201 with the gate, 400 naming the field, 404 naming what exists.
pub async fn start(State(s): State<AppState>, body: axum::body::Bytes) -> Response {
    let req = match GateRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    let gates = s.gates.clone();
    match blocking(move || gates.start(req, crate::clock::now_ms())).await {
        Ok(Ok(g)) => (StatusCode::CREATED, Json(g.to_json())).into_response(),
        Ok(Err(StartError::Bad(m))) => error(StatusCode::BAD_REQUEST, "bad_data", m),
        Ok(Err(StartError::Unknown(m))) => error(StatusCode::NOT_FOUND, "not_found", m),
        Ok(Err(StartError::Store(m))) | Err(m) => {
            tracing::error!(error = %m, "starting a gate failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the collector's log")
        }
    }
}

pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.gates.get(&id) {
        Some(g) => Json(g.to_json()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", format!("no gate {id:?}")),
    }
}

/// The release's latest gate at the top, every gate of it (one per stage) under `gates`.
pub async fn release(State(s): State<AppState>, Path((service, version)): Path<(String, String)>) -> Response {
    let all = s.gates.of_release(&service, &version);
    let Some(latest) = all.last() else {
        let others: Vec<String> = s.gates.of_service(&service).iter().map(|g| g.plan.version.clone()).collect();
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no gate has been asked for version {version:?} of service {service:?}; versions with gates: {}",
                if others.is_empty() { "none".to_string() } else { others.join(", ") }
            ),
        );
    };
    let mut body = latest.to_json();
    body["gates"] = all.iter().map(|g| g.to_json()).collect();
    Json(body).into_response()
}

/// What `lookout status --service S` shows: versions and containers, their health, gates, decisions.
pub async fn service(State(s): State<AppState>, Path(service): Path<String>) -> Response {
    let st = s.clone();
    let svc = service.clone();
    let seen = blocking(move || {
        let series = crate::run::gate::recent_containers(&st.store, &svc, crate::clock::now_ms())?;
        let decisions = st
            .store
            .decisions(&crate::store::decisions::DecisionFilter { service: Some(svc), limit: 20, ..Default::default() })
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((series, decisions))
    })
    .await;
    let (series, decisions) = match seen {
        Ok(Ok(x)) => x,
        Ok(Err(m)) | Err(m) => {
            tracing::error!(error = %m, "reading a service's status failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the collector's log");
        }
    };
    let health = s.health.list(None, Some(&service), None);
    if series.is_empty() && health.is_empty() {
        let services = s.store.label_values("service");
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("service {service:?} not seen in the last 10 minutes; services: {}", services.join(", ")),
        );
    }
    let containers: Vec<serde_json::Value> = series
        .iter()
        .map(|c| {
            let get = |k: &str| c.labels.get(k).unwrap_or("").to_string();
            let state = health.iter().find(|h| h.container_id == get("container_id")).map(|h| h.state.clone());
            json!({
                "container": get("container"), "container_id": get("container_id"), "host": get("host"),
                "version": get("version"), "image": get("image"),
                "last_seen": c.samples.ts.last().copied(), "health": state,
            })
        })
        .collect();
    let gates: Vec<serde_json::Value> = s.gates.of_service(&service).iter().take(10).map(|g| g.to_json()).collect();
    Json(json!({"service": service, "containers": containers, "gates": gates, "decisions": decisions})).into_response()
}

/// `GET /api/v1/decisions/{id}/replay`: the decision recomputed from the stored data.
pub async fn replay(State(s): State<AppState>, Path(id): Path<i64>) -> Response {
    let st = s.clone();
    let r = blocking(move || -> Result<Option<serde_json::Value>, String> {
        let Some(d) = st.store.decision(id).map_err(|e| e.to_string())? else { return Ok(None) };
        match d.kind.as_str() {
            "gate" => st.gates.replay(&d).map(Some),
            "scale" | "scale_held" => st.autoscaler.replay(&d).map(Some),
            other => Ok(Some(json!({
                "decision": d.id, "kind": other, "same": serde_json::Value::Null,
                "error": format!("{other} decisions follow live health reports, which are not stored; only gate and scale decisions replay"),
            }))),
        }
    })
    .await;
    match r {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "not_found", format!("no decision {id}")),
        Ok(Err(m)) => error(StatusCode::UNPROCESSABLE_ENTITY, "execution", m),
        Err(m) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
    }
}
