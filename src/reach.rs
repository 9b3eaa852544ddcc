//! Which network addresses an outgoing connection may reach.
//!
//! Providers and webhooks both send requests to URLs, but different people
//! choose them. A provider's `base_url` is the operator's own
//! configuration: a model server on the office network (10.x, 192.168.x)
//! is an ordinary setup, and only this host and the cloud's metadata
//! service are off limits by default. A webhook's URL is typed in by any
//! user with a key: reaching the operator's private networks through it
//! would let a user probe or poke services they cannot see, so webhooks
//! reach the public internet only by default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How far outgoing connections may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Anything, this host included (`allow_private = true`).
    Anywhere,
    /// Anything but this host, link-local addresses and metadata services:
    /// a provider's default.
    OffHost,
    /// Public addresses only, no private, shared or special-purpose
    /// ranges: a webhook's default.
    Public,
}

/// AWS's IPv6 instance-metadata address.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// This host, link-local (169.254.0.0/16 with the cloud metadata address,
/// fe80::/10) and AWS's IPv6 metadata address.
fn on_host(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return on_host(IpAddr::V4(v4));
            }
            v6.is_unspecified()
                || v6.is_loopback()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == METADATA_V6
        }
    }
}

/// Not an address on the public internet: private networks (RFC 1918,
/// fc00::/7), shared address space (100.64.0.0/10), "this network"
/// (0.0.0.0/8), benchmarking (198.18.0.0/15), documentation,
/// multicast, broadcast, reserved (240.0.0.0/4), IETF protocol assignments
/// (192.0.0.0/24), and translation prefixes that carry such an address.
fn non_public(ip: IpAddr) -> bool {
    if on_host(ip) {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) reaches whatever IPv4 address it embeds.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return non_public(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
            }
            (s[0] & 0xfe00) == 0xfc00 // unique local
                || v6.is_multicast()
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] & 0xffc0) == 0xfec0 // deprecated site-local
        }
    }
}

fn non_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    v4.is_private()
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 192 && b == 0 && c == 0)
        || a >= 240
}

impl Reach {
    /// The reach `allow_private` gives, over the given default.
    pub fn or_anywhere(self, allow_private: bool) -> Reach {
        if allow_private { Reach::Anywhere } else { self }
    }

    /// Whether a connection may go to `ip`.
    pub fn allows(self, ip: IpAddr) -> bool {
        match self {
            Reach::Anywhere => true,
            Reach::OffHost => !on_host(ip),
            Reach::Public => !non_public(ip),
        }
    }

    /// What is refused, for error messages.
    pub fn refuses(self) -> &'static str {
        match self {
            Reach::Anywhere => "nothing",
            Reach::OffHost => "a loopback, link-local or metadata address",
            Reach::Public => {
                "a loopback, link-local, metadata, private-network or other non-public address"
            }
        }
    }

    /// Checks a URL to send requests to: http or https, a host, no
    /// credentials in it (they would travel to wherever it points and show
    /// in config and listings), and no address written out that this reach
    /// refuses. A host name is checked when it is resolved, at every
    /// connection (see the runtime's HTTP client), since what it resolves
    /// to can change.
    pub fn check_url(self, url: &str) -> Result<(), String> {
        let u = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("must be http or https, not {}", u.scheme()));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err("must not carry credentials".into());
        }
        let ip = match u.host() {
            None => return Err("must name a host".into()),
            Some(url::Host::Domain(_)) => None,
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        };
        if let Some(ip) = ip.filter(|ip| !self.allows(*ip)) {
            return Err(format!(
                "{ip} is {}; set allow_private = true to allow it",
                self.refuses()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const ON_HOST: &[&str] = &[
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "169.254.169.254",
        "169.254.0.1",
        "::1",
        "::",
        "fe80::1",
        "febf::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ];

    const PRIVATE_NETWORKS: &[&str] = &[
        "10.0.0.5",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.2",
        "100.64.0.1",
        "100.127.255.254",
        "0.1.2.3",
        "198.18.0.1",
        "192.0.0.8",
        "192.0.2.1",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "2001:db8::1",
        "fec0::1",
        "::ffff:10.1.2.3",
        "::ffff:192.168.0.1",
        "64:ff9b::a00:1",
        "64:ff9b::7f00:1",
    ];

    const PUBLIC: &[&str] = &[
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700::1111",
        "64:ff9b::808:808",
        "::ffff:8.8.8.8",
    ];

    #[test]
    fn off_host_refuses_this_host_and_metadata_but_not_private_networks() {
        for a in ON_HOST {
            assert!(!Reach::OffHost.allows(ip(a)), "{a}");
        }
        for a in PRIVATE_NETWORKS.iter().chain(PUBLIC) {
            assert!(Reach::OffHost.allows(ip(a)), "{a}");
        }
    }

    #[test]
    fn public_refuses_every_non_public_range() {
        for a in ON_HOST.iter().chain(PRIVATE_NETWORKS) {
            assert!(!Reach::Public.allows(ip(a)), "{a}");
        }
        for a in PUBLIC {
            assert!(Reach::Public.allows(ip(a)), "{a}");
        }
    }

    #[test]
    fn anywhere_refuses_nothing() {
        for a in ON_HOST.iter().chain(PRIVATE_NETWORKS).chain(PUBLIC) {
            assert!(Reach::Anywhere.allows(ip(a)), "{a}");
        }
        assert_eq!(Reach::Public.or_anywhere(true), Reach::Anywhere);
        assert_eq!(Reach::Public.or_anywhere(false), Reach::Public);
    }

    #[test]
    fn urls_are_checked_for_scheme_host_credentials_and_addresses() {
        assert!(
            Reach::OffHost
                .check_url("https://api.openai.com/v1")
                .is_ok()
        );
        assert!(
            Reach::OffHost
                .check_url("http://localhost:11434/v1")
                .is_ok(),
            "names are checked when resolved"
        );
        assert!(Reach::OffHost.check_url("http://10.0.0.7:8000/v1").is_ok());
        assert!(Reach::Public.check_url("http://10.0.0.7:8000/v1").is_err());
        assert!(Reach::Public.check_url("http://[fd00::7]/h").is_err());
        assert!(
            Reach::Anywhere
                .check_url("http://127.0.0.1:11434/v1")
                .is_ok()
        );
        for bad in [
            "http://127.0.0.1:11434/v1",
            "http://[::1]/v1",
            "http://169.254.169.254/",
            "http://0.0.0.0:80/",
            "https://key:secret@api.example.com/v1",
            "https://key@api.example.com/v1",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(Reach::OffHost.check_url(bad).is_err(), "{bad}");
            assert!(Reach::Public.check_url(bad).is_err(), "{bad}");
        }
    }
}
