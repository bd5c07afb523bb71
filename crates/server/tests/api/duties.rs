//! Separation of duties against an admin who mints identities: accounts an admin created —
//! directly or through admins they created — never approve that admin, whatever the policy's
//! N; a confirmation counts only from an admin independent of them (or, alone, after a day
//! with an alarm); and one security key cannot serve two people.

use super::*;

const TWO_APPROVALS: &str = r#"
@id("two-approvals")
@approvals("2")
permit (principal, action == Portcullis::Action::"request", resource)
when { principal.roles.contains("requester") && context.duration <= duration("8h") };

@id("approvers-approve")
permit (principal, action == Portcullis::Action::"approve", resource)
when { principal.roles.contains("approver") };
"#;

fn roles(roles: &[Role]) -> SetRolesRequest {
    SetRolesRequest { roles: roles.to_vec() }
}

fn review_path(id: &str) -> String {
    format!("/v1/requests/{id}/review")
}

/// `who`'s review of `request` is refused for separation of duties, saying `why`.
async fn barred(r: &Running, who: &Device, request: &str, why: &str) {
    let (_, code, message) = refused(r, who, "POST", &review_path(request), &APPROVE).await;
    assert!(code == "separation_of_duties" && message.contains(why), "{code}: {message}");
}

on_both_backends! {
async fn accounts_an_admin_made_never_approve_that_admin() {
    let (r, code, _server) = start_as(vec![Role::Requester, Role::Auditor]).await;
    let admin = enroll(&r, &code).await;
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    let _: PolicyView = call(&r, &admin, "PUT", "/v1/policy", &PolicyText { text: TWO_APPROVALS.into() }).await;

    // An admin who can request gets no code for an account that could approve.
    let puppet = AddUserRequest { name: "puppet".into(), roles: vec![Role::Approver], groups: vec![] };
    let added: AddUserResponse = call(&r, &admin, "POST", "/v1/users", &puppet).await;
    assert!(added.enrolment_code.is_none(), "the code went to the admin who could use it");
    assert!(added.confirmation.as_deref().unwrap_or_default().contains("second admin"), "{added:?}");
    let (_, code, message) = refused(&r, &admin, "POST", "/v1/users/puppet/confirm", &()).await;
    assert!(code == "confirmation_delay" && message.contains("24 hours"), "{code}: {message}");

    // Without the requester role for a moment, the admin receives the codes (puppets p1 and
    // p2, and admin b who makes c) — and none of those accounts ever counts for the admin.
    let _: AccessChangeOutcome = call(&r, &admin, "PUT", "/v1/users/admin/roles", &roles(&[Role::Admin])).await;
    let p1 = member(&r, &admin, "p1", &[Role::Approver], &[]).await;
    let p2 = member(&r, &admin, "p2", &[Role::Approver], &[]).await;
    let b = member(&r, &admin, "b", &[Role::Admin], &[]).await;
    let c = member(&r, &b, "c", &[Role::Approver], &[]).await;
    let back = roles(&[Role::Admin, Role::Requester, Role::Auditor]);
    let _: AccessChangeOutcome = call(&r, &admin, "PUT", "/v1/users/admin/roles", &back).await;
    let mine: AccessRequestView = call(&r, &admin, "POST", "/v1/requests", &ask("web", 600)).await;
    assert_eq!(mine.approvals_needed, 2);
    barred(&r, &p1, &mine.id, "admin created p1").await;
    barred(&r, &p2, &mine.id, "admin created p2").await;
    barred(&r, &c, &mine.id, "admin created b created c").await;
    // Downwards too, through the chain: the admin judges nobody b created.
    let _: AccessChangeOutcome = call(
        &r,
        &admin,
        "PUT",
        "/v1/users/admin/roles",
        &roles(&[Role::Admin, Role::Approver, Role::Requester, Role::Auditor]),
    )
    .await;
    let _: AccessChangeOutcome =
        call(&r, &b, "PUT", "/v1/users/c/roles", &roles(&[Role::Approver, Role::Requester])).await;
    let theirs: AccessRequestView = call(&r, &c, "POST", "/v1/requests", &ask("web", 600)).await;
    barred(&r, &admin, &theirs.id, "admin created b created c").await;

    // b confirming an account the admin made does not make it independent: b is the admin's
    // own creation, unconfirmed.
    let q = AddUserRequest { name: "q".into(), roles: vec![Role::Approver], groups: vec![] };
    let added: AddUserResponse = call(&r, &admin, "POST", "/v1/users", &q).await;
    assert!(added.enrolment_code.is_none());
    let confirmed: ConfirmUserResponse = call(&r, &b, "POST", "/v1/users/q/confirm", &()).await;
    assert_eq!(confirmed.via, "second_admin");
    let q = enroll(&r, &confirmed.enrolment_code).await;
    barred(&r, &q, &mine.id, "no second admin confirmed it").await;
    let story: RequestDetail = call(&r, &admin, "GET", &format!("/v1/requests/{}", mine.id), &()).await;
    assert_eq!((story.request.approvals, story.request.status), (0, RequestStatus::Pending));

    // While another admin exists the creator cannot confirm alone, even a day later.
    let solo = AddUserRequest { name: "solo".into(), roles: vec![Role::Approver], groups: vec![] };
    let _: AddUserResponse = call(&r, &admin, "POST", "/v1/users", &solo).await;
    r.offset.store(25 * 3600, Ordering::SeqCst);
    let (_, code, message) = refused(&r, &admin, "POST", "/v1/users/solo/confirm", &()).await;
    assert!(code == "second_admin_needed", "{code}: {message}");
    // The only admin left: after the day, alone — an alarm — and then solo's review counts.
    let _: AccessChangeOutcome = call(&r, &admin, "POST", "/v1/users/b/disable", &()).await;
    let confirmed: ConfirmUserResponse = call(&r, &admin, "POST", "/v1/users/solo/confirm", &()).await;
    assert_eq!(confirmed.via, "delay");
    let alarms: Vec<ServerEvent> = call(&r, &admin, "GET", "/v1/audit/alarms", &()).await;
    assert!(alarms.iter().any(|a| a.kind == "user_confirmed_alone" && a.detail["user"] == "solo"), "{alarms:?}");
    let solo = enroll(&r, &confirmed.enrolment_code).await;
    let mine: AccessRequestView = call(&r, &admin, "POST", "/v1/requests", &ask("web", 600)).await;
    let counted: AccessRequestView = call(&r, &solo, "POST", &review_path(&mine.id), &APPROVE).await;
    assert_eq!((counted.approvals, counted.status), (1, RequestStatus::Pending));
    barred(&r, &p1, &mine.id, "admin created p1").await;

    // A code the creator held and used cannot be confirmed afterwards.
    let (_, code, _) = refused(&r, &admin, "POST", "/v1/users/p1/confirm", &()).await;
    assert_eq!(code, "already_enrolled");
    // And someone whose groups the requester just changed does not judge them (either way).
    let _: GroupView = call(&r, &admin, "POST", "/v1/groups", &AddGroupRequest { name: "ops".into() }).await;
    let _: UserView =
        call(&r, &admin, "PUT", "/v1/users/solo/groups", &SetGroupsRequest { groups: vec!["ops".into()] }).await;
    let next: AccessRequestView = call(&r, &admin, "POST", "/v1/requests", &ask("web", 600)).await;
    barred(&r, &solo, &next.id, "admin changed your groups").await;
}
}

on_both_backends! {
/// One security key, one person: an authenticator answering with a credential id already
/// registered to someone else (a cloned or hostile key) is refused; the same id for the same
/// person's second name is webauthn's own business (excluded at registration).
async fn a_security_key_serves_one_person_only() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let carol = member(&r, &admin, "carol", &[Role::Approver], &[]).await;
    let dave = member(&r, &admin, "dave", &[Role::Approver], &[]).await;
    let id: Vec<u8> = (0..32).map(|i| i as u8 ^ 0x5a).collect();
    let (status, text) = keys::register_claiming(&r, &carol, &mut keys::token(), "carol-key", &id).await;
    assert_eq!(status, 200, "carol registers a key under this id: {text}");
    let (status, text) = keys::register_claiming(&r, &dave, &mut keys::token(), "dave-key", &id).await;
    assert!(status == 403 && text.contains("registered to another user"), "{status}: {text}");
    let listed: Vec<SecurityKeyView> = call(&r, &dave, "GET", "/v1/keys", &()).await;
    assert!(listed.is_empty(), "{listed:?}");
    // Another id is fine.
    let other: Vec<u8> = (0..32).map(|i| i as u8).collect();
    let (status, text) = keys::register_claiming(&r, &dave, &mut keys::token(), "dave-key", &other).await;
    assert_eq!(status, 200, "{text}");
}
}

on_both_backends! {
/// Once a user has a key, their keys change only with one of them (or an admin, for a lost
/// one): malware holding an approver's device key cannot register its own key to answer
/// step-ups, nor remove the owner's.
async fn changing_security_keys_needs_one_of_them() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let carol = member(&r, &admin, "carol", &[Role::Approver], &[]).await;
    let mut own = keys::token();
    keys::register(&r, &carol, &mut own, "own").await;

    // The device alone (malware holding its signing key, with a token of its own): refused.
    let mut thief = keys::token();
    let (status, text) = keys::register_confirmed(&r, &carol, &mut thief, "thief", None).await;
    assert!(status == 403 && text.contains("step_up_required"), "{status}: {text}");
    let (_, code, _) = refused(&r, &carol, "DELETE", "/v1/keys/own", &KeyRemoval::default()).await;
    assert_eq!(code, "step_up_required");

    // Confirmed with the key she has: a second key, then removing the first. Her devices are
    // told (and no one else's).
    let mut live = signed(&r, &carol, "GET", "/v1/live", b"", r.now(), &nonce()).send().await.unwrap();
    let mut admins = signed(&r, &admin, "GET", "/v1/live", b"", r.now(), &nonce()).send().await.unwrap();
    let ready = tokio::time::timeout(std::time::Duration::from_secs(5), live.chunk()).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&ready.unwrap()).contains("ready"));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), admins.chunk()).await.unwrap().unwrap();
    let confirmed = keys::confirm_change(&r, &carol, &mut own).await;
    let (status, text) =
        keys::register_confirmed(&r, &carol, &mut keys::token(), "spare", Some(confirmed.clone())).await;
    assert_eq!(status, 200, "{text}");
    let told = tokio::time::timeout(std::time::Duration::from_secs(5), live.chunk()).await.unwrap().unwrap().unwrap();
    let told = String::from_utf8_lossy(&told).to_string();
    assert!(told.contains("security_keys_changed") && told.contains("spare"), "{told}");
    let elsewhere = tokio::time::timeout(std::time::Duration::from_millis(500), admins.chunk()).await;
    assert!(elsewhere.is_err(), "another user's stream was told: {elsewhere:?}");
    let (_, code, _) = refused(&r, &carol, "DELETE", "/v1/keys/own", &KeyRemoval { step_up: Some(confirmed) }).await;
    assert_eq!(code, "step_up_failed", "an answer works once");
    let confirmed = keys::confirm_change(&r, &carol, &mut own).await;
    let _: SecurityKeyView = call(&r, &carol, "DELETE", "/v1/keys/own", &KeyRemoval { step_up: Some(confirmed) }).await;
    let left: Vec<SecurityKeyView> = call(&r, &carol, "GET", "/v1/keys", &()).await;
    assert_eq!(left.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["spare"]);

    // A lost key: an admin removes it; recorded.
    let _: SecurityKeyView = call(&r, &admin, "POST", "/v1/users/carol/keys/spare/remove", &()).await;
    let left: Vec<SecurityKeyView> = call(&r, &carol, "GET", "/v1/keys", &()).await;
    assert!(left.is_empty());
    let events: Vec<ServerEvent> =
        call(&r, &admin, "GET", "/v1/audit/events?kind=security_key_removed,security_key_removed_by_admin", &()).await;
    assert_eq!(events.len(), 2, "{events:?}");
}
}

on_both_backends! {
/// A role change bars the pair for a day; deleting that change in the database does not lift
/// the bar — the review is refused as unauthentic instead — nor does rewriting the standalone
/// owner setting change who the owner is.
async fn deleting_a_duty_change_or_editing_a_setting_lifts_nothing() {
    let (r, code) = start().await;
    let admin = enroll(&r, &code).await;
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let bob = member(&r, &admin, "bob", &[Role::Approver, Role::Admin], &[]).await;
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    // bob changes alice's roles: for a day he may not review her requests.
    let _: serde_json::Value = call(&r, &bob, "PUT", "/v1/users/alice/roles", &roles(&[Role::Requester])).await;
    let request: AccessRequestView = call(&r, &alice, "POST", "/v1/requests", &ask("web", 600)).await;
    barred(&r, &bob, &request.id, "changed").await;
    let mut db = r.tamper().await;
    sqlx::raw_sql("DELETE FROM user_admin_changes WHERE change = 'roles'").execute(&mut db).await.unwrap();
    let (status, code_now, message) = refused(&r, &bob, "POST", &review_path(&request.id), &APPROVE).await;
    assert_eq!((status, code_now.as_str()), (403, "row_not_authentic"), "{message}");
    assert!(message.contains("deleted outside Portcullis"), "{message}");
    let report: AuditVerifyReport = call(&r, &admin, "GET", "/v1/audit/verify", &()).await;
    assert!(report.problems.iter().any(|p| p.message.starts_with("change ")), "{:?}", report.problems);
    // A setting planted: refused where it is read.
    sqlx::raw_sql("INSERT INTO server_settings (name, value) VALUES ('standalone_owner', 'x')")
        .execute(&mut db)
        .await
        .unwrap();
    let (status, code_now, _) = refused(&r, &bob, "POST", &review_path(&request.id), &APPROVE).await;
    assert_eq!((status, code_now.as_str()), (403, "row_not_authentic"));
}
}
