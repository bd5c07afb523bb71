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

fn ipc_log(app_dir: &Path) -> PathBuf {
    app_dir.with_extension("ipc.jsonl")
}

/// Where the app's (and its WebDriver's) stderr goes: its warnings explain a failed step.
fn stderr_log(app_dir: &Path) -> PathBuf {
    app_dir.with_extension("stderr.log")
}

/// The last lines of the app's stderr, for a failure message.
fn stderr_tail(app_dir: &Path) -> String {
    let text = std::fs::read_to_string(stderr_log(app_dir)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Fails if any line of the canary credential (a private key) occurs in `haystack`.
fn assert_no_canary(haystack: &str, canary: &str, place: &str) {
    for line in canary_lines(canary) {
        assert!(!haystack.contains(line), "credential material found in {place}");
    }
}

fn canary_lines(canary: &str) -> Vec<&str> {
    let lines: Vec<&str> = canary.lines().filter(|l| l.len() >= 20 && !l.starts_with("-----")).collect();
    assert!(!lines.is_empty(), "the canary has lines to look for");
    lines
}

/// Every payload the instrumented IPC boundary saw: (direction, command, payload as JSON text).
fn ipc_payloads(app_dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(ipc_log(app_dir)).expect("the IPC audit log (debug build)");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["direction"].as_str().unwrap().to_string(),
                v["command"].as_str().unwrap().to_string(),
                v["payload"].to_string(),
            )
        })
        .collect()
}

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/screenshots")
}

/// One running desktop app (its own data dir) and the WebDriver session driving it.
struct App {
    driver: Child,
    client: Client,
}

impl App {
    /// Starts the app with its own data dir; every IPC payload is logged to `app_dir`.ipc.jsonl.
    async fn launch(app_dir: &Path) -> App {
        Self::launch_with(app_dir, &[]).await
    }

    /// Like `launch`, with more environment for the app (e.g. its security key).
    async fn launch_with(app_dir: &Path, env: &[(&str, String)]) -> App {
        let port = free_port();
        let driver = Command::new("WebKitWebDriver")
            .arg(format!("--port={port}"))
            .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .env("PORTCULLIS_APP_DIR", app_dir)
            .env("PORTCULLIS_IPC_AUDIT", ipc_log(app_dir))
            .env("TAURI_WEBVIEW_AUTOMATION", "true")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr_log(app_dir)).expect("the app's stderr log"))
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

    async fn exists(&self, testid: &str) -> bool {
        self.client.find(Locator::Css(&format!("[data-testid=\"{testid}\"]"))).await.is_ok()
    }

    /// Waits until the element's text contains `needle` (live updates, terminal output).
    async fn wait_text(&self, testid: &str, needle: &str) -> String {
        let mut last = String::new();
        for _ in 0..150 {
            if let Ok(el) = self.client.find(Locator::Css(&format!("[data-testid=\"{testid}\"]"))).await {
                last = el.text().await.unwrap_or_default();
                if last.contains(needle) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{testid} never showed {needle:?}; last text: {last:?}");
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
    /// A `<select>` whose options arrive later (targets load after the page shows) keeps an
    /// empty value until the option exists, as a person waits to pick it: retried until the
    /// value holds.
    async fn fill(&self, testid: &str, value: &str) {
        let el = self.el(testid).await;
        for _ in 0..100 {
            let held = self
                .client
                .execute(
                    "arguments[0].value = arguments[1]; \
                     if (arguments[0].value !== arguments[1]) return false; \
                     arguments[0].dispatchEvent(new Event('input', {bubbles: true})); \
                     arguments[0].dispatchEvent(new Event('change', {bubbles: true})); return true;",
                    vec![serde_json::to_value(&el).unwrap(), value.into()],
                )
                .await
                .unwrap();
            if held == serde_json::Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{testid} never took the value {value:?} (no such option?)");
    }

    /// The text of `ok` once it shows `needle`; fails at once with the text of `error` if
    /// that appears instead.
    async fn outcome(&self, ok: &str, needle: &str, error: &str) -> String {
        for _ in 0..100 {
            if let Ok(el) = self.client.find(Locator::Css(&format!("[data-testid=\"{ok}\"]"))).await {
                let text = el.text().await.unwrap_or_default();
                if text.contains(needle) {
                    return text;
                }
            }
            if self.exists(error).await {
                panic!("{error}: {}", self.text(error).await);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.screenshot(&format!("failed-{ok}")).await;
        panic!("{ok} never showed {needle:?} (screenshot failed-{ok}.png)");
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

    /// Everything the webview holds: the DOM, input values, localStorage, sessionStorage and
    /// every record of every IndexedDB database.
    async fn webview_contents(&self) -> String {
        let source = self.client.source().await.unwrap();
        let extra = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 const values = [...document.querySelectorAll('input, textarea')].map(e => e.value); \
                 const dump = async () => { const out = {}; \
                   for (const info of await indexedDB.databases()) { \
                     const db = await new Promise((ok, ko) => { const r = indexedDB.open(info.name); r.onsuccess = () => ok(r.result); r.onerror = ko; }); \
                     for (const store of db.objectStoreNames) { \
                       out[info.name + '/' + store] = await new Promise((ok) => { \
                         const r = db.transaction(store).objectStore(store).getAll(); r.onsuccess = () => ok(r.result); }); } } \
                   return out; }; \
                 dump().then((idb) => done(JSON.stringify({values, local: {...localStorage}, session: {...sessionStorage}, idb})), \
                   (e) => done('indexedDB dump failed: ' + e));",
                vec![],
            )
            .await
            .unwrap();
        let extra = extra.as_str().unwrap_or_default().to_string();
        assert!(extra.starts_with('{'), "{extra}");
        format!("{source}\n{extra}")
    }

    /// First run in standalone mode (with a passphrase only if no keyring is reachable).
    async fn create_standalone(&self, admin: &str) {
        self.el("standalone-panel").await;
        self.fill("admin-name", admin).await;
        self.click("create-standalone").await;
        self.finish_setup("create-standalone").await;
    }

    /// After a first-run button: waits for the workspace, choosing a passphrase (and pressing
    /// `submit` again) only if no keyring is reachable.
    async fn finish_setup(&self, submit: &str) {
        for _ in 0..100 {
            if self.exists("whoami").await {
                break;
            }
            if self.exists("new-passphrase").await {
                self.fill("new-passphrase", "gui test passphrase").await;
                self.fill("repeat-passphrase", "gui test passphrase").await;
                self.click(submit).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn add_target(&self, name: &str, sshd: &Sshd, credential: &str) {
        self.click("add-target-open").await;
        self.fill("target-name", name).await;
        self.fill("target-host", "127.0.0.1").await;
        self.fill("target-port", &sshd.port.to_string()).await;
        self.fill("target-login", "root").await;
        self.fill("target-env", "prod").await;
        self.fill("target-tags", "nginx, eu").await;
        self.fill("target-host-key", &sshd.host_key_pub).await;
        self.fill("target-credential", credential).await;
        self.fill("target-description", "Front web server").await;
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
    app.create_standalone("ada").await;
    let whoami = app.text("whoami").await;
    assert!(whoami.contains("ada") && whoami.contains("admin") && whoami.contains("standalone"), "{whoami}");

    // Bad input: an inline message, nothing typed is lost.
    app.click("add-target-open").await;
    app.fill("target-name", "web").await;
    app.click("target-save").await;
    assert!(app.text("target-error").await.contains("Fill in"), "missing fields are named");
    assert_eq!(app.el("target-name").await.prop("value").await.unwrap().as_deref(), Some("web"));

    app.add_target("web", &sshd, &key).await;
    app.screenshot("add-target").await;
    app.click("target-save").await;

    app.el("target-row-web").await;
    let fingerprint = app.text("detail-fingerprint").await;
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    assert!(app.text("target-detail").await.contains("Front web server"));
    assert_eq!(app.text("detail-gateway").await, "embedded");
    app.screenshot("vault").await;

    // Edit: the credential field starts empty (nothing comes back to fill it) and, left empty,
    // keeps the stored credential.
    app.click("target-edit").await;
    assert_eq!(app.el("target-credential").await.prop("value").await.unwrap().as_deref(), Some(""));
    app.fill("target-description", "Front web server, edited").await;
    app.click("target-save").await;
    app.wait_text("target-detail", "Front web server, edited").await;

    // Search filters the list.
    app.fill("vault-search", "no-such-thing").await;
    app.el("vault-empty").await;
    app.fill("vault-search", "NGINX").await;
    app.el("target-row-web").await;

    // Gateways: the app's own (embedded, listening on loopback, reaching web) and a new one,
    // whose one-time code enrols a gateway process near other targets.
    app.click("nav-gateways").await;
    let embedded = app.wait_text("gateway-embedded", "127.0.0.1:").await;
    assert!(embedded.contains("in the server") && embedded.contains("SHA256:"), "{embedded}");
    app.click("gateway-add").await;
    assert!(app.text("gateway-error").await.contains("name"), "an empty name is refused inline");
    app.fill("gateway-name", "near-db").await;
    app.click("gateway-add").await;
    assert!(app.text("gateway-code-near-db").await.starts_with("pc1-"));
    assert!(app.wait_text("gateway-near-db", "not enrolled yet").await.contains("near-db"));
    app.screenshot("gateways").await;
    app.click("nav-vault").await;

    // Invariant 1: the credential is nowhere in the webview once saved.
    assert_no_canary(&app.webview_contents().await, &key, "webview");
    app.quit().await;
}

/// Two app instances (separate data dirs) against one server — the approver's standalone
/// server: the requester asks, the approver's inbox shows it without a refresh, the approver
/// approves, and the requester's Connect opens a terminal running a command on real sshd. Then the
/// auditor replays the session. Throughout, the canary credential never reaches either webview:
/// not the DOM, storage, IndexedDB, nor any IPC payload (checked from the instrumented boundary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_and_approver_request_approve_connect_replay() {
    let sshd = Sshd::start();
    let key = std::fs::read_to_string(&sshd.user_key).unwrap();
    let mut dir = tempfile::tempdir().unwrap();
    dir.disable_cleanup(std::env::var_os("GUI_KEEP").is_some());
    eprintln!("gui dir: {}", dir.path().display());
    let (ada_dir, rob_dir) = (dir.path().join("ada"), dir.path().join("rob"));

    // The approver: standalone, adds the target and the requester. Her security key is the
    // software token (test builds only), asking for its PIN through the window's dialog.
    let key_file = dir.path().join("ada.key");
    let ada =
        App::launch_with(&ada_dir, &[("PORTCULLIS_AUTHENTICATOR", format!("soft+pin:{}", key_file.display()))]).await;
    ada.create_standalone("ada").await;
    let whoami = ada.text("whoami").await;
    let url = whoami.split("standalone at ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().to_string();
    ada.add_target("web", &sshd, &key).await;
    ada.click("target-save").await;
    ada.el("target-row-web").await;
    ada.click("nav-users").await;
    ada.click("user-add").await;
    assert!(ada.text("user-error").await.contains("name"), "an empty name is refused inline");
    ada.fill("user-name", "rob").await;
    ada.click("user-add").await;
    let code = ada.text("enrolment-code-rob").await;
    assert!(code.starts_with("pc1-"), "{code}");

    // Groups: one made here, a user added into it, another moved into it.
    ada.click("group-add").await;
    assert!(ada.text("group-error").await.contains("Name"), "an empty group name is refused inline");
    ada.fill("group-name", "oncall").await;
    ada.click("group-add").await;
    ada.fill("user-name", "cy").await;
    ada.click("new-user-group-oncall").await;
    ada.click("user-add").await;
    ada.wait_text("member-cy", "oncall").await;
    ada.fill("group-name", "dbas").await;
    ada.click("group-add").await;
    ada.el("new-user-group-dbas").await; // the group list has reloaded
    ada.click("member-cy-edit").await;
    ada.click("member-cy-group-dbas").await;
    ada.click("member-cy-save").await;
    ada.wait_text("member-cy", "dbas, oncall").await;
    // (Not rob's: changing someone's groups bars the admin from judging their requests for
    // 24 hours, and ada approves rob's request below.)
    ada.screenshot("users").await;

    // A security key under her own settings: the dialog asks for its PIN.
    ada.click("nav-settings").await;
    ada.fill("key-name", "ada-key").await;
    ada.click("key-add").await;
    ada.el("key-pin").await;
    ada.fill("key-pin", PIN).await;
    ada.click("key-pin-submit").await;
    ada.el("key-ada-key").await;

    // Policies: checked as typed (line and column), what-if beside, a refused save keeps the text.
    ada.click("nav-policies").await;
    ada.wait_text("policy-version", "built-in default").await;
    ada.fill("policy-text", STEP_UP_POLICY).await;
    ada.el("policy-valid").await;
    ada.fill("whatif-user", "rob").await;
    ada.fill("whatif-target", "web").await;
    ada.fill("whatif-hours", "9").await;
    ada.click("whatif-run").await;
    assert!(ada.outcome("whatif-result", "deny", "whatif-error").await.contains("8h"));
    ada.fill("whatif-hours", "1").await;
    ada.click("whatif-run").await;
    assert!(ada.outcome("whatif-result", "allow", "whatif-error").await.contains("1 approval"));
    let broken = STEP_UP_POLICY.replace("principal.roles", "principal.rolez");
    ada.fill("policy-text", &broken).await;
    let problem = ada.wait_text("policy-problems", "rolez").await;
    assert!(problem.contains("line 3, column"), "{problem}");
    ada.screenshot("policy-editor").await;
    ada.click("policy-save").await;
    assert!(ada.wait_text("policy-save-error", "refused").await.contains("rolez"));
    assert_eq!(ada.el("policy-text").await.prop("value").await.unwrap().as_deref(), Some(broken.as_str()));
    ada.fill("policy-text", STEP_UP_POLICY).await;
    ada.el("policy-valid").await;
    ada.click("policy-save").await;
    ada.wait_text("policy-saved", "in force now").await;
    ada.click("nav-approvals").await;
    ada.el("inbox-empty").await;
    ada.wait_text("live-state", "live").await;

    // The requester enrols with the code (an unknown host and an unreachable server first:
    // inline errors, the code stays in its field).
    // (A copy leaves rob's clipboard after 4 s here, 30 s by default.)
    let rob = App::launch_with(&rob_dir, &[("PORTCULLIS_CLIPBOARD_CLEAR_SECS", "4".to_string())]).await;
    rob.fill("server-url", "https://no-such-host.invalid").await;
    rob.fill("enrolment-code", &code).await;
    rob.click("enroll").await;
    rob.wait_text("setup-error", "cannot reach the server at https://no-such-host.invalid").await;
    rob.fill("server-url", "http://127.0.0.1:9").await;
    rob.click("enroll").await;
    rob.wait_text("setup-error", "cannot reach the server at http://127.0.0.1:9").await;
    assert_eq!(rob.el("enrolment-code").await.prop("value").await.unwrap().as_deref(), Some(code.as_str()));
    rob.fill("server-url", &url).await;
    rob.click("enroll").await;
    rob.finish_setup("enroll").await;
    assert!(rob.text("whoami").await.contains("rob · requester"));

    // Bad input stays in the form with an inline message.
    rob.click("nav-requests").await;
    rob.fill("request-target", "web").await;
    rob.fill("request-reason", "INC-42: nginx is down").await;
    rob.fill("request-duration", "9").await;
    rob.fill("request-unit", "h").await;
    rob.click("request-submit").await;
    // The policy in force (the default: 8 hours) refuses it, saying what it allows.
    let refused = rob.wait_text("request-error", "8h").await;
    assert!(refused.contains("allows you now is 8h"), "{refused}");
    assert_eq!(rob.el("request-reason").await.prop("value").await.unwrap().as_deref(), Some("INC-42: nginx is down"));
    rob.fill("request-duration", "10").await;
    rob.fill("request-unit", "min").await;
    rob.click("request-submit").await;
    assert!(rob.wait_text("my-request-web", "pending").await.contains("INC-42"));

    // The approver's inbox shows it, pushed by the server: nobody reloads anything.
    let inbox = ada.wait_text("inbox-rob-web", "INC-42").await;
    assert!(inbox.contains("10 min"), "{inbox}");
    assert!(ada.text("nav-approvals").await.contains("(1)"));
    assert!(ada.text("approvals-count").await.contains("0 of 1"));
    ada.screenshot("approvals").await;
    // The policy wants her security key: the dialog asks for the PIN, then it is approved.
    ada.click("approve").await;
    ada.outcome("key-dialog", "", "review-error").await;
    ada.el("key-pin").await;
    ada.screenshot("approval-key").await;
    ada.fill("key-pin", PIN).await;
    ada.click("key-pin-submit").await;
    ada.el("inbox-empty").await;

    // The requester's list turns active, with a countdown, and Connect runs a real session.
    rob.wait_text("my-request-web", "active").await;
    assert!(rob.text("grant-countdown").await.contains("left"));
    rob.screenshot("requests").await;
    rob.click("connect-web").await;
    rob.wait_text("terminal-web", "#").await; // root's prompt from the real sshd
    let input = rob.client.find(Locator::Css("[data-testid=terminal-web] textarea")).await.unwrap();
    input.send_keys("echo portcullis-$((6*7))\n").await.unwrap();
    rob.wait_text("terminal-web", "portcullis-42").await;
    rob.screenshot("terminal").await;
    rob.click("close-web").await; // closing the tab ends the session
    assert!(!rob.exists("terminal-web").await);

    // The gateway recorded the session and synced it; rob sees it ended, ada (auditor) replays it.
    rob.click("nav-sessions").await;
    let mut mine = String::new();
    for _ in 0..75 {
        rob.click("sessions-refresh").await;
        mine = rob.text("my-sessions").await;
        if mine.contains("closed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(mine.contains("closed") && !mine.contains("running"), "closing the tab ended the session: {mine}");
    assert!(mine.contains("gateway embedded"), "{mine}");
    ada.click("nav-sessions").await;
    for _ in 0..50 {
        ada.click("sessions-refresh").await;
        if ada.exists("server-sessions-row").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ada.text("server-sessions").await.contains("rob"));
    ada.click("replay").await;
    ada.client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("[data-testid=replay-player] .ap-player"))
        .await
        .expect("the asciinema player renders the recording");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!ada.exists("replay-error").await);
    ada.screenshot("replay").await;
    ada.click("replay-close").await;

    // Where each recording stands; the auditor checks the evidence in the app (offline, against
    // the pinned server key) and exports it for anyone to check.
    let mut state = String::new();
    for _ in 0..50 {
        ada.click("sessions-refresh").await;
        state = ada.text("recording-state").await;
        if state.contains("verified") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(state.contains("verified"), "{state}");
    assert!(ada.exists("no-alarms").await);
    ada.click("verify").await;
    ada.wait_text("check-verdict", "Verified here").await;
    assert!(ada.text("check-result").await.contains("the session is complete"));
    ada.click("export-bundle").await;
    let exported = ada.wait_text("exported", "saved to").await;
    let path = exported.split("saved to ").nth(1).and_then(|s| s.split(" — ").next()).unwrap().trim().to_string();
    let report = portcullis_tlog::bundle::verify_bundle(&std::fs::read(&path).unwrap(), None).unwrap();
    assert_eq!((report.writer_name.as_str(), report.incomplete), ("embedded", None));
    ada.screenshot("verification").await;

    // The request's story, from request to session, with the key that confirmed the approval.
    rob.click("nav-requests").await;
    rob.click("story-web").await;
    let story = rob.wait_text("timeline", "session ended").await;
    for step in ["requested", "permitted", "approved", "granted", "session started", "session ended"] {
        assert!(story.to_lowercase().contains(step), "{step} missing from the story: {story}");
    }
    assert!(story.contains("security key \"ada-key\""), "{story}");
    rob.screenshot("request-story").await;
    rob.click("story-close").await;

    // Revocation ends a running terminal within seconds.
    rob.click("connect-web").await;
    rob.wait_text("terminal-web", "#").await;
    ada.click("nav-approvals").await;
    ada.click("revoke").await;
    rob.wait_text("terminal-web", "revoked").await;
    rob.click("close-web").await;
    rob.click("nav-requests").await;
    rob.wait_text("my-request-web", "revoked").await;

    // The typed vault. A TLS certificate and its key are read from files by the core (they
    // never pass through the window); its pane shows what the certificate says.
    let (cert, tls_key) = tls_files(dir.path(), "shop");
    ada.click("nav-secrets").await;
    ada.click("add-secret-open").await;
    ada.fill("secret-kind", "tls").await;
    ada.fill("secret-name", "shop-tls").await;
    ada.fill("secret-env", "prod").await;
    ada.fill("secret-folder", "shop/web").await;
    ada.fill("secret-file-certificate", cert.to_str().unwrap()).await;
    ada.fill("secret-file-private_key", "/no/such/key.pem").await;
    ada.click("secret-save").await;
    assert!(ada.wait_text("secret-error", "cannot read").await.contains("/no/such/key.pem"));
    ada.fill("secret-file-private_key", tls_key.to_str().unwrap()).await;
    ada.click("secret-save").await;
    let pane = ada.wait_text("secret-certificate", "shop.example").await;
    assert!(pane.contains("CN=shop.example") && pane.contains("www.shop.example"), "{pane}");
    ada.el("expiring-shop-tls").await; // valid for 10 days: flagged
    // A password, revealable, with a second value and the first restored (nobody sees either).
    let (first, second) = (canary("first"), canary("second"));
    ada.click("add-secret-open").await;
    ada.fill("secret-kind", "password").await;
    ada.fill("secret-name", "db-root").await;
    ada.fill("secret-env", "prod").await;
    ada.fill("secret-folder", "shop/db").await;
    ada.fill("secret-field-password", &first).await;
    ada.click("secret-revealable").await;
    ada.click("secret-save").await;
    ada.wait_text("secret-version", "1").await;
    ada.fill("secret-new-value", &second).await;
    ada.click("secret-new-save").await;
    ada.wait_text("secret-note", "version 2").await;
    ada.click("secret-restore-1").await;
    ada.wait_text("secret-note", "restored as version 3").await;
    let history = ada.wait_text("secret-history", "restored version 1").await;
    assert!(history.contains("3 (current) ← 1"), "{history}");
    ada.screenshot("secret-history").await;
    ada.click("secret-row-shop-tls").await;
    ada.wait_text("secret-certificate", "shop.example").await;
    ada.screenshot("secrets-typed").await;

    // rob asks to check the password out; ada approves (with her key, as for targets).
    rob.click("nav-secrets").await;
    rob.click("secret-row-db-root").await;
    rob.click("secret-reveal").await;
    assert!(rob.wait_text("secret-note", "no access").await.contains("db-root"));
    rob.click("secret-request").await;
    rob.wait_text("secret-note", "pending").await;
    ada.click("nav-approvals").await;
    ada.wait_text("inbox-rob-db-root", "check out").await;
    ada.click("approve").await;
    ada.el("key-pin").await;
    ada.fill("key-pin", PIN).await;
    ada.click("key-pin-submit").await;
    ada.el("inbox-empty").await;
    // Reveal: masked until asked; Copy: straight to the clipboard, cleared 4 s later.
    rob.click("secret-reveal").await;
    rob.wait_text("secret-note", "Checked out (version 3)").await;
    let masked = rob.el("secret-value").await;
    assert_eq!(masked.attr("type").await.unwrap().as_deref(), Some("password"));
    rob.click("secret-show").await;
    assert_eq!(masked.prop("value").await.unwrap().as_deref(), Some(first.as_str()), "version 3 is version 1's value");
    rob.screenshot("secret-checkout").await;
    rob.click("secret-copy").await;
    rob.wait_text("secret-note", "cleared in 4 s").await;
    assert_eq!(clipboard(), first, "the copy is on the clipboard");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while clipboard() == first {
        assert!(std::time::Instant::now() < deadline, "the clipboard still holds the copy");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    rob.click("secret-checkin").await;
    rob.wait_text("secret-note", "Checked in").await;
    assert_eq!(masked.prop("value").await.unwrap().as_deref(), Some(""), "the revealed value is gone at check-in");

    // The embedded gateway's newest acknowledged record altered on its disk and sent again:
    // the server refuses the rewrite, and the auditor's alarms list says which gateway and
    // record. (A record the server has not acknowledged yet would arrive as undecryptable,
    // a different alarm: so wait for the revocation's records to be uploaded first.)
    let altered: i64 = {
        use sqlx::Connection;
        let db = ada_dir.join("server").join("gateway.db");
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE uploaded_at IS NULL")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            if pending == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{pending} records never uploaded:\n{}",
                stderr_tail(&ada_dir)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let seq: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM records WHERE uploaded_at IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE records SET leaf = randomblob(32), payload = randomblob(length(payload)), uploaded_at = NULL \
             WHERE seq = ?",
        )
        .bind(seq)
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        seq
    };
    ada.click("nav-sessions").await;
    let mut alarms = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    while std::time::Instant::now() < deadline {
        ada.click("sessions-refresh").await;
        if ada.exists("alarm-row").await {
            alarms = ada.text("alarms").await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        alarms.contains("fork") && alarms.contains("embedded") && alarms.contains(&altered.to_string()),
        "alarms: {alarms:?} (record {altered} altered); the app's last warnings:\n{}",
        stderr_tail(&ada_dir)
    );
    ada.screenshot("audit-alarms").await;

    // Invariant 1, the canary: nowhere in either webview...
    assert_no_canary(&ada.webview_contents().await, &key, "the approver's webview");
    assert_no_canary(&rob.webview_contents().await, &key, "the requester's webview");
    for (app, who) in [(&ada, "ada"), (&rob, "rob")] {
        let contents = app.webview_contents().await;
        assert!(!contents.contains(&first) && !contents.contains(&second), "a secret value in {who}'s webview");
    }
    ada.quit().await;
    rob.quit().await;
    // ...nor in any payload either app's webview sent or received — not even in the debug
    // build's audit of them: the admin's add_target call going *in* shows its credential field
    // redacted (which also proves the instrument sees payloads).
    let mut seen_going_in = 0;
    for (app_dir, who) in [(&ada_dir, "ada"), (&rob_dir, "rob")] {
        let payloads = ipc_payloads(app_dir);
        assert!(payloads.iter().any(|(d, c, _)| d == "out" && c == "watch"), "{who}: live events were audited");
        for (direction, command, payload) in &payloads {
            let leaked = canary_lines(&key).iter().any(|l| payload.contains(l));
            if direction == "in" && command == "add_target" {
                seen_going_in += usize::from(payload.contains("\"credential\":\"<redacted "));
            }
            assert!(!leaked, "{who}: credential material in the IPC payload of {command} ({direction})");
            assert!(!payload.contains(PIN), "{who}: the security key's PIN in the IPC audit of {command}");
        }
    }
    assert_eq!(seen_going_in, 1, "the instrument saw the credential go in (redacted) exactly once");
    // The secret's values: in no webview now, and in one IPC answer only — rob's reveal.
    let mut carrying = Vec::new();
    for (app_dir, who) in [(&ada_dir, "ada"), (&rob_dir, "rob")] {
        for (direction, command, payload) in ipc_payloads(app_dir) {
            assert!(!payload.contains(&second), "{who}: a secret value in the IPC payload of {command} ({direction})");
            if payload.contains(&first) {
                carrying.push(format!("{who} {direction} {command}"));
            }
        }
    }
    assert_eq!(carrying, ["rob out reveal_secret"], "the payloads that carry the value");
}

/// A value found nowhere else: its tag, the process and the time in nanoseconds.
fn canary(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("pw-{tag}-{}-{nanos:x}", std::process::id())
}

/// What the X clipboard holds (xclip asks its owner: here, rob's app).
fn clipboard() -> String {
    let out = std::process::Command::new("xclip")
        .args(["-o", "-selection", "clipboard"])
        .output()
        .expect("xclip (package xclip) must be installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A certificate for `name.example` (and www.), valid 10 days, and its key, as openssl writes them.
fn tls_files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "10"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", &format!("/CN={name}.example"), "-addext"])
        .arg(format!("subjectAltName=DNS:{name}.example,DNS:www.{name}.example"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    (cert, key)
}

/// The PIN typed into the security-key dialog (it must reach the key and nothing else).
const PIN: &str = "pin-7f3a9c";

/// Approvals need a security key; requests up to 8 hours (the default's limit).
const STEP_UP_POLICY: &str = r#"@id("requesters-up-to-8h")
permit (principal, action == Portcullis::Action::"request", resource)
when { principal.roles.contains("requester") && context.duration <= duration("8h") };

@id("requesters-check-out-up-to-8h")
permit (principal, action == Portcullis::Action::"checkout", resource)
when { principal.roles.contains("requester") && context.duration <= duration("8h") };

@id("approve-with-key")
@step_up("webauthn")
permit (principal, action == Portcullis::Action::"approve", resource)
when { principal.roles.contains("approver") };
"#;
