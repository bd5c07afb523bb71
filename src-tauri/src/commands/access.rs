use portcullis_app::{LiveView, RequestView};
use tauri::ipc::Channel;

use super::{Core, Result, reply};

#[tauri::command]
pub async fn list_requests(core: Core<'_>, pending_only: bool) -> Result<Vec<RequestView>> {
    reply("list_requests", core.requests(pending_only).await)
}

#[tauri::command]
pub async fn create_request(core: Core<'_>, target: String, duration_secs: u64, reason: String) -> Result<RequestView> {
    reply("create_request", core.create_request(&target, duration_secs, &reason).await)
}

#[tauri::command]
pub async fn review_request(core: Core<'_>, id: String, approve: bool, reason: Option<String>) -> Result<RequestView> {
    reply("review_request", core.review(&id, approve, reason).await)
}

/// Live requests and decisions, pushed into `events` until the window goes away.
#[tauri::command]
pub async fn watch(core: Core<'_>, events: Channel<LiveView>) -> Result<()> {
    let watching = core
        .watch(move |event| {
            crate::ipc_audit::outgoing("watch", &event);
            events.send(event).is_ok()
        })
        .await;
    reply("watch", watching)
}
