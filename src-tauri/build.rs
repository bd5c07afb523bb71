fn main() {
    // Only the commands listed here exist for the webview, and each needs a capability.
    let commands = &[
        "app_status",
        "create_standalone",
        "enroll",
        "unlock",
        "list_targets",
        "add_target",
        "update_target",
        "add_user",
        "list_gateways",
        "add_gateway",
        "list_requests",
        "create_request",
        "review_request",
        "key_pin",
        "revoke",
        "request_detail",
        "policy_show",
        "policy_check",
        "policy_save",
        "policy_test",
        "list_members",
        "list_groups",
        "add_group",
        "set_user_groups",
        "list_keys",
        "add_key",
        "remove_key",
        "watch",
        "connect",
        "terminal_input",
        "terminal_resize",
        "terminal_close",
        "my_sessions",
        "audit_sessions",
        "session_cast",
    ];
    tauri_build::try_build(
        tauri_build::Attributes::new().app_manifest(tauri_build::AppManifest::new().commands(commands)),
    )
    .unwrap_or_else(|e| panic!("tauri build: {e}"));
}
