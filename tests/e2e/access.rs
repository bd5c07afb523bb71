//! Access depth end to end: policies decide through the real binary, and revocation ends
//! running sessions at the gateway within seconds (embedded and remote gateway).

use std::io::{BufRead, Read};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::harness::*;

/// A running `portcullis ssh` whose remote command has printed `started`.
struct Running {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
}

fn start_session(user: &User, target: &str) -> Running {
    let mut child = user.spawn(&["ssh", target, "--", "echo started; sleep 120"]);
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "started", "the session did not start");
    Running { child, stderr }
}

/// Waits for the session to end; (how long after `since` it ended, its exit status, its stderr).
fn ended_within(mut running: Running, since: Instant, limit: Duration) -> (Duration, i32, String) {
    let started = since;
    loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            let stderr = running.stderr.join().unwrap();
            return (started.elapsed(), status.code().unwrap_or(-1), stderr);
        }
        if started.elapsed() > limit {
            let _ = running.child.kill();
            let stderr = running.stderr.join().unwrap();
            panic!("the session was still running {limit:?} after the revocation; stderr: {stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn revocation_ends_running_sessions_within_five_seconds() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    let mut took = Vec::new();

    // 1. An approver revokes the grant.
    let id = world.grant("web", "30m");
    let running = start_session(&world.alice, "web");
    let asked = Instant::now();
    world.bob.run(&["revoke", &id, "--reason", "incident 42 closed"]).ok();
    let (elapsed, status, stderr) = ended_within(running, asked, Duration::from_secs(10));
    took.push(elapsed);
    assert_ne!(status, 0);
    assert!(stderr.contains("revoked") && stderr.contains("incident 42 closed"), "{stderr}");
    world.alice.run(&["ssh", "web", "--", "true"]).fails_with("incident 42 closed");
    let story = world.alice.run(&["request", "show", &id]).ok().stdout;
    let order: Vec<&str> =
        ["requested", "permitted", "approved", "granted", "session_started", "session_ended", "revoked"]
            .into_iter()
            .filter(|k| story.contains(k))
            .collect();
    assert_eq!(order.len(), 7, "{story}");
    let positions: Vec<usize> = order.iter().map(|k| story.find(&format!("  {k}")).unwrap_or(usize::MAX)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "timeline out of order:\n{story}");

    // 2. An admin removes the requester role.
    world.grant("web", "30m");
    let running = start_session(&world.alice, "web");
    let asked = Instant::now();
    world.admin.run(&["user", "roles", "alice", "--role", "auditor"]).ok();
    let (elapsed, _, stderr) = ended_within(running, asked, Duration::from_secs(10));
    took.push(elapsed);
    assert!(
        stderr.contains("no longer has the requester role") || stderr.contains("requester role removed"),
        "{stderr}"
    );
    world.admin.run(&["user", "roles", "alice", "--role", "requester"]).ok();

    // 3. An admin revokes alice's device.
    world.grant("web", "30m");
    let running = start_session(&world.alice, "web");
    let devices = world.admin.run(&["device", "list"]).ok().stdout;
    let device =
        devices.lines().find(|l| l.contains(" alice ")).unwrap().split_whitespace().next().unwrap().to_string();
    let asked = Instant::now();
    world.admin.run(&["device", "revoke", &device]).ok();
    let (elapsed, _, stderr) = ended_within(running, asked, Duration::from_secs(10));
    took.push(elapsed);
    assert!(stderr.contains("revoked"), "{stderr}");
    world.alice.run(&["whoami"]).fails_with("revoked");

    // Every one of them within five seconds, and recorded as revoked.
    assert!(took.iter().all(|t| *t < Duration::from_secs(5)), "{took:?}");
    world.sessions_when("three revoked sessions", |out| out.matches("revoked").count() >= 3);
    eprintln!("revocation to session end: {took:?}");
}

#[test]
fn a_remote_gateway_ends_revoked_sessions_too() {
    let sshd = Sshd::start();
    let world = World::custom("warn", true, &[]);
    let mut gateway = world.enrol_gateway("near");
    gateway.start();
    world.add_target_with("db", sshd.port, &sshd.user_key, &sshd.host_key_pub, &["--gateway", "near"]).ok();
    world.grant("db", "30m");
    let running = start_session(&world.alice, "db");
    let asked = Instant::now();
    world.admin.run(&["user", "disable", "alice"]).ok();
    let (elapsed, _, stderr) = ended_within(running, asked, Duration::from_secs(10));
    eprintln!("revocation to session end through a remote gateway: {elapsed:?}");
    assert!(stderr.contains("disabled"), "{stderr}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    world.alice.run(&["requests"]).fails_with("disabled");
}

/// Revoking a grant closes the SSH connection it opened, not only its channels: an idle OpenSSH
/// ControlMaster (no channel open) is gone within seconds, so no new channel can ride on it.
#[test]
fn revoking_a_grant_closes_an_idle_openssh_master() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    let id = world.grant("web", "30m");
    let config = world.root.path().join("master-config");
    world.alice.run(&["ssh-config", "--out", config.to_str().unwrap()]).ok();
    let socket = world.root.path().join("master.sock");
    let ssh = |args: &[&str]| {
        std::process::Command::new("ssh")
            .arg("-F")
            .arg(&config)
            .arg("-S")
            .arg(&socket)
            .args(args)
            .arg("web.portcullis")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let master = ssh(&["-M", "-o", "ControlPersist=yes", "-N", "-f"]);
    assert!(master.status.success(), "{}", String::from_utf8_lossy(&master.stderr));
    assert!(ssh(&["-O", "check"]).status.success(), "the master is up");
    let asked = Instant::now();
    world.bob.run(&["revoke", &id, "--reason", "done"]).ok();
    while ssh(&["-O", "check"]).status.success() {
        assert!(asked.elapsed() < Duration::from_secs(10), "the idle master outlived its grant's revocation");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("revocation to an idle master's end: {:?}", asked.elapsed());
}

/// `gateway revoke`: the gateway's running session ends within seconds, it brokers nothing
/// more, and what it uploaded before still verifies.
#[test]
fn revoking_a_gateway_ends_its_sessions_and_refuses_it() {
    let sshd = Sshd::start();
    let world = World::custom("warn", true, &[]);
    let mut gateway = world.enrol_gateway("near");
    gateway.start();
    world.add_target_with("db", sshd.port, &sshd.user_key, &sshd.host_key_pub, &["--gateway", "near"]).ok();
    world.grant("db", "30m");
    let running = start_session(&world.alice, "db");
    world.sessions_when("the session's start uploaded", |out| out.contains("db"));
    let asked = Instant::now();
    let revoked = world.admin.run(&["gateway", "revoke", "near"]).ok().stdout;
    assert!(revoked.contains("1 live grant(s)"), "{revoked}");
    let (elapsed, _, stderr) = ended_within(running, asked, Duration::from_secs(15));
    eprintln!("gateway revocation to session end: {elapsed:?}");
    assert!(stderr.contains("revoked"), "{stderr}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    world.alice.run(&["ssh", "db", "--", "true"]).fails_with("revoked");
    let listed = world.admin.run(&["gateway", "list"]).ok().stdout;
    assert!(listed.contains("(revoked)"), "{listed}");
    let verified = world.bob.run(&["audit", "verify"]).ok().stdout;
    assert!(!verified.contains("FAIL"), "{verified}");
}

/// Policies through the CLI: a refused set names line and column and changes nothing; the
/// what-if tester's last line begins with allow or deny; requests and approvals follow.
#[test]
fn policies_from_the_command_line() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_target_with("db", sshd.port, &sshd.user_key, &sshd.host_key_pub, &["--env", "prod"]).ok();
    world.admin.run(&["group", "add", "dbas"]).ok();
    let carol = User::new(world.root.path(), "carol", "warn", &world.transcript);
    let code = world.admin.run(&["user", "add", "carol", "--role", "approver", "--group", "dbas"]).ok().last_line();
    carol.run(&["enroll", "--server", &world.server.url, "--code", &code]).ok();
    world.admin.run(&["user", "groups", "bob", "--group", "dbas"]).ok();
    let groups = world.admin.run(&["group", "list"]).ok().stdout;
    assert!(groups.contains("dbas") && groups.contains("bob") && groups.contains("carol"), "{groups}");

    let shown = world.admin.run(&["policy", "show"]).ok().stdout;
    assert!(shown.contains("requesters-up-to-8h"), "{shown}");
    let file = world.root.path().join("prod.cedar");
    std::fs::write(&file, PROD_POLICY.replace("context.duration", "context.durration")).unwrap();
    world.admin.run(&["policy", "set", file.to_str().unwrap()]).fails_with("line 5, column");
    assert_eq!(world.admin.run(&["policy", "show"]).ok().stdout, shown, "a refused set changed the policies");
    std::fs::write(&file, PROD_POLICY).unwrap();
    world.admin.run(&["policy", "set", file.to_str().unwrap()]).ok();

    let test = |duration: &str, at: &str| {
        world
            .admin
            .run(&[
                "policy",
                "test",
                "--user",
                "alice",
                "--target",
                "db",
                "--duration",
                duration,
                "--at",
                at,
                "--from",
                "10.1.2.3",
            ])
            .ok()
            .last_line()
    };
    let weekday = test("1h", "2026-11-30T10:00:00Z");
    assert!(weekday.starts_with("allow") && weekday.contains("2 approvals") && weekday.contains("dbas"), "{weekday}");
    let saturday = test("1h", "2026-11-28T10:00:00Z");
    assert!(saturday.starts_with("deny") && saturday.contains("no-prod-weekends"), "{saturday}");
    let long = test("3h", "2026-11-30T10:00:00Z");
    assert!(long.starts_with("deny") && long.contains("2h"), "{long}");

    // An admin cannot mint approvers for themselves: a puppet made while the admin could not
    // request, enrolled on a real device, still never counts on the admin's request — nor does
    // anyone else the admin created; made while the admin can request, no code is handed out.
    std::fs::write(&file, ONE_APPROVAL_POLICY).unwrap();
    world.admin.run(&["policy", "set", file.to_str().unwrap()]).ok();
    let puppet = User::new(world.root.path(), "puppet", "warn", &world.transcript);
    let code = world.admin.run(&["user", "add", "puppet", "--role", "approver"]).ok().last_line();
    puppet.run(&["enroll", "--server", &world.server.url, "--code", &code]).ok();
    world.admin.run(&["user", "roles", "admin", "--role", "admin", "--role", "requester"]).ok();
    let added = world.admin.run(&["user", "add", "puppet2", "--role", "approver"]).ok().stdout;
    assert!(added.contains("no enrolment code for you") && added.contains("user confirm puppet2"), "{added}");
    assert!(!added.contains("pc1-"), "{added}");
    world.admin.run(&["user", "confirm", "puppet2"]).fails_with("24 hours after creating it");
    let mine = world.admin.run(&["request", "db", "--duration", "15m", "--reason", "mine"]).ok().last_line();
    for approver in [&puppet, &carol, &world.bob] {
        approver.run(&["approve", &mine]).fails_with("no second admin confirmed it");
    }
    let story = world.admin.run(&["request", "show", &mine]).ok().stdout;
    assert!(story.contains("pending"), "{story}");

    // A requester's target list holds what they could ask for now, and of each only what they
    // choose by: name, environment, tags, description — not host, port, login or gateway.
    let extra = ["--env", "staging", "--description", "Staging box"];
    world.add_target_with("stage", sshd.port, &sshd.user_key, &sshd.host_key_pub, &extra).ok();
    std::fs::write(&file, STAGING_ONLY_POLICY).unwrap();
    world.admin.run(&["policy", "set", file.to_str().unwrap()]).ok();
    let listed = world.alice.run(&["target", "list"]).ok().stdout;
    assert!(listed.lines().any(|l| l.starts_with("stage ") && l.contains("Staging box")), "{listed}");
    assert!(!listed.lines().any(|l| l.starts_with("db ")), "a target alice cannot request is listed:\n{listed}");
    assert!(!listed.contains("127.0.0.1") && !listed.contains(&sshd.port.to_string()), "{listed}");
    world.alice.run(&["target", "show", "db"]).fails_with("unknown target");
    let shown = world.alice.run(&["target", "show", "stage"]).ok().stdout;
    assert!(shown.contains("environment:  staging") && shown.contains("your access:  none"), "{shown}");
    assert!(!shown.contains("address") && !shown.contains("login") && !shown.contains("gateway"), "{shown}");
    // Approvers (and admins, auditors) see every target in full.
    let full = world.bob.run(&["target", "list"]).ok().stdout;
    assert!(full.contains("db ") && full.contains("stage") && full.contains("127.0.0.1"), "{full}");
}

const STAGING_ONLY_POLICY: &str = r#"@id("staging-only")
permit (principal, action == Portcullis::Action::"request", resource in Portcullis::Environment::"staging")
when { principal.roles.contains("requester") };

@id("approvers-approve")
permit (principal, action == Portcullis::Action::"approve", resource)
when { principal.roles.contains("approver") };
"#;

const ONE_APPROVAL_POLICY: &str = r#"@id("one-approval")
permit (principal, action == Portcullis::Action::"request", resource)
when { principal.roles.contains("requester") && context.duration <= duration("1h") };

@id("approvers-approve")
permit (principal, action == Portcullis::Action::"approve", resource)
when { principal.roles.contains("approver") };
"#;

const PROD_POLICY: &str = r#"@id("prod-two-dbas")
@approvals("2")
@approvers("dbas")
permit (principal, action == Portcullis::Action::"request", resource in Portcullis::Environment::"prod")
when { principal.roles.contains("requester") && context.duration <= duration("2h") };

@id("approvers-approve")
permit (principal, action == Portcullis::Action::"approve", resource)
when { principal.roles.contains("approver") };

@id("no-prod-weekends")
forbid (principal, action == Portcullis::Action::"request", resource in Portcullis::Environment::"prod")
when { context.weekday >= 6 };
"#;

/// `key add` and `approve --authenticator` with the software authenticator (a file), when the
/// policy asks for a security key; the request's story names the key.
#[test]
fn approvals_confirmed_with_a_security_key() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    let file = world.root.path().join("policy.cedar");
    std::fs::write(&file, STEP_UP_POLICY).unwrap();
    world.admin.run(&["policy", "set", file.to_str().unwrap()]).ok();
    let key = world.root.path().join("bob.key");
    let soft = format!("soft:{}", key.display());
    world.bob.run(&["key", "add", "bobs-key", "--authenticator", &soft]).ok();
    assert!(world.bob.run(&["key", "list"]).ok().stdout.contains("bobs-key"));

    let id = world.alice.run(&["request", "web", "--duration", "10m", "--reason", "e2e"]).ok().last_line();
    world.bob.run(&["approve", &id, "--authenticator", &soft]).ok();
    world.alice.run(&["ssh", "web", "--", "true"]).ok();
    let story = world.alice.run(&["request", "show", &id]).ok().stdout;
    assert!(story.contains("security key \"bobs-key\""), "{story}");

    // Changing keys once there is one: confirmed with it (the CLI asks the key bob has).
    world.bob.run(&["key", "add", "spare", "--authenticator", &soft]).ok();
    world.bob.run(&["key", "remove", "spare", "--authenticator", &soft]).ok();
    world.bob.run(&["key", "remove", "bobs-key", "--authenticator", &soft]).ok();
    let again = world.alice.run(&["request", "web", "--duration", "10m", "--reason", "e2e"]).ok().last_line();
    world.bob.run(&["approve", &again, "--authenticator", &soft]).fails_with("you have none registered");
}

const STEP_UP_POLICY: &str = r#"@id("requesters-up-to-8h")
permit (principal, action == Portcullis::Action::"request", resource)
when { principal.roles.contains("requester") && context.duration <= duration("8h") };

@id("approve-with-key")
@step_up("webauthn")
permit (principal, action == Portcullis::Action::"approve", resource)
when { principal.roles.contains("approver") };
"#;
