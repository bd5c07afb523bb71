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
            printable(&s.session_id),
            printable(&s.user),
            printable(&s.target),
            format_time(s.started_at),
            duration,
            s.exit_status.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            printable(&s.end_reason.unwrap_or_else(|| "(open)".into())),
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
    // Everything below was supplied by a gateway: escaped, so it cannot rewrite the terminal.
    println!("session:    {}", printable(&s.session_id));
    println!(
        "user:       {} from {}",
        printable(&s.user),
        if d.client_addr.is_empty() { "-".into() } else { printable(&d.client_addr) }
    );
    println!("target:     {} as {}", printable(&s.target), printable(&s.login));
    println!("kind:       {}", printable(&s.kind));
    println!("recorded:   by gateway {}", printable(&s.recorded_by));
    println!("grant:      {}", printable(&s.grant_id));
    println!("started:    {}", format_time(s.started_at));
    println!("duration:   {duration}");
    println!(
        "ended:      {} (exit status {})",
        printable(s.end_reason.as_deref().unwrap_or("(open)")),
        s.exit_status.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
    );
    if let Some(fallback) = &d.target_transport_fallback {
        println!("transport:  to the target {}", printable(fallback));
    }
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
            let kept = if st.recorded_bytes == 0 && st.stream == "terminal_output" {
                "as text in the replay".to_string()
            } else {
                format!("{} recorded", st.recorded_bytes)
            };
            println!(
                "  {:<15} {:>12} bytes ({kept})  sha256 {}",
                printable(&st.stream),
                st.bytes,
                printable(&st.sha256)
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
            printable(&t.direction),
            printable(&t.protocol),
            t.size,
            if t.sha256.is_empty() { "(not sequential)".into() } else { printable(&t.sha256) },
            if t.complete { "" } else { "  INCOMPLETE" },
            printable(&t.path)
        );
    }
    if !d.operations.is_empty() {
        println!("file operations:");
        for op in &d.operations {
            println!("  {}", operation_line(op));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rename  /tmp/x -> /etc/cron.d/x  ok`, with flags, attributes and what the answer said.
fn operation_line(op: &portcullis_proto::FileOperation) -> String {
    let mut line = format!("{:<12} {}", printable(&op.op), printable(&op.path));
    if let Some(to) = &op.to {
        line.push_str(&format!(" -> {}", printable(to)));
    }
    if let Some(flags) = &op.flags {
        line.push_str(&format!("  [{}]", printable(flags)));
    }
    if let Some(a) = &op.attrs {
        let mut set = Vec::new();
        if let Some(mode) = a.mode {
            set.push(format!("mode {mode:o}"));
        }
        if let (Some(uid), Some(gid)) = (a.uid, a.gid) {
            set.push(format!("owner {uid}:{gid}"));
        }
        if let Some(size) = a.size {
            set.push(format!("size {size}"));
        }
        if let (Some(atime), Some(mtime)) = (a.atime, a.mtime) {
            set.push(format!("times {atime}/{mtime}"));
        }
        for name in &a.extended {
            set.push(format!("extended {}", printable(name)));
        }
        line.push_str(&format!("  ({})", set.join(", ")));
    }
    line.push_str(&format!("  {}", printable(&op.status)));
    if let Some(detail) = &op.detail {
        line.push_str(&format!(" = {}", printable(detail)));
    }
    line
}

pub async fn export(home: &Path, session_id: &str, out: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let cast = device.api().export_cast(session_id).await?;
    std::fs::write(out, &cast).with_context(|| format!("writing {}", out.display()))?;
    println!("Wrote {} ({} events) to {}", session_id, cast.lines().count().saturating_sub(1), out.display());
    Ok(ExitCode::SUCCESS)
}

/// A time as RFC 3339 or as a duration ago (`2h`, `3d`), in Unix seconds.
pub fn parse_when(text: &str) -> anyhow::Result<i64> {
    let unix =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(unix(t));
    }
    let ago = humantime::parse_duration(text)
        .map_err(|_| anyhow::anyhow!("{text:?} is neither a time (2026-11-26T09:00:00Z) nor a duration ago (2h)"))?;
    Ok(unix(std::time::SystemTime::now()) - ago.as_secs() as i64)
}

pub async fn events(home: &Path, query: &portcullis_proto::EventQuery) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let events = device.api().events(query).await?;
    println!("{:>7} {:<20} {:<12} {:<26} DETAIL", "ID", "AT", "ACTOR", "EVENT");
    for e in &events {
        println!(
            "{:>7} {:<20} {:<12} {:<26} {}",
            e.id,
            crate::access::format_time(e.at),
            printable(e.actor.as_deref().unwrap_or("-")),
            printable(&e.kind),
            printable(&e.detail.to_string())
        );
    }
    if let Some(last) = events.last()
        && events.len() as u32 >= query.limit.unwrap_or(100)
    {
        println!("(more: add --before {})", last.id);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn export_bundle(home: &Path, session_id: &str, out: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let bundle = device.api().session_bundle(session_id).await?;
    let bytes = serde_json::to_vec_pretty(&bundle)?;
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "Wrote session {} ({} records, proofs under {}'s checkpoint) to {}",
        session_id,
        bundle.records.len(),
        printable(&bundle.writer.name),
        out.display()
    );
    println!("Verify it anywhere with: portcullis audit verify --bundle {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Checks a bundle offline: no server, no enrolment.
pub fn verify_bundle(path: &Path, server_key: Option<&str>) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match portcullis_tlog::bundle::verify_bundle(&bytes, server_key) {
        Ok(r) => {
            println!("session:      {}", printable(&r.session_id));
            println!("recorded by:  {} ({})", printable(&r.writer_name), printable(&r.writer_id));
            println!("records:      {} of a log of {} (root {})", r.records, r.log_size, r.root);
            println!("writer key:   {}", r.writer_fingerprint);
            println!(
                "server key:   {}{}",
                r.server_fingerprint,
                if server_key.is_some() { " (as pinned)" } else { "" }
            );
            match &r.incomplete {
                None => println!(
                    "verified: every record is in the writer's signed, countersigned log; the session is complete"
                ),
                Some(why) => {
                    println!("verified: every record is in the writer's signed, countersigned log; NOT complete: {why}")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("bundle {} does not verify: {e}", path.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn verify(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let report = device.api().verify_audit().await?;
    Ok(print_report(&report))
}

/// Prints what was verified; the exit code says whether everything did.
pub fn print_report(report: &portcullis_proto::AuditVerifyReport) -> ExitCode {
    println!("{:<28} {:<38} {:>9} {:>6} {:>10}  ROOT", "WRITER", "ID", "RECORDS", "LOST", "CHECKPOINT");
    for w in &report.writers {
        println!(
            "{:<28} {:<38} {:>9} {:>6} {:>10}  {}",
            printable(&w.name),
            w.writer_id,
            w.records,
            w.lost,
            match (w.checkpoint_size, w.countersigned) {
                (Some(n), true) => format!("{n} ✓"),
                (Some(n), false) => format!("{n} (unsigned)"),
                (None, _) => "-".into(),
            },
            w.root
        );
    }
    if report.problems.is_empty() {
        println!("verified: {} records in {} logs; no problems", report.records, report.writers.len());
        return ExitCode::SUCCESS;
    }
    for p in &report.problems {
        let at = p.index.map(|i| format!(" at record {i}")).unwrap_or_default();
        eprintln!("FAILED: {} ({}){at}: {}", printable(&p.writer_name), p.writer_id, printable(&p.message));
    }
    ExitCode::FAILURE
}

pub async fn alarms(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let alarms = device.api().alarms().await?;
    if alarms.is_empty() {
        println!("No alarms.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<20} {:<30} {:<16} {:>8}  MESSAGE", "AT", "ALARM", "GATEWAY", "INDEX");
    for a in alarms {
        let field = |k: &str| a.detail.get(k).map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string()));
        println!(
            "{:<20} {:<30} {:<16} {:>8}  {}",
            crate::access::format_time(a.at),
            a.kind,
            printable(&field("gateway").unwrap_or_default()),
            field("index").unwrap_or_default(),
            printable(&field("message").unwrap_or_default())
        );
    }
    Ok(ExitCode::SUCCESS)
}
