//! The desktop vault: typed secrets listed a page at a time (the window shows only the rows in
//! view), added with type-specific fields — a certificate or key read from a file by this core,
//! so it never passes through the webview — their history and restore, requests for them, and
//! check-out: a revealed value is the one answer that carries a secret to the window (shown in
//! a masked field, audited as a reveal); a copy goes from here to the clipboard without the
//! window ever holding it, and is cleared [`CLIPBOARD_CLEAR`] later unless replaced meanwhile.

use std::time::Duration;

use portcullis_crypto::SecretBytes;
use portcullis_vault::SecretKind;
use portcullis_vault::wire::{
    AddSecretRequest, EditSecretRequest, RestoreSecretRequest, RevealPurpose, SecretMeta, SecretQuery, SecretView,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ts_rs::TS;

use crate::{AppCore, AppError};

/// How long a copied value stays on the clipboard.
pub const CLIPBOARD_CLEAR: Duration = Duration::from_secs(30);
/// Rows per page the window asks for.
pub const PAGE: u32 = 200;
/// Expiring: within this many days.
const EXPIRING_DAYS: i64 = 30;

#[derive(Serialize, TS, Debug, Clone)]
pub struct CertificateView {
    pub subject: String,
    pub issuer: String,
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub sha256: String,
    pub chain_length: u32,
}

/// A secret as the window lists it: metadata and public facts, never its value.
#[derive(Serialize, TS, Debug, Clone)]
pub struct SecretItemView {
    pub name: String,
    pub kind: String,
    pub environment: String,
    pub folder: String,
    pub tags: Vec<String>,
    pub description: String,
    pub owner: String,
    pub revealable: bool,
    #[ts(type = "number | null")]
    pub expires_at: Option<i64>,
    /// Expired or expiring within 30 days.
    pub expiring: bool,
    pub version: i64,
    pub versions_kept: i64,
    pub target: Option<String>,
    /// Public fields (a host, a user name, a URL).
    pub fields: Vec<(String, String)>,
    pub certificate: Option<CertificateView>,
    pub ssh_key: Option<String>,
    pub updated_at: i64,
    pub updated_by: String,
}

fn item(v: SecretView, now: i64) -> SecretItemView {
    SecretItemView {
        expiring: v.expires_at.is_some_and(|at| at <= now + EXPIRING_DAYS * 86_400),
        name: v.name,
        kind: v.kind.as_str().into(),
        environment: v.environment,
        folder: v.folder,
        tags: v.tags,
        description: v.description,
        owner: v.owner,
        revealable: v.revealable,
        expires_at: v.expires_at,
        version: v.version,
        versions_kept: v.versions_kept,
        target: v.target,
        fields: v.facts.fields.into_iter().collect(),
        certificate: v.facts.certificate.map(|c| CertificateView {
            subject: c.subject,
            issuer: c.issuer,
            names: c.names,
            not_before: c.not_before,
            not_after: c.not_after,
            sha256: c.sha256,
            chain_length: c.chain_length as u32,
        }),
        ssh_key: v.facts.ssh_key,
        updated_at: v.updated_at,
        updated_by: v.updated_by,
    }
}

#[derive(Serialize, TS, Debug)]
pub struct SecretPageView {
    pub items: Vec<SecretItemView>,
    /// Ask with this as `after` for the next page (`null`: the last).
    pub next: Option<String>,
}

#[derive(Deserialize, TS, Debug, Default)]
pub struct SecretQueryForm {
    #[serde(default)]
    pub search: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub expiring: bool,
    #[serde(default)]
    pub after: Option<String>,
}

#[derive(Serialize, TS, Debug)]
pub struct SecretFieldView {
    pub name: String,
    pub secret: bool,
    pub required: bool,
    pub multiline: bool,
}

/// A kind and the fields its form asks for.
#[derive(Serialize, TS, Debug)]
pub struct SecretKindView {
    pub kind: String,
    pub primary: String,
    pub fields: Vec<SecretFieldView>,
}

/// One field of the add form: typed text, or a file this core reads (a certificate, a key).
#[derive(Deserialize, TS)]
pub struct SecretFieldInput {
    pub name: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
}

/// The admin's "add secret" form. Only ever deserialised (from the webview), never sent back.
#[derive(Deserialize, TS)]
pub struct NewSecretForm {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub folder: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub revealable: bool,
    #[serde(default)]
    pub target: Option<String>,
    pub fields: Vec<SecretFieldInput>,
    #[serde(default)]
    pub reason: String,
}

impl std::fmt::Debug for NewSecretForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSecretForm").field("name", &self.name).field("fields", &"<secret>").finish()
    }
}

#[derive(Serialize, TS, Debug)]
pub struct SecretVersionItemView {
    pub version: i64,
    pub created_at: i64,
    pub created_by: String,
    pub reason: String,
    #[ts(type = "number | null")]
    pub restored_from: Option<i64>,
    pub destroyed: bool,
    pub current: bool,
}

/// The answer to a reveal: **the one IPC answer that carries a secret value**, to be shown in
/// the check-out's masked field; each reveal is an audit event on the server.
#[derive(Serialize, TS)]
pub struct RevealedView {
    pub secret: String,
    pub version: i64,
    pub until: i64,
    pub value: String,
}

impl std::fmt::Debug for RevealedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealedView").field("secret", &self.secret).field("value", &"<secret>").finish()
    }
}

/// A copy: the value went to the clipboard from the core; only when it is cleared comes back.
#[derive(Serialize, TS, Debug)]
pub struct CopiedView {
    pub secret: String,
    pub version: i64,
    pub until: i64,
    pub clears_in_secs: u32,
}

#[derive(Serialize, TS, Debug)]
pub struct CheckinView {
    pub secret: String,
    pub version: i64,
    /// A bound password's rotation, started by the check-in.
    pub rotation: Option<String>,
}

/// The largest file a field is read from.
const MAX_FIELD_FILE: u64 = 256 * 1024;

fn read_field(input: SecretFieldInput) -> Result<(String, SecretBytes), AppError> {
    let value = match (input.file.filter(|f| !f.trim().is_empty()), input.text) {
        (Some(path), _) => {
            let path = std::path::PathBuf::from(path.trim());
            let size = std::fs::metadata(&path)
                .map_err(|e| AppError::input(format!("cannot read {} for {}: {e}", path.display(), input.name)))?
                .len();
            if size > MAX_FIELD_FILE {
                return Err(AppError::input(format!("{} is larger than {MAX_FIELD_FILE} bytes", path.display())));
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| AppError::input(format!("cannot read {} for {}: {e}", path.display(), input.name)))?;
            SecretBytes::from(bytes)
        }
        (None, Some(text)) => SecretBytes::from(text.into_bytes()),
        (None, None) => return Err(AppError::input(format!("give the {} or a file to read it from", input.name))),
    };
    Ok((input.name, value))
}

fn kind_named(kind: &str) -> Result<SecretKind, AppError> {
    SecretKind::parse(kind).map_err(AppError::input)
}

/// What the clipboard holds for us, to clear it only if it still holds our copy.
pub(crate) struct Clipboard {
    inner: Option<arboard::Clipboard>,
    /// SHA-256 of what we put there (never the value itself).
    ours: Option<[u8; 32]>,
}

impl Clipboard {
    pub(crate) fn new() -> Self {
        Self { inner: None, ours: None }
    }

    fn get(&mut self) -> Result<&mut arboard::Clipboard, AppError> {
        if self.inner.is_none() {
            self.inner = Some(arboard::Clipboard::new().map_err(|e| AppError::new("clipboard", e.to_string()))?);
        }
        self.inner.as_mut().ok_or_else(|| AppError::internal("no clipboard"))
    }

    fn put(&mut self, value: &str) -> Result<(), AppError> {
        self.get()?.set_text(value.to_string()).map_err(|e| AppError::new("clipboard", e.to_string()))?;
        self.ours = Some(Sha256::digest(value.as_bytes()).into());
        Ok(())
    }

    /// Clears it if it still holds our copy; true when cleared.
    fn clear_ours(&mut self) -> bool {
        let Some(ours) = self.ours.take() else { return false };
        let Ok(clipboard) = self.get() else { return false };
        let now = clipboard.get_text().unwrap_or_default();
        let still: [u8; 32] = Sha256::digest(now.as_bytes()).into();
        if still == ours {
            return clipboard.clear().is_ok() || clipboard.set_text(String::new()).is_ok();
        }
        false
    }
}

fn text_of(bytes: &SecretBytes) -> Result<String, AppError> {
    std::str::from_utf8(bytes.expose_secret())
        .map(String::from)
        .map_err(|_| AppError::input("this value is not text; use `portcullis secret checkout --allow-pipe` to a file"))
}

impl AppCore {
    pub fn secret_kinds(&self) -> Vec<SecretKindView> {
        SecretKind::ALL
            .iter()
            .map(|k| SecretKindView {
                kind: k.as_str().into(),
                primary: k.primary_field().into(),
                fields: k
                    .fields()
                    .iter()
                    .map(|f| SecretFieldView {
                        name: f.name.into(),
                        secret: f.secret,
                        required: f.required,
                        multiline: f.multiline,
                    })
                    .collect(),
            })
            .collect()
    }

    /// One page of secrets, by name.
    pub async fn secrets(&self, form: SecretQueryForm) -> Result<SecretPageView, AppError> {
        let query = SecretQuery {
            kind: form.kind.as_deref().filter(|k| !k.is_empty()).map(kind_named).transpose()?,
            env: form.env.filter(|e| !e.is_empty()),
            folder: form.folder.filter(|f| !f.is_empty()),
            search: form.search.filter(|s| !s.trim().is_empty()),
            expiring_within: form.expiring.then_some(EXPIRING_DAYS * 86_400),
            after: form.after,
            limit: Some(PAGE),
            ..SecretQuery::default()
        };
        let page = self.device().await?.api().secrets(&query).await?;
        let now = crate::now();
        Ok(SecretPageView { items: page.items.into_iter().map(|v| item(v, now)).collect(), next: page.next })
    }

    pub async fn add_secret(&self, form: NewSecretForm) -> Result<SecretItemView, AppError> {
        let kind = kind_named(&form.kind)?;
        let fields = form.fields.into_iter().map(read_field).collect::<Result<Vec<_>, _>>()?;
        let device = self.device().await?;
        let value = device.seal_secret(&form.name, &fields)?;
        drop(fields);
        let meta = SecretMeta {
            environment: form.environment,
            folder: form.folder,
            tags: form.tags,
            description: form.description,
            revealable: form.revealable,
            target: form.target.filter(|t| !t.is_empty()),
            ..SecretMeta::default()
        };
        let req = AddSecretRequest { name: form.name, kind, meta, reason: form.reason, value };
        Ok(item(device.api().add_secret(&req).await?, crate::now()))
    }

    /// A new value for `name` (the fields given; the others keep theirs): a new version.
    pub async fn new_secret_version(
        &self,
        name: &str,
        fields: Vec<SecretFieldInput>,
        reason: String,
    ) -> Result<SecretItemView, AppError> {
        let fields = fields.into_iter().map(read_field).collect::<Result<Vec<_>, _>>()?;
        let device = self.device().await?;
        let value = device.seal_secret(name, &fields)?;
        drop(fields);
        let req = EditSecretRequest { value: Some(value), reason, ..EditSecretRequest::default() };
        Ok(item(device.api().edit_secret(name, &req).await?, crate::now()))
    }

    pub async fn secret_history(&self, name: &str) -> Result<Vec<SecretVersionItemView>, AppError> {
        let versions = self.device().await?.api().secret_history(name).await?;
        Ok(versions
            .into_iter()
            .map(|v| SecretVersionItemView {
                version: v.version,
                created_at: v.created_at,
                created_by: v.created_by,
                reason: v.reason,
                restored_from: v.restored_from,
                destroyed: v.destroyed_at.is_some(),
                current: v.current,
            })
            .collect())
    }

    pub async fn restore_secret(&self, name: &str, version: i64, reason: String) -> Result<SecretItemView, AppError> {
        let req = RestoreSecretRequest { version, reason };
        Ok(item(self.device().await?.api().restore_secret(name, &req).await?, crate::now()))
    }

    /// Checks `name` out (or reveals it again under the same check-out) and returns its main
    /// field for the masked field: the reveal call.
    pub async fn reveal_secret(&self, name: &str) -> Result<RevealedView, AppError> {
        let (released, fields) = self.device().await?.checkout(name, RevealPurpose::Reveal, "desktop").await?;
        let primary = released.kind.primary_field();
        let value = fields.iter().find(|(n, _)| n == primary).map(|(_, v)| text_of(v)).transpose()?.unwrap_or_default();
        Ok(RevealedView { secret: released.secret, version: released.version, until: released.until, value })
    }

    /// Checks `name` out and puts its main field on the clipboard, cleared after
    /// [`CLIPBOARD_CLEAR`] (`PORTCULLIS_CLIPBOARD_CLEAR_SECS` in tests) if still there.
    pub async fn copy_secret(&self, name: &str) -> Result<CopiedView, AppError> {
        let (released, fields) = self.device().await?.checkout(name, RevealPurpose::Copy, "desktop").await?;
        let primary = released.kind.primary_field();
        let value = fields
            .iter()
            .find(|(n, _)| n == primary)
            .map(|(_, v)| text_of(v))
            .transpose()?
            .ok_or_else(|| AppError::internal("the released value has no main field"))?;
        drop(fields);
        let clear_after = std::env::var("PORTCULLIS_CLIPBOARD_CLEAR_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(CLIPBOARD_CLEAR);
        self.clipboard.lock().await.put(&value)?;
        drop(value);
        let clipboard = self.clipboard.clone();
        tokio::spawn(async move {
            tokio::time::sleep(clear_after).await;
            if clipboard.lock().await.clear_ours() {
                tracing::info!("cleared a copied secret from the clipboard");
            }
        });
        Ok(CopiedView {
            secret: released.secret,
            version: released.version,
            until: released.until,
            clears_in_secs: clear_after.as_secs() as u32,
        })
    }

    pub async fn checkin_secret(&self, name: &str) -> Result<CheckinView, AppError> {
        let back = self.device().await?.api().checkin_secret(name).await?;
        // What we copied of it is no longer needed.
        self.clipboard.lock().await.clear_ours();
        Ok(CheckinView { secret: back.secret, version: back.version, rotation: back.rotation })
    }
}
