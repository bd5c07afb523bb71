//! Strangers cannot exhaust the real server over TLS: 1,000 slowloris connections are closed
//! by the handshake deadline, 100 that finish the handshake and then trickle half a request are
//! closed by the header deadline, 200 strangers with made-up signatures and 16 MB bodies are
//! refused before their bodies are read, and all the while a real client is answered within a
//! second and the server's memory stays bounded.

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

/// Times `GET /v1/health` until `stop`, every 50 ms.
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

#[test]
fn strangers_cannot_exhaust_the_server() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let world = World::custom("warn", true, &[]);
    let pid = world.server.pid();
    let port = world.server.port;
    let health = format!("{}/v1/health", world.server.url);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();

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

    // Meanwhile 200 strangers with made-up device headers each send a 16 MB body, and the real
    // client keeps asking.
    let body = bytes::Bytes::from(vec![b'x'; 16 * 1024 * 1024]);
    let (under_load, refused) = rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let client = tokio::spawn(latencies(http.clone(), health.clone(), stop.clone()));
        let mut strangers = Vec::new();
        for i in 0..200 {
            let (http, body) = (http.clone(), body.clone());
            let url = format!("{}/v1/requests", world.server.url);
            strangers.push(tokio::spawn(async move {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                let sent = http
                    .post(url)
                    .header(portcullis_proto::HEADER_DEVICE, format!("00000000-0000-0000-0000-{i:012}"))
                    .header(portcullis_proto::HEADER_TIME, now.to_string())
                    .header(portcullis_proto::HEADER_NONCE, format!("stranger-nonce-{i:08}"))
                    .header(portcullis_proto::HEADER_SIGNATURE, "AAAA")
                    .body(body)
                    .send()
                    .await;
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
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::SeqCst);
        (client.await.unwrap(), refused)
    });
    let (after_rss, peak_rss) = memory_kib(pid);
    assert!(refused.iter().all(|s| *s == 401 || *s == 0), "a stranger was let through: {refused:?}");
    assert!(refused.contains(&401), "no stranger was told why: {refused:?}");

    // The slowloris connections are closed by the handshake deadline (10 s).
    let still_open = rt.block_on(async {
        let mut open = 0;
        for stream in &mut loris {
            let mut buf = [0u8; 64];
            let left = loris_opened + Duration::from_secs(20);
            match tokio::time::timeout_at(left.into(), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {}
                Ok(Ok(_)) | Err(_) => open += 1,
            }
        }
        open
    });
    let closed_after = loris_opened.elapsed();
    assert_eq!(still_open, 0, "slowloris connections outlived the handshake deadline");
    // And the half requests by the header deadline (10 s).
    let still_open = rt.block_on(async {
        let mut open = 0;
        for stream in &mut trickles {
            let mut buf = [0u8; 256];
            let left = trickle_opened + Duration::from_secs(20);
            // Read until the server closes (anything it says first is its timeout answer).
            loop {
                match tokio::time::timeout_at(left.into(), stream.read(&mut buf)).await {
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
    });
    let trickles_closed_after = trickle_opened.elapsed();
    assert_eq!(still_open, 0, "half-sent requests outlived the header deadline");

    let (p50_idle, p99_idle) = (percentile(idle.clone(), 0.5), percentile(idle, 0.99));
    let (p50_load, p99_load) = (percentile(under_load.clone(), 0.5), percentile(under_load, 0.99));
    eprintln!(
        "server memory: idle {idle_rss} KiB, after {after_rss} KiB, peak {peak_rss} KiB; real client p50/p99: idle \
         {p50_idle:?}/{p99_idle:?}, under load {p50_load:?}/{p99_load:?}; 1,000 slowloris closed within {closed_after:?}, 100 half \
         requests within {trickles_closed_after:?}"
    );
    assert!(p99_load < Duration::from_secs(1), "the real client waited {p99_load:?} under load");
    assert!(peak_rss < idle_rss + 96 * 1024, "the server grew from {idle_rss} KiB to a peak of {peak_rss} KiB");
    // And it still serves real work.
    world.alice.run(&["requests"]).ok();
}
