//! Address ranges (`10.0.0.0/8`, `2001:db8::/32`) and the key a client is counted under.
//!
//! Addresses are compared in canonical form: an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`,
//! what a dual-stack socket reports for an IPv4 peer) is the IPv4 address it carries, so a
//! range written as IPv4 matches it and the same client is never two keys.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// One range: a network address and how many leading bits of it matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(ip).into(), self.prefix, 32) == u32::from(net).into()
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(ip), self.prefix, 128) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `value` with all but its `prefix` leading bits (of `width`) cleared.
fn masked(value: u128, prefix: u8, width: u8) -> u128 {
    let cleared = width.saturating_sub(prefix);
    match cleared {
        0 => value,
        c if c >= 128 => 0,
        c => value >> c << c,
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDRESS/PREFIX`, or a bare address for one host. Host bits set below the prefix
    /// are refused: `10.0.0.1/8` is more often a typo than a wish to trust 16M addresses.
    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        if network.to_canonical() != network {
            return Err(format!(
                "{text:?}: write IPv4-mapped ranges as IPv4 (they match mapped peers too)"
            ));
        }
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                p.parse::<u8>().unwrap_or(u8::MAX)
            }
            Some(_) => u8::MAX,
        };
        if prefix > width {
            return Err(format!("{text:?}: the prefix length must be 0 to {width}"));
        }
        let bits = match network {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        if masked(bits, prefix, width) != bits {
            return Err(format!("{text:?} has bits set past its /{prefix}"));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A set of ranges; empty trusts nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet(Vec<Cidr>);

impl CidrSet {
    pub fn new(ranges: Vec<Cidr>) -> Self {
        Self(ranges)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ranges(&self) -> &[Cidr] {
        &self.0
    }
}

/// The key per-client limits count under: an IPv4 address, or the /64 an IPv6 address is
/// in. One IPv6 host usually holds a whole /64 (SLAAC, privacy addresses), so counting
/// single addresses would give it 2^64 allowances.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(masked(u128::from(v6), 64, 128))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|_| unreachable!("{text}"))
    }

    fn set(ranges: &[&str]) -> CidrSet {
        CidrSet::new(ranges.iter().map(|r| r.parse().unwrap()).collect())
    }

    #[test]
    fn ranges_match_their_addresses_only() {
        let trusted = set(&["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "fd00::1/128"]);
        for inside in [
            "10.0.0.1",
            "10.255.255.255",
            "::ffff:10.1.2.3",
            "192.168.1.7",
            "2001:db8:ffff::1",
            "fd00::1",
        ] {
            assert!(trusted.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "11.0.0.1",
            "9.255.255.255",
            "192.168.1.8",
            "2001:db9::1",
            "fd00::2",
            "::a00:1",
            "::ffff:11.0.0.1",
        ] {
            assert!(!trusted.contains(ip(outside)), "{outside}");
        }
        assert!(!CidrSet::default().contains(ip("127.0.0.1")));
    }

    #[test]
    fn zero_prefixes_match_their_whole_family() {
        let all = set(&["0.0.0.0/0", "::/0"]);
        assert!(all.contains(ip("203.0.113.9")));
        assert!(all.contains(ip("2001:db8::9")));
        assert!(set(&["0.0.0.0/0"]).contains(ip("::ffff:1.2.3.4")));
        assert!(!set(&["0.0.0.0/0"]).contains(ip("2001:db8::9")));
    }

    #[test]
    fn bad_ranges_are_refused_with_a_reason() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/0008",
            "10.0.0.1/8",
            "010.0.0.0/8",
            "0x0a.0.0.0/8",
            "10/8",
            "::/129",
            "2001:db8::1/32",
            "::ffff:10.0.0.0/104",
            "fe80::1%eth0/128",
            "10.0.0.0/8 ",
            "10.0.0.0/8,11.0.0.0/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().map(|c| c.to_string()),
            Ok("10.0.0.0/8".into())
        );
        assert_eq!(
            "::1".parse::<Cidr>().map(|c| c.to_string()),
            Ok("::1/128".into())
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            client_key(ip("2001:db8:1:2::5"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:3::1")),
            client_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(client_key(ip("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(client_key(ip("::ffff:203.0.113.9")), ip("203.0.113.9"));
    }
}
