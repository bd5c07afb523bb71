//! The desktop core end to end, without the window: a standalone app (embedded server), two
//! more apps enrolled against it, a live approval, an in-app brokered terminal on a real sshd,
//! a restart with unlock — and no credential in anything the core hands to the webview.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/support/sshd.rs"]
mod sshd;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_app::*;
use portcullis_keystore::Preference;
use portcullis_proto::TargetFilter;
use sshd::Sshd;
use tokio::sync::mpsc;

const PASS: &str = "desktop test passphrase";

/// Every payload the core returned, as the webview would receive it (JSON).
#[derive(Clone, Default)]
struct Payloads(Arc<Mutex<Vec<String>>>);

impl Payloads {
    fn keep<T: serde::Serialize>(&self, value: T) -> T {
        self.0.lock().unwrap().push(serde_json::to_string(&value).unwrap());
        value
    }
    fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

async fn next_matching<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str, f: impl Fn(&T) -> bool) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let item = rx.recv().await.expect("channel open");
            if f(&item) {
                return item;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Connects a terminal that must end without running a shell; what the window would show (the
/// terminal's text, then the closing message).
async fn refusal(app: &AppCore) -> String {
    let (fail_tx, mut fail) = mpsc::unbounded_channel();
    app.connect("web", 80, 24, move |event| {
        let _ = fail_tx.send(event);
    })
    .await
    .unwrap();
    let mut shown = String::new();
    loop {
        match next_matching(&mut fail, "the refusal", |_: &TerminalEvent| true).await {
            TerminalEvent::Output { data } => shown.push_str(&data),
            TerminalEvent::Closed { message, exit_status } => {
                assert!(matches!(exit_status, None | Some(255)), "{exit_status:?}: {shown}");
                shown.push_str(&message);
                return shown;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_first_run_approval_terminal_and_restart() {
    let sshd = Sshd::start();
    let root = tempfile::tempdir().unwrap();
    let payloads = Payloads::default();
    let key_text = std::fs::read_to_string(&sshd.user_key).unwrap();

    // First run, standalone, no keyring in this test: a passphrase is needed and asked for.
    let admin_app = AppCore::new(&root.path().join("admin"), Preference::Passphrase);
    assert_eq!(admin_app.status().await.phase, Phase::Fresh);
    let err = admin_app.create_standalone("admin", None).await.unwrap_err();
    assert_eq!(err.code, "passphrase_required", "{err:?}");
    let status = payloads.keep(admin_app.create_standalone("admin", Some(PASS.into())).await.unwrap());
    assert_eq!(status.phase, Phase::Ready);
    assert!(status.standalone);
    assert_eq!(status.key_store.as_deref(), Some("passphrase (Argon2id)"));
    let url = status.server_url.clone().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"));

    // The admin adds a target; the credential goes in, never out.
    let form: NewTargetForm = serde_json::from_value(serde_json::json!({
        "name": "web", "host": "127.0.0.1", "port": sshd.port, "login": "root",
        "host_key": sshd.host_key_pub, "credential_kind": "private_key", "credential": key_text,
        "environment": "prod", "tags": ["nginx"], "description": "demo target",
    }))
    .unwrap();
    assert!(!format!("{form:?}").contains("PRIVATE KEY"));
    payloads.keep(admin_app.add_target(form).await.unwrap());
    let listed = payloads.keep(admin_app.targets(TargetFilter::default()).await.unwrap());
    assert_eq!(listed.len(), 1);
    assert!(listed[0].host_key_fingerprint.starts_with("SHA256:"));
    let bad: NewTargetForm = serde_json::from_value(serde_json::json!({
        "name": "", "host": "127.0.0.1", "port": 22, "login": "root", "host_key": sshd.host_key_pub,
        "credential_kind": "password", "credential": "x",
    }))
    .unwrap();
    assert_eq!(admin_app.add_target(bad).await.unwrap_err().code, "bad_request");

    // Two more desktops enrol against the embedded server.
    let alice_code = payloads.keep(admin_app.add_user("alice", vec!["requester".into()], vec![]).await.unwrap());
    let bob_code = payloads.keep(admin_app.add_user("bob", vec!["approver".into()], vec![]).await.unwrap());
    let alice = AppCore::new(&root.path().join("alice"), Preference::Passphrase);
    let bob = AppCore::new(&root.path().join("bob"), Preference::Passphrase);
    payloads.keep(alice.enroll(&url, alice_code.enrolment_code.as_deref().unwrap(), Some(PASS.into())).await.unwrap());
    let bob_status =
        payloads.keep(bob.enroll(&url, bob_code.enrolment_code.as_deref().unwrap(), Some(PASS.into())).await.unwrap());
    assert_eq!(bob_status.user.unwrap().roles, vec!["approver".to_string()]);
    // A code the owner held and bob used: no confirmation can make him independent now.
    let refused = admin_app.confirm_user("bob").await.unwrap_err();
    assert_eq!(refused.code, "already_enrolled", "{refused:?}");
    let members = payloads.keep(admin_app.members().await.unwrap());
    assert!(members.iter().any(|m| m.name == "bob" && m.confirmed_by.is_none()));
    assert!(!bob_status.standalone);

    // Bob's inbox receives alice's request live; his approval reaches alice live.
    let (bob_tx, mut bob_live) = mpsc::unbounded_channel();
    let p = payloads.clone();
    bob.watch(move |event| bob_tx.send(p.keep(event)).is_ok()).await.unwrap();
    let (alice_tx, mut alice_live) = mpsc::unbounded_channel();
    let p = payloads.clone();
    alice.watch(move |event| alice_tx.send(p.keep(event)).is_ok()).await.unwrap();
    next_matching(&mut bob_live, "bob connected", |e: &LiveView| e.kind == "connected").await;
    next_matching(&mut alice_live, "alice connected", |e: &LiveView| e.kind == "connected").await;
    let request = payloads.keep(alice.create_request("web", 600, "check logs").await.unwrap());
    let seen = next_matching(&mut bob_live, "the request", |e: &LiveView| e.kind == "request_created").await;
    assert_eq!(seen.request.unwrap().id, request.id);
    assert_eq!(alice.create_request("web", 9 * 3600, "too long").await.unwrap_err().code, "policy_denied");
    payloads.keep(bob.review(&request.id, true, None, |_| {}).await.unwrap());
    let decided = next_matching(&mut alice_live, "the decision", |e: &LiveView| e.kind == "request_decided").await;
    assert_eq!(decided.request.unwrap().status, "approved");
    // The owner made bob: his review never counts on the owner's own requests (an owner
    // minting approvers for themselves), while it does on alice's.
    let own = admin_app.create_request("web", 600, "my own").await.unwrap();
    let barred = bob.review(&own.id, true, None, |_| {}).await.unwrap_err();
    assert!(barred.code == "separation_of_duties" && barred.message.contains("admin"), "{barred:?}");

    // Edits: only admins; a kind change needs the new credential; a rotated credential is the
    // one used from then on (a wrong key fails to log in, the right one works again) and ends
    // the use of grants approved for the old one; an edit with an empty credential field keeps
    // the stored credential (and the grants).
    let edit = |credential: &str, kind: &str, description: &str| -> NewTargetForm {
        serde_json::from_value(serde_json::json!({
            "name": "web", "host": "127.0.0.1", "port": sshd.port, "login": "root",
            "host_key": sshd.host_key_pub, "credential_kind": kind, "credential": credential,
            "environment": "prod", "tags": ["nginx", "edited"], "description": description,
        }))
        .unwrap()
    };
    assert_eq!(alice.update_target(edit("", "private_key", "x")).await.unwrap_err().code, "forbidden");
    assert_eq!(admin_app.update_target(edit("", "password", "x")).await.unwrap_err().code, "bad_request");
    let wrong_key = root.path().join("wrong_key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong_key)
        .status()
        .unwrap();
    assert!(made.success());
    let wrong = std::fs::read_to_string(&wrong_key).unwrap();
    payloads.keep(admin_app.update_target(edit(&wrong, "private_key", "rotated to a wrong key")).await.unwrap());
    let message = refusal(&alice).await;
    assert!(message.contains("changed since your access was approved (its credential)"), "{message}");
    let again = alice.create_request("web", 600, "after the rotation").await.unwrap();
    bob.review(&again.id, true, None, |_| {}).await.unwrap();
    let message = refusal(&alice).await;
    assert!(message.contains("rejected the stored credential"), "{message}");
    payloads.keep(admin_app.update_target(edit(&key_text, "private_key", "rotated back")).await.unwrap());
    let again = alice.create_request("web", 600, "after rotating back").await.unwrap();
    bob.review(&again.id, true, None, |_| {}).await.unwrap();
    let edited = payloads.keep(admin_app.update_target(edit("", "private_key", "edited, key kept")).await.unwrap());
    assert_eq!(edited.description, "edited, key kept");
    assert_eq!(edited.tags, vec!["edited".to_string(), "nginx".to_string()]);

    // Alice connects: an in-app terminal on the real sshd.
    let (term_tx, mut term) = mpsc::unbounded_channel();
    let p = payloads.clone();
    let id = alice
        .connect("web", 100, 30, move |event| {
            let _ = term_tx.send(p.keep(event));
        })
        .await
        .unwrap();
    alice.terminal_input(&id, "echo in-app-$((40+2))\n".into()).await.unwrap();
    next_matching(
        &mut term,
        "command output",
        |e: &TerminalEvent| matches!(e, TerminalEvent::Output { data } if data.contains("in-app-42")),
    )
    .await;
    alice.terminal_resize(&id, 120, 40).await.unwrap();
    alice.terminal_input(&id, "tput cols; exit 4\n".into()).await.unwrap();
    let closed =
        next_matching(&mut term, "the end", |e: &TerminalEvent| matches!(e, TerminalEvent::Closed { .. })).await;
    assert!(matches!(closed, TerminalEvent::Closed { exit_status: Some(4), .. }), "{closed:?}");
    assert_eq!(alice.terminal_input(&id, "x".into()).await.unwrap_err().code, "no_session");

    // The gateway recorded it and synced it to the server, where it is replayable.
    let sessions = payloads.keep(bob.audit_sessions().await.unwrap_err());
    assert_eq!(sessions.code, "forbidden", "bob is no auditor");
    let all = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let all = admin_app.audit_sessions().await.unwrap();
            if all.iter().any(|s| s.ended_at.is_some()) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the gateway uploads the ended session");
    let all = payloads.keep(all);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].recorded_by, "embedded");
    let cast = admin_app.session_cast(&all[0].id).await.unwrap();
    assert!(cast.contains("in-app-42") && cast.contains(r#""r","120x40""#), "{cast}");
    let mine = payloads.keep(alice.my_sessions().await.unwrap());
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].exit_status, Some(4));

    // Restart the standalone app: locked until unlocked; wrong passphrase refused.
    drop(admin_app);
    let admin_app = AppCore::new(&root.path().join("admin"), Preference::Passphrase);
    let status = admin_app.status().await;
    assert_eq!(status.phase, Phase::Locked);
    assert_eq!(admin_app.unlock(None).await.unwrap_err().code, "passphrase_required");
    assert_eq!(admin_app.unlock(Some("wrong".into())).await.unwrap_err().code, "wrong_passphrase");
    let status = admin_app.unlock(Some(PASS.into())).await.unwrap();
    assert_eq!(status.phase, Phase::Ready);
    assert_eq!(admin_app.targets(TargetFilter::default()).await.unwrap().len(), 1);
    // Same address as before the restart, so the teammates' enrolled devices still reach it.
    assert_eq!(status.server_url.as_deref(), Some(url.as_str()));
    assert_eq!(payloads.keep(alice.targets(TargetFilter::default()).await.unwrap()).len(), 1);

    // Invariant 1: nothing the core handed out holds the credential.
    let everything = payloads.all();
    for line in key_text.lines().filter(|l| l.len() >= 20 && !l.starts_with("-----")) {
        assert!(!everything.contains(line), "credential material in an IPC payload");
    }
    assert!(everything.contains("in-app-42"), "payloads were captured");
}

/// The IPC types the UI uses are generated from Rust: this fails when `ui/src/ipc/bindings.ts`
/// differs from what the Rust types produce. Regenerate with
/// `PORTCULLIS_WRITE_BINDINGS=1 cargo test -p portcullis-app --test app committed_typescript`.
#[test]
fn committed_typescript_bindings_match_the_rust_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/ipc/bindings.ts");
    let generated = portcullis_app::typescript_bindings();
    if std::env::var_os("PORTCULLIS_WRITE_BINDINGS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "ui/src/ipc/bindings.ts is out of date; regenerate it with PORTCULLIS_WRITE_BINDINGS=1 cargo test -p portcullis-app --test app committed_typescript"
    );
    // Nothing the core sends to the webview has a field that could carry a credential.
    for outgoing in
        ["AppStatus", "TargetView", "RequestView", "LiveView", "SessionView", "TerminalEvent", "NewUserView"]
    {
        let decl = generated.split("export type ").find(|d| d.starts_with(outgoing)).unwrap();
        for word in ["credential:", "password", "private_key:", "secret"] {
            assert!(!decl.contains(word), "{outgoing} has a field like {word}");
        }
    }
    // The vault's answers carry metadata; a value only in the reveal's answer.
    let field_named_value = |decl: &str| decl.contains(" value: ") || decl.contains("{ value: ");
    for outgoing in
        ["SecretItemView", "SecretPageView", "SecretVersionItemView", "CopiedView", "CheckinView", "SecretKindView"]
    {
        let decl = generated.split("export type ").find(|d| d.starts_with(outgoing)).unwrap();
        assert!(!field_named_value(decl), "{outgoing} has a value field");
    }
    let revealed = generated.split("export type ").find(|d| d.starts_with("RevealedView")).unwrap();
    assert!(field_named_value(revealed), "the reveal's answer is the one with the value");
}
