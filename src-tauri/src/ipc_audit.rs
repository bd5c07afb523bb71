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

/// Fields that hold what a person typed as a secret.
#[cfg(debug_assertions)]
const SECRET_FIELDS: &[&str] = &["pin", "passphrase", "password", "credential", "secret", "code", "private_key"];

/// Commands whose `text` fields are a secret's value being stored.
#[cfg(debug_assertions)]
const SECRET_VALUE_COMMANDS: &[&str] = &["add_secret", "new_secret_version"];

/// `value` with every secret field (at any depth) replaced; `text` fields too when `values`.
#[cfg(debug_assertions)]
fn redacted(value: serde_json::Value, values: bool) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| {
                let secret =
                    SECRET_FIELDS.iter().any(|s| k.to_ascii_lowercase().contains(s)) || (values && k == "text");
                let size = v.as_str().map(str::len).unwrap_or_default();
                (
                    k,
                    if secret && !v.is_null() {
                        format!("<redacted {size} bytes>").into()
                    } else {
                        redacted(v, values)
                    },
                )
            })
            .collect(),
        serde_json::Value::Array(items) => items.into_iter().map(|v| redacted(v, values)).collect(),
        other => other,
    }
}

/// A command's arguments, as the webview sent them (secret fields redacted).
pub fn incoming(message: &tauri::ipc::InvokeMessage<tauri::Wry>) {
    #[cfg(debug_assertions)]
    {
        // Secrets the user types (a PIN, a passphrase, a credential being stored) go where they
        // are for and nowhere else, not even this audit file; an enrolment code works once.
        let payload = match message.payload() {
            _ if message.command() == "key_pin" => serde_json::Value::String("<redacted>".into()),
            tauri::ipc::InvokeBody::Json(v) => redacted(v.clone(), SECRET_VALUE_COMMANDS.contains(&message.command())),
            tauri::ipc::InvokeBody::Raw(_) => serde_json::Value::String("<raw bytes, redacted>".into()),
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
