//! Unauthenticated failures — enrolment codes that do not work — are rate-limited per source
//! address and recorded in aggregate: a flood can neither fill the security-event log nor guess
//! codes quickly. After [`MAX_FAILURES`] failures in an hour, a source is refused (429) before
//! its code is even looked at, until the hour is over.
//!
//! The counters live in this process's memory (a second replica counts on its own); the events
//! they produce are in the audit log like any other.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

pub const WINDOW_SECS: i64 = 3600;
pub const MAX_FAILURES: u64 = 30;
/// Sources tracked at most; beyond, windows that are over are forgotten first.
const MAX_SOURCES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    failures: u64,
}

/// What to do about one more failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Record an event saying `attempts` failures came from this source since `since`
    /// (the 1st, the 10th, the 100th... and the one that reached the limit).
    Record { attempts: u64, since: i64, limited: bool },
    /// Counted, not recorded on its own.
    Counted,
}

#[derive(Default)]
pub struct FailureLimiter {
    windows: Mutex<HashMap<(&'static str, IpAddr), Window>>,
}

impl FailureLimiter {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<(&'static str, IpAddr), Window>) -> T) -> T {
        match self.windows.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Seconds until `source` may try `what` again; `None`: it may now.
    pub fn blocked(&self, what: &'static str, source: IpAddr, now: i64) -> Option<i64> {
        self.with(|windows| match windows.get(&(what, source)) {
            Some(w) if now - w.start < WINDOW_SECS && w.failures >= MAX_FAILURES => Some(w.start + WINDOW_SECS - now),
            _ => None,
        })
    }

    pub fn failed(&self, what: &'static str, source: IpAddr, now: i64) -> Failure {
        self.with(|windows| {
            if windows.len() >= MAX_SOURCES {
                windows.retain(|_, w| now - w.start < WINDOW_SECS);
            }
            let w = windows.entry((what, source)).or_insert(Window { start: now, failures: 0 });
            if now - w.start >= WINDOW_SECS {
                *w = Window { start: now, failures: 0 };
            }
            w.failures += 1;
            let n = w.failures;
            let limited = n == MAX_FAILURES;
            if n == 1 || limited || (n.is_power_of_two() && n >= 8) || n % 1000 == 0 {
                Failure::Record { attempts: n, since: w.start, limited }
            } else {
                Failure::Counted
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_recorded_sparsely_and_limited_per_source_and_hour() {
        let limiter = FailureLimiter::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let mut recorded = Vec::new();
        for i in 0..MAX_FAILURES {
            assert_eq!(limiter.blocked("enrol", a, 1000 + i as i64), None);
            if let Failure::Record { attempts, limited, .. } = limiter.failed("enrol", a, 1000 + i as i64) {
                recorded.push((attempts, limited));
            }
        }
        assert_eq!(recorded, vec![(1, false), (8, false), (16, false), (30, true)]);
        // Blocked for the rest of the hour; another source and another kind are not.
        assert_eq!(limiter.blocked("enrol", a, 1100), Some(1000 + WINDOW_SECS - 1100));
        assert_eq!(limiter.blocked("enrol", b, 1100), None);
        assert_eq!(limiter.blocked("gateway", a, 1100), None);
        // The hour over: a fresh window.
        assert_eq!(limiter.blocked("enrol", a, 1000 + WINDOW_SECS), None);
        assert_eq!(
            limiter.failed("enrol", a, 1000 + WINDOW_SECS),
            Failure::Record { attempts: 1, since: 1000 + WINDOW_SECS, limited: false }
        );
    }
}
