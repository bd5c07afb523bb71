//! Test harness: real OpenSSH `sshd` targets, the real `portcullis` server process, and the
//! real `portcullis` binary acting as several users, each with its own PORTCULLIS_HOME.

#![allow(dead_code)]

#[path = "../support/sshd.rs"]
mod sshd;

pub use sshd::{Sshd, free_port, wait_for_port};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
pub const PASSPHRASE: &str = "e2e passphrase, not a credential";

/// Every byte any command printed, for the canary scan.
#[derive(Clone, Default)]
pub struct Transcript(Arc<Mutex<Vec<u8>>>);

impl Transcript {
    pub fn add(&self, bytes: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(bytes);
        self.0.lock().unwrap().push(b'\n');
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

/// The Portcullis server as a separate process, with its embedded gateway.
pub struct ServerProcess {
    pub data: PathBuf,
    pub port: u16,
    /// Where the embedded gateway's SSH server listens.
    pub gateway_port: u16,
    pub url: String,
    pub tls: bool,
    pub admin_code: String,
    log: PathBuf,
    child: Option<Child>,
    rust_log: String,
    /// More `server run` arguments, e.g. `--exec-record-limit`.
    pub extra_args: Vec<String>,
    /// The PostgreSQL database it runs on (`server init --database`); SQLite in `data` if none.
    pub database: Option<String>,
}

/// The gateway-only binary (`portcullis-gateway`, none of the control server's code): built
/// beside `portcullis` when the whole workspace's tests are built (the gateway package's own
/// test needs it), as `bash tests/run.sh` does. Refused when missing or older than the
/// gateway's sources, so a partial build cannot test a stale gateway.
pub fn gateway_bin() -> PathBuf {
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let bin = Path::new(BIN).with_file_name("portcullis-gateway");
            let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap_or_else(|_| {
                panic!("{} is missing: build the workspace's tests (cargo test --workspace --no-run)", bin.display())
            });
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            for dir in ["gateway", "localdb", "link", "sshcert", "guard", "proto", "crypto", "tlog", "keystore"] {
                for path in files_under(&root.join("crates").join(dir).join("src")) {
                    if std::fs::metadata(&path).and_then(|m| m.modified()).is_ok_and(|m| m > built) {
                        panic!("{} is older than {}: build the workspace's tests again", bin.display(), path.display());
                    }
                }
            }
            bin
        })
        .clone()
}

pub fn base_command(rust_log: &str) -> Command {
    env_command(BIN, rust_log)
}

/// `program` with the suite's passphrase, key store and log level, and no inherited home.
fn env_command(program: &str, rust_log: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PORTCULLIS_PASSPHRASE", PASSPHRASE)
        .env("PORTCULLIS_KEY_STORE", "passphrase")
        .env("RUST_LOG", rust_log)
        .env_remove("PORTCULLIS_HOME")
        .stdin(Stdio::null());
    cmd
}

impl ServerProcess {
    pub fn init(root: &Path, rust_log: &str, transcript: &Transcript) -> ServerProcess {
        Self::init_on(root, rust_log, transcript, None)
    }

    /// `server init` on PostgreSQL (`database`) or, without one, on SQLite in the data directory.
    pub fn init_on(root: &Path, rust_log: &str, transcript: &Transcript, database: Option<&str>) -> ServerProcess {
        let data = root.join("server");
        let mut init = base_command(rust_log);
        init.args(["server", "init", "--data"]).arg(&data);
        if let Some(url) = database {
            init.args(["--database", url]);
        }
        let out = init.output().unwrap();
        transcript.add(&out.stdout);
        transcript.add(&out.stderr);
        assert!(out.status.success(), "server init failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let admin_code = stdout.lines().last().unwrap().trim().to_string();
        ServerProcess {
            data,
            port: free_port(),
            gateway_port: free_port(),
            url: String::new(),
            tls: false,
            admin_code,
            log: root.join("server.log"),
            child: None,
            rust_log: rust_log.to_string(),
            extra_args: Vec::new(),
            database: database.map(str::to_string),
        }
    }

    /// Another replica of this server: the same data directory and database, its own port and
    /// log (not started).
    pub fn replica(&self, name: &str) -> ServerProcess {
        assert!(self.database.is_some(), "replicas share a PostgreSQL database");
        ServerProcess {
            data: self.data.clone(),
            port: free_port(),
            gateway_port: free_port(),
            url: String::new(),
            tls: false,
            admin_code: self.admin_code.clone(),
            log: self.log.with_file_name(format!("{name}.log")),
            child: None,
            rust_log: self.rust_log.clone(),
            extra_args: self.extra_args.clone(),
            database: self.database.clone(),
        }
    }

    /// (records, highest sequence number) the server holds of `writer`'s log.
    pub fn records_of(&self, writer: &str) -> (i64, i64) {
        match &self.database {
            Some(url) => {
                let row = crate::postgres::Cluster::shared().psql(
                    url,
                    &format!("SELECT COUNT(*) || ' ' || COALESCE(MAX(seq), 0) FROM audit_records WHERE writer_id = '{writer}'"),
                );
                let mut it = row.split(' ').map(|n| n.parse::<i64>().unwrap());
                (it.next().unwrap(), it.next().unwrap())
            }
            None => crate::gateway::server_records(self, writer),
        }
    }

    pub fn start(&mut self, tls: bool) {
        self.tls = tls;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = base_command(&self.rust_log);
        cmd.args(["server", "run", "--data"]).arg(&self.data).args(["--listen", &format!("127.0.0.1:{}", self.port)]);
        // On PostgreSQL (replicas) there is no embedded gateway: gateways are their own processes.
        if self.database.is_none() {
            cmd.args(["--gateway-listen", &format!("127.0.0.1:{}", self.gateway_port)]);
        }
        cmd.args(&self.extra_args).stdout(log.try_clone().unwrap()).stderr(log);
        if tls {
            cmd.arg("--tls");
        }
        self.child = Some(cmd.spawn().unwrap());
        wait_for_port(self.port, "portcullis server");
        if self.database.is_none() {
            wait_for_port(self.gateway_port, "the embedded gateway");
        }
        self.url = format!("{}://127.0.0.1:{}", if tls { "https" } else { "http" }, self.port);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> Vec<u8> {
        std::fs::read(&self.log).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A gateway process near the targets: its own PORTCULLIS_HOME, enrolled with a code.
pub struct GatewayProcess {
    pub home: PathBuf,
    pub port: u16,
    log: PathBuf,
    child: Option<Child>,
    rust_log: String,
}

impl GatewayProcess {
    /// Enrols a gateway with `code` against `server_url` (the real binary, its own home).
    pub fn enroll(
        root: &Path,
        name: &str,
        server_url: &str,
        code: &str,
        rust_log: &str,
        transcript: &Transcript,
    ) -> Self {
        let home = root.join(format!("gateway-{name}"));
        let out = env_command(&gateway_bin().to_string_lossy(), rust_log)
            .env("PORTCULLIS_HOME", &home)
            .args(["enroll", "--server", server_url, "--code", code])
            .output()
            .unwrap();
        transcript.add(&out.stdout);
        transcript.add(&out.stderr);
        assert!(out.status.success(), "gateway enroll failed: {}", String::from_utf8_lossy(&out.stderr));
        GatewayProcess {
            home,
            port: free_port(),
            log: root.join(format!("gateway-{name}.log")),
            child: None,
            rust_log: rust_log.to_string(),
        }
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = env_command(&gateway_bin().to_string_lossy(), &self.rust_log)
            .env("PORTCULLIS_HOME", &self.home)
            .args(["run", "--listen", &format!("127.0.0.1:{}", self.port)])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_port(self.port, "the gateway process");
    }

    /// `portcullis-soak` (feature `soak`): synthetic sessions through this gateway's real log
    /// and sync; killed when dropped, so a failing test leaves no writer behind.
    #[cfg(feature = "soak")]
    pub fn soak(&self, sessions: u64, events: u64, certificate: &Path, target: &str) -> Background {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = env_command(env!("CARGO_BIN_EXE_portcullis-soak"), &self.rust_log)
            .env("PORTCULLIS_HOME", &self.home)
            .args(["--sessions", &sessions.to_string(), "--events", &events.to_string()])
            .arg("--certificate")
            .arg(certificate)
            .args(["--target", target])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Background(child)
    }

    /// Kills it outright (SIGKILL): whatever it was doing is cut off.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> Vec<u8> {
        std::fs::read(&self.log).unwrap_or_default()
    }

    pub fn database(&self) -> PathBuf {
        self.home.join("gateway.db")
    }

    /// Its id as the server knows it (the writer of its records).
    pub fn id(&self) -> String {
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.home.join("gateway.json")).unwrap()).unwrap();
        file["gateway_id"].as_str().unwrap().to_string()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One person's device: a PORTCULLIS_HOME and the real binary.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub home: PathBuf,
    rust_log: String,
    transcript: Transcript,
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn last_line(&self) -> String {
        self.stdout.lines().last().unwrap_or_default().trim().to_string()
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.status, 0, "expected success\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Run {
        assert_ne!(self.status, 0, "expected failure\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        assert!(
            self.stderr.contains(needle),
            "expected stderr to contain {needle:?}\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

impl User {
    pub fn new(root: &Path, name: &str, rust_log: &str, transcript: &Transcript) -> User {
        User {
            name: name.into(),
            home: root.join(format!("home-{name}")),
            rust_log: rust_log.into(),
            transcript: transcript.clone(),
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = base_command(&self.rust_log);
        cmd.env("PORTCULLIS_HOME", &self.home);
        cmd
    }

    fn finish(&self, out: Output) -> Run {
        self.transcript.add(&out.stdout);
        self.transcript.add(&out.stderr);
        Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command().args(args).output().unwrap();
        self.finish(out)
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that stops reading (a session ended at its input cap, a refusal) closes its
        // stdin while the rest is being written: that is its answer, told by its exit status
        // and output, not a failure of the test.
        match child.stdin.take().unwrap().write_all(stdin) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
        let out = child.wait_with_output().unwrap();
        self.finish(out)
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    pub fn wait(&self, child: Child) -> Run {
        let out = child.wait_with_output().unwrap();
        self.finish(out)
    }
}

/// A server with an enrolled admin, a requester (alice) and an approver/auditor (bob).
pub struct World {
    pub root: tempfile::TempDir,
    pub server: ServerProcess,
    pub admin: User,
    pub alice: User,
    pub bob: User,
    pub transcript: Transcript,
    /// A second admin (made on first use): confirms gateways the first admin added.
    second_admin: std::sync::OnceLock<User>,
    /// The second replica of a team's server (`World::team`): same database, its own process.
    pub replica: Option<ServerProcess>,
}

impl World {
    pub fn new() -> World {
        Self::with_log("warn")
    }

    pub fn with_log(rust_log: &str) -> World {
        Self::custom(rust_log, false, &[])
    }

    /// A world whose server runs with TLS (`tls`) and more `server run` arguments.
    pub fn custom(rust_log: &str, tls: bool, server_args: &[&str]) -> World {
        let root = tempfile::tempdir().unwrap();
        let transcript = Transcript::default();
        let mut server = ServerProcess::init(root.path(), rust_log, &transcript);
        server.extra_args = server_args.iter().map(|a| a.to_string()).collect();
        server.start(tls);
        Self::people(root, transcript, server, None, rust_log)
    }

    /// A team's server: two replicas (`server`, `replica`) of one PostgreSQL database (with
    /// TLS when `tls`, else plain HTTP on loopback). The admin, alice and the gateways know them in the order A, B; bob and
    /// the second admin in the order B, A — so requests go to A and approvals to B.
    pub fn team(rust_log: &str, tls: bool) -> World {
        let root = tempfile::tempdir().unwrap();
        let transcript = Transcript::default();
        let database = crate::postgres::Cluster::shared().fresh_database();
        let mut a = ServerProcess::init_on(root.path(), rust_log, &transcript, Some(&database));
        let mut b = a.replica("server-b");
        a.start(tls);
        b.start(tls);
        Self::people(root, transcript, a, Some(b), rust_log)
    }

    fn people(
        root: tempfile::TempDir,
        transcript: Transcript,
        server: ServerProcess,
        replica: Option<ServerProcess>,
        rust_log: &str,
    ) -> World {
        let world = World {
            admin: User::new(root.path(), "admin", rust_log, &transcript),
            alice: User::new(root.path(), "alice", rust_log, &transcript),
            bob: User::new(root.path(), "bob", rust_log, &transcript),
            root,
            server,
            transcript,
            second_admin: Default::default(),
            replica,
        };
        let urls = world.urls(false);
        world.admin.run(&["enroll", "--server", &urls, "--code", &world.server.admin_code]).ok();
        let code = world.admin.run(&["user", "add", "alice", "--role", "requester"]).ok().last_line();
        world.alice.run(&["enroll", "--server", &urls, "--code", &code]).ok();
        let code = world.admin.run(&["user", "add", "bob", "--role", "approver", "--role", "auditor"]).ok().last_line();
        world.bob.run(&["enroll", "--server", &world.urls(true), "--code", &code]).ok();
        world
    }

    /// The server's URL, or its replicas' (B first when `b_first`).
    pub fn urls(&self, b_first: bool) -> String {
        match &self.replica {
            None => self.server.url.clone(),
            Some(b) if b_first => format!("{},{}", b.url, self.server.url),
            Some(b) => format!("{},{}", self.server.url, b.url),
        }
    }

    pub fn second_admin(&self) -> &User {
        self.second_admin.get_or_init(|| {
            let ben = User::new(self.root.path(), "ben", "warn", &self.transcript);
            let code = self.admin.run(&["user", "add", "ben", "--role", "admin"]).ok().last_line();
            ben.run(&["enroll", "--server", &self.urls(true), "--code", &code]).ok();
            ben
        })
    }

    /// A gateway the admin adds, enrolled on its machine (not started) and confirmed by a
    /// second admin, as a team does it.
    pub fn enrol_gateway(&self, name: &str) -> GatewayProcess {
        let code = self.admin.run(&["gateway", "add", name]).ok().last_line();
        let gateway =
            GatewayProcess::enroll(self.root.path(), name, &self.urls(false), &code, "warn", &self.transcript);
        self.second_admin().run(&["gateway", "confirm", name]).ok();
        gateway
    }

    pub fn add_key_target(&self, name: &str, sshd: &Sshd) {
        self.add_target_with(name, sshd.port, &sshd.user_key, &sshd.host_key_pub, &[]).ok();
    }

    /// Adds a key-auth target for `root` at `port`, with any key, any pinned host key and
    /// `extra` flags (`--env`, `--tag`, ...).
    pub fn add_target_with(&self, name: &str, port: u16, key: &Path, host_key: &str, extra: &[&str]) -> Run {
        let port = port.to_string();
        let key = key.to_str().unwrap();
        let mut args = vec![
            "target",
            "add",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--login",
            "root",
            "--key-file",
            key,
            "--host-key",
            host_key,
        ];
        args.extend_from_slice(extra);
        self.admin.run(&args)
    }

    /// alice asks, bob approves; returns the request id.
    pub fn grant(&self, target: &str, duration: &str) -> String {
        let id = self.alice.run(&["request", target, "--duration", duration, "--reason", "e2e"]).ok().last_line();
        self.bob.run(&["approve", &id]).ok();
        id
    }

    /// bob's `audit list` once `ready` holds for it (gateways upload within moments).
    #[track_caller]
    pub fn sessions_when(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        self.audit_when(&["audit", "list"], what, ready)
    }

    /// The output of bob's `args` once `ready` holds for it, polling for up to 20 s.
    #[track_caller]
    pub fn audit_when(&self, args: &[&str], what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.bob.run(args).ok().stdout;
            if ready(&out) {
                return out;
            }
            if Instant::now() > deadline {
                panic!("never saw {what} in `{}`:\n{out}", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// What a client written in a test needs to reach the gateway as alice: her key and
/// certificate (from `ssh-config`) and the gateway's pinned host key.
pub struct RawSsh {
    pub port: u16,
    pub key: russh::keys::PrivateKey,
    pub cert: russh::keys::Certificate,
    pub host_key: russh::keys::PublicKey,
}

/// Accepts the one host key it was given.
pub struct Pinned(russh::keys::PublicKey);

impl russh::client::Handler for Pinned {
    type Error = russh::Error;
    async fn check_server_key(&mut self, key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(
            matches!(key, russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.0.key_data()),
        )
    }
}

/// Where alice's `ssh-config` puts her key, certificate and the gateway's pinned host key.
pub struct SshFiles {
    pub port: u16,
    pub key: String,
    pub cert: String,
    /// "TYPE BASE64"
    pub host_key: String,
}

impl World {
    /// alice's key files for a scripted SSH client (she must have a grant for the target).
    pub fn raw_ssh_files(&self) -> SshFiles {
        let config = self.root.path().join("raw-ssh-config");
        self.alice.run(&["ssh-config", "--out", config.to_str().unwrap()]).ok();
        let text = std::fs::read_to_string(&config).unwrap();
        let setting = |name: &str| {
            text.lines().find_map(|l| l.trim().strip_prefix(&format!("{name} "))).unwrap().trim_matches('"').to_string()
        };
        let known = std::fs::read_to_string(setting("UserKnownHostsFile")).unwrap();
        SshFiles {
            port: setting("Port").parse().unwrap(),
            key: setting("IdentityFile"),
            cert: setting("CertificateFile"),
            host_key: known.split_whitespace().skip(1).take(2).collect::<Vec<_>>().join(" "),
        }
    }

    /// alice's identity for a scripted SSH client (she must have a grant for the target).
    pub fn raw_ssh(&self) -> RawSsh {
        let files = self.raw_ssh_files();
        RawSsh {
            port: files.port,
            key: russh::keys::PrivateKey::from_openssh(std::fs::read_to_string(&files.key).unwrap()).unwrap(),
            cert: russh::keys::Certificate::from_openssh(std::fs::read_to_string(&files.cert).unwrap().trim()).unwrap(),
            host_key: russh::keys::PublicKey::from_openssh(&files.host_key).unwrap(),
        }
    }

    /// `audit show` of the ended session that mentions `marker` (waiting up to 20 s for it).
    #[track_caller]
    pub fn ended_session_showing(&self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list = self.bob.run(&["audit", "list"]).ok().stdout;
            for id in list.lines().filter_map(|l| l.split_whitespace().next()).filter(|id| id.len() == 36) {
                let shown = self.bob.run(&["audit", "show", id]).ok().stdout;
                if shown.contains(marker) && !shown.contains("(open)") {
                    return shown;
                }
            }
            assert!(Instant::now() < deadline, "no ended session mentions {marker}:\n{list}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// The version of paramiko the interop test pins (PyPI; Debian's 2.12 predates AEAD ciphers).
const PARAMIKO: &str = "5.1.0";

/// A Python with paramiko: a virtual environment under the target directory, made once (pip
/// from PyPI) and reused by later runs.
pub fn paramiko_python() -> PathBuf {
    static MADE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MADE.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("paramiko-{PARAMIKO}"));
    let python = venv.join("bin/python");
    let has = |python: &Path| {
        Command::new(python)
            .args(["-c", &format!("import paramiko, sys; sys.exit(paramiko.__version__ != {PARAMIKO:?})")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if has(&python) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).output().unwrap();
    assert!(made.status.success(), "python3 -m venv: {}", String::from_utf8_lossy(&made.stderr));
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", &format!("paramiko=={PARAMIKO}")])
        .output()
        .unwrap();
    assert!(pip.status.success(), "pip install paramiko: {}", String::from_utf8_lossy(&pip.stderr));
    assert!(has(&python), "paramiko {PARAMIKO} is not importable from {}", venv.display());
    python
}

impl RawSsh {
    /// Connected and authenticated as alice for `target`.
    pub async fn connect(&self, target: &str) -> russh::client::Handle<Pinned> {
        let mut handle = russh::client::connect(
            Arc::new(Default::default()),
            ("127.0.0.1", self.port),
            Pinned(self.host_key.clone()),
        )
        .await
        .unwrap();
        let auth =
            handle.authenticate_openssh_cert(target, Arc::new(self.key.clone()), self.cert.clone()).await.unwrap();
        assert!(auth.success(), "the gateway admitted alice's certificate for {target}");
        handle
    }
}

/// Canaries for an OpenSSH private key file: the whole text and each base64 line but the first,
/// which is the same in every unencrypted key of a type (format header), so it would also match
/// the users' own ephemeral keys.
pub fn key_canaries(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read(path).unwrap();
    let mut canaries: Vec<Vec<u8>> = vec![text.clone()];
    let lines = String::from_utf8(text).unwrap();
    canaries.extend(
        lines.lines().filter(|l| !l.starts_with("-----") && l.len() >= 20).skip(1).map(|l| l.as_bytes().to_vec()),
    );
    canaries
}

/// Fails if any canary occurs in `haystack`.
#[track_caller]
pub fn assert_no_canary(haystack: &[u8], canaries: &[Vec<u8>], what: &str) {
    for canary in canaries {
        assert!(canary.len() >= 12, "canary too short to be meaningful");
        if haystack.windows(canary.len()).any(|w| w == canary.as_slice()) {
            panic!("credential canary found in {what}");
        }
    }
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

/// Reads a child's stdout line by line in the background; the child is killed on drop.
pub struct LineReader {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl LineReader {
    pub fn spawn(mut child: Child) -> LineReader {
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineReader { child, lines }
    }

    /// The first line containing `needle`, or a panic after `within`.
    #[track_caller]
    pub fn expect(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no line containing {needle:?} within {within:?}; saw: {seen:?}");
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    pub fn lines_within(&mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => out.push(line),
                Err(_) => break,
            }
        }
        out
    }
}

impl Drop for LineReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A background process killed (and reaped) when dropped.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tmpfs of `size` mounted at `dir` (root only), unmounted when dropped.
pub struct SmallDisk(pub std::path::PathBuf);

impl SmallDisk {
    pub fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root (the suite runs as root)");
        SmallDisk(dir.to_path_buf())
    }

    /// Fills it up; the file is removed to give the space back.
    pub fn fill(&self) -> std::path::PathBuf {
        let file = self.0.join("filler");
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", file.display()))
            .stderr(std::process::Stdio::null())
            .status();
        file
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A local account `user` (made once: root needed) whose password is now `password`.
pub fn local_account(user: &str, password: &str) {
    let exists = Command::new("id").arg(user).output().unwrap().status.success();
    if !exists {
        let made = Command::new("useradd").args(["-m", "-s", "/bin/sh", user]).status().unwrap();
        assert!(made.success(), "creating the test account {user} needs root");
    }
    let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(chpasswd.stdin.as_mut().unwrap(), format!("{user}:{password}\n").as_bytes()).unwrap();
    drop(chpasswd.stdin.take());
    assert!(chpasswd.wait().unwrap().success());
}
