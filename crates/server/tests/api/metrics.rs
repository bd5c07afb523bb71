//! Prometheus metrics on their own loopback listener: what an operator needs (requests by route
//! and status, latency, live streams, ingest, sessions and backlog per gateway, the pool), with
//! bounded labels — never a user name, an address or an id.

use super::audit_logs::{Writer, upload};
use super::*;

/// This test process's exporter (the `metrics` facade holds one per process).
fn exporter() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| portcullis_server::metrics::install().unwrap()).clone()
}

on_both_backends! {
async fn metrics_are_bounded_and_served_on_loopback_only() {
    let (r, code, server) = start_with_server().await;
    let handle = exporter();
    let outside = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let refused = server.serve_metrics(outside, handle.clone(), std::future::pending()).await;
    assert!(format!("{:?}", refused.unwrap_err()).contains("loopback"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let serving = server.clone();
    tokio::spawn(async move { serving.serve_metrics(listener, handle, std::future::pending()).await });

    let admin = enroll(&r, &code).await;
    let alice = member(&r, &admin, "alice-the-requester", &[Role::Requester], &[]).await;
    let bob = member(&r, &admin, "bob-the-approver", &[Role::Approver], &[]).await;
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    let request = approved(&r, &alice, &bob, "web").await;
    let _live = signed(&r, &alice, "GET", "/v1/live", b"", r.now(), &nonce()).send().await.unwrap();
    let g = gateway(&r, &admin, "dc-metrics").await;
    let mut w = Writer::new(&g);
    for i in 0..3 {
        w.append(chunk("s", &format!("line {i}")));
    }
    assert_eq!(upload(&r, &g, &w.batch(1, 3)).await.status(), 200);

    let text = r.http.get(&metrics_url).send().await.unwrap().text().await.unwrap();
    for series in [
        "portcullis_http_requests_total{route=\"/v1/requests/{id}/review\",method=\"POST\",status=\"200\"}",
        "portcullis_http_request_duration_seconds_bucket{route=\"/v1/requests\",le=\"0.05\"}",
        "portcullis_live_streams_open",
        "portcullis_audit_records_ingested_total",
        "portcullis_sessions_open{gateway=\"dc-metrics\"}",
        "portcullis_gateway_upload_backlog_records{gateway=\"dc-metrics\"}",
        "portcullis_db_pool_connections{state=\"idle\"}",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    for secret in ["alice-the-requester", "bob-the-approver", request.id.as_str(), "127.0.0.1"] {
        let carrying: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') && l.contains(secret)).collect();
        assert!(carrying.is_empty(), "labels carry {secret:?}: {carrying:?}");
    }
}
}
