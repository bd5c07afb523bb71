use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use portcullis_client::Device;
use portcullis_crypto::SecretBytes;
use portcullis_keystore::Preference;
use portcullis_proto::{AddUserRequest, CredentialKind, Role, roles_to_string};

use crate::args::TargetAdd;
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

pub async fn add_user(home: &Path, name: &str, roles: &[Role]) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let added = device.api().add_user(&AddUserRequest { name: name.into(), roles: roles.to_vec() }).await?;
    println!(
        "Added user {} ({}). Give them this one-time enrolment code (valid 24 h):",
        added.name,
        roles_to_string(&added.roles)
    );
    println!("{}", added.enrolment_code);
    Ok(ExitCode::SUCCESS)
}

pub async fn add_target(home: &Path, add: TargetAdd) -> anyhow::Result<ExitCode> {
    let (kind, credential) = if add.password_stdin {
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
        (CredentialKind::Password, SecretBytes::from(raw.expose_secret()[..end].to_vec()))
    } else if let Some(file) = &add.key_file {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        (CredentialKind::PrivateKey, SecretBytes::from(bytes))
    } else {
        bail!("give the credential with --password-stdin or --key-file");
    };
    let device = open_device(home).await?;
    let target =
        device.add_target(&add.name, &add.host, add.port, &add.login, &add.host_key, kind, &credential).await?;
    drop(credential);
    println!(
        "Added target {} ({}@{}:{}, host key {}); its credential is stored encrypted and will not be shown.",
        target.name, target.login, target.host, target.port, target.host_key_fingerprint
    );
    println!("{}", target.id);
    Ok(ExitCode::SUCCESS)
}

pub async fn list_targets(home: &Path) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let targets = device.api().targets().await?;
    if targets.is_empty() {
        println!("No targets yet.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<20} {:<32} {:<12} {:<12} HOST KEY", "NAME", "ADDRESS", "LOGIN", "CREDENTIAL");
    for t in targets {
        println!(
            "{:<20} {:<32} {:<12} {:<12} {}",
            t.name,
            format!("{}:{}", t.host, t.port),
            t.login,
            t.credential_kind.as_str(),
            t.host_key_fingerprint
        );
    }
    Ok(ExitCode::SUCCESS)
}
