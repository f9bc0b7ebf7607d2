//! Location hints: where a vat may be reached (`host:port`).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::HintError;

/// The longest DNS name, in bytes (RFC 1035, without the trailing dot).
const MAX_DNS_NAME: usize = 253;

/// The longest DNS label, in bytes.
const MAX_DNS_LABEL: usize = 63;

/// A host a vat may be reached at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 address, written `a.b.c.d`.
    Ipv4(Ipv4Addr),
    /// An IPv6 address, written `[addr]` in its RFC 5952 form.
    Ipv6(Ipv6Addr),
    /// A DNS name, written in lowercase (see [`DnsName`]).
    Dns(DnsName),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ipv4(addr) => write!(f, "{addr}"),
            Host::Ipv6(addr) => write!(f, "[{addr}]"),
            Host::Dns(name) => f.write_str(name.as_str()),
        }
    }
}

/// A DNS host name in its one spelling: lowercase ASCII letters, digits and
/// hyphens in dot-separated labels of 1 to 63 bytes that neither start nor
/// end with a hyphen, at most 253 bytes in all, no trailing dot, and a last
/// label that is not all digits (so it is never confused with an IPv4
/// address). Internationalised names are written in their `xn--` form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsName(String);

impl DnsName {
    /// Checks `name` and makes it a `DnsName`.
    pub fn new(name: &str) -> Result<DnsName, HintError> {
        check_dns_name(name)?;
        Ok(DnsName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a vat may be reached: a host and a port, written `host:port`
/// (`192.0.2.7:4000`, `[2001:db8::1]:4000`, `vat.example.org:4000`).
///
/// A hint is only a hint: whoever dials it must still check that the peer
/// proves the vat id of the token. The text form has one spelling per hint
/// (lowercase names, canonical addresses, no leading zeros in the port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocationHint {
    host: Host,
    port: u16,
}

impl LocationHint {
    /// A hint for `host` at `port`; port 0 is refused.
    pub fn new(host: Host, port: u16) -> Result<LocationHint, HintError> {
        if port == 0 {
            return Err(HintError::PortOutOfRange);
        }
        Ok(LocationHint { host, port })
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port, never 0.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Parses `host:port`, naming exactly what is wrong if it is not one.
    pub fn parse(text: &str) -> Result<LocationHint, HintError> {
        if text.is_empty() {
            return Err(HintError::Empty);
        }
        let (host, port_text) = if let Some(inside) = text.strip_prefix('[') {
            let Some(close) = inside.find(']') else {
                return Err(HintError::UnclosedBracket);
            };
            let addr_text = &inside[..close];
            let after = &inside[close + 1..];
            let Some(port_text) = after.strip_prefix(':') else {
                return Err(if after.is_empty() {
                    HintError::MissingPort
                } else {
                    HintError::AfterBracket
                });
            };
            (Host::Ipv6(parse_ipv6(addr_text)?), port_text)
        } else {
            let Some((host_text, port_text)) = text.rsplit_once(':') else {
                return Err(HintError::MissingPort);
            };
            if host_text.contains(':') {
                return Err(HintError::UnbracketedIpv6);
            }
            (parse_host(host_text)?, port_text)
        };
        let port = parse_port(port_text, text.len() - port_text.len())?;
        LocationHint::new(host, port)
    }
}

impl fmt::Display for LocationHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl FromStr for LocationHint {
    type Err = HintError;

    fn from_str(text: &str) -> Result<LocationHint, HintError> {
        LocationHint::parse(text)
    }
}

/// Parses an IPv6 address as written between brackets.
fn parse_ipv6(text: &str) -> Result<Ipv6Addr, HintError> {
    let addr: Ipv6Addr = text.parse().map_err(|_| HintError::BadIpv6)?;
    let canonical = addr.to_string();
    if canonical != text {
        return Err(HintError::NonCanonicalIpv6 { canonical });
    }
    Ok(addr)
}

/// Parses a host that is not in brackets: an IPv4 address or a DNS name.
fn parse_host(text: &str) -> Result<Host, HintError> {
    if text.is_empty() {
        return Err(HintError::EmptyHost);
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let addr: Ipv4Addr = text.parse().map_err(|_| HintError::BadIpv4)?;
        if addr.to_string() != text {
            return Err(HintError::BadIpv4);
        }
        return Ok(Host::Ipv4(addr));
    }
    check_dns_name(text)?;
    Ok(Host::Dns(DnsName(text.to_owned())))
}

/// Checks a DNS name. Positions in errors count from its start, which is
/// also the start of its hint.
fn check_dns_name(name: &str) -> Result<(), HintError> {
    if name.is_empty() {
        return Err(HintError::EmptyHost);
    }
    for (position, ch) in name.char_indices() {
        if ch.is_ascii_uppercase() {
            return Err(HintError::UppercaseHost { position, ch });
        }
        if !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '.') {
            return Err(HintError::BadHostChar { position, ch });
        }
    }
    if name.len() > MAX_DNS_NAME {
        return Err(HintError::HostTooLong { len: name.len() });
    }
    let mut last = "";
    let mut position = 0;
    for label in name.split('.') {
        if label.is_empty() {
            return Err(HintError::EmptyLabel);
        }
        if label.len() > MAX_DNS_LABEL {
            return Err(HintError::LabelTooLong { len: label.len() });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HintError::LabelHyphen { position });
        }
        position += label.len() + 1;
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HintError::BadIpv4);
    }
    Ok(())
}

/// Parses a decimal port, 1 to 65535, with no leading zero; `start` is
/// where it starts in its hint.
fn parse_port(text: &str, start: usize) -> Result<u16, HintError> {
    if text.is_empty() {
        return Err(HintError::MissingPort);
    }
    if let Some((i, ch)) = text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(HintError::BadPort {
            position: start + i,
            ch,
        });
    }
    if text == "0" {
        return Err(HintError::PortOutOfRange);
    }
    if text.starts_with('0') {
        return Err(HintError::PortLeadingZero);
    }
    // Only digits are left; anything that does not fit a u16 is too big.
    text.parse::<u16>().map_err(|_| HintError::PortOutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> LocationHint {
        let hint = LocationHint::parse(text).unwrap();
        assert_eq!(hint.to_string(), text, "one spelling");
        hint
    }

    #[test]
    fn the_three_kinds_of_host_parse_and_round_trip() {
        assert_eq!(
            ok("192.0.2.7:4000"),
            LocationHint::new(Host::Ipv4(Ipv4Addr::new(192, 0, 2, 7)), 4000).unwrap()
        );
        assert_eq!(
            ok("[2001:db8::1]:65535").host(),
            &Host::Ipv6("2001:db8::1".parse().unwrap())
        );
        assert_eq!(ok("[::1]:1").port(), 1);
        assert_eq!(
            ok("vat-1.example.org:443").host(),
            &Host::Dns(DnsName::new("vat-1.example.org").unwrap())
        );
        ok("localhost:80");
        ok("xn--bcher-kva.example:80");
        ok("1a.2b:80");
    }

    #[test]
    fn port_errors_are_named() {
        assert_eq!(LocationHint::parse("host"), Err(HintError::MissingPort));
        assert_eq!(LocationHint::parse("host:"), Err(HintError::MissingPort));
        assert_eq!(LocationHint::parse("[::1]"), Err(HintError::MissingPort));
        assert_eq!(
            LocationHint::parse("host:8o"),
            Err(HintError::BadPort {
                position: 6,
                ch: 'o'
            })
        );
        assert_eq!(
            LocationHint::parse("[::1]:+80"),
            Err(HintError::BadPort {
                position: 6,
                ch: '+'
            })
        );
        assert_eq!(
            LocationHint::parse("host:080"),
            Err(HintError::PortLeadingZero)
        );
        for port in ["0", "65536", "99999", "123456789012345678901234567890"] {
            assert_eq!(
                LocationHint::parse(&format!("host:{port}")),
                Err(HintError::PortOutOfRange),
                "{port}"
            );
        }
    }

    #[test]
    fn host_errors_are_named() {
        let cases: &[(&str, HintError)] = &[
            ("", HintError::Empty),
            (":80", HintError::EmptyHost),
            ("::1:80", HintError::UnbracketedIpv6),
            ("[::1:80", HintError::UnclosedBracket),
            ("[::1]x:80", HintError::AfterBracket),
            ("[::g]:80", HintError::BadIpv6),
            ("[fe80::1%eth0]:80", HintError::BadIpv6),
            (
                "[::0:1]:80",
                HintError::NonCanonicalIpv6 {
                    canonical: "::1".into(),
                },
            ),
            (
                "[2001:DB8::1]:80",
                HintError::NonCanonicalIpv6 {
                    canonical: "2001:db8::1".into(),
                },
            ),
            ("256.1.1.1:80", HintError::BadIpv4),
            ("01.2.3.4:80", HintError::BadIpv4),
            ("1.2.3:80", HintError::BadIpv4),
            ("a.1:80", HintError::BadIpv4),
            (
                "Example.org:80",
                HintError::UppercaseHost {
                    position: 0,
                    ch: 'E',
                },
            ),
            (
                "exa_mple.org:80",
                HintError::BadHostChar {
                    position: 3,
                    ch: '_',
                },
            ),
            (
                "bücher.example:80",
                HintError::BadHostChar {
                    position: 1,
                    ch: 'ü',
                },
            ),
            ("a..b:80", HintError::EmptyLabel),
            ("example.org.:80", HintError::EmptyLabel),
            ("-a.org:80", HintError::LabelHyphen { position: 0 }),
            ("ab.c-.org:80", HintError::LabelHyphen { position: 3 }),
        ];
        for (text, expected) in cases {
            assert_eq!(&LocationHint::parse(text).unwrap_err(), expected, "{text}");
        }
        let long_label = format!("{}.org:80", "a".repeat(64));
        assert_eq!(
            LocationHint::parse(&long_label),
            Err(HintError::LabelTooLong { len: 64 })
        );
        let long_name = format!("{}a:80", "a.".repeat(127));
        assert_eq!(
            LocationHint::parse(&long_name),
            Err(HintError::HostTooLong { len: 255 })
        );
    }

    #[test]
    fn constructors_check_too() {
        assert!(LocationHint::new(Host::Ipv4(Ipv4Addr::LOCALHOST), 0).is_err());
        assert!(DnsName::new("UPPER.case").is_err());
        assert!(DnsName::new("ok.example").is_ok());
    }
}
