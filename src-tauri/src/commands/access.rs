use portcullis_app::{KeyPromptView, LiveView, RequestDetailView, RequestView, RevokeView};
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

/// Approves or denies; when the policy asks for a security key, its prompts (touch, PIN) go
/// to `prompts` while the ceremony runs.
#[tauri::command]
pub async fn review_request(
    core: Core<'_>,
    id: String,
    approve: bool,
    reason: Option<String>,
    prompts: Channel<KeyPromptView>,
) -> Result<RequestView> {
    let reviewed = core
        .review(&id, approve, reason, move |prompt| {
            crate::ipc_audit::outgoing("review_request", &prompt);
            let _ = prompts.send(prompt);
        })
        .await;
    reply("review_request", reviewed)
}

/// The PIN for a waiting security-key ceremony (`null`: cancelled).
#[tauri::command]
pub fn key_pin(core: Core<'_>, pin: Option<String>) -> Result<()> {
    reply("key_pin", core.key_pin(pin))
}

#[tauri::command]
pub async fn revoke(core: Core<'_>, id: String, reason: Option<String>) -> Result<RevokeView> {
    reply("revoke", core.revoke(&id, reason).await)
}

#[tauri::command]
pub async fn request_detail(core: Core<'_>, id: String) -> Result<RequestDetailView> {
    reply("request_detail", core.request_detail(&id).await)
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
