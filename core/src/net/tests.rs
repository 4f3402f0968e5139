#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn canonical_folds_ipv4_mapped_only() {
    assert_eq!(canonical_ip(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    assert_eq!(canonical_ip(ip("2001:db8::1")), ip("2001:db8::1"));
    assert_eq!(canonical_ip(ip("198.51.100.7")), ip("198.51.100.7"));
}

#[test]
fn dial_ip_maps_wildcards_to_loopback_of_the_same_family() {
    assert_eq!(dial_ip(ip("0.0.0.0")), ip("127.0.0.1"));
    assert_eq!(dial_ip(ip("::")), ip("::1"));
    assert_eq!(dial_ip(ip("192.0.2.10")), ip("192.0.2.10"));
    assert_eq!(dial_ip(ip("127.0.0.2")), ip("127.0.0.2"));
}

#[test]
fn loopback_nets_are_wholly_loopback() {
    for yes in [
        "127.0.0.1/32",
        "127.0.0.0/8",
        "::1/128",
        "::ffff:127.0.0.0/104",
    ] {
        assert!(is_loopback_net(&yes.parse().unwrap()), "{yes}");
    }
    for no in [
        "0.0.0.0/0",
        "126.0.0.0/7",
        "::/0",
        "::ffff:0.0.0.0/96",
        "192.0.2.0/24",
    ] {
        assert!(!is_loopback_net(&no.parse().unwrap()), "{no}");
    }
}

#[test]
fn parse_net_accepts_ips_and_exact_cidrs() {
    assert_eq!(
        parse_net(" 192.0.2.1 ").unwrap().to_string(),
        "192.0.2.1/32"
    );
    assert_eq!(
        parse_net("::ffff:192.0.2.1").unwrap().to_string(),
        "192.0.2.1/32"
    );
    assert_eq!(
        parse_net("2001:db8::/32").unwrap().to_string(),
        "2001:db8::/32"
    );
    assert!(parse_net("192.0.2.1/24").is_none());
    assert!(parse_net("*").is_none());
}
