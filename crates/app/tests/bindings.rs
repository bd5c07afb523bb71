//! The IPC types the UI uses are generated from Rust: this fails when `ui/src/ipc/bindings.ts`
//! differs from what the Rust types produce. Regenerate with
//! `PORTCULLIS_WRITE_BINDINGS=1 cargo test -p portcullis-app --test bindings`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn committed_typescript_bindings_match_the_rust_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/ipc/bindings.ts");
    let generated = portcullis_app::typescript_bindings();
    if std::env::var_os("PORTCULLIS_WRITE_BINDINGS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "ui/src/ipc/bindings.ts is out of date; regenerate it with PORTCULLIS_WRITE_BINDINGS=1 cargo test -p portcullis-app --test bindings"
    );
    // Nothing the core sends to the webview has a field that could carry a credential.
    for outgoing in
        ["AppStatus", "TargetView", "RequestView", "LiveView", "SessionView", "TerminalEvent", "NewUserView"]
    {
        let decl = generated.split("export type ").find(|d| d.starts_with(outgoing)).unwrap();
        for word in ["credential:", "password", "private_key:", "secret"] {
            assert!(!decl.contains(word), "{outgoing} has a field like {word}");
        }
    }
}
