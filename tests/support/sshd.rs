//! Real OpenSSH `sshd` targets for tests: a throwaway server on a free loopback port with its
//! own host key and an authorised login key for `root` (key and password auth).

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start listening on port {port}");
}

/// A throwaway OpenSSH server on a loopback port, run as root (key and password auth).
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub host_key_pub: String,
    /// Private key whose public half is authorised for `root`.
    pub user_key: PathBuf,
    child: Child,
}

fn ssh_keygen(path: &Path, comment: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (package openssh-client) must be installed");
    assert!(status.success());
}

impl Sshd {
    pub fn start() -> Sshd {
        Self::start_with_host_key(None)
    }

    /// `host_key`: reuse another sshd's host key file (to impersonate nothing), or a fresh one.
    pub fn start_with_host_key(host_key: Option<&Path>) -> Sshd {
        Self::start_with(host_key, "")
    }

    /// With more `sshd_config` lines (e.g. the ciphers it offers), placed first: sshd takes a
    /// keyword's first value.
    pub fn start_with_config(extra: &str) -> Sshd {
        Self::start_with(None, extra)
    }

    fn start_with(host_key: Option<&Path>, extra: &str) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let host_key = match host_key {
            Some(existing) => existing.to_path_buf(),
            None => {
                let p = dir.path().join("host_key");
                ssh_keygen(&p, "host");
                p
            }
        };
        let user_key = dir.path().join("user_key");
        ssh_keygen(&user_key, "portcullis-e2e-user");
        std::fs::copy(user_key.with_extension("pub"), dir.path().join("authorized_keys")).unwrap();
        let port = free_port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "{extra}Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 Subsystem sftp /usr/lib/openssh/sftp-server\nLogLevel VERBOSE\n",
                hk = host_key.display(),
                d = dir.path().display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").ok();
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd (package openssh-server) must be installed");
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        wait_for_port(port, "sshd");
        let host_key_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap().trim().to_string();
        Sshd { dir, port, host_key_pub, user_key, child }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
