//! Tauri commands, one file per domain; each maps 1:1 onto an `AppCore` method.

pub mod access;
pub mod app;
pub mod audit;
pub mod terminal;
pub mod vault;

pub type Core<'a> = tauri::State<'a, portcullis_app::AppCore>;
pub type Result<T> = std::result::Result<T, portcullis_app::AppError>;
