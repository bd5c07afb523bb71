use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use portcullis_client::{Device, NewTarget};
use portcullis_crypto::SecretBytes;
use portcullis_keystore::Preference;
use portcullis_proto::{AddUserRequest, CredentialKind, Role, TargetFilter, roles_to_string};

use crate::args::{TargetAdd, TargetEdit};
use crate::open_device;
use crate::passphrase::Prompt;

pub async fn enroll(
    home: &Path,
    server: &str,
    code: &str,
    device_name: Option<String>,
    key_store: Preference,
) -> anyhow::Result<ExitCode> {
    let name = device_name.unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "device".into())
    });
    let device = Device::enroll(home, server, code, &name, key_store, &Prompt).await?;
    let c = device.config();
    println!(
        "Enrolled this device as {} ({}) on {}; local key in: {}",
        c.user_name,
        roles_to_string(&c.roles),
        c.server_url,
        device.key_store()
    );
    println!("{}", c.device_id);
    Ok(ExitCode::SUCCESS)
}

pub async fn enroll_identity(
    server: &str,
    code: &str,
    device_name: Option<String>,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let name = device_name.unwrap_or_else(|| "pipeline".into());
    // Made before enrolling: a code spent on a file that cannot be written is wasted.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {} (it must not exist yet)", out.display()))?;
    let line = match Device::enroll_identity(server, code, &name).await {
        Ok(line) => line,
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(out);
            return Err(e.into());
        }
    };
    file.write_all(line.expose_secret().as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    file.write_all(b"\n")?;
    println!(
        "Enrolled a device that keeps nothing here; its identity is in {} (mode 0600). Store that line in your CI \
         system's secrets, give it to the job as PORTCULLIS_IDENTITY, and delete the file.",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn whoami(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let me = device.api().me().await?;
    println!("user:    {}", me.user_name);
    println!("roles:   {}", roles_to_string(&me.roles));
    println!("device:  {}", me.device_id);
    println!("server:  {}", device.config().server_url);
    println!("key in:  {}", device.key_store());
    Ok(ExitCode::SUCCESS)
}

pub async fn add_user(home: &Path, name: &str, roles: &[Role], groups: &[String]) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let added = device
        .api()
        .add_user(&AddUserRequest { name: name.into(), roles: roles.to_vec(), groups: groups.to_vec() })
        .await?;
    match (&added.enrolment_code, &added.confirmation) {
        (Some(code), _) => {
            println!(
                "Added user {} ({}). Give them this one-time enrolment code (valid 24 h):",
                added.name,
                roles_to_string(&added.roles)
            );
            println!("{code}");
        }
        (None, why) => {
            println!("Added user {} ({}); no enrolment code for you:", added.name, roles_to_string(&added.roles));
            println!("{}", why.as_deref().unwrap_or("a second admin must confirm the account"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The credential from `--password-stdin` or `--key-file`, if one was given.
fn read_credential(
    password_stdin: bool,
    key_file: Option<&Path>,
) -> anyhow::Result<Option<(CredentialKind, SecretBytes)>> {
    if password_stdin {
        let mut raw = Vec::new();
        std::io::stdin().read_to_end(&mut raw).context("reading the password from standard input")?;
        let raw = SecretBytes::from(raw);
        let mut end = raw.expose_secret().len();
        for suffix in [&b"\n"[..], b"\r"] {
            if raw.expose_secret()[..end].ends_with(suffix) {
                end -= 1;
            }
        }
        if end == 0 {
            bail!("no password on standard input");
        }
        Ok(Some((CredentialKind::Password, SecretBytes::from(raw.expose_secret()[..end].to_vec()))))
    } else if let Some(file) = key_file {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        Ok(Some((CredentialKind::PrivateKey, SecretBytes::from(bytes))))
    } else {
        Ok(None)
    }
}

pub async fn add_target(home: &Path, add: TargetAdd) -> anyhow::Result<ExitCode> {
    let Some((kind, credential)) = read_credential(add.password_stdin, add.key_file.as_deref())? else {
        bail!("give the credential with --password-stdin or --key-file");
    };
    let device = open_device(home).await?;
    let new = NewTarget {
        name: add.name,
        host: add.host,
        port: add.port,
        login: add.login,
        host_key: add.host_key,
        kind,
        environment: add.environment,
        tags: add.tags,
        description: add.description,
        gateway: add.gateway,
    };
    let target = device.add_target(new, &credential).await?;
    drop(credential);
    println!(
        "Added target {} ({}@{}:{}, host key {}, through gateway {}); its credential is stored encrypted and will not be shown.",
        target.name, target.login, target.host, target.port, target.host_key_fingerprint, target.gateway
    );
    println!("{}", target.id);
    Ok(ExitCode::SUCCESS)
}

pub async fn edit_target(home: &Path, edit: TargetEdit) -> anyhow::Result<ExitCode> {
    let credential = read_credential(edit.password_stdin, edit.key_file.as_deref())?;
    let device = open_device(home).await?;
    let all = device.targets(&TargetFilter::default()).await?;
    let Some(current) = all.into_iter().find(|t| t.name == edit.name) else { bail!("unknown target {:?}", edit.name) };
    let kind = credential.as_ref().map(|(kind, _)| *kind).unwrap_or(current.credential_kind);
    let changed = NewTarget {
        name: current.name.clone(),
        host: edit.host.unwrap_or(current.host),
        port: edit.port.unwrap_or(current.port),
        login: edit.login.unwrap_or(current.login),
        host_key: edit.host_key.unwrap_or(current.host_key),
        kind,
        environment: edit.environment.unwrap_or(current.environment),
        tags: edit.tags.unwrap_or(current.tags),
        description: edit.description.unwrap_or(current.description),
        gateway: edit.gateway,
    };
    let updated = device.update_target(changed, credential.as_ref().map(|(_, c)| c)).await?;
    drop(credential);
    println!(
        "Updated target {} ({}@{}:{}, host key {}, through gateway {}, credential version {}).",
        updated.name,
        updated.login,
        updated.host,
        updated.port,
        updated.host_key_fingerprint,
        updated.gateway,
        updated.credential_version
    );
    println!("{}", updated.id);
    Ok(ExitCode::SUCCESS)
}

pub async fn list_targets(home: &Path, filter: TargetFilter) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let targets = device.targets(&filter).await?;
    if targets.is_empty() {
        println!("No targets{}.", if filter == TargetFilter::default() { " yet" } else { " match" });
        return Ok(ExitCode::SUCCESS);
    }
    if targets.iter().all(|t| t.requester_view) {
        // A requester sees what to choose by, not where targets are.
        println!("{:<20} {:<10} {:<20} DESCRIPTION", "NAME", "ENV", "TAGS");
        for t in targets {
            println!(
                "{:<20} {:<10} {:<20} {}",
                t.name,
                if t.environment.is_empty() { "-" } else { &t.environment },
                if t.tags.is_empty() { "-".to_string() } else { t.tags.join(",") },
                portcullis_proto::printable(&t.description)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<20} {:<28} {:<12} {:<10} {:<20} HOST KEY", "NAME", "ADDRESS", "LOGIN", "ENV", "TAGS");
    for t in targets {
        println!(
            "{:<20} {:<28} {:<12} {:<10} {:<20} {}",
            t.name,
            format!("{}:{}", t.host, t.port),
            t.login,
            if t.environment.is_empty() { "-" } else { &t.environment },
            if t.tags.is_empty() { "-".to_string() } else { t.tags.join(",") },
            t.host_key_fingerprint
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn show_target(home: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let all = device.targets(&TargetFilter::default()).await?;
    let Some(t) = all.into_iter().find(|t| t.name == name) else { bail!("unknown target {name:?}") };
    let when = |at: i64| crate::access::format_time(at);
    println!("name:         {}", t.name);
    if t.requester_view {
        println!("environment:  {}", if t.environment.is_empty() { "-" } else { &t.environment });
        println!("tags:         {}", if t.tags.is_empty() { "-".to_string() } else { t.tags.join(", ") });
        println!(
            "description:  {}",
            if t.description.is_empty() { "-".into() } else { portcullis_proto::printable(&t.description) }
        );
        match t.active_grants.first() {
            Some(g) => println!("your access:  until {}", when(g.not_after)),
            None => println!("your access:  none (portcullis request {})", t.name),
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("address:      {}:{}", t.host, t.port);
    println!("login:        {}", t.login);
    println!("credential:   {} (stored encrypted; never shown)", t.credential_kind.as_str());
    println!("host key:     {}", t.host_key_fingerprint);
    println!("gateway:      {}", t.gateway);
    println!("environment:  {}", if t.environment.is_empty() { "-" } else { &t.environment });
    println!("tags:         {}", if t.tags.is_empty() { "-".to_string() } else { t.tags.join(", ") });
    println!(
        "description:  {}",
        if t.description.is_empty() { "-".into() } else { portcullis_proto::printable(&t.description) }
    );
    println!("added:        {}", when(t.created_at));
    match (t.last_used_at, &t.last_used_by) {
        (Some(at), Some(by)) => println!("last used:    {} by {by}", when(at)),
        _ => println!("last used:    never"),
    }
    if t.active_grants.is_empty() {
        println!("access now:   nobody");
    }
    for g in &t.active_grants {
        println!("access now:   {} until {}", g.user, when(g.not_after));
    }
    Ok(ExitCode::SUCCESS)
}
