use portcullis_app::{LiveView, RequestView};
use tauri::ipc::Channel;

use super::{Core, Result};

#[tauri::command]
pub async fn list_requests(core: Core<'_>, pending_only: bool) -> Result<Vec<RequestView>> {
    core.requests(pending_only).await
}

#[tauri::command]
pub async fn create_request(core: Core<'_>, target: String, duration_secs: u64, reason: String) -> Result<RequestView> {
    core.create_request(&target, duration_secs, &reason).await
}

#[tauri::command]
pub async fn review_request(core: Core<'_>, id: String, approve: bool, reason: Option<String>) -> Result<RequestView> {
    core.review(&id, approve, reason).await
}

/// Live requests and decisions, pushed into `events` until the window goes away.
#[tauri::command]
pub async fn watch(core: Core<'_>, events: Channel<LiveView>) -> Result<()> {
    core.watch(move |event| events.send(event).is_ok()).await
}
