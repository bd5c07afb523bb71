use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use portcullis_client::LiveUpdate;
use portcullis_proto::{CreateAccessRequest, Decision, LiveEvent, RequestStatus, ReviewRequest};

use crate::open_device;

pub fn format_time(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub async fn request(home: &Path, target: &str, duration: &str, reason: &str) -> anyhow::Result<ExitCode> {
    let duration = humantime::parse_duration(duration)
        .with_context(|| format!("--duration {duration:?} is not a duration like 30m or 2h"))?;
    let device = open_device(home).await?;
    let created = device
        .api()
        .create_request(&CreateAccessRequest {
            target: target.into(),
            duration_secs: duration.as_secs(),
            reason: reason.into(),
        })
        .await?;
    println!(
        "Requested {} of access to {}; waiting for an approver (until {}).",
        humantime::format_duration(duration),
        created.target,
        format_time(created.expires_at)
    );
    println!("{}", created.id);
    Ok(ExitCode::SUCCESS)
}

pub async fn list(home: &Path, pending: bool) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let requests = device.api().requests(pending).await?;
    if requests.is_empty() {
        println!("No {}requests.", if pending { "pending " } else { "" });
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36}  {:<9} {:<12} {:<16} {:<9} {:<20} REASON",
        "ID", "STATUS", "REQUESTER", "TARGET", "DURATION", "CREATED"
    );
    for r in requests {
        let lapsed = r.status == RequestStatus::Approved
            && r.grant_not_after.is_some_and(|until| until <= portcullis_client::now_secs());
        let status = if lapsed { "lapsed" } else { r.status.as_str() };
        println!(
            "{:<36}  {:<9} {:<12} {:<16} {:<9} {:<20} {}",
            r.id,
            status,
            r.requester,
            r.target,
            humantime::format_duration(std::time::Duration::from_secs(r.duration_secs)).to_string(),
            format_time(r.created_at),
            r.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn review(home: &Path, id: &str, approve: bool, reason: Option<String>) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let decision = if approve { Decision::Approve } else { Decision::Deny };
    let r = device.api().review(id, &ReviewRequest { decision, reason }).await?;
    match (approve, r.grant_not_after) {
        (true, Some(until)) => {
            println!("Approved {}'s access to {} until {}.", r.requester, r.target, format_time(until))
        }
        _ => println!("Denied {}'s request for {}.", r.requester, r.target),
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
                "new request {} from {} for {} ({}): {}",
                r.id,
                r.requester,
                r.target,
                humantime::format_duration(std::time::Duration::from_secs(r.duration_secs)),
                r.reason
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
        }
    }
    Ok(ExitCode::SUCCESS)
}
