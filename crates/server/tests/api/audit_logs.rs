//! The audit store's logs over the real API: uploads continue a writer's signed Merkle log,
//! every kind of bad upload is refused and raised as an alarm naming the writer and index, and
//! tampering with the database behind the server's back fails `audit verify` (and the offline
//! `Server::verify_data`) at the first bad record.

use portcullis_tlog::MemoryTree;
use sqlx::Connection;

use super::*;

/// The writer side of a gateway's log, held by the test: its records and tree.
pub(crate) struct Writer<'a> {
    gateway: &'a Device,
    payloads: Vec<String>,
    tree: MemoryTree,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(gateway: &'a Device) -> Self {
        Self { gateway, payloads: Vec::new(), tree: MemoryTree::new() }
    }

    pub(crate) fn append(&mut self, payload: String) -> u64 {
        let seq = self.payloads.len() as u64 + 1;
        let (leaf, _) = portcullis_tlog::leaf_of(&self.gateway.id, seq, payload.as_bytes()).unwrap();
        self.tree.push(leaf).unwrap();
        self.payloads.push(payload);
        seq
    }

    fn note(&self, size: u64) -> String {
        portcullis_tlog::sign_checkpoint(&self.gateway.id, size, self.tree.root_at(size).unwrap(), &self.gateway.key)
            .unwrap()
    }

    fn record(&self, seq: u64) -> UploadRecord {
        UploadRecord { seq, payload: Some(self.payloads[seq as usize - 1].clone()), lost_leaf: None, lost_reason: None }
    }

    /// Records `from..=to` with the checkpoint at `to`.
    pub(crate) fn batch(&self, from: u64, to: u64) -> UploadBatch {
        UploadBatch {
            server_witnessed: None,
            records: (from..=to).map(|s| self.record(s)).collect(),
            checkpoint: self.note(to),
            acknowledged: None,
        }
    }
}

pub(crate) async fn upload(r: &Running, g: &Device, batch: &UploadBatch) -> reqwest::Response {
    let body = serde_json::to_vec(batch).unwrap();
    signed(r, g, "POST", "/v1/gateway/records", &body, now(), &nonce()).send().await.unwrap()
}

async fn alarms(r: &Running, auditor: &Device) -> Vec<ServerEvent> {
    call(r, auditor, "GET", "/v1/audit/alarms", &()).await
}

fn server_key(admin: &Device) -> [u8; 32] {
    b64().decode(&admin.server.as_ref().unwrap().sign_public_key).unwrap().try_into().unwrap()
}

on_both_backends! {
async fn uploads_continue_the_writers_signed_log_and_every_bad_one_is_an_alarm() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let g = gateway(&r, &admin, "recorder").await;
    let mut w = Writer::new(&g);
    for text in ["one", "two", "three", "four", "five"] {
        w.append(chunk("s", text));
    }

    let first = upload(&r, &g, &w.batch(1, 2)).await;
    assert_eq!(first.status(), 200);
    let ack: UploadAck = first.json().await.unwrap();
    assert_eq!((ack.stored_through, ack.duplicates, ack.resend_from), (2, 0, None));
    // The acknowledgement is the writer's own checkpoint, countersigned by the server.
    let cp = portcullis_tlog::verify_checkpoint(
        ack.checkpoint.as_deref().unwrap(),
        &g.id,
        &g.key.public_key(),
        Some(&server_key(&admin)),
    )
    .unwrap();
    assert!(cp.countersigned);
    assert_eq!((cp.size, cp.root), (2, w.tree.root_at(2).unwrap()));

    // A retry after a lost acknowledgement: the stored record counts as a duplicate.
    let ack: UploadAck = upload(&r, &g, &w.batch(2, 3)).await.json().await.unwrap();
    assert_eq!((ack.stored_through, ack.duplicates), (3, 1));

    // Each refusal: the code, and nothing of the batch stored.
    let mut rewritten = w.batch(2, 4);
    rewritten.records[0].payload = Some(chunk("s", "TWO"));
    let stranger = SigningIdentity::generate(&mut OsRng);
    let mut other_key = w.batch(4, 4);
    other_key.checkpoint = portcullis_tlog::sign_checkpoint(&g.id, 4, w.tree.root_at(4).unwrap(), &stranger).unwrap();
    let mut inconsistent = w.batch(4, 4);
    inconsistent.records[0].payload = Some(chunk("s", "not what was signed"));
    let mut short = w.batch(4, 5);
    short.records.pop();
    let mut malformed = w.batch(4, 4);
    malformed.records[0].payload = Some("{not json".into());
    let mut rollback = w.batch(1, 1);
    rollback.records.clear();
    for (what, batch, expected) in [
        ("a rewritten record", rewritten, "audit_fork"),
        ("a checkpoint signed by another key", other_key, "audit_bad_checkpoint"),
        ("records that do not make the signed checkpoint", inconsistent, "audit_inconsistent_checkpoint"),
        ("a checkpoint beyond the records sent", short, "audit_inconsistent_checkpoint"),
        ("a malformed record", malformed, "audit_upload_refused"),
        ("a writer whose log went back to record 1", rollback, "audit_rollback"),
    ] {
        let resp = upload(&r, &g, &batch).await;
        assert_eq!(error_code(resp).await, (403, expected.to_string()), "{what}");
    }

    // A gap: the server asks for the missing records instead of storing past them.
    let ack: UploadAck = upload(&r, &g, &w.batch(5, 5)).await.json().await.unwrap();
    assert_eq!((ack.stored_through, ack.resend_from), (3, Some(4)));

    // A record the gateway can no longer read travels as its leaf: the log stays whole and the
    // records after it are stored, in order.
    let mut with_lost = w.batch(4, 5);
    let (lost_leaf, _) = portcullis_tlog::leaf_of(&g.id, 4, w.payloads[3].as_bytes()).unwrap();
    with_lost.records[0] = UploadRecord {
        seq: 4,
        payload: None,
        lost_leaf: Some(portcullis_tlog::hash_b64(&lost_leaf)),
        lost_reason: Some("local record 4 fails verification".into()),
    };
    let ack: UploadAck = upload(&r, &g, &with_lost).await.json().await.unwrap();
    assert_eq!(ack.stored_through, 5);
    // Old records sent again (the gateway lost its upload marks): acknowledged with the newest
    // countersigned checkpoint, nothing stored twice.
    let ack: UploadAck = upload(&r, &g, &w.batch(1, 2)).await.json().await.unwrap();
    assert_eq!((ack.stored_through, ack.duplicates), (5, 2));
    let cp = portcullis_tlog::verify_checkpoint(
        &ack.checkpoint.unwrap(),
        &g.id,
        &g.key.public_key(),
        Some(&server_key(&admin)),
    )
    .unwrap();
    assert_eq!((cp.size, cp.countersigned), (5, true));

    // Every refusal is an alarm naming the writer and the first bad index.
    let raised = alarms(&r, &admin).await;
    for (kind, index) in [
        ("audit_fork", 2),
        ("audit_bad_checkpoint", 4),
        ("audit_inconsistent_checkpoint", 4),
        ("audit_upload_refused", 4),
        ("audit_rollback", 2),
        ("audit_gap", 4),
        ("audit_record_lost", 4),
    ] {
        assert!(
            raised.iter().any(|a| a.kind == kind
                && a.detail["gateway"] == "recorder"
                && a.detail["writer_id"] == g.id.as_str()
                && a.detail["index"] == index),
            "no {kind} alarm at {index}: {raised:?}"
        );
    }
    // Repeating a refused upload does not flood the alarms.
    let before = alarms(&r, &admin).await.len();
    let mut again = w.batch(1, 1);
    again.records.clear();
    let _ = upload(&r, &g, &again).await;
    assert_eq!(alarms(&r, &admin).await.len(), before);

    let report: AuditVerifyReport = call(&r, &admin, "GET", "/v1/audit/verify", &()).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let mine = report.writers.iter().find(|x| x.writer_id == g.id).unwrap();
    assert_eq!((mine.records, mine.lost, mine.checkpoint_size, mine.countersigned), (5, 1, Some(5), true));
}
}

on_both_backends! {
/// Someone with write access to the database edits it behind the server's back: each change is
/// caught by `audit verify` and by the offline check, naming the writer and the first bad record;
/// undoing it makes both pass again.
async fn tampering_with_the_store_fails_verification_where_it_happened() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let g = gateway(&r, &admin, "recorder").await;
    let mut w = Writer::new(&g);
    for text in ["one", "two", "three", "four"] {
        w.append(chunk("s", text));
    }
    let ack: UploadAck = upload(&r, &g, &w.batch(1, 4)).await.json().await.unwrap();
    assert_eq!(ack.stored_through, 4);
    let mut db = r.tamper().await;
    let server_writer: String = sqlx::query_scalar("SELECT writer_id FROM audit_logs WHERE writer_id LIKE 'server-%'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let event_id: i64 = sqlx::query_scalar("SELECT MIN(id) FROM server_events").fetch_one(&mut db).await.unwrap();

    let verify = || async {
        let online: AuditVerifyReport = call(&r, &admin, "GET", "/v1/audit/verify", &()).await;
        let offline = Server::verify_data(r.dir.path(), None, &FixedPassphrase("pw".into())).await.unwrap();
        assert_eq!(
            online.problems.iter().map(|p| (&p.writer_id, p.index)).collect::<Vec<_>>(),
            offline.problems.iter().map(|p| (&p.writer_id, p.index)).collect::<Vec<_>>()
        );
        online.problems
    };
    assert_eq!(verify().await.len(), 0);

    let gid = g.id.as_str();
    let sw = server_writer.as_str();
    // (what, the change, its undo, the writer and index the first problem must name)
    // One flipped byte in a stored record's ciphertext.
    let original: Vec<u8> = sqlx::query_scalar("SELECT payload FROM audit_records WHERE writer_id = $1 AND seq = 2")
        .bind(gid)
        .fetch_one(&mut db)
        .await
        .unwrap();
    let mut flipped = original.clone();
    flipped[20] ^= 0x04;
    for (payload, expected) in [(&flipped, Some((gid, Some(2)))), (&original, None)] {
        sqlx::query("UPDATE audit_records SET payload = $1 WHERE writer_id = $2 AND seq = 2")
            .bind(payload)
            .bind(gid)
            .execute(&mut db)
            .await
            .unwrap();
        let problems = verify().await;
        assert_eq!(problems.first().map(|p| (p.writer_id.as_str(), p.index)), expected, "{problems:?}");
    }
    let cases: Vec<(&str, String, String, &str, Option<u64>)> = vec![
        (
            "a deleted record",
            format!(
                "CREATE TABLE kept AS SELECT * FROM audit_records WHERE writer_id = '{gid}' AND seq = 3; DELETE FROM audit_records WHERE writer_id = '{gid}' AND seq = 3"
            ),
            "INSERT INTO audit_records SELECT * FROM kept; DROP TABLE kept".into(),
            gid,
            Some(3),
        ),
        (
            "two records swapped",
            format!(
                "UPDATE audit_records SET seq = -seq WHERE writer_id = '{gid}' AND seq IN (2, 3); UPDATE audit_records SET seq = CASE seq WHEN -2 THEN 3 ELSE 2 END WHERE writer_id = '{gid}' AND seq < 0"
            ),
            format!(
                "UPDATE audit_records SET seq = -seq WHERE writer_id = '{gid}' AND seq IN (2, 3); UPDATE audit_records SET seq = CASE seq WHEN -2 THEN 3 ELSE 2 END WHERE writer_id = '{gid}' AND seq < 0"
            ),
            gid,
            Some(2),
        ),
        (
            "the tail cut",
            format!(
                "CREATE TABLE kept AS SELECT * FROM audit_records WHERE writer_id = '{gid}' AND seq = 4; DELETE FROM audit_records WHERE writer_id = '{gid}' AND seq = 4"
            ),
            "INSERT INTO audit_records SELECT * FROM kept; DROP TABLE kept".into(),
            gid,
            Some(4),
        ),
        (
            "an altered security event",
            format!(
                "UPDATE server_events SET detail = replace(detail, '\"admin\":\"admin\"', '\"admin\":\"mallory\"') \
                 WHERE id = {event_id}"
            ),
            format!(
                "UPDATE server_events SET detail = replace(detail, '\"admin\":\"mallory\"', '\"admin\":\"admin\"') \
                 WHERE id = {event_id}"
            ),
            sw,
            Some(1),
        ),
        (
            "a deleted security event",
            format!(
                "CREATE TABLE kept AS SELECT * FROM server_events WHERE id = {event_id}; DELETE FROM server_events WHERE id = {event_id}"
            ),
            "INSERT INTO server_events SELECT * FROM kept; DROP TABLE kept".into(),
            sw,
            Some(1),
        ),
        (
            "a deleted security event and its record",
            format!(
                "CREATE TABLE kept AS SELECT * FROM audit_records WHERE writer_id = '{sw}' AND seq = 1; DELETE FROM audit_records WHERE writer_id = '{sw}' AND seq = 1"
            ),
            "INSERT INTO audit_records SELECT * FROM kept; DROP TABLE kept".into(),
            sw,
            Some(1),
        ),
    ];
    for (what, change, undo, writer, index) in cases {
        sqlx::raw_sql(&change).execute(&mut db).await.unwrap();
        let problems = verify().await;
        let first = problems.first().unwrap_or_else(|| panic!("{what}: not caught"));
        assert_eq!((first.writer_id.as_str(), first.index), (writer, index), "{what}: {problems:?}");
        sqlx::raw_sql(&undo).execute(&mut db).await.unwrap();
        assert_eq!(verify().await.len(), 0, "{what}: undone, yet still failing");
    }

    // A session listed that no gateway recorded.
    sqlx::query(
        "INSERT INTO sessions (id, writer_id, user_name, target, login, grant_id, started_at, kind) \
         VALUES ('forged', $1, 'admin', 'web', 'root', 'g', 0, 'shell')",
    )
    .bind(gid)
    .execute(&mut db)
    .await
    .unwrap();
    let problems = verify().await;
    assert!(problems.iter().any(|p| p.message.contains("session forged")), "{problems:?}");
}
}

/// Rows written the way the version before Merkle logs wrote them (a record sealed under the
/// root key without a leaf, an event without a record) are upgraded when the server opens the
/// data directory: re-sealed under the writer's data key, given leaves and a log state; the
/// writer's next signed upload continues that log; everything verifies.
#[tokio::test]
async fn data_from_before_merkle_logs_is_upgraded_when_the_server_opens() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let g = gateway(&r, &admin, "old").await;
    let mut w = Writer::new(&g);
    w.append(chunk("s", "from before"));
    w.append(chunk("s", "after the upgrade"));
    let dir = r.dir.path();
    let pass = FixedPassphrase("pw".into());
    let (root, _) = portcullis_keystore::unlock(&dir.join("root.key.json"), "server-root", &pass).unwrap();
    let mut db =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", dir.join("server.db").display())).await.unwrap();
    let aad = portcullis_crypto::Aad::for_field("audit_records", &format!("{}/1", g.id), 1, "payload");
    sqlx::query(
        "INSERT INTO audit_records (writer_id, seq, kind, session_id, payload_sha256, payload, received_at) \
         VALUES ($1, 1, 'session_chunk', 's', $2, $3, 0)",
    )
    .bind(&g.id)
    .bind(portcullis_crypto::sha256_hex(w.payloads[0].as_bytes()))
    .bind(root.seal(&mut OsRng, w.payloads[0].as_bytes(), &aad).unwrap())
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO server_events (at, kind, detail) VALUES (1, 'old_event', '{\"x\":1}')")
        .execute(&mut db)
        .await
        .unwrap();
    // Until upgraded, these rows are exactly what verification must not trust.
    assert!(!Server::verify_data(dir, None, &pass).await.unwrap().problems.is_empty());

    let reopened = Server::open(dir, &pass, Arc::new(SystemClock)).await.unwrap();
    drop(reopened);
    let report = Server::verify_data(dir, None, &pass).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let old = report.writers.iter().find(|x| x.writer_id == g.id).unwrap();
    assert_eq!((old.records, old.checkpoint_size), (1, None));
    // The record is no longer under the root key.
    let ct: Vec<u8> = sqlx::query_scalar("SELECT payload FROM audit_records WHERE writer_id = $1 AND seq = 1")
        .bind(&g.id)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(root.open(&ct, &aad).is_err());
    // The gateway's next upload, signed, continues the upgraded log.
    let ack: UploadAck = upload(&r, &g, &w.batch(2, 2)).await.json().await.unwrap();
    assert_eq!((ack.stored_through, ack.resend_from), (2, None));
    let report: AuditVerifyReport = call(&r, &admin, "GET", "/v1/audit/verify", &()).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let old = report.writers.iter().find(|x| x.writer_id == g.id).unwrap();
    assert_eq!((old.records, old.checkpoint_size, old.countersigned), (2, Some(2), true));
}

on_both_backends! {
/// Rows the server decides with, changed or added behind its back, are refused — not trusted —
/// and work again once put back: a role added to a user, a device added for the admin, a group
/// membership added, a security key added, a gateway's key swapped, the policy set rewritten.
async fn rows_changed_behind_the_servers_back_are_refused() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let added: AddUserResponse = call(
        &r,
        &admin,
        "POST",
        "/v1/users",
        &AddUserRequest { name: "alice".into(), roles: vec![Role::Requester], groups: vec![] },
    )
    .await;
    let alice = enroll(&r, added.enrolment_code.as_deref().unwrap()).await;
    let added: AddUserResponse = call(
        &r,
        &admin,
        "POST",
        "/v1/users",
        &AddUserRequest { name: "bob".into(), roles: vec![Role::Approver], groups: vec![] },
    )
    .await;
    let bob = enroll(&r, added.enrolment_code.as_deref().unwrap()).await;
    let _: serde_json::Value = call(&r, &admin, "POST", "/v1/groups", &serde_json::json!({ "name": "ops" })).await;
    let g = gateway(&r, &admin, "near").await;
    let mut db = r.tamper().await;
    let me = |d: &Device| {
        let body = Vec::new();
        signed(&r, d, "GET", "/v1/me", &body, r.now(), &nonce())
    };
    async fn code_of(resp: reqwest::RequestBuilder) -> (u16, String) {
        let resp = resp.send().await.unwrap();
        let status = resp.status().as_u16();
        if status == 200 {
            return (200, String::new());
        }
        let body: ApiError = resp.json().await.unwrap();
        (status, body.code)
    }
    assert_eq!(code_of(me(&alice)).await.0, 200);

    // A role added to alice's row.
    sqlx::raw_sql("UPDATE users SET roles = roles || ',admin' WHERE name = 'alice'").execute(&mut db).await.unwrap();
    assert_eq!(code_of(me(&alice)).await, (403, "row_not_authentic".into()));
    sqlx::raw_sql("UPDATE users SET roles = 'requester' WHERE name = 'alice'").execute(&mut db).await.unwrap();
    assert_eq!(code_of(me(&alice)).await.0, 200);

    // A group membership added to alice.
    sqlx::raw_sql(
        "INSERT INTO user_groups (user_id, group_id) SELECT u.id, g.id FROM users u, groups g \
         WHERE u.name = 'alice' AND g.name = 'ops'",
    )
    .execute(&mut db)
    .await
    .unwrap();
    assert_eq!(code_of(me(&alice)).await, (403, "row_not_authentic".into()));
    sqlx::raw_sql("DELETE FROM user_groups").execute(&mut db).await.unwrap();
    assert_eq!(code_of(me(&alice)).await.0, 200);

    // A device added for the admin, with an attacker's key: its signed calls are refused.
    let attacker =
        Device { id: uuid::Uuid::new_v4().to_string(), key: SigningIdentity::generate(&mut OsRng), server: None, seal: None };
    sqlx::query(
        "INSERT INTO devices (id, user_id, name, sign_public_key, seal_public_key, created_at) \
         SELECT $1, id, 'laptop', $2, $3, 0 FROM users WHERE name = 'admin'",
    )
    .bind(&attacker.id)
    .bind(attacker.key.public_key().to_vec())
    .bind(SealingIdentity::generate(&mut OsRng).public_key().to_vec())
    .execute(&mut db)
    .await
    .unwrap();
    assert_eq!(code_of(me(&attacker)).await, (403, "row_not_authentic".into()));
    assert_eq!(code_of(me(&admin)).await.0, 200, "the real admin device still works");

    // A security key added for bob: a step-up ceremony refuses to use his keys at all.
    sqlx::raw_sql(
        "INSERT INTO security_keys (id, user_id, name, credential_id, passkey, created_at) \
         SELECT 'k1', id, 'planted', 'AAAA', '{}', 0 FROM users WHERE name = 'bob'",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    let request: AccessRequestView = call(
        &r,
        &alice,
        "POST",
        "/v1/requests",
        &CreateAccessRequest { target: "web".into(), duration_secs: 600, reason: "test".into(), access: None },
    )
    .await;
    let step_up = signed(
        &r,
        &bob,
        "POST",
        &format!("/v1/requests/{}/step-up", request.id),
        br#"{"decision":"approve"}"#,
        r.now(),
        &nonce(),
    );
    assert_eq!(code_of(step_up).await, (403, "row_not_authentic".into()));

    // A gateway's checkpoint key swapped: its uploads are refused and verification says why.
    let stranger = SigningIdentity::generate(&mut OsRng);
    sqlx::query("UPDATE gateways SET sign_public_key = $1 WHERE name = 'near'")
        .bind(stranger.public_key().to_vec())
        .execute(&mut db)
        .await
        .unwrap();
    let batch = UploadBatch {
        server_witnessed: None,
        records: vec![],
        checkpoint: portcullis_tlog::sign_checkpoint(&g.id, 0, MemoryTree::new().root_at(0).unwrap(), &stranger)
            .unwrap(),
        acknowledged: None,
    };
    let as_gateway = Device { id: g.id.clone(), key: stranger, server: None, seal: None };
    assert_eq!(error_code(upload(&r, &as_gateway, &batch).await).await, (403, "row_not_authentic".into()));
    let report: AuditVerifyReport = call(&r, &admin, "GET", "/v1/audit/verify", &()).await;
    assert!(
        report.problems.iter().any(|p| p.writer_id == g.id && p.message.contains("changed outside Portcullis")),
        "{:?}",
        report.problems
    );

    // The policy set rewritten to let anyone do anything: the next server to open it refuses
    // every request until an admin stores a set.
    sqlx::raw_sql("UPDATE policy_sets SET text = 'permit(principal, action, resource);'")
        .execute(&mut db)
        .await
        .unwrap();
    let reopened = Server::open(r.dir.path(), &FixedPassphrase("pw".into()), Arc::new(SystemClock)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { reopened.serve(listener, false, std::future::pending()).await });
    let second =
        Running {
            dir: tempfile::tempdir().unwrap(),
            database: None,
            url,
            http: reqwest::Client::new(),
            offset: r.offset.clone(),
        };
    let body = serde_json::to_vec(&CreateAccessRequest { target: "web".into(), duration_secs: 60, reason: "x".into(), access: None })
        .unwrap();
    let refused = signed(&second, &alice, "POST", "/v1/requests", &body, r.now(), &nonce()).send().await.unwrap();
    assert_eq!(error_code(refused).await, (403, "policy_unusable".into()));
}
}

on_both_backends! {
/// The event log stays useful: a flood of bad enrolment codes is limited (429) and recorded in
/// aggregate; what a gateway reports is checked (target known, time not ahead) and dated when
/// received; the server filters and pages events.
async fn the_event_log_stays_useful() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let added: AddUserResponse = call(
        &r,
        &admin,
        "POST",
        "/v1/users",
        &AddUserRequest { name: "carol".into(), roles: vec![Role::Requester], groups: vec![] },
    )
    .await;

    // A flood of wrong codes from one address.
    let key = SigningIdentity::generate(&mut OsRng);
    let seal = SealingIdentity::generate(&mut OsRng);
    let attempt = |code: String| {
        r.http.post(format!("{}/v1/enroll", r.url)).json(&EnrollRequest {
            code,
            device_name: "x".into(),
            sign_public_key: b64().encode(key.public_key()),
            seal_public_key: b64().encode(seal.public_key()),
        })
    };
    let wrong = format!("pc1-{}-{}", "0".repeat(32), &added.enrolment_code.as_deref().unwrap()[37..]);
    let mut statuses = Vec::new();
    for i in 0..35 {
        let code = if i % 2 == 0 { wrong.clone() } else { "not a code".into() };
        statuses.push(attempt(code).send().await.unwrap().status().as_u16());
    }
    assert!(statuses[..30].iter().all(|s| *s == 403) && statuses[30..].iter().all(|s| *s == 429), "{statuses:?}");
    // Even the right code waits out the hour (no guessing at speed)...
    assert_eq!(attempt(added.enrolment_code.clone().unwrap()).send().await.unwrap().status(), 429);
    let refused: Vec<ServerEvent> = call(&r, &admin, "GET", "/v1/audit/events?kind=enrolment_refused", &()).await;
    let attempts: Vec<u64> = refused.iter().rev().map(|e| e.detail["attempts"].as_u64().unwrap()).collect();
    assert_eq!(attempts, vec![1, 8, 16, 30], "{refused:?}");
    assert_eq!(refused[0].detail["rate_limited"], true);
    assert_eq!(refused[0].detail["source"], "127.0.0.1");
    // ...and then works.
    r.offset.store(3601, Ordering::SeqCst);
    assert_eq!(attempt(added.enrolment_code.clone().unwrap()).send().await.unwrap().status(), 200);
    r.offset.store(0, Ordering::SeqCst);

    // A gateway reports a host-key mismatch for a target that does not exist, from the future.
    let g = unconfirmed_gateway(&r, &admin, "reporter").await; // uploads need no confirmation
    let mut w = Writer::new(&g);
    let future = (now() + 7200) as f64;
    w.append(
        serde_json::to_string(&AuditPayload::HostKeyMismatch(HostKeyMismatch {
            target: "ghost".into(),
            host: "10.0.0.9".into(),
            port: 22,
            expected_fingerprint: "a".into(),
            presented_fingerprint: "b".into(),
            at: future,
            user: None,
        }))
        .unwrap(),
    );
    let ack: UploadAck = upload(&r, &g, &w.batch(1, 1)).await.json().await.unwrap();
    assert_eq!(ack.stored_through, 1);
    let reported: Vec<ServerEvent> =
        call(&r, &admin, "GET", "/v1/audit/events?kind=host_key_mismatch&gateway=reporter", &()).await;
    assert_eq!(reported.len(), 1, "{reported:?}");
    let checked = reported[0].detail["checked"].as_str().unwrap();
    assert!(checked.contains("no target is named \"ghost\"") && checked.contains("ahead"), "{checked}");
    assert!(reported[0].at <= now() + 5, "dated when received, not when claimed");
    assert_eq!(reported[0].detail["reported_at"], future as i64);

    // Filters and pages, on the server.
    let all: Vec<ServerEvent> = call(&r, &admin, "GET", "/v1/audit/events?limit=500", &()).await;
    assert!(all.len() > 8);
    assert!(all.windows(2).all(|p| p[0].id > p[1].id), "newest first");
    let page: Vec<ServerEvent> = call(&r, &admin, "GET", "/v1/audit/events?limit=3", &()).await;
    let next: Vec<ServerEvent> =
        call(&r, &admin, "GET", &format!("/v1/audit/events?limit=3&before={}", page[2].id), &()).await;
    let ids: Vec<i64> = page.iter().chain(&next).map(|e| e.id).collect();
    assert_eq!(ids, all.iter().take(6).map(|e| e.id).collect::<Vec<_>>());
    let by_admin: Vec<ServerEvent> = call(&r, &admin, "GET", "/v1/audit/events?actor=admin&limit=500", &()).await;
    assert!(!by_admin.is_empty() && by_admin.iter().all(|e| e.actor.as_deref() == Some("admin")));
    let two_kinds: Vec<ServerEvent> =
        call(&r, &admin, "GET", "/v1/audit/events?kind=user_added,gateway_added&limit=500", &()).await;
    assert!(two_kinds.iter().any(|e| e.kind == "user_added") && two_kinds.iter().any(|e| e.kind == "gateway_added"));
    assert!(two_kinds.iter().all(|e| e.kind == "user_added" || e.kind == "gateway_added"));
    let none: Vec<ServerEvent> =
        call(&r, &admin, "GET", &format!("/v1/audit/events?since={}", now() + 100_000), &()).await;
    assert!(none.is_empty());
    let old: Vec<ServerEvent> = call(&r, &admin, "GET", "/v1/audit/events?until=1", &()).await;
    assert!(old.is_empty());
}
}

on_both_backends! {
/// Gateways keep the newest checkpoint of the server's own log they were shown; when the
/// server's events are cut back to an older state (a restored database), the next upload that
/// shows a newer one raises `audit_server_behind` naming the server's log and the first event
/// it lacks.
async fn gateways_witness_the_servers_own_log() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let g = gateway(&r, &admin, "witness").await;
    let mut w = Writer::new(&g);
    w.append(chunk("s", "one"));
    w.append(chunk("s", "two"));
    let mut db = r.tamper().await;
    // The server's own log as it stands now: what a backup would hold.
    sqlx::raw_sql("CREATE TABLE older AS SELECT * FROM audit_logs WHERE writer_id LIKE 'server-%'")
        .execute(&mut db)
        .await
        .unwrap();
    let (own, older): (String, i64) =
        sqlx::query_as("SELECT writer_id, size FROM older").fetch_one(&mut db).await.unwrap();
    // More events happen; the gateway's upload is acknowledged with the server log's checkpoint.
    for name in ["later", "later-still", "latest"] {
        let _: serde_json::Value = call(&r, &admin, "POST", "/v1/groups", &serde_json::json!({ "name": name })).await;
    }
    let ack: UploadAck = upload(&r, &g, &w.batch(1, 1)).await.json().await.unwrap();
    let shown = ack.server_checkpoint.expect("the server's own checkpoint comes with every acknowledgement");
    let cp = portcullis_tlog::verify_checkpoint(&shown, &own, &server_key(&admin), None).unwrap();
    assert!(cp.size > older as u64);

    // Behind the server's back: its own log put back to the older state (events and records after it gone).
    sqlx::raw_sql(&format!(
        "DELETE FROM audit_records WHERE writer_id = '{own}' AND seq > {older}; \
         DELETE FROM server_events WHERE seq > {older}; \
         DELETE FROM audit_logs WHERE writer_id = '{own}'; INSERT INTO audit_logs SELECT * FROM older; DROP TABLE older"
    ))
    .execute(&mut db)
    .await
    .unwrap();
    // Consistent with itself, so verification alone cannot tell (it records one event itself)...
    let report: AuditVerifyReport = call(&r, &admin, "GET", "/v1/audit/verify", &()).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // ...but the gateway can: it shows the newer checkpoint with its next upload.
    let mut next = w.batch(2, 2);
    next.server_witnessed = Some(shown);
    let ack: UploadAck = upload(&r, &g, &next).await.json().await.unwrap();
    assert_eq!(ack.stored_through, 2, "the gateway's records are not at fault");
    let raised = alarms(&r, &admin).await;
    assert!(
        raised.iter().any(|a| a.kind == "audit_server_behind"
            && a.detail["writer_id"] == own.as_str()
            && a.detail["gateway"] == "witness"
            && a.detail["index"].as_i64().is_some_and(|i| i > older)),
        "{raised:?}"
    );
}
}

fn session_start(id: &str, user: &str, target: &str, grant: &str) -> String {
    serde_json::to_string(&AuditPayload::SessionStart(SessionStart {
        session_id: id.into(),
        user: user.into(),
        device_id: String::new(),
        target: target.into(),
        login: "root".into(),
        grant_id: grant.into(),
        started_at: now() as f64,
        width: 80,
        height: 24,
        term: "xterm".into(),
        command: Some("id".into()),
        channel: "exec".into(),
        gateway: "near".into(),
        client_addr: String::new(),
        target_transport_fallback: None,
    }))
    .unwrap()
}

/// `user`'s certificate for `target` (for `key`), and the session `gateway` was then allowed
/// to open with it.
async fn authorised(
    r: &Running,
    user: &Device,
    gateway: &Device,
    target: &str,
    key: &russh::keys::PrivateKey,
) -> (CertificateResponse, SessionTicket) {
    let public_key = key.public_key().to_openssh().unwrap();
    let certificate: CertificateResponse =
        call(r, user, "POST", "/v1/certificates", &CertificateRequest { target: target.into(), public_key }).await;
    let ask = SessionAuthorizationRequest {
        certificate: certificate.certificate.clone(),
        ssh_user: target.into(),
        client_addr: "127.0.0.1:1".into(),
    };
    let ticket: SessionTicket = call(r, gateway, "POST", "/v1/gateway/sessions", &ask).await;
    (certificate, ticket)
}

on_both_backends! {
/// A gateway's word is not enough: a `SessionStart` is stored only against an authorisation the
/// server gave that gateway for that user, target, login and grant. A compromised gateway
/// making up a session for someone — or replaying another gateway's authorisation — is
/// refused, with an alarm.
async fn a_session_start_needs_the_servers_authorisation() {
    use portcullis_server::user_ca::random_ed25519;
    let (r, code, _server) = start_as(vec![Role::Auditor]).await;
    let admin = enroll(&r, &code).await;
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let bob = member(&r, &admin, "bob", &[Role::Approver], &[]).await;
    let near = gateway(&r, &admin, "near").await;
    let other = gateway(&r, &admin, "other").await;
    let target = AddTargetRequest { gateway: Some("near".into()), ..password_target(&admin, "web", b"pw") };
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &target).await;
    approved(&r, &alice, &bob, "web").await;
    // near reports where it listens (a certificate names it).
    let beat = GatewayHeartbeat {
        address: "127.0.0.1:2200".into(),
        host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHjB9qE3HBVGfD3cY0XkQkQZK3tMh4cD0wQJ1K6pNq5z gw".into(),
        backlog: 0,
    };
    let _: serde_json::Value = call(&r, &near, "POST", "/v1/gateway/heartbeat", &beat).await;
    let key = random_ed25519();
    let (certificate, ticket) = authorised(&r, &alice, &near, "web", &key).await;
    let grant = ticket.session.grant_id.clone();
    assert_eq!(certificate.grant_id, grant);

    // What the server authorised: stored.
    let mut w = Writer::new(&near);
    w.append(session_start("11111111-1111-4111-8111-111111111111", "alice", "web", &grant));
    assert_eq!(upload(&r, &near, &w.batch(1, 1)).await.status(), 200);
    // Made up: another user, another grant — refused, and an alarm names the gateway.
    w.append(session_start("22222222-2222-4222-8222-222222222222", "bob", "web", &grant));
    let refused = upload(&r, &near, &w.batch(2, 2)).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("authorised no such session"));
    let alarm = alarms(&r, &admin).await;
    assert!(
        alarm.iter().any(|a| a.detail["message"].as_str().unwrap_or_default().contains("authorised no such session")
            && a.detail.to_string().contains("near")),
        "{alarm:?}"
    );
    // Another gateway replaying near's authorisation: refused too.
    let mut o = Writer::new(&other);
    o.append(session_start("33333333-3333-4333-8333-333333333333", "alice", "web", &grant));
    assert_eq!(upload(&r, &other, &o.batch(1, 1)).await.status(), 403);
    let sessions: Vec<SessionSummary> = call(&r, &admin, "GET", "/v1/audit/sessions", &()).await;
    assert_eq!(sessions.len(), 1, "only the authorised session is listed: {sessions:?}");

    // Sessions are keyed by (writer, id): a third gateway, with an authorisation of its own, starting a
    // session under near's id neither takes nor shadows near's — it is kept as third's, with
    // an alarm, and the id alone still means near's.
    let third = gateway(&r, &admin, "third").await;
    let db = AddTargetRequest { gateway: Some("third".into()), ..password_target(&admin, "db", b"pw") };
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &db).await;
    approved(&r, &alice, &bob, "db").await;
    let beat = GatewayHeartbeat { address: "127.0.0.1:2201".into(), ..beat };
    let _: serde_json::Value = call(&r, &third, "POST", "/v1/gateway/heartbeat", &beat).await;
    let (_, ticket) = authorised(&r, &alice, &third, "db", &key).await;
    let mut t = Writer::new(&third);
    t.append(session_start("11111111-1111-4111-8111-111111111111", "alice", "db", &ticket.session.grant_id));
    assert_eq!(upload(&r, &third, &t.batch(1, 1)).await.status(), 200);
    let alarm = alarms(&r, &admin).await;
    assert!(
        alarm.iter().any(|a| a.kind == "session_id_reused"
            && a.detail["writer_id"] == third.id.as_str()
            && a.detail["first_writer_id"] == near.id.as_str()),
        "{alarm:?}"
    );
    let path = "/v1/audit/sessions/11111111-1111-4111-8111-111111111111";
    let first: SessionDetail = call(&r, &admin, "GET", path, &()).await;
    assert_eq!(first.summary.target, "web", "the id alone means the writer that used it first");
    let second: SessionDetail = call(&r, &admin, "GET", &format!("{path}?writer={}", third.id), &()).await;
    assert_eq!(second.summary.target, "db");
    let sessions: Vec<SessionSummary> = call(&r, &admin, "GET", "/v1/audit/sessions", &()).await;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
}
}

/// A server where bob approved alice's request for "web" and she holds a certificate for it,
/// with a connection to its database (to change it behind the server's back).
struct Granted {
    r: Running,
    code: String,
    admin: Device,
    alice: Device,
    bob: Device,
    request: AccessRequestView,
    certify: CertificateRequest,
    db: sqlx::AnyConnection,
}

async fn granted() -> Granted {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let bob = member(&r, &admin, "bob", &[Role::Approver], &[]).await;
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    let request = approved(&r, &alice, &bob, "web").await;
    let key = portcullis_server::user_ca::random_ed25519();
    let certify = CertificateRequest { target: "web".into(), public_key: key.public_key().to_openssh().unwrap() };
    let _: CertificateResponse = call(&r, &alice, "POST", "/v1/certificates", &certify).await;
    let db = r.tamper().await;
    Granted { r, code, admin, alice, bob, request, certify, db }
}

on_both_backends! {
/// Grants, targets and enrolment codes are decided with too: a revocation undone, a target moved
/// behind the server's back, a used enrolment code made fresh again — each is refused, and
/// verification names the row.
async fn grants_targets_and_codes_changed_behind_the_servers_back_are_refused() {
    let Granted { r, code, admin, alice, bob, request, certify, mut db } = granted().await;
    let problems = || async {
        let report: AuditVerifyReport = call(&r, &admin, "GET", "/v1/audit/verify", &()).await;
        report.problems.into_iter().map(|p| p.message).collect::<Vec<_>>()
    };
    assert_eq!(problems().await, Vec::<String>::new());

    // The grant revoked, then un-revoked in the database: no certificate, and verify says so.
    let _: RevokeOutcome =
        call(&r, &bob, "POST", "/v1/revoke", &RevokeRequest { id: request.id.clone(), reason: None }).await;
    let (_, code_now, _) = refused(&r, &alice, "POST", "/v1/certificates", &certify).await;
    assert_eq!(code_now, "grant_revoked", "revoked: the ordinary refusal");
    sqlx::raw_sql("UPDATE grants SET revoked_at = NULL, revoke_reason = NULL").execute(&mut db).await.unwrap();
    let (status, code_now, _) = refused(&r, &alice, "POST", "/v1/certificates", &certify).await;
    assert_eq!((status, code_now.as_str()), (403, "row_not_authentic"));
    assert!(problems().await.iter().any(|p| p.starts_with("grant ") && p.contains("changed outside")));
    sqlx::raw_sql("UPDATE grants SET revoked_at = 1").execute(&mut db).await.unwrap();

    // The target pointed at another host in the database: nobody can ask for it, verify says so.
    sqlx::raw_sql("UPDATE targets SET host = '203.0.113.7'").execute(&mut db).await.unwrap();
    let (status, code_now, _) = refused(&r, &alice, "POST", "/v1/requests", &ask("web", 600)).await;
    assert_eq!((status, code_now.as_str()), (403, "row_not_authentic"));
    assert!(problems().await.iter().any(|p| p.starts_with("target ") && p.contains("changed outside")));
    // An admin's edit does not launder it either.
    let edit = serde_json::json!({ "host": "127.0.0.1", "port": 22, "login": "root", "host_key": HOST_KEY,
        "credential_kind": "password", "environment": "prod", "tags": [], "description": "edited" });
    let (status, code_now, _) = refused(&r, &admin, "PUT", "/v1/targets/web", &edit).await;
    assert_eq!((status, code_now.as_str()), (403, "row_not_authentic"));

    // The admin's used enrolment code made unused again: it enrols nobody.
    sqlx::raw_sql("UPDATE enrolment_codes SET used_at = NULL, expires_at = 99999999999")
        .execute(&mut db)
        .await
        .unwrap();
    let resp = r
        .http
        .post(format!("{}/v1/enroll", r.url))
        .json(&EnrollRequest {
            code: code.clone(),
            device_name: "second admin laptop".into(),
            sign_public_key: b64().encode(SigningIdentity::generate(&mut OsRng).public_key()),
            seal_public_key: b64().encode(SealingIdentity::generate(&mut OsRng).public_key()),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, (403, "row_not_authentic".into()));
    assert!(problems().await.iter().any(|p| p.starts_with("enrolment code ") && p.contains("changed outside")));

    // Two approvals needed; one planted in the database: the real approver's review cannot
    // complete the request with it.
    sqlx::raw_sql("UPDATE targets SET host = '127.0.0.1'").execute(&mut db).await.unwrap();
    let two = "@id(\"two\")\n@approvals(\"2\")\npermit (principal, action == Portcullis::Action::\"request\", resource);\n\
               @id(\"approvers\")\npermit (principal, action == Portcullis::Action::\"approve\", resource) \
               when { principal.roles.contains(\"approver\") };";
    let _: PolicyView = call(&r, &admin, "PUT", "/v1/policy", &PolicyText { text: two.into() }).await;
    let carol = member(&r, &admin, "carol", &[Role::Approver], &[]).await;
    let pending: AccessRequestView = call(&r, &alice, "POST", "/v1/requests", &ask("web", 600)).await;
    sqlx::query(
        "INSERT INTO reviews (request_id, approver_id, decision, at, policies) \
         SELECT $1, id, 'approve', 0, 'approvers' FROM users WHERE name = 'carol'",
    )
    .bind(&pending.id)
    .execute(&mut db)
    .await
    .unwrap();
    let review = ReviewRequest { decision: Decision::Approve, reason: None, step_up: None };
    let (status, code_now, _) =
        refused(&r, &bob, "POST", &format!("/v1/requests/{}/review", pending.id), &review).await;
    assert_eq!((status, code_now.as_str()), (403, "row_not_authentic"));
    assert!(problems().await.iter().any(|p| p.starts_with("the review of request ") && p.contains("changed outside")));
    let _ = carol;
}
}

/// A data directory from before grants, targets and codes had a MAC: the first start that adds
/// the column seals them as they are, and they keep working; a row added later without a MAC is
/// refused.
#[tokio::test]
async fn rows_from_before_their_mac_are_sealed_once_at_the_upgrade() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let bob = member(&r, &admin, "bob", &[Role::Approver], &[]).await;
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    approved(&r, &alice, &bob, "web").await;
    {
        // Back to the schema before the migration: no MAC column, the migration not applied.
        let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", r.dir.path().join("server.db").display()))
            .await
            .unwrap();
        sqlx::raw_sql(
            "ALTER TABLE grants DROP COLUMN mac; ALTER TABLE targets DROP COLUMN mac; \
             ALTER TABLE enrolment_codes DROP COLUMN mac; ALTER TABLE reviews DROP COLUMN mac; \
             ALTER TABLE webauthn_challenges DROP COLUMN mac; \
             DELETE FROM _sqlx_migrations WHERE version = 20261201000002",
        )
        .execute(&mut db)
        .await
        .unwrap();
        db.close().await.unwrap();
    }
    let reopened = Server::open(r.dir.path(), &FixedPassphrase("pw".into()), Arc::new(SystemClock)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { reopened.serve(listener, false, std::future::pending()).await });
    let upgraded = Running {
        dir: tempfile::tempdir().unwrap(),
        database: None,
        url,
        http: reqwest::Client::new(),
        offset: r.offset.clone(),
    };
    let key = portcullis_server::user_ca::random_ed25519();
    let certify = CertificateRequest { target: "web".into(), public_key: key.public_key().to_openssh().unwrap() };
    let _: CertificateResponse = call(&upgraded, &alice, "POST", "/v1/certificates", &certify).await;
    let report: AuditVerifyReport = call(&upgraded, &admin, "GET", "/v1/audit/verify", &()).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // A grant planted after the upgrade has no MAC: verification names it.
    let mut db = r.tamper().await;
    sqlx::raw_sql(
        "PRAGMA foreign_keys = OFF; \
         INSERT INTO grants (id, request_id, user_id, device_id, target_id, not_before, not_after, signed) \
         SELECT 'planted', 'planted-request', user_id, device_id, target_id, not_before, not_after, signed FROM grants",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let report: AuditVerifyReport = call(&upgraded, &admin, "GET", "/v1/audit/verify", &()).await;
    assert!(report.problems.iter().any(|p| p.message.contains("grant planted")), "{:?}", report.problems);
    // Removing the marker of the one-time sealing, to have the planted grant sealed at the next
    // start, makes the server refuse to start instead.
    sqlx::raw_sql("DELETE FROM server_settings WHERE name = 'rows_authenticated'").execute(&mut db).await.unwrap();
    let refused = Server::open(r.dir.path(), &FixedPassphrase("pw".into()), Arc::new(SystemClock)).await;
    let why = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(why.contains("setting rows_authenticated was deleted outside Portcullis"), "{why}");
}

on_both_backends! {
/// A MAC alone accepts an older sealed copy of a row: the row ledger does not. A revoked grant
/// restored from an earlier copy (MAC and all) is refused; a row deleted is named; the ledger
/// cut back to before the newest event's anchor is named too.
async fn older_copies_of_rows_and_a_cut_back_ledger_are_caught() {
    let Granted { r, admin, alice, bob, request, certify, mut db, .. } = granted().await;
    let problems = || async {
        let report: AuditVerifyReport = call(&r, &admin, "GET", "/v1/audit/verify", &()).await;
        report.problems.into_iter().map(|p| p.message).collect::<Vec<_>>()
    };
    assert_eq!(problems().await, Vec::<String>::new());

    // The live grant, MAC and all, kept aside; revoked; the old copy put back.
    sqlx::raw_sql("CREATE TABLE kept AS SELECT * FROM grants").execute(&mut db).await.unwrap();
    let _: RevokeOutcome =
        call(&r, &bob, "POST", "/v1/revoke", &RevokeRequest { id: request.id.clone(), reason: None }).await;
    sqlx::raw_sql(&format!("{} DELETE FROM grants; INSERT INTO grants SELECT * FROM kept", r.foreign_keys_off()))
        .execute(&mut db)
        .await
        .unwrap();
    let (status, code_now, message) = refused(&r, &alice, "POST", "/v1/certificates", &certify).await;
    assert_eq!((status, code_now.as_str()), (403, "row_not_authentic"), "{message}");
    assert!(message.contains("older copy"), "{message}");
    assert!(problems().await.iter().any(|p| p.contains("older copy")));

    // The target deleted behind the server's back: named.
    sqlx::raw_sql(&format!(
        "{} CREATE TABLE kept_targets AS SELECT * FROM targets; DELETE FROM targets",
        r.foreign_keys_off()
    ))
        .execute(&mut db)
        .await
        .unwrap();
    assert!(problems().await.iter().any(|p| p.starts_with("target ") && p.contains("deleted outside")));
    sqlx::raw_sql("INSERT INTO targets SELECT * FROM kept_targets").execute(&mut db).await.unwrap();

    // The ledger cut back by its newest entries (with the grant put back as it was sealed
    // before): the newest event's anchor is gone.
    sqlx::raw_sql("DELETE FROM row_ledger WHERE seq > (SELECT MAX(seq) - 2 FROM row_ledger)")
        .execute(&mut db)
        .await
        .unwrap();
    assert!(problems().await.iter().any(|p| p.contains("row ledger was cut back")), "{:?}", problems().await);
}
}
