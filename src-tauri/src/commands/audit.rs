use portcullis_app::SessionView;

use super::{Core, Result, reply};

#[tauri::command]
pub async fn my_sessions(core: Core<'_>) -> Result<Vec<SessionView>> {
    reply("my_sessions", core.my_sessions().await)
}

#[tauri::command]
pub async fn audit_sessions(core: Core<'_>) -> Result<Vec<SessionView>> {
    reply("audit_sessions", core.audit_sessions().await)
}

/// The recording (terminal output and keystrokes; never a credential) for the in-app player.
#[tauri::command]
pub async fn session_cast(core: Core<'_>, id: String) -> Result<String> {
    reply("session_cast", core.session_cast(&id).await)
}
