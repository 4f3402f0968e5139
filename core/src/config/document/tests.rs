use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::config::raw::{RawDaemon, RawOperator};
use crate::config::tests::NETCLAW_JSON;
use crate::config::Config;

fn path() -> &'static Path {
    Path::new("/etc/netclaw/netclaw.json")
}

fn owned() -> RawConfig {
    RawConfig {
        config_version: None,
        daemon: RawDaemon {
            port: Some(5199),
            state_directory: Some("/var/lib/netclaw".into()),
            ..Default::default()
        },
        operator: RawOperator {
            socket: Some("/run/netclaw/operator.sock".into()),
            allowed_groups: Some(vec!["netclaw-operators".into()]),
            ..Default::default()
        },
    }
}

#[test]
fn merging_keeps_every_foreign_section_as_written_and_in_place() {
    let before = ConfigDocument::parse(path(), NETCLAW_JSON).unwrap();
    let mut doc = ConfigDocument::parse(path(), NETCLAW_JSON).unwrap();
    doc.set_owned(path(), &owned()).unwrap();
    let text = doc.to_json();

    // Same root keys in the same order, Operator appended.
    let names_before: Vec<&str> = before.section_names().collect();
    let names_after: Vec<&str> = doc.section_names().collect();
    assert_eq!(names_after[..names_before.len()], names_before[..]);
    assert_eq!(names_after[names_before.len()..], ["Operator"]);

    // Every foreign section (and configVersion) byte for byte, in the new file's text too.
    for name in names_before.iter().filter(|n| **n != "Daemon") {
        let was = before.section_text(name).unwrap();
        assert_eq!(doc.section_text(name), Some(was), "{name}");
        assert!(text.contains(was), "{name} not verbatim in:\n{text}");
    }
    // And semantically.
    let old: Value = serde_json::from_str(NETCLAW_JSON).unwrap();
    let new: Value = serde_json::from_str(&text).unwrap();
    for (name, value) in old.as_object().unwrap() {
        if name != "Daemon" {
            assert_eq!(&new[name], value, "{name}");
        }
    }
    // Daemon: netclaw's keys the install did not set are kept, the ones it set replaced.
    assert_eq!(new["Daemon"]["Host"], "127.0.0.1");
    assert_eq!(new["Daemon"]["DisableSelfUpdate"], true);
    assert_eq!(new["Daemon"]["UpdateChannel"], "beta");
    assert_eq!(new["Daemon"]["StateDirectory"], "/var/lib/netclaw");
    assert_eq!(
        new["Operator"]["AllowedGroups"],
        serde_json::json!(["netclaw-operators"])
    );

    // The result loads, and merging again changes nothing.
    let c = Config::from_json(path(), &text, &BTreeMap::new()).unwrap();
    assert_eq!(c.ignored().sections().len(), 21);
    let mut again = ConfigDocument::parse(path(), &text).unwrap();
    again.set_owned(path(), &owned()).unwrap();
    assert_eq!(again.to_json(), text);
}

#[test]
fn daemon_keys_are_replaced_in_place_whatever_their_case() {
    let mut doc = ConfigDocument::parse(
        path(),
        r#"{"daemon":{"updateChannel":"beta","host":"127.0.0.1","HOST":"::1","port":5199},"Operator":{"Port":1,"Old":true}}"#,
    )
    .unwrap();
    let mut set = owned();
    set.daemon.host = Some("127.0.0.2".into());
    doc.set_owned(path(), &set).unwrap();
    let text = doc.to_json();
    let daemon = doc.section_text("Daemon").unwrap();
    let keys: Vec<String> = serde_json::from_str::<Entries>(daemon)
        .unwrap()
        .0
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["updateChannel", "Host", "Port", "StateDirectory"]);
    // The Operator section is replaced whole.
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["Operator"].get("Old").is_none());
    assert!(v.get("daemon").is_none());
    assert_eq!(v["Daemon"]["Host"], "127.0.0.2");
}

#[test]
fn a_new_document_is_netclaws_versioned_file() {
    let doc = ConfigDocument::new();
    assert_eq!(doc.to_json(), "{\n  \"configVersion\": 1\n}\n");
    let mut doc = ConfigDocument::default();
    doc.set_owned(path(), &owned()).unwrap();
    let text = doc.to_json();
    let names: Vec<&str> = doc.section_names().collect();
    assert_eq!(names, ["configVersion", "Daemon", "Operator"]);
    let c = Config::from_json(path(), &text, &BTreeMap::new()).unwrap();
    assert!(c.ignored().sections().is_empty());
    assert!(ConfigDocument::parse(path(), "[]").is_err());
    assert!(ConfigDocument::parse(path(), "{").is_err());
    let mut bad = ConfigDocument::parse(path(), r#"{"Daemon":[]}"#).unwrap();
    assert!(bad.set_owned(path(), &owned()).is_err());
}
