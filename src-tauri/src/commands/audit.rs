use portcullis_app::{AlarmView, BundleCheckView, SessionView};

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

/// Checks a session's evidence in the core, offline, against the pinned server key.
#[tauri::command]
pub async fn verify_session(core: Core<'_>, id: String) -> Result<BundleCheckView> {
    reply("verify_session", core.verify_session(&id).await)
}

/// Writes the session's bundle to a file; the path comes back.
#[tauri::command]
pub async fn export_bundle(core: Core<'_>, id: String) -> Result<String> {
    reply("export_bundle", core.export_bundle(&id).await)
}

#[tauri::command]
pub async fn audit_alarms(core: Core<'_>) -> Result<Vec<AlarmView>> {
    reply("audit_alarms", core.audit_alarms().await)
}
