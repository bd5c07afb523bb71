//! Synthetic sessions for fault tests (feature `soak`, never in release builds): a gateway
//! writes `sessions` sessions of `events` terminal events each through its real record log and
//! uploads them through its real sync, so a test can kill it (and the server) at random and
//! then check that every record it committed reached the server exactly once.
//!
//! Restartable: a run counts the sessions its log already started and goes on with the next
//! one (a session the last run was writing was ended by [`crate::RecordLog::open`], as a real
//! gateway's sessions end when it dies). Events are written in batches of random size.
//!
//! Its sessions are real ones as far as the server is concerned: each run first asks the
//! server to authorise a session with a user's certificate (as a gateway does for a
//! connection), and its session-start records name what the server authorised — the server
//! refuses any other.

use std::time::Duration;

use portcullis_proto::{
    AuditPayload, AuthorizedSession, SessionAuthorizationRequest, SessionChunk, SessionEnd, SessionStart,
};

use crate::Gateway;

pub struct Plan {
    pub sessions: u64,
    pub events: u64,
    /// A user's Portcullis certificate (OpenSSH line) for a target on this gateway.
    pub certificate: String,
    /// The target's name (the SSH user name a client would give).
    pub target: String,
    /// Where the authorisation is kept between runs: a restarted writer goes on under it even
    /// while the server is away (as a running session outlives an outage).
    pub authorization_file: std::path::PathBuf,
}

/// The id of synthetic session `n` (stable, so tests can find it).
pub fn session_id(n: u64) -> String {
    uuid::Uuid::from_u128(0x50a1_0000_0000_4000_8000_0000_0000_0000 | n as u128).to_string()
}

fn start(n: u64, authorized: &AuthorizedSession) -> AuditPayload {
    AuditPayload::SessionStart(SessionStart {
        session_id: session_id(n),
        user: authorized.user.clone(),
        device_id: authorized.device_id.clone(),
        target: authorized.target.clone(),
        login: authorized.login.clone(),
        grant_id: authorized.grant_id.clone(),
        started_at: crate::now_f64(),
        width: 80,
        height: 24,
        term: "xterm".into(),
        command: None,
        channel: "shell".into(),
        gateway: "soak".into(),
        client_addr: String::new(),
        target_transport_fallback: None,
    })
}

/// A small xorshift generator: batch sizes need no cryptographic randomness.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Writes the plan's remaining sessions and waits until the server acknowledged every record.
pub async fn run(gateway: Gateway, plan: Plan) -> Result<(), String> {
    let log = gateway.inner.log.clone();
    let sync = tokio::spawn(crate::log::sync_forever(
        log.clone(),
        gateway.inner.control.clone(),
        String::new(),
        gateway.host_key_openssh(),
    ));
    let mut rng = Rng(u64::from(std::process::id()) << 20 | 0x9e37_79b9);
    // Authorised as a connection would be (retried while the server is away); the credential
    // that comes with it is dropped unused.
    let ask = SessionAuthorizationRequest {
        certificate: plan.certificate.clone(),
        ssh_user: plan.target.clone(),
        client_addr: String::new(),
    };
    let kept = std::fs::read(&plan.authorization_file).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let authorized: AuthorizedSession = match kept {
        Some(authorized) => authorized,
        None => loop {
            match gateway.inner.control.authorize(&ask).await {
                Ok((authorized, credential)) => {
                    drop(credential);
                    let json = serde_json::to_vec(&authorized).map_err(|e| e.to_string())?;
                    std::fs::write(&plan.authorization_file, json).map_err(|e| e.to_string())?;
                    break authorized;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "soak authorisation failed; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        },
    };
    let begun = log.started_sessions().await?;
    for n in begun..plan.sessions {
        log.append(&start(n, &authorized)).await?;
        let mut written = 0;
        while written < plan.events {
            let batch = (1 + rng.below(48)).min(plan.events - written);
            let chunks: Vec<AuditPayload> = (written..written + batch)
                .map(|e| {
                    AuditPayload::SessionChunk(SessionChunk {
                        session_id: session_id(n),
                        events: vec![(e as f64 / 1000.0, "o".into(), format!("s{n}-e{e}\r\n"))],
                    })
                })
                .collect();
            log.append_all(&chunks).await?;
            written += batch;
            if rng.below(4) == 0 {
                tokio::time::sleep(Duration::from_millis(rng.below(3))).await;
            }
        }
        log.append(&AuditPayload::SessionEnd(SessionEnd {
            session_id: session_id(n),
            ended_at: crate::now_f64(),
            exit_status: Some(0),
            bytes_in: 0,
            bytes_out: 0,
            reason: "exit".into(),
            streams: Vec::new(),
            session_records: Some(plan.events + 1),
        }))
        .await?;
    }
    // Finish in the foreground: announce the log (a restored server asks for what it lost)
    // and upload until nothing is pending.
    sync.abort();
    loop {
        match log.sync_once(gateway.inner.control.as_ref(), true).await {
            Ok(report) if report.pending == 0 => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "soak upload failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
