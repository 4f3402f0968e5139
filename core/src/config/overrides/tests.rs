use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::config::raw::{RawDaemon, RawOperator, SECTIONS};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every field of the raw types set, written as an exhaustive literal: a new field does not
/// compile here until it is listed, and then the override table must have it.
fn every_key() -> Value {
    let daemon = RawDaemon {
        host: Some("127.0.0.1".into()),
        port: Some(1),
        exposure_mode: Some("local".into()),
        trusted_proxies: Some(vec![]),
        skip_tunnel_process_check: Some(false),
        state_directory: Some("/s".into()),
        disable_self_update: Some(false),
        update_channel: Some("stable".into()),
        endpoint: Some("http://127.0.0.1:5199".into()),
    };
    let operator = RawOperator {
        host: Some("127.0.0.1".into()),
        port: Some(2),
        socket: Some("/s".into()),
        allowed_sources: Some(vec![]),
        allowed_users: Some(vec![]),
        allowed_groups: Some(vec![]),
        trust_domain: Some("t".into()),
        certificate_lifetime: Some("1d".into()),
        rotation_grace: Some("1s".into()),
        lock_on_suspected_clone: Some(false),
        busy_poll_micros: Some(0),
        pki_directory: Some("/s".into()),
        agent_directory: Some("/s".into()),
        public_url: Some("https://d.example".into()),
    };
    json!({ "Daemon": daemon, "Operator": operator })
}

#[test]
fn the_override_table_has_every_key_of_the_raw_types() {
    let all = every_key();
    for section in &SECTIONS {
        let serialized: Vec<&str> = all[section.name]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut table: Vec<&str> = section.keys().to_vec();
        table.sort_unstable();
        assert_eq!(table, serialized, "{}", section.name);
        // Each key is reachable by its variable, in any case.
        for key in section.keys() {
            for var in [
                format!("NETCLAW_{}__{key}", section.name),
                format!(
                    "NETCLAW_{}__{}",
                    section.name.to_uppercase(),
                    key.to_lowercase()
                ),
            ] {
                let mut value = json!({});
                let ignored = apply(&mut value, &env(&[(&var, "1")])).unwrap();
                assert!(ignored.is_empty());
                assert!(value[section.name].get(*key).is_some(), "{var}");
            }
        }
    }
}

#[test]
fn foreign_variables_are_set_aside_and_others_ignored() {
    let mut value = json!({});
    let ignored = apply(
        &mut value,
        &env(&[
            ("NETCLAW_Models__Roles__Main", "main"),
            (
                "NETCLAW_Tools__WebFetch__HttpAllowList__0",
                "https://a.example",
            ),
            ("NETCLAW_HOME", "/home/n/.netclaw"),
            ("NETCLAW_DAEMON_ENDPOINT", "http://127.0.0.1:5199"),
            ("NETCLAW_CONFIG", "/etc/netclaw/netclaw.json"),
            ("netclaw_Daemon__Port", "1"),
            ("OTHER", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(
        ignored,
        [
            "NETCLAW_Models__Roles__Main",
            "NETCLAW_Tools__WebFetch__HttpAllowList__0"
        ]
    );
    assert_eq!(value, json!({}));
}

#[test]
fn unknown_keys_and_misspelled_sections_are_errors() {
    for var in [
        "NETCLAW_Daemon__Hots",
        "NETCLAW_Operator__AllowedUser",
        "NETCLAW_Deamon__Port",
        "NETCLAW_Operater__Port",
    ] {
        let err = apply(&mut json!({}), &env(&[(var, "1")])).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Override { var: v, .. } if v == var),
            "{var}: {err:?}"
        );
    }
}

#[test]
fn list_index_variables_merge_with_the_file_by_index() {
    let mut value = json!({"Daemon": {"TrustedProxies": ["192.0.2.1", "192.0.2.2", "192.0.2.3"]}});
    apply(
        &mut value,
        &env(&[
            ("NETCLAW_Daemon__TrustedProxies__1", "198.51.100.2"),
            ("NETCLAW_Daemon__TrustedProxies__10", "198.51.100.10"),
            ("NETCLAW_Daemon__TrustedProxies__3", "198.51.100.3"),
        ]),
    )
    .unwrap();
    assert_eq!(
        value["Daemon"]["TrustedProxies"],
        json!([
            "192.0.2.1",
            "198.51.100.2",
            "192.0.2.3",
            "198.51.100.3",
            "198.51.100.10"
        ])
    );
    // Without a list in the file, and after a whole-list variable.
    let mut value = json!({});
    apply(
        &mut value,
        &env(&[
            ("NETCLAW_Operator__AllowedUsers", "alice, bob"),
            ("NETCLAW_Operator__AllowedUsers__1", "carol"),
        ]),
    )
    .unwrap();
    assert_eq!(value["Operator"]["AllowedUsers"], json!(["alice", "carol"]));

    for (var, why) in [
        ("NETCLAW_Daemon__Host__0", "not a list"),
        ("NETCLAW_Daemon__TrustedProxies__x", "not a list index"),
        ("NETCLAW_Daemon__TrustedProxies__-1", "not a list index"),
        ("NETCLAW_Daemon__TrustedProxies__0__a", "not a list index"),
    ] {
        let err = apply(&mut json!({}), &env(&[(var, "192.0.2.1")])).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Override { var: v, reason } if v == var && reason.contains(why)),
            "{var}: {err:?}"
        );
    }
}
