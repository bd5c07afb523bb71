//! Architecture invariants from ARCHITECTURE.md, checked against `cargo metadata`: a forbidden
//! dependency edge fails the build's tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

fn normal_deps() -> BTreeMap<String, BTreeSet<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut deps = BTreeMap::new();
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        if !name.starts_with("portcullis") {
            continue;
        }
        let direct: BTreeSet<String> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        deps.insert(name.to_string(), direct);
    }
    deps
}

#[test]
fn crates_respect_their_contracts() {
    let deps = normal_deps();
    let forbidden: &[(&str, &[&str])] = &[
        ("portcullis-crypto", &["sqlx", "tokio", "reqwest", "axum", "russh", "keyring", "tauri"]),
        ("portcullis-proto", &["sqlx", "tokio", "reqwest", "axum", "russh", "tauri"]),
        ("portcullis-keystore", &["sqlx", "tokio", "reqwest", "axum", "russh", "tauri"]),
        // The log format and its proofs are pure: verifiable anywhere, offline.
        ("portcullis-tlog", &["sqlx", "tokio", "reqwest", "axum", "russh", "keyring", "tauri"]),
        // A user's device has no code that talks to a target: the client never depends on the
        // gateway (the target side lives there), nor on the server.
        ("portcullis-client", &["axum", "portcullis-server", "portcullis-gateway", "russh-sftp", "tauri"]),
        ("portcullis-server", &["reqwest", "portcullis-client", "portcullis-gateway", "portcullis-app", "tauri"]),
        ("portcullis-gateway", &["portcullis-app", "axum", "tauri"]),
        ("portcullis-client", &["portcullis-app"]),
    ];
    for (krate, banned) in forbidden {
        let have = deps.get(*krate).unwrap_or_else(|| panic!("{krate} missing from the workspace"));
        for b in *banned {
            assert!(!have.contains(*b), "{krate} must not depend on {b} (see ARCHITECTURE.md)");
        }
    }
    // The core crates never depend on Tauri, directly or not.
    for (krate, have) in &deps {
        if krate != "portcullis-desktop" {
            assert!(!have.iter().any(|d| d.starts_with("tauri")), "{krate} depends on Tauri");
        }
    }
    // Invariant 6: src-tauri is a thin shell: no crypto, SQL, SSH or HTTP of its own.
    let shell = deps.get("portcullis-desktop").expect("the desktop shell is a workspace member");
    for banned in [
        "sqlx",
        "aes-gcm",
        "argon2",
        "ed25519-dalek",
        "hpke",
        "ring",
        "russh",
        "reqwest",
        "portcullis-crypto",
        "portcullis-client",
        "portcullis-server",
        "portcullis-gateway",
    ] {
        assert!(
            !shell.contains(banned),
            "src-tauri must stay a thin shell over portcullis-app; it depends on {banned}"
        );
    }
    assert!(shell.contains("portcullis-app"));
}

/// The UI talks to the host through `ui/src/ipc/` only, so it can run against a mock host.
#[test]
fn only_the_ipc_module_imports_tauri_in_the_ui() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src");
    let mut stack = vec![src.clone()];
    let mut checked = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path != src.join("ipc") {
                    stack.push(path);
                }
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            checked += 1;
            assert!(!text.contains("@tauri-apps/"), "{} imports @tauri-apps outside src/ipc", path.display());
        }
    }
    assert!(checked > 3, "the UI sources were not found");
}
