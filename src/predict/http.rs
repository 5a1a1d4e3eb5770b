//! `/healthz` and `/metrics` of the service, on axum; the exposition is the Prometheus text
//! format of [`crate::events::metrics`], consumer lag and process metrics included.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::bus::kafka::InputConsumer;
use crate::error::{Error, Result};
use crate::events::metrics;

/// Bind `addr` and serve in the background; a bind failure is a usage error naming the flag.
pub async fn serve(addr: SocketAddr, consumer: Arc<InputConsumer>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on --metrics-addr {addr}: {e}")))?;
    let local = listener.local_addr().unwrap_or(addr);
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .fallback(|| async { (StatusCode::NOT_FOUND, "try /healthz or /metrics\n") })
        .with_state(consumer);
    tracing::info!(addr = %local, "serving /healthz and /metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the /healthz and /metrics server stopped");
        }
    });
    Ok(())
}

/// `/healthz` (200 once `ready`) and `/metrics` for a process that is not the predict service
/// (`evaluate --serve`).
pub async fn serve_metrics(addr: SocketAddr, ready: Arc<std::sync::atomic::AtomicBool>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on --metrics-addr {addr}: {e}")))?;
    let local = listener.local_addr().unwrap_or(addr);
    let app = Router::new()
        .route(
            "/healthz",
            get(|State(ready): State<Arc<std::sync::atomic::AtomicBool>>| async move {
                if ready.load(std::sync::atomic::Ordering::Relaxed) {
                    (StatusCode::OK, "ok\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .route(
            "/metrics",
            get(|| async { ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], crate::events::render()) }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "try /healthz or /metrics\n") })
        .with_state(ready);
    tracing::info!(addr = %local, "serving /healthz and /metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the /healthz and /metrics server stopped");
        }
    });
    Ok(())
}

/// 200 once a model serves and the group assigned this replica a partition, else 503.
async fn healthz(State(consumer): State<Arc<InputConsumer>>) -> impl IntoResponse {
    if metrics().ready.get() == 1 && consumer.is_assigned() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: waiting for a model and a partition assignment\n")
    }
}

async fn prometheus(State(consumer): State<Arc<InputConsumer>>) -> impl IntoResponse {
    // the lag asks the broker for watermarks: off the async workers
    let lag = tokio::task::spawn_blocking(move || consumer.lag()).await.unwrap_or_default();
    let gauge = &metrics().consumer_lag;
    gauge.reset();
    for (p, v) in lag {
        gauge.with_label_values(&[&p.to_string()]).set(v);
    }
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], crate::events::render())
}
