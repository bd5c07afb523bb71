//! The accept loop (plain HTTP on loopback, TLS elsewhere), built so that strangers cannot
//! exhaust the server: connection limits (in all and per source address, IPv6 by /64) with a
//! clear refusal, a TLS-handshake deadline, hyper's header-read timeout (which also closes a
//! connection left idle between requests), and accept errors (out of file descriptors)
//! backed off instead of spun on. Request bodies are bounded per route in `auth.rs` and
//! `api/mod.rs`.

use std::sync::Arc;
use std::time::Duration;

pub use portcullis_guard::connections::{Connections, RefusalLog, Slot, accept, source_key};

use tokio::io::AsyncWriteExt;

use crate::ServerError;

/// What one server process accepts.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections in all.
    pub total: usize,
    /// Open connections from one address (one /64 for IPv6).
    pub per_source: usize,
    /// Time to finish the TLS handshake.
    pub handshake: Duration,
    /// Time to send a request's headers — and, between requests, how long a connection may idle.
    pub headers: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { total: 4096, per_source: 256, handshake: Duration::from_secs(10), headers: Duration::from_secs(10) }
    }
}

/// Serves `router` on `listener` until `shutdown`; TLS when `tls` is given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let connections = Connections::default();
    let total = portcullis_guard::connection_budget(limits.total);
    if total < limits.total {
        tracing::warn!(wanted = limits.total, total, "the open-files limit caps how many connections are served");
    }
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    let mut refusals = RefusalLog::default();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = accept(&listener, &mut backoff) => accepted,
        };
        let slot = match connections.admit(peer.ip(), total, limits.per_source) {
            Ok(slot) => slot,
            Err(why) => {
                refusals.note(peer, why);
                if acceptor.is_none() {
                    // Plain HTTP can be told why; a TLS client just sees the connection close.
                    tokio::spawn(refuse_plain(tcp, why));
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(tcp, peer, slot, acceptor.clone(), router.clone(), limits));
    }
}

/// One connection. Until the client has sent its first byte it costs only its socket and this
/// small task (an idle stranger holds nothing more); the TLS state and the HTTP connection are
/// made after that, on the heap, and — until the handshake is done — the connection is closed
/// when its slot goes to a newcomer.
async fn connection(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    slot: Slot,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
    limits: ConnectionLimits,
) {
    let deadline = tokio::time::Instant::now() + limits.handshake;
    let Some(acceptor) = acceptor else {
        // Plain HTTP is loopback only: nothing to prove.
        slot.settle();
        return serve_http(tcp, peer, router, limits.headers).await;
    };
    // (`peek`, not `readable`: readiness may be reported before any byte is there.)
    let mut byte = [0u8; 1];
    let first_byte = tokio::select! {
        peeked = tokio::time::timeout_at(deadline, tcp.peek(&mut byte)) => peeked,
        _ = slot.evicted() => return tracing::debug!(%peer, "closed for a newcomer before it sent anything"),
    };
    if !matches!(first_byte, Ok(Ok(1))) {
        return tracing::debug!(%peer, "nothing sent within the handshake deadline");
    }
    slot.spoke();
    Box::pin(async move {
        let handshake = tokio::select! {
            done = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => done,
            _ = slot.evicted() => return tracing::debug!(%peer, "closed for a newcomer before its TLS handshake"),
        };
        match handshake {
            Ok(Ok(tls)) => {
                slot.settle();
                serve_http(tls, peer, router, limits.headers).await
            }
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    })
    .await
}

/// HTTP/1.1 on an established stream, with the header deadline (which also closes a
/// connection idle between requests).
async fn serve_http<S>(stream: S, peer: std::net::SocketAddr, router: axum::Router, headers: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Handlers see the caller's address (policies use it).
    let service =
        hyper_util::service::TowerToHyperService::new(router.layer(axum::Extension(axum::extract::ConnectInfo(peer))));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(headers);
    if let Err(e) = Box::pin(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn refuse_plain(mut tcp: tokio::net::TcpStream, why: &str) {
    let body = format!("{{\"code\":\"too_many_connections\",\"message\":\"{why}; try again shortly\"}}");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nretry-after: 5\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(answer.as_bytes())).await;
}
