//! One user channel bridged to one target channel.
//!
//! The user's side is driven by the SSH server handler ([`crate::session`]), which forwards
//! requests and data upstream in the order they arrive, waiting for the target's answer to each
//! request (so `want_reply` is answered from the target). The target's side is driven by the
//! target connection's handler through a [`Route`], which forwards data, stderr, exit status,
//! EOF and close to the user in the order the target sent them. A recorder task, fed through a
//! bounded queue, writes the record log; if it cannot, the session is stopped. Grant expiry
//! and the user hanging up end the channel ([`watch_channel`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use russh::{ChannelId, ChannelWriteHalf, Sig, client, server};
use tokio::sync::{Notify, mpsc, watch};

use portcullis_proto::EndReason;

use crate::log::RecordLog;
use crate::recorder::Recorder;
use crate::sftp::{Recorded, SftpGate, refused_operation};

/// What the recorder task receives.
pub enum RecordEvent {
    Input(Bytes),
    Output(Bytes),
    Stderr(Bytes),
    Resize(u16, u16),
    /// What the sftp gate made of packets it let through.
    Sftp(Vec<Recorded>),
    Finish {
        exit_status: Option<u32>,
        reason: String,
    },
}

impl RecordEvent {
    fn size(&self) -> usize {
        match self {
            RecordEvent::Input(b) | RecordEvent::Output(b) | RecordEvent::Stderr(b) => b.len(),
            RecordEvent::Sftp(records) => 256 * records.len(),
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

pub const EXPIRED_MESSAGE: &[u8] = b"\r\n[portcullis] access grant expired; the session was closed.\r\n";
const RECORDING_FAILED_MESSAGE: &[u8] = b"\r\n[portcullis] the session could not be recorded and was stopped.\r\n";
const INPUT_CAP_MESSAGE: &[u8] = b"\r\n[portcullis] this command was sent more input than the gateway records in full \
(the server's --exec-record-limit); it was stopped. Move files with scp, sftp or rsync.\r\n";
const PROTOCOL_VIOLATION_MESSAGE: &[u8] =
    b"\r\n[portcullis] the file transfer broke its protocol, so the gateway cannot record it; the session was stopped.\r\n";

/// Runs the recorder for one session: events in (from `queue`), records out. A failed write
/// closes the queue (nothing more is forwarded) and wakes the route's `kill`; an scp stream the
/// recorder can no longer follow ends the session as a protocol violation.
pub fn spawn_recorder(
    mut recorder: Recorder<Arc<RecordLog>>,
    queue: Arc<RecordQueue>,
    route: Arc<Route>,
) -> tokio::task::JoinHandle<()> {
    let kill = route.kill.clone();
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
                    RecordEvent::Sftp(records) => recorder.sftp(records).await,
                    RecordEvent::Finish { exit_status, reason } => {
                        ended = Some((exit_status, reason));
                        break 'run None;
                    }
                };
                if let Err(e) = step {
                    break 'run Some(e);
                }
                if let Some(why) = recorder.violation()
                    && !route.violated.swap(true, Ordering::SeqCst)
                {
                    tracing::warn!(session = %recorder.session_id(), why, "ending the session");
                    route.kill.notify_one();
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

/// Routes of one target connection: its channel id → the bridge of that channel.
pub type Routes = Arc<Mutex<HashMap<ChannelId, Arc<Route>>>>;

/// The target's side of one bridged channel. The target connection's handler
/// ([`crate::target::PinnedHostKey`]) calls it from inside that connection's task, so what the
/// target sends reaches the user in the order it was sent (data, stderr, exit status, EOF,
/// close) without a hop through another task — which keeps an interactive round trip short.
pub struct Route {
    client: Arc<ChannelWriteHalf<server::Msg>>,
    handle: server::Handle,
    recorder: Arc<RecordQueue>,
    replies: mpsc::Sender<bool>,
    pub(crate) kill: Arc<Notify>,
    pub(crate) closed_by_user: AtomicBool,
    exit_status: Mutex<Option<u32>>,
    finished: AtomicBool,
    target_closed: Notify,
    /// Set when the channel is being ended: writes still waiting for the other side's window
    /// are abandoned, so a peer that stops reading cannot hold the channel open.
    stopped: AtomicBool,
    stop: Notify,
    /// The session sent more input than is recorded in full (why `kill` was woken).
    pub(crate) input_capped: AtomicBool,
    /// An sftp channel: every packet either way passes its gate before it is forwarded.
    sftp: Mutex<Option<SftpGate>>,
    /// The gate refused a packet (why `kill` was woken).
    violated: AtomicBool,
}

impl Route {
    pub fn new(
        client: Arc<ChannelWriteHalf<server::Msg>>,
        handle: server::Handle,
        recorder: Arc<RecordQueue>,
        replies: mpsc::Sender<bool>,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            handle,
            recorder,
            replies,
            kill: Arc::new(Notify::new()),
            closed_by_user: AtomicBool::new(false),
            exit_status: Mutex::new(None),
            finished: AtomicBool::new(false),
            target_closed: Notify::new(),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
            input_capped: AtomicBool::new(false),
            sftp: Mutex::new(None),
            violated: AtomicBool::new(false),
        })
    }

    /// From now on every byte of this channel is an sftp packet the gate follows.
    pub fn follow_sftp(&self) {
        if let Ok(mut gate) = self.sftp.lock() {
            *gate = Some(SftpGate::new());
        }
    }

    /// What of `data` may be forwarded (whole sftp packets the gate followed, their records
    /// queued first; everything, on other channels); `None` when nothing may, because the
    /// session is ending.
    async fn through_gate(&self, from_client: bool, data: &[u8]) -> Option<Bytes> {
        let verdict = match self.sftp.lock() {
            Ok(mut gate) => match gate.as_mut() {
                None => return Some(Bytes::copy_from_slice(data)),
                Some(gate) if from_client => gate.from_client(data),
                Some(gate) => gate.from_target(data),
            },
            Err(_) => return None,
        };
        match verdict {
            // What the gate made is recorded even while the channel is being ended (as its end
            // is): an answer that arrives then must not take its request out of the record. The
            // queue waits only on the recorder, never on the user.
            Ok(passed) => {
                if !passed.records.is_empty() && !self.recorder.push(RecordEvent::Sftp(passed.records)).await {
                    self.kill.notify_one();
                    return None;
                }
                Some(Bytes::from(passed.forward))
            }
            Err(violation) => {
                tracing::warn!(error = %violation, "sftp stream the gateway cannot follow; ending the session");
                let refused = vec![Recorded::Operation(refused_operation(&violation))];
                let _ = self.recorder.push(RecordEvent::Sftp(refused)).await;
                self.violated.store(true, Ordering::SeqCst);
                self.kill.notify_one();
                None
            }
        }
    }

    /// The user's bytes towards the target: recorded (queued for the recorder) before they are
    /// forwarded; nothing is forwarded once recording failed or the channel is being ended.
    pub async fn input(&self, upstream: &ChannelWriteHalf<client::Msg>, data: &[u8]) {
        let Some(data) = self.through_gate(true, data).await else { return };
        if data.is_empty() {
            return;
        }
        if self.unless_stopped(self.recorder.push(RecordEvent::Input(data.clone()))).await == Some(true) {
            let _ = self.unless_stopped(upstream.data_bytes(data)).await;
        }
    }

    /// Ends the channel: its input went over the cap (`cap` bytes, recorded in full).
    pub fn end_at_input_cap(&self) {
        self.input_capped.store(true, Ordering::SeqCst);
        self.kill.notify_one();
    }

    /// Runs `write` (which may wait for the peer's window) unless or until the channel is being
    /// ended; `None` if it was.
    pub async fn unless_stopped<F: std::future::Future>(&self, write: F) -> Option<F::Output> {
        let stop = self.stop.notified();
        tokio::pin!(stop);
        stop.as_mut().enable();
        if self.stopped.load(Ordering::SeqCst) {
            return None;
        }
        tokio::select! {
            out = write => Some(out),
            _ = stop => None,
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
    }

    /// Recorded (queued for the recorder) before it is forwarded; if recording failed, the
    /// session is stopped instead.
    pub async fn data(&self, ext: Option<u32>, data: &[u8]) {
        let data = if ext.is_none() {
            match self.through_gate(false, data).await {
                Some(data) if data.is_empty() => return,
                Some(data) => data,
                None => return,
            }
        } else {
            Bytes::copy_from_slice(data)
        };
        let event = if ext.is_some() { RecordEvent::Stderr(data.clone()) } else { RecordEvent::Output(data.clone()) };
        if self.unless_stopped(self.recorder.push(event)).await != Some(true) {
            self.kill.notify_one();
            return;
        }
        let _ = match ext {
            None => self.unless_stopped(self.client.data_bytes(data)).await,
            Some(ext) => self.unless_stopped(self.client.extended_data_bytes(ext, data)).await,
        };
    }

    pub async fn exit_status(&self, status: u32) {
        if let Ok(mut slot) = self.exit_status.lock() {
            *slot = Some(status);
        }
        let _ = self.client.exit_status(status).await;
    }

    pub async fn exit_signal(&self, signal: Sig, core_dumped: bool, message: &str, lang: &str) {
        if let Ok(mut slot) = self.exit_status.lock() {
            slot.get_or_insert(255);
        }
        let _ =
            self.handle.exit_signal_request(self.client.id(), signal, core_dumped, message.into(), lang.into()).await;
    }

    pub async fn eof(&self) {
        let _ = self.client.eof().await;
    }

    /// The target's answer to a request the user made (`want_reply`).
    pub async fn reply(&self, ok: bool) {
        let _ = self.replies.send(ok).await;
    }

    /// The target closed the channel (or its connection ended).
    pub async fn target_closed(&self) {
        self.stop();
        let _ = self.client.close().await;
        let exited = self.exit_status.lock().map(|s| s.is_some()).unwrap_or(false);
        let reason = if exited {
            EndReason::Exit
        } else if self.closed_by_user.load(Ordering::SeqCst) {
            EndReason::Closed
        } else {
            EndReason::Disconnected
        };
        self.finish(reason).await;
        self.target_closed.notify_one();
    }

    /// Records the end, once.
    async fn finish(&self, reason: EndReason) {
        if !self.finished.swap(true, Ordering::SeqCst) {
            let unfinished = self.sftp.lock().ok().and_then(|mut g| g.as_mut().map(SftpGate::finish));
            if let Some(records) = unfinished.filter(|r| !r.is_empty()) {
                self.recorder.push(RecordEvent::Sftp(records)).await;
            }
            let exit_status = self.exit_status.lock().ok().and_then(|s| *s);
            self.recorder.push(RecordEvent::Finish { exit_status, reason: reason.as_str().to_string() }).await;
        }
    }
}

/// Ends a bridged channel from outside the target when the grant expires or is revoked,
/// recording fails or the user hangs up; returns when the channel is over.
pub async fn watch_channel(
    route: Arc<Route>,
    upstream: Arc<ChannelWriteHalf<client::Msg>>,
    mut hangup: watch::Receiver<()>,
    not_after: i64,
    mut verdict: crate::standing::Verdict,
) {
    let until = UNIX_EPOCH + Duration::from_secs(not_after.max(0) as u64);
    let expiry = tokio::time::sleep(until.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO));
    let mut revoked_because = None;
    let reason = tokio::select! {
        _ = route.target_closed.notified() => return,
        _ = expiry => EndReason::GrantExpired,
        _ = route.kill.notified() => if route.input_capped.load(Ordering::SeqCst) {
            EndReason::InputCap
        } else if route.violated.load(Ordering::SeqCst) {
            EndReason::ProtocolViolation
        } else {
            EndReason::RecordingFailed
        },
        why = verdict.wait_for(Option::is_some) => {
            revoked_because = why.ok().and_then(|w| w.clone());
            EndReason::Revoked
        }
        _ = hangup.changed() => if route.closed_by_user.load(Ordering::SeqCst) {
            EndReason::Closed
        } else {
            EndReason::Disconnected
        },
    };
    route.stop();
    let message: Option<Bytes> = match reason {
        EndReason::GrantExpired => Some(Bytes::from_static(EXPIRED_MESSAGE)),
        EndReason::RecordingFailed => Some(Bytes::from_static(RECORDING_FAILED_MESSAGE)),
        EndReason::InputCap => Some(Bytes::from_static(INPUT_CAP_MESSAGE)),
        EndReason::ProtocolViolation => Some(Bytes::from_static(PROTOCOL_VIOLATION_MESSAGE)),
        EndReason::Revoked => Some(Bytes::from(format!(
            "\r\n[portcullis] your access was revoked ({}); the session was closed.\r\n",
            portcullis_proto::printable(revoked_because.as_deref().unwrap_or("revoked"))
        ))),
        _ => None,
    };
    if let Some(message) = message {
        // A user who stopped reading has no window left for it: the channel ends regardless.
        let said = route.client.extended_data_bytes(1, message);
        let _ = tokio::time::timeout(Duration::from_millis(500), said).await;
    }
    route.finish(reason).await;
    let _ = upstream.close().await;
    let _ = route.client.close().await;
    let goodbye = match reason {
        EndReason::GrantExpired => Some("access grant expired"),
        EndReason::Revoked => Some("access revoked"),
        _ => None,
    };
    if let Some(goodbye) = goodbye {
        let _ = route.handle.disconnect(russh::Disconnect::ByApplication, goodbye.into(), "en".into()).await;
    }
}
