use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::open_device;

fn format_time(unix: f64) -> String {
    crate::access::format_time(unix as i64)
}

pub async fn sync(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let report = device.sync().await?;
    println!(
        "Synced: {} records on the server{}, {} pending.",
        report.uploaded,
        if report.duplicates > 0 { format!(" ({} were already there)", report.duplicates) } else { String::new() },
        report.pending
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn local_sessions(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let sessions = device.local_sessions().await?;
    if sessions.is_empty() {
        println!("No sessions recorded on this device.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<36}  {:<16} {:<20} {:<6} {:<9} COMMAND", "SESSION", "TARGET", "STARTED", "EXIT", "SYNCED");
    for s in sessions {
        println!(
            "{:<36}  {:<16} {:<20} {:<6} {:<9} {}",
            s.session_id,
            s.target,
            format_time(s.started_at),
            s.exit_status.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            if s.synced { "yes" } else { "pending" },
            s.command.unwrap_or_else(|| "(shell)".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let sessions = device.api().sessions().await?;
    if sessions.is_empty() {
        println!("No recorded sessions.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36}  {:<12} {:<16} {:<20} {:<9} {:<6} {:<14} COMMAND",
        "SESSION", "USER", "TARGET", "STARTED", "DURATION", "EXIT", "END"
    );
    for s in sessions {
        let duration = s.ended_at.map(|e| format!("{:.0}s", (e - s.started_at).max(0.0))).unwrap_or_else(|| "-".into());
        println!(
            "{:<36}  {:<12} {:<16} {:<20} {:<9} {:<6} {:<14} {}",
            s.session_id,
            s.user,
            s.target,
            format_time(s.started_at),
            duration,
            s.exit_status.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            s.end_reason.unwrap_or_else(|| "(open)".into()),
            s.command.unwrap_or_else(|| "(shell)".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn export(home: &Path, session_id: &str, out: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let cast = device.api().export_cast(session_id).await?;
    std::fs::write(out, &cast).with_context(|| format!("writing {}", out.display()))?;
    println!("Wrote {} ({} events) to {}", session_id, cast.lines().count().saturating_sub(1), out.display());
    Ok(ExitCode::SUCCESS)
}

pub async fn events(home: &Path, kind: Option<&str>) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let events = device.api().events().await?;
    println!("{:<20} {:<12} {:<22} DETAIL", "AT", "ACTOR", "EVENT");
    for e in events.into_iter().filter(|e| kind.is_none_or(|k| k == e.kind)) {
        println!(
            "{:<20} {:<12} {:<22} {}",
            crate::access::format_time(e.at),
            e.actor.unwrap_or_else(|| "-".into()),
            e.kind,
            e.detail
        );
    }
    Ok(ExitCode::SUCCESS)
}
