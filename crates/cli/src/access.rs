use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use portcullis_client::LiveUpdate;
use portcullis_client::security_key::{self, Authenticator};
use portcullis_proto::{
    AccessRequestView, CreateAccessRequest, Decision, LiveEvent, RequestStatus, RevokeRequest, printable,
};

use crate::open_device;

pub fn format_time(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub async fn request(
    home: &Path,
    target: &str,
    duration: &str,
    reason: &str,
    access: Option<portcullis_proto::Access>,
) -> anyhow::Result<ExitCode> {
    let duration = humantime::parse_duration(duration)
        .with_context(|| format!("--duration {duration:?} is not a duration like 30m or 2h"))?;
    let device = open_device(home).await?;
    let created = device
        .api()
        .create_request(&CreateAccessRequest {
            target: target.into(),
            duration_secs: duration.as_secs(),
            reason: reason.into(),
            access,
        })
        .await?;
    let approvers = approvals_needed(&created);
    let what = match created.access {
        portcullis_proto::Access::Ssh => "access to",
        portcullis_proto::Access::Checkout => "check-out of",
        portcullis_proto::Access::Use => "use of",
    };
    println!(
        "Requested {} of {what} {} (permitted by {}); waiting for {approvers} (until {}).",
        humantime::format_duration(duration),
        created.target,
        created.permitted_by.join(", "),
        format_time(created.expires_at)
    );
    println!("{}", created.id);
    Ok(ExitCode::SUCCESS)
}

/// "2 approvals from members of dbas", "an approver".
fn approvals_needed(r: &AccessRequestView) -> String {
    let from = if r.approver_groups.is_empty() {
        String::new()
    } else {
        format!(" from members of {}", r.approver_groups.join(" and "))
    };
    match r.approvals_needed {
        1 if from.is_empty() => "an approver".to_string(),
        1 => format!("1 approval{from}"),
        n => format!("{n} approvals{from}"),
    }
}

pub async fn list(home: &Path, pending: bool) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let requests = device.api().requests(pending).await?;
    if requests.is_empty() {
        println!("No {}requests.", if pending { "pending " } else { "" });
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36}  {:<9} {:<9} {:<12} {:<16} {:<9} {:<20} REASON",
        "ID", "STATUS", "APPROVALS", "REQUESTER", "TARGET", "DURATION", "CREATED"
    );
    for r in requests {
        let lapsed = r.status == RequestStatus::Approved
            && r.grant_not_after.is_some_and(|until| until <= portcullis_client::now_secs());
        let status = if lapsed { "lapsed" } else { r.status.as_str() };
        println!(
            "{:<36}  {:<9} {:<9} {:<12} {:<16} {:<9} {:<20} {}",
            r.id,
            status,
            format!("{} of {}", r.approvals, r.approvals_needed),
            r.requester,
            r.target,
            humantime::format_duration(std::time::Duration::from_secs(r.duration_secs)).to_string(),
            format_time(r.created_at),
            printable(&r.reason)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn review(
    home: &Path,
    id: &str,
    approve: bool,
    reason: Option<String>,
    authenticator: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let authenticator = authenticator.map(Authenticator::parse).transpose()?;
    let device = open_device(home).await?;
    let decision = if approve { Decision::Approve } else { Decision::Deny };
    let r = security_key::review(
        device.api(),
        id,
        decision,
        reason,
        authenticator.as_ref(),
        std::sync::Arc::new(crate::passphrase::KeyPrompt),
    )
    .await?;
    match (approve, r.grant_not_after) {
        (true, Some(until)) => {
            println!("Approved {}'s access to {} until {}.", r.requester, r.target, format_time(until))
        }
        (true, None) => println!(
            "Approval recorded: {} of {} for {}'s request for {}; it waits for {} more.",
            r.approvals,
            r.approvals_needed,
            r.requester,
            r.target,
            r.approvals_needed.saturating_sub(r.approvals)
        ),
        _ => println!("Denied {}'s request for {}.", r.requester, r.target),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke(home: &Path, id: &str, reason: Option<String>) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let outcome = device.api().revoke(&RevokeRequest { id: id.into(), reason }).await?;
    let r = &outcome.request;
    if r.grant_id.is_some() {
        println!(
            "Revoked {}'s access to {} (request {}); {} running session(s) are being closed.",
            r.requester, r.target, r.id, outcome.sessions_ended
        );
    } else {
        println!("Withdrew {}'s pending request {} for {}.", r.requester, r.id, r.target);
    }
    Ok(ExitCode::SUCCESS)
}

/// `request show ID`: the story of a request, one line per step.
pub async fn show(home: &Path, id: &str) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let d = device.api().request_detail(id).await?;
    let r = &d.request;
    println!("Request {}: {} for {} ({})", r.id, r.requester, r.target, r.status.as_str());
    println!("  approvals: {} of {}", r.approvals, r.approvals_needed);
    for step in &d.timeline {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(step.at.max(0.0));
        let actor = step.actor.as_deref().map(|a| format!("{}: ", printable(a))).unwrap_or_default();
        let session = step.session_id.as_deref().map(|s| format!(" [session {s}]")).unwrap_or_default();
        println!(
            "{}  {:<15} {actor}{}{session}",
            humantime::format_rfc3339_seconds(t),
            step.kind,
            printable(&step.text)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn watch(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let mut updates = device.api().watch();
    while let Some(update) = updates.recv().await {
        match update {
            LiveUpdate::Connected => println!("connected; waiting for requests and decisions (Ctrl-C to stop)"),
            LiveUpdate::Disconnected(why) => eprintln!("portcullis: live connection lost ({why}); retrying"),
            LiveUpdate::Event(LiveEvent::RequestCreated { request: r }) => println!(
                "new request {} from {} for {} ({}, needs {}): {}",
                r.id,
                r.requester,
                r.target,
                humantime::format_duration(std::time::Duration::from_secs(r.duration_secs)),
                approvals_needed(&r),
                printable(&r.reason)
            ),
            LiveUpdate::Event(LiveEvent::RequestUpdated { request: r }) => println!(
                "request {} from {} for {} is {} ({} of {} approvals){}",
                r.id,
                r.requester,
                r.target,
                r.status.as_str(),
                r.approvals,
                r.approvals_needed,
                r.revoke_reason.as_deref().map(|x| format!(": {}", printable(x))).unwrap_or_default()
            ),
            LiveUpdate::Event(LiveEvent::RequestDecided { request: r }) => println!(
                "request {} from {} for {} was {} by {}{}",
                r.id,
                r.requester,
                r.target,
                r.status.as_str(),
                r.decided_by.as_deref().unwrap_or("?"),
                r.grant_not_after.map(|t| format!(" until {}", format_time(t))).unwrap_or_default()
            ),
            LiveUpdate::Event(LiveEvent::Resync) => println!("(missed events; list requests again)"),
            LiveUpdate::Event(LiveEvent::SecurityKeysChanged { change, key, by }) => {
                println!("your security key {} was {change} by {}", printable(&key), printable(&by))
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
