use std::collections::BTreeMap;

use super::*;
use crate::net::parse_net;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(json: &str) -> Result<Config, ConfigError> {
    Config::from_json(Path::new("/etc/netclaw/netclaw.json"), json, &env(&[]))
}

#[test]
fn defaults_are_local_loopback() {
    let c = load("{}").unwrap();
    assert_eq!(c.daemon().exposure(), ExposureMode::Local);
    assert_eq!(c.daemon().host(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(c.daemon().port(), 5199);
    assert_eq!(c.operator().port(), 5200);
    assert_eq!(c.operator().host(), c.daemon().host());
    assert_eq!(
        c.operator().socket(),
        Path::new("/run/netclaw/operator.sock")
    );
    assert_eq!(c.operator().trust_domain().as_str(), "netclaw.internal");
    assert_eq!(c.operator().certificate_lifetime().to_string(), "30d");
}

#[test]
fn exposure_mode_spellings() {
    for s in [
        "reverse-proxy",
        "ReverseProxy",
        "REVERSE_PROXY",
        "reverseproxy",
    ] {
        assert_eq!(
            s.parse::<ExposureMode>().unwrap(),
            ExposureMode::ReverseProxy
        );
    }
    assert_eq!(
        "CloudflareTunnel".parse::<ExposureMode>().unwrap(),
        ExposureMode::CloudflareTunnel
    );
    assert!("proxy".parse::<ExposureMode>().is_err());
}

#[test]
fn local_mode_refuses_non_loopback() {
    let e = load(r#"{"Daemon":{"Host":"192.0.2.10"}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Daemon.Host") && e.contains("127.0.0.1"), "{e}");
    let e = load(r#"{"Daemon":{"Host":"0.0.0.0"}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Daemon.Host"), "{e}");
}

#[test]
fn reverse_proxy_refuses_loopback_wildcard_and_no_proxies() {
    let e = load(r#"{"Daemon":{"ExposureMode":"reverse-proxy","Host":"127.0.0.1","TrustedProxies":["192.0.2.1"]}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("non-loopback"), "{e}");
    let e = load(r#"{"Daemon":{"ExposureMode":"reverse-proxy","Host":"::1","TrustedProxies":["192.0.2.1"]}}"#).unwrap_err();
    assert!(matches!(e, ConfigError::ReverseProxyLoopback { .. }));
    let e = load(r#"{"Daemon":{"ExposureMode":"reverse-proxy","Host":"0.0.0.0","TrustedProxies":["192.0.2.1"]}}"#).unwrap_err();
    assert!(matches!(e, ConfigError::ReverseProxyLoopback { .. }));
    let e = load(r#"{"Daemon":{"ExposureMode":"reverse-proxy","Host":"192.0.2.10"}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("TrustedProxies"), "{e}");
    let ok = load(r#"{"Daemon":{"ExposureMode":"reverse-proxy","Host":"192.0.2.10","TrustedProxies":["192.0.2.1","198.51.100.0/24"]}}"#).unwrap();
    assert!(ok.daemon().is_trusted_proxy("192.0.2.1".parse().unwrap()));
    assert!(ok
        .daemon()
        .is_trusted_proxy("::ffff:198.51.100.9".parse().unwrap()));
    assert!(!ok.daemon().is_trusted_proxy("192.0.2.2".parse().unwrap()));
    assert!(!ok.daemon().exposure().grants_loopback_trust());
}

#[test]
fn reverse_proxy_never_trusts_a_loopback_final_hop() {
    for entry in [
        "127.0.0.1",
        "127.0.0.0/8",
        "127.1.0.0/16",
        "::1",
        "::ffff:127.0.0.1",
    ] {
        let json = format!(
            r#"{{"Daemon":{{"ExposureMode":"reverse-proxy","Host":"192.0.2.10","TrustedProxies":["192.0.2.1","{entry}"]}}}}"#
        );
        let e = load(&json).unwrap_err().to_string();
        assert!(
            e.contains("Daemon.TrustedProxies")
                && e.contains("loopback")
                && e.contains("never trusted"),
            "{entry}: {e}"
        );
    }
    // A range that only covers loopback among other addresses loads, but a loopback peer is
    // still not a trusted proxy.
    let c = load(r#"{"Daemon":{"ExposureMode":"reverse-proxy","Host":"192.0.2.10","TrustedProxies":["0.0.0.0/0","::/0"]}}"#)
        .unwrap();
    for peer in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
        assert!(
            !c.daemon().is_trusted_proxy(peer.parse().unwrap()),
            "{peer}"
        );
    }
    assert!(c.daemon().is_trusted_proxy("192.0.2.1".parse().unwrap()));
    // Tunnel modes forward over loopback by design; there a loopback proxy entry is allowed.
    let c =
        load(r#"{"Daemon":{"ExposureMode":"cloudflare-tunnel","TrustedProxies":["127.0.0.1"]}}"#)
            .unwrap();
    assert!(c.daemon().is_trusted_proxy("127.0.0.1".parse().unwrap()));
}

#[test]
fn trusted_proxies_are_all_or_nothing() {
    let e = load(r#"{"Daemon":{"ExposureMode":"reverse-proxy","Host":"192.0.2.10","TrustedProxies":["192.0.2.1","nginx"]}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Daemon.TrustedProxies") && e.contains("nginx"),
        "{e}"
    );
    for bad in [
        "192.0.2.1/33",
        "192.0.2.1/24",
        "",
        "192.0.2",
        "::1/129",
        "*",
    ] {
        assert!(parse_net(bad).is_none(), "{bad:?}");
    }
    assert_eq!(
        parse_net("2001:db8::/32").unwrap().to_string(),
        "2001:db8::/32"
    );
}

#[test]
fn unknown_keys_are_errors() {
    let e = load(r#"{"Daemon":{"Hots":"127.0.0.1"}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Hots"), "{e}");
    assert!(load(r#"{"Extra":{}}"#).is_err());
    assert!(load(r#"{"Operator":{"Port":"x"}}"#).is_err());
    assert!(load("[]").is_err());
    assert!(load("{").is_err());
}

#[test]
fn env_overrides_apply_and_typos_fail() {
    let json = r#"{"Daemon":{"ExposureMode":"reverse-proxy","Host":"192.0.2.10","TrustedProxies":["192.0.2.1"]}}"#;
    let e = env(&[
        ("NETCLAW_Daemon__Port", "6000"),
        ("NETCLAW_DAEMON__TRUSTEDPROXIES", "192.0.2.1, 192.0.2.2"),
        ("NETCLAW_Operator__CertificateLifetime", "2m"),
        ("NETCLAW_CONFIG", "/ignored"),
        ("NETCLAW_ENDPOINT", "unix:/x"),
    ]);
    let c = Config::from_json(Path::new("x"), json, &e).unwrap();
    assert_eq!(c.daemon().port(), 6000);
    assert_eq!(c.daemon().trusted_proxies().len(), 2);
    assert_eq!(
        c.operator().certificate_lifetime().duration().as_secs(),
        120
    );

    let e = env(&[("NETCLAW_Daemon__Hots", "x")]);
    let err = Config::from_json(Path::new("x"), "{}", &e)
        .unwrap_err()
        .to_string();
    assert!(err.contains("NETCLAW_Daemon__Hots"), "{err}");
    let e = env(&[("NETCLAW_Daemon__Host", "192.0.2.10")]);
    assert!(matches!(
        Config::from_json(Path::new("x"), "{}", &e).unwrap_err(),
        ConfigError::LocalModeNonLoopback { .. }
    ));
}

#[test]
fn port_clash_and_bad_values() {
    assert!(matches!(
        load(r#"{"Operator":{"Port":5199}}"#).unwrap_err(),
        ConfigError::PortClash { .. }
    ));
    assert!(load(r#"{"Operator":{"Port":5199,"Host":"127.0.0.2"}}"#).is_ok());
    assert!(load(r#"{"Daemon":{"Port":0}}"#).is_err());
    assert!(load(r#"{"Operator":{"Socket":"relative.sock"}}"#).is_err());
    assert!(load(r#"{"Operator":{"TrustDomain":"Bad Domain"}}"#).is_err());
    assert!(load(r#"{"Operator":{"CertificateLifetime":"5y"}}"#).is_err());
    assert!(load(r#"{"Operator":{"AllowedUsers":["-rf"]}}"#).is_err());
    assert!(load(r#"{"Daemon":{"Host":"example.com"}}"#).is_err());
}

#[test]
fn raw_round_trip() {
    let raw = RawConfig {
        daemon: RawDaemon {
            host: Some("192.0.2.10".into()),
            exposure_mode: Some("reverse-proxy".into()),
            trusted_proxies: Some(vec!["192.0.2.1".into()]),
            ..Default::default()
        },
        operator: RawOperator::default(),
    };
    let json = serde_json::to_string_pretty(&raw).unwrap();
    assert_eq!(serde_json::from_str::<RawConfig>(&json).unwrap(), raw);
    load(&json).unwrap();
}

#[test]
fn rotation_grace() {
    assert_eq!(
        load("{}").unwrap().operator().rotation_grace(),
        DEFAULT_ROTATION_GRACE
    );
    let c = load(r#"{"Operator":{"RotationGrace":"5s"}}"#).unwrap();
    assert_eq!(
        c.operator().rotation_grace(),
        std::time::Duration::from_secs(5)
    );
    let c = load(r#"{"Operator":{"RotationGrace":"0s"}}"#).unwrap();
    assert_eq!(c.operator().rotation_grace(), std::time::Duration::ZERO);
    for bad in ["2h", "61m", "5", "s", "-5s", "5d"] {
        let err = load(&format!(r#"{{"Operator":{{"RotationGrace":"{bad}"}}}}"#)).unwrap_err();
        assert!(
            err.to_string().contains("Operator.RotationGrace"),
            "{bad}: {err}"
        );
    }
}
