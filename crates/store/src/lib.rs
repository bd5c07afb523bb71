//! The server's store: one facade (`Store`, `Tx`) over SQLite (the embedded default) and
//! PostgreSQL (for teams). All SQL of the server lives in this crate; each query is written once
//! and compiled for both backends (see `backend`).
//!
//! Contract: callers get typed rows and typed operations, never a pool or a query. Rows that
//! decisions read are authenticated here (`rows`): a row changed behind the server's back is
//! refused, whichever backend holds it.

mod backend;
pub(crate) use backend::on;
pub use backend::{Backend, Conn, Connection, Kind, Location, Store, Tx, redact_url, without_password};

mod error;
pub use error::StoreError;

// By domain: each module adds its part of `Store`'s methods and its row types.
mod access;
pub mod audit;
mod events;
mod gateways;
pub mod limits;
pub mod live;
mod requests;
pub mod rows;
mod secrets;
mod server_secrets;
mod sessions;
mod users;
mod vault;
pub use access::{
    ChallengeRow, DeviceDetailRow, GroupRow, PolicyRow, ReviewRow, SETTING_ROWS_AUTHENTICATED,
    SETTING_SESSION_CHECKS_SINCE, SETTING_STANDALONE_OWNER, SETTING_WEBAUTHN_RP_ID, SecurityKeyRow, UserDetailRow,
};
pub use events::EventRow;
pub use gateways::GatewayRow;
pub use requests::{GrantRow, RequestRow};
pub use secrets::{CheckoutRow, RotationRow, SecretFilter, SecretRow, SecretVersionRow};
pub use sessions::{NewRecord, SessionRow, record_aad};
pub use users::{DeviceRow, UserRow, csv_list};
pub use vault::{TargetRow, credential_aad};

pub const SECRET_SIGNING: &str = "signing_key";
pub const SECRET_SEALING: &str = "sealing_key";
pub const SECRET_TLS: &str = "tls_key";
/// The user CA (OpenSSH private key text): signs users' short-lived certificates.
pub const SECRET_USER_CA: &str = "user_ca";
/// The embedded gateway's SSH host key (OpenSSH private key text).
pub const SECRET_EMBEDDED_GATEWAY_HOST_KEY: &str = "embedded_gateway_host_key";
/// The key of the embedded gateway's local record log.
pub const SECRET_EMBEDDED_GATEWAY_LOCAL_KEY: &str = "embedded_gateway_local_key";
/// The embedded gateway's Ed25519 key: signs its log's checkpoints.
pub const SECRET_EMBEDDED_GATEWAY_SIGNING_KEY: &str = "embedded_gateway_signing_key";

/// The migration that introduced gateway confirmations (carried-over rows are sealed after it).
pub const MIGRATION_CONFIRMATIONS: i64 = 20261201000001;
/// The migration that gave grants, targets and enrolment codes their MAC (existing rows are
/// sealed in the start that applies it).
pub const MIGRATION_ROW_MACS: i64 = 20261201000002;
/// The migration that created the row ledger (rows sealed before it are entered in the start
/// that applies it).
pub const MIGRATION_ROW_LEDGER: i64 = 20261201000003;
