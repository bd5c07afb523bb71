//! The gateway's scenarios: a gateway process through a server outage and repeated kills, the
//! user's own OpenSSH tools through it, refused certificates, a full disk, a stalled reader,
//! data before the command.

use std::time::{Duration, Instant};

use crate::harness::*;

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
    let mut gateway = world.enrol_gateway("near-db");
    world.admin.run(&["gateway", "add", "near-db"]).fails_with("already exists");
    let listed = world.admin.run(&["gateway", "list"]).ok().stdout;
    assert!(listed.contains("near-db") && listed.contains("(not running yet)"), "{listed}");
    gateway.start();
    world.add_target_with("db", sshd.port, &sshd.user_key, &sshd.host_key_pub, &["--gateway", "near-db"]).ok();
    let shown = world.bob.run(&["target", "show", "db"]).ok().stdout;
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

    // Verification: the auditor has the server check every log end to end; exports the session
    // as a bundle that anyone checks offline (no server, no enrolment); one changed byte fails
    // it; on the host, the data directory checks offline too.
    let verified = world.bob.run(&["audit", "verify"]).ok().stdout;
    assert!(verified.contains("near-db") && verified.contains("no problems"), "{verified}");
    let bundle = world.root.path().join("survived.bundle");
    let bundle_arg = bundle.to_str().unwrap();
    world.bob.run(&["audit", "export", &session, "--bundle", bundle_arg]).ok();
    let stranger = User::new(world.root.path(), "stranger", "warn", &world.transcript);
    let checked = stranger.run(&["audit", "verify", "--bundle", bundle_arg]).ok().stdout;
    assert!(checked.contains("near-db") && checked.contains("the session is complete"), "{checked}");
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(text.contains("survived-outage"));
    let flipped = bundle.with_extension("flipped");
    std::fs::write(&flipped, text.replacen("survived-outage", "survived-0utage", 1)).unwrap();
    stranger.run(&["audit", "verify", "--bundle", flipped.to_str().unwrap()]).fails_with("does not verify");
    let offline = base_command("warn").args(["server", "verify", "--data"]).arg(&world.server.data).output().unwrap();
    let said = String::from_utf8_lossy(&offline.stdout);
    assert!(offline.status.success() && said.contains("near-db") && said.contains("no problems"), "{said}");

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
pub(crate) fn server_records(server: &ServerProcess, writer: &str) -> (i64, i64) {
    with_db(&server.data.join("server.db"), async |conn| {
        sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM audit_records WHERE writer_id = ?")
            .bind(writer)
            .fetch_one(conn)
            .await
            .unwrap()
    })
}

/// How many records of `kind` a gateway wrote (the kind is stored in clear beside each record).
pub(crate) fn count_kind(db: &std::path::Path, kind: &str) -> i64 {
    with_db(db, async |conn| {
        sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE kind = ?").bind(kind).fetch_one(conn).await.unwrap()
    })
}

/// How many records a gateway wrote.
pub(crate) fn gateway_records(db: &std::path::Path) -> i64 {
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

/// Runs `f` on a connection of its own to `db`, closed before this returns. Dropping a sqlx
/// SQLite connection closes it later, on its worker thread — and the last connection to close
/// checkpoints the WAL into the database and deletes `-wal` and `-shm`: a backup copied in the
/// meantime fails on the vanished file or holds a torn database.
pub(crate) fn with_db<T>(db: &std::path::Path, f: impl AsyncFnOnce(&mut sqlx::SqliteConnection) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        let out = f(&mut conn).await;
        conn.close().await.unwrap();
        out
    })
}

pub(crate) fn mark_all_records_unsent(db: &std::path::Path) {
    let n = with_db(db, async |conn| {
        sqlx::query("UPDATE records SET uploaded_at = NULL").execute(conn).await.unwrap().rows_affected()
    });
    assert!(n > 0);
}

pub(crate) fn unsent_records(db: &std::path::Path) -> i64 {
    with_db(db, async |conn| {
        sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE uploaded_at IS NULL").fetch_one(conn).await.unwrap()
    })
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
    // Files are what this is about: streams are kept to 1 MiB (scp -t and rsync --server are
    // exempt from the input cap; their streams past it are counted and hashed).
    let kept = 1024 * 1024;
    let world = World::custom("warn", false, &["--exec-record-limit", &kept.to_string()]);
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
    let sessions = world.sessions_when("rsync's session, ended", |out| {
        out.lines().any(|l| l.contains("rsync --server") && l.contains(" exit "))
    });
    let rsync =
        sessions.lines().find(|l| l.contains("rsync --server")).unwrap().split_whitespace().next().unwrap().to_string();
    let shown = world.bob.run(&["audit", "show", &rsync]).ok().stdout;
    assert!(shown.contains(&format!("({kept} recorded)")), "{shown}");

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

    // Only ML-KEM/curve25519 key exchange (with strict key exchange), chacha20-poly1305 or
    // aes256-gcm and an Ed25519 host key are on offer.
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
    // The post-quantum hybrid first (this OpenSSH predates it and takes curve25519), then
    // curve25519 under both names (paramiko knows only the older one).
    assert!(
        offered_by_server("KEX algorithms:").ends_with(
            ": mlkem768x25519-sha256,curve25519-sha256,curve25519-sha256@libssh.org,kex-strict-s-v00@openssh.com"
        ),
        "{verbose}"
    );
    assert!(
        offered_by_server("MACs ctos:").ends_with(": hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com"),
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
    // A refusal of a valid certificate from this server's CA is recorded on its own; those
    // anyone can cause (no valid certificate) are counted per address: the first is recorded
    // with its count, the next not until the 8th.
    let recorded = world.audit_when(&["audit", "events", "--kind", "gateway_refused"], "the refusals", |out| {
        out.matches("\"what\":\"certificate\"").count() >= 2
    });
    assert!(recorded.contains("opens web"), "{recorded}");
    assert_eq!(recorded.matches("\"attempts\":1").count(), 1, "{recorded}");
    std::thread::sleep(Duration::from_secs(2));
    let again = world.bob.run(&["audit", "events", "--kind", "gateway_refused"]).ok().stdout;
    assert_eq!(
        again.matches("\"what\":\"certificate\"").count(),
        2,
        "the expired one is counted, not recorded: {again}"
    );
}

/// Fail closed: a gateway that cannot write its records stops the session it brokers and
/// opens no new one, with a message to the user; once space returns, sessions run again.
#[test]
fn a_session_that_cannot_be_recorded_does_not_run() {
    let sshd = Sshd::start();
    let world = World::new();
    let disk = SmallDisk::mount(&world.root.path().join("gateway-full"), "16m");
    let mut gateway = world.enrol_gateway("full");
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

/// Fail closed at the server: when its audit store cannot write (the disk is full), approvals
/// and new sessions are refused with a message that says why; once it can write again, both
/// work — without a restart.
#[test]
fn the_server_refuses_what_it_cannot_record() {
    let sshd = Sshd::start();
    let mut world = World::new();
    world.add_key_target("web", &sshd);
    world.grant("web", "30m");
    // Move the server's data directory onto a small disk of its own.
    world.server.stop();
    let data = world.server.data.clone();
    let before = data.with_extension("before");
    std::fs::rename(&data, &before).unwrap();
    let disk = SmallDisk::mount(&data, "64m");
    let copied = std::process::Command::new("cp").arg("-a").arg(before.join(".")).arg(&data).status().unwrap();
    assert!(copied.success());
    world.server.start(false);
    world.alice.run(&["ssh", "web", "--", "echo", "before-full"]).ok();
    let pending = world.alice.run(&["request", "web", "--duration", "10m", "--reason", "second"]).ok().last_line();

    let filler = disk.fill();
    world.bob.run(&["approve", &pending]).fails_with("the audit store cannot record right now (the disk is full)");
    let ssh = world.alice.run(&["ssh", "web", "--", "echo", "should-not-run"]);
    assert_ne!(ssh.status, 0);
    assert!(!ssh.stdout.contains("should-not-run"));
    // The embedded gateway's own record log is on the same full disk. Whichever write needs a
    // new page first fails — the server's (it refuses the session) or the gateway's (it stops
    // it before the command runs): SQLite fills free pages of a file without growing it, so
    // which one depends on where the last writes left room. Both fail closed.
    assert!(
        ssh.stderr.contains("cannot record") || ssh.stderr.contains("recording failed, session stopped"),
        "{}",
        ssh.stderr
    );

    std::fs::remove_file(filler).unwrap();
    world.bob.run(&["approve", &pending]).ok();
    let again = world.alice.run(&["ssh", "web", "--", "echo", "after-full"]).ok();
    assert_eq!(again.stdout, "after-full\n");
    world.sessions_when("the session after space returned", |out| out.contains("after-full"));
    let verified = world.bob.run(&["audit", "verify"]).ok().stdout;
    assert!(verified.contains("no problems"), "{verified}");
    world.server.stop();
}

/// Fail closed on a refused log: the gateway's newest record is rewritten on its disk and sent
/// again; the server refuses the rewrite (alarm `audit_fork` naming gateway and record) and opens
/// no new session through that gateway, saying why.
#[test]
fn a_gateway_whose_log_is_refused_opens_no_session() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    world.grant("web", "30m");
    world.alice.run(&["ssh", "web", "--", "echo", "recorded"]).ok();
    world.sessions_when("the session", |out| out.contains("echo recorded") && out.contains(" exit "));
    let db = world.server.data.join("gateway.db");
    let rewritten: i64 = with_db(&db, async |conn| {
        let seq: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM records").fetch_one(&mut *conn).await.unwrap();
        sqlx::query(
            "UPDATE records SET leaf = randomblob(32), payload = randomblob(length(payload)), uploaded_at = NULL \
             WHERE seq = ?",
        )
        .bind(seq)
        .execute(&mut *conn)
        .await
        .unwrap();
        seq
    });
    let alarms = world.audit_when(&["audit", "alarms"], "the fork", |out| out.contains("audit_fork"));
    let line = alarms.lines().find(|l| l.contains("audit_fork")).unwrap();
    assert!(line.contains("embedded") && line.contains(&format!(" {rewritten} ")), "{line}");
    world
        .alice
        .run(&["ssh", "web", "--", "echo", "should-not-run"])
        .fails_with("the server refuses its audit log from record");
    let verified = world.bob.run(&["audit", "verify"]).ok().stdout;
    assert!(verified.contains("no problems"), "what the server holds is intact: {verified}");
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
    let raw = world.raw_ssh();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (stdout, exit) = rt.block_on(async move {
        let handle = raw.connect("web").await;
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

/// Exec input is recorded as sent: in full up to the cap, and a session that sends more is
/// ended there — a padded `bash -s` never runs its script, a `nc`-style tunnel stops — with the
/// reason in the recording. Under the cap the whole stdin is in the recording.
#[test]
fn exec_input_is_recorded_in_full_or_the_session_ends() {
    let sshd = Sshd::start();
    let cap = 1024 * 1024;
    let world = World::custom("warn", false, &["--exec-record-limit", &cap.to_string()]);
    world.add_key_target("web", &sshd);
    world.grant("web", "10m");

    let marker = world.root.path().join("ran-unrecorded");
    let mut padded = vec![b'#'; cap];
    padded.extend_from_slice(format!("\ntouch {}\n", marker.display()).as_bytes());
    let run = world.alice.run_with_stdin(&["ssh", "web", "--", "head -c 1048576 >/dev/null; bash -s"], &padded);
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("more input than the gateway records in full"), "{}", run.stderr);
    // A tunnel-like command: the same.
    let tunnel = world.alice.run_with_stdin(&["ssh", "web", "--", "cat > /dev/null"], &vec![0u8; 3 * cap]);
    assert_ne!(tunnel.status, 0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!marker.exists(), "the script past the cap reached the target");

    // Under the cap: it runs, and every byte of its stdin is in the recording.
    let mut script = vec![b'#'; cap - 4096];
    script.extend_from_slice(b"\necho under-the-cap\n");
    let run = world.alice.run_with_stdin(&["ssh", "web", "--", "bash -s"], &script);
    assert_eq!(run.stdout, "under-the-cap\n", "{}", run.stderr);
    let sessions = world.sessions_when("three ended sessions", |out| {
        out.matches("input_cap").count() >= 2 && out.lines().any(|l| l.contains("bash -s") && l.contains(" exit "))
    });
    assert_eq!(sessions.matches("input_cap").count(), 2, "{sessions}");
    let under = sessions.lines().find(|l| l.contains("bash -s") && !l.contains("head")).unwrap();
    let id = under.split_whitespace().next().unwrap();
    let shown = world.bob.run(&["audit", "show", id]).ok().stdout;
    let stdin = shown.lines().find(|l| l.trim_start().starts_with("stdin")).unwrap_or_default().to_string();
    assert!(stdin.contains(&format!("{0} bytes ({0} recorded)", script.len())), "{shown}");
}

/// The gateway reaches targets with AEAD ciphers only; a target that offers none is reached
/// with AES-CTR and an ETM MAC, and the recording says so; one that offers neither is refused
/// with a message that says why.
#[test]
fn targets_are_reached_with_aead_ciphers_and_a_fallback_is_recorded() {
    let modern = Sshd::start_with_config("LogLevel DEBUG1\n");
    let old = Sshd::start_with_config("LogLevel DEBUG1\nCiphers aes256-ctr\nMACs hmac-sha2-256-etm@openssh.com\n");
    let cbc = Sshd::start_with_config("Ciphers aes128-cbc\n");
    let world = World::new();
    for (name, sshd) in [("modern", &modern), ("old", &old), ("cbc", &cbc)] {
        world.add_key_target(name, sshd);
        world.grant(name, "10m");
    }
    assert_eq!(world.alice.run(&["ssh", "modern", "--", "echo modern-ok"]).ok().stdout, "modern-ok\n");
    assert_eq!(world.alice.run(&["ssh", "old", "--", "echo old-ok"]).ok().stdout, "old-ok\n");
    world.alice.run(&["ssh", "cbc", "--", "true"]).fails_with("offers none of the ciphers the gateway uses");
    let negotiated = |log: String| {
        log.lines().find(|l| l.contains("kex: client->server cipher:")).map(str::to_string).unwrap_or(log)
    };
    let modern_kex = negotiated(modern.log());
    assert!(modern_kex.contains("aes256-gcm@openssh.com") || modern_kex.contains("chacha20-poly1305"), "{modern_kex}");
    let old_kex = negotiated(old.log());
    assert!(old_kex.contains("aes256-ctr MAC: hmac-sha2-256-etm@openssh.com"), "{old_kex}");

    let sessions = world.sessions_when("both sessions", |out| out.contains("old-ok") && out.contains("modern-ok"));
    let show = |marker: &str| {
        let id = sessions.lines().find(|l| l.contains(marker)).unwrap().split_whitespace().next().unwrap().to_string();
        world.bob.run(&["audit", "show", &id]).ok().stdout
    };
    let old_shown = show("old-ok");
    assert!(
        old_shown.contains("transport:  to the target aes256-ctr + hmac-sha2-etm (the target offers no AEAD cipher)"),
        "{old_shown}"
    );
    assert!(!show("modern-ok").contains("transport:"));
}

/// The control server's own failures stay in the log: a user whose session the server could
/// not decide (here a table gone from its database behind its back) is told to try again, not
/// what broke inside.
#[test]
fn internal_errors_stay_in_the_gateways_log() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    world.grant("web", "10m");
    let config = world.root.path().join("internal-config");
    world.alice.run(&["ssh-config", "--out", config.to_str().unwrap()]).ok();
    with_db(&world.server.data.join("server.db"), async |conn| {
        sqlx::raw_sql("DROP TABLE session_authorizations").execute(conn).await.unwrap()
    });
    let out = stock_ssh(&config, &["web.portcullis", "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("could not check your access") && stderr.contains("try again"), "{stderr}");
    assert!(!stderr.contains("no such table") && !stderr.contains("session_authorizations"), "{stderr}");
    let log = String::from_utf8_lossy(&world.server.log()).into_owned();
    assert!(log.contains("no such table"), "the gateway's log has what broke:\n{log}");
}

/// paramiko (Fabric, Ansible's paramiko connection) reaches a target through the gateway: it
/// agrees on a key exchange it offers (the post-quantum hybrid or curve25519 under its libssh
/// name), an AEAD or ETM transport, authenticates with the user's Portcullis certificate, runs a
/// command and uploads a file over sftp — and both are in the recording.
#[test]
fn paramiko_connects_through_the_gateway() {
    let python = paramiko_python();
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    world.grant("web", "10m");
    let raw = world.raw_ssh_files();
    let upload_from = world.root.path().join("from-paramiko.txt");
    std::fs::write(&upload_from, b"sent by paramiko\n").unwrap();
    let upload_to = world.root.path().join("paramiko-upload.txt");
    let out = std::process::Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/support/paramiko_client.py"))
        .args([&raw.port.to_string(), "web", &raw.key, &raw.cert, &raw.host_key, "echo paramiko-ok"])
        .args([upload_from.to_str().unwrap(), upload_to.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "paramiko failed: {stderr}");
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["stdout"], "paramiko-ok\n", "{said}");
    assert_eq!(said["status"], 0, "{said}");
    assert_eq!(std::fs::read(&upload_to).unwrap(), b"sent by paramiko\n");
    let kex = said["kex"].as_str().unwrap_or_default();
    assert!(["mlkem768x25519-sha256", "curve25519-sha256@libssh.org", "curve25519-sha256"].contains(&kex), "{said}");
    let cipher = said["cipher"].as_str().unwrap_or_default();
    let mac = said["mac"].as_str().unwrap_or_default();
    assert!(cipher.contains("gcm") || cipher.contains("chacha20") || mac.contains("-etm@openssh.com"), "{said}");
    eprintln!("paramiko {} agreed on {kex}, {cipher}, {mac}", said["paramiko"]);

    let command = world.ended_session_showing("echo paramiko-ok");
    assert!(command.contains("echo paramiko-ok"), "the command is in the recording:\n{command}");
    let upload = world.ended_session_showing(upload_to.to_str().unwrap());
    assert!(upload.contains(&format!("17 bytes  sha256 {}", sha256_hex(b"sent by paramiko\n"))), "{upload}");
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The session list is an index of the records: a row edited in the database — the session
/// moved to another user, its command or its end rewritten — is named by `audit verify`, field
/// by field, and verification is clean again once the row says what the records say.
#[test]
fn audit_verify_checks_the_session_index_against_the_records() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("web", &sshd);
    world.grant("web", "10m");
    world.alice.run(&["ssh", "web", "--", "echo indexed"]).ok();
    world.sessions_when("the session", |out| out.contains("echo indexed") && out.contains(" exit "));
    let db = world.server.data.join("server.db");
    let edit = |sql: &str| {
        with_db(&db, async |conn| sqlx::raw_sql(sql).execute(conn).await.unwrap());
    };
    let clean = world.bob.run(&["audit", "verify"]).stdout;
    assert!(clean.contains("no problems"), "{clean}");
    for (change, undo, says) in [
        (
            "UPDATE sessions SET user_name = 'bob'",
            "UPDATE sessions SET user_name = 'alice'",
            "listed user (bob) differs from its records (alice)",
        ),
        (
            "UPDATE sessions SET command = 'true'",
            "UPDATE sessions SET command = 'echo indexed'",
            "listed command (Some(\"true\")) differs",
        ),
        (
            "UPDATE sessions SET end_reason = 'revoked', exit_status = NULL",
            "UPDATE sessions SET end_reason = 'exit', exit_status = 0",
            "listed exit status (None) differs from its records (Some(0))",
        ),
    ] {
        edit(change);
        let run = world.bob.run(&["audit", "verify"]);
        assert_ne!(run.status, 0, "{change}: verification passed");
        let found = format!("{}{}", run.stdout, run.stderr);
        assert!(found.contains(says), "{change}: {found}");
        edit(undo);
    }
    let again = world.bob.run(&["audit", "verify"]).stdout;
    assert!(again.contains("no problems"), "{again}");
}
