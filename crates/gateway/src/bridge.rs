//! One user channel bridged to one target channel.
//!
//! The user's side is driven by the SSH server handler ([`crate::session`]), which forwards
//! requests and data upstream in the order they arrive, waiting for the target's answer to each
//! request (so `want_reply` is answered from the target). The target's side is a pump task that
//! forwards data, stderr, exit status, EOF and close to the user in the order the target sent
//! them. A recorder task, fed through a bounded queue, writes the record log; if it cannot, the
//! session is stopped. Grant expiry and the user hanging up end the pump.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, client, server};
use tokio::sync::{Notify, mpsc, watch};

use crate::log::RecordLog;
use crate::recorder::Recorder;

/// What the recorder task receives.
pub enum RecordEvent {
    Input(Bytes),
    Output(Bytes),
    Stderr(Bytes),
    Resize(u16, u16),
    Finish { exit_status: Option<u32>, reason: String },
}

impl RecordEvent {
    fn size(&self) -> usize {
        match self {
            RecordEvent::Input(b) | RecordEvent::Output(b) | RecordEvent::Stderr(b) => b.len(),
            _ => 16,
        }
    }
}

/// Wake the recorder when this much waits (a bulk copy); keystrokes wait for its timer, so an
/// interactive round trip costs no extra task wake-up.
const WAKE_AT: usize = 32 * 1024;
/// Producers wait when this much is queued: memory stays bounded under a slow disk.
const MAX_QUEUED: usize = 1024 * 1024;

#[derive(Default)]
struct QueueState {
    events: VecDeque<RecordEvent>,
    bytes: usize,
    /// The session runs (its start is recorded): events are kept from then on.
    active: bool,
    closed: bool,
}

/// Between the bridge (producers: the user's side and the target's) and the recorder task.
#[derive(Default)]
pub struct RecordQueue {
    state: Mutex<QueueState>,
    wake: Notify,
    space: Notify,
}

impl RecordQueue {
    /// Queues `event` for the recorder, waiting while the queue is full. False when the recorder
    /// is gone (it failed): the caller must not forward what it could not record.
    pub async fn push(&self, event: RecordEvent) -> bool {
        let mut event = Some(event);
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let Ok(mut state) = self.state.lock() else { return false };
                if state.closed {
                    return false;
                }
                if !state.active {
                    return true;
                }
                if state.bytes < MAX_QUEUED || state.events.is_empty() {
                    let Some(event) = event.take() else { return true };
                    let urgent = matches!(event, RecordEvent::Finish { .. });
                    state.bytes += event.size();
                    state.events.push_back(event);
                    let wake = urgent || state.bytes >= WAKE_AT;
                    drop(state);
                    if wake {
                        self.wake.notify_one();
                    }
                    return true;
                }
            }
            space.await;
        }
    }

    fn activate(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.active = true;
        }
    }

    fn take(&self) -> Vec<RecordEvent> {
        let taken = match self.state.lock() {
            Ok(mut state) => {
                state.bytes = 0;
                state.events.drain(..).collect()
            }
            Err(_) => Vec::new(),
        };
        self.space.notify_waiters();
        taken
    }

    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
            state.events.clear();
        }
        self.space.notify_waiters();
    }
}

/// Why a bridged session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    Exit,
    GrantExpired,
    Disconnected,
    /// The user closed the channel before the target's side ended (a closed terminal tab).
    Closed,
    RecordingFailed,
}

impl EndReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::Exit => "exit",
            EndReason::GrantExpired => "grant_expired",
            EndReason::Disconnected => "disconnected",
            EndReason::Closed => "closed",
            EndReason::RecordingFailed => "error: recording failed",
        }
    }
}

pub const EXPIRED_MESSAGE: &[u8] = b"\r\n[portcullis] access grant expired; the session was closed.\r\n";
const RECORDING_FAILED_MESSAGE: &[u8] = b"\r\n[portcullis] the session could not be recorded and was stopped.\r\n";

/// Runs the recorder for one session: events in (from `queue`), records out. A failed write
/// closes the queue (nothing more is forwarded) and wakes `kill`.
pub fn spawn_recorder(
    mut recorder: Recorder<Arc<RecordLog>>,
    queue: Arc<RecordQueue>,
    kill: Arc<Notify>,
) -> tokio::task::JoinHandle<()> {
    queue.activate();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ended = None;
        let failed = 'run: loop {
            tokio::select! {
                _ = queue.wake.notified() => {}
                _ = tick.tick() => {}
            }
            for event in queue.take() {
                let step = match event {
                    RecordEvent::Input(data) => recorder.input(&data).await,
                    RecordEvent::Output(data) => recorder.output(&data).await,
                    RecordEvent::Stderr(data) => recorder.stderr(&data).await,
                    RecordEvent::Resize(cols, rows) => recorder.resize(cols, rows).await,
                    RecordEvent::Finish { exit_status, reason } => {
                        ended = Some((exit_status, reason));
                        break 'run None;
                    }
                };
                if let Err(e) = step {
                    break 'run Some(e);
                }
            }
            // What this round made is written at once: one durable write per round.
            if let Err(e) = recorder.flush().await {
                break 'run Some(e);
            }
            if let Err(e) = recorder.commit().await {
                break 'run Some(e);
            }
        };
        queue.close();
        if let Some(e) = failed {
            tracing::error!(session = %recorder.session_id(), error = %e, "recording failed; stopping the session");
            kill.notify_one();
            return;
        }
        let (exit_status, reason) = ended.unwrap_or((None, EndReason::Disconnected.as_str().to_string()));
        if let Err(e) = recorder.finish(exit_status, &reason, crate::now_f64()).await {
            tracing::error!(error = %e, "the session's end could not be recorded");
        }
    })
}

/// Everything the pump needs.
pub struct Pump {
    pub upstream: ChannelReadHalf,
    pub upstream_write: Arc<ChannelWriteHalf<client::Msg>>,
    pub client: Arc<ChannelWriteHalf<server::Msg>>,
    pub handle: server::Handle,
    pub replies: mpsc::Sender<bool>,
    /// The session's recorder queue (active once the session starts; the target sends nothing
    /// before a shell, command or subsystem runs).
    pub recorder: Arc<RecordQueue>,
    pub kill: Arc<Notify>,
    /// Resolves when the user's connection is gone.
    pub hangup: watch::Receiver<()>,
    /// Set when the user closed the channel.
    pub closed_by_user: Arc<std::sync::atomic::AtomicBool>,
    pub not_after: i64,
}

impl Pump {
    /// Forwards the target's side to the user until the target closes the channel, the grant
    /// expires, recording fails or the user hangs up; then records the end.
    pub async fn run(mut self) {
        let until = UNIX_EPOCH + Duration::from_secs(self.not_after.max(0) as u64);
        let expiry = tokio::time::sleep(until.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO));
        tokio::pin!(expiry);
        let id = self.client.id();
        let mut exit_status = None;
        let reason = loop {
            tokio::select! {
                msg = self.upstream.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        if !self.recorder.push(RecordEvent::Output(data.clone())).await {
                            break EndReason::RecordingFailed;
                        }
                        if self.client.data_bytes(data).await.is_err() {
                            break EndReason::Disconnected;
                        }
                    }
                    Some(ChannelMsg::ExtendedData { data, ext }) => {
                        if !self.recorder.push(RecordEvent::Stderr(data.clone())).await {
                            break EndReason::RecordingFailed;
                        }
                        if self.client.extended_data_bytes(ext, data).await.is_err() {
                            break EndReason::Disconnected;
                        }
                    }
                    Some(ChannelMsg::ExitStatus { exit_status: status }) => {
                        exit_status = Some(status);
                        let _ = self.client.exit_status(status).await;
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, lang_tag }) => {
                        exit_status = exit_status.or(Some(255));
                        let _ = self.handle.exit_signal_request(id, signal_name, core_dumped, error_message, lang_tag).await;
                    }
                    Some(ChannelMsg::Eof) => {
                        let _ = self.client.eof().await;
                    }
                    Some(ChannelMsg::Success) => {
                        let _ = self.replies.send(true).await;
                    }
                    Some(ChannelMsg::Failure) => {
                        let _ = self.replies.send(false).await;
                    }
                    Some(ChannelMsg::Close) | None => {
                        let _ = self.client.close().await;
                        break if exit_status.is_some() {
                            EndReason::Exit
                        } else if self.closed_by_user.load(std::sync::atomic::Ordering::SeqCst) {
                            EndReason::Closed
                        } else {
                            EndReason::Disconnected
                        };
                    }
                    Some(_) => {}
                },
                _ = &mut expiry => {
                    let _ = self.client.extended_data_bytes(1, Bytes::from_static(EXPIRED_MESSAGE)).await;
                    break EndReason::GrantExpired;
                }
                _ = self.kill.notified() => break EndReason::RecordingFailed,
                _ = self.hangup.changed() => break if self.closed_by_user.load(std::sync::atomic::Ordering::SeqCst) {
                    EndReason::Closed
                } else {
                    EndReason::Disconnected
                },
            }
        };
        if reason == EndReason::RecordingFailed {
            let _ = self.client.extended_data_bytes(1, Bytes::from_static(RECORDING_FAILED_MESSAGE)).await;
        }
        if !matches!(reason, EndReason::Exit | EndReason::Closed) {
            let _ = self.upstream_write.close().await;
            let _ = self.client.close().await;
        }
        if reason == EndReason::GrantExpired {
            let _ = self
                .handle
                .disconnect(russh::Disconnect::ByApplication, "access grant expired".into(), "en".into())
                .await;
        }
        self.recorder.push(RecordEvent::Finish { exit_status, reason: reason.as_str().to_string() }).await;
    }
}
