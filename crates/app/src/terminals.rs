//! In-app terminals: each is one session through the gateway (`ssh::run`) with channels to the
//! window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use portcullis_client::Device;
use portcullis_client::ssh::{self, EndReason, Input, Output, Pty, SessionOptions};
use serde::Serialize;
use tokio::sync::mpsc;
use ts_rs::TS;

use crate::AppError;

/// What the window's terminal receives.
#[derive(Clone, Debug, Serialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TerminalEvent {
    /// Terminal bytes (UTF-8, lossily decoded for the webview).
    Output { data: String },
    /// The session ended; `message` explains why (exit status, grant expiry, refusal).
    Closed { message: String, exit_status: Option<u32> },
}

#[derive(Default)]
pub struct Terminals {
    inputs: Arc<Mutex<HashMap<String, mpsc::Sender<Input>>>>,
}

impl Terminals {
    pub fn open(
        &self,
        device: Arc<Device>,
        target: String,
        cols: u16,
        rows: u16,
        sink: impl Fn(TerminalEvent) + Send + Sync + 'static,
    ) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let (input_tx, input_rx) = mpsc::channel::<Input>(64);
        let (output_tx, mut output_rx) = mpsc::channel::<Output>(64);
        if let Ok(mut inputs) = self.inputs.lock() {
            inputs.insert(id.clone(), input_tx);
        }
        let sink = Arc::new(sink);
        let forward = sink.clone();
        let pump = tokio::spawn(async move {
            let mut pending = Vec::new();
            while let Some(chunk) = output_rx.recv().await {
                let (Output::Stdout(data) | Output::Stderr(data)) = chunk;
                pending.extend_from_slice(&data);
                // Do not split a UTF-8 sequence between two events.
                let valid = match std::str::from_utf8(&pending) {
                    Ok(_) => pending.len(),
                    Err(e) if e.error_len().is_none() => e.valid_up_to(),
                    Err(_) => pending.len(),
                };
                let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
                pending.drain(..valid);
                forward(TerminalEvent::Output { data: text });
            }
        });
        let inputs = self.inputs.clone();
        let id_for_task = id.clone();
        tokio::spawn(async move {
            let options =
                SessionOptions { command: None, pty: Some(Pty { term: "xterm-256color".into(), cols, rows }) };
            let result = ssh::run(&device, &target, options, input_rx, output_tx).await;
            let _ = pump.await;
            if let Ok(mut inputs) = inputs.lock() {
                inputs.remove(&id_for_task);
            }
            let event = match result {
                Ok(outcome) => {
                    let why = match outcome.reason {
                        EndReason::GrantExpired => "access grant expired; session closed".to_string(),
                        EndReason::Revoked => "access revoked; session closed".to_string(),
                        EndReason::Exit => match outcome.exit_status {
                            Some(code) => format!("session ended (exit status {code})"),
                            None => "session ended".to_string(),
                        },
                        EndReason::Disconnected
                        | EndReason::RecordingFailed
                        | EndReason::InputCap
                        | EndReason::ProtocolViolation => "disconnected".to_string(),
                        EndReason::Closed => "session closed".to_string(),
                    };
                    TerminalEvent::Closed { message: why, exit_status: outcome.exit_status }
                }
                Err(e) => TerminalEvent::Closed { message: AppError::from(e).message, exit_status: None },
            };
            sink(event);
        });
        id
    }

    pub async fn input(&self, id: &str, input: Input) -> Result<(), AppError> {
        let tx = self.inputs.lock().ok().and_then(|m| m.get(id).cloned());
        let tx = tx.ok_or_else(|| AppError::new("no_session", "that terminal is closed"))?;
        tx.send(input).await.map_err(|_| AppError::new("no_session", "that terminal is closed"))
    }

    /// Closing the tab ends the session: the connection to the gateway is hung up, which ends
    /// whatever runs on the target.
    pub async fn close(&self, id: &str) -> Result<(), AppError> {
        let tx = self.inputs.lock().ok().and_then(|mut m| m.remove(id));
        if let Some(tx) = tx {
            let _ = tx.send(Input::Close).await;
        }
        Ok(())
    }
}
