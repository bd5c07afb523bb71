use portcullis_app::AppStatus;

use super::{Core, Result, reply};

#[tauri::command]
pub async fn app_status(core: Core<'_>) -> Result<AppStatus> {
    reply("app_status", Ok(core.status().await))
}

#[tauri::command]
pub async fn create_standalone(core: Core<'_>, admin_name: String, passphrase: Option<String>) -> Result<AppStatus> {
    reply("create_standalone", core.create_standalone(&admin_name, passphrase).await)
}

#[tauri::command]
pub async fn enroll(core: Core<'_>, server_url: String, code: String, passphrase: Option<String>) -> Result<AppStatus> {
    reply("enroll", core.enroll(&server_url, &code, passphrase).await)
}

#[tauri::command]
pub async fn unlock(core: Core<'_>, passphrase: Option<String>) -> Result<AppStatus> {
    reply("unlock", core.unlock(passphrase).await)
}
