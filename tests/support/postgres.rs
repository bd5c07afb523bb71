//! A real PostgreSQL for tests: one throwaway cluster per test process (`initdb` + `postgres`
//! into a temporary directory, trust authentication on a loopback port), and a fresh database
//! per test. The cluster stops when the test process is gone, however it ends: a watchdog
//! beside it polls the process, shuts PostgreSQL down and removes its directory (the
//! `TempDir` lives in a static, which is never dropped).

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub port: u16,
    /// Holds the data directory and the log.
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    /// Runs PostgreSQL and stops it once this process is gone (never waited for: it outlives
    /// every test of the process).
    _watchdog: std::process::Child,
}

/// The directory of the newest installed PostgreSQL's server programs (Debian puts them in
/// /usr/lib/postgresql/VERSION/bin, off the PATH).
pub fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run bash tests/setup.sh (package postgresql)")
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).expect("no PostgreSQL server programs: run bash tests/setup.sh")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// `program` with `args`, as the `postgres` user when the tests run as root (PostgreSQL refuses
/// to run as root).
fn as_postgres(program: &std::path::Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Cluster {
    /// The test process's cluster, started on first use.
    pub fn shared() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(Cluster::start)
    }

    fn start() -> Cluster {
        let tmp = tempfile::Builder::new().prefix("portcullis-pg-").tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let bin = bin_dir();
        if is_root() {
            let status = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status().expect("chown");
            assert!(status.success(), "cannot hand {} to the postgres user", dir.display());
        }
        let data = dir.join("data");
        let out = as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-instructions", "-D"])
            .arg(&data)
            .output()
            .expect("initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        // The watchdog: PostgreSQL runs as its child; when this test process is gone, it asks
        // PostgreSQL to stop (fast shutdown) and waits for it.
        let script = format!(
            "'{postgres}' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 -c fsync=off \
             -c max_connections=400 -c shared_buffers=64MB >'{dir}/postgres.log' 2>&1 & pg=$!; \
             while [ -d /proc/{me} ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done; \
             kill -INT $pg 2>/dev/null; wait $pg; rm -rf '{dir}'",
            postgres = bin.join("postgres").display(),
            data = data.display(),
            dir = dir.display(),
            me = std::process::id(),
        );
        let watchdog = as_postgres(std::path::Path::new("/bin/sh"))
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Cluster { port, dir, _tmp: tmp, _watchdog: watchdog }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let psql = bin_dir().join("psql");
        // Creating databases at once from several tests can collide on the template's lock.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(&psql)
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-q"])
                .args(["-c", &format!("CREATE DATABASE {name}")])
                .output()
                .expect("psql");
            if out.status.success() {
                return self.url(&name);
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("being accessed by other users") && Instant::now() < deadline,
                "CREATE DATABASE failed: {err}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs SQL on a database (tests play someone editing the database behind the server's back).
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let out = Command::new(bin_dir().join("psql"))
            .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-t", "-A", "-c", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// A free loopback port (also for tests that need one nothing listens on).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}
