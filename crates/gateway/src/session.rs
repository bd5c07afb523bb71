//! One user's SSH connection to the gateway (the russh server handler).
//!
//! Authentication is by OpenSSH user certificate only. russh checks the certificate's validity
//! window and that the client holds its key; everything else is checked here — the user CA's
//! signature, the principal, and then, with the control server, that the certificate was issued
//! for this key and a live grant, for the target named by the SSH user name, reached through
//! this gateway. A refusal is explained to the client through a keyboard-interactive message
//! (the one text channel SSH has before authentication) and recorded.
//!
//! After authentication, each session channel is bridged to a channel on the target
//! ([`crate::bridge`]); forwarding of any kind, agent and X11 are refused and recorded.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use portcullis_crypto::SecretString;
use portcullis_proto::{
    AccessRefused, AuditPayload, CredentialKind, HostKeyMismatch, SessionAuthorizationRequest, SessionStart,
};
use russh::keys::Certificate;
use russh::server::{Auth, ChannelOpenHandle, Handler, Msg, Response, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, ChannelWriteHalf, MethodKind, MethodSet, Pty, Sig, client};
use tokio::sync::{mpsc, watch};

use crate::bridge::{RecordEvent, RecordQueue, Route, Routes, spawn_recorder, watch_channel};
use crate::control::{Authorized, ControlError};
use crate::recorder::{Mode, Recorder};
use crate::standing::Verdict;
use crate::target::{Credential, TargetAddress, TargetError, Upstream};
use crate::{Inner, now_f64};

/// How long to wait for the target to answer a forwarded request.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Data a user sends before their shell, command or subsystem is running is held (bounded by
/// the SSH window) and forwarded, recorded, once it runs.
const MAX_EARLY_BYTES: usize = 16 * 1024 * 1024;

struct Bridge {
    route: Arc<Route>,
    client: Arc<ChannelWriteHalf<Msg>>,
    upstream: Arc<ChannelWriteHalf<client::Msg>>,
    /// Until the channel's first request; what ends it from outside (expiry, recording
    /// failure, hang-up) is watched from then on.
    watch_args: Option<(watch::Receiver<()>, i64, Verdict)>,
    replies: mpsc::Receiver<bool>,
    recorder: Arc<RecordQueue>,
    pty: Option<(String, u32, u32)>,
    started: bool,
    early: Vec<u8>,
    early_eof: bool,
    /// Input the session may still send (recorded in full); `None`: no cap (a terminal, whose
    /// every keystroke is recorded, or a transfer protocol whose files are).
    input_left: Option<u64>,
}

pub struct Connection {
    inner: Arc<Inner>,
    peer: String,
    peer_ip: Option<std::net::IpAddr>,
    /// Set once authentication succeeded: the grant's verdict and end, which then govern the
    /// whole connection (see `serve_connection`).
    admitted: Admitted,
    /// Why the last certificate was refused, shown to the client before it gives up.
    refusal: Option<String>,
    refusal_shown: bool,
    refusal_recorded: bool,
    /// A certificate from our CA, valid now, was shown (refused later, by the server): such
    /// refusals are recorded one by one — strangers cannot make them.
    certified: bool,
    user: Option<String>,
    authorized: Option<Authorized>,
    credential: Option<Credential>,
    upstream: Option<Arc<Upstream>>,
    upstream_error: Option<String>,
    /// The weaker transport the target needed (it offers no AEAD cipher), for the records.
    target_fallback: Option<String>,
    channels: HashMap<ChannelId, Bridge>,
    /// The target connection's channels, as its handler finds them.
    routes: Routes,
    /// Channels accepted only to explain why they cannot run.
    failed_channels: HashMap<ChannelId, (Arc<ChannelWriteHalf<Msg>>, String)>,
    hangup: watch::Sender<()>,
    /// Whether the connection's grant still holds (set once authorised).
    verdict: Option<Verdict>,
}

impl Connection {
    pub fn new(inner: Arc<Inner>, peer: Option<std::net::SocketAddr>, admitted: Admitted) -> Self {
        Self {
            inner,
            peer: peer.map(|p| p.to_string()).unwrap_or_default(),
            peer_ip: peer.map(|p| p.ip()),
            admitted,
            refusal: None,
            refusal_shown: false,
            refusal_recorded: false,
            certified: false,
            user: None,
            authorized: None,
            credential: None,
            upstream: None,
            upstream_error: None,
            target_fallback: None,
            channels: HashMap::new(),
            routes: Routes::default(),
            failed_channels: HashMap::new(),
            hangup: watch::channel(()).0,
            verdict: None,
        }
    }

    async fn audit(&self, payload: AuditPayload) {
        if let Err(e) = self.inner.log.append(&payload).await {
            tracing::error!(error = %e, kind = payload.kind(), "could not record a gateway event");
        }
    }

    async fn refused(&self, what: &str, target: Option<String>, message: String) {
        self.refused_counting(what, target, message, None).await;
    }

    async fn refused_counting(&self, what: &str, target: Option<String>, message: String, attempts: Option<u64>) {
        self.audit(AuditPayload::AccessRefused(AccessRefused {
            what: what.into(),
            user: self.user.clone().or_else(|| self.authorized.as_ref().map(|a| a.user.clone())),
            target: target
                .or_else(|| self.authorized.as_ref().map(|a| a.target.clone()))
                .map(|t| portcullis_proto::bounded_text(&t, MAX_RECORDED_NAME)),
            message,
            client_addr: self.peer.clone(),
            at: now_f64(),
            attempts,
        }))
        .await;
    }

    fn reject_with_reason(&mut self, reason: String) -> Auth {
        self.refusal = Some(reason);
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
            partial_success: false,
        }
    }

    /// Connects to the target on the first channel; the credential is used once and dropped.
    async fn upstream(&mut self) -> Result<Arc<Upstream>, String> {
        if let Some(upstream) = &self.upstream {
            return Ok(upstream.clone());
        }
        if let Some(e) = &self.upstream_error {
            return Err(e.clone());
        }
        let (Some(a), Some(credential)) = (self.authorized.as_ref(), self.credential.take()) else {
            return Err("not authorised".into());
        };
        let address = TargetAddress {
            name: a.target.clone(),
            host: a.host.clone(),
            port: a.port,
            login: a.login.clone(),
            host_key: a.host_key.clone(),
        };
        match crate::target::connect(&address, credential, self.routes.clone()).await {
            Ok(connected) => {
                self.target_fallback = connected.fallback;
                let upstream = Arc::new(connected.upstream);
                self.upstream = Some(upstream.clone());
                Ok(upstream)
            }
            Err(e) => {
                let message = e.to_string();
                match &e {
                    TargetError::HostKeyMismatch { target, expected, presented } => {
                        self.audit(AuditPayload::HostKeyMismatch(HostKeyMismatch {
                            target: target.clone(),
                            host: address.host.clone(),
                            port: address.port,
                            expected_fingerprint: expected.clone(),
                            presented_fingerprint: presented.clone(),
                            at: now_f64(),
                            user: Some(a.user.clone()),
                        }))
                        .await
                    }
                    _ => self.refused("target_unreachable", Some(address.name.clone()), message.clone()).await,
                }
                self.upstream_error = Some(message.clone());
                Err(message)
            }
        }
    }

    /// A channel that cannot run: answers its request, then tells why on stderr and ends it
    /// with exit status 255 (in that order, through the channel's own queue). True if it was one.
    fn explain_failure(&mut self, channel: ChannelId, session: &mut Session) -> Result<bool, russh::Error> {
        let Some((client, message)) = self.failed_channels.remove(&channel) else { return Ok(false) };
        session.channel_success(channel)?;
        explain(client, message);
        Ok(true)
    }

    /// Ends a channel that was to run but cannot (its start could not be recorded): the target
    /// side is closed and the user told why.
    async fn end_with_message(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
        message: String,
    ) -> Result<(), russh::Error> {
        if let Some(b) = self.channels.remove(&channel) {
            let _ = b.upstream.close().await;
            session.channel_success(channel)?;
            explain(b.client, message);
        }
        Ok(())
    }

    /// Starts watching `channel` for expiry, recording failure and hang-up (at its first request).
    fn start_watch(&mut self, channel: ChannelId) {
        if let Some(b) = self.channels.get_mut(&channel)
            && let Some((hangup, not_after, verdict)) = b.watch_args.take()
        {
            tokio::spawn(watch_channel(b.route.clone(), b.upstream.clone(), hangup, not_after, verdict));
        }
    }

    /// Sends a request upstream with `want_reply` and waits for the target's answer.
    async fn ask_upstream<F, Fut>(&mut self, channel: ChannelId, send: F) -> bool
    where
        F: FnOnce(Arc<ChannelWriteHalf<client::Msg>>) -> Fut,
        Fut: std::future::Future<Output = Result<(), russh::Error>>,
    {
        self.start_watch(channel);
        let Some(bridge) = self.channels.get_mut(&channel) else { return false };
        if send(bridge.upstream.clone()).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(REPLY_TIMEOUT, bridge.replies.recv()).await, Ok(Some(true)))
    }

    /// Records the session's start (or refuses it when that cannot be written), asks the
    /// target to run it, and forwards what the user sent meanwhile.
    async fn start_session(
        &mut self,
        channel: ChannelId,
        kind: String,
        command: Option<String>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if self.explain_failure(channel, session)? {
            return Ok(());
        }
        let Some(a) = self.authorized.as_ref() else { return session.channel_failure(channel) };
        let Some(bridge) = self.channels.get(&channel) else { return session.channel_failure(channel) };
        if bridge.started {
            return session.channel_failure(channel);
        }
        let (term, cols, rows) = bridge.pty.clone().unwrap_or_else(|| ("dumb".into(), 80, 24));
        let mode = if bridge.pty.is_some() {
            Mode::Terminal
        } else if kind.starts_with("subsystem:") {
            Mode::Subsystem
        } else {
            Mode::Streams
        };
        let start = SessionStart {
            session_id: uuid::Uuid::new_v4().to_string(),
            user: a.user.clone(),
            device_id: a.device_id.clone(),
            target: a.target.clone(),
            login: a.login.clone(),
            grant_id: a.grant_id.clone(),
            started_at: now_f64(),
            width: cols.min(u32::from(u16::MAX)) as u16,
            height: rows.min(u32::from(u16::MAX)) as u16,
            term,
            command: command.clone(),
            channel: kind.clone(),
            gateway: self.inner.config.name.clone(),
            client_addr: self.peer.clone(),
            target_transport_fallback: self.target_fallback.clone(),
        };
        let recorder = match Recorder::start(self.inner.log.clone(), start, mode, a.exec_record_limit).await {
            Ok(recorder) => recorder,
            Err(e) => {
                tracing::error!(error = %e, "cannot record; refusing the session");
                return self.end_with_message(channel, session, e.to_string()).await;
            }
        };
        let Some(b) = self.channels.get_mut(&channel) else { return session.channel_failure(channel) };
        if kind == "subsystem:sftp" {
            b.route.follow_sftp();
        }
        spawn_recorder(recorder, b.recorder.clone(), b.route.clone());
        b.started = true;
        let exempt = command.as_deref().and_then(crate::transfer::transfer_protocol).is_some();
        // What arrived early counts too.
        b.input_left = (mode == Mode::Streams && !exempt).then_some(a.exec_record_limit);
        if let Some(left) = b.input_left.as_mut() {
            if b.early.len() as u64 > *left {
                b.early.clear();
                b.early_eof = false;
                b.route.end_at_input_cap();
            } else {
                *left -= b.early.len() as u64;
            }
        }
        let ok = self
            .ask_upstream(channel, |up| async move {
                match (kind.as_str(), command) {
                    ("shell", _) => up.request_shell(true).await,
                    (_, Some(command)) => up.exec(true, command.into_bytes()).await,
                    (subsystem, None) => up.request_subsystem(true, subsystem.trim_start_matches("subsystem:")).await,
                }
            })
            .await;
        if !ok {
            // The target's answer is the user's answer; then the channel ends (clients that wait
            // for the target's side would otherwise hang).
            if let Some(b) = self.channels.get_mut(&channel) {
                let finish = RecordEvent::Finish { exit_status: None, reason: "refused by the target".into() };
                b.recorder.push(finish).await;
                let _ = b.upstream.close().await;
                let client = b.client.clone();
                session.channel_failure(channel)?;
                tokio::spawn(async move {
                    let _ = client.close().await;
                });
                return Ok(());
            }
            return session.channel_failure(channel);
        }
        session.channel_success(channel)?;
        // What arrived before the session ran goes now, in order, recorded.
        if let Some(b) = self.channels.get_mut(&channel) {
            let early = std::mem::take(&mut b.early);
            if !early.is_empty() {
                b.route.input(&b.upstream, &early).await;
            }
            if b.early_eof {
                let _ = b.upstream.eof().await;
            }
        }
        Ok(())
    }
}

/// Tells the user why their channel cannot run (stderr), then ends it with exit status 255 —
/// in that order, through the channel's own queue.
fn explain(client: Arc<ChannelWriteHalf<Msg>>, message: String) {
    tokio::spawn(async move {
        let _ = client.extended_data_bytes(1, Bytes::from(format!("[portcullis] {message}\r\n"))).await;
        let _ = client.exit_status(255).await;
        let _ = client.eof().await;
        let _ = client.close().await;
    });
}

/// What authentication admitted a connection with: its grant's verdict and end.
pub type Admitted = Arc<watch::Sender<Option<(Verdict, i64)>>>;

/// Longest SSH user name (a target name, or whatever a client chose) kept in a record.
const MAX_RECORDED_NAME: usize = 128;

/// What a client that showed no acceptable certificate is told. russh refuses a certificate
/// outside its validity window before the handler sees it, so this covers that case too.
fn no_valid_certificate() -> String {
    "no valid Portcullis certificate was offered: a certificate that has expired (or is not yet valid) is refused, \
     and so is a plain key. Run `portcullis ssh-config` for a fresh one (or use `portcullis ssh`); if your access \
     ended, ask for it again"
        .to_string()
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Channels still running see the user gone and close their target side.
        let _ = self.hangup.send(());
    }
}

impl Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_publickey(&mut self, _user: &str, _key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        // OpenSSH also offers the plain key after a refused certificate: the certificate's
        // refusal is the one worth telling.
        let reason = self.refusal.take().unwrap_or_else(no_valid_certificate);
        Ok(self.reject_with_reason(reason))
    }

    async fn auth_openssh_certificate(&mut self, user: &str, certificate: &Certificate) -> Result<Auth, Self::Error> {
        let now = crate::now_f64() as u64;
        self.user = certificate.valid_principals().first().cloned();
        if let Err(e) = portcullis_sshcert::check_user_certificate(certificate, &self.inner.ca_fingerprint, now) {
            return Ok(self.reject_with_reason(e.to_string()));
        }
        self.certified = true;
        let req = SessionAuthorizationRequest {
            certificate: certificate.to_openssh().unwrap_or_default(),
            ssh_user: user.to_string(),
            client_addr: self.peer.clone(),
        };
        match self.inner.control.authorize(&req).await {
            Ok((authorized, credential)) => {
                let text = String::from_utf8(credential.expose_secret().clone());
                drop(credential);
                let Ok(text) = text else {
                    return Ok(self.reject_with_reason("the stored credential is unusable".into()));
                };
                let text = SecretString::from(text);
                self.credential = Some(match authorized.credential_kind {
                    CredentialKind::Password => Credential::Password(text),
                    CredentialKind::PrivateKey => Credential::PrivateKey(text),
                });
                let verdict = self.inner.standing.follow(&authorized.grant_id);
                self.admitted.send_replace(Some((verdict.clone(), authorized.not_after)));
                self.verdict = Some(verdict);
                self.authorized = Some(authorized);
                self.refusal = None;
                Ok(Auth::Accept)
            }
            // The control server's own failures stay in the log, not on the client's screen.
            Err(ControlError::Failed(detail)) => {
                tracing::error!(error = %detail, "the control server could not decide a session");
                Ok(self.reject_with_reason(
                    "the control server could not check your access (the gateway's log says why); try again shortly"
                        .into(),
                ))
            }
            Err(e) => Ok(self.reject_with_reason(e.to_string())),
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if response.is_some() || self.refusal_shown {
            return Ok(Auth::reject());
        }
        self.refusal_shown = true;
        let reason = self.refusal.clone().unwrap_or_else(no_valid_certificate);
        if !self.refusal_recorded {
            self.refusal_recorded = true;
            if self.certified {
                self.refused("certificate", Some(user.to_string()), reason.clone()).await;
            } else {
                // Anyone can get here, as often as they like: recorded in aggregate per source
                // (the 1st, 8th, 16th… in the hour, with the count), within an hourly budget.
                let source = self.peer_ip.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
                let now = now_f64() as i64;
                if let portcullis_guard::failures::Failure::Record { attempts, .. } =
                    self.inner.refusals.failed("ssh_auth", source, now)
                {
                    self.refused_counting("certificate", Some(user.to_string()), reason.clone(), Some(attempts)).await;
                }
            }
        }
        Ok(Auth::Partial {
            name: "Portcullis gateway".into(),
            instructions: format!(
                "Access to {:?} refused: {reason}.",
                portcullis_proto::bounded_text(user, MAX_RECORDED_NAME)
            )
            .into(),
            prompts: Vec::new().into(),
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(not_after) = self.authorized.as_ref().map(|a| a.not_after) else {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        // A connection authorised while the grant was live opens nothing once it has ended.
        let revoked = self.verdict.as_ref().and_then(|v| v.borrow().clone());
        let opened = if crate::now_f64() >= not_after as f64 {
            Err("your access has expired; ask for it again".to_string())
        } else if let Some(why) = revoked {
            Err(format!("your access has ended ({why})"))
        } else {
            match self.upstream().await {
                Ok(upstream) => {
                    upstream.channel_open_session().await.map_err(|e| format!("the target refused a session: {e}"))
                }
                Err(message) => Err(message),
            }
        };
        let target_channel = match opened {
            Ok(c) => c,
            Err(message) => {
                // Accepted, then explained on stderr at the first request: a refused open's
                // text is shown by OpenSSH but not by every client.
                let (_, client_write) = channel.split();
                let client = Arc::new(client_write);
                self.failed_channels.insert(client.id(), (client, message));
                reply.accept().await;
                return Ok(());
            }
        };
        // Only the write halves are used: each side's handler receives what its peer sends, and
        // an unread channel queue would stall its connection.
        let upstream_id = target_channel.id();
        let (_, upstream_write) = target_channel.split();
        let (_, client_write) = channel.split();
        let client = Arc::new(client_write);
        let upstream_write = Arc::new(upstream_write);
        let (replies_tx, replies) = mpsc::channel(4);
        let recorder = Arc::new(RecordQueue::default());
        let not_after = self.authorized.as_ref().map(|a| a.not_after).unwrap_or(0);
        let route = Route::new(client.clone(), session.handle(), recorder.clone(), replies_tx);
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(upstream_id, route.clone());
        }
        self.channels.insert(
            client.id(),
            Bridge {
                route,
                client,
                upstream: upstream_write,
                watch_args: Some((
                    self.hangup.subscribe(),
                    not_after,
                    self.verdict.clone().unwrap_or_else(|| watch::channel(None).1),
                )),
                replies,
                recorder,
                pty: None,
                started: false,
                early: Vec::new(),
                early_eof: false,
                input_left: None,
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.explain_failure(channel, session)? {
            return Ok(());
        }
        let term_owned = term.to_string();
        let modes = modes.to_vec();
        let ok = self
            .ask_upstream(channel, |up| async move {
                up.request_pty(true, &term_owned, col_width, row_height, pix_width, pix_height, &modes).await
            })
            .await;
        if ok && let Some(b) = self.channels.get_mut(&channel) {
            b.pty = Some((term.to_string(), col_width, row_height));
            return session.channel_success(channel);
        }
        session.channel_failure(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The target's environment is the target's: nothing the user sets is passed on.
        session.channel_failure(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.start_session(channel, "shell".into(), None, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.start_session(channel, "exec".into(), Some(command), session).await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name != "sftp" {
            // Only subsystems the recorder understands run.
            self.refused("subsystem", None, format!("subsystem {name:?} is not allowed")).await;
            return session.channel_failure(channel);
        }
        self.start_session(channel, format!("subsystem:{name}"), None, session).await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(b) = self.channels.get(&channel) {
            let clamp = |v: u32| v.min(u32::from(u16::MAX)) as u16;
            b.recorder.push(RecordEvent::Resize(clamp(col_width), clamp(row_height))).await;
            let _ = b.upstream.window_change(col_width, row_height, pix_width, pix_height).await;
        }
        Ok(())
    }

    async fn signal(&mut self, channel: ChannelId, signal: Sig, _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(b) = self.channels.get(&channel) {
            let _ = b.upstream.signal(signal).await;
        }
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], _session: &mut Session) -> Result<(), Self::Error> {
        let Some(b) = self.channels.get_mut(&channel) else { return Ok(()) };
        if !b.started {
            if b.early.len() + data.len() > MAX_EARLY_BYTES {
                return Err(russh::Error::Inconsistent);
            }
            b.early.extend_from_slice(data);
            return Ok(());
        }
        if let Some(left) = b.input_left.as_mut() {
            // More than is recorded in full never reaches the target: the session ends.
            if data.len() as u64 > *left {
                *left = 0;
                b.route.end_at_input_cap();
                return Ok(());
            }
            *left -= data.len() as u64;
        }
        b.route.input(&b.upstream, data).await;
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(b) = self.channels.get_mut(&channel) {
            if b.started {
                let _ = b.upstream.eof().await;
            } else {
                b.early_eof = true;
            }
        }
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.failed_channels.remove(&channel);
        if let Some(b) = self.channels.remove(&channel) {
            b.route.closed_by_user.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = b.upstream.close().await;
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let message = format!("port forwarding to {host}:{port} is not allowed through Portcullis");
        self.refused("forwarding", None, message.clone()).await;
        reply.reject(ChannelOpenFailure::Other { code: 1, reason: message }).await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let message = format!("forwarding to socket {socket_path} is not allowed through Portcullis");
        self.refused("forwarding", None, message.clone()).await;
        reply.reject(ChannelOpenFailure::Other { code: 1, reason: message }).await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refused("x11", None, "X11 forwarding is not allowed through Portcullis".into()).await;
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refused("x11", None, "X11 forwarding is not allowed through Portcullis".into()).await;
        session.channel_failure(channel)
    }

    async fn agent_request(&mut self, _channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        self.refused("agent", None, "agent forwarding is not allowed through Portcullis".into()).await;
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refused(
            "forwarding",
            None,
            format!("remote forwarding of {address}:{port} is not allowed through Portcullis"),
        )
        .await;
        Ok(false)
    }

    async fn streamlocal_forward(&mut self, socket_path: &str, _session: &mut Session) -> Result<bool, Self::Error> {
        self.refused("forwarding", None, format!("remote forwarding of socket {socket_path} is not allowed")).await;
        Ok(false)
    }
}
