//! A hostile or broken server (the one thing the real server cannot be made to play): the
//! client must refuse grants that are forged, expired or issued to another device, before any
//! credential is opened or used.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use portcullis_client::{ClientError, Device};
use portcullis_crypto::OsRng;
use portcullis_crypto::identity::{SealingIdentity, SigningIdentity, seal_to};
use portcullis_keystore::{FixedPassphrase, Preference};
use portcullis_proto::*;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Honest,
    ForgedSignature,
    Expired,
    OtherDevice,
}

struct Fake {
    signing: SigningIdentity,
    forger: SigningIdentity,
    seal_key: Mutex<Vec<u8>>,
    mode: Mutex<Mode>,
}

const PIN: &str = "0123456789abcdef0123456789abcdef";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

async fn enroll(State(f): State<Arc<Fake>>, Json(req): Json<EnrollRequest>) -> Json<EnrollResponse> {
    *f.seal_key.lock().unwrap() = b64().decode(&req.seal_public_key).unwrap();
    Json(EnrollResponse {
        user_id: "u1".into(),
        user_name: "alice".into(),
        roles: vec![Role::Requester],
        device_id: "d1".into(),
        server: ServerIdentity {
            sign_public_key: b64().encode(f.signing.public_key()),
            seal_public_key: b64().encode(SealingIdentity::generate(&mut OsRng).public_key()),
            tls_fingerprint: format!("{PIN}{PIN}"),
        },
    })
}

async fn connect(State(f): State<Arc<Fake>>, headers: HeaderMap) -> Json<ConnectResponse> {
    let mode = *f.mode.lock().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = GrantClaims {
        grant_id: "g1".into(),
        request_id: "r1".into(),
        user_id: "u1".into(),
        user_name: "alice".into(),
        device_id: if mode == Mode::OtherDevice {
            "someone-else".into()
        } else {
            headers.get(HEADER_DEVICE).unwrap().to_str().unwrap().into()
        },
        target_id: "t1".into(),
        target_name: "web".into(),
        login: "root".into(),
        not_before: now - 100,
        not_after: if mode == Mode::Expired { now - 10 } else { now + 100 },
        issued_at: now - 100,
    };
    let key = if mode == Mode::ForgedSignature { &f.forger } else { &f.signing };
    let seal = f.seal_key.lock().unwrap().clone();
    Json(ConnectResponse {
        grant: SignedGrant::sign(&claims, key),
        host: "127.0.0.1".into(),
        port: 1,
        login: "root".into(),
        host_key: "ssh-ed25519 AAAA".into(),
        credential_kind: CredentialKind::Password,
        credential: seal_to(&seal, b"canary-password", INFO_CREDENTIAL_RELEASE, b"g1", &mut OsRng).unwrap(),
    })
}

#[tokio::test]
async fn forged_expired_and_foreign_grants_are_refused_by_the_client() {
    let fake = Arc::new(Fake {
        signing: SigningIdentity::generate(&mut OsRng),
        forger: SigningIdentity::generate(&mut OsRng),
        seal_key: Mutex::new(Vec::new()),
        mode: Mutex::new(Mode::Honest),
    });
    let app =
        Router::new().route("/v1/enroll", post(enroll)).route("/v1/connect", post(connect)).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let home = tempfile::tempdir().unwrap();
    let code = format!("pc1-{}-{PIN}", "a".repeat(32));
    let pass = FixedPassphrase("pw".into());
    let device = Device::enroll(home.path(), &url, &code, "test", Preference::Passphrase, &pass).await.unwrap();
    let now = portcullis_client::now_secs();

    // The honest answer opens (proving the refusals below are about the grant alone).
    let released = device.release_credential("web", now).await.unwrap();
    assert_eq!(released.secret.expose_secret(), b"canary-password");
    assert!(!format!("{released:?}").contains("canary"));

    *fake.mode.lock().unwrap() = Mode::ForgedSignature;
    let err = device.release_credential("web", now).await.unwrap_err();
    assert!(matches!(err, ClientError::Grant(GrantError::Forged)), "{err}");

    *fake.mode.lock().unwrap() = Mode::Expired;
    let err = device.release_credential("web", now).await.unwrap_err();
    assert!(matches!(err, ClientError::Grant(GrantError::Expired(_))), "{err}");

    *fake.mode.lock().unwrap() = Mode::OtherDevice;
    let err = device.release_credential("web", now).await.unwrap_err();
    assert!(matches!(err, ClientError::Grant(GrantError::Foreign)), "{err}");

    // A grant for another target is refused too.
    *fake.mode.lock().unwrap() = Mode::Honest;
    let err = device.release_credential("db", now).await.unwrap_err();
    assert!(matches!(err, ClientError::Grant(GrantError::OtherTarget(_))), "{err}");
    assert!(!err.to_string().contains("canary"));
}
