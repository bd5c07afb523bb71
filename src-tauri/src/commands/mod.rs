//! Tauri commands, one file per domain; each maps 1:1 onto an `AppCore` method, and each
//! answer goes through [`reply`] so test builds can audit every payload the webview receives.

pub mod access;
pub mod app;
pub mod audit;
pub mod governance;
pub mod secrets;
pub mod terminal;
pub mod vault;

use serde::Serialize;

pub type Core<'a> = tauri::State<'a, portcullis_app::AppCore>;
pub type Result<T> = std::result::Result<T, portcullis_app::AppError>;

pub fn reply<T: Serialize>(command: &str, result: Result<T>) -> Result<T> {
    crate::ipc_audit::outgoing(command, &result);
    result
}
