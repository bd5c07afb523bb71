use portcullis_app::{GatewayView, NewGatewayView, NewTargetForm, NewUserView, TargetView, VaultFilter};

use super::{Core, Result, reply};

#[tauri::command]
pub async fn list_targets(core: Core<'_>, filter: VaultFilter) -> Result<Vec<TargetView>> {
    reply("list_targets", core.targets(filter.into()).await)
}

/// The credential in `form` goes straight into the core; nothing comes back but the target.
#[tauri::command]
pub async fn add_target(core: Core<'_>, form: NewTargetForm) -> Result<TargetView> {
    reply("add_target", core.add_target(form).await)
}

/// Edits a target; a credential in `form` (if any) rotates the stored one. Nothing comes back but the target.
#[tauri::command]
pub async fn update_target(core: Core<'_>, form: NewTargetForm) -> Result<TargetView> {
    reply("update_target", core.update_target(form).await)
}

#[tauri::command]
pub async fn add_user(core: Core<'_>, name: String, roles: Vec<String>, groups: Vec<String>) -> Result<NewUserView> {
    reply("add_user", core.add_user(&name, roles, groups).await)
}

#[tauri::command]
pub async fn confirm_user(core: Core<'_>, name: String) -> Result<NewUserView> {
    reply("confirm_user", core.confirm_user(&name).await)
}

#[tauri::command]
pub async fn list_gateways(core: Core<'_>) -> Result<Vec<GatewayView>> {
    reply("list_gateways", core.gateways().await)
}

#[tauri::command]
pub async fn add_gateway(core: Core<'_>, name: String) -> Result<NewGatewayView> {
    reply("add_gateway", core.add_gateway(&name).await)
}
