//! Outbound HTTP on a caller's behalf (a send's `media.url` today, webhooks later): which
//! addresses the gateway may connect to, and a client that enforces it at connect time.
//!
//! A caller names a URL; the gateway must not become a way into its own network (loopback,
//! private ranges, link-local cloud metadata, ...). The check happens where the connection is
//! made: [`PublicOnly`] is the client's DNS resolver, so every connection, including a pooled
//! one opened later and one after a DNS change (rebinding), goes to an address that was checked.
//! IP-literal hosts never reach a resolver; [`check_host`] checks them before the request.
//! The client never uses a proxy (a proxy would resolve the name again, unchecked) and never
//! follows redirects (the target of one is another caller-chosen URL).
//!
//! This module is a leaf: it knows nothing of the HTTP API or the application state.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Whether `ip` is a public unicast address, one a URL from outside may make the gateway
/// connect to. Everything else is refused: the IANA special-purpose ranges (loopback, private,
/// shared, link-local, documentation, benchmarking, multicast, reserved, ...) and, for IPv6,
/// anything outside global unicast `2000::/3`. Addresses that embed an IPv4 address
/// (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`)
/// are judged by that IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// IPv4 ranges that are not public: (network, prefix length).
const V4_NOT_PUBLIC: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (carrier-grade NAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local (cloud metadata services live here)
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, and 255.255.255.255 broadcast
];

fn in_v4(ip: Ipv4Addr, (net, len): ([u8; 4], u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

pub fn is_public_v4(ip: Ipv4Addr) -> bool {
    !V4_NOT_PUBLIC.iter().any(|r| in_v4(ip, *r))
}

/// IPv6 ranges inside `2000::/3` that are not public: (network, prefix length).
const V6_NOT_PUBLIC: &[(u128, u8)] = &[
    (0x2001_0000 << 96, 32), // Teredo (tunnels to arbitrary IPv4 hosts)
    (0x2001_0002 << 96, 48), // benchmarking
    (0x2001_0010 << 96, 28), // ORCHID
    (0x2001_0020 << 96, 28), // ORCHIDv2
    (0x2001_0db8 << 96, 32), // documentation
    (0x3fff_0000 << 96, 20), // documentation (RFC 9637)
];

fn in_v6(ip: u128, (net, len): (u128, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    ip & mask == net & mask
}

pub fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let low_v4 = Ipv4Addr::from(bits as u32);
    // ::a.b.c.d (IPv4-compatible; also :: and ::1, which embed 0.0.0.0 and 0.0.0.1),
    // ::ffff:a.b.c.d (IPv4-mapped), ::ffff:0:a.b.c.d (IPv4-translated),
    // 64:ff9b::a.b.c.d (NAT64, well-known prefix): the IPv4 address decides.
    if bits >> 32 == 0
        || bits >> 32 == 0xffff
        || bits >> 32 == 0xffff_0000
        || in_v6(bits, (0x0064_ff9b << 96, 96))
    {
        return is_public_v4(low_v4);
    }
    // 6to4: the IPv4 address of the tunnel's end is in bits 16..48.
    if in_v6(bits, (0x2002 << 112, 16)) {
        return is_public_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    // Everything else outside global unicast is refused: 64:ff9b:1::/48 (local-use NAT64),
    // 100::/64 (discard), fc00::/7 (unique local), fe80::/10 (link-local), fec0::/10
    // (site-local), ff00::/8 (multicast), the remaining reserved space.
    in_v6(bits, (0x2000 << 112, 3)) && !V6_NOT_PUBLIC.iter().any(|r| in_v6(bits, *r))
}

/// A connection the gateway refused to make.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refused {
    #[error("the host {host} resolves to {ip}, which is not a public address")]
    NotPublic { host: String, ip: IpAddr },
    #[error("the host {host} has no address")]
    NoAddress { host: String },
}

impl Refused {
    /// The refusal behind a failed request, if the request failed because of one.
    pub fn of<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
        let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(r) = e.downcast_ref::<Refused>() {
                return Some(r);
            }
            cur = e.source();
        }
        None
    }
}

/// Checks a URL's host when it is an IP literal (a resolver never sees those). Names are
/// checked by [`PublicOnly`] when the connection is made.
pub fn check_host(url: &url::Url, allow_private: bool) -> Result<(), Refused> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(Refused::NotPublic {
            host: ip.to_string(),
            ip,
        })
    }
}

/// A DNS resolver that answers only names whose every address is public (one non-public
/// address refuses the name: the connector could pick it). With `allow_private` it checks
/// nothing.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(Box::new(Refused::NoAddress { host }) as _);
            }
            if !allow_private {
                if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                    return Err(Box::new(Refused::NotPublic { host, ip: bad.ip() }) as _);
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client for one purpose, built once and shared (it pools connections): no proxy, no
/// redirects, every connection through [`PublicOnly`], `timeout` for a whole request.
pub fn client(allow_private: bool, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(PublicOnly { allow_private }))
        .timeout(timeout)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every range, by an address at its start, one inside and one at its end; and public
    /// neighbours just outside. The check is called; nothing connects.
    #[test]
    fn every_non_public_range_is_refused() {
        let refused = [
            // IPv4
            "0.0.0.0",
            "0.1.2.3",
            "0.255.255.255",
            "10.0.0.0",
            "10.1.2.3",
            "10.255.255.255",
            "100.64.0.0",
            "100.100.1.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.0.0",
            "169.254.169.254",
            "169.254.255.255",
            "172.16.0.0",
            "172.20.1.1",
            "172.31.255.255",
            "192.0.0.0",
            "192.0.0.170",
            "192.0.0.255",
            "192.0.2.0",
            "192.0.2.1",
            "192.0.2.255",
            "192.88.99.1",
            "192.168.0.0",
            "192.168.1.1",
            "192.168.255.255",
            "198.18.0.0",
            "198.19.255.255",
            "198.51.100.0",
            "198.51.100.255",
            "203.0.113.0",
            "203.0.113.255",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.0",
            "250.1.2.3",
            "255.255.255.254",
            "255.255.255.255",
            // IPv6
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "::10.1.2.3",
            "::192.168.0.1",
            "::ffff:0:127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::",
            "64:ff9b:1::8.8.8.8",
            "64:ff9b:1:ffff::1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::",
            "2002:a9fe:a9fe::1",
            "2002::",
            "2002:e000::1",
            "2001::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:0:ffff:ffff::",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "2001:db8::",
            "2001:db8::1",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "3fff::1",
            "fc00::",
            "fd12:3456::1",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe80::",
            "fe80::1",
            "febf:ffff::1",
            "fec0::",
            "fec0::1",
            "feff::1",
            "ff00::",
            "ff02::1",
            "ff05::2",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "100::",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "1::1",
            "4000::1",
            "e000::1",
        ];
        for a in refused {
            let ip: IpAddr = a.parse().unwrap();
            assert!(!is_public(ip), "{a} must be refused");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "2001:1::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            "3ffe::1",
            "3fff:1000::1",
        ];
        for a in public {
            let ip: IpAddr = a.parse().unwrap();
            assert!(is_public(ip), "{a} is public");
        }
    }

    #[test]
    fn ip_literal_hosts_are_checked_before_a_request() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        for s in [
            "http://127.0.0.1/x",
            "http://[::1]/x",
            "http://[::ffff:7f00:1]/x",
            "http://0x7f.1/x",
            "http://2130706433/x",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
            "http://[2002:a9fe:a9fe::]/",
        ] {
            assert!(check_host(&url(s), false).is_err(), "{s}");
            assert!(check_host(&url(s), true).is_ok(), "{s}");
        }
        assert!(check_host(&url("https://8.8.8.8/x"), false).is_ok());
        // Names are left to the resolver.
        assert!(check_host(&url("https://example.com/x"), false).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_non_public_addresses() {
        use reqwest::dns::Resolve;
        // `localhost` resolves on this machine without any network traffic.
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = match (PublicOnly {
            allow_private: false,
        })
        .resolve(name)
        .await
        {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(
            matches!(Refused::of(err.as_ref()), Some(Refused::NotPublic { .. })),
            "{err}"
        );
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let addrs: Vec<SocketAddr> = PublicOnly {
            allow_private: true,
        }
        .resolve(name)
        .await
        .unwrap()
        .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
