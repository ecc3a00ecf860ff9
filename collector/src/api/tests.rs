//! The router answered through `oneshot`: Prometheus's shapes, Grafana's calls, errors.

use super::*;
use crate::model::{LabelSet, Samples};
use crate::store::StoreOptions;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn state(dir: &std::path::Path) -> AppState {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).unwrap());
    let mut registry = Registry::default();
    let metrics = CollectorMetrics::register(&mut registry);
    let engine = Arc::new(Engine::default());
    let recorder = crate::run::Recorder::new(store.clone(), metrics.decisions.clone());
    let gates = Arc::new(crate::run::gate::Gates::new(Default::default(), engine.clone(), recorder.clone()));
    let autoscaler = Arc::new(crate::run::scale::Autoscaler::new(
        Vec::new(),
        engine.clone(),
        Default::default(),
        gates.clone(),
        recorder,
    ));
    AppState {
        store,
        health: Default::default(),
        gates,
        autoscaler,
        engine,
        queries: Arc::new(crate::query::runner::QueryRunner::new(
            Default::default(),
            metrics.query.clone(),
            Default::default(),
        )),
        shutdown: Default::default(),
        registry: Arc::new(Mutex::new(registry)),
        metrics,
        tokens: Arc::new(crate::auth::TokenFile::open()),
        exports: Default::default(),
    }
}

async fn call(state: &AppState, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

fn form(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn seed(state: &AppState) {
    let l = |c: &str| {
        LabelSet::from_pairs([("__name__", "container_cpu_usage_seconds_total"), ("container", c), ("host", "h1")])
    };
    // Two containers, one using a full core and one a quarter, sampled every 10 s for 10 minutes.
    let ts: Vec<i64> = (0..=60).map(|i| 1_000_000 + i * 10_000).collect();
    let a = Samples { ts: ts.clone(), values: ts.iter().map(|t| (t - 1_000_000) as f64 / 1000.0).collect() };
    let b = Samples { ts: ts.clone(), values: ts.iter().map(|t| (t - 1_000_000) as f64 / 4000.0).collect() };
    state.store.append("a", "h1", 1, 0, vec![(l("web"), a), (l("db"), b)]).unwrap();
}

#[tokio::test]
async fn grafana_health_check_is_a_scalar_at_the_given_time() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let (status, body) = call(&st, form("/api/v1/query", "query=1%2B1&time=4")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}));
}

#[tokio::test]
async fn rate_by_container_over_stored_samples() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    seed(&st);
    let q = "query=sum%20by%20(container)%20(rate(container_cpu_usage_seconds_total%5B1m%5D))&time=1600";
    let (status, body) = call(&st, form("/api/v1/query", q)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result = body["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    for r in result {
        let v: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
        let want = if r["metric"]["container"] == "web" { 1.0 } else { 0.25 };
        assert!((v - want).abs() < 1e-9, "{r}");
        assert_eq!(r["value"][0], 1600);
        assert!(r["metric"].get("__name__").is_none(), "sum by drops the name");
    }
}

#[tokio::test]
async fn warnings_and_infos_travel_beside_the_answer_as_in_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    seed(&st);
    // A counter's rate: no annotations at all, not even empty lists.
    let (_, body) =
        call(&st, form("/api/v1/query", "query=rate(container_cpu_usage_seconds_total%5B1m%5D)&time=1600")).await;
    assert!(body.get("warnings").is_none() && body.get("infos").is_none(), "{body}");
    // A quantile outside [0, 1] warns, in instant and range answers alike.
    let q = "query=quantile(1.5%2C%20container_cpu_usage_seconds_total)";
    let (status, body) = call(&st, form("/api/v1/query", &format!("{q}&time=1600"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], "+Inf");
    assert_eq!(
        body["warnings"],
        serde_json::json!(["PromQL warning: quantile value should be between 0 and 1, got 1.5"])
    );
    let (_, body) = call(&st, get(&format!("/api/v1/query_range?{q}&start=1000&end=1600&step=60"))).await;
    assert_eq!(body["data"]["resultType"], "matrix");
    assert_eq!(body["warnings"].as_array().map(Vec::len), Some(1), "{body}");
    // The rate of a series whose name is no counter's is an info.
    let (_, body) = call(&st, form("/api/v1/query", "query=rate(label_replace(container_cpu_usage_seconds_total%2C%22__name__%22%2C%22cpu_level%22%2C%22%22%2C%22%22)%5B1m%3A10s%5D)&time=1600")).await;
    assert_eq!(
        body["infos"],
        serde_json::json!([
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"cpu_level\""
        ]),
        "{body}"
    );
    assert!(body.get("warnings").is_none(), "{body}");
}

#[tokio::test]
async fn range_query_returns_a_matrix_aligned_to_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    seed(&st);
    let q = "/api/v1/query_range?query=container_cpu_usage_seconds_total%7Bcontainer%3D%22web%22%7D&start=1000&end=1600&step=60";
    let (status, body) = call(&st, get(q)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix");
    let values = body["data"]["result"][0]["values"].as_array().unwrap();
    let times: Vec<i64> = values.iter().map(|v| v[0].as_i64().unwrap()).collect();
    assert_eq!(times, (1000..=1600).step_by(60).collect::<Vec<_>>());
    assert_eq!(values[1], serde_json::json!([1060, "60"]));
}

#[tokio::test]
async fn malformed_query_is_bad_data_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let (status, body) = call(&st, form("/api/v1/query", "query=sum(rate(x%5B1m%5D)")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "bad_data");
    assert!(!body["error"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn too_many_points_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let (status, body) = call(&st, get("/api/v1/query_range?query=up&start=0&end=1000000&step=1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("11,000"), "{body}");
}

#[tokio::test]
async fn missing_and_bad_parameters_are_bad_data() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let (status, body) = call(&st, get("/api/v1/query")).await;
    assert_eq!((status, body["errorType"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_data")));
    let (status, _) = call(&st, get("/api/v1/query?query=up&time=soon")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&st, get("/api/v1/query_range?query=up&start=10&end=5&step=1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn labels_values_and_series_come_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    seed(&st);
    let (_, body) = call(&st, get("/api/v1/labels")).await;
    assert_eq!(body["data"], serde_json::json!(["__name__", "container", "host"]));
    let (_, body) = call(&st, get("/api/v1/label/container/values")).await;
    assert_eq!(body["data"], serde_json::json!(["db", "web"]));
    let (_, body) = call(&st, form("/api/v1/series", "match%5B%5D=%7Bcontainer%3D%22db%22%7D")).await;
    assert_eq!(body["data"][0]["container"], "db");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (status, _) = call(&st, get("/api/v1/series")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "series needs match[]");
}

#[tokio::test]
async fn buildinfo_looks_like_prometheus_without_mimir_features() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let (status, body) = call(&st, get("/api/v1/status/buildinfo")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["data"]["version"].as_str().unwrap().starts_with('3'));
    assert!(body["data"].get("features").is_none());
}

#[tokio::test]
async fn every_endpoint_group_wants_its_scope_by_bearer_or_basic_auth() {
    use crate::auth::{hash_hex, TokenFile, Tokens};
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let mut st = state(dir.path());
    let file: String = [("grafana", "read"), ("prom", "write"), ("ci", "admin"), ("web-01", "agent")]
        .iter()
        .map(|(n, s)| {
            format!("{n} {s} {} {}\n", hash_hex(&format!("tok-{n}")), if *s == "agent" { "web-01" } else { "" })
        })
        .collect();
    st.tokens = Arc::new(TokenFile::fixed(Tokens::parse(&file).unwrap()));
    let with = |mut r: Request<Body>, auth: &str| {
        r.headers_mut().insert("authorization", auth.parse().unwrap());
        r
    };
    let bearer = |n: &str| format!("Bearer tok-{n}");
    let basic = |user: &str, n: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:tok-{n}")))
    };

    let resp = router(st.clone()).oneshot(form("/api/v1/query", "query=1")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenges: Vec<&str> =
        resp.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(challenges.iter().any(|c| c.starts_with("Bearer")) && challenges.iter().any(|c| c.starts_with("Basic")));
    assert_eq!(call(&st, get("/healthz")).await.0, StatusCode::OK, "probes need no credentials");

    let read = [form("/api/v1/query", "query=1"), get("/loki/api/v1/labels"), get("/api/v1/health"), get("/metrics")];
    for r in read {
        let uri = r.uri().to_string();
        assert_eq!(call(&st, with(r, &bearer("grafana"))).await.0, StatusCode::OK, "{uri} with a read token");
    }
    assert_eq!(call(&st, with(form("/api/v1/query", "query=1"), &basic("grafana", "grafana"))).await.0, StatusCode::OK);
    assert_eq!(
        call(&st, with(form("/api/v1/query", "query=1"), &basic("someone", "grafana"))).await.0,
        StatusCode::UNAUTHORIZED,
        "basic auth names the token's entry"
    );
    assert_eq!(call(&st, with(form("/api/v1/query", "query=1"), &bearer("nobody"))).await.0, StatusCode::UNAUTHORIZED);

    let (status, body) = call(&st, with(form("/api/v1/query", "query=1"), &bearer("prom"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "prom has scope write; /api/v1/query needs read");
    let write = || Request::post("/api/v1/write").body(Body::from("not snappy")).unwrap();
    assert_eq!(call(&st, with(write(), &bearer("grafana"))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&st, with(write(), &bearer("prom"))).await.0, StatusCode::BAD_REQUEST, "past auth, a bad body");
    assert_eq!(
        call(&st, with(write(), &bearer("web-01"))).await.0,
        StatusCode::FORBIDDEN,
        "an agent token is not for HTTP"
    );

    let gate = || Request::post("/api/v1/gates").body(Body::from("{}")).unwrap();
    assert_eq!(call(&st, with(gate(), &bearer("grafana"))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&st, with(gate(), &bearer("ci"))).await.0, StatusCode::BAD_REQUEST, "past auth, a bad request");
    assert_eq!(call(&st, with(form("/api/v1/query", "query=1"), &bearer("ci"))).await.0, StatusCode::OK, "admin reads");
}
