//! The sftp subsystem, followed packet by packet on the forwarding path, in both directions.
//!
//! Contract: [`SftpGate::from_client`] and [`SftpGate::from_target`] take the bytes as they
//! arrive and return the whole packets that may be forwarded, with what they make recorded;
//! a packet the gate cannot follow — malformed, of a type or extension it does not know, a
//! request id still in use, a handle the target never issued, an answer to nothing — is a
//! [`Violation`]: it is not forwarded and the session ends. Nothing goes through unparsed.
//!
//! Why not `russh-sftp`'s codec (which the tests use to build packets): it decodes strings
//! lossily, so OpenSSH's binary handles from the 128th on (`\0\0\0\x80`, `\0\0\0\x81`, ...)
//! all decode to the same text and a non-UTF-8 path to another path; and it skips attribute
//! extensions. A recorder must see exactly what the target sees, so this decoder is strict:
//! version 3 (what OpenSSH and the common clients speak), every field as bytes, every packet
//! consumed to its last byte.
//!
//! What is recorded: each request as a [`FileOperation`] with the target's answer, except the
//! bytes of an open file (READ/WRITE, aggregated into a [`Transfer`] with size and SHA-256 at
//! CLOSE) and directory listing (READDIR), whose failures alone are operations.

use std::collections::{BTreeMap, HashMap};

use portcullis_proto::{FileAttrs, FileOperation};
use sha2::{Digest, Sha256};

use crate::transfer::Transfer;

/// The largest packet either way. OpenSSH's sftp-server refuses more than 256 KiB; other
/// servers allow larger reads and writes.
pub const MAX_PACKET: usize = 1024 * 1024;
/// Requests waiting for an answer (OpenSSH's client keeps up to 64 in flight).
pub const MAX_OUTSTANDING: usize = 1024;
/// Open file and directory handles.
pub const MAX_HANDLES: usize = 1024;
/// Out-of-order data kept per file while waiting for the gap before it.
const MAX_REORDER_BYTES: usize = 8 * 1024 * 1024;
/// The longest path kept in a record (PATH_MAX); longer ones are cut, saying so.
const MAX_RECORDED_PATH: usize = 4096;

/// Why the session must end: the stream broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

fn violation(why: impl Into<String>) -> Violation {
    Violation(why.into())
}

/// What one packet made recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Operation(FileOperation),
    Transfer(Transfer),
}

/// Whole packets that may go on, and the records they make (to be recorded first).
#[derive(Debug, Default)]
pub struct Passed {
    pub forward: Vec<u8>,
    pub records: Vec<Recorded>,
}

/// SHA-256 of a file's bytes in offset order, tolerating reads answered out of order.
#[derive(Default)]
struct FileHash {
    hasher: Sha256,
    next: u64,
    bytes: u64,
    sequential: bool,
    /// Data that arrived ahead of `next`, by offset.
    ahead: BTreeMap<u64, Vec<u8>>,
    ahead_bytes: usize,
}

impl FileHash {
    fn new() -> Self {
        Self { sequential: true, ..Default::default() }
    }

    fn add(&mut self, offset: u64, data: &[u8]) {
        self.bytes += data.len() as u64;
        if !self.sequential {
            return;
        }
        if offset == self.next {
            self.hasher.update(data);
            self.next += data.len() as u64;
            while let Some(entry) = self.ahead.first_entry() {
                if *entry.key() != self.next {
                    break;
                }
                let chunk = entry.remove();
                self.ahead_bytes -= chunk.len();
                self.hasher.update(&chunk);
                self.next += chunk.len() as u64;
            }
        } else if offset > self.next && self.ahead_bytes + data.len() <= MAX_REORDER_BYTES {
            self.ahead_bytes += data.len();
            self.ahead.insert(offset, data.to_vec());
        } else {
            self.lose_order();
        }
    }

    /// Bytes changed that did not pass through (a server-side copy): no whole-file hash.
    fn lose_order(&mut self) {
        self.sequential = false;
        self.ahead.clear();
        self.ahead_bytes = 0;
    }

    fn finish(self) -> (u64, Option<String>) {
        let complete = self.sequential && self.ahead.is_empty();
        (self.next.max(self.bytes), complete.then(|| hex::encode(self.hasher.finalize())))
    }
}

struct OpenFile {
    path: String,
    /// Opened to write (so even an empty file is an upload).
    writing: bool,
    written: FileHash,
    read: FileHash,
}

impl OpenFile {
    fn into_transfer(self, complete: bool) -> Option<Transfer> {
        let (direction, hash) = if self.written.bytes > 0 || (self.writing && self.read.bytes == 0) {
            ("upload", self.written)
        } else if self.read.bytes > 0 {
            ("download", self.read)
        } else {
            return None;
        };
        let (size, sha256) = hash.finish();
        Some(Transfer { protocol: "sftp", path: self.path, direction, size, sha256, complete })
    }
}

enum Handle {
    File(Box<OpenFile>),
    Dir(String),
}

/// A request waiting for its answer.
enum Pending {
    /// OPEN / OPENDIR: the answer is a handle.
    Open {
        op: FileOperation,
        writing: bool,
        dir: bool,
    },
    Read {
        handle: Vec<u8>,
        offset: u64,
        op: FileOperation,
    },
    /// WRITE and READDIR: only a failure is recorded.
    Quiet(FileOperation),
    /// Everything else: recorded with its answer.
    Op(FileOperation),
}

impl Pending {
    fn op(self) -> FileOperation {
        match self {
            Pending::Open { op, .. } | Pending::Read { op, .. } | Pending::Quiet(op) | Pending::Op(op) => op,
        }
    }
}

#[derive(PartialEq, Eq)]
enum Phase {
    /// Waiting for the client's INIT.
    Init,
    /// INIT sent; waiting for the target's VERSION.
    Version,
    Running,
}

/// One sftp channel's state: see the module's contract.
pub struct SftpGate {
    up: Vec<u8>,
    down: Vec<u8>,
    phase: Phase,
    pending: HashMap<u32, Pending>,
    handles: HashMap<Vec<u8>, Handle>,
    now: fn() -> f64,
}

impl Default for SftpGate {
    fn default() -> Self {
        Self::new()
    }
}

impl SftpGate {
    pub fn new() -> Self {
        Self::with_clock(crate::now_f64)
    }

    fn with_clock(now: fn() -> f64) -> Self {
        Self {
            up: Vec::new(),
            down: Vec::new(),
            phase: Phase::Init,
            pending: HashMap::new(),
            handles: HashMap::new(),
            now,
        }
    }

    /// Bytes from the user's client, towards the target.
    pub fn from_client(&mut self, data: &[u8]) -> Result<Passed, Violation> {
        self.feed(true, data)
    }

    /// Bytes from the target's sftp server, towards the user.
    pub fn from_target(&mut self, data: &[u8]) -> Result<Passed, Violation> {
        self.feed(false, data)
    }

    fn feed(&mut self, from_client: bool, data: &[u8]) -> Result<Passed, Violation> {
        let mut buffer = std::mem::take(if from_client { &mut self.up } else { &mut self.down });
        buffer.extend_from_slice(data);
        let mut passed = Passed::default();
        let mut at = 0;
        let result = loop {
            let rest = &buffer[at..];
            if rest.len() < 4 {
                break Ok(());
            }
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if len == 0 || len > MAX_PACKET {
                break Err(violation(format!("an sftp packet of {len} bytes (at most {MAX_PACKET})")));
            }
            if rest.len() < 4 + len {
                break Ok(());
            }
            let packet = &rest[4..4 + len];
            let step = if from_client {
                self.client_packet(packet, &mut passed)
            } else {
                self.target_packet(packet, &mut passed)
            };
            if let Err(e) = step {
                break Err(e);
            }
            passed.forward.extend_from_slice(&rest[..4 + len]);
            at += 4 + len;
        };
        buffer.drain(..at);
        *(if from_client { &mut self.up } else { &mut self.down }) = buffer;
        result.map(|()| passed)
    }

    fn operation(&self, request_id: u32, op: &str, path: String) -> FileOperation {
        FileOperation { at: (self.now)(), request_id, op: op.into(), path, ..Default::default() }
    }

    fn handle_path(&self, handle: &[u8]) -> Result<(String, bool), Violation> {
        match self.handles.get(handle) {
            Some(Handle::File(f)) => Ok((f.path.clone(), false)),
            Some(Handle::Dir(path)) => Ok((path.clone(), true)),
            None => Err(violation("a request on a handle the target did not issue (or already closed)")),
        }
    }

    fn file_path(&self, handle: &[u8]) -> Result<String, Violation> {
        match self.handle_path(handle)? {
            (path, false) => Ok(path),
            (_, true) => Err(violation("a file request on a directory handle")),
        }
    }

    fn client_packet(&mut self, packet: &[u8], passed: &mut Passed) -> Result<(), Violation> {
        let mut r = Reader(packet);
        let kind = r.u8()?;
        if self.phase != Phase::Running {
            if kind != INIT || self.phase != Phase::Init {
                return Err(violation(format!("sftp packet type {kind} before the session was set up")));
            }
            let version = r.u32()?;
            while !r.is_empty() {
                r.bytes()?;
                r.bytes()?;
            }
            if version < 3 {
                return Err(violation(format!("sftp version {version} (the gateway follows version 3)")));
            }
            self.phase = Phase::Version;
            return Ok(());
        }
        let id = r.u32()?;
        if self.pending.contains_key(&id) {
            return Err(violation(format!("request id {id} reused while its first request is unanswered")));
        }
        if self.pending.len() >= MAX_OUTSTANDING {
            return Err(violation(format!("more than {MAX_OUTSTANDING} sftp requests unanswered")));
        }
        let pending = match kind {
            OPEN => {
                let path = r.path()?;
                let pflags = r.u32()?;
                let attrs = r.attrs()?;
                let mut op = self.operation(id, "open", path);
                op.flags = Some(open_flags(pflags)?);
                op.attrs = attrs;
                let writing = pflags & (FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC) != 0;
                Pending::Open { op, writing, dir: false }
            }
            OPENDIR => Pending::Open { op: self.operation(id, "opendir", r.path()?), writing: false, dir: true },
            CLOSE => {
                let handle = r.bytes()?.to_vec();
                r.end()?;
                let (path, _) = self.handle_path(&handle)?;
                match self.handles.remove(&handle) {
                    Some(Handle::File(file)) => {
                        if let Some(t) = file.into_transfer(true) {
                            passed.records.push(Recorded::Transfer(t));
                        }
                    }
                    Some(Handle::Dir(_)) | None => {}
                }
                Pending::Quiet(self.operation(id, "close", path))
            }
            READ => {
                let handle = r.bytes()?.to_vec();
                let offset = r.u64()?;
                let _len = r.u32()?;
                r.end()?;
                let path = self.file_path(&handle)?;
                Pending::Read { handle, offset, op: self.operation(id, "read", path) }
            }
            WRITE => {
                let handle = r.bytes()?.to_vec();
                let offset = r.u64()?;
                let data = r.bytes()?;
                r.end()?;
                let path = self.file_path(&handle)?;
                if let Some(Handle::File(file)) = self.handles.get_mut(&handle) {
                    file.written.add(offset, data);
                }
                Pending::Quiet(self.operation(id, "write", path))
            }
            READDIR => {
                let handle = r.bytes()?.to_vec();
                r.end()?;
                match self.handle_path(&handle)? {
                    (path, true) => Pending::Quiet(self.operation(id, "readdir", path)),
                    (_, false) => return Err(violation("a directory listing on a file handle")),
                }
            }
            LSTAT | STAT | REMOVE | RMDIR | REALPATH | READLINK => {
                let name = match kind {
                    LSTAT => "lstat",
                    STAT => "stat",
                    REMOVE => "remove",
                    RMDIR => "rmdir",
                    REALPATH => "realpath",
                    _ => "readlink",
                };
                let path = r.path()?;
                r.end()?;
                Pending::Op(self.operation(id, name, path))
            }
            FSTAT => {
                let handle = r.bytes()?.to_vec();
                r.end()?;
                Pending::Op(self.operation(id, "fstat", self.handle_path(&handle)?.0))
            }
            SETSTAT | MKDIR => {
                let path = r.path()?;
                let attrs = r.attrs()?;
                r.end()?;
                let mut op = self.operation(id, if kind == SETSTAT { "setstat" } else { "mkdir" }, path);
                op.attrs = attrs;
                Pending::Op(op)
            }
            FSETSTAT => {
                let handle = r.bytes()?.to_vec();
                let attrs = r.attrs()?;
                r.end()?;
                let mut op = self.operation(id, "fsetstat", self.handle_path(&handle)?.0);
                op.attrs = attrs;
                Pending::Op(op)
            }
            RENAME => {
                let from = r.path()?;
                let to = r.path()?;
                r.end()?;
                Pending::Op(FileOperation { to: Some(to), ..self.operation(id, "rename", from) })
            }
            SYMLINK => {
                // OpenSSH's server reads these the other way round from the draft: the first
                // string is what the link points at, the second the link made.
                let points_at = r.path()?;
                let link = r.path()?;
                r.end()?;
                Pending::Op(FileOperation { to: Some(points_at), ..self.operation(id, "symlink", link) })
            }
            EXTENDED => Pending::Op(self.extended(id, &mut r)?),
            other => return Err(violation(format!("sftp packet type {other} is not a request the gateway follows"))),
        };
        self.pending.insert(id, pending);
        Ok(())
    }

    /// The extensions OpenSSH's server offers; any other is refused (it could change files
    /// in a way the gateway cannot record).
    fn extended(&mut self, id: u32, r: &mut Reader) -> Result<FileOperation, Violation> {
        let name = String::from_utf8_lossy(r.bytes()?).into_owned();
        let op = match name.as_str() {
            "posix-rename@openssh.com" | "hardlink@openssh.com" => {
                let (first, second) = (r.path()?, r.path()?);
                if name.starts_with("posix") {
                    FileOperation { to: Some(second), ..self.operation(id, "posix-rename", first) }
                } else {
                    // link(first, second): `second` is the new name of `first`.
                    FileOperation { to: Some(first), ..self.operation(id, "hardlink", second) }
                }
            }
            "statvfs@openssh.com" => self.operation(id, "statvfs", r.path()?),
            "expand-path@openssh.com" => self.operation(id, "expand-path", r.path()?),
            "home-directory" => self.operation(id, "home-directory", r.path()?),
            "fstatvfs@openssh.com" | "fsync@openssh.com" => {
                let handle = r.bytes()?.to_vec();
                self.operation(id, name.trim_end_matches("@openssh.com"), self.handle_path(&handle)?.0)
            }
            "lsetstat@openssh.com" => {
                let path = r.path()?;
                let attrs = r.attrs()?;
                FileOperation { attrs, ..self.operation(id, "lsetstat", path) }
            }
            "limits@openssh.com" => self.operation(id, "limits", String::new()),
            "users-groups-by-id@openssh.com" => {
                r.bytes()?;
                r.bytes()?;
                self.operation(id, "users-groups-by-id", String::new())
            }
            "copy-data" => {
                let from = r.bytes()?.to_vec();
                let (_from_offset, _length) = (r.u64()?, r.u64()?);
                let into = r.bytes()?.to_vec();
                let _into_offset = r.u64()?;
                let source = self.file_path(&from)?;
                let dest = self.file_path(&into)?;
                // The bytes move inside the target: the written file has no whole-file hash.
                if let Some(Handle::File(file)) = self.handles.get_mut(&into) {
                    file.written.lose_order();
                    file.writing = true;
                }
                FileOperation { to: Some(dest), ..self.operation(id, "copy-data", source) }
            }
            _ => {
                return Err(violation(format!(
                    "sftp extension {:?} is not one the gateway records",
                    portcullis_proto::printable(&name)
                )));
            }
        };
        r.end()?;
        Ok(op)
    }

    fn target_packet(&mut self, packet: &[u8], passed: &mut Passed) -> Result<(), Violation> {
        let mut r = Reader(packet);
        let kind = r.u8()?;
        if kind == VERSION {
            if self.phase != Phase::Version {
                return Err(violation("the target sent an sftp VERSION out of turn"));
            }
            let version = r.u32()?;
            while !r.is_empty() {
                r.bytes()?;
                r.bytes()?;
            }
            if version != 3 {
                return Err(violation(format!("the target speaks sftp version {version} (the gateway follows 3)")));
            }
            self.phase = Phase::Running;
            return Ok(());
        }
        if self.phase != Phase::Running {
            return Err(violation(format!("the target sent sftp packet type {kind} before VERSION")));
        }
        let id = r.u32()?;
        let Some(pending) = self.pending.remove(&id) else {
            return Err(violation(format!("the target answered request {id}, which is not waiting")));
        };
        let record = match (kind, pending) {
            (STATUS, pending) => {
                let code = r.u32()?;
                // Servers before version 3 drafts may omit the message and language.
                let message = if r.is_empty() { Vec::new() } else { r.bytes()?.to_vec() };
                if !r.is_empty() {
                    r.bytes()?;
                }
                r.end()?;
                let ok =
                    code == FX_OK || (code == FX_EOF && matches!(pending, Pending::Read { .. } | Pending::Quiet(_)));
                let mut op = pending.op();
                op.status = status_text(code, &message);
                match (ok, op.op.as_str()) {
                    (true, "write" | "read" | "readdir" | "close") => None,
                    _ => Some(op),
                }
            }
            (HANDLE, Pending::Open { mut op, writing, dir }) => {
                let handle = r.bytes()?.to_vec();
                r.end()?;
                if self.handles.contains_key(&handle) {
                    return Err(violation("the target issued a handle that is already open"));
                }
                if self.handles.len() >= MAX_HANDLES {
                    return Err(violation(format!("more than {MAX_HANDLES} sftp handles open")));
                }
                let open = if dir {
                    Handle::Dir(op.path.clone())
                } else {
                    Handle::File(Box::new(OpenFile {
                        path: op.path.clone(),
                        writing,
                        written: FileHash::new(),
                        read: FileHash::new(),
                    }))
                };
                self.handles.insert(handle, open);
                op.status = "ok".into();
                Some(op)
            }
            (DATA, Pending::Read { handle, offset, .. }) => {
                let data = r.bytes()?;
                r.end()?;
                if let Some(Handle::File(file)) = self.handles.get_mut(&handle) {
                    file.read.add(offset, data);
                }
                None
            }
            (NAME, Pending::Quiet(op)) if op.op == "readdir" => {
                read_names(&mut r)?;
                None
            }
            (NAME, Pending::Op(mut op))
                if matches!(op.op.as_str(), "realpath" | "readlink" | "expand-path" | "home-directory") =>
            {
                let names = read_names(&mut r)?;
                op.status = "ok".into();
                op.detail = names.into_iter().next();
                Some(op)
            }
            (ATTRS, Pending::Op(mut op)) if matches!(op.op.as_str(), "stat" | "lstat" | "fstat") => {
                r.attrs()?;
                r.end()?;
                op.status = "ok".into();
                Some(op)
            }
            (EXTENDED_REPLY, Pending::Op(mut op))
                if matches!(op.op.as_str(), "statvfs" | "fstatvfs" | "limits" | "users-groups-by-id") =>
            {
                op.status = "ok".into();
                Some(op)
            }
            (kind, pending) => {
                return Err(violation(format!(
                    "the target answered {} request {id} with sftp packet type {kind}",
                    pending.op().op
                )));
            }
        };
        if let Some(op) = record {
            passed.records.push(Recorded::Operation(op));
        }
        Ok(())
    }

    /// At the end of the session: requests never answered, and files still open (as
    /// incomplete transfers).
    pub fn finish(&mut self) -> Vec<Recorded> {
        let mut unanswered: Vec<(u32, FileOperation)> =
            self.pending.drain().map(|(id, p)| (id, p.op())).filter(|(_, op)| op.op != "close").collect();
        unanswered.sort_by(|a, b| a.1.at.total_cmp(&b.1.at).then(a.0.cmp(&b.0)));
        let mut out: Vec<Recorded> = unanswered
            .into_iter()
            .map(|(_, mut op)| {
                op.status = "unanswered".into();
                Recorded::Operation(op)
            })
            .collect();
        let mut open: Vec<Box<OpenFile>> = self
            .handles
            .drain()
            .filter_map(|(_, h)| match h {
                Handle::File(f) => Some(f),
                Handle::Dir(_) => None,
            })
            .collect();
        open.sort_by(|a, b| a.path.cmp(&b.path));
        out.extend(open.into_iter().filter_map(|f| f.into_transfer(false)).map(Recorded::Transfer));
        out
    }
}

/// The record of the packet that ended the session.
pub fn refused_operation(why: &Violation) -> FileOperation {
    FileOperation {
        at: crate::now_f64(),
        op: "protocol_violation".into(),
        status: format!("refused: {}", why.0),
        ..Default::default()
    }
}

fn read_names(r: &mut Reader) -> Result<Vec<String>, Violation> {
    let count = r.u32()?;
    let mut names = Vec::new();
    for _ in 0..count {
        let name = r.path()?;
        r.bytes()?;
        r.attrs()?;
        if names.is_empty() {
            names.push(name);
        }
    }
    r.end()?;
    Ok(names)
}

fn open_flags(pflags: u32) -> Result<String, Violation> {
    const NAMES: [(u32, &str); 6] = [
        (FXF_READ, "read"),
        (FXF_WRITE, "write"),
        (FXF_APPEND, "append"),
        (FXF_CREAT, "create"),
        (FXF_TRUNC, "truncate"),
        (FXF_EXCL, "exclusive"),
    ];
    if pflags & !NAMES.iter().fold(0, |all, (bit, _)| all | bit) != 0 {
        return Err(violation(format!("sftp open flags {pflags:#x} include bits version 3 does not define")));
    }
    Ok(NAMES.iter().filter(|(bit, _)| pflags & bit != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(","))
}

fn status_text(code: u32, message: &[u8]) -> String {
    let name = match code {
        FX_OK => return "ok".into(),
        FX_EOF => "end of file",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        8 => "unsupported",
        _ => "error",
    };
    let message = String::from_utf8_lossy(&message[..message.len().min(256)]).into_owned();
    if message.is_empty() || message.eq_ignore_ascii_case(name) {
        format!("{name} ({code})")
    } else {
        format!("{name} ({code}): {message}")
    }
}

/// A path as recorded: valid UTF-8 as is, any other byte as `\xNN`, `\` as `\\` — so two
/// different paths never look the same; cut at [`MAX_RECORDED_PATH`] bytes, saying so.
pub fn path_text(bytes: &[u8]) -> String {
    let kept = &bytes[..bytes.len().min(MAX_RECORDED_PATH)];
    let mut out = String::with_capacity(kept.len());
    for chunk in kept.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if bytes.len() > kept.len() {
        out.push_str(&format!("…({} bytes in all)", bytes.len()));
    }
    out
}

const INIT: u8 = 1;
const VERSION: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const WRITE: u8 = 6;
const LSTAT: u8 = 7;
const FSTAT: u8 = 8;
const SETSTAT: u8 = 9;
const FSETSTAT: u8 = 10;
const OPENDIR: u8 = 11;
const READDIR: u8 = 12;
const REMOVE: u8 = 13;
const MKDIR: u8 = 14;
const RMDIR: u8 = 15;
const REALPATH: u8 = 16;
const STAT: u8 = 17;
const RENAME: u8 = 18;
const READLINK: u8 = 19;
const SYMLINK: u8 = 20;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const DATA: u8 = 103;
const NAME: u8 = 104;
const ATTRS: u8 = 105;
const EXTENDED: u8 = 200;
const EXTENDED_REPLY: u8 = 201;

const FX_OK: u32 = 0;
const FX_EOF: u32 = 1;

const FXF_READ: u32 = 0x01;
const FXF_WRITE: u32 = 0x02;
const FXF_APPEND: u32 = 0x04;
const FXF_CREAT: u32 = 0x08;
const FXF_TRUNC: u32 = 0x10;
const FXF_EXCL: u32 = 0x20;

const ATTR_SIZE: u32 = 0x01;
const ATTR_UIDGID: u32 = 0x02;
const ATTR_PERMISSIONS: u32 = 0x04;
const ATTR_ACMODTIME: u32 = 0x08;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// Strict reader of one packet's fields.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Violation> {
        if self.0.len() < n {
            return Err(violation("an sftp packet ends inside a field"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Violation> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Violation> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Violation> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Violation> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn path(&mut self) -> Result<String, Violation> {
        Ok(path_text(self.bytes()?))
    }

    fn attrs(&mut self) -> Result<Option<FileAttrs>, Violation> {
        let flags = self.u32()?;
        let known = ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME | ATTR_EXTENDED;
        if flags & !known != 0 {
            return Err(violation(format!("sftp attribute flags {flags:#x} include bits version 3 does not define")));
        }
        let mut attrs = FileAttrs::default();
        if flags & ATTR_SIZE != 0 {
            attrs.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            attrs.uid = Some(self.u32()?);
            attrs.gid = Some(self.u32()?);
        }
        if flags & ATTR_PERMISSIONS != 0 {
            attrs.mode = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            attrs.atime = Some(self.u32()?);
            attrs.mtime = Some(self.u32()?);
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                attrs.extended.push(path_text(self.bytes()?));
                self.bytes()?;
            }
        }
        Ok((!attrs.is_empty()).then_some(attrs))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn end(&self) -> Result<(), Violation> {
        if self.0.is_empty() { Ok(()) } else { Err(violation("an sftp packet carries bytes after its last field")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use russh_sftp::protocol::{
        Close, Data, Extended, FileAttributes, Init, Open, OpenFlags, Packet, Read, Rename, SetStat, Status,
        StatusCode, Version, Write,
    };

    fn wire(packet: Packet) -> Vec<u8> {
        Bytes::try_from(packet).unwrap().to_vec()
    }

    /// A packet built by hand: type, then fields as written.
    fn raw(kind: u8, fields: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = std::iter::once(kind).chain(fields.iter().flat_map(|f| f.iter().copied())).collect();
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    fn string(s: &[u8]) -> Vec<u8> {
        let mut out = (s.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(s);
        out
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    fn ok(id: u32) -> Vec<u8> {
        status(id, StatusCode::Ok)
    }

    fn status(id: u32, code: StatusCode) -> Vec<u8> {
        wire(Packet::Status(Status { id, status_code: code, error_message: String::new(), language_tag: "en".into() }))
    }

    fn handle(id: u32, h: &[u8]) -> Vec<u8> {
        raw(HANDLE, &[&id.to_be_bytes(), &string(h)])
    }

    /// A gate past INIT/VERSION.
    fn running() -> SftpGate {
        let mut g = SftpGate::with_clock(|| 1.0);
        g.from_client(&wire(Packet::Init(Init::new()))).unwrap();
        g.from_target(&wire(Packet::Version(Version::new()))).unwrap();
        g
    }

    fn ops(records: &[Recorded]) -> Vec<(String, String, String)> {
        records
            .iter()
            .filter_map(|r| match r {
                Recorded::Operation(op) => Some((op.op.clone(), op.path.clone(), op.status.clone())),
                Recorded::Transfer(_) => None,
            })
            .collect()
    }

    fn transfers(records: &[Recorded]) -> Vec<Transfer> {
        records
            .iter()
            .filter_map(|r| match r {
                Recorded::Transfer(t) => Some(t.clone()),
                Recorded::Operation(_) => None,
            })
            .collect()
    }

    /// Sends `request` and answers it with `answer`; returns what the answer made recorded.
    fn exchange(g: &mut SftpGate, request: &[u8], answer: &[u8]) -> Vec<Recorded> {
        let mut records = g.from_client(request).unwrap().records;
        records.extend(g.from_target(answer).unwrap().records);
        records
    }

    fn open(id: u32, path: &str, flags: OpenFlags) -> Vec<u8> {
        wire(Packet::Open(Open { id, filename: path.into(), pflags: flags, attrs: FileAttributes::empty() }))
    }

    #[test]
    fn uploads_and_downloads_are_followed_byte_for_byte() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut g = running();
        let made =
            exchange(&mut g, &open(1, "/tmp/up.bin", OpenFlags::WRITE | OpenFlags::CREATE), &handle(1, b"\0\0\0\x01"));
        assert_eq!(ops(&made), [("open".into(), "/tmp/up.bin".into(), "ok".into())]);
        for (i, chunk) in body.chunks(65536).enumerate() {
            let write = Write {
                id: 10 + i as u32,
                handle: "\0\0\0\x01".into(),
                offset: i as u64 * 65536,
                data: chunk.to_vec(),
            };
            let bytes = wire(Packet::Write(write));
            // Byte by byte for the first packet: framing survives any split, and nothing is
            // forwarded until the packet is whole.
            if i == 0 {
                let mut forwarded = Vec::new();
                for b in &bytes {
                    forwarded.extend(g.from_client(std::slice::from_ref(b)).unwrap().forward);
                    assert!(forwarded.is_empty() || forwarded.len() == bytes.len());
                }
                assert_eq!(forwarded, bytes);
            } else {
                assert_eq!(g.from_client(&bytes).unwrap().forward, bytes);
            }
            assert!(g.from_target(&ok(10 + i as u32)).unwrap().records.is_empty());
        }
        let closed = exchange(&mut g, &wire(Packet::Close(Close { id: 20, handle: "\0\0\0\x01".into() })), &ok(20));
        let t = &transfers(&closed)[0];
        assert_eq!(
            (t.path.as_str(), t.direction, t.size, t.complete),
            ("/tmp/up.bin", "upload", body.len() as u64, true)
        );
        assert_eq!(t.sha256.as_deref(), Some(sha(&body).as_str()));

        // A download with its second read answered first (reordered within bounds).
        exchange(&mut g, &open(30, "/etc/data", OpenFlags::READ), &handle(30, b"h2"));
        for (id, offset) in [(31, 0u64), (32, 100_000), (33, 200_000)] {
            g.from_client(&wire(Packet::Read(Read { id, handle: "h2".into(), offset, len: 100_000 }))).unwrap();
        }
        g.from_target(&wire(Packet::Data(Data { id: 32, data: body[100_000..].to_vec() }))).unwrap();
        g.from_target(&wire(Packet::Data(Data { id: 31, data: body[..100_000].to_vec() }))).unwrap();
        assert!(g.from_target(&status(33, StatusCode::Eof)).unwrap().records.is_empty());
        let closed = exchange(&mut g, &wire(Packet::Close(Close { id: 34, handle: "h2".into() })), &ok(34));
        let t = &transfers(&closed)[0];
        assert_eq!((t.path.as_str(), t.direction), ("/etc/data", "download"));
        assert_eq!(t.sha256.as_deref(), Some(sha(&body).as_str()));

        // Left open at the end: incomplete; opened and never read: no transfer; a request
        // never answered is recorded as such.
        exchange(&mut g, &open(40, "/tmp/partial", OpenFlags::WRITE), &handle(40, b"h3"));
        g.from_client(&wire(Packet::Write(Write { id: 41, handle: "h3".into(), offset: 0, data: b"abc".to_vec() })))
            .unwrap();
        exchange(&mut g, &open(42, "/tmp/just-looked", OpenFlags::READ), &handle(42, b"h4"));
        g.from_client(&wire(Packet::Rename(Rename { id: 43, oldpath: "/a".into(), newpath: "/b".into() }))).unwrap();
        let rest = g.finish();
        assert_eq!(
            ops(&rest),
            [
                ("write".into(), "/tmp/partial".into(), "unanswered".into()),
                ("rename".into(), "/a".into(), "unanswered".into())
            ]
        );
        let left = transfers(&rest);
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].path.as_str(), left[0].complete, left[0].size), ("/tmp/partial", false, 3));
    }

    #[test]
    fn every_other_request_is_an_operation_with_its_answer() {
        let mut g = running();
        let id = |n: u32| n.to_be_bytes();
        let attrs_mode = |mode: u32| [ATTR_PERMISSIONS.to_be_bytes(), mode.to_be_bytes()].concat();
        let owner = [ATTR_UIDGID.to_be_bytes(), 0u32.to_be_bytes(), 0u32.to_be_bytes()].concat();
        let failure = wire(Packet::Status(Status {
            id: 7,
            status_code: StatusCode::PermissionDenied,
            error_message: "Permission denied".into(), // said twice: kept once
            language_tag: String::new(),
        }));
        let cases: Vec<(Vec<u8>, Vec<u8>, FileOperation)> = vec![
            (
                wire(Packet::SetStat(SetStat {
                    id: 1,
                    path: "/usr/bin/x".into(),
                    attrs: FileAttributes { permissions: Some(0o4755), ..FileAttributes::empty() },
                })),
                ok(1),
                FileOperation {
                    op: "setstat".into(),
                    path: "/usr/bin/x".into(),
                    attrs: Some(FileAttrs { mode: Some(0o4755), ..Default::default() }),
                    ..Default::default()
                },
            ),
            (
                raw(SETSTAT, &[&id(2), &string(b"/etc/x"), &owner]),
                ok(2),
                FileOperation {
                    op: "setstat".into(),
                    path: "/etc/x".into(),
                    attrs: Some(FileAttrs { uid: Some(0), gid: Some(0), ..Default::default() }),
                    ..Default::default()
                },
            ),
            (
                raw(MKDIR, &[&id(3), &string(b"/srv/new"), &attrs_mode(0o755)]),
                ok(3),
                FileOperation {
                    op: "mkdir".into(),
                    path: "/srv/new".into(),
                    attrs: Some(FileAttrs { mode: Some(0o755), ..Default::default() }),
                    ..Default::default()
                },
            ),
            (
                raw(RMDIR, &[&id(4), &string(b"/srv/old")]),
                ok(4),
                FileOperation { op: "rmdir".into(), path: "/srv/old".into(), ..Default::default() },
            ),
            (
                raw(REMOVE, &[&id(5), &string(b"/var/log/auth.log")]),
                ok(5),
                FileOperation { op: "remove".into(), path: "/var/log/auth.log".into(), ..Default::default() },
            ),
            (
                raw(RENAME, &[&id(6), &string(b"/tmp/x"), &string(b"/etc/cron.d/x")]),
                ok(6),
                FileOperation {
                    op: "rename".into(),
                    path: "/tmp/x".into(),
                    to: Some("/etc/cron.d/x".into()),
                    ..Default::default()
                },
            ),
            (
                raw(SYMLINK, &[&id(7), &string(b"/etc/shadow"), &string(b"/tmp/s")]),
                failure,
                FileOperation {
                    op: "symlink".into(),
                    path: "/tmp/s".into(),
                    to: Some("/etc/shadow".into()),
                    status: "permission denied (3)".into(),
                    ..Default::default()
                },
            ),
            (
                wire(Packet::Extended(Extended {
                    id: 8,
                    request: "hardlink@openssh.com".into(),
                    data: [string(b"/etc/passwd"), string(b"/tmp/p")].concat(),
                })),
                ok(8),
                FileOperation {
                    op: "hardlink".into(),
                    path: "/tmp/p".into(),
                    to: Some("/etc/passwd".into()),
                    ..Default::default()
                },
            ),
            (
                raw(EXTENDED, &[&id(9), &string(b"posix-rename@openssh.com"), &string(b"/a"), &string(b"/b")]),
                ok(9),
                FileOperation {
                    op: "posix-rename".into(),
                    path: "/a".into(),
                    to: Some("/b".into()),
                    ..Default::default()
                },
            ),
            (
                raw(REALPATH, &[&id(10), &string(b".")]),
                raw(NAME, &[&id(10), &1u32.to_be_bytes(), &string(b"/root"), &string(b"/root"), &0u32.to_be_bytes()]),
                FileOperation {
                    op: "realpath".into(),
                    path: ".".into(),
                    detail: Some("/root".into()),
                    ..Default::default()
                },
            ),
            (
                raw(STAT, &[&id(11), &string(b"/etc/\xffbad\\name")]),
                raw(ATTRS, &[&id(11), &attrs_mode(0o100644)]),
                FileOperation { op: "stat".into(), path: "/etc/\\xffbad\\\\name".into(), ..Default::default() },
            ),
        ];
        for (request, answer, mut expected) in cases {
            let made = exchange(&mut g, &request, &answer);
            expected.at = 1.0;
            expected.request_id = u32::from_be_bytes(request[5..9].try_into().unwrap());
            if expected.status.is_empty() {
                expected.status = "ok".into();
            }
            assert_eq!(made, vec![Recorded::Operation(expected)]);
        }
    }

    /// Each packet a hostile client might send is refused, is not forwarded, and what came
    /// before it in the same read still is.
    #[test]
    fn what_the_gate_cannot_follow_is_refused() {
        let id = |n: u32| n.to_be_bytes();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("unknown type", raw(99, &[&id(1), b"zzz"]), "type 99"),
            ("a server packet from the client", ok(1), "type 101"),
            ("trailing bytes", raw(REMOVE, &[&id(1), &string(b"/x"), b"!"]), "after its last field"),
            ("truncated field", raw(REMOVE, &[&id(1), &100u32.to_be_bytes(), b"/x"]), "inside a field"),
            ("unknown extension", raw(EXTENDED, &[&id(1), &string(b"evil@example.com")]), "evil@example.com"),
            (
                "unknown open flag",
                raw(OPEN, &[&id(1), &string(b"/x"), &0x100u32.to_be_bytes(), &0u32.to_be_bytes()]),
                "open flags",
            ),
            (
                "unknown attribute flag",
                raw(SETSTAT, &[&id(1), &string(b"/x"), &0x40u32.to_be_bytes()]),
                "attribute flags",
            ),
            ("a handle never issued", raw(CLOSE, &[&id(1), &string(b"nope")]), "did not issue"),
            ("oversized", [(MAX_PACKET as u32 + 1).to_be_bytes().to_vec(), vec![3]].concat(), "bytes (at most"),
            ("empty", 0u32.to_be_bytes().to_vec(), "0 bytes"),
        ];
        for (what, packet, says) in cases {
            let mut g = running();
            let fine = raw(REMOVE, &[&id(50), &string(b"/ok")]);
            let err = g.from_client(&[fine.clone(), packet].concat()).map(|p| p.forward.len()).unwrap_err();
            assert!(err.0.contains(says), "{what}: {err}");
            // A fresh gate forwards the good packet alone when it arrives by itself.
            let mut g = running();
            assert_eq!(g.from_client(&fine).unwrap().forward, fine, "{what}");
        }
        // Duplicate request ids: two OPENs with one id, the second never reaches the target.
        let mut g = running();
        g.from_client(&open(7, "/tmp/harmless", OpenFlags::WRITE)).unwrap();
        let err = g.from_client(&open(7, "/etc/cron.d/x", OpenFlags::WRITE)).unwrap_err();
        assert!(err.0.contains("request id 7 reused"), "{err}");
        // Before INIT, a second INIT, an answer to nothing, a reissued handle, a wrong answer.
        assert!(SftpGate::new().from_client(&raw(REMOVE, &[&id(1), &string(b"/x")])).is_err());
        let mut g = running();
        assert!(g.from_client(&wire(Packet::Init(Init::new()))).is_err());
        let mut g = running();
        assert!(g.from_target(&ok(9)).unwrap_err().0.contains("not waiting"));
        let mut g = running();
        exchange(&mut g, &open(1, "/a", OpenFlags::READ), &handle(1, b"h"));
        g.from_client(&open(2, "/b", OpenFlags::READ)).unwrap();
        assert!(g.from_target(&handle(2, b"h")).unwrap_err().0.contains("already open"));
        let mut g = running();
        g.from_client(&raw(REMOVE, &[&id(3), &string(b"/x")])).unwrap();
        assert!(g.from_target(&handle(3, b"h")).unwrap_err().0.contains("packet type 102"));
        // A version other than 3 from the target.
        let mut g = SftpGate::new();
        g.from_client(&wire(Packet::Init(Init::new()))).unwrap();
        assert!(g.from_target(&raw(VERSION, &[&6u32.to_be_bytes()])).unwrap_err().0.contains("version 6"));
    }

    /// OpenSSH's binary handles from the 128th on are not UTF-8: each stays its own file.
    #[test]
    fn hundreds_of_interleaved_handles_stay_apart() {
        let mut g = running();
        let handle_of = |i: u32| i.to_be_bytes().to_vec();
        for i in 0..300u32 {
            exchange(
                &mut g,
                &open(i, &format!("/up/{i}"), OpenFlags::WRITE | OpenFlags::CREATE),
                &handle(i, &handle_of(i)),
            );
        }
        let mut expected = HashMap::new();
        let mut next_id = 1000;
        for round in 0..2 {
            for i in 0..300u32 {
                let data = format!("{i}-{round};");
                let entry: &mut Vec<u8> = expected.entry(i).or_default();
                let offset = entry.len() as u64;
                entry.extend_from_slice(data.as_bytes());
                let write = raw(
                    WRITE,
                    &[
                        &u32::to_be_bytes(next_id),
                        &string(&handle_of(i)),
                        &offset.to_be_bytes(),
                        &string(data.as_bytes()),
                    ],
                );
                exchange(&mut g, &write, &ok(next_id));
                next_id += 1;
            }
        }
        let mut seen = 0;
        for i in (0..300u32).rev() {
            let closed =
                exchange(&mut g, &raw(CLOSE, &[&u32::to_be_bytes(5000 + i), &string(&handle_of(i))]), &ok(5000 + i));
            let t = &transfers(&closed)[0];
            assert_eq!(t.path, format!("/up/{i}"));
            assert_eq!(t.sha256.as_deref(), Some(sha(&expected[&i]).as_str()));
            seen += 1;
        }
        assert_eq!(seen, 300);
        assert!(g.finish().is_empty());
    }

    #[test]
    fn paths_are_recorded_without_ambiguity() {
        let cases: [(&[u8], &str); 5] = [
            (b"/etc/passwd", "/etc/passwd"),
            ("/tmp/ünïcode".as_bytes(), "/tmp/ünïcode"),
            (b"/tmp/\xff\xfe", "/tmp/\\xff\\xfe"),
            (b"/tmp/\\xff", "/tmp/\\\\xff"),
            (b"a\\b", "a\\\\b"),
        ];
        for (bytes, text) in cases {
            assert_eq!(path_text(bytes), text);
        }
        let long = vec![b'a'; MAX_RECORDED_PATH + 10];
        assert!(path_text(&long).ends_with(&format!("…({} bytes in all)", MAX_RECORDED_PATH + 10)));
    }

    #[test]
    fn out_of_order_writes_beyond_the_window_lose_only_the_hash() {
        let mut h = FileHash::new();
        h.add(MAX_REORDER_BYTES as u64 * 4, &vec![1u8; MAX_REORDER_BYTES + 1]);
        h.add(0, b"abc");
        let (size, sha) = h.finish();
        assert!(sha.is_none());
        assert_eq!(size, MAX_REORDER_BYTES as u64 + 4);
    }
}
