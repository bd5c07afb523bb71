//! Gateways need more than one admin's word: a gateway serves no target until an admin other
//! than the one who added it confirms it; moving a target to another gateway needs the
//! credential in the same call and raises an alarm; a revoked gateway's grants are void and
//! everything it asks afterwards is refused, with words that tell it to end its sessions.

use super::*;

fn edit(gateway: Option<&str>, credential: Option<Sealed>) -> UpdateTargetRequest {
    UpdateTargetRequest {
        host: "127.0.0.1".into(),
        port: 22,
        login: "root".into(),
        host_key: HOST_KEY.into(),
        credential_kind: CredentialKind::Password,
        environment: "prod".into(),
        tags: vec![],
        description: String::new(),
        gateway: gateway.map(str::to_string),
        credential,
    }
}

on_both_backends! {
async fn a_gateway_move_needs_the_credential_and_a_second_admins_confirmation() {
    let (r, code, _server) = start_as(vec![Role::Auditor]).await;
    let admin = enroll(&r, &code).await;
    let alice = member(&r, &admin, "alice", &[Role::Requester], &[]).await;
    let bob = member(&r, &admin, "bob", &[Role::Approver], &[]).await;
    let _: TargetSummary = call(&r, &admin, "POST", "/v1/targets", &password_target(&admin, "web", b"pw")).await;
    let rogue = unconfirmed_gateway(&r, &admin, "rogue").await;
    let credential = || Some(password_target(&admin, "web", b"pw").credential);

    // Unconfirmed, the admin's own gateway takes no target, with or without the credential.
    for with in [None, credential()] {
        let (_, code, message) = refused(&r, &admin, "PUT", "/v1/targets/web", &edit(Some("rogue"), with)).await;
        assert!(code == "gateway_unconfirmed" && message.contains("gateway confirm rogue"), "{code}: {message}");
    }
    let (_, code, _) = refused(&r, &admin, "POST", "/v1/gateways/rogue/confirm", &()).await;
    assert_eq!(code, "confirmation_delay", "the only admin confirms alone only after a day");
    let listed: Vec<GatewaySummary> = call(&r, &admin, "GET", "/v1/gateways", &()).await;
    assert!(!listed.iter().find(|g| g.name == "rogue").unwrap().confirmed);

    // Confirmed by a second admin: the move still needs the credential in the same call.
    let ben = member(&r, &admin, "ben", &[Role::Admin], &[]).await;
    let (_, code, _) = refused(&r, &admin, "POST", "/v1/gateways/rogue/confirm", &()).await;
    assert_eq!(code, "second_admin_needed");
    let confirmed: GatewaySummary = call(&r, &ben, "POST", "/v1/gateways/rogue/confirm", &()).await;
    assert!(confirmed.confirmed);
    let (status, _, message) = refused(&r, &admin, "PUT", "/v1/targets/web", &edit(Some("rogue"), None)).await;
    assert!(status == 400 && message.contains("gateway of web needs its credential"), "{message}");
    let grant = approved(&r, &alice, &bob, "web").await;
    let moved: TargetSummary = call(&r, &admin, "PUT", "/v1/targets/web", &edit(Some("rogue"), credential())).await;
    assert_eq!(moved.gateway, "rogue");
    let alarms: Vec<ServerEvent> = call(&r, &admin, "GET", "/v1/audit/alarms", &()).await;
    let alarm = alarms.iter().find(|a| a.kind == "target_gateway_moved").expect("the move is an alarm");
    assert_eq!((alarm.detail["target"].as_str(), alarm.detail["to"].as_str()), (Some("web"), Some("rogue")));
    assert_eq!(alarm.detail["grants_voided"], 1, "what was approved for the old gateway is void");
    let story: RequestDetail = call(&r, &alice, "GET", &format!("/v1/requests/{}", grant.id), &()).await;
    assert_eq!(story.request.status, RequestStatus::Revoked);

    // Revoked: live grants on its targets are void, and the gateway is told so — once its
    // signature verified — on every route.
    let second = approved(&r, &alice, &bob, "web").await;
    let outcome: GatewayRevokeOutcome = call(&r, &admin, "POST", "/v1/gateways/rogue/revoke", &()).await;
    assert_eq!((outcome.grants_voided, outcome.targets), (1, 1));
    let story: RequestDetail = call(&r, &alice, "GET", &format!("/v1/requests/{}", second.id), &()).await;
    assert_eq!(story.request.status, RequestStatus::Revoked);
    for (path, body) in [
        ("/v1/gateway/standing", br#"{"grants":[]}"#.as_slice()),
        ("/v1/gateway/records", br#"{"records":[]}"#.as_slice()),
        ("/v1/gateway/rotations", br#"{}"#.as_slice()),
    ] {
        let resp = signed(&r, &rogue, "POST", path, body, now(), &nonce()).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        assert!(resp.text().await.unwrap().contains(GATEWAY_REVOKED), "{path}");
    }
    // A stranger signing with a made-up key under its id learns nothing of that.
    let stranger = Device { id: rogue.id.clone(), key: SigningIdentity::generate(&mut OsRng), server: None, seal: None };
    let resp = signed(&r, &stranger, "POST", "/v1/gateway/standing", br#"{"grants":[]}"#, now(), &nonce())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(!resp.text().await.unwrap().contains("revoked by"));
    let (_, code, _) = refused(&r, &admin, "PUT", "/v1/targets/web", &edit(Some("rogue"), credential())).await;
    assert_eq!(code, "bad_request", "a revoked gateway takes no target");
    let listed: Vec<GatewaySummary> = call(&r, &admin, "GET", "/v1/gateways", &()).await;
    assert!(listed.iter().find(|g| g.name == "rogue").unwrap().revoked_at.is_some());
}
}
