//! File transfers seen in a session's byte streams: the sftp subsystem (parsed with
//! `russh-sftp`'s packet codec) and the legacy scp protocol (`scp -t` / `scp -f`). Each file
//! becomes a [`Transfer`]: path, direction, size and the SHA-256 of its bytes in order.
//!
//! Pure state machines fed with the bytes each way; they never block or fail the session: a
//! stream they cannot follow (hostile or unknown) is marked and no longer parsed.

use std::collections::{BTreeMap, HashMap};

use bytes::{Buf, Bytes, BytesMut};
use russh_sftp::protocol::{OpenFlags, Packet};
use sha2::{Digest, Sha256};

/// One file that went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub protocol: &'static str,
    pub path: String,
    /// `upload` (towards the target) or `download`.
    pub direction: &'static str,
    pub size: u64,
    /// Hex SHA-256 of the bytes in order; `None` when they were not sequential.
    pub sha256: Option<String>,
    pub complete: bool,
}

/// Which way bytes travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// From the user towards the target.
    Up,
    /// From the target back to the user.
    Down,
}

/// The largest sftp packet followed; OpenSSH's own limit is 256 KiB.
const MAX_SFTP_PACKET: usize = 4 * 1024 * 1024;
/// Out-of-order read data kept while waiting for the gap before it (per file).
const MAX_REORDER_BYTES: usize = 8 * 1024 * 1024;

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
            self.sequential = false;
            self.ahead.clear();
            self.ahead_bytes = 0;
        }
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

/// Follows an sftp session: OPEN → HANDLE → WRITE/READ(+DATA) → CLOSE.
#[derive(Default)]
pub struct SftpTracker {
    up: BytesMut,
    down: BytesMut,
    broken: bool,
    /// Request id of an OPEN → (path, opened for writing).
    opening: HashMap<u32, (String, bool)>,
    files: HashMap<String, OpenFile>,
    /// Request id of a READ → (handle, offset).
    reads: HashMap<u32, (String, u64)>,
    done: Vec<Transfer>,
}

impl SftpTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the stream stopped making sense (then nothing more is parsed).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    pub fn feed(&mut self, way: Way, data: &[u8]) {
        if self.broken {
            return;
        }
        let buffer = match way {
            Way::Up => &mut self.up,
            Way::Down => &mut self.down,
        };
        buffer.extend_from_slice(data);
        loop {
            let buffer = match way {
                Way::Up => &mut self.up,
                Way::Down => &mut self.down,
            };
            if buffer.len() < 4 {
                return;
            }
            let len = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
            if len == 0 || len > MAX_SFTP_PACKET {
                self.broken = true;
                return;
            }
            if buffer.len() < 4 + len {
                return;
            }
            buffer.advance(4);
            let mut packet = buffer.split_to(len).freeze();
            match Packet::try_from(&mut packet) {
                Ok(packet) => self.on_packet(packet),
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
    }

    fn on_packet(&mut self, packet: Packet) {
        match packet {
            Packet::Open(open) => {
                let writing = open.pflags.intersects(OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE);
                self.opening.insert(open.id, (open.filename, writing));
            }
            Packet::Handle(handle) => {
                if let Some((path, writing)) = self.opening.remove(&handle.id) {
                    let file = OpenFile { path, writing, written: FileHash::new(), read: FileHash::new() };
                    self.files.insert(handle.handle, file);
                }
            }
            Packet::Status(status) => {
                self.opening.remove(&status.id);
                self.reads.remove(&status.id);
            }
            Packet::Write(write) => {
                if let Some(file) = self.files.get_mut(&write.handle) {
                    file.written.add(write.offset, &write.data);
                }
            }
            Packet::Read(read) if self.files.contains_key(&read.handle) => {
                self.reads.insert(read.id, (read.handle, read.offset));
            }
            Packet::Data(data) => {
                if let Some((handle, offset)) = self.reads.remove(&data.id)
                    && let Some(file) = self.files.get_mut(&handle)
                {
                    file.read.add(offset, &data.data);
                }
            }
            Packet::Close(close) => {
                if let Some(file) = self.files.remove(&close.handle)
                    && let Some(t) = file.into_transfer(true)
                {
                    self.done.push(t);
                }
            }
            _ => {}
        }
    }

    /// Files closed since the last call.
    pub fn take_done(&mut self) -> Vec<Transfer> {
        std::mem::take(&mut self.done)
    }

    /// At the end of the session: files still open, as incomplete transfers.
    pub fn finish(&mut self) -> Vec<Transfer> {
        let mut out = self.take_done();
        let mut open: Vec<_> = self.files.drain().collect();
        open.sort_by(|a, b| a.1.path.cmp(&b.1.path));
        out.extend(open.into_iter().filter_map(|(_, f)| f.into_transfer(false)));
        out
    }
}

/// What an exec command is, as far as transfers go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScpMode {
    /// `scp -t PATH`: the target receives (an upload).
    Sink { path: String, directory: bool },
    /// `scp -f PATH`: the target sends (a download).
    Source { path: String },
}

/// Whether a shell would run `command` as one plain program: no unquoted (or double-quoted)
/// character that chains, substitutes, redirects or expands (`;`, `&`, `|`, `` ` ``, `$`, `(`,
/// `)`, `<`, `>`, a newline…). Single-quoted text is literal.
pub fn plain_command(command: &str) -> bool {
    let mut quote = None;
    for c in command.chars() {
        match (quote, c) {
            (Some('\''), '\'') => quote = None,
            (Some('\''), _) => {}
            (Some('"'), '"') => quote = None,
            (Some('"'), '$' | '`' | '\\') => return false,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (
                None,
                ';' | '&' | '|' | '`' | '$' | '(' | ')' | '<' | '>' | '\n' | '\r' | '\\' | '*' | '?' | '[' | '{' | '~'
                | '#' | '!',
            ) => {
                return false;
            }
            (None, c) if c.is_control() => return false,
            (None, _) => {}
        }
    }
    quote.is_none()
}

/// The file-transfer protocol an exec command *is* — exactly, not by prefix: scp's sink or
/// source (`scp -t`/`scp -f`) or `rsync --server`, as one plain program. Such sessions may send
/// more than the input cap (their files are what is recorded); anything else may not.
pub fn transfer_protocol(command: &str) -> Option<&'static str> {
    if !plain_command(command) {
        return None;
    }
    let words = split_words(command);
    let program = words.first()?.rsplit('/').next()?;
    match program {
        "scp" if scp_mode(command).is_some() => Some("scp"),
        "rsync" if words.get(1).map(String::as_str) == Some("--server") => Some("rsync"),
        _ => None,
    }
}

/// Recognises the remote end of a legacy-mode scp (`scp -t ...` / `scp -f ...`).
pub fn scp_mode(command: &str) -> Option<ScpMode> {
    let words = split_words(command);
    let program = words.first()?;
    if program.rsplit('/').next() != Some("scp") {
        return None;
    }
    let mut sink = false;
    let mut source = false;
    let mut directory = false;
    let mut path = None;
    let mut options_done = false;
    for word in &words[1..] {
        if !options_done && word == "--" {
            options_done = true;
        } else if !options_done && word.starts_with('-') && word.len() > 1 {
            sink |= word.contains('t');
            source |= word.contains('f');
            directory |= word.contains('d');
        } else {
            path = Some(word.clone());
        }
    }
    let path = path.unwrap_or_else(|| ".".into());
    match (sink, source) {
        (true, false) => Some(ScpMode::Sink { path, directory }),
        (false, true) => Some(ScpMode::Source { path }),
        _ => None,
    }
}

/// Shell-like word splitting with single and double quotes and backslashes (how OpenSSH's scp
/// quotes the remote path).
fn split_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        q => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

enum ScpState {
    /// Reading a control line.
    Line(Vec<u8>),
    /// Inside a file's bytes.
    Data {
        path: String,
        size: u64,
        left: u64,
        hasher: Sha256,
    },
    /// The status byte after a file's bytes.
    Trailer,
    Broken,
}

const MAX_SCP_LINE: usize = 8192;

/// Follows the legacy scp protocol in the direction that carries files.
pub struct ScpTracker {
    mode: ScpMode,
    state: ScpState,
    dirs: Vec<String>,
    done: Vec<Transfer>,
}

impl ScpTracker {
    pub fn new(mode: ScpMode) -> Self {
        Self { mode, state: ScpState::Line(Vec::new()), dirs: Vec::new(), done: Vec::new() }
    }

    fn carrying(&self) -> Way {
        match self.mode {
            ScpMode::Sink { .. } => Way::Up,
            ScpMode::Source { .. } => Way::Down,
        }
    }

    fn direction(&self) -> &'static str {
        match self.mode {
            ScpMode::Sink { .. } => "upload",
            ScpMode::Source { .. } => "download",
        }
    }

    fn file_path(&self, name: &str) -> String {
        let base = match &self.mode {
            ScpMode::Sink { path, .. } | ScpMode::Source { path } => path.trim_end_matches('/'),
        };
        let base = if base.is_empty() { "/" } else { base };
        let single_file = match &self.mode {
            // `scp file host:dest`: dest is the file unless it is (or must be) a directory.
            ScpMode::Sink { directory, path } => !directory && !path.ends_with('/') && self.dirs.is_empty(),
            // `scp host:file .`: the path named is the file itself.
            ScpMode::Source { .. } => self.dirs.is_empty(),
        };
        if single_file {
            return base.to_string();
        }
        // Downloads: the first directory line names the source directory itself.
        let dirs = match self.mode {
            ScpMode::Source { .. } => self.dirs.get(1..).unwrap_or_default(),
            ScpMode::Sink { .. } => &self.dirs[..],
        };
        let mut path = base.to_string();
        for part in dirs.iter().chain(std::iter::once(&name.to_string())) {
            if !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(part);
        }
        path
    }

    pub fn feed(&mut self, way: Way, mut data: &[u8]) {
        if way != self.carrying() {
            return;
        }
        while !data.is_empty() {
            match &mut self.state {
                ScpState::Broken => return,
                ScpState::Line(line) => {
                    let end = data.iter().position(|b| *b == b'\n');
                    let take = end.map(|i| i + 1).unwrap_or(data.len());
                    line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if line.len() > MAX_SCP_LINE {
                        self.state = ScpState::Broken;
                        return;
                    }
                    if end.is_some() {
                        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                        self.state = ScpState::Line(Vec::new());
                        self.on_line(&text);
                    }
                }
                ScpState::Data { left, hasher, .. } => {
                    let take = (*left).min(data.len() as u64) as usize;
                    hasher.update(&data[..take]);
                    *left -= take as u64;
                    data = &data[take..];
                    if *left == 0 {
                        let ScpState::Data { path, size, hasher, .. } =
                            std::mem::replace(&mut self.state, ScpState::Trailer)
                        else {
                            unreachable!()
                        };
                        self.done.push(Transfer {
                            protocol: "scp",
                            path,
                            direction: self.direction(),
                            size,
                            sha256: Some(hex::encode(hasher.finalize())),
                            complete: true,
                        });
                    }
                }
                ScpState::Trailer => {
                    data = &data[1..];
                    self.state = ScpState::Line(Vec::new());
                }
            }
        }
    }

    fn on_line(&mut self, line: &str) {
        let mut parts = line.splitn(3, ' ');
        let head = parts.next().unwrap_or_default();
        match head.chars().next() {
            Some('C') => {
                let size = parts.next().and_then(|s| s.parse::<u64>().ok());
                let name = parts.next().filter(|n| !n.is_empty() && !n.contains('/') && *n != ".." && *n != ".");
                match (size, name) {
                    (Some(size), Some(name)) => {
                        let path = self.file_path(name);
                        self.state = if size == 0 {
                            self.done.push(Transfer {
                                protocol: "scp",
                                path,
                                direction: self.direction(),
                                size: 0,
                                sha256: Some(hex::encode(Sha256::digest([]))),
                                complete: true,
                            });
                            ScpState::Trailer
                        } else {
                            ScpState::Data { path, size, left: size, hasher: Sha256::new() }
                        };
                    }
                    _ => self.state = ScpState::Broken,
                }
            }
            Some('D') => match parts.nth(1) {
                Some(name) if !name.is_empty() && !name.contains('/') => self.dirs.push(name.to_string()),
                _ => self.state = ScpState::Broken,
            },
            Some('E') => {
                self.dirs.pop();
            }
            // Times, and warnings or errors from the other end.
            Some('T') | Some('\u{1}') | Some('\u{2}') => {}
            _ => self.state = ScpState::Broken,
        }
    }

    pub fn take_done(&mut self) -> Vec<Transfer> {
        std::mem::take(&mut self.done)
    }

    /// At the end: a file cut off mid-way, as an incomplete transfer.
    pub fn finish(&mut self) -> Vec<Transfer> {
        let mut out = self.take_done();
        if let ScpState::Data { path, size, left, .. } = std::mem::replace(&mut self.state, ScpState::Broken) {
            out.push(Transfer {
                protocol: "scp",
                path,
                direction: self.direction(),
                size: size - left,
                sha256: None,
                complete: false,
            });
        }
        out
    }
}

/// Turns a packet into its wire form (tests and benchmarks build sftp streams with it).
pub fn sftp_wire(packet: Packet) -> Vec<u8> {
    Bytes::try_from(packet).map(|b| b.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh_sftp::protocol::{Close, Data, FileAttributes, Handle, Open, Read, Status, StatusCode, Write};

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn scp_commands_are_recognised() {
        let table: &[(&str, Option<ScpMode>)] = &[
            ("scp -t /tmp/x", Some(ScpMode::Sink { path: "/tmp/x".into(), directory: false })),
            ("scp -r -d -t -- '/tmp/my dir'", Some(ScpMode::Sink { path: "/tmp/my dir".into(), directory: true })),
            ("/usr/bin/scp -v -f /etc/hosts", Some(ScpMode::Source { path: "/etc/hosts".into() })),
            ("scp -f", Some(ScpMode::Source { path: ".".into() })),
            ("scp /a /b", None),
            ("rsync --server -e.LsfxCIvu . /tmp", None),
            ("echo scp -t x", None),
            ("", None),
        ];
        for (command, want) in table {
            assert_eq!(&scp_mode(command), want, "{command}");
        }
    }

    #[test]
    fn only_a_plain_transfer_command_is_exempt_from_the_input_cap() {
        let table: &[(&str, Option<&str>)] = &[
            ("scp -t /tmp/x", Some("scp")),
            ("scp -r -d -t -- '/tmp/my dir; rm -rf /'", Some("scp")),
            ("/usr/bin/scp -f /etc/hosts", Some("scp")),
            ("rsync --server -vlogDtpre.iLsfxCIvu . /tmp/dest", Some("rsync")),
            ("rsync --server --sender -vlogDtpre.iLsfxCIvu . /srv", Some("rsync")),
            // Chained, substituted, redirected, expanded: whatever follows would run unrecorded.
            ("rsync --server . /tmp; bash", None),
            ("scp -t /tmp/x && bash -s", None),
            ("scp -t /tmp/x | sh", None),
            ("scp -t $(bash)", None),
            ("scp -t \"$HOME\"", None),
            ("scp -t `id`", None),
            ("scp -t /tmp/x\nbash", None),
            ("scp -t /tmp/x > /dev/null", None),
            ("scp -t '/tmp/unclosed", None),
            ("scp -t ~/x", None),
            ("rsync --daemon", None),
            ("rsync -av --server . /x", None),
            ("head -c 1048576 >/dev/null; bash -s", None),
            ("nc db 5432", None),
            ("bash -s", None),
            ("", None),
        ];
        for (command, want) in table {
            assert_eq!(transfer_protocol(command), *want, "{command:?}");
        }
    }

    #[test]
    fn scp_upload_and_download_are_followed_byte_for_byte() {
        let body = b"hello scp\n".repeat(1000);
        let mut stream = format!("T1700000000 0 1700000000 0\nC0644 {} f.txt\n", body.len()).into_bytes();
        stream.extend_from_slice(&body);
        stream.push(0);
        stream.extend_from_slice(b"C0600 0 empty\n\0");
        // Fed in awkward pieces: the split points must not matter.
        for piece in [1usize, 7, 4096, stream.len()] {
            let mut t = ScpTracker::new(ScpMode::Sink { path: "/tmp/dest/".into(), directory: true });
            for chunk in stream.chunks(piece) {
                t.feed(Way::Up, chunk);
                t.feed(Way::Down, b"\0"); // acks are ignored
            }
            let done = t.finish();
            assert_eq!(done.len(), 2, "piece {piece}");
            assert_eq!(done[0].path, "/tmp/dest/f.txt");
            assert_eq!(done[0].direction, "upload");
            assert_eq!(done[0].size, body.len() as u64);
            assert_eq!(done[0].sha256.as_deref(), Some(sha(&body).as_str()));
            assert_eq!(done[1].path, "/tmp/dest/empty");
            assert_eq!(done[1].size, 0);
        }

        let mut down = ScpTracker::new(ScpMode::Source { path: "/srv/data".into() });
        let mut stream = b"D0755 0 data\nC0644 3 a\nabc\0D0755 0 sub\nC0644 2 b\nxy\0E\nE\n".to_vec();
        down.feed(Way::Up, b"\0\0\0");
        down.feed(Way::Down, &stream);
        let done = down.take_done();
        assert_eq!(done.iter().map(|t| t.path.as_str()).collect::<Vec<_>>(), ["/srv/data/a", "/srv/data/sub/b"]);
        assert!(done.iter().all(|t| t.direction == "download"));

        // A single file to a non-directory destination keeps the destination's name.
        let mut single = ScpTracker::new(ScpMode::Sink { path: "/tmp/renamed".into(), directory: false });
        single.feed(Way::Up, b"C0644 2 original\nok\0");
        assert_eq!(single.take_done()[0].path, "/tmp/renamed");

        // Cut off mid-file: incomplete, no hash. Hostile names stop the parser.
        let mut cut = ScpTracker::new(ScpMode::Sink { path: "/tmp".into(), directory: true });
        cut.feed(Way::Up, b"C0644 10 f\nabc");
        let done = cut.finish();
        assert_eq!((done[0].size, done[0].complete, done[0].sha256.clone()), (3, false, None));
        let mut hostile = ScpTracker::new(ScpMode::Sink { path: "/tmp".into(), directory: true });
        stream.clear();
        stream.extend_from_slice(b"C0644 2 ../../etc/passwd\nxx\0");
        hostile.feed(Way::Up, &stream);
        assert!(hostile.finish().is_empty());
    }

    fn open(id: u32, path: &str, flags: OpenFlags) -> Vec<u8> {
        sftp_wire(Packet::Open(Open { id, filename: path.into(), pflags: flags, attrs: FileAttributes::empty() }))
    }

    #[test]
    fn sftp_uploads_and_downloads_are_followed() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut t = SftpTracker::new();
        // Upload: open for writing, three writes in order, close.
        t.feed(Way::Up, &open(1, "/tmp/up.bin", OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE));
        t.feed(Way::Down, &sftp_wire(Packet::Handle(Handle { id: 1, handle: "\0\0\0\x01".into() })));
        for (i, chunk) in body.chunks(65536).enumerate() {
            let write = Write {
                id: 10 + i as u32,
                handle: "\0\0\0\x01".into(),
                offset: i as u64 * 65536,
                data: chunk.to_vec(),
            };
            // Byte by byte for the first packet: framing must survive any split.
            let wire = sftp_wire(Packet::Write(write));
            if i == 0 {
                for b in &wire {
                    t.feed(Way::Up, std::slice::from_ref(b));
                }
            } else {
                t.feed(Way::Up, &wire);
            }
        }
        t.feed(Way::Up, &sftp_wire(Packet::Close(Close { id: 20, handle: "\0\0\0\x01".into() })));
        let done = t.take_done();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].path.as_str(), done[0].direction, done[0].size),
            ("/tmp/up.bin", "upload", body.len() as u64)
        );
        assert_eq!(done[0].sha256.as_deref(), Some(sha(&body).as_str()));

        // Download with the second read answered before the first (reordered within bounds).
        t.feed(Way::Up, &open(30, "/etc/data", OpenFlags::READ));
        t.feed(Way::Down, &sftp_wire(Packet::Handle(Handle { id: 30, handle: "h2".into() })));
        t.feed(Way::Up, &sftp_wire(Packet::Read(Read { id: 31, handle: "h2".into(), offset: 0, len: 100_000 })));
        t.feed(Way::Up, &sftp_wire(Packet::Read(Read { id: 32, handle: "h2".into(), offset: 100_000, len: 100_000 })));
        t.feed(Way::Up, &sftp_wire(Packet::Read(Read { id: 33, handle: "h2".into(), offset: 200_000, len: 100_000 })));
        t.feed(Way::Down, &sftp_wire(Packet::Data(Data { id: 32, data: body[100_000..].to_vec() })));
        t.feed(Way::Down, &sftp_wire(Packet::Data(Data { id: 31, data: body[..100_000].to_vec() })));
        t.feed(
            Way::Down,
            &sftp_wire(Packet::Status(Status {
                id: 33,
                status_code: StatusCode::Eof,
                error_message: String::new(),
                language_tag: String::new(),
            })),
        );
        t.feed(Way::Up, &sftp_wire(Packet::Close(Close { id: 34, handle: "h2".into() })));
        let done = t.take_done();
        assert_eq!((done[0].path.as_str(), done[0].direction), ("/etc/data", "download"));
        assert_eq!(done[0].sha256.as_deref(), Some(sha(&body).as_str()));

        // A file left open at the end is reported incomplete; opening without reading is no transfer.
        t.feed(Way::Up, &open(40, "/tmp/partial", OpenFlags::WRITE));
        t.feed(Way::Down, &sftp_wire(Packet::Handle(Handle { id: 40, handle: "h3".into() })));
        t.feed(
            Way::Up,
            &sftp_wire(Packet::Write(Write { id: 41, handle: "h3".into(), offset: 0, data: b"abc".to_vec() })),
        );
        t.feed(Way::Up, &open(42, "/tmp/just-looked", OpenFlags::READ));
        t.feed(Way::Down, &sftp_wire(Packet::Handle(Handle { id: 42, handle: "h4".into() })));
        let rest = t.finish();
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].path.as_str(), rest[0].complete, rest[0].size), ("/tmp/partial", false, 3));

        // Garbage stops parsing without panicking.
        let mut g = SftpTracker::new();
        g.feed(Way::Up, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert!(g.is_broken());
        let mut g = SftpTracker::new();
        g.feed(Way::Up, &[0, 0, 0, 2, 0xee, 0]);
        assert!(g.is_broken());
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
