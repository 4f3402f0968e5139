use super::*;

#[test]
fn sections_are_the_raw_configs_fields() {
    let root = field_names::<RawConfig>();
    assert_eq!(root, ["configVersion", "Daemon", "Operator"]);
    let sections: Vec<&str> = SECTIONS.iter().map(|s| s.name).collect();
    assert_eq!(sections, OWNED_SECTIONS);
    assert_eq!(sections, root[1..]);
    // No netclaw section is taken for an owned one, nor for a misspelling of one.
    for name in NETCLAW_SECTIONS {
        assert!(Section::named(name).is_none(), "{name}");
        assert_eq!(misspelled_section(name), None, "{name}");
    }
}

#[test]
fn keys_come_from_the_serde_types() {
    assert_eq!(
        field_names::<RawDaemon>(),
        [
            "Host",
            "Port",
            "ExposureMode",
            "TrustedProxies",
            "SkipTunnelProcessCheck",
            "StateDirectory",
            "DisableSelfUpdate",
            "UpdateChannel",
            "Endpoint",
        ]
    );
    let daemon = Section::named("daemon").unwrap();
    assert_eq!(daemon.key("exposuremode"), Some("ExposureMode"));
    assert_eq!(daemon.key("EXPOSURE_MODE"), None);
    assert!(daemon.is_list("TrustedProxies"));
    assert!(!daemon.is_list("Host"));
    assert!(!daemon.is_list("Port"));
    let operator = Section::named("Operator").unwrap();
    for list in ["AllowedSources", "AllowedUsers", "AllowedGroups"] {
        assert!(operator.is_list(list), "{list}");
    }
    assert!(!operator.is_list("Socket"));
}

#[test]
fn misspellings_are_one_or_two_edits_away() {
    assert_eq!(osa_distance("deamon", "daemon"), 1);
    assert_eq!(osa_distance("daemon", "daemon"), 0);
    assert_eq!(osa_distance("operater", "operator"), 1);
    assert_eq!(osa_distance("", "abc"), 3);
    assert_eq!(misspelled_section("DAEMONS"), Some("Daemon"));
    assert_eq!(misspelled_section("Operatr"), Some("Operator"));
    assert_eq!(misspelled_section("Daemon"), Some("Daemon"));
    assert_eq!(misspelled_section("Providers"), None);
    assert_eq!(misspelled_section("Gateway"), None);
}
