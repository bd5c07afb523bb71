//! Strangers cannot exhaust the real server over TLS, on SQLite and as a replica on PostgreSQL:
//! 1,000 slowloris connections are closed by the handshake deadline, 100 that finish the
//! handshake and then trickle half a request are closed by the header deadline, 10,000 idle
//! connections from 40 addresses take no slot a real client needs, 200 strangers with made-up
//! signatures and 16 MB bodies and one with a 1 GiB body are refused before their bodies are
//! read, and all the while a real client — a new connection each time — is answered within a
//! second and the server's memory stays within 96 MiB of idle.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// (resident, peak resident) KiB of a process.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(mut samples: Vec<Duration>, p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

/// How many of `streams` the server has not closed by `deadline` (whatever it says first —
/// a banner, a timeout answer — is read past).
async fn still_open_at<S: tokio::io::AsyncRead + Unpin>(streams: &mut [S], deadline: Instant) -> usize {
    let mut open = 0;
    for stream in streams {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => continue,
                Err(_) => {
                    open += 1;
                    break;
                }
            }
        }
    }
    open
}

/// Times `GET /v1/health` until `stop`, every 50 ms (with `http` from [`fresh_connections`],
/// each on a new connection: a newcomer must get in whatever strangers hold).
async fn latencies(http: reqwest::Client, url: String, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut out = Vec::new();
    while !stop.load(Ordering::SeqCst) || out.len() < 10 {
        let started = Instant::now();
        let answered = tokio::time::timeout(Duration::from_secs(5), http.get(&url).send()).await;
        assert!(matches!(&answered, Ok(Ok(r)) if r.status() == 200), "the real client was not answered: {answered:?}");
        out.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out
}

/// Accepts any server certificate: these clients are the attackers, not users.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection from `source` that sends the start of a request and then nothing.
async fn half_request(
    connector: &tokio_rustls::TlsConnector,
    source: Ipv4Addr,
    port: u16,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let tcp = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /v1/health HTTP/1.1\r\nhost: localhost\r\n").await.unwrap();
    tls.flush().await.unwrap();
    tls
}

/// A client that opens a new TLS connection for every request.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder().danger_accept_invalid_certs(true).pool_max_idle_per_host(0).build().unwrap()
}

#[test]
fn strangers_cannot_exhaust_the_server() {
    strangers_cannot_exhaust(World::custom("warn", true, &[]));
}

#[test]
fn strangers_cannot_exhaust_a_replica_on_postgres() {
    strangers_cannot_exhaust(World::team("warn", true));
}

/// A request signed by nobody: made-up device `n`, the time now, a fresh nonce, a bad signature.
fn forged(request: reqwest::RequestBuilder, n: u32) -> reqwest::RequestBuilder {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    request
        .header(portcullis_proto::HEADER_DEVICE, format!("00000000-0000-0000-0000-{n:012}"))
        .header(portcullis_proto::HEADER_TIME, now.to_string())
        .header(portcullis_proto::HEADER_NONCE, format!("stranger-nonce-{n:08}"))
        .header(portcullis_proto::HEADER_SIGNATURE, "AAAA")
}

/// A stranger's 1 GiB body under forged device headers, streamed: (its answer — 0 when the
/// connection was closed under it —, the bytes the server let it send, how long it took).
async fn forged_gigabyte(url: String) -> (u16, u64, Duration) {
    use futures_util::StreamExt;
    const GIB: u64 = 1 << 30;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let chunk = bytes::Bytes::from(vec![b'x'; 1 << 20]);
    let body = futures_util::stream::iter(0..1024).map(move |_| {
        counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        Ok::<_, std::io::Error>(chunk.clone())
    });
    let started = Instant::now();
    let answer = forged(fresh_connections().post(url), 0xffff)
        .header(reqwest::header::CONTENT_LENGTH, GIB)
        .header("x-forwarded-for", "127.0.0.1")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    let status = answer.map(|r| r.status().as_u16()).unwrap_or(0);
    (status, sent.load(Ordering::SeqCst), started.elapsed())
}

fn strangers_cannot_exhaust(world: World) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The 10,000 idle connections are this process's descriptors too.
    assert!(portcullis_guard::connection_budget(20_000) >= 11_500, "too few open files allowed for the test");
    let pid = world.server.pid();
    let port = world.server.port;
    let health = format!("{}/v1/health", world.server.url);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let http = fresh_connections();

    let (idle_rss, _) = memory_kib(pid);
    let idle = rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(true));
        latencies(http.clone(), health.clone(), stop).await
    });

    // 1,000 connections that start a TLS record and never finish it, from four loopback
    // addresses (250 each, under the per-address cap), held open.
    let loris_opened = Instant::now();
    let mut loris = rt.block_on(async {
        let mut all = Vec::new();
        for i in 0..1000u32 {
            let source = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2 + (i / 250) as u8), 0));
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(source).unwrap();
            let mut stream = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap();
            stream.write_all(&[0x16, 0x03]).await.unwrap();
            all.push(stream);
        }
        all
    });

    // 100 that finish the handshake, then send half a request's headers and wait.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let trickle_opened = Instant::now();
    let mut trickles = rt.block_on(async {
        let mut all = Vec::new();
        for _ in 0..100 {
            all.push(half_request(&connector, Ipv4Addr::new(127, 0, 0, 6), port).await);
        }
        all
    });

    // Meanwhile 10,000 idle connections from 40 addresses (250 each) that never send a byte,
    // 200 strangers with made-up device headers each send a 16 MB body, one streams a 1 GiB
    // body, and the real client keeps asking.
    let body = bytes::Bytes::from(vec![b'x'; 16 * 1024 * 1024]);
    let (under_load, refused, idle_held, gigabyte) = rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let client = tokio::spawn(latencies(http.clone(), health.clone(), stop.clone()));
        let mut idle = Vec::new();
        for i in 0..10_000u32 {
            let source =
                SocketAddr::from((Ipv4Addr::new(127, 0, 1 + (i / 250 / 200) as u8, 1 + (i / 250 % 200) as u8), 0));
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(source).unwrap();
            idle.push(socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap());
        }
        let gigabyte = tokio::spawn(forged_gigabyte(format!("{}/v1/requests", world.server.url)));
        let mut strangers = Vec::new();
        for i in 0..200 {
            let (http, body) = (http.clone(), body.clone());
            let url = format!("{}/v1/requests", world.server.url);
            strangers.push(tokio::spawn(async move {
                let sent = forged(http.post(url), i).body(body).send().await;
                // Refused at the headers: a 401, or the connection closed under the unread body.
                match sent {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                }
            }));
        }
        let mut refused = Vec::new();
        for s in strangers {
            refused.push(s.await.unwrap());
        }
        let gigabyte = gigabyte.await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::SeqCst);
        let held = idle.len();
        (client.await.unwrap(), refused, held, gigabyte)
    });
    let (after_rss, peak_rss) = memory_kib(pid);
    assert!(refused.iter().all(|s| *s == 401 || *s == 0), "a stranger was let through: {refused:?}");
    assert!(refused.contains(&401), "no stranger was told why: {refused:?}");
    let (gigabyte_status, gigabyte_sent, gigabyte_took) = gigabyte;
    assert!(gigabyte_status == 401 || gigabyte_status == 0, "the forged 1 GiB request got {gigabyte_status}");
    assert!(gigabyte_sent < 64 << 20, "the server read {gigabyte_sent} bytes of a forged 1 GiB body");
    assert!(gigabyte_took < Duration::from_secs(10), "the forged 1 GiB request was held {gigabyte_took:?}");

    // The slowloris connections are closed by the handshake deadline (10 s), or sooner when
    // newcomers needed their slots.
    let still_open = rt.block_on(still_open_at(&mut loris, loris_opened + Duration::from_secs(20)));
    let closed_after = loris_opened.elapsed();
    assert_eq!(still_open, 0, "slowloris connections outlived the handshake deadline");
    // And the half requests by the header deadline (10 s).
    let still_open = rt.block_on(still_open_at(&mut trickles, trickle_opened + Duration::from_secs(20)));
    let trickles_closed_after = trickle_opened.elapsed();
    assert_eq!(still_open, 0, "half-sent requests outlived the header deadline");

    let (p50_idle, p99_idle) = (percentile(idle.clone(), 0.5), percentile(idle, 0.99));
    let (p50_load, p99_load) = (percentile(under_load.clone(), 0.5), percentile(under_load, 0.99));
    eprintln!(
        "server ({}) memory: idle {idle_rss} KiB, after {after_rss} KiB, peak {peak_rss} KiB; real client (a new TLS \
         connection each) p50/p99: idle {p50_idle:?}/{p99_idle:?}, under load {p50_load:?}/{p99_load:?}; 1,000 slowloris \
         closed within {closed_after:?}, 100 half requests within {trickles_closed_after:?}; {idle_held} idle connections \
         held; forged 1 GiB body: {gigabyte_status} after {gigabyte_sent} bytes in {gigabyte_took:?}",
        if world.replica.is_some() { "PostgreSQL replica" } else { "SQLite" }
    );
    assert!(p99_load < Duration::from_secs(1), "the real client waited {p99_load:?} under load");
    assert!(peak_rss < idle_rss + 96 * 1024, "the server grew from {idle_rss} KiB to a peak of {peak_rss} KiB");
    // And it still serves real work.
    world.alice.run(&["requests"]).ok();
}

/// Accepts any host key: this client is the attacker.
struct AnyHost;

impl russh::client::Handler for AnyHost {
    type Error = russh::Error;
    async fn check_server_key(&mut self, _: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Rows in the embedded gateway's record log.
fn gateway_records(world: &World) -> i64 {
    let db = world.server.data.join("gateway.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db.display())).await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM records").fetch_one(&mut conn).await.unwrap()
    })
}

/// The gateway against strangers: 2,000 idle connections are closed at the login grace time
/// (5 s here) and give back their descriptors; connections over the per-address cap are
/// refused at once; 300 keyboard-interactive attempts with a 20 KB user name write a handful
/// of aggregated records, the user name cut and escaped.
#[test]
fn strangers_cannot_exhaust_the_gateway() {
    let world = World::custom("warn", false, &["--ssh-login-grace", "5"]);
    let pid = world.server.pid();
    let port = world.server.gateway_port;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let fds_before = open_fds(pid);

    let (mut idle, refused_at_once) = rt.block_on(async {
        // One address over its cap (128): the extra connections are closed without a banner.
        let mut over = Vec::new();
        for _ in 0..140 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 2, 1), 0))).unwrap();
            over.push(socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap());
        }
        let mut refused = 0;
        for stream in &mut over {
            let mut buf = [0u8; 64];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
                refused += 1;
            }
        }
        drop(over);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut idle = Vec::new();
        for i in 0..2000u32 {
            let source = SocketAddr::from((Ipv4Addr::new(127, 0, 1, 1 + (i / 125) as u8), 0));
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(source).unwrap();
            idle.push(socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap());
        }
        (idle, refused)
    });
    let opened = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let fds_held = open_fds(pid);
    assert_eq!(refused_at_once, 12, "connections over the per-address cap");

    let still_open = rt.block_on(still_open_at(&mut idle, opened + Duration::from_secs(20)));
    let closed_after = opened.elapsed();
    assert_eq!(still_open, 0, "idle connections outlived the login grace time");
    drop(idle);
    std::thread::sleep(Duration::from_millis(500));
    let fds_after = open_fds(pid);
    assert!(fds_after <= fds_before + 10, "descriptors: {fds_before} before, {fds_held} held, {fds_after} after");

    // A loop of keyboard-interactive attempts with a 20 KB user name.
    let records_before = gateway_records(&world);
    let size_before = dir_size(&world.server.data);
    let name = format!("{}\u{1b}[2J{}", "x".repeat(10_000), "y".repeat(10_000));
    // PORTCULLIS_PREAUTH_ATTEMPTS measures more (the figure is per 10,000).
    let attempts: u32 = std::env::var("PORTCULLIS_PREAUTH_ATTEMPTS").ok().and_then(|n| n.parse().ok()).unwrap_or(300);
    let started = Instant::now();
    rt.block_on(async {
        for _ in 0..attempts {
            let mut handle =
                russh::client::connect(Arc::new(Default::default()), ("127.0.0.1", port), AnyHost).await.unwrap();
            let first = handle.authenticate_keyboard_interactive_start(name.clone(), None).await.unwrap();
            // The gateway has decided (recorded, or counted) by now: leave without waiting out
            // its delay for a wrong answer.
            assert!(matches!(first, russh::client::KeyboardInteractiveAuthResponse::InfoRequest { .. }), "{first:?}");
        }
    });
    eprintln!("{attempts} attempts took {:?}", started.elapsed());
    // Let the gateway write what it writes.
    std::thread::sleep(Duration::from_secs(1));
    let written = gateway_records(&world) - records_before;
    let grown = dir_size(&world.server.data).saturating_sub(size_before);
    eprintln!(
        "gateway: 2,000 idle connections closed within {closed_after:?} (descriptors {fds_before} → {fds_held} → \
         {fds_after}); {attempts} keyboard-interactive attempts wrote {written} records, data grew {grown} bytes"
    );
    // Aggregated per source: the 1st, 8th, 16th and 30th, then each power of two and each
    // thousandth (with the count so far) — and at most 500 in an hour in all.
    let bound = (4 + attempts.ilog2() + attempts / 1000) as i64;
    assert!((1..=bound).contains(&written), "{written} records for {attempts} attempts");
    let events =
        world.audit_when(&["audit", "events", "--kind", "gateway_refused"], "the refusals", |out| out.contains("xxxx"));
    assert!(!events.contains('\u{1b}'), "an escape sequence reached the audit output");
    assert!(events.len() < 20 * 1024, "the user name was not cut: {} bytes", events.len());
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
