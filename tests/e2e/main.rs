//! End-to-end scenarios through the real `portcullis` binary, the real server process and real
//! OpenSSH `sshd` targets on loopback ports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;

/// The whole loop on key auth; afterwards the private key must not occur anywhere: outputs,
/// trace-level logs of server and clients, databases, the process environment.
#[test]
fn full_loop_with_key_credential_leaves_no_trace_of_it() {
    let sshd = Sshd::start();
    let world = World::with_log("trace");
    world.add_key_target("web", &sshd);

    let listed = world.alice.run(&["target", "list"]).ok();
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
    let exists = std::process::Command::new("id").arg(user).output().unwrap().status.success();
    if !exists {
        let made = std::process::Command::new("useradd").args(["-m", "-s", "/bin/sh", user]).status().unwrap();
        assert!(made.success(), "creating the test account {user} needs root");
    }
    let password = format!("canary-{}", hex::encode(rand::random::<[u8; 16]>()));
    let mut chpasswd = std::process::Command::new("chpasswd").stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(chpasswd.stdin.as_mut().unwrap(), format!("{user}:{password}\n").as_bytes()).unwrap();
    drop(chpasswd.stdin.take());
    assert!(chpasswd.wait().unwrap().success());

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
    // Limits.
    world
        .alice
        .run(&["request", "web", "--duration", "9h", "--reason", "x"])
        .fails_with("between 1 second and 8 hours");
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

/// A gateway in its own process, enrolled over TLS with the pin from its code, brokers and
/// records a target's sessions. The control server goes away during a session: the session
/// completes, the gateway keeps the recording and uploads it when the server is back; it opens
/// no new session meanwhile (it cannot check the grant). Killed again and again while it
/// uploads, it loses and duplicates nothing; forcing a re-upload stores nothing twice. The
/// credential appears in none of its output, log, database or home.
#[test]
fn a_gateway_process_keeps_recording_through_a_server_outage() {
    let sshd = Sshd::start();
    // Record stdout in full, so the session below makes hundreds of records to upload.
    let mut world = World::custom("warn", true, &["--exec-record-limit", "67108864"]);
    let code = world.admin.run(&["gateway", "add", "near-db"]).ok().last_line();
    let mut gateway =
        GatewayProcess::enroll(world.root.path(), "near-db", &world.server.url, &code, "warn", &world.transcript);
    world.admin.run(&["gateway", "add", "near-db"]).fails_with("already exists");
    let listed = world.admin.run(&["gateway", "list"]).ok().stdout;
    assert!(listed.contains("near-db") && listed.contains("(not running yet)"), "{listed}");
    gateway.start();
    world.add_target_with("db", sshd.port, &sshd.user_key, &sshd.host_key_pub, &["--gateway", "near-db"]).ok();
    let shown = world.alice.run(&["target", "show", "db"]).ok().stdout;
    assert!(shown.contains("gateway:      near-db"), "{shown}");
    let id = world.alice.run(&["request", "db", "--duration", "10m", "--reason", "e2e"]).ok().last_line();
    world.bob.run(&["approve", &id]).ok();
    let hello = world.alice.run(&["ssh", "db", "--", "echo via-near-db"]).ok();
    assert_eq!(hello.stdout, "via-near-db\n");
    // The user's own OpenSSH client, with the config `ssh-config` writes.
    let config = world.root.path().join("alice-ssh-config");
    world.alice.run(&["ssh-config", "--out", config.to_str().unwrap()]).ok();
    let stock = stock_ssh(&config, &["db.portcullis", "echo", "stock-ssh-$((20+3))"]);
    assert!(stock.status.success(), "{}", String::from_utf8_lossy(&stock.stderr));
    assert_eq!(String::from_utf8_lossy(&stock.stdout), "stock-ssh-23\n");

    // The server goes away mid-session.
    let child = world.alice.spawn(&[
        "ssh",
        "db",
        "--",
        "sleep 2; head -c 12000000 /dev/urandom | base64; echo survived-outage",
    ]);
    std::thread::sleep(Duration::from_millis(800));
    world.server.stop();
    let run = world.alice.wait(child);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stdout.ends_with("survived-outage\n"), "{}", &run.stdout[run.stdout.len().saturating_sub(100)..]);
    let output_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(run.stdout.as_bytes()))
    };
    // No new session without checking the grant: no certificate can be issued, and one held
    // from before is refused by the gateway, which cannot ask the server.
    world.alice.run(&["ssh", "db", "--", "true"]).fails_with("cannot reach the server");
    let refused = stock_ssh(&config, &["db.portcullis", "true"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("cannot reach the control server"), "{stderr}");

    // The gateway has written the session's last records (its recorder trails the bytes by a
    // moment; what it has not written when killed is lost, like any process's memory).
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_kind(&gateway.database(), "session_end") < 3 {
        assert!(Instant::now() < deadline, "the gateway never recorded the session's end");
        std::thread::sleep(Duration::from_millis(100));
    }
    world.server.start(true);
    // Kill the gateway at random moments while it uploads the backlog, and start it again.
    let backlog = unsent_records(&gateway.database());
    assert!(backlog > 50, "only {backlog} records to upload");
    let mut kills = 0;
    let mut rng_state = u64::from_le_bytes(rand::random::<[u8; 8]>());
    while unsent_records(&gateway.database()) > 0 && kills < 8 {
        rng_state = rng_state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(100 + (rng_state >> 33) % 700));
        gateway.kill();
        kills += 1;
        gateway.start();
    }
    assert!(kills > 0, "the upload finished before the first kill");
    let deadline = Instant::now() + Duration::from_secs(60);
    while unsent_records(&gateway.database()) > 0 {
        assert!(Instant::now() < deadline, "the gateway never finished uploading");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (count, max) = server_records(&world.server, &gateway.id());
    let written = gateway_records(&gateway.database());
    assert_eq!((count, max), (written, written), "the server holds each of the gateway's {written} records once");
    let deadline = Instant::now() + Duration::from_secs(30);
    let audit = loop {
        let out = world.bob.run(&["audit", "list"]).ok().stdout;
        if out.contains("survived-outage") && out.matches(" exit ").count() >= 2 {
            break out;
        }
        assert!(Instant::now() < deadline, "the gateway never uploaded the session: {out}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(audit.matches("survived-outage").count(), 1, "{audit}");
    assert!(audit.lines().filter(|l| l.contains("survived")).all(|l| l.contains("alice")), "{audit}");
    // Byte for byte what alice saw: the recording's stdout has the same size and hash.
    let session =
        audit.lines().find(|l| l.contains("survived-outage")).unwrap().split_whitespace().next().unwrap().to_string();
    let shown = world.bob.run(&["audit", "show", &session]).ok().stdout;
    let stdout = shown.lines().find(|l| l.trim_start().starts_with("stdout")).unwrap_or_default().to_string();
    assert!(stdout.contains(&format!("{} bytes ({} recorded)", run.stdout.len(), run.stdout.len())), "{shown}");
    assert!(stdout.contains(&output_sha), "{shown}");
    eprintln!(
        "gateway killed {kills} times while uploading {backlog} records; {written} written, {count} stored once each"
    );
    let listed = world.admin.run(&["gateway", "list"]).ok().stdout;
    assert!(listed.contains(&format!("127.0.0.1:{}", gateway.port)), "{listed}");

    // Force a re-upload of everything: the server acknowledges duplicates and stores nothing twice.
    gateway.kill();
    mark_all_records_unsent(&gateway.database());
    gateway.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while unsent_records(&gateway.database()) > 0 {
        assert!(Instant::now() < deadline, "the gateway never re-uploaded its records");
        std::thread::sleep(Duration::from_millis(300));
    }
    let audit = world.bob.run(&["audit", "list"]).ok().stdout;
    assert_eq!(audit.matches("survived-outage").count(), 1, "{audit}");
    let listed = world.admin.run(&["gateway", "list"]).ok().stdout;
    assert!(listed.lines().any(|l| l.starts_with("near-db")), "{listed}");

    // The canary: the private key's text and every base64 line of it.
    let canaries = key_canaries(&sshd.user_key);
    assert_no_canary(&world.transcript.bytes(), &canaries, "command output");
    assert_no_canary(&gateway.log(), &canaries, "the gateway's log");
    assert_no_canary(&world.server.log(), &canaries, "the server's log");
    let files = files_under(world.root.path());
    assert!(files.iter().any(|f| f.ends_with("gateway.db")));
    for file in files {
        assert_no_canary(&std::fs::read(&file).unwrap(), &canaries, &file.display().to_string());
    }
}

/// (records, highest sequence number) the server stores for a writer.
fn server_records(server: &ServerProcess, writer: &str) -> (i64, i64) {
    with_db(&server.data.join("server.db"), async |conn| {
        sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM audit_records WHERE writer_id = ?")
            .bind(writer)
            .fetch_one(conn)
            .await
            .unwrap()
    })
}

/// How many records of `kind` a gateway wrote (the kind is stored in clear beside each record).
fn count_kind(db: &std::path::Path, kind: &str) -> i64 {
    with_db(db, async |conn| {
        sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE kind = ?").bind(kind).fetch_one(conn).await.unwrap()
    })
}

/// How many records a gateway wrote.
fn gateway_records(db: &std::path::Path) -> i64 {
    with_db(db, async |conn| sqlx::query_scalar("SELECT COUNT(*) FROM records").fetch_one(conn).await.unwrap())
}

/// The user's own OpenSSH `ssh` with a config file.
fn stock_ssh(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh (openssh-client) is installed")
}

fn with_db<T>(db: &std::path::Path, f: impl AsyncFnOnce(&mut sqlx::SqliteConnection) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        f(&mut conn).await
    })
}

fn mark_all_records_unsent(db: &std::path::Path) {
    let n = with_db(db, async |conn| {
        sqlx::query("UPDATE records SET uploaded_at = NULL").execute(conn).await.unwrap().rows_affected()
    });
    assert!(n > 0);
}

fn unsent_records(db: &std::path::Path) -> i64 {
    with_db(db, async |conn| {
        sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE uploaded_at IS NULL").fetch_one(conn).await.unwrap()
    })
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

    let before = world.alice.run(&["target", "show", "web-prod"]).ok();
    assert!(before.stdout.contains("last used:    never"), "{}", before.stdout);
    assert!(before.stdout.contains("access now:   nobody"), "{}", before.stdout);
    world.grant("web-prod", "30m");
    world.alice.run(&["ssh", "web-prod", "--", "true"]).ok();
    let after = world.bob.run(&["target", "show", "web-prod"]).ok();
    assert!(after.stdout.contains("by alice"), "{}", after.stdout);
    assert!(after.stdout.contains("access now:   alice until"), "{}", after.stdout);
    assert!(after.stdout.contains("Front web server") && after.stdout.contains("nginx"), "{}", after.stdout);
    world.alice.run(&["target", "show", "nope"]).fails_with("unknown target");
}

/// SHA-256 of a file, hex (with the system's sha256sum, a real part of its own).
fn sha256_file(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// Runs a stock OpenSSH tool (or rsync) and insists it succeeded.
#[track_caller]
fn stock(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program).args(args).stdin(std::process::Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The user's own `ssh`, `scp` (SFTP mode and legacy `-O`), `sftp -b` and `rsync` move 256 MiB
/// through the gateway each way, byte for byte, and the recording has every file's path,
/// direction, size and SHA-256. Forwarding and agent requests are refused and recorded.
#[test]
fn stock_openssh_tools_move_files_through_the_gateway_and_the_recording_knows_them() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("files", &sshd);
    world.grant("files", "30m");
    let dir = world.root.path().join("transfers");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("ssh-config");
    world.alice.run(&["ssh-config", "--out", config.to_str().unwrap()]).ok();
    let cfg = config.to_str().unwrap();

    let local = dir.join("payload.bin");
    let made = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("head -c 268435456 /dev/urandom > '{}'", local.display()))
        .status()
        .unwrap();
    assert!(made.success());
    let want = sha256_file(&local);
    let at = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let remote = |name: &str| format!("files.portcullis:{}", at(name));

    stock("scp", &["-q", "-F", cfg, local.to_str().unwrap(), &remote("up-sftp.bin")]);
    stock("scp", &["-q", "-O", "-F", cfg, local.to_str().unwrap(), &remote("up-legacy.bin")]);
    stock("scp", &["-q", "-F", cfg, &remote("up-sftp.bin"), &at("down-sftp.bin")]);
    stock("scp", &["-q", "-O", "-F", cfg, &remote("up-legacy.bin"), &at("down-legacy.bin")]);
    let batch = dir.join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {} {}\nget {} {}\n",
            local.display(),
            at("up-batch.bin"),
            at("up-batch.bin"),
            at("down-batch.bin")
        ),
    )
    .unwrap();
    stock("sftp", &["-q", "-F", cfg, "-b", batch.to_str().unwrap(), "files.portcullis"]);
    stock("rsync", &["-e", &format!("ssh -F {cfg}"), local.to_str().unwrap(), &remote("up-rsync.bin")]);
    for name in [
        "up-sftp.bin",
        "up-legacy.bin",
        "down-sftp.bin",
        "down-legacy.bin",
        "up-batch.bin",
        "down-batch.bin",
        "up-rsync.bin",
    ] {
        assert_eq!(sha256_file(&dir.join(name)), want, "{name} differs from what was sent");
    }

    // Every file transfer is in the recording with its path, direction, size and hash.
    let transfers = world.audit_when(&["audit", "events", "--kind", "file_transfer"], "six transfers", |out| {
        out.matches(&want).count() >= 6
    });
    for (direction, protocol, name) in [
        ("upload", "sftp", "up-sftp.bin"),
        ("upload", "scp", "up-legacy.bin"),
        ("download", "sftp", "up-sftp.bin"),
        ("download", "scp", "up-legacy.bin"),
        ("upload", "sftp", "up-batch.bin"),
        ("download", "sftp", "up-batch.bin"),
    ] {
        assert!(
            transfers.lines().any(|l| l.contains(&format!("\"direction\":\"{direction}\""))
                && l.contains(&format!("\"protocol\":\"{protocol}\""))
                && l.contains(&at(name))
                && l.contains(&want)
                && l.contains("\"size\":268435456")
                && l.contains(" alice ")),
            "no {direction} {protocol} of {name}:\n{transfers}"
        );
    }
    // rsync's stream is recorded as a command with its stdin counted and hashed in full.
    let sessions = world.sessions_when("rsync's session", |out| out.contains("rsync --server"));
    let rsync =
        sessions.lines().find(|l| l.contains("rsync --server")).unwrap().split_whitespace().next().unwrap().to_string();
    let shown = world.bob.run(&["audit", "show", &rsync]).ok().stdout;
    assert!(shown.contains("(1048576 recorded)"), "{shown}");

    // Port forwarding and agent forwarding are refused, and the attempts recorded.
    let forward = std::process::Command::new("ssh")
        .args(["-F", cfg, "-W", &format!("127.0.0.1:{}", sshd.port), "files.portcullis"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!forward.status.success());
    assert!(
        String::from_utf8_lossy(&forward.stderr).contains("not allowed through Portcullis"),
        "{}",
        String::from_utf8_lossy(&forward.stderr)
    );
    let agent_sock = dir.join("agent.sock");
    let agent = Background(
        std::process::Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&agent_sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_path(&agent_sock);
    let identity_agent = format!("IdentityAgent={}", agent_sock.display());
    let with_agent = std::process::Command::new("ssh")
        .args(["-F", cfg, "-o", &identity_agent, "-A", "files.portcullis", "echo", "agentless"])
        .env("SSH_AUTH_SOCK", &agent_sock)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    drop(agent);
    assert_eq!(
        String::from_utf8_lossy(&with_agent.stdout),
        "agentless\n",
        "{}",
        String::from_utf8_lossy(&with_agent.stderr)
    );
    world.audit_when(&["audit", "events", "--kind", "gateway_refused"], "both refusals", |out| {
        out.contains("\"what\":\"forwarding\"") && out.contains("\"what\":\"agent\"") && out.contains("alice")
    });
}

fn wait_for_path(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// The gateway tells the user's own ssh why a certificate does not open the target, and
/// records it: another target than the certificate's, a self-signed certificate, an expired one.
#[test]
fn the_gateway_explains_refused_certificates() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    let approved = Instant::now();
    world.grant("web", "8s");
    let dir = world.root.path().join("refusals");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("ssh-config");
    world.alice.run(&["ssh-config", "--out", config.to_str().unwrap()]).ok();
    let refused = |config: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["-F", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend(["web.portcullis", "true"]);
        let out = std::process::Command::new("ssh").args(&args).stdin(std::process::Stdio::null()).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let other = refused(&config, &["-l", "db"]);
    assert!(other.contains("this certificate opens web, not \"db\""), "{other}");

    // Only curve25519-sha256 (with strict key exchange), chacha20-poly1305 or aes256-gcm and an
    // Ed25519 host key are on offer.
    let kex = refused(&config, &["-o", "KexAlgorithms=diffie-hellman-group14-sha256,ecdh-sha2-nistp256"]);
    assert!(kex.contains("no matching key exchange method"), "{kex}");
    let cipher = refused(&config, &["-c", "aes128-ctr,aes256-ctr,aes128-gcm@openssh.com"]);
    assert!(cipher.contains("no matching cipher"), "{cipher}");
    let offered = std::process::Command::new("ssh")
        .args(["-vvv", "-F", config.to_str().unwrap(), "web.portcullis", "true"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let verbose = String::from_utf8_lossy(&offered.stderr);
    assert!(offered.status.success(), "{verbose}");
    assert!(verbose.contains("kex: algorithm: curve25519-sha256"), "{verbose}");
    assert!(verbose.contains("kex: host key algorithm: ssh-ed25519"), "{verbose}");
    // What the gateway offers, as the client saw it, and strict key exchange in use.
    let offered_by_server = |what: &str| {
        verbose.lines().filter(|l| l.contains(what)).map(|l| l.trim().to_string()).nth(1).unwrap_or_default()
    };
    assert!(
        offered_by_server("KEX algorithms:").ends_with(": curve25519-sha256,kex-strict-s-v00@openssh.com"),
        "{verbose}"
    );
    assert!(
        offered_by_server("ciphers ctos:").ends_with(": chacha20-poly1305@openssh.com,aes256-gcm@openssh.com"),
        "{verbose}"
    );
    assert!(offered_by_server("host key algorithms:").ends_with(": ssh-ed25519"), "{verbose}");
    assert!(verbose.contains("will use strict KEX ordering"), "{verbose}");

    // A certificate the user signed with a CA of their own.
    let key = dir.join("mine");
    let ca = dir.join("my-ca");
    for path in [&key, &ca] {
        assert!(
            std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .unwrap()
                .success()
        );
    }
    let signed = std::process::Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca)
        .args(["-I", "forged", "-n", "alice", "-V", "-5m:+1h"])
        .arg(key.with_extension("pub"))
        .status()
        .unwrap();
    assert!(signed.success());
    let text = std::fs::read_to_string(&config).unwrap();
    let keys = world.alice.home.join("ssh/keys");
    let forged = text
        .replace(
            &format!("\"{}\"", std::path::absolute(keys.join("web")).unwrap().display()),
            &format!("\"{}\"", key.display()),
        )
        .replace(
            &format!("\"{}\"", std::path::absolute(keys.join("web-cert.pub")).unwrap().display()),
            &format!("\"{}\"", dir.join("mine-cert.pub").display()),
        );
    assert_ne!(forged, text, "the config names the key files");
    let forged_config = dir.join("forged-config");
    std::fs::write(&forged_config, forged).unwrap();
    let self_signed = refused(&forged_config, &[]);
    assert!(self_signed.contains("not issued by this Portcullis server's user CA"), "{self_signed}");

    // The grant (and so the certificate) ends.
    std::thread::sleep(Duration::from_secs(9).saturating_sub(approved.elapsed()));
    let expired = refused(&config, &[]);
    assert!(expired.contains("a certificate that has expired (or is not yet valid) is refused"), "{expired}");
    world.audit_when(&["audit", "events", "--kind", "gateway_refused"], "three refusals", |out| {
        out.matches("\"what\":\"certificate\"").count() >= 3
    });
}

/// A tmpfs of `size` mounted at `dir` (root only), unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root (the suite runs as root)");
        SmallDisk(dir.to_path_buf())
    }

    /// Fills it up; the file is removed to give the space back.
    fn fill(&self) -> std::path::PathBuf {
        let file = self.0.join("filler");
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", file.display()))
            .stderr(std::process::Stdio::null())
            .status();
        file
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fail closed: a gateway that cannot write its records stops the session it brokers and
/// opens no new one, with a message to the user; once space returns, sessions run again.
#[test]
fn a_session_that_cannot_be_recorded_does_not_run() {
    let sshd = Sshd::start();
    let world = World::new();
    let disk = SmallDisk::mount(&world.root.path().join("gateway-full"), "16m");
    let code = world.admin.run(&["gateway", "add", "full"]).ok().last_line();
    let mut gateway =
        GatewayProcess::enroll(world.root.path(), "full", &world.server.url, &code, "warn", &world.transcript);
    assert!(gateway.home.starts_with(&disk.0));
    gateway.start();
    world.add_target_with("db", sshd.port, &sshd.user_key, &sshd.host_key_pub, &["--gateway", "full"]).ok();
    world.grant("db", "30m");
    world.alice.run(&["ssh", "db", "--", "echo", "recorded"]).ok();

    // The disk fills while a session runs: its next record fails, and the session stops.
    let started = Instant::now();
    let child = world.alice.spawn(&["ssh", "db", "--", "sleep 2; while :; do echo more output; sleep 0.05; done"]);
    std::thread::sleep(Duration::from_millis(1000));
    let filler = disk.fill();
    let run = world.alice.wait(child);
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("could not be recorded and was stopped"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(15), "the session went on unrecorded");

    // No new session while nothing can be recorded.
    let refused = world.alice.run(&["ssh", "db", "--", "echo", "should-not-run"]);
    assert_ne!(refused.status, 0);
    assert!(!refused.stdout.contains("should-not-run"));
    assert!(refused.stderr.contains("recording failed"), "{}", refused.stderr);

    // Space returns: sessions run (and are recorded) again.
    std::fs::remove_file(filler).unwrap();
    let again = world.alice.run(&["ssh", "db", "--", "echo", "recorded-again"]).ok();
    assert_eq!(again.stdout, "recorded-again\n");
    world.sessions_when("the session after recovery", |out| out.contains("recorded-again"));
    gateway.kill();
}

/// A user who stops reading cannot keep a session past its grant: the gateway gives up on the
/// stalled channel at expiry, closes the target side (the command is gone) and records why.
#[test]
fn a_stalled_reader_cannot_outlive_the_grant() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    let approved = Instant::now();
    world.grant("web", "6s");
    let marker = format!("portcullis-stall-{}", std::process::id());
    // stdout is piped and never read: the client stops reading, the windows fill up.
    let mut child = world
        .alice
        .command()
        .args(["ssh", "web", "--", &format!("exec -a {marker} yes stalled")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The command on the target runs as `MARKER stalled` (the client's own command line also
    // names the marker, after `exec -a`).
    let pattern = format!("^{marker} stalled");
    let running = || {
        std::process::Command::new("pgrep").args(["-f", &pattern]).output().map(|o| o.status.success()).unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !running() {
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(7).saturating_sub(approved.elapsed()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while running() {
        assert!(Instant::now() < deadline, "the command outlived the grant");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    world.sessions_when("the expiry recorded", |out| out.contains("grant_expired") && out.contains("yes stalled"));
}

/// Data a client sends before its command runs (right after opening the channel, as pipelining
/// clients do) is held by the gateway and delivered, recorded, once the command runs; requests
/// sent back to back get their answers in order.
#[test]
fn early_data_reaches_the_command() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    world.grant("web", "10m");
    let config = world.root.path().join("ssh-config");
    world.alice.run(&["ssh-config", "--out", config.to_str().unwrap()]).ok();
    let text = std::fs::read_to_string(&config).unwrap();
    let setting = |name: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(&format!("{name} "))).unwrap().trim_matches('"').to_string()
    };
    let (port, key, cert) = (setting("Port"), setting("IdentityFile"), setting("CertificateFile"));
    let known = std::fs::read_to_string(setting("UserKnownHostsFile")).unwrap();
    let host_key = known.split_whitespace().skip(1).take(2).collect::<Vec<_>>().join(" ");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (stdout, exit) = rt.block_on(async move {
        use russh::keys::{Certificate, PrivateKey, PublicKey, PublicKeyOrCertificate};
        struct Pinned(PublicKey);
        impl russh::client::Handler for Pinned {
            type Error = russh::Error;
            async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
                Ok(matches!(key, PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.0.key_data()))
            }
        }
        let key = PrivateKey::from_openssh(std::fs::read_to_string(&key).unwrap()).unwrap();
        let cert = Certificate::from_openssh(std::fs::read_to_string(&cert).unwrap().trim()).unwrap();
        let pinned = Pinned(PublicKey::from_openssh(&host_key).unwrap());
        let mut handle = russh::client::connect(
            std::sync::Arc::new(Default::default()),
            ("127.0.0.1", port.parse::<u16>().unwrap()),
            pinned,
        )
        .await
        .unwrap();
        assert!(handle.authenticate_openssh_cert("web", std::sync::Arc::new(key), cert).await.unwrap().success());
        let mut channel = handle.channel_open_session().await.unwrap();
        // Data and EOF before the command, then two requests without waiting for answers.
        channel.data(&b"early bytes\n"[..]).await.unwrap();
        channel.eof().await.unwrap();
        channel.set_env(true, "LANG", "C").await.unwrap();
        channel.exec(true, "cat; echo after-eof").await.unwrap();
        let (mut out, mut exit, mut replies) = (Vec::new(), None, Vec::new());
        while let Some(msg) = channel.wait().await {
            match msg {
                russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
                russh::ChannelMsg::ExitStatus { exit_status } => exit = Some(exit_status),
                russh::ChannelMsg::Success => replies.push(true),
                russh::ChannelMsg::Failure => replies.push(false),
                _ => {}
            }
        }
        // The environment request is refused, the command accepted: answers in order.
        assert_eq!(replies, vec![false, true]);
        (String::from_utf8(out).unwrap(), exit)
    });
    assert_eq!(stdout, "early bytes\nafter-eof\n");
    assert_eq!(exit, Some(0));
    let sessions = world.sessions_when("the session", |out| out.contains("after-eof") && out.contains(" exit "));
    let id = sessions.lines().find(|l| l.contains("after-eof")).unwrap().split_whitespace().next().unwrap().to_string();
    let shown = world.bob.run(&["audit", "show", &id]).ok().stdout;
    let stdin = shown.lines().find(|l| l.trim_start().starts_with("stdin")).unwrap_or_default();
    assert!(stdin.contains(" 12 bytes (12 recorded)"), "{shown}");
}
