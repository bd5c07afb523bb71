//! A team's server: two `server run` replicas on one PostgreSQL database, a gateway process
//! enrolled with both, a real sshd target. Requests reach replica A, approvals replica B; a
//! replica dies under a running session and in the middle of upload batches.

use std::time::{Duration, Instant};

use crate::harness::*;

/// Request through A, approval through B, the requester's live stream on A sees the grant; a
/// session authorised through A runs on when A is killed, its recording reaches B, and the
/// audit trail verifies there.
#[test]
fn two_replicas_serve_one_team_and_a_session_outlives_the_replica_that_authorised_it() {
    let sshd = Sshd::start();
    let mut world = World::team("warn", false);
    let mut gateway = world.enrol_gateway("near");
    gateway.start();
    world.add_target_with("db", sshd.port, &sshd.user_key, &sshd.host_key_pub, &["--gateway", "near"]).ok();

    let mut events = LineReader::spawn(world.alice.spawn(&["watch"]));
    events.expect("connected", Duration::from_secs(10));
    let id = world.alice.run(&["request", "db", "--duration", "30m", "--reason", "replicas"]).ok().last_line();
    events.expect(&format!("new request {id}"), Duration::from_secs(10));
    let asked = Instant::now();
    world.bob.run(&["approve", &id]).ok();
    let decided = events.expect(&format!("request {id} from alice for db was approved"), Duration::from_secs(10));
    eprintln!("approval at replica B to the requester's live event at replica A: {:?}", asked.elapsed());
    assert!(decided.contains("by bob"), "{decided}");
    drop(events);

    // The session: authorised through A (the gateway's first replica), then A dies under it.
    let mut session =
        LineReader::spawn(world.alice.spawn(&["ssh", "db", "--", "echo started; sleep 4; echo after-$((6*7))"]));
    session.expect("started", Duration::from_secs(20));
    world.server.stop();
    let killed = Instant::now();
    session.expect("after-42", Duration::from_secs(20));
    let status = session.wait();
    assert!(status.success(), "the session ended badly after replica A died: {status:?}");
    assert!(killed.elapsed() >= Duration::from_secs(2), "the session did not outlive the replica by much");

    // Its recording went up to B, whole — every byte alice saw — and B verifies every log (bob
    // knows B first).
    let shown = world.ended_session_showing("after-$((6*7))");
    let seen = "started\nafter-42\n".len();
    let stdout = shown.lines().find(|l| l.trim_start().starts_with("stdout")).unwrap_or_default();
    assert!(stdout.contains(&format!("{seen} bytes ({seen} recorded)")), "{shown}");
    let verified = world.bob.run(&["audit", "verify"]).ok().stdout;
    assert!(verified.contains("no problems"), "{verified}");

    // A new request and approval while A is down: served by B alone.
    let id = world.alice.run(&["request", "db", "--duration", "5m", "--reason", "after a"]).ok().last_line();
    world.bob.run(&["approve", &id]).ok();
    let after = world.alice.run(&["ssh", "db", "--", "echo second-$((2*21))"]).ok();
    assert!(after.stdout.contains("second-42"), "{}", after.stdout);
}

/// The gateway uploads through batches of a soak while the test kills one replica and then the
/// other, at random moments (one always stays up), and brings it back: every record the gateway
/// committed is on the server once, and the log verifies.
#[cfg(feature = "soak")]
#[test]
fn replicas_killed_in_the_middle_of_upload_batches_lose_and_double_nothing() {
    use crate::faults::{Rng, alice_certificate, finished, kill, nothing_lost_or_doubled, seed};

    const SESSIONS: u64 = 16;
    const EVENTS: u64 = 4096;
    let sshd = Sshd::start();
    let mut world = World::team("warn", false);
    let mut gateway = world.enrol_gateway("soak");
    gateway.start();
    world.add_target_with("soak", sshd.port, &sshd.user_key, &sshd.host_key_pub, &["--gateway", "soak"]).ok();
    world.grant("soak", "60m");
    let certificate = alice_certificate(&world, "soak");
    gateway.kill();

    let mut rng = Rng(seed());
    let started = Instant::now();
    let mut kills = [0u32; 2];
    let mut cut = 0;
    // Rounds of soak until a kill has landed in the middle of a batch (most find the gateway
    // between uploads: the next simply goes to the other replica). One round nearly always
    // does; a round's later sessions add to the same log.
    for round in 1..=4 {
        let mut writer = gateway.soak(SESSIONS * round, EVENTS, &certificate, "soak");
        let mut down: Option<usize> = None;
        while !finished(&mut writer) {
            assert!(started.elapsed() < Duration::from_secs(400), "the soak never finished");
            std::thread::sleep(Duration::from_millis(100 + rng.below(500)));
            let replicas = [&mut world.server, world.replica.as_mut().unwrap()];
            match down.take() {
                Some(which) => replicas.into_iter().nth(which).unwrap().start(false),
                None => {
                    // In turn, so both replicas die mid-upload; when is random.
                    let which = ((kills[0] + kills[1]) % 2) as usize;
                    replicas.into_iter().nth(which).unwrap().stop();
                    kills[which] += 1;
                    down = Some(which);
                }
            }
        }
        if let Some(which) = down {
            [&mut world.server, world.replica.as_mut().unwrap()].into_iter().nth(which).unwrap().start(false);
        }
        kill(&mut writer);
        // A kill that cut a batch off after it was sent leaves its answer lost: the writer says so.
        cut = String::from_utf8_lossy(&gateway.log()).matches("soak upload failed; retrying").count();
        if cut > 0 {
            break;
        }
    }
    assert!(kills[0] >= 2 && kills[1] >= 2, "kills per replica: {kills:?}");
    assert!(cut >= 1, "no kill landed in the middle of an upload batch in four rounds");
    let (written, _) = nothing_lost_or_doubled(&world, &gateway);
    eprintln!(
        "replica soak: {written} records, replica A killed {} times, B {} times, {cut} batches cut off in flight; lost \
         0, doubled 0; {:.0} s",
        kills[0],
        kills[1],
        started.elapsed().as_secs_f64()
    );
}
