//! The Portcullis desktop app: a Tauri 2 shell. Each command is a line or two over
//! `portcullis_app::AppCore`; no crypto, SQL or access logic lives here.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod ipc_audit;

use std::path::PathBuf;

use portcullis_app::AppCore;
use portcullis_keystore::Preference;
use tauri::Manager;

/// Records each command's arguments (test builds) before the command runs.
fn with_ipc_audit(
    handler: impl Fn(tauri::ipc::Invoke) -> bool + Send + Sync + 'static,
) -> impl Fn(tauri::ipc::Invoke) -> bool + Send + Sync + 'static {
    move |invoke| {
        ipc_audit::incoming(&invoke.message);
        handler(invoke)
    }
}

fn main() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    if let Ok(d) = "russh=info".parse() {
        filter = filter.add_directive(d);
    }
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let result = tauri::Builder::default()
        .setup(|app| {
            // PORTCULLIS_APP_DIR lets several instances (tests, demos) keep separate state.
            let dir = match std::env::var_os("PORTCULLIS_APP_DIR") {
                Some(dir) => PathBuf::from(dir),
                None => app.path().app_data_dir()?,
            };
            let core = AppCore::new(&dir, Preference::Auto);
            // Demos and benchmarks: set a fresh app up before the window asks for its status.
            if let Some(seed) = std::env::var_os("PORTCULLIS_SEED") {
                let seed = std::fs::read(&seed).map_err(|e| format!("PORTCULLIS_SEED: {e}"))?;
                let seed = serde_json::from_slice(&seed).map_err(|e| format!("PORTCULLIS_SEED: {e}"))?;
                tauri::async_runtime::block_on(core.seed(seed)).map_err(|e| format!("PORTCULLIS_SEED: {e}"))?;
            }
            app.manage(core);
            Ok(())
        })
        .plugin(tauri_plugin_notification::init())
        .invoke_handler(with_ipc_audit(tauri::generate_handler![
            commands::app::app_status,
            commands::app::create_standalone,
            commands::app::enroll,
            commands::app::unlock,
            commands::vault::list_targets,
            commands::vault::add_target,
            commands::vault::update_target,
            commands::vault::add_user,
            commands::vault::confirm_user,
            commands::vault::list_gateways,
            commands::vault::add_gateway,
            commands::secrets::secret_kinds,
            commands::secrets::list_secrets,
            commands::secrets::add_secret,
            commands::secrets::new_secret_version,
            commands::secrets::secret_history,
            commands::secrets::restore_secret,
            commands::secrets::reveal_secret,
            commands::secrets::copy_secret,
            commands::secrets::checkin_secret,
            commands::access::list_requests,
            commands::access::create_request,
            commands::access::review_request,
            commands::access::key_pin,
            commands::access::revoke,
            commands::access::request_detail,
            commands::governance::policy_show,
            commands::governance::policy_check,
            commands::governance::policy_save,
            commands::governance::policy_test,
            commands::governance::list_members,
            commands::governance::list_groups,
            commands::governance::add_group,
            commands::governance::set_user_groups,
            commands::governance::list_keys,
            commands::governance::add_key,
            commands::governance::remove_key,
            commands::access::watch,
            commands::terminal::connect,
            commands::terminal::terminal_input,
            commands::terminal::terminal_resize,
            commands::terminal::terminal_close,
            commands::audit::my_sessions,
            commands::audit::audit_sessions,
            commands::audit::session_cast,
            commands::audit::verify_session,
            commands::audit::export_bundle,
            commands::audit::audit_alarms,
        ]))
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("portcullis-desktop: {e}");
        std::process::exit(1);
    }
}
