//! `portcullis secret ...`: typed secrets. Values are read from standard input or files, sealed
//! to the server in this process, and never printed.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use portcullis_crypto::SecretBytes;
use portcullis_proto::printable;
use portcullis_vault::wire::{
    AddSecretRequest, EditSecretRequest, RemoveSecretRequest, RestoreSecretRequest, SecretMeta, SecretQuery, SecretView,
};
use portcullis_vault::{MAX_VALUE_BYTES, SecretKind};

use crate::access::format_time;
use crate::args::{SecretAdd, SecretEdit, SecretList, SecretValueArgs};
use crate::open_device;

const ARGUMENT_REFUSED: &str = "a secret value on the command line would stay in your shell history and be \
     visible to every user in `ps`; give it on standard input (--value-stdin, or --field NAME=@-) or in a file \
     (--value-file FILE, or --field NAME=@FILE)";

/// Reads at most the largest value plus one byte, so an oversized input is refused without
/// reading it all.
fn read_limited(mut from: impl Read, what: &str) -> anyhow::Result<SecretBytes> {
    let mut raw = Vec::new();
    (&mut from).take(MAX_VALUE_BYTES as u64 + 1).read_to_end(&mut raw).with_context(|| format!("reading {what}"))?;
    let raw = SecretBytes::from(raw);
    if raw.expose_secret().len() > MAX_VALUE_BYTES {
        bail!("{what} is larger than {MAX_VALUE_BYTES} bytes (64 KiB), the most a secret holds");
    }
    Ok(raw)
}

fn read_stdin(field: &str) -> anyhow::Result<SecretBytes> {
    if std::io::stdin().is_terminal() {
        let typed = rpassword::prompt_password(format!("{field} (not shown; Enter to finish): "))
            .context("reading from the terminal")?;
        return Ok(SecretBytes::from(typed.into_bytes()));
    }
    read_limited(std::io::stdin().lock(), "standard input")
}

/// One line: without the line break a file or `echo` ends it with.
fn without_final_newline(value: SecretBytes) -> SecretBytes {
    let bytes = value.expose_secret();
    let mut end = bytes.len();
    if bytes[..end].ends_with(b"\n") {
        end -= 1;
        if bytes[..end].ends_with(b"\r") {
            end -= 1;
        }
    }
    if end == bytes.len() { value } else { SecretBytes::from(bytes[..end].to_vec()) }
}

/// The fields the arguments give, read and trimmed; checked against the kind's fields here so
/// a mistake is said before anything is read.
fn read_fields(kind: SecretKind, args: &SecretValueArgs) -> anyhow::Result<Vec<(String, SecretBytes)>> {
    if args.value.is_some() || args.password.is_some() {
        bail!("{ARGUMENT_REFUSED}");
    }
    if args.value_stdin && args.value_file.is_some() {
        bail!("give the value once: --value-stdin or --value-file");
    }
    let mut sources: Vec<(String, String)> = Vec::new();
    if args.value_stdin {
        sources.push((kind.primary_field().to_string(), "@-".into()));
    }
    if let Some(file) = &args.value_file {
        sources.push((kind.primary_field().to_string(), format!("@{}", file.display())));
    }
    for given in &args.fields {
        let Some((name, source)) = given.split_once('=') else {
            bail!("--field {:?}: write NAME=@FILE, NAME=@- or NAME=TEXT", given.split('=').next().unwrap_or_default());
        };
        sources.push((name.to_string(), source.to_string()));
    }
    if sources.iter().filter(|(_, s)| s == "@-").count() > 1 {
        bail!("standard input can give one field only; give the others in files");
    }
    let mut fields = Vec::new();
    for (name, source) in sources {
        let Some(spec) = kind.field(&name) else {
            let known: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
            bail!("a {kind} secret has no field {name:?}; its fields: {}", known.join(", "));
        };
        let value = match source.strip_prefix('@') {
            Some("-") => read_stdin(&name)?,
            Some(path) => {
                let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
                read_limited(file, path)?
            }
            None if spec.secret => bail!("--field {name}=...: {ARGUMENT_REFUSED}"),
            None => SecretBytes::from(source.into_bytes()),
        };
        let value = if spec.multiline { value } else { without_final_newline(value) };
        fields.push((name, value));
    }
    Ok(fields)
}

/// An expiry: RFC 3339, or a duration from now (90d).
fn parse_expiry(text: &str) -> anyhow::Result<i64> {
    let unix =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(unix(t));
    }
    let ahead = humantime::parse_duration(text).map_err(|_| {
        anyhow::anyhow!("{text:?} is neither a time (2027-01-31T00:00:00Z) nor a duration from now (90d)")
    })?;
    Ok(unix(std::time::SystemTime::now()) + ahead.as_secs() as i64)
}

fn kind_of(text: &str) -> anyhow::Result<SecretKind> {
    SecretKind::parse(text).map_err(anyhow::Error::msg)
}

pub async fn add(home: &Path, add: SecretAdd) -> anyhow::Result<ExitCode> {
    let kind = kind_of(&add.kind)?;
    let fields = read_fields(kind, &add.value)?;
    if fields.is_empty() {
        bail!("give the value: --value-stdin, --value-file FILE or --field {}=@FILE", kind.primary_field());
    }
    let expires_at = add.expires.as_deref().map(parse_expiry).transpose()?;
    let device = open_device(home).await?;
    let value = device.seal_secret(&add.name, &fields)?;
    drop(fields);
    let meta = SecretMeta {
        environment: add.environment,
        folder: add.folder,
        tags: add.tags,
        description: add.description,
        owner: add.owner,
        expires_at,
        revealable: add.revealable,
        versions_kept: add.keep,
        target: add.target,
    };
    let added =
        device.api().add_secret(&AddSecretRequest { name: add.name, kind, meta, reason: add.reason, value }).await?;
    println!(
        "Added {} secret {} (version 1; {}); its value is stored encrypted and is not shown.",
        added.kind,
        added.name,
        if added.revealable { "may be checked out under a grant" } else { "never revealed" }
    );
    print_expiry(&added);
    println!("{}", added.id);
    Ok(ExitCode::SUCCESS)
}

pub async fn edit(home: &Path, edit: SecretEdit) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let current = device.api().secret(&edit.name).await?;
    let fields = read_fields(current.kind, &edit.value)?;
    let value = if fields.is_empty() { None } else { Some(device.seal_secret(&edit.name, &fields)?) };
    drop(fields);
    let expires_at = match edit.expires.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(text) => Some(Some(parse_expiry(text)?)),
    };
    let req = EditSecretRequest {
        environment: edit.environment,
        folder: edit.folder,
        tags: edit.tags,
        description: edit.description,
        owner: edit.owner,
        expires_at,
        revealable: edit.revealable,
        versions_kept: edit.keep,
        reason: edit.reason,
        value,
    };
    let changed = device.api().edit_secret(&edit.name, &req).await?;
    if changed.version != current.version {
        println!(
            "Secret {} now at version {} (version {} kept in its history).",
            changed.name, changed.version, current.version
        );
    } else {
        println!("Secret {} changed (still version {}).", changed.name, changed.version);
    }
    print_expiry(&changed);
    Ok(ExitCode::SUCCESS)
}

fn expiry_note(s: &SecretView, now: i64) -> String {
    match s.expires_at {
        None => "-".into(),
        Some(at) if at <= now => "EXPIRED".into(),
        Some(at) => {
            let days = (at - now) / 86_400;
            if days < 30 { format!("in {days}d (soon)") } else { format!("in {days}d") }
        }
    }
}

fn print_expiry(s: &SecretView) {
    if let Some(at) = s.expires_at {
        println!("Expires {} ({}).", format_time(at), expiry_note(s, portcullis_client::now_secs()));
    }
}

pub async fn list(home: &Path, list: SecretList) -> anyhow::Result<ExitCode> {
    let expiring_within = list
        .expiring
        .as_deref()
        .map(|d| humantime::parse_duration(d).map(|d| d.as_secs() as i64))
        .transpose()
        .map_err(|_| anyhow::anyhow!("--expiring takes a duration like 30d"))?;
    let mut query = SecretQuery {
        kind: list.kind.as_deref().map(kind_of).transpose()?,
        env: list.environment,
        folder: list.folder,
        tag: list.tag,
        search: list.search,
        expiring_within,
        removed: list.removed,
        after: None,
        limit: None,
    };
    let device = open_device(home).await?;
    let now = portcullis_client::now_secs();
    let mut shown = 0u32;
    let wanted = list.limit.unwrap_or(u32::MAX);
    if !list.json {
        println!("{:<28} {:<11} {:<8} {:<20} {:>4} {:<14} TAGS", "NAME", "TYPE", "ENV", "FOLDER", "VER", "EXPIRES");
    }
    loop {
        query.limit = Some((wanted - shown).min(portcullis_vault::wire::MAX_PAGE));
        let page = device.api().secrets(&query).await?;
        for s in &page.items {
            if list.json {
                println!("{}", serde_json::to_string(s)?);
            } else {
                println!(
                    "{:<28} {:<11} {:<8} {:<20} {:>4} {:<14} {}{}",
                    s.name,
                    s.kind.as_str(),
                    if s.environment.is_empty() { "-" } else { &s.environment },
                    if s.folder.is_empty() { "-" } else { &s.folder },
                    s.version,
                    expiry_note(s, now),
                    if s.tags.is_empty() { "-".to_string() } else { s.tags.join(",") },
                    if s.removed_at.is_some() { "  (removed)" } else { "" }
                );
            }
        }
        shown += page.items.len() as u32;
        match page.next {
            Some(next) if shown < wanted => query.after = Some(next),
            _ => break,
        }
    }
    if shown == 0 && !list.json {
        println!("(none)");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn show(home: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let s = device.api().secret(name).await?;
    let or_dash = |t: &str| if t.is_empty() { "-".to_string() } else { printable(t) };
    println!("name:         {}", s.name);
    println!("type:         {}", s.kind);
    println!(
        "value:        stored encrypted; {}",
        if s.revealable { "may be checked out under a grant" } else { "never revealed" }
    );
    println!("environment:  {}", or_dash(&s.environment));
    println!("folder:       {}", or_dash(&s.folder));
    println!("tags:         {}", if s.tags.is_empty() { "-".into() } else { s.tags.join(", ") });
    println!("description:  {}", or_dash(&s.description));
    println!("owner:        {}", or_dash(&s.owner));
    println!("version:      {} (keeps {})", s.version, s.versions_kept);
    match s.expires_at {
        Some(at) => println!("expires:      {} ({})", format_time(at), expiry_note(&s, portcullis_client::now_secs())),
        None => println!("expires:      -"),
    }
    for (field, value) in &s.facts.fields {
        println!("{:<13} {}", format!("{field}:"), printable(value));
    }
    if let Some(cert) = &s.facts.certificate {
        println!("subject:      {}", printable(&cert.subject));
        println!("issuer:       {}", printable(&cert.issuer));
        println!(
            "names:        {}",
            if cert.names.is_empty() { "-".into() } else { printable(&cert.names.join(", ")) }
        );
        println!("valid:        {} to {}", format_time(cert.not_before), format_time(cert.not_after));
        println!("sha256:       {} (chain of {})", cert.sha256, cert.chain_length);
    }
    if let Some(key) = &s.facts.ssh_key {
        println!("public key:   {}", printable(key));
    }
    if let Some(target) = &s.target {
        println!("target:       {target} (its password: the gateway logs in with it and rotates it at check-in)");
    }
    println!("added:        {} by {}", format_time(s.created_at), s.created_by);
    println!("changed:      {} by {}", format_time(s.updated_at), s.updated_by);
    if let Some(at) = s.removed_at {
        println!("removed:      {}", format_time(at));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn history(home: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let versions = device.api().secret_history(name).await?;
    println!("{:>4}  {:<20} {:<12} WHY", "VER", "WHEN", "BY");
    for v in versions {
        let mut why = printable(&v.reason);
        if let Some(from) = v.restored_from
            && !why.contains("restored")
        {
            why = format!("{why} (restored version {from})").trim().to_string();
        }
        if v.destroyed_at.is_some() {
            why.push_str(" [value destroyed: past the versions kept]");
        }
        println!(
            "{:>4}{} {:<20} {:<12} {}",
            v.version,
            if v.current { "*" } else { " " },
            format_time(v.created_at),
            v.created_by,
            if why.is_empty() { "-".into() } else { why }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(home: &Path, name: &str, version: i64, reason: String) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let restored = device.api().restore_secret(name, &RestoreSecretRequest { version, reason }).await?;
    println!(
        "Secret {} now at version {}: the value of version {version}, restored without being shown.",
        restored.name, restored.version
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn remove(home: &Path, name: &str, purge: bool, reason: String) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    device.api().drop_secret(name, purge, &RemoveSecretRequest { reason }).await?;
    if purge {
        println!("Purged secret {name}: it and every version are gone; the audit log keeps the event.");
    } else {
        println!("Removed secret {name}: it is no longer listed or used; `portcullis secret purge {name}` deletes it.");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn checkout(home: &Path, name: &str, field: Option<&str>, allow_pipe: bool) -> anyhow::Result<ExitCode> {
    let to_terminal = std::io::stdout().is_terminal();
    if !to_terminal && !allow_pipe {
        bail!(
            "standard output is not a terminal, so the secret would land in a pipe or a file; add --allow-pipe to \
             print it anyway (the audit records that it went to a pipe), or hand it to a process with `portcullis run`"
        );
    }
    let device = open_device(home).await?;
    let kind = device.api().secret(name).await?.kind;
    let field = field.unwrap_or(kind.primary_field());
    if kind.field(field).is_none() {
        let known: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
        bail!("a {kind} secret has no field {field:?}; its fields: {}", known.join(", "));
    }
    let to = if to_terminal { "terminal" } else { "pipe" };
    let (released, fields) = device.checkout(name, portcullis_vault::wire::RevealPurpose::Reveal, to).await?;
    let Some((_, value)) = fields.iter().find(|(n, _)| n == field) else {
        bail!("secret {name} has no {field} (it was not given)");
    };
    eprintln!(
        "Checked out {name} (version {}) until {}; nobody else can check it out until `portcullis secret checkin {name}`.",
        released.version,
        format_time(released.until)
    );
    let mut out = std::io::stdout().lock();
    use std::io::Write as _;
    out.write_all(value.expose_secret())?;
    if to_terminal && !value.expose_secret().ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub async fn checkin(home: &Path, name: &str, wait: u64) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let back = device.api().checkin_secret(name).await?;
    let Some(rotation) = back.rotation else {
        println!("Checked in {} (version {}).", back.secret, back.version);
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "Checked in {} (version {}); its gateway is rotating it on the target, so the value you saw stops working.",
        back.secret, back.version
    );
    await_rotation(&device, name, &rotation, wait).await
}

pub async fn rotate(home: &Path, name: &str, reason: String, wait: u64) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let started = device.api().rotate_secret(name, &reason).await?;
    println!("Rotating {name} (from version {}) through its target's gateway.", started.from_version);
    await_rotation(&device, name, &started.id, wait).await
}

/// Waits up to `wait` seconds for rotation `id` of `name` to end, and says how it ended.
async fn await_rotation(
    device: &portcullis_client::Device,
    name: &str,
    id: &str,
    wait: u64,
) -> anyhow::Result<ExitCode> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        let found = device.api().secret_rotations(name).await?.into_iter().find(|r| r.id == id);
        match found {
            Some(r) if r.state == "rotated" => {
                println!(
                    "Rotated: {name} is now at version {} (set on the target and logged in with).",
                    r.version.unwrap_or(0)
                );
                return Ok(ExitCode::SUCCESS);
            }
            Some(r) if r.state == "failed" => {
                eprintln!(
                    "The rotation of {name} failed ({}): {}. The vault keeps version {}; an alarm was raised.",
                    r.stage.as_deref().unwrap_or("?"),
                    r.detail.as_deref().unwrap_or(""),
                    r.from_version
                );
                return Ok(ExitCode::from(1));
            }
            _ if std::time::Instant::now() >= deadline => {
                println!("The rotation is still pending (`portcullis secret rotations {name}` shows how it ends).");
                return Ok(ExitCode::SUCCESS);
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}

pub async fn rotations(home: &Path, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let list = device.api().secret_rotations(name).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("{name} has not been rotated.");
    }
    for r in list {
        let outcome = match (r.state.as_str(), r.version) {
            ("rotated", Some(v)) => format!("rotated to version {v}"),
            ("failed", _) => {
                format!("FAILED at {}: {}", r.stage.as_deref().unwrap_or("?"), r.detail.as_deref().unwrap_or(""))
            }
            (other, _) => other.to_string(),
        };
        println!("{}  {:<10} by {:<12} {}", format_time(r.created_at), r.reason, r.requested_by, outcome);
    }
    Ok(ExitCode::SUCCESS)
}

/// The largest import file read.
const MAX_IMPORT_FILE: u64 = 256 * 1024 * 1024;

pub async fn import(
    home: &Path,
    file: &Path,
    format: &str,
    dry_run: bool,
    environment: Option<String>,
) -> anyhow::Result<ExitCode> {
    use portcullis_vault::import;
    let format = import::Format::parse(format).map_err(anyhow::Error::msg)?;
    let opened = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut bytes = Vec::new();
    opened.take(MAX_IMPORT_FILE + 1).read_to_end(&mut bytes).with_context(|| format!("reading {}", file.display()))?;
    let bytes = SecretBytes::from(bytes);
    if bytes.expose_secret().len() as u64 > MAX_IMPORT_FILE {
        bail!("{} is larger than 256 MiB; split it", file.display());
    }
    let mut parsed = import::parse(format, bytes.expose_secret());
    drop(bytes);
    for skipped in &parsed.skipped {
        eprintln!("skipped {}: {}", skipped.at, skipped.why);
    }
    if !parsed.problems.is_empty() {
        for problem in &parsed.problems {
            eprintln!("problem {}: {}", problem.at, problem.why);
        }
        bail!(
            "nothing imported: {} problem{} in {} (fix them and import again; all of it goes in, or none)",
            parsed.problems.len(),
            if parsed.problems.len() == 1 { "" } else { "s" },
            file.display()
        );
    }
    if parsed.items.len() > portcullis_vault::wire::MAX_IMPORT {
        bail!(
            "{} secrets; one import adds at most {} (split the file)",
            parsed.items.len(),
            portcullis_vault::wire::MAX_IMPORT
        );
    }
    let device = open_device(home).await?;
    let bar = indicatif::ProgressBar::new(parsed.items.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("sealing");
    let mut items = Vec::with_capacity(parsed.items.len());
    for item in parsed.items.drain(..) {
        let value = device.seal_secret(&item.name, &item.fields)?;
        let mut meta = item.meta;
        if meta.environment.is_empty()
            && let Some(env) = &environment
        {
            meta.environment = env.clone();
        }
        items.push(AddSecretRequest {
            name: item.name,
            kind: item.kind,
            meta,
            reason: format!("imported from {}", file.display()),
            value,
        });
        bar.inc(1);
    }
    bar.set_message(if dry_run { "checking" } else { "importing" });
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let source = format!("{:?} file {}", format, file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    let request = portcullis_vault::wire::ImportRequest { items, dry_run, source: printable(&source) };
    // What the server takes in one import (one transaction).
    const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;
    let size = serde_json::to_vec(&request)?.len();
    if size > MAX_IMPORT_BYTES {
        bar.finish_and_clear();
        bail!(
            "these {} secrets make {} MiB sealed; one import takes 16 MiB: split the file",
            request.items.len(),
            size >> 20
        );
    }
    let outcome = device.api().import_secrets(&request).await;
    bar.finish_and_clear();
    let outcome = outcome?;
    let skipped =
        if parsed.skipped.is_empty() { String::new() } else { format!("; {} skipped (above)", parsed.skipped.len()) };
    if outcome.dry_run {
        println!("Dry run: all {} secrets would be imported{skipped}; nothing was.", outcome.imported);
    } else {
        println!("Imported {} secrets{skipped}.", outcome.imported);
    }
    Ok(ExitCode::SUCCESS)
}

/// Every secret's metadata, page by page.
async fn all_secrets(device: &portcullis_client::Device) -> anyhow::Result<Vec<SecretView>> {
    let mut query = SecretQuery { limit: Some(portcullis_vault::wire::MAX_PAGE), ..SecretQuery::default() };
    let mut all = Vec::new();
    loop {
        let page = device.api().secrets(&query).await?;
        all.extend(page.items);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(all),
        }
    }
}

pub async fn export(home: &Path, format: &str, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    if !matches!(format, "csv" | "json") {
        bail!("--format is csv or json");
    }
    let device = open_device(home).await?;
    let secrets = all_secrets(&device).await?;
    let mut text = String::new();
    if format == "json" {
        for s in &secrets {
            text.push_str(&serde_json::to_string(s)?);
            text.push('\n');
        }
    } else {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record([
            "name",
            "type",
            "env",
            "folder",
            "tags",
            "description",
            "owner",
            "revealable",
            "expires",
            "version",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
        ])?;
        for s in &secrets {
            let expires = s.expires_at.map(format_time).unwrap_or_default();
            writer.write_record([
                s.name.as_str(),
                s.kind.as_str(),
                &s.environment,
                &s.folder,
                &s.tags.join(";"),
                &s.description,
                &s.owner,
                if s.revealable { "true" } else { "false" },
                &expires,
                &s.version.to_string(),
                &format_time(s.created_at),
                &s.created_by,
                &format_time(s.updated_at),
                &s.updated_by,
            ])?;
        }
        text = String::from_utf8(writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
    }
    match out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("Exported the metadata of {} secrets to {} (no values).", secrets.len(), path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
