//! The client address of a request: the peer, or, when the peer is one of
//! `server.trusted_proxies`, the address that proxy reports in `X-Forwarded-For` (the last
//! address in the header that is not itself a trusted proxy: earlier entries are whatever the
//! client wrote). Rate limits and audit records use it.

use actix_web::HttpRequest;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};

/// `10.0.0.5` or `10.0.0.0/8` (IPv4 or IPv6) as a network; `None` when it is neither.
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The configured trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From `server.trusted_proxies` (entries that do not parse were refused at start).
    pub fn new(entries: &[String]) -> Self {
        TrustedProxies(entries.iter().filter_map(|e| parse_network(e)).collect())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of `req`.
    pub fn client_ip(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map(|addr| addr.ip().to_canonical())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        self.resolve(peer, &forwarded)
    }

    /// The client address given the peer and the `X-Forwarded-For` chain.
    pub fn resolve(&self, peer: IpAddr, forwarded_for: &str) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_for.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_trusted_proxies_may_name_the_client() {
        let proxies = TrustedProxies::new(&["10.0.0.0/8".into(), "192.168.1.7".into()]);
        // A stranger's header is ignored.
        assert_eq!(
            proxies.resolve(ip("203.0.113.9"), "1.2.3.4"),
            ip("203.0.113.9")
        );
        // The proxy names the client; what the client wrote before it is ignored.
        assert_eq!(
            proxies.resolve(ip("10.1.2.3"), "6.6.6.6, 198.51.100.4"),
            ip("198.51.100.4")
        );
        // Two proxies in a row.
        assert_eq!(
            proxies.resolve(ip("192.168.1.7"), "198.51.100.4, 10.9.9.9"),
            ip("198.51.100.4")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            proxies.resolve(ip("10.1.2.3"), "x, 10.2.2.2"),
            ip("10.2.2.2")
        );
        assert_eq!(proxies.resolve(ip("10.1.2.3"), ""), ip("10.1.2.3"));
        assert!(parse_network("10.0.0.0/33").is_none());
        assert!(parse_network("::1").is_some());
        assert!(parse_network("proxy.example").is_none());
    }
}
