//! Connection slots for a listener that strangers can reach: counted in all and per source
//! address (IPv6 by /64), given back when dropped; accept errors backed off instead of spun
//! on; refusals logged in aggregate.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The key a source is counted under: an IPv4 address, or an IPv6 /64 (one host's share).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
        v4 => v4,
    }
}

#[derive(Default)]
struct Open {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Counts open connections; a [`Slot`] is one, given back when dropped.
#[derive(Clone, Default)]
pub struct Connections(Arc<Mutex<Open>>);

pub struct Slot {
    connections: Connections,
    source: IpAddr,
}

impl Connections {
    fn with<T>(&self, f: impl FnOnce(&mut Open) -> T) -> T {
        match self.0.lock() {
            Ok(mut open) => f(&mut open),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// A slot for one more connection from `ip` (at most `total` open, `per_source` from one
    /// source), or why not.
    pub fn admit(&self, ip: IpAddr, total: usize, per_source: usize) -> Result<Slot, &'static str> {
        let source = source_key(ip);
        self.with(|open| {
            if open.total >= total {
                return Err("the server has too many open connections");
            }
            let from = open.by_source.entry(source).or_insert(0);
            if *from >= per_source {
                return Err("too many open connections from your address");
            }
            *from += 1;
            open.total += 1;
            Ok(())
        })?;
        Ok(Slot { connections: self.clone(), source })
    }

    pub fn open(&self) -> usize {
        self.with(|open| open.total)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.with(|open| {
            open.total -= 1;
            if let Some(n) = open.by_source.get_mut(&self.source) {
                *n -= 1;
                if *n == 0 {
                    open.by_source.remove(&self.source);
                }
            }
        });
    }
}

/// The next connection; accept errors (out of descriptors, EMFILE, and the like) are backed
/// off 10 ms → 1 s instead of retried at once, which would spin.
pub async fn accept(listener: &tokio::net::TcpListener, backoff: &mut Duration) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => {
                *backoff = Duration::ZERO;
                return pair;
            }
            Err(e) => {
                *backoff = (*backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                tracing::warn!(error = %e, pause = ?*backoff, "accept failed");
                tokio::time::sleep(*backoff).await;
            }
        }
    }
}

/// Refusals are logged once a minute with their count, not once each (a flood must not fill
/// the log either).
#[derive(Default)]
pub struct RefusalLog {
    since: Option<std::time::Instant>,
    count: u64,
}

impl RefusalLog {
    pub fn note(&mut self, peer: SocketAddr, why: &str) {
        self.count += 1;
        let now = std::time::Instant::now();
        if self.since.is_none_or(|s| now.duration_since(s) >= Duration::from_secs(60)) {
            tracing::warn!(%peer, reason = why, refused = self.count, "refusing connections");
            self.since = Some(now);
            self.count = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_source_and_given_back() {
        let c = Connections::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = c.admit(a, 3, 2).unwrap();
        let _second = c.admit(a, 3, 2).unwrap();
        assert_eq!(c.admit(a, 3, 2).err(), Some("too many open connections from your address"));
        let _third = c.admit(b, 3, 2).unwrap();
        assert_eq!(c.admit(b, 3, 2).err(), Some("the server has too many open connections"));
        drop(first);
        assert_eq!(c.open(), 2);
        assert!(c.admit(a, 3, 2).is_ok());
    }

    #[test]
    fn ipv6_sources_count_by_64_and_mapped_v4_as_v4() {
        let cases = [
            ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::"),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"),
            ("2001:db8:1:3::1", "2001:db8:1:3::"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("192.0.2.7", "192.0.2.7"),
        ];
        for (ip, key) in cases {
            assert_eq!(source_key(ip.parse().unwrap()), key.parse::<IpAddr>().unwrap(), "{ip}");
        }
    }
}
