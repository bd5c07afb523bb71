use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis_proto::ApiError;

/// Everything a handler can refuse with. User-facing messages never carry database or crypto
/// internals: those are logged (without secrets) and answered as `internal`.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A refusal with a specific machine-readable code (e.g. `self_approval`, `grant_expired`).
    #[error("{1}")]
    Refused(&'static str, String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the server's root key: {0}")]
    Keystore(#[from] portcullis_keystore::KeystoreError),
    /// A body over the route's limit (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Too many failed attempts from one source (429).
    #[error("{0}")]
    TooMany(String),
    /// The store cannot write (disk full, read-only, I/O error): whatever needs recording is
    /// refused until it can (fail closed), and says so.
    #[error("{0}")]
    StoreUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServerError {
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::BadRequest(_) => "bad_request",
            ServerError::Unauthorized(_) => "unauthorized",
            ServerError::Forbidden(_) => "forbidden",
            ServerError::Refused(code, _) => code,
            ServerError::NotFound(_) => "not_found",
            ServerError::Conflict(_) => "conflict",
            ServerError::Keystore(_) => "locked",
            ServerError::StoreUnavailable(_) => "audit_store_unavailable",
            ServerError::TooMany(_) => "rate_limited",
            ServerError::PayloadTooLarge(_) => "too_large",
            ServerError::Internal(_) => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ServerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServerError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServerError::Forbidden(_) | ServerError::Refused(..) => StatusCode::FORBIDDEN,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::Conflict(_) => StatusCode::CONFLICT,
            ServerError::Keystore(_) | ServerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ServerError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ServerError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

impl From<portcullis_store::StoreError> for ServerError {
    fn from(e: portcullis_store::StoreError) -> Self {
        use portcullis_store::StoreError;
        match e {
            StoreError::Conflict(m) => ServerError::Conflict(m),
            StoreError::NotFound(m) => ServerError::NotFound(m),
            StoreError::NotAuthentic(m) => ServerError::Refused("row_not_authentic", m),
            StoreError::Refused(code, m) => ServerError::Refused(code, m),
            StoreError::Unavailable(m) => ServerError::StoreUnavailable(m),
            StoreError::Outdated(m) | StoreError::BadLocation(m) => ServerError::BadRequest(m),
            other => ServerError::Internal(other.to_string()),
        }
    }
}

impl From<portcullis_crypto::CryptoError> for ServerError {
    fn from(e: portcullis_crypto::CryptoError) -> Self {
        ServerError::Internal(format!("crypto: {e}"))
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let message = match &self {
            ServerError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal server error".to_string()
            }
            other => other.to_string(),
        };
        let body = ApiError { code: self.code().to_string(), message };
        (self.status(), axum::Json(body)).into_response()
    }
}
