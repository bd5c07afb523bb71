use portcullis_app::{
    GroupSummaryView, KeyPromptView, KeyView, MemberView, PolicyCheckView, PolicySetView, PolicyTestForm,
    PolicyTestView,
};
use tauri::ipc::Channel;

use super::{Core, Result, reply};

#[tauri::command]
pub async fn policy_show(core: Core<'_>) -> Result<PolicySetView> {
    reply("policy_show", core.policy().await)
}

#[tauri::command]
pub async fn policy_check(core: Core<'_>, text: String) -> Result<PolicyCheckView> {
    reply("policy_check", core.check_policy(&text).await)
}

#[tauri::command]
pub async fn policy_save(core: Core<'_>, text: String) -> Result<PolicySetView> {
    reply("policy_save", core.save_policy(&text).await)
}

#[tauri::command]
pub async fn policy_test(core: Core<'_>, form: PolicyTestForm) -> Result<PolicyTestView> {
    reply("policy_test", core.test_policy(form).await)
}

#[tauri::command]
pub async fn list_members(core: Core<'_>) -> Result<Vec<MemberView>> {
    reply("list_members", core.members().await)
}

#[tauri::command]
pub async fn list_groups(core: Core<'_>) -> Result<Vec<GroupSummaryView>> {
    reply("list_groups", core.groups().await)
}

#[tauri::command]
pub async fn add_group(core: Core<'_>, name: String) -> Result<GroupSummaryView> {
    reply("add_group", core.add_group(&name).await)
}

#[tauri::command]
pub async fn set_user_groups(core: Core<'_>, user: String, groups: Vec<String>) -> Result<MemberView> {
    reply("set_user_groups", core.set_user_groups(&user, groups).await)
}

#[tauri::command]
pub async fn list_keys(core: Core<'_>) -> Result<Vec<KeyView>> {
    reply("list_keys", core.keys().await)
}

/// Registers a security key; its prompts (touch, PIN) go to `prompts`.
#[tauri::command]
pub async fn add_key(core: Core<'_>, name: String, prompts: Channel<KeyPromptView>) -> Result<KeyView> {
    let added = core
        .add_key(&name, move |prompt| {
            crate::ipc_audit::outgoing("add_key", &prompt);
            let _ = prompts.send(prompt);
        })
        .await;
    reply("add_key", added)
}

/// Removes a security key, confirmed with one of the user's keys (prompts go to `prompts`).
#[tauri::command]
pub async fn remove_key(core: Core<'_>, key: String, prompts: Channel<KeyPromptView>) -> Result<KeyView> {
    let removed = core
        .remove_key(&key, move |prompt| {
            crate::ipc_audit::outgoing("remove_key", &prompt);
            let _ = prompts.send(prompt);
        })
        .await;
    reply("remove_key", removed)
}
