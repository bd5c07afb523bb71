use portcullis_app::{
    CheckinView, CopiedView, NewSecretForm, RevealedView, SecretFieldInput, SecretItemView, SecretKindView,
    SecretPageView, SecretQueryForm, SecretVersionItemView,
};

use super::{Core, Result, reply};

#[tauri::command]
pub async fn secret_kinds(core: Core<'_>) -> Result<Vec<SecretKindView>> {
    reply("secret_kinds", Ok(core.secret_kinds()))
}

#[tauri::command]
pub async fn list_secrets(core: Core<'_>, query: SecretQueryForm) -> Result<SecretPageView> {
    reply("list_secrets", core.secrets(query).await)
}

/// The value (typed, or read from a file by the core) goes straight in; only metadata comes back.
#[tauri::command]
pub async fn add_secret(core: Core<'_>, form: NewSecretForm) -> Result<SecretItemView> {
    reply("add_secret", core.add_secret(form).await)
}

#[tauri::command]
pub async fn new_secret_version(
    core: Core<'_>,
    name: String,
    fields: Vec<SecretFieldInput>,
    reason: String,
) -> Result<SecretItemView> {
    reply("new_secret_version", core.new_secret_version(&name, fields, reason).await)
}

#[tauri::command]
pub async fn secret_history(core: Core<'_>, name: String) -> Result<Vec<SecretVersionItemView>> {
    reply("secret_history", core.secret_history(&name).await)
}

#[tauri::command]
pub async fn restore_secret(core: Core<'_>, name: String, version: i64, reason: String) -> Result<SecretItemView> {
    reply("restore_secret", core.restore_secret(&name, version, reason).await)
}

/// The one command whose answer carries a secret value (for the masked field; audited).
#[tauri::command]
pub async fn reveal_secret(core: Core<'_>, name: String) -> Result<RevealedView> {
    reply("reveal_secret", core.reveal_secret(&name).await)
}

/// The value goes from the core to the clipboard; the window never holds it.
#[tauri::command]
pub async fn copy_secret(core: Core<'_>, name: String) -> Result<CopiedView> {
    reply("copy_secret", core.copy_secret(&name).await)
}

#[tauri::command]
pub async fn checkin_secret(core: Core<'_>, name: String) -> Result<CheckinView> {
    reply("checkin_secret", core.checkin_secret(&name).await)
}
