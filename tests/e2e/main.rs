//! End-to-end scenarios through the real `portcullis` binary, the real server process and real
//! OpenSSH `sshd` targets on loopback ports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod faults;
mod gateway;
mod harness;
mod packages;
#[path = "../support/postgres.rs"]
mod postgres;
mod readme;
mod replicas;
mod secrets;
mod sftp;
mod strangers;

use std::time::{Duration, Instant};

use harness::*;

/// The whole loop on key auth; afterwards the private key must not occur anywhere: outputs,
/// trace-level logs of server and clients, databases, the process environment.
#[test]
fn full_loop_with_key_credential_leaves_no_trace_of_it() {
    let sshd = Sshd::start();
    let world = World::with_log("trace");
    world.add_key_target("web", &sshd);

    // A requester sees the target, not where it is; an approver sees the address too.
    let listed = world.alice.run(&["target", "list"]).ok();
    assert!(listed.stdout.contains("web") && !listed.stdout.contains("127.0.0.1"), "{}", listed.stdout);
    let listed = world.bob.run(&["target", "list"]).ok();
    assert!(listed.stdout.contains("web") && listed.stdout.contains("127.0.0.1"), "{}", listed.stdout);

    let request = world.alice.run(&["request", "web", "--duration", "30m", "--reason", "rotate logs"]).ok().last_line();
    let pending = world.bob.run(&["requests", "--pending"]).ok();
    assert!(pending.stdout.contains(&request) && pending.stdout.contains("rotate logs"), "{}", pending.stdout);
    world.bob.run(&["approve", &request]).ok();

    // Exec: output and exit status pass through.
    let hello = world.alice.run(&["ssh", "web", "--", "echo", "hello-from-target"]).ok();
    assert_eq!(hello.stdout, "hello-from-target\n");
    let failing = world.alice.run(&["ssh", "web", "--", "echo out; echo err >&2; exit 7"]);
    assert_eq!(failing.status, 7, "{}", failing.stderr);
    assert_eq!(failing.stdout, "out\n");
    assert!(failing.stderr.contains("err"));
    let piped = world.alice.run_with_stdin(&["ssh", "web", "--", "wc", "-c"], &[b'x'; 100_000]).ok();
    assert_eq!(piped.stdout.trim(), "100000");

    // While a session runs, its process environment holds no credential.
    let child = world.alice.spawn(&["ssh", "web", "--", "sleep", "1.5"]);
    std::thread::sleep(Duration::from_millis(700));
    let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap_or_default();
    let finished = world.alice.wait(child).ok();
    assert!(!environ.is_empty(), "could not read the session's environment");

    // With a terminal (-t), keystrokes go through the PTY and are recorded as input events.
    let pty =
        world.alice.run_with_stdin(&["ssh", "-t", "web", "--", "tty; read word; echo got-$word"], b"typed\n").ok();
    assert!(pty.stdout.contains("/dev/pts/"), "{}", pty.stdout);
    assert!(pty.stdout.contains("got-typed"), "{}", pty.stdout);

    // Two sessions of one device at the same time: both run and both are recorded.
    let first = world.alice.spawn(&["ssh", "web", "--", "sleep 0.5; echo parallel-one"]);
    let second = world.alice.spawn(&["ssh", "web", "--", "sleep 0.5; echo parallel-two"]);
    assert_eq!(world.alice.wait(first).ok().stdout, "parallel-one\n");
    assert_eq!(world.alice.wait(second).ok().stdout, "parallel-two\n");

    // The gateway recorded the sessions and uploaded them; the auditor sees them and exports one
    // as asciicast v2.
    let sessions = world.sessions_when("six ended sessions", |out| out.matches(" exit ").count() >= 6);
    assert!(sessions.contains("parallel-one") && sessions.contains("parallel-two"), "{sessions}");
    let line = sessions.lines().find(|l| l.contains("hello-from-target")).expect("session listed").to_string();
    assert!(line.contains("alice") && line.contains("web") && line.contains("exit"), "{line}");
    let session_id = line.split_whitespace().next().unwrap().to_string();
    let cast = world.root.path().join("s.cast");
    world.bob.run(&["audit", "export", &session_id, "--out", cast.to_str().unwrap()]).ok();
    let cast = std::fs::read_to_string(&cast).unwrap();
    let mut lines = cast.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(header["width"].as_u64().unwrap() > 0);
    let events: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.iter().any(|e| e[1] == "o" && e[2].as_str().unwrap().contains("hello-from-target")), "{cast}");
    assert!(events.iter().all(|e| e[0].as_f64().is_some()));
    let pty_line = sessions.lines().find(|l| l.contains("got-$word")).expect("pty session listed");
    let pty_cast = world.root.path().join("pty.cast");
    world
        .bob
        .run(&["audit", "export", pty_line.split_whitespace().next().unwrap(), "--out", pty_cast.to_str().unwrap()])
        .ok();
    let pty_cast = std::fs::read_to_string(&pty_cast).unwrap();
    assert!(pty_cast.contains(r#""i","typed"#), "keystrokes recorded: {pty_cast}");
    assert!(pty_cast.contains("got-typed"), "{pty_cast}");

    // The piped stdin of an exec session is recorded (up to the limit), not just counted.
    let wc = sessions.lines().find(|l| l.contains("wc -c")).expect("wc session listed");
    let shown = world.bob.run(&["audit", "show", wc.split_whitespace().next().unwrap()]).ok().stdout;
    assert!(
        shown.contains("wc -c") && shown.contains("stdin") && shown.contains("100000 bytes (100000 recorded)"),
        "{shown}"
    );

    // Requesters see their own sessions but cannot read the audit store.
    world.alice.run(&["audit", "list"]).fails_with("not an auditor");
    world.alice.run(&["audit", "export", &session_id, "--out", "/dev/null"]).fails_with("not an auditor");
    world.alice.run(&["audit", "events"]).fails_with("not an auditor");
    let mine = world.alice.run(&["sessions"]).ok().stdout;
    assert!(mine.contains("hello-from-target"), "{mine}");

    // The canary scan: the private key's text and every base64 line of it.
    let canaries = key_canaries(&sshd.user_key);
    assert_no_canary(&world.transcript.bytes(), &canaries, "command output");
    assert_no_canary(finished.stdout.as_bytes(), &canaries, "session output");
    assert_no_canary(&environ, &canaries, "the session's process environment");
    let server_log = world.server.log();
    assert!(server_log.len() > 10_000, "trace logging was not on ({} bytes)", server_log.len());
    assert_no_canary(&server_log, &canaries, "server log");
    let files = files_under(world.root.path());
    assert!(files.iter().any(|f| f.ends_with("server.db")));
    assert!(files.iter().any(|f| f.ends_with("gateway.db")));
    assert!(files.iter().any(|f| f.ends_with("client.db")));
    for file in files {
        assert_no_canary(&std::fs::read(&file).unwrap(), &canaries, &file.display().to_string());
    }
}

/// A password target on real sshd, password auth against a real account; the password is a
/// unique random string that must never surface.
#[test]
fn password_credential_works_and_never_surfaces() {
    let user = "portcullis-e2e";
    let password = format!("canary-{}", hex::encode(rand::random::<[u8; 16]>()));
    local_account(user, &password);

    let sshd = Sshd::start();
    let world = World::with_log("trace");
    let port = sshd.port.to_string();
    world
        .admin
        .run_with_stdin(
            &[
                "target",
                "add",
                "db",
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--login",
                user,
                "--password-stdin",
                "--host-key",
                &sshd.host_key_pub,
            ],
            format!("{password}\n").as_bytes(),
        )
        .ok();
    world.grant("db", "10m");
    let who = world.alice.run(&["ssh", "db", "--", "whoami"]).ok();
    assert_eq!(who.stdout.trim(), user);
    assert!(sshd.log().contains(&format!("Accepted password for {user}")), "{}", sshd.log());

    let canaries = vec![password.into_bytes()];
    assert_no_canary(&world.transcript.bytes(), &canaries, "command output");
    assert_no_canary(&world.server.log(), &canaries, "server log");
    for file in files_under(world.root.path()) {
        assert_no_canary(&std::fs::read(&file).unwrap(), &canaries, &file.display().to_string());
    }
}

#[test]
fn approvals_are_enforced() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);

    // No request yet.
    world.alice.run(&["ssh", "web", "--", "true"]).fails_with("no access to web");
    let id = world.alice.run(&["request", "web", "--duration", "15m", "--reason", "debug"]).ok().last_line();
    world.alice.run(&["ssh", "web", "--", "true"]).fails_with("still waiting for approval");
    // A requester is not an approver, and nobody approves their own request.
    world.alice.run(&["approve", &id]).fails_with("not an approver");
    let code = world.admin.run(&["user", "add", "carol", "--role", "requester", "--role", "approver"]).ok().last_line();
    let carol = User::new(world.root.path(), "carol", "warn", &world.transcript);
    carol.run(&["enroll", "--server", &world.server.url, "--code", &code]).ok();
    let own = carol.run(&["request", "web", "--duration", "5m", "--reason", "mine"]).ok().last_line();
    carol.run(&["approve", &own]).fails_with("cannot review your own request");
    // Deny, with a reason the requester sees.
    world.bob.run(&["deny", &id, "--reason", "use staging"]).ok();
    world.alice.run(&["ssh", "web", "--", "true"]).fails_with("denied by bob: use staging");
    world.bob.run(&["approve", &id]).fails_with("already denied");
    // Limits: the default policy allows 8 hours and says so.
    world.alice.run(&["request", "web", "--duration", "9h", "--reason", "x"]).fails_with("allows you now is 8h");
    world.alice.run(&["request", "nope", "--duration", "5m", "--reason", "x"]).fails_with("unknown target");
    world.alice.run(&["ssh", "nope", "--", "true"]).fails_with("unknown target");
    world.alice.run(&["user", "add", "mallory", "--role", "admin"]).fails_with("does not have the admin role");
    world.bob.run(&["approve", "00000000-0000-0000-0000-000000000000"]).fails_with("no request");

    // An approved grant expires: connecting afterwards is refused.
    let approved = Instant::now();
    world.grant("web", "6s");
    world.alice.run(&["ssh", "web", "--", "true"]).ok();
    std::thread::sleep(Duration::from_secs(7).saturating_sub(approved.elapsed()));
    world.alice.run(&["ssh", "web", "--", "true"]).fails_with("has expired");
}

#[test]
fn a_running_session_ends_when_its_grant_expires() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    let started = Instant::now();
    world.grant("web", "6s");
    let run = world.alice.run(&["ssh", "web", "--", "sleep", "30"]);
    let took = started.elapsed();
    assert_eq!(run.status, 255, "{}", run.stderr);
    assert!(run.stderr.contains("access grant expired"), "{}", run.stderr);
    assert!(took < Duration::from_secs(12), "session outlived its grant: {took:?}");
    world.sessions_when("the expiry recorded", |out| out.contains("grant_expired"));
}

#[test]
fn enrolment_codes_are_one_time_and_checked() {
    let world = World::new();
    let stranger = User::new(world.root.path(), "stranger", "warn", &world.transcript);
    let bogus = format!("pc1-{}-{}", "0".repeat(32), &world.server.admin_code[37..]);
    stranger
        .run(&["enroll", "--server", &world.server.url, "--code", &bogus])
        .fails_with("invalid, expired or already used");
    stranger.run(&["enroll", "--server", &world.server.url, "--code", "hello"]).fails_with("malformed enrolment code");
    // The admin's code was used by World::new.
    stranger
        .run(&["enroll", "--server", &world.server.url, "--code", &world.server.admin_code])
        .fails_with("invalid, expired or already used");
    // A code carries the server's certificate pin: another server's code is refused.
    let other_root = tempfile::tempdir().unwrap();
    let other = ServerProcess::init(other_root.path(), "warn", &world.transcript);
    stranger
        .run(&["enroll", "--server", &world.server.url, "--code", &other.admin_code])
        .fails_with("invalid, expired or already used");
    // Plain HTTP only to loopback.
    stranger
        .run(&["enroll", "--server", "http://portcullis.example.invalid:8443", "--code", &other.admin_code])
        .fails_with("only loopback servers may use http");
    // Unenrolled devices are told what to do.
    stranger.run(&["target", "list"]).fails_with("not enrolled");
    assert!(!stranger.home.join("device.json").exists());
}

#[test]
fn tls_server_is_pinned_by_the_enrolment_code() {
    let root = tempfile::tempdir().unwrap();
    let transcript = Transcript::default();
    let mut server = ServerProcess::init(root.path(), "warn", &transcript);
    server.start(true);
    assert!(server.url.starts_with("https://"));
    let admin = User::new(root.path(), "admin", "warn", &transcript);
    admin.run(&["enroll", "--server", &server.url, "--code", &server.admin_code]).ok();
    admin.run(&["whoami"]).ok();

    // A second TLS server (another certificate) cannot pass for the first.
    let mut impostor = ServerProcess::init(&root.path().join("impostor"), "warn", &transcript);
    std::fs::create_dir_all(root.path().join("impostor")).ok();
    impostor.start(true);
    let code = admin.run(&["user", "add", "dave", "--role", "requester"]).ok().last_line();
    let dave = User::new(root.path(), "dave", "warn", &transcript);
    dave.run(&["enroll", "--server", &impostor.url, "--code", &code]).fails_with("pinned fingerprint");
    dave.run(&["enroll", "--server", &server.url, "--code", &code]).ok();
}

#[test]
fn target_failures_are_clear_and_audited() {
    let mut sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);

    // A target whose host key differs from the pinned one: refused before authenticating, audited.
    let impostor = Sshd::start();
    world.add_target_with("spoofed", impostor.port, &sshd.user_key, &sshd.host_key_pub, &[]).ok();
    world.grant("spoofed", "5m");
    world.alice.run(&["ssh", "spoofed", "--", "true"]).fails_with("host key mismatch");
    assert!(!impostor.log().contains("Accepted"), "credential was used on an impostor: {}", impostor.log());
    world.audit_when(&["audit", "events", "--kind", "host_key_mismatch"], "the mismatch", |out| {
        out.contains("spoofed") && out.contains("alice")
    });

    // Wrong credential: the target refuses the stored key.
    let other = Sshd::start();
    world.add_target_with("stale", other.port, &sshd.user_key, &other.host_key_pub, &[]).ok();
    world.grant("stale", "5m");
    world.alice.run(&["ssh", "stale", "--", "true"]).fails_with("rejected the stored credential");

    // Target down: a clear message, and an audit event.
    world.grant("web", "5m");
    sshd.stop();
    world.alice.run(&["ssh", "web", "--", "true"]).fails_with("cannot reach web");
    world.audit_when(&["audit", "events", "--kind", "target_unreachable"], "the failure", |out| {
        out.contains("web") && out.contains("alice")
    });

    // Bad target definitions are refused up front.
    world
        .add_target_with("bad", 22, &sshd.user_key, "ssh-ed25519 not-base64", &[])
        .fails_with("host key is not an OpenSSH public key");
    world
        .add_target_with("bad", 22, std::path::Path::new("/etc/hostname"), &other.host_key_pub, &[])
        .fails_with("not an OpenSSH private key");
    world.add_target_with("web", 22, &sshd.user_key, &other.host_key_pub, &[]).fails_with("already exists");
}

/// Approvers see new requests pushed live, requesters see decisions, without polling.
#[test]
fn requests_and_decisions_are_pushed_live() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    let mut bob = LineReader::spawn(world.bob.spawn(&["watch"]));
    let mut alice = LineReader::spawn(world.alice.spawn(&["watch"]));
    bob.expect("connected", Duration::from_secs(10));
    alice.expect("connected", Duration::from_secs(10));

    let id = world.alice.run(&["request", "web", "--duration", "20m", "--reason", "live please"]).ok().last_line();
    let seen = bob.expect(&id, Duration::from_secs(5));
    assert!(seen.contains("new request") && seen.contains("alice") && seen.contains("live please"), "{seen}");
    world.bob.run(&["approve", &id]).ok();
    let decided = alice.expect("approved by bob", Duration::from_secs(5));
    assert!(decided.contains(&id), "{decided}");
    // The admin is not an approver and not the requester: nothing for them.
    let mut admin = LineReader::spawn(world.admin.spawn(&["watch"]));
    admin.expect("connected", Duration::from_secs(10));
    let other = world.alice.run(&["request", "web", "--duration", "5m", "--reason", "second"]).ok().last_line();
    bob.expect(&other, Duration::from_secs(5));
    assert!(admin.lines_within(Duration::from_millis(500)).iter().all(|l| !l.contains(&other)));
}

/// Targets carry environment, tags and description; lists filter on them; `show` tells who
/// holds access now and who used it last — and never the credential.
#[test]
fn targets_are_browsable_with_usage() {
    let sshd = Sshd::start();
    let world = World::new();
    let add = |name: &str, env: &str, tag: &str, description: &str| {
        let extra = ["--env", env, "--tag", tag, "--description", description];
        world.add_target_with(name, sshd.port, &sshd.user_key, &sshd.host_key_pub, &extra).ok();
    };
    add("web-prod", "prod", "nginx", "Front web server");
    add("db-staging", "staging", "postgres", "Staging database");

    let prod = world.alice.run(&["target", "list", "--env", "prod"]).ok();
    assert!(prod.stdout.contains("web-prod") && !prod.stdout.contains("db-staging"), "{}", prod.stdout);
    let found = world.alice.run(&["target", "list", "--search", "DATABASE"]).ok();
    assert!(found.stdout.contains("db-staging") && !found.stdout.contains("web-prod"), "{}", found.stdout);
    let none = world.alice.run(&["target", "list", "--tag", "redis"]).ok();
    assert!(none.stdout.contains("No targets match"), "{}", none.stdout);
    world
        .add_target_with("x", sshd.port, &sshd.user_key, &sshd.host_key_pub, &["--tag", "bad tag"])
        .fails_with("invalid tag");

    let before = world.bob.run(&["target", "show", "web-prod"]).ok();
    assert!(before.stdout.contains("last used:    never"), "{}", before.stdout);
    assert!(before.stdout.contains("access now:   nobody"), "{}", before.stdout);
    world.grant("web-prod", "30m");
    world.alice.run(&["ssh", "web-prod", "--", "true"]).ok();
    // The requester sees her own access, not who else used it.
    let hers = world.alice.run(&["target", "show", "web-prod"]).ok().stdout;
    assert!(hers.contains("your access:  until") && !hers.contains("last used"), "{hers}");
    let after = world.bob.run(&["target", "show", "web-prod"]).ok();
    assert!(after.stdout.contains("by alice"), "{}", after.stdout);
    assert!(after.stdout.contains("access now:   alice until"), "{}", after.stdout);
    assert!(after.stdout.contains("Front web server") && after.stdout.contains("nginx"), "{}", after.stdout);
    world.alice.run(&["target", "show", "nope"]).fails_with("unknown target");
}

/// Changing where a target is or who logs in needs the credential and ends live grants; a new
/// credential alone also ends what grants may do (they name its version).
#[test]
fn editing_a_target_voids_what_was_approved() {
    let sshd = Sshd::start();
    let other = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    world.grant("web", "30m");
    world.alice.run(&["ssh", "web", "--", "true"]).ok();

    // Metadata only: grants stay.
    world.admin.run(&["target", "edit", "web", "--description", "front end", "--tag", "nginx"]).ok();
    world.alice.run(&["ssh", "web", "--", "true"]).ok();
    // A move without the credential is refused, and changes nothing.
    let port = other.port.to_string();
    world.admin.run(&["target", "edit", "web", "--port", &port]).fails_with("needs its credential in the same edit");
    world.alice.run(&["ssh", "web", "--", "true"]).ok();
    // A move with the credential voids the live grant.
    let key = other.user_key.to_str().unwrap();
    world
        .admin
        .run(&["target", "edit", "web", "--port", &port, "--host-key", &other.host_key_pub, "--key-file", key])
        .ok();
    world.alice.run(&["ssh", "web", "--", "true"]).fails_with("was ended (target changed: port, host key)");
    world.grant("web", "30m");
    let moved = world.alice.run(&["ssh", "web", "--", "echo", "moved"]).ok();
    assert_eq!(moved.stdout, "moved\n");
    // Rotating the credential alone: the grant no longer opens a session.
    world.admin.run(&["target", "edit", "web", "--key-file", key]).ok();
    world
        .alice
        .run(&["ssh", "web", "--", "true"])
        .fails_with("changed since your access was approved (its credential)");
    let events = world.bob.run(&["audit", "events", "--kind", "target_updated"]).ok().stdout;
    assert!(events.contains("\"grants_voided\":1") && events.contains("\"port\""), "{events}");
}
