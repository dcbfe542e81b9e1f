//! The HTTP endpoint for metrics and probes.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

/// What the probes report.
pub trait Health: Send + Sync + 'static {
    /// Whether the node can serve: storage open, and within a few blocks of its peers.
    fn ready(&self) -> Result<(), String>;
}

struct AppState {
    registry: Registry,
    health: Arc<dyn Health>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on an already bound listener until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    health: Arc<dyn Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new(AppState { registry, health });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut buffer) {
        Ok(()) => (StatusCode::OK, [("content-type", prometheus::TEXT_FORMAT)], buffer).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.health.ready() {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

/// Binds a listener, naming the address in the error.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {address}: {e}")))
}
