//! Prometheus metrics: off unless the process installs the exporter (`server run
//! --metrics-listen 127.0.0.1:PORT`), served on their own loopback listener, never on the API's.
//!
//! Handlers record through the `metrics` facade (nothing is kept when no exporter is installed).
//! Labels are bounded: the route *template* (`/v1/requests/{id}`), the method, the status code,
//! a gateway's name (admins create gateways; there are few) — never a user name, a host, an id
//! or a path as sent. What the database knows (sessions open per gateway, their upload backlog,
//! the pool) is read when Prometheus scrapes, so every replica reports the same facts.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::{ServerError, ServerState};

pub const REQUESTS: &str = "portcullis_http_requests_total";
pub const LATENCY: &str = "portcullis_http_request_duration_seconds";
pub const LIVE_STREAMS: &str = "portcullis_live_streams_open";
pub const RECORDS_INGESTED: &str = "portcullis_audit_records_ingested_total";
pub const SESSIONS_OPEN: &str = "portcullis_sessions_open";
pub const UPLOAD_BACKLOG: &str = "portcullis_gateway_upload_backlog_records";
pub const POOL: &str = "portcullis_db_pool_connections";

/// Latency buckets (seconds): the API's goal is a p99 under 50 ms.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Installs this process's exporter (once per process: the `metrics` facade has one recorder).
pub fn install() -> Result<PrometheusHandle, ServerError> {
    PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .map_err(|e| ServerError::Internal(format!("metrics: {e}")))?
        .install_recorder()
        .map_err(|e| ServerError::Internal(format!("metrics: {e}")))
}

/// Counts every API request by route template, method and status, and times it.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!(LATENCY, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// One more live stream open until this is dropped.
pub struct LiveStreamOpen;

impl LiveStreamOpen {
    pub fn open() -> Self {
        metrics::gauge!(LIVE_STREAMS).increment(1.0);
        LiveStreamOpen
    }
}

impl Drop for LiveStreamOpen {
    fn drop(&mut self) {
        metrics::gauge!(LIVE_STREAMS).decrement(1.0);
    }
}

/// `GET /metrics`: the database's facts now, then everything recorded.
pub async fn scrape(State((state, handle)): State<(Arc<ServerState>, PrometheusHandle)>) -> String {
    match state.db.gateway_facts().await {
        Ok(facts) => {
            for (gateway, open, backlog) in facts {
                metrics::gauge!(SESSIONS_OPEN, "gateway" => gateway.clone()).set(open as f64);
                metrics::gauge!(UPLOAD_BACKLOG, "gateway" => gateway).set(backlog as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the gateways' facts"),
    }
    let (size, idle) = state.db.pool_use();
    metrics::gauge!(POOL, "state" => "idle").set(f64::from(idle));
    metrics::gauge!(POOL, "state" => "busy").set(f64::from(size.saturating_sub(idle)));
    handle.render()
}
