use std::collections::BTreeMap;
use std::net::Ipv4Addr;

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

/// The adversary: a stranger behind a tunnel who would lock pairing for everybody if every
/// tunnelled client shared the loopback address. In a tunnel mode with no `TrustedProxies` the
/// loopback peer is the tunnel, so its forwarded address keys the limiter; no other mode
/// changes, and an explicit list keeps its meaning.
#[test]
fn a_tunnel_mode_without_trusted_proxies_trusts_the_loopback_tunnel() {
    let loopback = ["127.0.0.1", "127.0.0.5", "::1", "::ffff:127.0.0.1"];
    let remote = ["192.0.2.1", "203.0.113.7", "2001:db8::1", "::"];
    for mode in ["tailscale-serve", "tailscale-funnel", "cloudflare-tunnel"] {
        let c = load(&format!(r#"{{"Daemon":{{"ExposureMode":"{mode}"}}}}"#)).unwrap();
        let d = c.daemon();
        assert!(d.trusted_proxies().is_empty(), "{mode}");
        assert!(d.forwarding_peers().is_tunnel_loopback(), "{mode}");
        assert!(!d.exposure().grants_loopback_trust(), "{mode}");
        for peer in loopback {
            assert!(d.is_trusted_proxy(peer.parse().unwrap()), "{mode} {peer}");
        }
        for peer in remote {
            assert!(!d.is_trusted_proxy(peer.parse().unwrap()), "{mode} {peer}");
        }
        // An explicit list keeps its meaning: only what it lists.
        let c = load(&format!(
            r#"{{"Daemon":{{"ExposureMode":"{mode}","TrustedProxies":["192.0.2.1"]}}}}"#
        ))
        .unwrap();
        let d = c.daemon();
        assert!(!d.forwarding_peers().is_tunnel_loopback(), "{mode}");
        assert!(d.is_trusted_proxy("192.0.2.1".parse().unwrap()), "{mode}");
        assert!(!d.is_trusted_proxy("127.0.0.1".parse().unwrap()), "{mode}");
    }
    // `local` with no list trusts nobody, loopback included (loopback is LocalProcess there).
    let c = load("{}").unwrap();
    assert!(!c.daemon().forwarding_peers().is_tunnel_loopback());
    for peer in loopback.iter().chain(&remote) {
        assert!(
            !c.daemon().is_trusted_proxy(peer.parse().unwrap()),
            "{peer}"
        );
    }
    // `reverse-proxy` never trusts a loopback hop, whatever the list covers.
    let c = load(r#"{"Daemon":{"ExposureMode":"reverse-proxy","Host":"192.0.2.10","TrustedProxies":["192.0.2.1"]}}"#)
        .unwrap();
    assert!(!c.daemon().forwarding_peers().is_tunnel_loopback());
    for peer in loopback {
        assert!(
            !c.daemon().is_trusted_proxy(peer.parse().unwrap()),
            "{peer}"
        );
    }
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
        config_version: Some(1),
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
fn busy_poll() {
    use std::time::Duration;
    assert_eq!(
        load("{}").unwrap().operator().busy_poll(),
        DEFAULT_BUSY_POLL
    );
    for (us, want) in [(0, Duration::ZERO), (1000, MAX_BUSY_POLL)] {
        let c = load(&format!(r#"{{"Operator":{{"BusyPollMicros":{us}}}}}"#)).unwrap();
        assert_eq!(c.operator().busy_poll(), want);
    }
    let over = env(&[("NETCLAW_Operator__BusyPollMicros", "0")]);
    let c = Config::from_json(Path::new("/etc/netclaw/netclaw.json"), "{}", &over).unwrap();
    assert_eq!(c.operator().busy_poll(), Duration::ZERO);
    let err = load(r#"{"Operator":{"BusyPollMicros":1001}}"#).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                key: "Operator.BusyPollMicros",
                ..
            }
        ),
        "{err}"
    );
    for bad in ["-1", "\"50us\"", "1.5"] {
        let err = load(&format!(r#"{{"Operator":{{"BusyPollMicros":{bad}}}}}"#)).unwrap_err();
        assert!(err.to_string().contains("BusyPollMicros"), "{bad}: {err}");
    }
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

// ---------------------------------------------------------------------------------------------
// netclaw's file as it is.

/// A configuration as netclaw has it: `configVersion` and its 22 top-level sections.
pub(crate) const NETCLAW_JSON: &str = include_str!("../../testdata/netclaw.json");

/// The 22 sections of netclaw's schema v1 other than `Daemon`, as in the file.
const FOREIGN: [&str; 21] = [
    "Discord",
    "ExternalSkills",
    "Logging",
    "McpServers",
    "Memory",
    "Models",
    "Notifications",
    "Persistence",
    "Providers",
    "Scheduling",
    "Search",
    "Security",
    "Session",
    "SkillFeeds",
    "SkillSync",
    "Slack",
    "SubAgents",
    "Telemetry",
    "Tools",
    "Webhooks",
    "Workspaces",
];

#[test]
fn a_real_netclaw_json_loads_and_its_foreign_sections_are_set_aside() {
    let root: Value = serde_json::from_str(NETCLAW_JSON).unwrap();
    assert_eq!(
        root.as_object().unwrap().len(),
        23,
        "configVersion + 22 sections"
    );
    for name in FOREIGN {
        assert!(NETCLAW_SECTIONS.contains(&name), "{name}");
    }
    let c = load(NETCLAW_JSON).unwrap();
    assert_eq!(c.ignored().sections(), FOREIGN);
    assert!(c.ignored().variables().is_empty());
    assert_eq!(c.daemon().exposure(), ExposureMode::Local);
    assert_eq!(c.daemon().port(), 5199);
    // No Operator section yet: the defaults.
    assert_eq!(c.operator().port(), DEFAULT_OPERATOR_PORT);
}

/// The line's content. That `from_json` logs it once is `tests/ignored_log_line.rs`, a
/// process of its own: a tracing callsite's interest is process-wide state, so a capture racing
/// the other tests' loads of the same callsite can miss the line.
#[test]
fn foreign_sections_and_variables_are_named_in_one_summary_line() {
    let e = env(&[
        ("NETCLAW_Models__Roles__Main", "main"),
        ("NETCLAW_Slack__BotToken", "xoxb-not-for-logs"),
        ("NETCLAW_Daemon__Port", "6000"),
    ]);
    let c = Config::from_json(Path::new("/etc/netclaw/netclaw.json"), NETCLAW_JSON, &e).unwrap();
    assert_eq!(c.daemon().port(), 6000);
    assert_eq!(
        c.ignored().variables(),
        ["NETCLAW_Models__Roles__Main", "NETCLAW_Slack__BotToken"]
    );
    let line = c.ignored().summary().unwrap();
    assert_eq!(line.lines().count(), 1, "{line}");
    for name in FOREIGN {
        assert!(line.contains(name), "{name} missing: {line}");
    }
    assert!(
        line.contains("NETCLAW_Models__Roles__Main") && line.contains("NETCLAW_Slack__BotToken")
    );
    assert!(
        !line.contains("xoxb-not-for-logs"),
        "a value was named: {line}"
    );
    assert!(!line.contains("NETCLAW_Daemon__Port"), "{line}");

    // Nothing set aside, no line.
    assert_eq!(load(r#"{"Daemon":{}}"#).unwrap().ignored().summary(), None);
}

#[test]
fn an_unknown_key_inside_an_owned_section_is_refused_by_name() {
    // Even next to foreign sections, which are set aside.
    let json = r#"{"configVersion":1,"Providers":{"x":{}},"Daemon":{"Hots":"127.0.0.1"}}"#;
    let err = load(json).unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownKey { section: "Daemon", key, suggestion: Some("Host"), .. } if key == "Hots"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("Daemon.Hots") && text.contains("Daemon.Host?"),
        "{text}"
    );
    let err = load(r#"{"Operator":{"AllowedUser":["alice"]}}"#).unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownKey { section: "Operator", key, suggestion: Some("AllowedUsers"), .. } if key == "AllowedUser"),
        "{err:?}"
    );
    // No near key: no suggestion, but the key is still named.
    let err = load(r#"{"Daemon":{"ListenBacklog":5}}"#).unwrap_err();
    assert!(
        matches!(
            &err,
            ConfigError::UnknownKey {
                suggestion: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("Daemon.ListenBacklog"));
}

#[test]
fn a_misspelled_owned_section_fails_closed() {
    for (json, owned) in [
        (r#"{"Deamon":{"ExposureMode":"reverse-proxy"}}"#, "Daemon"),
        (r#"{"Demon":{}}"#, "Daemon"),
        (r#"{"Operater":{"AllowedUsers":["alice"]}}"#, "Operator"),
        (r#"{"operators":{}}"#, "Operator"),
        (r#"{"Daemon ":{}}"#, "Daemon"),
    ] {
        let err = load(json).unwrap_err();
        assert!(
            matches!(&err, ConfigError::MisspelledSection { section, .. } if *section == owned),
            "{json}: {err:?}"
        );
        assert!(err.to_string().contains(owned), "{err}");
    }
    // A section far from every owned name is someone else's and is set aside.
    let c = load(r#"{"Extra":{},"$schema":"https://example.org/netclaw.schema.json"}"#).unwrap();
    assert_eq!(c.ignored().sections(), ["$schema", "Extra"]);
    // The same for variables.
    let err = Config::from_json(
        Path::new("x"),
        "{}",
        &env(&[("NETCLAW_Deamon__Port", "6000")]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ConfigError::Override { var, .. } if var == "NETCLAW_Deamon__Port"),
        "{err:?}"
    );
}

#[test]
fn netclaw_spellings_are_accepted_and_values_are_not_loosened() {
    // .NET configuration keys are case-insensitive: netclaw reads all of these.
    let c = load(
        r#"{"daemon":{"host":"192.0.2.10","exposureMode":"ReverseProxy","TRUSTEDPROXIES":["192.0.2.1"]},
            "operator":{"port":5300}}"#,
    )
    .unwrap();
    assert_eq!(c.daemon().exposure(), ExposureMode::ReverseProxy);
    assert_eq!(c.daemon().trusted_proxies().len(), 1);
    assert_eq!(c.operator().port(), 5300);
    assert!(c.ignored().sections().is_empty());
    // netclaw's own Daemon keys, not used here, are read with netclaw's value rules.
    let c = load(
        r#"{"Daemon":{"DisableSelfUpdate":true,"UpdateChannel":"Beta","Endpoint":"http://127.0.0.1:5199"}}"#,
    );
    assert!(c.is_ok(), "{c:?}");
    let err = load(r#"{"Daemon":{"UpdateChannel":"nightly"}}"#).unwrap_err();
    assert!(err.to_string().contains("Daemon.UpdateChannel"), "{err}");
    let err = load(r#"{"Daemon":{"DisableSelfUpdate":"yes"}}"#).unwrap_err();
    assert!(
        err.to_string().contains("Daemon.DisableSelfUpdate"),
        "{err}"
    );
    // A value of the wrong type is refused with its key, whatever the key's spelling.
    let err = load(r#"{"daemon":{"port":"5199"}}"#).unwrap_err();
    assert!(err.to_string().contains("Daemon.Port"), "{err}");
    // One key twice under two spellings is refused (netclaw refuses duplicate keys too).
    let err = load(r#"{"Daemon":{"Host":"127.0.0.1","host":"192.0.2.10"}}"#).unwrap_err();
    assert!(matches!(err, ConfigError::DuplicateKey { .. }), "{err:?}");
    let err = load(r#"{"Daemon":{},"daemon":{}}"#).unwrap_err();
    assert!(matches!(err, ConfigError::DuplicateKey { .. }), "{err:?}");
    // Owned sections must be objects; foreign ones may be anything.
    assert!(load(r#"{"Daemon":[]}"#).is_err());
    assert!(load(r#"{"Slack":[],"SkillFeeds":"x"}"#).is_ok());
}

#[test]
fn config_version_must_be_one() {
    assert!(load(r#"{"configVersion":1}"#).is_ok());
    assert!(load(r#"{"ConfigVersion":1}"#).is_ok());
    for bad in ["2", "0", "\"1\"", "1.5", "null", "{}"] {
        let err = load(&format!(r#"{{"configVersion":{bad}}}"#)).unwrap_err();
        assert!(matches!(err, ConfigError::Version { .. }), "{bad}: {err:?}");
        assert!(err.to_string().contains("configVersion"), "{err}");
    }
    let raw = RawConfig {
        config_version: Some(2),
        ..Default::default()
    };
    assert!(matches!(
        Config::try_from(raw).unwrap_err(),
        ConfigError::Version { .. }
    ));
}

#[test]
fn public_url_is_an_http_url_without_credentials_and_loses_its_trailing_slash() {
    assert_eq!(load("{}").unwrap().operator().public_url(), None);
    let c = load(r#"{"Operator":{"PublicUrl":"https://netclaw.example.com/"}}"#).unwrap();
    assert_eq!(
        c.operator().public_url(),
        Some("https://netclaw.example.com")
    );
    let c = load(r#"{"Operator":{"PublicUrl":"https://proxy.example:8443/netclaw"}}"#).unwrap();
    assert_eq!(
        c.operator().public_url(),
        Some("https://proxy.example:8443/netclaw")
    );
    for bad in [
        "netclaw.example.com",
        "ftp://x",
        "https://",
        "https://user:pw@x",
        "https://x/?q=1",
        "https://x /",
    ] {
        let e = load(&format!(r#"{{"Operator":{{"PublicUrl":"{bad}"}}}}"#)).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "Operator.PublicUrl",
                    ..
                }
            ),
            "{bad}: {e}"
        );
    }
    // The environment override is derived from the key like every other one.
    let c = Config::from_json(
        Path::new("/etc/netclaw/netclaw.json"),
        "{}",
        &env(&[("NETCLAW_Operator__PublicUrl", "https://d.example")]),
    )
    .unwrap();
    assert_eq!(c.operator().public_url(), Some("https://d.example"));
}
