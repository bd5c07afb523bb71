//! The server's API over real HTTP on loopback: authentication, replay protection, and the
//! audit upload rules (idempotent, no gaps, no rewrites).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use base64::Engine;
use portcullis_crypto::OsRng;
use portcullis_crypto::identity::{SealingIdentity, SigningIdentity};
use portcullis_keystore::{FixedPassphrase, Preference};
use portcullis_proto::*;
use portcullis_server::{InitOptions, Server, SystemClock};

struct Running {
    _dir: tempfile::TempDir,
    url: String,
    http: reqwest::Client,
}

struct Device {
    id: String,
    key: SigningIdentity,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

async fn start() -> (Running, String) {
    let dir = tempfile::tempdir().unwrap();
    let pass = FixedPassphrase("pw".into());
    let outcome = portcullis_server::init(
        dir.path(),
        InitOptions {
            key_store: Preference::Passphrase,
            admin_name: "admin".into(),
            extra_admin_roles: vec![],
            tls_names: vec![],
        },
        &pass,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let server = Server::open(dir.path(), &pass, Arc::new(SystemClock)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { server.serve(listener, false, std::future::pending()).await });
    let _ = rustls::crypto::ring::default_provider().install_default();
    (Running { _dir: dir, url, http: reqwest::Client::new() }, outcome.admin_code)
}

async fn enroll(r: &Running, code: &str) -> Device {
    let key = SigningIdentity::generate(&mut OsRng);
    let seal = SealingIdentity::generate(&mut OsRng);
    let resp: EnrollResponse = r
        .http
        .post(format!("{}/v1/enroll", r.url))
        .json(&EnrollRequest {
            code: code.into(),
            device_name: "test".into(),
            sign_public_key: b64().encode(key.public_key()),
            seal_public_key: b64().encode(seal.public_key()),
        })
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Device { id: resp.device_id, key }
}

/// A signed request; `time` and `nonce` are chosen by the test.
fn signed(
    r: &Running,
    d: &Device,
    method: &str,
    path: &str,
    body: &[u8],
    time: i64,
    nonce: &str,
) -> reqwest::RequestBuilder {
    let sig = d.key.sign(&request_signing_input(method, path, time, nonce, body));
    r.http
        .request(method.parse().unwrap(), format!("{}{}", r.url, path))
        .header(HEADER_DEVICE, &d.id)
        .header(HEADER_TIME, time.to_string())
        .header(HEADER_NONCE, nonce)
        .header(HEADER_SIGNATURE, b64().encode(sig))
        .header("content-type", "application/json")
        .body(body.to_vec())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn nonce() -> String {
    hex::encode(portcullis_crypto::random_bytes::<16>(&mut OsRng))
}

async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: ApiError = resp.json().await.unwrap();
    (status, body.code)
}

#[tokio::test]
async fn requests_are_authenticated_and_replays_refused() {
    let (r, code) = start().await;
    let d = enroll(&r, &code).await;

    let n = nonce();
    let ok = signed(&r, &d, "GET", "/v1/me", b"", now(), &n).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let me: WhoAmI = ok.json().await.unwrap();
    assert_eq!(me.user_name, "admin");

    // The same request again (same nonce): a replay.
    let again = signed(&r, &d, "GET", "/v1/me", b"", now(), &n).send().await.unwrap();
    assert_eq!(error_code(again).await, (403, "replay".into()));

    // Stale or future timestamps.
    let stale = signed(&r, &d, "GET", "/v1/me", b"", now() - 3600, &nonce()).send().await.unwrap();
    assert_eq!(error_code(stale).await, (403, "clock_skew".into()));

    // A signature by another key, or over another path, does not verify.
    let forger = Device { id: d.id.clone(), key: SigningIdentity::generate(&mut OsRng) };
    let forged = signed(&r, &forger, "GET", "/v1/me", b"", now(), &nonce()).send().await.unwrap();
    assert_eq!(error_code(forged).await, (401, "unauthorized".into()));
    let sig = d.key.sign(&request_signing_input("GET", "/v1/targets", now(), "x".repeat(32).as_str(), b""));
    let moved = r
        .http
        .get(format!("{}/v1/me", r.url))
        .header(HEADER_DEVICE, &d.id)
        .header(HEADER_TIME, now().to_string())
        .header(HEADER_NONCE, "x".repeat(32))
        .header(HEADER_SIGNATURE, b64().encode(sig))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(moved).await, (401, "unauthorized".into()));

    // No headers at all.
    let anonymous = r.http.get(format!("{}/v1/targets", r.url)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // The enrolment code was single-use.
    let reuse = r
        .http
        .post(format!("{}/v1/enroll", r.url))
        .json(&EnrollRequest {
            code,
            device_name: "again".into(),
            sign_public_key: b64().encode([1u8; 32]),
            seal_public_key: b64().encode([2u8; 32]),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(reuse).await, (403, "invalid_code".into()));
}

fn chunk(session: &str, text: &str) -> String {
    serde_json::to_string(&AuditPayload::SessionChunk(SessionChunk {
        session_id: session.into(),
        events: vec![(0.1, "o".into(), text.into())],
    }))
    .unwrap()
}

async fn upload(r: &Running, d: &Device, records: Vec<(u64, String)>) -> reqwest::Response {
    let batch =
        UploadBatch { records: records.into_iter().map(|(seq, payload)| UploadRecord { seq, payload }).collect() };
    let body = serde_json::to_vec(&batch).unwrap();
    signed(r, d, "POST", "/v1/audit/records", &body, now(), &nonce()).send().await.unwrap()
}

#[tokio::test]
async fn audit_upload_is_idempotent_and_rejects_gaps_and_rewrites() {
    let (r, code) = start().await;
    let d = enroll(&r, &code).await;

    let first = upload(&r, &d, vec![(1, chunk("s", "one")), (2, chunk("s", "two"))]).await;
    assert_eq!(first.status(), 200);
    let ack: UploadAck = first.json().await.unwrap();
    assert_eq!((ack.stored_through, ack.duplicates), (2, 0));

    // Re-sending what is stored (a retry after a lost acknowledgement) is accepted once.
    let retry = upload(&r, &d, vec![(2, chunk("s", "two")), (3, chunk("s", "three"))]).await;
    let ack: UploadAck = retry.json().await.unwrap();
    assert_eq!((ack.stored_through, ack.duplicates), (3, 1));

    // Rewriting an acknowledged record is refused, and nothing of that batch is stored.
    let rewrite = upload(&r, &d, vec![(4, chunk("s", "four")), (2, chunk("s", "TWO"))]).await;
    assert_eq!(error_code(rewrite).await, (403, "audit_rewrite".into()));
    // A gap is refused.
    let gap = upload(&r, &d, vec![(6, chunk("s", "six"))]).await;
    assert_eq!(error_code(gap).await, (403, "audit_gap".into()));
    // Malformed payloads are refused.
    let junk = upload(&r, &d, vec![(4, "{not json".into())]).await;
    assert_eq!(junk.status(), 400);

    // The log continues exactly where it was: 4 is next.
    let next = upload(&r, &d, vec![(4, chunk("s", "four"))]).await;
    let ack: UploadAck = next.json().await.unwrap();
    assert_eq!(ack.stored_through, 4);

    // The rejected attempts were raised as events for auditors.
    let events: Vec<ServerEvent> =
        signed(&r, &d, "GET", "/v1/audit/events", b"", now(), &nonce()).send().await.unwrap().json().await.unwrap();
    assert!(events.iter().any(|e| e.kind == "audit_rewrite"));
    assert!(events.iter().any(|e| e.kind == "audit_gap"));
}
