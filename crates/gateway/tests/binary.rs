//! The gateway-only binary as an operator meets it before enrolment (the end-to-end suite runs
//! it enrolled, against real servers and sshd targets). Building this test is also what builds
//! `portcullis-gateway` beside `portcullis` for that suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn gateway(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis-gateway"));
    cmd.env("PORTCULLIS_HOME", home)
        .env("PORTCULLIS_KEY_STORE", "passphrase")
        .env("PORTCULLIS_PASSPHRASE", "unused-here");
    cmd
}

#[test]
fn an_unenrolled_gateway_refuses_to_serve_and_says_how_to_enrol() {
    let home = tempfile::tempdir().unwrap();
    let out = gateway(home.path()).args(["run", "--listen", "127.0.0.1:0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no gateway is enrolled") && stderr.contains("enroll --server URL --code CODE"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0, "a refused start leaves nothing behind");
}

#[test]
fn a_malformed_enrolment_code_is_refused_before_anything_is_written() {
    let home = tempfile::tempdir().unwrap();
    for code in ["", "not-a-code", &"x".repeat(10_000)] {
        let out =
            gateway(home.path()).args(["enroll", "--server", "https://127.0.0.1:9", "--code", code]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{code:.20}: {stderr}");
        assert!(stderr.starts_with("portcullis-gateway: ") && stderr.len() < 500, "{stderr}");
        assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0, "{code:.20}: nothing is written");
    }
}
