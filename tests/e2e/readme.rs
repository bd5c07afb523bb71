//! The README's walk-through, run as a newcomer runs it: every ```sh block of its "Quick start"
//! section, in order, with the real binary on PATH, a fresh HOME, the suite's OS keyring and a
//! throwaway OpenSSH server as the target (the README asks the reader for an SSH server of their
//! own in TARGET_HOST, TARGET_PORT, TARGET_LOGIN and TARGET_KEY). A block whose fence says
//! `second terminal` keeps running (the server) while the next blocks run. Then the mistakes a
//! newcomer makes on the way: each error says what to do next.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

struct Block {
    info: String,
    code: String,
}

/// The fenced blocks of the README section headed `heading`.
fn readme_blocks(heading: &str) -> Vec<Block> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find(&format!("\n## {heading}\n")).unwrap_or_else(|| panic!("README has no '## {heading}'"));
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let code: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
            blocks.push(Block { info: info.to_string(), code: code.join("\n") + "\n" });
        }
    }
    blocks
}

/// A shell like the reader's: the binary on PATH, a fresh HOME, in `dir`.
fn shell(dir: &Path, home: &Path, target: &Sshd, script: &str) -> Command {
    let bin = Path::new(BIN).parent().unwrap();
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("HOME", home)
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()))
        .env("TARGET_HOST", "127.0.0.1")
        .env("TARGET_PORT", target.port.to_string())
        .env("TARGET_LOGIN", whoami())
        .env("TARGET_KEY", &target.user_key)
        .env_remove("PORTCULLIS_HOME")
        .env_remove("PORTCULLIS_PASSPHRASE")
        .env_remove("PORTCULLIS_KEY_STORE")
        .env_remove("XDG_DATA_HOME")
        .stdin(Stdio::null());
    cmd
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let blocks = readme_blocks("Quick start");
    assert!(blocks.len() >= 3, "the quick start has {} blocks", blocks.len());
    let target = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let mut background = Vec::new();
    let mut ran = String::new();
    for (n, block) in blocks.iter().enumerate() {
        if !block.info.starts_with("sh") {
            continue;
        }
        if block.info.contains("second terminal") {
            let log = dir.path().join(format!("block-{n}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let child = shell(dir.path(), &home, &target, &format!("exec {}", block.code.trim()))
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap();
            background.push(Background(child));
            let deadline = Instant::now() + Duration::from_secs(30);
            while !std::fs::read_to_string(&log).unwrap_or_default().contains("listening on") {
                assert!(Instant::now() < deadline, "block {n} never said it was listening:\n{}", block.code);
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        let out = shell(dir.path(), &home, &target, &block.code).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "README block {n} failed:\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            block.code
        );
        ran.push_str(&stdout);
    }
    // What the walk-through promises: the command ran on the target through the gateway, and
    // the auditor sees the recorded session.
    assert!(ran.contains("hello from the target"), "{ran}");
    let sessions = ran.lines().filter(|l| l.contains(" web ") && l.contains("alice")).count();
    assert!(sessions >= 1, "no recorded session in the walk-through's output:\n{ran}");
}

/// Runs the binary as a newcomer would (fresh HOME, keyring of the suite) and returns stderr.
fn mistake(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("PORTCULLIS_HOME")
        .env_remove("XDG_DATA_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "`portcullis {}` succeeded", args.join(" "));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_newcomers_mistakes_say_what_to_do_next() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("pam");
    let data_arg = data.to_str().unwrap();
    // No arguments, and --help: where to start.
    for args in [&[][..], &["--help"][..]] {
        let out = Command::new(BIN).args(args).env("HOME", d).env_remove("PORTCULLIS_HOME").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "portcullis {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("First steps") && text.contains("portcullis server init --data"), "{text}");
        assert!(text.contains("portcullis enroll --server"), "{text}");
    }
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        // Each mistake, and what its message must point to.
        (vec!["whoami"], &["not enrolled", "portcullis enroll"]),
        (vec!["target", "list"], &["not enrolled", "portcullis enroll"]),
        (vec!["server", "run", "--data", data_arg, "--listen", "127.0.0.1:0"], &["portcullis server init --data"]),
        (vec!["enroll", "--server", "http://127.0.0.1:9", "--code", "pc1-abc-def"], &["code"]),
        (vec!["request", "web"], &["--duration", "--reason"]),
    ];
    for (args, hints) in &cases {
        let stderr = mistake(d, args);
        for hint in *hints {
            assert!(stderr.contains(hint), "`portcullis {}` should mention {hint:?}:\n{stderr}", args.join(" "));
        }
    }
    // Initialising twice keeps the first server and says how to run it.
    let first = base_command("warn").args(["server", "init", "--data"]).arg(&data).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stderr = String::from_utf8_lossy(
        &base_command("warn").args(["server", "init", "--data"]).arg(&data).output().unwrap().stderr,
    )
    .into_owned();
    assert!(stderr.contains("already") && stderr.contains("portcullis server run --data"), "{stderr}");
    // A server that is not running: the enrolment says where it looked and what to start.
    let code = String::from_utf8_lossy(&first.stdout).lines().last().unwrap().trim().to_string();
    let port = free_port();
    let stderr = mistake(d, &["enroll", "--server", &format!("http://127.0.0.1:{port}"), "--code", &code]);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("portcullis server run"), "{stderr}");
}
