//! Rotating a bound password on its target: the control server decides that a secret is to be
//! rotated (its check-out ended) and generates the new password; the gateway — the only place a
//! target credential is used — carries it out and reports:
//!
//! 1. log in with the current password (host key pinned, as for sessions);
//! 2. run `passwd` in a PTY (echo off), answering its prompts: current, new, new again;
//! 3. log in afresh with the new password — only that proves the change;
//! 4. report: the server commits the new version only after step 3 passed.
//!
//! A failure at 1 or 2 leaves the target with its current password; at 3 the target's state is
//! unknown, and the report says so. Carrying out an order twice is harmless: when the current
//! password no longer logs in but the new one does, an earlier attempt set it (its report was
//! lost) and this one reports success. Nothing here logs or keeps either password; what the target
//! printed is reported with both passwords scrubbed.

use std::sync::Arc;
use std::time::Duration;

use portcullis_crypto::{SecretBytes, SecretString};
use portcullis_proto::{RotationOrder, RotationReport, RotationStage};
use russh::{ChannelMsg, Disconnect};

use crate::control::ControlPlane;
use crate::target::{Credential, TargetAddress, TargetError, connect};

/// How often the gateway asks for rotations to carry out (at once when the embedded server
/// signals one).
pub const POLL_EVERY: Duration = Duration::from_secs(5);
/// The longest a password change may take on the target.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The command run on the target: `passwd` for the login itself, prompts in English.
const CHANGE_COMMAND: &str = "LC_ALL=C LANG=C passwd";

/// Carries out rotations forever.
pub async fn rotate_forever(control: Arc<dyn ControlPlane>) {
    let wake = control.rotation_signal();
    loop {
        match control.rotations().await {
            Ok(orders) => {
                for (order, current, candidate) in orders {
                    let report = rotate(&order, current, candidate).await;
                    match &report.failed {
                        None => tracing::info!(secret = %order.secret, target = %order.target, "password rotated"),
                        Some(stage) => tracing::warn!(secret = %order.secret, target = %order.target,
                            stage = stage.as_str(), detail = %report.detail, "rotation failed"),
                    }
                    if let Err(e) = control.rotation_done(&order.id, &report).await {
                        tracing::warn!(rotation = %order.id, error = %e, "cannot report a rotation; it will be retried");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot fetch rotations"),
        }
        crate::control::pause(POLL_EVERY, wake.as_deref()).await;
    }
}

fn text(bytes: &SecretBytes) -> Result<SecretString, String> {
    std::str::from_utf8(bytes.expose_secret())
        .map(|s| SecretString::new(s.to_string()))
        .map_err(|_| "the password is not UTF-8".to_string())
}

fn failed(stage: RotationStage, detail: impl Into<String>) -> RotationReport {
    RotationReport { failed: Some(stage), detail: detail.into() }
}

/// One rotation on the target; never panics, always a report.
pub async fn rotate(order: &RotationOrder, current: SecretBytes, candidate: SecretBytes) -> RotationReport {
    let (current, candidate) = match (text(&current), text(&candidate)) {
        (Ok(c), Ok(n)) => (c, n),
        (Err(e), _) | (_, Err(e)) => return failed(RotationStage::Login, e),
    };
    let target = TargetAddress {
        name: order.target.clone(),
        host: order.host.clone(),
        port: order.port,
        login: order.login.clone(),
        host_key: order.host_key.clone(),
    };
    let scrub = |s: String| {
        s.replace(current.expose_secret().as_str(), "[current password]")
            .replace(candidate.expose_secret().as_str(), "[new password]")
    };
    let connected = match connect(&target, Credential::Password(current.clone()), Default::default()).await {
        Ok(c) => c,
        // Set by an earlier attempt whose report was lost: the new password already logs in.
        Err(e @ TargetError::AuthenticationFailed { .. }) => {
            return match connect(&target, Credential::Password(candidate.clone()), Default::default()).await {
                Ok(fresh) => {
                    let _ = fresh.upstream.disconnect(Disconnect::ByApplication, "", "en").await;
                    RotationReport { failed: None, detail: String::new() }
                }
                Err(_) => failed(RotationStage::Login, e.to_string()),
            };
        }
        Err(e) => return failed(RotationStage::Login, e.to_string()),
    };
    let changed = tokio::time::timeout(CHANGE_TIMEOUT, change(&connected.upstream, &current, &candidate)).await;
    let _ = connected.upstream.disconnect(Disconnect::ByApplication, "", "en").await;
    match changed {
        Err(_) => return failed(RotationStage::Change, "passwd did not finish within 30 s"),
        Ok(Err(detail)) => return failed(RotationStage::Change, scrub(detail)),
        Ok(Ok(())) => {}
    }
    match connect(&target, Credential::Password(candidate.clone()), Default::default()).await {
        Ok(fresh) => {
            let _ = fresh.upstream.disconnect(Disconnect::ByApplication, "", "en").await;
            RotationReport { failed: None, detail: String::new() }
        }
        Err(e @ TargetError::AuthenticationFailed { .. }) => {
            failed(RotationStage::Verify, format!("passwd reported success but the new password does not log in: {e}"))
        }
        Err(e) => failed(RotationStage::Verify, format!("cannot log in again to check the new password: {e}")),
    }
}

/// What `passwd` asks for, read from the end of what it printed since the last answer.
#[derive(Debug, PartialEq, Eq)]
enum Prompt {
    Current,
    New,
    Again,
}

fn prompt(output: &str) -> Option<Prompt> {
    let line = output.rsplit(['\n', '\r']).find(|l| !l.trim().is_empty())?.trim().to_lowercase();
    if !line.ends_with(':') || !line.contains("password") {
        return None;
    }
    Some(if line.contains("retype") || line.contains("again") || line.contains("repeat") {
        Prompt::Again
    } else if line.contains("new") {
        Prompt::New
    } else {
        Prompt::Current
    })
}

/// Runs `passwd` in a PTY on `upstream` and answers its prompts. Err: what it printed.
async fn change(
    upstream: &crate::target::Upstream,
    current: &SecretString,
    candidate: &SecretString,
) -> Result<(), String> {
    let mut channel = upstream.channel_open_session().await.map_err(|e| format!("cannot open a channel: {e}"))?;
    channel.request_pty(true, "dumb", 200, 24, 0, 0, &[]).await.map_err(|e| format!("no PTY: {e}"))?;
    channel.exec(true, CHANGE_COMMAND).await.map_err(|e| format!("cannot run passwd: {e}"))?;
    let mut printed = String::new();
    let mut since_answer = String::new();
    let (mut sent_current, mut sent_new) = (0, 0);
    let mut status = None;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => {
                let chunk = String::from_utf8_lossy(&data);
                printed.push_str(&chunk);
                since_answer.push_str(&chunk);
                let answer = match prompt(&since_answer) {
                    None => continue,
                    Some(Prompt::Current) if sent_current == 0 => {
                        sent_current += 1;
                        current
                    }
                    Some(Prompt::New | Prompt::Again) if sent_new < 2 => {
                        sent_new += 1;
                        candidate
                    }
                    // Asked again: the target rejected an answer.
                    Some(_) => {
                        let _ = channel.close().await;
                        return Err(last_lines(&printed));
                    }
                };
                since_answer.clear();
                let line = format!("{}\n", answer.expose_secret());
                channel.data(line.as_bytes()).await.map_err(|e| format!("cannot answer passwd: {e}"))?;
            }
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    match status {
        Some(0) if sent_new == 2 => Ok(()),
        Some(0) => Err(format!("passwd exited without asking for a new password: {}", last_lines(&printed))),
        Some(code) => Err(format!("passwd exited with status {code}: {}", last_lines(&printed))),
        None => Err(format!("passwd ended without an exit status: {}", last_lines(&printed))),
    }
}

/// The last few lines the target printed, as one line.
fn last_lines(printed: &str) -> String {
    let lines: Vec<&str> = printed.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    tail.chars().filter(|c| !c.is_control()).take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_prompts_are_recognised() {
        let cases: &[(&str, Option<Prompt>)] = &[
            ("Changing password for alice.\r\nCurrent password: ", Some(Prompt::Current)),
            ("(current) UNIX password: ", Some(Prompt::Current)),
            ("\r\nNew password: ", Some(Prompt::New)),
            ("Enter new UNIX password: ", Some(Prompt::New)),
            ("\r\nRetype new password: ", Some(Prompt::Again)),
            ("Retype new UNIX password:", Some(Prompt::Again)),
            ("Re-enter new password again: ", Some(Prompt::Again)),
            ("Changing password for alice.\r\n", None),
            ("passwd: password updated successfully\r\n", None),
            ("BAD PASSWORD: it is too short\r\n", None),
            ("", None),
        ];
        for (output, expected) in cases {
            assert_eq!(&prompt(output), expected, "{output:?}");
        }
    }

    #[test]
    fn the_report_keeps_the_last_lines_on_one_line() {
        let printed = "Changing password for a.\r\nCurrent password: \r\npasswd: Authentication token manipulation error\r\npasswd: password unchanged\r\n";
        assert_eq!(
            last_lines(printed),
            "Current password: / passwd: Authentication token manipulation error / passwd: password unchanged"
        );
    }
}
