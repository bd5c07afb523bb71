//! Users, groups, devices and policies: thin calls over the API client.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use portcullis_proto::{PolicyTestRequest, Role, printable, roles_to_string};

use crate::access::format_time;
use crate::open_device;

pub async fn list_users(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let users = device.api().users().await?;
    println!("{:<20} {:<34} {:<24} {:<12} STATUS", "NAME", "ROLES", "GROUPS", "CREATED BY");
    for u in users {
        println!(
            "{:<20} {:<34} {:<24} {:<12} {}",
            u.name,
            roles_to_string(&u.roles),
            u.groups.join(","),
            u.created_by.as_deref().unwrap_or("-"),
            u.disabled_at.map(|t| format!("disabled {}", format_time(t))).unwrap_or_else(|| "active".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn set_roles(home: &Path, name: &str, roles: &[Role]) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let outcome = device.api().set_roles(name, roles).await?;
    println!("{name} now has the roles {}.", roles_to_string(roles));
    if outcome.grants_revoked + outcome.requests_withdrawn > 0 {
        println!(
            "Without the requester role: {} grant(s) revoked, {} pending request(s) withdrawn; running sessions are being closed.",
            outcome.grants_revoked, outcome.requests_withdrawn
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn set_groups(home: &Path, name: &str, groups: &[String]) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let user = device.api().set_groups(name, groups).await?;
    if user.groups.is_empty() {
        println!("{} is in no group.", user.name);
    } else {
        println!("{} is in {}.", user.name, user.groups.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn disable_user(home: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let outcome = device.api().disable_user(name).await?;
    println!(
        "Disabled {name}: {} grant(s) revoked, {} pending request(s) withdrawn; running sessions are being closed.",
        outcome.grants_revoked, outcome.requests_withdrawn
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn confirm_user(home: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let confirmed = device.api().confirm_user(name).await?;
    if confirmed.via == "delay" {
        println!("Confirmed {name} alone (one-admin installation; recorded as an alarm).");
    } else {
        println!("Confirmed {name}.");
    }
    println!("Give them this one-time enrolment code (valid 24 h; any earlier code no longer works):");
    println!("{}", confirmed.enrolment_code);
    Ok(ExitCode::SUCCESS)
}

pub async fn add_group(home: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let group = device.api().add_group(name).await?;
    println!("Added group {}.", group.name);
    Ok(ExitCode::SUCCESS)
}

pub async fn list_groups(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let groups = device.api().groups().await?;
    if groups.is_empty() {
        println!("No groups yet; add one with `portcullis group add NAME`.");
    }
    for g in groups {
        println!("{:<24} {}", g.name, if g.members.is_empty() { "(no members)".into() } else { g.members.join(", ") });
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list_devices(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let devices = device.api().devices().await?;
    println!("{:<36}  {:<16} {:<24} {:<20} STATUS", "ID", "USER", "NAME", "ENROLLED");
    for d in devices {
        let this = if d.id == device.config().device_id { " (this device)" } else { "" };
        println!(
            "{:<36}  {:<16} {:<24} {:<20} {}{this}",
            d.id,
            d.user,
            printable(&d.name),
            format_time(d.created_at),
            d.revoked_at.map(|t| format!("revoked {}", format_time(t))).unwrap_or_else(|| "active".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke_device(home: &Path, id: &str) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let outcome = device.api().revoke_device(id).await?;
    println!(
        "Revoked device {id}: {} grant(s) revoked, {} pending request(s) withdrawn; its sessions are being closed.",
        outcome.grants_revoked, outcome.requests_withdrawn
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn show_policy(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let policy = device.api().policy().await?;
    println!(
        "// Policy set version {}, {} policies, stored {} by {}",
        policy.version,
        policy.policies,
        format_time(policy.created_at),
        policy.created_by.as_deref().unwrap_or("the server (built-in default)")
    );
    print!("{}", policy.text);
    if !policy.text.ends_with('\n') {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

fn read_policy_file(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

pub async fn set_policy(home: &Path, file: &Path) -> anyhow::Result<ExitCode> {
    let text = read_policy_file(file)?;
    let device = open_device(home).await?;
    match device.api().set_policy(&text).await {
        Ok(policy) => {
            println!(
                "Stored policy set version {} ({} policies); it is in force now.",
                policy.version, policy.policies
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(portcullis_client::ClientError::Api { code, message, .. }) if code == "policy_invalid" => {
            // Cedar's problems, each with its line and column, prefixed with the file name.
            eprintln!(
                "portcullis: {}: {}",
                file.display(),
                message.replace('\n', &format!("\n  {}: ", file.display()))
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn test_policy(
    home: &Path,
    user: &str,
    target: &str,
    duration: &str,
    at: Option<String>,
    from: Option<String>,
    file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let duration = humantime::parse_duration(duration)
        .with_context(|| format!("--duration {duration:?} is not a duration like 30m or 2h"))?;
    let text = file.map(read_policy_file).transpose()?;
    let device = open_device(home).await?;
    let result = device
        .api()
        .test_policy(&PolicyTestRequest {
            user: user.into(),
            target: target.into(),
            duration_secs: duration.as_secs(),
            at,
            source_ip: from,
            text,
        })
        .await?;
    println!(
        "{user} asks for {target} for {} at {} from {}",
        humantime::format_duration(duration),
        result.at,
        result.source_ip
    );
    println!("{}", printable(&result.summary));
    Ok(ExitCode::SUCCESS)
}

pub async fn add_key(home: &Path, name: &str, authenticator: &str) -> anyhow::Result<ExitCode> {
    let authenticator = portcullis_client::security_key::Authenticator::parse(authenticator)?;
    let device = open_device(home).await?;
    let key = portcullis_client::security_key::add_key(
        device.api(),
        name,
        &authenticator,
        std::sync::Arc::new(crate::passphrase::KeyPrompt),
    )
    .await?;
    println!("Registered security key {:?}; approvals that need one will ask for it.", key.name);
    println!("{}", key.id);
    Ok(ExitCode::SUCCESS)
}

pub async fn list_keys(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let keys = device.api().security_keys().await?;
    if keys.is_empty() {
        println!("No security keys; add one with `portcullis key add NAME`.");
    }
    for k in keys {
        println!(
            "{:<36}  {:<24} added {}  last used {}",
            k.id,
            printable(&k.name),
            format_time(k.created_at),
            k.last_used_at.map(format_time).unwrap_or_else(|| "never".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn remove_key(home: &Path, key: &str, authenticator: &str) -> anyhow::Result<ExitCode> {
    let authenticator = portcullis_client::security_key::Authenticator::parse(authenticator)?;
    let device = open_device(home).await?;
    let removed = portcullis_client::security_key::remove_key(
        device.api(),
        key,
        &authenticator,
        std::sync::Arc::new(crate::passphrase::KeyPrompt),
    )
    .await?;
    println!("Removed security key {:?}.", removed.name);
    Ok(ExitCode::SUCCESS)
}
