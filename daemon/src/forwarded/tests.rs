use super::*;

fn xff(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append("x-forwarded-for", v.parse().unwrap());
    }
    h
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn forwarded_for_takes_the_last_hop() {
    let h = xff(&["127.0.0.1, 198.51.100.7"]);
    assert_eq!(forwarded_for(&h), ForwardedFor::Client(ip("198.51.100.7")));
    // Several header lines are one list: the last line's last entry.
    let h = xff(&["198.51.100.7", "203.0.113.7, 198.51.100.8"]);
    assert_eq!(forwarded_for(&h), ForwardedFor::Client(ip("198.51.100.8")));
    assert_eq!(forwarded_for(&HeaderMap::new()), ForwardedFor::Absent);
    assert_eq!(forwarded_for(&xff(&["", " , "])), ForwardedFor::Absent);
    // What the client put before the proxy's entry never counts, even when the proxy's
    // entry is not an address.
    let h = xff(&["198.51.100.7, unknown"]);
    assert_eq!(forwarded_for(&h), ForwardedFor::Unparseable("unknown"));
    assert_eq!(
        forwarded_for(&xff(&["garbage"])),
        ForwardedFor::Unparseable("garbage")
    );
}

/// The adversary's gift to everyone: a proxy that writes the client's address with a port,
/// brackets or a zone. Read strictly, every such entry fell back to the proxy's address and
/// all clients shared one bucket.
#[test]
fn forwarded_entries_in_the_forms_proxies_write_are_addresses() {
    for (entry, want) in [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7:4711", "203.0.113.7"),
        ("  203.0.113.7:4711 ", "203.0.113.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:4711", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25eth0]:4711", "fe80::1"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("[::ffff:203.0.113.7]:80", "203.0.113.7"),
        ("::1", "::1"),
    ] {
        assert_eq!(client_address(entry.trim()), Some(ip(want)), "{entry:?}");
    }
    // A trailing comma or empty entry: the last non-empty entry.
    for header in [
        "203.0.113.7,",
        "198.51.100.1, 203.0.113.7:4711, ",
        "203.0.113.7 ,,",
    ] {
        assert_eq!(
            forwarded_for(&xff(&[header])),
            ForwardedFor::Client(ip("203.0.113.7")),
            "{header:?}"
        );
    }
}

#[test]
fn forwarded_entries_that_are_not_addresses_stay_unparseable() {
    for entry in [
        "unknown",
        "_hidden",
        "",
        "203.0.113.7:",
        "203.0.113.7:port",
        "203.0.113.7:123456",
        "[2001:db8::1",
        "[2001:db8::1]4711",
        "[2001:db8::1]:",
        "2001:db8::1]:4711",
        "203.0.113.7/24",
        "example.com",
        "example.com:80",
        "%eth0",
        "[]",
    ] {
        assert_eq!(client_address(entry), None, "{entry:?}");
    }
}
