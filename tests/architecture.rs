//! Architecture invariants from ARCHITECTURE.md, checked against `cargo metadata`: a forbidden
//! dependency edge fails the build's tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

/// The workspace's `cargo metadata` (resolved graph included), read once per test run.
fn metadata() -> &'static serde_json::Value {
    static META: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    META.get_or_init(|| {
        let out = std::process::Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
            .output()
            .expect("cargo metadata");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    })
}

fn normal_deps() -> BTreeMap<String, BTreeSet<String>> {
    let meta = metadata();
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
        // The server's SQL, pools and transactions live in the store crate only.
        (
            "portcullis-server",
            &["sqlx", "reqwest", "portcullis-client", "portcullis-gateway", "portcullis-app", "tauri"],
        ),
        ("portcullis-store", &["axum", "reqwest", "russh", "tauri", "portcullis-server", "portcullis-client"]),
        ("portcullis-app", &["sqlx"]),
        ("portcullis-cli", &["sqlx"]),
        // A gateway is a small process near the targets: it owns its control-plane interface
        // and knows neither the server nor a device's code (the embedded gateway is glue).
        (
            "portcullis-gateway",
            &[
                "portcullis-app",
                "portcullis-server",
                "portcullis-client",
                "portcullis-store",
                "portcullis-policy",
                "portcullis-vault",
                "axum",
                "tauri",
            ],
        ),
        ("portcullis-link", &["portcullis-server", "portcullis-client", "portcullis-gateway", "axum", "sqlx"]),
        ("portcullis-sshcert", &["sqlx", "tokio", "reqwest", "axum"]),
        ("portcullis-guard", &["sqlx", "reqwest", "axum", "russh"]),
        ("portcullis-localdb", &["reqwest", "axum", "russh", "portcullis-server", "portcullis-client"]),
        ("portcullis-client", &["portcullis-app"]),
        // The vault's model is pure: kinds, validation, sealing and masking, no IO.
        (
            "portcullis-vault",
            &["sqlx", "tokio", "reqwest", "axum", "keyring", "tauri", "portcullis-server", "portcullis-client"],
        ),
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

/// Every package a workspace member needs to build (normal edges, followed through the
/// resolved graph; features unified over the workspace, so this over-approximates).
fn built_for(package: &str) -> BTreeSet<String> {
    let meta = metadata();
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: BTreeMap<&str, Vec<&str>> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let normal = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null()))
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (n["id"].as_str().unwrap(), normal)
        })
        .collect();
    let start = names.iter().find(|(_, n)| **n == package).map(|(id, _)| *id).expect("package in the workspace");
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        if seen.insert(id) {
            stack.extend(nodes.get(id).into_iter().flatten().copied());
        }
    }
    seen.iter().map(|id| names[id].to_string()).collect()
}

/// A gateway-only build compiles none of the control server: no HTTP server framework, no
/// policy engine, no WebAuthn, no server store — and no device code.
#[test]
fn a_gateway_build_has_none_of_the_control_server() {
    let built = built_for("portcullis-gateway");
    assert!(built.contains("russh") && built.contains("portcullis-localdb"), "the closure was not computed: {built:?}");
    for banned in [
        "axum",
        "cedar-policy",
        "webauthn-rs",
        "portcullis-server",
        "portcullis-store",
        "portcullis-policy",
        "portcullis-client",
        "metrics-exporter-prometheus",
    ] {
        assert!(!built.contains(banned), "a gateway build compiles {banned} (see ARCHITECTURE.md)");
    }
    // And a device build carries no record-log code: the client takes the local database
    // without its `records` feature.
    let client = metadata()["packages"].as_array().unwrap().iter().find(|p| p["name"] == "portcullis-client").unwrap();
    let localdb =
        client["dependencies"].as_array().unwrap().iter().find(|d| d["name"] == "portcullis-localdb").unwrap();
    assert!(
        !localdb["features"].as_array().unwrap().iter().any(|f| f == "records"),
        "a device must not build the gateway's record log"
    );
}

/// No SQL outside the store crate (and the local database of a device or gateway,
/// `portcullis-localdb`): no `sqlx`, no query text in the server, the gateway, the client, the
/// glue, the desktop core, the CLI or the shell. Tests may edit a
/// database behind the server's back; the code under test may not bypass its store.
#[test]
fn the_servers_sql_lives_in_the_store_crate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Query text as it appears in code: upper-case keywords followed by a space.
    let query = ["SELECT ", "INSERT INTO ", "DELETE FROM ", "CREATE TABLE ", "BEGIN IMMEDIATE"];
    let mut checked = 0;
    for dir in [
        "crates/server/src",
        "crates/gateway/src",
        "crates/client/src",
        "crates/link/src",
        "crates/embedded/src",
        "crates/app/src",
        "crates/cli/src",
        "src-tauri/src",
    ] {
        let mut stack = vec![root.join(dir)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                checked += 1;
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    assert!(
                        !code.contains("sqlx::") && !query.iter().any(|q| code.contains(q)),
                        "{}:{}: SQL outside the store crate: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
    }
    assert!(checked > 50, "the sources were not found");
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

/// The packages `tests/setup.sh --list` names.
fn setup_packages() -> Vec<String> {
    let out = std::process::Command::new("bash").arg(repo().join("tests/setup.sh")).arg("--list").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.split('\t').next().unwrap().to_string()).collect()
}

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/setup.sh --missing` against a fake `dpkg-query` that prints `status` lines (the
/// format setup.sh asks for: package, status, provides).
fn missing_with_fake_dpkg(status: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let listing = dir.path().join("status");
    std::fs::write(&listing, status).unwrap();
    let fake = dir.path().join("dpkg-query");
    std::fs::write(&fake, format!("#!/bin/sh\nexec cat '{}'\n", listing.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap());
    let out = std::process::Command::new("bash")
        .arg(repo().join("tests/setup.sh"))
        .arg("--missing")
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

/// setup.sh asks dpkg, package by package: each package it lists, reported missing while every
/// other one is installed, is the one it would install — whatever files are on disk.
#[test]
fn setup_asks_dpkg_about_each_package() {
    let packages = setup_packages();
    assert!(packages.len() > 20, "{packages:?}");
    let line = |p: &str, status: &str| format!("{p}\t{status}\t\n");
    for gone in &packages {
        let status: String = packages.iter().filter(|p| *p != gone).map(|p| line(p, "install ok installed")).collect();
        assert_eq!(missing_with_fake_dpkg(&status), vec![gone.clone()], "{gone} reported missing");
        // Removed but with its configuration left behind: still missing.
        let removed = format!("{status}{}", line(gone, "deinstall ok config-files"));
        assert_eq!(missing_with_fake_dpkg(&removed), vec![gone.clone()], "{gone} removed (rc)");
    }
    let all: String = packages.iter().map(|p| line(p, "install ok installed")).collect();
    assert!(missing_with_fake_dpkg(&all).is_empty());
    // NodeSource's nodejs provides npm: no Debian npm asked for beside it.
    let without_npm: String =
        packages.iter().filter(|p| *p != "npm").map(|p| line(p, "install ok installed")).collect();
    let nodesource = without_npm
        .replace("nodejs\tinstall ok installed\t\n", "nodejs\tinstall ok installed\tnodejs-dev, npm (= 10.8.2)\n");
    assert!(missing_with_fake_dpkg(&nodesource).is_empty());
}

/// Every crate of the Linux build that links or generates against a system library is mapped to
/// the Debian package that brings it, and setup.sh installs that package; a new `-sys` crate fails
/// here until someone says which package it needs.
#[test]
fn setup_installs_what_the_build_links_against() {
    // crate -> the Debian package with its headers / .pc file / library ("" when it needs none).
    let needs: &[(&str, &str)] = &[
        ("clang-sys", "libclang-dev"), // bindgen (fido-hid-rs) loads libclang.so, not libclang-cpp
        ("libudev-sys", "libudev-dev"),
        ("libdbus-sys", "libdbus-1-dev"),
        ("webkit2gtk-sys", "libwebkit2gtk-4.1-dev"),
        ("javascriptcore-rs-sys", "libjavascriptcoregtk-4.1-dev"),
        ("soup3-sys", "libsoup-3.0-dev"),
        ("gtk-sys", "libgtk-3-dev"),
        ("gdk-sys", "libgtk-3-dev"),
        ("gdkx11-sys", "libgtk-3-dev"),
        ("gdkwayland-sys", "libgtk-3-dev"),
        ("atk-sys", "libgtk-3-dev"),
        ("pango-sys", "libgtk-3-dev"),
        ("gdk-pixbuf-sys", "libgtk-3-dev"),
        ("gio-sys", "libgtk-3-dev"),
        ("glib-sys", "libgtk-3-dev"),
        ("gobject-sys", "libgtk-3-dev"),
        ("libappindicator-sys", "libayatana-appindicator3-dev"),
        ("ring", "build-essential"),
        ("libsqlite3-sys", "build-essential"), // bundled SQLite, compiled with cc
        ("linux-raw-sys", ""),                 // pure Rust
        ("dirs-sys", ""),                      // pure Rust
        ("prettyplease", ""),                  // `links` only to pass its version to build scripts
    ];
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--filter-platform", "x86_64-unknown-linux-gnu"])
        .arg("--manifest-path")
        .arg(repo().join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let resolved: BTreeSet<&str> =
        meta["resolve"]["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    let packages = setup_packages();
    let mut checked = 0;
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let native = name.ends_with("-sys") || !package["links"].is_null();
        if !native || !resolved.contains(package["id"].as_str().unwrap()) || name.starts_with("tauri") {
            continue;
        }
        let (_, debian) = needs.iter().find(|(krate, _)| *krate == name).unwrap_or_else(|| {
            panic!("{name} builds against the system: add the Debian package it needs to tests/setup.sh and here")
        });
        assert!(
            debian.is_empty() || packages.iter().any(|p| p == debian),
            "tests/setup.sh does not install {debian} ({name})"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} native crates found");
}

/// The packages `package` depends on, as dpkg records them, to `depth` levels.
fn brought_by(package: &str, depth: usize) -> BTreeSet<String> {
    let mut found = BTreeSet::from([package.to_string()]);
    let mut frontier = vec![package.to_string()];
    for _ in 0..depth {
        let mut next = Vec::new();
        for p in frontier {
            let out = std::process::Command::new("dpkg-query")
                .args(["-W", "-f=${Depends}, ${Pre-Depends}"])
                .arg(&p)
                .output()
                .unwrap();
            for dep in String::from_utf8_lossy(&out.stdout).split([',', '|']) {
                let name = dep.split_whitespace().next().unwrap_or("").split(':').next().unwrap_or("").to_string();
                if !name.is_empty() && found.insert(name.clone()) {
                    next.push(name);
                }
            }
        }
        frontier = next;
    }
    found
}

/// The commands the demo, the tests and the packaging run come from the packages setup.sh
/// installs: dpkg names the package that owns each file (a look-alike file is no package).
#[test]
fn the_tools_the_tests_run_come_from_listed_packages() {
    let packages = setup_packages();
    let tools = [
        ("cc", "build-essential"),
        ("pkg-config", "pkg-config"),
        ("sshd", "openssh-server"),
        ("ssh", "openssh-client"),
        ("scp", "openssh-client"),
        ("sftp", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("ssh-agent", "openssh-client"),
        ("rsync", "rsync"),
        ("dbus-run-session", "dbus"),
        ("dbus-launch", "dbus-x11"),
        ("gnome-keyring-daemon", "gnome-keyring"),
        ("xvfb-run", "xvfb"),
        ("xauth", "xauth"),
        ("WebKitWebDriver", "webkit2gtk-driver"),
        ("pgrep", "procps"),
        ("/usr/bin/python3", "python3"),
        ("openssl", "openssl"),
        ("bc", "bc"),
        ("lintian", "lintian"),
        ("dpkg-shlibdeps", "dpkg-dev"),
        ("file", "file"),
        ("node", "nodejs"),
        ("systemd-analyze", "systemd"),
    ];
    // PostgreSQL's server programs live off the PATH, in /usr/lib/postgresql/VERSION/bin.
    let postgres = ["initdb", "postgres", "psql"];
    let tools = tools.iter().copied().chain(postgres.iter().map(|t| (*t, "postgresql")));
    for (tool, listed) in tools {
        assert!(packages.iter().any(|p| p == listed), "tests/setup.sh does not list {listed} ({tool})");
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("command -v {tool} || ls /usr/sbin/{tool} || ls -d /usr/lib/postgresql/*/bin/{tool} | sort -V | tail -n 1"),
            ])
            .output()
            .unwrap();
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(out.status.success() && !path.is_empty(), "{tool} is not installed: run bash tests/setup.sh");
        let real = std::fs::canonicalize(&path).unwrap();
        let out = std::process::Command::new("dpkg-query").arg("-S").arg(&real).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let owner = text.split(':').next().unwrap_or("").trim().to_string();
        assert!(
            brought_by(listed, 3).contains(&owner),
            "{tool} ({}) belongs to {owner:?}, which {listed} does not bring: is it installed by hand?",
            real.display()
        );
    }
}

/// The systemd units a team deploys (`deploy/`) and the package's unit pass `systemd-analyze
/// verify` (against this build's binary) and keep their hardening: their own user, a read-only
/// system, no new privileges, no capabilities, a state directory.
#[test]
fn the_systemd_units_verify_and_stay_hardened() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let units = [
        ("deploy/portcullis-server.service", true),
        ("deploy/portcullis-gateway.service", true),
        ("crates/cli/packaging/portcullis-server.service", false),
    ];
    let mut paths = Vec::new();
    for (unit, team) in units {
        let text = std::fs::read_to_string(root.join(unit)).unwrap();
        for line in ["NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "UMask=0077"] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
        }
        assert!(text.lines().any(|l| l.starts_with("User=portcullis")), "{unit} runs as root");
        if team {
            for line in ["CapabilityBoundingSet=", "PrivateDevices=yes", "RestrictNamespaces=yes"] {
                assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
            }
            assert!(text.lines().any(|l| l.starts_with("StateDirectory=portcullis")), "{unit}: no state directory");
        }
        // Verified against the binary this build made (the unit names the installed one).
        let local = text.replace("/usr/bin/portcullis", env!("CARGO_BIN_EXE_portcullis"));
        let path = dir.path().join(std::path::Path::new(unit).file_name().unwrap());
        std::fs::write(&path, local).unwrap();
        paths.push(path);
    }
    for path in paths {
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .expect("systemd-analyze (package systemd): run bash tests/setup.sh");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "{}: {said}", path.display());
    }
}

/// `deploy/compose.yaml` checked offline (no Docker on the build machines): it is YAML with
/// only Compose's top-level keys; PostgreSQL, a one-shot init, two replicas and a gateway; every
/// dependency, healthy-condition and volume it names exists; the replicas share one PostgreSQL
/// database and a read-only data directory, without embedded gateways; every `portcullis`
/// command line in it parses with this build's binary.
#[test]
fn the_compose_file_is_valid_and_runs_replicas() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new("python3")
        .args(["-c", "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)"])
        .arg(root.join("deploy/compose.yaml"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "not YAML (python3-yaml: bash tests/setup.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compose: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = compose.as_object().unwrap();
    for key in top.keys() {
        assert!(
            ["name", "services", "volumes", "networks", "secrets", "configs"].contains(&key.as_str())
                || key.starts_with("x-"),
            "compose.yaml: {key} is not a Compose top-level key"
        );
    }
    let services = top["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["postgres", "init", "server-a", "server-b", "gateway"]));
    let volumes = top["volumes"].as_object().unwrap();
    let mut published = BTreeSet::new();
    for (name, service) in services {
        assert!(service["image"].is_string(), "{name} has no image");
        match &service["depends_on"] {
            serde_json::Value::Object(deps) => {
                for (dep, how) in deps {
                    assert!(services.contains_key(dep), "{name} depends on a missing service {dep}");
                    let condition = how["condition"].as_str().unwrap_or("service_started");
                    assert!(
                        ["service_started", "service_healthy", "service_completed_successfully"].contains(&condition),
                        "{name}: {condition}"
                    );
                    if condition == "service_healthy" {
                        assert!(
                            services[dep]["healthcheck"].is_object(),
                            "{name} waits for {dep} to be healthy: no check"
                        );
                    }
                }
            }
            serde_json::Value::Array(deps) => {
                for dep in deps {
                    assert!(services.contains_key(dep.as_str().unwrap()), "{name} depends on a missing {dep}");
                }
            }
            _ => {}
        }
        for mount in service["volumes"].as_array().into_iter().flatten() {
            let volume = mount.as_str().unwrap().split(':').next().unwrap();
            assert!(volumes.contains_key(volume), "{name} mounts an undeclared volume {volume}");
        }
        for port in service["ports"].as_array().into_iter().flatten() {
            let host = port.as_str().unwrap().split(':').next().unwrap().to_string();
            assert!(published.insert(host.clone()), "two services publish port {host}");
        }
        if service["image"] == "portcullis" {
            let args: Vec<String> = match &service["command"] {
                serde_json::Value::Array(args) if service["entrypoint"].is_null() => {
                    args.iter().map(|a| a.as_str().unwrap().to_string()).collect()
                }
                // A shell line (the one-shot init): the portcullis command in it.
                serde_json::Value::Array(line) => {
                    let line = line[0].as_str().unwrap();
                    let at = line.find("/usr/bin/portcullis ").expect("the init line runs portcullis");
                    line[at + "/usr/bin/portcullis ".len()..].split_whitespace().map(String::from).collect()
                }
                other => panic!("{name}: command {other}"),
            };
            let parsed = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .args(&args)
                .arg("--help")
                .env_remove("PORTCULLIS_DATABASE")
                .output()
                .unwrap();
            assert!(
                parsed.status.success(),
                "{name}: `portcullis {}` does not parse: {}",
                args.join(" "),
                String::from_utf8_lossy(&parsed.stderr)
            );
        }
    }
    for replica in ["server-a", "server-b"] {
        let s = &services[replica];
        let database = s["environment"]["PORTCULLIS_DATABASE"].as_str().unwrap_or("");
        let userinfo = database.split("://").nth(1).and_then(|r| r.split_once('@')).map_or("", |(u, _)| u);
        assert!(!userinfo.contains(':'), "{replica}: the database URL carries a password");
        assert!(database.starts_with("postgres://"), "{replica} is not on PostgreSQL");
        let command: Vec<&str> = s["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(command.contains(&"--no-gateway"), "{replica} would run an embedded gateway");
        let data = s["volumes"][0].as_str().unwrap();
        assert!(data.starts_with("server-data:") && data.ends_with(":ro"), "{replica}: {data}");
    }
    assert_eq!(services["server-a"]["environment"], services["server-b"]["environment"], "one database for both");
}
