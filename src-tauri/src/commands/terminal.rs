use portcullis_app::TerminalEvent;
use tauri::ipc::Channel;

use super::{Core, Result};

#[tauri::command]
pub async fn connect(
    core: Core<'_>,
    target: String,
    cols: u16,
    rows: u16,
    events: Channel<TerminalEvent>,
) -> Result<String> {
    core.connect(&target, cols, rows, move |event| {
        let _ = events.send(event);
    })
    .await
}

#[tauri::command]
pub async fn terminal_input(core: Core<'_>, id: String, data: String) -> Result<()> {
    core.terminal_input(&id, data).await
}

#[tauri::command]
pub async fn terminal_resize(core: Core<'_>, id: String, cols: u16, rows: u16) -> Result<()> {
    core.terminal_resize(&id, cols, rows).await
}

#[tauri::command]
pub async fn terminal_close(core: Core<'_>, id: String) -> Result<()> {
    core.terminal_close(&id).await
}
