//! `netclaw.json` and `NETCLAW_<Section>__<Key>` overrides → the validated configuration.
//!
//! Input: the file's text, optionally followed by a NUL byte and override lines `NAME=value`.
//! Checked: no panic; an accepted configuration keeps the exposure model's cross-field rules.

#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use netclaw_core::config::{Config, ExposureMode};

fuzz_target!(|data: &[u8]| {
    let (text, env) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let env: BTreeMap<String, String> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    match Config::from_json(Path::new("/etc/netclaw/netclaw.json"), text, &env) {
        Ok(config) => {
            let d = config.daemon();
            let o = config.operator();
            assert_ne!(d.port(), 0);
            assert_ne!(o.port(), 0);
            assert!(d.state_dir().is_absolute());
            assert!(o.socket().is_absolute());
            assert!(o.pki_dir().is_absolute());
            assert!(o.agent_dir().is_absolute());
            match d.exposure() {
                ExposureMode::Local => assert!(d.host().is_loopback()),
                ExposureMode::ReverseProxy => {
                    assert!(!d.host().is_loopback() && !d.host().is_unspecified());
                    assert!(!d.trusted_proxies().is_empty());
                }
                _ => {}
            }
            // Loopback trust is granted in `local` mode only.
            assert_eq!(
                d.exposure().grants_loopback_trust(),
                d.exposure() == ExposureMode::Local
            );
            for n in d.trusted_proxies() {
                assert_eq!(n.trunc(), *n, "host bits survived in {n}");
            }
        }
        Err(e) => {
            // Every error renders (it names the key and the fix).
            assert!(!e.to_string().is_empty());
        }
    }
});
