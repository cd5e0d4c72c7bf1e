//! Which addresses a webhook may be delivered to (server-side request forgery protection).
//!
//! By default every address that is not plainly public is refused: private, loopback, link-local,
//! CGNAT, multicast, broadcast, reserved, benchmarking and documentation ranges, for IPv4 and IPv6
//! (with IPv4-mapped IPv6 addresses judged as the IPv4 address they carry). Operators admit ranges
//! with `--allow-network CIDR`. The check runs on resolved addresses, for every attempt.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    allowed: Vec<IpNet>,
}

/// Why an address is refused: the name of the range it falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl NetworkPolicy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// The ranges `--dev` admits: loopback and private networks.
    pub fn dev_ranges() -> Vec<IpNet> {
        [
            "127.0.0.0/8",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "::1/128",
            "fc00::/7",
        ]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = canonical(ip);
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match special_range(ip) {
            Some(range) => Err(Refused(range)),
            None => Ok(()),
        }
    }
}

/// What admits a refused address, for the message that refuses it: the flag with the address's
/// own range, and `--dev` when that would admit it.
pub fn admit_hint(ip: IpAddr) -> String {
    let ip = canonical(ip);
    let host = match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    };
    let dev = if NetworkPolicy::dev_ranges().iter().any(|n| n.contains(&ip)) {
        " (or run with --dev)"
    } else {
        ""
    };
    format!("admit it with --allow-network {host}{dev}")
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => special_v4(ip),
        IpAddr::V6(ip) => special_v6(ip),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified",
        (0, _, _) => "this network",
        (127, _, _) => "loopback",
        (10, _, _) | (192, 168, _) => "private",
        (172, 16..=31, _) => "private",
        (100, 64..=127, _) => "carrier-grade NAT",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "IETF protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    Some(match seg[0] {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        0xfe80..=0xfebf => "link-local",
        0xfc00..=0xfdff => "unique local (private)",
        0xff00..=0xffff => "multicast",
        0x2001 if seg[1] == 0x0db8 => "documentation",
        0x2001 if seg[1] < 0x0200 => "IETF protocol assignments",
        0x0064 if seg[1] == 0xff9b => "NAT64",
        0x0100 if seg[1..4] == [0, 0, 0] => "discard-only",
        // IPv4-compatible (deprecated) and other addresses in ::/8 besides the two above.
        0x0000 => "reserved",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(p: &NetworkPolicy, s: &str) -> Option<&'static str> {
        p.check(s.parse().unwrap()).err().map(|r| r.0)
    }

    #[test]
    fn refuses_every_special_range_by_default() {
        let p = NetworkPolicy::default();
        for (ip, range) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.20.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("169.254.169.254", "link-local"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("192.0.2.10", "documentation"),
            ("198.51.100.1", "documentation"),
            ("203.0.113.9", "documentation"),
            ("0.0.0.0", "unspecified"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00::1", "unique local (private)"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
        ] {
            assert_eq!(refused(&p, ip), Some(range), "{ip}");
        }
    }

    #[test]
    fn admits_public_addresses_and_allowed_ranges() {
        let p = NetworkPolicy::default();
        for ip in ["93.184.216.34", "1.1.1.1", "172.32.0.1", "2606:4700::1111"] {
            assert_eq!(refused(&p, ip), None, "{ip}");
        }
        let p = NetworkPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(refused(&p, "127.0.0.1"), None);
        assert_eq!(refused(&p, "::ffff:127.0.0.1"), None);
        assert_eq!(refused(&p, "10.0.0.1"), Some("private"));
        let dev = NetworkPolicy::new(NetworkPolicy::dev_ranges());
        assert_eq!(refused(&dev, "192.168.0.1"), None);
        assert_eq!(refused(&dev, "169.254.169.254"), Some("link-local"));
    }
}
