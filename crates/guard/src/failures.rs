//! Unauthenticated failures — enrolment codes that do not work — are rate-limited per source
//! address and recorded in aggregate: a flood can neither fill the security-event log nor guess
//! codes quickly. After [`MAX_FAILURES`] failures in an hour, a source is refused (429) before
//! its code is even looked at, until the hour is over.
//!
//! Bounded whatever a flood does: IPv6 sources are counted by /64 (one host's share, so
//! rotating addresses buys nothing), at most [`MAX_SOURCES`] are tracked (the oldest window is
//! forgotten first), and at most [`MAX_RECORDED_PER_HOUR`] failure events are written per hour
//! across all sources (the counts go on; the next event after the budget carries them).
//!
//! The count that decides is shared by every replica (the store's `failure_windows`, one
//! statement per failure): a source limited at one replica is limited at all of them, and a
//! flood spread over replicas counts once. This process keeps a copy of each window it saw, so
//! a source it already limited is refused without asking the database, and its own budget of
//! events per hour (each replica writes at most that many).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

pub const WINDOW_SECS: i64 = 3600;
pub const MAX_FAILURES: u64 = 30;
/// Sources tracked at most; beyond, windows that are over are forgotten, then the oldest.
pub const MAX_SOURCES: usize = 10_000;
/// Failure events written per hour, all sources together.
pub const MAX_RECORDED_PER_HOUR: u64 = 500;

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
struct State {
    windows: HashMap<(&'static str, IpAddr), Window>,
    /// Events recorded in the current hour, all sources.
    recorded: Window,
}

impl Default for Window {
    fn default() -> Self {
        Window { start: i64::MIN, failures: 0 }
    }
}

#[derive(Default)]
pub struct FailureLimiter {
    state: Mutex<State>,
}

impl FailureLimiter {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        match self.state.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Seconds until `source` may try `what` again; `None`: it may now.
    pub fn blocked(&self, what: &'static str, source: IpAddr, now: i64) -> Option<i64> {
        let source = crate::source_key(source);
        self.with(|state| state.windows.get(&(what, source)).and_then(|w| wait_for(w.failures, w.start, now)))
    }

    /// One more failure, counted here only (the shared count: [`FailureLimiter::counted`]).
    pub fn failed(&self, what: &'static str, source: IpAddr, now: i64) -> Failure {
        self.count(what, source, now, None)
    }

    /// One more failure, whose shared count (failures in the window, its start) the store
    /// returned: kept as this process's copy of the window, and decided on.
    pub fn counted(&self, what: &'static str, source: IpAddr, now: i64, shared: (u64, i64)) -> Failure {
        self.count(what, source, now, Some(shared))
    }

    fn count(&self, what: &'static str, source: IpAddr, now: i64, shared: Option<(u64, i64)>) -> Failure {
        let source = crate::source_key(source);
        self.with(|state| {
            let windows = &mut state.windows;
            if windows.len() >= MAX_SOURCES && !windows.contains_key(&(what, source)) {
                windows.retain(|_, w| now - w.start < WINDOW_SECS);
                while windows.len() >= MAX_SOURCES {
                    let Some(oldest) = windows.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k) else { break };
                    windows.remove(&oldest);
                }
            }
            let w = windows.entry((what, source)).or_insert(Window { start: now, failures: 0 });
            match shared {
                Some((failures, start)) => *w = Window { start, failures },
                None => {
                    if now - w.start >= WINDOW_SECS {
                        *w = Window { start: now, failures: 0 };
                    }
                    w.failures += 1;
                }
            }
            let n = w.failures;
            // (Replicas counting at once each see their own number, so exactly one sees the limit.)
            let limited = n == MAX_FAILURES;
            let since = w.start;
            if !(n == 1 || limited || (n.is_power_of_two() && n >= 8) || n % 1000 == 0) {
                return Failure::Counted;
            }
            let budget = &mut state.recorded;
            if now.saturating_sub(budget.start) >= WINDOW_SECS {
                *budget = Window { start: now, failures: 0 };
            }
            if budget.failures >= MAX_RECORDED_PER_HOUR {
                return Failure::Counted;
            }
            budget.failures += 1;
            Failure::Record { attempts: n, since, limited }
        })
    }
}

/// How `source` is named in the shared count (an IPv4 address or an IPv6 /64).
pub fn source_name(source: IpAddr) -> String {
    crate::source_key(source).to_string()
}

/// Seconds until a window of `failures` that started at `start` lets its source try again.
pub fn wait_for(failures: u64, start: i64, now: i64) -> Option<i64> {
    (now - start < WINDOW_SECS && failures >= MAX_FAILURES).then(|| start + WINDOW_SECS - now)
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
        // Counts from the shared store (another replica counted the first 29): the 30th here
        // is the one that limits, and the source is refused here from then on.
        let c: IpAddr = "192.0.2.3".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(limiter.counted("enrol", c, 1200, (29, 1150)), Failure::Counted);
        assert_eq!(limiter.blocked("enrol", c, 1201), None);
        assert_eq!(
            limiter.counted("enrol", c, 1202, (MAX_FAILURES, 1150)),
            Failure::Record { attempts: MAX_FAILURES, since: 1150, limited: true }
        );
        assert_eq!(limiter.blocked("enrol", c, 1203), Some(1150 + WINDOW_SECS - 1203));
        assert_eq!(wait_for(MAX_FAILURES - 1, 1150, 1203), None);
        // The hour over: a fresh window.
        assert_eq!(limiter.blocked("enrol", a, 1000 + WINDOW_SECS), None);
        assert_eq!(
            limiter.failed("enrol", a, 1000 + WINDOW_SECS),
            Failure::Record { attempts: 1, since: 1000 + WINDOW_SECS, limited: false }
        );
    }

    #[test]
    fn a_flood_from_rotating_addresses_stays_bounded() {
        let limiter = FailureLimiter::default();
        // One IPv6 host rotating through its /64: one source, limited like any other.
        for i in 0..MAX_FAILURES {
            let ip: IpAddr = format!("2001:db8:0:1::{:x}", i + 1).parse().unwrap();
            limiter.failed("enrol", ip, 100);
        }
        assert!(limiter.blocked("enrol", "2001:db8:0:1:ffff::9".parse().unwrap(), 101).is_some());
        assert!(limiter.blocked("enrol", "2001:db8:0:2::1".parse().unwrap(), 101).is_none());
        // Many /64s within the hour: the table stays at its cap, the oldest forgotten first,
        // and no more events than the hour's budget are written.
        let mut recorded = 0;
        for i in 0..(MAX_SOURCES as u64 + 2_000) {
            let ip: IpAddr = format!("2001:db8:{:x}:{:x}::1", i / 65536 + 1, i % 65536).parse().unwrap();
            if let Failure::Record { .. } = limiter.failed("enrol", ip, 200 + i as i64 / 100) {
                recorded += 1;
            }
            assert!(limiter.with(|s| s.windows.len()) <= MAX_SOURCES);
        }
        assert_eq!(recorded, MAX_RECORDED_PER_HOUR - 4, "the budget (the first host had 4: its 1st, 8th, 16th, 30th)");
        assert!(limiter.with(|s| !s.windows.contains_key(&("enrol", "2001:db8:0:1::".parse().unwrap()))));
        // A new hour: events again.
        let later = 200 + WINDOW_SECS + 1_000;
        assert!(matches!(limiter.failed("enrol", "198.51.100.1".parse().unwrap(), later), Failure::Record { .. }));
    }
}
