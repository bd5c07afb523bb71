//! Two replicas of one server — two `Server`s opened on one data directory and one database,
//! each serving its own port, as two `server run` behind a load balancer — racing each other.
//! Whatever the race, the database decides once: one enrolment per code, one use per nonce, one
//! grant per request, one consistent server log.

use super::audit_logs::{Writer, upload};
use super::*;

/// Another replica of `r`'s server: the same data directory and database, its own listener.
pub(crate) async fn replica(r: &Running) -> Running {
    let server = Server::open(r.dir.path(), &FixedPassphrase("pw".into()), Arc::new(ShiftedClock(r.offset.clone())))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { server.serve(listener, false, std::future::pending()).await });
    Running {
        // Nothing of its own on disk: the replica reads `r`'s.
        dir: tempfile::tempdir().unwrap(),
        database: r.database.clone(),
        url,
        http: reqwest::Client::new(),
        offset: r.offset.clone(),
    }
}

fn statuses(responses: [reqwest::Response; 2]) -> [u16; 2] {
    let mut s = responses.map(|r| r.status().as_u16());
    s.sort();
    s
}

on_both_backends! {
/// An enrolment code sent to both replicas at the same moment enrols one device.
async fn a_code_used_at_both_replicas_at_once_enrols_one_device() {
    let (a, code) = start().await;
    let b = replica(&a).await;
    let admin = enroll(&a, &code).await;
    for round in 0..5 {
        let req = AddUserRequest { name: format!("user{round}"), roles: vec![Role::Requester], groups: vec![] };
        let added: AddUserResponse = call(&a, &admin, "POST", "/v1/users", &req).await;
        let code = added.enrolment_code.unwrap();
        let enrol = |r: &Running| {
            let key = SigningIdentity::generate(&mut OsRng);
            let seal = SealingIdentity::generate(&mut OsRng);
            r.http.post(format!("{}/v1/enroll", r.url)).json(&EnrollRequest {
                code: code.clone(),
                device_name: "racer".into(),
                sign_public_key: b64().encode(key.public_key()),
                seal_public_key: b64().encode(seal.public_key()),
            })
        };
        let (x, y) = tokio::join!(enrol(&a).send(), enrol(&b).send());
        let got = statuses([x.unwrap(), y.unwrap()]);
        assert_eq!(got[0], 200, "round {round}: {got:?}");
        assert!(got[1] >= 400, "round {round}: the code enrolled twice: {got:?}");
        let devices: Vec<DeviceView> = call(&b, &admin, "GET", "/v1/devices", &()).await;
        assert_eq!(devices.iter().filter(|d| d.user == format!("user{round}")).count(), 1, "round {round}");
    }
}
}

on_both_backends! {
/// One signed request (one nonce) sent to both replicas at once is served once.
async fn a_request_replayed_at_the_other_replica_is_refused() {
    let (a, code) = start().await;
    let b = replica(&a).await;
    let admin = enroll(&a, &code).await;
    for round in 0..10 {
        let body = serde_json::to_vec(&serde_json::json!({ "name": format!("g{round}") })).unwrap();
        let (time, once) = (a.now(), nonce());
        let (x, y) = tokio::join!(
            signed(&a, &admin, "POST", "/v1/groups", &body, time, &once).send(),
            signed(&b, &admin, "POST", "/v1/groups", &body, time, &once).send()
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let (served, other) = if x.status() == 200 { (x, y) } else { (y, x) };
        assert_eq!(served.status(), 200, "round {round}");
        let (status, code) = error_code(other).await;
        assert_eq!((status, code.as_str()), (403, "replay"), "round {round}: one nonce, served twice");
    }
}
}

on_both_backends! {
/// A policy stored through one replica decides at the other from the next request on: each
/// replica asks the store which version is in force before it decides, so a tightened policy
/// cannot be slipped past at a replica that still holds the old one.
async fn a_policy_stored_at_one_replica_decides_at_the_other_at_once() {
    let (a, code) = start().await;
    let b = replica(&a).await;
    let admin = enroll(&a, &code).await;
    let alice = member(&a, &admin, "alice", &[Role::Requester], &[]).await;
    let _: TargetSummary = call(&a, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    // B has decided under the default set: it holds a compiled copy.
    let _: AccessRequestView = call(&b, &alice, "POST", "/v1/requests", &ask("web", 3 * 3600)).await;
    let short = r#"
@id("short-only")
permit (principal, action == Portcullis::Action::"request", resource)
when { principal.roles.contains("requester") && context.duration <= duration("1h") };

@id("approvers-approve")
permit (principal, action == Portcullis::Action::"approve", resource)
when { principal.roles.contains("approver") };
"#;
    let set: PolicyView = call(&a, &admin, "PUT", "/v1/policy", &PolicyText { text: short.into() }).await;
    let (_, code, message) = refused(&b, &alice, "POST", "/v1/requests", &ask("web", 3 * 3600)).await;
    assert_eq!(code, "policy_denied", "{message}");
    assert!(message.contains("short-only") || message.contains("1h"), "{message}");
    let allowed: AccessRequestView = call(&b, &alice, "POST", "/v1/requests", &ask("web", 600)).await;
    let detail: portcullis_proto::RequestDetail =
        call(&b, &alice, "GET", &format!("/v1/requests/{}", allowed.id), &()).await;
    assert_eq!(detail.policy_version, Some(set.version), "B decided under the version A stored");
}
}

on_both_backends! {
/// Approvals racing at both replicas make one grant; an approval racing a withdrawal leaves no
/// usable grant when the withdrawal is the one that counts.
async fn approvals_and_withdrawals_at_both_replicas_decide_once() {
    let (a, code) = start().await;
    let b = replica(&a).await;
    let admin = enroll(&a, &code).await;
    let alice = member(&a, &admin, "alice", &[Role::Requester], &[]).await;
    let bob = member(&a, &admin, "bob", &[Role::Approver], &[]).await;
    let carol = member(&b, &admin, "carol", &[Role::Approver], &[]).await;
    let _: TargetSummary = call(&a, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    let approve = serde_json::to_vec(&APPROVE).unwrap();
    for round in 0..5 {
        let req: AccessRequestView = call(&a, &alice, "POST", "/v1/requests", &ask("web", 600)).await;
        let path = format!("/v1/requests/{}/review", req.id);
        let (x, y) = tokio::join!(
            signed(&a, &bob, "POST", &path, &approve, a.now(), &nonce()).send(),
            signed(&b, &carol, "POST", &path, &approve, b.now(), &nonce()).send()
        );
        assert_eq!(statuses([x.unwrap(), y.unwrap()]), [200, 409], "round {round}");
        let story: RequestDetail = call(&b, &alice, "GET", &format!("/v1/requests/{}", req.id), &()).await;
        assert_eq!((story.reviews.len(), story.request.approvals), (1, 1), "round {round}");
    }
    // Another target: alice holds live grants for "web" from the rounds above.
    let _: TargetSummary = call(&a, &admin, "POST", "/v1/targets", &password_target(&admin, "db", b"pw")).await;
    // Twenty rounds: the window in which an approval commits between a withdrawal's read and
    // its write is narrow.
    for round in 0..20 {
        let req: AccessRequestView = call(&a, &alice, "POST", "/v1/requests", &ask("db", 600)).await;
        let review = format!("/v1/requests/{}/review", req.id);
        let withdraw = serde_json::to_vec(&RevokeRequest { id: req.id.clone(), reason: None }).unwrap();
        let (x, y) = tokio::join!(
            signed(&a, &bob, "POST", &review, &approve, a.now(), &nonce()).send(),
            signed(&b, &alice, "POST", "/v1/revoke", &withdraw, b.now(), &nonce()).send()
        );
        let (approved, withdrawn) = (x.unwrap().status().as_u16(), y.unwrap().status().as_u16());
        assert_eq!(withdrawn, 200, "round {round}: a requester can always withdraw or revoke their own");
        // Approved first (then revoked), or refused: no longer pending (409), or withdrawn (403).
        assert!(matches!(approved, 200 | 403 | 409), "round {round}: approval answered {approved}");
        // Whichever came first, nothing is usable now.
        let certify = CertificateRequest {
            target: "db".into(),
            public_key: portcullis_server::user_ca::random_ed25519().public_key().to_openssh().unwrap(),
        };
        let (status, why, _) = refused(&a, &alice, "POST", "/v1/certificates", &certify).await;
        assert_eq!(status, 403, "round {round}: {why}");
    }
}
}

on_both_backends! {
/// Security events recorded at both replicas at once, and one gateway's batch uploaded to both
/// at once (a retry at the other replica), leave one consistent log per writer: every record in
/// place, each log's state its records' tree, its checkpoint signed at that size.
async fn both_replicas_appending_at_once_keep_one_consistent_log() {
    let (a, code) = start().await;
    let b = replica(&a).await;
    let admin = enroll(&a, &code).await;
    let g = gateway(&a, &admin, "recorder").await;
    let mut w = Writer::new(&g);
    for i in 0..8 {
        w.append(chunk("s", &format!("chunk {i}")));
    }
    let group = |r: &Running, name: String| {
        let body = serde_json::to_vec(&serde_json::json!({ "name": name })).unwrap();
        signed(r, &admin, "POST", "/v1/groups", &body, r.now(), &nonce()).send()
    };
    let mut racing = Vec::new();
    for i in 0..12 {
        racing.push(group(&a, format!("a{i}")));
        racing.push(group(&b, format!("b{i}")));
    }
    let batch = w.batch(1, 8);
    let (events, x, y) =
        tokio::join!(futures_util::future::join_all(racing), upload(&a, &g, &batch), upload(&b, &g, &batch));
    for e in events {
        assert_eq!(e.unwrap().status(), 200);
    }
    assert_eq!((x.status().as_u16(), y.status().as_u16()), (200, 200), "a re-sent batch is acknowledged, not refused");
    let (x, y): (UploadAck, UploadAck) = (x.json().await.unwrap(), y.json().await.unwrap());
    assert_eq!((x.stored_through, y.stored_through), (8, 8));
    assert_eq!(x.duplicates + y.duplicates, 8, "one of the two stored the batch, the other found it stored");
    // (Listed first: verifying records an event of its own.)
    let listed: Vec<ServerEvent> = call(&a, &admin, "GET", "/v1/audit/events?limit=500", &()).await;
    let report: AuditVerifyReport = call(&b, &admin, "GET", "/v1/audit/verify", &()).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let own = report.writers.iter().find(|w| w.name == "control server").unwrap();
    assert_eq!(own.records, listed.len() as u64, "one record per event, none lost or doubled");
    assert_eq!(own.checkpoint_size, Some(own.records), "the checkpoint is signed at the log's size");
    let gw = report.writers.iter().find(|w| w.writer_id == g.id).unwrap();
    assert_eq!((gw.records, gw.checkpoint_size), (8, Some(8)));
}
}

/// Reads `live` until a line satisfies `wanted` (or `secs` pass); what it read.
async fn read_until(live: &mut reqwest::Response, secs: u64, wanted: impl Fn(&str) -> bool) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !seen.lines().any(&wanted) {
        match tokio::time::timeout_at(deadline, live.chunk()).await {
            Ok(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the live stream ended"))),
            Err(_) => panic!("not seen within {secs} s; the stream said: {seen}"),
        }
    }
    seen
}

on_both_backends! {
/// A request made at one replica and approved at the other reaches the requester's live stream
/// at the first; a stream that reconnects to the other replica with the last event it saw is
/// sent what it missed meanwhile, and nothing it already had.
async fn live_events_cross_replicas_and_survive_a_reconnect() {
    let (a, code) = start().await;
    let b = replica(&a).await;
    let admin = enroll(&a, &code).await;
    let alice = member(&a, &admin, "alice", &[Role::Requester], &[]).await;
    let bob = member(&b, &admin, "bob", &[Role::Approver], &[]).await;
    let _: TargetSummary = call(&a, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;

    let mut on_a = signed(&a, &alice, "GET", "/v1/live", b"", a.now(), &nonce()).send().await.unwrap();
    read_until(&mut on_a, 10, |l| l.starts_with("event: ready")).await;
    let first: AccessRequestView = call(&a, &alice, "POST", "/v1/requests", &ask("web", 600)).await;
    let started = std::time::Instant::now();
    let _: AccessRequestView = call(&b, &bob, "POST", &format!("/v1/requests/{}/review", first.id), &APPROVE).await;
    let mut seen = read_until(&mut on_a, 10, |l| l.contains("request_decided") && l.contains(&first.id)).await;
    if !seen.split(&first.id).last().unwrap_or("").contains("\nid: ") {
        seen.push_str(&read_until(&mut on_a, 10, |l| l.starts_with("id: ")).await);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    // The id of the decision: what a client reconnecting elsewhere says it saw last.
    let lines: Vec<&str> = seen.lines().collect();
    let at = lines.iter().position(|l| l.contains("request_decided") && l.contains(&first.id)).unwrap();
    // (An event's id line follows its data line.)
    let last_id = lines[at..].iter().find_map(|l| l.strip_prefix("id: ")).unwrap();
    drop(on_a);

    // While alice is away: a second request, decided at A.
    let second: AccessRequestView = call(&a, &alice, "POST", "/v1/requests", &ask("web", 300)).await;
    let _: AccessRequestView = call(&a, &bob, "POST", &format!("/v1/requests/{}/review", second.id), &DENY).await;
    let mut on_b = signed(&b, &alice, "GET", "/v1/live", b"", b.now(), &nonce())
        .header("Last-Event-ID", last_id)
        .send()
        .await
        .unwrap();
    let missed = read_until(&mut on_b, 10, |l| l.contains("request_decided") && l.contains(&second.id)).await;
    assert!(missed.contains("request_created") && missed.contains(&second.id), "{missed}");
    assert!(!missed.contains(&first.id), "an event the client already had was sent again: {missed}");
}
}

on_both_backends! {
/// `/healthz` answers while the process runs; `/readyz` only while the database answers and
/// holds every migration this build knows — a replica behind a load balancer leaves rotation
/// when its database is from another version.
async fn readiness_follows_the_database() {
    let (r, _code) = start().await;
    let get = |path: &'static str| r.http.get(format!("{}{path}", r.url)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    let mut db = r.tamper().await;
    sqlx::raw_sql("DELETE FROM _sqlx_migrations WHERE version = 20261201000005").execute(&mut db).await.unwrap();
    let not_ready = get("/readyz").await.unwrap();
    assert_eq!(not_ready.status(), 503);
    let why = not_ready.text().await.unwrap();
    assert!(why.contains("migration 20261201000005 is not applied"), "{why}");
    assert!(!why.contains("127.0.0.1") && !why.contains("postgres://"), "{why}");
    assert_eq!(get("/healthz").await.unwrap().status(), 200, "alive, just not ready");
}
}

on_both_backends! {
/// Bad enrolment codes spread over both replicas count once: the source is limited at both
/// when the total reaches the limit, not at twice the limit.
async fn failed_enrolments_count_once_across_replicas() {
    let (a, _code) = start().await;
    let b = replica(&a).await;
    let bad = |r: &Running, i: u32| {
        r.http.post(format!("{}/v1/enroll", r.url)).json(&EnrollRequest {
            code: format!("pc1-{:032x}-{}", i, "0".repeat(32)),
            device_name: "guess".into(),
            sign_public_key: b64().encode([1u8; 32]),
            seal_public_key: b64().encode([2u8; 32]),
        })
    };
    let limit = 30;
    for i in 0..limit {
        let r = if i % 2 == 0 { &a } else { &b };
        let status = bad(r, i).send().await.unwrap().status().as_u16();
        assert!(status == 401 || status == 403 || status == 400, "attempt {i}: {status}");
    }
    for (name, r) in [("a", &a), ("b", &b)] {
        let status = bad(r, 99).send().await.unwrap().status().as_u16();
        assert_eq!(status, 429, "replica {name} still lets the source guess after {limit} failures in all");
    }
}
}

on_both_backends! {
/// `X-Forwarded-For` names the client only when a configured proxy sent it: a stranger rotating
/// forged addresses in the header is limited as the one peer it is; behind a trusted proxy,
/// each client is limited on its own and its requests are recorded with its address — and the
/// entries a client forged ahead of the proxy's are ignored.
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let (r, code, server) = start_with_server().await;
    // Enrolled first: the flood below limits this peer (loopback) for the hour.
    let admin = enroll(&r, &code).await;
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let bad = |forwarded: String| {
        r.http.post(format!("{}/v1/enroll", r.url)).header("X-Forwarded-For", forwarded).json(&EnrollRequest {
            code: format!("pc1-{}-{}", "1".repeat(32), "0".repeat(32)),
            device_name: "guess".into(),
            sign_public_key: b64().encode([1u8; 32]),
            seal_public_key: b64().encode([2u8; 32]),
        })
    };
    for i in 0..30 {
        assert_ne!(bad(format!("203.0.113.{i}")).send().await.unwrap().status(), 429, "attempt {i}");
    }
    assert_eq!(bad("198.51.100.200".into()).send().await.unwrap().status(), 429, "a forged header bypassed the limit");

    // The peer (loopback) becomes a trusted proxy: the header now names the client.
    server.set_trusted_proxies(portcullis_server::client_addr::parse_proxies(&["127.0.0.1".into()]).unwrap());
    for i in 0..30 {
        let forged_ahead = format!("192.0.2.{i}, 198.51.100.7");
        assert_ne!(bad(forged_ahead).send().await.unwrap().status(), 429, "attempt {i}");
    }
    assert_eq!(bad("198.51.100.7".into()).send().await.unwrap().status(), 429, "the client behind the proxy");
    assert_ne!(bad("198.51.100.8".into()).send().await.unwrap().status(), 429, "another client behind it");

    // A request is recorded with the client's address.
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    let body = serde_json::to_vec(&ask("web", 600)).unwrap();
    let resp = signed(&r, &alice, "POST", "/v1/requests", &body, r.now(), &nonce())
        .header("X-Forwarded-For", "6.6.6.6, 198.51.100.9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let created: AccessRequestView = resp.json().await.unwrap();
    let story: RequestDetail = call(&r, &alice, "GET", &format!("/v1/requests/{}", created.id), &()).await;
    assert_eq!(story.source_ip.as_deref(), Some("198.51.100.9"));
}
}

on_both_backends! {
/// A device that knows a server's replicas moves to the next when one does not answer: reads
/// and writes go on through the replica that does, signed once (the signature covers the path,
/// not the host), and the client keeps using the replica that answered.
async fn a_device_moves_to_the_replica_that_answers() {
    let (a, code) = start().await;
    let b = replica(&a).await;
    let admin = enroll(&a, &code).await;
    let dead = format!("http://127.0.0.1:{}", super::postgres::free_port());
    let client = portcullis_client::api::ApiClient::new(
        &format!("{dead}, {}/", b.url),
        portcullis_client::api::Pin::Full(String::new()),
    )
    .unwrap()
    .signed_by(admin.id.clone(), SigningIdentity::from_secret_bytes(admin.key.to_secret_bytes().expose_secret()).unwrap());
    let me = client.me().await.unwrap();
    assert_eq!(me.user_name, "admin");
    assert_eq!(client.server().as_str().trim_end_matches('/'), b.url, "the replica that answered is kept");
    let added = client
        .add_user(&AddUserRequest { name: "carol".into(), roles: vec![Role::Requester], groups: vec![] })
        .await
        .unwrap();
    assert!(added.enrolment_code.is_some());
    let users: Vec<UserView> = call(&a, &admin, "GET", "/v1/users", &()).await;
    assert_eq!(users.iter().filter(|u| u.name == "carol").count(), 1, "the write happened once");
    // Every replica gone: the error names the last one tried.
    let alone = portcullis_client::api::ApiClient::new(&dead, portcullis_client::api::Pin::Full(String::new())).unwrap();
    let err = alone.me().await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
}
}

on_both_backends! {
/// The device's own live client: each event comes with its id, and a subscription opened at
/// the other replica with the last id seen starts with what was published meanwhile.
async fn a_device_resubscribing_elsewhere_gets_what_it_missed() {
    let (a, code) = start().await;
    let b = replica(&a).await;
    let admin = enroll(&a, &code).await;
    let alice = member(&a, &admin, "alice", &[Role::Requester], &[]).await;
    let _: TargetSummary = call(&a, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    let as_alice = |url: &str| {
        portcullis_client::api::ApiClient::new(url, portcullis_client::api::Pin::Full(String::new()))
            .unwrap()
            .signed_by(alice.id.clone(), SigningIdentity::from_secret_bytes(alice.key.to_secret_bytes().expose_secret()).unwrap())
    };
    // The first subscription, closed at the end of this block.
    let id = {
        let at_a = as_alice(&a.url);
        let stream = at_a.live(None).await.unwrap();
        let mut stream = std::pin::pin!(stream);
        let (_, first) = next(&mut stream).await;
        assert!(matches!(first, portcullis_client::api::LiveUpdate::Connected));
        let seen: AccessRequestView = call(&a, &alice, "POST", "/v1/requests", &ask("web", 600)).await;
        let (id, update) = next(&mut stream).await;
        assert!(matches!(&update, portcullis_client::api::LiveUpdate::Event(LiveEvent::RequestCreated { request }) if request.id == seen.id));
        id.expect("events carry their id")
    };
    let missed: AccessRequestView = call(&a, &alice, "POST", "/v1/requests", &ask("web", 300)).await;
    let at_b = as_alice(&b.url);
    let stream = at_b.live(Some(&id)).await.unwrap();
    let mut stream = std::pin::pin!(stream);
    let (_, first) = next(&mut stream).await;
    assert!(matches!(first, portcullis_client::api::LiveUpdate::Connected));
    let (_, update) = next(&mut stream).await;
    match update {
        portcullis_client::api::LiveUpdate::Event(LiveEvent::RequestCreated { request }) => {
            assert_eq!(request.id, missed.id, "the first event after reconnecting is the one missed")
        }
        other => panic!("expected the missed request, got {other:?}"),
    }
}
}

/// The next item of a live subscription (within 10 s).
async fn next<S, T, E>(stream: &mut S) -> T
where
    S: futures_util::Stream<Item = Result<T, E>> + Unpin,
    E: std::fmt::Debug,
{
    use futures_util::StreamExt;
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("no live update within 10 s")
        .expect("the subscription ended")
        .unwrap()
}
