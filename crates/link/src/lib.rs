//! The signed link to the control server, for devices and gateways alike: requests signed
//! with the caller's Ed25519 key, over HTTP (loopback only) or TLS with a pinned certificate
//! fingerprint, to one server or a list of its replicas with failover.
//!
//! Contract: knows the request-signing scheme and the error body of the API, not its routes.
//! Depends on crypto, proto, reqwest and rustls (ring); never on the server, client or gateway.

use std::sync::Arc;

use base64::Engine;
use portcullis_crypto::identity::SigningIdentity;
use portcullis_proto::{ApiError, HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME, request_signing_input};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use reqwest::{Method, Response, Url};

/// Why a call did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The server answered with a refusal (its words, its code).
    #[error("{message}")]
    Api { status: u16, code: String, message: String },
    #[error(
        "cannot reach the server at {url}: {detail}. Is it running (`portcullis server run`), and is the URL the one \
         it listens on?"
    )]
    Unreachable { url: String, detail: String },
    /// The caller's input (URL, path) cannot be used.
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Local(String),
}

/// Requests that stay open (live subscriptions) get this limit instead of the usual 120 s.
pub const LONG_LIVED: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// What the client trusts as the server's TLS certificate.
#[derive(Clone, Debug)]
pub enum Pin {
    /// The full SHA-256 fingerprint (hex), pinned at enrolment.
    Full(String),
    /// The prefix carried by an enrolment code.
    Prefix(String),
}

/// Cheap to clone: clones share the HTTP connection pool, the device key and which of the
/// server's replicas answers now.
///
/// A server URL may be a comma-separated list of one server's replicas (they share one TLS
/// certificate, so one pin holds for all). A call goes to the replica that answered last; when
/// it cannot be reached the next is tried — for any call when the connection could not be made
/// (nothing reached the server), for reads also when it timed out. A write whose answer was lost
/// is not sent again: it may have happened, and the caller is told.
#[derive(Clone)]
pub struct Link {
    bases: Arc<[reqwest::Url]>,
    current: Arc<std::sync::atomic::AtomicUsize>,
    http: reqwest::Client,
    signer: Option<Arc<(String, SigningIdentity)>>,
}

fn is_loopback_host(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl Link {
    pub fn new(server_url: &str, pin: Pin) -> Result<Self, LinkError> {
        let mut bases = Vec::new();
        for url in server_urls(server_url) {
            let base =
                reqwest::Url::parse(url).map_err(|e| LinkError::Input(format!("invalid server URL {url:?}: {e}")))?;
            match base.scheme() {
                "https" => {}
                "http" if is_loopback_host(&base) => {}
                "http" => {
                    return Err(LinkError::Input(format!(
                        "refusing plain http to {url}: only loopback servers may use http; use https"
                    )));
                }
                other => return Err(LinkError::Input(format!("unsupported URL scheme {other:?}"))),
            }
            bases.push(base);
        }
        if bases.is_empty() {
            return Err(LinkError::Input("no server URL given".into()));
        }
        // reqwest builds a TLS stack even for http URLs; give it ring (already in the tree)
        // as the process default. Failing means another provider is installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(120))
            .no_proxy()
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
        let builder = if bases.iter().any(|b| b.scheme() == "https") {
            builder.use_preconfigured_tls(pinned_tls_config(pin)?)
        } else {
            builder
        };
        let http = builder.build().map_err(|e| LinkError::Local(format!("HTTP client: {e}")))?;
        Ok(Self { bases: bases.into(), current: Arc::default(), http, signer: None })
    }

    /// The replica calls go to now.
    pub fn server(&self) -> &reqwest::Url {
        &self.bases[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len()]
    }

    pub fn signed_by(mut self, device_id: String, key: SigningIdentity) -> Self {
        self.signer = Some(Arc::new((device_id, key)));
        self
    }

    /// A call whose answer is JSON.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<T, LinkError> {
        let bytes = self.send(method, path_and_query, body).await?.bytes().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&bytes).map_err(|e| LinkError::Local(format!("unexpected server response: {e}")))
    }

    /// A call whose answer the caller reads.
    pub async fn send<B: Serialize>(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, LinkError> {
        self.send_with(method, path_and_query, body, None, None).await
    }

    /// [`Link::send`] with one more header (not signed: only `Last-Event-ID` uses it) and
    /// another time limit (see [`LONG_LIVED`]).
    pub async fn send_with<B: Serialize>(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&B>,
        extra: Option<(&'static str, &str)>,
        timeout: Option<std::time::Duration>,
    ) -> Result<reqwest::Response, LinkError> {
        let body = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| LinkError::Local(e.to_string()))?,
            None => Vec::new(),
        };
        // Signed once: the signature covers the path, not the host, so every replica checks it
        // (and its nonce is spent once, whichever replica first receives it).
        let first = self.bases[0]
            .join(path_and_query)
            .map_err(|e| LinkError::Input(format!("bad path {path_and_query}: {e}")))?;
        let signed = self.signer.as_ref().map(|signer| {
            let (device_id, key) = signer.as_ref();
            let time = now_secs();
            let nonce = hex::encode(portcullis_crypto::random_bytes::<16>(&mut portcullis_crypto::OsRng));
            let signed_path = match first.query() {
                Some(q) => format!("{}?{}", first.path(), q),
                None => first.path().to_string(),
            };
            let input = request_signing_input(method.as_str(), &signed_path, time, &nonce, &body);
            let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&input));
            (device_id.clone(), time, nonce, signature)
        });
        let start = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let mut last_error = None;
        for step in 0..self.bases.len() {
            let at = (start + step) % self.bases.len();
            let url = self.bases[at]
                .join(path_and_query)
                .map_err(|e| LinkError::Input(format!("bad path {path_and_query}: {e}")))?;
            let mut request = self.http.request(method.clone(), url);
            if !body.is_empty() {
                request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
            }
            if let Some((name, value)) = extra {
                request = request.header(name, value);
            }
            if let Some((device_id, time, nonce, signature)) = &signed {
                request = request
                    .header(HEADER_DEVICE, device_id)
                    .header(HEADER_TIME, time.to_string())
                    .header(HEADER_NONCE, nonce)
                    .header(HEADER_SIGNATURE, signature);
            }
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            match request.body(body.clone()).send().await {
                Ok(response) => {
                    self.current.store(at, std::sync::atomic::Ordering::Relaxed);
                    return self.answer(response).await;
                }
                // Nothing reached this replica, or a read that may be asked again: the next one.
                Err(e) if e.is_connect() || (method == reqwest::Method::GET && e.is_timeout()) => {
                    tracing::debug!(replica = %self.bases[at], error = %e, "server replica unreachable; trying the next");
                    last_error = Some(self.unreachable_at(at, e));
                }
                Err(e) => return Err(self.unreachable_at(at, e)),
            }
        }
        Err(last_error.unwrap_or_else(|| LinkError::Input("no server URL given".into())))
    }

    async fn answer(&self, response: reqwest::Response) -> Result<reqwest::Response, LinkError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => LinkError::Api { status: status.as_u16(), code: e.code, message: e.message },
            Err(_) => LinkError::Api {
                status: status.as_u16(),
                code: "http".into(),
                message: format!("server answered {status}"),
            },
        })
    }

    /// The error for a failure while reading an answer from the replica in use.
    pub fn unreachable(&self, e: reqwest::Error) -> LinkError {
        self.unreachable_at(self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len(), e)
    }

    fn unreachable_at(&self, at: usize, e: reqwest::Error) -> LinkError {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail = format!("{detail}: {s}");
            source = s.source();
        }
        LinkError::Unreachable { url: self.bases[at].to_string(), detail }
    }

    /// A signed POST to `path`.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, LinkError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

/// The URLs of a server value: one URL, or a comma-separated list of its replicas.
pub fn server_urls(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(|u| u.trim().trim_end_matches('/')).filter(|u| !u.is_empty())
}

/// rustls configuration that trusts exactly the pinned certificate.
fn pinned_tls_config(pin: Pin) -> Result<rustls::ClientConfig, LinkError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCertVerifier { pin, provider: provider.clone() });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LinkError::Local(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[derive(Debug)]
struct PinnedCertVerifier {
    pin: Pin,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let fingerprint = portcullis_crypto::sha256_hex(end_entity.as_ref());
        let ok = match &self.pin {
            Pin::Full(expected) => portcullis_crypto::constant_time_eq(fingerprint.as_bytes(), expected.as_bytes()),
            Pin::Prefix(prefix) => fingerprint.starts_with(prefix.as_str()),
        };
        if ok {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate {fingerprint} does not match the pinned fingerprint"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
