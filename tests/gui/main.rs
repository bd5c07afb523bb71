//! GUI end-to-end tests on the real desktop binary, driven through WebKitWebDriver (the app is
//! started with TAURI_WEBVIEW_AUTOMATION=true). Run under Xvfb and a private D-Bus session with
//! an unlocked gnome-keyring (tests/run.sh does both). Elements are found by `data-testid`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/sshd.rs"]
mod sshd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use sshd::{Sshd, free_port, wait_for_port};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis-desktop");

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/screenshots")
}

/// One running desktop app (its own data dir) and the WebDriver session driving it.
struct App {
    driver: Child,
    client: Client,
}

impl App {
    async fn launch(app_dir: &Path) -> App {
        let port = free_port();
        let driver = Command::new("WebKitWebDriver")
            .arg(format!("--port={port}"))
            .env("PORTCULLIS_APP_DIR", app_dir)
            .env("TAURI_WEBVIEW_AUTOMATION", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("WebKitWebDriver (package webkit2gtk-driver) must be installed");
        wait_for_port(port, "WebKitWebDriver");
        let mut caps = serde_json::Map::new();
        caps.insert("webkitgtk:browserOptions".into(), serde_json::json!({ "binary": BIN, "args": [] }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session with the desktop app");
        App { driver, client }
    }

    async fn el(&self, testid: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(&format!("[data-testid=\"{testid}\"]")))
            .await
            .unwrap_or_else(|e| panic!("no element {testid}: {e}"))
    }

    /// Types into an input as a person would (value + input event, which Svelte listens to).
    async fn fill(&self, testid: &str, value: &str) {
        let el = self.el(testid).await;
        self.client
            .execute(
                "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true})); \
                 arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
                vec![serde_json::to_value(&el).unwrap(), value.into()],
            )
            .await
            .unwrap();
    }

    async fn click(&self, testid: &str) {
        self.el(testid).await.click().await.unwrap();
    }

    async fn text(&self, testid: &str) -> String {
        self.el(testid).await.text().await.unwrap()
    }

    async fn screenshot(&self, name: &str) {
        tokio::time::sleep(Duration::from_millis(400)).await; // let the frame settle
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(screenshot_dir()).unwrap();
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
    }

    /// Everything the webview holds: the DOM, input values, localStorage, sessionStorage.
    async fn webview_contents(&self) -> String {
        let source = self.client.source().await.unwrap();
        let extra = self
            .client
            .execute(
                "const values = [...document.querySelectorAll('input, textarea')].map(e => e.value); \
                 return JSON.stringify({values, local: {...localStorage}, session: {...sessionStorage}});",
                vec![],
            )
            .await
            .unwrap();
        format!("{source}\n{extra}")
    }

    async fn quit(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standalone first run → create the first admin → add a target → it is in the vault list,
/// with its details and without its credential anywhere in the webview.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_first_run_add_target_and_browse() {
    let sshd = Sshd::start();
    let key = std::fs::read_to_string(&sshd.user_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = App::launch(&dir.path().join("app")).await;

    app.el("standalone-panel").await;
    app.screenshot("first-run").await;
    app.fill("admin-name", "ada").await;
    app.click("create-standalone").await;
    // Without a reachable keyring the app asks for a passphrase; with one it goes straight on.
    for _ in 0..100 {
        if app.client.find(Locator::Css("[data-testid=whoami]")).await.is_ok() {
            break;
        }
        if app.client.find(Locator::Css("[data-testid=new-passphrase]")).await.is_ok() {
            app.fill("new-passphrase", "gui test passphrase").await;
            app.fill("repeat-passphrase", "gui test passphrase").await;
            app.click("create-standalone").await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let whoami = app.text("whoami").await;
    assert!(whoami.contains("ada") && whoami.contains("admin") && whoami.contains("standalone"), "{whoami}");

    // Bad input: an inline message, nothing typed is lost.
    app.click("add-target-open").await;
    app.fill("target-name", "web").await;
    app.click("target-save").await;
    assert!(app.text("target-error").await.contains("Fill in"), "missing fields are named");
    assert_eq!(app.el("target-name").await.prop("value").await.unwrap().as_deref(), Some("web"));

    app.fill("target-host", "127.0.0.1").await;
    app.fill("target-port", &sshd.port.to_string()).await;
    app.fill("target-login", "root").await;
    app.fill("target-env", "prod").await;
    app.fill("target-tags", "nginx, eu").await;
    app.fill("target-host-key", &sshd.host_key_pub).await;
    app.fill("target-credential", &key).await;
    app.fill("target-description", "Front web server").await;
    app.screenshot("add-target").await;
    app.click("target-save").await;

    app.el("target-row-web").await;
    let fingerprint = app.text("detail-fingerprint").await;
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    assert!(app.text("target-detail").await.contains("Front web server"));
    app.screenshot("vault").await;

    // Search filters the list.
    app.fill("vault-search", "no-such-thing").await;
    app.el("vault-empty").await;
    app.fill("vault-search", "NGINX").await;
    app.el("target-row-web").await;

    // Invariant 1: the credential is nowhere in the webview once saved.
    let contents = app.webview_contents().await;
    for line in key.lines().filter(|l| l.len() >= 20 && !l.starts_with("-----")) {
        assert!(!contents.contains(line), "credential material left in the webview");
    }
    app.quit().await;
}
