//! sftp through the gateway, request by request: what the user's own `sftp` does to files
//! (rename, chmod to setuid, chown, mkdir, rmdir, links, remove) is in the recording with the
//! target's answers; a scripted hostile client (raw packets) is stopped at the first packet
//! the gateway cannot follow, and that packet — and everything after it — never reaches the
//! real sshd's sftp-server.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::harness::*;

fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// An sftp packet: length, type, fields.
fn packet(kind: u8, fields: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = std::iter::once(kind).chain(fields.iter().flat_map(|f| f.iter().copied())).collect();
    [(body.len() as u32).to_be_bytes().to_vec(), body].concat()
}

const INIT: u8 = 1;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const WRITE: u8 = 6;
const HANDLE: u8 = 102;
const STATUS: u8 = 101;
/// write | create | truncate
const CREATE: u32 = 0x02 | 0x08 | 0x10;

fn open(id: u32, path: &Path) -> Vec<u8> {
    packet(OPEN, &[&id.to_be_bytes(), &string(path.to_str().unwrap().as_bytes()), &CREATE.to_be_bytes(), &[0; 4]])
}

fn write(id: u32, handle: &[u8], offset: u64, data: &[u8]) -> Vec<u8> {
    packet(WRITE, &[&id.to_be_bytes(), &string(handle), &offset.to_be_bytes(), &string(data)])
}

fn close(id: u32, handle: &[u8]) -> Vec<u8> {
    packet(CLOSE, &[&id.to_be_bytes(), &string(handle)])
}

/// A scripted sftp client on one channel: sends raw bytes, reads whole answers.
struct RawSftp {
    channel: russh::Channel<russh::client::Msg>,
    inbox: Vec<u8>,
    stderr: String,
    closed: bool,
}

impl RawSftp {
    async fn start(raw: &RawSsh, target: &str) -> (russh::client::Handle<Pinned>, RawSftp) {
        let handle = raw.connect(target).await;
        let channel = handle.channel_open_session().await.unwrap();
        channel.request_subsystem(true, "sftp").await.unwrap();
        let mut sftp = RawSftp { channel, inbox: Vec::new(), stderr: String::new(), closed: false };
        sftp.send(&packet(INIT, &[&3u32.to_be_bytes()])).await;
        let version = sftp.answer().await.expect("the target's VERSION");
        assert_eq!(version[0], 2, "VERSION");
        (handle, sftp)
    }

    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.channel.data(bytes).await;
    }

    /// The next whole packet (type and fields), or `None` once the channel is closed.
    async fn answer(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.inbox.len() >= 4 {
                let len = u32::from_be_bytes(self.inbox[..4].try_into().unwrap()) as usize;
                if self.inbox.len() >= 4 + len {
                    let body = self.inbox[4..4 + len].to_vec();
                    self.inbox.drain(..4 + len);
                    return Some(body);
                }
            }
            if self.closed {
                return None;
            }
            match tokio::time::timeout(Duration::from_secs(10), self.channel.wait()).await.expect("an answer in 10 s") {
                Some(russh::ChannelMsg::Data { data }) => self.inbox.extend_from_slice(&data),
                Some(russh::ChannelMsg::ExtendedData { data, .. }) => {
                    self.stderr.push_str(&String::from_utf8_lossy(&data))
                }
                Some(russh::ChannelMsg::Close) | None => self.closed = true,
                Some(_) => {}
            }
        }
    }

    /// The handle an OPEN was answered with.
    async fn handle(&mut self) -> Vec<u8> {
        let answer = self.answer().await.expect("an answer to OPEN");
        assert_eq!(answer[0], HANDLE, "OPEN answered with a handle: {answer:?}");
        let len = u32::from_be_bytes(answer[5..9].try_into().unwrap()) as usize;
        answer[9..9 + len].to_vec()
    }

    async fn ok(&mut self) {
        let answer = self.answer().await.expect("a status");
        assert_eq!((answer[0], &answer[5..9]), (STATUS, &[0u8, 0, 0, 0][..]), "status ok: {answer:?}");
    }

    /// Reads until the gateway closes the channel; returns what it said on stderr.
    async fn until_closed(&mut self) -> String {
        while self.answer().await.is_some() {}
        self.stderr.clone()
    }
}

#[test]
fn sftp_is_recorded_request_by_request_and_fails_closed() {
    let sshd = Sshd::start();
    let world = World::new();
    world.add_key_target("files", &sshd);
    world.grant("files", "30m");
    let dir = world.root.path().join("sftp");
    std::fs::create_dir_all(&dir).unwrap();
    let at = |name: &str| dir.join(name).to_str().unwrap().to_string();

    // The user's own sftp: every request that changes files is in the recording, with the
    // target's answers (a failure included).
    let config = dir.join("ssh-config");
    world.alice.run(&["ssh-config", "--out", config.to_str().unwrap()]).ok();
    std::fs::write(dir.join("local.txt"), b"payload\n").unwrap();
    let batch = dir.join("batch");
    std::fs::write(
        &batch,
        [
            format!("put {} {}", at("local.txt"), at("up.txt")),
            format!("rename {} {}", at("up.txt"), at("moved.txt")),
            format!("chmod 4755 {}", at("moved.txt")),
            format!("chown 0 {}", at("moved.txt")),
            format!("mkdir {}", at("newdir")),
            format!("rmdir {}", at("newdir")),
            format!("symlink {} {}", at("moved.txt"), at("soft")),
            format!("ln {} {}", at("moved.txt"), at("hard")),
            format!("rm {}", at("hard")),
            format!("-rm {}", at("never-was")),
        ]
        .join("\n"),
    )
    .unwrap();
    let out = std::process::Command::new("sftp")
        .args(["-q", "-F", config.to_str().unwrap(), "-b", batch.to_str().unwrap(), "files.portcullis"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "sftp: {}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::symlink_metadata(at("soft")).unwrap().file_type().is_symlink());
    let shown = world.ended_session_showing(&at("soft"));
    for wanted in [
        format!("8 bytes  sha256 {}  {}", hex::encode(Sha256::digest(b"payload\n")), at("up.txt")),
        format!("open         {}  [write,create,truncate]", at("up.txt")),
        format!("rename {} -> {}  ok", at("up.txt"), at("moved.txt")),
        format!("setstat      {}  (mode 4755)  ok", at("moved.txt")),
        format!("setstat      {}  (owner 0:", at("moved.txt")),
        format!("mkdir        {}", at("newdir")),
        format!("rmdir        {}  ok", at("newdir")),
        format!("symlink      {} -> {}  ok", at("soft"), at("moved.txt")),
        format!("hardlink     {} -> {}  ok", at("hard"), at("moved.txt")),
        format!("remove       {}  ok", at("hard")),
        format!("remove       {}  no such file", at("never-was")),
    ] {
        assert!(shown.contains(&wanted), "{wanted:?} missing from:\n{shown}");
    }

    let raw = world.raw_ssh();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // An unknown packet type, then an upload in the same write: the session ends at the
    // unknown packet and the upload never reaches the target.
    let smuggled = dir.join("smuggled");
    let said = rt.block_on(async {
        let (_conn, mut sftp) = RawSftp::start(&raw, "files").await;
        let bytes = [
            packet(99, &[&1u32.to_be_bytes(), b"whatever"]),
            open(2, &smuggled),
            write(3, b"\0\0\0\0", 0, b"unrecorded"),
            close(4, b"\0\0\0\0"),
        ]
        .concat();
        sftp.send(&bytes).await;
        sftp.until_closed().await
    });
    assert!(said.contains("cannot record it; the session was stopped"), "{said}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!smuggled.exists(), "the upload after the unknown packet reached the target");
    let shown = world.ended_session_showing("type 99");
    assert!(shown.contains("ended:      protocol_violation"), "{shown}");
    assert!(shown.contains("protocol_violation") && shown.contains("refused: sftp packet type 99"), "{shown}");

    // Two OPENs with one request id: the first goes on, the second never reaches the target
    // (so a write can never be labelled with the other OPEN's path).
    let (harmless, relabelled) = (dir.join("harmless"), dir.join("cron-x"));
    let said = rt.block_on(async {
        let (_conn, mut sftp) = RawSftp::start(&raw, "files").await;
        sftp.send(&[open(7, &harmless), open(7, &relabelled)].concat()).await;
        sftp.until_closed().await
    });
    assert!(said.contains("cannot record"), "{said}");
    assert!(!relabelled.exists(), "the second OPEN reached the target");
    let shown = world.ended_session_showing("request id 7 reused");
    assert!(shown.contains(&format!("open         {}", harmless.display())), "{shown}");

    // 200 files open at once (OpenSSH's handles from the 128th on are not UTF-8), written
    // interleaved: each lands intact and each is recorded with its own hash.
    let many = dir.join("many");
    std::fs::create_dir_all(&many).unwrap();
    let files = 200u32;
    let contents: Vec<Vec<u8>> = (0..files)
        .map(|i| {
            format!("file {i} first;").into_bytes().into_iter().chain(format!("second {i}").into_bytes()).collect()
        })
        .collect();
    rt.block_on(async {
        let (_conn, mut sftp) = RawSftp::start(&raw, "files").await;
        let mut handles = Vec::new();
        for i in 0..files {
            sftp.send(&open(i, &many.join(format!("f{i}")))).await;
            handles.push(sftp.handle().await);
        }
        let mut id = 1000;
        for half in 0..2 {
            for i in 0..files as usize {
                let split = format!("file {i} first;").len();
                let (offset, data) =
                    if half == 0 { (0, &contents[i][..split]) } else { (split, &contents[i][split..]) };
                sftp.send(&write(id, &handles[i], offset as u64, data)).await;
                sftp.ok().await;
                id += 1;
            }
        }
        for (i, handle) in handles.iter().enumerate().rev() {
            sftp.send(&close(5000 + i as u32, handle)).await;
            sftp.ok().await;
        }
        sftp.send(&packet(13, &[&9999u32.to_be_bytes(), &string(b"/nonexistent/marker-many")])).await;
        sftp.answer().await.expect("REMOVE answered");
        let _ = sftp.channel.eof().await;
        let _ = sftp.channel.close().await;
    });
    for (i, want) in contents.iter().enumerate() {
        assert_eq!(&std::fs::read(many.join(format!("f{i}"))).unwrap(), want, "f{i}");
    }
    let shown = world.ended_session_showing("marker-many");
    for (i, want) in contents.iter().enumerate() {
        let line = format!("sha256 {}  {}", hex::encode(Sha256::digest(want)), many.join(format!("f{i}")).display());
        assert!(shown.contains(&line), "{line:?} missing from:\n{shown}");
    }
}
