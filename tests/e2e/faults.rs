//! Faults, Teleport-style: a gateway writes 20 sessions × 4,096 events through its real record
//! log and sync (`gateway soak`, feature `soak`) while the test kills it at random, drops the
//! server after 700 records, kills the server at random, restores the server from an older
//! backup and corrupts a record waiting for upload. Afterwards the server must hold every record
//! the gateway committed exactly once — the same Merkle root on both sides — and `audit verify`
//! must pass.
//!
//! The random choices come from one seed, printed at the start; `PORTCULLIS_FAULT_SEED=N`
//! replays a run's choices (the timing of the processes still varies).

#![cfg(feature = "soak")]

use std::time::{Duration, Instant};

use crate::gateway::{gateway_records, server_records, unsent_records, with_db};
use crate::harness::*;

const SESSIONS: u64 = 20;
const EVENTS: u64 = 4096;
/// The server is backed up once it holds this many of the gateway's records: early enough that
/// every run gets there (kills cut sessions short, so a run may write a third of the
/// 20 × 4,098 records it plans), late enough that the backup lacks most of what follows.
const BACKUP_AT: i64 = 4_096;

pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

pub(crate) fn finished(writer: &mut Background) -> bool {
    matches!(writer.0.try_wait(), Ok(Some(status)) if status.success())
}

pub(crate) fn kill(writer: &mut Background) {
    let _ = writer.0.kill();
    let _ = writer.0.wait();
}

/// `PORTCULLIS_FAULT_SEED` when set, else a fresh one; printed either way.
pub(crate) fn seed() -> u64 {
    let seed = match std::env::var("PORTCULLIS_FAULT_SEED") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("PORTCULLIS_FAULT_SEED={text:?} is not a number")),
        Err(_) => u64::from_le_bytes(rand::random::<[u8; 8]>()),
    };
    eprintln!("fault test: seed {seed} (PORTCULLIS_FAULT_SEED={seed} replays these choices)");
    seed
}

/// The root of the gateway's newest countersigned checkpoint (base64), and its size.
fn gateway_root(db: &std::path::Path) -> (u64, String) {
    let note: String = with_db(db, async |conn| {
        sqlx::query_scalar("SELECT cosigned FROM log_checkpoints WHERE cosigned IS NOT NULL ORDER BY size DESC LIMIT 1")
            .fetch_one(conn)
            .await
            .unwrap()
    });
    let mut lines = note.lines().skip(1);
    (lines.next().unwrap().parse().unwrap(), lines.next().unwrap().to_string())
}

/// `audit verify` passes and names this writer with `records` records and `root`.
fn verified(world: &World, writer: &str, records: u64, root: &str) -> String {
    let out = world.bob.run(&["audit", "verify"]).ok().stdout;
    let line = out.lines().find(|l| l.contains(writer)).unwrap_or_else(|| panic!("{writer} not verified:\n{out}"));
    assert!(line.contains(&format!(" {records} ")) && line.ends_with(root), "{line}\n{out}");
    assert!(out.contains("no problems"), "{out}");
    out
}

/// Everything the gateway committed is on the server once: same count, no gap, same root.
pub(crate) fn nothing_lost_or_doubled(world: &World, gateway: &GatewayProcess) -> (i64, String) {
    let db = gateway.database();
    let deadline = Instant::now() + Duration::from_secs(60);
    while unsent_records(&db) > 0 {
        assert!(Instant::now() < deadline, "the gateway never finished uploading");
        std::thread::sleep(Duration::from_millis(200));
    }
    let written = gateway_records(&db);
    let (count, max) = world.server.records_of(&gateway.id());
    assert_eq!((count, max), (written, written), "the server holds each of the gateway's {written} records once");
    let (size, root) = gateway_root(&db);
    assert_eq!(size as i64, written);
    verified(world, &gateway.id(), size, &root);
    (written, root)
}

#[test]
fn killed_at_random_the_audit_trail_loses_and_doubles_nothing() {
    let mut world = World::new();
    let mut gateway = world.enrol_gateway("soak");
    // The synthetic sessions are authorised like real ones: alice's grant for a target on the
    // soak gateway, and the certificate for it.
    let sshd = Sshd::start();
    world.add_target_with("soak", sshd.port, &sshd.user_key, &sshd.host_key_pub, &["--gateway", "soak"]).ok();
    world.grant("soak", "60m");
    // A certificate names the gateway's address: it runs once to report one, then the soak
    // writer takes over its record log.
    gateway.start();
    let certificate = alice_certificate(&world, "soak");
    gateway.kill();
    let soak = |sessions: u64, events: u64| gateway.soak(sessions, events, &certificate, "soak");
    let mut rng = Rng(seed());
    let (mut writer_kills, mut server_kills) = (0, 0);
    let backup = world.root.path().join("server-backup");
    let mut backed_up_at = None;
    let started = Instant::now();
    let mut writer = soak(SESSIONS, EVENTS);
    // The server goes away right after 700 records; uploads fail for a while, then resume.
    while server_records(&world.server, &gateway.id()).0 < 700 {
        assert!(started.elapsed() < Duration::from_secs(60), "nothing reached the server");
        std::thread::sleep(Duration::from_millis(10));
    }
    world.server.stop();
    let dropped_at = server_records(&world.server, &gateway.id()).0;
    std::thread::sleep(Duration::from_millis(1500));
    world.server.start(false);
    server_kills += 1;
    loop {
        std::thread::sleep(Duration::from_millis(100 + rng.below(500)));
        if finished(&mut writer) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(400), "the soak never finished");
        let (held, _) = server_records(&world.server, &gateway.id());
        if backed_up_at.is_none() && held >= BACKUP_AT {
            // A backup of the server, taken while it is stopped; restored at the end.
            world.server.stop();
            let copied =
                std::process::Command::new("cp").arg("-a").arg(&world.server.data).arg(&backup).output().unwrap();
            assert!(copied.status.success(), "backup failed: {}", String::from_utf8_lossy(&copied.stderr));
            backed_up_at = Some(held);
            world.server.start(false);
            continue;
        }
        match rng.below(10) {
            0..=7 if writer_kills < 40 => {
                kill(&mut writer);
                writer_kills += 1;
                writer = soak(SESSIONS, EVENTS);
            }
            8 if server_kills < 8 => {
                world.server.stop();
                server_kills += 1;
                world.server.start(false);
            }
            _ => {}
        }
    }
    let (written, _) = nothing_lost_or_doubled(&world, &gateway);
    assert!(backed_up_at.is_some(), "the soak finished before the server held {BACKUP_AT} records");
    assert!(writer_kills >= 5, "only {writer_kills} kills before the soak finished");
    let sessions = world.bob.run(&["audit", "list"]).ok().stdout;
    let soaked: Vec<&str> = sessions.lines().filter(|l| l.contains(" soak ")).collect();
    assert_eq!(soaked.len() as u64, SESSIONS, "{sessions}");
    // A session nobody cut short holds its 4,096 events, in order, once each.
    let whole = soaked.iter().find(|l| l.contains(" exit ")).expect("at least one session ran to its end");
    let cast = world.root.path().join("whole.cast");
    world.bob.run(&["audit", "export", whole.split_whitespace().next().unwrap(), "--out", cast.to_str().unwrap()]).ok();
    let events: Vec<String> = std::fs::read_to_string(&cast)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[2].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events.len() as u64, EVENTS);
    assert!(events.iter().enumerate().all(|(i, e)| e.contains(&format!("-e{i}\r"))), "events out of order");
    let cut_short = soaked.iter().filter(|l| l.contains("gateway stopped")).count();
    eprintln!(
        "soak: {written} records in {SESSIONS} sessions ({cut_short} cut short by kills); writer killed {writer_kills} \
         times, server killed {server_kills} times (dropped after {dropped_at} records); lost 0, doubled 0; {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // The server restored from the backup: the gateway re-sends what it lost, and an alarm says so.
    world.server.stop();
    std::fs::remove_dir_all(&world.server.data).unwrap();
    std::fs::rename(&backup, &world.server.data).unwrap();
    world.server.start(false);
    let (before, _) = server_records(&world.server, &gateway.id());
    assert!(before < written, "the backup holds {before} of {written}");
    let mut writer = soak(SESSIONS, EVENTS);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !finished(&mut writer) {
        assert!(Instant::now() < deadline, "the gateway never caught the restored server up");
        std::thread::sleep(Duration::from_millis(200));
    }
    nothing_lost_or_doubled(&world, &gateway);
    let alarms = world.bob.run(&["audit", "alarms"]).ok().stdout;
    assert!(alarms.contains("audit_server_behind") && alarms.contains("soak"), "{alarms}");
    eprintln!("restored server: held {before} of {written} records; the gateway re-sent the rest");

    // A record waiting for upload is corrupted on the gateway's disk: it is reported as lost
    // and the records after it still reach the server, in order.
    world.server.stop();
    let mut writer = soak(SESSIONS + 1, 600);
    let deadline = Instant::now() + Duration::from_secs(60);
    while unsent_records(&gateway.database()) < 400 {
        assert!(Instant::now() < deadline, "the gateway wrote nothing while the server was away");
        std::thread::sleep(Duration::from_millis(100));
    }
    kill(&mut writer);
    let corrupted: i64 = with_db(&gateway.database(), async |conn| {
        let seq: i64 = sqlx::query_scalar("SELECT MIN(seq) + 100 FROM records WHERE uploaded_at IS NULL")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        sqlx::query("UPDATE records SET payload = randomblob(length(payload)) WHERE seq = ?")
            .bind(seq)
            .execute(&mut *conn)
            .await
            .unwrap();
        seq
    });
    world.server.start(false);
    let mut writer = soak(SESSIONS + 1, 600);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !finished(&mut writer) {
        assert!(Instant::now() < deadline, "the records after the corrupt one never synced");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (written, _) = nothing_lost_or_doubled(&world, &gateway);
    assert!(written > corrupted);
    let alarms = world.bob.run(&["audit", "alarms"]).ok().stdout;
    let lost = alarms.lines().find(|l| l.contains("audit_record_lost")).unwrap_or_else(|| panic!("{alarms}"));
    assert!(lost.contains(&format!(" {corrupted} ")), "{lost}");
    let out = world.bob.run(&["audit", "verify"]).ok().stdout;
    let line = out.lines().find(|l| l.contains(&gateway.id())).unwrap();
    assert_eq!(line.split_whitespace().nth(3), Some("1"), "one record lost: {line}");
}

/// The certificate file `ssh-config` writes for alice's grant to `target`.
pub(crate) fn alice_certificate(world: &World, target: &str) -> std::path::PathBuf {
    let config = world.root.path().join("soak-ssh-config");
    world.alice.run(&["ssh-config", "--out", config.to_str().unwrap()]).ok();
    let text = std::fs::read_to_string(&config).unwrap();
    let section =
        text.split("Host ").find(|s| s.contains(&format!("User {target}\n"))).unwrap_or_else(|| panic!("{text}"));
    let file = section.lines().find_map(|l| l.trim().strip_prefix("CertificateFile ")).unwrap();
    std::path::PathBuf::from(file.trim().trim_matches('"'))
}
