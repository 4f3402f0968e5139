#![allow(clippy::unwrap_used)]

use super::*;

/// A store as netclaw's `DeviceRegistry` writes it (`WriteIndented`, PascalCase, .NET
/// `DateTimeOffset` with seven fractional digits and `+00:00`).
const NETCLAW_STORE: &str = r#"[
  {
    "Name": "aaron-laptop",
    "IsBootstrapDevice": false,
    "TokenHash": "5f0e3b1c7a1d1b8e0f4b6a9d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e",
    "Salt": "00112233445566778899aabbccddeeff",
    "CreatedAt": "2026-01-02T03:04:05.1234567+00:00",
    "LastUsedAt": "2026-01-03T03:04:05.7654321+00:00"
  },
  {
    "Name": "host-bootstrap",
    "IsBootstrapDevice": true,
    "TokenHash": "5f0e3b1c7a1d1b8e0f4b6a9d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e",
    "Salt": "ffeeddccbbaa99887766554433221100",
    "CreatedAt": "2026-01-01T00:00:00+00:00",
    "LastUsedAt": "2026-01-01T00:00:00+00:00"
  }
]"#;

#[test]
fn reads_netclaws_store_and_leaves_out_the_bootstrap_device() {
    let store = parse_netclaw_store(NETCLAW_STORE.as_bytes()).unwrap();
    assert_eq!(store.bootstrap, ["host-bootstrap"]);
    assert_eq!(
        store.devices,
        [ImportedDevice {
            name: "aaron-laptop".into(),
            token_hash: "5f0e3b1c7a1d1b8e0f4b6a9d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e".into(),
            salt: "00112233445566778899aabbccddeeff".into(),
            created_at: 1_767_323_045,
            last_used_at: 1_767_409_445,
        }]
    );
}

#[test]
fn refuses_what_is_not_netclaws_store() {
    for (bad, why) in [
        (
            r#"{"version":1,"devices":[]}"#,
            "not netclaw's device store",
        ),
        (
            r#"[{"Name":"a","TokenHash":"00","Salt":"00","CreatedAt":"x","LastUsedAt":"x","Scopes":[]}]"#,
            "unknown field `Scopes`",
        ),
        (
            r#"[{"Name":"a","TokenHash":"00","Salt":"00","CreatedAt":"2026-01-01T00:00:00","LastUsedAt":"2026-01-01T00:00:00Z"}]"#,
            "CreatedAt \"2026-01-01T00:00:00\" is not an ISO 8601 time with an offset",
        ),
        (
            r#"[{"name":"a","tokenHash":"00","salt":"00","createdAt":"x","lastUsedAt":"x"}]"#,
            "unknown field `name`",
        ),
    ] {
        let e = parse_netclaw_store(bad.as_bytes()).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}
