//! File transfers seen in an exec session's byte streams: the legacy scp protocol (`scp -t` /
//! `scp -f`), and which commands are transfer protocols at all. Each file becomes a
//! [`Transfer`]: path, direction, size and the SHA-256 of its bytes in order. (The sftp
//! subsystem is followed on the forwarding path by [`crate::sftp`].)
//!
//! A pure state machine fed with the bytes each way; it never blocks the session: a stream it
//! cannot follow is marked and no longer parsed — the stream itself is still recorded, in full
//! up to the exec cap, like any other command's.

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

    /// The stream stopped following the protocol (then the session must end: its files could
    /// no longer be recorded).
    pub fn is_broken(&self) -> bool {
        matches!(self.state, ScpState::Broken)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
