use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use portcullis_proto::printable;

use crate::open_device;

fn format_time(unix: f64) -> String {
    crate::access::format_time(unix as i64)
}

/// Every session (auditors), or with `mine` the caller's own.
pub async fn list(home: &Path, mine: bool) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let sessions = if mine { device.api().my_sessions().await? } else { device.api().sessions().await? };
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
            printable(&s.command.unwrap_or_else(|| if s.kind.starts_with("subsystem:") {
                format!("({})", s.kind)
            } else {
                "(shell)".into()
            }))
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn show(home: &Path, session_id: &str) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let d = device.api().session_detail(session_id).await?;
    let s = &d.summary;
    let duration =
        s.ended_at.map(|e| format!("{:.1}s", (e - s.started_at).max(0.0))).unwrap_or_else(|| "(open)".into());
    println!("session:    {}", s.session_id);
    println!("user:       {} from {}", s.user, if d.client_addr.is_empty() { "-" } else { &d.client_addr });
    println!("target:     {} as {}", s.target, s.login);
    println!("kind:       {}", s.kind);
    println!("recorded:   by gateway {}", s.recorded_by);
    println!("grant:      {}", s.grant_id);
    println!("started:    {}", format_time(s.started_at));
    println!("duration:   {duration}");
    println!(
        "ended:      {} (exit status {})",
        s.end_reason.as_deref().unwrap_or("(open)"),
        s.exit_status.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
    );
    println!("commands:");
    if d.commands.is_empty() {
        println!("  (none)");
    }
    for c in &d.commands {
        println!("  {}", printable(c));
    }
    if !d.streams.is_empty() {
        println!("streams:");
        for st in &d.streams {
            println!(
                "  {:<7} {:>12} bytes ({} recorded)  sha256 {}",
                st.stream, st.bytes, st.recorded_bytes, st.sha256
            );
        }
    }
    println!("file transfers:");
    if d.transfers.is_empty() {
        println!("  (none)");
    }
    for t in &d.transfers {
        println!(
            "  {:<8} {:<4} {:>12} bytes  sha256 {}{}  {}",
            t.direction,
            t.protocol,
            t.size,
            if t.sha256.is_empty() { "(not sequential)" } else { &t.sha256 },
            if t.complete { "" } else { "  INCOMPLETE" },
            printable(&t.path)
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
            printable(&e.detail.to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}
