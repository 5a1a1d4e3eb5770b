//! The request/response servers of `predict`: the Open Inference Protocol over HTTP
//! ([`super::oip`], `--http`) and gRPC ([`super::grpc`], `--grpc`), started beside the Kafka
//! service or alone ([`run`]), fed the models the swapping flow holds through one [`watch`]
//! channel, and drained on stop (the requests in flight are answered).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::batch::{BatchOptions, Batcher, RequestDrift, ShadowBatch};
use super::drift::{Monitor, WindowLimits};
use super::models::{ModelChoice, Started, Swapper};
use super::oip::{self, Holding, Publisher};
use super::{grpc, Counts};
use crate::aliases::Updates;
use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::events::{Event, ModelServing, ShadowSwapped};
use crate::messages::Outgoing;
use crate::store::Store;

/// The largest request accepted by default (`--http-max-body`; for gRPC, the largest message),
/// in bytes: 16 MiB, about 100,000 rows of the wine model's 11 columns as JSON.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

/// Where to answer requests, and their size limit.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiOptions {
    /// The HTTP/JSON server's address (`--http`).
    pub http: Option<SocketAddr>,
    /// The gRPC server's address (`--grpc`).
    pub grpc: Option<SocketAddr>,
    /// The largest request body or gRPC message, in bytes (`--http-max-body`).
    pub max_body: usize,
    /// Where `/healthz` and `/metrics` go when no HTTP server carries them (`--grpc` alone with
    /// `--metrics-addr`).
    pub metrics: Option<SocketAddr>,
    /// The bearer token requests must carry (`--api-token-file`); never printed.
    pub token: Option<Arc<str>>,
    /// The certificate and key both servers speak TLS with (`--tls-cert`, `--tls-key`).
    pub tls: Option<Arc<super::tls::Identity>>,
    /// How requests are batched (`--batch-max-rows`, `--batch-wait-us`).
    pub batch: BatchOptions,
    /// Count the rows of requests into drift windows (None: `--no-drift`).
    pub drift: Option<WindowLimits>,
    /// The name drift windows carry (`--instance-id`; None: the host name and process id).
    pub instance: Option<String>,
}

impl std::fmt::Debug for ApiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiOptions")
            .field("http", &self.http)
            .field("grpc", &self.grpc)
            .field("max_body", &self.max_body)
            .field("metrics", &self.metrics)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .field("batch", &self.batch)
            .field("drift", &self.drift)
            .field("instance", &self.instance)
            .finish()
    }
}

/// The running servers: publish models to them, then [`Servers::drain`] them.
pub struct Servers {
    publish: Publisher,
    ready: Arc<std::sync::atomic::AtomicBool>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Servers {
    /// Bind and start the servers `opts` asks for (none: nothing listens, publishing is free).
    /// Shadow predictions of requests go to `bus`'s shadow topic.
    pub async fn start(opts: Option<ApiOptions>, bus: &Bus) -> Result<Servers> {
        let (publish, live) = oip::channel();
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(addr) = opts.as_ref().and_then(|o| o.metrics) {
            super::http::serve_metrics(addr, ready.clone()).await?;
        }
        if let Some(o) = opts {
            let (shadow_tx, shadow_rx) = tokio::sync::mpsc::channel(SHADOW_QUEUE);
            let (drift_tx, drift_rx) = tokio::sync::mpsc::channel(SHADOW_QUEUE);
            let drift = o.drift.map(|limits| RequestDrift {
                monitor: Monitor::new(limits, o.instance.as_deref(), "requests"),
                sink: drift_tx,
            });
            let api = oip::Api { live, batcher: Batcher::start(o.batch, Some(shadow_tx), drift)? };
            if let Some(addr) = o.http {
                let tls = o.tls.as_ref().map(|id| id.http_config());
                tasks.push(oip::serve(addr, api.clone(), o.max_body, o.token.clone(), tls, stopped.clone()).await?.1);
            }
            if let Some(addr) = o.grpc {
                // tonic builds its TLS config on the process's default provider: make it aws-lc-rs
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                tasks.push(grpc::serve(addr, api, o.max_body, o.token.clone(), o.tls.as_deref(), stopped).await?.1);
            }
            // ends when the servers have stopped (and with them the scoring thread): last to drain
            tasks.push(tokio::spawn(record_shadow(shadow_rx, bus.clone())));
            tasks.push(tokio::spawn(record_drift(drift_rx, bus.clone())));
        }
        Ok(Servers { publish, ready, stop, tasks })
    }

    /// Serve these models from the next request on.
    pub fn publish(&self, model: &Arc<super::Served>, shadow: &Option<Arc<super::Served>>) {
        self.publish.send_replace(Some(Holding { model: model.clone(), shadow: shadow.clone() }));
        self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stop accepting, answer what is in flight, and return.
    pub async fn drain(self) {
        if self.tasks.is_empty() {
            return;
        }
        tracing::info!("stopping: answering the requests in flight");
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Batches of shadow predictions waiting for the shadow topic before new ones are dropped.
const SHADOW_QUEUE: usize = 256;

/// Write the shadow predictions of requests to the shadow topic, batch by batch, until the
/// scoring thread is gone (the servers have drained). A failed write is counted and logged,
/// never retried: a shadow never affects what serves.
async fn record_shadow(mut rx: tokio::sync::mpsc::Receiver<ShadowBatch>, bus: Bus) {
    let topic = bus.topics().shadow;
    while let Some(batch) = rx.recv().await {
        let n = batch.len();
        let msgs = batch
            .into_iter()
            .map(|(key, payload)| Outgoing { topic: &topic, key: key.into_bytes(), payload, headers: Vec::new() })
            .collect();
        if let Err(e) = bus.produce(msgs).await {
            crate::events::metrics().shadow_delivery_failures.inc_by(n as u64);
            tracing::warn!(failed = n, error = %e, "shadow predictions of requests not delivered; answers are unaffected");
        }
    }
}

/// Publish the drift windows of requests on the `model_drift` topic until the scoring thread is
/// gone; a failed write is counted and logged, never retried.
async fn record_drift(mut rx: tokio::sync::mpsc::Receiver<Vec<crate::messages::DriftMessage>>, bus: Bus) {
    let topic = bus.topics().model_drift;
    while let Some(windows) = rx.recv().await {
        let n = windows.len() as u64;
        let mut msgs = Vec::new();
        for w in &windows {
            match super::drift::encode(w) {
                Ok(payload) => msgs.push(Outgoing {
                    topic: &topic,
                    key: w.model_name.clone().into_bytes(),
                    payload,
                    headers: Vec::new(),
                }),
                Err(e) => super::drift::not_published(1, &e.to_string()),
            }
        }
        if let Err(e) = bus.produce(msgs).await {
            super::drift::not_published(n, &e.to_string());
        }
    }
}

/// `predict --http`/`--grpc` without `--serve`: serve requests with the chosen model,
/// hot-swapping it as it is announced or its alias moves, until SIGINT/SIGTERM. The servers
/// listen before the first model loads (ready turns true when it has).
pub async fn run(store: &Store, bus: &Bus, updates: Updates, choice: &ModelChoice, opts: ApiOptions) -> Result<Counts> {
    let servers = Servers::start(Some(opts), bus).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::io("install SIGTERM handler", "-", e))?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut counts = Counts::default();
    let start = Swapper::start(store, updates, choice, true);
    let Started { mut swapper, model, shadow } = tokio::select! {
        s = start => s?,
        _ = &mut ctrl_c => { servers.drain().await; return Ok(counts) }
        _ = term.recv() => { servers.drain().await; return Ok(counts) }
    };
    let (mut model, mut shadow) = (Arc::new(model), shadow.map(Arc::new));
    ModelServing { model: &model.name, version: &model.version }.emit();
    if let Some(s) = &shadow {
        ShadowSwapped { model: &s.name, from: "", to: &s.version }.emit();
    }
    servers.publish(&model, &shadow);
    loop {
        tokio::select! {
            _ = swapper.changed(), if choice.version.is_none() => {
                if swapper.poll(store, &mut model, &mut shadow).await {
                    counts.swaps += 1;
                }
                // the shadow may have moved alone: publish whatever is held now
                servers.publish(&model, &shadow);
            }
            _ = &mut ctrl_c => break,
            _ = term.recv() => break,
        }
    }
    servers.drain().await;
    Ok(counts)
}
