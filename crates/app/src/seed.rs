//! A first-run script for demos and benchmarks (`PORTCULLIS_SEED=FILE` on the desktop app):
//! sets a fresh app up the way a person would through the window — standalone with targets and
//! teammates, or enrolled against another instance — so `tests/demo.sh` can open ready windows.
//!
//! Credentials come from key files named in the seed, never from the seed itself. A seed is
//! ignored once the app is set up.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{AppCore, AppError, NewTargetForm, Phase};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Used only when no OS keyring is reachable.
    pub passphrase: Option<String>,
    pub standalone: Option<StandaloneSeed>,
    pub enrol: Option<EnrolSeed>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandaloneSeed {
    pub admin: String,
    #[serde(default)]
    pub targets: Vec<SeedTarget>,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// This many generated secrets (passwords and API tokens in folders and environments),
    /// imported a few thousand at a time: the vault-at-scale benchmark.
    #[serde(default)]
    pub secrets: usize,
    /// Where to write the server URL and the new users' enrolment codes (for `EnrolSeed`).
    pub codes_out: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTarget {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub login: String,
    pub host_key: String,
    /// An OpenSSH private key file: the credential.
    pub key_file: PathBuf,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub name: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolSeed {
    /// The `codes_out` file of the standalone instance (waited for up to a minute).
    pub codes_file: PathBuf,
    pub user: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Codes {
    server_url: String,
    codes: std::collections::BTreeMap<String, String>,
}

impl AppCore {
    /// Applies `seed` to a fresh app; does nothing to one already set up.
    pub async fn seed(&self, seed: Seed) -> Result<(), AppError> {
        if self.status().await.phase != Phase::Fresh {
            return Ok(());
        }
        if let Some(s) = seed.standalone {
            self.create_standalone(&s.admin, seed.passphrase.clone()).await?;
            let device = self.device().await?;
            for t in s.targets {
                let credential = std::fs::read_to_string(&t.key_file)
                    .map_err(|e| AppError::input(format!("{}: {e}", t.key_file.display())))?;
                let form = NewTargetForm {
                    name: t.name,
                    host: t.host,
                    port: t.port,
                    login: t.login,
                    host_key: t.host_key,
                    credential_kind: "private_key".into(),
                    credential,
                    environment: t.environment,
                    tags: t.tags,
                    description: t.description,
                };
                self.add_target(form).await?;
            }
            seed_secrets(&device, s.secrets).await?;
            let mut codes = Codes { server_url: device.config().server_url.clone(), codes: Default::default() };
            for u in s.users {
                let added = self.add_user(&u.name, u.roles, Vec::new()).await?;
                let code = added.enrolment_code.ok_or_else(|| {
                    AppError::input(added.confirmation.unwrap_or_else(|| "a second admin must confirm it".into()))
                })?;
                codes.codes.insert(added.name, code);
            }
            if let Some(out) = s.codes_out {
                let json = serde_json::to_vec(&codes).map_err(|e| AppError::internal(e.to_string()))?;
                portcullis_keystore::write_private(&out, &json).map_err(|e| AppError::internal(e.to_string()))?;
            }
        }
        if let Some(e) = seed.enrol {
            let codes = wait_for_codes(&e.codes_file).await?;
            let code = codes
                .codes
                .get(&e.user)
                .ok_or_else(|| AppError::input(format!("no enrolment code for {} in the seed", e.user)))?;
            self.enroll(&codes.server_url, code, seed.passphrase).await?;
        }
        Ok(())
    }
}

/// `n` generated secrets, imported in batches (each batch one transaction on the server).
async fn seed_secrets(device: &portcullis_client::Device, n: usize) -> Result<(), AppError> {
    use portcullis_crypto::SecretBytes;
    use portcullis_vault::SecretKind;
    use portcullis_vault::wire::{AddSecretRequest, ImportRequest, SecretMeta};
    const BATCH: usize = 5000;
    let mut done = 0;
    while done < n {
        let mut items = Vec::with_capacity(BATCH.min(n - done));
        for i in done..(done + BATCH).min(n) {
            let (kind, field) =
                if i % 2 == 0 { (SecretKind::Password, "password") } else { (SecretKind::ApiToken, "token") };
            let name = format!("bench-{i:06}");
            let value = SecretBytes::from(format!("seeded-value-{i:06}-{}", i * 7919).into_bytes());
            let sealed = device.seal_secret(&name, &[(field.to_string(), value)])?;
            let meta = SecretMeta {
                environment: ["prod", "staging", "dev"][i % 3].into(),
                folder: format!("team-{}/app-{}", i % 20, i % 7),
                tags: vec![format!("rack-{}", i % 40)],
                description: format!("bench secret {i}"),
                revealable: i % 5 == 0,
                ..SecretMeta::default()
            };
            items.push(AddSecretRequest { name, kind, meta, reason: "seeded".into(), value: sealed });
        }
        done += items.len();
        device.api().import_secrets(&ImportRequest { items, dry_run: false, source: "seed".into() }).await?;
    }
    Ok(())
}

async fn wait_for_codes(path: &std::path::Path) -> Result<Codes, AppError> {
    for _ in 0..600 {
        if let Ok(bytes) = std::fs::read(path) {
            return serde_json::from_slice(&bytes).map_err(|e| AppError::input(format!("{}: {e}", path.display())));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(AppError::new("unreachable", format!("{} did not appear within a minute", path.display())))
}
