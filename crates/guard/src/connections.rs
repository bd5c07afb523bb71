//! Connection slots for a listener that strangers can reach: counted in all and per source
//! address (IPv6 by /64), given back when dropped; accept errors backed off instead of spun
//! on; refusals logged in aggregate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// Connections told to close for a newcomer that may still hold their slot: beyond this many,
/// newcomers are refused (bounds how far the count can run over `total` meanwhile). Generous:
/// under a flood on a busy machine an evicted task may wait a while to run and let go, and an
/// evicted connection holds little (nothing but its socket, if it never spoke).
const MAX_EVICTING: usize = 1024;

#[derive(Default)]
struct Open {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
    next_id: u64,
    /// Open connections that have not proved themselves yet (no finished handshake) by
    /// (whether they have sent anything, age): at the cap, the first makes room for a newcomer
    /// — the oldest that has sent nothing, else the oldest still in its handshake.
    unsettled: BTreeMap<(bool, u64), Arc<tokio::sync::Notify>>,
    /// Told to close, slot not given back yet.
    evicting: BTreeSet<u64>,
}

/// Counts open connections; a [`Slot`] is one, given back when dropped.
///
/// At the cap, a newcomer is not simply refused — that would let strangers holding connections
/// open (a slowloris flood from many addresses) lock every real client out until their
/// deadlines. Instead the oldest connection that has not settled (finished its TLS handshake,
/// or authenticated) is told to close and the newcomer takes its place, as a web server drops
/// idle keep-alive connections when it runs short. A settled connection is never evicted; when
/// every open connection is settled, newcomers are refused.
#[derive(Clone, Default)]
pub struct Connections(Arc<Mutex<Open>>);

/// One admitted connection; closes itself when told to ([`Slot::evicted`]) until it settles.
pub struct Slot {
    connections: Connections,
    source: IpAddr,
    id: u64,
    evict: Arc<tokio::sync::Notify>,
    spoke: std::sync::atomic::AtomicBool,
}

impl Connections {
    fn with<T>(&self, f: impl FnOnce(&mut Open) -> T) -> T {
        match self.0.lock() {
            Ok(mut open) => f(&mut open),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// A slot for one more connection from `ip` (at most `total` open — see the type's
    /// eviction rule —, `per_source` from one source), or why not.
    pub fn admit(&self, ip: IpAddr, total: usize, per_source: usize) -> Result<Slot, &'static str> {
        let source = source_key(ip);
        let evict = Arc::new(tokio::sync::Notify::new());
        let id = self.with(|open| {
            if open.by_source.get(&source).copied().unwrap_or(0) >= per_source {
                return Err("too many open connections from your address");
            }
            if open.total - open.evicting.len() >= total {
                if open.evicting.len() >= MAX_EVICTING {
                    return Err("the server has too many open connections");
                }
                let Some(((_, oldest), signal)) = open.unsettled.pop_first() else {
                    return Err("the server has too many open connections");
                };
                signal.notify_one();
                open.evicting.insert(oldest);
            }
            *open.by_source.entry(source).or_insert(0) += 1;
            open.total += 1;
            open.next_id += 1;
            open.unsettled.insert((false, open.next_id), evict.clone());
            Ok(open.next_id)
        })?;
        Ok(Slot { connections: self.clone(), source, id, evict, spoke: Default::default() })
    }

    pub fn open(&self) -> usize {
        self.with(|open| open.total)
    }
}

impl Slot {
    /// The connection proved itself (its handshake finished, or it authenticated): from now on
    /// it is never evicted for a newcomer.
    pub fn settle(&self) {
        let key = self.key();
        self.connections.with(|open| open.unsettled.remove(&key));
    }

    /// The connection sent its first bytes (it is in its handshake): it goes after every
    /// silent one when room must be made. A real client speaks at once; an idle stranger never.
    pub fn spoke(&self) {
        if self.spoke.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        self.connections.with(|open| {
            if let Some(signal) = open.unsettled.remove(&(false, self.id)) {
                open.unsettled.insert((true, self.id), signal);
            }
        });
    }

    fn key(&self) -> (bool, u64) {
        (self.spoke.load(std::sync::atomic::Ordering::Relaxed), self.id)
    }

    /// Resolves once the slot was given to a newcomer: the connection must close.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let key = self.key();
        self.connections.with(|open| {
            open.total -= 1;
            open.unsettled.remove(&key);
            open.evicting.remove(&self.id);
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
        let second = c.admit(a, 3, 2).unwrap();
        assert_eq!(c.admit(a, 3, 2).err(), Some("too many open connections from your address"));
        let third = c.admit(b, 3, 2).unwrap();
        for slot in [&first, &second, &third] {
            slot.settle();
        }
        assert_eq!(c.admit(b, 3, 2).err(), Some("the server has too many open connections"), "all settled: refused");
        drop(first);
        assert_eq!(c.open(), 2);
        assert!(c.admit(a, 3, 2).is_ok());
    }

    /// At the cap the oldest unsettled connection makes room; settled ones never do; a
    /// connection told to close counts until it gives its slot back, within a bound.
    #[tokio::test]
    async fn at_the_cap_the_oldest_unsettled_connection_makes_room() {
        let c = Connections::default();
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let settled = c.admit(ip(1), 3, 10).unwrap();
        settled.settle();
        let oldest = c.admit(ip(2), 3, 10).unwrap();
        let younger = c.admit(ip(3), 3, 10).unwrap();
        let newcomer = c.admit(ip(4), 3, 10).expect("room is made for a newcomer");
        tokio::time::timeout(Duration::from_secs(1), oldest.evicted()).await.expect("the oldest unsettled is told");
        assert_eq!(c.open(), 4, "it counts until it closes");
        drop(oldest);
        assert_eq!(c.open(), 3);
        newcomer.settle();
        younger.settle();
        assert_eq!(c.admit(ip(5), 3, 10).err(), Some("the server has too many open connections"));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), settled.evicted()).await.is_err(),
            "a settled connection is never evicted"
        );

        // One that spoke goes after every silent one, even younger ones.
        let c = Connections::default();
        let speaking = c.admit(ip(1), 2, 10).unwrap();
        speaking.spoke();
        let silent = c.admit(ip(2), 2, 10).unwrap();
        let _newcomer = c.admit(ip(3), 2, 10).unwrap();
        tokio::time::timeout(Duration::from_secs(1), silent.evicted()).await.expect("the silent one makes room");
        assert!(tokio::time::timeout(Duration::from_millis(50), speaking.evicted()).await.is_err());

        // A flood whose evicted connections do not close: at most MAX_EVICTING over the cap.
        let c = Connections::default();
        let mut held = Vec::new();
        let mut refused = 0;
        for n in 0..(10 + MAX_EVICTING + 50) {
            match c.admit(IpAddr::from([10, 1, (n / 200) as u8, (n % 200) as u8]), 10, 10) {
                Ok(slot) => held.push(slot),
                Err(_) => refused += 1,
            }
        }
        assert_eq!(c.open(), 10 + MAX_EVICTING);
        assert_eq!(refused, 50);
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
