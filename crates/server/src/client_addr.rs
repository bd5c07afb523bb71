//! The address a request comes from, as rate limits, request records and access policies see it:
//! the TCP peer — or, only when the peer is one of the configured proxies (`server run
//! --trusted-proxy`), the address those proxies say they forwarded for (`X-Forwarded-For`).
//!
//! Anyone can send the header, so it counts only from a trusted proxy, and only its last entries:
//! read from the right, each entry a trusted proxy appended names the hop before it; the first
//! address that is not a trusted proxy is the client. What a client wrote into the header itself
//! (entries further left) is never read. An entry that does not parse stops the walk at the
//! proxy that passed it on (fail closed: the proxy's address, not a guess).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::{ServerError, ServerState};

/// The client's address (see the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// An IPv4 peer on a dual-stack socket as IPv4.
pub fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client behind `peer`, given the `X-Forwarded-For` values and the trusted proxies.
pub fn client_address<'a>(peer: IpAddr, forwarded: impl Iterator<Item = &'a str>, trusted: &[IpNet]) -> IpAddr {
    let mut hop = unmapped(peer);
    if !trusted.iter().any(|net| net.contains(&hop)) {
        return hop;
    }
    let entries: Vec<&str> = forwarded.flat_map(|v| v.split(',')).map(str::trim).collect();
    for entry in entries.iter().rev() {
        let Ok(ip) = entry.parse::<IpAddr>() else { return hop };
        hop = unmapped(ip);
        if !trusted.iter().any(|net| net.contains(&hop)) {
            return hop;
        }
    }
    hop
}

/// Parses `--trusted-proxy` values: an address or a network (`10.0.0.0/8`).
pub fn parse_proxies(values: &[String]) -> Result<Vec<IpNet>, String> {
    values
        .iter()
        .map(|v| {
            v.parse::<IpNet>()
                .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("--trusted-proxy {v:?} is neither an address nor a network (like 10.0.0.0/8)"))
        })
        .collect()
}

impl FromRequestParts<Arc<ServerState>> for ClientAddr {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ServerState>) -> Result<Self, ServerError> {
        let ConnectInfo(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .copied()
            .ok_or_else(|| ServerError::Internal("no peer address on the connection".into()))?;
        let trusted = state.trusted_proxies.read().map(|t| t.clone()).unwrap_or_default();
        let forwarded = parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        Ok(ClientAddr(client_address(peer.ip(), forwarded, &trusted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies_and_only_their_entries() {
        let proxies = parse_proxies(&["10.0.0.0/8".into(), "192.0.2.7".into(), "2001:db8::/32".into()]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // (peer, X-Forwarded-For values, trusted proxies, the client)
        let cases: &[(&str, &[&str], &[IpNet], &str)] = &[
            // No proxy configured: the header is ignored, whatever it says.
            ("198.51.100.4", &["203.0.113.1"], &[], "198.51.100.4"),
            // An untrusted peer forging the header.
            ("198.51.100.4", &["203.0.113.1"], &proxies, "198.51.100.4"),
            // A trusted proxy: the address it appended.
            ("10.1.2.3", &["203.0.113.1"], &proxies, "203.0.113.1"),
            // A client that forged entries before the proxy appended its own: the proxy's entry.
            ("10.1.2.3", &["6.6.6.6, 203.0.113.1"], &proxies, "203.0.113.1"),
            ("10.1.2.3", &["6.6.6.6", "203.0.113.1"], &proxies, "203.0.113.1"),
            // Two trusted proxies in a row: walked through.
            ("10.1.2.3", &["203.0.113.1, 192.0.2.7"], &proxies, "203.0.113.1"),
            // A trusted proxy with no header, or an empty one: the proxy itself.
            ("10.1.2.3", &[], &proxies, "10.1.2.3"),
            ("10.1.2.3", &[""], &proxies, "10.1.2.3"),
            // Garbage from the proxy's side: stop at the proxy (no guess).
            ("10.1.2.3", &["203.0.113.1, not-an-address"], &proxies, "10.1.2.3"),
            // Every entry a trusted proxy: the leftmost one reached.
            ("10.1.2.3", &["10.9.9.9"], &proxies, "10.9.9.9"),
            // IPv6, and an IPv4 peer on a dual-stack socket.
            ("2001:db8::1", &["2001:db9::5"], &proxies, "2001:db9::5"),
            ("::ffff:10.1.2.3", &["::ffff:203.0.113.1"], &proxies, "203.0.113.1"),
        ];
        for (peer, forwarded, trusted, client) in cases {
            assert_eq!(
                client_address(ip(peer), forwarded.iter().copied(), trusted),
                ip(client),
                "peer {peer}, X-Forwarded-For {forwarded:?}"
            );
        }
        assert!(parse_proxies(&["10.0.0.0/33".into()]).is_err());
        assert!(parse_proxies(&["proxy.internal".into()]).is_err());
    }
}
