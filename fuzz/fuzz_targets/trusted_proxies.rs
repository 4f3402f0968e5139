//! `Daemon.TrustedProxies` / `Operator.AllowedSources` entries: IP or CIDR, all-or-nothing.
//!
//! Input: entries, one per line. Checked: no panic; a list is accepted exactly when every entry
//! parses; an accepted CIDR has no host bits; a bare IP is a single-address network that
//! contains itself (IPv4-mapped IPv6 folded to IPv4).

#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use netclaw_core::config::parse_nets;
use netclaw_core::net::{canonical_ip, parse_net};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let entries: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let one_by_one: Vec<_> = entries.iter().map(|e| parse_net(e)).collect();
    match parse_nets("Daemon.TrustedProxies", entries.clone()) {
        Ok(nets) => {
            assert_eq!(nets.len(), entries.len());
            for (net, single) in nets.iter().zip(&one_by_one) {
                assert_eq!(Some(*net), *single);
                assert_eq!(net.trunc(), *net);
            }
        }
        Err(e) => {
            assert!(one_by_one.iter().any(Option::is_none));
            assert!(e.to_string().contains("Daemon.TrustedProxies"));
        }
    }
    for (entry, net) in entries.iter().zip(&one_by_one) {
        if let (Some(net), Ok(ip)) = (net, entry.trim().parse::<IpAddr>()) {
            assert!(net.contains(&canonical_ip(ip)), "{entry:?} -> {net}");
            assert_eq!(net.prefix_len(), net.max_prefix_len());
        }
    }
});
