//! Typed secrets over the real HTTP API: versions and restore without reveal, validation of
//! every kind's bad input, paging and search, and rows edited behind the server's back.

use super::*;
use portcullis_crypto::SecretBytes;
use portcullis_proto::Access;
use portcullis_vault::SecretKind;
use portcullis_vault::wire::*;

/// `fields` sealed to the server for secret `name`, as the CLI seals them.
pub fn sealed_fields(admin: &Device, name: &str, fields: &[(&str, &[u8])]) -> Sealed {
    let seal_key = b64().decode(&admin.server.clone().unwrap().seal_public_key).unwrap();
    let owned: Vec<(String, SecretBytes)> =
        fields.iter().map(|(n, v)| (n.to_string(), SecretBytes::from(v.to_vec()))).collect();
    let encoded = encode_fields(owned.iter().map(|(n, v)| (n.as_str(), v)));
    portcullis_crypto::identity::seal_to(
        &seal_key,
        encoded.expose_secret(),
        INFO_SECRET_VALUE,
        name.as_bytes(),
        &mut OsRng,
    )
    .unwrap()
}

fn add_request(admin: &Device, name: &str, kind: SecretKind, fields: &[(&str, &[u8])]) -> AddSecretRequest {
    AddSecretRequest {
        name: name.into(),
        kind,
        meta: SecretMeta::default(),
        reason: "first".into(),
        value: sealed_fields(admin, name, fields),
    }
}

/// A revealable password secret whose user name is `username`.
pub fn password_secret(admin: &Device, name: &str, password: &str, username: &str) -> AddSecretRequest {
    let mut req = add_request(
        admin,
        name,
        SecretKind::Password,
        &[("password", password.as_bytes()), ("username", username.as_bytes())],
    );
    req.meta.revealable = true;
    req.meta.environment = "prod".into();
    req
}

fn edit_value(admin: &Device, name: &str, fields: &[(&str, &[u8])], reason: &str) -> EditSecretRequest {
    EditSecretRequest { value: Some(sealed_fields(admin, name, fields)), reason: reason.into(), ..Default::default() }
}

/// Whether the server's database holds `needle` anywhere (raw, or hex as PostgreSQL prints bytes).
async fn database_holds(r: &Running, needle: &str) -> bool {
    match backend() {
        Backend::Sqlite => std::fs::read_dir(r.dir.path()).unwrap().any(|entry| {
            let path = entry.unwrap().path();
            let is_db = path.file_name().unwrap().to_string_lossy().starts_with("server.db");
            is_db && std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle.as_bytes())
        }),
        Backend::Postgres => {
            let mut db = r.tamper().await;
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT CAST(table_name AS TEXT) FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_all(&mut db)
            .await
            .unwrap();
            let hex_needle = hex::encode(needle);
            for table in tables {
                let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT CAST(t AS TEXT) FROM {table} t"))
                    .fetch_all(&mut db)
                    .await
                    .unwrap();
                if rows.iter().any(|row| row.contains(needle) || row.contains(&hex_needle)) {
                    return true;
                }
            }
            false
        }
    }
}

on_both_backends! {
/// Every change keeps a version with who, when and why; restore makes an old value current as
/// a new version on the server (the one restoring never sees it); versions past the number kept
/// lose their value and keep their history; no value is ever in the database in plaintext.
async fn secrets_keep_their_versions_and_restore_without_revealing() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let first = format!("canary-v1-{}", hex::encode(portcullis_crypto::random_bytes::<8>(&mut OsRng)));
    let second = format!("canary-v2-{}", hex::encode(portcullis_crypto::random_bytes::<8>(&mut OsRng)));
    let added: SecretView = call(&r, &admin, "POST", "/v1/secrets", &password_secret(&admin, "billing-db", &first, "alice")).await;
    assert_eq!((added.version, added.kind, added.revealable), (1, SecretKind::Password, true));
    assert_eq!(added.facts.fields.get("username").map(String::as_str), Some("alice"));

    let edited: SecretView = call(
        &r,
        &admin,
        "PUT",
        "/v1/secrets/billing-db",
        &edit_value(&admin, "billing-db", &[("password", second.as_bytes()), ("username", b"bob")], "rotated by hand"),
    )
    .await;
    assert_eq!(edited.version, 2);
    assert_eq!(edited.facts.fields.get("username").map(String::as_str), Some("bob"));
    // Metadata alone keeps the version.
    let meta = EditSecretRequest { folder: Some("payments/prod".into()), tags: Some(vec!["pci".into()]), ..Default::default() };
    let moved: SecretView = call(&r, &admin, "PUT", "/v1/secrets/billing-db", &meta).await;
    assert_eq!((moved.version, moved.folder.as_str(), moved.tags.clone()), (2, "payments/prod", vec!["pci".to_string()]));

    let restored: SecretView = call(
        &r,
        &admin,
        "POST",
        "/v1/secrets/billing-db/restore",
        &RestoreSecretRequest { version: 1, reason: "v2 broke billing".into() },
    )
    .await;
    assert_eq!(restored.version, 3);
    // Version 1's fields are current again (its user name says so; its password is sealed with it).
    assert_eq!(restored.facts.fields.get("username").map(String::as_str), Some("alice"));
    let history: Vec<SecretVersionView> = call(&r, &admin, "GET", "/v1/secrets/billing-db/history", &()).await;
    let summary: Vec<(i64, bool, &str, Option<i64>, &str)> = history
        .iter()
        .map(|v| (v.version, v.current, v.reason.as_str(), v.restored_from, v.created_by.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (3, true, "v2 broke billing", Some(1), "admin"),
            (2, false, "rotated by hand", None, "admin"),
            (1, false, "first", None, "admin"),
        ]
    );
    let text = serde_json::to_string(&history).unwrap();
    assert!(!text.contains(&first) && !text.contains(&second));

    // Keep two: older values are destroyed, their history stays, and they cannot be restored.
    let keep = EditSecretRequest { versions_kept: Some(2), ..Default::default() };
    let _: SecretView = call(&r, &admin, "PUT", "/v1/secrets/billing-db", &keep).await;
    let history: Vec<SecretVersionView> = call(&r, &admin, "GET", "/v1/secrets/billing-db/history", &()).await;
    let destroyed: Vec<i64> = history.iter().filter(|v| v.destroyed_at.is_some()).map(|v| v.version).collect();
    assert_eq!(destroyed, vec![1]);
    let (status, _, message) = refused(
        &r,
        &admin,
        "POST",
        "/v1/secrets/billing-db/restore",
        &RestoreSecretRequest { version: 1, reason: String::new() },
    )
    .await;
    assert_eq!(status, 404);
    assert!(message.contains("destroyed past the 2 versions kept"), "{message}");
    let (status, _, message) = refused(
        &r,
        &admin,
        "POST",
        "/v1/secrets/billing-db/restore",
        &RestoreSecretRequest { version: 3, reason: String::new() },
    )
    .await;
    assert_eq!((status, message.as_str()), (400, "version 3 is already the current one"));

    // Remove, then purge: gone for good, and recorded.
    let (status, _, _) = refused(&r, &admin, "POST", "/v1/secrets/billing-db/purge", &RemoveSecretRequest::default()).await;
    assert_eq!(status, 409);
    let removed: SecretView = call(&r, &admin, "POST", "/v1/secrets/billing-db/remove", &RemoveSecretRequest::default()).await;
    assert!(removed.removed_at.is_some());
    let page: SecretPage = call(&r, &admin, "GET", "/v1/secrets", &()).await;
    assert!(page.items.is_empty());
    let page: SecretPage = call(&r, &admin, "GET", "/v1/secrets?removed=true", &()).await;
    assert_eq!(page.items.len(), 1);
    assert!(!database_holds(&r, &first).await && !database_holds(&r, &second).await, "a value in plaintext");
    let _: serde_json::Value = call(&r, &admin, "POST", "/v1/secrets/billing-db/purge", &RemoveSecretRequest::default()).await;
    let (status, _, _) = refused(&r, &admin, "GET", "/v1/secrets/billing-db", &()).await;
    assert_eq!(status, 404);
    let events: Vec<ServerEvent> = call(&r, &admin, "GET", "/v1/audit/events?kind=secret_added,secret_changed,secret_restored,secret_removed,secret_purged", &()).await;
    let mut kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, vec!["secret_added", "secret_changed", "secret_changed", "secret_changed", "secret_purged", "secret_removed", "secret_restored"]);
}
}

fn tls_pair(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.into()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

on_both_backends! {
/// Each kind's bad input is refused with a reason and stores nothing; only admins write, and a
/// requester sees what to choose by, not a secret's facts.
async fn bad_secrets_are_refused_and_nothing_is_stored() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let (cert, key) = tls_pair("api.example.com");
    let (_, other_key) = tls_pair("api.example.com");
    let big = vec![b'x'; portcullis_vault::MAX_VALUE_BYTES + 1];
    let cases: Vec<(AddSecretRequest, u16, &str)> = vec![
        (add_request(&admin, "pw", SecretKind::Password, &[("password", b"\xff\xfe\xfd")]), 400, "not UTF-8"),
        (add_request(&admin, "pw", SecretKind::Password, &[("password", &big)]), 400, "at most 65536 bytes"),
        (add_request(&admin, "pw", SecretKind::Password, &[("pin", b"1234")]), 400, "has no field \"pin\""),
        (add_request(&admin, "pw", SecretKind::ApiToken, &[("url", b"https://x")]), 400, "needs its token"),
        (
            add_request(&admin, "cert", SecretKind::Tls, &[("certificate", cert.as_bytes()), ("private_key", other_key.as_bytes())]),
            400,
            "does not match the certificate",
        ),
        (
            add_request(&admin, "cert", SecretKind::Tls, &[("certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), ("private_key", key.as_bytes())]),
            400,
            "does not parse",
        ),
        (add_request(&admin, "key", SecretKind::SshKey, &[("private_key", b"ssh-rsa AAAA")]), 400, "not an OpenSSH private key"),
        (add_request(&admin, "bad name!", SecretKind::Note, &[("text", b"x")]), 400, "invalid secret name"),
        (add_request(&admin, "web", SecretKind::Note, &[("text", b"hello")]), 409, "cannot share a name"),
    ];
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    for (req, status, why) in cases {
        let (got, _, message) = refused(&r, &admin, "POST", "/v1/secrets", &req).await;
        assert_eq!(got, status, "{}: {message}", req.name);
        assert!(message.contains(why), "{}: {message:?} should say {why:?}", req.name);
    }
    // Sealed for another name: the server cannot be made to file it under this one.
    let mut moved = add_request(&admin, "one", SecretKind::Note, &[("text", b"hello")]);
    moved.value = sealed_fields(&admin, "other", &[("text", b"hello")]);
    let (status, _, message) = refused(&r, &admin, "POST", "/v1/secrets", &moved).await;
    assert_eq!(status, 400, "{message}");
    // Bad metadata.
    for (meta, why) in [
        (SecretMeta { folder: "a//b".into(), ..Default::default() }, "invalid folder"),
        (SecretMeta { owner: "nobody".into(), ..Default::default() }, "no user named"),
        (SecretMeta { versions_kept: Some(0), ..Default::default() }, "versions kept must be from 1 to 100"),
        (SecretMeta { description: "two\nlines".into(), ..Default::default() }, "one line"),
    ] {
        let mut req = add_request(&admin, "meta", SecretKind::Note, &[("text", b"hello")]);
        req.meta = meta;
        let (_, _, message) = refused(&r, &admin, "POST", "/v1/secrets", &req).await;
        assert!(message.contains(why), "{message}");
    }
    let page: SecretPage = call(&r, &admin, "GET", "/v1/secrets", &()).await;
    assert!(page.items.is_empty(), "a refused secret was stored");

    // A good TLS secret (one combined PEM file) shows its certificate's facts.
    let combined = format!("{cert}{key}");
    let tls: SecretView = call(&r, &admin, "POST", "/v1/secrets", &add_request(&admin, "api-cert", SecretKind::Tls, &[("private_key", combined.as_bytes())])).await;
    let facts = tls.facts.certificate.clone().unwrap();
    assert_eq!((facts.subject.as_str(), facts.names.clone()), ("CN=api.example.com", vec!["api.example.com".to_string()]));
    assert_eq!(tls.expires_at, Some(facts.not_after));

    // Only admins write; a requester lists names and expiry, not facts, and no history.
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let (status, _, _) = refused(&r, &alice, "POST", "/v1/secrets", &add_request(&admin, "mine", SecretKind::Note, &[("text", b"hello")])).await;
    assert_eq!(status, 403);
    let (status, _, _) = refused(&r, &alice, "PUT", "/v1/secrets/api-cert", &EditSecretRequest { description: Some("x".into()), ..Default::default() }).await;
    assert_eq!(status, 403);
    let seen: SecretView = call(&r, &alice, "GET", "/v1/secrets/api-cert", &()).await;
    assert!(seen.facts.certificate.is_none() && seen.facts.fields.is_empty());
    assert_eq!(seen.expires_at, Some(facts.not_after));
    let (status, _, _) = refused(&r, &alice, "GET", "/v1/secrets/api-cert/history", &()).await;
    assert_eq!(status, 403);
}
}

on_both_backends! {
/// 120 secrets in folders with tags: pages by name, filters and search over name, folder, tags
/// and description (never values) — each page in order, none twice, none missed.
async fn secrets_are_listed_in_pages_and_searched_by_their_metadata() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    for i in 0..120 {
        let mut req = add_request(&admin, &format!("svc-{i:03}"), SecretKind::ApiToken, &[("token", format!("tok-needle-{i}").as_bytes())]);
        req.meta.folder = if i % 2 == 0 { "team/a".into() } else { "team/b/deep".into() };
        req.meta.tags = if i % 3 == 0 { vec!["ci".into()] } else { vec![] };
        req.meta.environment = if i % 4 == 0 { "prod".into() } else { "dev".into() };
        req.meta.description = if i == 77 { "The Payments gateway's key".into() } else { String::new() };
        req.meta.expires_at = if i % 10 == 0 { Some(now() + 86_400) } else { None };
        let _: SecretView = call(&r, &admin, "POST", "/v1/secrets", &req).await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/secrets?limit=50&after={a}"),
            None => "/v1/secrets?limit=50".into(),
        };
        let page: SecretPage = call(&r, &admin, "GET", &path, &()).await;
        assert!(page.items.len() <= 50);
        seen.extend(page.items.iter().map(|s| s.name.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let all: Vec<String> = (0..120).map(|i| format!("svc-{i:03}")).collect();
    assert_eq!(seen, all);
    let count = |path: &str| {
        let path = path.to_string();
        let (r, admin) = (&r, &admin);
        async move {
            let page: SecretPage = call(r, admin, "GET", &path, &()).await;
            page.items.len()
        }
    };
    assert_eq!(count("/v1/secrets?folder=team/b&limit=500").await, 60);
    assert_eq!(count("/v1/secrets?folder=team&limit=500").await, 120);
    assert_eq!(count("/v1/secrets?folder=tea&limit=500").await, 0);
    assert_eq!(count("/v1/secrets?tag=ci&limit=500").await, 40);
    assert_eq!(count("/v1/secrets?env=prod&tag=ci&limit=500").await, 10);
    assert_eq!(count("/v1/secrets?kind=api-token&limit=500").await, 120);
    assert_eq!(count("/v1/secrets?kind=tls&limit=500").await, 0);
    assert_eq!(count("/v1/secrets?search=PAYMENTS%20key").await, 1);
    assert_eq!(count("/v1/secrets?search=svc-07").await, 10);
    assert_eq!(count("/v1/secrets?search=deep%20svc-01").await, 5);
    assert_eq!(count("/v1/secrets?search=%25").await, 0);
    assert_eq!(count("/v1/secrets?search=needle").await, 0, "search must never read values");
    assert_eq!(count("/v1/secrets?expiring_within=172800").await, 12);
    // Searches follow edits and removals (the trigram index is kept in step); short words and
    // quotes are taken literally.
    let edit = EditSecretRequest { description: Some("moved to the \"quasar\" cluster".into()), ..Default::default() };
    let _: SecretView = call(&r, &admin, "PUT", "/v1/secrets/svc-007", &edit).await;
    assert_eq!(count("/v1/secrets?search=quasar").await, 1);
    assert_eq!(count("/v1/secrets?search=%22quasar%22").await, 1);
    assert_eq!(count("/v1/secrets?search=PAYMENTS%20key&limit=500").await, 1, "unchanged elsewhere");
    assert_eq!(count("/v1/secrets?search=qu").await, 1, "a two-letter word");
    let _: SecretView =
        call(&r, &admin, "POST", "/v1/secrets/svc-007/remove", &RemoveSecretRequest { reason: "gone".into() }).await;
    assert_eq!(count("/v1/secrets?search=quasar").await, 0);
    let _: serde_json::Value =
        call(&r, &admin, "POST", "/v1/secrets/svc-007/purge", &RemoveSecretRequest { reason: "gone".into() }).await;
    assert_eq!(count("/v1/secrets?search=quasar&removed=true").await, 0, "purged: gone from the index too");
}
}

on_both_backends! {
/// A secret's row changed in the database (made revealable, its version wound back) is refused
/// where it is read; a version's ciphertext moved to another secret does not open.
async fn secret_rows_changed_behind_the_servers_back_are_refused() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let mut req = password_secret(&admin, "a", "password-of-a", "x");
    req.meta.revealable = false;
    let a: SecretView = call(&r, &admin, "POST", "/v1/secrets", &req).await;
    let b: SecretView = call(&r, &admin, "POST", "/v1/secrets", &password_secret(&admin, "b", "password-of-b", "y")).await;
    let _: SecretView = call(&r, &admin, "PUT", "/v1/secrets/b", &edit_value(&admin, "b", &[("password", b"password-b2")], "")).await;

    let mut db = r.tamper().await;
    sqlx::query("UPDATE secrets SET revealable = 1 WHERE id = $1").bind(&a.id).execute(&mut db).await.unwrap();
    let (status, code, _) = refused(&r, &admin, "GET", "/v1/secrets/a", &()).await;
    assert_eq!((status, code.as_str()), (403, "row_not_authentic"));
    sqlx::query("UPDATE secrets SET revealable = 0 WHERE id = $1").bind(&a.id).execute(&mut db).await.unwrap();
    let _: SecretView = call(&r, &admin, "GET", "/v1/secrets/a", &()).await;

    // b's version 1 replaced by a's version 1 (same version number, another secret).
    let (key, ct): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT data_key, ciphertext FROM secret_versions WHERE secret_id = $1 AND version = 1")
            .bind(&a.id)
            .fetch_one(&mut db)
            .await
            .unwrap();
    sqlx::query("UPDATE secret_versions SET data_key = $1, ciphertext = $2 WHERE secret_id = $3 AND version = 1")
        .bind(key)
        .bind(ct)
        .bind(&b.id)
        .execute(&mut db)
        .await
        .unwrap();
    let (status, code, _) =
        refused(&r, &admin, "POST", "/v1/secrets/b/restore", &RestoreSecretRequest { version: 1, reason: String::new() }).await;
    assert_eq!((status, code.as_str()), (403, "row_not_authentic"));
    let after: SecretView = call(&r, &admin, "GET", "/v1/secrets/b", &()).await;
    assert_eq!(after.version, 2, "a refused restore changed nothing");
}
}

fn ask_for(name: &str, access: Option<Access>) -> CreateAccessRequest {
    CreateAccessRequest { target: name.into(), duration_secs: 600, reason: "rotate the billing job".into(), access }
}

/// `who` asks for `access` to `name`, `approver` approves; the request.
async fn granted(
    r: &Running,
    who: &Device,
    approver: &Device,
    name: &str,
    access: Option<Access>,
) -> AccessRequestView {
    let req: AccessRequestView = call(r, who, "POST", "/v1/requests", &ask_for(name, access)).await;
    let review = ReviewRequest { decision: Decision::Approve, reason: None, step_up: None };
    let _: AccessRequestView = call(r, approver, "POST", &format!("/v1/requests/{}/review", req.id), &review).await;
    req
}

/// The fields of a released value, opened with `device`'s key.
fn opened(device: &Device, released: &Released) -> Vec<(String, String)> {
    let plain =
        device.seal.as_ref().unwrap().open(&released.value, INFO_SECRET_RELEASE, released.id.as_bytes()).unwrap();
    decode_fields(plain.expose_secret())
        .unwrap()
        .into_iter()
        .map(|(n, v)| (n, String::from_utf8(v.expose_secret().clone()).unwrap()))
        .collect()
}

fn reveal() -> CheckoutRequest {
    CheckoutRequest { purpose: RevealPurpose::Reveal, to: "terminal".into() }
}

on_both_backends! {
/// A secret is asked for, approved and granted like a target: check-out reveals it to the
/// grant's device only (sealed to its key), exclusively, each reveal and copy recorded, and
/// only the holder checks it in; a grant's end frees it. A secret that may not be revealed is
/// only ever used; a grant to use is not one to check out, and no secret grant opens SSH.
async fn secrets_are_checked_out_and_used_under_grants() {
    let (r, code, server) = start_with_server().await;
    let admin = enroll(&r, &code).await;
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let carol = member(&r, &admin, "carol", &[Role::Requester], &[]).await;
    let bob = member(&r, &admin, "bob", &[Role::Approver], &[]).await;
    let canary = format!("canary-{}", hex::encode(portcullis_crypto::random_bytes::<12>(&mut OsRng)));
    let _: SecretView = call(&r, &admin, "POST", "/v1/secrets", &password_secret(&admin, "db-pw", &canary, "billing")).await;
    let token = format!("tok-{canary}");
    let _: SecretView = call(
        &r,
        &admin,
        "POST",
        "/v1/secrets",
        &add_request(&admin, "deploy-token", SecretKind::ApiToken, &[("token", token.as_bytes())]),
    )
    .await;

    let (status, code, message) = refused(&r, &alice, "POST", "/v1/secrets/db-pw/checkout", &reveal()).await;
    assert_eq!((status, code.as_str()), (403, "no_grant"), "{message}");
    let req = granted(&r, &alice, &bob, "db-pw", None).await;
    assert_eq!(req.access, Access::Checkout, "a revealable secret is checked out by default");
    let first: Released = call(&r, &alice, "POST", "/v1/secrets/db-pw/checkout", &reveal()).await;
    assert_eq!(opened(&alice, &first), vec![("password".to_string(), canary.clone()), ("username".into(), "billing".into())]);
    assert!(bob.seal.as_ref().unwrap().open(&first.value, INFO_SECRET_RELEASE, first.id.as_bytes()).is_err());
    let copy = CheckoutRequest { purpose: RevealPurpose::Copy, to: "desktop".into() };
    let again: Released = call(&r, &alice, "POST", "/v1/secrets/db-pw/checkout", &copy).await;
    assert_eq!(again.id, first.id, "a second reveal under the same grant is the same check-out");

    // Exclusive: carol holds a grant too, and still waits for alice.
    granted(&r, &carol, &bob, "db-pw", Some(Access::Checkout)).await;
    let (status, code, message) = refused(&r, &carol, "POST", "/v1/secrets/db-pw/checkout", &reveal()).await;
    assert_eq!((status, code.as_str()), (403, "checked_out"));
    assert!(message.contains("checked out by alice until"), "{message}");
    let (status, code, _) = refused(&r, &carol, "POST", "/v1/secrets/db-pw/checkin", &()).await;
    assert_eq!((status, code.as_str()), (403, "not_holder"));
    let back: CheckinOutcome = call(&r, &alice, "POST", "/v1/secrets/db-pw/checkin", &()).await;
    assert_eq!((back.secret.as_str(), back.rotation.as_deref()), ("db-pw", None));
    let carols: Released = call(&r, &carol, "POST", "/v1/secrets/db-pw/checkout", &reveal()).await;
    assert_ne!(carols.id, first.id);
    // Her grant ends (the clock passes it): the server's duty checks it in, and alice may have
    // it again.
    assert_eq!(server.end_lapsed_checkouts().await.unwrap(), 0, "her grant still holds");
    r.offset.store(601, Ordering::SeqCst);
    assert_eq!(server.end_lapsed_checkouts().await.unwrap(), 1);
    assert_eq!(server.end_lapsed_checkouts().await.unwrap(), 0, "ended once");
    let alices = granted(&r, &alice, &bob, "db-pw", None).await;
    let _: Released = call(&r, &alice, "POST", "/v1/secrets/db-pw/checkout", &reveal()).await;
    // Revoking her access ends her check-out at once.
    let revoked: RevokeOutcome =
        call(&r, &bob, "POST", "/v1/revoke", &RevokeRequest { id: alices.id.clone(), reason: Some("done".into()) }).await;
    assert_eq!(revoked.request.status, RequestStatus::Revoked);
    granted(&r, &carol, &bob, "db-pw", Some(Access::Checkout)).await;
    let _: Released = call(&r, &carol, "POST", "/v1/secrets/db-pw/checkout", &reveal()).await;
    let _: CheckinOutcome = call(&r, &carol, "POST", "/v1/secrets/db-pw/checkin", &()).await;

    // Never revealed: only used, in a process.
    let (status, code, _) = refused(&r, &alice, "POST", "/v1/requests", &ask_for("deploy-token", Some(Access::Checkout))).await;
    assert_eq!((status, code.as_str()), (403, "not_revealable"));
    let (status, _, _) = refused(&r, &alice, "POST", "/v1/requests", &ask_for("deploy-token", Some(Access::Ssh))).await;
    assert_eq!(status, 400);
    let used = granted(&r, &alice, &bob, "deploy-token", None).await;
    assert_eq!(used.access, Access::Use);
    let (status, code, _) = refused(&r, &alice, "POST", "/v1/secrets/deploy-token/checkout", &reveal()).await;
    assert_eq!((status, code.as_str()), (403, "not_revealable"));
    let run: Released =
        call(&r, &alice, "POST", "/v1/secrets/deploy-token/use", &UseRequest { command: "deploy.sh --prod".into() }).await;
    assert_eq!(opened(&alice, &run), vec![("token".to_string(), token.clone())]);
    let _: serde_json::Value = call(
        &r,
        &alice,
        "POST",
        "/v1/secrets/deploy-token/used",
        &UseEnded { id: run.id.clone(), exit_status: Some(3), signal: None },
    )
    .await;
    // A grant to use db-pw is not one to check it out.
    let dave = member(&r, &admin, "dave", &[Role::Requester], &[]).await;
    granted(&r, &dave, &bob, "db-pw", Some(Access::Use)).await;
    let (status, code, _) = refused(&r, &dave, "POST", "/v1/secrets/db-pw/checkout", &reveal()).await;
    assert_eq!((status, code.as_str()), (403, "no_grant"));
    // No secret grant buys an SSH certificate.
    let cert = CertificateRequest { target: "deploy-token".into(), public_key: HOST_KEY.into() };
    let (status, _, _) = refused(&r, &alice, "POST", "/v1/certificates", &cert).await;
    assert_eq!(status, 404);

    let events: Vec<ServerEvent> = call(
        &r,
        &admin,
        "GET",
        "/v1/audit/events?kind=secret_revealed,secret_copied,secret_checked_in,secret_used,secret_use_ended",
        &(),
    )
    .await;
    let mut kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            "secret_checked_in",
            "secret_checked_in",
            "secret_checked_in",
            "secret_copied",
            "secret_revealed",
            "secret_revealed",
            "secret_revealed",
            "secret_revealed",
            "secret_use_ended",
            "secret_used"
        ]
    );
    let lapsed = events.iter().find(|e| e.kind == "secret_checked_in" && e.detail["ended_by"] == "grant_ended").unwrap();
    assert_eq!(lapsed.detail["holder"], "carol");
    let run_event = events.iter().find(|e| e.kind == "secret_used").unwrap();
    assert_eq!(run_event.detail["command"], "deploy.sh --prod");
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(&canary), "an event holds the value");
    assert!(!database_holds(&r, &canary).await, "the value is in the database in plaintext");
}
}

/// Search and import at scale, on SQLite (`tests/bench_vault.sh`): imports 10,000 secrets and
/// times it, fills the vault to `BENCH_SECRETS` (100,000) in imports of 20,000, then times
/// `BENCH_QUERIES` (400) list and search calls of the shapes the desktop and the CLI make
/// (first pages, filters, search words, a rare word, the next page), one at a time over HTTP.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run by tests/bench_vault.sh"]
async fn bench_secret_search_and_import() {
    let total: usize = std::env::var("BENCH_SECRETS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let queries: usize = std::env::var("BENCH_QUERIES").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let words = ["billing", "payments", "search", "ledger", "gateway", "reports", "auth", "mail", "cache", "queue"];
    let item = |i: usize| {
        let mut req = add_request(
            &admin,
            &format!("svc-{i:06}"),
            SecretKind::ApiToken,
            &[("token", format!("tok-{i}-x").as_bytes())],
        );
        req.meta.folder = format!("team-{}/{}", i % 50, words[i % words.len()]);
        req.meta.environment = ["prod", "staging", "dev"][i % 3].into();
        req.meta.tags = vec![format!("t{}", i % 20)];
        req.meta.description =
            format!("{} token number {i} for the {} service", words[(i / 7) % words.len()], words[i % 10]);
        if i == total / 2 {
            req.meta.description = "the one quasar key".into();
        }
        req
    };
    let batch_of = |from: usize, n: usize| ImportRequest {
        items: (from..from + n).map(item).collect(),
        dry_run: false,
        source: "bench".into(),
    };
    let batch = batch_of(0, 10_000);
    let started = std::time::Instant::now();
    let done: ImportOutcome = call(&r, &admin, "POST", "/v1/secret-imports", &batch).await;
    let import_secs = started.elapsed().as_secs_f64();
    assert_eq!(done.imported, 10_000);
    let mut next = 10_000;
    while next < total {
        let n = 20_000.min(total - next);
        let _: ImportOutcome = call(&r, &admin, "POST", "/v1/secret-imports", &batch_of(next, n)).await;
        next += n;
    }
    let shapes = [
        "/v1/secrets?limit=100".to_string(),
        "/v1/secrets?limit=100&env=prod".into(),
        "/v1/secrets?limit=100&folder=team-7".into(),
        "/v1/secrets?limit=100&tag=t3".into(),
        "/v1/secrets?limit=100&search=billing".into(),
        "/v1/secrets?limit=100&search=payments%20token".into(),
        "/v1/secrets?limit=100&search=quasar".into(),
        "/v1/secrets?limit=100&kind=api-token&env=dev&search=cache".into(),
        format!("/v1/secrets?limit=100&after=svc-{:06}", total / 3),
    ];
    let mut by_shape: Vec<Vec<f64>> = vec![Vec::new(); shapes.len()];
    for i in 0..queries {
        let s = i % shapes.len();
        let started = std::time::Instant::now();
        let page: SecretPage = call(&r, &admin, "GET", &shapes[s], &()).await;
        by_shape[s].push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(!page.items.is_empty(), "{}", shapes[s]);
    }
    let percentile = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    let mut all: Vec<f64> = by_shape.iter().flatten().copied().collect();
    println!("vault import of 10000 secrets: {import_secs:.2} s");
    println!(
        "vault list/search over {total} secrets, {queries} calls: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&mut all, 0.5),
        percentile(&mut all, 0.99)
    );
    for (shape, times) in shapes.iter().zip(by_shape.iter_mut()) {
        println!("vault   {shape}: p50 {:.1} ms, max {:.1} ms", percentile(times, 0.5), percentile(times, 1.0));
    }
}

on_both_backends! {
/// A password bound to a target, from the server's side of a rotation: a check-in starts one;
/// the value is not released again while it is pending; the gateway's order carries the
/// current password and a fresh one; a refusal keeps the current one and is an alarm; only a
/// report that the new one logged in makes it the next version.
async fn a_bound_password_changes_only_when_its_gateway_reports_it_set() {
    let (r, code, server) = start_with_server().await;
    let admin = enroll(&r, &code).await;
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let bob = member(&r, &admin, "bob", &[Role::Approver], &[]).await;
    let old = format!("old-{}", hex::encode(portcullis_crypto::random_bytes::<12>(&mut OsRng)));
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", old.as_bytes())).await;
    let mut bind = password_secret(&admin, "web-root", &old, "root");
    bind.meta.target = Some("web".into());
    let added: SecretView = call(&r, &admin, "POST", "/v1/secrets", &bind).await;
    assert_eq!(added.target.as_deref(), Some("web"));
    let mut twice = password_secret(&admin, "web-root-2", &old, "root");
    twice.meta.target = Some("web".into());
    let (status, _, message) = refused(&r, &admin, "POST", "/v1/secrets", &twice).await;
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("already has its credential"), "{message}");
    let password_of = |device: &Device, released: &Released| {
        opened(device, released).into_iter().find(|(n, _)| n == "password").map(|(_, v)| v).unwrap()
    };

    granted(&r, &alice, &bob, "web-root", Some(Access::Checkout)).await;
    let shown: Released = call(&r, &alice, "POST", "/v1/secrets/web-root/checkout", &reveal()).await;
    assert_eq!(password_of(&alice, &shown), old);
    let back: CheckinOutcome = call(&r, &alice, "POST", "/v1/secrets/web-root/checkin", &()).await;
    let rotation = back.rotation.expect("a check-in of a bound password starts a rotation");
    let (status, code, _) = refused(&r, &alice, "POST", "/v1/secrets/web-root/checkout", &reveal()).await;
    assert_eq!((status, code.as_str()), (403, "rotating"), "not released while about to change");

    let gateway = server.embedded_gateway().await.unwrap().id;
    let orders = server.rotation_orders(&gateway).await.unwrap();
    assert_eq!(orders.len(), 1);
    let (order, current, candidate) = &orders[0];
    assert_eq!((order.id.as_str(), order.target.as_str(), order.login.as_str()), (rotation.as_str(), "web", "root"));
    assert_eq!(current.expose_secret(), old.as_bytes());
    assert_eq!(candidate.expose_secret().len(), portcullis_vault::GENERATED_PASSWORD_LEN);
    // The target refused the change: the current version stays, and it is an alarm.
    let refusal = RotationReport { failed: Some(RotationStage::Change), detail: "passwd: password unchanged".into() };
    server.rotation_reported(&gateway, &order.id, &refusal).await.unwrap();
    assert!(server.rotation_reported(&gateway, &order.id, &refusal).await.is_err(), "reported once");
    assert!(server.rotation_orders(&gateway).await.unwrap().is_empty());
    let alarms: Vec<ServerEvent> = call(&r, &admin, "GET", "/v1/audit/alarms", &()).await;
    let alarm = alarms.iter().find(|a| a.kind == "secret_rotation_failed").expect("a failed rotation is an alarm");
    assert_eq!((alarm.detail["stage"].as_str(), alarm.detail["secret"].as_str()), (Some("change"), Some("web-root")));
    let again: Released = call(&r, &alice, "POST", "/v1/secrets/web-root/checkout", &reveal()).await;
    assert_eq!((again.version, password_of(&alice, &again)), (1, old.clone()));

    // The next check-in's rotation is reported set and logged in with: version 2 is the new one.
    let back: CheckinOutcome = call(&r, &alice, "POST", "/v1/secrets/web-root/checkin", &()).await;
    let orders = server.rotation_orders(&gateway).await.unwrap();
    let (order, _, candidate) = &orders[0];
    assert_eq!(Some(order.id.clone()), back.rotation);
    let new = String::from_utf8(candidate.expose_secret().clone()).unwrap();
    server.rotation_reported(&gateway, &order.id, &RotationReport { failed: None, detail: String::new() }).await.unwrap();
    let history: Vec<SecretVersionView> = call(&r, &admin, "GET", "/v1/secrets/web-root/history", &()).await;
    assert_eq!(history[0].version, 2);
    assert!(history[0].reason.contains("rotated on web by gateway embedded (checkin)"), "{}", history[0].reason);
    let now_shown: Released = call(&r, &alice, "POST", "/v1/secrets/web-root/checkout", &reveal()).await;
    assert_eq!((now_shown.version, password_of(&alice, &now_shown)), (2, new.clone()));
    assert_ne!(new, old);
    let rotations: Vec<RotationView> = call(&r, &alice, "GET", "/v1/secrets/web-root/rotations", &()).await;
    let states: Vec<&str> = rotations.iter().map(|r| r.state.as_str()).collect();
    assert_eq!(states, ["rotated", "failed"], "alice sees the rotations her check-ins started");
    // The target's password is the secret's now: changed there, not on the target.
    let (status, _, message) = refused(
        &r,
        &admin,
        "PUT",
        "/v1/targets/web",
        &UpdateTargetRequest {
            host: "127.0.0.1".into(),
            port: 22,
            login: "root".into(),
            host_key: HOST_KEY.into(),
            credential_kind: CredentialKind::Password,
            environment: "prod".into(),
            tags: vec![],
            description: String::new(),
            gateway: None,
            credential: Some(password_target(&admin, "web", b"x").credential),
        },
    )
    .await;
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("is the vault secret web-root"), "{message}");
}
}
