//! What a Portcullis listener grants strangers, shared by the control server's HTTPS listener
//! and the gateway's SSH listener: connection slots ([`connections`]) and failure windows
//! ([`failures`]).
//!
//! Contract: no I/O beyond accepting, logging and the process's descriptor limit; depends on
//! tokio, tracing and rustix only.

pub mod connections;
pub mod failures;

pub use connections::source_key;

/// Descriptors kept for everything but connections (database pool, log files, targets).
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises this process's soft limit on open files to its hard limit — many systems start a
/// process at 1,024, far below what its connection caps allow — and says how many connections
/// of `wanted` it can then hold with descriptors to spare.
pub fn connection_budget(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        // (None is unlimited.) When raising fails, what the process has is what it budgets for.
        let soft = if limit.current != limit.maximum && setrlimit(Resource::Nofile, raised).is_ok() {
            limit.maximum
        } else {
            limit.current
        };
        match soft {
            Some(soft) => wanted.min(soft.saturating_sub(RESERVED_DESCRIPTORS).max(16) as usize),
            None => wanted,
        }
    }
    #[cfg(not(unix))]
    wanted
}
