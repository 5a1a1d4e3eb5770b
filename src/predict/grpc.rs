//! `predict --grpc ADDR`: the Open Inference Protocol's gRPC service,
//! `inference.GRPCInferenceService` (server live/ready/metadata, model ready/metadata,
//! `ModelInfer`), compiled from `proto/inference.proto` by tonic-prost-build (build.rs) and
//! served by tonic. It answers what [`super::oip`] answers over HTTP, from the same held model:
//! a request's tensors (typed `contents`, or `raw_input_contents` as tritonclient sends them)
//! become the same decoded request, and the outputs go back as `raw_output_contents`. Errors
//! are gRPC statuses with the same messages: `INVALID_ARGUMENT` for a request that does not fit
//! the model, `NOT_FOUND` for a model or version not held, `UNAVAILABLE` before the first model,
//! `RESOURCE_EXHAUSTED` for a message over the limit (tonic's).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use axum::http::StatusCode;
use serde_json::{json, Value};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::oip::{self, ApiError, InferRequest, InputTensor, RequestedOutput};
use crate::error::{Error, Result};
use crate::events::metrics;

/// The code generated from `proto/inference.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::{
    infer_parameter::ParameterChoice, model_infer_response, model_metadata_response, InferParameter,
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest,
    ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};

/// Bind `addr` (a bind failure is a usage error naming `--grpc`) and serve until `stop` turns
/// true, then finish the calls in flight. Messages up to `max_message` bytes are accepted.
pub async fn serve(
    addr: SocketAddr,
    api: oip::Api,
    max_message: usize,
    token: Option<std::sync::Arc<str>>,
    tls: Option<&super::tls::Identity>,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on --grpc {addr}: {e}")))?;
    let local = listener.local_addr().unwrap_or(addr);
    // with a token, every call needs `authorization: Bearer TOKEN` (the health calls too: an
    // interceptor does not see which method is called)
    let check = move |req: Request<()>| -> std::result::Result<Request<()>, Status> {
        let Some(token) = &token else { return Ok(req) };
        let given = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let header = given.and_then(|v| axum::http::HeaderValue::from_str(v).ok());
        if oip::bearer_matches(header.as_ref(), token) {
            Ok(req)
        } else {
            count("grpc_unauthenticated", tonic::Code::Unauthenticated);
            Err(Status::unauthenticated("a missing or wrong bearer token (send metadata authorization: Bearer TOKEN)"))
        }
    };
    let service = GrpcInferenceServiceServer::new(Service { live: api.live, batcher: api.batcher })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(usize::MAX);
    let service = tonic::service::interceptor::InterceptedService::new(service, check);
    tracing::info!(addr = %local, "serving the Open Inference Protocol over gRPC (inference.GRPCInferenceService)");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some(id) = tls {
        let identity = tonic::transport::Identity::from_pem(&id.cert_pem, &id.key_pem);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| Error::Usage(format!("--tls-cert/--tls-key for --grpc: {e}")))?;
    }
    let task = tokio::spawn(async move {
        let shutdown = oip::stopped(stop);
        let server = builder.add_service(service);
        if let Err(e) = server.serve_with_incoming_shutdown(incoming, shutdown).await {
            tracing::error!(error = %e, "the gRPC inference server stopped");
        }
    });
    Ok((local, task))
}

/// The service: the models the process holds, and the scoring thread.
struct Service {
    live: oip::Live,
    batcher: super::batch::Batcher,
}

/// A protocol error as a gRPC status, counted.
fn status(method: &'static str, e: ApiError) -> Status {
    let code = match e.status {
        StatusCode::NOT_FOUND => tonic::Code::NotFound,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
        _ => tonic::Code::InvalidArgument,
    };
    count(method, code);
    Status::new(code, e.message)
}

fn count(method: &'static str, code: tonic::Code) {
    metrics().http_requests.with_label_values(&[method, &format!("grpc_{}", i32::from(code))]).inc();
}

fn ok<T>(method: &'static str, t: T) -> std::result::Result<Response<T>, Status> {
    count(method, tonic::Code::Ok);
    Ok(Response::new(t))
}

/// The optional version of a request (empty: the serving one).
fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> std::result::Result<Response<ServerLiveResponse>, Status> {
        ok("grpc_live", ServerLiveResponse { live: true })
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> std::result::Result<Response<ServerReadyResponse>, Status> {
        ok("grpc_ready", ServerReadyResponse { ready: self.live.borrow().is_some() })
    }

    async fn model_ready(
        &self,
        r: Request<ModelReadyRequest>,
    ) -> std::result::Result<Response<ModelReadyResponse>, Status> {
        let r = r.into_inner();
        let ready = oip::holding(&self.live).and_then(|h| oip::pick(&h, &r.name, version(&r.version))).is_ok();
        ok("grpc_model_ready", ModelReadyResponse { ready })
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> std::result::Result<Response<ServerMetadataResponse>, Status> {
        ok(
            "grpc_metadata",
            ServerMetadataResponse {
                name: "modelcast".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                extensions: Vec::new(),
            },
        )
    }

    async fn model_metadata(
        &self,
        r: Request<ModelMetadataRequest>,
    ) -> std::result::Result<Response<ModelMetadataResponse>, Status> {
        let r = r.into_inner();
        let h = oip::holding(&self.live).map_err(|e| status("grpc_model_metadata", e))?;
        let m = oip::pick(&h, &r.name, version(&r.version)).map_err(|e| status("grpc_model_metadata", e))?;
        let held = if r.version.is_empty() { oip::versions(&h) } else { vec![m.version.as_str()] };
        let meta = oip::metadata(&m, &held);
        let tensors = |v: &Value| -> Vec<model_metadata_response::TensorMetadata> {
            v.as_array()
                .into_iter()
                .flatten()
                .map(|t| model_metadata_response::TensorMetadata {
                    name: t["name"].as_str().unwrap_or_default().into(),
                    datatype: t["datatype"].as_str().unwrap_or_default().into(),
                    shape: t["shape"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect(),
                })
                .collect()
        };
        ok(
            "grpc_model_metadata",
            ModelMetadataResponse {
                name: m.name.clone(),
                versions: held.iter().map(|v| v.to_string()).collect(),
                platform: "modelcast".into(),
                inputs: tensors(&meta["inputs"]),
                outputs: tensors(&meta["outputs"]),
            },
        )
    }

    async fn model_infer(
        &self,
        r: Request<ModelInferRequest>,
    ) -> std::result::Result<Response<ModelInferResponse>, Status> {
        let started = Instant::now();
        let r = r.into_inner();
        let answer = async {
            let h = oip::holding(&self.live)?;
            let m = oip::pick(&h, &r.model_name, version(&r.model_version))?;
            let req = decoded(&r)?;
            let mut outputs = oip::score_batched(&self.batcher, &m, oip::shadow_of(&h, &m), "grpc", &req).await?;
            let mut res = ModelInferResponse {
                model_name: m.name.clone(),
                model_version: m.version.clone(),
                id: r.id.clone(),
                ..Default::default()
            };
            for out in &mut outputs {
                let mut raw = Vec::new();
                oip::encode_binary(out, &mut raw);
                res.outputs.push(model_infer_response::InferOutputTensor {
                    name: out["name"].as_str().unwrap_or_default().into(),
                    datatype: out["datatype"].as_str().unwrap_or_default().into(),
                    shape: out["shape"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect(),
                    parameters: HashMap::new(),
                    contents: None,
                });
                res.raw_output_contents.push(raw);
            }
            Ok::<_, ApiError>(res)
        }
        .await;
        metrics().http_latency.with_label_values(&["grpc_infer"]).observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(res) => ok("grpc_infer", res),
            Err(e) => Err(status("grpc_infer", e)),
        }
    }
}

/// The gRPC request as the decoded request the HTTP path scores: each input's elements (from
/// `raw_input_contents`, one entry per input, or from its typed `contents`) as JSON values.
fn decoded(r: &ModelInferRequest) -> std::result::Result<InferRequest, ApiError> {
    if !r.raw_input_contents.is_empty() && r.raw_input_contents.len() != r.inputs.len() {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!(
                "raw_input_contents has {} entries for {} inputs; it needs one per input",
                r.raw_input_contents.len(),
                r.inputs.len()
            ),
        });
    }
    let mut inputs = Vec::with_capacity(r.inputs.len());
    for (i, t) in r.inputs.iter().enumerate() {
        let data = match (r.raw_input_contents.get(i), &t.contents) {
            (Some(_), Some(_)) => {
                return Err(ApiError {
                    status: StatusCode::BAD_REQUEST,
                    message: format!("input {:?} has both contents and raw_input_contents", t.name),
                })
            }
            (Some(raw), None) => oip::binary_elements(&t.name, &t.datatype, raw)?,
            (None, Some(c)) => typed(&t.name, c)?,
            (None, None) => Vec::new(),
        };
        inputs.push(InputTensor {
            name: t.name.clone(),
            shape: t.shape.clone(),
            datatype: t.datatype.clone(),
            parameters: None,
            data: Some(Value::Array(data)),
        });
    }
    let outputs = (!r.outputs.is_empty())
        .then(|| r.outputs.iter().map(|o| RequestedOutput { name: o.name.clone(), parameters: None }).collect());
    let parameters =
        Some(json!(r.parameters.iter().map(|(k, v)| (k.clone(), parameter(v))).collect::<HashMap<_, _>>()));
    Ok(InferRequest { id: (!r.id.is_empty()).then(|| r.id.clone()), inputs, outputs, parameters })
}

fn parameter(p: &InferParameter) -> Value {
    match &p.parameter_choice {
        Some(ParameterChoice::BoolParam(b)) => json!(b),
        Some(ParameterChoice::Int64Param(i)) => json!(i),
        Some(ParameterChoice::StringParam(s)) => json!(s),
        None => Value::Null,
    }
}

/// A tensor's typed contents as JSON values (NaN is `null`, missing). Only the field of its
/// datatype should be set; whichever is, is read.
fn typed(name: &str, c: &InferTensorContents) -> std::result::Result<Vec<Value>, ApiError> {
    let float = |v: f64| if v.is_nan() { Value::Null } else { json!(v) };
    let mut out: Vec<Value> = Vec::new();
    out.extend(c.bool_contents.iter().map(|b| json!(b)));
    out.extend(c.int_contents.iter().map(|v| json!(v)));
    out.extend(c.int64_contents.iter().map(|v| json!(v)));
    out.extend(c.uint_contents.iter().map(|v| json!(v)));
    out.extend(c.uint64_contents.iter().map(|v| json!(v)));
    out.extend(c.fp32_contents.iter().map(|v| float(f64::from(*v))));
    out.extend(c.fp64_contents.iter().map(|v| float(*v)));
    for (i, b) in c.bytes_contents.iter().enumerate() {
        let text = std::str::from_utf8(b).map_err(|_| ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("input {name:?}: element {i} is not UTF-8 text"),
        })?;
        out.push(json!(text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::proto::model_infer_request;
    use super::*;

    #[test]
    fn raw_and_typed_contents_decode_to_the_same_request() {
        let tensor = |contents| model_infer_request::InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![2],
            parameters: HashMap::new(),
            contents,
        };
        let typed = ModelInferRequest {
            inputs: vec![tensor(Some(InferTensorContents {
                fp32_contents: vec![1.5, f32::NAN],
                ..Default::default()
            }))],
            ..Default::default()
        };
        let raw = ModelInferRequest {
            inputs: vec![tensor(None)],
            raw_input_contents: vec![[1.5f32, f32::NAN].iter().flat_map(|v| v.to_le_bytes()).collect()],
            ..Default::default()
        };
        let a = decoded(&typed).unwrap();
        let b = decoded(&raw).unwrap();
        assert_eq!(a.inputs[0].data, Some(json!([1.5, null])));
        assert_eq!(a.inputs[0].data, b.inputs[0].data);
        let both = ModelInferRequest { raw_input_contents: raw.raw_input_contents.clone(), ..typed };
        assert!(decoded(&both).unwrap_err().message.contains("both contents and raw_input_contents"));
        let short = ModelInferRequest { raw_input_contents: vec![vec![], vec![]], ..raw };
        assert!(decoded(&short).unwrap_err().message.contains("2 entries for 1 inputs"));
    }
}
