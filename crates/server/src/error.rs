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

impl From<sqlx::Error> for ServerError {
    fn from(e: sqlx::Error) -> Self {
        // SQLite's primary result codes: the disk is full (13), the database is read-only (8),
        // an I/O error (10), it cannot be opened (14).
        let primary =
            e.as_database_error().and_then(|d| d.code()).and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
        if matches!(primary, Some(8 | 10 | 13 | 14)) {
            tracing::error!(error = %e, "the store cannot write; refusing what must be recorded");
            return ServerError::StoreUnavailable(format!(
                "the audit store cannot record right now ({}); nothing that must be recorded can happen until it \
                 can — ask the server's operator to free space or make the store writable",
                match primary {
                    Some(13) => "the disk is full",
                    Some(8) => "it is read-only",
                    _ => "a disk error",
                }
            ));
        }
        ServerError::Internal(format!("database: {e}"))
    }
}

impl From<sqlx::migrate::MigrateError> for ServerError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        ServerError::Internal(format!("database migration: {e}"))
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
