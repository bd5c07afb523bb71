//! Session recorder: what one brokered channel did, written through a [`RecordSink`] (the
//! gateway's encrypted record log). A failed write stops the session.
//!
//! * A terminal (PTY) session: asciicast v2 events (output, typed input, resizes) in chunks —
//!   text, so bytes that are not UTF-8 show replaced — and, as sent, the input's bytes in full
//!   up to the exec limit (`terminal_input` [`StreamChunk`]s) with the SHA-256 of every byte
//!   each way in the end record (`terminal_input`, `terminal_output`).
//! * Exec without a terminal: stdin, stdout and stderr in full up to a limit each (as
//!   [`StreamChunk`]s), beyond it counted and hashed; the command is in the start record.
//! * File transfers (sftp, legacy scp): one [`FileTransfer`] per file, from [`crate::sftp`] and
//!   [`crate::transfer`]; sftp's other requests as [`FileOperations`].

use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine;
use portcullis_proto::{
    AuditPayload, CastEvent, FileOperation, FileOperations, FileTransfer, SessionChunk, SessionEnd, SessionStart,
    StreamChunk, StreamSummary,
};
use sha2::{Digest, Sha256};

use crate::sftp::Recorded;
use crate::transfer::{ScpTracker, Transfer, Way, scp_mode};

/// Where records go: the gateway's record log. A batch is written at once (one durable write).
pub trait RecordSink: Send + Sync {
    fn append_all(&self, payloads: Vec<AuditPayload>) -> impl Future<Output = Result<(), String>> + Send;
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("recording failed, session stopped: {0}")]
pub struct RecordingFailed(pub String);

/// Flush a chunk when this much event data is buffered...
const CHUNK_BYTES: usize = 64 * 1024;
/// ...or when the oldest buffered event is this old (checked as events arrive).
const CHUNK_AGE: Duration = Duration::from_secs(1);

/// How a channel is recorded, from what it asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Terminal,
    Streams,
    /// A subsystem (sftp): its requests and file transfers, and byte counts.
    Subsystem,
}

/// One stream of an exec session: everything counted and hashed, the first `limit` bytes kept.
struct StreamRecord {
    name: &'static str,
    bytes: u64,
    hasher: Sha256,
    recorded: u64,
    pending: Vec<u8>,
    pending_offset: u64,
}

impl StreamRecord {
    fn new(name: &'static str) -> Self {
        Self { name, bytes: 0, hasher: Sha256::new(), recorded: 0, pending: Vec::new(), pending_offset: 0 }
    }

    /// Takes `data`; returns a chunk to write when one is full.
    fn push(&mut self, data: &[u8], limit: u64) -> Option<(u64, Vec<u8>)> {
        self.bytes += data.len() as u64;
        self.hasher.update(data);
        let room = limit.saturating_sub(self.recorded) as usize;
        if room > 0 {
            let keep = &data[..data.len().min(room)];
            self.pending.extend_from_slice(keep);
            self.recorded += keep.len() as u64;
        }
        (self.pending.len() >= CHUNK_BYTES).then(|| self.take())
    }

    fn take(&mut self) -> (u64, Vec<u8>) {
        let offset = self.pending_offset;
        let data = std::mem::take(&mut self.pending);
        self.pending_offset += data.len() as u64;
        (offset, data)
    }

    fn summary(self) -> StreamSummary {
        StreamSummary {
            stream: self.name.to_string(),
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
            recorded_bytes: self.recorded,
        }
    }
}

/// The streams a session's bytes are counted, hashed and (some) kept in.
fn stream_records(mode: Mode) -> [StreamRecord; 3] {
    match mode {
        Mode::Terminal => [
            StreamRecord::new("terminal_input"),
            StreamRecord::new("terminal_output"),
            StreamRecord::new("terminal_stderr"),
        ],
        Mode::Streams | Mode::Subsystem => {
            [StreamRecord::new("stdin"), StreamRecord::new("stdout"), StreamRecord::new("stderr")]
        }
    }
}

enum Tracker {
    None,
    Scp(Box<ScpTracker>),
}

/// sftp operations written together (one record).
const OPERATIONS_PER_RECORD: usize = 256;

pub struct Recorder<S: RecordSink> {
    sink: S,
    session_id: String,
    clock_start: Instant,
    mode: Mode,
    limit: u64,
    events: Vec<CastEvent>,
    buffered: usize,
    oldest: Option<Instant>,
    output_text: Utf8Stream,
    input_text: Utf8Stream,
    bytes_in: u64,
    bytes_out: u64,
    streams: [StreamRecord; 3],
    tracker: Tracker,
    /// sftp operations not yet in a record.
    operations: Vec<FileOperation>,
    /// Records made and not yet written (see [`Recorder::commit`]).
    outbox: Vec<AuditPayload>,
    /// Records of this session made so far (the start included): the end record counts them.
    made: u64,
}

const STDIN: usize = 0;
const STDOUT: usize = 1;
const STDERR: usize = 2;

impl<S: RecordSink> Recorder<S> {
    /// Writes the session-start record; if that fails the session must not start. `limit`:
    /// how much of each exec stream is recorded in full.
    pub async fn start(sink: S, start: SessionStart, mode: Mode, limit: u64) -> Result<Self, RecordingFailed> {
        let session_id = start.session_id.clone();
        let tracker = match &start.command {
            Some(command) => {
                scp_mode(command).map(|m| Tracker::Scp(Box::new(ScpTracker::new(m)))).unwrap_or(Tracker::None)
            }
            None => Tracker::None,
        };
        sink.append_all(vec![AuditPayload::SessionStart(start)]).await.map_err(RecordingFailed)?;
        Ok(Self {
            sink,
            session_id,
            clock_start: Instant::now(),
            mode,
            limit,
            events: Vec::new(),
            buffered: 0,
            oldest: None,
            output_text: Utf8Stream::default(),
            input_text: Utf8Stream::default(),
            bytes_in: 0,
            bytes_out: 0,
            streams: stream_records(mode),
            tracker,
            operations: Vec::new(),
            outbox: Vec::new(),
            made: 1,
        })
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Why the session must end because its transfer protocol can no longer be followed.
    pub fn violation(&self) -> Option<&'static str> {
        match &self.tracker {
            Tracker::Scp(t) if t.is_broken() => Some("the scp stream stopped following the protocol"),
            _ => None,
        }
    }

    fn push(&mut self, code: &str, data: String) {
        if data.is_empty() {
            return;
        }
        self.buffered += data.len();
        self.oldest.get_or_insert_with(Instant::now);
        self.events.push((self.clock_start.elapsed().as_secs_f64(), code.to_string(), data));
    }

    async fn append(&mut self, payload: AuditPayload) -> Result<(), RecordingFailed> {
        self.outbox.push(payload);
        self.made += 1;
        // Bound what waits in memory even when a caller never commits.
        if self.outbox.len() >= 64 { self.commit().await } else { Ok(()) }
    }

    /// Writes every record made so far, in one transaction.
    pub async fn commit(&mut self) -> Result<(), RecordingFailed> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.outbox);
        self.sink.append_all(batch).await.map_err(RecordingFailed)
    }

    async fn stream(&mut self, index: usize, data: &[u8]) -> Result<(), RecordingFailed> {
        if let Some((offset, chunk)) = self.streams[index].push(data, self.limit) {
            self.write_stream_chunk(index, offset, chunk).await?;
        }
        Ok(())
    }

    async fn write_stream_chunk(&mut self, index: usize, offset: u64, data: Vec<u8>) -> Result<(), RecordingFailed> {
        if data.is_empty() {
            return Ok(());
        }
        self.append(AuditPayload::StreamChunk(StreamChunk {
            session_id: self.session_id.clone(),
            stream: self.streams[index].name.to_string(),
            offset,
            elapsed: self.clock_start.elapsed().as_secs_f64(),
            data: base64::engine::general_purpose::STANDARD.encode(&data),
        }))
        .await
    }

    async fn track(&mut self, way: Way, data: &[u8]) -> Result<(), RecordingFailed> {
        let done = match &mut self.tracker {
            Tracker::None => return Ok(()),
            Tracker::Scp(t) => {
                t.feed(way, data);
                t.take_done()
            }
        };
        self.write_transfers(done).await
    }

    async fn write_transfers(&mut self, done: Vec<Transfer>) -> Result<(), RecordingFailed> {
        for t in done {
            self.append(AuditPayload::FileTransfer(FileTransfer {
                session_id: self.session_id.clone(),
                protocol: t.protocol.to_string(),
                path: t.path,
                direction: t.direction.to_string(),
                size: t.size,
                sha256: t.sha256.unwrap_or_default(),
                complete: t.complete,
                at: crate::now_f64(),
            }))
            .await?;
        }
        Ok(())
    }

    /// What the sftp gate made of the packets it let through, in their order.
    pub async fn sftp(&mut self, records: Vec<Recorded>) -> Result<(), RecordingFailed> {
        for record in records {
            match record {
                Recorded::Operation(op) => {
                    self.operations.push(op);
                    if self.operations.len() >= OPERATIONS_PER_RECORD {
                        self.write_operations().await?;
                    }
                }
                Recorded::Transfer(t) => {
                    self.write_operations().await?;
                    self.write_transfers(vec![t]).await?;
                }
            }
        }
        Ok(())
    }

    async fn write_operations(&mut self) -> Result<(), RecordingFailed> {
        if self.operations.is_empty() {
            return Ok(());
        }
        let operations = std::mem::take(&mut self.operations);
        self.append(AuditPayload::FileOperations(FileOperations {
            session_id: self.session_id.clone(),
            protocol: "sftp".into(),
            operations,
        }))
        .await
    }

    /// Bytes the target sent back on stdout.
    pub async fn output(&mut self, data: &[u8]) -> Result<(), RecordingFailed> {
        self.bytes_out += data.len() as u64;
        self.track(Way::Down, data).await?;
        match self.mode {
            Mode::Terminal => {
                // The text is in the cast; the bytes as sent are hashed.
                self.streams[STDOUT].push(data, 0);
                let text = self.output_text.push(data);
                self.push("o", text);
                self.maybe_flush().await
            }
            Mode::Streams => self.stream(STDOUT, data).await,
            Mode::Subsystem => Ok(()),
        }
    }

    /// Bytes the target sent on stderr.
    pub async fn stderr(&mut self, data: &[u8]) -> Result<(), RecordingFailed> {
        self.bytes_out += data.len() as u64;
        match self.mode {
            Mode::Terminal => {
                self.streams[STDERR].push(data, 0);
                let text = String::from_utf8_lossy(data).into_owned();
                self.push("o", text);
                self.maybe_flush().await
            }
            Mode::Streams => self.stream(STDERR, data).await,
            Mode::Subsystem => Ok(()),
        }
    }

    /// Bytes the user sent (keystrokes, or a command's stdin).
    pub async fn input(&mut self, data: &[u8]) -> Result<(), RecordingFailed> {
        self.bytes_in += data.len() as u64;
        self.track(Way::Up, data).await?;
        match self.mode {
            Mode::Terminal => {
                // Keystrokes as bytes (what reached the target), and as text for replay.
                self.stream(STDIN, data).await?;
                let text = self.input_text.push(data);
                self.push("i", text);
                self.maybe_flush().await
            }
            Mode::Streams => self.stream(STDIN, data).await,
            Mode::Subsystem => Ok(()),
        }
    }

    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), RecordingFailed> {
        self.push("r", format!("{cols}x{rows}"));
        self.maybe_flush().await
    }

    async fn maybe_flush(&mut self) -> Result<(), RecordingFailed> {
        let old = self.oldest.is_some_and(|t| t.elapsed() >= CHUNK_AGE);
        if self.buffered >= CHUNK_BYTES || old { self.flush().await } else { Ok(()) }
    }

    /// Writes what is buffered (called on a timer too, so a quiet session's last keystrokes or
    /// bytes reach the log within about a second — and a log that cannot be written is noticed).
    pub async fn flush(&mut self) -> Result<(), RecordingFailed> {
        self.write_operations().await?;
        for index in [STDIN, STDOUT, STDERR] {
            if !self.streams[index].pending.is_empty() {
                let (offset, chunk) = self.streams[index].take();
                self.write_stream_chunk(index, offset, chunk).await?;
            }
        }
        if self.events.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.events);
        self.buffered = 0;
        self.oldest = None;
        self.append(AuditPayload::SessionChunk(SessionChunk { session_id: self.session_id.clone(), events })).await
    }

    /// Flushes what is buffered and writes the session-end record.
    pub async fn finish(
        mut self,
        exit_status: Option<u32>,
        reason: &str,
        ended_at: f64,
    ) -> Result<(), RecordingFailed> {
        let tail = self.output_text.finish();
        self.push("o", tail);
        self.flush().await?;
        for index in [STDIN, STDOUT, STDERR] {
            let (offset, chunk) = self.streams[index].take();
            self.write_stream_chunk(index, offset, chunk).await?;
        }
        let open = match &mut self.tracker {
            Tracker::None => Vec::new(),
            Tracker::Scp(t) => t.finish(),
        };
        self.write_transfers(open).await?;
        let [stdin, stdout, stderr] = std::mem::replace(&mut self.streams, stream_records(self.mode));
        let streams = match self.mode {
            Mode::Streams => vec![stdin.summary(), stdout.summary(), stderr.summary()],
            Mode::Terminal if stderr.bytes > 0 => vec![stdin.summary(), stdout.summary(), stderr.summary()],
            Mode::Terminal => vec![stdin.summary(), stdout.summary()],
            Mode::Subsystem => Vec::new(),
        };
        self.append(AuditPayload::SessionEnd(SessionEnd {
            session_id: self.session_id.clone(),
            ended_at,
            exit_status,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            reason: reason.to_string(),
            streams,
            session_records: Some(self.made),
        }))
        .await?;
        self.commit().await
    }
}

/// Turns a byte stream into text without splitting a UTF-8 sequence across events; invalid
/// bytes become U+FFFD (asciicast events are JSON strings).
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, data: &[u8]) -> String {
        self.pending.extend_from_slice(data);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &after[n..];
                        }
                        // An incomplete sequence at the end: keep it for the next push.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    fn finish(&mut self) -> String {
        let out = if self.pending.is_empty() { String::new() } else { "\u{FFFD}".to_string() };
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<AuditPayload>>>, bool);

    impl RecordSink for Memory {
        async fn append_all(&self, payloads: Vec<AuditPayload>) -> Result<(), String> {
            if self.1 {
                return Err("disk full".into());
            }
            self.0.lock().unwrap().extend(payloads);
            Ok(())
        }
    }

    fn start(command: Option<&str>, kind: &str) -> SessionStart {
        SessionStart {
            session_id: "s".into(),
            user: "u".into(),
            device_id: "d".into(),
            target: "t".into(),
            login: "root".into(),
            grant_id: "g".into(),
            started_at: 0.0,
            width: 80,
            height: 24,
            term: "xterm".into(),
            command: command.map(Into::into),
            channel: kind.into(),
            gateway: "embedded".into(),
            client_addr: "127.0.0.1:1".into(),
            target_transport_fallback: None,
        }
    }

    #[test]
    fn utf8_split_across_chunks_is_kept_whole() {
        let mut s = Utf8Stream::default();
        let bytes = "héllo".as_bytes();
        assert_eq!(s.push(&bytes[..2]), "h");
        assert_eq!(s.push(&bytes[2..]), "éllo");
        assert_eq!(s.push(b"\xffok"), "\u{FFFD}ok");
    }

    #[tokio::test]
    async fn terminal_sessions_record_start_chunks_end_in_order() {
        let sink = Memory::default();
        let mut r = Recorder::start(sink.clone(), start(None, "shell"), Mode::Terminal, 10).await.unwrap();
        r.output(b"hello ").await.unwrap();
        r.input(b"ls\r").await.unwrap();
        r.resize(100, 30).await.unwrap();
        r.output(&vec![b'x'; CHUNK_BYTES]).await.unwrap(); // forces a chunk
        r.finish(Some(3), "exit", 1.0).await.unwrap();
        let records = sink.0.lock().unwrap().clone();
        assert!(matches!(records[0], AuditPayload::SessionStart(_)));
        let c = records
            .iter()
            .find_map(|p| match p {
                AuditPayload::SessionChunk(c) => Some(c),
                _ => None,
            })
            .expect("a chunk of events");
        assert_eq!(c.events[0].1, "o");
        assert_eq!(c.events[0].2, "hello ");
        assert_eq!((c.events[1].1.as_str(), c.events[1].2.as_str()), ("i", "ls\r"));
        assert_eq!((c.events[2].1.as_str(), c.events[2].2.as_str()), ("r", "100x30"));
        let AuditPayload::SessionEnd(end) = records.last().unwrap() else { panic!() };
        assert_eq!(end.exit_status, Some(3));
        assert_eq!(end.bytes_in, 3);
        assert_eq!(end.bytes_out, 6 + CHUNK_BYTES as u64);
        let names: Vec<&str> = end.streams.iter().map(|s| s.stream.as_str()).collect();
        assert_eq!(names, ["terminal_input", "terminal_output"]);
    }

    /// Keystrokes that are not UTF-8 show replaced in the cast, and are kept as sent beside
    /// it, with the hash of every byte each way.
    #[tokio::test]
    async fn terminal_input_is_kept_as_bytes_and_both_ways_hashed() {
        let sink = Memory::default();
        let mut r = Recorder::start(sink.clone(), start(None, "shell"), Mode::Terminal, 1024).await.unwrap();
        let typed: &[&[u8]] = &[b"echo \xff", b"\xff\xfe\x1b[A", b"\r"];
        for keys in typed {
            r.input(keys).await.unwrap();
        }
        r.output(b"\xffraw\x80out").await.unwrap();
        r.finish(Some(0), "exit", 1.0).await.unwrap();
        let records = sink.0.lock().unwrap().clone();
        let kept: Vec<u8> = records
            .iter()
            .filter_map(|p| match p {
                AuditPayload::StreamChunk(c) if c.stream == "terminal_input" => {
                    Some(base64::engine::general_purpose::STANDARD.decode(&c.data).unwrap())
                }
                _ => None,
            })
            .flatten()
            .collect();
        let all: Vec<u8> = typed.concat();
        assert_eq!(kept, all);
        let cast: String = records
            .iter()
            .filter_map(|p| match p {
                AuditPayload::SessionChunk(c) => Some(c.events.iter().filter(|e| e.1 == "i").map(|e| e.2.clone())),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(cast.contains('\u{FFFD}'), "{cast:?}");
        let AuditPayload::SessionEnd(end) = records.last().unwrap() else { panic!() };
        let summary = |name: &str| end.streams.iter().find(|s| s.stream == name).unwrap().clone();
        assert_eq!(summary("terminal_input").sha256, hex::encode(Sha256::digest(&all)));
        assert_eq!(summary("terminal_input").recorded_bytes, all.len() as u64);
        assert_eq!(summary("terminal_output").sha256, hex::encode(Sha256::digest(b"\xffraw\x80out")));
        assert_eq!(summary("terminal_output").recorded_bytes, 0);
    }

    #[tokio::test]
    async fn exec_streams_are_kept_up_to_the_limit_and_hashed_in_full() {
        let sink = Memory::default();
        let limit = 100_000u64;
        let mut r = Recorder::start(sink.clone(), start(Some("bash -s"), "exec"), Mode::Streams, limit).await.unwrap();
        let script: Vec<u8> = (0..250_000u32).map(|i| b"echo hi\n"[i as usize % 8]).collect();
        for piece in script.chunks(30_000) {
            r.input(piece).await.unwrap();
        }
        r.output(b"hi\n").await.unwrap();
        r.stderr(b"warning\n").await.unwrap();
        r.finish(Some(0), "exit", 2.0).await.unwrap();
        let records = sink.0.lock().unwrap().clone();
        let stdin: Vec<u8> = records
            .iter()
            .filter_map(|p| match p {
                AuditPayload::StreamChunk(c) if c.stream == "stdin" => {
                    Some(base64::engine::general_purpose::STANDARD.decode(&c.data).unwrap())
                }
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(stdin, script[..limit as usize]);
        let AuditPayload::SessionEnd(end) = records.last().unwrap() else { panic!() };
        let summary = |name: &str| end.streams.iter().find(|s| s.stream == name).unwrap().clone();
        assert_eq!(summary("stdin").bytes, script.len() as u64);
        assert_eq!(summary("stdin").recorded_bytes, limit);
        assert_eq!(summary("stdin").sha256, hex::encode(Sha256::digest(&script)));
        assert_eq!((summary("stdout").bytes, summary("stdout").recorded_bytes), (3, 3));
        assert_eq!(summary("stderr").bytes, 8);
    }

    #[tokio::test]
    async fn scp_uploads_become_file_transfer_records() {
        let sink = Memory::default();
        let mut r =
            Recorder::start(sink.clone(), start(Some("scp -t /tmp/x"), "exec"), Mode::Streams, 1024).await.unwrap();
        r.input(b"C0644 5 f\nhello\0").await.unwrap();
        r.finish(Some(0), "exit", 1.0).await.unwrap();
        let records = sink.0.lock().unwrap().clone();
        let t = records
            .iter()
            .find_map(|p| match p {
                AuditPayload::FileTransfer(t) => Some(t.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!((t.path.as_str(), t.direction.as_str(), t.size), ("/tmp/x", "upload", 5));
        assert_eq!(t.sha256, hex::encode(Sha256::digest(b"hello")));
    }

    /// An scp stream the recorder cannot follow is a reason to end the session, not to stop
    /// recording its files quietly; a well-formed one never is.
    #[tokio::test]
    async fn an_scp_stream_that_breaks_the_protocol_is_a_violation() {
        let cases: [(&[u8], bool); 4] = [
            (b"C0644 5 f\nhello\0", false),
            (b"D0755 0 d\nC0644 2 f\nhi\0E\n", false),
            (b"Z not a control line\n", true),
            (b"C0644 5 ../escape\nhello\0", true),
        ];
        for (stream, broken) in cases {
            let mut r = Recorder::start(Memory::default(), start(Some("scp -r -t /tmp"), "exec"), Mode::Streams, 1024)
                .await
                .unwrap();
            r.input(stream).await.unwrap();
            assert_eq!(r.violation().is_some(), broken, "{}", String::from_utf8_lossy(stream));
        }
    }

    #[tokio::test]
    async fn a_sink_that_cannot_record_stops_the_session() {
        let failing = Memory(Default::default(), true);
        assert!(Recorder::start(failing, start(None, "shell"), Mode::Terminal, 0).await.is_err());
    }
}
