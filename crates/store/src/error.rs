use crate::Location;

/// What the store refuses or fails with. Messages never carry a secret value; database
/// internals stay in `Database` (the server logs it and answers `internal`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with that name already exists (a unique constraint decided it).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// A row was added, changed, deleted or put back behind the server's back (see `rows`).
    #[error("{0}")]
    NotAuthentic(String),
    /// Stored evidence does not verify (`code` is the API's machine-readable refusal).
    #[error("{1}")]
    Refused(&'static str, String),
    /// The database cannot write or cannot be reached: whatever must be recorded is refused
    /// until it can (fail closed).
    #[error("{0}")]
    Unavailable(String),
    /// The store was made by an older version and has not been migrated.
    #[error("{0}")]
    Outdated(String),
    /// A `--database` value that is not a usable database URL.
    #[error("{0}")]
    BadLocation(String),
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("crypto: {0}")]
    Crypto(#[from] portcullis_crypto::CryptoError),
    #[error("{0}")]
    Internal(String),
}

/// Why a database error means "cannot record right now" rather than a bug, if it does.
fn unavailable_because(e: &sqlx::Error) -> Option<&'static str> {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            return Some("the database cannot be reached");
        }
        _ => {}
    }
    let db = e.as_database_error()?;
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        // SQLSTATE classes: 53 insufficient resources (53100 disk full), 58 system errors
        // (58030 I/O), 57P0x the server shutting down, 25006 read-only transaction.
        let code = pg.code();
        return match code {
            "53100" => Some("the disk is full"),
            "25006" => Some("it is read-only"),
            _ if code.starts_with("53") || code.starts_with("58") => Some("a disk error"),
            _ if code.starts_with("57P") || code.starts_with("08") => Some("the database cannot be reached"),
            _ => None,
        };
    }
    // SQLite's primary result codes: the disk is full (13), the database is read-only (8), an
    // I/O error (10), it cannot be opened (14).
    let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff)?;
    match primary {
        13 => Some("the disk is full"),
        8 => Some("it is read-only"),
        10 | 14 => Some("a disk error"),
        _ => None,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match unavailable_because(&e) {
            Some(why) => {
                tracing::error!(error = %e, "the store cannot write; refusing what must be recorded");
                StoreError::Unavailable(format!(
                    "the audit store cannot record right now ({why}); nothing that must be recorded can happen \
                     until it can — ask the server's operator to free space, make the store writable or bring \
                     the database back"
                ))
            }
            None => StoreError::Database(e),
        }
    }
}

impl StoreError {
    /// Opening failed: say where, without the password.
    pub(crate) fn unreachable(location: &Location, e: sqlx::Error) -> Self {
        StoreError::Unavailable(format!("{} cannot be reached: {e}", location.describe()))
    }

    /// Whether the database refused this because of a unique constraint.
    pub fn is_unique_violation(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
    }
}
