//! The server's API over real HTTP on loopback: authentication, replay protection, the split
//! between device and gateway routes, the audit upload rules (idempotent, no gaps, no
//! rewrites), and the canary: no route a device can call answers with a credential.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine;
use portcullis_crypto::OsRng;
use portcullis_crypto::identity::{SealingIdentity, SigningIdentity};
use portcullis_keystore::{FixedPassphrase, Preference};
use portcullis_proto::*;
use portcullis_server::{InitOptions, Server, SystemClock};

#[path = "../../../tests/support/postgres.rs"]
mod postgres;

/// The store a test's server keeps its data in. Tests written with [`on_both_backends!`] run
/// once on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    static BACKEND: Backend;
}

/// The backend of the running test (SQLite for tests that run on one only).
fn backend() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Sqlite)
}

/// A test run twice: `NAME::sqlite` and `NAME::postgres` (a fresh database on the test
/// process's PostgreSQL cluster).
macro_rules! on_both_backends {
    ($(#[$attr:meta])* async fn $name:ident() $body:block) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body() $body

            #[tokio::test]
            async fn sqlite() {
                crate::BACKEND.scope(crate::Backend::Sqlite, body()).await
            }

            #[tokio::test]
            async fn postgres() {
                crate::BACKEND.scope(crate::Backend::Postgres, body()).await
            }
        }
    };
}

struct Running {
    dir: tempfile::TempDir,
    /// The PostgreSQL database, when the test runs on it.
    database: Option<String>,
    url: String,
    http: reqwest::Client,
    /// Seconds the server's clock (and the devices' signing time) runs ahead of the real one.
    offset: Arc<AtomicI64>,
}

/// The real clock shifted by what a test sets (requests sign with the same shift).
struct ShiftedClock(Arc<AtomicI64>);

impl portcullis_server::Clock for ShiftedClock {
    fn now(&self) -> i64 {
        now() + self.0.load(Ordering::SeqCst)
    }
}

impl Running {
    fn now(&self) -> i64 {
        now() + self.offset.load(Ordering::SeqCst)
    }

    /// What makes the tamper connection ignore foreign keys (an attacker is not bound by them).
    fn foreign_keys_off(&self) -> &'static str {
        match self.database {
            None => "PRAGMA foreign_keys = OFF;",
            Some(_) => "SET session_replication_role = replica;",
        }
    }

    /// A connection to the server's database that bypasses the server, as an attacker on the
    /// host (or a DBA) would have. Statements use `$1` placeholders (both backends read them).
    async fn tamper(&self) -> sqlx::AnyConnection {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let url = match &self.database {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.dir.path().join("server.db").display()),
        };
        sqlx::AnyConnection::connect(&url).await.unwrap()
    }
}

#[path = "api/audit_logs.rs"]
mod audit_logs;
#[path = "api/duties.rs"]
mod duties;
#[path = "api/gateway_trust.rs"]
mod gateway_trust;
#[path = "api/metrics.rs"]
mod metrics;
#[path = "api/replicas.rs"]
mod replicas;
#[path = "api/secrets.rs"]
mod secrets;

struct Device {
    id: String,
    key: SigningIdentity,
    /// What the enrolment answer said about the server (devices only).
    server: Option<ServerIdentity>,
    /// The device's X25519 key (devices enrolled by [`enroll`]): opens what is released to it.
    seal: Option<SealingIdentity>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

async fn start() -> (Running, String) {
    let (r, code, _) = start_with_server().await;
    (r, code)
}

async fn start_with_server() -> (Running, String, Server) {
    start_as(vec![]).await
}

/// A server whose first admin also has `extra_roles`.
async fn start_as(extra_roles: Vec<Role>) -> (Running, String, Server) {
    let dir = tempfile::tempdir().unwrap();
    let pass = FixedPassphrase("pw".into());
    let database = match backend() {
        Backend::Sqlite => None,
        Backend::Postgres => Some(postgres::Cluster::shared().fresh_database()),
    };
    let outcome = portcullis_server::init(
        dir.path(),
        InitOptions {
            key_store: Preference::Passphrase,
            admin_name: "admin".into(),
            extra_admin_roles: extra_roles,
            tls_names: vec![],
            standalone: false,
            database: database.clone(),
        },
        &pass,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let offset = Arc::new(AtomicI64::new(0));
    let server = Server::open(dir.path(), &pass, Arc::new(ShiftedClock(offset.clone()))).await.unwrap();
    // What the embedded gateway reports when it starts (none runs in these tests).
    let embedded = server.embedded_gateway().await.unwrap();
    let beat = GatewayHeartbeat {
        address: "127.0.0.1:2222".into(),
        host_key: embedded.host_key.public_key().to_openssh().unwrap(),
        backlog: 0,
    };
    server.gateway_heartbeat(&embedded.id, &beat).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener, false, std::future::pending()).await });
    let _ = rustls::crypto::ring::default_provider().install_default();
    (Running { dir, database, url, http: reqwest::Client::new(), offset }, outcome.admin_code, server)
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
    Device { id: resp.device_id, key, server: Some(resp.server), seal: Some(seal) }
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
    signed_through(&r.http, r, d, method, path, body, time, nonce)
}

/// [`signed`], sent through `http` (a client of its own: another source address).
#[allow(clippy::too_many_arguments)]
fn signed_through(
    http: &reqwest::Client,
    r: &Running,
    d: &Device,
    method: &str,
    path: &str,
    body: &[u8],
    time: i64,
    nonce: &str,
) -> reqwest::RequestBuilder {
    let sig = d.key.sign(&request_signing_input(method, path, time, nonce, body));
    http.request(method.parse().unwrap(), format!("{}{}", r.url, path))
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

on_both_backends! {
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
    // The far ends of the clock are skew too, not an overflow (`now - time` at i64::MIN).
    for extreme in [i64::MIN, i64::MIN + 1, i64::MAX] {
        let far = signed(&r, &d, "GET", "/v1/me", b"", extreme, &nonce()).send().await.unwrap();
        assert_eq!(error_code(far).await, (403, "clock_skew".into()), "time {extreme}");
    }

    // A signature by another key, or over another path, does not verify.
    let forger = Device { id: d.id.clone(), key: SigningIdentity::generate(&mut OsRng), server: None, seal: None };
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
}

fn chunk(session: &str, text: &str) -> String {
    serde_json::to_string(&AuditPayload::SessionChunk(SessionChunk {
        session_id: session.into(),
        events: vec![(0.1, "o".into(), text.into())],
    }))
    .unwrap()
}

async fn call<T: serde::de::DeserializeOwned>(
    r: &Running,
    d: &Device,
    method: &str,
    path: &str,
    body: &impl serde::Serialize,
) -> T {
    let body = serde_json::to_vec(body).unwrap();
    let resp = signed(r, d, method, path, &body, r.now(), &nonce()).send().await.unwrap();
    assert!(resp.status().is_success(), "{method} {path}: {}", resp.text().await.unwrap());
    resp.json().await.unwrap()
}

/// A call that must be refused: (status, code, message).
async fn refused(
    r: &Running,
    d: &Device,
    method: &str,
    path: &str,
    body: &impl serde::Serialize,
) -> (u16, String, String) {
    let body = serde_json::to_vec(body).unwrap();
    let resp = signed(r, d, method, path, &body, r.now(), &nonce()).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert!(status >= 400, "{method} {path} should have been refused: {text}");
    let error: ApiError = serde_json::from_str(&text).unwrap();
    (status, error.code, error.message)
}

/// A gateway enrolled through the API with its own signing key, and confirmed by a second admin.
async fn gateway(r: &Running, admin: &Device, name: &str) -> Device {
    let g = unconfirmed_gateway(r, admin, name).await;
    let second = member(r, admin, &format!("{name}-confirmer"), &[Role::Admin], &[]).await;
    let _: GatewaySummary = call(r, &second, "POST", &format!("/v1/gateways/{name}/confirm"), &()).await;
    g
}

/// A gateway enrolled through the API with its own signing key; nobody confirmed it yet.
async fn unconfirmed_gateway(r: &Running, admin: &Device, name: &str) -> Device {
    let added: AddGatewayResponse =
        call(r, admin, "POST", "/v1/gateways", &AddGatewayRequest { name: name.into() }).await;
    let key = SigningIdentity::generate(&mut OsRng);
    let seal = SealingIdentity::generate(&mut OsRng);
    let host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHjB9qE3HBVGfD3cY0XkQkQZK3tMh4cD0wQJ1K6pNq5z gw";
    let resp: GatewayEnrollResponse = r
        .http
        .post(format!("{}/v1/gateway/enroll", r.url))
        .json(&GatewayEnrollRequest {
            code: added.enrolment_code,
            sign_public_key: b64().encode(key.public_key()),
            seal_public_key: b64().encode(seal.public_key()),
            host_key: host_key.into(),
        })
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(resp.user_ca.starts_with("ssh-ed25519 "));
    Device { id: resp.gateway_id, key, server: None, seal: None }
}

const HOST_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHjB9qE3HBVGfD3cY0XkQkQZK3tMh4cD0wQJ1K6pNq5z host";

/// A password target as an admin adds it: the password sealed to the server for `name`.
fn password_target(admin: &Device, name: &str, password: &[u8]) -> AddTargetRequest {
    let seal_key = b64().decode(&admin.server.clone().unwrap().seal_public_key).unwrap();
    let sealed =
        portcullis_crypto::identity::seal_to(&seal_key, password, INFO_TARGET_CREDENTIAL, name.as_bytes(), &mut OsRng)
            .unwrap();
    AddTargetRequest {
        name: name.into(),
        host: "127.0.0.1".into(),
        port: 22,
        login: "root".into(),
        host_key: HOST_KEY.into(),
        credential_kind: CredentialKind::Password,
        environment: "prod".into(),
        tags: vec![],
        description: String::new(),
        gateway: None,
        credential: sealed,
    }
}

/// `who` asks for `target`, `approver` approves; the request.
async fn approved(r: &Running, who: &Device, approver: &Device, target: &str) -> AccessRequestView {
    let req: AccessRequestView = call(
        r,
        who,
        "POST",
        "/v1/requests",
        &CreateAccessRequest { target: target.into(), duration_secs: 600, reason: "test".into(), access: None },
    )
    .await;
    let review = ReviewRequest { decision: Decision::Approve, reason: None, step_up: None };
    let _: AccessRequestView = call(r, approver, "POST", &format!("/v1/requests/{}/review", req.id), &review).await;
    req
}

on_both_backends! {
async fn device_and_gateway_keys_only_open_their_own_routes() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let g = gateway(&r, &admin, "near").await;
    // A device cannot upload records nor ask for a session's credential.
    let as_device =
        signed(&r, &admin, "POST", "/v1/gateway/records", br#"{"records":[]}"#, now(), &nonce()).send().await.unwrap();
    assert_eq!(as_device.status(), 401);
    let body = serde_json::to_vec(&SessionAuthorizationRequest {
        certificate: "x".into(),
        ssh_user: "web".into(),
        client_addr: String::new(),
    })
    .unwrap();
    let as_device = signed(&r, &admin, "POST", "/v1/gateway/sessions", &body, now(), &nonce()).send().await.unwrap();
    assert_eq!(as_device.status(), 401);
    // A gateway cannot act as a user.
    let as_gateway = signed(&r, &g, "GET", "/v1/targets", b"", now(), &nonce()).send().await.unwrap();
    assert_eq!(as_gateway.status(), 401);
    // The device release path of old is gone.
    let old = signed(&r, &admin, "POST", "/v1/connect", br#"{"target":"web"}"#, now(), &nonce()).send().await.unwrap();
    assert_eq!(old.status(), 404);
    // A gateway's code is single-use.
    let again: Vec<GatewaySummary> = call(&r, &admin, "GET", "/v1/gateways", &()).await;
    assert!(again.iter().any(|x| x.name == "near" && x.enrolled_at.is_some()));
    assert!(again.iter().any(|x| x.embedded && x.name == "embedded"));
}
}

on_both_backends! {
/// Invariant 3: every route a device may call, called by a requester's device holding a live
/// grant for a target whose credential is the canary: no answer carries the credential.
async fn no_device_route_answers_with_a_credential() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let who: WhoAmI = call(&r, &admin, "GET", "/v1/me", &()).await;
    assert_eq!(who.user_name, "admin");
    let user = |name: &str, roles: Vec<Role>| AddUserRequest { name: name.into(), roles, groups: vec![] };
    let alice: AddUserResponse = call(&r, &admin, "POST", "/v1/users", &user("alice", vec![Role::Requester])).await;
    let bob: AddUserResponse =
        call(&r, &admin, "POST", "/v1/users", &user("bob", vec![Role::Approver, Role::Auditor])).await;
    let alice = enroll(&r, alice.enrolment_code.as_deref().unwrap()).await;
    let bob = enroll(&r, bob.enrolment_code.as_deref().unwrap()).await;

    // The canary: a password the server must only ever hand to a gateway.
    let canary = format!("canary-{}", hex::encode(portcullis_crypto::random_bytes::<16>(&mut OsRng)));
    let target = password_target(&admin, "web", canary.as_bytes());
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &target).await;
    let req = approved(&r, &alice, &bob, "web").await;
    // A vault secret whose value is the canary too (revealable only through check-out, never
    // through these routes).
    let _: portcullis_vault::wire::SecretView =
        call(&r, &admin, "POST", "/v1/secrets", &secrets::password_secret(&admin, "vaulted", &canary, "admin")).await;

    // Every device route, with plausible bodies, as the grant holder and as an admin.
    let key_line = {
        use std::process::Command;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        assert!(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&path)
                .status()
                .unwrap()
                .success()
        );
        std::fs::read_to_string(path.with_extension("pub")).unwrap()
    };
    let mut answers = String::new();
    let mut called = 0;
    for (method, template) in portcullis_server::api::DEVICE_ROUTES {
        let name = if template.starts_with("/v1/secrets/") { "vaulted" } else { "web" };
        let path = template.replace("{name}", name).replace("{id}", &req.id);
        let body: Vec<u8> = match (*method, *template) {
            ("POST", "/v1/users") => serde_json::to_vec(&user("carol", vec![Role::Requester])).unwrap(),
            ("POST", "/v1/targets") => {
                serde_json::to_vec(&AddTargetRequest { name: "web2".into(), ..target.clone() }).unwrap()
            }
            ("PUT", "/v1/targets/{name}") => serde_json::to_vec(&UpdateTargetRequest {
                host: "127.0.0.1".into(),
                port: 22,
                login: "root".into(),
                host_key: HOST_KEY.into(),
                credential_kind: CredentialKind::Password,
                environment: "prod".into(),
                tags: vec!["x".into()],
                description: "edited".into(),
                gateway: None,
                credential: None,
            })
            .unwrap(),
            ("POST", "/v1/requests") => {
                serde_json::to_vec(&CreateAccessRequest { target: "web".into(), duration_secs: 60, reason: "x".into(), access: None })
                    .unwrap()
            }
            ("POST", "/v1/requests/{id}/review") => {
                serde_json::to_vec(&ReviewRequest { decision: Decision::Deny, reason: None, step_up: None }).unwrap()
            }
            ("POST", "/v1/certificates") => {
                serde_json::to_vec(&CertificateRequest { target: "web".into(), public_key: key_line.clone() }).unwrap()
            }
            ("POST", "/v1/gateways") => serde_json::to_vec(&AddGatewayRequest { name: "gw".into() }).unwrap(),
            ("POST", "/v1/secrets") => {
                serde_json::to_vec(&secrets::password_secret(&admin, "vaulted2", &canary, "admin")).unwrap()
            }
            ("PUT", "/v1/secrets/{name}") => serde_json::to_vec(&portcullis_vault::wire::EditSecretRequest {
                description: Some("edited".into()),
                ..Default::default()
            })
            .unwrap(),
            ("POST", "/v1/secrets/{name}/restore") => {
                serde_json::to_vec(&portcullis_vault::wire::RestoreSecretRequest { version: 1, reason: String::new() })
                    .unwrap()
            }
            ("POST", "/v1/secrets/{name}/remove" | "/v1/secrets/{name}/purge") => b"{}".to_vec(),
            _ => Vec::new(),
        };
        for device in [&alice, &admin, &bob] {
            let mut resp = signed(&r, device, method, &path, &body, now(), &nonce()).send().await.unwrap();
            if path == "/v1/live" {
                // An event stream stays open: read what it says first.
                let first = tokio::time::timeout(std::time::Duration::from_secs(2), resp.chunk()).await;
                answers.push_str(&format!("{first:?}"));
                continue;
            }
            answers.push_str(&format!("{method} {path} {}\n", resp.status()));
            answers.push_str(&resp.text().await.unwrap());
            called += 1;
        }
    }
    assert!(called >= 3 * (portcullis_server::api::DEVICE_ROUTES.len() - 1));
    // The certificate was issued to the grant holder (a positive control: the routes worked).
    assert!(answers.contains("ssh-ed25519-cert-v01@openssh.com"), "{answers}");
    assert!(!answers.contains(&canary), "a device route answered with the credential");
    assert!(
        !answers.contains(&b64().encode(canary.as_bytes())),
        "a device route answered with the credential (base64)"
    );
}
}

/// The router's device routes and [`portcullis_server::api::DEVICE_ROUTES`] are the same list,
/// so the canary test above covers every route a device can reach.
#[test]
fn device_routes_are_all_listed() {
    let source = include_str!("../src/api/mod.rs");
    let block =
        source.split("let device_signed = Router::new()").nth(1).unwrap().split(".route_layer(").next().unwrap();
    let mut routed = Vec::new();
    for line in block.lines().filter(|l| l.contains(".route(\"")) {
        let path = line.split('"').nth(1).unwrap();
        for method in ["get", "post", "put", "delete", "patch"] {
            if line.contains(&format!("{method}(")) || line.contains(&format!(".{method}(")) {
                routed.push((method.to_uppercase(), path.to_string()));
            }
        }
    }
    let mut listed: Vec<_> =
        portcullis_server::api::DEVICE_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    routed.sort();
    listed.sort();
    assert_eq!(routed, listed);
}

/// The user CA's private key, read from the data directory with the root key — what only the
/// server's owner holds. Tests use it to sign certificates the server never issued.
async fn user_ca_of(r: &Running) -> portcullis_server::user_ca::UserCa {
    let dir = r.dir.path();
    let (root, _) =
        portcullis_keystore::unlock(&dir.join("root.key.json"), "server-root", &FixedPassphrase("pw".into())).unwrap();
    let mut db = r.tamper().await;
    let ct: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM server_secrets WHERE name = 'user_ca'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let text =
        root.open(&ct, &portcullis_crypto::Aad::for_field("server_secrets", "user_ca", 1, "ciphertext")).unwrap();
    portcullis_server::user_ca::UserCa::from_openssh(std::str::from_utf8(text.expose_secret()).unwrap()).unwrap()
}

on_both_backends! {
/// Only a certificate this server issued, for this key and a live grant of its principal, on
/// the grant's target, through the target's gateway, opens a session — each refusal says why.
async fn gateways_are_told_to_refuse_every_certificate_but_the_right_one() {
    use portcullis_server::user_ca::random_ed25519;
    let (r, code, server) = start_with_server().await;
    let admin = enroll(&r, &code).await;
    let user = |name: &str, roles: Vec<Role>| AddUserRequest { name: name.into(), roles, groups: vec![] };
    let mut devices = Vec::new();
    for (name, roles) in
        [("alice", vec![Role::Requester]), ("carol", vec![Role::Requester]), ("bob", vec![Role::Approver])]
    {
        let added: AddUserResponse = call(&r, &admin, "POST", "/v1/users", &user(name, roles)).await;
        devices.push(enroll(&r, added.enrolment_code.as_deref().unwrap()).await);
    }
    let [alice, carol, bob] = <[Device; 3]>::try_from(devices).ok().unwrap();
    let far = gateway(&r, &admin, "far").await;
    for name in ["web", "db"] {
        let _: TargetSummary =
            call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, name, b"the-password")).await;
    }
    for (who, target) in [(&alice, "web"), (&alice, "db"), (&carol, "web")] {
        approved(&r, who, &bob, target).await;
    }
    let certify = |key: &russh::keys::PrivateKey| CertificateRequest {
        target: "web".into(),
        public_key: key.public_key().to_openssh().unwrap(),
    };
    let alice_key = random_ed25519();
    let good: CertificateResponse = call(&r, &alice, "POST", "/v1/certificates", &certify(&alice_key)).await;
    let carol_key = random_ed25519();
    let carols: CertificateResponse = call(&r, &carol, "POST", "/v1/certificates", &certify(&carol_key)).await;
    let good_cert = russh::keys::Certificate::from_openssh(&good.certificate).unwrap();
    assert_eq!(good_cert.key_id(), good.grant_id);
    assert_eq!(good_cert.valid_principals(), ["alice".to_string()]);

    let embedded = server.embedded_gateway().await.unwrap().id;
    let ask = |certificate: String, ssh_user: &str, gateway: &str| {
        let req =
            SessionAuthorizationRequest { certificate, ssh_user: ssh_user.into(), client_addr: "127.0.0.1:1".into() };
        let server = server.clone();
        let gateway = gateway.to_string();
        async move { server.authorize_session(&gateway, &req).await }
    };
    // The right one, and the credential comes with it (to the gateway only).
    let ok = ask(good.certificate.clone(), "web", &embedded).await.unwrap();
    assert_eq!(ok.credential.expose_secret(), b"the-password");
    let s = &ok.session;
    assert_eq!((s.user.as_str(), s.target.as_str(), s.login.as_str()), ("alice", "web", "root"));

    let ca = user_ca_of(&r).await;
    let now = now() as u64;
    let sign =
        |ca: &portcullis_server::user_ca::UserCa, principal: &str, grant: &str, serial: u64, from: u64, to: u64| {
            ca.issue(alice_key.public_key(), principal, grant, serial, from, to).unwrap().to_openssh().unwrap()
        };
    let own_ca = portcullis_server::user_ca::UserCa::from_openssh(
        &portcullis_server::user_ca::to_openssh_secret(&random_ed25519()).unwrap().expose_secret().clone(),
    )
    .unwrap();
    let serial = good_cert.serial();
    let table: Vec<(&str, String, &str, &str, &str)> = vec![
        ("another target", good.certificate.clone(), "db", embedded.as_str(), "this certificate opens web, not \"db\""),
        (
            "another gateway",
            good.certificate.clone(),
            "web",
            far.id.as_str(),
            "reached through gateway embedded, not far",
        ),
        (
            "self-signed",
            sign(&own_ca, "alice", &good.grant_id, serial, now - 10, now + 600),
            "web",
            embedded.as_str(),
            "not issued by this Portcullis server's user CA",
        ),
        (
            "expired",
            sign(&ca, "alice", &good.grant_id, serial, now - 600, now - 10),
            "web",
            embedded.as_str(),
            "expired",
        ),
        (
            "not yet valid",
            sign(&ca, "alice", &good.grant_id, serial, now + 600, now + 900),
            "web",
            embedded.as_str(),
            "not valid before",
        ),
        (
            "never issued",
            sign(&ca, "alice", &good.grant_id, 12345, now - 10, now + 600),
            "web",
            embedded.as_str(),
            "not issued by this server for this key",
        ),
        (
            "another grant",
            sign(&ca, "alice", &carols.grant_id, serial, now - 10, now + 600),
            "web",
            embedded.as_str(),
            "not issued by this server for this key",
        ),
        (
            "another user",
            sign(&ca, "carol", &good.grant_id, serial, now - 10, now + 600),
            "web",
            embedded.as_str(),
            "not for the grant's user",
        ),
        ("garbage", "ssh-ed25519-cert-v01@openssh.com AAAA".into(), "web", embedded.as_str(), "malformed"),
    ];
    for (what, certificate, ssh_user, gateway_id, want) in table {
        let refused = ask(certificate, ssh_user, gateway_id).await.map(|_| ()).unwrap_err().to_string();
        assert!(refused.contains(want), "{what}: {refused}");
    }
    // Carol's own certificate is hers: it opens web for her, not for anyone else's key.
    assert_eq!(ask(carols.certificate.clone(), "web", &embedded).await.unwrap().session.user, "carol");

    // The target moves: live grants end, and the same certificate is now refused as revoked.
    let sealed = password_target(&admin, "web", b"new-password").credential;
    let moved = UpdateTargetRequest {
        host: "127.0.0.1".into(),
        port: 2022,
        login: "root".into(),
        host_key: HOST_KEY.into(),
        credential_kind: CredentialKind::Password,
        environment: String::new(),
        tags: vec![],
        description: String::new(),
        gateway: None,
        credential: Some(sealed),
    };
    let _: TargetSummary = call(&r, &admin, "PUT", "/v1/targets/web", &moved).await;
    let refused = ask(good.certificate.clone(), "web", &embedded).await.unwrap_err().to_string();
    assert!(refused.contains("was revoked (target changed: port)"), "{refused}");
    // Every refusal above is a security event.
    let events: Vec<ServerEvent> = call(&r, &admin, "GET", "/v1/audit/events", &()).await;
    assert!(events.iter().filter(|e| e.kind == "session_refused").count() >= 10, "{events:?}");
}
}

/// An enrolled user `name` with `roles` and `groups`, created by `admin`.
async fn member(r: &Running, admin: &Device, name: &str, roles: &[Role], groups: &[&str]) -> Device {
    let req = AddUserRequest {
        name: name.into(),
        roles: roles.to_vec(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    let added: AddUserResponse = call(r, admin, "POST", "/v1/users", &req).await;
    enroll(r, added.enrolment_code.as_deref().unwrap()).await
}

fn ask(target: &str, secs: u64) -> CreateAccessRequest {
    CreateAccessRequest { target: target.into(), duration_secs: secs, reason: "deploy the fix".into(), access: None }
}

const APPROVE: ReviewRequest = ReviewRequest { decision: Decision::Approve, reason: None, step_up: None };
const DENY: ReviewRequest = ReviewRequest { decision: Decision::Deny, reason: None, step_up: None };

/// The README's first worked example, served for real: prod needs two approvals from dbas.
const PROD_TWO_DBAS: &str = r#"
@id("prod-two-dbas")
@approvals("2")
@approvers("dbas")
permit (principal, action == Portcullis::Action::"request", resource in Portcullis::Environment::"prod")
when { principal.roles.contains("requester") && context.duration <= duration("2h") };

@id("approvers-approve")
permit (principal, action == Portcullis::Action::"approve", resource)
when { principal.roles.contains("approver") };
"#;

on_both_backends! {
async fn policies_decide_requests_and_how_many_approve() {
    let (r, code, _server) = start_with_server().await;
    let admin = enroll(&r, &code).await;
    let _: GroupView = call(&r, &admin, "POST", "/v1/groups", &AddGroupRequest { name: "dbas".into() }).await;
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let bob = member(&r, &admin, "bob", &[Role::Approver], &[]).await;
    let carol = member(&r, &admin, "carol", &[Role::Approver], &["dbas"]).await;
    let dave = member(&r, &admin, "dave", &[Role::Approver], &["dbas"]).await;
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "db", b"pw-db")).await;

    // The default set is shown and in force: up to 8 hours, one approval.
    let default: PolicyView = call(&r, &admin, "GET", "/v1/policy", &()).await;
    assert!(default.text.contains("requesters-up-to-8h") && default.created_by.is_none(), "{}", default.text);

    // Refused policy sets name line and column, and leave the one in force.
    let bad = PolicyText { text: PROD_TWO_DBAS.replace("principal.roles", "principal.rolez") };
    let (status, code, message) = refused(&r, &admin, "PUT", "/v1/policy", &bad).await;
    assert_eq!((status, code.as_str()), (403, "policy_invalid"));
    assert!(message.contains("line 6, column") && message.contains("rolez"), "{message}");
    let check: PolicyCheck = call(&r, &admin, "POST", "/v1/policy/check", &bad).await;
    assert!(!check.valid && check.problems[0].line == Some(6), "{:?}", check.problems);
    let still: PolicyView = call(&r, &admin, "GET", "/v1/policy", &()).await;
    assert_eq!(still.version, default.version);
    // Only admins change policies.
    let (status, ..) = refused(&r, &carol, "PUT", "/v1/policy", &PolicyText { text: PROD_TWO_DBAS.into() }).await;
    assert_eq!(status, 403);

    let set: PolicyView = call(&r, &admin, "PUT", "/v1/policy", &PolicyText { text: PROD_TWO_DBAS.into() }).await;
    assert_eq!((set.version, set.policies), (default.version + 1, 2));

    // What-if, then the real thing: too long is refused at once, naming the limit.
    let what_if = PolicyTestRequest {
        user: "alice".into(),
        target: "db".into(),
        duration_secs: 3 * 3600,
        at: None,
        source_ip: None,
        text: None,
    };
    let tested: PolicyTestResult = call(&r, &admin, "POST", "/v1/policy/test", &what_if).await;
    assert!(tested.summary.starts_with("deny") && tested.summary.contains("2h"), "{}", tested.summary);
    let tested: PolicyTestResult =
        call(&r, &admin, "POST", "/v1/policy/test", &PolicyTestRequest { duration_secs: 3600, ..what_if }).await;
    assert!(tested.summary.starts_with("allow") && tested.summary.contains("2 approvals"), "{}", tested.summary);
    let (_, code, message) = refused(&r, &alice, "POST", "/v1/requests", &ask("db", 3 * 3600)).await;
    assert_eq!(code, "policy_denied");
    assert!(message.contains("2h") && message.contains("prod-two-dbas"), "{message}");

    // Control characters in a reason are refused (they would rewrite an approver's terminal).
    let sneaky = CreateAccessRequest { reason: "ok\u{1b}[2J\u{1b}[Hlooks fine".into(), ..ask("db", 600) };
    let (status, _, message) = refused(&r, &alice, "POST", "/v1/requests", &sneaky).await;
    assert!(status == 400 && message.contains("control character"), "{message}");
    let mut painted = password_target(&admin, "painted", b"pw");
    painted.description = "front\u{1b}]0;owned\u{7}".into();
    let (status, _, message) = refused(&r, &admin, "POST", "/v1/targets", &painted).await;
    assert!(status == 400 && message.contains("control character"), "{message}");

    let req: AccessRequestView = call(&r, &alice, "POST", "/v1/requests", &ask("db", 3600)).await;
    assert_eq!((req.approvals, req.approvals_needed, req.approver_groups.clone()), (0, 2, vec!["dbas".to_string()]));
    let review = format!("/v1/requests/{}/review", req.id);
    let painted = ReviewRequest { decision: Decision::Deny, reason: Some("no\u{8}\u{8}yes".into()), step_up: None };
    let (status, _, message) = refused(&r, &carol, "POST", &review, &painted).await;
    assert!(status == 400 && message.contains("control character"), "{message}");

    // An approver outside dbas does not count; nobody reviews their own request.
    let (_, code, message) = refused(&r, &bob, "POST", &review, &APPROVE).await;
    assert_eq!(code, "not_in_approver_group", "{message}");
    let (_, code, _) = refused(&r, &alice, "POST", &review, &APPROVE).await;
    assert!(code == "not_approver" || code == "self_approval");

    let one: AccessRequestView = call(&r, &carol, "POST", &review, &APPROVE).await;
    assert_eq!((one.status, one.approvals, one.approvals_needed), (RequestStatus::Pending, 1, 2));
    // Each approver counts once.
    let (status, ..) = refused(&r, &carol, "POST", &review, &APPROVE).await;
    assert_eq!(status, 409);
    // No certificate before the threshold.
    let cert = CertificateRequest { target: "db".into(), public_key: HOST_KEY.into() };
    let (_, code, message) = refused(&r, &alice, "POST", "/v1/certificates", &cert).await;
    assert_eq!(code, "pending", "{message}");

    let two: AccessRequestView = call(&r, &dave, "POST", &review, &APPROVE).await;
    assert_eq!((two.status, two.approvals), (RequestStatus::Approved, 2));
    assert!(two.grant_id.is_some());

    // The story, in order.
    let story: RequestDetail = call(&r, &alice, "GET", &format!("/v1/requests/{}", req.id), &()).await;
    let kinds: Vec<&str> = story.timeline.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["requested", "permitted", "approved", "approved", "granted"], "{:?}", story.timeline);
    assert!(story.timeline[1].text.contains("prod-two-dbas"));
    assert!(story.timeline[2].text.contains("1 of 2") && story.timeline[2].actor.as_deref() == Some("carol"));
    assert_eq!(story.reviews.len(), 2);
    // Someone else's request is not a requester's to read.
    let erin = member(&r, &admin, "erin", &[Role::Requester], &[]).await;
    let (status, ..) = refused(&r, &erin, "GET", &format!("/v1/requests/{}", req.id), &()).await;
    assert_eq!(status, 404);

    // Revocation: not by another requester; by the holder; then nothing more to approve.
    let (status, ..) =
        refused(&r, &erin, "POST", "/v1/revoke", &RevokeRequest { id: req.id.clone(), reason: None }).await;
    assert_eq!(status, 403);
    let revoke = RevokeRequest { id: two.grant_id.clone().unwrap(), reason: Some("done early".into()) };
    let outcome: RevokeOutcome = call(&r, &alice, "POST", "/v1/revoke", &revoke).await;
    assert_eq!(outcome.request.status, RequestStatus::Revoked);
    let (_, code, message) = refused(&r, &alice, "POST", "/v1/certificates", &cert).await;
    assert!(code == "grant_revoked" && message.contains("done early"), "{code}: {message}");
    let (status, ..) = refused(&r, &alice, "POST", "/v1/revoke", &revoke).await;
    assert_eq!(status, 409);
    let story: RequestDetail = call(&r, &bob, "GET", &format!("/v1/requests/{}", req.id), &()).await;
    assert_eq!(story.timeline.last().map(|e| e.kind.as_str()), Some("revoked"));

    // A withdrawn request can no longer be approved; an expired one neither.
    let pending: AccessRequestView = call(&r, &alice, "POST", "/v1/requests", &ask("db", 600)).await;
    let _: RevokeOutcome =
        call(&r, &alice, "POST", "/v1/revoke", &RevokeRequest { id: pending.id.clone(), reason: None }).await;
    let (_, code, _) = refused(&r, &carol, "POST", &format!("/v1/requests/{}/review", pending.id), &APPROVE).await;
    assert_eq!(code, "request_revoked");
    let lapsing: AccessRequestView = call(&r, &alice, "POST", "/v1/requests", &ask("db", 600)).await;
    r.offset.store(PENDING_REQUEST_TTL_SECS + 1, Ordering::SeqCst);
    let (_, code, _) = refused(&r, &carol, "POST", &format!("/v1/requests/{}/review", lapsing.id), &APPROVE).await;
    assert_eq!(code, "request_expired");
}
}

on_both_backends! {
async fn two_approvers_racing_for_the_last_approval_make_one_grant() {
    let (r, code, _server) = start_with_server().await;
    let admin = enroll(&r, &code).await;
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let bob = member(&r, &admin, "bob", &[Role::Approver], &[]).await;
    let carol = member(&r, &admin, "carol", &[Role::Approver], &[]).await;
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    for round in 0..5 {
        let req: AccessRequestView = call(&r, &alice, "POST", "/v1/requests", &ask("web", 600)).await;
        let path = format!("/v1/requests/{}/review", req.id);
        let body = serde_json::to_vec(&APPROVE).unwrap();
        let (a, b) = tokio::join!(
            signed(&r, &bob, "POST", &path, &body, r.now(), &nonce()).send(),
            signed(&r, &carol, "POST", &path, &body, r.now(), &nonce()).send()
        );
        let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "round {round}");
        let story: RequestDetail = call(&r, &alice, "GET", &format!("/v1/requests/{}", req.id), &()).await;
        assert_eq!(story.reviews.len(), 1, "round {round}: the loser's review is not kept");
        assert_eq!(story.request.approvals, 1);
    }
}
}

on_both_backends! {
async fn separation_of_duties_and_revoking_people_end_their_access() {
    let (r, code, server) = start_as(vec![Role::Approver]).await;
    let admin = enroll(&r, &code).await;
    let _: GroupView = call(&r, &admin, "POST", "/v1/groups", &AddGroupRequest { name: "ops".into() }).await;
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    // The admin created frank: another approver must judge frank's requests.
    let frank = member(&r, &admin, "frank", &[Role::Requester], &[]).await;
    let req: AccessRequestView = call(&r, &frank, "POST", "/v1/requests", &ask("web", 600)).await;
    let (_, code, message) = refused(&r, &admin, "POST", &format!("/v1/requests/{}/review", req.id), &APPROVE).await;
    assert!(code == "separation_of_duties" && message.contains("created"), "{message}");

    // A second admin (also an approver) did not create frank, but changing frank's groups bars
    // them for 24 hours.
    let adm2 = member(&r, &admin, "adm2", &[Role::Admin, Role::Approver], &[]).await;
    let bob = member(&r, &admin, "bob", &[Role::Approver], &[]).await;
    let _: UserView =
        call(&r, &adm2, "PUT", "/v1/users/frank/groups", &SetGroupsRequest { groups: vec!["ops".into()] }).await;
    let (_, code, message) = refused(&r, &adm2, "POST", &format!("/v1/requests/{}/review", req.id), &APPROVE).await;
    assert!(code == "separation_of_duties" && message.contains("groups"), "{message}");
    r.offset.store(25 * 3600, Ordering::SeqCst);
    let later: AccessRequestView = call(&r, &frank, "POST", "/v1/requests", &ask("web", 600)).await;
    let ok: AccessRequestView = call(&r, &adm2, "POST", &format!("/v1/requests/{}/review", later.id), &APPROVE).await;
    assert_eq!(ok.status, RequestStatus::Approved);
    let grant = ok.grant_id.clone().unwrap();
    let standing = GrantStandingRequest { grants: vec![grant.clone()] };
    assert!(server.grant_standing(&standing).await.unwrap().ended.is_empty());

    // frank's live stream is open; removing the requester role revokes the grant, withdraws
    // the pending request, tells the gateways and closes the stream.
    let pending: AccessRequestView = call(&r, &frank, "POST", "/v1/requests", &ask("web", 600)).await;
    let mut live = signed(&r, &frank, "GET", "/v1/live", b"", r.now(), &nonce()).send().await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), live.chunk()).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first.unwrap()).contains("ready"));
    let outcome: AccessChangeOutcome =
        call(&r, &admin, "PUT", "/v1/users/frank/roles", &SetRolesRequest { roles: vec![Role::Auditor] }).await;
    assert_eq!((outcome.grants_revoked, outcome.requests_withdrawn), (1, 1));
    let ended = server.grant_standing(&standing).await.unwrap().ended;
    assert_eq!(ended.len(), 1);
    assert!(ended[0].reason.contains("requester role removed"), "{:?}", ended);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(chunk) = live.chunk().await.unwrap() {
            let _ = chunk;
        }
    })
    .await;
    assert!(closed.is_ok(), "the live stream stayed open after the role change");
    let pending: RequestDetail = call(&r, &bob, "GET", &format!("/v1/requests/{}", pending.id), &()).await;
    assert_eq!(pending.request.status, RequestStatus::Revoked);

    // Disabling a user ends everything at once; their device is refused from then on.
    let gina = member(&r, &admin, "gina", &[Role::Requester], &[]).await;
    let req: AccessRequestView = call(&r, &gina, "POST", "/v1/requests", &ask("web", 600)).await;
    let ok: AccessRequestView = call(&r, &bob, "POST", &format!("/v1/requests/{}/review", req.id), &APPROVE).await;
    let gina_grant = GrantStandingRequest { grants: vec![ok.grant_id.clone().unwrap()] };
    let (_, code, _) = refused(&r, &admin, "POST", "/v1/users/admin/disable", &()).await;
    assert_eq!(code, "self_disable");
    let outcome: AccessChangeOutcome = call(&r, &admin, "POST", "/v1/users/gina/disable", &()).await;
    assert_eq!(outcome.grants_revoked, 1);
    assert!(server.grant_standing(&gina_grant).await.unwrap().ended[0].reason.contains("disabled"));
    let (status, _, message) = refused(&r, &gina, "GET", "/v1/me", &()).await;
    assert!(status == 401 && message.contains("disabled"), "{message}");

    // A device revoked by its owner (a lost laptop): its grants end, it can no longer sign in.
    let hugo = member(&r, &admin, "hugo", &[Role::Requester], &[]).await;
    let req: AccessRequestView = call(&r, &hugo, "POST", "/v1/requests", &ask("web", 600)).await;
    let ok: AccessRequestView = call(&r, &bob, "POST", &format!("/v1/requests/{}/review", req.id), &APPROVE).await;
    let hugo_grant = GrantStandingRequest { grants: vec![ok.grant_id.clone().unwrap()] };
    // Not someone else's device.
    let (status, ..) = refused(&r, &frank, "POST", &format!("/v1/devices/{}/revoke", hugo.id), &()).await;
    assert!(status == 403 || status == 401);
    let outcome: AccessChangeOutcome = call(&r, &hugo, "POST", &format!("/v1/devices/{}/revoke", hugo.id), &()).await;
    assert_eq!(outcome.grants_revoked, 1);
    assert!(server.grant_standing(&hugo_grant).await.unwrap().ended[0].reason.contains("revoked"));
    let (status, ..) = refused(&r, &hugo, "GET", "/v1/me", &()).await;
    assert_eq!(status, 401);

    // Every change is in the security-event log with its actor.
    let events: Vec<ServerEvent> = call(&r, &admin, "GET", "/v1/audit/events", &()).await;
    for kind in ["group_added", "user_groups_changed", "user_roles_changed", "user_disabled", "device_revoked"] {
        let e = events.iter().find(|e| e.kind == kind).unwrap_or_else(|| panic!("no {kind} event"));
        assert!(e.actor.is_some(), "{kind} has no actor");
    }
}
}

mod keys {
    //! WebAuthn step-up with webauthn-rs's software authenticator: the full ceremony, then every
    //! answer the server must refuse.

    use super::*;
    use webauthn_authenticator_rs::WebauthnAuthenticator;
    use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};
    use webauthn_authenticator_rs::softtoken::SoftToken;

    pub fn token() -> SoftToken {
        SoftToken::new(true).unwrap().0
    }

    fn origin(c: &KeyChallenge) -> Url {
        Url::parse(&c.origin).unwrap()
    }

    /// Registers `token` as `name` for `who`.
    pub async fn register(r: &Running, who: &Device, token: &mut SoftToken, name: &str) -> SecurityKeyView {
        let c: KeyChallenge =
            call(r, who, "POST", "/v1/keys/register", &KeyRegistrationStart { name: name.into(), step_up: None }).await;
        let options: CreationChallengeResponse = serde_json::from_value(c.options.clone()).unwrap();
        let credential = token.do_registration(origin(&c), options).unwrap();
        let finish = KeyRegistrationFinish {
            challenge_id: c.challenge_id,
            credential: serde_json::to_value(credential).unwrap(),
        };
        call(r, who, "POST", "/v1/keys", &finish).await
    }

    /// A registration answer that claims an existing credential id (`claimed`): what a hostile
    /// or cloned authenticator can send. The token's answer is rewritten to the "none"
    /// attestation format (no signature over the authenticator data), naming `claimed`.
    pub async fn register_claiming(
        r: &Running,
        who: &Device,
        token: &mut SoftToken,
        name: &str,
        claimed: &[u8],
    ) -> (u16, String) {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use serde_cbor_2::Value;
        let c: KeyChallenge =
            call(r, who, "POST", "/v1/keys/register", &KeyRegistrationStart { name: name.into(), step_up: None }).await;
        let options: CreationChallengeResponse = serde_json::from_value(c.options.clone()).unwrap();
        let mut credential = serde_json::to_value(token.do_registration(origin(&c), options).unwrap()).unwrap();
        let object = credential["response"]["attestationObject"].as_str().unwrap().to_string();
        let Value::Map(mut map) = serde_cbor_2::from_slice(&URL_SAFE_NO_PAD.decode(object).unwrap()).unwrap() else {
            panic!("the attestation object is not a map")
        };
        let Some(Value::Bytes(auth)) = map.get(&Value::Text("authData".into())).cloned() else { panic!("no authData") };
        // rpIdHash 32, flags 1, counter 4, AAGUID 16, id length 2, id, public key.
        let len = u16::from_be_bytes([auth[53], auth[54]]) as usize;
        let mut forged = auth[..53].to_vec();
        forged.extend_from_slice(&(claimed.len() as u16).to_be_bytes());
        forged.extend_from_slice(claimed);
        forged.extend_from_slice(&auth[55 + len..]);
        map.insert(Value::Text("authData".into()), Value::Bytes(forged));
        map.insert(Value::Text("fmt".into()), Value::Text("none".into()));
        map.insert(Value::Text("attStmt".into()), Value::Map(Default::default()));
        let object = URL_SAFE_NO_PAD.encode(serde_cbor_2::to_vec(&Value::Map(map)).unwrap());
        credential["response"]["attestationObject"] = object.into();
        credential["id"] = URL_SAFE_NO_PAD.encode(claimed).into();
        credential["rawId"] = URL_SAFE_NO_PAD.encode(claimed).into();
        let body = serde_json::to_vec(&KeyRegistrationFinish { challenge_id: c.challenge_id, credential }).unwrap();
        let resp = signed(r, who, "POST", "/v1/keys", &body, r.now(), &nonce()).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// Registration confirmed (or not) by an assertion; the answer's status and body.
    pub async fn register_confirmed(
        r: &Running,
        who: &Device,
        token: &mut SoftToken,
        name: &str,
        step_up: Option<StepUpAssertion>,
    ) -> (u16, String) {
        let body = serde_json::to_vec(&KeyRegistrationStart { name: name.into(), step_up }).unwrap();
        let resp = signed(r, who, "POST", "/v1/keys/register", &body, r.now(), &nonce()).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        if status != 200 {
            return (status, text);
        }
        let c: KeyChallenge = serde_json::from_str(&text).unwrap();
        let options: CreationChallengeResponse = serde_json::from_value(c.options.clone()).unwrap();
        let credential = token.do_registration(origin(&c), options).unwrap();
        let finish = KeyRegistrationFinish {
            challenge_id: c.challenge_id,
            credential: serde_json::to_value(credential).unwrap(),
        };
        let body = serde_json::to_vec(&finish).unwrap();
        let resp = signed(r, who, "POST", "/v1/keys", &body, r.now(), &nonce()).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// `token`'s answer to a fresh key-change challenge of `who`.
    pub async fn confirm_change(r: &Running, who: &Device, token: &mut SoftToken) -> StepUpAssertion {
        let c: KeyChallenge = call(r, who, "POST", "/v1/keys/step-up", &()).await;
        answer(token, &c, |_, _| {})
    }

    pub async fn challenge(r: &Running, who: &Device, request: &str, decision: Decision) -> KeyChallenge {
        call(r, who, "POST", &format!("/v1/requests/{request}/step-up"), &StepUpStart { decision }).await
    }

    /// The token's answer to `c` (optionally with its options bent first).
    pub fn answer(
        token: &mut SoftToken,
        c: &KeyChallenge,
        bend: impl FnOnce(&mut serde_json::Value, &mut Url),
    ) -> StepUpAssertion {
        let mut options = c.options.clone();
        let mut url = origin(c);
        bend(&mut options, &mut url);
        let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
        let credential = token.do_authentication(url, options).unwrap();
        StepUpAssertion { challenge_id: c.challenge_id.clone(), credential: serde_json::to_value(credential).unwrap() }
    }

    pub fn review(decision: Decision, step_up: StepUpAssertion) -> ReviewRequest {
        ReviewRequest { decision, reason: None, step_up: Some(step_up) }
    }
}

const STEP_UP_POLICY: &str = r#"
@id("requesters-up-to-8h")
permit (principal, action == Portcullis::Action::"request", resource)
when { principal.roles.contains("requester") && context.duration <= duration("8h") };

@id("approve-with-key")
@step_up("webauthn")
permit (principal, action == Portcullis::Action::"approve", resource)
when { principal.roles.contains("approver") };
"#;

on_both_backends! {
async fn step_up_approvals_need_a_fresh_assertion_from_the_approvers_own_key() {
    let (r, code, server) = start_with_server().await;
    assert!(server.webauthn_rp_id().ends_with(".internal"), "{}", server.webauthn_rp_id());
    let admin = enroll(&r, &code).await;
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let carol = member(&r, &admin, "carol", &[Role::Approver], &[]).await;
    let dave = member(&r, &admin, "dave", &[Role::Approver], &[]).await;
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    let _: PolicyView = call(&r, &admin, "PUT", "/v1/policy", &PolicyText { text: STEP_UP_POLICY.into() }).await;
    let new_request =
        || async { call::<AccessRequestView>(&r, &alice, "POST", "/v1/requests", &ask("web", 600)).await.id };

    // Without a key registered, or without an assertion: refused, saying what to do.
    let first = new_request().await;
    let review_path = |id: &str| format!("/v1/requests/{id}/review");
    let (_, code, message) = refused(&r, &carol, "POST", &review_path(&first), &APPROVE).await;
    assert!(code == "step_up_required" && message.contains("approve-with-key"), "{code}: {message}");
    let (_, code, _) = refused(
        &r,
        &carol,
        "POST",
        &format!("/v1/requests/{first}/step-up"),
        &StepUpStart { decision: Decision::Approve },
    )
    .await;
    assert_eq!(code, "no_security_key");

    let mut carol_key = keys::token();
    let added = keys::register(&r, &carol, &mut carol_key, "yubi").await;
    let listed: Vec<SecurityKeyView> = call(&r, &carol, "GET", "/v1/keys", &()).await;
    assert_eq!(listed.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["yubi"]);
    let mut dave_key = keys::token();
    keys::register(&r, &dave, &mut dave_key, "dave-key").await;

    // The ceremony: a challenge for this request and decision, the key's answer, approved.
    let c = keys::challenge(&r, &carol, &first, Decision::Approve).await;
    let good = keys::answer(&mut carol_key, &c, |_, _| {});
    let approved: AccessRequestView =
        call(&r, &carol, "POST", &review_path(&first), &keys::review(Decision::Approve, good.clone())).await;
    assert_eq!(approved.status, RequestStatus::Approved);
    let story: RequestDetail = call(&r, &alice, "GET", &format!("/v1/requests/{first}"), &()).await;
    let evidence = story.reviews[0].step_up.clone().expect("step-up evidence kept with the review");
    assert_eq!((evidence.key_name.as_str(), evidence.user_verified), ("yubi", true));
    assert!(story.timeline.iter().any(|e| e.text.contains("security key \"yubi\"")), "{:?}", story.timeline);

    // Replayed: the same answer again, for another request.
    let second = new_request().await;
    let (_, code, message) =
        refused(&r, &carol, "POST", &review_path(&second), &keys::review(Decision::Approve, good)).await;
    assert!(code == "step_up_failed" && message.contains("already used"), "{message}");

    // Foreign: an answer for another request, or for the other decision.
    let third = new_request().await;
    let for_second = keys::challenge(&r, &carol, &second, Decision::Approve).await;
    let answer = keys::answer(&mut carol_key, &for_second, |_, _| {});
    let (_, _, message) =
        refused(&r, &carol, "POST", &review_path(&third), &keys::review(Decision::Approve, answer)).await;
    assert!(message.contains("another request"), "{message}");
    let deny_challenge = keys::challenge(&r, &carol, &third, Decision::Deny).await;
    let answer = keys::answer(&mut carol_key, &deny_challenge, |_, _| {});
    let (_, _, message) =
        refused(&r, &carol, "POST", &review_path(&third), &keys::review(Decision::Approve, answer)).await;
    assert!(message.contains("another decision"), "{message}");

    // Another user's challenge.
    let for_dave = keys::challenge(&r, &dave, &third, Decision::Approve).await;
    let answer = keys::answer(&mut dave_key, &for_dave, |_, _| {});
    let (_, _, message) =
        refused(&r, &carol, "POST", &review_path(&third), &keys::review(Decision::Approve, answer)).await;
    assert!(message.contains("someone else"), "{message}");

    // Another user's key: dave's challenge answered by carol's key.
    let for_dave = keys::challenge(&r, &dave, &third, Decision::Approve).await;
    assert_eq!(added.name, "yubi");
    let carol_id = {
        // carol's credential id, as her key answered her own challenge before
        let c = keys::challenge(&r, &carol, &third, Decision::Approve).await;
        c.options["publicKey"]["allowCredentials"][0]["id"].clone()
    };
    let answer = keys::answer(&mut carol_key, &for_dave, |options, _| {
        options["publicKey"]["allowCredentials"] = serde_json::json!([{ "type": "public-key", "id": carol_id }]);
    });
    let (_, code, message) =
        refused(&r, &dave, "POST", &review_path(&third), &keys::review(Decision::Approve, answer)).await;
    assert!(code == "step_up_failed" && message.contains("could not be found"), "{message}");

    // A wrong relying-party id.
    let c = keys::challenge(&r, &carol, &third, Decision::Approve).await;
    let answer = keys::answer(&mut carol_key, &c, |options, url| {
        options["publicKey"]["rpId"] = serde_json::json!("evil.example");
        *url = webauthn_authenticator_rs::prelude::Url::parse("https://evil.example").unwrap();
    });
    let (_, code, message) =
        refused(&r, &carol, "POST", &review_path(&third), &keys::review(Decision::Approve, answer)).await;
    assert!(code == "step_up_failed" && message.contains("origin does not match"), "{message}");

    // A counter that went backwards: the key restored from a copy made before its last use.
    let copy = carol_key.to_cbor().unwrap();
    let c = keys::challenge(&r, &carol, &third, Decision::Approve).await;
    let ok = keys::answer(&mut carol_key, &c, |_, _| {});
    let done: AccessRequestView =
        call(&r, &carol, "POST", &review_path(&third), &keys::review(Decision::Approve, ok)).await;
    assert_eq!(done.status, RequestStatus::Approved);
    let mut cloned = webauthn_authenticator_rs::softtoken::SoftToken::from_cbor(&copy).unwrap();
    let fourth = new_request().await;
    let c = keys::challenge(&r, &carol, &fourth, Decision::Approve).await;
    let stale = keys::answer(&mut cloned, &c, |_, _| {});
    let (_, code, message) =
        refused(&r, &carol, "POST", &review_path(&fourth), &keys::review(Decision::Approve, stale)).await;
    assert!(code == "step_up_failed" && message.contains("compromised"), "{message}");

    // Expired: two minutes is all a challenge lives.
    let c = keys::challenge(&r, &carol, &fourth, Decision::Approve).await;
    let late = keys::answer(&mut carol_key, &c, |_, _| {});
    r.offset.store(121, Ordering::SeqCst);
    let (_, _, message) =
        refused(&r, &carol, "POST", &review_path(&fourth), &keys::review(Decision::Approve, late)).await;
    assert!(message.contains("expired"), "{message}");

    // Removing a key (confirmed with it): it no longer answers.
    let confirmed = keys::confirm_change(&r, &carol, &mut carol_key).await;
    let _: SecurityKeyView =
        call(&r, &carol, "DELETE", "/v1/keys/yubi", &KeyRemoval { step_up: Some(confirmed) }).await;
    let (_, code, _) = refused(
        &r,
        &carol,
        "POST",
        &format!("/v1/requests/{fourth}/step-up"),
        &StepUpStart { decision: Decision::Approve },
    )
    .await;
    assert_eq!(code, "no_security_key");
    let events: Vec<ServerEvent> = call(&r, &admin, "GET", "/v1/audit/events", &()).await;
    for kind in ["security_key_added", "security_key_removed", "policy_changed"] {
        assert!(events.iter().any(|e| e.kind == kind && e.actor.is_some()), "no {kind} event with an actor");
    }
}
}

/// Benchmark (not a test; `bash tests/bench_access.sh`): from an approver starting an approval
/// to the requester's live stream carrying the decision, with a security-key step-up (software
/// token) beside the same approval without one, alternating, in one run.
#[tokio::test]
#[ignore = "benchmark: run by tests/bench_access.sh"]
async fn bench_approval_to_requester_live_stream() {
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let (r, code, _server) = start_with_server().await;
    let admin = enroll(&r, &code).await;
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let carol = member(&r, &admin, "carol", &[Role::Approver], &[]).await;
    for (name, env) in [("db", "prod"), ("web", "staging")] {
        let mut target = password_target(&admin, name, b"pw");
        target.environment = env.into();
        let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &target).await;
    }
    let policy = r#"
@id("request") permit (principal, action == Portcullis::Action::"request", resource);
@id("prod-with-key") @step_up("webauthn")
permit (principal, action == Portcullis::Action::"approve", resource in Portcullis::Environment::"prod");
@id("staging-plain")
permit (principal, action == Portcullis::Action::"approve", resource in Portcullis::Environment::"staging");
"#;
    let _: PolicyView = call(&r, &admin, "PUT", "/v1/policy", &PolicyText { text: policy.into() }).await;
    let mut token = keys::token();
    keys::register(&r, &carol, &mut token, "bench-key").await;

    let mut live = signed(&r, &alice, "GET", "/v1/live", b"", r.now(), &nonce()).send().await.unwrap();
    let mut seen = String::new();
    let (mut with_key, mut without) = (Vec::new(), Vec::new());
    for round in 0..rounds * 2 {
        let step_up = round % 2 == 0;
        let target = if step_up { "db" } else { "web" };
        let req: AccessRequestView = call(&r, &alice, "POST", "/v1/requests", &ask(target, 600)).await;
        let started = std::time::Instant::now();
        let review = if step_up {
            let c = keys::challenge(&r, &carol, &req.id, Decision::Approve).await;
            keys::review(Decision::Approve, keys::answer(&mut token, &c, |_, _| {}))
        } else {
            APPROVE
        };
        let _: AccessRequestView = call(&r, &carol, "POST", &format!("/v1/requests/{}/review", req.id), &review).await;
        // Until alice's stream carries the decision for this request.
        loop {
            let decided = seen.lines().any(|l| l.contains("request_decided") && l.contains(&req.id));
            if decided {
                break;
            }
            let chunk = live.chunk().await.unwrap().expect("the live stream ended");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        (if step_up { &mut with_key } else { &mut without }).push(started.elapsed().as_secs_f64() * 1000.0);
        seen.clear();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() * 9 / 10])
    };
    let (k50, k90) = median(&mut with_key);
    let (p50, p90) = median(&mut without);
    println!(
        "approval -> requester's live stream, with security-key step-up: median {k50:.1} ms, p90 {k90:.1} ms ({rounds} rounds)"
    );
    println!("approval -> requester's live stream, without step-up (baseline): median {p50:.1} ms, p90 {p90:.1} ms");
    println!("ratio (median): {:.2}x", k50 / p50);
}

/// Load: `BENCH_DEVICES` devices (200) each holding a live stream and making `BENCH_CALLS`
/// signed calls (reads of their requests and of themselves; every fifth a new request, which
/// also goes to every approver's stream), all at once, against one server on loopback —
/// SQLite, PostgreSQL, and PostgreSQL with two replicas (devices alternate) — in one run.
/// Prints p50 and p99 latency of the calls, and the median and p99 time from an approval to the
/// requester's live event across replicas.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run by tests/bench_load.sh"]
async fn bench_load_devices_and_live_streams() {
    let devices: usize = std::env::var("BENCH_DEVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let calls: usize = std::env::var("BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let percentile = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    for (label, backend, replicas) in [
        ("SQLite", Backend::Sqlite, 1),
        ("PostgreSQL", Backend::Postgres, 1),
        ("PostgreSQL, two replicas", Backend::Postgres, 2),
    ] {
        BACKEND
            .scope(backend, async {
                let (a, code) = start().await;
                let b = if replicas == 2 { Some(replicas::replica(&a).await) } else { None };
                let at = |i: usize| if i % 2 == 1 { b.as_ref().unwrap_or(&a) } else { &a };
                let admin = enroll(&a, &code).await;
                let approver = member(&a, &admin, "approver", &[Role::Approver], &[]).await;
                let _: TargetSummary =
                    call(&a, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
                let mut people = Vec::new();
                for i in 0..devices {
                    people.push(member(&a, &admin, &format!("user{i}"), &[Role::Requester], &[]).await);
                }
                // Each device from a loopback address of its own, as devices on a network are (the
                // listener caps connections per source address).
                let clients: Vec<reqwest::Client> = (0..devices)
                    .map(|i| {
                        let ip = std::net::Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
                        reqwest::Client::builder().local_address(std::net::IpAddr::V4(ip)).build().unwrap()
                    })
                    .collect();
                let mut streams = Vec::new();
                for (i, d) in people.iter().enumerate() {
                    let r = at(i);
                    let mut live =
                        signed_through(&clients[i], r, d, "GET", "/v1/live", b"", r.now(), &nonce()).send().await.unwrap();
                    assert_eq!(live.status(), 200);
                    live.chunk().await.unwrap();
                    streams.push(live);
                }
                // Flat out (every device's next call as soon as its last is answered: the
                // server's throughput), then paced (each device every 500 ms, spread: latency at
                // an offered 400 calls/s).
                for pace in [None, Some(std::time::Duration::from_millis(500))] {
                let started = std::time::Instant::now();
                let mut tasks = Vec::new();
                for (i, d) in people.iter().enumerate() {
                    let r = at(i);
                    let http = &clients[i];
                    tasks.push(async move {
                        let mut latencies = Vec::with_capacity(calls);
                        let first = std::time::Instant::now()
                            + pace.map_or(std::time::Duration::ZERO, |p| p * i as u32 / devices as u32);
                        for c in 0..calls {
                            if let Some(p) = pace {
                                tokio::time::sleep_until((first + p * c as u32).into()).await;
                            }
                            let (method, path, body) = match c % 5 {
                                4 => ("POST", "/v1/requests", serde_json::to_vec(&ask("web", 600)).unwrap()),
                                n if n % 2 == 0 => ("GET", "/v1/requests", Vec::new()),
                                _ => ("GET", "/v1/me", Vec::new()),
                            };
                            let t = std::time::Instant::now();
                            let resp =
                                signed_through(http, r, d, method, path, &body, r.now(), &nonce()).send().await.unwrap();
                            assert!(resp.status().is_success(), "{method} {path}: {}", resp.status());
                            resp.bytes().await.unwrap();
                            latencies.push((c % 5 == 4, t.elapsed().as_secs_f64() * 1000.0));
                        }
                        latencies
                    });
                }
                let tagged: Vec<(bool, f64)> =
                    futures_util::future::join_all(tasks).await.into_iter().flatten().collect();
                let took = started.elapsed().as_secs_f64();
                let n = tagged.len();
                let mut all: Vec<f64> = tagged.iter().map(|(_, ms)| *ms).collect();
                let mut writes: Vec<f64> = tagged.iter().filter(|(w, _)| *w).map(|(_, ms)| *ms).collect();
                let mut reads: Vec<f64> = tagged.iter().filter(|(w, _)| !*w).map(|(_, ms)| *ms).collect();
                let (p50, p99) = (percentile(&mut all, 0.5), percentile(&mut all, 0.99));
                let how = if pace.is_some() { "paced, each device every 500 ms" } else { "flat out" };
                println!(
                    "load, {label}, {how}: {devices} devices with live streams, {n} calls in {took:.1} s ({:.0}/s): \
                     p50 {p50:.1} ms, p99 {p99:.1} ms (reads p50 {:.1} / p99 {:.1}, new requests p50 {:.1} / p99 {:.1})",
                    n as f64 / took,
                    percentile(&mut reads, 0.5),
                    percentile(&mut reads, 0.99),
                    percentile(&mut writes, 0.5),
                    percentile(&mut writes, 0.99),
                );
                }
                // Approval at one replica -> the requester's live event at the other.
                if replicas == 2 {
                    let (requester, live) = (&people[0], &mut streams[0]);
                    let mut delays = Vec::new();
                    for _ in 0..40 {
                        let req: AccessRequestView = call(&a, requester, "POST", "/v1/requests", &ask("web", 60)).await;
                        let t = std::time::Instant::now();
                        let path = format!("/v1/requests/{}/review", req.id);
                        let _: AccessRequestView = call(at(1), &approver, "POST", &path, &APPROVE).await;
                        let mut seen = String::new();
                        while !seen.lines().any(|l| l.contains("request_decided") && l.contains(&req.id)) {
                            seen.push_str(&String::from_utf8_lossy(&live.chunk().await.unwrap().unwrap()));
                        }
                        delays.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    let (m, p) = (percentile(&mut delays, 0.5), percentile(&mut delays, 0.99));
                    println!("approval at one replica -> the requester's live event at the other: median {m:.1} ms, p99 {p:.1} ms");
                }
                drop(streams);
            })
            .await;
    }
}
