//! `portcullis ssh-config`: an OpenSSH client configuration so the user's own `ssh`, `scp`,
//! `sftp` and `rsync` reach their targets through the gateway — one `Host TARGET.portcullis`
//! entry per target the user holds a live grant for, each with its own ephemeral key and
//! certificate (files 0600 in the device's home), the gateway's host key pinned in a
//! known-hosts file written beside them, and forwarding switched off.
//!
//! The key and certificate only open the gateway, which records, and expire with the grant.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use portcullis_proto::RequestStatus;

use crate::{ClientError, Device};

/// What was written.
#[derive(Debug)]
pub struct WrittenConfig {
    pub config: PathBuf,
    /// (host alias, target, grant end) for each entry.
    pub hosts: Vec<(String, String, i64)>,
    /// Targets with a live grant that could not be certified, and why.
    pub skipped: Vec<(String, String)>,
}

/// Quotes a path for ssh_config (which splits on whitespace).
fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    portcullis_keystore::write_private(path, bytes)
        .map_err(|e| ClientError::Local(format!("writing {}: {e}", path.display())))
}

impl Device {
    /// Where `ssh-config` keeps keys, certificates and known hosts.
    pub fn ssh_dir(&self) -> PathBuf {
        self.home().join("ssh")
    }

    /// Certifies a fresh key for every target this user holds a live grant for and writes the
    /// configuration to `out` (default: `ssh/config` in the device's home).
    pub async fn write_ssh_config(&self, out: Option<&Path>) -> Result<WrittenConfig, ClientError> {
        // Absolute paths: the config is used from wherever the user runs ssh.
        let dir = std::path::absolute(self.ssh_dir()).map_err(|e| ClientError::Local(e.to_string()))?;
        let keys = dir.join("keys");
        for d in [&dir, &keys] {
            portcullis_keystore::create_private_dir(d)
                .map_err(|e| ClientError::Local(format!("creating {}: {e}", d.display())))?;
        }
        let now = crate::now_secs();
        let me = &self.config().user_name;
        let mut live: BTreeMap<String, i64> = BTreeMap::new();
        for r in self.api().requests(false).await? {
            if r.requester == *me
                && r.status == RequestStatus::Approved
                && let Some(until) = r.grant_not_after.filter(|until| *until > now)
            {
                let entry = live.entry(r.target).or_insert(until);
                *entry = (*entry).max(until);
            }
        }
        let mut config = format!(
            "# Written by `portcullis ssh-config` for {me} ({}).\n\
             # Each entry opens one target through its Portcullis gateway, which records the session.\n\
             # The certificates end with the grants; run `portcullis ssh-config` again after a new approval.\n\n",
            self.config().server_url
        );
        let mut known_hosts = String::new();
        let mut written = WrittenConfig {
            config: out.map(Path::to_path_buf).unwrap_or_else(|| dir.join("config")),
            hosts: Vec::new(),
            skipped: Vec::new(),
        };
        let known_hosts_path = dir.join("known_hosts");
        for target in live.keys() {
            let certified = match self.certified_key(target).await {
                Ok(c) => c,
                Err(e) => {
                    written.skipped.push((target.clone(), e.to_string()));
                    continue;
                }
            };
            let key_path = keys.join(target);
            let cert_path = keys.join(format!("{target}-cert.pub"));
            let key_text = certified
                .key
                .to_openssh(russh::keys::ssh_key::LineEnding::LF)
                .map_err(|e| ClientError::Local(e.to_string()))?;
            write_private(&key_path, key_text.as_bytes())?;
            write_private(&cert_path, format!("{}\n", certified.response.certificate.trim()).as_bytes())?;
            let gateway = &certified.response.gateway;
            let alias = format!("portcullis-gateway-{}", gateway.name);
            let line = format!("{alias} {}\n", gateway.host_key.trim());
            if !known_hosts.contains(&line) {
                known_hosts.push_str(&line);
            }
            let host = format!("{target}.portcullis");
            config.push_str(&format!(
                "Host {host}\n\
                 \x20   HostName {}\n\
                 \x20   Port {}\n\
                 \x20   User {target}\n\
                 \x20   IdentityFile {}\n\
                 \x20   CertificateFile {}\n\
                 \x20   IdentitiesOnly yes\n\
                 \x20   IdentityAgent none\n\
                 \x20   HostKeyAlias {alias}\n\
                 \x20   UserKnownHostsFile {}\n\
                 \x20   GlobalKnownHostsFile /dev/null\n\
                 \x20   StrictHostKeyChecking yes\n\
                 \x20   HostKeyAlgorithms ssh-ed25519\n\
                 \x20   PreferredAuthentications publickey,keyboard-interactive\n\
                 \x20   PasswordAuthentication no\n\
                 \x20   ForwardAgent no\n\
                 \x20   ForwardX11 no\n\
                 \x20   ClearAllForwardings yes\n\
                 \x20   ControlMaster no\n\
                 \x20   ControlPath none\n\n",
                certified.gateway_host,
                gateway.port,
                quoted(&key_path),
                quoted(&cert_path),
                quoted(&known_hosts_path),
            ));
            written.hosts.push((host, target.clone(), certified.response.not_after));
        }
        // Keys of targets without a live grant are of no use any more.
        if let Ok(entries) = std::fs::read_dir(&keys) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let target = name.strip_suffix("-cert.pub").unwrap_or(&name);
                if !written.hosts.iter().any(|(_, t, _)| t == target) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        write_private(&known_hosts_path, known_hosts.as_bytes())?;
        write_private(&written.config, config.as_bytes())?;
        Ok(written)
    }
}
