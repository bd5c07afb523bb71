//! Session recorder: asciicast v2 events, written in chunks through a [`RecordSink`] (the
//! device's encrypted local log). A failed write stops the session.

use std::future::Future;
use std::time::{Duration, Instant};

use portcullis_proto::{AuditPayload, CastEvent, SessionChunk, SessionEnd, SessionStart};

use crate::BrokerError;

/// Where records go. The client core implements it over its encrypted local database.
pub trait RecordSink: Send + Sync {
    fn append(&self, payload: AuditPayload) -> impl Future<Output = Result<(), String>> + Send;
}

/// Flush a chunk when this much event data is buffered...
const CHUNK_BYTES: usize = 64 * 1024;
/// ...or when the oldest buffered event is this old (checked as events arrive).
const CHUNK_AGE: Duration = Duration::from_secs(1);

pub struct Recorder<S: RecordSink> {
    sink: S,
    session_id: String,
    clock_start: Instant,
    events: Vec<CastEvent>,
    buffered: usize,
    oldest: Option<Instant>,
    output_text: Utf8Stream,
    input_text: Utf8Stream,
    bytes_in: u64,
    bytes_out: u64,
}

impl<S: RecordSink> Recorder<S> {
    /// Writes the session-start record; if that fails the session must not start.
    pub async fn start(sink: S, start: SessionStart) -> Result<Self, BrokerError> {
        let session_id = start.session_id.clone();
        sink.append(AuditPayload::SessionStart(start)).await.map_err(BrokerError::Recording)?;
        Ok(Self {
            sink,
            session_id,
            clock_start: Instant::now(),
            events: Vec::new(),
            buffered: 0,
            oldest: None,
            output_text: Utf8Stream::default(),
            input_text: Utf8Stream::default(),
            bytes_in: 0,
            bytes_out: 0,
        })
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    fn push(&mut self, code: &str, data: String) {
        if data.is_empty() {
            return;
        }
        self.buffered += data.len();
        self.oldest.get_or_insert_with(Instant::now);
        self.events.push((self.clock_start.elapsed().as_secs_f64(), code.to_string(), data));
    }

    pub async fn output(&mut self, data: &[u8]) -> Result<(), BrokerError> {
        self.bytes_out += data.len() as u64;
        let text = self.output_text.push(data);
        self.push("o", text);
        self.maybe_flush().await
    }

    pub async fn input(&mut self, data: &[u8]) -> Result<(), BrokerError> {
        self.bytes_in += data.len() as u64;
        let text = self.input_text.push(data);
        self.push("i", text);
        self.maybe_flush().await
    }

    /// Input that is passed through but not recorded (stdin of a non-interactive command).
    pub fn count_input(&mut self, n: usize) {
        self.bytes_in += n as u64;
    }

    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), BrokerError> {
        self.push("r", format!("{cols}x{rows}"));
        self.maybe_flush().await
    }

    async fn maybe_flush(&mut self) -> Result<(), BrokerError> {
        let old = self.oldest.is_some_and(|t| t.elapsed() >= CHUNK_AGE);
        if self.buffered >= CHUNK_BYTES || old { self.flush().await } else { Ok(()) }
    }

    async fn flush(&mut self) -> Result<(), BrokerError> {
        if self.events.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.events);
        self.buffered = 0;
        self.oldest = None;
        self.sink
            .append(AuditPayload::SessionChunk(SessionChunk { session_id: self.session_id.clone(), events }))
            .await
            .map_err(BrokerError::Recording)
    }

    /// Flushes what is buffered and writes the session-end record.
    pub async fn finish(mut self, exit_status: Option<u32>, reason: &str, ended_at: f64) -> Result<(), BrokerError> {
        let tail = self.output_text.finish();
        self.push("o", tail);
        self.flush().await?;
        self.sink
            .append(AuditPayload::SessionEnd(SessionEnd {
                session_id: self.session_id.clone(),
                ended_at,
                exit_status,
                bytes_in: self.bytes_in,
                bytes_out: self.bytes_out,
                reason: reason.to_string(),
            }))
            .await
            .map_err(BrokerError::Recording)
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
        async fn append(&self, payload: AuditPayload) -> Result<(), String> {
            if self.1 {
                return Err("disk full".into());
            }
            self.0.lock().unwrap().push(payload);
            Ok(())
        }
    }

    fn start() -> SessionStart {
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
            command: None,
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
    async fn records_start_chunks_end_in_order() {
        let sink = Memory::default();
        let mut r = Recorder::start(sink.clone(), start()).await.unwrap();
        r.output(b"hello ").await.unwrap();
        r.input(b"ls\r").await.unwrap();
        r.resize(100, 30).await.unwrap();
        r.output(&vec![b'x'; CHUNK_BYTES]).await.unwrap(); // forces a chunk
        r.count_input(10);
        r.finish(Some(3), "exit", 1.0).await.unwrap();
        let records = sink.0.lock().unwrap().clone();
        assert!(matches!(records[0], AuditPayload::SessionStart(_)));
        let AuditPayload::SessionChunk(c) = &records[1] else { panic!("{records:?}") };
        assert_eq!(c.events[0].1, "o");
        assert_eq!(c.events[0].2, "hello ");
        assert_eq!((c.events[1].1.as_str(), c.events[1].2.as_str()), ("i", "ls\r"));
        assert_eq!((c.events[2].1.as_str(), c.events[2].2.as_str()), ("r", "100x30"));
        let AuditPayload::SessionEnd(end) = records.last().unwrap() else { panic!() };
        assert_eq!(end.exit_status, Some(3));
        assert_eq!(end.bytes_in, 13);
        assert_eq!(end.bytes_out, 6 + CHUNK_BYTES as u64);
    }

    #[tokio::test]
    async fn a_sink_that_cannot_record_stops_the_session() {
        let failing = Memory(Default::default(), true);
        assert!(matches!(Recorder::start(failing, start()).await, Err(BrokerError::Recording(_))));
    }
}
