//! `predict --http ADDR`: request/response scoring in the Open Inference Protocol (KServe's V2
//! inference protocol, as MLServer, Seldon Core 2 and NVIDIA Triton speak it) over HTTP/JSON,
//! on axum.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /v2/health/live` | 200 while the process runs |
//! | `GET /v2/health/ready` | 200 once a model serves, else 503 |
//! | `GET /v2` | server metadata: name, version, extensions |
//! | `GET /v2/models/{name}[/versions/{v}]` | model metadata: inputs (one per column: `FP64` numeric, `BYTES` categorical, shape `[-1]`), outputs |
//! | `GET /v2/models/{name}[/versions/{v}]/ready` | 200 when the process holds it, 404 otherwise |
//! | `POST /v2/models/{name}[/versions/{v}]/infer` | the predictions, `model_version` naming the one model that scored every row |
//! | `GET /healthz`, `GET /metrics` | as the service's |
//!
//! An inference request carries either one tensor per input column (shape `[N]` or `[N, 1]`;
//! numeric columns `FP64`, `FP32`, `FP16`, `INT*`, `UINT*` or `BOOL`, categorical ones `BYTES`
//! or an integer type) or one `[N, k]` tensor of any name in the model's column order (numeric
//! for an all-numeric model, `BYTES` for any). `data` is row-major, flat or nested. A missing
//! value is `null` (or `""` in `BYTES`) and follows the column's rule, as on Kafka. The outputs
//! are `prediction` (`FP64`, `[N]`), and for a classifier `label` (`BYTES`, `[N]`) and
//! `probabilities` (`FP64`, `[N, K]`, the classes in the order of the model metadata's
//! `parameters.classes`); a row the model cannot score (a missing value under `reject`, an
//! unknown category under `reject`, text in a numeric column) gets `null` there and its reason
//! in an extra `error` output (`BYTES`, `[N]`, `""` for the rows that scored).
//!
//! Errors are the protocol's: a JSON body `{"error": "..."}` naming the input and what was
//! expected, 400 for a request that does not fit the model, 404 for a model or version this
//! process does not hold, 413 for a body over the limit, 503 before the first model. A request
//! never stops the server.
//!
//! Hot swap: the flow that follows announcements ([`super::models::Swapper`]) publishes each
//! model it swaps in on a [`watch`] channel; a request takes the model it finds there when it
//! starts and scores every row with it, so no request sees two models or a half-loaded one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::events::metrics;
use crate::features::Cell;
use crate::predict::batch::{score_rows, Batcher, Refused, Rows, Scores, ShadowOf};
use crate::predict::Served;

/// The models a process holds: the serving one and the shadow one (`--shadow`).
#[derive(Clone)]
pub struct Holding {
    /// The model that answers.
    pub model: Arc<Served>,
    /// The shadow model (answers only when asked for by its version).
    pub shadow: Option<Arc<Served>>,
}

/// Where the flow that swaps models publishes them (`None` until the first).
pub type Publisher = watch::Sender<Option<Holding>>;

pub(super) type Live = watch::Receiver<Option<Holding>>;

/// What the endpoints share: the models held, and the scoring thread requests are batched on.
#[derive(Clone)]
pub struct Api {
    /// The models held.
    pub live: Live,
    /// The scoring thread.
    pub batcher: Batcher,
}

impl FromRef<Api> for Live {
    fn from_ref(api: &Api) -> Live {
        api.live.clone()
    }
}

/// A new channel between the flow that swaps models and the server.
pub fn channel() -> (Publisher, Live) {
    watch::channel(None)
}

/// Bind `addr` (a bind failure is a usage error naming `--http`) and serve until `stop` turns
/// true, then finish the requests in flight. Returns the bound address and the server's task.
pub async fn serve(
    addr: SocketAddr,
    api: Api,
    max_body: usize,
    token: Option<Arc<str>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on --http {addr}: {e}")))?;
    let local = listener.local_addr().unwrap_or(addr);
    let app = router(api, max_body, token);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(addr = %local, scheme, "serving the Open Inference Protocol over HTTP (/v2)");
    let drained = stop.clone();
    let shutdown = stopped(stop);
    let task = match tls {
        Some(config) => {
            let listener = super::tls::TlsListener::new(listener, config, drained);
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                    tracing::error!(error = %e, "the HTTPS inference server stopped");
                }
            })
        }
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %e, "the HTTP inference server stopped");
            }
        }),
    };
    Ok((local, task))
}

/// Resolves once `stop` turns true (or its sender is gone): a server's graceful-shutdown signal.
pub(super) async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            break;
        }
    }
}

/// The routes. With a `token`, every route but the health ones (`/v2/health/*`, `/healthz`,
/// `/metrics`, which probes and scrapers call) needs `Authorization: Bearer TOKEN`.
pub fn router(api: Api, max_body: usize, token: Option<Arc<str>>) -> Router {
    let protected = Router::new()
        .route("/v2", get(|| async { answer("metadata", Ok(server_metadata())) }))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata_version))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/versions/{version}/ready", get(model_ready_version))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_version));
    let protected = match token {
        Some(token) => protected.route_layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let allowed = bearer_matches(req.headers().get(header::AUTHORIZATION), &token);
                async move {
                    if allowed {
                        next.run(req).await
                    } else {
                        let mut res = answer(
                            "unauthorized",
                            Err(ApiError::new(
                                StatusCode::UNAUTHORIZED,
                                "a missing or wrong bearer token (send Authorization: Bearer TOKEN)",
                            )),
                        );
                        res.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
                        res
                    }
                }
            },
        )),
        None => protected,
    };
    Router::new()
        .route("/v2/health/live", get(|| async { answer("live", Ok(json!({"live": true}))) }))
        .route("/v2/health/ready", get(server_ready))
        .route("/healthz", get(healthz))
        .route(
            "/metrics",
            get(|| async { ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], crate::events::render()) }),
        )
        .merge(protected)
        .fallback(|| async {
            answer("other", Err(ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; the protocol's are under /v2")))
        })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(api)
}

/// Whether an `Authorization` header is `Bearer TOKEN` (compared in time independent of where
/// the two differ).
pub fn bearer_matches(value: Option<&header::HeaderValue>, token: &str) -> bool {
    let Some(given) = value.and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A protocol error: its status and message (the body is `{"error": message}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What was wrong, naming the input and what was expected.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The JSON answer of an endpoint, counted in `modelcast_http_requests_total`.
fn answer(endpoint: &'static str, r: std::result::Result<Value, ApiError>) -> Response {
    let (status, body) = match r {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (e.status, json!({ "error": e.message })),
    };
    metrics().http_requests.with_label_values(&[endpoint, status.as_str()]).inc();
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

pub(super) fn holding(live: &Live) -> std::result::Result<Holding, ApiError> {
    live.borrow()
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no model is loaded yet; see /v2/health/ready"))
}

/// The shadow model that scores `m`'s requests too: the held shadow when `m` is the serving model.
pub(super) fn shadow_of(h: &Holding, m: &Arc<Served>) -> Option<Arc<Served>> {
    h.shadow.clone().filter(|_| Arc::ptr_eq(&h.model, m))
}

/// The model `name` (and `version`, if given) among the ones held.
pub(super) fn pick(h: &Holding, name: &str, version: Option<&str>) -> std::result::Result<Arc<Served>, ApiError> {
    if h.model.name != name {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("model {name:?} is not served here; this process serves {:?}", h.model.name),
        ));
    }
    let Some(v) = version else { return Ok(h.model.clone()) };
    if h.model.version == v {
        return Ok(h.model.clone());
    }
    if let Some(s) = h.shadow.as_ref().filter(|s| s.version == v && s.name == name) {
        return Ok(s.clone());
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!("version {v:?} of {name:?} is not held; this process holds {:?}", versions(h)),
    ))
}

pub(super) fn versions(h: &Holding) -> Vec<&str> {
    let mut v = vec![h.model.version.as_str()];
    v.extend(h.shadow.iter().filter(|s| s.name == h.model.name).map(|s| s.version.as_str()));
    v
}

fn server_metadata() -> Value {
    json!({"name": "modelcast", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]})
}

async fn server_ready(State(live): State<Live>) -> Response {
    answer("ready", holding(&live).map(|_| json!({"ready": true})))
}

async fn healthz(State(live): State<Live>) -> Response {
    if live.borrow().is_some() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: waiting for a model\n").into_response()
    }
}

/// The metadata of a held model: its real inputs and outputs.
pub fn metadata(m: &Served, versions: &[&str]) -> Value {
    let scorer = &m.scorer;
    let numeric = scorer.numeric_inputs();
    let inputs: Vec<Value> = scorer
        .input_columns()
        .iter()
        .enumerate()
        .map(|(j, c)| json!({"name": c, "datatype": if j < numeric { "FP64" } else { "BYTES" }, "shape": [-1]}))
        .collect();
    let classes = scorer.classes();
    let mut outputs = vec![json!({"name": "prediction", "datatype": "FP64", "shape": [-1]})];
    let mut parameters = json!({"input_schema_digest": m.digest});
    if !classes.is_empty() {
        outputs.push(json!({"name": "label", "datatype": "BYTES", "shape": [-1]}));
        outputs.push(json!({"name": "probabilities", "datatype": "FP64", "shape": [-1, classes.len()]}));
        parameters["classes"] = json!(classes);
        parameters["threshold"] = json!(scorer.threshold());
    }
    json!({
        "name": m.name,
        "versions": versions,
        "platform": "modelcast",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": parameters,
    })
}

async fn model_metadata(State(live): State<Live>, Path(name): Path<String>) -> Response {
    answer("model_metadata", model_metadata_of(&live, &name, None))
}

async fn model_metadata_version(State(live): State<Live>, Path((name, v)): Path<(String, String)>) -> Response {
    answer("model_metadata", model_metadata_of(&live, &name, Some(&v)))
}

fn model_metadata_of(live: &Live, name: &str, version: Option<&str>) -> std::result::Result<Value, ApiError> {
    let h = holding(live)?;
    let m = pick(&h, name, version)?;
    let held = if version.is_some() { vec![m.version.as_str()] } else { versions(&h) };
    Ok(metadata(&m, &held))
}

async fn model_ready(State(live): State<Live>, Path(name): Path<String>) -> Response {
    answer(
        "model_ready",
        holding(&live).and_then(|h| pick(&h, &name, None)).map(|_| json!({"name": name, "ready": true})),
    )
}

async fn model_ready_version(State(live): State<Live>, Path((name, v)): Path<(String, String)>) -> Response {
    let r = holding(&live).and_then(|h| pick(&h, &name, Some(&v)));
    answer("model_ready", r.map(|_| json!({"name": name, "version": v, "ready": true})))
}

async fn infer(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    infer_of(&api, &name, None, &headers, body).await
}

async fn infer_version(
    State(api): State<Api>,
    Path((name, v)): Path<(String, String)>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    infer_of(&api, &name, Some(&v), &headers, body).await
}

/// The binary tensor data extension's header: the length of the JSON part of a body whose
/// tensors' bytes follow it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

async fn infer_of(
    api: &Api,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let r = async {
        let body = body.map_err(|e| ApiError::new(e.status(), format!("request body: {}", e.body_text())))?;
        let h = holding(&api.live)?;
        let m = pick(&h, name, version)?;
        let json_len = match headers.get(HEADER_LENGTH) {
            None => body.len(),
            Some(v) => {
                v.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|n| *n <= body.len()).ok_or_else(
                    || {
                        ApiError::bad(format!(
                            "header {HEADER_LENGTH}: {v:?} is not a length within the {}-byte body",
                            body.len()
                        ))
                    },
                )?
            }
        };
        let req = parse_request(&body[..json_len], &body[json_len..])?;
        let outputs = score_batched(&api.batcher, &m, shadow_of(&h, &m), "http", &req).await?;
        Ok(reply(&m, &req, outputs))
    }
    .await;
    let res = match r {
        Ok(Reply { header, tail }) if !tail.is_empty() => {
            metrics().http_requests.with_label_values(&["infer", "200"]).inc();
            let head = header.to_string();
            let len = head.len().to_string();
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&tail);
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                    (header::HeaderName::from_static(HEADER_LENGTH), len),
                ],
                bytes,
            )
                .into_response()
        }
        r => answer("infer", r.map(|reply| reply.header)),
    };
    metrics().http_latency.with_label_values(&["infer"]).observe(started.elapsed().as_secs_f64());
    res
}

/// An inference request (what the protocol's JSON form carries; other fields are ignored).
#[derive(Debug, Deserialize)]
pub struct InferRequest {
    /// Echoed in the response.
    #[serde(default)]
    pub id: Option<String>,
    /// The input tensors.
    pub inputs: Vec<InputTensor>,
    /// The outputs wanted (all when absent).
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
    /// Request parameters (`binary_data_output` is read).
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// One input tensor.
#[derive(Debug, Deserialize)]
pub struct InputTensor {
    /// A column name, or any name for the one `[N, k]` tensor.
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its datatype (`FP64`, `BYTES`, ...).
    pub datatype: String,
    /// Extension parameters (`binary_data_size` is recognised, to say it is not supported).
    #[serde(default)]
    pub parameters: Option<Value>,
    /// The elements, row-major, flat or nested.
    #[serde(default)]
    pub data: Option<Value>,
}

/// An output asked for by name.
#[derive(Debug, Deserialize)]
pub struct RequestedOutput {
    /// `prediction`, `label`, `probabilities` or `error`.
    pub name: String,
    /// Output parameters (`binary_data` is read).
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// What kind of elements a datatype carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Bytes,
}

fn kind_of(datatype: &str) -> Option<Kind> {
    Some(match datatype {
        "BOOL" => Kind::Bool,
        "UINT8" | "UINT16" | "UINT32" | "UINT64" | "INT8" | "INT16" | "INT32" | "INT64" => Kind::Int,
        "FP16" | "FP32" | "FP64" | "BF16" => Kind::Float,
        "BYTES" => Kind::Bytes,
        _ => return None,
    })
}

/// An answer: its JSON, and the bytes of the outputs sent in binary after it (the binary tensor
/// data extension; empty when every output is in the JSON).
#[derive(Debug)]
pub struct Reply {
    /// The response's JSON part.
    pub header: Value,
    /// The binary outputs, in the order of the JSON's outputs.
    pub tail: Vec<u8>,
}

/// Decode, score and answer one all-JSON request with model `m`.
pub fn respond(m: &Served, body: &[u8]) -> std::result::Result<Value, ApiError> {
    respond_parts(m, body, &[]).map(|r| r.header)
}

/// Decode, score and answer one request whose JSON part is `json` and whose binary tensor data
/// (if any) is `binary`.
pub fn respond_parts(m: &Served, json: &[u8], binary: &[u8]) -> std::result::Result<Reply, ApiError> {
    let req = parse_request(json, binary)?;
    let outputs = score_request(m, &req)?;
    Ok(reply(m, &req, outputs))
}

/// The request a body's JSON part `json` and binary part `binary` carry.
pub fn parse_request(json: &[u8], binary: &[u8]) -> std::result::Result<InferRequest, ApiError> {
    let mut req: InferRequest = serde_json::from_slice(json)
        .map_err(|e| ApiError::bad(format!("the body is not an inference request: {e}")))?;
    binary_inputs(&mut req, binary)?;
    Ok(req)
}

/// The answer to `req` with `outputs`, those the request asked for in binary moved after the JSON.
pub fn reply(m: &Served, req: &InferRequest, outputs: Vec<Value>) -> Reply {
    // binary outputs: all when the request says binary_data_output, else those asked for so
    let all_binary = req.parameters.as_ref().and_then(|p| p.get("binary_data_output")).and_then(Value::as_bool);
    let asked: HashMap<&str, bool> = req
        .outputs
        .iter()
        .flatten()
        .filter_map(|o| Some((o.name.as_str(), o.parameters.as_ref()?.get("binary_data")?.as_bool()?)))
        .collect();
    let mut tail = Vec::new();
    let mut outputs = outputs;
    for out in &mut outputs {
        let name = out["name"].as_str().unwrap_or_default().to_string();
        if asked.get(name.as_str()).copied().or(all_binary).unwrap_or(false) {
            let start = tail.len();
            encode_binary(out, &mut tail);
            out["parameters"] = json!({"binary_data_size": tail.len() - start});
        }
    }
    let mut header = json!({"model_name": m.name, "model_version": m.version, "outputs": outputs});
    if let Some(id) = &req.id {
        header["id"] = json!(id);
    }
    Reply { header, tail }
}

/// Score a decoded request with model `m`: its output tensors as JSON (`name`, `datatype`,
/// `shape`, `data`), the ones it asked for (all when it named none), in the model's order.
///
/// Scores here, on the caller's thread (the servers go through [`score_batched`]).
pub fn score_request(m: &Served, req: &InferRequest) -> std::result::Result<Vec<Value>, ApiError> {
    let (rows, cells) = decode(m, req)?;
    metrics().http_rows.observe(rows as f64);
    let scores = score_rows(&m.scorer, &cells);
    outputs(m, req, scores)
}

/// [`score_request`] through the scoring thread, in a batch with the requests that arrive with
/// it; with a `shadow`, the shadow model scores the rows too (recorded, not answered). `api`
/// (`http`, `grpc`) names the path in the shadow's records.
pub async fn score_batched(
    batcher: &Batcher,
    m: &Arc<Served>,
    shadow: Option<Arc<Served>>,
    api: &'static str,
    req: &InferRequest,
) -> std::result::Result<Vec<Value>, ApiError> {
    let (rows, cells) = decode(m, req)?;
    metrics().http_rows.observe(rows as f64);
    let cells: Vec<Cell<'static>> = cells.into_iter().map(owned).collect();
    let shadow = shadow.map(|model| ShadowOf { model, api, request_id: request_id(req.id.as_deref()) });
    let scores = batcher.score(Rows { model: m.clone(), cells, shadow }).await.map_err(|r| match r {
        Refused::Busy => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is over capacity (its scoring queue is full); retry shortly",
        ),
        Refused::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping"),
    })?;
    outputs(m, req, scores)
}

/// A cell that owns its text (the scoring thread outlives the request's buffers).
fn owned(c: Cell<'_>) -> Cell<'static> {
    match c {
        Cell::Missing => Cell::Missing,
        Cell::Num(v) => Cell::Num(v),
        Cell::Text(t) => Cell::Text(Cow::Owned(t.into_owned())),
        Cell::Invalid(why) => Cell::Invalid(why),
    }
}

/// The request's `id`, or a new one unique in this process (`req-` and a count) when it has none.
fn request_id(given: Option<&str>) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    match given {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("req-{}-{}", crate::util::time::now_ms(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
    }
}

/// The output tensors of `scores` (the rows of `req`), those the request asked for.
fn outputs(m: &Served, req: &InferRequest, scores: Scores) -> std::result::Result<Vec<Value>, ApiError> {
    let rows = scores.rows.len();
    let classes = m.scorer.classes();
    let mut predictions: Vec<Option<f64>> = Vec::with_capacity(rows);
    let mut labels: Vec<&str> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for (i, r) in scores.rows.into_iter().enumerate() {
        match r {
            Ok((v, class)) => {
                predictions.push(Some(v));
                if let Some(c) = class {
                    labels.push(&classes[c]);
                }
                if !errors.is_empty() {
                    errors.push(String::new());
                }
            }
            Err(reason) => {
                predictions.push(None);
                if !classes.is_empty() {
                    labels.push("");
                }
                // the rows before this one scored
                errors.resize(i, String::new());
                errors.push(reason);
            }
        }
    }
    let probabilities: Vec<Option<f64>> =
        scores.probabilities.iter().map(|p| Some(*p).filter(|p| !p.is_nan())).collect();
    if !errors.is_empty() {
        errors.resize(rows, String::new());
    }
    let mut outputs =
        vec![("prediction", json!({"name": "prediction", "datatype": "FP64", "shape": [rows], "data": predictions}))];
    if !classes.is_empty() {
        outputs.push(("label", json!({"name": "label", "datatype": "BYTES", "shape": [rows], "data": labels})));
        outputs.push((
            "probabilities",
            json!({"name": "probabilities", "datatype": "FP64", "shape": [rows, classes.len()], "data": probabilities}),
        ));
    }
    if !errors.is_empty() {
        outputs.push(("error", json!({"name": "error", "datatype": "BYTES", "shape": [rows], "data": errors})));
    }
    let outputs: Vec<Value> = match &req.outputs {
        None => outputs.into_iter().map(|(_, v)| v).collect(),
        Some(wanted) => {
            let mut by_name: HashMap<&str, Value> = outputs.into_iter().collect();
            let mut chosen = Vec::with_capacity(wanted.len());
            for w in wanted {
                match by_name.remove(w.name.as_str()) {
                    Some(v) => chosen.push(v),
                    // `error` is only there when a row was rejected
                    None if w.name == "error" => {}
                    None => {
                        let known = if classes.is_empty() { "prediction" } else { "prediction, label, probabilities" };
                        return Err(ApiError::bad(format!(
                            "output {:?} is not an output of this model (it has {known}, and error when a row is rejected)",
                            w.name
                        )));
                    }
                }
            }
            chosen
        }
    };
    Ok(outputs)
}

/// Move an output's `data` into `tail` in the extension's layout: FP64 elements as 8
/// little-endian bytes (`null`, a rejected row, as NaN), BYTES elements as a 4-byte
/// little-endian length and the bytes.
pub(super) fn encode_binary(out: &mut Value, tail: &mut Vec<u8>) {
    let text = out["datatype"] == "BYTES";
    let data = out.as_object_mut().and_then(|o| o.remove("data")).unwrap_or(Value::Null);
    for v in data.as_array().into_iter().flatten() {
        if text {
            let s = v.as_str().unwrap_or_default();
            tail.extend_from_slice(&(s.len() as u32).to_le_bytes());
            tail.extend_from_slice(s.as_bytes());
        } else {
            tail.extend_from_slice(&v.as_f64().unwrap_or(f64::NAN).to_le_bytes());
        }
    }
}

/// Replace each input's binary data (`parameters.binary_data_size` bytes of `binary`, in input
/// order) with its elements as JSON: numbers (NaN is `null`, missing), booleans, or strings.
fn binary_inputs(req: &mut InferRequest, binary: &[u8]) -> std::result::Result<(), ApiError> {
    let mut rest = binary;
    for t in &mut req.inputs {
        let Some(size) = t.parameters.as_ref().and_then(|p| p.get("binary_data_size")) else { continue };
        let size = size
            .as_u64()
            .ok_or_else(|| ApiError::bad(format!("input {:?}: binary_data_size {size} is not a byte count", t.name)))?
            as usize;
        if t.data.is_some() {
            return Err(ApiError::bad(format!("input {:?} has both data and binary_data_size", t.name)));
        }
        if size > rest.len() {
            return Err(ApiError::bad(format!(
                "input {:?}: binary_data_size {size} but only {} bytes of binary data are left",
                t.name,
                rest.len()
            )));
        }
        let (mine, after) = rest.split_at(size);
        rest = after;
        t.data = Some(Value::Array(binary_elements(&t.name, &t.datatype, mine)?));
    }
    if !rest.is_empty() {
        return Err(ApiError::bad(format!(
            "{} bytes of binary data are not claimed by any input's binary_data_size",
            rest.len()
        )));
    }
    Ok(())
}

pub(super) fn binary_elements(name: &str, datatype: &str, bytes: &[u8]) -> std::result::Result<Vec<Value>, ApiError> {
    if datatype == "BYTES" {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let bad = || ApiError::bad(format!("input {name:?}: BYTES data ends inside an element"));
            let (len, after) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
            let len = u32::from_le_bytes(*len) as usize;
            let text = after.get(..len).ok_or_else(bad)?;
            let text = std::str::from_utf8(text)
                .map_err(|_| ApiError::bad(format!("input {name:?}: element {} is not UTF-8 text", out.len())))?;
            out.push(Value::String(text.to_string()));
            rest = &after[len..];
        }
        return Ok(out);
    }
    let width = match datatype {
        "BOOL" | "INT8" | "UINT8" => 1,
        "INT16" | "UINT16" | "FP16" | "BF16" => 2,
        "INT32" | "UINT32" | "FP32" => 4,
        "INT64" | "UINT64" | "FP64" => 8,
        other => {
            return Err(ApiError::bad(format!(
                "input {name:?}: datatype {other:?} is not one of the protocol's (BOOL, INT8..INT64, UINT8..UINT64, FP16, FP32, FP64, BYTES)"
            )))
        }
    };
    if !bytes.len().is_multiple_of(width) {
        return Err(ApiError::bad(format!(
            "input {name:?}: {} bytes of binary data is not a whole number of {width}-byte {datatype} elements",
            bytes.len()
        )));
    }
    let float = |v: f64| if v.is_nan() { Value::Null } else { Value::from(v) };
    let word = |c: &[u8]| -> [u8; 8] { c.try_into().unwrap_or([0; 8]) };
    Ok(bytes
        .chunks_exact(width)
        .map(|c| match datatype {
            "BOOL" => Value::Bool(c[0] != 0),
            "INT8" => Value::from(c[0] as i8),
            "UINT8" => Value::from(c[0]),
            "INT16" => Value::from(i16::from_le_bytes([c[0], c[1]])),
            "UINT16" => Value::from(u16::from_le_bytes([c[0], c[1]])),
            "FP16" => float(f64::from(f16_to_f32(u16::from_le_bytes([c[0], c[1]])))),
            "BF16" => float(f64::from(f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))),
            "INT32" => Value::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            "UINT32" => Value::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            "FP32" => float(f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            "INT64" => Value::from(i64::from_le_bytes(word(c))),
            "UINT64" => Value::from(u64::from_le_bytes(word(c))),
            _ => float(f64::from_le_bytes(word(c))),
        })
        .collect())
}

/// An IEEE 754 half-precision number's value.
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// The request's cells, row after row in the model's column order, and the row count.
fn decode<'r>(m: &Served, req: &'r InferRequest) -> std::result::Result<(usize, Vec<Cell<'r>>), ApiError> {
    let columns = m.scorer.input_columns();
    let numeric = m.scorer.numeric_inputs();
    let k = columns.len();
    let expected = || {
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        format!("the model's inputs are {names:?} (one tensor each, shape [N]), or one [N, {k}] tensor in that order")
    };
    if req.inputs.is_empty() {
        return Err(ApiError::bad(format!("no inputs; {}", expected())));
    }
    let slot: HashMap<&str, usize> = columns.iter().enumerate().map(|(j, c)| (c.as_str(), j)).collect();
    let matrix =
        req.inputs.len() == 1 && !slot.contains_key(req.inputs[0].name.as_str()) && req.inputs[0].shape.len() == 2;
    if matrix {
        let t = &req.inputs[0];
        let kind = tensor_kind(t)?;
        if t.shape[1] != k as i64 {
            return Err(ApiError::bad(format!(
                "input {:?}: shape {:?} has {} columns; {}",
                t.name,
                t.shape,
                t.shape[1],
                expected()
            )));
        }
        if kind != Kind::Bytes && numeric < k {
            return Err(ApiError::bad(format!(
                "input {:?}: a {} matrix cannot carry the categorical columns {:?}; send a BYTES matrix or one tensor per column",
                t.name,
                t.datatype,
                &columns[numeric..]
            )));
        }
        let rows = rows_of(t)?;
        let leaves = leaves_of(t, rows * k)?;
        let cells = leaves
            .iter()
            .enumerate()
            .map(|(i, v)| cell(v, kind, &t.name, i))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        return Ok((rows, cells));
    }
    let mut given: Vec<Option<(&InputTensor, Kind)>> = vec![None; k];
    for t in &req.inputs {
        let Some(&j) = slot.get(t.name.as_str()) else {
            return Err(ApiError::bad(format!("input {:?} is not an input of this model; {}", t.name, expected())));
        };
        if given[j].is_some() {
            return Err(ApiError::bad(format!("input {:?} is given twice", t.name)));
        }
        let kind = tensor_kind(t)?;
        let fits = if j < numeric { kind != Kind::Bytes } else { matches!(kind, Kind::Bytes | Kind::Int) };
        if !fits {
            let want = if j < numeric {
                "a numeric datatype (FP64, FP32, INT64, ...): the column is numeric"
            } else {
                "BYTES (or an integer type): the column is categorical"
            };
            return Err(ApiError::bad(format!("input {:?}: datatype {} where {want}", t.name, t.datatype)));
        }
        if !(t.shape.len() == 1 || (t.shape.len() == 2 && t.shape[1] == 1)) {
            return Err(ApiError::bad(format!(
                "input {:?}: shape {:?}; a column's tensor is [N] or [N, 1]",
                t.name, t.shape
            )));
        }
        given[j] = Some((t, kind));
    }
    if let Some(j) = given.iter().position(Option::is_none) {
        return Err(ApiError::bad(format!("input {:?} is missing; {}", columns[j], expected())));
    }
    let given: Vec<(&InputTensor, Kind)> = given.into_iter().flatten().collect();
    let rows = rows_of(given[0].0)?;
    if let Some((t, _)) = given.iter().find(|(t, _)| t.shape[0] != rows as i64) {
        return Err(ApiError::bad(format!(
            "input {:?} has {} rows where {:?} has {rows}; every input needs the same N",
            t.name, t.shape[0], given[0].0.name
        )));
    }
    let mut cells = vec![Cell::Missing; rows * k];
    for (j, (t, kind)) in given.iter().enumerate() {
        for (i, v) in leaves_of(t, rows)?.into_iter().enumerate() {
            cells[i * k + j] = cell(v, *kind, &t.name, i)?;
        }
    }
    Ok((rows, cells))
}

fn tensor_kind(t: &InputTensor) -> std::result::Result<Kind, ApiError> {
    kind_of(&t.datatype).ok_or_else(|| {
        ApiError::bad(format!(
            "input {:?}: datatype {:?} is not one of the protocol's (BOOL, INT8..INT64, UINT8..UINT64, FP16, FP32, FP64, BYTES)",
            t.name, t.datatype
        ))
    })
}

/// N, the first dimension, checked to be a count.
fn rows_of(t: &InputTensor) -> std::result::Result<usize, ApiError> {
    match t.shape.first() {
        Some(&n) if n >= 0 => Ok(n as usize),
        _ => Err(ApiError::bad(format!("input {:?}: shape {:?} has no row count", t.name, t.shape))),
    }
}

/// The elements of `t`'s data, flattened, checked to be `count` of them.
fn leaves_of(t: &InputTensor, count: usize) -> std::result::Result<Vec<&Value>, ApiError> {
    let Some(data) = &t.data else {
        return Err(ApiError::bad(format!("input {:?} has no data (nor a binary_data_size)", t.name)));
    };
    let mut out = Vec::with_capacity(count);
    flatten(data, &mut out);
    if out.len() != count {
        return Err(ApiError::bad(format!(
            "input {:?}: shape {:?} needs {count} elements, the data has {}",
            t.name,
            t.shape,
            out.len()
        )));
    }
    Ok(out)
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

/// One element as a cell: `null` (and `""` in `BYTES`) is missing.
fn cell<'a>(v: &'a Value, kind: Kind, input: &str, index: usize) -> std::result::Result<Cell<'a>, ApiError> {
    Ok(match (kind, v) {
        (_, Value::Null) => Cell::Missing,
        (Kind::Float, Value::Number(n)) => Cell::Num(n.as_f64().unwrap_or(f64::NAN)),
        (Kind::Int, Value::Number(n)) if n.is_i64() || n.is_u64() => Cell::Num(n.as_f64().unwrap_or(f64::NAN)),
        (Kind::Bool, Value::Bool(b)) => Cell::Num(f64::from(u8::from(*b))),
        (Kind::Bytes, Value::String(s)) if s.is_empty() => Cell::Missing,
        (Kind::Bytes, Value::String(s)) => Cell::Text(Cow::Borrowed(s)),
        (kind, other) => {
            let want = match kind {
                Kind::Bool => "true or false",
                Kind::Int => "an integer",
                Kind::Float => "a number",
                Kind::Bytes => "a string",
            };
            return Err(ApiError::bad(format!(
                "input {input:?}: element {index} is {other}, where {want} (or null) was expected"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A served model trained from a shipped params file.
    fn served(params: &str) -> Served {
        let params = crate::params::Params::load(std::path::Path::new(params)).unwrap();
        let a = crate::train::fit_artifact(&params).unwrap();
        Served::from_artifact(&a, crate::predict::ServeOptions::key("key")).unwrap()
    }

    fn call(m: &Served, body: Value) -> std::result::Result<Value, ApiError> {
        respond(m, body.to_string().as_bytes())
    }

    #[test]
    fn named_tensors_and_one_matrix_give_the_same_predictions() {
        let m = served("params/params.yaml");
        let cols = m.scorer.input_columns().to_vec();
        let row1 = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4];
        let row2 = [7.8, 0.88, 0.0, 2.6, 0.098, 25.0, 67.0, 0.9968, 3.2, 0.68, 9.8];
        let inputs: Vec<Value> = cols
            .iter()
            .enumerate()
            .map(|(j, c)| json!({"name": c, "datatype": "FP64", "shape": [2], "data": [row1[j], row2[j]]}))
            .collect();
        let named = call(&m, json!({"id": "r1", "inputs": inputs})).unwrap();
        assert_eq!(named["id"], "r1");
        assert_eq!(named["model_version"], m.version.as_str());
        let got: Vec<f64> = serde_json::from_value(named["outputs"][0]["data"].clone()).unwrap();
        let direct: Vec<f64> = [row1, row2]
            .iter()
            .map(|r| m.scorer.score(&r.iter().map(|v| Cell::Num(*v)).collect::<Vec<_>>()).unwrap())
            .collect();
        assert_eq!(got, direct);
        let matrix = call(
            &m,
            json!({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [2, 11], "data": [row1, row2]}]}),
        )
        .unwrap();
        assert_eq!(matrix["outputs"], named["outputs"]);
    }

    #[test]
    fn requests_that_do_not_fit_are_named() {
        let m = served("params/params.yaml");
        let cols = m.scorer.input_columns().to_vec();
        let full = |skip: usize, f: &dyn Fn(usize, &str) -> Value| -> Value {
            let inputs: Vec<Value> =
                cols.iter().enumerate().filter(|(j, _)| *j != skip).map(|(j, c)| f(j, c)).collect();
            json!({ "inputs": inputs })
        };
        let ok = |_: usize, c: &str| json!({"name": c, "datatype": "FP64", "shape": [1], "data": [1.0]});
        let cases: Vec<(Value, &str)> = vec![
            (full(0, &ok), "input \"fixed acidity\" is missing"),
            (
                full(usize::MAX, &|j, c| {
                    if j == 2 {
                        json!({"name": c, "datatype": "BYTES", "shape": [1], "data": ["x"]})
                    } else {
                        ok(j, c)
                    }
                }),
                "datatype BYTES where a numeric datatype",
            ),
            (
                full(usize::MAX, &|j, c| {
                    if j == 3 {
                        json!({"name": c, "datatype": "FP64", "shape": [2], "data": [1.0]})
                    } else {
                        ok(j, c)
                    }
                }),
                "input \"residual sugar\" has 2 rows where \"fixed acidity\" has 1",
            ),
            (
                full(usize::MAX, &|j, c| {
                    if j == 0 {
                        json!({"name": c, "datatype": "FP64", "shape": [1], "data": [[1.0, 2.0]]})
                    } else {
                        ok(j, c)
                    }
                }),
                "shape [1] needs 1 elements, the data has 2",
            ),
            (
                full(usize::MAX, &|j, c| {
                    if j == 4 {
                        json!({"name": c, "datatype": "FP64", "shape": [1], "data": ["1"]})
                    } else {
                        ok(j, c)
                    }
                }),
                "element 0 is \"1\", where a number",
            ),
            (
                full(usize::MAX, &|j, c| {
                    if j == 1 {
                        json!({"name": c, "datatype": "FLOAT", "shape": [1], "data": [1.0]})
                    } else {
                        ok(j, c)
                    }
                }),
                "datatype \"FLOAT\" is not one of the protocol's",
            ),
            (
                json!({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}]}),
                "input \"x\" is not an input of this model",
            ),
            (
                json!({"inputs": [{"name": "m", "datatype": "FP64", "shape": [1, 10], "data": [[1,2,3,4,5,6,7,8,9,10]]}]}),
                "has 10 columns",
            ),
            (json!({"inputs": []}), "no inputs"),
            (
                json!({"inputs": [{"name": "m", "datatype": "FP32", "shape": [1, 11], "parameters": {"binary_data_size": 44}}]}),
                "binary_data_size 44 but only 0 bytes",
            ),
            (json!({"input": 3}), "not an inference request"),
            (
                full(usize::MAX, &ok)
                    .as_object()
                    .map(|o| {
                        let mut o = o.clone();
                        o.insert("outputs".into(), json!([{"name": "score"}]));
                        Value::Object(o)
                    })
                    .unwrap(),
                "output \"score\" is not an output",
            ),
        ];
        for (body, want) in cases {
            let e = call(&m, body.clone()).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(e.message.contains(want), "{body}: {} lacks {want:?}", e.message);
        }
        let e = respond(&m, b"{not json").unwrap_err();
        assert!(e.message.contains("not an inference request"), "{}", e.message);
    }

    #[test]
    fn the_bearer_token_must_match_exactly() {
        let h = |v: &str| header::HeaderValue::from_str(v).unwrap();
        assert!(bearer_matches(Some(&h("Bearer s3cret")), "s3cret"));
        for wrong in ["Bearer s3cre", "Bearer s3cretx", "bearer s3cret", "s3cret", "Basic s3cret", "Bearer "] {
            assert!(!bearer_matches(Some(&h(wrong)), "s3cret"), "{wrong}");
        }
        assert!(!bearer_matches(None, "s3cret"));
    }

    #[test]
    fn binary_tensor_data_in_and_out() {
        let m = served("params/params.yaml");
        let row = [7.4f32, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4];
        let mut data: Vec<u8> = row.iter().chain(&row).flat_map(|v| v.to_le_bytes()).collect();
        let head = json!({
            "inputs": [{"name": "m", "datatype": "FP32", "shape": [2, 11], "parameters": {"binary_data_size": data.len()}}],
            "parameters": {"binary_data_output": true},
        })
        .to_string();
        let reply = respond_parts(&m, head.as_bytes(), &data).unwrap();
        let out = &reply.header["outputs"][0];
        assert_eq!(out["parameters"]["binary_data_size"], 16, "{}", reply.header);
        assert!(out.get("data").is_none());
        let got: Vec<f64> = reply.tail.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
        let want = m.scorer.score(&row.iter().map(|v| Cell::Num(f64::from(*v))).collect::<Vec<_>>()).unwrap();
        assert_eq!(got, vec![want, want]);
        // a byte too many, or too few, is named
        data.push(0);
        let e = respond_parts(&m, head.as_bytes(), &data).unwrap_err();
        assert!(e.message.contains("1 bytes of binary data are not claimed"), "{}", e.message);
        let e = respond_parts(&m, head.as_bytes(), &data[..10]).unwrap_err();
        assert!(e.message.contains("only 10 bytes"), "{}", e.message);
        // BYTES elements: a length, then the text; FP16 halves
        assert_eq!(
            binary_elements("c", "BYTES", &[3, 0, 0, 0, b'r', b'e', b'd', 0, 0, 0, 0]).unwrap(),
            vec![json!("red"), json!("")]
        );
        assert!(binary_elements("c", "BYTES", &[9, 0, 0, 0, b'r']).is_err());
        assert_eq!(binary_elements("x", "FP16", &0x3c00u16.to_le_bytes()).unwrap(), vec![json!(1.0)]);
        assert_eq!(binary_elements("x", "FP32", &f32::NAN.to_le_bytes()).unwrap(), vec![Value::Null]);
    }

    #[test]
    fn a_row_the_model_rejects_gets_its_reason_and_the_others_score() {
        let m = served("params/params.yaml");
        let cols = m.scorer.input_columns().to_vec();
        let inputs: Vec<Value> = cols
            .iter()
            .map(|c| json!({"name": c, "datatype": "FP64", "shape": [3], "data": [1.0, null, 2.0]}))
            .collect();
        // mean imputation: null is imputed, all three score
        let r = call(&m, json!({ "inputs": inputs })).unwrap();
        assert_eq!(r["outputs"].as_array().unwrap().len(), 1);
        // a BYTES matrix with text in a numeric column: that row is rejected, the others score
        let row =
            |v: &str| -> Vec<String> { (0..11).map(|j| if j == 5 { v.to_string() } else { "1".into() }).collect() };
        let r = call(&m, json!({"inputs": [{"name": "m", "datatype": "BYTES", "shape": [3, 11], "data": [row("2"), row("abc"), row("")]}]}))
            .unwrap();
        let outs = r["outputs"].as_array().unwrap();
        assert_eq!(outs[0]["data"][1], Value::Null);
        assert!(outs[0]["data"][0].is_f64() && outs[0]["data"][2].is_f64());
        assert_eq!(outs[1]["name"], "error");
        assert_eq!(outs[1]["data"][0], "");
        assert!(outs[1]["data"][1].as_str().unwrap().contains("abc"), "{}", outs[1]);
    }

    #[test]
    fn classifier_metadata_and_outputs_carry_classes() {
        let m = served("params/wine-grade.yaml");
        let meta = metadata(&m, &[&m.version]);
        assert_eq!(meta["outputs"][2]["shape"], json!([-1, 6]));
        assert_eq!(meta["parameters"]["classes"].as_array().unwrap().len(), 6);
        let cols = m.scorer.input_columns().to_vec();
        let inputs: Vec<Value> =
            cols.iter().map(|c| json!({"name": c, "datatype": "FP64", "shape": [1], "data": [1.0]})).collect();
        let r = call(&m, json!({"inputs": inputs, "outputs": [{"name": "probabilities"}, {"name": "label"}]})).unwrap();
        let outs = r["outputs"].as_array().unwrap();
        assert_eq!(outs[0]["name"], "probabilities");
        let p: Vec<f64> = serde_json::from_value(outs[0]["data"].clone()).unwrap();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(outs[1]["name"], "label");
    }
}
