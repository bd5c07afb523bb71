use portcullis_app::TerminalEvent;
use tauri::ipc::Channel;

use super::{Core, Result, reply};

#[tauri::command]
pub async fn connect(
    core: Core<'_>,
    target: String,
    cols: u16,
    rows: u16,
    events: Channel<TerminalEvent>,
) -> Result<String> {
    let opened = core
        .connect(&target, cols, rows, move |event| {
            crate::ipc_audit::outgoing("connect", &event);
            let _ = events.send(event);
        })
        .await;
    reply("connect", opened)
}

#[tauri::command]
pub async fn terminal_input(core: Core<'_>, id: String, data: String) -> Result<()> {
    reply("terminal_input", core.terminal_input(&id, data).await)
}

#[tauri::command]
pub async fn terminal_resize(core: Core<'_>, id: String, cols: u16, rows: u16) -> Result<()> {
    reply("terminal_resize", core.terminal_resize(&id, cols, rows).await)
}

#[tauri::command]
pub async fn terminal_close(core: Core<'_>, id: String) -> Result<()> {
    reply("terminal_close", core.terminal_close(&id).await)
}
