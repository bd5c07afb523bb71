//! Debug builds only: with `PORTCULLIS_IPC_AUDIT=FILE`, every payload that crosses the IPC
//! boundary — command arguments in, results, errors and channel events out — is appended to FILE
//! as one JSON line, so the GUI tests can scan all of them for a canary credential. Release
//! builds compile this to nothing.

use serde::Serialize;

#[cfg(debug_assertions)]
fn append(direction: &str, command: &str, payload: serde_json::Value) {
    use std::io::Write;
    let Some(path) = std::env::var_os("PORTCULLIS_IPC_AUDIT") else { return };
    let mut line = serde_json::json!({ "direction": direction, "command": command, "payload": payload }).to_string();
    line.push('\n');
    // One write per line: concurrent commands append whole lines (O_APPEND), never interleaved.
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = file.write_all(line.as_bytes());
    }
}

/// A command's arguments, as the webview sent them.
pub fn incoming(message: &tauri::ipc::InvokeMessage<tauri::Wry>) {
    #[cfg(debug_assertions)]
    {
        // A security key's PIN goes to the key and nowhere else, not even this audit file.
        let payload = match message.payload() {
            _ if message.command() == "key_pin" => serde_json::Value::String("<redacted>".into()),
            tauri::ipc::InvokeBody::Json(v) => v.clone(),
            tauri::ipc::InvokeBody::Raw(bytes) => String::from_utf8_lossy(bytes).into_owned().into(),
        };
        append("in", message.command(), payload);
    }
    #[cfg(not(debug_assertions))]
    let _ = message;
}

/// Anything going to the webview: a command's result or error, or a channel event.
pub fn outgoing<T: Serialize>(command: &str, payload: &T) {
    #[cfg(debug_assertions)]
    append("out", command, serde_json::to_value(payload).unwrap_or_else(|e| e.to_string().into()));
    #[cfg(not(debug_assertions))]
    let _ = (command, payload);
}
