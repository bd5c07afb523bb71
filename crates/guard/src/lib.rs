//! What a Portcullis listener grants strangers, shared by the control server's HTTPS listener
//! and the gateway's SSH listener: connection slots ([`connections`]) and failure windows
//! ([`failures`]).
//!
//! Contract: no I/O beyond accepting and logging; depends on tokio and tracing only.

pub mod connections;
pub mod failures;

pub use connections::source_key;
